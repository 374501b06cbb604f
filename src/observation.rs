//! The record a source hands to the mapper, so that sources and mapping
//! never import each other.
//!
//! An observation says what a source saw, in the source's terms (a line, a
//! process exit, a heartbeat). It carries no event name or resource id:
//! turning it into an event is the mapper's job.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One thing a source saw.
pub struct Observation {
    /// The configured name of the source that saw it.
    pub source: Arc<str>,
    /// What kind of thing it is: `agent.heartbeat`, `line`,
    /// `process.exited`.
    pub kind: Cow<'static, str>,
    /// Named values: the line text, a pid, an exit status, an uptime.
    pub fields: Vec<(Cow<'static, str>, Value)>,
    /// When the source saw it.
    pub observed_at: DateTime<Utc>,
    /// Stable bytes that name this observation if it can be seen again (a
    /// line re-read after a crash); the event id is derived from them.
    /// `None` for observations that cannot recur.
    pub identity: Option<Vec<u8>>,
    /// Called once the event made from this observation is durable, so the
    /// source can move its checkpoint. Never called for an observation
    /// that was dropped or rejected.
    pub on_durable: Option<OnDurable>,
    /// A line's fields and identity, typed (see [`Line`]); `None` for
    /// everything else, whose values are in `fields`.
    pub line: Option<Line>,
}

/// What the file source saw in one line, kept typed rather than in
/// `fields`: a line is the one observation made millions of times a
/// minute, and this way it costs no allocation of its own (its text is a
/// slice of the chunk the file was read in), nothing is looked up by name
/// and nothing about its file is copied per line.
/// [`Observation::field`] answers for these fields as for any other.
#[derive(Debug)]
pub struct Line {
    /// `line`: the text (see [`LineText`]).
    pub text: LineText,
    /// `path`: where the file was found, always a JSON string, shared by
    /// every line of the file.
    pub path: Arc<Value>,
    /// `truncated`: whether the line was cut at `max_line_bytes` (the
    /// field is present only when it was).
    pub truncated: bool,
    /// `json`: the line parsed as a JSON object, when the source parses.
    pub json: Option<Value>,
    /// The line's identity (what [`Observation::identity`] holds for other
    /// observations).
    pub identity: [u8; 32],
    /// `offset`: the byte offset of the line in its file, as a JSON
    /// number (see [`Line::offset`]).
    offset: Value,
    /// `stream`: which stream of a container wrote it (container formats
    /// only).
    pub stream: Option<Stream>,
    /// `partial`: the line's last piece never came (the file ended, or
    /// the container stopped, in the middle of a line).
    pub partial: bool,
    /// The time the container runtime wrote in front of the line, which
    /// becomes the event's `occurred` (when it parsed).
    pub time: Option<DateTime<Utc>>,
    /// The pod and container whose log the file is (`kubernetes = true`).
    pub pod: Option<Arc<PodLog>>,
}

/// The value of `truncated` and `partial` when a line has them.
static TRUE: Value = Value::Bool(true);

/// A container's output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn as_value(self) -> &'static Value {
        static VALUES: std::sync::LazyLock<[Value; 2]> = std::sync::LazyLock::new(|| {
            [
                Value::from(Stream::Stdout.as_str()),
                Value::from(Stream::Stderr.as_str()),
            ]
        });
        &VALUES[self as usize]
    }
}

/// Whose log a file is, from a kubelet log path
/// (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log`): the
/// `namespace`, `pod`, `pod_uid` and `container` fields, as JSON strings
/// shared by every line of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLog {
    /// The pod's namespace.
    pub namespace: Value,
    /// The pod's name.
    pub pod: Value,
    /// The pod's uid.
    pub pod_uid: Value,
    /// The container's name.
    pub container: Value,
}

impl Line {
    /// A line's fields; `text` is a `String` or the line's bytes as read
    /// (see [`LineText`]).
    pub fn new(
        text: impl Into<LineText>,
        path: Arc<Value>,
        offset: u64,
        truncated: bool,
        json: Option<Value>,
        identity: [u8; 32],
    ) -> Self {
        Line {
            text: text.into(),
            path,
            offset: Value::from(offset),
            truncated,
            json,
            identity,
            stream: None,
            partial: false,
            time: None,
            pod: None,
        }
    }

    /// The byte offset of the line in its file.
    pub fn offset(&self) -> u64 {
        self.offset.as_u64().unwrap_or_default()
    }

