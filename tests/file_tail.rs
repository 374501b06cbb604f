//! The file source end to end: the real binary tails real files in a temp
//! dir and posts to a mock endpoint. In every case the lines the endpoint
//! holds (deduplicated by event id, as Prefect does) are exactly the lines
//! written.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::files::{
    LIMIT, Line, Rig, all_copies, append, assert_one_id_per_line, numbered, texts, write_lines,
};

#[test]
fn appended_lines_arrive_in_order_with_offsets() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"");
    let before = numbered("before", 100);
    append(&rig.log("app.log"), &before);
    let agent = rig.start();
    let after = numbered("after", 100);
    for chunk in after.chunks(10) {
        append(&rig.log("app.log"), chunk);
    }
    let lines = rig.wait_count(200);
    rig.stop(agent);
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(texts(&lines, ""), all);
    let mut offset = 0;
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l.offset);
    for (line, text) in sorted.iter().zip(&all) {
        assert_eq!(line.offset, offset, "{line:?}");
        assert_eq!(line.path, rig.log("app.log").display().to_string());
        assert!(!line.truncated);
        offset += text.len() as u64 + 1;
    }
    assert_eq!(all_copies(&rig).len(), 200, "each line was sent once");
}

#[test]
fn start_at_end_skips_what_was_there_but_new_files_are_read_whole() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]");
    append(&rig.log("old.log"), &numbered("old", 50));
    let agent = rig.start();
    agent.wait_for_stderr_line(
        |l| l.contains("FileTailStarted") && l.contains("old.log"),
        LIMIT,
    );
    let fresh = numbered("fresh", 5);
    append(&rig.log("old.log"), &fresh);
    let created = numbered("created", 5);
    append(&rig.log("new.log"), &created);
    let lines = rig.wait_count(10);
    rig.stop(agent);
    assert_eq!(texts(&lines, "fresh"), fresh);
    assert_eq!(texts(&lines, "created"), created);
    assert!(texts(&lines, "old").is_empty());
}

#[test]
fn rename_rotation_reads_the_old_file_to_its_end() {
    // Only the live name matches: the rotated file is read through the
    // descriptor herald holds.
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = File::create(&path).expect("create");
    let agent = rig.start();
    let first = numbered("first", 50);
    write_lines(&mut app, &first);
    rig.wait_count(50);
    // logrotate's create mode: rename, create anew; the application keeps
    // writing to the old file until it reopens.
    fs::rename(&path, rig.log("app.log.1")).expect("rotate");
    let mut fresh = File::create(&path).expect("create new");
    let late = numbered("late", 30);
    write_lines(&mut app, &late);
    let new = numbered("new", 40);
    write_lines(&mut fresh, &new);
    let lines = rig.wait_count(120);
    rig.stop(agent);
    let old: Vec<String> = first.iter().chain(&late).cloned().collect();
    let mut old_got: Vec<&Line> = lines
        .iter()
        .filter(|l| !l.line.starts_with("new"))
        .collect();
    old_got.sort_by_key(|l| l.offset);
    assert_eq!(
        old_got.iter().map(|l| l.line.clone()).collect::<Vec<_>>(),
        old
    );
    assert_eq!(texts(&lines, "new"), new);
    assert_eq!(lines.len(), 120);
    assert_one_id_per_line(&rig);
}

/// The `herald.file.*` events accepted so far, one per id, as (event, file
/// name).
fn file_events(rig: &Rig) -> Vec<(String, String)> {
    let mut ids = std::collections::HashSet::new();
    rig.endpoint
        .accepted_events()
        .iter()
        .filter(|e| ids.insert(e["id"].to_string()))
        .filter_map(|e| {
            let name = e["event"].as_str()?;
            let path = Path::new(e["payload"]["path"].as_str()?);
            let file = path.file_name()?.to_string_lossy().into_owned();
            name.starts_with("herald.file.")
                .then(|| (name.to_owned(), file))
        })
        .collect()
}

