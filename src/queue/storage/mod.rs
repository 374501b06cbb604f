//! The narrow file-system interface the queue does all its I/O through.
//!
//! The queue needs few operations: create (or reuse), append, sync and
//! truncate a file, read at an offset, rename, remove, list and sync a
//! directory. Keeping
//! them behind [`Storage`] lets tests swap in [`MemStorage`], which
//! remembers what was synced and can simulate a power cut by forgetting the
//! rest. [`FsStorage`] is the real thing (`std::fs`). Both are blocking: the
//! queue calls them from its writer thread or `spawn_blocking`, and from an
//! async task only to read what [`ReadFile::is_cached`] says is in memory.

mod fs;
mod mem;

pub use fs::FsStorage;
pub use mem::MemStorage;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// File-system operations the queue uses. Files it creates are 0600.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and missing parents (mode 0700).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Names of the regular files in `dir`.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Creates `path` empty (replacing any file of that name) for appending.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;

    /// Renames the existing file `from` to `to` (replacing `to`) and opens
    /// it to be written again from its start, as [`Storage::create`] would,
    /// except that the file keeps its size and its blocks: an append writes
    /// over the old bytes instead of growing the file, which spares the file
    /// system allocating blocks and updating the size on every `fdatasync`.
    /// The old bytes stay until written over. The rename is durable only
    /// after [`Storage::sync_dir`].
    ///
    /// # Errors
    /// The underlying I/O error (`NotFound` when `from` does not exist).
    fn reuse(&self, from: &Path, to: &Path) -> io::Result<Box<dyn WriteFile>>;

    /// Opens an existing file for appending at its end.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;

    /// Opens an existing file for positional reads. The handle stays
    /// readable after the file is removed, as an open file does on Unix.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;

    /// When the file was created (if the file system records it) and last
    /// modified.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn times(&self, path: &Path) -> io::Result<(Option<SystemTime>, SystemTime)>;

    /// Renames `from` to `to`, replacing `to`. Durable only after
    /// [`Storage::sync_dir`].
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. Durable only after [`Storage::sync_dir`].
    ///
    /// # Errors
    /// The underlying I/O error.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creations, renames, removals) durable.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file open for appending. "The end" is where the last write through
/// this handle stopped (or where [`WriteFile::truncate`] cut it): the end of
/// the file, except for a file opened by [`Storage::reuse`], whose old bytes
/// past it are written over.
pub trait WriteFile: Send {
    /// Writes all of `buf` at the end. On error, part of `buf` may have
    /// been written; the caller truncates it away.
    ///
    /// # Errors
    /// The underlying I/O error (`ENOSPC` on a full disk).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Writes all of `bufs`, in order, at the end, as
    /// [`WriteFile::append`] would write them joined. On error, part may
    /// have been written; the caller truncates it away.
    ///
    /// # Errors
    /// The underlying I/O error (`ENOSPC` on a full disk).
    fn append_vectored(&mut self, bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        for buf in bufs.iter() {
            self.append(buf)?;
        }
        Ok(())
    }

    /// Makes the file's data durable (`fdatasync`).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync(&mut self) -> io::Result<()>;

    /// Cuts the file to `len` bytes; the next write goes there.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A file open for positional reads.
pub trait ReadFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at the end of the file).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// The file's current size in bytes.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn size(&self) -> io::Result<u64>;

    /// Whether reading `len` bytes at `offset` would be served from memory
    /// (the page cache) without waiting for the disk, as far as can be
    /// told cheaply; `false` when unsure. The queue reads such bytes on the
    /// async worker instead of handing the read to a blocking thread.
    fn is_cached(&self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        false
    }

    /// Reads exactly `len` bytes at `offset` into `buf` (emptied first;
    /// its capacity is reused), or fails with `UnexpectedEof`. A backend
    /// that can read into uninitialized memory saves zeroing the buffer
    /// first.
    ///
    /// # Errors
    /// The underlying I/O error, or `UnexpectedEof` if the file is shorter.
    fn read_vec_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        buf.clear();
        buf.resize(len, 0);
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    ///
    /// # Errors
    /// The underlying I/O error, or `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