    /// The line's fields by name, in the order the file source always
    /// had them: `line`, `path`, `offset`, then `truncated` and `json`
    /// when present, then what container formats add.
    fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        let pod = self.pod.as_deref();
        [
            Some(("line", self.text.as_value())),
            Some(("path", &*self.path)),
            Some(("offset", &self.offset)),
            self.truncated.then_some(("truncated", &TRUE)),
            self.json.as_ref().map(|json| ("json", json)),
            self.stream.map(|s| ("stream", s.as_value())),
            self.partial.then_some(("partial", &TRUE)),
            pod.map(|p| ("namespace", &p.namespace)),
            pod.map(|p| ("pod", &p.pod)),
            pod.map(|p| ("pod_uid", &p.pod_uid)),
            pod.map(|p| ("container", &p.container)),
        ]
        .into_iter()
        .flatten()
    }

    fn field(&self, name: &str) -> Option<&Value> {
        match name {
            "line" => Some(self.text.as_value()),
            "path" => Some(&self.path),
            "offset" => Some(&self.offset),
            "truncated" => self.truncated.then_some(&TRUE),
            "json" => self.json.as_ref(),
            "stream" => self.stream.map(Stream::as_value),
            "partial" => self.partial.then_some(&TRUE),
            "namespace" => self.pod.as_deref().map(|p| &p.namespace),
            "pod" => self.pod.as_deref().map(|p| &p.pod),
            "pod_uid" => self.pod.as_deref().map(|p| &p.pod_uid),
            "container" => self.pod.as_deref().map(|p| &p.container),
            _ => None,
        }
    }
}

/// A line's text, usually a slice of the chunk its file was read in:
/// the reader checks a chunk's UTF-8 once and shares it, so a line costs
/// no allocation and no copy of its own, and nothing checks it again. A
/// line that is not valid UTF-8 (or spans two reads) has its own text,
/// with invalid sequences replaced by U+FFFD. A JSON string of the text
/// ([`LineText::as_value`]) is made on first need only, for what needs a
/// `serde_json::Value` (all fields of an observation); the hot path (the
/// line written into an event) never makes one.
pub struct LineText {
    /// The chunk (or the line alone).
    text: Arc<str>,
    /// Where the line is in it.
    range: Range<usize>,
    /// The text as a JSON string, made on first need.
    value: OnceLock<Value>,
}

impl LineText {
    /// The line at `range` of a chunk; `None` unless the range falls on
    /// character boundaries inside it.
    pub fn in_chunk(chunk: &Arc<str>, range: Range<usize>) -> Option<Self> {
        chunk.get(range.clone())?;
        Some(LineText {
            text: chunk.clone(),
            range,
            value: OnceLock::new(),
        })
    }

    /// The part of the text at `range` (relative to the text); `None`
    /// unless it falls on character boundaries inside it.
    pub fn slice(&self, range: Range<usize>) -> Option<Self> {
        self.as_str().get(range.clone())?;
        Some(LineText {
            text: self.text.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
            value: OnceLock::new(),
        })
    }

    /// The first `len` bytes of the text (fewer, to end on a character
    /// boundary).
    pub fn cut(self, len: usize) -> Self {
        let text = self.as_str();
        let mut end = len.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        LineText {
            range: self.range.start..self.range.start + end,
            text: self.text,
            value: OnceLock::new(),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.text.get(self.range.clone()).unwrap_or_default()
    }

    /// The text as a JSON string, made (once) on first call.
    pub fn as_value(&self) -> &Value {
        self.value
            .get_or_init(|| Value::String(self.as_str().to_owned()))
    }
}

impl From<String> for LineText {
    fn from(text: String) -> Self {
        let range = 0..text.len();
        LineText {
            text: Arc::from(text),
            range,
            value: OnceLock::new(),
        }
    }
}

impl fmt::Debug for LineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Observation {
    /// An observation of `kind` by `source`, seen now, with no fields.
    pub fn new(source: Arc<str>, kind: impl Into<Cow<'static, str>>) -> Self {
        Observation {
            source,
            kind: kind.into(),
            fields: Vec::new(),
            observed_at: Utc::now(),
            identity: None,
            on_durable: None,
            line: None,
        }
    }

