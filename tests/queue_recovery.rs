//! Recovery from damaged queue files on a real file system: torn tails at
//! every offset, flipped bytes, garbage, empty segments, and a missing or
//! corrupt ledger. Each case must reopen, lose at most the damaged record,
//! keep the rest in order, and count the loss.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald::queue::storage::{FsStorage, MemStorage, Storage};
use herald::queue::{
    Durability, LedgerStatus, Queue, QueueConfig, Recovery, inspect, unacked_records,
};

fn payload(seq: u64) -> Vec<u8> {
    format!(
        "{{\"event\":\"test.{seq}\",\"pad\":\"{}\"}}",
        "x".repeat((seq % 7) as usize * 10)
    )
    .into_bytes()
}

fn config() -> QueueConfig {
    QueueConfig {
        max_bytes: 4 * 1024 * 1024,
        segment_bytes: QueueConfig::MIN_SEGMENT_BYTES,
        ..QueueConfig::default()
    }
}

/// Writes records 1..=n in batches of 10 and closes the queue.
async fn fill(dir: &Path, n: u64) {
    let (queue, _) = Queue::open(dir, config()).unwrap();
    append_from(&queue, 1..n + 1).await;
    queue.close().await.unwrap();
}

/// Opens the queue and reads every unacked record.
async fn reopen_and_read(dir: &Path) -> (Recovery, Vec<(u64, Vec<u8>)>) {
    let (queue, recovery) = Queue::open(dir, config()).unwrap();
    let mut reader = queue.reader().unwrap();
    let mut got = Vec::new();
    while (got.len() as u64) < recovery.records {
        let batch =
            tokio::time::timeout(Duration::from_secs(10), reader.next_batch(1000, usize::MAX))
                .await
                .expect("recovered records are readable")
                .unwrap();
        got.extend(batch.into_iter().map(|r| (r.seq, r.payload.to_vec())));
    }
    drop(reader);
    queue.close().await.unwrap();
    (recovery, got)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a segment file (the format is documented, so
/// the test may walk it).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos + 16 <= bytes.len() {
        offsets.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 16 + len;
    }
    offsets
}

