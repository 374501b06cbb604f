//! A full queue: `block` waits for acks, `drop_oldest` drops and counts,
//! and a full disk fails appends cleanly and recovers once space is back
//! (simulated in memory, and for real on a small tmpfs when we may mount
//! one).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::queue::storage::{MemStorage, Storage};
use herald::queue::{Appended, Queue, QueueConfig, QueueError, Reader, WhenFull};
use tokio::task::JoinHandle;

const MIB: u64 = 1024 * 1024;
/// 100 KiB payloads: ten fit in 1 MiB (with their 16-byte headers), an
/// eleventh does not.
const BIG: usize = 100 * 1024;

fn big(seq: u64) -> Vec<u8> {
    vec![(seq % 251) as u8; BIG]
}

fn config(when_full: WhenFull) -> QueueConfig {
    QueueConfig {
        max_bytes: MIB,
        segment_bytes: QueueConfig::MIN_SEGMENT_BYTES,
        when_full,
        ..QueueConfig::default()
    }
}

/// Polls `cond` until it holds or ten seconds pass.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A `block` queue under `dir` filled with records 1 to 10, and an append
/// of `records` waiting for room.
async fn full_with_a_blocked_append(
    dir: &Path,
    records: Vec<Vec<u8>>,
) -> (Queue, JoinHandle<Result<Appended, QueueError>>) {
    let (queue, _) = Queue::open(&dir.join("q"), config(WhenFull::Block)).unwrap();
    for seq in 1..=10 {
        queue.append(vec![big(seq)]).await.unwrap();
    }
    let q = queue.clone();
    let blocked = tokio::spawn(async move { q.append(records).await });
    eventually("the append to block", || {
        queue.metrics().blocked_appends == 1
    })
    .await;
    (queue, blocked)
}

#[tokio::test]
async fn block_waits_for_an_ack_to_free_room() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, blocked) = full_with_a_blocked_append(tmp.path(), vec![big(11)]).await;
    assert!(!blocked.is_finished());
    let mut reader = queue.reader().unwrap();
    let first = reader.next_batch(1, usize::MAX).await.unwrap();
    reader.ack(first[0].seq).await.unwrap();
    let appended = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("ack frees room")
        .unwrap()
        .unwrap();
    assert_eq!(appended.first_seq, 11);
    let m = queue.metrics();
    assert_eq!(
        (m.depth_events, m.dropped_total, m.blocked_appends),
        (10, 0, 0)
    );
    assert!(m.depth_bytes <= MIB);
    queue.close().await.unwrap();
}

