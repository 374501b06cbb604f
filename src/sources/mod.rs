//! The sources: what herald watches. Each runs as its own task, hands
//! [`Observation`]s to the mapper through a bounded channel, and stops when
//! its cancellation token fires. A full channel makes a source wait, which
//! is how back-pressure reaches it. The channel carries batches, so a busy
//! source (a log file) pays one hand-off per chunk read, not per line. A
//! source on a thread of its own (the file source) can have its batches
//! mapped right there instead ([`Emitter::emit_batch_here`]), which spares
//! the busiest source a hand-off and moves its mapping off the async
//! workers that send.

pub mod file;
pub mod heartbeat;
pub mod host;
pub mod known_state;
pub mod probe;
pub mod process;
pub mod systemd;
pub mod threshold;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SourceConfig;
use crate::metrics::Stats;
use crate::observation::Observation;
use crate::queue::Queue;

/// Where a source sends what it sees.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Vec<Observation>>,
    here: Option<Arc<dyn MapHere>>,
}

/// The mapper, callable from a source's own thread: maps a batch there and
/// hands the events on (the agent provides it).
pub trait MapHere: Send + Sync {
    /// Maps `batch` on the calling thread and hands its events on, waiting
    /// while the next stage is full.
    fn map_and_send(&self, batch: Vec<Observation>) -> BoxFuture<'_, Result<(), Closed>>;
}

impl Emitter {
    /// Wraps the mapper's input channel.
    pub fn new(tx: mpsc::Sender<Vec<Observation>>) -> Self {
        Emitter { tx, here: None }
    }

    /// Wraps the mapper's input channel, and the mapper itself for
    /// [`Emitter::emit_batch_here`].
    pub fn with_mapper(tx: mpsc::Sender<Vec<Observation>>, here: Arc<dyn MapHere>) -> Self {
        Emitter {
            tx,
            here: Some(here),
        }
    }

    /// Sends one observation, waiting while the pipeline is full.
    ///
    /// # Errors
    /// [`Closed`] when the pipeline has shut down; the source should stop.
    pub async fn emit(&self, observation: Observation) -> Result<(), Closed> {
        self.emit_batch(vec![observation]).await
    }

    /// Sends observations in one hand-off, in order, waiting while the
    /// pipeline is full. Keep batches bounded (a chunk read, not a file).
    ///
    /// # Errors
    /// [`Closed`] when the pipeline has shut down; the source should stop.
    pub async fn emit_batch(&self, observations: Vec<Observation>) -> Result<(), Closed> {
        if observations.is_empty() {
            return Ok(());
        }
        self.tx.send(observations).await.map_err(|_| Closed)
    }

    /// Like [`Emitter::emit_batch`], but maps the batch on the calling
    /// thread when the agent gave the mapper: for a source with a thread of
    /// its own, whose time mapping costs nobody else.
    ///
    /// # Errors
    /// [`Closed`] when the pipeline has shut down; the source should stop.
    pub async fn emit_batch_here(&self, observations: Vec<Observation>) -> Result<(), Closed> {
        match &self.here {
            _ if observations.is_empty() => Ok(()),
            Some(here) => here.map_and_send(observations).await,
            None => self.emit_batch(observations).await,
        }
    }
}

/// The pipeline no longer takes observations.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

/// What every source may need from the agent besides its own config.
#[derive(Clone, Debug)]
pub struct SourceContext {
    /// `<data_dir>/state`: where sources keep checkpoints and known state
    /// (each source in files named after itself).
    pub state_dir: PathBuf,
    /// The host name used in resource ids.
    pub hostname: String,
    /// The pipeline's counters, for the heartbeat to report.
    pub stats: Arc<Stats>,
    /// The queue, for the heartbeat to report its depth.
    pub queue: Queue,
    /// Tells the agent when every source has started.
    pub started: StartGate,
}

/// Counts the sources still starting: a source that needs time to start
/// (the file source's first scan and checkpoint claims) holds a
/// [`Starting`] until it has; the agent waits for none to be left before
/// it says it is ready.
#[derive(Clone, Debug, Default)]
pub struct StartGate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    pending: AtomicUsize,
    done: tokio::sync::Notify,
}

/// Held by a source while it starts; dropping it says it has started
/// (or failed to, which it logged).
#[derive(Debug)]
pub struct Starting(Arc<GateInner>);

impl StartGate {
    /// One more source starting.
    pub fn starting(&self) -> Starting {
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        Starting(self.inner.clone())
    }

    /// Resolves once no source is starting.
    pub async fn all_started(&self) {
        loop {
            let done = self.inner.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.inner.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// One running source: its config, and what stops it and waits for it.
pub struct Running {
    /// What it was started with.
    pub config: SourceConfig,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Stops it and waits until its tasks (and its thread) ended.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }

    /// Waits until it ended (after its parent token was cancelled).
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }
}

/// Starts every configured source, each stopped by a child of `cancel`.
pub fn spawn_all(
    sources: &[SourceConfig],
    context: &SourceContext,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> Vec<Running> {
    sources
        .iter()
        .map(|source| spawn_one(source, context, emitter, cancel))
        .collect()
}

/// Starts one source, stopped by a child of `cancel`.
pub fn spawn_one(
    source: &SourceConfig,
    context: &SourceContext,
    emitter: &Emitter,
    cancel: &CancellationToken,
) -> Running {
    let running = Running {
        config: source.clone(),
        cancel: cancel.child_token(),
        tracker: TaskTracker::new(),
    };
    {
        let emitter = emitter.clone();
        let cancel = running.cancel.clone();
        let tracker = &running.tracker;
        match source {
            SourceConfig::File(config) => {
                file::spawn(
                    config.clone(),
                    context.state_dir.clone(),
                    context.stats.clone(),
                    context.started.starting(),
                    emitter,
                    cancel,
                    tracker,
                );
            }
            SourceConfig::Probe(config) => {
                probe::spawn(config.clone(), &context.state_dir, emitter, cancel, tracker);
            }
            SourceConfig::Process(config) => {
                process::spawn(
                    config.clone(),
                    context.state_dir.clone(),
                    emitter,
                    cancel,
                    tracker,
                );
            }
            SourceConfig::Host(config) => {
                host::spawn(
                    config.clone(),
                    context.state_dir.clone(),
                    context.hostname.clone(),
                    emitter,
                    cancel,
                    tracker,
                );
            }
            SourceConfig::Systemd(config) => {
                systemd::spawn(config.clone(), &context.state_dir, emitter, cancel, tracker);
            }
            SourceConfig::Heartbeat(config) => {
                let name: Arc<str> = Arc::from(config.name.as_str());
                let interval = config.interval;
                let health = heartbeat::Health {
                    stats: context.stats.clone(),
                    queue: context.queue.clone(),
                };
                tracker.spawn(heartbeat::run(
                    name,
                    interval,
                    Some(health),
                    emitter,
                    cancel,
                ));
            }
        }
    }
    running.tracker.close();
    running
}
