//! The process source's state machine: one [`Tracker::tick`] looks at
//! `/proc` through a [`ProcReader`] and turns what changed into
//! observations (`process.started`, `exited`, `restarted`, and the
//! threshold transitions). It performs no I/O of its own beyond the
//! reader, so tests drive it with injected readings and tokio's paused
//! clock; saving its [`Known`] state is the caller's job.
//!
//! # Cost
//! Each tick lists `/proc` once. A pid never seen before has its `stat`
//! read, then only what the selectors need, cheapest first (name, user,
//! executable, command line), and, when it matches, the rest of its labels
//! once. A known pid that did not match costs nothing more, unless it is
//! young (see [`Tracker::young`]); a matched one costs one `stat` read,
//! which tells pid reuse (another start time), exit (a zombie) and, when
//! thresholds are configured, CPU time and resident memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::time::Instant;
use tracing::warn;
use xxhash_rust::xxh3::Xxh3;

use super::CMDLINE_LABEL_MAX;
use super::config::{MemoryLevel, ProcessConfig, Redaction, User};
use super::procfs::{Creds, ExitStatus, ProcReader, Stat, System, signal_name};
use super::state::{Info, Known, KnownLevel, KnownProcess, RecentExit, VERSION};
use crate::observation::Observation;
use crate::sources::threshold::{Hysteresis, Level, Threshold};

/// Why an exit status is not known.
pub const REAPED: &str = "reaped before herald saw it";
/// Why the exit status of a process that exited while herald was stopped
/// is not known.
pub const NOT_RUNNING: &str = "herald was not running when it exited";
/// Why the exit status of a process of the previous boot is not known.
pub const REBOOTED: &str = "the machine restarted since";
/// Why another user's exit status is not known.
pub const NOT_PERMITTED: &str =
    "the kernel shows another user's exit status only to a reader with CAP_SYS_PTRACE";
/// Why the exit status is not known on an old kernel.
pub const OLD_KERNEL: &str = "the kernel does not report exit statuses in /proc (Linux < 3.5)";

/// A threshold's state for one process.
#[derive(Clone, Debug)]
struct Metric {
    hysteresis: Hysteresis,
    transitions: u64,
}

impl Metric {
    fn new(threshold: Threshold, known: Option<KnownLevel>) -> Self {
        let known = known.unwrap_or(KnownLevel {
            level: Level::Normal,
            transitions: 0,
        });
        Metric {
            hysteresis: Hysteresis::new(threshold, known.level),
            transitions: known.transitions,
        }
    }

    fn known(&self) -> KnownLevel {
        KnownLevel {
            level: self.hysteresis.level(),
            transitions: self.transitions,
        }
    }
}

/// A matched process.
#[derive(Debug)]
struct Tracked {
    info: Arc<Info>,
    /// Its exit was reported (it is a zombie waiting for its parent).
    exited: bool,
    /// The last time it was seen running, Unix seconds.
    last_alive: f64,
    cpu: Option<Metric>,
    memory: Option<Metric>,
    /// The CPU time at the last reading, and when it was taken.
    last_cpu: Option<(u64, Instant)>,
}

/// A pid as the last tick left it.
#[derive(Debug)]
enum Seen {
    /// Not matched. `young`: looked at again next tick (see
    /// [`Tracker::young`]).
    Other { young: bool },
    /// Matched.
    Matched(Box<Tracked>),
}

/// Fields a selector needs, read at most once per examination.
#[derive(Default)]
struct Lazy {
    creds: Option<Option<Creds>>,
    exe: Option<Option<String>>,
    cmdline: Option<Option<String>>,
}

impl Lazy {
    fn creds(&mut self, reader: &mut dyn ProcReader, pid: u32) -> Option<Creds> {
        *self.creds.get_or_insert_with(|| reader.creds(pid))
    }

    fn exe(&mut self, reader: &mut dyn ProcReader, pid: u32) -> Option<&str> {
        self.exe.get_or_insert_with(|| reader.exe(pid)).as_deref()
    }

    fn cmdline(&mut self, reader: &mut dyn ProcReader, pid: u32) -> Option<&str> {
        self.cmdline
            .get_or_insert_with(|| reader.cmdline(pid).map(|raw| join_args(&raw)))
            .as_deref()
    }
}

/// `cmdline`'s NUL-separated arguments joined by spaces.
pub fn join_args(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    let joined: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&joined).into_owned()
}

