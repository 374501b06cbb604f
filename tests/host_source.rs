//! The host source end to end: the real binary watches the real machine
//! and posts to a mock endpoint. The first run announces the boot and then
//! stays quiet on an idle host; thresholds low enough that they must fire
//! fire once and hold; a restart with the saved state announces nothing
//! again; a threshold whose clear level is not below its high level is a
//! config mistake with its position.
//!
//! Time passes by the agent's own heartbeat (one every 500ms): waiting for
//! a number of beats is waiting for the agent to have run that long.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::{
    Herald, MockEndpoint, agent_and_sink, herald, prefect_rules, stop_agent, write_config,
};
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(30);
/// Heartbeats that make "a few seconds" of idle.
const IDLE_BEATS: usize = 6;

/// A temp dir, a mock endpoint, and a config with a host source (whose
/// extra keys are `host`) and a heartbeat to tell the time by.
struct Rig {
    dir: TempDir,
    endpoint: MockEndpoint,
    config: PathBuf,
}

impl Rig {
    fn new(host: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = MockEndpoint::start();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
{head}
[[sources.heartbeat]]
name = "clock"
interval = "500ms"

[[sources.host]]
name = "host"
interval = "200ms"
{host}
"#,
                head = agent_and_sink(&endpoint.url()),
            ),
        );
        Rig {
            dir,
            endpoint,
            config,
        }
    }

    fn start(&self) -> Herald {
        let agent = herald()
            .args(["run", "--config"])
            .arg(&self.config)
            .env("HERALD_AGENT_DATA_DIR", self.dir.path().join("data"))
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("HostSourceStarted"), LIMIT);
        agent
    }

    /// Every accepted event, checked against Prefect's rules.
    fn events(&self) -> Vec<Value> {
        let events = self.endpoint.accepted_events();
        for event in &events {
            prefect_rules::check(event).unwrap_or_else(|e| panic!("{e}: {event}"));
        }
        events
    }

    /// Waits until `beats` more heartbeats than `since` have arrived.
    fn wait_beats(&self, since: usize, beats: usize) {
        let want = since + beats;
        let arrived = support::wait_until(LIMIT, || {
            beat_count(&self.endpoint.accepted_events()) >= want
        });
        assert!(
            arrived,
            "{want} heartbeats did not arrive\n{}",
            self.endpoint.describe()
        );
    }
}

fn name(event: &Value) -> &str {
    event["event"].as_str().unwrap_or_default()
}

fn beat_count(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| name(e) == "herald.agent.heartbeat")
        .count()
}

fn host_events(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| name(e).starts_with("herald.host."))
        .collect()
}

fn named<'e>(events: &[&'e Value], event: &str) -> Vec<&'e Value> {
    events
        .iter()
        .copied()
        .filter(|e| name(e) == event)
        .collect()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("this test needs /proc/sys/kernel/random/boot_id")
        .trim()
        .to_owned()
}

#[test]
fn the_first_run_announces_the_boot_and_an_idle_host_does_not_flap() {
    let rig = Rig::new("");
    let agent = rig.start();
    rig.wait_beats(0, IDLE_BEATS);
    let events = rig.events();
    let host = host_events(&events);
    let booted = named(&host, "herald.host.booted");
    assert_eq!(booted.len(), 1, "one boot announced: {host:#?}");
    let booted = booted[0];
    assert_eq!(
        booted["resource"]["prefect.resource.id"],
        "herald.host.test-host"
    );
    assert_eq!(booted["payload"]["boot_id"], boot_id().as_str());
    assert_eq!(booted["payload"]["first_run"], true);
    assert!(booted["payload"]["boot_time"].is_string(), "{booted}");
    assert!(
        booted["payload"]["uptime_seconds"]
            .as_f64()
            .is_some_and(|u| u > 0.0)
    );
    // Whatever else this machine shows (a disk that really is full), no
    // resource changes level twice: at most one transition of each kind
    // of change per resource, and never both directions.
    let mut seen = std::collections::BTreeSet::new();
    for event in &host {
        let resource = event["resource"]["prefect.resource.id"]
            .as_str()
            .unwrap_or_default();
        let change = name(event)
            .trim_end_matches("-high")
            .trim_end_matches("-normal")
            .trim_end_matches("-up")
            .trim_end_matches("-down");
        assert!(
            seen.insert((resource.to_owned(), change.to_owned())),
            "{resource} flapped: {host:#?}"
        );
    }
    stop_agent(agent);
}

#[test]
fn a_threshold_that_must_fire_fires_once_holds_and_is_not_repeated_after_a_restart() {
    let rig = Rig::new(
        r#"memory = { high = 0.1, clear = 0.05, for = "0s" }
disk = { high = 0.01, clear = 0.001, for = "0s" }
mounts = { include = ["/"] }
"#,
    );
    let agent = rig.start();
    rig.wait_beats(0, IDLE_BEATS);
    let events = rig.events();
    let host = host_events(&events);
    let high = named(&host, "herald.host.memory-high");
    assert_eq!(high.len(), 1, "one memory-high: {host:#?}");
    assert!(
        named(&host, "herald.host.memory-normal").is_empty(),
        "it holds"
    );
    let high = high[0];
    assert_eq!(
        high["resource"]["prefect.resource.id"],
        "herald.host.test-host"
    );
    let used = high["payload"]["used_percent"]
        .as_f64()
        .expect("used_percent");
    assert!(used > 0.1 && used < 100.0, "{high}");
    assert_eq!(high["payload"]["high"], 0.1);
    assert!(
        high["payload"]["total_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    );

    let disk = named(&host, "herald.host.disk-high");
    assert_eq!(disk.len(), 1, "one disk-high, for /: {host:#?}");
    let disk = disk[0];
    let resource = &disk["resource"];
    assert_eq!(resource["prefect.resource.id"], "herald.mount.test-host:/");
    assert_eq!(resource["herald.mount.point"], "/");
    assert!(resource["herald.mount.fs-type"].is_string(), "{disk}");
    let related = disk["related"].as_array().expect("related");
    assert!(
        related
            .iter()
            .any(|r| r["prefect.resource.id"] == "herald.host.test-host"),
        "the mount is related to its host: {disk}"
    );
    stop_agent(agent);

    // The same machine, the same boot, the levels still high: nothing new.
    let before = rig.events();
    let agent = rig.start();
    rig.wait_beats(beat_count(&before), IDLE_BEATS);
    let after = rig.events();
    let again = host_events(&after[before.len()..]);
    assert!(again.is_empty(), "re-announced after a restart: {again:#?}");
    let stopped = stop_agent(agent);
    assert!(
        stopped
            .stderr_lines()
            .iter()
            .any(|l| l.contains("first_run=false")),
        "the second run had state to start from\n{}",
        stopped.describe()
    );
}

#[test]
fn a_clear_level_not_below_high_is_a_mistake_with_its_position() {
    let rig = Rig::new("cpu = { high = 80, clear = 80 }\n");
    let run = herald()
        .args(["run", "--config"])
        .arg(&rig.config)
        .env("HERALD_AGENT_DATA_DIR", rig.dir.path().join("data"))
        .run(LIMIT);
    assert_eq!(run.code(), Some(78), "{}", run.stderr_text());
    // The rig's config puts the host source's own keys from line 19 on.
    let expected = format!(
        "{}:19:28: `cpu`: clear (80) must be below high (80)",
        rig.config.display()
    );
    assert!(
        run.stderr.iter().any(|l| l.contains(&expected)),
        "expected {expected:?} in:\n{}",
        run.stderr_text()
    );
    assert!(rig.endpoint.requests().is_empty(), "nothing was started");
}
