//! kill -9 at random moments while the endpoint is down: whatever the
//! queue held stays, in order, and reaches the endpoint once it is back,
//! with the ids and bytes it was queued with. (A modest version; the long
//! one belongs to a reliability run.)

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{MockEndpoint, herald, write_config};

const LIMIT: Duration = Duration::from_secs(30);
const KILLS: usize = 8;

/// Every unacked event in the queue, in queue order, read by the real
/// `herald queue inspect --dump`.
fn queued(data_dir: &Path) -> Vec<Value> {
    let run = herald()
        .args(["queue", "inspect", "--dump", "1000000", "--data-dir"])
        .arg(data_dir)
        .run(LIMIT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr_text());
    run.stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad dump line ({e}): {l}")))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_that_was_queued() {
    let endpoint = MockEndpoint::start();
    endpoint.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            "[sink]\nurl = \"{}\"\ntimeout = \"1s\"\n\n[[sources.heartbeat]]\nname = \"beat\"\ninterval = \"100ms\"\n",
            endpoint.url()
        ),
    );
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut random_ms = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };

    let mut kept: Vec<String> = Vec::new();
    for round in 0..KILLS {
        let mut agent = herald()
            .args(["run", "--config"])
            .arg(&config)
            .env("HERALD_AGENT_DATA_DIR", &data_dir)
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
        // "AgentStarted" is logged once the started event is on its way,
        // not yet queued: wait until the queue holds it, so that every run
        // leaves something to check.
        assert!(
            support::wait_until(LIMIT, || queued(&data_dir).len() > kept.len()),
            "round {round}: the started event was never queued"
        );
        // The point of the test is to kill at an arbitrary moment.
        std::thread::sleep(Duration::from_millis(random_ms(400)));
        agent.sigkill();
        agent.wait_exit(LIMIT);

        let now = ids(&queued(&data_dir));
        assert!(
            now.starts_with(&kept),
            "round {round}: the queue lost or reordered events it held before the kill\nbefore: {kept:?}\nafter:  {now:?}"
        );
        assert!(
            now.len() > kept.len(),
            "round {round}: each run queues at least its started event"
        );
        kept = now;
    }

    endpoint.start_again();
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&config)
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .spawn();
    let wanted: HashSet<&String> = kept.iter().collect();
    let arrived = |endpoint: &MockEndpoint| {
        let ids: HashSet<String> = ids(&endpoint.accepted_events()).into_iter().collect();
        wanted.iter().all(|id| ids.contains(*id))
    };
    assert!(
        support::wait_until(LIMIT, || arrived(&endpoint)),
        "not every queued event arrived\n{}",
        endpoint.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );

    // In order, none missing, and no event sent twice: the endpoint was
    // down, so nothing could have been accepted before.
    let accepted = ids(&endpoint.accepted_events());
    assert_eq!(
        &accepted[..kept.len()],
        kept.as_slice(),
        "the backlog arrives first, in queue order"
    );
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "no event was delivered twice");
    assert!(
        queued(&data_dir).is_empty(),
        "the queue is drained and acked"
    );
}