#[test]
fn a_rotation_seen_in_two_steps_is_a_rotation_and_loses_no_line() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"\nwatch = true");
    let path = rig.log("app.log");
    let mut app = File::create(&path).expect("create");
    let agent = rig.start();
    let first = numbered("first", 50);
    write_lines(&mut app, &first);
    rig.wait_count(50);
    fs::rename(&path, rig.log("app.log.1")).expect("rotate");
    let late = numbered("late", 30);
    write_lines(&mut app, &late);
    // herald has handled the rename before the new file exists.
    let renamed = ("herald.file.renamed".to_owned(), "app.log.1".to_owned());
    assert!(
        support::wait_until(LIMIT, || file_events(&rig).contains(&renamed)),
        "no rename: {:?}",
        file_events(&rig)
    );
    let mut fresh = File::create(&path).expect("create new");
    let new = numbered("new", 40);
    write_lines(&mut fresh, &new);
    let lines = rig.wait_count(120);
    let rotated = ("herald.file.rotated".to_owned(), "app.log".to_owned());
    assert!(
        support::wait_until(LIMIT, || file_events(&rig).contains(&rotated)),
        "no rotation: {:?}",
        file_events(&rig)
    );
    rig.stop(agent);
    assert_eq!(texts(&lines, "first"), first);
    assert_eq!(texts(&lines, "late"), late);
    assert_eq!(texts(&lines, "new"), new);
    assert_eq!(rig.lines().len(), 120, "no line twice");
    assert_one_id_per_line(&rig);
    let events: Vec<(String, String)> = file_events(&rig)
        .into_iter()
        .filter(|(name, _)| name != "herald.file.modified")
        .collect();
    assert_eq!(events, [renamed, rotated]);
}

#[test]
fn copytruncate_while_running_reads_the_copy_then_the_file_from_zero() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let agent = rig.start();
    let first = numbered("first", 100);
    write_lines(&mut app, &first);
    rig.wait_count(100);

    // Nothing written between herald's last read and the truncation:
    // nothing is lost.
    fs::copy(&path, rig.log("app.log.1")).expect("copy");
    app.set_len(0).expect("truncate");
    let second = numbered("second", 50);
    write_lines(&mut app, &second);
    rig.wait_lines("the lines after the truncation", |l| {
        texts(l, "second").len() == 50
    });

    // Lines written just before the copy may not have been read when the
    // file is truncated: the copy beside it (not among the globs) holds
    // them, and herald finishes it before the file's new lines.
    let window = numbered("window", 20);
    write_lines(&mut app, &window);
    fs::copy(&path, rig.log("app.log.2")).expect("copy");
    app.set_len(0).expect("truncate");
    let third = numbered("third", 50);
    write_lines(&mut app, &third);
    let lines = rig.wait_lines("the lines after the second truncation", |l| {
        texts(l, "third").len() == 50
    });
    rig.stop(agent);
    assert_eq!(texts(&lines, "first"), first);
    assert_eq!(texts(&lines, "second"), second);
    assert_eq!(texts(&lines, "third"), third);
    assert_eq!(texts(&lines, "window"), window);
    assert_eq!(rig.lines().len(), 220, "every line once");
    assert_one_id_per_line(&rig);
}

