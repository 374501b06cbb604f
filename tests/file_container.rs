//! Container logs end to end with the real binary: CRI and Docker
//! json-file fixtures (pieces joined per stream, both streams, bad
//! timestamps and framing, lines over `max_line_bytes`, a line whose last
//! piece never comes, a crash in the middle of a joined line), and a
//! kubelet pod-log tree in a temp dir, rotated the way the kubelet does
//! it, with pods appearing and disappearing.

mod support;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::files::{LIMIT, Rig};
use support::wait_until;

/// A line event as the endpoint holds it (first copy of each id).
#[derive(Debug, Clone)]
struct Got {
    line: String,
    stream: Option<String>,
    occurred: String,
    partial: bool,
    truncated: bool,
    offset: u64,
    resource_stream: Option<String>,
    related: Vec<(String, String)>,
    event: Value,
}

fn got(rig: &Rig) -> Vec<Got> {
    rig.endpoint
        .distinct_events("herald.log.line")
        .into_iter()
        .map(|e| Got {
            line: e["payload"]["line"].as_str().unwrap_or_default().to_owned(),
            stream: e["payload"]["stream"].as_str().map(str::to_owned),
            occurred: e["occurred"].as_str().unwrap_or_default().to_owned(),
            partial: e["payload"]["partial"] == Value::Bool(true),
            truncated: e["payload"]["truncated"] == Value::Bool(true),
            offset: e["payload"]["offset"].as_u64().unwrap_or_default(),
            resource_stream: e["resource"]["herald.log.stream"]
                .as_str()
                .map(str::to_owned),
            related: e["related"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|r| {
                            (
                                r["prefect.resource.role"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                r["prefect.resource.id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            event: e,
        })
        .collect()
}

fn wait_got(rig: &Rig, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let mut last = Vec::new();
    let ok = wait_until(LIMIT, || {
        last = got(rig);
        done(&last)
    });
    assert!(
        ok,
        "waited for {what}; got {:#?}",
        last.iter().map(|g| &g.line).collect::<Vec<_>>()
    );
    last
}

fn find<'a>(lines: &'a [Got], text: &str) -> &'a Got {
    lines.iter().find(|g| g.line == text).unwrap_or_else(|| {
        panic!(
            "no line {text:?} in {:#?}",
            lines.iter().map(|g| &g.line).collect::<Vec<_>>()
        )
    })
}

fn append_raw(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write");
}

#[test]
fn cri_lines_arrive_joined_with_their_own_time_and_stream() {
    let rig = Rig::new(
        "paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"\nformat = \"cri\"\nmax_line_bytes = \"1KiB\"",
    );
    let path = rig.log("c.log");
    let long_a = "a".repeat(600);
    let long_b = "b".repeat(600);
    let fixture = [
        "2024-05-01T10:00:00.123456789Z stdout F one".to_owned(),
        // A stdout line in two pieces, a stderr line in two pieces, the
        // streams interleaved as containerd writes them.
        "2024-05-01T10:00:01.000001Z stdout P x-".to_owned(),
        "2024-05-01T10:00:01.000002Z stderr P err-".to_owned(),
        "2024-05-01T10:00:01.000003Z stdout P y-".to_owned(),
        "2024-05-01T10:00:01.000004Z stderr F part".to_owned(),
        "2024-05-01T10:00:01.000005Z stdout F z".to_owned(),
        // Over max_line_bytes once joined: cut, the rest dropped.
        format!("2024-05-01T10:00:02Z stdout P {long_a}"),
        format!("2024-05-01T10:00:02Z stdout P {long_b}"),
        "2024-05-01T10:00:02Z stdout F dropped".to_owned(),
        "2024-05-01T10:00:03+02:00 stderr F with an offset".to_owned(),
        "yesterday stdout F bad time".to_owned(),
        "not a cri line at all".to_owned(),
        "2024-05-01T10:00:04Z stdout F ".to_owned(),
        "2024-05-01T10:00:05Z stderr P never finished".to_owned(),
    ];
    append_raw(&path, &(fixture.join("\n") + "\n"));
    let agent = rig.start();
    // The unfinished line comes out once its last piece is overdue.
    let lines = wait_got(&rig, "every line", |l| l.len() >= 9);
    agent.wait_for_stderr_line(|l| l.contains("FileLineUnparsed"), LIMIT);
    rig.stop(agent);
    let texts: Vec<&str> = lines.iter().map(|g| g.line.as_str()).collect();
    assert_eq!(lines.len(), 9, "{texts:?}");

    let one = find(&lines, "one");
    assert_eq!(one.occurred, "2024-05-01T10:00:00.123456Z");
    assert_eq!(one.stream.as_deref(), Some("stdout"));
    assert_eq!(one.resource_stream.as_deref(), Some("stdout"));
    assert_eq!(one.offset, 0);

    let joined = find(&lines, "x-y-z");
    assert_eq!(joined.stream.as_deref(), Some("stdout"));
    assert_eq!(
        joined.occurred, "2024-05-01T10:00:01.000001Z",
        "the first piece's time"
    );
    let err = find(&lines, "err-part");
    assert_eq!(err.stream.as_deref(), Some("stderr"));
    assert_eq!(err.resource_stream.as_deref(), Some("stderr"));
    assert!(!joined.partial && !err.partial);

    let cut = lines
        .iter()
        .find(|g| g.line.starts_with("aaa"))
        .expect("the long line");
    assert_eq!(cut.line.len(), 1024);
    assert_eq!(cut.line, format!("{long_a}{}", &long_b[..424]));
    assert!(cut.truncated);
    assert!(!texts.contains(&"dropped"));

    assert_eq!(
        find(&lines, "with an offset").occurred,
        "2024-05-01T08:00:03.000000Z"
    );
    let bad = find(&lines, "bad time");
    assert!(bad.occurred.starts_with("20") && !bad.occurred.starts_with("2024-05-01"));
    assert_eq!(bad.stream.as_deref(), Some("stdout"));
    let alien = find(&lines, "not a cri line at all");
    assert_eq!(alien.stream, None);
    assert_eq!(alien.resource_stream, None);
    assert!(
        find(&lines, "").stream.is_some(),
        "an empty message is a line"
    );

    let unfinished = find(&lines, "never finished");
    assert!(unfinished.partial);
    assert_eq!(unfinished.stream.as_deref(), Some("stderr"));

    // Prefect's rules hold for every event.
    for g in &lines {
        support::prefect_rules::check(&g.event).expect("a valid event");
    }
}

#[test]
fn a_crash_in_the_middle_of_a_joined_line_sends_it_once_and_whole() {
    let rig = Rig::new("paths = [\"{logs}/*.log\"]\nstart_at = \"beginning\"\nformat = \"cri\"");
    let path = rig.log("c.log");
    append_raw(&path, "2024-05-01T10:00:00Z stdout F before\n");
    let mut agent = rig.start();
    wait_got(&rig, "the first line", |l| l.len() == 1);
    append_raw(&path, "2024-05-01T10:00:01Z stdout P first half, \n");
    append_raw(&path, "2024-05-01T10:00:01Z stderr F meanwhile\n");
    wait_got(&rig, "the stderr line", |l| l.len() == 2);
    // The checkpoint holds at the unfinished line.
    let state = rig.dir.path().join("data/state/file-app.json");
    let offset = || -> Option<u64> {
        let json: Value = serde_json::from_slice(&fs::read(&state).ok()?).ok()?;
        json["files"][0]["offset"].as_u64()
    };
    assert!(
        wait_until(LIMIT, || offset() == Some(37)),
        "checkpoint {:?}",
        offset()
    );
    agent.sigkill();
    agent.wait_exit(LIMIT);
    append_raw(&path, "2024-05-01T10:00:02Z stdout F second half\n");
    let agent = rig.start();
    let lines = wait_got(&rig, "the joined line", |l| l.len() >= 3);
    rig.stop(agent);
    let texts: Vec<&str> = lines.iter().map(|g| g.line.as_str()).collect();
    assert_eq!(texts, ["before", "meanwhile", "first half, second half"]);
    assert_eq!(find(&lines, "first half, second half").offset, 37);
}

fn docker_line(log: &str, stream: &str, time: &str) -> String {
    serde_json::json!({"log": log, "stream": stream, "time": time}).to_string()
}

#[test]
fn docker_json_lines_arrive_joined_with_their_own_time_and_stream() {
    let rig = Rig::new(
        "paths = [\"{logs}/*-json.log\"]\nstart_at = \"beginning\"\nformat = \"docker\"\nmax_line_bytes = \"64KiB\"",
    );
    let path = rig.log("abc-json.log");
    let piece = "p".repeat(16 * 1024);
    let mut fixture = vec![
        docker_line(
            "hello \"docker\"\n",
            "stdout",
            "2024-05-01T10:00:00.000000001Z",
        ),
        // Split at 16 KiB, as the daemon does, with stderr in between.
        docker_line(&piece, "stdout", "2024-05-01T10:00:01Z"),
        docker_line("oops\n", "stderr", "2024-05-01T10:00:01.5Z"),
        docker_line(&piece, "stdout", "2024-05-01T10:00:01Z"),
        docker_line("end\n", "stdout", "2024-05-01T10:00:01Z"),
    ];
    // 100 KiB in pieces: cut at 64 KiB.
    for _ in 0..6 {
        fixture.push(docker_line(&piece, "stderr", "2024-05-01T10:00:02Z"));
    }
    fixture.push(docker_line("tail\n", "stderr", "2024-05-01T10:00:02Z"));
    fixture.push(docker_line("late\n", "stdout", "not a time"));
    fixture.push("{broken json".to_owned());
    append_raw(&path, &(fixture.join("\n") + "\n"));
    let agent = rig.start();
    let lines = wait_got(&rig, "every line", |l| l.len() >= 6);
    agent.wait_for_stderr_line(|l| l.contains("FileLineUnparsed"), LIMIT);
    rig.stop(agent);
    assert_eq!(
        lines.len(),
        6,
        "{:?}",
        lines.iter().map(|g| g.line.len()).collect::<Vec<_>>()
    );
    let hello = find(&lines, "hello \"docker\"");
    assert_eq!(hello.occurred, "2024-05-01T10:00:00.000000Z");
    assert_eq!(hello.stream.as_deref(), Some("stdout"));
    let joined = find(&lines, &format!("{piece}{piece}end"));
    assert_eq!(joined.stream.as_deref(), Some("stdout"));
    assert!(!joined.truncated);
    assert_eq!(find(&lines, "oops").stream.as_deref(), Some("stderr"));
    let cut = lines
        .iter()
        .find(|g| g.stream.as_deref() == Some("stderr") && g.line.len() > 1000)
        .expect("the long stderr line");
    assert_eq!(cut.line.len(), 64 * 1024);
    assert!(cut.truncated);
    let late = find(&lines, "late");
    assert!(!late.occurred.starts_with("2024"));
    assert_eq!(find(&lines, "{broken json").stream, None);
}

/// A kubelet-style pod log directory in a temp dir.
struct Pods {
    root: PathBuf,
}

impl Pods {
    fn container(&self, namespace: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let dir = self
            .root
            .join(format!("{namespace}_{pod}_{uid}"))
            .join(container);
        fs::create_dir_all(&dir).expect("pod dir");
        dir.join("0.log")
    }
}

fn cri(stream: &str, text: &str) -> String {
    format!("2024-05-01T10:00:00.000000001Z {stream} F {text}\n")
}

fn write_cri(file: &mut File, prefix: &str, range: std::ops::Range<usize>) {
    let mut text = String::new();
    for i in range {
        text.push_str(&cri("stdout", &format!("{prefix} {i:05}")));
    }
    file.write_all(text.as_bytes()).expect("write");
}

#[test]
fn a_kubelet_pod_log_tree_is_shipped_with_pods_rotations_and_all() {
    let rig = Rig::new(
        "paths = [\"{logs}/pods/*/*/*.log\"]\nkubernetes = true\nstart_at = \"beginning\"",
    );
    let pods = Pods {
        root: rig.logs.join("pods"),
    };
    let web = pods.container("shop", "web-7f9", "0b1c-uid-1", "nginx");
    let mut web_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&web)
        .expect("open");
    write_cri(&mut web_log, "web", 0..50);
    // A compressed rotation from earlier is not read.
    fs::write(
        web.with_file_name("0.log.20240430-101010.gz"),
        b"\x1f\x8b not text",
    )
    .expect("gz");
    let agent = rig.start();
    wait_got(&rig, "the web pod's lines", |l| l.len() >= 50);

    // A pod appears.
    let db = pods.container("data", "db-0", "9a8b-uid-2", "postgres");
    append_raw(&db, &cri("stderr", "db ready"));
    wait_got(&rig, "the db pod's line", |l| {
        l.iter().any(|g| g.line == "db ready")
    });

    // The kubelet rotates web's log: renames it, the runtime writes a few
    // more lines into it until it reopens, then writes to the new 0.log.
    fs::rename(&web, web.with_file_name("0.log.20240501-100000")).expect("rotate");
    write_cri(&mut web_log, "web", 50..60);
    let mut web_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&web)
        .expect("reopen");
    write_cri(&mut web_log, "web", 60..80);
    let mut db_log = OpenOptions::new().append(true).open(&db).expect("db");
    write_cri(&mut db_log, "dbline", 0..10);
    write_cri(&mut web_log, "web", 80..100);

    // The db pod goes away.
    fs::remove_dir_all(db.parent().and_then(Path::parent).expect("pod dir")).expect("remove pod");

    let lines = wait_got(&rig, "every line", |l| l.len() >= 111);
    rig.stop(agent);
    assert_eq!(lines.len(), 111, "every line once");

    let web_lines: Vec<&Got> = lines.iter().filter(|g| g.line.starts_with("web")).collect();
    let numbers: Vec<usize> = web_lines
        .iter()
        .map(|g| g.line[4..].parse().expect("numbered"))
        .collect();
    assert_eq!(
        numbers,
        (0..100).collect::<Vec<_>>(),
        "in write order, across the rotation"
    );
    let related: HashMap<String, String> = web_lines[99].related.iter().cloned().collect();
    assert_eq!(
        related.get("pod").map(String::as_str),
        Some("herald.pod.shop.web-7f9")
    );
    assert_eq!(
        related.get("container").map(String::as_str),
        Some("herald.container.shop.web-7f9.nginx")
    );
    let e = &web_lines[0].event;
    assert_eq!(e["payload"]["stream"], "stdout");
    assert_eq!(e["occurred"], "2024-05-01T10:00:00.000000Z");
    let db_line = find(&lines, "db ready");
    let related: HashMap<String, String> = db_line.related.iter().cloned().collect();
    assert_eq!(
        related.get("pod").map(String::as_str),
        Some("herald.pod.data.db-0")
    );
    let pod = db_line.event["related"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["prefect.resource.role"] == "pod"))
        .expect("the pod");
    assert_eq!(pod["herald.pod.namespace"], "data");
    assert_eq!(pod["herald.pod.uid"], "9a8b-uid-2");
    assert_eq!(pod["prefect.resource.name"], "db-0");
    // Every line relates its own pod, whichever file was read before it.
    for g in &lines {
        let pod = if g.line.starts_with("web") {
            "herald.pod.shop.web-7f9"
        } else {
            "herald.pod.data.db-0"
        };
        assert!(
            g.related.contains(&("pod".to_owned(), pod.to_owned())),
            "{:?} relates {:?}",
            g.line,
            g.related
        );
        support::prefect_rules::check(&g.event).expect("a valid event");
    }
}
