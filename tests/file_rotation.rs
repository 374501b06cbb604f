//! Rotation without loss or reordering, end to end with the real binary:
//! files renamed while herald is stopped, rename rotations under load,
//! copytruncate while herald is stopped or held behind a failing endpoint
//! (by hand and with Debian's `logrotate` when it is installed), and
//! copies that are not copies. What the endpoint holds, one line per
//! event id as Prefect keeps them, is every line written, each once, and
//! a path's lines arrive in the order they were written.

mod support;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use support::files::{
    LIMIT, Line, Rig, append, assert_one_id_per_line, numbered, texts, write_lines,
};
use support::{Reply, wait_until};

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log")
}

/// Every line arrived under the path herald first read it at.
fn assert_all_under(lines: &[Line], path: &Path) {
    let path = path.display().to_string();
    for l in lines {
        assert_eq!(l.path, path, "line {:?} arrived under another path", l.line);
    }
}

/// Every line whose text starts with `earlier` arrived before any that
/// starts with `later`.
fn assert_arrived_before(lines: &[Line], earlier: &str, later: &str) {
    let last = lines.iter().rposition(|l| l.line.starts_with(earlier));
    let first = lines.iter().position(|l| l.line.starts_with(later));
    assert!(
        last < first,
        "a {earlier:?} line came after a {later:?} line"
    );
}

/// Each group of lines arrived whole, in file order, once, under `path`,
/// and the groups in their order, and nothing else arrived.
fn assert_delivered(rig: &Rig, lines: &[Line], path: &Path, groups: &[(&str, &[String])]) {
    for (prefix, written) in groups {
        assert_eq!(&texts(lines, prefix), written, "the {prefix:?} lines");
    }
    for pair in groups.windows(2) {
        assert_arrived_before(lines, pair[0].0, pair[1].0);
    }
    let total: usize = groups.iter().map(|(_, written)| written.len()).sum();
    assert_eq!(rig.lines().len(), total, "every line once");
    assert_one_id_per_line(rig);
    assert_all_under(lines, path);
}

/// Copies `path` to `copy` and truncates `path`, as logrotate's
/// copytruncate does (the writer keeps its descriptor).
fn copytruncate(path: &Path, copy: &Path) {
    fs::copy(path, copy).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
}

/// Runs Debian's logrotate once, forced, over `path` with `directives`;
/// `false` when it is not installed.
fn logrotate(rig: &Rig, path: &Path, directives: &str) -> bool {
    let program = ["/usr/sbin/logrotate", "/sbin/logrotate"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(program) = program else {
        println!("logrotate is not installed: the by-hand rotation stands in for it");
        return false;
    };
    let conf = rig.dir.path().join("logrotate.conf");
    fs::write(
        &conf,
        format!(
            "{} {{\n{directives}\nrotate 5\nmissingok\n}}\n",
            path.display()
        ),
    )
    .expect("logrotate conf");
    let state = rig.dir.path().join("logrotate.state");
    let out = Command::new(program)
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&conf)
        .output()
        .expect("run logrotate");
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn a_file_renamed_while_herald_is_stopped_is_read_to_its_end() {
    // The glob matches the live name only: the renamed file is found by
    // its inode, not by the glob.
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"end\"");
    let path = rig.log("app0.log");
    let mut app = open_append(&path);
    let agent = rig.start();
    let first = numbered("first", 200);
    write_lines(&mut app, &first);
    rig.wait_count(200);
    let mut agent = agent;
    agent.sigkill();
    agent.wait_exit(LIMIT);

    // Rotated while herald is down; the application writes its last lines
    // into the renamed file, then a new file appears at the path.
    fs::rename(&path, rig.log("app0.log.1")).expect("rotate");
    let late = numbered("late", 40);
    write_lines(&mut app, &late);
    drop(app);
    let new = numbered("new", 60);
    append(&path, &new);

    let agent = rig.start();
    let lines = rig.wait_count(300);
    agent.wait_for_stderr_line(|l| l.contains("FileStreamRecovered"), LIMIT);
    rig.stop(agent);
    assert_eq!(texts(&lines, "first"), first);
    assert_eq!(texts(&lines, "late"), late);
    assert_eq!(
        texts(&lines, "new"),
        new,
        "start_at = end does not skip a file that replaced a known one"
    );
    assert_eq!(rig.lines().len(), 300, "every line once");
    assert_one_id_per_line(&rig);
    assert_all_under(&lines, &path);
    // The old file's rest goes before the new file's lines.
    assert_arrived_before(&lines, "late", "new");
}

