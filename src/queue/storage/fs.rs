//! [`Storage`] on the real file system (`std::fs`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{ReadFile, Storage, WriteFile};

/// The real file system. Files are created 0600 and directories 0700, as
/// the data_dir holds event contents that may be sensitive.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(FsFile(file)))
    }

    fn reuse(&self, from: &Path, to: &Path) -> io::Result<Box<dyn WriteFile>> {
        fs::rename(from, to)?;
        // Neither `truncate` nor `append`: writes start at 0, over the old
        // bytes.
        let file = OpenOptions::new().write(true).open(to)?;
        Ok(Box::new(FsFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(FsFile(file)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(FsReadFile {
            file: File::open(path)?,
            cursor: Mutex::new(()),
        }))
    }

    fn times(&self, path: &Path) -> io::Result<(Option<SystemTime>, SystemTime)> {
        let meta = fs::metadata(path)?;
        Ok((meta.created().ok(), meta.modified()?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The most slices one `writev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// One open file; `append` writes at the file's cursor: the end with
/// `O_APPEND` or after `create`, the start after `reuse`. `truncate` moves
/// the cursor to the new end.
struct FsFile(File);

impl WriteFile for FsFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn append_vectored(&mut self, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        // Drops leading empty slices, so that a zero-byte write below
        // means the file took nothing.
        io::IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let take = bufs.len().min(IOV_MAX);
            match self.0.write_vectored(&bufs[..take]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        // `create` and `reuse` do not use O_APPEND; move the cursor so the
        // next append lands at the new end.
        io::Seek::seek(&mut self.0, io::SeekFrom::Start(len)).map(|_| ())
    }
}

/// A segment open for reading.
struct FsReadFile {
    file: File,
    /// Held while the file's own position is used (seek, then read), so
    /// concurrent reads through one handle do not move it under each other.
    cursor: Mutex<()>,
}

impl ReadFile for FsReadFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Asks for the first and the last byte without waiting
    /// (`RWF_NOWAIT`): the kernel answers from the page cache or not at
    /// all. Segments are written and read front to back and the page cache
    /// lets go of the pages it used longest ago first, so when both ends
    /// are there the middle is too. Kernels or file systems without
    /// `RWF_NOWAIT` answer no.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn is_cached(&self, offset: u64, len: u64) -> bool {
        let present = |at: u64| {
            let mut byte = [0u8; 1];
            matches!(
                rustix::io::preadv2(
                    &self.file,
                    &mut [io::IoSliceMut::new(&mut byte)],
                    at,
                    rustix::io::ReadWriteFlags::NOWAIT,
                ),
                Ok(1)
            )
        };
        len > 0 && present(offset) && present(offset + len - 1)
    }

    /// Reads into the vector's spare capacity, which `Read::read_to_end`
    /// does without zeroing it first (a positional read cannot, safely).
    fn read_vec_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        buf.clear();
        buf.reserve(len);
        let _cursor = self.cursor.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))?;
        file.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_vec_at_reads_exactly_what_read_exact_at_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("segment");
        let mut file = FsStorage.create(&path).expect("create");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        file.append(&data).expect("append");
        let read = FsStorage.open_read(&path).expect("open");
        for (offset, len) in [(0, 10_000), (1, 0), (17, 4096), (9_000, 1_000)] {
            let mut expected = vec![0; len];
            read.read_exact_at(&mut expected, offset as u64)
                .expect("read_exact_at");
            let got = read
                .read_vec_at(offset as u64, len, Vec::new())
                .expect("read_vec_at");
            assert_eq!(got, expected, "offset {offset}, len {len}");
            assert_eq!(got, data[offset..offset + len]);
        }
        // The cursor the read used does not disturb positional reads.
        let mut byte = [0u8; 1];
        read.read_exact_at(&mut byte, 5).expect("read_exact_at");
        assert_eq!(byte[0], data[5]);
        let short = read
            .read_vec_at(9_999, 2, Vec::new())
            .expect_err("past the end");
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }
}
