//! Wires the pipeline and runs it until told to stop.
//!
//! ```text
//! sources ─Observation─▶ mapper ─Mapped─▶ appender ─▶ queue ─▶ sender ─▶ endpoint
//!        (bounded)              (bounded)   │ durable           │ ack after 2xx
//!                                           ▼                   ▼
//!                              sources' checkpoints      ledger, segments freed
//! ```
//!
//! There is one mapper. The mapper stage runs it for most sources; the file
//! source, which has a thread of its own, runs it there on its batches
//! ([`crate::sources::MapHere`]) and hands the events straight to the
//! appender.
//!
//! Start-up is linear and logged: lock the data_dir, open (and recover) the
//! queue, build the sink, then start the stages. Shutdown runs in order:
//! stop the sources, announce `herald.agent.stopped`, let the mapper and
//! the appender drain into the queue (everything is durable from then on),
//! close the queue, and let the sender flush what it can; all within
//! `shutdown_grace`, after which herald says what it left queued and exits
//! anyway. This module owns ordering and lifetimes, not what any stage does.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{AgentConfig, Config};
use crate::data_dir::{DataDir, DataDirError};
use crate::identity::{Identity, VERSION};
use crate::mapping::{Mapped, Mapper};
use crate::metrics::Stats;
use crate::notify;

mod reload;
use crate::observation::{Observation, OnDurable};
use crate::queue::{Queue, QueueError};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::retry::Backoff;
use crate::sink::sender::Sender;
use crate::sink::{Sink, SinkError};
use crate::sources::{self, Closed, Emitter, MapHere, SourceContext, StartGate};

/// Batches of observations waiting for the mapper. Sources keep batches
/// to a chunk read, so this bounds memory as well as count.
const OBSERVATION_CHANNEL: usize = 2;
/// Batches of events waiting to be appended to the queue.
const EVENT_CHANNEL: usize = 2;
/// Most events in one queue append (one write, one fdatasync). Large
/// enough that one fsync covers the lines a fast source reads meanwhile.
const APPEND_BATCH: usize = 4096;
/// Most bytes in one queue append (and a quarter of the queue at most).
const APPEND_MAX_BYTES: u64 = 1 << 20;
/// The name the agent's own observations carry as their source.
const AGENT_SOURCE: &str = "agent";
/// How often rate-limited mapping rules report what they held back.
const SUPPRESSED_REPORT_EVERY: Duration = Duration::from_secs(60);
/// How often the agent looks for events the full queue dropped.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);
/// First and longest wait between attempts to append to a failing disk.
/// Without a watchdog, how long a stage may stay in one piece of work
/// before it is logged as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);
/// How often the service manager's status line is renewed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
const RETRY_INITIAL: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data_dir cannot be used (another agent holds it, or it cannot
    /// be created).
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The queue cannot be opened.
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
    /// The sink could not be built.
    #[error("cannot start the sink: {0}")]
    Sink(#[from] SinkError),
}

/// How `herald run` was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Reload when the config file's content changes (`--watch-config`).
    pub watch_config: bool,
}

/// How often `--watch-config` looks at the config file.
const WATCH_CONFIG_EVERY: Duration = Duration::from_secs(1);

/// What a run did, for the caller's last log line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Events the endpoint accepted.
    pub events_sent: u64,
    /// Send attempts that failed (their events stay queued and are retried).
    pub send_failures: u64,
    /// Events still queued at exit, to be sent by the next run.
    pub left_queued: u64,
    /// Whether the drain finished within the grace period.
    pub drained: bool,
    /// Whether the agent stopped because its sink can never work again
    /// (stdout closed) rather than because it was asked to.
    pub sink_gone: bool,
}

