//! The host source's transitions, driven by made-up readings on tokio's
//! paused clock: the whole loop runs (sampling, tracking, emitting, saving
//! the known state once the emitted transitions are durable), with a fake
//! [`HostReader`] the test changes between ticks.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{HostConfig, InterfaceFilter};
use super::read::{
    BootInfo, CpuTimes, HostReader, InterfaceReading, Load, Memory, MountEntry, Stat, Usage,
};
use super::track::KnownState;
use super::{Sampler, run};
use crate::observation::Observation;
use crate::sources::Emitter;
use crate::sources::known_state::StateFile;
use crate::sources::threshold::{Level, Threshold};

const SECOND: Duration = Duration::from_secs(1);
const GIB: u64 = 1 << 30;

/// What the fake host shows; the test changes it between ticks.
struct FakeHost {
    boot_id: Option<String>,
    /// CPU busy % for the next ticks.
    cpu_busy: u64,
    cpu: CpuTimes,
    memory: Option<Memory>,
    load: Load,
    mounts: Vec<MountEntry>,
    /// Used % per mount point; absent: unreadable.
    used: BTreeMap<String, f64>,
    /// Inodes used %, on every mount.
    inodes_used: f64,
    interfaces: Vec<InterfaceReading>,
    /// How often `usage` was called, to prove what is not watched is not
    /// asked.
    usage_calls: BTreeMap<String, u32>,
}

impl FakeHost {
    fn new() -> Self {
        FakeHost {
            boot_id: Some("boot-1".into()),
            cpu_busy: 10,
            cpu: CpuTimes { total: 0, idle: 0 },
            memory: Some(Memory {
                total: 8 * GIB,
                available: 6 * GIB,
                swap_total: 0,
                swap_free: 0,
            }),
            load: Load {
                one: 0.5,
                five: 0.5,
                fifteen: 0.5,
            },
            mounts: vec![
                mount("/", "254:0", "/dev/vda", "ext4"),
                mount("/run", "0:25", "tmpfs", "tmpfs"),
            ],
            used: BTreeMap::from([("/".to_owned(), 40.0)]),
            inodes_used: 10.0,
            interfaces: vec![
                interface("lo", true, &["127.0.0.1/8"]),
                interface("eth0", true, &["10.0.0.5/24"]),
            ],
            usage_calls: BTreeMap::new(),
        }
    }

    fn memory_used(&mut self, percent: f64) {
        let total = 8 * GIB;
        let available = (total as f64 * (1.0 - percent / 100.0)) as u64;
        self.memory = Some(Memory {
            total,
            available,
            swap_total: 0,
            swap_free: 0,
        });
    }

    fn interface(&mut self, name: &str) -> &mut InterfaceReading {
        let found = self.interfaces.iter().position(|i| i.name == name);
        match found {
            Some(i) => &mut self.interfaces[i],
            None => panic!("no interface {name}"),
        }
    }
}

fn mount(point: &str, device_id: &str, device: &str, fs_type: &str) -> MountEntry {
    MountEntry {
        mount_point: point.into(),
        device: device.into(),
        device_id: device_id.into(),
        root: "/".into(),
        fs_type: fs_type.into(),
    }
}

fn interface(name: &str, up: bool, addresses: &[&str]) -> InterfaceReading {
    InterfaceReading {
        name: name.into(),
        operstate: if up { "up" } else { "down" }.into(),
        up,
        mac: Some("02:00:00:00:00:01".into()),
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn unreadable() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "hidden")
}

struct FakeReader(Arc<Mutex<FakeHost>>);

impl FakeReader {
    fn host(&self) -> MutexGuard<'_, FakeHost> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HostReader for FakeReader {
    fn boot(&mut self) -> io::Result<BootInfo> {
        let boot_id = self.host().boot_id.clone().ok_or_else(unreadable)?;
        Ok(BootInfo {
            boot_id,
            boot_time: Some(1_700_000_000),
            uptime_seconds: Some(12.5),
        })
    }

    fn stat(&mut self) -> io::Result<Stat> {
        let mut host = self.host();
        let busy = host.cpu_busy;
        host.cpu.total += 100;
        host.cpu.idle += 100 - busy;
        Ok(Stat {
            cpu: host.cpu,
            cores: 4,
        })
    }

    fn memory(&mut self) -> io::Result<Memory> {
        self.host().memory.ok_or_else(unreadable)
    }

    fn load(&mut self) -> io::Result<Load> {
        Ok(self.host().load)
    }

