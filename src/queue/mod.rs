//! The crash-safe disk queue between mapping and the sinks.
//!
//! Every event is appended here before anything is sent, and stays until
//! the endpoint has accepted it. This module owns the files under
//! `<data_dir>/queue/`; it does not know what an event is (payloads are
//! opaque bytes, in practice the event's final JSON) nor how it is sent,
//! with one exception: parts that many payloads repeat can be stored once
//! per segment and referenced ([`shared`]); the reader puts them back.
//!
//! # On-disk format
//!
//! The queue is a directory of **segments**, append-only files named
//! `<first seq, 20 digits>.seg`, holding back-to-back **records**. All
//! integers are little-endian:
//!
//! ```text
//! offset 0   u32 len      payload length in bytes
//! offset 4   u32 crc      CRC-32C (Castagnoli) of bytes 0..4, then 8..16+len:
//!                         len, seq and payload, i.e. all but the crc itself
//! offset 8   u64 seq      sequence number, 1-based
//! offset 16  [u8; len]    payload
//! ```
//!
//! Because the checksum covers `len` and `seq`, a torn or flipped header is
//! caught like a damaged payload. Beside the segments, `ack.ledger` holds
//! the seq through which everything was delivered (format in
//! [`ledger`]'s doc); it is replaced atomically (temp file, fsync, rename,
//! fsync of the directory). Files are created 0600.
//!
//! A payload that begins with a NUL byte is in the format of [`shared`]: a
//! definition of a shared part, or a record referring to parts. Both are
//! ordinary records to everything above (checksums, seqs, recovery,
//! acks); definitions are never handed out, and the depth and the
//! appended, acked and dropped counts are of events, definitions left
//! out.
//!
//! # Invariants
//!
//! - Seqs are assigned in append order, never reused, and are consecutive
//!   inside a segment; a segment's name is the seq of its first record.
//!   Across segments seqs only grow (they jump only past acked seqs lost
//!   with unsynced data).
//! - A record is published to the reader, and its `append` resolves, only
//!   after the write (and, with `durability = every_batch`, the
//!   `fdatasync`) covering it succeeded. A segment's name is made durable
//!   (directory fsync) before any record in it is reported durable.
//! - Every record with seq <= the ledger's value was delivered or dropped.
//!   The ledger lags the acks by design: [`Reader::ack`] writes it at most
//!   every [`ACK_PERSIST_EVERY`] (two fsyncs each time would otherwise cap
//!   sending at a few hundred batches a second), and the reader writes
//!   pending acks whenever it has nothing to read and on
//!   [`Reader::flush`]. A crash can therefore resend up to that much of
//!   what was already delivered, with the same ids and bytes, which the
//!   endpoint drops as copies; it never loses anything.
//!   Only segments lying wholly behind the ack point are deleted, never the
//!   last one. One of them at a time is kept as `segment.spare` instead,
//!   and the next segment is written over it: its name is a new segment's,
//!   its first record a time mark (see [`shared`]), and past the new
//!   records lie old ones, whose seqs (below the segment's name) tell them
//!   apart. The spare is not kept across restarts. The ledger is written first when it can be; a ledger older
//!   than the deletions only causes redelivery of records in the remaining
//!   segments, never a loss (and on a full disk, deleting first is what
//!   makes room for the ledger).
//! - The reader sees records in seq order; after a restart, unacked records
//!   come back with the same seq and bytes.
//!
//! # Writer and reader
//!
//! A dedicated writer thread does group commit (see [`writer`]'s doc):
//! concurrent appends are gathered, written with one vectored write and
//! synced once. The [`Reader`] reads published records from the segment
//! files, on the spot when the page cache holds them and on the blocking
//! pool otherwise, and acks in order; acks persist the ledger and delete
//! wholly acked segments.
//!
//! # Durability, and the checkpoint protocol
//!
//! With [`Durability::EveryBatch`] (the default) the future returned by
//! [`Queue::append`] resolves only once the records are on disk
//! (fdatasynced). **That resolution is the durability signal**: a source
//! may advance and persist its checkpoint (file offset, known state) for
//! the observations covered by an append only after that append returned
//! `Ok`. If it fails or the process dies first, the source re-reads from its
//! old checkpoint, and derived event ids make the repeat harmless.
//!
//! [`Durability::Interval`] trades safety for speed: appends resolve after
//! the write reaches the page cache, and the writer fsyncs at most the
//! given interval later. A process crash loses nothing, but a power cut or
//! kernel crash can lose up to that interval of events whose checkpoints
//! were already released. Use it only if that loss is acceptable.
//!
//! # Full queue
//!
//! `max_bytes` bounds the encoded bytes of unacked records. Disk use may
//! exceed it by the acked front of the oldest segment and by the spare,
//! which is why the segment size is capped at `max_bytes / 4`. A failed
//! write (a full disk, say) removes the spare first. When an append does not fit,
//! [`WhenFull::Block`] makes it wait for acks (sources pause; file tailing
//! simply stops reading), while [`WhenFull::DropOldest`] moves the ack point
//! past the oldest records as if they were delivered, counts them
//! ([`Queue::take_dropped`]) and logs `QueueEventsDropped`. A record already
//! handed to the reader may still be delivered after being counted as
//! dropped. One append larger than `max_bytes` is refused.
//!
//! # Recovery
//!
//! [`Queue::open`] scans every segment. A record is valid if its length
//! fits in the file, its checksum matches, and its seq follows the previous
//! one. After an invalid record, recovery searches forward byte by byte for
//! the next valid one (a seq bound derived from the damaged length rejects
//! nearly every false candidate cheaply); the records in between are
//! skipped and counted (`corrupt_skipped`). Bytes after the last valid
//! record of a segment are a torn tail and are truncated
//! (`truncated_bytes`); in a reused file, the old records there are cut
//! without being counted. A missing or corrupt ledger means redelivery from
//! the oldest segment, never a skip. Recovery does not fail, panic or loop
//! on any file content; it logs one `QueueRecovered` line and reports the
//! same counts in [`Recovery`] and [`QueueMetrics::recovery`]. Payloads are
//! assumed not to contain a whole valid record of this format with a
//! plausible seq (JSON cannot: it has no NUL bytes, and a reference to a
//! shared part is five bytes), which is the only way resynchronization
//! could be misled. A record whose shared part was lost to damage is
//! skipped and counted like a damaged one when it is read.
//!
//! # Age of the oldest record
//!
//! Wall-clock append times are kept in memory, one mark per second of
//! appends at most. After a restart, a segment's start stands in for the
//! append time of its records: its time mark when it reuses a file, else
//! its file's creation time (or its modification time where the file
//! system records no creation time).
//!
//! # Exclusive access
//!
//! The queue assumes one process owns the directory; the agent guarantees
//! it with the data_dir lock (`DataDir`). [`inspect()`] and
//! [`unacked_records`] only read and take no lock.

