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
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The value of a field.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("fields", &self.fields)
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