#[test]
fn copytruncate_loses_nothing_when_the_copy_is_watched_too() {
    let rig = Rig::new("paths = [\"{logs}/app.log*\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let agent = rig.start();
    // More than the fingerprint's 1KiB, so the copy is known by it.
    let first = numbered("first", 100);
    write_lines(&mut app, &first);
    rig.wait_count(100);
    let window = numbered("window", 200);
    write_lines(&mut app, &window);
    fs::copy(&path, rig.log("app.log.1")).expect("copy");
    app.set_len(0).expect("truncate");
    let after = numbered("after", 50);
    write_lines(&mut app, &after);
    let lines = rig.wait_count(350);
    rig.stop(agent);
    let all_old: Vec<String> = first.iter().chain(&window).cloned().collect();
    let old: Vec<Line> = lines
        .iter()
        .filter(|l| !l.line.starts_with("after"))
        .cloned()
        .collect();
    assert_eq!(texts(&old, ""), all_old);
    assert_eq!(texts(&lines, "after"), after);
    assert_eq!(
        lines.len(),
        350,
        "no line of the copy arrived under a new id"
    );
}

#[test]
fn truncation_while_stopped_is_read_from_the_start() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    // The same first KiB before and after: only the bytes before the
    // checkpoint tell that the file was rewritten.
    let header = format!("header {}", "h".repeat(1100));
    let mut before = vec![header.clone()];
    before.extend(numbered("before", 30));
    append(&path, &before);
    let agent = rig.start();
    rig.wait_count(31);
    rig.stop(agent);

    let mut rewritten = vec![header];
    rewritten.extend(numbered("rewritten-and-longer", 60));
    fs::write(&path, "").expect("truncate");
    append(&path, &rewritten);
    let agent = rig.start();
    let lines = rig.wait_lines("the rewritten lines", |l| texts(l, "rewritten").len() == 60);
    agent.wait_for_stderr_line(|l| l.contains("FileTruncated"), LIMIT);
    rig.stop(agent);
    assert_eq!(texts(&lines, "before"), before[1..]);
    assert_eq!(texts(&lines, "rewritten"), rewritten[1..]);

    // Shorter than the checkpoint.
    let agent_lines = rig.lines().len();
    fs::write(&path, "short\n").expect("shrink");
    let agent = rig.start();
    rig.wait_lines("the short line", |l| l.iter().any(|x| x.line == "short"));
    rig.stop(agent);
    assert_eq!(rig.lines().len(), agent_lines + 1);
}

#[test]
fn a_file_deleted_while_open_is_drained_then_closed() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = File::create(&path).expect("create");
    let agent = rig.start();
    let before = numbered("before", 20);
    write_lines(&mut app, &before);
    rig.wait_count(20);
    fs::remove_file(&path).expect("delete");
    let after = numbered("after", 20);
    write_lines(&mut app, &after);
    write!(app, "last words without newline").expect("write");
    let lines = rig.wait_count(41);
    agent.wait_for_stderr_line(|l| l.contains("FileClosed"), LIMIT);
    rig.stop(agent);
    assert_eq!(texts(&lines, "before"), before);
    assert_eq!(texts(&lines, "after"), after);
    assert_eq!(texts(&lines, "last"), ["last words without newline"]);
}

#[test]
fn files_appearing_under_a_glob_are_read_from_their_beginning() {
    let rig = Rig::new("paths = [\"{logs}/*/*.log\"]\nexclude = [\"{logs}/*/debug.log\"]");
    let agent = rig.start();
    let dir = rig.logs.join("svc-1");
    fs::create_dir(&dir).expect("dir");
    let lines_a = numbered("a", 10);
    append(&dir.join("a.log"), &lines_a);
    append(&dir.join("debug.log"), &numbered("debug", 10));
    let dir2 = rig.logs.join("svc-2");
    fs::create_dir(&dir2).expect("dir");
    let lines_b = numbered("b", 10);
    append(&dir2.join("b.log"), &lines_b);
    let lines = rig.wait_count(20);
    rig.stop(agent);
    assert_eq!(texts(&lines, "a "), lines_a);
    assert_eq!(texts(&lines, "b "), lines_b);
    assert!(texts(&lines, "debug").is_empty(), "excluded");
    assert_eq!(lines.len(), 20);
}

