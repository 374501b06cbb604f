//! The reader: hands out records in seq order and moves the ack point.
//!
//! It reads only what the writer has published, straight from the segment
//! files (the page cache makes fresh data cheap), on the blocking pool.
//! Each batch is read with one positional read into one buffer, and the
//! records' payloads are slices of it, so a payload is copied once from the
//! kernel and never again. The read is sized for `max_events` records of
//! the size seen lately, not for `max_bytes`: the batch's records keep the
//! whole buffer alive until they are acked, and a read of 1 MiB for 200 KiB
//! of records costs memory and copying for nothing. A short guess only
//! makes a smaller batch. `next_batch` is safe to cancel: its state
//! changes happen after its last `.await`, except that a read already
//! running is kept, and the next call takes up its result (handing out
//! what exceeds its own limits later). The buffers a read fills come from
//! the reader's spares, reused once the records cut from them are gone
//! (see [`Buffers`]).
//!
//! Records with references to shared parts (see [`super::shared`]) are put
//! back together here, from the definitions met earlier in the segment, so
//! the payloads handed out are whole. They are put back one after the
//! other as a JSON array (`[a,b,c]`), so a batch that is one read's records
//! is also the body an HTTP sink posts ([`Reader::body_of`]). A reader that
//! starts in the middle of a segment (after a restart, or after the head
//! moved) first collects the definitions before that point.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::QueueError;
use super::record::{self, Decoded, HEADER_LEN};
use super::segment::{self, Window};
use super::shared::{self, PartMap, Unresolved};
use super::state::{Core, Counters, lock};
use super::storage::ReadFile;

/// The most one batch reads at once, whatever `max_bytes` asks for.
const READ_CAP: u64 = 32 * 1024 * 1024;

/// How often, at most, acks are written to the ledger while records keep
/// coming. Writing it costs two fsyncs; doing that per batch would cap
/// sending at a few hundred batches a second. An ack not yet written is
/// only a redelivery risk after a crash (the ids make it harmless), and the
/// reader writes pending acks as soon as it has nothing to read.
pub const ACK_PERSIST_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// One record handed to the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number, stable across restarts.
    pub seq: u64,
    /// The bytes that were appended.
    pub payload: Bytes,
}

/// The queue's single consumer. Dropping it lets [`super::Queue::reader`]
/// hand out a new one, which starts again at the ack point.
pub struct Reader {
    core: Arc<Core>,
    /// Logical position of the next byte to read.
    pos: u64,
    /// Seq of the record before `pos`, to check the order of what follows.
    prev_seq: u64,
    /// Highest seq handed out; `ack` may not go beyond it.
    last_read: u64,
    /// Records handed out and not yet acked: seq and end position, so an
    /// ack knows how far the head moves in bytes.
    in_flight: VecDeque<(u64, u64, bool)>,
    /// The segment file last read, kept open across batches.
    file: Option<(u64, Arc<dyn ReadFile>)>,
    /// Acks made in memory but not yet written to the ledger.
    unpersisted: bool,
    /// When the ledger was last written.
    persisted_at: std::time::Instant,
    /// Encoded bytes per record in recent reads (0 until known), so a
    /// batch of `max_events` small records does not read (and allocate)
    /// up to `max_bytes` only to use a fraction of it.
    avg_record: u64,
    /// The shared parts defined in the segment being read, up to where
    /// it was read; `None` while a read is in flight.
    parts: Option<Parts>,
    /// A read started by a `next_batch` that was dropped before it ended:
    /// the next call takes its result rather than reading (and collecting
    /// the segment's shared parts) again.
    reading: Option<Reading>,
    /// Records read (by a read started for larger limits) and not yet
    /// handed out; they come first.
    ahead: VecDeque<Record>,
    /// The last batch read as one JSON array, for [`Reader::body_of`].
    body: Option<Body>,
    /// Buffers of earlier reads, reused once their records are gone;
    /// let go of when there is nothing to read.
    spare: Vec<BytesMut>,
}

