//! Reads one open file from an offset and turns its bytes into line
//! observations: large `pread`s split with `memchr`, over-long lines cut,
//! multiline records joined, JSON parsed. A line's text is a slice of the
//! chunk it was read in, not a copy; invalid UTF-8 in it is replaced when
//! the text is read (see [`crate::observation::LineText`]).
//!
//! Nothing above this module sees a partial line: a line is emitted once
//! its newline was read, or when the file ends for good (rotated away,
//! deleted, truncated), or cut at `max_line_bytes`. Each batch of lines
//! carries, on its last observation, the callback that moves the file's
//! checkpoint to the first byte not covered by an emitted line. This
//! module does not find files or decide when to read them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::checkpoint::Store;
use super::config::{Format, Multiline};
use super::container::{self, Joiner, Meta};
use super::fingerprint::{Fingerprint, TAIL_CHECK_BYTES, TailCheck, line_hash};
use crate::metrics::Stats;
use crate::observation::{Line, LineText, Observation, OnDurable, PodLog};

/// Bytes read per `pread`. Large enough that syscalls do not matter, small
/// enough that a batch of observations stays small in memory (its lines'
/// texts are slices of the chunk, which lives until the last is dropped).
pub const CHUNK_BYTES: usize = 128 * 1024;
/// Most observations in one batch, so that a file of tiny lines does not
/// turn one chunk into a huge batch (each observation costs ~200 bytes
/// beside its text).
pub const MAX_BATCH_LINES: usize = 2048;
/// A checkpoint callback rides on at least every this many lines, not
/// only on a batch's last: the agent may split a batch over several queue
/// appends (a small queue), and each durable part should move the
/// checkpoint.
const CHECKPOINT_EVERY: usize = 256;

/// What every file of a source shares.
#[derive(Debug)]
pub struct LineSettings {
    /// The source's name, carried by every observation.
    pub source: Arc<str>,
    /// Longest line (or multiline record) kept.
    pub max_line_bytes: usize,
    /// Whether to parse JSON lines.
    pub json: bool,
    /// How to join lines into records, if at all.
    pub multiline: Option<Multiline>,
    /// How lines are framed (container formats).
    pub format: Format,
    /// Whether paths are kubelet pod logs, naming pod and container.
    pub kubernetes: bool,
    /// Where lines that do not parse in `format` are counted.
    pub stats: Arc<Stats>,
}

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes were read; `more` when the file holds more already.
    Data {
        /// Whether the file has unread bytes left.
        more: bool,
    },
    /// Nothing new.
    Eof,
    /// The file is shorter than what was read, or the bytes before the
    /// read position changed: it was truncated (and maybe rewritten).
    Truncated,
}

/// A multiline record being gathered.
struct Record {
    /// Offset of its first line.
    start: u64,
    /// Check of the bytes before `start`, for its checkpoint.
    check: TailCheck,
    bytes: Vec<u8>,
    truncated: bool,
    /// What the container runtime said of its first line.
    meta: Meta,
    /// When its last line was read, for the flush timeout.
    last_line: Instant,
}

/// One file being read.
pub struct Tail {
    file: File,
    /// The path lines are reported under (where the file was found), as
    /// the JSON string every line shares.
    path: Arc<Value>,
    fingerprint: Fingerprint,
    /// The checkpoint epoch callbacks carry (see `Store::claim`).
    epoch: u32,
    store: Arc<Store>,
    settings: Arc<LineSettings>,
    /// The next byte to read.
    read_pos: u64,
    /// Offset of the first byte of the line being read (`partial`).
    line_start: u64,
    /// Check of the bytes before `line_start`.
    line_start_check: TailCheck,
    /// The line read so far, without its newline; never longer than
    /// `max_line_bytes`.
    partial: Vec<u8>,
    /// In a line whose head was already emitted (cut): drop bytes up to
    /// its newline.
    skipping: bool,
    /// The last bytes before `read_pos`, compared on every read to notice
    /// a file rewritten under us.
    window: [u8; TAIL_CHECK_BYTES],
    window_len: usize,
    record: Option<Record>,
    /// The largest size the file was seen to have: what a truncation
    /// took away unread is at least the part of it past `read_pos`.
    seen_size: u64,
    /// Joins the pieces of container log lines (container formats).
    joiner: Option<Box<Joiner>>,
    /// The pod and container whose log this is (`kubernetes = true`).
    pod: Option<Arc<PodLog>>,
}

