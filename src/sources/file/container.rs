//! Container log formats: the lines a container runtime writes around the
//! application's, decoded back into the application's lines with their
//! own time and stream.
//!
//! - CRI (containerd, CRI-O): `<RFC 3339 time> <stdout|stderr> <P|F>
//!   <message>`; a long line is written as `P` (partial) pieces and ends
//!   with an `F` piece.
//! - Docker's json-file driver: `{"log": "...\n", "stream": "stdout",
//!   "time": "..."}`; a line over 16 KiB is split into pieces whose `log`
//!   does not end with a newline.
//!
//! [`Joiner`] joins the pieces of each stream (stdout and stderr pieces
//! may interleave) into one line within `max_line_bytes`, and tells the
//! reader where the first unfinished piece starts, so a checkpoint never
//! passes a line that was not emitted whole. A line that does not parse is
//! kept whole as the message, and a time that does not parse leaves the
//! read time; both are counted and logged (at most every
//! [`WARN_EVERY`] per file). Also here: the pod and container a kubelet
//! log path names.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tracing::warn;

use super::config::Format;
use super::fingerprint::TailCheck;
use crate::metrics::Stats;
use crate::observation::{PodLog, Stream};

/// A line whose last piece has not come for this long is emitted as it
/// is, marked `partial` (the container stopped in the middle of a line).
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two warnings about lines of one file that did not
/// parse.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the runtime said about a line, beside its text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Which stream wrote it.
    pub stream: Option<Stream>,
    /// The runtime's timestamp, when it parsed.
    pub time: Option<DateTime<Utc>>,
    /// The line's last piece never came.
    pub partial: bool,
}

/// One physical line, decoded.
#[derive(Debug, PartialEq, Eq)]
struct Piece<'a> {
    message: Cow<'a, [u8]>,
    stream: Option<Stream>,
    time: Option<DateTime<Utc>>,
    /// More pieces of this line follow.
    more: bool,
    /// What did not parse, if anything.
    error: Option<&'static str>,
}

impl<'a> Piece<'a> {
    /// A line that is not in the format: all of it is the message.
    fn malformed(line: &'a [u8], why: &'static str) -> Self {
        Piece {
            message: Cow::Borrowed(line),
            stream: None,
            time: None,
            more: false,
            error: Some(why),
        }
    }
}

fn parse_time(text: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(text).ok()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn decode(format: Format, line: &[u8]) -> Piece<'_> {
    match format {
        Format::Plain => Piece {
            message: Cow::Borrowed(line),
            stream: None,
            time: None,
            more: false,
            error: None,
        },
        Format::Cri => cri(line),
        Format::Docker => docker(line),
    }
}

fn stream_of(name: &[u8]) -> Option<Stream> {
    match name {
        b"stdout" => Some(Stream::Stdout),
        b"stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

fn cri(line: &[u8]) -> Piece<'_> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(time), Some(stream), Some(tags)) = (parts.next(), parts.next(), parts.next()) else {
        return Piece::malformed(line, "not a CRI log line");
    };
    let message = parts.next().unwrap_or_default();
    let Some(stream) = stream_of(stream) else {
        return Piece::malformed(line, "not a CRI log line (no stream)");
    };
    // Tags are separated by ':'; `P` marks a partial line, `F` a full one.
    let mut more = None;
    for tag in tags.split(|b| *b == b':') {
        match tag {
            b"P" => more = Some(true),
            b"F" => more = more.or(Some(false)),
            _ => {}
        }
    }
    let Some(more) = more else {
        return Piece::malformed(line, "not a CRI log line (no P or F tag)");
    };
    let parsed = parse_time(time);
    Piece {
        message: Cow::Borrowed(message),
        stream: Some(stream),
        time: parsed,
        more,
        error: parsed.is_none().then_some("its timestamp is not RFC 3339"),
    }
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
}

fn docker(line: &[u8]) -> Piece<'_> {
    let Ok(parsed) = serde_json::from_slice::<DockerLine<'_>>(line) else {
        return Piece::malformed(line, "not a Docker json-file line");
    };
    let mut message: Cow<'_, [u8]> = match parsed.log {
        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    };
    // A complete line ends with its newline; a piece of a long one not.
    let more = !message.ends_with(b"\n");
    if !more {
        match &mut message {
            Cow::Borrowed(bytes) => *bytes = &bytes[..bytes.len() - 1],
            Cow::Owned(bytes) => {
                bytes.pop();
            }
        }
    }
    let time = parsed
        .time
        .as_deref()
        .and_then(|t| parse_time(t.as_bytes()));
    let error = if time.is_none() {
        Some("its time is missing or not RFC 3339")
    } else {
        None
    };
    Piece {
        message,
        stream: parsed
            .stream
            .as_deref()
            .and_then(|s| stream_of(s.as_bytes())),
        time,
        more,
        error,
    }
}