fn expected(seqs: impl IntoIterator<Item = u64>) -> Vec<(u64, Vec<u8>)> {
    seqs.into_iter().map(|s| (s, payload(s))).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn torn_last_record_at_every_offset_loses_only_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    fill(&pristine, 30).await;
    let last = segments(&pristine).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    let start = *record_offsets(&bytes).last().unwrap();
    for cut in start..bytes.len() {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_dir(&pristine, &dir);
        let seg = dir.join(last.file_name().unwrap());
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let (recovery, got) = reopen_and_read(&dir).await;
        assert_eq!(got, expected(1..30), "cut at {cut}");
        assert_eq!(
            recovery.truncated_bytes,
            (cut - start) as u64,
            "cut at {cut}"
        );
        assert_eq!(recovery.corrupt_skipped, 0);
        // The torn tail is gone from disk and appending continues cleanly.
        assert_eq!(fs::metadata(&seg).unwrap().len(), start as u64);
        let (queue, _) = Queue::open(&dir, config()).unwrap();
        assert_eq!(queue.append(vec![payload(30)]).await.unwrap().first_seq, 30);
        queue.close().await.unwrap();
        let (recovery, got) = reopen_and_read(&dir).await;
        assert_eq!(got, expected(1..=30));
        assert_eq!(recovery.truncated_bytes, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn flipped_bytes_in_a_middle_record_lose_only_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    fill(&pristine, 30).await;
    let seg = segments(&pristine).remove(0);
    let bytes = fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    let victim = 12; // seq 13
    let (start, end) = (offsets[victim], offsets[victim + 1]);
    // A cheap deterministic generator is enough to spread the damage over
    // header and payload.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let dir = tmp.path().join(format!("flip{round}"));
        copy_dir(&pristine, &dir);
        let mut damaged = bytes.clone();
        // Round 0..16 hits each header byte once; later rounds hit random
        // bytes of the record, several at a time.
        if round < 16 {
            damaged[start + round] ^= 0xff;
        } else {
            for _ in 0..1 + next() % 4 {
                let at = start + (next() as usize % (end - start));
                damaged[at] ^= 1 + (next() % 255) as u8;
            }
        }
        fs::write(dir.join(seg.file_name().unwrap()), &damaged).unwrap();
        let (recovery, got) = reopen_and_read(&dir).await;
        assert_eq!(
            got,
            expected((1..=30).filter(|&s| s != 13)),
            "round {round}"
        );
        assert_eq!(recovery.corrupt_skipped, 1, "round {round}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fill(&dir, 20).await;
    let last = segments(&dir).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut f, &[0xab; 333]).unwrap();
    drop(f);
    let (recovery, got) = reopen_and_read(&dir).await;
    assert_eq!(got, expected(1..=20));
    assert_eq!(recovery.truncated_bytes, 333);
    // Appends after recovery land on a clean end.
    let (queue, _) = Queue::open(&dir, config()).unwrap();
    assert_eq!(queue.append(vec![payload(21)]).await.unwrap().first_seq, 21);
    queue.close().await.unwrap();
    assert_eq!(reopen_and_read(&dir).await.1, expected(1..=21));
}

#[tokio::test]
async fn zero_length_segments_are_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fill(&dir, 20).await;
    // One sorting before the real segment, one after it.
    fs::write(dir.join("00000000000000000000.seg"), b"").unwrap();
    fs::write(dir.join("00000000000000000005.seg"), b"").unwrap();
    fs::write(dir.join("00000000000000000999.seg"), b"").unwrap();
    let (recovery, got) = reopen_and_read(&dir).await;
    assert_eq!(got, expected(1..=20));
    assert_eq!(recovery.corrupt_skipped, 0);
    let (queue, _) = Queue::open(&dir, config()).unwrap();
    assert_eq!(queue.append(vec![payload(21)]).await.unwrap().first_seq, 21);
    queue.close().await.unwrap();
    assert_eq!(reopen_and_read(&dir).await.1, expected(1..=21));
}

#[tokio::test]
async fn an_empty_queue_directory_of_only_an_empty_segment_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("00000000000000000001.seg"), b"").unwrap();
    let (recovery, got) = reopen_and_read(&dir).await;
    assert!(got.is_empty());
    assert_eq!(recovery.records, 0);
}

/// Appends 1..=30, reads and acks through 10, and closes.
async fn fill_and_ack_ten(dir: &Path) {
    fill(dir, 30).await;
    let (queue, _) = Queue::open(dir, config()).unwrap();
    let mut reader = queue.reader().unwrap();
    let mut read = 0;
    while read < 10 {
        read += reader
            .next_batch(10 - read, usize::MAX)
            .await
            .unwrap()
            .len();
    }
    reader.ack(10).await.unwrap();
    reader.flush().await.unwrap();
    drop(reader);
    queue.close().await.unwrap();
    let (recovery, got) = reopen_and_read(dir).await;
    assert_eq!(recovery.ledger, LedgerStatus::Valid);
    assert_eq!(got, expected(11..=30));
}

#[tokio::test]
async fn missing_ledger_redelivers_from_the_oldest_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fill_and_ack_ten(&dir).await;
    fs::remove_file(dir.join("ack.ledger")).unwrap();
    let (recovery, got) = reopen_and_read(&dir).await;
    assert_eq!(recovery.ledger, LedgerStatus::Missing);
    assert_eq!(got, expected(1..=30));
}