/// Runs the agent until `shutdown` resolves (a signal, or a test saying
/// stop), then drains within the grace period. `shutdown` resolves to the
/// reason, which goes in the stopped event.
///
/// # Errors
/// [`AgentError`] when a stage cannot be started; nothing was sent then.
pub async fn run(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    shutdown: impl Future<Output = String>,
    options: RunOptions,
) -> Result<Summary, AgentError> {
    let started = Instant::now();
    // First of all: SIGHUP's default would end the process; one that comes
    // while starting is taken once the agent runs.
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            warn!(error = %e, "SignalHandlerFailed: SIGHUP will not reload");
            None
        }
    };
    let data_dir = open_data_dir(&config.agent, env)?;
    let (queue, _recovery) = Queue::open(&data_dir.queue_dir(), config.queue)?;
    let reader = queue.reader()?;
    let identity = Identity::discover(config.agent.hostname.as_deref(), &config.agent.labels, env);
    let sink = Sink::from_config(&config.sink)?;
    let backlog = queue.metrics().depth_events;
    info!(
        version = VERSION,
        config = %config.location,
        digest = %config.digest,
        data_dir = %data_dir.path().display(),
        queued = backlog,
        resource = identity.agent.id(),
        sink = %sink.describe(),
        sources = config.sources.len(),
        "AgentStarting"
    );
    let stats = Arc::new(Stats::default());

    let (observation_tx, observation_rx) = mpsc::channel(OBSERVATION_CHANNEL);
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL);
    let mut mapper = Mapper::new(
        identity.clone(),
        &config.mappings,
        Some(&data_dir.state_dir()),
    );
    // The queue stores the parts events repeat once per segment.
    mapper.share_repeated_parts();
    let mapper = Arc::new(Mutex::new(mapper));
    let here: Arc<dyn MapHere> = Arc::new(MapOnThread {
        mapper: mapper.clone(),
        events: event_tx.clone(),
        stats: stats.clone(),
    });
    let mapper_cell = mapper.clone();
    let mapper = tokio::spawn(map_all(mapper, observation_rx, event_tx, stats.clone()));
    let max_append_bytes =
        usize::try_from((config.queue.max_bytes / 4).min(APPEND_MAX_BYTES)).unwrap_or(usize::MAX);
    let appender = tokio::spawn(append_all(
        queue.clone(),
        max_append_bytes,
        event_rx,
        stats.clone(),
    ));
    let stop_sending = CancellationToken::new();
    let dead_letters = DeadLetters::new(
        &data_dir.dead_letter_dir(),
        config.sink.dead_letter_max_bytes,
    );
    // Cancelled by the sender when sending can never succeed (stdout
    // closed), which stops the agent like a signal would.
    let sink_gone = CancellationToken::new();
    let mut sender = Sender::new(
        sink,
        config.sink.clone(),
        reader,
        dead_letters,
        stats.clone(),
        sink_gone.clone(),
    );
    let sink_swaps = sender.swappable();
    let sender = tokio::spawn(sender.run(stop_sending.clone()));

    let emitter = Emitter::with_mapper(observation_tx, here);
    let agent_source: Arc<str> = Arc::from(AGENT_SOURCE);
    let started_event = Observation::new(agent_source.clone(), "agent.started")
        .with("version", VERSION)
        .with("config_digest", config.digest.clone())
        .with("config", config.location.to_string())
        .with("pid", std::process::id())
        .with("queued_from_before", backlog);
    // The pipeline was just built and nothing can have closed it yet.
    let _ = emitter.emit(started_event).await;

    let stop_sources = CancellationToken::new();
    let tracker = TaskTracker::new();
    let context = SourceContext {
        state_dir: data_dir.state_dir(),
        hostname: identity.hostname.clone(),
        stats: stats.clone(),
        queue: queue.clone(),
        started: StartGate::default(),
    };
    let running = sources::spawn_all(&config.sources, &context, &emitter, &stop_sources);
    tracker.spawn(report_drops(
        queue.clone(),
        agent_source.clone(),
        emitter.clone(),
        stop_sources.clone(),
    ));
    tracker.close();

    // Ready once every source has started (the file sources have claimed
    // the files they found); a signal meanwhile stops the agent as usual.
    tokio::pin!(shutdown);
    let early = tokio::select! {
        biased;
        reason = &mut shutdown => Some(reason),
        () = sink_gone.cancelled() => Some("the sink is gone (stdout closed)".to_owned()),
        () = context.started.all_started() => None,
    };
    let grace = config.agent.shutdown_grace;
    let mut live = reload::Live {
        config,
        running,
        mapper: mapper_cell,
        context,
        emitter: emitter.clone(),
        stop_sources: stop_sources.clone(),
        env,
        source: agent_source.clone(),
        sink_swaps,
    };

    let reason = match early {
        Some(reason) => reason,
        None => {
            info!("AgentStarted");
            notify::ready(&status_line(&queue, &stats));
            // Pings only while every stage's task is alive; a stage that
            // ended before shutdown stops them, and systemd restarts herald.
            let watchdog = notify::watchdog_interval();
            let mut tick =
                tokio::time::interval(watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY)));
            let mut last_status = Instant::now();
            // --watch-config: the digest of the text last seen, so that a
            // broken file is reported once, not every second.
            let watched = match (&live.config.location, options.watch_config) {
                (crate::config::Location::File { path, .. }, true) => Some(path.clone()),
                _ => None,
            };
            let mut seen_digest = live.config.digest.clone();
            let mut watch_tick = tokio::time::interval(WATCH_CONFIG_EVERY);
            let mut dead_reported = false;
            loop {
                tokio::select! {
                    biased;
                    reason = &mut shutdown => break reason,
                    () = sink_gone.cancelled() => break "the sink is gone (stdout closed)".to_owned(),
                    Some(()) = async {
                        match hangups.as_mut() {
                            Some(hangups) => hangups.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        live.reload(&status_line(&queue, &stats)).await;
                        seen_digest.clone_from(&live.config.digest);
                        continue;
                    }
                    _ = watch_tick.tick(), if watched.is_some() => {
                        let Some(path) = &watched else { continue };
                        // Through the symlinks: a ConfigMap's file is
                        // `..data/<name>`, and `..data` is swapped whole.
                        if let Ok(text) = tokio::fs::read(path).await {
                            let digest = crate::config::digest(&text);
                            if digest != seen_digest {
                                seen_digest = digest;
                                info!(config = %path.display(), "ConfigChanged");
                                live.reload(&status_line(&queue, &stats)).await;
                            }
                        }
                        continue;
                    }
                    _ = tick.tick() => {}
                }
                // A stage whose task ended, or that has been in one write,
                // sync or batch for longer than the watchdog waits.
                let stuck_after = watchdog.unwrap_or(STUCK_AFTER);
                let stuck = |busy: Option<Duration>| busy.is_some_and(|b| b > stuck_after);
                let dead = [
                    ("mapping", mapper.is_finished(), "ended"),
                    ("queueing", appender.is_finished(), "ended"),
                    ("sending", sender.is_finished(), "ended"),
                    ("mapping", stuck(stats.mapping.busy_for()), "is stuck"),
                    ("queue writer", stuck(queue.writer_busy_for()), "is stuck"),
                    (
                        "source",
                        stuck(stats.busiest_source().map(|(_, d)| d)),
                        "is stuck",
                    ),
                ]
                .into_iter()
                .find(|(_, failed, _)| *failed);
                match dead {
                    None if watchdog.is_some() => notify::ping(),
                    None => {}
                    Some((stage, _, what)) if !dead_reported => {
                        dead_reported = true;
                        error!(
                            stage,
                            what,
                            "StageStuck: a stage of the pipeline stopped making progress; no more watchdog pings"
                        );
                        notify::status(&format!(
                            "the {stage} stage {what}; waiting for the watchdog"
                        ));
                    }
                    Some(_) => {}
                }
                if !dead_reported && last_status.elapsed() >= STATUS_EVERY {
                    last_status = Instant::now();
                    notify::status(&status_line(&queue, &stats));
                }
            }
        }
    };
    info!(reason = %reason, grace = ?grace, "AgentStopping");
    notify::stopping(&format!("stopping ({reason}): draining"));
    let deadline = Instant::now() + grace;

    stop_sources.cancel();
    let digest = live.config.digest.clone();
    let running = std::mem::take(&mut live.running);
    drop(live);
    let drained = tokio::time::timeout_at(deadline, async {
        tracker.wait().await;
        for source in &running {
            source.wait().await;
        }
        let stopped = Observation::new(agent_source, "agent.stopped")
            .with("version", VERSION)
            .with("config_digest", digest)
            .with("reason", reason)
            .with("uptime_seconds", started.elapsed().as_secs());
        let _ = emitter.emit(stopped).await;
        drop(emitter);
        if let Err(e) = mapper.await {
            error!(stage = "mapping", error = %e, "MapperFailed");
        }
        if let Err(e) = appender.await {
            error!(stage = "queueing", error = %e, "AppenderFailed");
        }
        // Everything accepted is durable now. Closing lets the sender
        // drain what is left and then stop.
        if let Err(e) = queue.clone().close().await {
            error!(stage = "queueing", error = %e, "QueueCloseFailed");
        }
        if let Err(e) = sender.await {
            error!(stage = "sending", error = %e, "SenderFailed");
        }
    })
    .await
    .is_ok();
    stop_sending.cancel();

    let summary = Summary {
        events_sent: Stats::get(&stats.events_sent),
        send_failures: Stats::get(&stats.batches_failed),
        left_queued: queue.metrics().depth_events,
        drained,
        sink_gone: sink_gone.is_cancelled(),
    };
    if drained {
        info!(
            events_sent = summary.events_sent,
            send_failures = summary.send_failures,
            left_queued = summary.left_queued,
            "AgentStopped"
        );
    } else {
        warn!(
            grace = ?grace,
            events_sent = summary.events_sent,
            left_queued = summary.left_queued,
            "ShutdownGraceExpired: unsent events stay queued for the next start"
        );
    }
    Ok(summary)
}