/// A complete line, decoded: its text (a slice of the physical line when
/// it came in one piece), where its first piece starts, and the check of
/// the bytes before that (for a multiline record that begins with it).
#[derive(Debug)]
pub struct Logical<'a> {
    pub bytes: Cow<'a, [u8]>,
    pub offset: u64,
    pub check: Option<TailCheck>,
    pub meta: Meta,
    pub truncated: bool,
}

/// The pieces of one stream's line so far.
#[derive(Debug)]
struct Join {
    start: u64,
    check: TailCheck,
    bytes: Vec<u8>,
    time: Option<DateTime<Utc>>,
    stream: Option<Stream>,
    truncated: bool,
    last_piece: Instant,
}

/// What one stream is doing.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Idle,
    Joining(Join),
    /// The line was cut at `max_line_bytes` and emitted: its further
    /// pieces are dropped up to its last.
    Skipping,
}

/// Joins the pieces of container log lines, per stream.
#[derive(Debug)]
pub struct Joiner {
    format: Format,
    max: usize,
    /// stdout, stderr, and lines without a stream (malformed ones never
    /// join; this is for Docker lines that name none).
    slots: [Slot; 3],
    stats: Arc<Stats>,
    source: Arc<str>,
    path: Arc<str>,
    warned: Option<Instant>,
    unreported: u64,
}

fn slot_index(stream: Option<Stream>) -> usize {
    match stream {
        Some(Stream::Stdout) => 0,
        Some(Stream::Stderr) => 1,
        None => 2,
    }
}

impl Joiner {
    /// A joiner for a file of `format` reported under `path`.
    pub fn new(
        format: Format,
        max: usize,
        stats: Arc<Stats>,
        source: Arc<str>,
        path: Arc<str>,
    ) -> Self {
        Joiner {
            format,
            max,
            slots: Default::default(),
            stats,
            source,
            path,
            warned: None,
            unreported: 0,
        }
    }

    /// Takes one physical line at `offset` (`cut` when the reader cut it
    /// at `max_line_bytes`); `check` gives the check of the bytes before
    /// it, asked for only when a line starts to be joined. Returns the
    /// line it completes, if any.
    pub fn push<'a>(
        &mut self,
        line: &'a [u8],
        offset: u64,
        cut: bool,
        check: impl FnOnce() -> TailCheck,
    ) -> Option<Logical<'a>> {
        let piece = decode(self.format, line);
        if let Some(why) = piece.error {
            self.report(why, line);
        }
        let i = slot_index(piece.stream);
        let meta = |time, partial| Meta {
            stream: piece.stream,
            time,
            partial,
        };
        match std::mem::take(&mut self.slots[i]) {
            Slot::Idle if !piece.more || cut => {
                // A whole line in one piece (the common case): no copy.
                let truncated = cut || piece.message.len() > self.max;
                if piece.more {
                    self.slots[i] = Slot::Skipping;
                }
                let mut bytes = piece.message;
                cap(&mut bytes, self.max);
                Some(Logical {
                    bytes,
                    offset,
                    check: None,
                    meta: meta(piece.time, false),
                    truncated,
                })
            }
            Slot::Idle => {
                let mut join = Join {
                    start: offset,
                    check: check(),
                    bytes: Vec::new(),
                    time: piece.time,
                    stream: piece.stream,
                    truncated: false,
                    last_piece: Instant::now(),
                };
                self.extend(&mut join, &piece.message);
                if join.truncated {
                    self.slots[i] = Slot::Skipping;
                    return Some(join.into_logical(false));
                }
                self.slots[i] = Slot::Joining(join);
                None
            }
            Slot::Joining(mut join) => {
                self.extend(&mut join, &piece.message);
                join.truncated |= cut;
                join.last_piece = Instant::now();
                if piece.more && !join.truncated {
                    self.slots[i] = Slot::Joining(join);
                    return None;
                }
                if piece.more {
                    self.slots[i] = Slot::Skipping;
                }
                Some(join.into_logical(false))
            }
            Slot::Skipping => {
                if piece.more {
                    self.slots[i] = Slot::Skipping;
                }
                None
            }
        }
    }

    fn extend(&self, join: &mut Join, message: &[u8]) {
        let room = self.max.saturating_sub(join.bytes.len());
        if message.len() > room {
            join.bytes.extend_from_slice(&message[..room]);
            join.truncated = true;
        } else {
            join.bytes.extend_from_slice(message);
        }
    }

    /// Where the first line still being joined starts, with the check of
    /// the bytes before it: the checkpoint may not pass it.
    pub fn earliest(&self) -> Option<(u64, TailCheck)> {
        self.slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Joining(join) => Some((join.start, join.check)),
                _ => None,
            })
            .min_by_key(|(start, _)| *start)
    }

    /// When the oldest unfinished line times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Joining(join) => Some(join.last_piece + PARTIAL_TIMEOUT),
                _ => None,
            })
            .min()
    }

    /// The unfinished lines whose last piece is overdue (all of them when
    /// `now` is `None`: the file ends), marked `partial`, in file order.
    pub fn take_unfinished(&mut self, now: Option<Instant>) -> Vec<Logical<'static>> {
        let mut done = Vec::new();
        for slot in &mut self.slots {
            let due = match slot {
                Slot::Joining(join) => {
                    now.is_none_or(|now| join.last_piece + PARTIAL_TIMEOUT <= now)
                }
                Slot::Skipping => now.is_none(),
                Slot::Idle => false,
            };
            if due && let Slot::Joining(join) = std::mem::take(slot) {
                done.push(join.into_logical(true));
            } else if due {
                *slot = Slot::Idle;
            }
        }
        done.sort_by_key(|l| l.offset);
        done
    }

    /// Counts a line that did not parse, and logs it at most every
    /// [`WARN_EVERY`].
    fn report(&mut self, why: &'static str, line: &[u8]) {
        self.stats
            .file_format_errors
            .fetch_add(1, Ordering::Relaxed);
        self.unreported += 1;
        if self.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let start = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        warn!(source = %self.source, path = %self.path, why, lines = self.unreported, start = %start, "FileLineUnparsed: sent as it is, with the time it was read");
        self.warned = Some(Instant::now());
        self.unreported = 0;
    }
}