mod error;
mod inspect;
pub(crate) mod ledger;
mod reader;
mod record;
mod recovery;
mod segment;
pub mod shared;
mod state;
pub mod storage;
pub(crate) mod writer;

pub use error::QueueError;
pub use inspect::{Inspection, SegmentInfo, inspect, unacked_records};
pub use ledger::LedgerStatus;
pub use reader::{ACK_PERSIST_EVERY, Reader, Record};

use std::path::Path;

use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use state::{Core, Counters, Limits, lock};
use storage::{FsStorage, Storage};
use writer::{AppendReq, Msg, Writer};

const MIB: u64 = 1024 * 1024;

/// What to do when an append does not fit under `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Appends wait until acks free room (sources pause). Nothing is lost.
    #[default]
    Block,
    /// The oldest unacked records are dropped to make room, and counted.
    DropOldest,
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every group of appends is fdatasynced before any of them resolves.
    #[default]
    EveryBatch,
    /// Appends resolve once written; a sync follows within this interval.
    /// A power cut can lose up to this much acknowledged data.
    Interval(Duration),
}

/// The queue's settings (the `[queue]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Cap on unacked bytes (encoded records). Default 256 MiB, minimum 1 MiB.
    pub max_bytes: u64,
    /// Segment rollover size. Default 64 MiB; at most `max_bytes / 4` is
    /// used, so deleting acked segments keeps disk use near `max_bytes`.
    pub segment_bytes: u64,
    /// Policy when full. Default `block`.
    pub when_full: WhenFull,
    /// When appends are durable. Default `every_batch`.
    pub durability: Durability,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: 256 * MIB,
            segment_bytes: 64 * MIB,
            when_full: WhenFull::Block,
            durability: Durability::EveryBatch,
        }
    }
}