#[test]
fn a_symlinked_log_is_read_through_its_target() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"");
    let real = rig.dir.path().join("real");
    fs::create_dir(&real).expect("dir");
    let target_1 = real.join("app-1.log");
    append(&target_1, &numbered("one", 10));
    let link = rig.log("current.log");
    std::os::unix::fs::symlink(&target_1, &link).expect("symlink");
    let agent = rig.start();
    rig.wait_count(10);
    append(&target_1, &numbered("more", 10));
    rig.wait_count(20);
    // Retarget the link, as some services rotate.
    let target_2 = real.join("app-2.log");
    append(&target_2, &numbered("two", 10));
    let tmp_link = rig.logs.join(".current.tmp");
    std::os::unix::fs::symlink(&target_2, &tmp_link).expect("symlink");
    fs::rename(&tmp_link, &link).expect("retarget");
    let lines = rig.wait_count(30);
    rig.stop(agent);
    assert_eq!(texts(&lines, "one"), numbered("one", 10));
    assert_eq!(texts(&lines, "more"), numbered("more", 10));
    assert_eq!(texts(&lines, "two"), numbered("two", 10));
    let link_path = link.display().to_string();
    assert!(
        lines.iter().all(|l| l.path == link_path),
        "lines carry the link's path"
    );
}

#[test]
fn ten_megabyte_lines_are_cut_without_stalling_the_file() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let agent = rig.start();
    let huge = "x".repeat(10 << 20);
    append(
        &path,
        &[
            huge.clone(),
            "after the huge one".into(),
            huge,
            "and again".into(),
        ],
    );
    let lines = rig.wait_count(4);
    rig.stop(agent);
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l.offset);
    assert_eq!(
        sorted[0].line.len(),
        1 << 20,
        "cut at max_line_bytes (1MiB)"
    );
    assert!(sorted[0].truncated);
    assert_eq!(sorted[1].line, "after the huge one");
    assert_eq!(sorted[1].offset, (10 << 20) + 1);
    assert!(!sorted[1].truncated);
    assert!(sorted[2].truncated);
    assert_eq!(sorted[3].line, "and again");
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    fs::write(&path, b"bad \xff\xfe bytes\nhalf \xe2\x82 euro\ngood\n").expect("write");
    let agent = rig.start();
    let lines = rig.wait_count(3);
    rig.stop(agent);
    assert_eq!(
        texts(&lines, ""),
        ["bad \u{fffd}\u{fffd} bytes", "half \u{fffd} euro", "good"]
    );
}

#[test]
fn a_last_line_without_newline_is_sent_once_complete_or_rotated() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = File::create(&path).expect("create");
    let agent = rig.start();
    write!(app, "first\nhalf a li").expect("write");
    rig.wait_count(1);
    write!(app, "ne\nsecond\nunfinished at rotation").expect("write");
    rig.wait_count(3);
    fs::rename(&path, rig.log("app.log.1")).expect("rotate");
    let lines = rig.wait_count(4);
    rig.stop(agent);
    assert_eq!(
        texts(&lines, ""),
        ["first", "half a line", "second", "unfinished at rotation"]
    );
}

#[test]
fn multiline_records_and_json_lines() {
    let rig = Rig::new(
        "paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"\njson = true\n\n[sources.file.multiline]\nstart = '^\\S'\nflush_timeout = \"200ms\"",
    );
    let path = rig.log("app.log");
    append(
        &path,
        &[
            "Exception: boom".into(),
            "  at a.b(c.java:1)".into(),
            "  at d.e(f.java:2)".into(),
            r#"{"level":"info","msg":"json line"}"#.into(),
            "last record".into(),
            "  with a continuation".into(),
        ],
    );
    let agent = rig.start();
    let lines = rig.wait_count(3);
    rig.stop(agent);
    assert_eq!(
        texts(&lines, ""),
        [
            "Exception: boom\n  at a.b(c.java:1)\n  at d.e(f.java:2)",
            r#"{"level":"info","msg":"json line"}"#,
            "last record\n  with a continuation",
        ]
    );
}

