//! A full queue with the real binary: `drop_oldest` drops the oldest
//! events, counts them and says so in a `herald.agent.events-dropped`
//! event; `block` stops reading and loses nothing.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use support::{MockEndpoint, herald, wait_until, write_config};

const LIMIT: Duration = Duration::from_secs(60);

/// Writes `n` numbered lines of about 200 bytes.
fn write_lines(path: &std::path::Path, n: usize) {
    let mut file = std::fs::File::create(path).expect("create log");
    for i in 0..n {
        writeln!(file, "line {i:08} {}", "x".repeat(180)).expect("write");
    }
}

fn config(dir: &std::path::Path, endpoint: &MockEndpoint, when_full: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[queue]
max_bytes = "1MiB"
when_full = "{when_full}"

[sink]
url = "{url}"
timeout = "500ms"
retry_initial = "50ms"
retry_max = "200ms"
max_events_per_second = 0
# Small batches: the one the sender holds is delivered even when counted
# as dropped, so it should be small next to what is dropped.
batch_max_events = 50

[[sources.file]]
name = "app"
paths = ["{logs}/*.log"]
start_at = "beginning"
"#,
            url = endpoint.url(),
            logs = dir.join("logs").display()
        ),
    )
}

fn line_numbers(events: &[Value]) -> BTreeSet<u64> {
    events
        .iter()
        .filter_map(|e| e["payload"]["line"].as_str())
        .filter_map(|l| l.get(5..13)?.parse().ok())
        .collect()
}

#[test]
fn drop_oldest_drops_counts_and_announces() {
    let endpoint = MockEndpoint::start();
    endpoint.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    // About 3 MiB of events into a 1 MiB queue.
    write_lines(&dir.path().join("logs/app.log"), 4000);
    let config = config(dir.path(), &endpoint, "drop_oldest");
    let mut agent = herald().args(["run", "--config"]).arg(&config).spawn();
    agent.wait_for_stderr_line(|l| l.contains("EventsDropped"), LIMIT);
    endpoint.start_again();
    let announced = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "herald.agent.events-dropped")
            .filter_map(|e| e["payload"]["count"].as_u64())
            .sum::<u64>()
    };
    // The drop is announced, and every line either arrived or was
    // counted as dropped.
    assert!(
        wait_until(LIMIT, || {
            let events = endpoint.accepted_events();
            let announced = announced(&events);
            announced > 0 && line_numbers(&events).len() as u64 + announced >= 4000
        }),
        "{}",
        endpoint.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    let events = endpoint.accepted_events();
    let dropped = announced(&events);
    let arrived = line_numbers(&events);
    assert!(arrived.contains(&3999), "the newest lines are kept");
    // The batch the sender already held is still delivered (the queue doc
    // says so); the lines after it up to the drop point are gone.
    let missing = (0..4000u64).filter(|n| !arrived.contains(n)).count() as u64;
    assert!(
        missing > 0 && missing <= dropped,
        "{missing} missing, {dropped} counted as dropped"
    );
    assert!(
        arrived.len() as u64 + dropped >= 4000,
        "{} arrived + {dropped} dropped cover all 4000 lines",
        arrived.len()
    );
}

#[test]
fn block_stops_reading_and_loses_nothing() {
    let endpoint = MockEndpoint::start();
    endpoint.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    write_lines(&dir.path().join("logs/app.log"), 4000);
    let config = config(dir.path(), &endpoint, "block");
    let mut agent = herald().args(["run", "--config"]).arg(&config).spawn();
    // Full: appends wait, reading stops. `queue inspect` shows the queue
    // near its cap (about 2,000 of these events fit in 1 MiB, each file's
    // resource being stored once per segment; the append that waits holds
    // up to a quarter of it) with part of the file still unread.
    let queued = |agent: &support::Herald| -> (u64, String) {
        let run = herald()
            .args(["queue", "inspect", "--data-dir"])
            .arg(agent.cwd().join("data"))
            .run(LIMIT);
        let line = run
            .stdout
            .iter()
            .find_map(|l| l.trim().strip_prefix("unacked: ").map(str::to_owned))
            .unwrap_or_default();
        let events = line.split(' ').next().and_then(|n| n.parse().ok());
        (events.unwrap_or(0), line)
    };
    assert!(
        wait_until(LIMIT, || queued(&agent).0 >= 700),
        "the queue fills up"
    );
    let (events, line) = queued(&agent);
    assert!(
        events < 4000 && (line.contains(" KiB") || line.contains(" 1.0 MiB")),
        "reading stopped with the queue within its 1 MiB: {line}"
    );
    endpoint.start_again();
    assert!(
        wait_until(LIMIT, || line_numbers(&endpoint.accepted_events()).len()
            == 4000),
        "{}",
        endpoint.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    assert!(
        !agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("EventsDropped")),
        "block never drops"
    );
}