#[tokio::test]
async fn corrupt_ledger_redelivers_from_the_oldest_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fill_and_ack_ten(&dir).await;
    let ledger = dir.join("ack.ledger");
    let mut bytes = fs::read(&ledger).unwrap();
    bytes[9] ^= 0x40;
    fs::write(&ledger, &bytes).unwrap();
    let (recovery, got) = reopen_and_read(&dir).await;
    assert_eq!(recovery.ledger, LedgerStatus::Corrupt);
    assert_eq!(got, expected(1..=30));
    // A stale temp ledger from a crash mid-write is ignored and removed.
    fs::write(dir.join("ack.ledger.tmp"), b"half").unwrap();
    let (_, got) = reopen_and_read(&dir).await;
    assert_eq!(got, expected(1..=30));
    assert!(!dir.join("ack.ledger.tmp").exists());
}

#[tokio::test]
async fn unacked_records_come_back_with_the_same_seq_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let (queue, _) = Queue::open(&dir, config()).unwrap();
    let a = queue
        .append(vec![payload(1), payload(2), payload(3)])
        .await
        .unwrap();
    assert_eq!((a.first_seq, a.last_seq), (1, 3));
    let mut reader = queue.reader().unwrap();
    let first = reader.next_batch(2, usize::MAX).await.unwrap();
    assert_eq!(first.len(), 2);
    reader.ack(1).await.unwrap();
    reader.flush().await.unwrap();
    // Seq 2 was read but not acked: a crash (no close) must redeliver it.
    drop(reader);
    drop(queue);
    let (_, got) = reopen_and_read(&dir).await;
    assert_eq!(got, expected(2..=3));
}

#[tokio::test]
async fn wholly_acked_segments_are_deleted_and_seqs_keep_growing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    // About 160 KiB of records in 64 KiB segments.
    fill(&dir, 2000).await;
    assert!(segments(&dir).len() >= 2);
    let (queue, _) = Queue::open(&dir, config()).unwrap();
    let mut reader = queue.reader().unwrap();
    let mut last = 0;
    while last < 2000 {
        let batch = reader.next_batch(64, usize::MAX).await.unwrap();
        last = batch.last().unwrap().seq;
        reader.ack(last).await.unwrap();
        reader.flush().await.unwrap();
    }
    assert_eq!(segments(&dir).len(), 1, "only the active segment remains");
    assert!(
        dir.join("segment.spare").exists(),
        "one acked segment's file waits to be reused"
    );
    let m = queue.metrics();
    assert_eq!(
        (m.depth_events, m.depth_bytes, m.acked_through),
        (0, 0, 2000)
    );
    assert_eq!(m.oldest_unacked_age, None);
    drop(reader);
    queue.close().await.unwrap();
    let (queue, recovery) = Queue::open(&dir, config()).unwrap();
    assert_eq!(recovery.records, 0);
    assert!(
        !dir.join("segment.spare").exists(),
        "a spare is not kept across restarts"
    );
    assert_eq!(
        queue.append(vec![payload(2001)]).await.unwrap().first_seq,
        2001
    );
    queue.close().await.unwrap();
}

#[tokio::test]
async fn interval_durability_resolves_and_close_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let cfg = QueueConfig {
        durability: Durability::Interval(Duration::from_millis(50)),
        ..config()
    };
    let (queue, _) = Queue::open(&dir, cfg).unwrap();
    for seq in 1..=20 {
        queue.append(vec![payload(seq)]).await.unwrap();
    }
    // Syncs are batched: far fewer than one per append.
    assert!(queue.metrics().syncs_total < 20);
    queue.close().await.unwrap();
    assert_eq!(reopen_and_read(&dir).await.1, expected(1..=20));
}

#[tokio::test]
async fn inspect_reports_without_changing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    fill_and_ack_ten(&dir).await;
    let last = segments(&dir).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut f, &[0xcd; 7]).unwrap();
    drop(f);
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&dir);
    let report = inspect(&dir).unwrap();
    assert_eq!(report.acked_through, 10);
    assert_eq!(report.depth_events, 20);
    assert_eq!(report.first_unacked_seq, Some(11));
    assert_eq!(report.last_unacked_seq, Some(30));
    assert_eq!(report.torn_bytes, 7);
    assert!(report.oldest_age.is_some());
    let text = report.to_string();
    assert!(text.contains("acked through: seq 10"), "{text}");
    assert!(text.contains("unacked: 20 events"), "{text}");
    assert!(text.contains("00000000000000000001.seg"), "{text}");
    let dump = unacked_records(&dir, 3).unwrap();
    assert_eq!(
        dump.iter()
            .map(|r| (r.seq, r.payload.to_vec()))
            .collect::<Vec<_>>(),
        expected(11..=13)
    );
    assert_eq!(before, snapshot(&dir), "inspect must not modify the queue");
    assert!(inspect(&tmp.path().join("missing")).is_err());
}

