//! The systemd source end to end: the real binary runs a stand-in
//! `systemctl` (a shell script first on `PATH`, answering `list-units` and
//! `show` from a file the test rewrites) and posts to a mock endpoint.
//! Each state change arrives exactly once, nothing repeats while states
//! hold, a restart announces only real changes, and a host without systemd
//! gets one warning and a running agent.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{
    Herald, MockEndpoint, agent_and_sink, herald, prefect_rules, stop_agent, wait_until,
    write_config,
};
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(30);

/// A `systemctl` that logs its arguments to `calls` and answers from
/// `units` (one unit a line: id|load|active|sub|result|description|
/// since|since_monotonic). Only shell built-ins, so `PATH` may hold
/// nothing else. With a file `unavailable` next to it, it fails the way
/// systemctl does on a host not booted with systemd.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
dir='@DIR@'
echo "$*" >> "$dir/calls"
if [ -e "$dir/unavailable" ]; then
  echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
  echo "Failed to connect to bus: Host is down" >&2
  exit 1
fi
verb=''
for arg in "$@"; do
  case "$arg" in -*) continue ;; esac
  if [ -z "$verb" ]; then verb=$arg; continue; fi
  case "$verb" in
    list-units)
      while IFS='|' read -r id load active sub result desc since mono; do
        case "$id" in $arg) echo "$id $load $active $sub $desc" ;; esac
      done < "$dir/units"
      ;;
    show)
      hit=''
      while IFS='|' read -r id load active sub result desc since mono; do
        if [ "$id" = "$arg" ]; then
          hit=1
          printf 'Result=%s\nId=%s\nDescription=%s\nLoadState=%s\nActiveState=%s\nSubState=%s\nStateChangeTimestamp=%s\nStateChangeTimestampMonotonic=%s\n\n' \
            "$result" "$id" "$desc" "$load" "$active" "$sub" "$since" "$mono"
        fi
      done < "$dir/units"
      if [ -z "$hit" ]; then
        printf 'Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n\n' "$arg"
      fi
      ;;
  esac
done
"#;

/// A temp dir with a fake `systemctl` in `bin/`, a mock endpoint and a
/// config.
struct Rig {
    dir: TempDir,
    bin: PathBuf,
    endpoint: MockEndpoint,
    config: PathBuf,
}

