//! Opening a queue directory: reading the ledger, scanning every segment,
//! cutting torn tails, and rebuilding the in-memory state.
//!
//! Recovery never fails because of what the files contain: damage is
//! skipped, cut or counted. It fails only when the directory itself cannot
//! be created or listed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::Recovery;
use super::error::QueueError;
use super::ledger::{self, LedgerStatus};
use super::segment::{self, Scan};
use super::state::{AgeIndex, SegmentState, Shared};
use super::storage::{ReadFile, Storage};
use super::writer::Active;

/// One segment file as found on disk.
pub(crate) struct Found {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file_len: u64,
    pub scan: Scan,
    pub times: Option<(Option<SystemTime>, SystemTime)>,
}

/// The ledger and every readable segment, scanned, without changing
/// anything (shared with `inspect`). `visit` sees unacked records in order
/// until it returns `false`.
pub(crate) fn survey(
    storage: &dyn Storage,
    dir: &Path,
    mut visit: impl FnMut(&segment::Found<'_>) -> bool,
) -> Result<(u64, LedgerStatus, Vec<Found>), QueueError> {
    let names = storage
        .list(dir)
        .map_err(|e| QueueError::io("list queue directory", dir, e))?;
    let (acked, status) = ledger::read(storage, dir);
    let mut segs: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| segment::parse_file_name(&name).map(|seq| (seq, name)))
        .collect();
    segs.sort_unstable();
    let mut found = Vec::with_capacity(segs.len());
    let mut visiting = true;
    for (first_seq, name) in segs {
        let path = dir.join(name);
        let file: Arc<dyn ReadFile> = match storage.open_read(&path) {
            Ok(file) => file,
            Err(e) => {
                // Left alone: not ours to delete when we cannot tell what
                // it holds, and not a reason to refuse to start.
                tracing::error!(path = %path.display(), error = %e, "QueueSegmentUnreadable");
                continue;
            }
        };
        let file_len = file.size().unwrap_or(0);
        let scan = segment::scan(&*file, file_len, first_seq, acked, |r| {
            visiting = visiting && visit(r);
            visiting
        });
        if let Some(e) = &scan.read_error {
            tracing::error!(path = %path.display(), offset = scan.valid_end, error = %e, "QueueSegmentUnreadable");
        }
        let times = storage.times(&path).ok();
        found.push(Found {
            first_seq,
            path,
            file_len,
            scan,
            times,
        });
    }
    Ok((acked, status, found))
}

/// When a segment was started: its time mark, or for a segment written
/// before marks existed, its file's creation time (or, without one, its
/// last write).
pub(crate) fn started(f: &Found) -> Option<SystemTime> {
    f.scan.started.or_else(|| {
        f.times
            .map(|(created, modified)| created.unwrap_or(modified))
    })
}

/// What the writer and the shared state start from.
pub(crate) struct Recovered {
    pub shared: Shared,
    pub active: Option<Active>,
    pub next_seq: u64,
    pub recovery: Recovery,
}

