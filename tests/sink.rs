//! The real binary against an endpoint that fails on purpose: what arrives,
//! in what order, what is retried, what is kept as a dead letter.

mod support;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{
    MockEndpoint, Reply, dead_letters, herald, http_date, run_agent as run, stop_agent as stop,
    wait_until, write_config,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A config with a fast heartbeat and quick retries; `sink` is added to
/// the `[sink]` table.
fn config(dir: &Path, endpoint: &MockEndpoint, sink: &str) -> PathBuf {
    let defaults = [
        ("timeout", "\"500ms\""),
        ("retry_initial", "\"10ms\""),
        ("retry_max", "\"200ms\""),
        ("batch_timeout", "\"50ms\""),
    ];
    let mut table = format!("url = \"{}\"\n", endpoint.url());
    for (key, value) in defaults {
        if !sink.lines().any(|l| l.starts_with(&format!("{key} ="))) {
            table.push_str(&format!("{key} = {value}\n"));
        }
    }
    write_config(
        dir,
        &format!(
            r#"
[agent]
hostname = "sink-test"
shutdown_grace = "2s"

[[sources.heartbeat]]
name = "beat"
interval = "100ms"

[sink]
{table}{sink}
"#
        ),
    )
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Events accepted, each id once (as Prefect keeps the first copy).
fn delivered(endpoint: &MockEndpoint) -> Vec<Value> {
    endpoint.distinct_events("")
}

#[test]
fn failures_are_retried_until_delivered_once_and_in_order() {
    let endpoint = MockEndpoint::start();
    endpoint.push_all([
        Reply::Status(500),
        Reply::Reset,
        Reply::Stall(Duration::from_secs(2)),
        Reply::Status(503),
        Reply::Status(408),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint, ""));
    endpoint.wait_for_events(8, LIMIT);
    let agent = stop(agent);
    let accepted = endpoint.accepted_events();
    let unique: HashSet<String> = ids(&accepted).into_iter().collect();
    assert_eq!(unique.len(), accepted.len(), "nothing accepted twice");
    assert_eq!(accepted[0]["event"], "herald.agent.started");
    let times: Vec<&str> = accepted
        .iter()
        .map(|e| e["occurred"].as_str().expect("occurred"))
        .collect();
    assert!(times.is_sorted(), "in order: {times:?}");
    // The first five attempts carried the same batch.
    let posts = endpoint.event_posts();
    assert!(posts[..6].iter().all(|p| p.body == posts[0].body));
    assert!(dead_letters(dir.path()).is_empty());
    let failures = agent
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("BatchSendFailed"))
        .count();
    assert_eq!(failures, 5, "{}", agent.describe());
}

#[test]
fn retry_after_is_honoured_in_both_forms() {
    let endpoint = MockEndpoint::start();
    endpoint.push_all([
        Reply::retry_after(429, "1"),
        // The date is fixed now, before herald starts; 4 s leaves more than
        // a second after the first wait, whole seconds rounding included.
        Reply::retry_after(503, &http_date(Duration::from_secs(4))),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint, ""));
    endpoint.wait_for_events(1, LIMIT);
    stop(agent);
    let posts = endpoint.event_posts();
    let first_gap = posts[1].received - posts[0].received;
    let second_gap = posts[2].received - posts[1].received;
    // retry_initial is 10ms: only Retry-After explains these waits.
    assert!(
        first_gap >= Duration::from_millis(950),
        "{first_gap:?}\n{}",
        endpoint.describe()
    );
    assert!(second_gap >= Duration::from_millis(950), "{second_gap:?}");
}

#[test]
fn a_422_dead_letters_the_named_event_and_delivers_the_rest() {
    let endpoint = MockEndpoint::start();
    endpoint.push(Reply::Unprocessable { index: 1 });
    let dir = tempfile::tempdir().expect("temp dir");
    // A batch of exactly four: started and three heartbeats.
    let config = config(
        dir.path(),
        &endpoint,
        "batch_max_events = 4\nbatch_timeout = \"5s\"",
    );
    let agent = run(dir.path(), &config);
    endpoint.wait_for_events(6, LIMIT);
    stop(agent);
    let first = endpoint.event_posts()[0].events();
    assert_eq!(first.len(), 4);
    let rejected = first[1]["id"].as_str().expect("id").to_owned();
    let delivered_ids = ids(&delivered(&endpoint));
    assert!(
        !delivered_ids.contains(&rejected),
        "the bad event is not sent again"
    );
    let rest: Vec<String> = ids(&first)
        .into_iter()
        .filter(|id| *id != rejected)
        .collect();
    assert_eq!(delivered_ids[..3], rest[..], "the rest, in order, first");

    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["status"], 422);
    assert_eq!(letters[0]["event"]["id"], rejected.as_str());
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("resource: Field required")),
        "{}",
        letters[0]
    );
    let listed = herald()
        .args(["dead-letter", "list", "--data-dir"])
        .arg(dir.path().join("data"))
        .run(LIMIT);
    assert!(
        listed.stdout_text().contains(&rejected),
        "{}",
        listed.stdout_text()
    );

    // After a fix, retry puts it back in the queue; the next run sends it.
    let retried = herald()
        .args(["dead-letter", "retry", "--data-dir"])
        .arg(dir.path().join("data"))
        .run(LIMIT);
    assert_eq!(retried.code(), Some(0), "{}", retried.stderr_text());
    assert!(retried.stdout_text().contains("re-queued 1 event"));
    assert!(dead_letters(dir.path()).is_empty());
    let agent = run(dir.path(), &config);
    assert!(
        wait_until(LIMIT, || ids(&endpoint.accepted_events())
            .contains(&rejected)),
        "{}",
        endpoint.describe()
    );
    stop(agent);
}

