//! State shared by the queue's handle, its writer thread and its reader:
//! the segment list, the head (ack point) and tail, depth, counters, and the
//! maintenance step that persists the ledger and deletes acked segments.
//!
//! Positions are logical byte offsets across all segments (a segment's
//! `base` plus an offset inside it). They exist only in memory, rebuilt by
//! recovery, and make depth in bytes a subtraction (`tail_pos - head_pos`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::error::QueueError;
use super::ledger;
use super::segment;
use super::storage::Storage;
use super::{QueueMetrics, Recovery, WhenFull};

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// the state consistent before anything in it can panic, so a panic
/// elsewhere does not make the data unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Configuration after validation, with derived limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    /// `None`: sync every group before it is acknowledged.
    pub sync_interval: Option<Duration>,
}

/// One segment as the reader and maintenance see it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentState {
    /// Seq the segment is named after.
    pub first_seq: u64,
    pub path: PathBuf,
    /// Logical position of the segment's first byte.
    pub base: u64,
    /// Bytes readable: published by the writer, or found valid by recovery.
    pub len: u64,
    /// Damaged ranges recovery found between valid records; the reader
    /// jumps over them without counting them again.
    pub skips: Vec<(u64, u64)>,
}

impl SegmentState {
    pub fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// Append wall times, kept coarsely: one mark per second of appends at
/// most, so memory does not grow with the event rate. A mark `(seq, t)`
/// says records from `seq` on were appended at `t` or later, so the age of
/// the oldest unacked record is overestimated by less than a second.
#[derive(Debug, Default)]
pub(crate) struct AgeIndex {
    marks: VecDeque<(u64, SystemTime)>,
}

/// A bound on the marks kept (about 18 hours of once-a-second appends
/// without an ack). Past it, new records share the last mark's time, which
/// overstates their age rather than hiding an old backlog.
const MAX_AGE_MARKS: usize = 1 << 16;

impl AgeIndex {
    pub fn mark(&mut self, seq: u64, at: SystemTime) {
        if let Some(&(_, last)) = self.marks.back()
            && at < last + Duration::from_secs(1)
        {
            return;
        }
        if self.marks.len() < MAX_AGE_MARKS {
            self.marks.push_back((seq, at));
        }
    }

    /// Forgets marks wholly behind the head.
    pub fn prune(&mut self, head_seq: u64) {
        while self.marks.len() >= 2 && self.marks[1].0 <= head_seq.saturating_add(1) {
            self.marks.pop_front();
        }
    }

    pub fn oldest(&self, now: SystemTime) -> Option<Duration> {
        let &(_, at) = self.marks.front()?;
        Some(now.duration_since(at).unwrap_or_default())
    }
}

/// Mutable queue state behind one mutex. Held only for bookkeeping, never
/// across I/O.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Segments in seq order; the writer's active segment, if any, is last.
    pub segments: VecDeque<SegmentState>,
    /// Every record with seq <= head_seq is acked or dropped.
    pub head_seq: u64,
    /// Where unacked data starts.
    pub head_pos: u64,
    /// Where published data ends.
    pub tail_pos: u64,
    /// Unacked records.
    pub depth_events: u64,
    /// Close was requested: blocked appends give up.
    pub closing: bool,
    /// The writer has stopped: nothing more will be published.
    pub closed: bool,
    /// Appends waiting for room (`when_full = block`).
    pub blocked: u64,
    /// Bytes the blocked writer waits to have room for (0 when it is not
    /// waiting): an ack wakes it only once they fit.
    pub room_wanted: u64,
    pub ages: AgeIndex,
    /// An acked segment's file of this many bytes waits under
    /// [`segment::SPARE_NAME`] for the writer to reuse it for its next
    /// segment.
    pub spare: Option<u64>,
}

