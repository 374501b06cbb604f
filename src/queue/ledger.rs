//! The ack ledger: the highest seq through which every record has been
//! delivered (or dropped), persisted atomically.
//!
//! File `ack.ledger`, 20 bytes: `b"HRLDACK1"` (magic and format version) |
//! `u64 acked_through` (little-endian) | `u32 crc32c` of the 16 bytes before
//! it. It is replaced by writing `ack.ledger.tmp`, fsyncing it, renaming it
//! over `ack.ledger` and fsyncing the directory, so a crash leaves either
//! the old or the new ledger, never a mix. This module only reads and
//! writes the file; when to write it is the queue's business.

use std::io;
use std::path::Path;

use super::error::QueueError;
use super::storage::Storage;

/// The ledger's file name inside the queue directory.
pub const FILE_NAME: &str = "ack.ledger";
/// The temporary name a new ledger is written under before the rename.
pub const TMP_NAME: &str = "ack.ledger.tmp";

const MAGIC: &[u8; 8] = b"HRLDACK1";
const LEN: usize = 20;

/// What was found where the ledger should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStatus {
    /// A valid ledger.
    Valid,
    /// No ledger: a new queue, or one that never acked.
    Missing,
    /// Unreadable or damaged; the queue redelivers from its oldest record
    /// rather than guess how far it got.
    Corrupt,
}

/// Reads the ledger: the acked-through seq (0 when missing or corrupt, so
/// nothing is skipped) and what was found.
pub fn read(storage: &dyn Storage, dir: &Path) -> (u64, LedgerStatus) {
    let path = dir.join(FILE_NAME);
    let file = match storage.open_read(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (0, LedgerStatus::Missing),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "QueueLedgerUnreadable");
            return (0, LedgerStatus::Corrupt);
        }
    };
    let mut buf = [0u8; LEN];
    let ok = matches!(file.size(), Ok(len) if len == LEN as u64)
        && file.read_exact_at(&mut buf, 0).is_ok();
    match ok.then(|| decode(&buf)).flatten() {
        Some(acked) => (acked, LedgerStatus::Valid),
        None => (0, LedgerStatus::Corrupt),
    }
}

fn encode(acked: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&acked.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..16]);
    buf[16..].copy_from_slice(&crc.to_le_bytes());
    buf
}

fn decode(buf: &[u8; LEN]) -> Option<u64> {
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[16..]);
    if &buf[..8] != MAGIC || crc32c::crc32c(&buf[..16]) != u32::from_le_bytes(crc) {
        return None;
    }
    let mut acked = [0u8; 8];
    acked.copy_from_slice(&buf[8..16]);
    Some(u64::from_le_bytes(acked))
}

/// Persists `acked` atomically.
///
/// # Errors
/// The I/O step that failed; the previous ledger is then still in place.
pub fn write(storage: &dyn Storage, dir: &Path, acked: u64) -> Result<(), QueueError> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    let mut file = storage
        .create(&tmp)
        .map_err(|e| QueueError::io("create ledger", &tmp, e))?;
    file.append(&encode(acked))
        .map_err(|e| QueueError::io("write ledger", &tmp, e))?;
    file.sync()
        .map_err(|e| QueueError::io("sync ledger", &tmp, e))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(|e| QueueError::io("rename ledger", &path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| QueueError::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::storage::MemStorage;

    #[test]
    fn write_then_read_survives_power_cut() {
        let s = MemStorage::new();
        let dir = Path::new("/q");
        s.create_dir_all(dir).unwrap();
        assert_eq!(read(&s, dir), (0, LedgerStatus::Missing));
        write(&s, dir, 41).unwrap();
        write(&s, dir, 42).unwrap();
        s.power_cut();
        assert_eq!(read(&s, dir), (42, LedgerStatus::Valid));
    }

    #[test]
    fn damaged_ledger_reads_as_corrupt_zero() {
        let s = MemStorage::new();
        let dir = Path::new("/q");
        s.create_dir_all(dir).unwrap();
        let mut bytes = encode(7);
        bytes[9] ^= 1;
        s.write_file_synced(&dir.join(FILE_NAME), &bytes);
        assert_eq!(read(&s, dir), (0, LedgerStatus::Corrupt));
        s.write_file_synced(&dir.join(FILE_NAME), b"short");
        assert_eq!(read(&s, dir), (0, LedgerStatus::Corrupt));
    }
}