impl QueueConfig {
    /// The smallest accepted `max_bytes`.
    pub const MIN_MAX_BYTES: u64 = MIB;
    /// The smallest accepted `segment_bytes`.
    pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

    /// Checks the settings.
    ///
    /// # Errors
    /// [`QueueError::Config`] naming the offending setting.
    pub fn validate(&self) -> Result<(), QueueError> {
        if self.max_bytes < Self::MIN_MAX_BYTES {
            return Err(QueueError::Config(format!(
                "max_bytes must be at least {} (1 MiB), got {}",
                Self::MIN_MAX_BYTES,
                self.max_bytes
            )));
        }
        if self.segment_bytes < Self::MIN_SEGMENT_BYTES {
            return Err(QueueError::Config(format!(
                "segment_bytes must be at least {} (64 KiB), got {}",
                Self::MIN_SEGMENT_BYTES,
                self.segment_bytes
            )));
        }
        if let Durability::Interval(d) = self.durability
            && d.is_zero()
        {
            return Err(QueueError::Config(
                "durability interval must be above zero (use every_batch to sync every batch)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes.min(self.max_bytes / 4),
            when_full: self.when_full,
            sync_interval: match self.durability {
                Durability::EveryBatch => None,
                Durability::Interval(d) => Some(d),
            },
        }
    }
}

/// The seqs an append was given (`first_seq > last_seq` for an empty one).
/// Records the queue writes itself (definitions of shared parts, a
/// segment's time mark) may take seqs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the first record appended.
    pub first_seq: u64,
    /// Seq of the last record appended.
    pub last_seq: u64,
}

/// What recovery found and did when the queue was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Segments kept.
    pub segments: usize,
    /// Unacked records found, to be delivered.
    pub records: u64,
    /// Bytes of torn tails cut off.
    pub truncated_bytes: u64,
    /// Damaged records skipped (and lost).
    pub corrupt_skipped: u64,
    /// The ledger's ack point (0 when missing or corrupt).
    pub acked_through: u64,
    /// What was found where the ledger should be.
    pub ledger: LedgerStatus,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            segments: 0,
            records: 0,
            truncated_bytes: 0,
            corrupt_skipped: 0,
            acked_through: 0,
            ledger: LedgerStatus::Missing,
        }
    }
}

/// A snapshot of the queue's gauges and counters, for `/metrics` and
/// `herald status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMetrics {
    /// Unacked records.
    pub depth_events: u64,
    /// Unacked bytes (encoded records).
    pub depth_bytes: u64,
    /// How long ago the oldest unacked record was appended.
    pub oldest_unacked_age: Option<Duration>,
    /// The ack point: every seq up to it is delivered or dropped.
    pub acked_through: u64,
    /// Segment files.
    pub segments: usize,
    /// Bytes in segment files, acked front included, and in the spare file
    /// kept for the next segment to reuse.
    pub disk_bytes: u64,
    /// Appends waiting for room (`when_full = block`); non-zero means
    /// sources are paused.
    pub blocked_appends: u64,
    /// Records appended since open.
    pub appended_total: u64,
    /// Records acked since open.
    pub acked_total: u64,
    /// Records dropped by `drop_oldest` since open.
    pub dropped_total: u64,
    /// Damaged records skipped since open, recovery's included.
    pub corrupt_skipped_total: u64,
    /// fdatasyncs of segments since open.
    pub syncs_total: u64,
    /// What recovery did at open.
    pub recovery: Recovery,
}

struct Inner {
    core: Arc<Core>,
    tx: Sender<Msg>,
}

