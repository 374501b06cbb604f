//! The process source: watches the processes a `match` selects and reports
//! `process.started`, `process.exited` and `process.restarted`, and, when
//! thresholds are configured, `process.cpu-high` / `cpu-normal` and
//! `process.memory-high` / `memory-normal`.
//!
//! # How it works
//! Every `interval` one task hands a [`Tracker`] tick to the blocking pool
//! (reading `/proc` is blocking I/O): it lists `/proc` once, reads what is
//! new, and keeps per pid only whether it matched. See [`tracker`] for what
//! a tick reads; with a thousand processes of which a few match, a tick
//! costs the listing and one small read per matched process.
//!
//! # Exit statuses
//! herald is not the parent of the processes it watches, so it cannot
//! `wait` for them. What it can do: between a process's exit and the
//! moment its parent reaps it, the process is a zombie (state `Z`), and
//! field 52 of its `/proc/<pid>/stat` holds its wait status (Linux 3.5 and
//! later). When a tick finds a matched process as a zombie, the exit is
//! reported with `exit_status_known = true` and `exit_code`, or `signal`
//! (with `signal_name`) and `core_dumped`. When the parent reaps it
//! between two ticks, which attentive parents (systemd, shells, most
//! supervisors) do at once, the process is simply gone: the exit is
//! reported with `exit_status_known = false` and an
//! `exit_status_unknown_reason`: "reaped before herald saw it", "herald
//! was not running when it exited", "the machine restarted since". The
//! kernel shows another user's exit status only to a reader with
//! `CAP_SYS_PTRACE` (anyone else reads 0, which would look like a clean
//! exit), so herald says it does not know rather than report that 0.
//!
//! Times are as precise as the interval: `run_time_seconds` runs from the
//! process's start to the tick that saw it exited, and a restart's
//! `downtime_seconds` from the last tick that saw the old process running
//! to the new one's start (both upper bounds).
//!
//! # Restarts
//! An exit seen as it happened is remembered for `restart_window`; a
//! matched process that starts within that window with the same user and
//! command line (after redaction) is reported as `process.restarted` as
//! well as `process.started`, with `previous_pid` and `downtime_seconds`.
//! Exits that happened while herald was stopped have no known time and
//! are not paired.
//!
//! # Across restarts of herald
//! The matched processes (with their labels and threshold levels), the
//! recent exits and the boot id are kept in `<source>.processes.json`
//! under the state directory, saved only once the observations that
//! changed them are durable in the queue (the known-state protocol of
//! [`known_state`](crate::sources::known_state)). Every observation has
//! deterministic identity bytes, (boot id, pid, start time in clock ticks,
//! what happened, and for threshold transitions their number), so one
//! repeated after a crash gets the same event id and the endpoint keeps
//! one copy. At start:
//! - a known process still running (same pid and start time) is not
//!   announced again;
//! - a known process that is gone, or whose pid now belongs to another
//!   start time, is reported exited with `observed_late = true`;
//! - after a reboot (another boot id) every known process is reported
//!   exited that way;
//! - a matched process that is not known (on the first run, all of them)
//!   is announced as started with `observed_late = true`: herald did not
//!   see it start, but its id is the one it would have had.
//!
//! # Labels and secrets
//! Command lines are redacted before anything else sees them (events,
//! logs, the state file): each `redact` regex's `secret` group, or whole
//! match, becomes `***`; the built-in list ([`config::BUILTIN_REDACT`])
//! covers options and variables named like passwords, tokens and keys,
//! passwords in URLs, and bearer/basic credentials. Then they are cut to
//! [`CMDLINE_LABEL_MAX`] bytes. A field herald cannot read (the executable
//! of another user's process) is left out, and so is its label.
//!
//! # Limits
//! A process that starts and is reaped between two ticks is not seen. A
//! pid that stops matching (a process that `exec`s something else) keeps
//! the labels it was announced with. Kernel threads never match. The
//! container a process runs in is found from its cgroup path (docker,
//! containerd/CRI, CRI-O, podman); the pod's uid is reported as a field
//! only, because herald's pod resource is named by namespace and name,
//! which the cgroup path does not hold.

pub mod config;
pub mod procfs;
pub mod state;
pub mod tracker;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::Emitter;
use super::known_state::StateFile;
use crate::observation::{Observation, OnDurable};
pub use config::ProcessConfig;
use procfs::{ProcFs, System};
use state::Known;
pub use tracker::Tracker;