/// Locks the configured data_dir. The default (`/var/lib/herald`) falls
/// back to a per-user directory when it cannot be created, so that a first
/// `herald run` without root works; a configured one never moves.
fn open_data_dir(
    agent: &AgentConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DataDir, DataDirError> {
    match DataDir::open(&agent.data_dir) {
        Err(DataDirError::Io { source, .. })
            if agent.data_dir_is_default
                && source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let Some(fallback) = user_state_dir(env) else {
                return DataDir::open(&agent.data_dir);
            };
            warn!(
                wanted = %agent.data_dir.display(),
                using = %fallback.display(),
                "DataDirFallback: no permission for the default data_dir; set [agent] data_dir to choose"
            );
            DataDir::open(&fallback)
        }
        other => other,
    }
}

/// The data_dir an agent with this config uses, for commands that read it
/// while the agent is stopped: the configured one, or for the default, the
/// per-user fallback when only that exists.
pub fn existing_data_dir(agent: &AgentConfig, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if agent.data_dir_is_default
        && !agent.data_dir.exists()
        && let Some(fallback) = user_state_dir(env).filter(|dir| dir.exists())
    {
        return fallback;
    }
    agent.data_dir.clone()
}

/// `$XDG_STATE_HOME/herald`, else `~/.local/state/herald`.
fn user_state_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |name| env(name).filter(|v: &String| !v.is_empty());
    non_empty("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .map(|base| base.join("herald"))
}

