//! The probe source's unit tests.

use super::config::check_host_port;
use super::*;
use crate::config::{SourceConfig, parse};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use tokio::sync::mpsc;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn probe(text: &str) -> ProbeConfig {
    let config = parse("t.toml", text, &no_env).expect("valid");
    match config.sources.as_slice() {
        [SourceConfig::Probe(probe)] => probe.clone(),
        other => panic!("one probe source: {other:?}"),
    }
}

fn mistakes(text: &str) -> String {
    parse("t.toml", text, &no_env)
        .expect_err("invalid")
        .to_string()
}

#[test]
fn reads_every_key_and_the_defaults() {
    let tcp = probe("[[sources.probe]]\nname = \"db\"\ntcp = \"db.internal:5432\"\n");
    assert_eq!(tcp.target, Target::Tcp("db.internal:5432".into()));
    assert_eq!(tcp.interval, Duration::from_secs(10));
    assert_eq!(tcp.timeout, Duration::from_secs(5));
    assert_eq!((tcp.failures, tcp.successes), (2, 1));
    let http = probe(
        r#"
[[sources.probe]]
name = "api"
http = "http://127.0.0.1:8080/health"
interval = "2s"
failures = 3
successes = 2
expect_status = [200, "300-302", "401"]
"#,
    );
    assert_eq!(http.target.kind(), "http");
    assert_eq!(http.interval, Duration::from_secs(2));
    assert_eq!(
        http.timeout,
        Duration::from_secs(2),
        "capped at the interval"
    );
    assert_eq!((http.failures, http.successes), (3, 2));
    assert!(http.expect_status.contains(200));
    assert!(http.expect_status.contains(301));
    assert!(http.expect_status.contains(401));
    assert!(!http.expect_status.contains(204));
    assert_eq!(http.expect_status.to_string(), "200, 300-302, 401");
    let ipv6 = probe("[[sources.probe]]\nname = \"v6\"\ntcp = \"[::1]:22\"\n");
    assert_eq!(ipv6.target.to_string(), "[::1]:22");
}

#[test]
fn the_default_statuses_are_2xx_and_3xx() {
    let set = StatusSet::default();
    assert!(set.contains(200) && set.contains(204) && set.contains(302) && set.contains(399));
    assert!(!set.contains(199) && !set.contains(400) && !set.contains(503));
}

#[test]
fn a_probe_needs_exactly_one_target() {
    let both = mistakes("[[sources.probe]]\nname = \"p\"\ntcp = \"h:1\"\nhttp = \"http://h/\"\n");
    assert!(
        both.contains("t.toml:4:8: a probe checks one target: tcp or http, not both"),
        "{both}"
    );
    let none = mistakes("[[sources.probe]]\nname = \"p\"\n");
    assert!(none.contains("[[sources.probe]] needs a target"), "{none}");
    assert!(none.contains("t.toml:"), "{none}");
}

