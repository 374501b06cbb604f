//! The writer thread: group commit, segment rollover, the full-queue
//! policy, and turning failed writes back into a clean tail.
//!
//! One dedicated OS thread owns the active segment. It takes the first
//! waiting append, gathers every other append already queued behind it,
//! writes them with one vectored write (each record's header, then its
//! payload where the caller left it: events are not copied) and syncs
//! once, then publishes the records to the reader and answers every
//! caller. While it syncs, new appends queue up and form the next group,
//! so throughput grows with concurrency instead of paying one `fdatasync`
//! per append.
//!
//! It also writes the definitions of shared parts (see [`super::shared`]):
//! before the first record of a segment that refers to a part, in the same
//! write, as a record of its own; and the time mark of a segment that
//! reuses a file, as its first record.
//!
//! A new segment reuses the file of an acked one when there is a spare
//! (see [`super::state::Core::persist_and_trim`]): it writes over the old
//! records instead of growing a new file, so the file system neither
//! allocates blocks nor updates the file's size for each `fdatasync`, and
//! deleting the acked segment frees no page cache. Recovery tells the old
//! records from new ones by their seqs ([`segment::scan`]).

use std::collections::{HashSet, VecDeque};
use std::io::{self, IoSlice};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::QueueError;
use super::record::{self, HEADER_LEN};
use super::segment;
use super::shared;
use super::state::{Core, Counters, SegmentState, lock};
use super::storage::WriteFile;
use super::{Appended, WhenFull};

/// A group stops growing past this many bytes, which bounds the batch
/// buffer; one larger append still goes in alone.
const MAX_GROUP_BYTES: u64 = 8 * 1024 * 1024;

/// What the queue's handles send to the writer.
pub(crate) enum Msg {
    Append(AppendReq),
    Close(oneshot::Sender<Result<(), QueueError>>),
}

pub(crate) struct AppendReq {
    pub records: Vec<Bytes>,
    /// Encoded size of all records.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<Appended, QueueError>>,
}

/// The segment being appended to.
pub(crate) struct Active {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Box<dyn WriteFile>,
    pub len: u64,
    /// Created by this writer: the file's creation time is the segment's
    /// start, so it needs no time mark.
    pub fresh: bool,
}

pub(crate) struct Writer {
    core: Arc<Core>,
    rx: Receiver<Msg>,
    active: Option<Active>,
    next_seq: u64,
    pending: VecDeque<AppendReq>,
    /// The group's record headers, back to back; written interleaved
    /// with the payloads, which are not copied. Reused.
    headers: Vec<u8>,
    /// Encoded bytes of the group being gathered.
    group_bytes: u64,
    /// Records in the group being gathered.
    group_records: usize,
    /// Definitions the group writes, each before the group's record with
    /// that index.
    definitions: Vec<(usize, Bytes)>,
    /// Shared parts defined in the active segment.
    defined: HashSet<u32>,
    /// `durability = interval`: when the oldest unsynced write happened.
    dirty_since: Option<Instant>,
}

/// How an append stands against `max_bytes`.
enum Room {
    Fits,
    /// Write the group gathered so far first, then look again.
    FlushFirst,
    Closed,
}

impl Writer {
    pub fn new(core: Arc<Core>, rx: Receiver<Msg>, active: Option<Active>, next_seq: u64) -> Self {
        Writer {
            core,
            rx,
            active,
            next_seq,
            pending: VecDeque::new(),
            headers: Vec::new(),
            group_bytes: 0,
            group_records: 0,
            definitions: Vec::new(),
            defined: HashSet::new(),
            dirty_since: None,
        }
    }