    fn mounts(&mut self) -> io::Result<Arc<[MountEntry]>> {
        Ok(self.host().mounts.clone().into())
    }

    fn usage(&mut self, mount_point: &str) -> io::Result<Usage> {
        let mut host = self.host();
        *host.usage_calls.entry(mount_point.to_owned()).or_default() += 1;
        let used = *host.used.get(mount_point).ok_or_else(unreadable)?;
        let total = 100 * GIB;
        let free = (total as f64 * (1.0 - used / 100.0)) as u64;
        Ok(Usage {
            total_bytes: total,
            free_bytes: free,
            available_bytes: free,
            inodes_total: 1000,
            inodes_free: 1000 - (host.inodes_used * 10.0) as u64,
        })
    }

    fn interfaces(&mut self) -> io::Result<Vec<InterfaceReading>> {
        Ok(self.host().interfaces.clone())
    }
}

/// A config whose thresholds are easy to cross in a test.
fn config() -> HostConfig {
    let mut config = HostConfig::new("host");
    config.cpu = Some(Threshold::new(90.0, 80.0, 10 * SECOND));
    config.memory = Some(Threshold::new(90.0, 80.0, Duration::ZERO));
    config.inodes = None;
    config
}

/// A running source over a fake host, its state in a temp dir.
struct Rig {
    host: Arc<Mutex<FakeHost>>,
    dir: Arc<TempDir>,
    /// When the source started: its ticks fall on whole seconds after it.
    started: Instant,
    rx: mpsc::Receiver<Vec<Observation>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Rig {
    fn start(config: HostConfig) -> Rig {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Rig::start_with(config, Arc::new(Mutex::new(FakeHost::new())), dir)
    }

    fn start_with(config: HostConfig, host: Arc<Mutex<FakeHost>>, dir: Arc<TempDir>) -> Rig {
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::new(config),
            Box::new(FakeReader(host.clone())),
            dir.path().to_owned(),
            "test-host".into(),
            Emitter::new(tx),
            cancel.clone(),
        ));
        Rig {
            host,
            dir,
            started: Instant::now(),
            rx,
            cancel,
            task,
        }
    }

    fn host(&self) -> MutexGuard<'_, FakeHost> {
        self.host.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the source emits during the next `seconds` of (paused) time;
    /// each batch is made durable as the pipeline would. Windows end half
    /// way between two ticks, so a reading changed after one is sampled
    /// first by the tick after it.
    async fn collect(&mut self, seconds: u64) -> Vec<Observation> {
        self.collect_with(seconds, true).await
    }

    async fn collect_with(&mut self, seconds: u64, durable: bool) -> Vec<Observation> {
        let elapsed = Instant::now().duration_since(self.started) + Duration::from_secs(seconds);
        let deadline = self.started + Duration::from_secs(elapsed.as_secs()) + SECOND / 2;
        let mut seen = Vec::new();
        while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            for mut observation in batch {
                if let Some(callback) = observation.on_durable.take()
                    && durable
                {
                    callback.fire();
                }
                seen.push(observation);
            }
        }
        seen
    }

    /// Stops the source and waits for any state save in flight.
    async fn stop(self) -> (Arc<Mutex<FakeHost>>, Arc<TempDir>) {
        self.cancel.cancel();
        self.task.await.expect("the source stops cleanly");
        settle().await;
        (self.host, self.dir)
    }

    fn saved(&self) -> Option<KnownState> {
        StateFile::new(self.dir.path(), "host", "known").load()
    }
}

/// Lets blocking saves started by durability callbacks finish.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn kinds(observations: &[Observation]) -> Vec<&str> {
    observations.iter().map(|o| o.kind.as_ref()).collect()
}

fn field<'o>(observation: &'o Observation, name: &str) -> &'o Value {
    observation
        .field(name)
        .unwrap_or_else(|| panic!("{} has no {name}: {observation:?}", observation.kind))
}

