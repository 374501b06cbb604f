//! The real binary running the pipeline: the embedded default on stdout,
//! posting to an HTTP endpoint, and stopping on signals.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{MockEndpoint, Reply, herald, prefect_rules, wait_until, write_config};

const LIMIT: Duration = Duration::from_secs(30);

fn event_named(line: &str, name: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == name)
}

#[test]
fn embedded_default_prints_lifecycle_and_heartbeat_events_that_prefect_accepts() {
    let mut agent = herald().arg("run").spawn();
    let started = agent.wait_for_stdout_line(|l| event_named(l, "herald.agent.started"), LIMIT);
    let beat = agent.wait_for_stdout_line(|l| event_named(l, "herald.agent.heartbeat"), LIMIT);
    agent.sigterm();
    let status = agent.wait_exit(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", agent.describe());
    let stopped = agent
        .stdout_lines()
        .into_iter()
        .find(|l| event_named(l, "herald.agent.stopped"))
        .unwrap_or_else(|| panic!("no stopped event\n{}", agent.describe()));

    for line in agent.stdout_lines() {
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        prefect_rules::check(&event).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let started: Value = serde_json::from_str(&started).expect("json");
    let beat: Value = serde_json::from_str(&beat).expect("json");
    let stopped: Value = serde_json::from_str(&stopped).expect("json");
    let agent_id = started["resource"]["prefect.resource.id"]
        .as_str()
        .expect("resource id");
    assert!(agent_id.starts_with("herald.agent."), "{agent_id}");
    assert_eq!(beat["resource"]["prefect.resource.id"], agent_id);
    assert_eq!(stopped["resource"]["prefect.resource.id"], agent_id);
    assert_eq!(started["payload"]["config"], "the embedded default");
    assert_eq!(
        started["payload"]["version"],
        env!("CARGO_PKG_VERSION"),
        "the started event names the version"
    );
    let digest = started["payload"]["config_digest"]
        .as_str()
        .expect("digest");
    assert_eq!(digest.len(), 64, "a sha-256 digest: {digest}");
    assert_eq!(stopped["payload"]["reason"], "SIGTERM");
    let host = &started["related"][0];
    assert_eq!(host["prefect.resource.role"], "host");
    assert!(
        host["prefect.resource.id"]
            .as_str()
            .is_some_and(|id| id.starts_with("herald.host.")),
        "{host}"
    );
    let ids: std::collections::BTreeSet<&str> = [&started, &beat, &stopped]
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 3, "every event has its own id");
}

#[test]
fn sigint_stops_it_too() {
    let mut agent = herald().arg("run").spawn();
    agent.wait_for_stdout_line(|l| event_named(l, "herald.agent.started"), LIMIT);
    agent.signal("INT");
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    let stopped = agent.wait_for_stdout_line(|l| event_named(l, "herald.agent.stopped"), LIMIT);
    assert!(stopped.contains("\"reason\":\"SIGINT\""), "{stopped}");
}

fn http_config(dir: &std::path::Path, url: &str, extra_sink: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[agent]
hostname = "test-host"
data_dir = "{data}"

[agent.labels]
"acme.team" = "payments"

[sink]
url = "{url}"
batch_timeout = "50ms"
{extra_sink}

[[sources.heartbeat]]
name = "beat"
interval = "200ms"
"#,
            data = dir.join("data").display()
        ),
    )
}

#[test]
fn posts_batches_to_the_events_endpoint_with_bearer_auth() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = http_config(dir.path(), &endpoint.url(), "api_key = \"${TEST_API_KEY}\"");
    let secret = "pnu_test_secret_do_not_log";
    let mut agent = herald()
        .args(["run", "--log-level", "debug", "--config"])
        .arg(&config)
        .env("TEST_API_KEY", secret)
        .spawn();
    let events = endpoint.wait_for_events(3, LIMIT);
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );

    let posts = endpoint.event_posts();
    for post in &posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.path, "/api/events");
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(
            post.header("authorization"),
            Some(format!("Bearer {secret}").as_str())
        );
        assert!(
            post.header("user-agent")
                .is_some_and(|ua| ua.starts_with("herald/")),
            "{:?}",
            post.header("user-agent")
        );
    }
    for event in &events {
        prefect_rules::check(event).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert_eq!(
            event["resource"]["prefect.resource.id"],
            "herald.agent.test-host"
        );
        assert_eq!(event["resource"]["acme.team"], "payments");
        assert_eq!(
            event["related"][0]["prefect.resource.id"],
            "herald.host.test-host"
        );
    }
    assert_eq!(events[0]["event"], "herald.agent.started");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "herald.agent.heartbeat")
    );
    let all = endpoint.wait_for_events(events.len() + 1, LIMIT);
    assert_eq!(
        all.last().map(|e| e["event"].clone()),
        Some(Value::from("herald.agent.stopped")),
        "the last event sent is the stopped event"
    );
    let logs = agent.stderr_lines().join("\n");
    assert!(
        !logs.contains(secret),
        "the api key leaked into the logs:\n{logs}"
    );
    assert!(
        logs.contains("bearer api key"),
        "the log says how it authenticates"
    );
}

