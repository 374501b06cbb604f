//! kill -9 at random moments while herald tails a file that keeps
//! growing: at the end the endpoint holds every written line, and every
//! line under a single id (so deduplication by id, as Prefect does, leaves
//! exactly one copy of each). The queue's segments are small, so that the
//! kills also land while acked segments' files are being written over.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{MockEndpoint, herald, write_config};

const LIMIT: Duration = Duration::from_secs(60);
const KILLS: usize = 10;

#[test]
fn sigkill_while_tailing_a_growing_file_loses_and_duplicates_nothing() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("logs");
    let log = logs.join("app.log");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[sink]
url = "{url}"
batch_timeout = "20ms"
max_events_per_second = 0

# The smallest segments: they fill, get acked and are written over (see
# the queue's segment reuse) many times between the kills.
[queue]
segment_bytes = "64KiB"

[[sources.file]]
name = "app"
paths = ["{logs}/*.log"]
start_at = "beginning"
"#,
            url = endpoint.url(),
            logs = logs.display()
        ),
    );
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };

    // The application: five lines every ~5ms.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open log");
            let mut n = 0u64;
            while writing.load(Ordering::SeqCst) {
                let mut burst = String::new();
                for _ in 0..5 {
                    burst.push_str(&format!("line {n:08} {}\n", "x".repeat((n % 50) as usize)));
                    n += 1;
                }
                file.write_all(burst.as_bytes()).expect("write");
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };

    for _ in 0..KILLS {
        let mut agent = herald()
            .args(["run", "--config"])
            .arg(&config)
            .cwd(dir.path())
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("FileSourceStarted"), LIMIT);
        // The point of the test is to kill at an arbitrary moment.
        std::thread::sleep(Duration::from_millis(random(600)));
        agent.sigkill();
        agent.wait_exit(LIMIT);
        for l in agent.stderr_lines() {
            if l.contains("FileTailStarted") || l.contains("QueueRecovered") {
                println!("{l}");
            }
        }
    }
    writing.store(false, Ordering::SeqCst);
    let written = writer.join().expect("writer");

    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&config)
        .cwd(dir.path())
        .spawn();
    let text = fs::read_to_string(&log).expect("read log");
    let expected: Vec<&str> = text.lines().collect();
    assert_eq!(expected.len() as u64, written);
    let deadline = Instant::now() + LIMIT;
    let mut by_line: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut copies;
    loop {
        by_line.clear();
        copies = 0;
        for event in endpoint.accepted_events() {
            let Some(line) = event["payload"]["line"].as_str() else {
                continue;
            };
            copies += 1;
            by_line
                .entry(line.to_owned())
                .or_default()
                .insert(event["id"].as_str().expect("id").to_owned());
        }
        if by_line.len() >= expected.len() || Instant::now() >= deadline {
            break;
        }
        // Each look parses every body received: leave the machine to
        // herald in between.
        std::thread::sleep(Duration::from_millis(1000));
    }
    agent.sigterm();
    let status = agent.wait_exit(LIMIT);
    let log_of_last_run = agent.stderr_lines().join("\n");
    assert_eq!(status.code(), Some(0), "{log_of_last_run}");

    let missing: Vec<&&str> = expected
        .iter()
        .filter(|l| !by_line.contains_key(**l))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} written lines never arrived, e.g. {missing:?}\n{log_of_last_run}",
        expected.len() - by_line.len().min(expected.len()),
        expected.len()
    );
    let written_set: BTreeSet<&str> = expected.iter().copied().collect();
    let extra: Vec<&String> = by_line
        .keys()
        .filter(|l| !written_set.contains(l.as_str()))
        .take(5)
        .collect();
    assert!(extra.is_empty(), "lines never written arrived: {extra:?}");
    let split: Vec<(&String, &BTreeSet<String>)> = by_line
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .take(5)
        .collect();
    assert!(
        split.is_empty(),
        "lines delivered under several ids: {split:?}"
    );
    println!(
        "{} lines written, {} copies accepted ({} resent after kills, same ids)",
        expected.len(),
        copies,
        copies - expected.len()
    );
}