/// A handle to an open queue. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.core.dir)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir` (`<data_dir>/queue`),
    /// recovering what is there, and starts its writer thread.
    ///
    /// # Errors
    /// Invalid config, or the directory cannot be created or listed. Queue
    /// content never makes this fail.
    pub fn open(dir: &Path, config: QueueConfig) -> Result<(Queue, Recovery), QueueError> {
        Queue::open_with_storage(dir, config, Arc::new(FsStorage))
    }

    /// [`Queue::open`] on another storage backend (tests use
    /// [`storage::MemStorage`] to cut the power).
    ///
    /// # Errors
    /// As [`Queue::open`].
    pub fn open_with_storage(
        dir: &Path,
        config: QueueConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<(Queue, Recovery), QueueError> {
        config.validate()?;
        let limits = config.limits();
        let rec = recovery::recover(&*storage, dir, limits.segment_bytes)?;
        let core = Arc::new(Core {
            dir: dir.to_path_buf(),
            storage,
            limits,
            maintenance: Mutex::new(rec.shared.head_seq),
            shared: Mutex::new(rec.shared),
            space: Condvar::new(),
            data: tokio::sync::Notify::new(),
            counters: Counters::default(),
            reader_taken: Default::default(),
            recovery: rec.recovery,
            busy: Default::default(),
        });
        Counters::add(&core.counters.corrupt_skipped, rec.recovery.corrupt_skipped);
        // Segments wholly acked before the restart go now.
        if let Err(e) = core.persist_and_trim() {
            tracing::warn!(error = %e, "QueueLedgerWriteFailed");
        }
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(core.clone(), rx, rec.active, rec.next_seq);
        std::thread::Builder::new()
            .name("herald-queue-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| QueueError::io("spawn writer thread", dir, e))?;
        let queue = Queue {
            inner: Arc::new(Inner { core, tx }),
        };
        Ok((queue, rec.recovery))
    }

    /// Appends `records` (each the payload of one record) with consecutive
    /// seqs, and resolves once they are durable (see the module doc for
    /// `durability` and the checkpoint protocol). Dropping the future does
    /// not cancel the append; it only loses the answer.
    ///
    /// # Errors
    /// I/O failure (e.g. `ENOSPC`; the queue is left intact and later
    /// appends may succeed), [`QueueError::BatchTooLarge`],
    /// [`QueueError::RecordTooLarge`], or [`QueueError::Closed`].
    pub async fn append<R: Into<Bytes>>(&self, records: Vec<R>) -> Result<Appended, QueueError> {
        // `Vec<u8>` and `Bytes` convert without copying; callers that must
        // retry a failed append keep cheap `Bytes` clones.
        let records: Vec<Bytes> = records.into_iter().map(Into::into).collect();
        let mut bytes = 0;
        for r in &records {
            if r.len() > record::MAX_PAYLOAD_LEN {
                return Err(QueueError::RecordTooLarge { len: r.len() });
            }
            if shared::reserved(r) {
                return Err(QueueError::ReservedPayload);
            }
            bytes += record::encoded_len(r.len());
        }
        let core = &self.inner.core;
        if bytes > core.limits.max_bytes {
            return Err(QueueError::BatchTooLarge {
                bytes,
                max_bytes: core.limits.max_bytes,
            });
        }
        if lock(&core.shared).closing {
            return Err(QueueError::Closed);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(Msg::Append(AppendReq {
                records,
                bytes,
                reply,
            }))
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// The queue's reader.
    ///
    /// # Errors
    /// [`QueueError::ReaderTaken`] while another reader exists.
    pub fn reader(&self) -> Result<Reader, QueueError> {
        let core = &self.inner.core;
        if core.reader_taken.swap(true, Ordering::AcqRel) {
            return Err(QueueError::ReaderTaken);
        }
        Ok(Reader::new(core.clone()))
    }

    /// How long the writer has been in one write or sync, if it is in
    /// one: a disk that does not answer shows here (see `liveness`).
    pub fn writer_busy_for(&self) -> Option<std::time::Duration> {
        self.inner.core.busy.busy_for()
    }

    /// A snapshot of the queue's gauges and counters.
    pub fn metrics(&self) -> QueueMetrics {
        self.inner.core.metrics()
    }

    /// Records dropped by `drop_oldest` since the last call (for the
    /// agent's `herald.agent.events-dropped` event).
    pub fn take_dropped(&self) -> u64 {
        self.inner
            .core
            .counters
            .dropped_unreported
            .swap(0, Ordering::Relaxed)
    }

    /// Writes and syncs everything appended so far and stops the writer.
    /// Appends still waiting for room fail with [`QueueError::Closed`], as
    /// does any append after this, from any clone. The reader can still
    /// drain what was published; then it gets empty batches.
    ///
    /// # Errors
    /// The final sync failed.
    pub async fn close(self) -> Result<(), QueueError> {
        let core = &self.inner.core;
        lock(&core.shared).closing = true;
        core.space.notify_all();
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.inner.tx.send(Msg::Close(reply)).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }
}
