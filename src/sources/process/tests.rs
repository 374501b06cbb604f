//! The tracker driven by injected `/proc` readings and tokio's paused
//! clock: what each tick reports, what it reads, and what it remembers.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::{MemoryLevel, MemoryThreshold, ProcessConfig, Selector, User};
use super::procfs::{Container, Creds, ProcReader, Stat, System};
use super::state::Known;
use super::tracker::{NOT_PERMITTED, NOT_RUNNING, REAPED, REBOOTED, Tracker, redact};
use crate::observation::Observation;
use crate::sources::threshold::Threshold;

const HZ: u64 = 100;
const ME: Creds = Creds {
    uid: [1000; 4],
    gid: [1000; 4],
    cap_eff: 0,
};
const OTHER: Creds = Creds {
    uid: [33; 4],
    gid: [33; 4],
    cap_eff: 0,
};

#[derive(Clone)]
struct FakeProcess {
    stat: Stat,
    cmdline: Vec<u8>,
    exe: Option<String>,
    creds: Creds,
    container: Option<Container>,
}

/// A `/proc` made of a map, counting what is read.
#[derive(Default)]
struct FakeProc {
    processes: HashMap<u32, FakeProcess>,
    uptime: f64,
    reads: HashMap<(u32, &'static str), usize>,
}

impl FakeProc {
    fn spawn(&mut self, pid: u32, comm: &str, cmdline: &str) -> &mut FakeProcess {
        let start_ticks = (self.uptime * HZ as f64) as u64;
        self.processes.insert(
            pid,
            FakeProcess {
                stat: Stat {
                    comm: comm.to_owned(),
                    state: b'S',
                    ppid: 1,
                    kernel_thread: false,
                    cpu_ticks: 0,
                    start_ticks,
                    rss_pages: 100,
                    exit_code: Some(0),
                },
                cmdline: cmdline.replace(' ', "\0").into_bytes(),
                exe: Some(format!("/usr/bin/{comm}")),
                creds: ME,
                container: None,
            },
        );
        self.processes.get_mut(&pid).expect("just inserted")
    }

    fn zombie(&mut self, pid: u32, wait_status: i32) {
        let p = self.processes.get_mut(&pid).expect("exists");
        p.stat.state = b'Z';
        p.stat.exit_code = Some(wait_status);
        p.cmdline.clear();
        p.exe = None;
    }

    fn count(&mut self, pid: u32, file: &'static str) {
        *self.reads.entry((pid, file)).or_default() += 1;
    }

    fn reads_of(&self, pid: u32) -> usize {
        self.reads
            .iter()
            .filter(|((p, _), _)| *p == pid)
            .map(|(_, n)| n)
            .sum()
    }
}

impl ProcReader for FakeProc {
    fn pids(&mut self, out: &mut Vec<u32>) -> io::Result<()> {
        out.clear();
        out.extend(self.processes.keys());
        Ok(())
    }
    fn uptime(&mut self) -> Option<f64> {
        Some(self.uptime)
    }
    fn stat(&mut self, pid: u32) -> Option<Stat> {
        self.count(pid, "stat");
        self.processes.get(&pid).map(|p| p.stat.clone())
    }
    fn cmdline(&mut self, pid: u32) -> Option<Vec<u8>> {
        self.count(pid, "cmdline");
        self.processes.get(&pid).map(|p| p.cmdline.clone())
    }
    fn exe(&mut self, pid: u32) -> Option<String> {
        self.count(pid, "exe");
        self.processes.get(&pid).and_then(|p| p.exe.clone())
    }
    fn creds(&mut self, pid: u32) -> Option<Creds> {
        self.count(pid, "status");
        self.processes.get(&pid).map(|p| p.creds)
    }
    fn container(&mut self, pid: u32) -> Option<Container> {
        self.count(pid, "cgroup");
        self.processes.get(&pid).and_then(|p| p.container.clone())
    }
    fn user_name(&mut self, uid: u32) -> Option<String> {
        match uid {
            1000 => Some("alice".into()),
            33 => Some("www-data".into()),
            _ => None,
        }
    }
}

fn system(boot_id: &str) -> System {
    System {
        boot_id: boot_id.to_owned(),
        clock_ticks: HZ,
        page_size: 4096,
        mem_total: 1 << 30,
        boot_time: 1_700_000_000.0,
        own: ME,
    }
}

fn by_name(name: &str) -> ProcessConfig {
    let mut selector = Selector::none();
    selector.name = glob::Pattern::new(name).ok();
    ProcessConfig::new("procs", selector)
}

/// A tracker, its fake `/proc`, and a clock that moves one second a tick.
struct Rig {
    tracker: Tracker,
    proc: FakeProc,
    wall: DateTime<Utc>,
}

impl Rig {
    fn new(config: ProcessConfig) -> Rig {
        Rig::resume(config, "boot-1", None)
    }