#[test]
fn a_renamed_file_written_just_after_herald_starts_is_still_read() {
    // herald comes back between the rename and the application's last
    // write into the renamed file.
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = open_append(&path);
    let first = numbered("first", 100);
    write_lines(&mut app, &first);
    let agent = rig.start();
    rig.wait_count(100);
    rig.stop(agent);
    fs::rename(&path, rig.log("app.log.1")).expect("rotate");
    let agent = rig.start();
    let late = numbered("late", 5);
    write_lines(&mut app, &late);
    let new = numbered("new", 20);
    append(&path, &new);
    let lines = rig.wait_count(125);
    rig.stop(agent);
    assert_eq!(texts(&lines, "late"), late);
    assert_eq!(texts(&lines, "new"), new);
    assert_arrived_before(&lines, "late", "new");
    assert_one_id_per_line(&rig);
}

#[test]
fn a_rename_rotation_under_load_keeps_each_paths_order() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let agent = rig.start();
    // One application, numbering its lines: it writes to its file, is
    // rotated (rename, then a new file), writes a few more lines into the
    // old file before it reopens, then writes to the new one.
    let mut n = 0usize;
    let mut next = |count: usize| {
        let lines: Vec<String> = (n..n + count)
            .map(|i| format!("n {i:07} payload"))
            .collect();
        n += count;
        lines
    };
    let mut app = open_append(&path);
    let rotations = 3;
    for round in 0..=rotations {
        // herald is reading this file (a file renamed away before herald
        // ever saw it cannot be known), and more keeps coming.
        write_lines(&mut app, &next(100));
        let seen = round * 2003 + 1;
        rig.wait_lines("the file to be read", |l| l.len() >= seen);
        for _ in 0..19 {
            write_lines(&mut app, &next(100));
        }
        if round == rotations {
            break;
        }
        fs::rename(&path, rig.log(&format!("app.log.{round}"))).expect("rotate");
        write_lines(&mut app, &next(3));
        app = open_append(&path);
    }
    let total = (rotations + 1) * 2000 + rotations * 3;
    let lines = rig.wait_count(total);
    rig.stop(agent);
    assert_eq!(rig.lines().len(), total, "every line once");
    assert_one_id_per_line(&rig);
    // Per resource, in arrival order, every line's number is above the
    // previous one's.
    let mut last: HashMap<String, usize> = HashMap::new();
    for l in &lines {
        let number: usize = l.line[2..9].parse().expect("numbered line");
        if let Some(before) = last.insert(l.path.clone(), number) {
            assert!(
                number > before,
                "line {number} arrived after line {before} for {}",
                l.path
            );
        }
    }
    assert_eq!(last.len(), 1, "one resource: {:?}", last.keys());
}

/// Writes `n` lines, stops herald, appends `down` lines, rotates with
/// `rotate`, appends `after` lines to the emptied file, starts herald and
/// checks that every line arrives once.
fn copytruncate_while_stopped(rotate: impl FnOnce(&Rig, &Path) -> bool) {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = open_append(&path);
    let first = numbered("first", 150);
    write_lines(&mut app, &first);
    let mut agent = rig.start();
    rig.wait_count(150);
    agent.sigkill();
    agent.wait_exit(LIMIT);
    let down = numbered("down", 89);
    write_lines(&mut app, &down);
    if !rotate(&rig, &path) {
        return;
    }
    assert_eq!(fs::metadata(&path).expect("stat").len(), 0, "truncated");
    let after = numbered("after", 70);
    write_lines(&mut app, &after);
    let agent = rig.start();
    let lines = rig.wait_count(309);
    agent.wait_for_stderr_line(|l| l.contains("FileStreamRecovered"), LIMIT);
    rig.stop(agent);
    assert_delivered(
        &rig,
        &lines,
        &path,
        &[("first", &first), ("down", &down), ("after", &after)],
    );
}

#[test]
fn copytruncate_while_stopped_is_finished_from_the_copy() {
    copytruncate_while_stopped(|rig, path| {
        copytruncate(path, &rig.log("app.log.1"));
        true
    });
}

#[test]
fn logrotate_copytruncate_while_stopped_is_finished_from_the_copy() {
    copytruncate_while_stopped(|rig, path| logrotate(rig, path, "copytruncate"));
}