#[test]
fn basic_auth_from_prefect_api_auth_string() {
    let endpoint = MockEndpoint::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = http_config(dir.path(), &endpoint.url(), "");
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&config)
        .env("PREFECT_API_AUTH_STRING", "admin:pa:ss")
        .spawn();
    endpoint.wait_for_events(1, LIMIT);
    agent.sigterm();
    agent.wait_exit(LIMIT);
    // base64("admin:pa:ss"): the password keeps its own colon.
    assert_eq!(
        endpoint.event_posts()[0].header("authorization"),
        Some("Basic YWRtaW46cGE6c3M=")
    );
    let logs = agent.stderr_lines().join("\n");
    assert!(!logs.contains("pa:ss"), "the auth string leaked:\n{logs}");
}

#[test]
fn prefect_api_url_alone_selects_the_http_sink() {
    let endpoint = MockEndpoint::start();
    let mut agent = herald()
        .arg("run")
        .env("PREFECT_API_URL", endpoint.url())
        .spawn();
    let events = endpoint.wait_for_events(2, LIMIT);
    agent.sigterm();
    assert_eq!(agent.wait_exit(LIMIT).code(), Some(0));
    assert_eq!(events[0]["event"], "herald.agent.started");
    assert!(
        agent.stdout_lines().is_empty(),
        "with an endpoint, nothing goes to stdout"
    );
}

#[test]
fn a_failed_send_is_logged_counted_and_retried_until_delivered() {
    let endpoint = MockEndpoint::start();
    endpoint.push_all([Reply::Status(500), Reply::Reset]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = http_config(dir.path(), &endpoint.url(), "");
    let mut agent = herald().args(["run", "--config"]).arg(&config).spawn();
    agent.wait_for_stderr_line(
        |l| l.contains("BatchSendFailed") && l.contains("500"),
        LIMIT,
    );
    agent.wait_for_stderr_line(
        |l| l.contains("BatchSendFailed") && l.contains("request failed"),
        LIMIT,
    );
    // The batch that failed twice is sent again, with the same bytes.
    let accepted = endpoint.wait_for_events(1, LIMIT);
    let posts = endpoint.event_posts();
    assert_eq!(
        posts[0].body, posts[2].body,
        "the retry resends the same batch"
    );
    assert_eq!(accepted[0]["event"], "herald.agent.started");
    agent.sigterm();
    assert_eq!(agent.wait_exit(LIMIT).code(), Some(0));
    let last = agent.wait_for_stderr_line(|l| l.contains("AgentStopped"), LIMIT);
    assert!(
        last.contains("send_failures=2"),
        "failures are counted: {last}"
    );
    assert!(last.contains("left_queued=0"), "{last}");
}

#[test]
fn shutdown_gives_up_after_the_grace_period() {
    let endpoint = MockEndpoint::with_default(Reply::Stall(Duration::from_secs(60)));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "[agent]\nshutdown_grace = \"1s\"\n[sink]\nurl = \"{}\"\ntimeout = \"60s\"\nbatch_timeout = \"10ms\"\n",
            endpoint.url()
        ),
    );
    let mut agent = herald().args(["run", "--config"]).arg(&config).spawn();
    endpoint.wait_for_requests(1, LIMIT);
    let asked = std::time::Instant::now();
    agent.sigterm();
    let status = agent.wait_exit(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", agent.describe());
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "a 1s grace must not wait for a 60s request timeout"
    );
    assert!(
        wait_until(LIMIT, || agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("ShutdownGraceExpired"))),
        "{}",
        agent.describe()
    );
}

#[test]
fn json_logs_on_request() {
    let mut agent = herald().arg("run").env("HERALD_LOG_FORMAT", "json").spawn();
    let line = agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    agent.sigterm();
    agent.wait_exit(LIMIT);
    let log: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    assert_eq!(log["level"], "INFO");
    assert_eq!(log["message"], "AgentStarted");
    for line in agent.stderr_lines() {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok(),
            "every log line is JSON: {line}"
        );
    }
}

#[test]
fn a_command_line_mistake_exits_64_and_help_exits_0() {
    let wrong = herald().arg("--no-such-flag").run(LIMIT);
    assert_eq!(wrong.code(), Some(64), "{}", wrong.stderr_text());
    assert!(wrong.stderr_text().contains("--no-such-flag"));
    let unknown = herald().arg("frobnicate").run(LIMIT);
    assert_eq!(unknown.code(), Some(64), "{}", unknown.stderr_text());
    let help = herald().arg("--help").run(LIMIT);
    assert_eq!(help.code(), Some(0), "{}", help.stderr_text());
    assert!(help.stdout_text().contains("Usage"));
    let version = herald().arg("--version").run(LIMIT);
    assert_eq!(version.code(), Some(0));
}

