//! Segment files: their names, and scanning one for valid records.
//!
//! A segment is named after the seq its first record was given
//! (`00000000000000000042.seg`), so listing the directory orders segments and
//! tells recovery which seq a segment must start with. Scanning is shared by
//! recovery (which then truncates a torn tail), `inspect` (which changes
//! nothing) and the reader (which meets damage only if the disk changed
//! under a running queue).

use std::io;
use std::time::SystemTime;

use super::record::{self, Decoded, HEADER_LEN};
use super::shared;
use super::storage::ReadFile;

const EXTENSION: &str = ".seg";

/// The name under which an acked segment's file waits to be reused for the
/// next segment (not a segment name: it has no seq).
pub const SPARE_NAME: &str = "segment.spare";

/// How much a scan reads at once: large enough to amortize syscalls, small
/// enough that recovery's memory does not grow with the segment size.
const SCAN_CHUNK: usize = 256 * 1024;

/// The file name of the segment whose first record has `first_seq`.
pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{EXTENSION}")
}

/// The first seq encoded in a segment file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&seq| seq > 0)
}

/// A sliding read buffer over a file, so a scan can look at any byte range
/// near its position without reading the file whole.
pub struct Window<'a> {
    file: &'a dyn ReadFile,
    len: u64,
    base: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    /// A window over the first `len` bytes of `file`.
    pub fn new(file: &'a dyn ReadFile, len: u64) -> Self {
        Window {
            file,
            len,
            base: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes `[off, off + n)`, or `None` if they run past the end.
    ///
    /// # Errors
    /// A read error, or `UnexpectedEof` if the file shrank under us.
    pub fn get(&mut self, off: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = off.checked_add(n as u64) else {
            return Ok(None);
        };
        if end > self.len {
            return Ok(None);
        }
        let buf_end = self.base + self.buf.len() as u64;
        if off < self.base || end > buf_end {
            let want = n.max(SCAN_CHUNK).min((self.len - off) as usize);
            self.buf.resize(want, 0);
            self.base = off;
            if let Err(e) = self.file.read_exact_at(&mut self.buf, off) {
                self.buf.clear();
                return Err(e);
            }
        }
        let start = (off - self.base) as usize;
        Ok(Some(&self.buf[start..start + n]))
    }
}

/// A record found by a scan, and where it sits.
pub struct Found<'b> {
    /// Its seq.
    pub seq: u64,
    /// Its payload.
    pub payload: &'b [u8],
    /// Its offset in the segment.
    pub offset: u64,
    /// The offset just past it.
    pub end: u64,
}

/// Decodes a record at `pos` that may follow `(prev_seq, prev_end)`, or
/// says there is none there.
fn record_at<'w>(
    win: &'w mut Window<'_>,
    pos: u64,
    prev_seq: u64,
    prev_end: u64,
) -> io::Result<Option<Found<'w>>> {
    let Some(header) = win.get(pos, HEADER_LEN)? else {
        return Ok(None);
    };
    let (len, _, seq) = record::split_header(header);
    if !record::plausible_seq(seq, prev_seq, prev_end, pos) {
        return Ok(None);
    }
    let total = HEADER_LEN + len as usize;
    let Some(bytes) = win.get(pos, total)? else {
        return Ok(None);
    };
    match record::decode(bytes, 0) {
        Decoded::Record { seq, payload, end } => Ok(Some(Found {
            seq,
            payload: &bytes[payload],
            offset: pos,
            end: pos + end as u64,
        })),
        Decoded::Incomplete { .. } | Decoded::Invalid => Ok(None),
    }
}

/// What lies after damage, found by [`resync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A valid record that may follow, at this offset.
    Record(u64),
    /// A whole record from the file's earlier use (see [`stale_at`]), at
    /// this offset.
    Stale(u64),
}