    fn resume(config: ProcessConfig, boot: &str, known: Option<Known>) -> Rig {
        let proc = FakeProc {
            uptime: 1000.0,
            ..FakeProc::default()
        };
        Rig {
            tracker: Tracker::new(config, system(boot), known),
            proc,
            wall: DateTime::from_timestamp(1_700_001_000, 0).expect("valid"),
        }
    }

    fn tick(&mut self) -> Vec<Observation> {
        let mut out = Vec::new();
        self.tracker
            .tick(&mut self.proc, Instant::now(), self.wall, &mut out);
        out
    }

    /// Moves the clocks (tokio's paused one included) by `seconds`.
    async fn advance(&mut self, seconds: u64) {
        tokio::time::advance(Duration::from_secs(seconds)).await;
        self.proc.uptime += seconds as f64;
        self.wall += chrono::Duration::seconds(seconds as i64);
    }
}

fn kinds(out: &[Observation]) -> Vec<&str> {
    out.iter().map(|o| o.kind.as_ref()).collect()
}

fn field<'o>(o: &'o Observation, name: &str) -> &'o Value {
    o.field(name).unwrap_or(&Value::Null)
}

#[tokio::test(start_paused = true)]
async fn reports_a_matched_start_and_reads_nothing_more_for_others() {
    let mut rig = Rig::new(by_name("worker"));
    rig.proc.spawn(10, "worker", "worker --queue fast");
    rig.proc.spawn(11, "bash", "bash");
    let first = rig.tick();
    assert_eq!(kinds(&first), ["process.started"]);
    let started = &first[0];
    assert_eq!(field(started, "pid"), &json!(10));
    assert_eq!(field(started, "name"), &json!("worker"));
    assert_eq!(field(started, "cmdline"), &json!("worker --queue fast"));
    assert_eq!(field(started, "exe"), &json!("/usr/bin/worker"));
    assert_eq!(field(started, "user"), &json!("alice"));
    assert_eq!(field(started, "uid"), &json!(1000));
    assert_eq!(field(started, "observed_late"), &json!(true), "first run");
    assert!(started.identity.is_some());

    // A new matching process after the first tick is seen as it happens.
    rig.advance(10).await;
    rig.proc.spawn(12, "worker", "worker --queue slow");
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.started"]);
    assert_eq!(field(&out[0], "observed_late"), &json!(false));

    // Later ticks: the bash process (old, unmatched) is not read at all;
    // each matched one costs one stat.
    rig.advance(10).await;
    let bash_reads = rig.proc.reads_of(11);
    let worker_reads = rig.proc.reads_of(10);
    let worker_stats = rig.proc.reads[&(10, "stat")];
    for _ in 0..5 {
        rig.advance(1).await;
        assert!(rig.tick().is_empty());
    }
    assert_eq!(rig.proc.reads_of(11), bash_reads);
    assert_eq!(rig.proc.reads_of(10), worker_reads + 5);
    assert_eq!(rig.proc.reads[&(10, "stat")], worker_stats + 5);
}

