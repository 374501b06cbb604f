//! The sources: what herald watches. Each runs as its own task, hands
//! [`Observation`]s to the mapper through a bounded channel, and stops when
//! its cancellation token fires. A full channel makes a source wait, which
//! is how back-pressure reaches it.

pub mod heartbeat;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SourceConfig;
use crate::observation::Observation;

/// Where a source sends what it sees.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Observation>,
}

impl Emitter {
    /// Wraps the mapper's input channel.
    pub fn new(tx: mpsc::Sender<Observation>) -> Self {
        Emitter { tx }
    }

    /// Sends an observation, waiting while the pipeline is full.
    ///
    /// # Errors
    /// [`Closed`] when the pipeline has shut down; the source should stop.
    pub async fn emit(&self, observation: Observation) -> Result<(), Closed> {
        self.tx.send(observation).await.map_err(|_| Closed)
    }
}

/// The pipeline no longer takes observations.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

/// Starts every configured source on `tracker`.
pub fn spawn_all(
    sources: &[SourceConfig],
    emitter: &Emitter,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    for source in sources {
        let emitter = emitter.clone();
        let cancel = cancel.clone();
        match source {
            SourceConfig::Heartbeat(config) => {
                let name: Arc<str> = Arc::from(config.name.as_str());
                let interval = config.interval;
                tracker.spawn(heartbeat::run(name, interval, emitter, cancel));
            }
        }
    }
}