/// What follows damage at `from`, searching up to `len`: the next record
/// that may follow `(prev_seq, prev_end)`, or the first stale record when
/// `stale_below` is not 0 (the segment's name seq when the file may have
/// been reused; 0 inside the published part of a segment).
///
/// # Errors
/// A read error.
pub fn resync(
    win: &mut Window<'_>,
    from: u64,
    len: u64,
    prev_seq: u64,
    prev_end: u64,
    stale_below: u64,
) -> io::Result<Option<Next>> {
    let mut pos = from;
    while pos + HEADER_LEN as u64 <= len {
        if record_at(win, pos, prev_seq, prev_end)?.is_some() {
            return Ok(Some(Next::Record(pos)));
        }
        if stale_at(win, pos, stale_below)?.is_some() {
            return Ok(Some(Next::Stale(pos)));
        }
        pos += 1;
    }
    Ok(None)
}

/// The end of a whole, valid record with a seq below `name_seq` at
/// `pos`, if there is one. A segment's records have seqs from its name up,
/// and seqs never go back, so such a record was written by the file's
/// earlier use: the queue reuses the files of acked segments
/// ([`super::storage::Storage::reuse`]), writing over them from the start.
fn stale_at(win: &mut Window<'_>, pos: u64, name_seq: u64) -> io::Result<Option<u64>> {
    let Some(header) = win.get(pos, HEADER_LEN)? else {
        return Ok(None);
    };
    let (len, _, seq) = record::split_header(header);
    if seq == 0 || seq >= name_seq {
        return Ok(None);
    }
    let Some(bytes) = win.get(pos, HEADER_LEN + len as usize)? else {
        return Ok(None);
    };
    Ok(match record::decode(bytes, 0) {
        Decoded::Record { end, .. } => Some(pos + end as u64),
        Decoded::Incomplete { .. } | Decoded::Invalid => None,
    })
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records found.
    pub records: u64,
    /// Seq of the first valid record.
    pub first_seq: Option<u64>,
    /// Seq of the last valid record.
    pub last_seq: Option<u64>,
    /// Offset just past the last valid record: where a torn tail starts.
    pub valid_end: u64,
    /// Bytes after the last valid record that are torn: cut by recovery,
    /// and counted, unlike the records of a reused file's earlier use.
    pub torn: u64,
    /// Where the records of the file's earlier use begin, when it was
    /// reused and no record of this segment follows them: the bytes from
    /// there on are old, not torn.
    pub stale_from: Option<u64>,
    /// When the segment was started, from its time mark (segments written
    /// before marks existed have none).
    pub started: Option<SystemTime>,
    /// Damaged byte ranges between valid records, skipped.
    pub skips: Vec<(u64, u64)>,
    /// Records lost to those ranges (the seq gap each left, at least one).
    pub corrupt: u64,
    /// Offset of the first record with seq above the ack point.
    pub head_offset: Option<u64>,
    /// Seq of that record.
    pub first_unacked: Option<u64>,
    /// Valid records with seq above the ack point, definitions of shared
    /// parts left out.
    pub unacked: u64,
    /// Set if reading failed; the scan stopped there and its tail must not
    /// be truncated, as it is unknown rather than torn.
    pub read_error: Option<io::Error>,
}