#[tokio::test(start_paused = true)]
async fn a_zombie_tells_its_exit_code_or_signal_once() {
    let mut rig = Rig::new(by_name("job*"));
    rig.proc.spawn(20, "job-a", "job-a");
    rig.proc.spawn(21, "job-b", "job-b");
    rig.proc.spawn(22, "job-c", "job-c");
    assert_eq!(rig.tick().len(), 3);
    rig.advance(5).await;
    rig.proc.zombie(20, 3 << 8);
    rig.proc.zombie(21, 9);
    rig.proc.zombie(22, 11 | 0x80);
    let mut out = rig.tick();
    out.sort_by_key(|o| field(o, "pid").as_u64());
    assert_eq!(kinds(&out), ["process.exited"; 3]);
    assert_eq!(field(&out[0], "exit_status_known"), &json!(true));
    assert_eq!(field(&out[0], "exit_code"), &json!(3));
    assert_eq!(field(&out[0], "signal"), &Value::Null);
    assert_eq!(field(&out[0], "run_time_seconds"), &json!(5.0));
    assert_eq!(field(&out[0], "observed_late"), &json!(false));
    assert_eq!(
        field(&out[0], "cmdline"),
        &json!("job-a"),
        "labels as announced"
    );
    assert_eq!(field(&out[1], "signal"), &json!(9));
    assert_eq!(field(&out[1], "signal_name"), &json!("SIGKILL"));
    assert_eq!(field(&out[1], "core_dumped"), &json!(false));
    assert_eq!(field(&out[1], "exit_code"), &Value::Null);
    assert_eq!(field(&out[2], "signal_name"), &json!("SIGSEGV"));
    assert_eq!(field(&out[2], "core_dumped"), &json!(true));

    rig.advance(1).await;
    assert!(rig.tick().is_empty(), "still zombies: reported once");
    rig.proc.processes.clear();
    rig.advance(1).await;
    assert!(rig.tick().is_empty(), "reaped: nothing more");
}

#[tokio::test(start_paused = true)]
async fn an_exit_reaped_between_ticks_is_reported_without_a_status() {
    let mut rig = Rig::new(by_name("worker"));
    rig.proc.spawn(30, "worker", "worker");
    rig.tick();
    rig.advance(3).await;
    rig.proc.processes.remove(&30);
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.exited"]);
    assert_eq!(field(&out[0], "exit_status_known"), &json!(false));
    assert_eq!(field(&out[0], "exit_status_unknown_reason"), &json!(REAPED));
    assert_eq!(field(&out[0], "exit_code"), &Value::Null);
    assert_eq!(field(&out[0], "run_time_seconds"), &json!(3.0));
}

#[tokio::test(start_paused = true)]
async fn another_users_exit_code_is_not_trusted() {
    let mut rig = Rig::new(by_name("nginx"));
    rig.proc.spawn(40, "nginx", "nginx: worker").creds = OTHER;
    let out = rig.tick();
    assert_eq!(field(&out[0], "user"), &json!("www-data"));
    rig.advance(1).await;
    // What the kernel shows an unprivileged reader: 0.
    rig.proc.zombie(40, 0);
    let out = rig.tick();
    assert_eq!(field(&out[0], "exit_status_known"), &json!(false));
    assert_eq!(
        field(&out[0], "exit_status_unknown_reason"),
        &json!(NOT_PERMITTED)
    );
    assert_eq!(field(&out[0], "exit_code"), &Value::Null);
}

#[tokio::test(start_paused = true)]
async fn a_reused_pid_is_an_exit_and_a_start() {
    let mut rig = Rig::new(by_name("worker"));
    rig.proc.spawn(50, "worker", "worker one");
    let first = rig.tick();
    rig.advance(2).await;
    rig.proc.spawn(50, "worker", "worker two");
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.exited", "process.started"]);
    assert_eq!(field(&out[0], "cmdline"), &json!("worker one"));
    assert_eq!(field(&out[1], "cmdline"), &json!("worker two"));
    assert_ne!(first[0].identity, out[1].identity, "another start time");
}

#[tokio::test(start_paused = true)]
async fn a_restart_within_the_window_is_reported() {
    let mut rig = Rig::new(by_name("worker"));
    rig.proc.spawn(60, "worker", "worker --id 1");
    rig.proc.spawn(61, "worker", "worker --id 2");
    rig.tick();
    rig.advance(10).await;
    rig.tick();
    rig.advance(1).await;
    rig.proc.processes.remove(&60);
    assert_eq!(kinds(&rig.tick()), ["process.exited"]);
    rig.advance(3).await;
    rig.proc.spawn(70, "worker", "worker --id 1");
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.started", "process.restarted"]);
    let restarted = &out[1];
    assert_eq!(field(restarted, "pid"), &json!(70));
    assert_eq!(field(restarted, "previous_pid"), &json!(60));
    // From the last tick that saw 60 running (10 s) to 70's start (14 s).
    assert_eq!(field(restarted, "downtime_seconds"), &json!(4.0));
    assert_ne!(out[0].identity, restarted.identity);

    // Another command line, or the same one after the window: no restart.
    rig.advance(1).await;
    rig.proc.processes.remove(&61);
    rig.tick();
    rig.advance(61).await;
    rig.proc.spawn(71, "worker", "worker --id 2");
    rig.proc.spawn(72, "worker", "worker --id 3");
    assert_eq!(kinds(&rig.tick()), ["process.started"; 2]);
}

