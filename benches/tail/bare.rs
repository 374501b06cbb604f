//! A floor to measure herald against: the bare work herald does for a
//! log line, done in one thread with nothing else (no mapping rules, no
//! checkpoints, no `follows` state, no retries, no stages):
//!
//! - read the file in 128 KiB chunks and split it into lines;
//! - build each line's event as herald's default mapping writes it (same
//!   fields and labels; the id from herald's own `derived_id`, the line
//!   escaped by herald's own JSON string writer), in the queue's
//!   compact form: the resource and related resources as a 5-byte
//!   reference to one shared part;
//! - frame it as a queue record (`len | crc32c | seq | payload`), write
//!   1000 records at a time to a segment file and fdatasync them;
//! - read them back, check each record's CRC and put the shared part back
//!   (the queue's read path: the sender reads what was made durable);
//! - POST them 500 at a time as a JSON array, waiting for each answer.
//!
//! Without the read back (`read_back = false`) it is the loop the file
//! source issue and the design take as their reference ("read, split,
//! build the event JSON, CRC record, fdatasync per 1000, POST per 500"):
//! the events are posted from memory. herald cannot skip that step while
//! its queue is behind, as it is all through the bench.
//!
//! Run in the same sitting as herald, it shows what this machine charges
//! for that work at that moment: the ratio of herald's figures to these is
//! what stays comparable from one run to the next on a shared machine.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const CHUNK: usize = 128 * 1024;
const RECORDS_PER_SYNC: usize = 1000;
const EVENTS_PER_POST: usize = 500;
const SEGMENT_BYTES: u64 = 128 << 20;
const HEADER: usize = 16;
/// Where a record's shared part goes: herald's reference is a NUL and a
/// u32 part id.
const REF: [u8; 5] = [0, 1, 0, 0, 0];

/// What the bare loop did, and what it cost its thread.
pub struct Measured {
    pub lines: u64,
    pub elapsed: Duration,
    pub cpu_ticks: f64,
}

/// Runs the bare loop over `log` into segment files under `work`, posting
/// to `endpoint`, in a thread of its own (so that its CPU time is its
/// own, not the endpoint's).
pub fn run(log: &Path, work: &Path, endpoint: SocketAddr, read_back: bool) -> Measured {
    let log = log.to_owned();
    let work = work.to_owned();
    std::thread::Builder::new()
        .name("bare-loop".into())
        .spawn(move || {
            let before = thread_ticks();
            let started = Instant::now();
            let lines = Bare::new(&log, &work, endpoint, read_back).run();
            Measured {
                lines,
                elapsed: started.elapsed(),
                cpu_ticks: thread_ticks() - before,
            }
        })
        .expect("thread")
        .join()
        .expect("bare loop")
}

fn thread_ticks() -> f64 {
    super::common::stat_ticks(
        &std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default(),
    )
}

struct Bare {
    log: File,
    work: std::path::PathBuf,
    http: TcpStream,
    /// `,"event":...,"payload":` as herald's default mapping writes it for
    /// this file: the part the records refer to.
    shared: Vec<u8>,
    /// Whether what is posted is read back from the segment first.
    read_back: bool,
}