impl Tail {
    /// Starts reading `file` at `offset`, a checkpoint or a start position.
    /// When the byte before `offset` is not a newline (a start in the
    /// middle of a line), the rest of that line is skipped: lines start
    /// after a newline.
    ///
    /// # Errors
    /// When the bytes before `offset` cannot be read.
    pub fn new(
        file: File,
        path: Arc<str>,
        fingerprint: Fingerprint,
        epoch: u32,
        offset: u64,
        store: Arc<Store>,
        settings: Arc<LineSettings>,
    ) -> io::Result<Self> {
        let mut window = [0u8; TAIL_CHECK_BYTES];
        let window_len = usize::try_from(offset.min(TAIL_CHECK_BYTES as u64)).unwrap_or(0);
        let start = offset - window_len as u64;
        file.read_exact_at(&mut window[..window_len], start)?;
        let skipping = window_len > 0 && window[window_len - 1] != b'\n';
        let joiner = (settings.format != Format::Plain).then(|| {
            Box::new(Joiner::new(
                settings.format,
                settings.max_line_bytes,
                settings.stats.clone(),
                settings.source.clone(),
                path.clone(),
            ))
        });
        let pod = settings
            .kubernetes
            .then(|| container::pod_log(std::path::Path::new(&*path)))
            .flatten()
            .map(Arc::new);
        Ok(Tail {
            file,
            path: Arc::new(Value::String(path.to_string())),
            fingerprint,
            epoch,
            store,
            settings,
            read_pos: offset,
            line_start: offset,
            line_start_check: TailCheck::of(&window[..window_len]),
            partial: Vec::new(),
            skipping,
            window,
            window_len,
            record: None,
            seen_size: offset,
            joiner,
            pod,
        })
    }

    /// The file's identity.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The epoch its checkpoint callbacks carry.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The next byte to read.
    pub fn position(&self) -> u64 {
        self.read_pos
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file back, for a file that must be fingerprinted again
    /// (after a truncation).
    pub fn into_file(self) -> File {
        self.file
    }

    /// Goes on reading the same stream from another file (the copy of a
    /// file that was copied and then truncated) at the same position, and
    /// gives back the file read so far. The next read checks that the
    /// new file holds the bytes before the position.
    pub fn switch_file(&mut self, file: File) -> File {
        self.seen_size = self.read_pos;
        std::mem::replace(&mut self.file, file)
    }

    /// The check of the bytes just before the read position.
    pub fn check(&self) -> TailCheck {
        TailCheck::of(&self.window[..self.window_len])
    }

    /// The largest size the file was seen to have.
    pub fn seen_size(&self) -> u64 {
        self.seen_size
    }

    /// Reads one chunk and appends its complete lines to `out`, then seals
    /// `out` with the checkpoint callback. `buf` is scratch space shared
    /// by all files of the source.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn read(&mut self, buf: &mut Vec<u8>, out: &mut Vec<Observation>) -> io::Result<Outcome> {
        let size = self.file.metadata()?.len();
        self.seen_size = self.seen_size.max(size);
        if size < self.read_pos {
            return Ok(Outcome::Truncated);
        }
        if size == self.read_pos {
            return Ok(Outcome::Eof);
        }
        let k = self.window_len;
        let available = size - self.read_pos;
        let want = k + usize::try_from(available.min(CHUNK_BYTES as u64)).unwrap_or(CHUNK_BYTES);
        buf.resize(want, 0);
        let mut got = 0;
        let from = self.read_pos - k as u64;
        while got < want {
            match self.file.read_at(&mut buf[got..want], from + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got < k || buf[..k] != self.window[..k] {
            return Ok(Outcome::Truncated);
        }
        if got == k {
            return Ok(Outcome::Eof);
        }
        // One shared, checked copy of the chunk's valid UTF-8: each line's
        // text is a slice of it (no allocation or check per line), and the
        // chunk is freed once the last of its lines is.
        let data = &buf[k..got];
        let text: Arc<str> = match std::str::from_utf8(data) {
            Ok(text) => Arc::from(text),
            Err(e) => Arc::from(std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default()),
        };
        let consumed = self.process(data, &text, out);
        self.slide_window(&data[..consumed]);
        self.read_pos += consumed as u64;
        self.seal(out);
        Ok(Outcome::Data {
            more: self.read_pos < size,
        })
    }

    /// Splits `data` (the bytes at `read_pos`) into lines. Returns how many
    /// bytes it used: all, unless the batch reached [`MAX_BATCH_LINES`].
    fn process(&mut self, data: &[u8], text: &Arc<str>, out: &mut Vec<Observation>) -> usize {
        let base = self.read_pos;
        let max = self.settings.max_line_bytes;
        let now = Utc::now();
        let mut pos = 0;
        let mut sealed = out.len();
        while pos < data.len() && out.len() < MAX_BATCH_LINES {
            let Some(i) = memchr::memchr(b'\n', &data[pos..]) else {
                let rest = &data[pos..];
                if !self.skipping {
                    if self.partial.len() + rest.len() > max {
                        // Cut now rather than at the newline, which may be
                        // gigabytes away: memory stays bounded and the
                        // file keeps moving.
                        let room = max - self.partial.len();
                        self.partial.extend_from_slice(&rest[..room]);
                        let line = std::mem::take(&mut self.partial);
                        self.line(&line, None, self.line_start, true, data, base, now, out);
                        self.partial = line;
                        self.partial.clear();
                        self.skipping = true;
                    } else {
                        self.partial.extend_from_slice(rest);
                    }
                }
                pos = data.len();
                break;
            };
            let end = pos + i;
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                let shared = LineText::in_chunk(text, pos..end);
                self.line(
                    &data[pos..end],
                    shared,
                    self.line_start,
                    false,
                    data,
                    base,
                    now,
                    out,
                );
            } else {
                // A line begun in an earlier read: copied out of `partial`
                // (one copy per read at most).
                let room = max.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&data[pos..end.min(pos + room + 1)]);
                let mut line = std::mem::take(&mut self.partial);
                self.line(&line, None, self.line_start, false, data, base, now, out);
                // One long line must not pin its buffer for the life of
                // the file.
                if line.capacity() <= 64 * 1024 {
                    line.clear();
                    self.partial = line;
                }
            }
            pos = end + 1;
            self.line_start = base + pos as u64;
            if out.len() >= sealed + CHECKPOINT_EVERY {
                self.line_start_check = self.check_at(data, pos);
                self.seal(out);
                sealed = out.len();
            }
        }
        if self.line_start >= base {
            let at = usize::try_from(self.line_start - base).unwrap_or(0);
            self.line_start_check = self.check_at(data, at);
        }
        pos
    }