#[test]
fn a_second_agent_on_the_same_data_dir_exits_naming_the_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut first = herald()
        .arg("run")
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .spawn();
    first.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    let second = herald()
        .arg("run")
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .run(LIMIT);
    // EX_CANTCREAT: the unit's RestartPreventExitStatus keeps systemd
    // from restarting into the same lock.
    assert_eq!(second.code(), Some(73), "{}", second.stderr_text());
    let expected = format!("(pid {})", first.pid());
    assert!(
        second.stderr_text().contains(&expected),
        "the error names the holder {expected}:\n{}",
        second.stderr_text()
    );
    assert!(second.stdout.is_empty(), "the second agent sent nothing");
    first.sigterm();
    assert_eq!(first.wait_exit(LIMIT).code(), Some(0));
    // Once the first is gone, the data_dir is free again.
    let mut third = herald()
        .arg("run")
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .spawn();
    third.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    third.sigterm();
    assert_eq!(third.wait_exit(LIMIT).code(), Some(0));
}

#[test]
fn events_queued_while_the_endpoint_was_down_are_sent_by_the_next_run() {
    let endpoint = MockEndpoint::start();
    endpoint.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config = http_config(dir.path(), &endpoint.url(), "timeout = \"1s\"");
    let mut first = herald()
        .args(["run", "--config"])
        .arg(&config)
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .env("HERALD_AGENT_SHUTDOWN_GRACE", "500ms")
        .spawn();
    first.wait_for_stderr_line(|l| l.contains("BatchSendFailed"), LIMIT);
    first.sigterm();
    assert_eq!(
        first.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        first.describe()
    );
    let left = first.wait_for_stderr_line(|l| l.contains("ShutdownGraceExpired"), LIMIT);
    assert!(!left.contains("left_queued=0"), "{left}");

    endpoint.start_again();
    let mut second = herald()
        .args(["run", "--config"])
        .arg(&config)
        .env("HERALD_AGENT_DATA_DIR", &data_dir)
        .spawn();
    let stopped_before = |events: &[Value]| {
        events
            .iter()
            .any(|e| e["event"] == "herald.agent.stopped" && e["payload"]["reason"] == "SIGTERM")
    };
    assert!(
        wait_until(LIMIT, || stopped_before(&endpoint.accepted_events())),
        "the first run's stopped event arrives through the second run\n{}",
        endpoint.describe()
    );
    second.sigterm();
    assert_eq!(second.wait_exit(LIMIT).code(), Some(0));
    let events = endpoint.accepted_events();
    assert_eq!(events[0]["event"], "herald.agent.started");
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "herald.agent.started")
        .collect();
    assert_eq!(started.len(), 2, "one started event per run");
    assert!(
        started[1]["payload"]["queued_from_before"].as_u64() > Some(0),
        "the second run says it found a backlog: {}",
        started[1]
    );
}

#[test]
fn a_closed_stdout_stops_the_agent_instead_of_retrying_forever() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "[[sources.heartbeat]]\nname = \"beat\"\ninterval = \"100ms\"\n",
    );
    // `herald run | head -1`: the reader goes away after one line.
    let script = format!(
        "{} run --config {} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_herald"),
        config.display()
    );
    let run = herald()
        .program("bash")
        .args(["-c", &script])
        .env("HERALD_AGENT_DATA_DIR", dir.path().join("data"))
        .run(LIMIT);
    assert_eq!(run.code(), Some(1), "{}", run.stderr_text());
    assert!(
        run.stderr_text().contains("SinkGone"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn the_heartbeat_reports_the_agents_health() {
    let endpoint = MockEndpoint::start();
    // An outage of four attempts 300 ms apart: several 200 ms beats are
    // made while it lasts, even on a busy machine.
    endpoint.push_all([
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(503),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = http_config(
        dir.path(),
        &endpoint.url(),
        "retry_initial = \"300ms\"\nretry_max = \"300ms\"",
    );
    let mut agent = herald().args(["run", "--config"]).arg(&config).spawn();
    let retry = |b: &Value| b["payload"]["health"]["sink"]["retry_attempt"].as_u64();
    let beats = || -> Vec<Value> {
        endpoint
            .accepted_events()
            .into_iter()
            .filter(|e| e["event"] == "herald.agent.heartbeat")
            .collect()
    };
    // Beats made while the endpoint failed say so; a later one shows the
    // sink working again.
    assert!(
        wait_until(LIMIT, || {
            let beats = beats();
            let during = beats.iter().position(|b| retry(b) > Some(0));
            during.is_some_and(|at| beats[at..].iter().any(|b| retry(b) == Some(0)))
        }),
        "a beat during the outage shows the retry, a later one its end\n{}",
        endpoint.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    let beats = beats();
    let health = &beats[0]["payload"]["health"];
    assert!(health["queue"]["depth_events"].is_u64(), "{health}");
    assert!(health["sink"]["events_sent"].is_u64(), "{health}");
    assert!(
        beats
            .iter()
            .any(|b| b["payload"]["health"]["sink"]["failed_attempts"].as_u64() >= Some(2))
    );
}