#[tokio::test(start_paused = true)]
async fn cpu_and_memory_thresholds_do_not_flap() {
    let mut config = by_name("worker");
    config.cpu = Some(Threshold::new(90.0, 70.0, Duration::from_secs(3)));
    config.memory = Some(MemoryThreshold {
        high: MemoryLevel::Percent(50.0),
        clear: MemoryLevel::Bytes(256 << 20),
        for_: Duration::ZERO,
    });
    let mut rig = Rig::new(config);
    rig.proc.spawn(80, "worker", "worker");
    rig.tick();
    let mut seen = Vec::new();
    // Ten minutes wobbling around 90% of a core: one cpu-high.
    for i in 0..600u64 {
        let busy = if i % 7 == 3 { 85 } else { 95 };
        busy_second(&mut rig, 80, busy, &mut seen).await;
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "process.cpu-high");
    assert_eq!(seen[0].2, json!(95.0));
    // Between clear and high: still high. Below clear for 3 s: normal.
    for busy in [80, 80, 60, 60, 60, 60] {
        busy_second(&mut rig, 80, busy, &mut seen).await;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].0, "process.cpu-normal");
    assert_ne!(seen[0].1, seen[1].1, "each transition has its own id");

    // Memory: 50% of 1 GiB is high, 256 MiB clear.
    let pages = |bytes: u64| bytes / 4096;
    rig.proc
        .processes
        .get_mut(&80)
        .expect("runs")
        .stat
        .rss_pages = pages(600 << 20);
    rig.advance(1).await;
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.memory-high"]);
    assert_eq!(field(&out[0], "rss_bytes"), &json!(600u64 << 20));
    assert_eq!(field(&out[0], "high_bytes"), &json!(512u64 << 20));
    rig.proc
        .processes
        .get_mut(&80)
        .expect("runs")
        .stat
        .rss_pages = pages(300 << 20);
    rig.advance(1).await;
    assert!(rig.tick().iter().all(|o| o.kind != "process.memory-normal"));
    rig.proc
        .processes
        .get_mut(&80)
        .expect("runs")
        .stat
        .rss_pages = pages(200 << 20);
    rig.advance(1).await;
    assert_eq!(kinds(&rig.tick()), ["process.memory-normal"]);
}

