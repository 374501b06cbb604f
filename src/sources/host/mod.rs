//! The host source: watches the machine herald runs on and reports
//! transitions, not gauges. CPU, memory, swap and load going high or back
//! to normal (`host.cpu-high`, `host.memory-normal`, ...), a mount's disk
//! space or inodes doing the same, mounts coming and going, network
//! interfaces going up or down or changing addresses, and a new boot
//! (`host.booted`).
//!
//! # How it works
//!
//! One task per source. Every `interval` it takes a [`Sample`] on a
//! blocking thread (the reads are small, but a file system can be slow to
//! answer `statvfs`, see [`read`]), hands it to the [`Tracker`], which
//! applies the thresholds (with hysteresis, [`crate::sources::threshold`])
//! and compares with what it knew, and emits the transitions as one batch.
//! A tick costs a handful of small reads of `/proc` and `/sys`, one
//! `statvfs` per watched mount and one `getifaddrs`; buffers and the parsed
//! mount table are reused, so a tick allocates little beyond what it
//! reports. Everything runs every tick: at a 1s interval the whole tick is
//! well under a millisecond, so reading mounts and interfaces less often
//! would save nothing worth a setting.
//!
//! A part of the host that cannot be read (a file a container hides, a
//! mount that does not answer) is reported once (`HostReadFailed`, and
//! `HostReadRecovered` when it comes back) and left out of the sample;
//! nothing is concluded from what was not read.
//!
//! # Known state and restarts
//!
//! The [`KnownState`] (levels, mounts, interfaces, boot id, transition
//! counters) is saved under `state_dir` as `<name>.known.json`, following
//! the protocol of [`crate::sources::known_state`]: a tick's transitions
//! are emitted with deterministic identities, and the state including them
//! is saved only once the last of them is durable in the queue. A state
//! change that emits nothing (a baseline, a forgotten mount) is saved once
//! everything emitted before it is durable. After a crash in between, the
//! same transitions come again with the same ids. A restart with the state
//! saved announces only what changed while herald was away. The `for`
//! waits of the thresholds are not saved: they start again with herald.

pub mod config;
pub mod read;
pub mod track;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::Emitter;
use super::known_state::StateFile;
use crate::observation::{Observation, OnDurable};
pub use config::HostConfig;
use read::{BootInfo, HostReader, MountEntry, ProcReader};
pub use track::{KnownState, MountSample, Sample, Tracker};

/// Starts the source, reading this host, on `tracker`.
pub fn spawn(
    config: HostConfig,
    state_dir: PathBuf,
    hostname: String,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(run(
        Arc::new(config),
        Box::new(ProcReader::new()),
        state_dir,
        hostname,
        emitter,
        cancel,
    ));
}

/// Takes samples through a [`HostReader`], reporting each part that
/// cannot be read once, when it starts failing and when it recovers.
pub struct Sampler {
    source: Arc<str>,
    config: Arc<HostConfig>,
    reader: Box<dyn HostReader>,
    /// The parts failing now (`meminfo`, `usage of /data`, ...).
    failing: BTreeSet<String>,
    /// The last mount table and the entries of it that are watched.
    selected: Option<(Arc<[MountEntry]>, Vec<usize>)>,
}

impl Sampler {
    /// A sampler for the source `config.name` over `reader`.
    pub fn new(config: Arc<HostConfig>, reader: Box<dyn HostReader>) -> Self {
        Sampler {
            source: Arc::from(config.name.as_str()),
            config,
            reader,
            failing: BTreeSet::new(),
            selected: None,
        }
    }

    fn check<T>(&mut self, what: &str, result: io::Result<T>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.failing.remove(what) {
                    info!(source = %self.source, part = what, "HostReadRecovered");
                }
                Some(value)
            }
            Err(e) => {
                if self.failing.insert(what.to_owned()) {
                    warn!(
                        stage = "receiving",
                        source = %self.source,
                        part = what,
                        error = %e,
                        "HostReadFailed: carrying on without it"
                    );
                }
                None
            }
        }
    }

    /// This boot's identity, when it can be read.
    pub fn boot(&mut self) -> Option<BootInfo> {
        let boot = self.reader.boot();
        self.check("boot id", boot)
    }

    /// One look at the host.
    pub fn sample(&mut self) -> Sample {
        let stat = self.reader.stat();
        let memory = self.reader.memory();
        let load = self.reader.load();
        let mut sample = Sample {
            stat: self.check("/proc/stat", stat),
            memory: self.check("/proc/meminfo", memory),
            load: self.check("/proc/loadavg", load),
            mounts: None,
            interfaces: None,
        };
        if self.config.watches_mounts() {
            sample.mounts = self.mounts();
        }
        if self.config.interfaces.is_some() {
            let interfaces = self.reader.interfaces();
            sample.interfaces = self.check("interfaces", interfaces);
        }
        sample
    }

    fn mounts(&mut self) -> Option<Vec<MountSample>> {
        let table = self.reader.mounts();
        let table = self.check("mount table", table)?;
        let chosen = match &self.selected {
            Some((last, chosen)) if Arc::ptr_eq(last, &table) => chosen.clone(),
            _ => {
                let chosen = self.config.mounts.select(&table);
                // Failures of mounts no longer watched are moot.
                let watched: BTreeSet<String> = chosen
                    .iter()
                    .map(|&i| usage_part(&table[i].mount_point))
                    .collect();
                self.failing
                    .retain(|part| !part.starts_with("usage of ") || watched.contains(part));
                self.selected = Some((table.clone(), chosen.clone()));
                chosen
            }
        };
        let mut mounts = Vec::with_capacity(chosen.len());
        for i in chosen {
            let entry = table[i].clone();
            let usage = self.reader.usage(&entry.mount_point);
            let usage = self.check(&usage_part(&entry.mount_point), usage);
            mounts.push(MountSample { entry, usage });
        }
        Some(mounts)
    }
}