/// Acks wake a blocked append only once its whole group fits: it must
/// stay blocked through acks that free too little, and go on at the one
/// that frees enough (a wake-up lost there would block it for good).
#[tokio::test]
async fn a_blocked_append_goes_on_once_acks_free_room_for_all_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, blocked) =
        full_with_a_blocked_append(tmp.path(), vec![big(11), big(12), big(13)]).await;
    let mut reader = queue.reader().unwrap();
    for seq in 1..=2 {
        let batch = reader.next_batch(1, usize::MAX).await.unwrap();
        assert_eq!(batch[0].seq, seq);
        reader.ack(seq).await.unwrap();
        // Room for one or two records is not room for three.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished(), "went on after {seq} acks");
        assert_eq!(queue.metrics().blocked_appends, 1);
    }
    let batch = reader.next_batch(1, usize::MAX).await.unwrap();
    reader.ack(batch[0].seq).await.unwrap();
    let appended = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the third ack frees room for the group")
        .unwrap()
        .unwrap();
    assert_eq!((appended.first_seq, appended.last_seq), (11, 13));
    let m = queue.metrics();
    assert_eq!((m.depth_events, m.blocked_appends), (10, 0));
    assert!(m.depth_bytes <= MIB);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn close_releases_a_blocked_append_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, blocked) = full_with_a_blocked_append(tmp.path(), vec![big(11)]).await;
    queue.clone().close().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(result, Err(QueueError::Closed)), "{result:?}");
    assert!(matches!(
        queue.append(vec![b"x".to_vec()]).await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn drop_oldest_drops_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let (queue, _) = Queue::open(&dir, config(WhenFull::DropOldest)).unwrap();
    for seq in 1..=10 {
        queue.append(vec![big(seq)]).await.unwrap();
    }
    assert_eq!(queue.take_dropped(), 0);
    queue.append(vec![big(11)]).await.unwrap();
    queue.append(vec![big(12), big(13)]).await.unwrap();
    assert_eq!(queue.take_dropped(), 3);
    assert_eq!(queue.take_dropped(), 0, "counted once");
    let m = queue.metrics();
    assert_eq!(
        (m.dropped_total, m.depth_events, m.acked_through),
        (3, 10, 3)
    );
    assert!(m.depth_bytes <= MIB);
    let mut reader = queue.reader().unwrap();
    let mut payloads = Vec::new();
    while payloads.len() < 10 {
        let batch = reader.next_batch(100, usize::MAX).await.unwrap();
        payloads.extend(batch.iter().map(|r| r.payload.to_vec()));
    }
    // Records 4 to 13, in order (their seqs need not be consecutive: a
    // segment that reuses an acked one's file starts with its time mark).
    assert_eq!(payloads, (4..=13).map(big).collect::<Vec<_>>());
    drop(reader);
    queue.close().await.unwrap();
    // The drop moved the ack point on disk too.
    let (_, recovery) = Queue::open(&dir, config(WhenFull::DropOldest)).unwrap();
    assert_eq!((recovery.acked_through, recovery.records), (3, 10));
}

#[tokio::test]
async fn drop_oldest_skips_records_the_reader_already_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(&tmp.path().join("q"), config(WhenFull::DropOldest)).unwrap();
    for seq in 1..=10 {
        queue.append(vec![big(seq)]).await.unwrap();
    }
    let mut reader = queue.reader().unwrap();
    // Each 100 KiB record fills a segment of its own, and a batch does not
    // cross segments: read two batches.
    let mut held = reader.next_batch(2, usize::MAX).await.unwrap();
    held.extend(reader.next_batch(1, usize::MAX).await.unwrap());
    assert_eq!(held.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    // Drops seqs 1..=3 while 1 and 2 are in flight.
    queue.append(vec![big(11), big(12), big(13)]).await.unwrap();
    reader.ack(2).await.unwrap(); // behind the ack point now: a no-op
    assert_eq!(queue.metrics().acked_total, 0);
    let next = reader.next_batch(1, usize::MAX).await.unwrap();
    assert_eq!(next[0].seq, 4);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn an_append_larger_than_the_queue_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(&tmp.path().join("q"), config(WhenFull::Block)).unwrap();
    let err = queue.append(vec![vec![0; MIB as usize]]).await.unwrap_err();
    assert!(matches!(err, QueueError::BatchTooLarge { .. }), "{err}");
    assert!(
        Queue::open(
            &tmp.path().join("r"),
            QueueConfig {
                max_bytes: 1000,
                ..config(WhenFull::Block)
            }
        )
        .is_err()
    );
}

#[tokio::test]
async fn simulated_full_disk_fails_appends_without_damage() {
    let storage = MemStorage::new();
    let dir = Path::new("/data/queue");
    let open = || {
        Queue::open_with_storage(dir, config(WhenFull::Block), Arc::new(storage.clone())).unwrap()
    };
    let (queue, _) = open();
    queue
        .append(vec![b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    // Room for part of the next batch only: a short write, then ENOSPC.
    let used: u64 = storage
        .read_file(&dir.join("00000000000000000001.seg"))
        .unwrap()
        .len() as u64;
    storage.set_capacity(Some(used + 30));
    let err = queue
        .append(vec![vec![b'x'; 100], vec![b'y'; 100]])
        .await
        .unwrap_err();
    match &err {
        QueueError::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(28), "{err}"),
        other => panic!("expected an I/O error, got {other}"),
    }
    // The partial write was cut back.
    assert_eq!(
        storage
            .read_file(&dir.join("00000000000000000001.seg"))
            .unwrap()
            .len() as u64,
        used
    );
    storage.set_capacity(None);
    let a = queue.append(vec![b"three".to_vec()]).await.unwrap();
    assert_eq!(a.first_seq, 3, "a failed append consumes no seq");
    drop(queue);
    storage.power_cut();
    let (queue, recovery) = open();
    assert_eq!(
        (
            recovery.records,
            recovery.truncated_bytes,
            recovery.corrupt_skipped
        ),
        (3, 0, 0)
    );
    let mut reader = queue.reader().unwrap();
    let got: Vec<Vec<u8>> = reader
        .next_batch(10, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.payload.to_vec())
        .collect();
    assert_eq!(
        got,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

/// A record of about 530 bytes.
fn small(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(500)).into_bytes()
}

/// A `block` queue in `storage` with three 64 KiB segments of small
/// records, the first two acked: one deleted, the other kept as the spare.
/// Returns the queue, its reader and the next record's number.
async fn with_a_spare(storage: &MemStorage, dir: &Path) -> (Queue, Reader, u64) {
    let (queue, _) =
        Queue::open_with_storage(dir, config(WhenFull::Block), Arc::new(storage.clone())).unwrap();
    let segments = || -> Vec<String> {
        let mut names = storage.list(dir).unwrap();
        names.retain(|n| n.ends_with(".seg"));
        names
    };
    let mut i = 0;
    while segments().len() < 3 {
        queue
            .append((i..i + 10).map(small).collect())
            .await
            .unwrap();
        i += 10;
    }
    let mut reader = queue.reader().unwrap();
    let last_of_second = segments()[2][..20].parse::<u64>().unwrap() - 1;
    let mut acked = 0;
    while acked < last_of_second {
        let batch = reader.next_batch(64, usize::MAX).await.unwrap();
        acked = batch
            .iter()
            .map(|r| r.seq)
            .filter(|&s| s <= last_of_second)
            .max()
            .unwrap_or(acked);
        reader.ack(acked).await.unwrap();
    }
    reader.flush().await.unwrap();
    assert!(
        storage.read_file(&dir.join("segment.spare")).is_some(),
        "an acked segment is the spare"
    );
    (queue, reader, i)
}

/// What the files in `dir` whose names pass `keep` hold.
fn used(storage: &MemStorage, dir: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    storage
        .list(dir)
        .unwrap()
        .iter()
        .filter(|n| keep(n))
        .map(|n| {
            storage
                .read_file(&dir.join(n))
                .map_or(0, |b| b.len() as u64)
        })
        .sum()
}

/// On a full disk, the spare file an acked segment left for reuse is the
/// first room given back: the failed append's retry fits in it.
#[tokio::test]
async fn a_full_disk_takes_the_spare_files_room_first() {
    let storage = MemStorage::new();
    let dir = Path::new("/data/queue");
    let (queue, _reader, i) = with_a_spare(&storage, dir).await;
    let spare = dir.join("segment.spare");
    assert_eq!(
        queue.metrics().disk_bytes,
        used(&storage, dir, |n| n.ends_with(".seg"))
            + used(&storage, dir, |n| n == "segment.spare"),
        "the spare counts as disk use"
    );
    // The disk is full: not a byte more.
    storage.set_capacity(Some(used(&storage, dir, |_| true)));
    let err = queue.append(vec![small(i)]).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{err}"
    );
    assert!(storage.read_file(&spare).is_none(), "the spare was removed");
    queue
        .append(vec![small(i)])
        .await
        .expect("the retry fits in the spare's room");
    queue.close().await.unwrap();
}

/// On a full disk, acks still reach the ledger: when its new copy does not
/// fit, the spare goes and the ledger is written in its room.
#[tokio::test]
async fn a_full_disk_takes_the_spare_files_room_for_the_ledger() {
    let storage = MemStorage::new();
    let dir = Path::new("/data/queue");
    let (queue, mut reader, _) = with_a_spare(&storage, dir).await;
    storage.set_capacity(Some(used(&storage, dir, |_| true)));
    let mut last = 0;
    while queue.metrics().depth_events > 0 {
        let batch = reader.next_batch(64, usize::MAX).await.unwrap();
        last = batch.last().unwrap().seq;
        reader.ack(last).await.unwrap();
    }
    reader.flush().await.expect("the ledger is written");
    assert!(
        storage.read_file(&dir.join("segment.spare")).is_none(),
        "the spare made the room"
    );
    drop(reader);
    drop(queue);
    storage.set_capacity(None);
    let (_, recovery) =
        Queue::open_with_storage(dir, config(WhenFull::Block), Arc::new(storage.clone())).unwrap();
    assert_eq!((recovery.acked_through, recovery.records), (last, 0));
}

/// Mounts a 2 MiB tmpfs on `at`; unmounts when dropped.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(at: &'a Path) -> Result<Self, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(at))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[tokio::test]
async fn real_full_disk_fails_appends_and_recovers_after_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _tmpfs = match Tmpfs::mount(&mnt) {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED real_full_disk test: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let dir = mnt.join("queue");
    // max_bytes above the file system's size, so the disk fills first.
    let cfg = QueueConfig {
        max_bytes: 8 * MIB,
        segment_bytes: 256 * 1024,
        when_full: WhenFull::Block,
        ..QueueConfig::default()
    };
    let (queue, _) = Queue::open(&dir, cfg).unwrap();
    let mut ok = 0u64;
    let err = loop {
        assert!(ok < 1000, "a 2 MiB file system never filled up");
        match queue.append(vec![vec![b'e'; 40 * 1024]]).await {
            Ok(a) => {
                ok += 1;
                assert_eq!(a.first_seq, ok);
            }
            Err(e) => break e,
        }
    };
    assert!(ok > 10, "only {ok} appends fit");
    match &err {
        QueueError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{err}")
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    // Still full: still an error, never a panic or a hang.
    assert!(queue.append(vec![vec![b'e'; 40 * 1024]]).await.is_err());
    drop(queue);

    // Everything that succeeded is intact after a reopen.
    let (queue, recovery) = Queue::open(&dir, cfg).unwrap();
    assert_eq!(recovery.records, ok);
    assert_eq!(recovery.corrupt_skipped, 0);
    let mut reader = queue.reader().unwrap();
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < ok {
        let batch = reader.next_batch(1000, usize::MAX).await.unwrap();
        assert!(
            batch
                .iter()
                .all(|r| r.payload.len() == 40 * 1024 && r.payload.iter().all(|&b| b == b'e'))
        );
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    assert_eq!(seqs, (1..=ok).collect::<Vec<_>>());
    // Acking everything deletes old segments, which frees the space...
    reader.ack(ok).await.unwrap();
    reader.flush().await.unwrap();
    // ...and appends work again.
    let a = queue.append(vec![vec![b'f'; 40 * 1024]]).await.unwrap();
    assert_eq!(a.first_seq, ok + 1);
    drop(reader);
    queue.close().await.unwrap();
}