/// The mapper stage: observations in, serialized events out. A bad
/// observation is counted and logged; the stage carries on.
async fn map_all(
    mapper: Arc<Mutex<Mapper>>,
    mut observations: mpsc::Receiver<Vec<Observation>>,
    events: mpsc::Sender<Vec<Mapped>>,
    stats: Arc<Stats>,
) {
    // What the rules' sample / max_per_second held back is announced as a
    // herald.agent.suppressed event at most this often.
    let mut report = tokio::time::interval(SUPPRESSED_REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            batch = observations.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
            _ = report.tick() => lock(&mapper).suppressed_observation().into_iter().collect(),
        };
        let mapped = map_batch(&mut lock(&mapper), batch, &stats);
        if !mapped.is_empty() && events.send(mapped).await.is_err() {
            break;
        }
    }
    if let Err(e) = lock(&mapper).flush_state() {
        warn!(stage = "mapping", error = %e, "FollowsStateNotSaved");
    }
}

/// The mapper, run on a source's own thread.
struct MapOnThread {
    mapper: Arc<Mutex<Mapper>>,
    events: mpsc::Sender<Vec<Mapped>>,
    stats: Arc<Stats>,
}

impl MapHere for MapOnThread {
    fn map_and_send(&self, batch: Vec<Observation>) -> BoxFuture<'_, Result<(), Closed>> {
        let mapped = map_batch(&mut lock(&self.mapper), batch, &self.stats);
        Box::pin(async move {
            if mapped.is_empty() {
                return Ok(());
            }
            self.events.send(mapped).await.map_err(|_| Closed)
        })
    }
}

