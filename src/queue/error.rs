//! The queue's error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong with the queue. Damaged queue content is never an
/// error: recovery skips and counts it. Errors are I/O the queue could not
/// complete, misuse, or a closed queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file-system operation failed; `op` says which, `path` on what.
    #[error("queue {op} failed on {path}")]
    Io {
        /// The operation, e.g. "append to segment".
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error (`ENOSPC` on a full disk).
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work.
    #[error("invalid queue config: {0}")]
    Config(String),
    /// The queue was closed (or its writer stopped); nothing more is appended.
    #[error("the queue is closed")]
    Closed,
    /// One append asked for more room than the whole queue has, so it could
    /// never fit.
    #[error("an append of {bytes} bytes cannot fit in a queue of max_bytes {max_bytes}")]
    BatchTooLarge {
        /// Encoded size of the append.
        bytes: u64,
        /// The configured cap.
        max_bytes: u64,
    },
    /// A payload longer than a record can describe (`u32` length).
    #[error("a record payload of {len} bytes exceeds the 4 GiB record limit")]
    RecordTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// A payload that begins like the queue's own definition records
    /// (see the `shared` module); JSON never does.
    #[error("a record payload may not begin with the bytes 0x00 0x44")]
    ReservedPayload,
    /// `ack` named a seq the reader has not handed out yet.
    #[error("ack up to seq {up_to} is beyond the last record read (seq {last_read})")]
    AckBeyondRead {
        /// The seq passed to `ack`.
        up_to: u64,
        /// The highest seq `next_batch` has returned.
        last_read: u64,
    },
    /// `Queue::reader` was called twice; the queue has exactly one reader.
    #[error("the queue already has a reader")]
    ReaderTaken,
}

impl QueueError {
    /// Wraps an I/O error with what was being done and where.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        QueueError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