#[tokio::test(start_paused = true)]
async fn known_state_resumes_without_repeating_itself() {
    let mut config = by_name("worker");
    config.cpu = Some(Threshold::new(50.0, 20.0, Duration::ZERO));
    let mut rig = Rig::new(config.clone());
    rig.proc.spawn(90, "worker", "worker a");
    rig.proc.spawn(91, "worker", "worker b");
    rig.proc.spawn(92, "worker", "worker c");
    let first = rig.tick();
    rig.advance(1).await;
    rig.proc
        .processes
        .get_mut(&90)
        .expect("runs")
        .stat
        .cpu_ticks += 100;
    assert_eq!(kinds(&rig.tick()), ["process.cpu-high"]);
    let known = rig.tracker.known();
    assert_eq!(known.processes.len(), 3);
    let saved = serde_json::to_string(&known).expect("serializes");

    // herald stops; 91 exits, 92's pid is taken by another worker.
    let mut proc = std::mem::take(&mut rig.proc);
    proc.processes.remove(&91);
    proc.uptime += 30.0;
    proc.spawn(92, "worker", "worker d");
    let known: Known = serde_json::from_str(&saved).expect("parses");
    let mut again = Rig::resume(config.clone(), "boot-1", Some(known));
    again.proc = proc;
    let mut out = again.tick();
    out.sort_by_key(|o| (field(o, "pid").as_u64(), o.kind.to_string()));
    assert_eq!(
        kinds(&out),
        ["process.exited", "process.exited", "process.started"],
        "{out:?}"
    );
    for exited in &out[..2] {
        assert_eq!(field(exited, "observed_late"), &json!(true));
        assert_eq!(field(exited, "exit_status_known"), &json!(false));
        assert_eq!(
            field(exited, "exit_status_unknown_reason"),
            &json!(NOT_RUNNING)
        );
        assert_eq!(field(exited, "run_time_seconds"), &Value::Null);
    }
    assert_eq!(field(&out[1], "cmdline"), &json!("worker c"));
    assert_eq!(field(&out[2], "cmdline"), &json!("worker d"));
    assert_eq!(field(&out[2], "observed_late"), &json!(true));
    // The exit of 91 repeats the id it would have had when seen live.
    let live_exit_id = {
        let mut rig = Rig::new(config.clone());
        rig.proc = FakeProc {
            uptime: 1000.0,
            ..FakeProc::default()
        };
        rig.proc.spawn(91, "worker", "worker b");
        assert_eq!(rig.tick()[0].identity, first[1].identity, "same start id");
        rig.proc.processes.clear();
        rig.tick()[0].identity.clone()
    };
    assert_eq!(out[0].identity, live_exit_id);

    // 90 keeps its high level: still busy, no second cpu-high; idle, normal.
    again.advance(1).await;
    again
        .proc
        .processes
        .get_mut(&90)
        .expect("runs")
        .stat
        .cpu_ticks += 100;
    assert!(again.tick().is_empty());
    again.advance(1).await;
    again
        .proc
        .processes
        .get_mut(&90)
        .expect("runs")
        .stat
        .cpu_ticks += 100;
    assert!(again.tick().is_empty());
    again.advance(1).await;
    assert_eq!(kinds(&again.tick()), ["process.cpu-normal"]);

    // After a reboot every known process is gone, under its old boot id.
    let known: Known = serde_json::from_str(&saved).expect("parses");
    let mut rebooted = Rig::resume(config, "boot-2", Some(known));
    rebooted.proc.uptime = 20.0;
    rebooted.proc.spawn(90, "worker", "worker a");
    let out = rebooted.tick();
    assert_eq!(
        kinds(&out),
        [
            "process.exited",
            "process.exited",
            "process.exited",
            "process.started"
        ]
    );
    assert!(
        out[..3]
            .iter()
            .all(|o| field(o, "exit_status_unknown_reason") == &json!(REBOOTED))
    );
    let ids: Vec<_> = out.iter().map(|o| o.identity.clone()).collect();
    assert!(String::from_utf8_lossy(ids[0].as_deref().unwrap_or_default()).starts_with("boot-1\0"));
    assert!(String::from_utf8_lossy(ids[3].as_deref().unwrap_or_default()).starts_with("boot-2\0"));
}

#[tokio::test(start_paused = true)]
async fn a_young_process_is_looked_at_again_after_it_execs() {
    let mut rig = Rig::new(by_name("worker"));
    rig.proc.spawn(1, "systemd", "/sbin/init");
    rig.tick();
    rig.advance(10).await;
    // Caught between fork and exec: the parent's name and command line.
    rig.proc.spawn(100, "systemd", "/sbin/init");
    assert!(rig.tick().is_empty());
    rig.advance(1).await;
    let p = rig.proc.processes.get_mut(&100).expect("runs");
    p.stat.comm = "worker".into();
    p.cmdline = b"worker\0--fast".to_vec();
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.started"]);
    assert_eq!(field(&out[0], "cmdline"), &json!("worker --fast"));
    // An old process that does not match is not looked at again.
    let reads = rig.proc.reads_of(1);
    rig.advance(10).await;
    rig.tick();
    assert_eq!(rig.proc.reads_of(1), reads);
}

