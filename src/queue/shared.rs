//! Shared parts: bytes that many records repeat (a file's resource, the
//! related resources every event carries), stored once per segment and
//! referenced from the records.
//!
//! An event of a log line is mostly the same few hundred bytes of resource
//! and related labels around a short line. Writing them once per segment
//! instead of once per record makes the queue's writes, fsyncs, checksums
//! and reads a fraction of what they were; the reader puts the parts back,
//! so what leaves the queue is byte for byte the full event.
//!
//! # Format (inside the opaque payloads of the queue module doc)
//!
//! ```text
//! 0x00 'R' bytes...          a record with references: each 0x00 in
//!                            `bytes` is followed by a u32 LE part id and
//!                            stands for that part's bytes
//! 0x00 'D' u32 id  bytes...  a definition: part `id` is `bytes` from here
//!                            on in this segment (written by the writer)
//! anything else              a plain record, handed out as it is
//! ```
//!
//! Part 0 is never referenced: its definition is the segment's **time
//! mark**, `u64` LE microseconds since the Unix epoch when the writer
//! started the segment, written as the first record of a segment that
//! reuses an acked segment's file. It gives the age of the oldest records
//! after a restart, which the reused file's creation time cannot.
//!
//! JSON never contains a raw NUL byte, which is what keeps references
//! unambiguous. The writer writes a part's definition into a segment before
//! the first record there that uses it (in the same write), so a segment
//! read from its start always knows its parts; a process that appends to a
//! segment left by an earlier one defines its parts again, and a later
//! definition of an id replaces an earlier one. Definitions are records
//! with their own seqs: they are acked with the records around them, and
//! left out of the queue's counts of events.
//!
//! Parts are registered in a process-wide table by whoever builds the
//! records ([`intern`]); the table is capped ([`MAX_TABLE_BYTES`]), and
//! past the cap a caller simply writes the bytes inline.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// First byte of every record in this format.
pub const MARK: u8 = 0;
/// Second byte of a record with references.
pub const WITH_REFS: u8 = b'R';
/// Second byte of a definition.
const DEFINITION: u8 = b'D';
/// Bytes a reference takes in a record: the mark and the id.
pub const REF_LEN: usize = 5;
/// Parts shorter than this are not worth a reference.
pub const MIN_PART: usize = 32;
/// The largest part registered.
const MAX_PART: usize = 64 * 1024;
/// The table's size cap (bytes of parts).
pub const MAX_TABLE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Table {
    ids: HashMap<Bytes, u32>,
    /// Definition records, by id - 1.
    definitions: Vec<Bytes>,
    bytes: usize,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// The id under which `part` can be referenced, registering it if new;
/// `None` when it is too small or too large to share, or the table is
/// full (then write it inline).
pub fn intern(part: &[u8]) -> Option<u32> {
    if part.len() < MIN_PART || part.len() > MAX_PART || part.contains(&MARK) {
        return None;
    }
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&id) = t.ids.get(part) {
        return Some(id);
    }
    if t.bytes + part.len() > MAX_TABLE_BYTES {
        return None;
    }
    let id = u32::try_from(t.definitions.len() + 1).ok()?;
    let mut definition = BytesMut::with_capacity(6 + part.len());
    definition.put_slice(&[MARK, DEFINITION]);
    definition.put_u32_le(id);
    definition.put_slice(part);
    t.definitions.push(definition.freeze());
    t.ids.insert(Bytes::copy_from_slice(part), id);
    t.bytes += part.len();
    Some(id)
}

/// Appends a reference to part `id`.
pub fn write_ref(out: &mut impl BufMut, id: u32) {
    out.put_u8(MARK);
    out.put_u32_le(id);
}

/// The definition record of part `id`, if registered.
pub(crate) fn definition(id: u32) -> Option<Bytes> {
    let t = table().lock().unwrap_or_else(|p| p.into_inner());
    t.definitions.get((id as usize).checked_sub(1)?).cloned()
}

/// The time mark record of a segment started at `at` (part 0's
/// definition).
pub(crate) fn time_mark(at: SystemTime) -> Bytes {
    let micros = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut mark = BytesMut::with_capacity(14);
    mark.put_slice(&[MARK, DEFINITION]);
    mark.put_u32_le(0);
    mark.put_u64_le(micros);
    mark.freeze()
}

/// The time a time mark record holds.
pub(crate) fn as_time_mark(payload: &[u8]) -> Option<SystemTime> {
    match as_definition(payload)? {
        (0, micros) => {
            let micros = u64::from_le_bytes(micros.try_into().ok()?);
            UNIX_EPOCH.checked_add(Duration::from_micros(micros))
        }
        _ => None,
    }
}

/// Whether a payload is a record with references.
pub(crate) fn has_refs(payload: &[u8]) -> bool {
    payload.starts_with(&[MARK, WITH_REFS])
}

/// The part a definition record defines.
pub(crate) fn as_definition(payload: &[u8]) -> Option<(u32, &[u8])> {
    let rest = payload.strip_prefix(&[MARK, DEFINITION])?;
    let id = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    Some((id, &rest[4..]))
}