#[tokio::test(start_paused = true)]
async fn the_first_run_announces_the_boot_and_records_a_silent_baseline() {
    let mut rig = Rig::start(config());
    let seen = rig.collect(5).await;
    assert_eq!(kinds(&seen), ["host.booted"], "{seen:?}");
    let booted = &seen[0];
    assert_eq!(field(booted, "boot_id"), "boot-1");
    assert_eq!(field(booted, "first_run"), true);
    assert_eq!(field(booted, "boot_time"), "2023-11-14T22:13:20Z");
    assert_eq!(field(booted, "uptime_seconds"), 12.5);
    assert_eq!(booted.field("previous_boot_id"), None);
    assert_eq!(booted.identity.as_deref(), Some(&b"booted\0boot-1"[..]));
    settle().await;
    let saved = rig.saved().expect("state saved once the boot is durable");
    assert_eq!(saved.boot_id.as_deref(), Some("boot-1"));
    let mounts = saved.mounts.expect("mounts recorded");
    assert_eq!(
        mounts.keys().collect::<Vec<_>>(),
        ["/"],
        "tmpfs is not watched"
    );
    let interfaces = saved.interfaces.expect("interfaces recorded");
    assert_eq!(
        interfaces.keys().collect::<Vec<_>>(),
        ["eth0"],
        "loopback is not watched"
    );
    assert_eq!(
        rig.host().usage_calls.get("/run"),
        None,
        "tmpfs never asked"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn hysteresis_makes_one_transition_of_a_reading_wobbling_around_a_threshold() {
    let mut rig = Rig::start(config());
    rig.collect(2).await;
    for i in 0..30 {
        rig.host().memory_used(if i % 2 == 0 { 90.5 } else { 89.5 });
        let seen = rig.collect(1).await;
        if i == 0 {
            assert_eq!(kinds(&seen), ["host.memory-high"]);
            let high = &seen[0];
            assert_eq!(field(high, "used_percent"), 90.5);
            assert_eq!(field(high, "total_bytes"), 8 * GIB);
            assert_eq!(field(high, "high"), 90.0);
            assert_eq!(field(high, "clear"), 80.0);
            assert_eq!(field(high, "for_seconds"), 0.0);
        } else {
            assert_eq!(kinds(&seen), Vec::<&str>::new(), "tick {i}: no flapping");
        }
    }
    let mut normal = Vec::new();
    for i in 0..30 {
        rig.host().memory_used(if i % 2 == 0 { 79.5 } else { 80.5 });
        normal.extend(rig.collect(1).await);
    }
    assert_eq!(kinds(&normal), ["host.memory-normal"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cpu_goes_high_only_after_staying_high_for_its_duration() {
    let mut rig = Rig::start(config());
    rig.collect(3).await;
    rig.host().cpu_busy = 95;
    let seen = rig.collect(5).await;
    assert!(seen.is_empty(), "5s of 95% is not 10s: {seen:?}");
    rig.host().cpu_busy = 50;
    rig.collect(1).await;
    rig.host().cpu_busy = 95;
    let seen = rig.collect(9).await;
    assert!(seen.is_empty(), "the dip restarted the wait: {seen:?}");
    let seen = rig.collect(3).await;
    assert_eq!(kinds(&seen), ["host.cpu-high"]);
    assert_eq!(field(&seen[0], "usage_percent"), 95.0);
    assert_eq!(field(&seen[0], "cores"), 4);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn load_is_per_core_and_no_swap_never_fires() {
    let mut config = config();
    config.load = Some(Threshold::new(2.0, 1.5, Duration::ZERO));
    config.swap = Some(Threshold::new(0.0001, 0.00001, Duration::ZERO));
    let mut rig = Rig::start(config);
    rig.collect(2).await;
    rig.host().load.one = 7.9;
    assert!(rig.collect(2).await.is_empty(), "7.9 on 4 cores is below 2");
    rig.host().load.one = 8.4;
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.load-high"]);
    assert_eq!(field(&seen[0], "load_per_core"), 2.1);
    assert_eq!(field(&seen[0], "load1"), 8.4);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_mount_filling_and_draining() {
    let mut config = config();
    config.inodes = Some(Threshold::new(90.0, 85.0, Duration::ZERO));
    let mut rig = Rig::start(config);
    {
        let mut host = rig.host();
        host.mounts.push(mount("/data", "8:16", "/dev/sdb1", "xfs"));
        host.used.insert("/data".into(), 50.0);
    }
    rig.collect(2).await;
    rig.host().used.insert("/data".into(), 91.0);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.disk-high"]);
    let high = &seen[0];
    assert_eq!(field(high, "mount_point"), "/data");
    assert_eq!(field(high, "device"), "/dev/sdb1");
    assert_eq!(field(high, "fs_type"), "xfs");
    assert_eq!(field(high, "used_percent"), 91.0);
    assert_eq!(field(high, "total_bytes"), 100 * GIB);
    rig.host().used.insert("/data".into(), 88.0);
    assert!(rig.collect(3).await.is_empty(), "between clear and high");
    rig.host().used.insert("/data".into(), 19.0);
    rig.host().inodes_used = 95.0;
    let seen: Vec<Observation> = rig
        .collect(2)
        .await
        .into_iter()
        .filter(|o| o.field("mount_point") == Some(&json!("/data")))
        .collect();
    assert_eq!(kinds(&seen), ["host.disk-normal", "host.inodes-high"]);
    assert_eq!(field(&seen[1], "inodes_total"), 1000);
    assert_eq!(field(&seen[1], "inodes_free"), 50);
    let identity = |o: &Observation| o.identity.clone().expect("identity");
    let normal = identity(&seen[0]);
    assert!(normal.starts_with(b"boot-1\0herald.mount.test-host:/data\0disk\0"));
    assert!(
        normal.ends_with(&2u64.to_be_bytes()),
        "the second disk transition"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn mounts_coming_and_going_after_the_baseline_are_announced() {
    let mut rig = Rig::start(config());
    rig.collect(2).await;
    {
        let mut host = rig.host();
        host.mounts
            .push(mount("/mnt/usb", "8:33", "/dev/sdc1", "vfat"));
        host.mounts
            .push(mount("/mnt/usb/again", "8:33", "/dev/sdc1", "vfat"));
        host.mounts
            .push(mount("/dev/shm", "0:26", "tmpfs", "tmpfs"));
        host.used.insert("/mnt/usb".into(), 10.0);
    }
    let seen = rig.collect(2).await;
    assert_eq!(
        kinds(&seen),
        ["host.mount-added"],
        "a bind mount is one mount"
    );
    assert_eq!(field(&seen[0], "mount_point"), "/mnt/usb");
    rig.host()
        .mounts
        .retain(|m| !m.mount_point.starts_with("/mnt/usb"));
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.mount-removed"]);
    assert_eq!(field(&seen[0], "device"), "/dev/sdc1");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_interface_going_down_and_up() {
    let mut rig = Rig::start(config());
    rig.collect(2).await;
    {
        let mut host = rig.host();
        let eth0 = host.interface("eth0");
        eth0.up = false;
        eth0.operstate = "down".into();
        host.interface("lo").up = false;
    }
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.interface-down"], "lo is not watched");
    let down = &seen[0];
    assert_eq!(field(down, "interface"), "eth0");
    assert_eq!(field(down, "operstate"), "down");
    assert_eq!(field(down, "mac"), "02:00:00:00:00:01");
    assert_eq!(field(down, "addresses"), &json!(["10.0.0.5/24"]));
    {
        let mut host = rig.host();
        let eth0 = host.interface("eth0");
        eth0.up = true;
        eth0.operstate = "up".into();
    }
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.interface-up"]);
    // A new interface that comes up is announced; one that disappears
    // while up went down with it.
    rig.host()
        .interfaces
        .push(interface("wg0", true, &["10.9.0.1/32"]));
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.interface-up"]);
    assert_eq!(field(&seen[0], "interface"), "wg0");
    rig.host().interfaces.retain(|i| i.name != "wg0");
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.interface-down"]);
    assert_eq!(field(&seen[0], "operstate"), "absent");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn address_changes_say_what_was_added_and_removed() {
    let mut rig = Rig::start(config());
    rig.collect(2).await;
    rig.host().interface("eth0").addresses =
        BTreeSet::from(["10.0.0.7/24".to_owned(), "fe80::1/64".to_owned()]);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.interface-addresses-changed"]);
    let changed = &seen[0];
    assert_eq!(
        field(changed, "added"),
        &json!(["10.0.0.7/24", "fe80::1/64"])
    );
    assert_eq!(field(changed, "removed"), &json!(["10.0.0.5/24"]));
    assert_eq!(
        field(changed, "addresses"),
        &json!(["10.0.0.7/24", "fe80::1/64"])
    );
    assert!(rig.collect(3).await.is_empty(), "no change, no event");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn interfaces_can_be_turned_off_or_filtered() {
    let mut config = config();
    config.interfaces = Some(InterfaceFilter {
        include: vec![glob::Pattern::new("wl*").expect("glob")],
        exclude: Vec::new(),
    });
    let mut rig = Rig::start(config);
    rig.collect(2).await;
    rig.host().interface("eth0").up = false;
    assert!(rig.collect(2).await.is_empty(), "eth0 is not included");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_announces_only_what_changed_meanwhile() {
    let mut config = config();
    config.memory = Some(Threshold::new(90.0, 80.0, Duration::ZERO));
    let mut rig = Rig::start(config.clone());
    rig.host().used.insert("/".into(), 95.0);
    rig.host().memory_used(95.0);
    let seen = rig.collect(3).await;
    assert_eq!(
        kinds(&seen),
        ["host.booted", "host.memory-high", "host.disk-high"]
    );
    let (host, dir) = rig.stop().await;
    let saved = StateFile::new(dir.path(), "host", "known")
        .load::<KnownState>()
        .expect("saved");
    assert_eq!(saved.levels.get("memory"), Some(&Level::High));

    // Same boot, the disk still full: nothing new.
    let mut rig = Rig::start_with(config.clone(), host, dir);
    assert!(
        rig.collect(5).await.is_empty(),
        "nothing is announced again"
    );
    // Memory fell while herald was down? Then that is news.
    rig.host().memory_used(50.0);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.memory-normal"]);
    let (host, dir) = rig.stop().await;

    // A new boot: announced with the one before, and the counters restart.
    host.lock().unwrap_or_else(|e| e.into_inner()).boot_id = Some("boot-2".into());
    let mut rig = Rig::start_with(config, host, dir);
    rig.host().memory_used(95.0);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.booted", "host.memory-high"]);
    assert_eq!(field(&seen[0], "previous_boot_id"), "boot-1");
    assert_eq!(field(&seen[0], "first_run"), false);
    let identity = seen[1].identity.clone().expect("identity");
    assert_eq!(
        identity,
        [
            &b"boot-2\0herald.host.test-host\0memory\0"[..],
            &1u64.to_be_bytes()
        ]
        .concat()
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn state_waits_for_durability_and_a_crash_repeats_the_same_ids() {
    let mut rig = Rig::start(config());
    rig.host().used.insert("/".into(), 95.0);
    let first = rig.collect_with(3, false).await;
    assert_eq!(kinds(&first), ["host.booted", "host.disk-high"]);
    settle().await;
    assert_eq!(rig.saved(), None, "nothing durable, nothing saved");
    // The agent dies before the queue made them durable.
    let (host, dir) = rig.stop().await;
    let mut rig = Rig::start_with(config(), host, dir);
    let again = rig.collect(3).await;
    assert_eq!(kinds(&again), ["host.booted", "host.disk-high"]);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.identity, b.identity, "{} keeps its id", a.kind);
    }
    settle().await;
    let saved = rig.saved().expect("saved once durable");
    assert_eq!(
        saved.mounts.and_then(|m| m.get("/").map(|m| m.disk)),
        Some(Level::High)
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unreadable_parts_are_left_out_and_the_rest_goes_on() {
    let mut config = config();
    config.inodes = None;
    let mut rig = Rig::start(config);
    {
        let mut host = rig.host();
        host.memory = None;
        host.used.remove("/");
        host.mounts.push(mount("/data", "8:16", "/dev/sdb1", "xfs"));
        host.used.insert("/data".into(), 95.0);
    }
    let seen = rig.collect(3).await;
    assert_eq!(kinds(&seen), ["host.booted", "host.disk-high"]);
    assert_eq!(field(&seen[1], "mount_point"), "/data");
    settle().await;
    let saved = rig.saved().expect("saved");
    let mounts = saved.mounts.expect("mounts");
    assert!(
        mounts.contains_key("/"),
        "a mount whose usage cannot be read is still known, not removed"
    );
    // Memory comes back: it is watched again.
    rig.host().memory_used(95.0);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.memory-high"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_boot_id_announces_no_boot_but_everything_else() {
    let host = Arc::new(Mutex::new(FakeHost::new()));
    host.lock().unwrap_or_else(|e| e.into_inner()).boot_id = None;
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut rig = Rig::start_with(config(), host, dir);
    rig.host().memory_used(95.0);
    let seen = rig.collect(2).await;
    assert_eq!(kinds(&seen), ["host.memory-high"]);
    rig.stop().await;
}

#[test]
fn the_sampler_reports_a_failing_part_once_and_its_recovery() {
    let host = Arc::new(Mutex::new(FakeHost::new()));
    let mut sampler = Sampler::new(Arc::new(config()), Box::new(FakeReader(host.clone())));
    host.lock().unwrap_or_else(|e| e.into_inner()).memory = None;
    for _ in 0..3 {
        let sample = sampler.sample();
        assert!(sample.memory.is_none());
        assert!(sample.stat.is_some());
    }
    assert_eq!(
        sampler.failing.iter().collect::<Vec<_>>(),
        ["/proc/meminfo"]
    );
    host.lock()
        .unwrap_or_else(|e| e.into_inner())
        .memory_used(10.0);
    assert!(sampler.sample().memory.is_some());
    assert!(sampler.failing.is_empty());
}