/// A rig whose endpoint fails until told otherwise and whose queue is
/// small, so herald stops reading far behind the writer.
fn held_behind() -> Rig {
    let rig = Rig::with(
        "paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"",
        "retry_initial = \"50ms\"\nretry_max = \"200ms\"\n\n[queue]\nmax_bytes = \"1MiB\"\nsegment_bytes = \"64KiB\"\n\n[[sources.heartbeat]]\nname = \"heartbeat\"\ninterval = \"1s\"",
    );
    rig.endpoint.set_default(Reply::Status(503));
    rig
}

/// Waits until herald's checkpoint has moved, so it has read and queued
/// the file's start and is now blocked on its full queue far behind the
/// writer.
fn wait_blocked(rig: &Rig) {
    let state = rig.dir.path().join("data/state/file-app.json");
    let queued = || {
        let Ok(text) = fs::read(&state) else {
            return false;
        };
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        json["files"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["offset"].as_u64() > Some(0)))
    };
    assert!(
        wait_until(LIMIT, queued),
        "herald never queued a line: {}",
        rig.endpoint.describe()
    );
}

fn copytruncate_while_held_behind(rotate: impl FnOnce(&Rig, &Path) -> bool) {
    let rig = held_behind();
    let path = rig.log("app.log");
    let mut app = open_append(&path);
    let agent = rig.start();
    // Far more than the queue holds.
    let before = numbered("before", 30_000);
    write_lines(&mut app, &before);
    wait_blocked(&rig);
    if !rotate(&rig, &path) {
        return;
    }
    let after = numbered("after", 500);
    write_lines(&mut app, &after);
    rig.endpoint.set_default(Reply::Status(204));
    let lines = rig.wait_count(30_500);
    let finished = agent.wait_for_stderr_line(|l| l.contains("finishing it from its copy"), LIMIT);
    let counted = || {
        rig.endpoint.accepted_events().iter().any(|e| {
            e["event"] == "herald.agent.heartbeat"
                && e["payload"]["health"]["files"]["streams_recovered"].as_u64() >= Some(1)
        })
    };
    assert!(
        wait_until(LIMIT, counted),
        "no heartbeat counted the recovery"
    );
    rig.stop(agent);
    println!("{finished}");
    assert_delivered(
        &rig,
        &lines,
        &path,
        &[("before", &before), ("after", &after)],
    );
}

#[test]
fn copytruncate_while_held_behind_is_finished_from_the_copy() {
    copytruncate_while_held_behind(|rig, path| {
        copytruncate(path, &rig.log("app.log.1"));
        true
    });
}

#[test]
fn logrotate_copytruncate_while_held_behind_is_finished_from_the_copy() {
    copytruncate_while_held_behind(|rig, path| logrotate(rig, path, "copytruncate"));
}

#[test]
fn a_copy_that_is_not_the_files_is_not_read() {
    // Held behind while running: the file is truncated beside a copy of
    // another file's content, big enough to pass for one.
    let rig = held_behind();
    let path = rig.log("app.log");
    let mut app = open_append(&path);
    let agent = rig.start();
    let before = numbered("before", 30_000);
    write_lines(&mut app, &before);
    wait_blocked(&rig);
    append(&rig.log("app.log.1"), &numbered("other", 40_000));
    app.set_len(0).expect("truncate");
    let after = numbered("after", 500);
    write_lines(&mut app, &after);
    rig.endpoint.set_default(Reply::Status(204));
    let lines = rig.wait_lines("the lines after the truncation", |l| {
        texts(l, "after").len() == 500
    });
    agent.wait_for_stderr_line(|l| l.contains("no copy holds what was not read yet"), LIMIT);
    // The heartbeat counts what the truncation took.
    let counted = || {
        rig.endpoint.accepted_events().iter().any(|e| {
            let files = &e["payload"]["health"]["files"];
            e["event"] == "herald.agent.heartbeat"
                && files["truncations_unrecovered"].as_u64() >= Some(1)
                && files["truncation_lost_bytes"].as_u64() > Some(0)
        })
    };
    assert!(wait_until(LIMIT, counted), "no heartbeat counted the loss");
    rig.stop(agent);
    assert!(texts(&lines, "other").is_empty(), "the other file was read");
    let got = texts(&lines, "before");
    assert!(got.len() < before.len(), "herald was not behind");
    assert_eq!(got, before[..got.len()], "what arrived is the beginning");
    assert_one_id_per_line(&rig);

    // Stopped: the file is truncated beside a file that begins the same
    // way but then differs before the checkpoint.
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let head = numbered("head", 100);
    let tail = numbered("tail", 100);
    append(&path, &head);
    append(&path, &tail);
    let agent = rig.start();
    rig.wait_count(200);
    rig.stop(agent);
    let mut lookalike = head.clone();
    lookalike.extend(numbered("look", 300));
    append(&rig.log("app.log.1"), &lookalike);
    fs::write(&path, "").expect("truncate");
    let fresh = numbered("fresh", 30);
    append(&path, &fresh);
    let agent = rig.start();
    let lines = rig.wait_lines("the fresh lines", |l| texts(l, "fresh").len() == 30);
    agent.wait_for_stderr_line(|l| l.contains("FileTruncationUnrecovered"), LIMIT);
    rig.stop(agent);
    assert!(texts(&lines, "look").is_empty(), "the lookalike was read");
    assert_eq!(rig.lines().len(), 230);
}