#[test]
fn mistakes_point_at_their_key() {
    let text = r#"
[[sources.probe]]
name = "p"
tcp = "db.internal"
interval = "10ms"
failures = 0
expect_status = [200]

[[sources.probe]]
name = "q"
http = "ftp://h/x"
timeout = "1m"

[[sources.probe]]
name = "r"
http = "https://user:pw@h/x"
expect_status = [200, "abc", 700]
colour = "red"
"#;
    let shown = mistakes(text);
    for expected in [
        "t.toml:4:7: invalid tcp target \"db.internal\": it has no port",
        "t.toml:5:12: interval must be at least 100ms",
        "t.toml:6:12: failures must be from 1 to 100, not 0",
        "t.toml:7:17: expect_status applies only to an http target",
        "t.toml:11:8: invalid http target \"ftp://h/x\": the scheme must be http or https",
        "t.toml:12:11: timeout (60s) must not be longer than the interval (10s)",
        "t.toml:16:8: invalid http target",
        "holds credentials",
        "t.toml:17:23: not an HTTP status",
        "t.toml:17:30: not an HTTP status",
        "t.toml:18:1: unknown key `colour` in [[sources.probe]]",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
}

#[test]
fn host_port_checks() {
    assert_eq!(check_host_port("h:80"), Ok(()));
    assert_eq!(check_host_port("10.0.0.1:65535"), Ok(()));
    assert_eq!(check_host_port("[fe80::1]:443"), Ok(()));
    assert!(check_host_port("h:0").is_err());
    assert!(check_host_port("h:99999").is_err());
    assert!(check_host_port(":80").is_err());
    assert!(check_host_port("::1:80").is_err());
    assert!(check_host_port("[nope]:80").is_err());
    assert!(check_host_port("h/x:80").is_err());
}

#[test]
fn two_failures_go_down_and_one_success_comes_back() {
    let mut t = Tracker::new(2, 1, Some((Level::Up, 4)));
    assert_eq!(t.record(true), None, "the known level holds");
    assert_eq!(t.record(false), None, "one failure is not down");
    assert_eq!(t.record(true), None, "and a success resets it");
    assert_eq!(t.record(false), None);
    let down = t.record(false).expect("down");
    assert_eq!(
        down,
        Announcement {
            level: Level::Down,
            previous: Some(Level::Up),
            transition: 5,
            consecutive_failures: 2,
            consecutive_successes: 0,
        }
    );
    assert_eq!(t.record(false), None, "no repeat while down");
    let up = t.record(true).expect("up");
    assert_eq!(
        (up.level, up.previous, up.transition),
        (Level::Up, Some(Level::Down), 6)
    );
    assert_eq!(up.consecutive_successes, 1);
}

#[test]
fn the_first_result_is_announced_whatever_the_counts() {
    let mut t = Tracker::new(3, 3, None);
    let first = t.record(false).expect("first");
    assert_eq!(
        (first.level, first.previous, first.transition),
        (Level::Down, None, 1)
    );
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(true), None);
    let up = t.record(true).expect("three successes");
    assert_eq!(
        (up.level, up.transition, up.consecutive_successes),
        (Level::Up, 2, 3)
    );
}

/// Outcomes given in order, each after a simulated delay.
struct Scripted {
    outcomes: VecDeque<Outcome>,
    checked: Arc<Mutex<Vec<Instant>>>,
}

impl Check for Scripted {
    async fn check(&mut self) -> Outcome {
        self.checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        let outcome = self.outcomes.pop_front().unwrap_or_else(good);
        tokio::time::sleep(outcome.latency).await;
        outcome
    }
}

fn good() -> Outcome {
    Outcome {
        latency: Duration::from_millis(3),
        status: Some(200),
        failure: None,
    }
}

fn refused() -> Outcome {
    Outcome {
        latency: Duration::from_millis(1),
        status: None,
        failure: Some(Failure {
            kind: "refused",
            message: "connection refused".into(),
        }),
    }
}

/// Fires every observation's callback, as the agent does once the
/// event is durable.
fn durable(mut batch: Vec<Observation>) -> Observation {
    let mut observation = batch.remove(0);
    if let Some(callback) = observation.on_durable.take() {
        callback.fire();
    }
    observation
}

