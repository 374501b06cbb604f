//! The real binary with `transport = "websocket"` against a websocket
//! endpoint that authenticates like Prefect and drops connections like
//! Prefect: every event arrives at least once (by id) across dropped
//! connections, a poison event ends up a dead letter instead of stopping
//! the queue, and credentials never show in the logs.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::tls::{ClientAuth, Pki};
use support::ws::{DropRule, WsAuth, WsEndpoint};
use support::{Herald, dead_letters, herald, wait_until, write_config};

const LIMIT: Duration = Duration::from_secs(30);

/// A websocket sink config with quick retries; `sink` is added to the
/// `[sink]` table (overriding the defaults here) and `interval` is the
/// heartbeat's.
fn config(dir: &Path, url: &str, interval: &str, sink: &str) -> PathBuf {
    let defaults = [
        ("timeout", "\"2s\""),
        ("retry_initial", "\"10ms\""),
        ("retry_max", "\"200ms\""),
        ("batch_timeout", "\"50ms\""),
    ];
    let mut table = format!("url = \"{url}\"\ntransport = \"websocket\"\n");
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
hostname = "ws-test"
shutdown_grace = "3s"

[[sources.heartbeat]]
name = "beat"
interval = "{interval}"

[sink]
{table}{sink}
"#
        ),
    )
}

/// Runs herald with every log line there is, so a secret that reached any
/// log would show.
fn run(dir: &Path, config: &Path) -> Herald {
    herald()
        .args(["run", "--config"])
        .arg(config)
        .env("HERALD_AGENT_DATA_DIR", dir.join("data"))
        .env("HERALD_LOG", "trace")
        .spawn()
}

/// Stops herald and checks it left nothing queued.
fn stop(mut agent: Herald) -> Herald {
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    agent
}

fn left_queued(agent: &Herald) -> Option<String> {
    agent
        .stderr_lines()
        .iter()
        .find(|l| l.contains("AgentStopped"))
        .and_then(|l| l.split("left_queued=").nth(1))
        .map(|n| n.split_whitespace().next().unwrap_or_default().to_owned())
}

fn id(event: &Value) -> String {
    event["id"].as_str().expect("an id").to_owned()
}

/// Asserts that no output line holds any of `secrets`.
fn assert_never_logged(agent: &Herald, secrets: &[&str]) {
    let output = format!(
        "{}\n{}",
        agent.stderr_lines().join("\n"),
        agent.stdout_lines().join("\n")
    );
    for secret in secrets {
        assert!(!output.contains(secret), "{secret:?} was logged");
    }
}

#[test]
fn every_event_is_delivered_after_the_auth_frame() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(Some("herald:ws-secret-123".into())));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &endpoint.url(),
        "100ms",
        "auth_string = \"herald:ws-secret-123\"",
    );
    let agent = run(dir.path(), &config);
    endpoint.wait_for_stored(5, LIMIT);
    let agent = stop(agent);
    assert_eq!(
        left_queued(&agent).as_deref(),
        Some("0"),
        "{}",
        agent.describe()
    );
    let stored = endpoint.stored();
    assert_eq!(stored[0]["event"], "herald.agent.started");
    let ids: HashSet<String> = stored.iter().map(id).collect();
    assert_eq!(
        ids.len(),
        stored.len(),
        "each event once when nothing fails"
    );
    let sent_line = agent
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("events_sent="))
        .unwrap_or_default();
    assert!(
        sent_line.contains(&format!("events_sent={}", stored.len())),
        "herald counts what the endpoint stored: {sent_line}\n{}",
        endpoint.describe()
    );
    for upgrade in endpoint.upgrades() {
        assert!(upgrade.authenticated);
        assert_eq!(upgrade.header("sec-websocket-protocol"), Some("prefect"));
        // base64("herald:ws-secret-123"), for proxies in front of the server.
        assert_eq!(
            upgrade.header("authorization"),
            Some("Basic aGVyYWxkOndzLXNlY3JldC0xMjM=")
        );
        assert!(
            upgrade
                .header("user-agent")
                .is_some_and(|a| a.starts_with("herald/"))
        );
    }
    assert!(
        endpoint
            .tokens()
            .iter()
            .all(|t| t.as_deref() == Some("herald:ws-secret-123"))
    );
    assert!(
        agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("websocket ws://127.0.0.1:")
                && l.contains("/api/events/in (auth frame with the auth string)")),
        "{}",
        agent.describe()
    );
    assert_never_logged(&agent, &["ws-secret-123", "aGVyYWxkOndzLXNlY3JldC0xMjM="]);
}

