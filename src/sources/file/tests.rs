//! The rescan's lifecycle reports, driven scan by scan from the test's
//! thread (the end-to-end behaviour is in `tests/file_*.rs`).

use super::*;

/// A source over `dir/<glob>` with `watch = true`, driven scan by scan
/// from the test's thread.
struct Rig {
    source: Source,
    rx: tokio::sync::mpsc::Receiver<Vec<Observation>>,
    _runtime: tokio::runtime::Runtime,
    _wake: Receiver<()>,
}

impl Rig {
    fn new(dir: &Path, glob: &str) -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = FileConfig::new("app", &[&format!("{}/{glob}", dir.display())]);
        config.watch = true;
        config.tail = false;
        config.rescan_interval = Duration::from_millis(200);
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let (wake_tx, wake) = sync_channel(1);
        let name: Arc<str> = Arc::from("app");
        let store = Arc::new(Store::empty(dir.join("state.json")));
        let watch = Watch::start(name, wake_tx);
        let source = Source::new(
            config,
            store,
            Arc::new(Stats::default()),
            Emitter::new(tx),
            CancellationToken::new(),
            runtime.handle().clone(),
            watch,
        );
        let mut rig = Rig {
            source,
            rx,
            _runtime: runtime,
            _wake: wake,
        };
        assert!(rig.source.rescan(true).is_ok());
        assert_eq!(rig.scan(), Vec::<(String, String)>::new());
        rig
    }

    /// One rescan; the `file.*` kinds it reported, with their paths'
    /// file names.
    fn scan(&mut self) -> Vec<(String, String)> {
        assert!(self.source.rescan(false).is_ok());
        let mut out = Vec::new();
        while let Ok(batch) = self.rx.try_recv() {
            for o in batch {
                let path = o
                    .field("path")
                    .and_then(|p| p.as_str())
                    .map(|p| {
                        Path::new(p)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                    })
                    .unwrap_or_default()
                    .unwrap_or_default();
                out.push((o.kind.to_string(), path));
            }
        }
        out
    }

    /// Makes every departure seen so far older than the rotation
    /// window.
    fn age_departures(&mut self) {
        let long_ago = Instant::now()
            .checked_sub(self.source.rotation_window() * 2)
            .expect("an instant that long ago");
        for v in self.source.vacated.values_mut() {
            v.at = long_ago;
        }
    }
}

fn ev(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[test]
fn a_rotation_is_reported_as_such_when_both_steps_are_seen_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(
        rig.scan(),
        [
            ev("file.renamed", "app.log.1"),
            ev("file.rotated", "app.log")
        ]
    );
}

#[test]
fn a_rotation_is_reported_as_such_when_a_scan_falls_between_its_steps() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    assert_eq!(rig.scan(), [ev("file.renamed", "app.log.1")]);
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(rig.scan(), [ev("file.rotated", "app.log")]);
}

#[test]
fn a_rotation_to_a_name_the_globs_match_is_a_rotation_in_either_timing() {
    // The rotated name sorts before the live one (dateext style), and
    // the globs match both.
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    let old = dir.path().join("app-1.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, &old).expect("rename");
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(
        rig.scan(),
        [
            ev("file.renamed", "app-1.log"),
            ev("file.rotated", "app.log")
        ]
    );
    std::fs::remove_file(&old).expect("remove");
    std::fs::rename(&log, &old).expect("rename");
    assert_eq!(
        rig.scan(),
        [
            ev("file.renamed", "app-1.log"),
            ev("file.deleted", "app-1.log")
        ]
    );
    std::fs::write(&log, "three\n").expect("write");
    assert_eq!(rig.scan(), [ev("file.rotated", "app.log")]);
}

#[test]
fn a_file_deleted_and_created_again_soon_is_a_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::remove_file(&log).expect("remove");
    assert_eq!(rig.scan(), [ev("file.deleted", "app.log")]);
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(rig.scan(), [ev("file.rotated", "app.log")]);
}

#[test]
fn a_file_appearing_long_after_the_last_one_left_is_created() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    assert_eq!(rig.scan(), [ev("file.renamed", "app.log.1")]);
    // Two scans later and past the window, the path is free.
    assert_eq!(rig.scan(), []);
    rig.age_departures();
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(rig.scan(), [ev("file.created", "app.log")]);
}

#[test]
fn the_first_scan_after_a_departure_still_sees_a_rotation_however_late() {
    // The loop may have been held up (a full pipeline) between the
    // scan that saw the rename and the one that sees the new file.
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    assert_eq!(rig.scan(), [ev("file.renamed", "app.log.1")]);
    rig.age_departures();
    std::fs::write(&log, "two\n").expect("write");
    assert_eq!(rig.scan(), [ev("file.rotated", "app.log")]);
}

#[test]
fn a_file_renamed_back_is_renamed_not_rotated() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    let other = dir.path().join("other.log");
    std::fs::write(&log, "one\n").expect("write");
    let mut rig = Rig::new(dir.path(), "*.log");
    std::fs::rename(&log, &other).expect("rename");
    assert_eq!(rig.scan(), [ev("file.renamed", "other.log")]);
    std::fs::rename(&other, &log).expect("rename back");
    assert_eq!(rig.scan(), [ev("file.renamed", "app.log")]);
    std::fs::write(&other, "two\n").expect("write");
    assert_eq!(
        rig.scan(),
        [ev("file.rotated", "other.log")],
        "other.log was left a moment ago"
    );
}