/// A batch's payloads as one JSON array: how the reader lays out the
/// events it puts back together, so that the array costs no copy.
struct Body {
    first: u64,
    last: u64,
    len: usize,
    json: Bytes,
}

/// How a read was started. Taken apart as soon as it is returned, never
/// kept, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Started {
    /// Done on the spot: its bytes were in memory.
    Done(io::Result<Read>),
    /// Running on the blocking pool.
    Task(tokio::task::JoinHandle<io::Result<Read>>),
}

/// A read running on the blocking pool.
struct Reading {
    plan: Plan,
    task: tokio::task::JoinHandle<io::Result<Read>>,
}

/// What a read gives back: the file (kept open for the next read), the
/// records and the segment's shared parts up to their end.
type Read = (Arc<dyn ReadFile>, Chunk, Parts, Buffers);

/// The shared parts a segment defines before an offset.
#[derive(Default)]
struct Parts {
    first_seq: u64,
    upto: u64,
    map: PartMap,
}

struct Plan {
    first_seq: u64,
    path: PathBuf,
    base: u64,
    offset: u64,
    /// Readable bytes end here: the segment's end or the next known damage.
    limit: u64,
    seg_len: u64,
    prev_seq: u64,
}

enum Step {
    Read(Plan),
    Wait,
    Closed,
    Moved,
}

enum Chunk {
    Records {
        bytes: Bytes,
        /// Payloads put back together from shared parts.
        expanded: Bytes,
        /// Seq, what it holds, end offset in the segment.
        recs: Vec<(u64, Held, u64)>,
    },
    /// Damage the writer did not leave (the disk changed under us):
    /// resume at this offset (or the segment's end), having lost records.
    Damaged { resume: Option<u64>, lost: u64 },
}

/// What a record read holds.
enum Held {
    /// A payload: this range of the bytes read.
    Plain(Range<usize>),
    /// A payload: this range of the expanded bytes.
    Expanded(Range<usize>),
    /// A shared part's definition, nothing to hand out.
    Definition,
    /// A record whose shared parts are unknown: reported and skipped.
    Unresolved(Unresolved),
}

impl Reader {
    pub(crate) fn new(core: Arc<Core>) -> Reader {
        let (pos, seq) = {
            let s = lock(&core.shared);
            (s.head_pos, s.head_seq)
        };
        Reader {
            core,
            pos,
            prev_seq: seq,
            last_read: seq,
            in_flight: VecDeque::new(),
            file: None,
            unpersisted: false,
            persisted_at: std::time::Instant::now(),
            avg_record: 0,
            parts: None,
            reading: None,
            ahead: VecDeque::new(),
            body: None,
            spare: Vec::new(),
        }
    }

