//! The systemd source's unit tests.

use super::*;
use crate::config::{SourceConfig, parse};
use std::sync::Mutex;
use tokio::sync::mpsc;

fn no_env(_: &str) -> Option<String> {
    None
}

fn systemd(text: &str) -> SystemdConfig {
    let config = parse("t.toml", text, &no_env).expect("valid");
    match config.sources.as_slice() {
        [SourceConfig::Systemd(s)] => s.clone(),
        other => panic!("one systemd source: {other:?}"),
    }
}

fn names(units: &[UnitMatch]) -> Vec<String> {
    units
        .iter()
        .map(|u| match u {
            UnitMatch::Name(n) => n.clone(),
            UnitMatch::Pattern(p) => format!("glob:{}", p.as_str()),
        })
        .collect()
}

#[test]
fn reads_every_key_and_the_defaults() {
    let config = systemd(
        "[[sources.systemd]]\nname = \"units\"\nunits = [\"nginx\", \"app@*.service\", \"backup.timer\", \"my.app\"]\n",
    );
    assert_eq!(
        names(&config.units),
        [
            "nginx.service",
            "glob:app@*.service",
            "backup.timer",
            "my.app.service"
        ]
    );
    assert_eq!(config.interval, Duration::from_secs(5));
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert!(!config.user);
    let config = systemd(
        "[[sources.systemd]]\nname = \"mine\"\nunits = [\"*\"]\ninterval = \"1s\"\ntimeout = \"3s\"\nuser = true\n",
    );
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert!(config.user);
}

#[test]
fn mistakes_point_at_their_key() {
    let text = r#"
[[sources.systemd]]
name = "a"
units = ["ok.service", "bad name", "-x", "[oops"]
interval = "1ms"
user = "yes"

[[sources.systemd]]
name = "b"
units = []

[[sources.systemd]]
name = "c"
unit = ["x"]
"#;
    let shown = parse("t.toml", text, &no_env)
        .expect_err("invalid")
        .to_string();
    for expected in [
        "t.toml:4:24: invalid unit name \"bad name\"",
        "t.toml:4:36: invalid unit name \"-x\"",
        "t.toml:4:42: invalid pattern \"[oops\"",
        "t.toml:5:12: interval must be at least 100ms",
        "t.toml:6:8: expected true or false",
        "t.toml:10:9: units must name at least one unit",
        "[[sources.systemd]] is missing the required key `units`",
        "t.toml:14:1: unknown key `unit` in [[sources.systemd]]",
        "did you mean `units`?",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
}

/// What systemd 252 prints for `systemctl show --property=… a b c`
/// (properties in systemd's order, not the requested one).
const SHOW: &str = "Result=success
Id=nginx.service
Description=A high performance web server
LoadState=loaded
ActiveState=active
SubState=running
StateChangeTimestamp=Thu 2024-05-02 10:11:12 UTC
StateChangeTimestampMonotonic=5123456

Result=exit-code
Id=app@1.service
Description=App instance 1
LoadState=loaded
ActiveState=failed
SubState=failed
StateChangeTimestamp=Thu 2024-05-02 10:12:00 UTC
StateChangeTimestampMonotonic=5171000

Id=gone.service
Description=gone.service
LoadState=not-found
ActiveState=inactive
SubState=dead
StateChangeTimestamp=n/a
StateChangeTimestampMonotonic=0
";

#[test]
fn parses_show_output() {
    let units = parse_show(SHOW);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].id, "nginx.service");
    assert_eq!(units[0].active_state, "active");
    assert_eq!(units[0].sub_state, "running");
    assert_eq!(units[0].result.as_deref(), Some("success"));
    assert_eq!(units[1].result.as_deref(), Some("exit-code"));
    assert_eq!(units[2].load_state, "not-found");
    assert_eq!(units[2].since, "");
    assert_eq!(units[2].since_monotonic, "");
    assert_eq!(since_rfc3339(&units[0].since), "2024-05-02T10:11:12Z");
    assert_eq!(since_rfc3339("n/a"), "n/a");
    assert!(parse_show("").is_empty());
    assert!(parse_show("garbage without equals\n\n").is_empty());
}

#[test]
fn parses_list_output() {
    let text = "nginx.service loaded active running A high performance web server\n\
                ● app@1.service loaded failed failed App instance 1\n\
                \n";
    assert_eq!(parse_list(text), ["nginx.service", "app@1.service"]);
}

fn unit(id: &str, state: &str, since: &str) -> UnitState {
    UnitState {
        id: id.into(),
        load_state: "loaded".into(),
        active_state: state.into(),
        sub_state: "x".into(),
        since: since.into(),
        ..UnitState::default()
    }
}

fn tracker(units: &[&str]) -> Tracker {
    let units = units
        .iter()
        .map(|u| {
            if u.contains('*') {
                UnitMatch::Pattern(glob::Pattern::new(u).expect("pattern"))
            } else {
                UnitMatch::Name((*u).to_owned())
            }
        })
        .collect();
    Tracker::new(units, Known::default())
}

