//! Shared parts in the queue, on a real file system: records that refer to
//! parts come out whole, across segments, restarts in the middle of a
//! segment, parts redefined by a later process, `inspect`, and damage to a
//! definition (which loses only the records that use it, counted).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald::queue::shared::{MARK, WITH_REFS, intern, write_ref};
use herald::queue::{Queue, QueueConfig, QueueError, Reader, unacked_records};

fn config() -> QueueConfig {
    QueueConfig {
        max_bytes: 16 * 1024 * 1024,
        segment_bytes: QueueConfig::MIN_SEGMENT_BYTES,
        ..QueueConfig::default()
    }
}

/// Two parts as a mapper would share them: a file's resource and the
/// related resources.
fn parts(tag: &str) -> (String, String) {
    let resource = format!(
        "{{\"herald.file.path\":\"/var/log/{tag}.log\",\"prefect.resource.id\":\"herald.file.h:/var/log/{tag}.log\"}}"
    );
    let related = format!(
        "{{\"prefect.resource.id\":\"herald.host.h\",\"prefect.resource.role\":\"host\",\"tag\":\"{tag}\"}}"
    );
    (resource, related)
}

/// A record in the queue's format using both parts, and the event it
/// stands for.
fn event(seq: u64, (resource, related): (&str, &str), ids: (u32, u32)) -> (Vec<u8>, Vec<u8>) {
    let head = format!("{{\"event\":\"test.{seq}\",\"resource\":");
    let middle = ",\"related\":[";
    let tail = format!(
        "],\"payload\":{{\"line\":\"{}\"}}}}",
        "x".repeat((seq % 13) as usize)
    );
    let mut compact = vec![MARK, WITH_REFS];
    compact.extend_from_slice(head.as_bytes());
    write_ref(&mut compact, ids.0);
    compact.extend_from_slice(middle.as_bytes());
    write_ref(&mut compact, ids.1);
    compact.extend_from_slice(tail.as_bytes());
    let whole = format!("{head}{resource}{middle}{related}{tail}").into_bytes();
    (compact, whole)
}

/// Appends `n` events (10 per append) whose parts alternate between two
/// files; returns the whole events in order.
async fn fill(queue: &Queue, first: u64, n: u64) -> Vec<Vec<u8>> {
    let (a, b) = (parts("a"), parts("b"));
    let ids_a = (
        intern(a.0.as_bytes()).unwrap(),
        intern(a.1.as_bytes()).unwrap(),
    );
    let ids_b = (
        intern(b.0.as_bytes()).unwrap(),
        intern(b.1.as_bytes()).unwrap(),
    );
    let mut wholes = Vec::new();
    let mut batch = Vec::new();
    for seq in first..first + n {
        let (compact, whole) = if (seq / 25) % 2 == 0 {
            event(seq, (&a.0, &a.1), ids_a)
        } else {
            event(seq, (&b.0, &b.1), ids_b)
        };
        batch.push(compact);
        wholes.push(whole);
        if batch.len() == 10 {
            queue.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        queue.append(batch).await.unwrap();
    }
    wholes
}

/// Reads `n` payloads.
async fn read(reader: &mut Reader, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            reader.next_batch(n - got.len(), usize::MAX),
        )
        .await
        .expect("records are readable")
        .unwrap();
        assert!(!batch.is_empty(), "queue closed early");
        got.extend(batch.into_iter().map(|r| (r.seq, r.payload.to_vec())));
    }
    got
}

fn payloads(got: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
    got.iter().map(|(_, p)| p.clone()).collect()
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

#[tokio::test]
async fn records_with_shared_parts_come_out_whole_and_take_less_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    let wholes = fill(&queue, 1, 2000).await;
    let mut reader = queue.reader().unwrap();
    let got = read(&mut reader, wholes.len()).await;
    assert_eq!(payloads(&got), wholes);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    let files = segments(dir.path());
    assert!(files.len() > 3, "the test spans segments: {files:?}");
    let on_disk: u64 = files.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let whole: u64 = wholes.iter().map(|w| w.len() as u64 + 16).sum();
    assert!(
        on_disk * 2 < whole,
        "parts are stored once per segment: {on_disk} bytes on disk for {whole} bytes of records"
    );
    drop(reader);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_segment_still_puts_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    let wholes = fill(&queue, 1, 700).await;
    let mut reader = queue.reader().unwrap();
    // Ack a prefix that ends inside a segment, past definitions.
    let first = read(&mut reader, 333).await;
    reader.ack(first.last().unwrap().0).await.unwrap();
    reader.flush().await.unwrap();
    drop(reader);
    queue.close().await.unwrap();

    let listed = unacked_records(dir.path(), 5).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| r.payload.to_vec())
            .collect::<Vec<_>>(),
        wholes[333..338],
        "inspect lists whole events"
    );

    let (queue, recovery) = Queue::open(dir.path(), config()).unwrap();
    assert_eq!(recovery.corrupt_skipped, 0);
    let mut reader = queue.reader().unwrap();
    let rest = read(&mut reader, 700 - 333).await;
    assert_eq!(payloads(&rest), wholes[333..]);
    // A second process appends to the same segment: its records come out
    // whole too.
    let more = fill(&queue, 701, 30).await;
    assert_eq!(payloads(&read(&mut reader, 30).await), more);
    assert_eq!(queue.metrics().corrupt_skipped_total, 0);
    drop(reader);
    queue.close().await.unwrap();
}