    /// Waits until at least one unread record exists and returns up to
    /// `max_events` records whose payloads total at most `max_bytes` (at
    /// least one record, however large). Returns an empty batch once the
    /// queue is closed and everything published has been read.
    ///
    /// Cancellation-safe: if the future is dropped, no record is lost or
    /// skipped; the next call returns the same records.
    ///
    /// # Errors
    /// A segment could not be read.
    pub async fn next_batch(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, QueueError> {
        let max_events = max_events.max(1);
        if !self.ahead.is_empty() {
            return Ok(self.hand_out(Vec::new(), max_events, max_bytes));
        }
        let core = self.core.clone();
        loop {
            let (plan, joined) = if let Some(reading) = self.reading.as_mut() {
                // Awaited in place: if this future is dropped here, the
                // read stays in `self.reading` for the next call.
                let joined = (&mut reading.task).await;
                let Some(Reading { plan, .. }) = self.reading.take() else {
                    continue;
                };
                (plan, joined)
            } else {
                let notified = core.data.notified();
                tokio::pin!(notified);
                // Registered before looking at the state, so a publish
                // between the look and the await still wakes us.
                notified.as_mut().enable();
                let plan = match self.plan() {
                    Step::Read(plan) => plan,
                    Step::Moved => continue,
                    Step::Wait => {
                        self.spare.clear();
                        // Idle: a good moment to write pending acks. A
                        // record published meanwhile still wakes the wait
                        // below, as it was registered before the look.
                        if self.unpersisted
                            && let Err(e) = self.flush().await
                        {
                            tracing::warn!(error = %e, "QueueLedgerWriteFailed");
                        }
                        notified.await;
                        continue;
                    }
                    Step::Closed => {
                        self.flush().await?;
                        return Ok(Vec::new());
                    }
                };
                match self.start_read(&plan, max_events, max_bytes) {
                    Started::Done(read) => (plan, Ok(read)),
                    Started::Task(task) => {
                        self.reading = Some(Reading { plan, task });
                        continue;
                    }
                }
            };
            let (file, chunk, parts, buffers) = match joined {
                Ok(Ok(done)) => done,
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                    self.file = None;
                    self.segment_vanished(&plan);
                    continue;
                }
                Ok(Err(e)) => return Err(QueueError::io("read segment", &plan.path, e)),
                Err(e) => {
                    return Err(QueueError::io(
                        "read segment",
                        &plan.path,
                        io::Error::other(e),
                    ));
                }
            };
            self.file = Some((plan.first_seq, file));
            self.parts = Some(parts);
            buffers.give_back(&mut self.spare);
            match chunk {
                Chunk::Records {
                    bytes,
                    expanded,
                    recs,
                } => {
                    if let Some(&(_, _, end)) = recs.last() {
                        let avg = (end - plan.offset) / recs.len() as u64;
                        self.avg_record = (self.avg_record * 3 + avg).div_ceil(4);
                    }
                    let batch = self.take(&plan, &bytes, &expanded, recs);
                    if !batch.is_empty() {
                        return Ok(self.hand_out(batch, max_events, max_bytes));
                    }
                }
                Chunk::Damaged { resume, lost } => {
                    let resume = resume.unwrap_or(plan.seg_len);
                    tracing::error!(
                        path = %plan.path.display(), offset = plan.offset,
                        bytes = resume - plan.offset, records = lost,
                        "QueueCorruptRecordSkipped"
                    );
                    Counters::add(&self.core.counters.corrupt_skipped, lost);
                    self.pos = plan.base + resume;
                }
            }
        }
    }

    /// Reads what `plan` names: up to `max_events` records of at most
    /// `max_bytes`, sized by the records seen lately. On the spot when the
    /// segment is open, its shared parts are known and the bytes are in
    /// the page cache (the usual case: the sender reads what was written
    /// moments ago); otherwise on the blocking pool, so that a read that
    /// waits for the disk never holds up the async worker.
    fn start_read(&mut self, plan: &Plan, max_events: usize, max_bytes: usize) -> Started {
        let cached = self
            .file
            .as_ref()
            .filter(|(seq, _)| *seq == plan.first_seq)
            .map(|(_, f)| f.clone());
        let storage = self.core.storage.clone();
        let path = plan.path.clone();
        let (offset, limit, seg_len, prev) = (plan.offset, plan.limit, plan.seg_len, plan.prev_seq);
        let first_seq = plan.first_seq;
        let parts = self
            .parts
            .take()
            .filter(|p| p.first_seq == first_seq && p.upto == offset);
        // What `max_events` records of the usual size take, with a
        // margin; a short read only makes a smaller batch.
        let expect = match self.avg_record {
            0 => u64::MAX,
            avg => (max_events as u64).saturating_mul(avg + avg / 4),
        };
        let want = read_len(offset, limit, max_events, max_bytes, expect);
        let mut buffers = Buffers::for_read(want, &mut self.spare);
        let in_memory = parts.is_some()
            && cached
                .as_ref()
                .is_some_and(|file| file.is_cached(offset, want));
        let read = move || {
            let file = match cached {
                Some(file) => file,
                None => storage.open_read(&path)?,
            };
            let mut parts = match parts {
                Some(parts) => parts,
                None => collect_parts(&*file, first_seq, offset),
            };
            let chunk = read_chunk(
                &*file,
                offset,
                limit,
                seg_len,
                max_events,
                max_bytes,
                prev,
                expect,
                &mut parts,
                &mut buffers,
            )?;
            Ok((file, chunk, parts, buffers))
        };
        if in_memory {
            Started::Done(read())
        } else {
            Started::Task(tokio::task::spawn_blocking(read))
        }
    }