fn usage_part(mount_point: &str) -> String {
    format!("usage of {mount_point}")
}

/// Saves the known state, newest first: a save never replaces a newer one
/// (saves come from the loop and from durability callbacks, on blocking
/// threads, in no fixed order).
struct Saver {
    file: StateFile,
    /// Serializes the writes.
    lock: Mutex<()>,
    /// The sequence number of the state on disk.
    saved: AtomicU64,
}

impl Saver {
    fn save(&self, seq: u64, state: &KnownState) {
        let Ok(_guard) = self.lock.lock() else {
            // A save panicked while holding the lock; the next start
            // re-announces with the same ids, which costs nothing.
            return;
        };
        if seq <= self.saved.load(Ordering::Acquire) {
            return;
        }
        match self.file.save(state) {
            Ok(()) => self.saved.store(seq, Ordering::Release),
            Err(e) => warn!(
                stage = "receiving",
                path = %self.file.path().display(),
                error = %e,
                "HostStateNotSaved: retrying at the next tick"
            ),
        }
    }
}

/// Samples and reports until `cancel` fires or the pipeline closes.
pub async fn run(
    config: Arc<HostConfig>,
    reader: Box<dyn HostReader>,
    state_dir: PathBuf,
    hostname: String,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let file = StateFile::new(&state_dir, &config.name, "known");
    let loaded = tokio::task::spawn_blocking(move || {
        let known = file.load::<KnownState>();
        (file, known)
    })
    .await;
    let Ok((file, known)) = loaded else {
        error!(stage = "receiving", source = %name, "HostSourceFailed: cannot load its state");
        return;
    };
    let first_run = known.is_none();
    let mut sampler = Sampler::new(config.clone(), reader);
    let Ok((returned, boot)) = tokio::task::spawn_blocking(move || {
        let boot = sampler.boot();
        (sampler, boot)
    })
    .await
    else {
        error!(stage = "receiving", source = %name, "HostSourceFailed: reading the boot id panicked");
        return;
    };
    sampler = returned;
    let mut tracker = Tracker::new(
        config.clone(),
        name.clone(),
        hostname,
        boot.as_ref().map(|b| b.boot_id.clone()),
        known,
    );
    let mut out = Vec::new();
    if let Some(boot) = &boot {
        tracker.booted(boot, first_run, &mut out);
    }
    info!(source = %name, interval = ?config.interval, first_run, "HostSourceStarted");

    let saver = Arc::new(Saver {
        file,
        lock: Mutex::new(()),
        saved: AtomicU64::new(0),
    });
    let durable = Arc::new(AtomicU64::new(0));
    let handle = Handle::current();
    // `seq` numbers the known states; `emitted` is the newest one whose
    // transitions were emitted.
    let (mut seq, mut emitted) = (0u64, 0u64);
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let sampled = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            (sampler, sample)
        })
        .await;
        let sample = match sampled {
            Ok((returned, sample)) => {
                sampler = returned;
                sample
            }
            Err(e) => {
                error!(stage = "receiving", source = %name, error = %e, "HostSourceFailed: sampling panicked");
                return;
            }
        };
        tracker.observe(&sample, Instant::now(), &mut out);
        if tracker.take_changed() {
            seq += 1;
        }
        if let Some(last) = out.last_mut() {
            emitted = seq;
            let state = tracker.known();
            let (saver, durable, handle) = (saver.clone(), durable.clone(), handle.clone());
            last.on_durable = Some(OnDurable::new(move || {
                durable.fetch_max(seq, Ordering::AcqRel);
                // Saved even when the source has stopped meanwhile (the
                // pipeline drains after the sources stop at shutdown).
                handle.spawn_blocking(move || saver.save(seq, &state));
            }));
            let batch: Vec<Observation> = std::mem::take(&mut out);
            let sent = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                sent = emitter.emit_batch(batch) => sent,
            };
            if sent.is_err() {
                return;
            }
        } else if saver.saved.load(Ordering::Acquire) < seq
            && durable.load(Ordering::Acquire) >= emitted
        {
            // A quiet change (or a save that failed): everything emitted
            // is durable, so the current state may be saved.
            let state = tracker.known();
            let saver = saver.clone();
            let _ = tokio::task::spawn_blocking(move || saver.save(seq, &state)).await;
        }
    }
}