#[test]
fn a_dropped_connection_is_reopened_and_the_batch_sent_again() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(None));
    // The third event frame and whatever follows it on that connection are
    // lost, as when Prefect drops a connection.
    endpoint.drop_when(DropRule::AtArrival(2));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(dir.path(), &endpoint.url(), "100ms", ""),
    );
    assert!(
        wait_until(LIMIT, || endpoint.stored().len() >= 8
            && endpoint
                .arrivals()
                .iter()
                .all(|a| endpoint.stored_id(&id(&a.event)))),
        "{}",
        endpoint.describe()
    );
    let agent = stop(agent);
    assert_eq!(
        left_queued(&agent).as_deref(),
        Some("0"),
        "{}",
        agent.describe()
    );
    let arrivals = endpoint.arrivals();
    assert!(!arrivals[2].stored);
    let dropped = id(&arrivals[2].event);
    assert!(
        arrivals
            .iter()
            .any(|a| a.stored && a.connection > arrivals[2].connection && id(&a.event) == dropped),
        "sent again on a new connection:\n{}",
        endpoint.describe()
    );
    // Every event herald sent, the one dropped included, was stored.
    for arrival in &arrivals {
        assert!(
            endpoint.stored_id(&id(&arrival.event)),
            "{}",
            endpoint.describe()
        );
    }
    assert!(
        agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("BatchSendFailed")),
        "{}",
        agent.describe()
    );
    assert!(dead_letters(dir.path()).is_empty());
}

#[test]
fn a_connection_lost_after_the_settle_window_replays_the_last_batch() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(None));
    // A server slower than herald's settle window: it drops the connection
    // 600 ms after the first event, having kept nothing since. herald has
    // reported that batch delivered by then.
    endpoint.drop_when(DropRule::After(0, Duration::from_millis(600)));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint.url(), "1s", ""));
    assert!(
        wait_until(LIMIT, || endpoint
            .arrivals()
            .first()
            .is_some_and(|first| endpoint.stored_id(&id(&first.event)))),
        "{}",
        endpoint.describe()
    );
    let agent = stop(agent);
    let arrivals = endpoint.arrivals();
    let first = id(&arrivals[0].event);
    assert!(
        arrivals
            .iter()
            .any(|a| a.connection > arrivals[0].connection && id(&a.event) == first),
        "{}",
        endpoint.describe()
    );
    for arrival in &arrivals {
        assert!(
            endpoint.stored_id(&id(&arrival.event)),
            "{}",
            endpoint.describe()
        );
    }
    // Found lost before the next batch: resent quietly, no failed batch.
    let logs = agent.stderr_lines().join("\n");
    assert!(logs.contains("WebsocketBatchResending"), "{logs}");
    assert!(!logs.contains("BatchSendFailed"), "{logs}");
    assert!(dead_letters(dir.path()).is_empty(), "{}", agent.describe());
}

#[test]
fn a_lost_batch_that_cannot_be_resent_is_given_up_loudly_after_its_strikes() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(None));
    // The first batch is reported delivered before the slow server drops
    // the connection; its resends are then dropped at the start event
    // every time. herald cannot know more, so it names what may be lost
    // and goes on.
    endpoint.drop_when(DropRule::After(0, Duration::from_millis(600)));
    endpoint.drop_when(DropRule::OnEventName("herald.agent.started".into()));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(dir.path(), &config(dir.path(), &endpoint.url(), "1s", ""));
    let given_up = agent.wait_for_stderr_line(|l| l.contains("WebsocketBatchUnconfirmed"), LIMIT);
    let started = id(&endpoint.arrivals()[0].event);
    assert!(given_up.contains(&started), "{given_up}");
    // What came after is delivered.
    let later = endpoint.arrivals().len();
    assert!(
        wait_until(LIMIT, || endpoint
            .arrivals()
            .iter()
            .skip(later)
            .any(|a| a.stored)),
        "{}",
        endpoint.describe()
    );
    let agent = stop(agent);
    assert!(!endpoint.stored_id(&started));
    assert_eq!(
        left_queued(&agent).as_deref(),
        Some("0"),
        "{}",
        agent.describe()
    );
    assert!(dead_letters(dir.path()).is_empty());
}

#[test]
fn a_poison_event_becomes_a_dead_letter_and_the_rest_is_delivered() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(None));
    // Every connection that carries the start event is dropped, as Prefect
    // does with an event it cannot parse.
    endpoint.drop_when(DropRule::OnEventName("herald.agent.started".into()));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            "batch_max_events = 4\nbatch_timeout = \"2s\"",
        ),
    );
    endpoint.wait_for_stored(6, LIMIT);
    let letters = wait_for_dead_letters(dir.path(), 1);
    let agent = stop(agent);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["status"], 422);
    assert_eq!(letters[0]["event"]["event"], "herald.agent.started");
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("likely invalid")),
        "{}",
        letters[0]
    );
    let poison = letters[0]["event"]["id"].as_str().unwrap_or_default();
    assert!(!endpoint.stored_id(poison));
    // Halving 4 down to 1, each part given its strikes, delivered the
    // heartbeats that shared its batch, as everything else.
    for event in endpoint.arrivals() {
        let event_id = id(&event.event);
        if event_id != poison {
            assert!(endpoint.stored_id(&event_id), "{}", endpoint.describe());
        }
    }
    assert_eq!(
        left_queued(&agent).as_deref(),
        Some("0"),
        "{}",
        agent.describe()
    );
}