    /// Up to `max_events` records of at most `max_bytes` (at least one)
    /// from what is ahead and then `batch`; the rest waits in `ahead`.
    fn hand_out(&mut self, batch: Vec<Record>, max_events: usize, max_bytes: usize) -> Vec<Record> {
        if self.ahead.is_empty() && batch.len() <= max_events {
            let bytes: usize = batch.iter().map(|r| r.payload.len()).sum();
            if bytes <= max_bytes {
                return batch;
            }
        }
        self.body = None;
        self.ahead.extend(batch);
        let mut bytes = 0;
        let take = self
            .ahead
            .iter()
            .take(max_events)
            .take_while(|r| {
                bytes += r.payload.len();
                bytes <= max_bytes
            })
            .count()
            .max(1);
        self.ahead.drain(..take).collect()
    }

    /// Decides what to read next, catching up with the head if acks or
    /// drops moved it past us.
    fn plan(&mut self) -> Step {
        let s = lock(&self.core.shared);
        if self.pos < s.head_pos {
            self.pos = s.head_pos;
        }
        let prev_seq = self.prev_seq.max(s.head_seq);
        let Some(seg) = s.segments.iter().find(|seg| seg.end() > self.pos) else {
            return if s.closed { Step::Closed } else { Step::Wait };
        };
        if self.pos < seg.base {
            self.pos = seg.base;
        }
        let offset = self.pos - seg.base;
        if let Some(&(_, end)) = seg.skips.iter().find(|&&(s, e)| s <= offset && offset < e) {
            self.pos = seg.base + end;
            return Step::Moved;
        }
        let limit = seg
            .skips
            .iter()
            .map(|&(s, _)| s)
            .filter(|&s| s > offset)
            .min()
            .unwrap_or(seg.len);
        Step::Read(Plan {
            first_seq: seg.first_seq,
            path: seg.path.clone(),
            base: seg.base,
            offset,
            limit,
            seg_len: seg.len,
            prev_seq,
        })
    }

    /// Turns decoded records into the batch, leaving out any the writer
    /// dropped meanwhile.
    fn take(
        &mut self,
        plan: &Plan,
        bytes: &Bytes,
        expanded: &Bytes,
        recs: Vec<(u64, Held, u64)>,
    ) -> Vec<Record> {
        let head_seq = lock(&self.core.shared).head_seq;
        let mut batch = Vec::with_capacity(recs.len());
        // The span of `expanded` the batch's payloads fill, while they
        // follow each other there; `None` once one does not.
        let mut span: Option<Option<Range<usize>>> = None;
        for (seq, held, end) in recs {
            self.pos = plan.base + end;
            self.prev_seq = seq;
            if seq <= head_seq {
                continue;
            }
            let event = !matches!(held, Held::Definition);
            self.in_flight.push_back((seq, plan.base + end, event));
            self.last_read = seq;
            let payload = match held {
                Held::Plain(range) => {
                    span = Some(None);
                    bytes.slice(range)
                }
                Held::Expanded(range) => {
                    span = match span {
                        None => Some(Some(range.clone())),
                        Some(Some(so_far)) if so_far.end + 1 == range.start => {
                            Some(Some(so_far.start..range.end))
                        }
                        Some(_) => Some(None),
                    };
                    expanded.slice(range)
                }
                Held::Definition => continue,
                Held::Unresolved(why) => {
                    tracing::error!(
                        path = %plan.path.display(), seq, why = ?why,
                        "QueueCorruptRecordSkipped: a shared part it uses was not found"
                    );
                    Counters::add(&self.core.counters.corrupt_skipped, 1);
                    continue;
                }
            };
            batch.push(Record { seq, payload });
        }
        self.body = match (span.flatten(), batch.first(), batch.last()) {
            // The brackets written around a chunk's payloads are there
            // only if the batch is the whole chunk.
            (Some(span), Some(first), Some(last))
                if span.start > 0
                    && expanded.get(span.start - 1) == Some(&b'[')
                    && expanded.get(span.end) == Some(&b']') =>
            {
                Some(Body {
                    first: first.seq,
                    last: last.seq,
                    len: batch.len(),
                    json: expanded.slice(span.start - 1..span.end + 1),
                })
            }
            _ => None,
        };
        batch
    }

