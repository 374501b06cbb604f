//! The record a source hands to the mapper, so that sources and mapping
//! never import each other.
//!
//! An observation says what a source saw, in the source's terms (a line, a
//! process exit, a heartbeat). It carries no event name or resource id:
//! turning it into an event is the mapper's job.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

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
/// minute, and this way it costs a single allocation (its text), nothing
/// is looked up by name and nothing about its file is copied per line.
/// [`Observation::field`] answers for these fields as for any other.
#[derive(Debug)]
pub struct Line {
    /// `line`: the text, always a JSON string.
    pub text: Value,
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
}

/// The value of `truncated` when a line has it.
static TRUE: Value = Value::Bool(true);

impl Line {
    /// A line's fields.
    pub fn new(
        text: String,
        path: Arc<Value>,
        offset: u64,
        truncated: bool,
        json: Option<Value>,
        identity: [u8; 32],
    ) -> Self {
        Line {
            text: Value::String(text),
            path,
            offset: Value::from(offset),
            truncated,
            json,
            identity,
        }
    }

    /// The byte offset of the line in its file.
    pub fn offset(&self) -> u64 {
        self.offset.as_u64().unwrap_or_default()
    }

    /// The line's fields by name, in the order the file source always
    /// had them: `line`, `path`, `offset`, then `truncated` and `json`
    /// when present.
    fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        [
            Some(("line", &self.text)),
            Some(("path", &*self.path)),
            Some(("offset", &self.offset)),
            self.truncated.then_some(("truncated", &TRUE)),
            self.json.as_ref().map(|json| ("json", json)),
        ]
        .into_iter()
        .flatten()
    }

    fn field(&self, name: &str) -> Option<&Value> {
        match name {
            "line" => Some(&self.text),
            "path" => Some(&self.path),
            "offset" => Some(&self.offset),
            "truncated" => self.truncated.then_some(&TRUE),
            "json" => self.json.as_ref(),
            _ => None,
        }
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
