//! Reloading the configuration while the agent runs (SIGHUP). The new file
//! is read and checked first; a broken one leaves the running config as it
//! is, with every mistake logged. A good one is swapped in while events
//! keep flowing:
//! - sources whose settings are unchanged keep running untouched; removed
//!   or changed ones are stopped (their last batches go on to the queue),
//!   added or changed ones are started once the queue holds everything the
//!   stopped ones read, so a restarted file source resumes from the
//!   checkpoints its predecessor saved;
//! - the mapper is rebuilt with the new mappings and labels, its `follows`
//!   chains written first and read back;
//! - a changed `[sink]` is built and handed to the sender, which sends
//!   the next batch there (what was queued is not lost or sent twice: the
//!   queue does not change);
//! - `[agent] data_dir` and `[queue]` need a restart: a change there is
//!   logged and reported, and the running ones stay.
//!
//! Either way a `herald.agent.reloaded` event tells Prefect what happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tracing::{error, info, warn};

use super::lock;
use crate::config::{self, Config};
use crate::config::{SinkConfig, SourceConfig};
use crate::identity::Identity;
use crate::mapping::Mapper;
use crate::notify;
use crate::observation::{Observation, OnDurable};
use crate::sink::Sink;
use crate::sources::{self, Emitter, Running, SourceContext};

/// Longest a reload waits for the queue to hold what the stopped sources
/// read before it starts their successors.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// What a reload changes.
pub(super) struct Live<'a> {
    /// The config running now.
    pub config: Config,
    pub running: Vec<Running>,
    pub mapper: Arc<Mutex<Mapper>>,
    pub context: SourceContext,
    pub emitter: Emitter,
    pub stop_sources: tokio_util::sync::CancellationToken,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub source: Arc<str>,
    /// Hands a new sink to the sender, which takes it between batches.
    pub sink_swaps: tokio::sync::mpsc::UnboundedSender<(Sink, SinkConfig)>,
}

impl Live<'_> {
    /// Reads the config again and applies it, or keeps the running one.
    pub async fn reload(&mut self, status: &str) {
        notify::reloading();
        info!(config = %self.config.location, "ConfigReloading");
        let old_digest = self.config.digest.clone();
        let new = match config::load(self.config.location.clone(), self.env) {
            Ok(new) => new,
            Err(e) => {
                error!(config = %self.config.location, "ConfigReloadFailed: the running config stays\n{e}");
                let event = Observation::new(self.source.clone(), "agent.reloaded")
                    .with("ok", false)
                    .with("config_digest", old_digest)
                    .with("errors", e.to_string());
                let _ = self.emitter.emit(event).await;
                notify::ready(status);
                return;
            }
        };
        let mut restart = Vec::new();
        let mut applied = new.clone();
        if new.agent.data_dir != self.config.agent.data_dir {
            restart.push("agent.data_dir");
            applied
                .agent
                .data_dir
                .clone_from(&self.config.agent.data_dir);
        }
        if new.queue != self.config.queue {
            restart.push("queue");
            applied.queue = self.config.queue;
        }
        let mut sink_swapped = false;
        if new.sink != self.config.sink {
            // Built before anything changes: a sink that cannot be built
            // (an unreadable CA, say) keeps the running one.
            match Sink::from_config(&new.sink) {
                Ok(sink) => {
                    info!(sink = %sink.describe(), "SinkReloaded: the next batch goes there");
                    sink_swapped = self.sink_swaps.send((sink, new.sink.clone())).is_ok();
                }
                Err(e) => warn!(error = %e, "SinkReloadFailed: the running sink stays"),
            }
            if !sink_swapped {
                restart.push("sink");
                applied.sink = self.config.sink.clone();
            }
        }
        if !restart.is_empty() {
            warn!(sections = ?restart, "ReloadNeedsRestart: these settings changed and apply at the next start; the running ones stay");
        }

        // Stop the sources that go or change.
        let (keep, stop): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| new.sources.contains(&r.config));
        let stopped: Vec<String> = stop.iter().map(|r| r.config.name().to_owned()).collect();
        for running in stop {
            running.stop().await;
        }
        self.running = keep;
        let starting: Vec<SourceConfig> = new
            .sources
            .iter()
            .filter(|s| !self.running.iter().any(|r| r.config == **s))
            .cloned()
            .collect();
        let started: Vec<String> = starting.iter().map(|s| s.name().to_owned()).collect();

        // The new mapper: mappings, labels, hostname.
        let identity =
            Identity::discover(new.agent.hostname.as_deref(), &new.agent.labels, self.env);
        {
            let mut mapper = lock(&self.mapper);
            if let Err(e) = mapper.flush_state() {
                warn!(stage = "mapping", error = %e, "FollowsStateWriteFailed: follows chains may restart");
            }
            let mut fresh = Mapper::new(
                identity.clone(),
                &new.mappings,
                Some(&self.context.state_dir),
            );
            fresh.share_repeated_parts();
            *mapper = fresh;
        }
        self.context.hostname.clone_from(&identity.hostname);

        // Announced through the new mapper; once it is durable, so is
        // everything the stopped sources read before it.
        let (durable_tx, durable_rx) = tokio::sync::oneshot::channel::<()>();
        let mut event = Observation::new(self.source.clone(), "agent.reloaded")
            .with("ok", true)
            .with("old_config_digest", old_digest)
            .with("config_digest", new.digest.clone())
            .with("stopped", strings(&stopped))
            .with("started", strings(&started))
            .with("restart_needed", strings(&restart))
            .with("sink_changed", sink_swapped);
        event.on_durable = Some(OnDurable::new(move || {
            let _ = durable_tx.send(());
        }));
        let _ = self.emitter.emit(event).await;
        if !started.is_empty()
            && !stopped.is_empty()
            && tokio::time::timeout(SETTLE_WAIT, durable_rx).await.is_err()
        {
            warn!(
                "ReloadSettleTimedOut: the queue did not take the stopped sources' last lines in time; restarted sources may read some lines again (same ids)"
            );
        }
        for source in &starting {
            self.running.push(sources::spawn_one(
                source,
                &self.context,
                &self.emitter,
                &self.stop_sources,
            ));
        }
        info!(config = %new.location, digest = %new.digest, stopped = ?stopped, started = ?started, "ConfigReloaded");
        self.config = applied;
        notify::ready(status);
    }
}

fn strings(items: &[impl AsRef<str>]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_ref())).collect())
}