    /// The check of the bytes before `data[at]`, reaching back into the
    /// window when `at` is near the start of the chunk.
    fn check_at(&self, data: &[u8], at: usize) -> TailCheck {
        check_before(&self.window[..self.window_len], data, at)
    }

    fn slide_window(&mut self, consumed: &[u8]) {
        if consumed.len() >= TAIL_CHECK_BYTES {
            self.window
                .copy_from_slice(&consumed[consumed.len() - TAIL_CHECK_BYTES..]);
            self.window_len = TAIL_CHECK_BYTES;
            return;
        }
        let keep = (TAIL_CHECK_BYTES - consumed.len()).min(self.window_len);
        self.window
            .copy_within(self.window_len - keep..self.window_len, 0);
        self.window[keep..keep + consumed.len()].copy_from_slice(consumed);
        self.window_len = keep + consumed.len();
    }

    /// One complete (or cut) line at `offset`: its bytes as read, and its
    /// text when it is a checked slice of the chunk (otherwise made from
    /// the bytes).
    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        bytes: &[u8],
        text: Option<LineText>,
        offset: u64,
        cut: bool,
        data: &[u8],
        base: u64,
        now: DateTime<Utc>,
        out: &mut Vec<Observation>,
    ) {
        let Some(joiner) = self.joiner.as_deref_mut() else {
            let line = Logical {
                bytes,
                text,
                offset,
                cut,
                meta: Meta::default(),
                check: None,
            };
            self.logical(line, data, base, now, out);
            return;
        };
        let window = &self.window[..self.window_len];
        let (line_start_check, in_chunk) = (self.line_start_check, offset >= base);
        let check = || {
            if in_chunk {
                check_before(window, data, usize::try_from(offset - base).unwrap_or(0))
            } else {
                line_start_check
            }
        };
        let Some(decoded) = joiner.push(bytes, offset, cut, check) else {
            return;
        };
        // A message that is a slice of the line keeps sharing the chunk.
        let text = match (&decoded.bytes, text) {
            (std::borrow::Cow::Borrowed(message), Some(text)) => {
                let at = message.as_ptr() as usize - bytes.as_ptr() as usize;
                text.slice(at..at + message.len())
            }
            _ => None,
        };
        let line = Logical {
            bytes: &decoded.bytes,
            text,
            offset: decoded.offset,
            cut: decoded.truncated,
            meta: decoded.meta,
            check: decoded.check,
        };
        self.logical(line, data, base, now, out);
    }

    /// One line as the application wrote it: on to a multiline record, or
    /// out as an observation.
    fn logical(
        &mut self,
        line: Logical<'_>,
        data: &[u8],
        base: u64,
        now: DateTime<Utc>,
        out: &mut Vec<Observation>,
    ) {
        let Logical {
            bytes,
            text,
            offset,
            cut,
            meta,
            check,
        } = line;
        let max = self.settings.max_line_bytes;
        let (bytes, text, cut) = if bytes.len() > max {
            let n = floor_char_boundary(bytes, max);
            (&bytes[..n], text.map(|t| t.cut(n)), true)
        } else {
            (bytes, text, cut)
        };
        let Some(multiline) = &self.settings.multiline else {
            out.push(self.observation(bytes, text, offset, cut, meta, now));
            return;
        };
        let starts = multiline.start.is_match(bytes);
        match &mut self.record {
            Some(record) if !starts => {
                let room = max.saturating_sub(record.bytes.len());
                if bytes.len() < room {
                    record.bytes.push(b'\n');
                    record.bytes.extend_from_slice(bytes);
                } else {
                    record.truncated = true;
                }
                record.truncated |= cut;
                record.last_line = Instant::now();
            }
            _ => {
                self.flush_record(now, out);
                let check = match check {
                    Some(check) => check,
                    None if offset >= base => {
                        self.check_at(data, usize::try_from(offset - base).unwrap_or(0))
                    }
                    None => self.line_start_check,
                };
                self.record = Some(Record {
                    start: offset,
                    check,
                    bytes: bytes.to_vec(),
                    truncated: cut,
                    meta,
                    last_line: Instant::now(),
                });
            }
        }
    }

    fn flush_record(&mut self, now: DateTime<Utc>, out: &mut Vec<Observation>) {
        if let Some(record) = self.record.take() {
            out.push(self.observation(
                &record.bytes,
                None,
                record.start,
                record.truncated,
                record.meta,
                now,
            ));
        }
    }

    /// When the pending multiline record must be flushed, or an
    /// unfinished container line emitted, if there is one.
    pub fn record_deadline(&self) -> Option<Instant> {
        let record = self.settings.multiline.as_ref().and_then(|multiline| {
            self.record
                .as_ref()
                .map(|r| r.last_line + multiline.flush_timeout)
        });
        let piece = self.joiner.as_ref().and_then(|j| j.deadline());
        record.into_iter().chain(piece).min()
    }

    /// Emits the pending multiline record if its flush timeout passed, and
    /// the container lines whose last piece is overdue.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Observation>) {
        let before = out.len();
        self.flush_unfinished(Some(now), out);
        let record_due = self.settings.multiline.as_ref().is_some_and(|multiline| {
            self.record
                .as_ref()
                .is_some_and(|r| r.last_line + multiline.flush_timeout <= now)
        });
        if record_due {
            self.flush_record(Utc::now(), out);
        }
        if out.len() > before {
            self.seal(out);
        }
    }

    /// Emits the container lines still being joined (those overdue at
    /// `now`, or all), marked partial.
    fn flush_unfinished(&mut self, now: Option<Instant>, out: &mut Vec<Observation>) {
        let Some(joiner) = self.joiner.as_deref_mut() else {
            return;
        };
        let unfinished = joiner.take_unfinished(now);
        let utc = Utc::now();
        for l in unfinished {
            let line = Logical {
                bytes: &l.bytes,
                text: None,
                offset: l.offset,
                cut: l.truncated,
                meta: l.meta,
                check: l.check,
            };
            self.logical(line, &[], self.read_pos, utc, out);
        }
    }

    /// The file ends here for good (rotated away and drained, deleted,
    /// truncated): the last line without a newline and any pending record
    /// are complete now.
    pub fn finish(&mut self, out: &mut Vec<Observation>) {
        let now = Utc::now();
        if !self.partial.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.partial);
            self.line(
                &line,
                None,
                self.line_start,
                false,
                &[],
                self.read_pos,
                now,
                out,
            );
        }
        self.partial.clear();
        self.skipping = false;
        self.flush_unfinished(None, out);
        self.flush_record(now, out);
        self.line_start = self.read_pos;
        self.line_start_check = TailCheck::of(&self.window[..self.window_len]);
        self.seal(out);
    }

    /// Attaches the checkpoint callback to the last observation: once it
    /// is durable, everything before the first byte not yet emitted is.
    fn seal(&self, out: &mut [Observation]) {
        let Some(last) = out.last_mut() else { return };
        let (mut offset, mut check) = match &self.record {
            Some(record) => (record.start, record.check),
            None => (self.line_start, self.line_start_check),
        };
        // Not past a container line still being joined.
        if let Some((start, before)) = self.joiner.as_ref().and_then(|j| j.earliest())
            && start < offset
        {
            (offset, check) = (start, before);
        }
        let store = self.store.clone();
        let fingerprint = self.fingerprint.hash;
        let epoch = self.epoch;
        // A batch may hold lifecycle observations after this one's lines;
        // whichever callback was there is replaced by the later checkpoint
        // of the same file only (seal runs once per file per batch).
        let previous = last.on_durable.take();
        last.on_durable = Some(OnDurable::new(move || {
            if let Some(previous) = previous {
                previous.fire();
            }
            store.advance(fingerprint, epoch, offset, check);
        }));
    }

    /// The observation of one line. Its text stays bytes: invalid UTF-8 is
    /// replaced when the text is read (see [`crate::observation::LineText`]).
    fn observation(
        &self,
        bytes: &[u8],
        text: Option<LineText>,
        offset: u64,
        truncated: bool,
        meta: Meta,
        now: DateTime<Utc>,
    ) -> Observation {
        let mut identity = [0u8; 32];
        identity[..16].copy_from_slice(&self.fingerprint.to_bytes());
        identity[16..24].copy_from_slice(&offset.to_le_bytes());
        identity[24..].copy_from_slice(&line_hash(bytes).to_le_bytes());
        let json = if self.settings.json {
            parse_json_object(bytes)
        } else {
            None
        };
        let text = text.unwrap_or_else(|| {
            LineText::from(match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(bytes).into_owned(),
            })
        });
        let mut line = Line::new(text, self.path.clone(), offset, truncated, json, identity);
        line.stream = meta.stream;
        line.time = meta.time;
        line.partial = meta.partial;
        line.pod.clone_from(&self.pod);
        Observation::line(self.settings.source.clone(), now, line)
    }
}