impl Shared {
    /// Moves the head past `passed` (seq, end position and whether it is
    /// an event rather than a shared part's definition, of records in
    /// order) up to seq `up_to`. Records already behind the head (acked,
    /// or dropped meanwhile) are not counted twice. Returns how many
    /// events left the queue.
    pub fn advance(&mut self, passed: &[(u64, u64, bool)], up_to: u64) -> u64 {
        let mut events = 0;
        for &(seq, end, event) in passed {
            if seq > up_to {
                break;
            }
            if seq > self.head_seq {
                events += u64::from(event);
                self.head_pos = self.head_pos.max(end);
            }
        }
        self.head_seq = self.head_seq.max(up_to);
        self.depth_events = self.depth_events.saturating_sub(events);
        self.ages.prune(self.head_seq);
        events
    }

    pub fn depth_bytes(&self) -> u64 {
        self.tail_pos.saturating_sub(self.head_pos)
    }
}

/// Monotonic counters, readable without the state lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appended: AtomicU64,
    pub acked: AtomicU64,
    pub dropped: AtomicU64,
    /// Dropped since the last `take_dropped`.
    pub dropped_unreported: AtomicU64,
    pub corrupt_skipped: AtomicU64,
    pub syncs: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything the queue's parts share. The writer thread holds it by `Arc`
/// but not the channel sender, so dropping every `Queue` stops the thread.
pub(crate) struct Core {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub limits: Limits,
    pub shared: Mutex<Shared>,
    /// Signalled when the head advances or close is requested.
    pub space: Condvar,
    /// Signalled when records are published or the writer stops.
    pub data: tokio::sync::Notify,
    /// The ack seq last persisted; holding it serializes ledger writes and
    /// segment deletion between the reader's acks and the writer's drops.
    pub maintenance: Mutex<u64>,
    pub counters: Counters,
    pub reader_taken: AtomicBool,
    pub recovery: Recovery,
    /// Set while the writer writes and syncs, for the watchdog.
    pub busy: crate::liveness::Busy,
}

