//! The host source's memory: from one [`Sample`] to the next, which
//! transitions happened (a metric went high or back to normal, a mount
//! came or went, an interface went up or down or changed addresses), and
//! the [`KnownState`] that survives a restart.
//!
//! Pure logic over readings and a clock: nothing here reads the host or
//! writes a file, so every transition is tested with made-up samples.
//!
//! # Identities
//! A transition's identity is (boot id, resource, metric, transition
//! counter). The counter of each (resource, metric) is part of the known
//! state, so a transition re-found after a crash (its state was not saved
//! yet) gets the same counter, hence the same event id, and the endpoint
//! keeps one copy. The counters restart at every boot: the boot id keeps
//! identities apart, and the map of counters stays as small as the set of
//! things seen during one boot.
//!
//! # First sight
//! Mounts and interfaces found on the very first sample (no known state)
//! are the baseline, recorded silently. Those appearing later are
//! announced (`host.mount-added`, `host.interface-up` when up). Levels
//! start normal, so a disk already full at the first sample is announced
//! as `host.disk-high` (a `for` wait restarts with the agent).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::config::HostConfig;
use super::read::{BootInfo, CpuTimes, InterfaceReading, Load, Memory, MountEntry, Stat, Usage};
use crate::observation::Observation;
use crate::sources::threshold::{Hysteresis, Level, Threshold};

/// One look at the host. A part is `None` when it was not read (turned
/// off) or could not be read; nothing is concluded from a missing part.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// CPU time and cores.
    pub stat: Option<Stat>,
    /// Memory and swap.
    pub memory: Option<Memory>,
    /// Load averages.
    pub load: Option<Load>,
    /// The watched mounts, each with its usage when it could be read.
    pub mounts: Option<Vec<MountSample>>,
    /// The watched interfaces.
    pub interfaces: Option<Vec<InterfaceReading>>,
}

/// A watched mount and what `statvfs` said about it.
#[derive(Clone, Debug)]
pub struct MountSample {
    /// The mount table entry.
    pub entry: MountEntry,
    /// Its usage; `None` when it could not be read this time.
    pub usage: Option<Usage>,
}

/// What the host source knew when it last saved: enough to announce only
/// real transitions after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KnownState {
    /// The boot during which this was saved.
    pub boot_id: Option<String>,
    /// The level of each host-wide metric (`cpu`, `memory`, `swap`,
    /// `load`).
    pub levels: BTreeMap<String, Level>,
    /// The watched mounts by mount point; `None` before the first mount
    /// table was read.
    pub mounts: Option<BTreeMap<String, KnownMount>>,
    /// The watched interfaces by name; `None` before they were first
    /// listed.
    pub interfaces: Option<BTreeMap<String, KnownInterface>>,
    /// Transitions so far this boot, per `"<metric> <resource>"`.
    pub counters: BTreeMap<String, u64>,
}

/// A watched mount as last known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnownMount {
    /// What is mounted.
    pub device: String,
    /// The file system type.
    pub fs_type: String,
    /// Its disk space level.
    pub disk: Level,
    /// Its inode level.
    pub inodes: Level,
}

/// A watched interface as last known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownInterface {
    /// Whether it was up.
    pub up: bool,
    /// Its operstate.
    pub operstate: String,
    /// Its hardware address.
    pub mac: Option<String>,
    /// Its addresses.
    pub addresses: BTreeSet<String>,
}

/// The four host-wide metrics, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    Cpu,
    Memory,
    Swap,
    Load,
}

impl Metric {
    const ALL: [Metric; 4] = [Metric::Cpu, Metric::Memory, Metric::Swap, Metric::Load];

    fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Swap => "swap",
            Metric::Load => "load",
        }
    }

    fn threshold(self, config: &HostConfig) -> Option<Threshold> {
        match self {
            Metric::Cpu => config.cpu,
            Metric::Memory => config.memory,
            Metric::Swap => config.swap,
            Metric::Load => config.load,
        }
    }
}

/// A watched mount's levels.
struct MountTrack {
    device: String,
    fs_type: String,
    disk: Option<Hysteresis>,
    inodes: Option<Hysteresis>,
}