impl Join {
    fn into_logical(self, partial: bool) -> Logical<'static> {
        Logical {
            bytes: Cow::Owned(self.bytes),
            offset: self.start,
            check: Some(self.check),
            meta: Meta {
                stream: self.stream,
                time: self.time,
                partial,
            },
            truncated: self.truncated,
        }
    }
}

/// Cuts `bytes` to at most `max` bytes.
fn cap(bytes: &mut Cow<'_, [u8]>, max: usize) {
    if bytes.len() <= max {
        return;
    }
    match bytes {
        Cow::Borrowed(b) => *b = &b[..max],
        Cow::Owned(b) => b.truncate(max),
    }
}

/// The pod and container a kubelet log path names:
/// `.../<namespace>_<pod>_<uid>/<container>/<n>.log` (or a rotated
/// `<n>.log.<date>`); a symlink to one (`/var/log/containers/*.log`) is
/// followed.
pub fn pod_log(path: &Path) -> Option<PodLog> {
    from_layout(path).or_else(|| from_layout(&std::fs::canonicalize(path).ok()?))
}

fn from_layout(path: &Path) -> Option<PodLog> {
    let container_dir = path.parent()?;
    let container = container_dir.file_name()?.to_str()?;
    let pod_dir = container_dir.parent()?.file_name()?.to_str()?;
    // Namespaces and pod names cannot hold '_'; the uid neither.
    let mut parts = pod_dir.split('_');
    let (Some(namespace), Some(pod), Some(uid), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if [namespace, pod, uid, container]
        .iter()
        .any(|s| s.is_empty())
    {
        return None;
    }
    Some(PodLog {
        namespace: Value::from(namespace),
        pod: Value::from(pod),
        pod_uid: Value::from(uid),
        container: Value::from(container),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(format: Format, max: usize) -> Joiner {
        Joiner::new(
            format,
            max,
            Arc::new(Stats::default()),
            Arc::from("test"),
            Arc::from("/x.log"),
        )
    }

    fn text(l: &Logical<'_>) -> String {
        String::from_utf8_lossy(&l.bytes).into_owned()
    }

    #[test]
    fn cri_lines_decode_with_their_time_and_stream() {
        let piece = cri(b"2024-05-01T10:00:00.123456789Z stderr F oops: it broke");
        assert_eq!(piece.message.as_ref(), b"oops: it broke");
        assert_eq!(piece.stream, Some(Stream::Stderr));
        assert!(!piece.more);
        assert_eq!(
            piece.time.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00.123456789+00:00".to_owned())
        );
        let offset = cri(b"2024-05-01T12:00:00.5+02:00 stdout P a");
        assert!(offset.more);
        assert_eq!(
            offset.time.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00.500+00:00".to_owned())
        );
        // An empty message, with and without its separator.
        assert_eq!(cri(b"2024-05-01T10:00:00Z stdout F").message.as_ref(), b"");
        assert_eq!(cri(b"2024-05-01T10:00:00Z stdout F ").message.as_ref(), b"");
        let bad = cri(b"yesterday stdout F hello");
        assert_eq!(bad.message.as_ref(), b"hello");
        assert_eq!(bad.time, None);
        assert!(bad.error.is_some());
        let alien = cri(b"just some line");
        assert_eq!(alien.message.as_ref(), b"just some line");
        assert_eq!(alien.stream, None);
        assert!(alien.error.is_some());
    }

    #[test]
    fn docker_lines_decode_and_pieces_are_marked() {
        let piece = docker(br#"{"log":"hello \"world\"\n","stream":"stdout","time":"2024-05-01T10:00:00.000000001Z"}"#);
        assert_eq!(piece.message.as_ref(), br#"hello "world""#);
        assert_eq!(piece.stream, Some(Stream::Stdout));
        assert!(!piece.more);
        assert!(piece.time.is_some());
        assert!(docker(br#"{"log":"part","stream":"stderr","time":"2024-05-01T10:00:00Z"}"#).more);
        let bad = docker(br#"{"log":"x\n","stream":"stdout","time":"noon"}"#);
        assert_eq!(bad.time, None);
        assert!(bad.error.is_some());
        assert!(docker(b"{not json").error.is_some());
    }

    #[test]
    fn pieces_join_per_stream_within_the_limit() {
        let mut j = joiner(Format::Cri, 12);
        let check = TailCheck::default;
        assert!(
            j.push(b"2024-05-01T10:00:00Z stdout P abc", 0, false, check)
                .is_none()
        );
        // stderr interleaves: a line of its own.
        let err = j
            .push(b"2024-05-01T10:00:01Z stderr F err", 40, false, check)
            .expect("a whole line");
        assert_eq!(text(&err), "err");
        assert_eq!(j.earliest().map(|(o, _)| o), Some(0));
        let out = j
            .push(b"2024-05-01T10:00:02Z stdout F def", 80, false, check)
            .expect("joined");
        assert_eq!(text(&out), "abcdef");
        assert_eq!(out.offset, 0);
        assert_eq!(out.meta.stream, Some(Stream::Stdout));
        assert_eq!(
            out.meta.time.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00+00:00".to_owned())
        );
        assert_eq!(j.earliest(), None);

        // Over the limit: cut, emitted at once, the rest dropped.
        assert!(
            j.push(
                b"2024-05-01T10:00:00Z stdout P 0123456789",
                120,
                false,
                check
            )
            .is_none()
        );
        let cut = j
            .push(b"2024-05-01T10:00:00Z stdout P abcdef", 160, false, check)
            .expect("cut");
        assert_eq!(text(&cut), "0123456789ab");
        assert!(cut.truncated);
        assert!(
            j.push(b"2024-05-01T10:00:00Z stdout F tail", 200, false, check)
                .is_none()
        );
        let next = j.push(b"2024-05-01T10:00:00Z stdout F next", 240, false, check);
        assert_eq!(next.map(|l| text(&l)), Some("next".to_owned()));

        // A line whose last piece never comes is partial at the end.
        assert!(
            j.push(b"2024-05-01T10:00:00Z stderr P half", 280, false, check)
                .is_none()
        );
        let rest = j.take_unfinished(None);
        assert_eq!(rest.len(), 1);
        assert!(rest[0].meta.partial);
        assert_eq!(text(&rest[0]), "half");
    }

    #[test]
    fn kubelet_paths_name_the_pod_and_container() {
        let pod = pod_log(Path::new(
            "/var/log/pods/shop_web-7f9_0b1c2d3e-aaaa-bbbb-cccc-0123456789ab/nginx/0.log.20240501-101010",
        ))
        .expect("a pod log");
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.pod, "web-7f9");
        assert_eq!(pod.pod_uid, "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab");
        assert_eq!(pod.container, "nginx");
        assert_eq!(pod_log(Path::new("/var/log/app/x.log")), None);
    }
}