/// If `payload` is a definition, records its part in `parts` (replacing
/// an earlier definition of the id) and says so.
pub(crate) fn learn(parts: &mut PartMap, payload: &[u8]) -> bool {
    let Some((id, part)) = as_definition(payload) else {
        return false;
    };
    parts.insert(id, Bytes::copy_from_slice(part));
    true
}

/// Whether a caller's payload would be taken for a definition.
pub(crate) fn reserved(payload: &[u8]) -> bool {
    payload.starts_with(&[MARK, DEFINITION])
}

/// The ids a record with references uses, in order (repeats included);
/// an item is `None` if a reference is cut short.
pub(crate) fn refs(payload: &[u8]) -> Refs<'_> {
    Refs {
        rest: payload.get(2..).unwrap_or_default(),
    }
}

/// What [`refs`] returns.
pub(crate) struct Refs<'a> {
    rest: &'a [u8],
}

impl Iterator for Refs<'_> {
    type Item = Option<u32>;

    fn next(&mut self) -> Option<Option<u32>> {
        let at = memchr::memchr(MARK, self.rest)?;
        let Some(id) = self.rest.get(at + 1..at + REF_LEN) else {
            self.rest = &[];
            return Some(None);
        };
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        self.rest = &self.rest[at + REF_LEN..];
        Some(Some(id))
    }
}

/// The parts a reader knows, by id: looked up twice per record, so hashed
/// with one multiplication rather than SipHash (ids are not chosen by
/// anyone who could exploit a weak hash).
pub(crate) type PartMap = HashMap<u32, Bytes, BuildHasherDefault<IdHasher>>;

/// The hasher of [`PartMap`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Why a record with references could not be put back together.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// A reference is cut short.
    Malformed,
    /// No definition of this part was seen in the segment.
    Unknown(u32),
}

/// Writes the record's bytes with every reference replaced by its part.
pub(crate) fn expand(
    payload: &[u8],
    parts: &PartMap,
    out: &mut impl BufMut,
) -> Result<(), Unresolved> {
    let mut rest = payload.get(2..).unwrap_or_default();
    while let Some(at) = memchr::memchr(MARK, rest) {
        let id = rest
            .get(at + 1..at + REF_LEN)
            .ok_or(Unresolved::Malformed)?;
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        let part = parts.get(&id).ok_or(Unresolved::Unknown(id))?;
        out.put_slice(&rest[..at]);
        out.put_slice(part);
        rest = &rest[at + REF_LEN..];
    }
    out.put_slice(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str) -> String {
        format!("{{\"prefect.resource.id\":\"{text}\",\"padding\":\"................\"}}")
    }

    #[test]
    fn parts_are_registered_once_and_put_back() {
        let a = part("shared.test.a");
        let b = part("shared.test.b");
        let ia = intern(a.as_bytes()).expect("registered");
        assert_eq!(intern(a.as_bytes()), Some(ia), "same bytes, same id");
        let ib = intern(b.as_bytes()).expect("registered");
        assert_ne!(ia, ib);
        let mut rec = vec![MARK, WITH_REFS];
        rec.extend_from_slice(b"{\"resource\":");
        write_ref(&mut rec, ia);
        rec.extend_from_slice(b",\"related\":[");
        write_ref(&mut rec, ib);
        write_ref(&mut rec, ia);
        rec.extend_from_slice(b"]}");
        assert!(has_refs(&rec));
        assert_eq!(
            refs(&rec).collect::<Vec<_>>(),
            [Some(ia), Some(ib), Some(ia)]
        );
        let mut parts = PartMap::default();
        for id in [ia, ib] {
            let def = definition(id).expect("defined");
            let (got, bytes) = as_definition(&def).expect("a definition");
            assert_eq!(got, id);
            parts.insert(id, Bytes::copy_from_slice(bytes));
        }
        let mut out = Vec::new();
        expand(&rec, &parts, &mut out).expect("expands");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            format!("{{\"resource\":{a},\"related\":[{b}{a}]}}")
        );
    }

    #[test]
    fn what_cannot_be_put_back_says_why() {
        let parts = PartMap::default();
        let mut rec = vec![MARK, WITH_REFS, b'{'];
        write_ref(&mut rec, 4_000_000);
        rec.push(b'}');
        assert_eq!(
            expand(&rec, &parts, &mut Vec::new()),
            Err(Unresolved::Unknown(4_000_000))
        );
        assert_eq!(
            expand(&[MARK, WITH_REFS, b'{', MARK, 1], &parts, &mut Vec::new()),
            Err(Unresolved::Malformed)
        );
        let mut plain = Vec::new();
        expand(&[MARK, WITH_REFS, b'{', b'}'], &parts, &mut plain).expect("no refs");
        assert_eq!(plain, b"{}");
    }

    #[test]
    fn small_large_and_marked_parts_stay_inline() {
        assert_eq!(intern(b"{\"a\":1}"), None);
        assert_eq!(intern(&vec![b'x'; MAX_PART + 1]), None);
        assert_eq!(intern(&[b'x', 0, b'y'].repeat(20)), None);
        assert!(reserved(&[MARK, DEFINITION, 1, 0, 0, 0]));
        assert!(!reserved(b"{}"));
    }
}