impl MountTrack {
    fn level(h: &Option<Hysteresis>) -> Level {
        h.as_ref().map_or(Level::Normal, Hysteresis::level)
    }
}

/// Turns samples into transition observations.
pub struct Tracker {
    source: Arc<str>,
    hostname: String,
    config: Arc<HostConfig>,
    /// This boot's id, part of every identity ("" when unreadable).
    boot_id: String,
    /// The boot id last announced or recorded.
    known_boot: Option<String>,
    metrics: Vec<(Metric, Hysteresis)>,
    /// The previous CPU times: CPU % is a difference.
    prev_cpu: Option<CpuTimes>,
    /// Cores, from the last `/proc/stat` that could be read.
    cores: u32,
    mounts: Option<BTreeMap<String, MountTrack>>,
    interfaces: Option<BTreeMap<String, KnownInterface>>,
    counters: BTreeMap<String, u64>,
    /// Whether the known state changed since [`Tracker::take_changed`].
    changed: bool,
}

fn level_kind(prefix: &str, level: Level) -> String {
    match level {
        Level::High => format!("host.{prefix}-high"),
        Level::Normal => format!("host.{prefix}-normal"),
    }
}

/// Rounds a reading for the payload: two decimals say enough.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn with_threshold(observation: Observation, threshold: Threshold) -> Observation {
    observation
        .with("high", threshold.high)
        .with("clear", threshold.clear)
        .with("for_seconds", threshold.for_.as_secs_f64())
}

impl Tracker {
    /// A tracker starting from `known` (the saved state, `None` on a first
    /// run). `boot_id` is this boot's, when it could be read.
    pub fn new(
        config: Arc<HostConfig>,
        source: Arc<str>,
        hostname: String,
        boot_id: Option<String>,
        known: Option<KnownState>,
    ) -> Self {
        let known = known.unwrap_or_default();
        let metrics = Metric::ALL
            .into_iter()
            .filter_map(|metric| {
                let threshold = metric.threshold(&config)?;
                let level = known
                    .levels
                    .get(metric.name())
                    .copied()
                    .unwrap_or(Level::Normal);
                Some((metric, Hysteresis::new(threshold, level)))
            })
            .collect();
        let mounts = known.mounts.map(|mounts| {
            mounts
                .into_iter()
                .map(|(point, m)| {
                    let track = MountTrack {
                        disk: config.disk.map(|t| Hysteresis::new(t, m.disk)),
                        inodes: config.inodes.map(|t| Hysteresis::new(t, m.inodes)),
                        device: m.device,
                        fs_type: m.fs_type,
                    };
                    (point, track)
                })
                .collect()
        });
        Tracker {
            source,
            hostname,
            boot_id: boot_id.unwrap_or_default(),
            known_boot: known.boot_id,
            metrics,
            prev_cpu: None,
            cores: 1,
            mounts,
            interfaces: known.interfaces,
            counters: known.counters,
            changed: false,
            config,
        }
    }

    /// Whether the known state changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The state to save.
    pub fn known(&self) -> KnownState {
        KnownState {
            boot_id: self.known_boot.clone(),
            levels: self
                .metrics
                .iter()
                .map(|(m, h)| (m.name().to_owned(), h.level()))
                .collect(),
            mounts: self.mounts.as_ref().map(|mounts| {
                mounts
                    .iter()
                    .map(|(point, m)| {
                        let known = KnownMount {
                            device: m.device.clone(),
                            fs_type: m.fs_type.clone(),
                            disk: MountTrack::level(&m.disk),
                            inodes: MountTrack::level(&m.inodes),
                        };
                        (point.clone(), known)
                    })
                    .collect()
            }),
            interfaces: self.interfaces.clone(),
            counters: self.counters.clone(),
        }
    }

    fn host_resource(&self) -> String {
        format!("herald.host.{}", self.hostname)
    }

    fn mount_resource(&self, mount_point: &str) -> String {
        format!("herald.mount.{}:{mount_point}", self.hostname)
    }

    fn interface_resource(&self, name: &str) -> String {
        format!("herald.interface.{}.{name}", self.hostname)
    }