/// The mapper, whoever held it last: a panic while mapping cannot leave it
/// half-changed in a way that matters more than stopping would.
fn lock(mapper: &Mutex<Mapper>) -> MutexGuard<'_, Mapper> {
    mapper.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps a batch of observations into events, in order. A bad observation
/// is counted and logged. Each observation's checkpoint callback goes with
/// its last event, or alone when it made none, so a dropped line still
/// moves its source's checkpoint.
fn map_batch(mapper: &mut Mapper, mut batch: Vec<Observation>, stats: &Stats) -> Vec<Mapped> {
    let _busy = stats.mapping.enter();
    Stats::add(&stats.observations, batch.len() as u64);
    let mut mapped = Vec::with_capacity(batch.len());
    for observation in &mut batch {
        let on_durable = observation.on_durable.take();
        let made = match mapper.map_in_place(observation, &mut mapped) {
            Ok(made) => made,
            Err(e) => {
                Stats::add(&stats.unmappable, 1);
                warn!(stage = "mapping", source = %e.source_name, kind = %e.kind, rule = e.error.rule(), error = %e, "ObservationUnmappable");
                0
            }
        };
        if let Some(callback) = on_durable {
            match mapped.last_mut() {
                Some(last) if made > 0 => last.on_durable = Some(callback),
                _ => mapped.push(Mapped {
                    id: uuid::Uuid::nil(),
                    json: Bytes::new(),
                    on_durable: Some(callback),
                }),
            }
        }
    }
    mapped
}

/// What the appender holds: an event's bytes (empty for an observation
/// that made no event) and the source's checkpoint callback.
struct Pending {
    json: Bytes,
    on_durable: Option<OnDurable>,
}