#[test]
fn a_restart_in_the_middle_of_a_file_resumes_exactly() {
    // A small queue and an endpoint that is down: the queue fills, the
    // source stops reading in the middle of the file (back-pressure), and
    // is stopped there.
    let rig = Rig::with(
        "paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"",
        "\n[queue]\nmax_bytes = \"1MiB\"",
    );
    rig.endpoint.stop();
    let path = rig.log("app.log");
    // Well over what 1 MiB holds, even with each file's resource stored
    // once per segment (a few hundred bytes an event).
    let written = numbered("line", 12_000);
    append(&path, &written);
    let agent = rig.start();
    let state = rig.dir.path().join("data/state/file-app.json");
    let size = fs::metadata(&path).expect("size").len();
    let checkpoint = || -> Option<u64> {
        let text = fs::read(&state).ok()?;
        let json: Value = serde_json::from_slice(&text).ok()?;
        json["files"][0]["offset"].as_u64()
    };
    assert!(
        support::wait_until(LIMIT, || checkpoint().is_some_and(|o| o > 0)),
        "the checkpoint moves as lines are queued\n{}",
        agent.describe()
    );
    rig.stop(agent);
    let stopped_at = checkpoint().expect("a checkpoint");
    assert!(
        stopped_at > 0 && stopped_at < size,
        "stopped in the middle: {stopped_at} of {size}"
    );
    rig.endpoint.start_again();
    let agent = rig.start();
    agent.wait_for_stderr_line(
        |l| l.contains("FileTailStarted") && l.contains(&format!("offset={stopped_at}")),
        LIMIT,
    );
    let lines = rig.wait_count(written.len());
    rig.stop(agent);
    assert_eq!(texts(&lines, ""), written);
    assert_one_id_per_line(&rig);
}

#[test]
fn watch_reports_the_file_lifecycle() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\ntail = false\nwatch = true");
    let agent = rig.start();
    let names = |rig: &Rig| -> Vec<(String, String)> {
        rig.endpoint
            .accepted_events()
            .iter()
            .filter_map(|e| {
                let name = e["event"].as_str()?;
                name.starts_with("herald.file.").then(|| {
                    (
                        name.to_owned(),
                        e["payload"]["path"].as_str().unwrap_or_default().to_owned(),
                    )
                })
            })
            .collect()
    };
    let wait_for = |name: &str, file: &str| {
        let path = rig.log(file).display().to_string();
        assert!(
            support::wait_until(LIMIT, || names(&rig)
                .contains(&(name.to_owned(), path.clone()))),
            "no {name} for {file}: {:?}\n{}",
            names(&rig),
            rig.endpoint.describe()
        );
    };
    let a = rig.log("a.log");
    // Written under a name outside the glob and moved in, so herald cannot
    // see the file before its content (the size is asserted below).
    let staged = rig.log("a.staged");
    fs::write(&staged, "one\n").expect("create");
    fs::rename(&staged, &a).expect("move in");
    wait_for("herald.file.created", "a.log");
    append(&a, &["two".into()]);
    wait_for("herald.file.modified", "a.log");
    fs::rename(&a, rig.log("b.log")).expect("rename");
    wait_for("herald.file.renamed", "b.log");
    fs::write(rig.log("b.log"), "").expect("truncate");
    wait_for("herald.file.truncated", "b.log");
    fs::remove_file(rig.log("b.log")).expect("delete");
    wait_for("herald.file.deleted", "b.log");
    // Rotation: the path now names another file. herald may look between
    // the rename and the creation or not; both are a rotation.
    fs::write(rig.log("c.log"), "first\n").expect("create");
    wait_for("herald.file.created", "c.log");
    fs::rename(rig.log("c.log"), rig.log("c.log.1")).expect("rotate");
    fs::write(rig.log("c.log"), "second\n").expect("create");
    wait_for("herald.file.rotated", "c.log");
    // The rename surely seen alone before the new file appears.
    fs::rename(rig.log("c.log"), rig.log("c.log.2")).expect("rotate");
    wait_for("herald.file.renamed", "c.log.2");
    fs::write(rig.log("c.log"), "third\n").expect("create");
    assert!(
        support::wait_until(LIMIT, || file_events(&rig)
            .iter()
            .filter(|(name, _)| name == "herald.file.rotated")
            .count()
            == 2),
        "two rotations: {:?}",
        file_events(&rig)
    );
    rig.stop(agent);
    // Each rotation reads as the old file moving away, then the new one
    // arriving; c.log was created once only.
    let about_c: Vec<(String, String)> = file_events(&rig)
        .into_iter()
        .filter(|(name, file)| file.starts_with("c.log") && name != "herald.file.modified")
        .collect();
    let expected: Vec<(String, String)> = [
        ("created", "c.log"),
        ("renamed", "c.log.1"),
        ("rotated", "c.log"),
        ("renamed", "c.log.2"),
        ("rotated", "c.log"),
    ]
    .iter()
    .map(|(name, file)| (format!("herald.file.{name}"), (*file).to_owned()))
    .collect();
    assert_eq!(about_c, expected);

    let created = rig
        .endpoint
        .accepted_events()
        .into_iter()
        .find(|e| e["event"] == "herald.file.created")
        .expect("created");
    let payload = &created["payload"];
    assert_eq!(payload["size"], 4);
    assert!(payload["owner"].is_u64(), "{payload}");
    assert!(
        payload["mode"].as_str().is_some_and(|m| m.len() == 4),
        "{payload}"
    );
    assert!(
        payload["mtime"].as_str().is_some_and(|m| m.ends_with('Z')),
        "{payload}"
    );
    assert!(rig.lines().is_empty(), "tail = false reads no lines");
}