#[test]
fn a_file_deleted_while_herald_is_stopped_is_gone_and_nothing_else_is_read() {
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    append(&path, &numbered("first", 50));
    let agent = rig.start();
    rig.wait_count(50);
    rig.stop(agent);
    fs::remove_file(&path).expect("delete");
    append(&rig.log("unrelated.txt"), &numbered("unrelated", 50));
    append(&path, &numbered("new", 10));
    let agent = rig.start();
    let lines = rig.wait_count(60);
    rig.stop(agent);
    assert_eq!(texts(&lines, "new").len(), 10);
    assert!(texts(&lines, "unrelated").is_empty());
    assert_eq!(rig.lines().len(), 60);
}

#[test]
fn a_renamed_file_written_again_after_a_pause_is_still_read() {
    // A writer that reopens late (minutes after the rename, say) keeps
    // writing into the renamed file after herald has drained it.
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut app = open_append(&path);
    write_lines(&mut app, &numbered("first", 10));
    let agent = rig.start();
    rig.wait_count(10);
    fs::rename(&path, rig.log("app.log.1")).expect("rotate");
    app.write_all(b"no newline yet").expect("write");
    // Emitted once the renamed file has been idle for a while: drained.
    rig.wait_lines("the unfinished line", |l| {
        l.iter().any(|x| x.line == "no newline yet")
    });
    let late = numbered("late", 5);
    write_lines(&mut app, &[String::new()]);
    write_lines(&mut app, &late);
    let lines = rig.wait_lines("the late lines", |l| texts(l, "late").len() == 5);
    rig.stop(agent);
    assert_eq!(texts(&lines, "late"), late);
    assert_one_id_per_line(&rig);
}

#[test]
fn many_rotated_files_left_unfinished_are_read_in_write_order() {
    // Twelve rotations, each after herald read the file's start and was
    // killed, with lines written into the file before it was rotated:
    // at the next start every rotated file has unread lines. They come
    // back oldest first, and only the newest is waited on for a writer.
    let rig = Rig::new("paths = [\"{logs}/app.log\"]\nstart_at = \"beginning\"");
    let path = rig.log("app.log");
    let mut n = 0usize;
    let mut next = |count: usize| {
        let lines: Vec<String> = (n..n + count)
            .map(|i| format!("n {i:07} payload"))
            .collect();
        n += count;
        lines
    };
    let mut app = open_append(&path);
    let mut seen = 0;
    for round in 0..12 {
        write_lines(&mut app, &next(100));
        seen += 100;
        let mut agent = rig.start();
        rig.wait_lines("the file's start", |l| l.len() >= seen);
        agent.sigkill();
        agent.wait_exit(LIMIT);
        write_lines(&mut app, &next(50));
        seen += 50;
        fs::rename(&path, rig.log(&format!("app.log.{round}"))).expect("rotate");
        app = open_append(&path);
    }
    write_lines(&mut app, &next(100));
    let total = 12 * 150 + 100;
    let agent = rig.start();
    let lines = rig.wait_count(total);
    rig.stop(agent);
    assert_eq!(rig.lines().len(), total, "every line once");
    assert_one_id_per_line(&rig);
    assert_all_under(&lines, &path);
    let numbers: Vec<usize> = lines
        .iter()
        .map(|l| l.line[2..9].parse().expect("numbered line"))
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(numbers, sorted, "the rotated files were read out of order");
}
