//! Read-only views of a queue directory for `herald queue inspect`: a
//! summary with per-segment detail, and the first unacked payloads.
//!
//! They read the files as they are, take no lock and change nothing, so
//! they work on a stopped agent's data_dir. On a running agent they show a
//! moment's state, possibly with a tail being written counted as torn.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::error::QueueError;
use super::ledger::LedgerStatus;
use super::reader::Record;
use super::recovery::survey;
use super::shared;
use super::storage::FsStorage;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File name.
    pub name: String,
    /// Its bytes in the file: the file's size, less any records of the
    /// file's earlier use past them (a reused file).
    pub bytes: u64,
    /// Valid records in it.
    pub records: u64,
    /// Seq of its first valid record.
    pub first_seq: Option<u64>,
    /// Seq of its last valid record.
    pub last_seq: Option<u64>,
}

/// A summary of a queue directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The directory inspected.
    pub dir: PathBuf,
    /// The ledger's ack point (0 when missing or corrupt).
    pub acked_through: u64,
    /// What was found where the ledger should be.
    pub ledger: LedgerStatus,
    /// Segments in order.
    pub segments: Vec<SegmentInfo>,
    /// Unacked records.
    pub depth_events: u64,
    /// Bytes from the first unacked record to the end of valid data.
    pub depth_bytes: u64,
    /// Seq of the first unacked record.
    pub first_unacked_seq: Option<u64>,
    /// Seq of the last unacked record.
    pub last_unacked_seq: Option<u64>,
    /// Age of the oldest unacked record, from its segment's time mark (or
    /// file times).
    pub oldest_age: Option<Duration>,
    /// Damaged records that recovery would skip.
    pub corrupt_records: u64,
    /// Bytes after the last valid record of segments, which recovery would
    /// cut.
    pub torn_bytes: u64,
}

/// Summarizes the queue in `queue_dir` without changing it.
///
/// # Errors
/// The directory cannot be listed (e.g. it does not exist).
pub fn inspect(queue_dir: &Path) -> Result<Inspection, QueueError> {
    let (acked, ledger, found) = survey(&FsStorage, queue_dir, |_| false)?;
    let mut out = Inspection {
        dir: queue_dir.to_path_buf(),
        acked_through: acked,
        ledger,
        segments: Vec::with_capacity(found.len()),
        depth_events: 0,
        depth_bytes: 0,
        first_unacked_seq: None,
        last_unacked_seq: None,
        oldest_age: None,
        corrupt_records: 0,
        torn_bytes: 0,
    };
    for f in &found {
        let s = &f.scan;
        // A reused file's old records past its own are not the segment's.
        let own_bytes = s.stale_from.unwrap_or(f.file_len);
        out.segments.push(SegmentInfo {
            name: f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: own_bytes,
            records: s.records,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
        });
        out.corrupt_records += s.corrupt;
        if s.read_error.is_none() {
            out.torn_bytes += s.torn;
        }
        out.depth_events += s.unacked;
        if let Some(head) = s.head_offset {
            out.depth_bytes += s.valid_end - head;
            if out.first_unacked_seq.is_none() {
                out.first_unacked_seq = s.first_unacked;
                out.oldest_age = super::recovery::started(f)
                    .map(|at| SystemTime::now().duration_since(at).unwrap_or_default());
            }
            out.last_unacked_seq = s.last_seq;
        }
    }
    Ok(out)
}

/// The first `limit` unacked records in `queue_dir`, in order, whole
/// (shared parts put back), without changing anything. Definitions of
/// shared parts are not listed.
///
/// # Errors
/// The directory cannot be listed.
pub fn unacked_records(queue_dir: &Path, limit: usize) -> Result<Vec<Record>, QueueError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // Definitions seen so far: a later one of an id replaces an earlier
    // one, as it does for the reader.
    let mut parts = shared::PartMap::default();
    survey(&FsStorage, queue_dir, |r| {
        if shared::learn(&mut parts, r.payload) {
            return true;
        }
        let payload = if shared::has_refs(r.payload) {
            let mut whole = Vec::new();
            if shared::expand(r.payload, &parts, &mut whole).is_err() {
                // Damaged: the reader would skip it too.
                return true;
            }
            Bytes::from(whole)
        } else {
            Bytes::copy_from_slice(r.payload)
        };
        out.push(Record {
            seq: r.seq,
            payload,
        });
        out.len() < limit
    })?;
    Ok(out)
}

struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

fn seqs(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no records".into(),
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queue {}", self.dir.display())?;
        let ledger = match self.ledger {
            LedgerStatus::Valid => "",
            LedgerStatus::Missing => " (no ledger)",
            LedgerStatus::Corrupt => " (ledger corrupt: all records will be redelivered)",
        };
        writeln!(f, "  acked through: seq {}{ledger}", self.acked_through)?;
        write!(
            f,
            "  unacked: {} events, {}",
            self.depth_events,
            Size(self.depth_bytes)
        )?;
        if self.depth_events > 0 {
            write!(
                f,
                ", {}",
                seqs(self.first_unacked_seq, self.last_unacked_seq)
            )?;
        }
        if let Some(age) = self.oldest_age {
            write!(f, ", oldest about {}s old", age.as_secs())?;
        }
        writeln!(f)?;
        if self.corrupt_records > 0 || self.torn_bytes > 0 {
            writeln!(
                f,
                "  damage: {} corrupt records, {} torn bytes (cut at next start)",
                self.corrupt_records, self.torn_bytes
            )?;
        }
        writeln!(f, "  segments: {}", self.segments.len())?;
        for s in &self.segments {
            writeln!(
                f,
                "    {}  {:>10}  {:>8} records  {}",
                s.name,
                Size(s.bytes).to_string(),
                s.records,
                seqs(s.first_seq, s.last_seq)
            )?;
        }
        Ok(())
    }
}
