//! The process source end to end: the real binary watches real processes
//! this test starts (copies of `sleep` and a shell script under names no
//! other process has) and posts to a mock endpoint. The test is their
//! parent, so it decides when they are reaped: after herald reported the
//! exit (herald then read the exit status from the zombie), or at once
//! (herald cannot know it).

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Herald, MockEndpoint, agent_and_sink, herald, prefect_rules, write_config};
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(30);

/// A name no other process on the machine has: at most 15 bytes, the
/// length of a process name the kernel keeps.
fn unique(role: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let name = format!("hz{role}{}x{n}", std::process::id() % 1_000_000);
    assert!(name.len() <= 15, "{name}");
    name
}

/// The test's own children: killed and reaped when the test ends, however
/// it ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    fn start(&mut self, program: &Path, args: &[&str], stdin: bool) -> u32 {
        let child = Command::new(program)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child.id();
        self.0.push(child);
        pid
    }

    fn get(&mut self, pid: u32) -> &mut Child {
        self.0
            .iter_mut()
            .find(|c| c.id() == pid)
            .unwrap_or_else(|| panic!("no child {pid}"))
    }

    /// SIGKILL, without reaping: the process stays a zombie.
    fn kill(&mut self, pid: u32) {
        self.get(pid).kill().expect("kill");
    }

    /// Reaps it; returns its exit code or signal, as the test saw it.
    fn reap(&mut self, pid: u32) -> std::process::ExitStatus {
        self.get(pid).wait().expect("wait")
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A temp dir with the programs under unique names, a mock endpoint and a
/// config.
struct Rig {
    dir: TempDir,
    endpoint: MockEndpoint,
    config: PathBuf,
}

impl Rig {
    /// `sources` holds `[[sources.process]]` tables.
    fn new(sources: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = MockEndpoint::start();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
{head}
[[sources.heartbeat]]
name = "beat"
interval = "100ms"

{sources}
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
            .cwd(self.dir.path())
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("ProcessSourceStarted"), LIMIT);
        agent
    }

    fn stop(&self, mut agent: Herald) {
        agent.sigterm();
        let status = agent.wait_exit(LIMIT);
        assert_eq!(status.code(), Some(0), "{}", agent.describe());
    }

    /// A copy of `sleep` named `name`: its process name is `name`.
    fn sleeper(&self, name: &str) -> PathBuf {
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a sleep binary");
        let path = self.dir.path().join(name);
        std::fs::copy(sleep, &path).expect("copy sleep");
        path
    }

    /// A script named `name` that waits for a line on stdin, then exits 3.
    /// It runs no other program, so no child of it ever has its name.
    fn script(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, "#!/bin/sh\nread line\nexit 3\n").expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// Every accepted process event, one per id (the first copy, as
    /// Prefect keeps), each checked against Prefect's rules.
    fn process_events(&self) -> Vec<Value> {
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for event in self.endpoint.accepted_events() {
            prefect_rules::check(&event).unwrap_or_else(|e| panic!("{e}: {event}"));
            let is_process = event["event"]
                .as_str()
                .is_some_and(|n| n.starts_with("herald.process."));
            if is_process && ids.insert(event["id"].as_str().unwrap_or_default().to_owned()) {
                out.push(event);
            }
        }
        out
    }

    /// Waits until `find` picks an event out of the accepted ones.
    fn wait_for(&self, what: &str, find: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(event) = self.process_events().into_iter().find(&find) {
                return event;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {LIMIT:?} for {what}; process events: {:#?}",
                    self.process_events()
                );
            }
            // Parsing every body again is not free: leave the machine to
            // herald between looks.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `n` more heartbeats: every tick of the process source
    /// until then has been posted too.
    fn wait_beats(&self, n: usize) {
        let beats = |events: &[Value]| {
            events
                .iter()
                .filter(|e| e["event"] == "herald.agent.heartbeat")
                .count()
        };
        let before = beats(&self.endpoint.accepted_events());
        let deadline = Instant::now() + LIMIT;
        while beats(&self.endpoint.accepted_events()) < before + n {
            assert!(Instant::now() < deadline, "no heartbeats");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `event` is `name` about process `pid`, on its own resource.
fn is(event: &Value, name: &str, pid: u32) -> bool {
    event["event"] == name
        && event["payload"]["pid"] == pid
        && event["resource"]["prefect.resource.id"] == format!("herald.process.test-host.{pid}")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn reports_starts_and_exits_with_the_exit_status_when_it_can() {
    let sleeper_name = unique("s");
    let script_name = unique("x");
    let rig = Rig::new(&format!(
        r#"
[[sources.process]]
name = "by-name"
interval = "100ms"
match = {{ name = "{sleeper_name}*" }}

[[sources.process]]
name = "by-cmdline"
interval = "100ms"
match = {{ cmdline = '/{script_name} --token=\S+ --mode fast$' }}
"#
    ));
    let sleeper = rig.sleeper(&format!("{sleeper_name}a"));
    let reaped = rig.sleeper(&format!("{sleeper_name}b"));
    let script = rig.script(&script_name);
    let mut children = Children::default();
    // Running before herald starts: announced by its first look, late.
    // Once that is in, whatever starts next is seen as it happens.
    let marker = rig.sleeper(&format!("{sleeper_name}m"));
    let marker_pid = children.start(&marker, &["300"], false);
    let agent = rig.start();
    let first = rig.wait_for("the first look", |e| {
        is(e, "herald.process.started", marker_pid)
    });
    assert_eq!(first["payload"]["observed_late"], true, "{first}");

    let killed_pid = children.start(&sleeper, &["300"], false);
    let reaped_pid = children.start(&reaped, &["300"], false);
    let script_pid = children.start(&script, &["--token=hunter2", "--mode", "fast"], true);

    // Started, with the labels a user sees in Prefect.
    let user = current_user();
    for (pid, path, name) in [
        (killed_pid, &sleeper, format!("{sleeper_name}a")),
        (reaped_pid, &reaped, format!("{sleeper_name}b")),
    ] {
        let started = rig.wait_for("the sleeper's start", |e| {
            is(e, "herald.process.started", pid)
        });
        let resource = &started["resource"];
        assert_eq!(resource["herald.process.name"], name.as_str(), "{started}");
        assert_eq!(resource["prefect.resource.name"], name.as_str());
        assert_eq!(resource["herald.process.pid"], pid.to_string());
        assert_eq!(
            resource["herald.process.exe"],
            path.display().to_string().as_str()
        );
        assert_eq!(
            resource["herald.process.cmdline"],
            format!("{} 300", path.display()).as_str()
        );
        assert_eq!(resource["herald.process.user"], user.as_str());
        let start_time = resource["herald.process.start-time"]
            .as_str()
            .expect("a start time");
        let start = chrono::DateTime::parse_from_rfc3339(start_time).expect("RFC 3339");
        let age = chrono::Utc::now().signed_duration_since(start);
        assert!(age.num_seconds().abs() < 60, "{start_time}");
        assert_eq!(started["payload"]["observed_late"], false);
        let related = started["related"].as_array().expect("related");
        assert!(
            related
                .iter()
                .any(|r| r["prefect.resource.id"] == "herald.host.test-host"
                    && r["prefect.resource.role"] == "host"),
            "{started}"
        );
    }
    let script_started = rig.wait_for("the script's start", |e| {
        is(e, "herald.process.started", script_pid)
    });
    let cmdline = script_started["resource"]["herald.process.cmdline"]
        .as_str()
        .expect("a command line");
    assert!(
        cmdline.ends_with(&format!("{} --token=*** --mode fast", script.display())),
        "matched by the regex and redacted: {cmdline}"
    );
    assert_eq!(
        script_started["resource"]["herald.process.name"],
        script_name.as_str()
    );

    // Killed and left unreaped: herald reads the signal from the zombie.
    children.kill(killed_pid);
    let exited = rig.wait_for("the killed sleeper's exit", |e| {
        is(e, "herald.process.exited", killed_pid)
    });
    let payload = &exited["payload"];
    assert_eq!(payload["exit_status_known"], true, "{exited}");
    assert_eq!(payload["signal"], 9);
    assert_eq!(payload["signal_name"], "SIGKILL");
    assert_eq!(payload["core_dumped"], false);
    assert!(payload.get("exit_code").is_none(), "{exited}");
    assert!(
        payload["run_time_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0)
    );
    assert_eq!(
        exited["resource"]["herald.process.cmdline"],
        format!("{} 300", sleeper.display()).as_str()
    );
    let status = children.reap(killed_pid);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // Exits 3, left unreaped until herald has reported it.
    {
        let stdin = children.get(script_pid).stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").expect("write to the script");
    }
    let exited = rig.wait_for("the script's exit", |e| {
        is(e, "herald.process.exited", script_pid)
    });
    assert_eq!(exited["payload"]["exit_status_known"], true, "{exited}");
    assert_eq!(exited["payload"]["exit_code"], 3);
    assert!(exited["payload"].get("signal").is_none());
    assert_eq!(children.reap(script_pid).code(), Some(3));

    // Killed and reaped while herald cannot look (stopped): gone without a
    // trace of its status.
    let mut agent = agent;
    agent.signal("STOP");
    children.kill(reaped_pid);
    children.reap(reaped_pid);
    agent.signal("CONT");
    let exited = rig.wait_for("the reaped sleeper's exit", |e| {
        is(e, "herald.process.exited", reaped_pid)
    });
    assert_eq!(exited["payload"]["exit_status_known"], false, "{exited}");
    assert_eq!(
        exited["payload"]["exit_status_unknown_reason"],
        "reaped before herald saw it"
    );
    assert!(exited["payload"].get("exit_code").is_none());
    assert!(exited["payload"].get("signal").is_none());
    rig.stop(agent);

    // Each process was announced once per event kind. The script's name
    // does not match the name glob: its events come from the cmdline
    // source alone.
    let events = rig.process_events();
    for pid in [killed_pid, reaped_pid, script_pid] {
        for name in ["herald.process.started", "herald.process.exited"] {
            let n = events
                .iter()
                .filter(|e| e["event"] == name && e["payload"]["pid"] == pid)
                .count();
            assert_eq!(n, 1, "{name} of {pid}: {events:#?}");
        }
    }
    // Nothing secret went to disk.
    let state = rig.dir.path().join("data/state/by-cmdline.processes.json");
    let saved = std::fs::read_to_string(&state).expect("the state file");
    assert!(!saved.contains("hunter2"), "{saved}");
    let mode = std::fs::metadata(&state)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn after_a_restart_only_what_changed_meanwhile_is_reported() {
    let name = unique("r");
    let rig = Rig::new(&format!(
        r#"
[[sources.process]]
name = "sleepers"
interval = "100ms"
match = {{ name = "{name}*" }}
"#
    ));
    let keeps = rig.sleeper(&format!("{name}k"));
    let dies = rig.sleeper(&format!("{name}d"));
    let mut children = Children::default();
    let keeps_pid = children.start(&keeps, &["300"], false);
    let dies_pid = children.start(&dies, &["300"], false);

    // The first run finds both already running: announced, late.
    let agent = rig.start();
    for pid in [keeps_pid, dies_pid] {
        let started = rig.wait_for("a start", |e| is(e, "herald.process.started", pid));
        assert_eq!(started["payload"]["observed_late"], true, "{started}");
    }
    rig.stop(agent);

    // While herald is stopped, one of them exits.
    children.kill(dies_pid);
    children.reap(dies_pid);

    let agent = rig.start();
    let exited = rig.wait_for("the exit seen late", |e| {
        is(e, "herald.process.exited", dies_pid)
    });
    let payload = &exited["payload"];
    assert_eq!(payload["observed_late"], true, "{exited}");
    assert_eq!(payload["exit_status_known"], false);
    assert_eq!(
        payload["exit_status_unknown_reason"],
        "herald was not running when it exited"
    );
    assert!(payload.get("run_time_seconds").is_none(), "{exited}");
    // Give herald ticks to say anything more it would say.
    rig.wait_beats(5);
    rig.stop(agent);

    let events = rig.process_events();
    let count = |name: &str, pid: u32| {
        events
            .iter()
            .filter(|e| e["event"] == name && e["payload"]["pid"] == pid)
            .count()
    };
    assert_eq!(count("herald.process.exited", dies_pid), 1, "{events:#?}");
    assert_eq!(count("herald.process.started", keeps_pid), 1, "{events:#?}");
    assert_eq!(count("herald.process.started", dies_pid), 1, "{events:#?}");
    assert_eq!(count("herald.process.exited", keeps_pid), 0, "{events:#?}");
    // Every post of the second run together: nothing but that exit (and
    // heartbeats, lifecycle) was sent, not even a copy with the same id.
    let raw_process_events = rig
        .endpoint
        .accepted_events()
        .into_iter()
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|n| n.starts_with("herald.process."))
        })
        .count();
    assert_eq!(raw_process_events, 3);
}

#[test]
fn a_source_without_a_selector_is_a_config_error_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "[[sources.process]]\nname = \"p\"\ninterval = \"1s\"\n",
    );
    let run = herald()
        .args(["validate", "--config"])
        .arg(&config)
        .run(LIMIT);
    assert_eq!(run.code(), Some(78), "{}", run.stderr_text());
    let text = format!("{}\n{}", run.stdout_text(), run.stderr_text());
    assert!(
        text.contains("herald.toml:1:1: [[sources.process]] is missing the required key `match`"),
        "{text}"
    );
}