/// A line on its way to becoming an observation: its bytes (its text too
/// when that is a checked slice of the chunk), where it starts, whether
/// it was cut, what a container runtime said of it, and the check of the
/// bytes before it when the line began in another chunk than `data`.
struct Logical<'a> {
    bytes: &'a [u8],
    text: Option<LineText>,
    offset: u64,
    cut: bool,
    meta: Meta,
    check: Option<TailCheck>,
}

/// The check of the bytes before `data[at]`, reaching back into `window`
/// (the bytes before `data`) when `at` is near the start of the chunk.
fn check_before(window: &[u8], data: &[u8], at: usize) -> TailCheck {
    if at >= TAIL_CHECK_BYTES {
        return TailCheck::of(&data[at - TAIL_CHECK_BYTES..at]);
    }
    let mut joined = [0u8; TAIL_CHECK_BYTES * 2];
    let from_window = (TAIL_CHECK_BYTES - at).min(window.len());
    let w = &window[window.len() - from_window..];
    joined[..w.len()].copy_from_slice(w);
    joined[w.len()..w.len() + at].copy_from_slice(&data[..at]);
    TailCheck::of(&joined[..w.len() + at])
}

/// The line as a JSON object, when it is one.
fn parse_json_object(bytes: &[u8]) -> Option<Value> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
}

/// The largest `n <= max` that does not split a UTF-8 sequence (when the
/// bytes are UTF-8 there; otherwise `max`).
fn floor_char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut n = max;
    // At most 3 continuation bytes precede a boundary.
    for _ in 0..3 {
        if n == 0 || n >= bytes.len() || (bytes[n] & 0b1100_0000) != 0b1000_0000 {
            return n;
        }
        n -= 1;
    }
    if (bytes[n] & 0b1100_0000) == 0b1000_0000 {
        max
    } else {
        n
    }
}

#[cfg(test)]
mod tests;