    /// A line observation of `source`, seen at `observed_at`.
    pub fn line(source: Arc<str>, observed_at: DateTime<Utc>, line: Line) -> Self {
        Observation {
            source,
            kind: Cow::Borrowed("line"),
            fields: Vec::new(),
            observed_at,
            identity: None,
            on_durable: None,
            line: Some(line),
        }
    }

    /// When what it reports happened: a container log line's own time,
    /// else when the source saw it.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.line
            .as_ref()
            .and_then(|line| line.time)
            .unwrap_or(self.observed_at)
    }

    /// Adds a field.
    pub fn with(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The value of a field.
    pub fn field(&self, name: &str) -> Option<&Value> {
        if let Some(value) = self.line.as_ref().and_then(|line| line.field(name)) {
            return Some(value);
        }
        self.fields
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// Every field with its value: a line's typed fields first, then
    /// `fields`.
    pub fn all_fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.line
            .iter()
            .flat_map(Line::fields)
            .chain(self.fields.iter().map(|(n, v)| (&**n, v)))
    }

    /// The bytes the event id is derived from: a line's identity, else
    /// `identity`.
    pub fn identity_bytes(&self) -> Option<&[u8]> {
        match &self.line {
            Some(line) => Some(&line.identity),
            None => self.identity.as_deref(),
        }
    }
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("fields", &self.fields)
            .field("line", &self.line)
            .field("observed_at", &self.observed_at)
            .field("identity", &self.identity.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// A callback run once an observation's event is durable.
pub struct OnDurable(Box<dyn FnOnce() + Send>);

impl OnDurable {
    /// Wraps a callback.
    pub fn new(callback: impl FnOnce() + Send + 'static) -> Self {
        OnDurable(Box::new(callback))
    }

    /// Runs it.
    pub fn fire(self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: impl Into<LineText>) -> Observation {
        let line = Line::new(
            text,
            Arc::new(Value::from("/var/log/a.log")),
            7,
            false,
            None,
            [0; 32],
        );
        Observation::line(Arc::from("app"), Utc::now(), line)
    }

    #[test]
    fn line_text_reads_in_place_from_its_chunk() {
        let chunk: Arc<str> = Arc::from("one\ntwo \u{e9}\n");
        let text = LineText::in_chunk(&chunk, 4..10).expect("on boundaries");
        assert_eq!(text.as_str(), "two \u{e9}");
        assert_eq!(
            text.as_str().as_ptr(),
            chunk[4..].as_ptr(),
            "borrowed from the chunk, not copied"
        );
        assert_eq!(text.as_value(), &Value::from("two \u{e9}"));
        assert!(LineText::in_chunk(&chunk, 4..9).is_none(), "inside a char");
        assert!(LineText::in_chunk(&chunk, 4..99).is_none(), "past the end");
    }

    #[test]
    fn a_cut_ends_on_a_character_boundary() {
        let chunk: Arc<str> = Arc::from("x caf\u{e9}s");
        let text = LineText::in_chunk(&chunk, 2..8).expect("on boundaries");
        assert_eq!(text.cut(4).as_str(), "caf");
        let text = LineText::from(String::from("caf\u{e9}s"));
        assert_eq!(text.cut(5).as_str(), "caf\u{e9}");
        assert_eq!(LineText::from(String::from("ab")).cut(9).as_str(), "ab");
    }

    #[test]
    fn an_empty_line_is_an_empty_string() {
        let obs = typed(String::new());
        assert_eq!(obs.line.as_ref().map(|l| l.text.as_str()), Some(""));
        assert_eq!(obs.field("line"), Some(&Value::from("")));
    }

    #[test]
    fn a_typed_line_answers_by_name_as_fields_would() {
        let chunk: Arc<str> = Arc::from("GET / 200\n");
        let in_chunk = typed(LineText::in_chunk(&chunk, 0..9).expect("on boundaries"));
        let from_string = typed(String::from("GET / 200"));
        for obs in [&in_chunk, &from_string] {
            assert_eq!(obs.field("line"), Some(&Value::from("GET / 200")));
            assert_eq!(obs.field("offset"), Some(&Value::from(7)));
            assert_eq!(obs.field("truncated"), None);
            let all: Vec<(&str, &Value)> = obs.all_fields().collect();
            assert_eq!(
                all,
                [
                    ("line", &Value::from("GET / 200")),
                    ("path", &Value::from("/var/log/a.log")),
                    ("offset", &Value::from(7)),
                ]
            );
        }
    }
}