/// Builds a segment by hand (the format is documented): a later
/// definition of an id replaces the earlier one for the records after it,
/// as when a restarted process reuses ids in the segment it continues.
#[tokio::test]
async fn a_later_definition_of_an_id_replaces_the_earlier_one() {
    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_le_bytes();
        let mut fields = len.to_vec();
        fields.extend_from_slice(&seq.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&fields), payload);
        let mut out = len.to_vec();
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }
    fn definition(id: u32, part: &str) -> Vec<u8> {
        let mut p = vec![MARK, b'D'];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(part.as_bytes());
        p
    }
    fn using(id: u32) -> Vec<u8> {
        let mut p = vec![MARK, WITH_REFS];
        p.extend_from_slice(b"{\"resource\":");
        write_ref(&mut p, id);
        p.push(b'}');
        p
    }
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Vec::new();
    seg.extend(record(1, &definition(7, "{\"first\":1}")));
    seg.extend(record(2, &using(7)));
    seg.extend(record(3, &definition(7, "{\"second\":2}")));
    seg.extend(record(4, &using(7)));
    seg.extend(record(5, &using(7)));
    fs::write(dir.path().join(format!("{:020}.seg", 1)), &seg).unwrap();

    let (queue, recovery) = Queue::open(dir.path(), config()).unwrap();
    assert_eq!(recovery.records, 3, "events, definitions left out");
    let mut reader = queue.reader().unwrap();
    let got = read(&mut reader, 3).await;
    assert_eq!(
        got,
        [
            (2, b"{\"resource\":{\"first\":1}}".to_vec()),
            (4, b"{\"resource\":{\"second\":2}}".to_vec()),
            (5, b"{\"resource\":{\"second\":2}}".to_vec()),
        ]
    );
    // Starting after both definitions: the later one applies.
    reader.ack(4).await.unwrap();
    reader.flush().await.unwrap();
    drop(reader);
    queue.close().await.unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    let mut reader = queue.reader().unwrap();
    assert_eq!(
        read(&mut reader, 1).await,
        [(5, b"{\"resource\":{\"second\":2}}".to_vec())]
    );
    drop(reader);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_definition_loses_only_the_records_that_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    // Plain records first, then records using a part of their own.
    queue
        .append(vec![b"{\"plain\":1}".to_vec(), b"{\"plain\":2}".to_vec()])
        .await
        .unwrap();
    let part = "{\"prefect.resource.id\":\"herald.file.h:/var/log/damaged-definition.log\"}";
    let id = intern(part.as_bytes()).unwrap();
    let mut with_part = vec![MARK, WITH_REFS];
    with_part.extend_from_slice(b"{\"resource\":");
    write_ref(&mut with_part, id);
    with_part.push(b'}');
    queue
        .append(vec![with_part.clone(), with_part])
        .await
        .unwrap();
    queue.append(vec![b"{\"plain\":3}".to_vec()]).await.unwrap();
    queue.close().await.unwrap();

    // Flip a byte inside the definition's part.
    let seg = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes
        .windows(part.len())
        .position(|w| w == part.as_bytes())
        .expect("the part is stored in the segment");
    assert_eq!(
        bytes
            .windows(part.len())
            .filter(|w| *w == part.as_bytes())
            .count(),
        1,
        "stored once"
    );
    bytes[at + 10] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();

    let (queue, recovery) = Queue::open(dir.path(), config()).unwrap();
    assert_eq!(recovery.corrupt_skipped, 1, "the definition");
    let mut reader = queue.reader().unwrap();
    let got = read(&mut reader, 3).await;
    assert_eq!(
        payloads(&got),
        [
            b"{\"plain\":1}".to_vec(),
            b"{\"plain\":2}".to_vec(),
            b"{\"plain\":3}".to_vec()
        ]
    );
    assert_eq!(
        queue.metrics().corrupt_skipped_total,
        3,
        "the definition and the two records that used it"
    );
    drop(reader);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn a_payload_that_looks_like_a_definition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    let err = queue
        .append(vec![vec![MARK, b'D', 1, 0, 0, 0, b'x']])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::ReservedPayload), "{err}");
    queue.close().await.unwrap();
}