/// The appender stage: takes whatever events are waiting (up to
/// [`APPEND_BATCH`] events and `max_append_bytes`), appends them in one
/// call, and once that append is durable releases the sources'
/// checkpoints, in order. While one append is being written and synced it
/// keeps taking events from the mapper (up to as much again), so the
/// mapper does not stall on the disk and the next append, covered by one
/// fsync, is as large as the time allows. A failed append (a full disk) is
/// retried with backoff, holding the events: the sources wait rather than
/// lose them. An observation that made no event (dropped by a rule, or
/// unmappable) still moves its source's checkpoint once everything before
/// it is durable.
async fn append_all(
    queue: Queue,
    max_append_bytes: usize,
    mut events: mpsc::Receiver<Vec<Mapped>>,
    stats: Arc<Stats>,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // Bytes of the events in `pending` after those of the append in
    // flight.
    let mut waiting_bytes = 0usize;
    let mut open = true;
    let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_CAP);
    let hold = |mapped: Vec<Mapped>, pending: &mut VecDeque<Pending>, waiting: &mut usize| {
        pending.extend(mapped.into_iter().map(|m| {
            *waiting += m.json.len();
            Pending {
                json: m.json,
                on_durable: m.on_durable,
            }
        }));
    };
    loop {
        if pending.is_empty() {
            if !open {
                return;
            }
            let Some(first) = events.recv().await else {
                return;
            };
            hold(first, &mut pending, &mut waiting_bytes);
        }
        while open && pending.len() < APPEND_BATCH {
            match events.try_recv() {
                Ok(more) => hold(more, &mut pending, &mut waiting_bytes),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let mut bytes = 0;
        let take = pending
            .iter()
            .take(APPEND_BATCH)
            .take_while(|event| {
                bytes += event.json.len();
                bytes <= max_append_bytes
            })
            .count()
            .max(1);
        // Cheap clones (reference counts): the bytes stay in `pending`
        // until the append succeeded, so a failure retries the same bytes.
        let records: Vec<Bytes> = pending
            .iter()
            .take(take)
            .filter(|e| !e.json.is_empty())
            .map(|e| e.json.clone())
            .collect();
        let events_in = records.len() as u64;
        let taken_bytes: usize = pending.iter().take(take).map(|e| e.json.len()).sum();
        waiting_bytes -= taken_bytes;
        let appended = if records.is_empty() {
            Ok(())
        } else {
            let append = queue.append(records);
            tokio::pin!(append);
            loop {
                tokio::select! {
                    biased;
                    appended = &mut append => break appended.map(|_| ()),
                    more = events.recv(), if open
                        && pending.len() < take + APPEND_BATCH
                        && waiting_bytes < max_append_bytes => match more {
                        Some(more) => hold(more, &mut pending, &mut waiting_bytes),
                        None => open = false,
                    },
                }
            }
        };
        match appended {
            Ok(()) => {
                backoff.reset();
                Stats::add(&stats.events_queued, events_in);
                for event in pending.drain(..take) {
                    if let Some(callback) = event.on_durable {
                        callback.fire();
                    }
                }
            }
            Err(QueueError::Closed) => return,
            Err(e) => {
                waiting_bytes += taken_bytes;
                let delay = backoff.next_delay();
                Stats::add(&stats.append_failures, 1);
                error!(stage = "queueing", events = events_in, error = %e, retry_in = ?delay, "QueueAppendFailed: sources wait until it succeeds");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Emits `herald.agent.events-dropped` when a full queue with
/// `when_full = "drop_oldest"` dropped events since the last look.
/// What `systemctl status` shows: the queue, what was sent, whether
/// sending fails right now.
fn status_line(queue: &Queue, stats: &Stats) -> String {
    let depth = queue.metrics();
    let sending = match Stats::get(&stats.retry_attempt) {
        0 => "sending ok".to_owned(),
        attempt => format!("sending failing, retry {attempt}"),
    };
    format!(
        "{} events queued ({:.1} MiB), {} sent, {sending}",
        depth.depth_events,
        depth.depth_bytes as f64 / (1024.0 * 1024.0),
        Stats::get(&stats.events_sent),
    )
}

async fn report_drops(queue: Queue, source: Arc<str>, emitter: Emitter, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(DROP_REPORT_EVERY);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let dropped = queue.take_dropped();
        if dropped == 0 {
            continue;
        }
        warn!(
            stage = "queueing",
            dropped, "EventsDropped: the queue was full (when_full = drop_oldest)"
        );
        let observation = Observation::new(source.clone(), "agent.events-dropped")
            .with("count", dropped)
            .with("reason", "queue full (when_full = drop_oldest)");
        if emitter.emit(observation).await.is_err() {
            return;
        }
    }
}