/// Polls `herald dead-letter list` until it shows `n` entries.
fn wait_for_dead_letters(dir: &Path, n: usize) -> Vec<Value> {
    let mut letters = Vec::new();
    wait_until(LIMIT, || {
        letters = dead_letters(dir);
        letters.len() >= n
    });
    letters
}

#[test]
fn a_refused_auth_string_is_loud_and_drops_nothing() {
    let endpoint = WsEndpoint::start(WsAuth::Frame(Some("herald:right".into())));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            "auth_string = \"herald:wrong-secret-456\"",
        ),
    );
    let loud = agent.wait_for_stderr_line(|l| l.contains("EndpointRefusedCredentials"), LIMIT);
    assert!(loud.contains("401"), "{loud}");
    let agent = stop(agent);
    assert!(endpoint.stored().is_empty());
    assert!(dead_letters(dir.path()).is_empty(), "nothing dropped");
    assert_ne!(
        left_queued(&agent).as_deref(),
        Some("0"),
        "{}",
        agent.describe()
    );
    assert_never_logged(&agent, &["wrong-secret-456"]);
}

#[test]
fn prefect_cloud_gets_the_key_in_a_header_and_no_auth_frame() {
    let endpoint = WsEndpoint::start(WsAuth::Bearer("pnu_cloud_key_789".into()));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            "api_key = \"pnu_cloud_key_789\"",
        ),
    );
    endpoint.wait_for_stored(3, LIMIT);
    let agent = stop(agent);
    assert!(endpoint.tokens().is_empty(), "no auth frame");
    for upgrade in endpoint.upgrades() {
        assert_eq!(upgrade.header("sec-websocket-protocol"), None);
    }
    assert_never_logged(&agent, &["pnu_cloud_key_789"]);

    // A wrong key is refused at the upgrade (401): loud, nothing dropped.
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            "api_key = \"pnu_wrong_000\"",
        ),
    );
    agent.wait_for_stderr_line(|l| l.contains("EndpointRefusedCredentials"), LIMIT);
    let agent = stop(agent);
    assert!(dead_letters(dir.path()).is_empty());
    assert_never_logged(&agent, &["pnu_wrong_000"]);
}

#[test]
fn wss_trusts_ca_file_and_refuses_an_unknown_ca() {
    let pki = Pki::new();
    let endpoint = WsEndpoint::start_tls(WsAuth::Frame(None), pki.server_config(ClientAuth::None));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(dir.path(), &endpoint.url(), "100ms", ""),
    );
    let failed = agent.wait_for_stderr_line(|l| l.contains("BatchSendFailed"), LIMIT);
    assert!(failed.contains("certificate"), "{failed}");
    stop(agent);
    assert!(endpoint.stored().is_empty());

    let ca_file = Value::String(pki.ca_file.display().to_string());
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            &format!("ca_file = {ca_file}"),
        ),
    );
    // What the refused run queued goes out with the second: two starts.
    let starts = || {
        endpoint
            .stored()
            .iter()
            .filter(|e| e["event"] == "herald.agent.started")
            .count()
    };
    assert!(
        wait_until(LIMIT, || starts() >= 2),
        "{}",
        endpoint.describe()
    );
    let agent = stop(agent);
    assert!(
        agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("websocket wss://127.0.0.1:")),
        "{}",
        agent.describe()
    );
}

#[test]
fn mutual_tls_over_wss() {
    let pki = Pki::new();
    let endpoint =
        WsEndpoint::start_tls(WsAuth::Frame(None), pki.server_config(ClientAuth::Required));
    let dir = tempfile::tempdir().expect("temp dir");
    let toml_path = |p: &Path| Value::String(p.display().to_string());
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            "100ms",
            &format!(
                "ca_file = {}\nclient_cert_file = {}\nclient_key_file = {}",
                toml_path(&pki.ca_file),
                toml_path(&pki.client_cert_file),
                toml_path(&pki.client_key_file)
            ),
        ),
    );
    endpoint.wait_for_stored(3, LIMIT);
    stop(agent);
    assert!(endpoint.handshake_errors().is_empty());
}