impl Bare {
    fn new(log: &Path, work: &Path, endpoint: SocketAddr, read_back: bool) -> Bare {
        let path = log.display().to_string();
        let name = log
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let host = |file: &str| {
            std::fs::read_to_string(file)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let os = host("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        let shared = format!(
            r#","event":"herald.log.line","resource":{{"herald.file.name":"{name}","herald.file.path":"{path}","prefect.resource.id":"herald.file.bench:{path}","prefect.resource.name":"{name}"}},"related":[{{"herald.host.boot-id":"{boot}","herald.host.kernel":"{kernel}","herald.host.os":"{os}","prefect.resource.id":"herald.host.bench","prefect.resource.name":"bench","prefect.resource.role":"host"}},{{"herald.agent.version":"0.1.0","prefect.resource.id":"herald.agent.bench","prefect.resource.name":"herald on bench","prefect.resource.role":"agent"}}],"payload":"#,
            boot = host("/proc/sys/kernel/random/boot_id"),
            kernel = host("/proc/sys/kernel/osrelease"),
        );
        let http = TcpStream::connect(endpoint).expect("connect");
        let _ = http.set_nodelay(true);
        Bare {
            log: File::open(log).expect("log"),
            work: work.to_owned(),
            http,
            shared: shared.into_bytes(),
            read_back,
        }
    }

    fn run(mut self) -> u64 {
        let mut chunk = vec![0u8; CHUNK];
        let mut carry: Vec<u8> = Vec::new();
        let mut read_at = 0u64;
        let mut line_at = 0u64;
        let mut lines = 0u64;
        let mut seq = 0u64;
        let mut group: Vec<u8> = Vec::with_capacity(RECORDS_PER_SYNC * 512);
        let mut in_group = 0;
        let mut previous: Option<uuid::Uuid> = None;
        let mut segment = Segment::new(&self.work);
        let mut back = Vec::new();
        let mut body = Vec::new();
        let fingerprint = [7u8; 16];
        loop {
            let n = self.log.read_at(&mut chunk, read_at).expect("read");
            if n == 0 {
                break;
            }
            read_at += n as u64;
            let occurred = chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into_bytes();
            carry.extend_from_slice(&chunk[..n]);
            let mut from = 0;
            while let Some(i) = memchr::memchr(b'\n', &carry[from..]) {
                let line = &carry[from..from + i];
                let mut identity = [0u8; 32];
                identity[..16].copy_from_slice(&fingerprint);
                identity[16..24].copy_from_slice(&line_at.to_le_bytes());
                identity[24..].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(line).to_le_bytes());
                let id = herald::event::derived_id("bench", "bench", &identity);
                let start = group.len();
                group.extend_from_slice(&[0u8; HEADER]);
                group.extend_from_slice(b"{\"occurred\":\"");
                group.extend_from_slice(&occurred);
                group.push(b'"');
                group.extend_from_slice(&REF);
                group.extend_from_slice(b"{\"line\":\"");
                // Lines are UTF-8 here (the bench writes them).
                herald::mapping::json::write_str_body(
                    &mut group,
                    std::str::from_utf8(line).unwrap_or_default(),
                );
                group.extend_from_slice(b"\",\"offset\":");
                herald::mapping::json::write_u64(&mut group, line_at);
                group.extend_from_slice(b"},\"id\":\"");
                let mut text = uuid::Uuid::encode_buffer();
                group.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
                if let Some(previous) = previous {
                    group.extend_from_slice(b"\",\"follows\":\"");
                    group.extend_from_slice(
                        previous.hyphenated().encode_lower(&mut text).as_bytes(),
                    );
                }
                group.extend_from_slice(b"\"}");
                seal(&mut group[start..], seq);
                previous = Some(id);
                seq += 1;
                in_group += 1;
                lines += 1;
                line_at += i as u64 + 1;
                from += i + 1;
                if in_group == RECORDS_PER_SYNC {
                    self.commit(&mut segment, &group, &mut back, &mut body);
                    group.clear();
                    in_group = 0;
                }
            }
            carry.drain(..from);
        }
        if in_group > 0 {
            self.commit(&mut segment, &group, &mut back, &mut body);
        }
        segment.remove();
        lines
    }