#[tokio::test(start_paused = true)]
async fn announces_on_the_interval_and_saves_only_what_is_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
    config.interval = Duration::from_secs(10);
    let checked = Arc::new(Mutex::new(Vec::new()));
    let outcomes = VecDeque::from([good(), refused(), refused(), refused(), good()]);
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let file = StateFile::new(dir.path(), "web", "probe");
    let task = tokio::spawn(run(
        config.clone(),
        Scripted {
            outcomes,
            checked: checked.clone(),
        },
        file.clone(),
        Emitter::new(tx),
        cancel.clone(),
    ));
    let first = rx.recv().await.expect("first");
    assert_eq!(first[0].kind, "probe.up");
    assert_eq!(
        first[0].field("previous"),
        None,
        "the first has no previous"
    );
    assert_eq!(file.load::<Known>(), None, "nothing saved before durable");
    let first = durable(first);
    assert_eq!(first.field("latency_ms"), Some(&serde_json::json!(3.0)));
    let down = durable(rx.recv().await.expect("down"));
    assert_eq!(down.kind, "probe.down");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(20) + Duration::from_millis(1),
        "the second failure, one interval after the first"
    );
    assert_eq!(
        down.field("error_kind"),
        Some(&serde_json::json!("refused"))
    );
    assert_eq!(
        down.field("consecutive_failures"),
        Some(&serde_json::json!(2))
    );
    assert_eq!(down.field("previous"), Some(&serde_json::json!("up")));
    let up = durable(rx.recv().await.expect("up"));
    assert_eq!(up.kind, "probe.up");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(40) + Duration::from_millis(3)
    );
    // The loop saves what became durable; give it its turn.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        file.load::<Known>(),
        Some(Known {
            target: "127.0.0.1:9".into(),
            level: Level::Up,
            transitions: 3,
        })
    );
    cancel.cancel();
    task.await.expect("stops cleanly");
    let times = checked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(times.len() >= 5, "{times:?}");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(10), "{times:?}");
    }
    let ids: Vec<_> = [first, down, up]
        .iter()
        .map(|o| o.identity.clone().expect("identity"))
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
}

#[tokio::test(start_paused = true)]
async fn a_restart_announces_nothing_while_the_level_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = StateFile::new(dir.path(), "web", "probe");
    file.save(&Known {
        target: "127.0.0.1:9".into(),
        level: Level::Down,
        transitions: 7,
    })
    .expect("saved");
    let config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let outcomes = VecDeque::from([refused(), refused(), refused(), good()]);
    let task = tokio::spawn(run(
        config,
        Scripted {
            outcomes,
            checked: Arc::default(),
        },
        file.clone(),
        Emitter::new(tx),
        cancel.clone(),
    ));
    let up = rx.recv().await.expect("up").remove(0);
    assert_eq!(up.kind, "probe.up", "the held down was not announced again");
    assert_eq!(up.field("previous"), Some(&serde_json::json!("down")));
    let mut expected = b"127.0.0.1:9\0".to_vec();
    expected.extend_from_slice(&8u64.to_be_bytes());
    expected.extend_from_slice(b"up");
    assert_eq!(up.identity, Some(expected), "(target, counter, level)");
    cancel.cancel();
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_state_about_another_target_is_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = StateFile::new(dir.path(), "web", "probe");
    file.save(&Known {
        target: "10.0.0.1:80".into(),
        level: Level::Up,
        transitions: 3,
    })
    .expect("saved");
    let config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        config,
        Scripted {
            outcomes: VecDeque::new(),
            checked: Arc::default(),
        },
        file,
        Emitter::new(tx),
        cancel.clone(),
    ));
    let first = rx.recv().await.expect("announced").remove(0);
    assert_eq!(first.kind, "probe.up");
    assert_eq!(first.field("previous"), None);
    cancel.cancel();
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_a_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
    let port = listener.local_addr().expect("address").port();
    let url = reqwest::Url::parse(&format!("http://{}/health", loopback(port))).expect("url");
    let mut config = ProbeConfig::new("api", Target::Http(url));
    config.timeout = Duration::from_secs(2);
    let mut prober = Prober::new(&config).expect("client");
    let outcome = prober.check().await;
    let failure = outcome.failure.expect("failed");
    assert_eq!(failure.kind, "timeout", "{failure:?}");
    assert_eq!(failure.message, "no answer within 2s");
    assert_eq!(outcome.status, None);
    drop(listener);
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let config = ProbeConfig::new("db", Target::Tcp(address.to_string()));
    let outcome = Prober::new(&config).expect("prober").check().await;
    assert_eq!(outcome.failure.map(|f| f.kind), Some("refused"));
    let url = reqwest::Url::parse(&format!("http://{address}/")).expect("url");
    let config = ProbeConfig::new("api", Target::Http(url));
    let outcome = Prober::new(&config).expect("prober").check().await;
    let failure = outcome.failure.expect("failed");
    assert_eq!(failure.kind, "refused", "{failure:?}");
    assert!(!failure.message.contains("http://"), "{failure:?}");
}