impl Core {
    /// Persists the head in the ledger if it moved, then deletes segments
    /// that lie wholly behind it (never the last: the writer may be
    /// appending to it). The first one's file becomes the spare when there
    /// is none and the ledger was written; when it could not be, the spare
    /// goes too before the ledger is tried again. Blocking I/O.
    ///
    /// Deleting does not wait for the ledger: the in-memory head is what
    /// was delivered, and a ledger left behind only means redelivering
    /// records of the segments that remain, never losing any. That matters
    /// on a full disk, where the ledger's temp file may not fit until acked
    /// segments are gone.
    ///
    /// # Errors
    /// Writing the ledger failed (also after deleting). Failing to delete a
    /// segment is logged only: the next start deletes it.
    pub fn persist_and_trim(&self) -> Result<(), QueueError> {
        let mut persisted = lock(&self.maintenance);
        let (target, doomed) = {
            let s = lock(&self.shared);
            let doomed = s
                .segments
                .iter()
                .take(s.segments.len().saturating_sub(1))
                .take_while(|seg| seg.end() <= s.head_pos)
                .count();
            (s.head_seq, doomed)
        };
        let mut result = Ok(());
        if target > *persisted {
            result = ledger::write(&*self.storage, &self.dir, target);
        }
        // A ledger that could not be written may want the room of what
        // goes, the spare's included.
        let room_wanted = result.is_err();
        let mut dir_changed = false;
        if doomed > 0 {
            // Only this function removes segments, and it is serialized, so
            // the first `doomed` segments are still the ones counted above.
            let (doomed, keep_spare) = {
                let mut s = lock(&self.shared);
                let doomed: Vec<SegmentState> = s.segments.drain(..doomed).collect();
                (doomed, s.spare.is_none() && !room_wanted)
            };
            let mut paths = doomed.into_iter().map(|seg| (seg.path, seg.len));
            if keep_spare && let Some((path, len)) = paths.next() {
                let spare = self.dir.join(segment::SPARE_NAME);
                match self.storage.rename(&path, &spare) {
                    Ok(()) => lock(&self.shared).spare = Some(len),
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "QueueSegmentNotKept");
                        if let Err(e) = self.storage.remove(&path) {
                            tracing::warn!(path = %path.display(), error = %e, "QueueSegmentRemoveFailed");
                        }
                    }
                }
            }
            let mut removed = 0;
            for (path, _) in paths {
                removed += 1;
                if let Err(e) = self.storage.remove(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "QueueSegmentRemoveFailed");
                }
            }
            tracing::debug!(removed, "QueueSegmentsDeleted");
            dir_changed = true;
        }
        if room_wanted && self.has_spare() {
            self.drop_spare();
            dir_changed = true;
        }
        if dir_changed {
            if let Err(e) = self.storage.sync_dir(&self.dir) {
                tracing::warn!(path = %self.dir.display(), error = %e, "QueueDirSyncFailed");
            }
            if result.is_err() {
                result = ledger::write(&*self.storage, &self.dir, target);
            }
        }
        if result.is_ok() {
            *persisted = (*persisted).max(target);
        }
        result
    }

    /// Whether an acked segment's file waits to be reused.
    pub fn has_spare(&self) -> bool {
        lock(&self.shared).spare.is_some()
    }

    /// The spare file for a new segment, if there is one; it is the
    /// caller's from now on.
    pub fn take_spare(&self) -> Option<PathBuf> {
        lock(&self.shared)
            .spare
            .take()
            .map(|_| self.dir.join(segment::SPARE_NAME))
    }

    /// Removes the spare file, if there is one, to give its room back (a
    /// write failed, perhaps for want of space). Durable with the next
    /// directory sync.
    pub fn drop_spare(&self) {
        if let Some(spare) = self.take_spare()
            && let Err(e) = self.storage.remove(&spare)
        {
            tracing::warn!(path = %spare.display(), error = %e, "QueueSegmentRemoveFailed");
        }
    }

    pub fn metrics(&self) -> QueueMetrics {
        let s = lock(&self.shared);
        let c = &self.counters;
        QueueMetrics {
            depth_events: s.depth_events,
            depth_bytes: s.depth_bytes(),
            oldest_unacked_age: if s.depth_events == 0 {
                None
            } else {
                s.ages.oldest(SystemTime::now())
            },
            acked_through: s.head_seq,
            segments: s.segments.len(),
            disk_bytes: s.segments.iter().map(|seg| seg.len).sum::<u64>() + s.spare.unwrap_or(0),
            blocked_appends: s.blocked,
            appended_total: c.appended.load(Ordering::Relaxed),
            acked_total: c.acked.load(Ordering::Relaxed),
            dropped_total: c.dropped.load(Ordering::Relaxed),
            corrupt_skipped_total: c.corrupt_skipped.load(Ordering::Relaxed),
            syncs_total: c.syncs.load(Ordering::Relaxed),
            recovery: self.recovery,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_counts_each_record_once() {
        let mut s = Shared {
            depth_events: 5,
            tail_pos: 500,
            ..Shared::default()
        };
        let passed = [(1, 100, true), (2, 200, true), (3, 300, true)];
        assert_eq!(s.advance(&passed[..2], 2), 2);
        assert_eq!((s.head_seq, s.head_pos, s.depth_events), (2, 200, 3));
        // A drop that already passed seq 3 is not counted again by an ack.
        assert_eq!(s.advance(&passed, 3), 1);
        assert_eq!(s.advance(&passed, 3), 0);
        assert_eq!((s.head_seq, s.head_pos, s.depth_bytes()), (3, 300, 200));
        // A definition moves the head but is not an event.
        assert_eq!(s.advance(&[(4, 350, false), (5, 400, true)], 5), 1);
        assert_eq!((s.head_seq, s.head_pos, s.depth_events), (5, 400, 1));
    }

    #[test]
    fn age_index_is_coarse_and_pruned() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut ages = AgeIndex::default();
        ages.mark(1, t0);
        ages.mark(5, t0 + Duration::from_millis(500));
        ages.mark(9, t0 + Duration::from_secs(2));
        assert_eq!(ages.marks.len(), 2);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(ages.oldest(now), Some(Duration::from_secs(10)));
        ages.prune(8);
        assert_eq!(ages.oldest(now), Some(Duration::from_secs(8)));
    }
}