    /// The identity of the next transition of `metric` on `resource`.
    fn identity(&mut self, resource: &str, metric: &str) -> Vec<u8> {
        let counter = self
            .counters
            .entry(format!("{metric} {resource}"))
            .or_insert(0);
        *counter += 1;
        let mut bytes = Vec::with_capacity(self.boot_id.len() + resource.len() + metric.len() + 11);
        for part in [
            self.boot_id.as_bytes(),
            resource.as_bytes(),
            metric.as_bytes(),
        ] {
            bytes.extend_from_slice(part);
            bytes.push(0);
        }
        bytes.extend_from_slice(&counter.to_be_bytes());
        self.changed = true;
        bytes
    }

    fn observation(&mut self, kind: String, resource: &str, metric: &str) -> Observation {
        let mut observation = Observation::new(self.source.clone(), kind);
        observation.identity = Some(self.identity(resource, metric));
        observation
    }

    /// Records this boot, and announces it as `host.booted` when it is new
    /// (or on the very first run) and `boot` is on. A new boot restarts the
    /// transition counters.
    pub fn booted(&mut self, boot: &BootInfo, first_run: bool, out: &mut Vec<Observation>) {
        if self.known_boot.as_deref() == Some(boot.boot_id.as_str()) {
            return;
        }
        let previous = self.known_boot.replace(boot.boot_id.clone());
        self.counters.clear();
        self.changed = true;
        if !self.config.boot {
            return;
        }
        let mut observation = Observation::new(self.source.clone(), "host.booted")
            .with("boot_id", boot.boot_id.clone())
            .with("first_run", first_run);
        if let Some(previous) = previous {
            observation = observation.with("previous_boot_id", previous);
        }
        if let Some(at) = boot
            .boot_time
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        {
            observation = observation.with(
                "boot_time",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        if let Some(uptime) = boot.uptime_seconds {
            observation = observation.with("uptime_seconds", round(uptime));
        }
        let mut identity = b"booted\0".to_vec();
        identity.extend_from_slice(boot.boot_id.as_bytes());
        observation.identity = Some(identity);
        out.push(observation);
    }

    /// Takes one sample seen at `now`; pushes the transitions it shows.
    pub fn observe(&mut self, sample: &Sample, now: Instant, out: &mut Vec<Observation>) {
        self.host_metrics(sample, now, out);
        if let Some(mounts) = &sample.mounts {
            self.mounts(mounts, now, out);
        }
        if let (Some(interfaces), Some(_)) = (&sample.interfaces, &self.config.interfaces) {
            self.interfaces(interfaces, out);
        }
    }

    fn host_metrics(&mut self, sample: &Sample, now: Instant, out: &mut Vec<Observation>) {
        let mut cpu_percent = None;
        if let Some(stat) = sample.stat {
            self.cores = stat.cores.max(1);
            if let Some(prev) = self.prev_cpu {
                let total = stat.cpu.total.saturating_sub(prev.total);
                let idle = stat.cpu.idle.saturating_sub(prev.idle);
                if total > 0 {
                    cpu_percent = Some(total.saturating_sub(idle) as f64 * 100.0 / total as f64);
                }
            }
            self.prev_cpu = Some(stat.cpu);
        }
        let cores = self.cores;
        let mut fired = Vec::new();
        for (metric, hysteresis) in &mut self.metrics {
            let value = match metric {
                Metric::Cpu => cpu_percent,
                Metric::Memory => sample
                    .memory
                    .filter(|m| m.total > 0)
                    .map(|m| (1.0 - m.available as f64 / m.total as f64) * 100.0),
                // No swap at all reads as 0% used: it never fires, and a
                // high swap that is switched off goes back to normal.
                Metric::Swap => sample.memory.map(|m| {
                    if m.swap_total == 0 {
                        0.0
                    } else {
                        (1.0 - m.swap_free as f64 / m.swap_total as f64) * 100.0
                    }
                }),
                Metric::Load => sample.load.map(|l| l.one / f64::from(cores)),
            };
            let Some(value) = value else { continue };
            if let Some(level) = hysteresis.update(value, now) {
                fired.push((*metric, level, value, hysteresis.threshold()));
            }
        }
        let resource = self.host_resource();
        for (metric, level, value, threshold) in fired {
            let kind = level_kind(metric.name(), level);
            let mut observation = self.observation(kind, &resource, metric.name());
            observation = match metric {
                Metric::Cpu => observation
                    .with("usage_percent", round(value))
                    .with("cores", cores),
                Metric::Memory | Metric::Swap => {
                    let memory = sample.memory.unwrap_or(Memory {
                        total: 0,
                        available: 0,
                        swap_total: 0,
                        swap_free: 0,
                    });
                    let observation = observation.with("used_percent", round(value));
                    if metric == Metric::Memory {
                        observation
                            .with("total_bytes", memory.total)
                            .with("available_bytes", memory.available)
                    } else {
                        observation
                            .with("total_bytes", memory.swap_total)
                            .with("free_bytes", memory.swap_free)
                    }
                }
                Metric::Load => {
                    let load = sample.load.unwrap_or(Load {
                        one: 0.0,
                        five: 0.0,
                        fifteen: 0.0,
                    });
                    observation
                        .with("load_per_core", round(value))
                        .with("load1", load.one)
                        .with("load5", load.five)
                        .with("load15", load.fifteen)
                        .with("cores", cores)
                }
            };
            out.push(with_threshold(observation, threshold));
        }
    }

    fn mount_observation(
        &mut self,
        kind: String,
        metric: &str,
        mount_point: &str,
        device: &str,
        fs_type: &str,
    ) -> Observation {
        let resource = self.mount_resource(mount_point);
        self.observation(kind, &resource, metric)
            .with("mount_point", mount_point.to_owned())
            .with("device", device.to_owned())
            .with("fs_type", fs_type.to_owned())
    }

    fn mounts(&mut self, mounts: &[MountSample], now: Instant, out: &mut Vec<Observation>) {
        let baseline = self.mounts.is_none();
        let mut known = self.mounts.take().unwrap_or_default();
        if baseline {
            self.changed = true;
        }
        let mut seen = BTreeSet::new();
        for mount in mounts {
            let entry = &mount.entry;
            let point = entry.mount_point.as_str();
            seen.insert(point);
            let track = match known.get_mut(point) {
                Some(track) => {
                    if track.device != entry.device || track.fs_type != entry.fs_type {
                        track.device.clone_from(&entry.device);
                        track.fs_type.clone_from(&entry.fs_type);
                        self.changed = true;
                    }
                    track
                }
                None => {
                    self.changed = true;
                    if !baseline {
                        let observation = self.mount_observation(
                            "host.mount-added".into(),
                            "mount",
                            point,
                            &entry.device,
                            &entry.fs_type,
                        );
                        out.push(observation);
                    }
                    known.entry(point.to_owned()).or_insert(MountTrack {
                        device: entry.device.clone(),
                        fs_type: entry.fs_type.clone(),
                        disk: self.config.disk.map(|t| Hysteresis::new(t, Level::Normal)),
                        inodes: self
                            .config
                            .inodes
                            .map(|t| Hysteresis::new(t, Level::Normal)),
                    })
                }
            };
            let Some(usage) = mount.usage else { continue };
            let disk = match (&mut track.disk, usage.used_percent()) {
                (Some(h), Some(value)) => h.update(value, now).map(|l| (l, value, h.threshold())),
                _ => None,
            };
            let inodes = match (&mut track.inodes, usage.inodes_used_percent()) {
                (Some(h), Some(value)) => h.update(value, now).map(|l| (l, value, h.threshold())),
                _ => None,
            };
            if let Some((level, value, threshold)) = disk {
                let observation = self
                    .mount_observation(
                        level_kind("disk", level),
                        "disk",
                        point,
                        &entry.device,
                        &entry.fs_type,
                    )
                    .with("used_percent", round(value))
                    .with("total_bytes", usage.total_bytes)
                    .with("available_bytes", usage.available_bytes)
                    .with(
                        "used_bytes",
                        usage.total_bytes.saturating_sub(usage.free_bytes),
                    );
                out.push(with_threshold(observation, threshold));
            }
            if let Some((level, value, threshold)) = inodes {
                let observation = self
                    .mount_observation(
                        level_kind("inodes", level),
                        "inodes",
                        point,
                        &entry.device,
                        &entry.fs_type,
                    )
                    .with("used_percent", round(value))
                    .with("inodes_total", usage.inodes_total)
                    .with("inodes_free", usage.inodes_free);
                out.push(with_threshold(observation, threshold));
            }
        }
        let gone: Vec<String> = known
            .keys()
            .filter(|point| !seen.contains(point.as_str()))
            .cloned()
            .collect();
        for point in gone {
            let Some(track) = known.remove(&point) else {
                continue;
            };
            self.changed = true;
            // A mount the configuration no longer watches is forgotten
            // quietly; one that is really gone is announced.
            if self.config.mounts.selects(&point, &track.fs_type) {
                let observation = self.mount_observation(
                    "host.mount-removed".into(),
                    "mount",
                    &point,
                    &track.device,
                    &track.fs_type,
                );
                out.push(observation);
            }
        }
        self.mounts = Some(known);
    }

    fn interface_observation(
        &mut self,
        kind: &'static str,
        metric: &str,
        name: &str,
        state: &KnownInterface,
    ) -> Observation {
        let resource = self.interface_resource(name);
        let mut observation = self
            .observation(kind.to_owned(), &resource, metric)
            .with("interface", name.to_owned())
            .with("operstate", state.operstate.clone())
            .with(
                "addresses",
                Value::from(
                    state
                        .addresses
                        .iter()
                        .map(|a| Value::from(a.as_str()))
                        .collect::<Vec<_>>(),
                ),
            );
        if let Some(mac) = &state.mac {
            observation = observation.with("mac", mac.clone());
        }
        observation
    }

    fn interfaces(&mut self, readings: &[InterfaceReading], out: &mut Vec<Observation>) {
        let Some(filter) = self.config.interfaces.clone() else {
            return;
        };
        let baseline = self.interfaces.is_none();
        let mut known = self.interfaces.take().unwrap_or_default();
        if baseline {
            self.changed = true;
        }
        let mut seen = BTreeSet::new();
        for reading in readings.iter().filter(|r| filter.selects(&r.name)) {
            seen.insert(reading.name.as_str());
            let now = KnownInterface {
                up: reading.up,
                operstate: reading.operstate.clone(),
                mac: reading.mac.clone(),
                addresses: reading.addresses.clone(),
            };
            let Some(before) = known.get(&reading.name) else {
                if !baseline && now.up {
                    let observation = self.interface_observation(
                        "host.interface-up",
                        "link",
                        &reading.name,
                        &now,
                    );
                    out.push(observation);
                }
                known.insert(reading.name.clone(), now);
                self.changed = true;
                continue;
            };
            if *before == now {
                continue;
            }
            if before.up != now.up {
                let kind = if now.up {
                    "host.interface-up"
                } else {
                    "host.interface-down"
                };
                let observation = self.interface_observation(kind, "link", &reading.name, &now);
                out.push(observation);
            }
            if before.addresses != now.addresses {
                let list = |set: BTreeSet<&String>| {
                    Value::from(
                        set.into_iter()
                            .map(|a| Value::from(a.as_str()))
                            .collect::<Vec<_>>(),
                    )
                };
                let added = list(now.addresses.difference(&before.addresses).collect());
                let removed = list(before.addresses.difference(&now.addresses).collect());
                let observation = self
                    .interface_observation(
                        "host.interface-addresses-changed",
                        "addresses",
                        &reading.name,
                        &now,
                    )
                    .with("added", added)
                    .with("removed", removed);
                out.push(observation);
            }
            known.insert(reading.name.clone(), now);
            self.changed = true;
        }
        let gone: Vec<String> = known
            .keys()
            .filter(|name| !seen.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            let Some(mut before) = known.remove(&name) else {
                continue;
            };
            self.changed = true;
            // An interface that disappears while up went down with it;
            // one no longer watched is forgotten quietly.
            if before.up && filter.selects(&name) {
                before.up = false;
                before.operstate = "absent".into();
                let observation =
                    self.interface_observation("host.interface-down", "link", &name, &before);
                out.push(observation);
            }
        }
        self.interfaces = Some(known);
    }
}