/// Applies the redactions in order: the `secret` group of each match (the
/// whole match for a pattern without one) becomes `***`.
pub fn redact(text: &str, rules: &[Redaction]) -> String {
    let mut text = text.to_owned();
    for rule in rules {
        if !rule.0.is_match(&text) {
            continue;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for caps in rule.0.captures_iter(&text) {
            let Some(secret) = caps.name("secret").or_else(|| caps.get(0)) else {
                continue;
            };
            if secret.start() < last {
                continue;
            }
            out.push_str(&text[last..secret.start()]);
            out.push_str("***");
            last = secret.end();
        }
        out.push_str(&text[last..]);
        text = out;
    }
    text
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The identity bytes of an observation about a process: its boot, pid
/// and start, what happened, and a counter for transitions that repeat.
fn identity(boot_id: &str, pid: u32, start_ticks: u64, what: &str, n: Option<u64>) -> Vec<u8> {
    let mut bytes = format!("{boot_id}\0{pid}\0{start_ticks}\0{what}").into_bytes();
    if let Some(n) = n {
        bytes.extend_from_slice(format!("\0{n}").as_bytes());
    }
    bytes
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp() as f64 + f64::from(at.timestamp_subsec_micros()) / 1e6
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// When a tick happens.
#[derive(Clone, Copy)]
struct TickAt {
    /// For CPU rates and threshold durations.
    now: Instant,
    /// For observations.
    wall: DateTime<Utc>,
    /// `wall` in Unix seconds, for run times.
    wall_unix: f64,
    /// Time since boot in clock ticks, to tell young processes.
    now_ticks: Option<u64>,
    /// The first tick of this run: what it finds happened while herald
    /// was not looking.
    late: bool,
}

/// One process source's view of the processes.
pub struct Tracker {
    source: Arc<str>,
    config: ProcessConfig,
    system: System,
    /// Every pid listed at the last tick.
    seen: HashMap<u32, Seen>,
    /// Known processes of a previous boot, reported as exited at the first
    /// tick.
    stale: Vec<KnownProcess>,
    /// The boot `stale` belongs to.
    stale_boot_id: String,
    recent_exits: VecDeque<RecentExit>,
    /// The next tick is the first of this run: what it finds happened
    /// while herald was not looking.
    first: bool,
    /// How long (in clock ticks) a new process is re-examined.
    young_ticks: u64,
    memory_threshold: Option<Threshold>,
    /// Reused pid list.
    pids: Vec<u32>,
    /// Listing `/proc` failed at the last tick (logged once).
    list_failed: bool,
}

impl Tracker {
    /// A tracker for `config` on this `system`, resuming from `known` (the
    /// state saved by an earlier run), if any.
    pub fn new(config: ProcessConfig, system: System, known: Option<Known>) -> Self {
        let young = 2 * config.interval + std::time::Duration::from_secs(1);
        let percent = matches!(config.memory, Some(m) if matches!(m.high, MemoryLevel::Percent(_)));
        let memory_threshold = if percent && system.mem_total == 0 {
            warn!(source = %config.name, "ProcessMemoryThresholdOff: total memory is unknown, so a percent of it cannot be checked");
            None
        } else {
            config.memory.map(|m| m.in_bytes(system.mem_total))
        };
        let mut tracker = Tracker {
            source: Arc::from(config.name.as_str()),
            young_ticks: (young.as_secs_f64() * system.clock_ticks as f64) as u64,
            memory_threshold,
            config,
            seen: HashMap::new(),
            stale: Vec::new(),
            stale_boot_id: String::new(),
            recent_exits: VecDeque::new(),
            first: true,
            pids: Vec::new(),
            list_failed: false,
            system,
        };
        if let Some(known) = known.filter(|k| k.version == VERSION) {
            if known.boot_id == tracker.system.boot_id {
                for process in known.processes {
                    let tracked =
                        tracker.tracked(Arc::new(process.info), process.cpu, process.memory, 0.0);
                    tracker
                        .seen
                        .insert(tracked.info.pid, Seen::Matched(Box::new(tracked)));
                }
                tracker.recent_exits = known.recent_exits.into();
            } else {
                tracker.stale = known.processes;
                tracker.stale_boot_id = known.boot_id;
            }
        }
        tracker
    }

    /// The state to save once this tick's observations are durable.
    pub fn known(&self) -> Known {
        let mut processes: Vec<KnownProcess> = self
            .seen
            .values()
            .filter_map(|seen| match seen {
                Seen::Matched(t) if !t.exited => Some(KnownProcess {
                    info: (*t.info).clone(),
                    cpu: t.cpu.as_ref().map(Metric::known),
                    memory: t.memory.as_ref().map(Metric::known),
                }),
                _ => None,
            })
            .collect();
        processes.sort_by_key(|p| p.info.pid);
        Known {
            version: VERSION,
            boot_id: self.system.boot_id.clone(),
            processes,
            recent_exits: self.recent_exits.iter().cloned().collect(),
        }
    }

    fn tracked(
        &self,
        info: Arc<Info>,
        cpu: Option<KnownLevel>,
        memory: Option<KnownLevel>,
        last_alive: f64,
    ) -> Tracked {
        Tracked {
            info,
            exited: false,
            last_alive,
            cpu: self.config.cpu.map(|t| Metric::new(t, cpu)),
            memory: self.memory_threshold.map(|t| Metric::new(t, memory)),
            last_cpu: None,
        }
    }

    /// Whether a process that started at `start_ticks` is young at
    /// `now_ticks`: recently enough that it may still be between `fork`
    /// and `exec`, showing its parent's name and command line. A young
    /// process that does not match is examined again at the next ticks
    /// rather than written off.
    fn young(&self, start_ticks: u64, now_ticks: Option<u64>) -> bool {
        now_ticks.is_some_and(|now| now.saturating_sub(start_ticks) < self.young_ticks)
    }

    /// Looks at `/proc` once; appends what changed to `out`. `now` and
    /// `wall` are the time of the tick.
    pub fn tick(
        &mut self,
        reader: &mut dyn ProcReader,
        now: Instant,
        wall: DateTime<Utc>,
        out: &mut Vec<Observation>,
    ) {
        let mut pids = std::mem::take(&mut self.pids);
        if let Err(e) = reader.pids(&mut pids) {
            if !self.list_failed {
                warn!(source = %self.source, stage = "receiving", error = %e, "ProcessListFailed: cannot list /proc; will retry");
                self.list_failed = true;
            }
            self.pids = pids;
            return;
        }
        self.list_failed = false;
        pids.sort_unstable();
        let at = TickAt {
            now,
            wall,
            wall_unix: unix_seconds(wall),
            now_ticks: reader
                .uptime()
                .map(|s| (s * self.system.clock_ticks as f64) as u64),
            late: self.first,
        };

        // Processes of the previous boot, under its boot id.
        let stale_boot = std::mem::take(&mut self.stale_boot_id);
        for stale in std::mem::take(&mut self.stale) {
            out.push(self.exited(&stale.info, &stale_boot, Err(REBOOTED), None, &at));
        }

        // Matched pids first: exits (a zombie, a reused pid) come before
        // the starts of this tick, and threshold readings are taken.
        let mut examine: Vec<(u32, Option<Stat>)> = Vec::new();
        for &pid in &pids {
            match self.seen.get(&pid) {
                None => examine.push((pid, None)),
                Some(Seen::Other { young: false }) => {}
                Some(Seen::Other { young: true }) => examine.push((pid, None)),
                Some(Seen::Matched(_)) => {
                    let Some(stat) = reader.stat(pid) else {
                        // Gone between the listing and the read: the next
                        // tick sees it missing.
                        continue;
                    };
                    self.look_at_matched(reader, pid, stat, &at, out, &mut examine);
                }
            }
        }

        // Gone since the last tick.
        let gone: Vec<u32> = self
            .seen
            .keys()
            .copied()
            .filter(|pid| pids.binary_search(pid).is_err())
            .collect();
        for pid in gone {
            if let Some(Seen::Matched(t)) = self.seen.remove(&pid)
                && !t.exited
            {
                self.report_gone(&t, &at, out);
            }
        }

        for (pid, stat) in examine {
            self.examine(reader, pid, stat, &at, out);
        }

        let window = self.config.restart_window.as_secs_f64();
        while self
            .recent_exits
            .front()
            .is_some_and(|e| at.wall_unix - e.noticed > window)
        {
            self.recent_exits.pop_front();
        }
        self.first = false;
        self.pids = pids;
    }

    /// A matched pid still listed: exited (zombie), replaced (another
    /// start time), or running (thresholds).
    fn look_at_matched(
        &mut self,
        reader: &mut dyn ProcReader,
        pid: u32,
        stat: Stat,
        at: &TickAt,
        out: &mut Vec<Observation>,
        examine: &mut Vec<(u32, Option<Stat>)>,
    ) {
        let now = at.now;
        let Some(Seen::Matched(t)) = self.seen.get_mut(&pid) else {
            return;
        };
        if stat.start_ticks != t.info.start_ticks {
            // The pid was reused: the process herald knew is gone.
            if let Some(Seen::Matched(t)) = self.seen.remove(&pid)
                && !t.exited
            {
                self.report_gone(&t, at, out);
            }
            examine.push((pid, Some(stat)));
            return;
        }
        if t.exited {
            return;
        }
        if stat.is_zombie() {
            t.exited = true;
            let info = t.info.clone();
            let last_alive = t.last_alive;
            let status = self.exit_status(reader, pid, &stat);
            let run_time = (!at.late).then(|| at.wall_unix - info.start_unix);
            out.push(self.exited(&info, &self.system.boot_id, status, run_time, at));
            if !at.late {
                self.remember_exit(&info, last_alive, at.wall_unix);
            }
            return;
        }
        t.last_alive = at.wall_unix;
        let mut transitions = Vec::new();
        if let Some(cpu) = &mut t.cpu {
            if let Some((ticks, at)) = t.last_cpu {
                let seconds = now.saturating_duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    let used = stat.cpu_ticks.saturating_sub(ticks) as f64
                        / self.system.clock_ticks as f64;
                    let percent = used / seconds * 100.0;
                    if let Some(level) = cpu.hysteresis.update(percent, now) {
                        cpu.transitions += 1;
                        transitions.push(("cpu", level, cpu.transitions, percent));
                    }
                }
            }
            t.last_cpu = Some((stat.cpu_ticks, now));
        }
        if let Some(memory) = &mut t.memory {
            let bytes = stat.rss_pages.saturating_mul(self.system.page_size) as f64;
            if let Some(level) = memory.hysteresis.update(bytes, now) {
                memory.transitions += 1;
                transitions.push(("memory", level, memory.transitions, bytes));
            }
        }
        if transitions.is_empty() {
            return;
        }
        let info = t.info.clone();
        for (metric, level, n, value) in transitions {
            out.push(self.transition(&info, metric, level, n, value, at.wall));
        }
    }

    /// The exit status of a zombie, or why it cannot be known.
    fn exit_status(
        &self,
        reader: &mut dyn ProcReader,
        pid: u32,
        stat: &Stat,
    ) -> Result<ExitStatus, &'static str> {
        let Some(code) = stat.exit_code else {
            return Err(OLD_KERNEL);
        };
        // Its credentials now, as the kernel checks them now.
        let Some(creds) = reader.creds(pid) else {
            return Err(NOT_PERMITTED);
        };
        if !self.system.own.may_read_exit_code_of(&creds) {
            return Err(NOT_PERMITTED);
        }
        ExitStatus::from_wait_status(code).ok_or(REAPED)
    }

    /// A matched process that vanished without herald seeing it as a
    /// zombie.
    fn report_gone(&mut self, t: &Tracked, at: &TickAt, out: &mut Vec<Observation>) {
        let reason = if at.late { NOT_RUNNING } else { REAPED };
        let run_time = (!at.late).then(|| at.wall_unix - t.info.start_unix);
        out.push(self.exited(&t.info, &self.system.boot_id, Err(reason), run_time, at));
        if !at.late {
            self.remember_exit(&t.info, t.last_alive, at.wall_unix);
        }
    }

    fn remember_exit(&mut self, info: &Info, last_alive: f64, noticed: f64) {
        if self.config.restart_window.is_zero() {
            return;
        }
        self.recent_exits.push_back(RecentExit {
            key: info.restart_key,
            pid: info.pid,
            start_time: info.start_time.clone(),
            last_alive: last_alive.max(info.start_unix),
            noticed,
        });
    }

    /// A pid not known, or young and not matched yet: does it match now?
    fn examine(
        &mut self,
        reader: &mut dyn ProcReader,
        pid: u32,
        stat: Option<Stat>,
        at: &TickAt,
        out: &mut Vec<Observation>,
    ) {
        let Some(stat) = stat.or_else(|| reader.stat(pid)) else {
            self.seen.remove(&pid);
            return;
        };
        if stat.kernel_thread {
            self.seen.insert(pid, Seen::Other { young: false });
            return;
        }
        let mut lazy = Lazy::default();
        if !self.matches(reader, pid, &stat, &mut lazy) {
            let young = self.young(stat.start_ticks, at.now_ticks);
            self.seen.insert(pid, Seen::Other { young });
            return;
        }
        let info = Arc::new(self.info(reader, pid, &stat, &mut lazy));
        let mut tracked = self.tracked(info.clone(), None, None, at.wall_unix);
        if self.config.cpu.is_some() {
            tracked.last_cpu = Some((stat.cpu_ticks, at.now));
        }
        out.push(self.started(&info, at));
        if let Some(previous) = self.restart_of(&info) {
            let downtime = (info.start_unix - previous.last_alive).max(0.0);
            let observation = self
                .common(&info, "process.restarted", at.wall)
                .with("previous_pid", previous.pid)
                .with("previous_start_time", previous.start_time)
                .with("downtime_seconds", round(downtime, 2))
                .with("observed_late", at.late);
            out.push(with_identity(
                observation,
                identity(
                    &self.system.boot_id,
                    info.pid,
                    info.start_ticks,
                    "restarted",
                    None,
                ),
            ));
        }
        if stat.is_zombie() {
            // Started and exited between two ticks, and not reaped yet.
            tracked.exited = true;
            let status = self.exit_status(reader, pid, &stat);
            let run_time = (!at.late).then(|| at.wall_unix - info.start_unix);
            out.push(self.exited(&info, &self.system.boot_id, status, run_time, at));
            if !at.late {
                self.remember_exit(&info, info.start_unix, at.wall_unix);
            }
        }
        self.seen.insert(pid, Seen::Matched(Box::new(tracked)));
    }

    /// The most recent exit of the same command line and user within the
    /// restart window, taken (one exit pairs with one restart).
    fn restart_of(&mut self, info: &Info) -> Option<RecentExit> {
        if self.config.restart_window.is_zero() {
            return None;
        }
        let window = self.config.restart_window.as_secs_f64();
        let at = self
            .recent_exits
            .iter()
            .rposition(|e| e.key == info.restart_key && info.start_unix - e.noticed <= window)?;
        self.recent_exits.remove(at)
    }

    fn matches(&self, reader: &mut dyn ProcReader, pid: u32, stat: &Stat, lazy: &mut Lazy) -> bool {
        let selector = &self.config.selector;
        if let Some(name) = &selector.name
            && !name.matches(&stat.comm)
        {
            return false;
        }
        if let Some(user) = &selector.user {
            let Some(creds) = lazy.creds(reader, pid) else {
                return false;
            };
            let matched = match user {
                User::Id(uid) => creds.euid() == *uid,
                User::Name(name) => reader.user_name(creds.euid()).as_deref() == Some(name),
            };
            if !matched {
                return false;
            }
        }
        if let Some(exe) = &selector.exe {
            let Some(path) = lazy.exe(reader, pid) else {
                return false;
            };
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if !exe.matches(path) {
                return false;
            }
        }
        if let Some(cmdline) = &selector.cmdline {
            match lazy.cmdline(reader, pid) {
                Some(line) if !line.is_empty() && cmdline.is_match(line) => {}
                _ => return false,
            }
        }
        true
    }

    fn info(&self, reader: &mut dyn ProcReader, pid: u32, stat: &Stat, lazy: &mut Lazy) -> Info {
        let creds = lazy.creds(reader, pid);
        let uid = creds.map(|c| c.euid());
        let user = uid.map(|uid| reader.user_name(uid).unwrap_or_else(|| uid.to_string()));
        let exe = lazy.exe(reader, pid).map(str::to_owned);
        let joined = lazy.cmdline(reader, pid).unwrap_or_default();
        let redacted = redact(joined, &self.config.redact);
        let mut key = Xxh3::new();
        key.update(&uid.unwrap_or(u32::MAX).to_le_bytes());
        if redacted.is_empty() {
            key.update(stat.comm.as_bytes());
        } else {
            key.update(redacted.as_bytes());
        }
        let container = reader.container(pid);
        let start_unix =
            self.system.boot_time + stat.start_ticks as f64 / self.system.clock_ticks as f64;
        let start_time = DateTime::<Utc>::from_timestamp_micros((start_unix * 1e6) as i64)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        Info {
            pid,
            start_ticks: stat.start_ticks,
            ppid: stat.ppid,
            name: stat.comm.clone(),
            exe,
            cmdline: cut(redacted, CMDLINE_LABEL_MAX),
            uid,
            user,
            start_time,
            start_unix,
            container_id: container.as_ref().map(|c| c.id.clone()),
            container_runtime: container
                .as_ref()
                .and_then(|c| c.runtime.map(str::to_owned)),
            pod_uid: container.and_then(|c| c.pod_uid),
            restart_key: key.digest(),
        }
    }

    /// An observation of `kind` about a process, with its labels.
    fn common(&self, info: &Info, kind: &'static str, wall: DateTime<Utc>) -> Observation {
        let mut o = Observation::new(self.source.clone(), kind)
            .with("pid", info.pid)
            .with("ppid", info.ppid)
            .with("name", info.name.clone())
            .with("cmdline", info.cmdline.clone())
            .with("start_time", info.start_time.clone());
        o.observed_at = wall;
        let optional = [
            ("exe", &info.exe),
            ("user", &info.user),
            ("container_id", &info.container_id),
            ("container_runtime", &info.container_runtime),
            ("pod_uid", &info.pod_uid),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                o = o.with(key, value.clone());
            }
        }
        if let Some(uid) = info.uid {
            o = o.with("uid", uid);
        }
        o
    }

    fn started(&self, info: &Info, at: &TickAt) -> Observation {
        let o = self
            .common(info, "process.started", at.wall)
            .with("observed_late", at.late);
        with_identity(
            o,
            identity(
                &self.system.boot_id,
                info.pid,
                info.start_ticks,
                "started",
                None,
            ),
        )
    }

    /// `process.exited`, with the exit status or why it is not known.
    fn exited(
        &self,
        info: &Info,
        boot_id: &str,
        status: Result<ExitStatus, &'static str>,
        run_time: Option<f64>,
        at: &TickAt,
    ) -> Observation {
        let mut o = self
            .common(info, "process.exited", at.wall)
            .with("observed_late", at.late)
            .with("exit_status_known", status.is_ok());
        match status {
            Ok(ExitStatus::Exited(code)) => o = o.with("exit_code", code),
            Ok(ExitStatus::Signaled {
                signal,
                core_dumped,
            }) => {
                o = o.with("signal", signal).with("core_dumped", core_dumped);
                if let Some(name) = signal_name(signal) {
                    o = o.with("signal_name", name);
                }
            }
            Err(reason) => o = o.with("exit_status_unknown_reason", reason),
        }
        if let Some(run_time) = run_time {
            o = o.with("run_time_seconds", round(run_time.max(0.0), 2));
        }
        with_identity(
            o,
            identity(boot_id, info.pid, info.start_ticks, "exited", None),
        )
    }

    fn transition(
        &self,
        info: &Info,
        metric: &'static str,
        level: Level,
        n: u64,
        value: f64,
        wall: DateTime<Utc>,
    ) -> Observation {
        let kind = match (metric, level) {
            ("cpu", Level::High) => "process.cpu-high",
            ("cpu", Level::Normal) => "process.cpu-normal",
            (_, Level::High) => "process.memory-high",
            (_, Level::Normal) => "process.memory-normal",
        };
        let mut o = self.common(info, kind, wall);
        if metric == "cpu" {
            let t = self
                .config
                .cpu
                .unwrap_or(Threshold::new(0.0, 0.0, Default::default()));
            o = o
                .with("cpu_percent", round(value, 1))
                .with("high_percent", t.high)
                .with("clear_percent", t.clear)
                .with("for_seconds", t.for_.as_secs_f64());
        } else {
            let t = self
                .memory_threshold
                .unwrap_or(Threshold::new(0.0, 0.0, Default::default()));
            o = o.with("rss_bytes", value as u64);
            if self.system.mem_total > 0 {
                o = o.with(
                    "memory_percent",
                    round(value / self.system.mem_total as f64 * 100.0, 2),
                );
            }
            o = o
                .with("high_bytes", t.high as u64)
                .with("clear_bytes", t.clear as u64)
                .with("for_seconds", t.for_.as_secs_f64());
        }
        with_identity(
            o,
            identity(
                &self.system.boot_id,
                info.pid,
                info.start_ticks,
                metric,
                Some(n),
            ),
        )
    }
}

fn with_identity(mut o: Observation, identity: Vec<u8>) -> Observation {
    o.identity = Some(identity);
    o
}
