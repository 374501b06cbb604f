//! [`MemStorage`]: an in-memory [`Storage`] that knows what was synced, for
//! tests that cut the power.
//!
//! Every file keeps its current bytes and the bytes it had at its last
//! `sync`; every directory keeps its current entries and the entries it had
//! at its last `sync_dir`. [`MemStorage::power_cut`] throws away everything
//! not synced, the most a POSIX file system is allowed to lose: a created,
//! renamed or removed name whose directory was not synced reverts too.
//! [`MemStorage::set_capacity`] makes appends fail with `ENOSPC` (after
//! writing what fits, as a real short write does).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::{ReadFile, Storage, WriteFile};

/// In-memory storage with power-cut simulation. Clones share the same
/// files, so a test can keep one and reopen the queue on it.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

type FileRef = Arc<Mutex<MemFile>>;

#[derive(Debug, Default)]
struct MemState {
    dirs: HashMap<PathBuf, MemDir>,
    /// Total bytes the files named in any directory may hold.
    capacity: Option<u64>,
}

#[derive(Debug, Default)]
struct MemDir {
    entries: BTreeMap<String, FileRef>,
    synced: BTreeMap<String, FileRef>,
}

#[derive(Debug)]
struct MemFile {
    data: Vec<u8>,
    synced: Vec<u8>,
    created: SystemTime,
    modified: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok((dir, name.to_owned()))
}

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

impl MemState {
    fn file(&self, path: &Path) -> io::Result<FileRef> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.entries.get(&name))
            .cloned()
            .ok_or_else(not_found)
    }

    fn used(&self) -> u64 {
        self.dirs
            .values()
            .flat_map(|d| d.entries.values())
            .map(|f| lock(f).data.len() as u64)
            .sum()
    }
}

impl MemStorage {
    /// A fresh, empty storage.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Forgets every write, creation, rename and removal not yet synced.
    pub fn power_cut(&self) {
        let mut state = lock(&self.state);
        let mut files: Vec<FileRef> = Vec::new();
        for dir in state.dirs.values_mut() {
            files.extend(dir.entries.values().cloned());
            files.extend(dir.synced.values().cloned());
            dir.entries = dir.synced.clone();
        }
        for file in files {
            let mut f = lock(&file);
            f.data = f.synced.clone();
        }
    }

    /// Limits the bytes all files together may hold (`None`: unlimited).
    pub fn set_capacity(&self, capacity: Option<u64>) {
        lock(&self.state).capacity = capacity;
    }

    /// The current bytes of a file, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        state.file(path).ok().map(|f| lock(&f).data.clone())
    }

    /// Moves a file's creation and modification times `by` into the past,
    /// as if it had been created that much earlier.
    pub fn backdate(&self, path: &Path, by: std::time::Duration) {
        let state = lock(&self.state);
        if let Ok(file) = state.file(path) {
            let mut f = lock(&file);
            f.created = f.created.checked_sub(by).unwrap_or(f.created);
            f.modified = f.modified.checked_sub(by).unwrap_or(f.modified);
        }
    }

    /// Replaces a file's bytes, synced, as if the disk held them (to plant
    /// damage).
    pub fn write_file_synced(&self, path: &Path, bytes: &[u8]) {
        if let Ok(mut file) = self.create(path) {
            // In-memory writes cannot fail while capacity is unlimited;
            // tests planting damage do not set one.
            let _ = file.append(bytes);
            let _ = file.sync();
        }
        let _ = self.sync_dir(path.parent().unwrap_or(Path::new("")));
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        lock(&self.state).dirs.entry(dir.to_path_buf()).or_default();
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let dir = state.dirs.get(dir).ok_or_else(not_found)?;
        Ok(dir.entries.keys().cloned().collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let (dir, name) = split(path)?;
        let mut state = lock(&self.state);
        let dir = state.dirs.get_mut(&dir).ok_or_else(not_found)?;
        let now = SystemTime::now();
        let file = Arc::new(Mutex::new(MemFile {
            data: Vec::new(),
            synced: Vec::new(),
            created: now,
            modified: now,
        }));
        dir.entries.insert(name, file.clone());
        Ok(Box::new(MemHandle {
            state: self.state.clone(),
            file,
            at: 0,
        }))
    }

    fn reuse(&self, from: &Path, to: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.rename(from, to)?;
        let file = lock(&self.state).file(to)?;
        Ok(Box::new(MemHandle {
            state: self.state.clone(),
            file,
            at: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = lock(&self.state).file(path)?;
        let at = lock(&file).data.len();
        Ok(Box::new(MemHandle {
            state: self.state.clone(),
            file,
            at,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        let file = lock(&self.state).file(path)?;
        Ok(Arc::new(MemHandle {
            state: self.state.clone(),
            file,
            at: 0,
        }))
    }

    fn times(&self, path: &Path) -> io::Result<(Option<SystemTime>, SystemTime)> {
        let file = lock(&self.state).file(path)?;
        let f = lock(&file);
        Ok((Some(f.created), f.modified))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let mut state = lock(&self.state);
        let file = state
            .dirs
            .get_mut(&from_dir)
            .and_then(|d| d.entries.remove(&from_name))
            .ok_or_else(not_found)?;
        state
            .dirs
            .get_mut(&to_dir)
            .ok_or_else(not_found)?
            .entries
            .insert(to_name, file);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut state = lock(&self.state);
        state
            .dirs
            .get_mut(&dir)
            .and_then(|d| d.entries.remove(&name))
            .map(|_| ())
            .ok_or_else(not_found)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let dir = state.dirs.get_mut(dir).ok_or_else(not_found)?;
        dir.synced = dir.entries.clone();
        Ok(())
    }
}

/// An open in-memory file; it keeps the file alive after removal.
struct MemHandle {
    state: Arc<Mutex<MemState>>,
    file: FileRef,
    /// Where the next write goes (a writing handle is the file's only one).
    at: usize,
}

impl WriteFile for MemHandle {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let room = {
            let state = lock(&self.state);
            state
                .capacity
                .map(|cap| cap.saturating_sub(state.used()) as usize)
        };
        let mut f = lock(&self.file);
        f.modified = SystemTime::now();
        let at = self.at.min(f.data.len());
        // Writing over old bytes (a reused file) takes no room.
        let over = (f.data.len() - at).min(buf.len());
        let fits = room.map_or(buf.len(), |room| buf.len().min(over + room));
        let end = at + fits;
        if end > f.data.len() {
            f.data.resize(end, 0);
        }
        f.data[at..end].copy_from_slice(&buf[..fits]);
        self.at = end;
        if fits < buf.len() {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut f = lock(&self.file);
        f.synced = f.data.clone();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut f = lock(&self.file);
        f.data.truncate(len as usize);
        self.at = len as usize;
        Ok(())
    }
}

impl ReadFile for MemHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let f = lock(&self.file);
        let start = (offset as usize).min(f.data.len());
        let n = buf.len().min(f.data.len() - start);
        buf[..n].copy_from_slice(&f.data[start..start + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.file).data.len() as u64)
    }
}