#[tokio::test]
async fn a_second_reader_is_refused_until_the_first_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(&tmp.path().join("q"), config()).unwrap();
    let reader = queue.reader().unwrap();
    assert!(queue.reader().is_err());
    drop(reader);
    assert!(queue.reader().is_ok());
}

#[tokio::test]
async fn next_batch_is_cancellation_safe_and_wakes_on_append() {
    let tmp = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(&tmp.path().join("q"), config()).unwrap();
    let mut reader = queue.reader().unwrap();
    // Nothing to read: the call waits; cancelling it loses nothing.
    let waited =
        tokio::time::timeout(Duration::from_millis(20), reader.next_batch(10, 1 << 20)).await;
    assert!(waited.is_err());
    let q2 = queue.clone();
    let append = tokio::spawn(async move { q2.append(vec![payload(1), payload(2)]).await });
    let batch = tokio::time::timeout(Duration::from_secs(10), reader.next_batch(10, 1 << 20))
        .await
        .expect("woken by the append")
        .unwrap();
    append.await.unwrap().unwrap();
    let mut seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
    if seqs.len() < 2 {
        seqs.extend(
            reader
                .next_batch(10, 1 << 20)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq),
        );
    }
    assert_eq!(seqs, vec![1, 2]);
    // max_bytes smaller than one record still yields that record.
    queue.append(vec![payload(3), payload(4)]).await.unwrap();
    let one = reader.next_batch(10, 1).await.unwrap();
    assert_eq!(one.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    assert!(reader.ack(5).await.is_err(), "cannot ack what was not read");
    reader.ack(3).await.unwrap();
    reader.flush().await.unwrap();
    // After close, the reader drains what is left, then gets empty batches.
    queue.close().await.unwrap();
    assert_eq!(reader.next_batch(10, 1 << 20).await.unwrap()[0].seq, 4);
    assert!(reader.next_batch(10, 1 << 20).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_dropped_while_in_flight_is_taken_up_by_the_next_call() {
    // In memory: these reads always go to the blocking pool (a segment in
    // a file system's page cache is read on the spot, see below).
    let (queue, _) = Queue::open_with_storage(
        Path::new("/q"),
        config(),
        std::sync::Arc::new(MemStorage::new()),
    )
    .unwrap();
    let n = 300u64;
    let all: Vec<Vec<u8>> = (1..=n).map(payload).collect();
    queue.append(all).await.unwrap();
    let mut reader = queue.reader().unwrap();
    let mut seqs = Vec::new();
    let mut round = 0usize;
    while (seqs.len() as u64) < n {
        round += 1;
        // A large read, dropped after its first poll: it is most likely
        // still running on the blocking pool.
        if let Ok(batch) =
            tokio::time::timeout(Duration::ZERO, reader.next_batch(100, usize::MAX)).await
        {
            let batch = batch.unwrap();
            assert!(batch.len() <= 100);
            seqs.extend(batch.iter().map(|r| r.seq));
            if seqs.len() as u64 == n {
                break;
            }
        }
        // The next call, with smaller limits, gets what that read found
        // first, within its own limits.
        let limit = 1 + round % 7;
        let batch =
            tokio::time::timeout(Duration::from_secs(10), reader.next_batch(limit, 1 << 20))
                .await
                .expect("records are readable")
                .unwrap();
        assert!(
            !batch.is_empty() && batch.len() <= limit,
            "{} > {limit}",
            batch.len()
        );
        for record in &batch {
            assert_eq!(record.payload.as_ref(), payload(record.seq).as_slice());
        }
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every record once, in order"
    );
    reader.ack(n).await.unwrap();
    drop(reader);
    queue.close().await.unwrap();
}

/// Bytes the page cache holds are read on the async worker, on the spot:
/// each call is ready at its first poll, with no blocking thread to wait
/// for. (Where the kernel cannot say without waiting, `RWF_NOWAIT`, reads
/// go to the blocking pool and this has nothing to check.)
#[tokio::test]
async fn a_read_of_bytes_in_the_page_cache_is_done_on_the_spot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    // One segment for all of them: a read ends at a segment's end.
    let one_segment = QueueConfig {
        segment_bytes: 1024 * 1024,
        ..config()
    };
    let (queue, _) = Queue::open(&dir, one_segment).unwrap();
    let all: Vec<Vec<u8>> = (1..=200).map(payload).collect();
    queue.append(all).await.unwrap();
    let segment = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let len = fs::metadata(&segment).unwrap().len();
    let file = FsStorage.open_read(&segment).unwrap();
    assert!(!file.is_cached(len, 1), "past the end is not in memory");
    assert!(!file.is_cached(0, 0));
    if !file.is_cached(0, len) {
        eprintln!("RWF_NOWAIT is not available here: nothing to check");
        return;
    }
    let mut reader = queue.reader().unwrap();
    // Small batches, so that reading them all takes many reads. The first
    // opens the segment (on the blocking pool).
    let first = reader.next_batch(10, 2000).await.unwrap();
    let mut seqs: Vec<u64> = first.iter().map(|r| r.seq).collect();
    while seqs.len() < 200 {
        let call = std::pin::pin!(reader.next_batch(10, 2000));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(batch) = call.poll(&mut cx) else {
            panic!("not ready at the first poll, after {} records", seqs.len());
        };
        let batch = batch.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 10);
        for record in &batch {
            assert_eq!(record.payload.as_ref(), payload(record.seq).as_slice());
        }
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    reader.ack(200).await.unwrap();
    drop(reader);
    queue.close().await.unwrap();
}

/// Appends `payload(seq)` for each seq in batches of 10; returns the seq
/// after the last.
async fn append_from(queue: &Queue, seqs: std::ops::Range<u64>) -> u64 {
    let end = seqs.end;
    let mut seq = seqs.start;
    while seq < end {
        let batch: Vec<Vec<u8>> = (seq..end.min(seq + 10)).map(payload).collect();
        seq += batch.len() as u64;
        queue.append(batch).await.unwrap();
    }
    end
}

/// Reads and acks everything unacked, then writes the acks.
async fn ack_all(queue: &Queue) {
    let mut reader = queue.reader().unwrap();
    while queue.metrics().depth_events > 0 {
        let batch = reader.next_batch(64, usize::MAX).await.unwrap();
        reader.ack(batch.last().unwrap().seq).await.unwrap();
    }
    reader.flush().await.unwrap();
}

fn payloads(records: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
    records.iter().map(|(_, p)| p.clone()).collect()
}

/// The file of a wholly acked segment waits as the spare, and the next
/// segment is written over it (the same inode: the file system allocates
/// nothing). After a crash, exactly the new records come back: the old
/// ones past them are neither delivered nor counted as torn, and a torn
/// record among the new ones is cut only up to the old ones.
#[tokio::test]
async fn an_acked_segments_file_is_reused_and_its_old_records_never_come_back() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let spare = dir.join("segment.spare");
    let (queue, _) = Queue::open(&dir, config()).unwrap();
    // About 160 KiB of records in 64 KiB segments, all acked.
    let mut next = append_from(&queue, 1..2001).await;
    ack_all(&queue).await;
    let active = segments(&dir);
    assert_eq!(active.len(), 1, "acked segments are gone: {active:?}");
    let spare_meta = fs::metadata(&spare).expect("the first acked segment is the spare");
    // Fill the active segment until the next one starts, then ack those.
    while segments(&dir).len() == 1 {
        next = append_from(&queue, next..next + 10).await;
    }
    let reused = segments(&dir)[1].clone();
    let reused_meta = fs::metadata(&reused).unwrap();
    assert_eq!(
        reused_meta.ino(),
        spare_meta.ino(),
        "the spare's file is reused"
    );
    assert_eq!(
        reused_meta.len(),
        spare_meta.len(),
        "written over, not grown"
    );
    ack_all(&queue).await;
    // Records that only the reused segment holds, then a crash.
    let start = next;
    next = append_from(&queue, next..next + 25).await;
    drop(queue);
    let copy = tmp.path().join("copy");
    copy_dir(&dir, &copy);
    let (recovery, got) = reopen_and_read(&dir).await;
    assert!(
        payloads(&got) == (start..next).map(payload).collect::<Vec<_>>(),
        "recovered {} records, not the {} new ones",
        got.len(),
        next - start
    );
    assert_eq!((recovery.truncated_bytes, recovery.corrupt_skipped), (0, 0));
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "seqs grow");
    // Recovery cut the old records off.
    let own = fs::metadata(&reused).unwrap().len();
    assert!(own < spare_meta.len());

    // The same crash after a write that tore: the next record's header
    // and the first bytes of its payload over the start of the old
    // records.
    let torn_file = copy.join(reused.file_name().unwrap());
    let mut torn = fs::read(&torn_file).unwrap();
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&100u32.to_le_bytes());
    header[8..].copy_from_slice(&(got.last().unwrap().0 + 1).to_le_bytes());
    let at = own as usize;
    torn[at..at + 16].copy_from_slice(&header);
    torn[at + 16..at + 21].copy_from_slice(b"{\"eve");
    fs::write(&torn_file, &torn).unwrap();
    let (recovery, again) = reopen_and_read(&copy).await;
    assert!(
        payloads(&again) == payloads(&got),
        "the same records come back"
    );
    // Cut: the torn record and the rest of the old one it fell in, no
    // more.
    assert!(
        (21..200).contains(&recovery.truncated_bytes),
        "{} bytes counted as torn",
        recovery.truncated_bytes
    );
    assert_eq!(fs::metadata(&torn_file).unwrap().len(), own);
}