fn summary(changes: &[Change]) -> Vec<(String, String, Option<String>, u64)> {
    changes
        .iter()
        .map(|c| {
            (
                c.unit.id.clone(),
                c.unit.active_state.clone(),
                c.previous.clone(),
                c.transition,
            )
        })
        .collect()
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn announces_the_inventory_once_then_only_changes() {
    let mut t = tracker(&["a.service", "app@*.service"]);
    let first = t.observe(
        vec![
            unit("a.service", "active", "T1"),
            unit("app@1.service", "failed", "T2"),
        ],
        0,
    );
    assert_eq!(
        summary(&first),
        [
            (s("a.service"), s("active"), None, 1),
            (s("app@1.service"), s("failed"), None, 1)
        ]
    );
    assert!(
        t.observe(
            vec![
                unit("a.service", "active", "T1"),
                unit("app@1.service", "failed", "T2")
            ],
            5
        )
        .is_empty(),
        "no repeats"
    );
    let changed = t.observe(
        vec![
            unit("a.service", "reloading", "T3"),
            unit("app@1.service", "failed", "T2"),
        ],
        10,
    );
    assert_eq!(
        summary(&changed),
        [(s("a.service"), s("reloading"), Some(s("active")), 2)]
    );
}

#[test]
fn a_unit_that_disappears_is_inactive_and_forgotten_after_a_week() {
    let mut t = tracker(&["app@*.service"]);
    t.observe(vec![unit("app@1.service", "active", "T1")], 0);
    let gone = t.observe(vec![], 5);
    assert_eq!(
        summary(&gone),
        [(s("app@1.service"), s("inactive"), Some(s("active")), 2)]
    );
    assert_eq!(gone[0].unit.sub_state, "dead");
    assert!(t.observe(vec![], 10).is_empty(), "announced once");
    assert!(
        t.observe(vec![unit("app@1.service", "inactive", "T2")], 20)
            .is_empty(),
        "back, still inactive: nothing new"
    );
    t.observe(vec![], 30);
    assert!(t.known().units.contains_key("app@1.service"));
    t.observe(vec![], 30 + 7 * 24 * 3600);
    assert!(!t.known().units.contains_key("app@1.service"), "forgotten");
}

#[test]
fn missing_units_and_unknown_states_are_not_announced() {
    let mut t = tracker(&["nope.service"]);
    let mut missing = unit("nope.service", "inactive", "");
    missing.load_state = "not-found".into();
    assert!(t.observe(vec![missing], 0).is_empty());
    assert!(
        t.observe(vec![unit("nope.service", "exploding", "")], 0)
            .is_empty()
    );
}

#[test]
fn units_no_longer_configured_are_forgotten_silently() {
    let mut known = Known::default();
    known.units.insert(
        s("old.service"),
        KnownUnit {
            state: s("active"),
            transitions: 3,
            gone_since: None,
        },
    );
    let mut t = Tracker::new(vec![UnitMatch::Name(s("new.service"))], known);
    let changes = t.observe(vec![unit("new.service", "active", "")], 0);
    assert_eq!(
        summary(&changes),
        [(s("new.service"), s("active"), None, 1)]
    );
    assert!(!t.known().units.contains_key("old.service"));
}

#[test]
fn identity_is_unit_state_and_timestamp_or_counter() {
    let source: Arc<str> = Arc::from("units");
    let with_time = Change {
        unit: UnitState {
            since_monotonic: s("42"),
            ..unit("a.service", "active", "Thu 2024-05-02 10:11:12 UTC")
        },
        previous: None,
        transition: 9,
    };
    let o = observation(&source, "system", &with_time);
    assert_eq!(
        o.identity.as_deref(),
        Some(&b"a.service\0active\0Thu 2024-05-02 10:11:12 UTC\x0042"[..])
    );
    assert_eq!(o.kind, "systemd.unit.active");
    assert_eq!(
        o.field("since"),
        Some(&serde_json::json!("2024-05-02T10:11:12Z"))
    );
    assert_eq!(o.field("previous"), None);
    let without = Change {
        unit: unit("a.service", "inactive", ""),
        previous: Some(s("active")),
        transition: 9,
    };
    let o = observation(&source, "system", &without);
    let mut expected = b"a.service\0inactive\0#".to_vec();
    expected.extend_from_slice(&9u64.to_be_bytes());
    assert_eq!(o.identity, Some(expected));
    assert_eq!(o.field("since"), None);
    assert_eq!(o.field("previous"), Some(&serde_json::json!("active")));
}

/// Answers from a shared script: `None` means "no systemd here".
struct Scripted {
    show: Arc<Mutex<Option<String>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Systemctl for Scripted {
    async fn run(&mut self, args: Vec<String>) -> Result<String, RunError> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Instant::now());
        assert_eq!(args[0], "show", "names only: no list-units");
        self.show
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| RunError::Unavailable("System has not been booted with systemd".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn without_systemd_it_waits_and_checks_again_every_five_minutes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let show = Arc::new(Mutex::new(None));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let config = SystemdConfig {
        name: s("units"),
        units: ["nginx.service", "app@1.service", "gone.service"]
            .map(|u| UnitMatch::Name(s(u)))
            .to_vec(),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        user: false,
    };
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(run(
        config,
        Scripted {
            show: show.clone(),
            calls: calls.clone(),
        },
        StateFile::new(dir.path(), "units", "systemd"),
        Emitter::new(tx),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(400)).await;
    assert!(rx.try_recv().is_err(), "nothing announced");
    let times: Vec<Duration> = calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|t| *t - started)
        .collect();
    assert_eq!(
        times,
        [Duration::ZERO, RECHECK],
        "checked at start and after 5m"
    );
    *show
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(SHOW.to_owned());
    let batch = rx.recv().await.expect("announced once systemd answers");
    assert_eq!(started.elapsed(), RECHECK * 2);
    assert_eq!(batch.len(), 2, "the two loaded units, not the missing one");
    assert_eq!(batch[0].kind, "systemd.unit.active");
    assert!(batch[1].on_durable.is_some() && batch[0].on_durable.is_none());
    tokio::time::sleep(Duration::from_secs(12)).await;
    let polls = calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    assert_eq!(polls, 5, "then every interval: 600s, 605s, 610s");
    cancel.cancel();
    task.await.expect("stops");
}