    /// Makes `group` durable, reads it back (or not) and posts it.
    fn commit(
        &mut self,
        segment: &mut Segment,
        group: &[u8],
        back: &mut Vec<u8>,
        body: &mut Vec<u8>,
    ) {
        let at = segment.append(group);
        let records_of = if self.read_back {
            back.resize(group.len(), 0);
            segment.file.read_exact_at(back, at).expect("read back");
            &back[..]
        } else {
            group
        };
        let mut records = Vec::with_capacity(RECORDS_PER_SYNC);
        let mut pos = 0;
        while pos + HEADER <= records_of.len() {
            let header = &records_of[pos..pos + HEADER];
            let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
            let end = pos + HEADER + len;
            if self.read_back {
                let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
                assert_eq!(
                    checksum(&records_of[pos..end]),
                    crc,
                    "record at {pos} damaged"
                );
            }
            records.push(pos + HEADER..end);
            pos = end;
        }
        for batch in records.chunks(EVENTS_PER_POST) {
            body.clear();
            body.push(b'[');
            for (i, range) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                let record = &records_of[range.clone()];
                match memchr::memchr(0, record) {
                    Some(at) => {
                        body.extend_from_slice(&record[..at]);
                        body.extend_from_slice(&self.shared);
                        body.extend_from_slice(&record[at + REF.len()..]);
                    }
                    None => body.extend_from_slice(record),
                }
            }
            body.push(b']');
            self.post(body);
        }
    }

    fn post(&mut self, body: &[u8]) {
        let head = format!(
            "POST /api/events/ HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let request = [
            std::io::IoSlice::new(head.as_bytes()),
            std::io::IoSlice::new(body),
        ];
        let mut sent = 0;
        let total = head.len() + body.len();
        while sent < total {
            // A short write is finished by plain writes of what is left.
            if sent == 0 {
                sent = self.http.write_vectored(&request).expect("post");
            } else if sent < head.len() {
                self.http.write_all(&head.as_bytes()[sent..]).expect("post");
                sent = head.len();
            } else {
                self.http
                    .write_all(&body[sent - head.len()..])
                    .expect("post");
                sent = total;
            }
        }
        let mut answer = [0u8; 512];
        let mut got = 0;
        while !answer[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.http.read(&mut answer[got..]).expect("answer");
            assert!(n > 0, "the endpoint closed the connection");
            got += n;
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 2"),
            "the endpoint refused a batch"
        );
    }
}

/// Fills in a record's header (`len | crc32c | seq`) over its payload.
fn seal(record: &mut [u8], seq: u64) {
    let len = (record.len() - HEADER) as u32;
    record[0..4].copy_from_slice(&len.to_le_bytes());
    record[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = checksum(record);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32C over len, seq and payload (every byte but the CRC itself).
fn checksum(record: &[u8]) -> u32 {
    let mut fields = [0u8; 12];
    fields[..4].copy_from_slice(&record[0..4]);
    fields[4..].copy_from_slice(&record[8..16]);
    crc32c::crc32c_append(crc32c::crc32c(&fields), &record[HEADER..])
}

/// The current segment file; a new one every [`SEGMENT_BYTES`], the old
/// one removed (it has been read back and posted), as the issue's loop
/// did. (herald's queue writes its next segment over such a file instead.)
struct Segment {
    work: std::path::PathBuf,
    file: File,
    number: u32,
    len: u64,
}

impl Segment {
    fn new(work: &Path) -> Segment {
        Segment {
            work: work.to_owned(),
            file: create(work, 0),
            number: 0,
            len: 0,
        }
    }

    /// Appends durably; returns where `bytes` start.
    fn append(&mut self, bytes: &[u8]) -> u64 {
        if self.len >= SEGMENT_BYTES {
            self.remove();
            self.number += 1;
            self.file = create(&self.work, self.number);
            self.len = 0;
        }
        let at = self.len;
        self.file.write_all_at(bytes, at).expect("write segment");
        self.file.sync_data().expect("fdatasync");
        self.len += bytes.len() as u64;
        at
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(segment_path(&self.work, self.number));
    }
}

fn segment_path(work: &Path, number: u32) -> std::path::PathBuf {
    work.join(format!("bare-{number:08}.seg"))
}

fn create(work: &Path, number: u32) -> File {
    File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(segment_path(work, number))
        .expect("segment")
}