    /// The batch as a JSON array (`[` + payloads joined by `,` + `]`),
    /// when it is exactly what the last read put back together: those
    /// bytes were laid out that way, so a sink can send them without
    /// joining the payloads again. `None` for any other batch.
    pub fn body_of(&self, batch: &[Record]) -> Option<Bytes> {
        let body = self.body.as_ref()?;
        let (first, last) = (batch.first()?, batch.last()?);
        (first.seq == body.first && last.seq == body.last && batch.len() == body.len)
            .then(|| body.json.clone())
    }

    /// The segment file is gone. If the head moved past it, that was
    /// maintenance and the next plan skips it; if not, something outside
    /// the queue removed it, and its records are lost.
    fn segment_vanished(&mut self, plan: &Plan) {
        let s = lock(&self.core.shared);
        if s.head_pos >= plan.base + plan.seg_len {
            return;
        }
        let next_first = s
            .segments
            .iter()
            .find(|seg| seg.base > plan.base)
            .map(|seg| seg.first_seq);
        let lost = next_first.map_or(1, |n| n.saturating_sub(plan.prev_seq + 1).max(1));
        tracing::error!(path = %plan.path.display(), records = lost, "QueueSegmentMissing");
        Counters::add(&self.core.counters.corrupt_skipped, lost);
        self.pos = plan.base + plan.seg_len;
    }