#[tokio::test(start_paused = true)]
async fn selectors_combine_and_kernel_threads_never_match() {
    let mut selector = Selector::none();
    selector.all = true;
    selector.user = Some(User::Name("www-data".into()));
    selector.exe = glob::Pattern::new("/usr/*/nginx").ok();
    selector.cmdline = regex::Regex::new("worker process$").ok();
    let mut rig = Rig::new(ProcessConfig::new("procs", selector));
    rig.proc.spawn(2, "kthreadd", "").stat.kernel_thread = true;
    rig.proc.spawn(110, "nginx", "nginx: worker process").creds = OTHER;
    rig.proc.spawn(111, "nginx", "nginx: master process").creds = OTHER;
    rig.proc.spawn(112, "nginx", "nginx: worker process");
    let p = rig.proc.spawn(113, "nginx", "nginx: worker process");
    p.creds = OTHER;
    p.exe = None;
    let out = rig.tick();
    assert_eq!(kinds(&out), ["process.started"]);
    assert_eq!(field(&out[0], "pid"), &json!(110));
    // The kernel thread's name alone was read: it is not even a candidate.
    assert_eq!(rig.proc.reads_of(2), 1);
}

#[tokio::test(start_paused = true)]
async fn labels_are_redacted_cut_and_left_out_when_unreadable() {
    let mut rig = Rig::new(by_name("app"));
    let long = format!(
        "app --password=hunter2 --db postgres://u:pw@db/x --api-key s3cr3t TOKEN=abc {}",
        "x".repeat(2000)
    );
    let p = rig.proc.spawn(120, "app", &long);
    p.exe = None;
    p.container = Some(Container {
        id: "ab".repeat(32),
        runtime: Some("docker"),
        pod_uid: None,
    });
    let out = rig.tick();
    let cmdline = field(&out[0], "cmdline").as_str().expect("a string");
    assert!(
        cmdline.starts_with(
            "app --password=*** --db postgres://u:***@db/x --api-key *** TOKEN=*** xxx"
        ),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains("hunter2") && !cmdline.contains("s3cr3t") && !cmdline.contains("pw@")
    );
    assert_eq!(cmdline.len(), super::CMDLINE_LABEL_MAX);
    assert_eq!(field(&out[0], "exe"), &Value::Null, "left out");
    assert!(out[0].field("exe").is_none());
    assert_eq!(field(&out[0], "container_id"), &json!("ab".repeat(32)));
    assert_eq!(field(&out[0], "container_runtime"), &json!("docker"));
    let saved = serde_json::to_string(&rig.tracker.known()).expect("serializes");
    assert!(!saved.contains("hunter2") && !saved.contains("s3cr3t"));
}

#[test]
fn builtin_redactions_keep_what_is_not_secret() {
    let rules = super::config::builtin_redactions();
    for (line, expected) in [
        (
            "java -Xmx1g -jar app.jar --port 8080",
            "java -Xmx1g -jar app.jar --port 8080",
        ),
        (
            "mysql -u root --password hunter2 db",
            "mysql -u root --password *** db",
        ),
        ("env PGPASSWORD=x psql", "env PGPASSWORD=*** psql"),
        (
            "curl -H Authorization: Bearer eyJhbGciOiJIUzI1 http://x?a=1&access_token=zz&b=2",
            "curl -H Authorization: Bearer *** http://x?a=1&access_token=***&b=2",
        ),
        (
            "app --client-secret=abc --secret-file /etc/s",
            "app --client-secret=*** --secret-file ***",
        ),
        ("redis-server *:6379", "redis-server *:6379"),
    ] {
        assert_eq!(redact(line, &rules), expected, "{line}");
    }
    let custom = vec![super::config::Redaction(
        regex::Regex::new(r"\d{4}-\d{4}").expect("valid"),
    )];
    assert_eq!(redact("card 1234-5678 ok", &custom), "card *** ok");
}

/// One second in which process `pid` used `ticks` clock ticks of CPU;
/// records (kind, identity, cpu_percent) of what the tick emitted.
async fn busy_second(
    rig: &mut Rig,
    pid: u32,
    ticks: u64,
    seen: &mut Vec<(String, Option<Vec<u8>>, Value)>,
) {
    rig.advance(1).await;
    rig.proc
        .processes
        .get_mut(&pid)
        .expect("runs")
        .stat
        .cpu_ticks += ticks;
    for o in rig.tick() {
        seen.push((
            o.kind.to_string(),
            o.identity.clone(),
            field(&o, "cpu_percent").clone(),
        ));
    }
}