/// Longest command line in a label (and in the state file), after
/// redaction.
pub const CMDLINE_LABEL_MAX: usize = 1024;

/// Most observations handed on at once.
const BATCH: usize = 256;

/// How long a stopping source waits for its last observations to become
/// durable, so that it can save the state that includes them.
const FINAL_SAVE_WAIT: Duration = Duration::from_secs(2);

/// Starts the source on `tracker`.
pub fn spawn(
    config: ProcessConfig,
    state_dir: PathBuf,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(run(config, state_dir, emitter, cancel));
}

/// The source's loop: tick, emit, save once durable; until `cancel`.
pub async fn run(
    config: ProcessConfig,
    state_dir: PathBuf,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let file = StateFile::new(&state_dir, &config.name, "processes");
    let loading = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || (file.load::<Known>(), System::read()))
    };
    let Ok((known, system)) = loading.await else {
        error!(source = %name, stage = "receiving", "ProcessSourceFailed: cannot read its state");
        return;
    };
    let known_processes = known.as_ref().map_or(0, |k| k.processes.len());
    let interval = config.interval;
    let mut state = Some((Tracker::new(config, system, known), ProcFs::new()));
    info!(source = %name, interval = ?interval, known = known_processes, "ProcessSourceStarted");

    let (durable_tx, mut durable_rx) = watch::channel(0u64);
    let mut pending: VecDeque<(u64, Known)> = VecDeque::new();
    let mut generation = 0u64;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Ok(()) = durable_rx.changed() => {
                let durable = *durable_rx.borrow_and_update();
                save_durable(&file, &mut pending, durable, &name).await;
                continue;
            }
            _ = ticks.tick() => {}
        }
        let Some((mut tracker, mut reader)) = state.take() else {
            return;
        };
        let now = Instant::now();
        let wall = chrono::Utc::now();
        let ticked = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            tracker.tick(&mut reader, now, wall, &mut out);
            (tracker, reader, out)
        })
        .await;
        let Ok((tracker, reader, mut out)) = ticked else {
            error!(source = %name, stage = "receiving", "ProcessSourceFailed: a tick did not finish");
            return;
        };
        if !out.is_empty() {
            generation += 1;
            let tx = durable_tx.clone();
            let done = generation;
            if let Some(last) = out.last_mut() {
                last.on_durable = Some(OnDurable::new(move || {
                    tx.send_modify(|d| *d = (*d).max(done));
                }));
            }
            pending.push_back((generation, tracker.known()));
        }
        state = Some((tracker, reader));
        if emit(&emitter, out, &cancel).await.is_err() {
            break;
        }
    }
    // The last observations may be on their way to the queue: give them a
    // moment, so a clean stop leaves the state that includes them.
    if let Some(&(last, _)) = pending.back() {
        let reached = tokio::time::timeout(FINAL_SAVE_WAIT, durable_rx.wait_for(|d| *d >= last))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|d| *d);
        let durable = reached.unwrap_or(*durable_rx.borrow());
        save_durable(&file, &mut pending, durable, &name).await;
    }
    info!(source = %name, "ProcessSourceStopped");
}

/// Hands observations on in bounded batches.
async fn emit(
    emitter: &Emitter,
    mut out: Vec<Observation>,
    cancel: &CancellationToken,
) -> Result<(), super::Closed> {
    while !out.is_empty() {
        let rest = out.split_off(out.len().min(BATCH));
        let batch = std::mem::replace(&mut out, rest);
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(super::Closed),
            sent = emitter.emit_batch(batch) => sent?,
        }
    }
    Ok(())
}

/// Saves the newest pending state whose observations are all durable.
async fn save_durable(
    file: &StateFile,
    pending: &mut VecDeque<(u64, Known)>,
    durable: u64,
    name: &Arc<str>,
) {
    let mut newest = None;
    while pending.front().is_some_and(|(g, _)| *g <= durable) {
        newest = pending.pop_front().map(|(_, known)| known);
    }
    let Some(known) = newest else { return };
    let path = file.path().to_owned();
    let file = file.clone();
    let saved = tokio::task::spawn_blocking(move || file.save(&known)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(source = %name, stage = "receiving", path = %path.display(), error = %e, "KnownStateNotSaved: will try again at the next change");
        }
        Err(_) => {
            warn!(source = %name, stage = "receiving", "KnownStateNotSaved: the save did not finish");
        }
    }
}