/// Mapping runs on the file source's own thread: rules apply to its lines
/// as to any observation, and a line a rule drops still moves the
/// checkpoint, so a restart sends neither it nor anything before it again.
#[test]
fn rules_map_and_drop_file_lines_and_dropped_lines_move_the_checkpoint() {
    let rules = r#"
[[mappings]]
name = "noise"
source = "app"
kind = "line"
when = [{ regex = '^noise ' }]
drop = true

[[mappings]]
name = "orders"
source = "app"
kind = "line"
when = [{ regex = '^order (?P<number>\d+)' }]
event = "shop.order.placed"
resource.id = "shop.order.{number}"
payload = { number = "{number}", line = "{line}" }
"#;
    let rig = Rig::with(
        "paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"",
        rules,
    );
    let log = rig.log("app.log");
    let orders = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("order {i}")).collect()
    };
    append(&log, &orders(0..50));
    append(&log, &numbered("noise", 50));
    let agent = rig.start();
    let placed = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "shop.order.placed")
            .map(|e| {
                e["payload"]["number"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let deadline = Instant::now() + LIMIT;
    while placed(&rig.endpoint.accepted_events()).len() < 50 {
        assert!(Instant::now() < deadline, "{}", rig.endpoint.describe());
        std::thread::sleep(Duration::from_millis(100));
    }
    rig.stop(agent);
    let events = rig.endpoint.accepted_events();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(placed(&events), want);
    for event in events.iter().filter(|e| e["event"] == "shop.order.placed") {
        let number = event["payload"]["number"].as_str().unwrap_or_default();
        assert_eq!(
            event["resource"]["prefect.resource.id"],
            format!("shop.order.{number}")
        );
        assert_eq!(event["payload"]["line"], format!("order {number}"));
    }
    assert!(
        !events.iter().any(|e| e.to_string().contains("noise 0")),
        "dropped lines are not sent"
    );
    // The file ends with dropped lines, and the checkpoint is past them.
    let state = rig.dir.path().join("data/state/file-app.json");
    let text = fs::read(&state).expect("checkpoint file");
    let json: Value = serde_json::from_slice(&text).expect("checkpoint json");
    assert_eq!(
        json["files"][0]["offset"].as_u64(),
        Some(fs::metadata(&log).expect("size").len()),
        "{json}"
    );

    // Restart after more lines: only the new order arrives. The noise at
    // the end of the first run was dropped, and its checkpoint kept.
    append(&log, &orders(50..51));
    let agent = rig.start();
    let deadline = Instant::now() + LIMIT;
    while placed(&rig.endpoint.accepted_events()).len() < 51 {
        assert!(Instant::now() < deadline, "{}", rig.endpoint.describe());
        std::thread::sleep(Duration::from_millis(100));
    }
    rig.stop(agent);
    let all: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    assert_eq!(
        placed(&rig.endpoint.accepted_events()),
        all,
        "nothing sent twice"
    );
}