    /// Marks every record with seq <= `up_to` as delivered: persists the
    /// ledger, frees room for blocked appends and deletes wholly acked
    /// segments. Acking a seq at or below the ack point does nothing.
    ///
    /// # Errors
    /// [`QueueError::AckBeyondRead`] if `up_to` was never handed out; an I/O
    /// error if the ledger could not be written (the ack still counts in
    /// memory, so only a restart before the next successful ack would
    /// redeliver those records).
    pub async fn ack(&mut self, up_to: u64) -> Result<(), QueueError> {
        if up_to > self.last_read {
            return Err(QueueError::AckBeyondRead {
                up_to,
                last_read: self.last_read,
            });
        }
        let n = self.in_flight.partition_point(|&(seq, _, _)| seq <= up_to);
        let passed: Vec<(u64, u64, bool)> = self.in_flight.drain(..n).collect();
        let (events, room) = {
            let mut s = lock(&self.core.shared);
            let events = s.advance(&passed, up_to);
            // A full queue's writer waits for a whole group's room: waking
            // it at every ack before that would only put it back to sleep.
            let room =
                s.room_wanted > 0 && s.depth_bytes() + s.room_wanted <= self.core.limits.max_bytes;
            (events, room)
        };
        Counters::add(&self.core.counters.acked, events);
        if room {
            self.core.space.notify_all();
        }
        self.unpersisted = true;
        if self.persisted_at.elapsed() >= ACK_PERSIST_EVERY {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes acks made so far to the ledger (and deletes wholly acked
    /// segments). `ack` does this at most every [`ACK_PERSIST_EVERY`], and
    /// `next_batch` whenever it would wait; call it before letting go of
    /// the reader.
    ///
    /// # Errors
    /// The ledger could not be written; the acks still count in memory.
    pub async fn flush(&mut self) -> Result<(), QueueError> {
        if !self.unpersisted {
            return Ok(());
        }
        self.persisted_at = std::time::Instant::now();
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.persist_and_trim())
            .await
            .map_err(|e| QueueError::io("persist ledger", &self.core.dir, io::Error::other(e)))??;
        self.unpersisted = false;
        Ok(())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.core.reader_taken.store(false, Ordering::Release);
    }
}

/// Reads `len` bytes at `offset` into `buf` (its room, reused) and splits
/// them off. The buffer goes through a `Vec`, which takes no copy when
/// nothing else holds it (it was reclaimed, or is new), so that the read
/// fills it without zeroing it first.
fn read_into(file: &dyn ReadFile, offset: u64, len: u64, buf: &mut BytesMut) -> io::Result<Bytes> {
    let room = Vec::from(std::mem::take(buf));
    let read = Bytes::from(file.read_vec_at(offset, len as usize, room)?);
    match read.try_into_mut() {
        Ok(mut filled) => {
            let bytes = filled.split().freeze();
            *buf = filled;
            Ok(bytes)
        }
        Err(read) => Ok(read),
    }
}

/// The buffers one read fills, taken by the async side from the reader's
/// spares: memory a batch used comes back for a later one once the batch
/// is gone (no fresh pages to fault in for every read), and the blocking
/// pool's threads allocate next to nothing, so they do not each grow an
/// allocator arena of their own.
struct Buffers {
    read: BytesMut,
    expanded: BytesMut,
}

/// Spare buffers kept for reuse while records keep coming.
const SPARE_BUFFERS: usize = 6;

impl Buffers {
    /// Room for a read of `want` bytes and the events put back from it
    /// (about 2.5 times their records for log lines), from `spare` where
    /// one is free again.
    fn for_read(want: u64, spare: &mut Vec<BytesMut>) -> Buffers {
        let want = usize::try_from(want).unwrap_or(0);
        // Sizes rounded up, so that a read a little larger than the last
        // still fits in its buffer.
        let mut take = |room: usize| {
            let room = room.next_multiple_of(64 * 1024);
            match spare.iter_mut().position(|b| b.try_reclaim(room)) {
                Some(i) => spare.swap_remove(i),
                None => BytesMut::with_capacity(room),
            }
        };
        // The larger first, so that it does not go to the smaller.
        let expanded = take(want.saturating_mul(5) / 2);
        let read = take(want);
        Buffers { read, expanded }
    }

    /// Keeps the buffers' allocations for later reads (they are reused
    /// once the records cut from them are dropped); the oldest spares,
    /// perhaps sized for other reads, make room.
    fn give_back(self, spare: &mut Vec<BytesMut>) {
        spare.extend([self.read, self.expanded]);
        if spare.len() > SPARE_BUFFERS {
            spare.drain(..spare.len() - SPARE_BUFFERS);
        }
    }
}

/// How many bytes a read at `offset` takes: enough for `max_events`
/// records of at most `max_bytes`, no more than about `expect`, never past
/// `limit`.
fn read_len(offset: u64, limit: u64, max_events: usize, max_bytes: usize, expect: u64) -> u64 {
    (max_bytes as u64)
        .saturating_add((max_events as u64).saturating_mul(HEADER_LEN as u64))
        .min(expect)
        .clamp(HEADER_LEN as u64, READ_CAP)
        .min(limit - offset)
}

/// Reads records from `offset` up to `limit` (blocking), at most about
/// `expect` bytes unless the first record needs more.
#[allow(clippy::too_many_arguments)]
fn read_chunk(
    file: &dyn ReadFile,
    offset: u64,
    limit: u64,
    seg_len: u64,
    max_events: usize,
    max_bytes: usize,
    prev_seq: u64,
    expect: u64,
    parts: &mut Parts,
    buffers: &mut Buffers,
) -> io::Result<Chunk> {
    let avail = limit - offset;
    let want = read_len(offset, limit, max_events, max_bytes, expect);
    let mut bytes = read_into(file, offset, want, &mut buffers.read)?;
    let mut recs = Vec::new();
    let expanded = &mut buffers.expanded;
    let (mut pos, mut total, mut prev, mut events) = (0, 0, prev_seq, 0);
    while events < max_events {
        match record::decode(&bytes, pos) {
            Decoded::Record { seq, payload, end } if seq > prev => {
                let raw = &bytes[payload.clone()];
                let (held, len) = if shared::learn(&mut parts.map, raw) {
                    (Held::Definition, 0)
                } else if shared::has_refs(raw) {
                    if expanded.capacity() == 0 {
                        // Whole events are about 2.5 times their records
                        // (log lines); one allocation for the chunk.
                        expanded.reserve(bytes.len() * 5 / 2);
                    }
                    // Laid out as a JSON array (`[a,b,c]`, see `Body`).
                    let from = expanded.len();
                    expanded.put_u8(if from == 0 { b'[' } else { b',' });
                    let start = expanded.len();
                    match shared::expand(raw, &parts.map, expanded) {
                        Ok(()) => (
                            Held::Expanded(start..expanded.len()),
                            expanded.len() - start,
                        ),
                        Err(why) => {
                            expanded.truncate(from);
                            (Held::Unresolved(why), 0)
                        }
                    }
                } else {
                    (Held::Plain(payload), raw.len())
                };
                if events > 0 && total + len > max_bytes {
                    if let Held::Expanded(range) = held {
                        // With its separator.
                        expanded.truncate(range.start - 1);
                    }
                    break;
                }
                if matches!(held, Held::Plain(_) | Held::Expanded(_)) {
                    events += 1;
                }
                total += len;
                prev = seq;
                recs.push((seq, held, offset + end as u64));
                parts.upto = offset + end as u64;
                pos = end;
            }
            Decoded::Incomplete { needed } if recs.is_empty() && needed as u64 <= avail => {
                // The first record is larger than what we read: read it whole.
                bytes = read_into(file, offset, needed as u64, &mut buffers.read)?;
            }
            _ if !recs.is_empty() => break,
            _ => return damaged(file, offset, seg_len, prev_seq),
        }
    }
    let expanded = if expanded.is_empty() {
        Bytes::new()
    } else {
        expanded.put_u8(b']');
        expanded.split().freeze()
    };
    Ok(Chunk::Records {
        bytes,
        expanded,
        recs,
    })
}

/// The shared parts a segment defines before `offset` (blocking): what a
/// reader starting there needs. Damage is skipped as recovery skips it; a
/// definition lost to it shows as an unresolved record later.
fn collect_parts(file: &dyn ReadFile, first_seq: u64, offset: u64) -> Parts {
    let mut parts = Parts {
        first_seq,
        upto: offset,
        map: PartMap::default(),
    };
    if offset > 0 {
        segment::scan(file, offset, first_seq, 0, |found| {
            shared::learn(&mut parts.map, found.payload);
            true
        });
    }
    parts
}

fn damaged(file: &dyn ReadFile, offset: u64, seg_len: u64, prev_seq: u64) -> io::Result<Chunk> {
    let mut win = Window::new(file, seg_len);
    // Within the published length: no stale records to look for.
    let resume =
        segment::resync(&mut win, offset + 1, seg_len, prev_seq, offset, 0)?.and_then(|next| {
            match next {
                segment::Next::Record(at) => Some(at),
                segment::Next::Stale(_) => None,
            }
        });
    let lost = match resume {
        Some(at) => match win.get(at, HEADER_LEN)? {
            Some(h) => record::split_header(h)
                .2
                .saturating_sub(prev_seq + 1)
                .max(1),
            None => 1,
        },
        None => 1,
    };
    Ok(Chunk::Damaged { resume, lost })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_comes_back_once_its_records_are_gone() {
        let mut spare = Vec::new();
        let mut first = Buffers::for_read(100_000, &mut spare);
        first.read.resize(100_000, 1);
        let at = first.read.as_ptr() as usize;
        let records = first.read.split().freeze();
        first.give_back(&mut spare);
        let uses = |b: &Buffers| [b.read.as_ptr() as usize, b.expanded.as_ptr() as usize];
        // Its records are still out: that memory is not handed out again.
        let second = Buffers::for_read(100_000, &mut spare);
        assert!(!uses(&second).contains(&at));
        second.give_back(&mut spare);
        drop(records);
        let third = Buffers::for_read(100_000, &mut spare);
        assert!(
            uses(&third).contains(&at),
            "reused once the records are gone"
        );
        assert!(third.read.capacity() >= 100_000 && third.expanded.capacity() >= 250_000);
        third.give_back(&mut spare);
        assert!(spare.len() <= SPARE_BUFFERS);
    }
}
