//! The agent's own counters, shared by every stage and read by logs,
//! `status` and (later) the metrics endpoint. Names follow
//! `herald_<noun>_<unit>_total`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the pipeline did since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Observations the mapper received (`herald_observations_total`).
    pub observations: AtomicU64,
    /// Observations that could not become a valid event
    /// (`herald_events_unmappable_total`).
    pub unmappable: AtomicU64,
    /// Events made durable in the queue (`herald_events_queued_total`).
    pub events_queued: AtomicU64,
    /// Queue appends that failed and were retried
    /// (`herald_append_failures_total`).
    pub append_failures: AtomicU64,
    /// Events the endpoint accepted (`herald_events_sent_total`).
    pub events_sent: AtomicU64,
    /// Events the endpoint refused for good, kept as dead letters
    /// (`herald_events_dead_lettered_total`).
    pub dead_lettered: AtomicU64,
    /// Failed attempts in a row at sending the current batch; 0 while
    /// sending works (`herald_send_retry_attempt`, a gauge).
    pub retry_attempt: AtomicU64,
    /// Send attempts that failed and will be retried
    /// (`herald_batches_failed_total`).
    pub batches_failed: AtomicU64,
    /// Files whose unread rest herald read from where it was found
    /// instead of their path: renamed while herald was stopped, or the
    /// copy of a file copied and truncated
    /// (`herald_file_streams_recovered_total`).
    pub file_streams_recovered: AtomicU64,
    /// Bytes a truncation took away before herald read them, as far as
    /// herald can tell: seen in the file but in no copy of it
    /// (`herald_file_truncation_lost_bytes_total`).
    pub file_truncation_lost_bytes: AtomicU64,
    /// Truncations herald could not finish from a copy
    /// (`herald_file_truncations_unrecovered_total`).
    pub file_truncations_unrecovered: AtomicU64,
    /// Container log lines whose framing or timestamp did not parse; they
    /// were sent as they were, with the time they were read
    /// (`herald_file_format_errors_total`).
    pub file_format_errors: AtomicU64,
    /// Set while a batch is being mapped, for the watchdog (not a counter;
    /// kept here because everything that maps has the stats at hand).
    pub mapping: crate::liveness::Busy,
    /// The sources' own busy marks (a file source's reads), by source name,
    /// for the watchdog.
    pub sources:
        std::sync::Mutex<Vec<(std::sync::Arc<str>, std::sync::Arc<crate::liveness::Busy>)>>,
}

impl Stats {
    /// A busy mark for the source `name`, watched with the others.
    pub fn source_busy(&self, name: &std::sync::Arc<str>) -> std::sync::Arc<crate::liveness::Busy> {
        let busy = std::sync::Arc::new(crate::liveness::Busy::default());
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A source started again by a reload replaces its predecessor.
        sources.retain(|(n, _)| n != name);
        sources.push((name.clone(), busy.clone()));
        busy
    }

    /// The source busy for longest, and for how long, if any is busy.
    pub fn busiest_source(&self) -> Option<(std::sync::Arc<str>, std::time::Duration)> {
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(name, busy)| busy.busy_for().map(|d| (name.clone(), d)))
            .max_by_key(|(_, d)| *d)
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