/// A reused file's creation time is its first use's; the age of the
/// oldest record after a restart comes from the segment's time mark.
#[tokio::test]
async fn after_a_restart_the_age_of_records_in_a_reused_file_is_theirs() {
    let storage = MemStorage::new();
    let dir = Path::new("/data/queue");
    let open = || Queue::open_with_storage(dir, config(), std::sync::Arc::new(storage.clone()));
    let (queue, _) = open().unwrap();
    let mut next = append_from(&queue, 1..2001).await;
    ack_all(&queue).await;
    let spare = dir.join("segment.spare");
    assert!(
        storage.read_file(&spare).is_some(),
        "an acked segment is the spare"
    );
    // As old as a file first created a day ago.
    storage.backdate(&spare, Duration::from_secs(24 * 3600));
    let count = |storage: &MemStorage| {
        storage
            .list(dir)
            .unwrap()
            .iter()
            .filter(|n| n.ends_with(".seg"))
            .count()
    };
    while count(&storage) == 1 {
        next = append_from(&queue, next..next + 10).await;
    }
    assert!(storage.read_file(&spare).is_none(), "the spare was reused");
    ack_all(&queue).await;
    append_from(&queue, next..next + 5).await;
    drop(queue);
    let (queue, recovery) = open().unwrap();
    assert_eq!(recovery.records, 5);
    let age = queue
        .metrics()
        .oldest_unacked_age
        .expect("records are unacked");
    assert!(
        age < Duration::from_secs(3600),
        "age after restart: {age:?}"
    );
    queue.close().await.unwrap();
}
