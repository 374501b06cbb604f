//! What a file *is*, independent of its name: a hash of its first bytes.
//!
//! A rotated file keeps its content and changes its name; a copy keeps its
//! content and changes its inode; a truncated file keeps both and changes
//! its content. Hashing the leading bytes follows the content, which is
//! what a checkpoint describes. Device and inode only tell apart two open
//! files whose first bytes happen to be equal (see `Store::claim`).
//!
//! The hash is XXH3, whose output is fixed by its specification, so a
//! fingerprint (and every event id derived from it) stays the same across
//! herald versions.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// A file's identity: the hash of its first `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    /// XXH3-128 of the leading bytes.
    pub hash: u128,
    /// How many bytes were hashed: the configured length, or less for a
    /// file that stayed shorter than that past the timeout.
    pub len: u32,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint {
            hash: xxh3_128(bytes),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }

    /// A fingerprint told apart from `self` by the file's device and
    /// inode, for a second live file whose leading bytes equal another's.
    pub fn mixed_with(self, dev: u64, ino: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&self.hash.to_le_bytes());
        bytes[16..24].copy_from_slice(&dev.to_le_bytes());
        bytes[24..].copy_from_slice(&ino.to_le_bytes());
        Fingerprint {
            hash: xxh3_128(&bytes),
            len: self.len,
        }
    }

    /// The bytes that go into a line's identity.
    pub fn to_bytes(self) -> [u8; 16] {
        self.hash.to_le_bytes()
    }
}

/// The hash of a line, part of its identity: a different line written at
/// the same offset (after a truncation) gets a different id.
pub fn line_hash(line: &[u8]) -> u64 {
    xxh3_64(line)
}

/// Reads up to `len` bytes from the start of `file` into `buf` (cleared
/// first) and returns how many it got.
///
/// # Errors
/// When the read fails.
pub fn read_head(file: &File, len: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(got)
}

/// A check of the bytes just before an offset: their count and hash. A
/// file whose bytes there changed was rewritten, and is read from its
/// start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TailCheck {
    /// How many bytes (at most [`TAIL_CHECK_BYTES`]).
    pub len: u8,
    /// Their XXH3-64.
    pub hash: u64,
}

/// How many bytes before an offset are checked.
pub const TAIL_CHECK_BYTES: usize = 64;

impl TailCheck {
    /// The check of `bytes` (at most the last [`TAIL_CHECK_BYTES`] count).
    pub fn of(bytes: &[u8]) -> Self {
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_CHECK_BYTES)..];
        TailCheck {
            len: bytes.len() as u8,
            hash: xxh3_64(bytes),
        }
    }

    /// The check of the bytes of `file` just before `offset`.
    ///
    /// # Errors
    /// When they cannot be read (the file is shorter than `offset`).
    pub fn read(file: &File, offset: u64) -> io::Result<Self> {
        let len = usize::try_from(offset.min(TAIL_CHECK_BYTES as u64)).unwrap_or(0);
        let mut buf = [0u8; TAIL_CHECK_BYTES];
        file.read_exact_at(&mut buf[..len], offset - len as u64)?;
        Ok(TailCheck::of(&buf[..len]))
    }

    /// Whether `file` still holds the checked bytes just before `offset`.
    ///
    /// # Errors
    /// When the read fails.
    pub fn holds(&self, file: &File, offset: u64) -> io::Result<bool> {
        let len = u64::from(self.len);
        if len == 0 {
            return Ok(true);
        }
        if offset < len {
            return Ok(false);
        }
        let mut buf = [0u8; TAIL_CHECK_BYTES];
        let buf = &mut buf[..usize::from(self.len)];
        match file.read_exact_at(buf, offset - len) {
            Ok(()) => Ok(xxh3_64(buf) == self.hash),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprints_follow_content_and_are_stable() {
        let a = Fingerprint::of(b"hello");
        assert_eq!(a, Fingerprint::of(b"hello"));
        assert_ne!(a, Fingerprint::of(b"hellO"));
        assert_eq!(a.len, 5);
        // Fixed by the XXH3 specification: ids must not change between
        // versions of herald.
        assert_eq!(line_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_ne!(a.mixed_with(1, 2), a.mixed_with(1, 3));
    }

    #[test]
    fn tail_checks_see_rewrites() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"first line\nsecond line\n").expect("write");
        let check = TailCheck::of(b"first line\n");
        assert!(check.holds(&file, 11).expect("read"));
        assert!(!check.holds(&file, 12).expect("read"));
        assert!(!check.holds(&file, 5).expect("read"));
        assert!(!TailCheck::of(b"x").holds(&file, 1000).expect("read"));
        assert!(TailCheck::default().holds(&file, 0).expect("read"));
    }
}
