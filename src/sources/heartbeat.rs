//! The heartbeat source: an `agent.heartbeat` observation at start and then
//! every interval, so that a Prefect automation can say "tell me when an
//! agent goes silent" (a proactive trigger on the absence of heartbeats).
//! Each beat also carries the agent's health: the queue's depth and the
//! oldest queued event's age, what was sent, and whether sending is
//! failing right now (`retry_attempt` > 0), so an automation can also say
//! "tell me when an agent falls behind".

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use serde_json::json;

use super::Emitter;
use crate::metrics::Stats;
use crate::observation::Observation;
use crate::queue::Queue;

/// Where a beat reads the agent's health from.
#[derive(Clone)]
pub struct Health {
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The queue, for its depth.
    pub queue: Queue,
}

impl Health {
    fn report(&self) -> serde_json::Value {
        let queue = self.queue.metrics();
        json!({
            "queue": {
                "depth_events": queue.depth_events,
                "depth_bytes": queue.depth_bytes,
                "oldest_age_seconds": queue.oldest_unacked_age.map(|age| age.as_secs()),
                "dropped_total": queue.dropped_total,
            },
            "sink": {
                "events_sent": Stats::get(&self.stats.events_sent),
                "failed_attempts": Stats::get(&self.stats.batches_failed),
                "retry_attempt": Stats::get(&self.stats.retry_attempt),
                "dead_lettered": Stats::get(&self.stats.dead_lettered),
            },
            "files": {
                "streams_recovered": Stats::get(&self.stats.file_streams_recovered),
                "truncation_lost_bytes": Stats::get(&self.stats.file_truncation_lost_bytes),
                "truncations_unrecovered": Stats::get(&self.stats.file_truncations_unrecovered),
                "format_errors": Stats::get(&self.stats.file_format_errors),
            },
        })
    }
}

/// Beats until `cancel` fires or the pipeline closes.
pub async fn run(
    name: Arc<str>,
    interval: Duration,
    health: Option<Health>,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(interval);
    // After a stall (a suspended VM, a blocked pipeline) beat once, not in
    // a burst: a burst of heartbeats says nothing more than one.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut beat: u64 = 0;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        beat += 1;
        let mut observation = Observation::new(name.clone(), "agent.heartbeat")
            .with("uptime_seconds", started.elapsed().as_secs())
            .with("interval_seconds", interval.as_secs_f64())
            .with("beat", beat);
        if let Some(health) = &health {
            observation = observation.with("health", health.report());
        }
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = emitter.emit(observation) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test(start_paused = true)]
    async fn beats_at_start_then_every_interval() {
        let (tx, mut rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::from("hb"),
            Duration::from_secs(30),
            None,
            Emitter::new(tx),
            cancel.clone(),
        ));
        let first = rx.recv().await.expect("first beat").remove(0);
        assert_eq!(first.kind, "agent.heartbeat");
        assert_eq!(first.field("beat"), Some(&serde_json::json!(1)));
        let before = Instant::now();
        let second = rx.recv().await.expect("second beat").remove(0);
        assert_eq!(before.elapsed(), Duration::from_secs(30));
        assert_eq!(second.field("uptime_seconds"), Some(&serde_json::json!(30)));
        cancel.cancel();
        task.await.expect("stops cleanly");
        assert!(rx.recv().await.is_none(), "no beat after cancel");
    }
}
