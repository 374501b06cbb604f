//! The on-disk record codec: encoding a record into a batch buffer, decoding
//! one at an offset, and finding the next valid record after damage.
//!
//! This module knows bytes only; it does not know files, segments or the
//! ledger. The format is described in the [queue module doc](super).

use std::ops::Range;

/// Bytes before the payload: `u32 len | u32 crc32c | u64 seq`.
pub const HEADER_LEN: usize = 16;

/// The largest payload a record can carry (the `len` field is a `u32`).
pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize;

/// Bytes a payload of `payload_len` bytes takes on disk.
pub fn encoded_len(payload_len: usize) -> u64 {
    (HEADER_LEN + payload_len) as u64
}

/// Appends one encoded record to `buf`.
///
/// The caller has checked `payload.len() <= MAX_PAYLOAD_LEN`; a longer
/// payload would be written with a wrapped length and read back as corrupt,
/// which is why the check happens at the API boundary, not here.
#[cfg(test)]
pub fn encode_into(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&encode_header(seq, payload));
    buf.extend_from_slice(payload);
}

/// The header of a record: what [`encode_into`] writes before the
/// payload.
pub fn encode_header(seq: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let len = (payload.len() as u32).to_le_bytes();
    let seq = seq.to_le_bytes();
    let crc = checksum(len, seq, payload);
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&len);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header[8..16].copy_from_slice(&seq);
    header
}

/// CRC-32C over `len | seq | payload`: every byte of the record but the
/// checksum itself, so a torn or bit-flipped header fails as surely as a
/// damaged payload.
fn checksum(len: [u8; 4], seq: [u8; 8], payload: &[u8]) -> u32 {
    // One call for both header fields: the same CRC as two, for less work.
    let mut fields = [0u8; 12];
    fields[..4].copy_from_slice(&len);
    fields[4..].copy_from_slice(&seq);
    crc32c::crc32c_append(crc32c::crc32c(&fields), payload)
}

/// What [`decode`] found at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole record whose checksum matches.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Where its payload lies in the buffer.
        payload: Range<usize>,
        /// Offset just past it.
        end: usize,
    },
    /// The buffer ends before the record does; `needed` is how many bytes
    /// from the offset would settle it. Whether that is a torn tail or just
    /// a short read is for the caller to say: only it knows where the file
    /// ends.
    Incomplete {
        /// Bytes from the offset needed to decode the record.
        needed: usize,
    },
    /// The bytes at the offset are not a record (checksum mismatch).
    Invalid,
}

/// Decodes the record starting at `pos` in `buf`.
pub fn decode(buf: &[u8], pos: usize) -> Decoded {
    let Some(header) = buf.get(pos..pos + HEADER_LEN) else {
        return Decoded::Incomplete { needed: HEADER_LEN };
    };
    let (len, crc, seq) = split_header(header);
    let end = pos + HEADER_LEN + len as usize;
    let Some(payload) = buf.get(pos + HEADER_LEN..end) else {
        return Decoded::Incomplete {
            needed: HEADER_LEN + len as usize,
        };
    };
    if checksum(len.to_le_bytes(), seq.to_le_bytes(), payload) != crc {
        return Decoded::Invalid;
    }
    Decoded::Record {
        seq,
        payload: pos + HEADER_LEN..end,
        end,
    }
}

/// Reads the `len`, `crc` and `seq` fields of a 16-byte header.
pub fn split_header(header: &[u8]) -> (u32, u32, u64) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    let mut seq = [0u8; 8];
    len.copy_from_slice(&header[0..4]);
    crc.copy_from_slice(&header[4..8]);
    seq.copy_from_slice(&header[8..16]);
    (
        u32::from_le_bytes(len),
        u32::from_le_bytes(crc),
        u64::from_le_bytes(seq),
    )
}

/// Whether a record header at `pos` carrying `seq` could follow the last
/// good record (`prev_seq`, ending at `prev_end`) in the same segment.
///
/// Sequence numbers inside a segment are consecutive, and every lost record
/// took at least [`HEADER_LEN`] bytes, so after `n` damaged bytes the next
/// good record's seq is at most `prev_seq + 1 + n / HEADER_LEN`. This bound
/// rejects almost every false candidate before its checksum is computed,
/// which keeps resynchronization linear.
pub fn plausible_seq(seq: u64, prev_seq: u64, prev_end: u64, pos: u64) -> bool {
    let max_lost = pos.saturating_sub(prev_end) / HEADER_LEN as u64;
    seq > prev_seq && seq - prev_seq <= max_lost.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, seq, payload);
        buf
    }

    #[test]
    fn layout_is_little_endian_len_crc_seq_payload() {
        let buf = encoded(0x0102_0304_0506_0708, b"hi");
        assert_eq!(buf.len(), HEADER_LEN + 2);
        assert_eq!(&buf[0..4], &[2, 0, 0, 0]);
        assert_eq!(&buf[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&buf[16..], b"hi");
        // The checksum covers len, seq and payload in that order.
        let mut covered = Vec::new();
        covered.extend_from_slice(&buf[0..4]);
        covered.extend_from_slice(&buf[8..]);
        assert_eq!(&buf[4..8], &crc32c::crc32c(&covered).to_le_bytes());
    }

    #[test]
    fn round_trip_several_records() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, b"{\"a\":1}");
        encode_into(&mut buf, 8, b"");
        encode_into(&mut buf, 9, &[b'x'; 1000]);
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            match decode(&buf, pos) {
                Decoded::Record { seq, payload, end } => {
                    seen.push((seq, payload.len()));
                    pos = end;
                }
                other => panic!("unexpected {other:?} at {pos}"),
            }
        }
        assert_eq!(seen, vec![(7, 7), (8, 0), (9, 1000)]);
    }

    #[test]
    fn short_buffers_are_incomplete_not_invalid() {
        let buf = encoded(1, b"payload");
        for cut in 0..buf.len() {
            let needed = if cut < HEADER_LEN {
                HEADER_LEN
            } else {
                buf.len()
            };
            assert_eq!(decode(&buf[..cut], 0), Decoded::Incomplete { needed });
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let buf = encoded(42, b"{\"event\":\"x\"}");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                match decode(&damaged, 0) {
                    Decoded::Record { .. } => panic!("flip at {byte}:{bit} went unnoticed"),
                    Decoded::Invalid | Decoded::Incomplete { .. } => {}
                }
            }
        }
    }

    #[test]
    fn plausible_seq_bounds_the_jump_by_damaged_bytes() {
        assert!(plausible_seq(11, 10, 100, 100));
        assert!(!plausible_seq(12, 10, 100, 100));
        assert!(!plausible_seq(10, 10, 100, 200));
        assert!(plausible_seq(12, 10, 100, 116));
        assert!(!plausible_seq(13, 10, 100, 116));
        assert!(!plausible_seq(u64::MAX, 0, 0, 1 << 20));
    }
}