impl Rig {
    fn new(source: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("bin dir");
        let script = bin.join("systemctl");
        fs::write(
            &script,
            FAKE_SYSTEMCTL.replace("@DIR@", &bin.display().to_string()),
        )
        .expect("script written");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("executable");
        fs::write(bin.join("units"), "").expect("units file");
        let endpoint = MockEndpoint::start();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
{head}
[[sources.heartbeat]]
name = "beat"
interval = "200ms"

[[sources.systemd]]
name = "units"
interval = "200ms"
{source}
"#,
                head = agent_and_sink(&endpoint.url()),
            ),
        );
        Rig {
            dir,
            bin,
            endpoint,
            config,
        }
    }

    /// Rewrites the units the fake manager has, atomically.
    fn set_units(&self, units: &[&str]) {
        let temp = self.bin.join("units.tmp");
        let mut text = units.join("\n");
        text.push('\n');
        fs::write(&temp, text).expect("units written");
        fs::rename(&temp, self.bin.join("units")).expect("units replaced");
    }

    fn start_with_path(&self, path: &Path) -> Herald {
        let agent = herald()
            .args(["run", "--config"])
            .arg(&self.config)
            .env("PATH", path)
            .cwd(self.dir.path())
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("SystemdSourceStarted"), LIMIT);
        agent
    }

    fn start(&self) -> Herald {
        self.start_with_path(&self.bin)
    }

    /// The fake's invocations so far.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.bin.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the source polled `n` more times than `before` (a poll
    /// ends with one `show`).
    fn wait_polls(&self, n: usize) {
        let before = self.shows();
        let polled = wait_until(LIMIT, || self.shows() >= before + n);
        assert!(polled, "fewer than {n} more polls: {:?}", self.calls());
    }

    fn shows(&self) -> usize {
        self.calls().iter().filter(|c| c.contains("show")).count()
    }

    /// The systemd events accepted so far, one per id, in arrival order.
    fn events(&self) -> Vec<Value> {
        self.endpoint.distinct_events("herald.systemd.")
    }

    /// (event, unit) of every systemd event so far.
    fn summary(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap_or_default().to_owned(),
                    e["payload"]["unit"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits for `n` systemd events in all; returns them.
    fn wait_events(&self, n: usize) -> Vec<Value> {
        let arrived = wait_until(LIMIT, || self.events().len() >= n);
        assert!(arrived, "waited for {n} events, got {:?}", self.summary());
        let events = self.events();
        assert_eq!(events.len(), n, "{:?}", self.summary());
        events
    }

    /// Every systemd event accepted, copies included: a restart that
    /// announced the inventory again, even with the same ids, shows here.
    fn copies(&self) -> usize {
        self.endpoint
            .accepted_events()
            .iter()
            .filter(|e| {
                e["event"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("herald.systemd."))
            })
            .count()
    }

    fn heartbeats(&self) -> usize {
        self.endpoint
            .accepted_events()
            .iter()
            .filter(|e| e["event"] == "herald.agent.heartbeat")
            .count()
    }
}

fn pair(event: &str, unit: &str) -> (String, String) {
    (event.to_owned(), unit.to_owned())
}

fn check_unit_event(event: &Value, unit: &str, manager: &str) {
    prefect_rules::check(event).unwrap_or_else(|e| panic!("{e}: {event}"));
    let resource = &event["resource"];
    assert_eq!(
        resource["prefect.resource.id"],
        format!("herald.systemd.test-host.{unit}"),
        "{event}"
    );
    assert_eq!(resource["prefect.resource.name"], unit, "{event}");
    assert_eq!(resource["herald.systemd.unit"], unit, "{event}");
    assert_eq!(resource["herald.systemd.manager"], manager, "{event}");
    assert_eq!(event["payload"]["unit"], unit, "{event}");
    assert_eq!(event["payload"]["manager"], manager, "{event}");
}

const NGINX_ACTIVE: &str = "nginx.service|loaded|active|running|success|A high performance web server|Thu 2024-05-02 10:00:00 UTC|1000000";
const APP1_ACTIVE: &str =
    "app@1.service|loaded|active|running|success|App 1|Thu 2024-05-02 10:00:01 UTC|1001000";
const APP2_FAILED: &str =
    "app@2.service|loaded|failed|failed|exit-code|App 2|Thu 2024-05-02 10:00:02 UTC|1002000";
const OTHER_ACTIVE: &str =
    "other.service|loaded|active|running|success|Not watched|Thu 2024-05-02 10:00:03 UTC|1003000";

#[test]
fn unit_changes_are_announced_once_each_and_a_restart_announces_only_real_ones() {
    let rig = Rig::new(r#"units = ["nginx.service", "app@*.service", "missing.service"]"#);
    rig.set_units(&[NGINX_ACTIVE, APP1_ACTIVE, APP2_FAILED, OTHER_ACTIVE]);
    let agent = rig.start();

    // The inventory, once: not the unwatched unit, not the missing one.
    let events = rig.wait_events(3);
    let mut inventory = rig.summary();
    inventory.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        inventory,
        [
            pair("herald.systemd.unit.active", "app@1.service"),
            pair("herald.systemd.unit.failed", "app@2.service"),
            pair("herald.systemd.unit.active", "nginx.service"),
        ]
    );
    let nginx = events
        .iter()
        .find(|e| e["payload"]["unit"] == "nginx.service")
        .expect("nginx");
    check_unit_event(nginx, "nginx.service", "system");
    assert_eq!(nginx["payload"]["state"], "active");
    assert_eq!(nginx["payload"]["sub_state"], "running");
    assert_eq!(nginx["payload"]["result"], "success");
    assert_eq!(nginx["payload"]["since"], "2024-05-02T10:00:00Z");
    assert_eq!(
        nginx["payload"]["description"],
        "A high performance web server"
    );
    assert!(nginx["payload"].get("previous").is_none(), "{nginx}");
    agent.wait_for_stderr_line(
        |l| l.contains("SystemdUnitNotFound") && l.contains("missing.service"),
        LIMIT,
    );
    rig.wait_polls(3);
    assert_eq!(rig.events().len(), 3, "no repeats while states hold");

    // nginx fails: one event.
    let nginx_failed = "nginx.service|loaded|failed|failed|exit-code|A high performance web server|Thu 2024-05-02 10:05:00 UTC|1300000";
    rig.set_units(&[nginx_failed, APP1_ACTIVE, APP2_FAILED, OTHER_ACTIVE]);
    let events = rig.wait_events(4);
    let failed = &events[3];
    check_unit_event(failed, "nginx.service", "system");
    assert_eq!(failed["event"], "herald.systemd.unit.failed");
    assert_eq!(failed["payload"]["previous"], "active");
    assert_eq!(failed["payload"]["result"], "exit-code");
    assert_eq!(failed["payload"]["sub_state"], "failed");
    assert_eq!(failed["payload"]["since"], "2024-05-02T10:05:00Z");
    rig.wait_polls(3);
    assert_eq!(rig.events().len(), 4, "no repeat while failed");

    // app@1 goes away (unloaded): inactive.
    rig.set_units(&[nginx_failed, APP2_FAILED, OTHER_ACTIVE]);
    let events = rig.wait_events(5);
    assert_eq!(events[4]["event"], "herald.systemd.unit.inactive");
    assert_eq!(events[4]["payload"]["unit"], "app@1.service");
    assert_eq!(events[4]["payload"]["previous"], "active");

    // A restart announces nothing while states hold...
    stop_agent(agent);
    let copies = rig.copies();
    let agent = rig.start();
    rig.wait_polls(4);
    assert_eq!(rig.copies(), copies, "announced again: {:?}", rig.summary());

    // ...and then only the real change: nginx active again.
    let nginx_back = "nginx.service|loaded|active|running|success|A high performance web server|Thu 2024-05-02 10:10:00 UTC|1600000";
    rig.set_units(&[nginx_back, APP2_FAILED, OTHER_ACTIVE]);
    let events = rig.wait_events(6);
    assert_eq!(events[5]["event"], "herald.systemd.unit.active");
    assert_eq!(events[5]["payload"]["unit"], "nginx.service");
    assert_eq!(events[5]["payload"]["previous"], "failed");
    rig.wait_polls(3);
    assert_eq!(rig.events().len(), 6);
    stop_agent(agent);
}

#[test]
fn the_user_manager_is_asked_with_user() {
    let rig = Rig::new("units = [\"*.service\"]\nuser = true");
    rig.set_units(&[OTHER_ACTIVE]);
    let agent = rig.start();
    let events = rig.wait_events(1);
    check_unit_event(&events[0], "other.service", "user");
    let calls = rig.calls();
    assert!(
        calls.iter().all(|c| c.starts_with("--user ")),
        "every call is for the user manager: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains("list-units") && c.contains("*.service"))
    );
    stop_agent(agent);
}

/// One warning, no systemd events, and the rest of the agent keeps
/// running (its heartbeats keep arriving).
fn assert_idle(rig: &Rig, agent: Herald, reason: &str) {
    let warning = agent.wait_for_stderr_line(|l| l.contains("SystemdUnavailable"), LIMIT);
    assert!(warning.contains(reason), "{warning}");
    let beats = rig.heartbeats();
    assert!(
        wait_until(LIMIT, || rig.heartbeats() >= beats + 3),
        "the agent stopped beating\n{}",
        agent.describe()
    );
    let warnings = agent
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("SystemdUnavailable"))
        .count();
    assert_eq!(warnings, 1, "{}", agent.describe());
    assert!(rig.events().is_empty(), "{:?}", rig.summary());
    stop_agent(agent);
}

#[test]
fn without_systemctl_the_source_warns_once_and_the_agent_runs_on() {
    let rig = Rig::new(r#"units = ["nginx.service"]"#);
    let empty = rig.dir.path().join("empty-bin");
    fs::create_dir(&empty).expect("empty dir");
    let agent = rig.start_with_path(&empty);
    assert_idle(&rig, agent, "systemctl is not on PATH");
}

#[test]
fn when_systemctl_cannot_reach_the_manager_the_source_warns_once_and_the_agent_runs_on() {
    let rig = Rig::new(r#"units = ["nginx.service"]"#);
    rig.set_units(&[NGINX_ACTIVE]);
    fs::write(rig.bin.join("unavailable"), "").expect("marker");
    let agent = rig.start();
    assert_idle(&rig, agent, "Can't operate");
    assert_eq!(
        rig.shows(),
        1,
        "asked once, then waits minutes before asking again"
    );
}