    pub fn run(mut self) {
        loop {
            let deadline = self
                .dirty_since
                .zip(self.core.limits.sync_interval)
                .map(|(since, every)| since + every);
            let msg = match deadline {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(wait) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => {
                            let core = self.core.clone();
                            let _busy = core.busy.enter();
                            self.sync_dirty();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
                None => self.rx.recv().ok(),
            };
            let Some(msg) = msg else {
                // Every handle was dropped without `close`: behave like a
                // crashed process (no more I/O), but let the reader finish.
                self.stop();
                return;
            };
            let mut close = None;
            match msg {
                Msg::Append(req) => self.pending.push_back(req),
                Msg::Close(reply) => close = Some(reply),
            }
            // Group commit: whatever queued up while we were busy goes into
            // the same write and sync.
            while close.is_none() {
                match self.rx.try_recv() {
                    Ok(Msg::Append(req)) => self.pending.push_back(req),
                    Ok(Msg::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            while !self.pending.is_empty() {
                let core = self.core.clone();
                let _busy = core.busy.enter();
                if crate::liveness::fault("hang-queue-writer") {
                    // A disk that never answers.
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
                self.write_group();
            }
            if let Some(reply) = close {
                let result = self.finish();
                self.stop();
                let _ = reply.send(result);
                return;
            }
        }
    }

    fn stop(&self) {
        lock(&self.core.shared).closed = true;
        self.core.data.notify_one();
    }

    fn finish(&mut self) -> Result<(), QueueError> {
        if self.dirty_since.is_some()
            && let Some(active) = &mut self.active
        {
            active
                .file
                .sync()
                .map_err(|e| QueueError::io("sync segment", &active.path, e))?;
            Counters::add(&self.core.counters.syncs, 1);
            self.dirty_since = None;
        }
        Ok(())
    }

    /// `durability = interval`: the deadline passed, sync what was written.
    fn sync_dirty(&mut self) {
        let Some(active) = &mut self.active else {
            self.dirty_since = None;
            return;
        };
        match active.file.sync() {
            Ok(()) => {
                Counters::add(&self.core.counters.syncs, 1);
                self.dirty_since = None;
            }
            Err(e) => {
                tracing::error!(path = %active.path.display(), error = %e, "QueueSyncFailed");
                // Try again one interval from now rather than spin.
                self.dirty_since = Some(Instant::now());
            }
        }
    }

    /// Takes appends from `pending` into one group and commits it.
    fn write_group(&mut self) {
        let limits = self.core.limits;
        let mut group: Vec<(AppendReq, Appended)> = Vec::new();
        self.headers.clear();
        self.group_bytes = 0;
        self.group_records = 0;
        self.definitions.clear();
        let mut seq = self.next_seq;
        while let Some(req) = self.pending.front() {
            let bytes = req.bytes;
            if bytes > limits.max_bytes {
                self.reject_front(QueueError::BatchTooLarge {
                    bytes,
                    max_bytes: limits.max_bytes,
                });
                continue;
            }
            let group_bytes = self.group_bytes;
            if !group.is_empty() && group_bytes + bytes > MAX_GROUP_BYTES {
                break;
            }
            let seg_len = self.active.as_ref().map_or(0, |a| a.len);
            if seg_len + group_bytes > 0 && seg_len + group_bytes + bytes > limits.segment_bytes {
                // A group never spans segments: write what we have, then
                // start the next segment with this append.
                if !group.is_empty() {
                    break;
                }
                self.roll();
            }
            let Some(req) = self.pending.pop_front() else {
                break;
            };
            let known = self.definitions.len();
            let mut definition_bytes = 0;
            let reusing = group.is_empty()
                && match &self.active {
                    None => self.core.has_spare(),
                    Some(active) => active.len == 0 && !active.fresh,
                };
            if reusing {
                // A reused file's times are its first use's: the segment
                // starts with its time mark (and only a segment that does
                // takes the spare, see `commit`).
                let mark = shared::time_mark(SystemTime::now());
                definition_bytes += record::encoded_len(mark.len());
                self.definitions.push((self.group_records, mark));
            }
            definition_bytes += self.define_parts(&req.records);
            if bytes + definition_bytes > limits.max_bytes {
                // With the definitions it needs, it could never fit.
                self.forget_definitions(known);
                let _ = req.reply.send(Err(QueueError::BatchTooLarge {
                    bytes: bytes + definition_bytes,
                    max_bytes: limits.max_bytes,
                }));
                continue;
            }
            match self.make_room(group_bytes + bytes + definition_bytes, !group.is_empty()) {
                Room::Fits => {}
                Room::FlushFirst => {
                    self.forget_definitions(known);
                    self.pending.push_front(req);
                    break;
                }
                Room::Closed => {
                    self.forget_definitions(known);
                    let _ = req.reply.send(Err(QueueError::Closed));
                    continue;
                }
            }
            let mut first_seq = seq;
            let mut definitions = self.definitions[known..].iter().peekable();
            for (i, payload) in req.records.iter().enumerate() {
                let index = self.group_records + i;
                while let Some((_, part)) = definitions.next_if(|(at, _)| *at == index) {
                    self.headers
                        .extend_from_slice(&record::encode_header(seq, part));
                    self.group_bytes += record::encoded_len(part.len());
                    seq += 1;
                }
                if i == 0 {
                    first_seq = seq;
                }
                self.headers
                    .extend_from_slice(&record::encode_header(seq, payload));
                self.group_bytes += record::encoded_len(payload.len());
                seq += 1;
            }
            self.group_records += req.records.len();
            let appended = Appended {
                first_seq,
                last_seq: seq - 1,
            };
            group.push((req, appended));
        }
        if !group.is_empty() {
            self.commit(group, seq);
        }
    }

    /// Notes the definitions `records` (next in the group) need in the
    /// active segment; returns their encoded size.
    fn define_parts(&mut self, records: &[Bytes]) -> u64 {
        let mut bytes = 0;
        for (i, payload) in records.iter().enumerate() {
            if !shared::has_refs(payload) {
                continue;
            }
            for id in shared::refs(payload).flatten() {
                if self.defined.contains(&id) {
                    continue;
                }
                // An unknown id cannot be defined; the reader reports the
                // record as damaged.
                if let Some(part) = shared::definition(id) {
                    self.defined.insert(id);
                    bytes += record::encoded_len(part.len());
                    self.definitions.push((self.group_records + i, part));
                }
            }
        }
        bytes
    }

    /// Takes back the definitions noted from index `keep` on: they were not
    /// written.
    fn forget_definitions(&mut self, keep: usize) {
        for (_, part) in self.definitions.drain(keep..) {
            if let Some((id, _)) = shared::as_definition(&part) {
                self.defined.remove(&id);
            }
        }
    }

    fn reject_front(&mut self, err: QueueError) {
        if let Some(req) = self.pending.pop_front() {
            let _ = req.reply.send(Err(err));
        }
    }

    /// Applies `when_full` so that `need` more bytes fit under `max_bytes`.
    fn make_room(&mut self, need: u64, group_nonempty: bool) -> Room {
        let core = self.core.clone();
        let max = core.limits.max_bytes;
        let mut s = lock(&core.shared);
        if s.depth_bytes() + need <= max {
            return Room::Fits;
        }
        if group_nonempty {
            return Room::FlushFirst;
        }
        match core.limits.when_full {
            WhenFull::Block => {
                // Waiting for the sender to make room: a slow endpoint,
                // not a stuck writer.
                let _waiting = core.busy.idle();
                s.blocked += 1;
                s.room_wanted = need;
                while s.depth_bytes() + need > max && !s.closing {
                    s = core.space.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                s.room_wanted = 0;
                s.blocked -= 1;
                if s.depth_bytes() + need > max {
                    Room::Closed
                } else {
                    Room::Fits
                }
            }
            WhenFull::DropOldest => {
                let excess = s.depth_bytes() + need - max;
                drop(s);
                self.drop_oldest(excess);
                Room::Fits
            }
        }
    }

    /// Moves the head past the oldest records until `excess` bytes are free,
    /// counting them as dropped.
    fn drop_oldest(&mut self, excess: u64) {
        let (segments, head_pos, head_seq) = {
            let s = lock(&self.core.shared);
            let segs: Vec<SegmentState> = s
                .segments
                .iter()
                .filter(|seg| seg.end() > s.head_pos)
                .cloned()
                .collect();
            (segs, s.head_pos, s.head_seq)
        };
        let target = head_pos + excess;
        let mut passed: Vec<(u64, u64, bool)> = Vec::new();
        let mut prev_seq = head_seq;
        for (i, seg) in segments.iter().enumerate() {
            let mut pos = head_pos.max(seg.base);
            if pos >= target {
                break;
            }
            // If a record cannot be read, give up on the rest of this
            // segment: everything in it precedes the next segment's first
            // seq, which is where the head then goes.
            let next_first = segments.get(i + 1).map(|n| n.first_seq);
            let gave_up = match self.core.storage.open_read(&seg.path) {
                Ok(file) => {
                    let mut win = segment::Window::new(&*file, seg.len);
                    let mut ok = true;
                    while pos < target && pos < seg.end() {
                        let off = pos - seg.base;
                        if let Some(&(_, end)) =
                            seg.skips.iter().find(|&&(s, e)| s <= off && off < e)
                        {
                            pos = seg.base + end;
                            continue;
                        }
                        match win.get(off, HEADER_LEN) {
                            Ok(Some(h)) => {
                                let (len, _, seq) = record::split_header(h);
                                let end = off + HEADER_LEN as u64 + u64::from(len);
                                if seq <= prev_seq || end > seg.len {
                                    ok = false;
                                    break;
                                }
                                let start = win.get(off + HEADER_LEN as u64, 2.min(len as usize));
                                let event = !matches!(start, Ok(Some(p)) if shared::reserved(p));
                                prev_seq = seq;
                                pos = seg.base + end;
                                passed.push((seq, pos, event));
                            }
                            _ => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    !ok
                }
                Err(_) => true,
            };
            if gave_up {
                tracing::warn!(path = %seg.path.display(), "QueueDropUnreadable");
                let Some(next_first) = next_first else {
                    break;
                };
                prev_seq = next_first - 1;
                passed.push((prev_seq, seg.end(), true));
            }
        }
        let Some(&(up_to, _, _)) = passed.last() else {
            return;
        };
        let events = lock(&self.core.shared).advance(&passed, up_to);
        Counters::add(&self.core.counters.dropped, events);
        Counters::add(&self.core.counters.dropped_unreported, events);
        tracing::warn!(events, up_to_seq = up_to, "QueueEventsDropped");
        if let Err(e) = self.core.persist_and_trim() {
            tracing::warn!(error = %e, "QueueLedgerWriteFailed");
        }
    }

    /// Closes the active segment so the next append starts a new one.
    fn roll(&mut self) {
        if self.dirty_since.is_some() {
            self.sync_dirty();
        }
        self.active = None;
        self.defined.clear();
        self.dirty_since = None;
        if let Err(e) = self.core.persist_and_trim() {
            tracing::warn!(error = %e, "QueueLedgerWriteFailed");
        }
    }

    /// Starts the next segment, in the spare file if `reuse` (the group
    /// begins with a time mark) and there still is one.
    fn create_segment(&mut self, reuse: bool) -> Result<(), QueueError> {
        let core = &self.core;
        let first_seq = self.next_seq;
        let path = core.dir.join(segment::file_name(first_seq));
        let spare = if reuse { core.take_spare() } else { None };
        let reused = spare.and_then(|spare| {
            core.storage
                .reuse(&spare, &path)
                .inspect_err(|e| {
                    tracing::warn!(path = %spare.display(), error = %e, "QueueSpareReuseFailed");
                })
                .ok()
        });
        let fresh = reused.is_none();
        let file = match reused {
            Some(file) => file,
            None => core
                .storage
                .create(&path)
                .map_err(|e| QueueError::io("create segment", &path, e))?,
        };
        // The segment's name must be durable before any record in it is
        // reported durable.
        core.storage
            .sync_dir(&core.dir)
            .map_err(|e| QueueError::io("sync directory", &core.dir, e))?;
        let mut s = lock(&core.shared);
        let base = s.tail_pos;
        s.segments.push_back(SegmentState {
            first_seq,
            path: path.clone(),
            base,
            len: 0,
            skips: Vec::new(),
        });
        drop(s);
        self.active = Some(Active {
            first_seq,
            path,
            file,
            len: 0,
            fresh,
        });
        Ok(())
    }

    /// Writes and (per `durability`) syncs the group's buffer, then publishes
    /// and answers. On failure, cuts the segment back so no partial record
    /// stays behind, and answers every caller with the error.
    fn commit(&mut self, group: Vec<(AppendReq, Appended)>, next_seq: u64) {
        if self.group_bytes == 0 {
            for (req, appended) in group {
                let _ = req.reply.send(Ok(appended));
            }
            return;
        }
        let marked = self
            .definitions
            .first()
            .is_some_and(|(at, part)| *at == 0 && shared::as_time_mark(part).is_some());
        if self.active.is_none()
            && let Err(e) = self.create_segment(marked)
        {
            tracing::warn!(error = %e, "QueueAppendFailed");
            self.forget_definitions(0);
            return fail_all(group, &e);
        }
        let Some(active) = self.active.as_mut() else {
            return fail_all(group, &QueueError::Closed);
        };
        let sync_each = self.core.limits.sync_interval.is_none();
        let before = active.len;
        // Each record's header, then its payload where the appender left
        // it: one system call for the group, no copy of the events.
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.headers.len() / 8);
        let mut headers = self.headers.chunks_exact(HEADER_LEN);
        let mut definitions = self.definitions.iter().peekable();
        let records = group.iter().flat_map(|(req, _)| &req.records);
        for (index, payload) in records.enumerate() {
            let parts = std::iter::from_fn(|| definitions.next_if(|(at, _)| *at == index));
            for part in parts.map(|(_, part)| part).chain([payload]) {
                if let Some(header) = headers.next() {
                    slices.push(IoSlice::new(header));
                }
                slices.push(IoSlice::new(part));
            }
        }
        let result = active
            .file
            .append_vectored(&mut slices)
            .map_err(|e| QueueError::io("append to segment", &active.path, e))
            .and_then(|()| {
                if sync_each {
                    active
                        .file
                        .sync()
                        .map_err(|e| QueueError::io("sync segment", &active.path, e))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, "QueueAppendFailed");
            // The spare's room may be what the next try needs.
            self.core.drop_spare();
            if let Err(te) = active.file.truncate(before) {
                // The garbage stays past the published length, where the
                // reader never looks; recovery cuts it. Appending after it
                // would bury it mid-segment, so start a new segment.
                tracing::warn!(path = %active.path.display(), error = %te, "QueueTruncateFailed");
                self.active = None;
                self.defined.clear();
                self.dirty_since = None;
            }
            self.forget_definitions(0);
            return fail_all(group, &e);
        }
        drop(slices);
        let group_bytes = self.group_bytes;
        active.len += group_bytes;
        let first_seq = self.next_seq;
        // Definitions are records, not events.
        let n = next_seq - self.next_seq - self.definitions.len() as u64;
        self.next_seq = next_seq;
        if sync_each {
            Counters::add(&self.core.counters.syncs, 1);
        } else if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        {
            let mut s = lock(&self.core.shared);
            let active_first = active.first_seq;
            let active_len = active.len;
            if let Some(seg) = s.segments.back_mut()
                && seg.first_seq == active_first
            {
                seg.len = active_len;
            }
            s.tail_pos += group_bytes;
            s.depth_events += n;
            s.ages.mark(first_seq, SystemTime::now());
        }
        Counters::add(&self.core.counters.appended, n);
        self.core.data.notify_one();
        for (req, appended) in group {
            let _ = req.reply.send(Ok(appended));
        }
        // A large buffer from one burst should not stay allocated forever.
        if self.headers.capacity() > 64 * 1024 {
            self.headers = Vec::new();
        }
    }
}

fn fail_all(group: Vec<(AppendReq, Appended)>, err: &QueueError) {
    for (req, _) in group {
        let _ = req.reply.send(Err(copy_error(err)));
    }
}

/// `QueueError` holds an `io::Error`, which is not `Clone`; every caller of
/// a failed group gets its own copy with the same kind and message.
fn copy_error(err: &QueueError) -> QueueError {
    match err {
        QueueError::Io { op, path, source } => QueueError::Io {
            op,
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        QueueError::BatchTooLarge { bytes, max_bytes } => QueueError::BatchTooLarge {
            bytes: *bytes,
            max_bytes: *max_bytes,
        },
        _ => QueueError::Closed,
    }
}