/// Scans the first `len` bytes of a segment named for `name_seq`, calling
/// `visit` for every valid record with seq above `acked`, and for the
/// definitions of shared parts before it, until it returns `false`.
pub fn scan(
    file: &dyn ReadFile,
    len: u64,
    name_seq: u64,
    acked: u64,
    mut visit: impl FnMut(&Found<'_>) -> bool,
) -> Scan {
    let mut out = Scan::default();
    let mut win = Window::new(file, len);
    let mut prev_seq = name_seq.saturating_sub(1);
    let mut prev_end = 0;
    let mut pos = 0;
    let mut visiting = true;
    while pos < len {
        let found = match record_at(&mut win, pos, prev_seq, prev_end) {
            Ok(found) => found,
            Err(e) => {
                out.read_error = Some(e);
                break;
            }
        };
        let Some(found) = found else {
            // Old records of a reused file are walked over whole: nothing
            // of this segment's follows them, unless damage made new ones
            // look old, which the search below then finds.
            match stale_at(&mut win, pos, name_seq) {
                Ok(Some(end)) => {
                    out.stale_from.get_or_insert(pos);
                    pos = end;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    out.read_error = Some(e);
                    break;
                }
            }
            match resync(&mut win, pos + 1, len, prev_seq, prev_end, name_seq) {
                Ok(Some(Next::Stale(at))) => {
                    out.stale_from.get_or_insert(at);
                    pos = at;
                    continue;
                }
                Ok(Some(Next::Record(next))) => {
                    out.stale_from = None;
                    out.skips.push((prev_end, next));
                    // The record at `next` is re-decoded by the loop; its seq
                    // tells how many records the damage took.
                    if let Ok(Some(f)) = record_at(&mut win, next, prev_seq, prev_end) {
                        out.corrupt += (f.seq - prev_seq - 1).max(1);
                    }
                    pos = next;
                    continue;
                }
                Ok(None) => break,
                Err(e) => {
                    out.read_error = Some(e);
                    break;
                }
            }
        };
        if out.stale_from.take().is_some() {
            // Records that looked old, then this segment's own: damage.
            out.skips.push((prev_end, found.offset));
            out.corrupt += (found.seq - prev_seq - 1).max(1);
        }
        out.records += 1;
        if out.first_seq.is_none() {
            out.started = shared::as_time_mark(found.payload);
        }
        out.first_seq.get_or_insert(found.seq);
        out.last_seq = Some(found.seq);
        if found.seq > acked {
            out.unacked += u64::from(shared::as_definition(found.payload).is_none());
            out.head_offset.get_or_insert(found.offset);
            out.first_unacked.get_or_insert(found.seq);
            if visiting {
                visiting = visit(&found);
            }
        } else if visiting && shared::as_definition(found.payload).is_some() {
            // Records after the ack point may use it.
            visiting = visit(&found);
        }
        prev_seq = found.seq;
        prev_end = found.end;
        pos = found.end;
    }
    out.valid_end = prev_end;
    out.torn = match out.stale_from {
        None => len - prev_end,
        // This segment's records end inside an old one; the rest of that
        // one is old too, unless a record of this segment began there.
        Some(stale) => match win.get(prev_end, HEADER_LEN) {
            Ok(Some(header)) if record::split_header(header).2 == prev_seq + 1 => stale - prev_end,
            _ => 0,
        },
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::record::encode_into;
    use std::path::Path;

    use crate::queue::storage::{MemStorage, Storage};

    fn file_with(bytes: &[u8]) -> std::sync::Arc<dyn ReadFile> {
        let storage = MemStorage::new();
        let dir = Path::new("/q");
        storage.create_dir_all(dir).unwrap();
        storage.write_file_synced(&dir.join("f"), bytes);
        storage.open_read(&dir.join("f")).unwrap()
    }

    fn records(first: u64, n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for seq in first..first + n {
            offsets.push(buf.len() as u64);
            encode_into(&mut buf, seq, format!("{{\"n\":{seq}}}").as_bytes());
        }
        (buf, offsets)
    }

    #[test]
    fn names_round_trip_and_reject_others() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("ack.ledger"), None);
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name(&file_name(0)), None);
    }

    #[test]
    fn clean_segment_scans_whole() {
        let (buf, _) = records(5, 10);
        let f = file_with(&buf);
        let mut seen = Vec::new();
        let s = scan(&*f, buf.len() as u64, 5, 7, |r| {
            seen.push(r.seq);
            true
        });
        assert_eq!((s.records, s.unacked, s.corrupt), (10, 7, 0));
        assert_eq!(s.valid_end, buf.len() as u64);
        assert_eq!(seen, (8..15).collect::<Vec<_>>());
        assert_eq!(s.first_unacked, Some(8));
    }

    #[test]
    fn damaged_middle_record_is_skipped_and_counted() {
        let (mut buf, offsets) = records(1, 5);
        buf[offsets[2] as usize + 20] ^= 0xff;
        let f = file_with(&buf);
        let s = scan(&*f, buf.len() as u64, 1, 0, |_| true);
        assert_eq!((s.records, s.corrupt), (4, 1));
        assert_eq!(s.skips, vec![(offsets[2], offsets[3])]);
        assert_eq!(s.valid_end, buf.len() as u64);
    }

    #[test]
    fn torn_tail_stops_at_last_whole_record() {
        let (buf, offsets) = records(1, 3);
        let f = file_with(&buf[..buf.len() - 1]);
        let s = scan(&*f, buf.len() as u64 - 1, 1, 0, |_| true);
        assert_eq!((s.records, s.corrupt), (2, 0));
        assert_eq!(s.valid_end, offsets[2]);
    }

    /// A file that held records 1 to 40 and was reused for a segment
    /// named 100: its new records, written over the start of the old ones.
    fn reused(new: u64) -> (Vec<u8>, Vec<u64>, Vec<u64>) {
        let (mut buf, old) = records(1, 40);
        let (mark_and_new, offsets) = {
            let mut b = Vec::new();
            encode_into(&mut b, 100, &shared::time_mark(SystemTime::UNIX_EPOCH));
            let (rest, mut offsets) = records(101, new);
            offsets.iter_mut().for_each(|o| *o += b.len() as u64);
            offsets.insert(0, 0);
            b.extend_from_slice(&rest);
            (b, offsets)
        };
        buf[..mark_and_new.len()].copy_from_slice(&mark_and_new);
        (buf, offsets, old)
    }

    #[test]
    fn a_reused_files_old_records_end_the_segment_without_counting_as_damage() {
        let (buf, offsets, old) = reused(5);
        let end = offsets[5] + (offsets[5] - offsets[4]);
        // The first old record not written over.
        let stale = *old.iter().find(|&&o| o >= end).unwrap();
        assert!(stale > end, "the new records end inside an old one");
        let f = file_with(&buf);
        let mut seen = Vec::new();
        let s = scan(&*f, buf.len() as u64, 100, 0, |r| {
            seen.push(r.seq);
            true
        });
        assert_eq!((s.records, s.unacked, s.corrupt), (6, 5, 0));
        assert_eq!(seen, (100..=105).collect::<Vec<_>>());
        assert_eq!((s.valid_end, s.stale_from), (end, Some(stale)));
        assert_eq!(
            s.torn, 0,
            "the rest of the old record the new ones end in is old"
        );
        assert!(s.skips.is_empty());
        assert_eq!(s.started, Some(SystemTime::UNIX_EPOCH));
    }

    #[test]
    fn a_torn_record_in_a_reused_file_is_torn_up_to_the_old_records() {
        let (mut buf, offsets, old) = reused(5);
        // The last new record loses a byte in its middle.
        buf[offsets[5] as usize + 20] ^= 0xff;
        let f = file_with(&buf);
        let s = scan(&*f, buf.len() as u64, 100, 0, |_| true);
        assert_eq!((s.records, s.corrupt), (5, 0));
        assert_eq!(s.valid_end, offsets[5]);
        let end = offsets[5] + (offsets[5] - offsets[4]);
        let stale = *old.iter().find(|&&o| o >= end).unwrap();
        assert_eq!(s.stale_from, Some(stale));
        assert_eq!(s.torn, stale - offsets[5]);
    }

    #[test]
    fn new_records_after_ones_that_look_old_are_kept() {
        // Seqs below the name, then the segment's own: damage, not a reused
        // file's end (the old records are walked over, then the search
        // finds the new ones).
        let (buf, offsets) = records(1, 6);
        let f = file_with(&buf);
        let s = scan(&*f, buf.len() as u64, 4, 0, |_| true);
        assert_eq!((s.records, s.first_seq, s.stale_from), (3, Some(4), None));
        assert_eq!(s.corrupt, 1);
        assert_eq!(s.skips, vec![(0, offsets[3])]);
        assert_eq!(s.valid_end, buf.len() as u64);
    }

    #[test]
    fn wrong_first_seq_is_damage() {
        let (buf, _) = records(1, 3);
        let f = file_with(&buf);
        // Named 2, so the record with seq 1 cannot belong here, and
        // neither can its successors (their seq never exceeds the bound).
        let s = scan(&*f, buf.len() as u64, 2, 0, |_| true);
        assert_eq!(s.records, 2);
        assert_eq!(s.first_seq, Some(2));
    }
}