/// Recovers the queue in `dir` (creating it if missing); `segment_bytes` is
/// the rollover size, so a full last segment is not appended to.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    segment_bytes: u64,
) -> Result<Recovered, QueueError> {
    storage
        .create_dir_all(dir)
        .map_err(|e| QueueError::io("create queue directory", dir, e))?;
    let tmp = dir.join(ledger::TMP_NAME);
    if storage.remove(&tmp).is_ok() {
        tracing::debug!(path = %tmp.display(), "QueueStaleLedgerRemoved");
    }
    // A spare is only reused within one run: its old seqs are known to lie
    // below every new one only while the seqs it was acked under hold.
    let spare = dir.join(segment::SPARE_NAME);
    if storage.remove(&spare).is_ok() {
        tracing::debug!(path = %spare.display(), "QueueSpareRemoved");
    }
    let (acked, ledger_status, mut found) = survey(storage, dir, |_| false)?;
    if ledger_status == LedgerStatus::Corrupt {
        tracing::warn!(path = %dir.join(ledger::FILE_NAME).display(), "QueueLedgerCorrupt");
    }

    let mut recovery = Recovery {
        acked_through: acked,
        ledger: ledger_status,
        ..Recovery::default()
    };
    let mut dir_changed = false;
    // Cut torn tails so appends and readers find clean ends.
    let mut clean_tail = vec![true; found.len()];
    for (i, f) in found.iter().enumerate() {
        recovery.corrupt_skipped += f.scan.corrupt;
        if f.scan.read_error.is_some() {
            clean_tail[i] = false;
            continue;
        }
        if f.file_len == f.scan.valid_end {
            continue;
        }
        // Old records of a reused file are cut too, but they are not torn.
        recovery.truncated_bytes += f.scan.torn;
        let cut = storage.open_append(&f.path).and_then(|mut w| {
            w.truncate(f.scan.valid_end)?;
            w.sync()
        });
        if let Err(e) = cut {
            tracing::warn!(path = %f.path.display(), error = %e, "QueueTruncateFailed");
            clean_tail[i] = false;
        }
    }

    let last_seq = found
        .iter()
        .filter_map(|f| f.scan.last_seq)
        .max()
        .unwrap_or(0);
    let next_seq = last_seq.max(acked) + 1;

    // Segments without records hold nothing to keep; the last one may be
    // reused if its name is the seq the next record gets.
    let last_index = found.len().checked_sub(1);
    let mut keep = Vec::with_capacity(found.len());
    for (i, f) in found.drain(..).enumerate() {
        let reusable = Some(i) == last_index && f.first_seq == next_seq;
        if f.scan.records == 0 && f.scan.read_error.is_none() && !reusable {
            match storage.remove(&f.path) {
                Ok(()) => dir_changed = true,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "QueueSegmentRemoveFailed")
                }
            }
            continue;
        }
        keep.push((f, clean_tail[i]));
    }
    if dir_changed && let Err(e) = storage.sync_dir(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "QueueDirSyncFailed");
    }

    let mut shared = Shared {
        head_seq: acked,
        ages: AgeIndex::default(),
        segments: VecDeque::with_capacity(keep.len()),
        ..Shared::default()
    };
    let mut head_pos = None;
    let mut pos = 0;
    for (f, _) in &keep {
        if let Some(off) = f.scan.head_offset {
            head_pos.get_or_insert(pos + off);
        }
        if let Some(seq) = f.scan.first_unacked
            && let Some(started) = started(f)
        {
            // No per-record time survives a restart; the segment's start
            // stands in for it.
            shared.ages.mark(seq, started);
        }
        shared.depth_events += f.scan.unacked;
        shared.segments.push_back(SegmentState {
            first_seq: f.first_seq,
            path: f.path.clone(),
            base: pos,
            len: f.scan.valid_end,
            skips: f.scan.skips.clone(),
        });
        pos += f.scan.valid_end;
    }
    shared.tail_pos = pos;
    shared.head_pos = head_pos.unwrap_or(pos);
    recovery.segments = keep.len();
    recovery.records = shared.depth_events;

    // Append to the last segment only if it ends cleanly, has room, and the
    // next seq continues it: seqs inside a segment must be consecutive for
    // resynchronization to bound its search.
    let active = keep.last().and_then(|(f, clean)| {
        let continues = match f.scan.last_seq {
            Some(last) => last + 1 == next_seq,
            None => f.first_seq == next_seq,
        };
        if !(*clean && continues && f.scan.valid_end < segment_bytes) {
            return None;
        }
        match storage.open_append(&f.path) {
            Ok(file) => Some(Active {
                first_seq: f.first_seq,
                path: f.path.clone(),
                file,
                len: f.scan.valid_end,
                // Its creation time may not be its start (it may have been
                // reused just before a crash): if empty, it gets a mark.
                fresh: false,
            }),
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "QueueSegmentReopenFailed");
                None
            }
        }
    });

    tracing::info!(
        segments = recovery.segments,
        records = recovery.records,
        truncated_bytes = recovery.truncated_bytes,
        corrupt_skipped = recovery.corrupt_skipped,
        acked_through = acked,
        ledger = ?ledger_status,
        "QueueRecovered"
    );
    Ok(Recovered {
        shared,
        active,
        next_seq,
        recovery,
    })
}