#[test]
fn dead_letter_retry_refuses_while_the_agent_runs() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint, ""));
    agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    let retried = herald()
        .args(["dead-letter", "retry", "--data-dir"])
        .arg(dir.path().join("data"))
        .run(LIMIT);
    assert_eq!(retried.code(), Some(1));
    assert!(
        retried.stderr_text().contains("stop the agent first"),
        "{}",
        retried.stderr_text()
    );
    stop(agent);
}

#[test]
fn a_422_naming_no_item_is_bisected_down_to_the_bad_event() {
    let endpoint = MockEndpoint::start();
    let opaque = || Reply::StatusWithHeaders(422, vec![], r#"{"detail":"invalid"}"#.to_owned());
    // 4 events: all (422), first half (204), second half (422), its first
    // (204), its second (422): that one is the bad event.
    endpoint.push_all([
        opaque(),
        Reply::Status(204),
        opaque(),
        Reply::Status(204),
        opaque(),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &endpoint,
        "batch_max_events = 4\nbatch_timeout = \"5s\"",
    );
    let agent = run(dir.path(), &config);
    endpoint.wait_for_events(5, LIMIT);
    stop(agent);
    let posts = endpoint.event_posts();
    let sizes: Vec<usize> = posts[..5].iter().map(|p| p.events().len()).collect();
    assert_eq!(sizes, [4, 2, 2, 1, 1]);
    let batch = posts[0].events();
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event"]["id"], batch[3]["id"]);
    let delivered_ids = ids(&delivered(&endpoint));
    assert_eq!(delivered_ids[..3], ids(&batch)[..3]);
}

#[test]
fn wrong_credentials_are_loud_once_and_never_drop_events() {
    let endpoint = MockEndpoint::start();
    endpoint.push_all([Reply::Status(401), Reply::Status(403), Reply::Status(404)]);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(dir.path(), &endpoint, "api_key = \"pnu_wrong_key_123\""),
    );
    let events = endpoint.wait_for_events(1, LIMIT);
    let agent = stop(agent);
    assert_eq!(events[0]["event"], "herald.agent.started");
    let logs = agent.stderr_lines();
    let loud = logs
        .iter()
        .filter(|l| l.contains("EndpointRefusedCredentials"))
        .count();
    assert_eq!(loud, 1, "at most once a minute:\n{}", logs.join("\n"));
    assert!(dead_letters(dir.path()).is_empty(), "nothing dropped");
    assert!(
        !logs.join("\n").contains("pnu_wrong_key_123"),
        "the key never shows"
    );
    // Retried at retry_max (200ms), not at retry_initial (10ms).
    let posts = endpoint.event_posts();
    assert!(posts[1].received - posts[0].received >= Duration::from_millis(180));
}

#[test]
fn another_4xx_is_retried_once_then_dead_lettered() {
    let endpoint = MockEndpoint::start();
    endpoint.push_all([Reply::Status(400), Reply::Status(400)]);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint, ""));
    endpoint.wait_for_events(1, LIMIT);
    stop(agent);
    let posts = endpoint.event_posts();
    assert_eq!(posts[0].body, posts[1].body, "retried once, same batch");
    let refused = posts[0].events();
    let letters = dead_letters(dir.path());
    assert_eq!(
        ids(&letters
            .iter()
            .map(|l| l["event"].clone())
            .collect::<Vec<_>>()),
        ids(&refused)
    );
    assert!(letters.iter().all(|l| l["status"] == 400));
    let delivered_ids: HashSet<String> = ids(&delivered(&endpoint)).into_iter().collect();
    assert!(ids(&refused).iter().all(|id| !delivered_ids.contains(id)));
}

#[test]
fn the_rate_limit_paces_sending() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint,
            "max_events_per_second = 2\nburst = 2\nbatch_max_events = 1",
        ),
    );
    // Heartbeats come at 10/s; at 2/s with a burst of 2, one event per
    // batch, 8 events take at least (8 - 2) / 2 = 3 s.
    let started = std::time::Instant::now();
    endpoint.wait_for_events(8, LIMIT);
    let took = started.elapsed();
    stop(agent);
    assert!(
        took >= Duration::from_millis(2800),
        "{took:?}\n{}",
        endpoint.describe()
    );
}

#[test]
fn custom_headers_and_gzip_bodies() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint,
            "compression = \"gzip\"\n[sink.headers]\n\"X-Scope-OrgID\" = \"team-secret-a\"",
        ),
    );
    endpoint.wait_for_requests(1, LIMIT);
    let agent = stop(agent);
    let post = &endpoint.requests()[0];
    assert_eq!(post.header("x-scope-orgid"), Some("team-secret-a"));
    assert_eq!(post.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(post.body.as_slice())
        .read_to_string(&mut text)
        .expect("a gzip body");
    let events: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    assert_eq!(events[0]["event"], "herald.agent.started");
    assert!(!agent.stderr_lines().join("\n").contains("team-secret-a"));
}
