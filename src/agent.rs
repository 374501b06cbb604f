//! Wires the pipeline and runs it until told to stop.
//!
//! ```text
//! sources ──Observation──▶ mapper task ──Mapped──▶ sink task ──▶ endpoint
//!        (bounded channel)            (bounded channel)
//! ```
//!
//! Start-up is linear and logged. Shutdown runs in order: stop the
//! sources, announce `herald.agent.stopped`, let the mapper drain, let the
//! sink flush; all of it within `shutdown_grace`, after which herald says
//! what it left behind and exits anyway. This module owns ordering and
//! lifetimes, not what any stage does.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, SinkConfig};
use crate::identity::{Identity, VERSION};
use crate::mapping::{Mapped, Mapper};
use crate::metrics::Stats;
use crate::observation::Observation;
use crate::sink::{Sink, SinkError};
use crate::sources::{self, Emitter};

/// Observations waiting for the mapper.
const OBSERVATION_CHANNEL: usize = 1024;
/// Events waiting for the sink.
const EVENT_CHANNEL: usize = 4096;
/// The name the agent's own lifecycle observations carry as their source.
const AGENT_SOURCE: &str = "agent";

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The sink could not be built.
    #[error("cannot start the sink: {0}")]
    Sink(#[from] SinkError),
}

/// What a run did, for the caller's last log line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Events the endpoint accepted.
    pub events_sent: u64,
    /// Events that failed to send.
    pub events_failed: u64,
    /// Whether the drain finished within the grace period.
    pub drained: bool,
}

/// Runs the agent until `shutdown` resolves (a signal, or a test saying
/// stop), then drains within the grace period.
///
/// `shutdown` resolves to the reason, which goes in the stopped event.
///
/// # Errors
/// [`AgentError`] when a stage cannot be started; nothing was sent then.
pub async fn run(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    shutdown: impl Future<Output = String>,
) -> Result<Summary, AgentError> {
    let started = Instant::now();
    let identity = Identity::discover(config.agent.hostname.as_deref(), &config.agent.labels, env);
    let sink = Sink::from_config(&config.sink)?;
    info!(
        version = VERSION,
        config = %config.location,
        digest = %config.digest,
        resource = identity.agent.id(),
        sink = %sink.describe(),
        sources = config.sources.len(),
        "AgentStarting"
    );
    let stats = Arc::new(Stats::default());

    let (observation_tx, observation_rx) = mpsc::channel(OBSERVATION_CHANNEL);
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL);
    let mapper = tokio::spawn(map_all(
        Mapper::new(identity.clone()),
        observation_rx,
        event_tx,
        stats.clone(),
    ));
    let sink_task = tokio::spawn(send_all(sink, config.sink.clone(), event_rx, stats.clone()));

    let emitter = Emitter::new(observation_tx);
    let agent_source: Arc<str> = Arc::from(AGENT_SOURCE);
    let started_event = Observation::new(agent_source.clone(), "agent.started")
        .with("version", VERSION)
        .with("config_digest", config.digest.clone())
        .with("config", config.location.to_string())
        .with("pid", std::process::id());
    // The pipeline was just built and nothing can have closed it yet.
    let _ = emitter.emit(started_event).await;

    let cancel_sources = CancellationToken::new();
    let tracker = TaskTracker::new();
    sources::spawn_all(&config.sources, &emitter, &cancel_sources, &tracker);
    tracker.close();
    info!("AgentStarted");

    let reason = shutdown.await;
    let grace = config.agent.shutdown_grace;
    info!(reason = %reason, grace = ?grace, "AgentStopping");
    let deadline = Instant::now() + grace;

    cancel_sources.cancel();
    let drained = tokio::time::timeout_at(deadline, async {
        tracker.wait().await;
        let stopped = Observation::new(agent_source, "agent.stopped")
            .with("version", VERSION)
            .with("config_digest", config.digest.clone())
            .with("reason", reason)
            .with("uptime_seconds", started.elapsed().as_secs());
        let _ = emitter.emit(stopped).await;
        drop(emitter);
        if let Err(e) = mapper.await {
            error!(stage = "mapping", error = %e, "MapperFailed");
        }
        if let Err(e) = sink_task.await {
            error!(stage = "sending", error = %e, "SinkFailed");
        }
    })
    .await
    .is_ok();

    let summary = Summary {
        events_sent: Stats::get(&stats.events_sent),
        events_failed: Stats::get(&stats.events_failed),
        drained,
    };
    if drained {
        info!(
            events_sent = summary.events_sent,
            events_failed = summary.events_failed,
            "AgentStopped"
        );
    } else {
        warn!(
            grace = ?grace,
            events_sent = summary.events_sent,
            "ShutdownGraceExpired: exiting with events still in the pipeline"
        );
    }
    Ok(summary)
}

/// The mapper stage: observations in, serialized events out. A bad
/// observation is counted and logged; the stage carries on.
async fn map_all(
    mapper: Mapper,
    mut observations: mpsc::Receiver<Observation>,
    events: mpsc::Sender<Mapped>,
    stats: Arc<Stats>,
) {
    while let Some(observation) = observations.recv().await {
        Stats::add(&stats.observations, 1);
        match mapper.map(observation) {
            Ok(mapped) => {
                if events.send(mapped).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                Stats::add(&stats.unmappable, 1);
                warn!(stage = "mapping", source = %e.source_name, kind = %e.kind, rule = e.error.rule(), error = %e, "ObservationUnmappable");
            }
        }
    }
}

/// The sink stage: gathers events into batches (by count, bytes and a
/// short timeout) and sends each. Until the disk queue lands, a batch that
/// fails is logged and counted, not retried.
async fn send_all(
    mut sink: Sink,
    config: SinkConfig,
    mut events: mpsc::Receiver<Mapped>,
    stats: Arc<Stats>,
) {
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(config.batch_max_events);
    let mut callbacks = Vec::new();
    let mut open = true;
    while open {
        let Some(first) = events.recv().await else {
            break;
        };
        let mut bytes = first.json.len();
        batch.push(first.json);
        callbacks.extend(first.on_durable);
        let deadline = Instant::now() + config.batch_timeout;
        while batch.len() < config.batch_max_events && bytes < config.batch_max_bytes {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(next)) => {
                    bytes += next.json.len();
                    batch.push(next.json);
                    callbacks.extend(next.on_durable);
                }
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match sink.send(&batch).await {
            Ok(()) => {
                Stats::add(&stats.events_sent, n);
                for callback in callbacks.drain(..) {
                    callback.fire();
                }
            }
            Err(e) => {
                Stats::add(&stats.events_failed, n);
                Stats::add(&stats.batches_failed, 1);
                callbacks.clear();
                error!(stage = "sending", events = n, error = %e, "BatchSendFailed: these events are lost (no disk queue yet)");
            }
        }
        batch.clear();
    }
}