#[tokio::test]
async fn an_append_that_cannot_fit_with_its_definitions_is_refused_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let small = QueueConfig {
        max_bytes: QueueConfig::MIN_MAX_BYTES,
        ..config()
    };
    let (queue, _) = Queue::open(dir.path(), small).unwrap();
    // One short record referring to 20 parts of 60 KB: 1.2 MB of
    // definitions in a queue of 1 MiB.
    let mut record = vec![MARK, WITH_REFS, b'['];
    for i in 0..20 {
        let part = format!("\"{i:02}{}\"", "p".repeat(60_000));
        write_ref(&mut record, intern(part.as_bytes()).expect("registered"));
        record.push(b',');
    }
    record.extend_from_slice(b"0]");
    let result = tokio::time::timeout(Duration::from_secs(10), queue.append(vec![record]))
        .await
        .expect("answered, not blocked");
    assert!(
        matches!(result, Err(QueueError::BatchTooLarge { .. })),
        "{result:?}"
    );
    // The queue still works.
    queue.append(vec![b"{\"after\":1}".to_vec()]).await.unwrap();
    let mut reader = queue.reader().unwrap();
    assert_eq!(
        payloads(&read(&mut reader, 1).await),
        [b"{\"after\":1}".to_vec()]
    );
    drop(reader);
    queue.close().await.unwrap();
}

#[tokio::test]
async fn dropping_the_oldest_counts_events_and_keeps_the_rest_whole() {
    let dir = tempfile::tempdir().unwrap();
    let dropping = QueueConfig {
        max_bytes: QueueConfig::MIN_MAX_BYTES,
        when_full: herald::queue::WhenFull::DropOldest,
        ..config()
    };
    let (queue, _) = Queue::open(dir.path(), dropping).unwrap();
    // Over 2 MiB of records through a 1 MiB queue nobody reads.
    let wholes = fill(&queue, 1, 20_000).await;
    let m = queue.metrics();
    assert!(m.dropped_total > 0, "the queue had to drop");
    assert_eq!(
        m.dropped_total + m.depth_events,
        wholes.len() as u64,
        "every event is either dropped and counted or still queued"
    );
    let mut reader = queue.reader().unwrap();
    let kept = read(&mut reader, m.depth_events as usize).await;
    assert!(
        payloads(&kept) == wholes[wholes.len() - kept.len()..],
        "the newest {} events, whole",
        kept.len()
    );
    assert_eq!(queue.metrics().corrupt_skipped_total, 0);
    drop(reader);
    queue.close().await.unwrap();
}

/// A batch the reader put back together in one read comes with its JSON
/// array, byte for byte what joining the payloads gives; any other batch
/// (one cut from a larger read, or from records stored whole) has none.
#[tokio::test]
async fn a_batch_put_back_in_one_read_is_already_a_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = Queue::open(dir.path(), config()).unwrap();
    let wholes = fill(&queue, 1, 600).await;
    let mut reader = queue.reader().unwrap();
    let joined = |batch: &[herald::queue::Record]| -> Vec<u8> {
        let mut out = b"[".to_vec();
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&r.payload);
        }
        out.push(b']');
        out
    };
    let mut got = Vec::new();
    let mut arrays = 0;
    let mut last = 0;
    for limit in [1, 7, 100, 250, 600] {
        let batch = reader.next_batch(limit, usize::MAX).await.unwrap();
        assert!(!batch.is_empty() && batch.len() <= limit);
        if let Some(array) = reader.body_of(&batch) {
            assert_eq!(array.as_ref(), joined(&batch).as_slice());
            arrays += 1;
        }
        assert!(reader.body_of(&batch[..batch.len() - 1]).is_none() || batch.len() == 1);
        last = batch.last().unwrap().seq;
        got.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    }
    assert!(arrays >= 3, "most batches come joined: {arrays}");
    assert_eq!(got, wholes);

    // Records stored whole are joined by the sink, not the reader.
    let plain: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    reader.ack(last).await.unwrap();
    queue.append(plain.clone()).await.unwrap();
    let batch = reader.next_batch(10, usize::MAX).await.unwrap();
    assert_eq!(
        batch.iter().map(|r| r.payload.to_vec()).collect::<Vec<_>>(),
        plain
    );
    assert!(reader.body_of(&batch).is_none());
    drop(reader);
    queue.close().await.unwrap();
}
