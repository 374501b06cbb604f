//! Building one event: a [`Plan`] (a rule's outputs, or a built-in
//! default, combined with this agent's identity) written straight into the
//! event's JSON buffer.
//!
//! The bytes are those [`crate::event::Event::to_json`] writes for the same
//! event (same field order, labels and payload keys sorted, the same
//! timestamp and UUID forms), and the same rules are checked on the way:
//! a non-empty name of at most 1024 characters, non-empty resource ids and
//! roles, at most 500 labels and 100 related resources (both bounded at
//! load), and at most 1,500,000 bytes. A value missing at run time fails
//! the build as a whole and leaves the buffer as it was: never a
//! half-built event. This module does not choose the plan; the mapper
//! does.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use chrono::format::Parsed;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::fields::{FieldRef, Root, Scope, Val};
use super::follows::Follows;
use super::json;
use super::kinds::{self, ResourceSpec};
use super::rule::{EpochUnit, FieldSelection, Occurred, PayloadValue, TimeFormat};
use super::template::Template;
use super::time;
use crate::event::{
    EventError, MAX_EVENT_BYTES, MAX_EVENT_NAME_CHARS, Part, RESOURCE_ID, RESOURCE_ROLE,
};
use crate::observation::{Observation, Stream};
use crate::queue;

mod plans;
pub(crate) use plans::Base;

/// Why an event could not be built.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A value the templates need is missing from the observation.
    Missing(&'static str),
    /// The event would break a rule of the format.
    Invalid(EventError),
}

/// Which built-in default a kind gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `line`: `herald.log.line` on the file's resource.
    Line,
    /// A `line` of a pod's container log (`kubernetes = true`): as `Line`,
    /// with the pod and the container as related resources.
    PodLine,
    /// `file.*` (created, rotated, deleted, ...): `herald.<kind>` on the
    /// file's resource.
    File,
    /// A kind with its own [`ResourceSpec`] (a process, a mount, a probe):
    /// `herald.<kind>` on that resource; the index of the spec in
    /// [`kinds::resource_specs`].
    Resource(usize),
    /// Everything else: `herald.<kind>` on the agent's resource.
    Other,
}

impl Flavor {
    /// Where this flavor's plans are kept: 0 to 3, then one per spec.
    pub fn index(self) -> usize {
        match self {
            Flavor::Line => 0,
            Flavor::File => 1,
            Flavor::Other => 2,
            Flavor::PodLine => 3,
            Flavor::Resource(i) => 4 + i,
        }
    }

    /// Every flavor, in index order, for `specs` resource specs.
    pub fn all(specs: usize) -> impl Iterator<Item = Flavor> {
        [Flavor::Line, Flavor::File, Flavor::Other, Flavor::PodLine]
            .into_iter()
            .chain((0..specs).map(Flavor::Resource))
    }

    /// The flavor of `kind`, with `specs` from [`kinds::resource_specs`].
    pub fn of(kind: &str, specs: &[&'static ResourceSpec]) -> Flavor {
        if kind == "line" {
            Flavor::Line
        } else if kind.starts_with("file.") {
            Flavor::File
        } else {
            kinds::schema(kind)
                .and_then(|k| k.resource)
                .and_then(|spec| specs.iter().position(|s| std::ptr::eq(*s, spec)))
                .map_or(Flavor::Other, Flavor::Resource)
        }
    }
}

/// The event name.
#[derive(Clone, Debug)]
enum Name {
    Static(Box<str>),
    /// `herald.<kind>`.
    KindPrefixed,
    Template(Template),
}

/// A label's value.
#[derive(Clone, Debug)]
enum Label {
    /// Known at load: its text, and the text written as a JSON string.
    Static {
        text: Box<str>,
        json: Box<[u8]>,
    },
    Template(Template),
    /// Left out of the resource when a field it names is missing.
    Optional(Template),
}

/// The fields whose values are the same for every line of one file and
/// stream (a pod log's pod and container come from its path), so that
/// labels using only these can be written once per file.
const PER_FILE: &[&str] = &["path", "stream", "namespace", "pod", "pod_uid", "container"];

/// A resource's labels, sorted by key, each key already written as
/// `"key":`.
#[derive(Clone, Debug)]
struct Labels {
    labels: Vec<(Box<[u8]>, Label)>,
    /// Which label is `prefect.resource.id`.
    id: usize,
    /// Which label is `prefect.resource.role`, for related resources.
    role: Option<usize>,
    /// A related resource left out, rather than failing the event, when a
    /// value of its labels is missing.
    optional: bool,
    /// Whether the labels depend on [`PER_FILE`] fields alone (a file's
    /// resource, a pod log's pod), so that consecutive lines of a file
    /// reuse them written.
    by_path: bool,
}

impl Labels {
    fn new(map: BTreeMap<String, Label>) -> Labels {
        let id = map
            .keys()
            .position(|k| k == RESOURCE_ID)
            .unwrap_or(usize::MAX);
        let role = map.keys().position(|k| k == RESOURCE_ROLE);
        let labels: Vec<(Box<[u8]>, Label)> = map
            .into_iter()
            .map(|(k, v)| {
                let mut key = Vec::with_capacity(k.len() + 3);
                json::write_str(&mut key, &k);
                key.push(b':');
                (key.into_boxed_slice(), v)
            })
            .collect();
        let by_path = labels.iter().all(|(_, label)| match label {
            Label::Static { .. } => true,
            Label::Template(t) | Label::Optional(t) => t.only_uses(PER_FILE),
        });
        Labels {
            labels,
            id,
            role,
            optional: false,
            by_path,
        }
    }
}

fn static_label(text: &str) -> Label {
    let mut out = Vec::with_capacity(text.len() + 2);
    json::write_str(&mut out, text);
    Label::Static {
        text: text.into(),
        json: out.into_boxed_slice(),
    }
}

/// One payload entry.
#[derive(Clone, Debug)]
struct Entry {
    key: Box<str>,
    value: PayloadValue,
    /// Left out when missing, instead of failing the build (built-in
    /// defaults only: `truncated` is set only on cut lines).
    optional: bool,
}

#[derive(Clone, Debug)]
struct Payload {
    /// Sorted by key.
    entries: Vec<Entry>,
    fields: FieldSelection,
    /// An object whose entries are added under their own keys (the parsed
    /// JSON of a line, in the built-in line mapping).
    spread: Option<FieldRef>,
}

/// Everything needed to build one kind of event.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    name: Name,
    occurred: Option<Occurred>,
    resource: Labels,
    related: Vec<Labels>,
    /// The built-in related resources, already written, comma-separated.
    builtin_related: Box<[u8]>,
    /// `builtin_related` as a shared part of the queue, once the mapper
    /// writes for it.
    related_part: Option<u32>,
    payload: Payload,
    follows: bool,
}

fn field(name: &str) -> FieldRef {
    FieldRef {
        text: name.into(),
        root: Root::Field(name.into()),
        path: Box::new([]),
    }
}

/// Reusable buffers, so that building an event allocates only the event.
#[derive(Default)]
pub(crate) struct Scratch {
    text: String,
    /// The rendered resource id of the event being built, for `follows`.
    resource_id: String,
    /// The last resource written from labels that depend on `path` alone.
    resource: ResourceMemo,
    /// Events are written for the queue, with references to shared parts
    /// (see `queue::shared`) in place of the resource and related
    /// resources they repeat.
    pub share: bool,
    /// Bytes the references of the event being written stand for, beyond
    /// their own: its full size is what counts against the limit.
    shared_extra: usize,
}

impl Scratch {
    /// Refers to shared part `id`, of `len` bytes, in `out`.
    fn write_ref(&mut self, out: &mut BytesMut, id: u32, len: usize) {
        queue::shared::write_ref(out, id);
        self.shared_extra += len - queue::shared::REF_LEN;
    }
}

/// A resource as written for one path: the lines of a file share it, and
/// rendering its labels again for each is most of the cost of a line's
/// resource.
#[derive(Default)]
struct ResourceMemo {
    /// Which labels (their address; plans do not move while a mapper
    /// lives).
    labels: usize,
    path: String,
    /// The `stream` the resource was written for (container formats).
    stream: Option<Stream>,
    json: Vec<u8>,
    /// The plan's own related resources as written for this file, when
    /// they depend on [`PER_FILE`] fields alone (a pod log's pod and
    /// container).
    related: Option<Vec<u8>>,
    id: String,
    /// `json` as a shared part, when sharing.
    part: Option<u32>,
    /// The plan's name, `json` and related resources as one shared part
    /// (and its length), once asked for (see `Plan::shared_stretch`).
    stretch: Option<Option<(u32, usize)>>,
}

/// What building needs besides the plan.
pub(crate) struct Build<'a, 'b> {
    pub scope: &'b Scope<'a>,
    pub id: Uuid,
    pub observed_at: DateTime<Utc>,
    pub scratch: &'b mut Scratch,
    pub follows: &'b mut Follows,
    /// Counts `occurred` values that did not parse.
    pub occurred_failures: &'b mut u64,
}

impl Plan {
    /// Registers the built-in related resources as a shared part of the
    /// queue, for a mapper that writes with references.
    pub fn share_related(&mut self) {
        self.related_part = queue::shared::intern(&self.builtin_related);
    }

    /// Appends the event to `out`, or leaves `out` as it was.
    pub fn write(&self, b: &mut Build<'_, '_>, out: &mut BytesMut) -> Result<(), Failure> {
        let start = out.len();
        let result = self.write_inner(b, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_inner(
        &self,
        b: &mut Build<'_, '_>,
        out: &mut BytesMut,
        start: usize,
    ) -> Result<(), Failure> {
        let occurred = match &self.occurred {
            None => b.scope.obs.occurred_at(),
            Some(spec) => match parse_time(b.scope, spec) {
                Some(at) => at,
                None => {
                    *b.occurred_failures += 1;
                    b.scope.obs.occurred_at()
                }
            },
        };
        let prefix = if b.scratch.share {
            out.extend_from_slice(&[queue::shared::MARK, queue::shared::WITH_REFS]);
            b.scratch.shared_extra = 0;
            2
        } else {
            0
        };
        out.extend_from_slice(b"{\"occurred\":");
        json::write_timestamp(out, &occurred);
        match self.shared_stretch(b) {
            Some((id, len)) => b.scratch.write_ref(out, id, len),
            None => self.write_stretch(b, out)?,
        }
        self.payload.write(b.scope, out)?;
        out.extend_from_slice(b",\"id\":");
        json::write_uuid(out, &b.id);
        // Ends the event, with the event it follows if any; `false` when it
        // is too large, so that it is not recorded as the resource's last.
        let mut too_large = None;
        let mut finish = |follows: Option<Uuid>| {
            if let Some(previous) = &follows {
                out.extend_from_slice(b",\"follows\":");
                json::write_uuid(out, previous);
            }
            out.put_u8(b'}');
            let bytes = out.len() - start - prefix + b.scratch.shared_extra;
            if bytes > MAX_EVENT_BYTES {
                too_large = Some(bytes);
            }
            too_large.is_none()
        };
        if self.follows {
            b.follows.previous_then_record(
                &b.scratch.resource_id,
                b.id,
                &occurred,
                &b.observed_at,
                finish,
            );
        } else {
            finish(None);
        }
        match too_large {
            Some(bytes) => Err(Failure::Invalid(EventError::TooLarge { bytes })),
            None => Ok(()),
        }
    }

    /// What lies between `occurred` and the payload of every line of a
    /// file under a plan with a static name and only the built-in related
    /// resources, as one shared part: the second line of a file on, when
    /// writing for the queue.
    fn shared_stretch(&self, b: &mut Build<'_, '_>) -> Option<(u32, usize)> {
        if !b.scratch.share || !self.resource.by_path || self.related.iter().any(|r| !r.by_path) {
            return None;
        }
        let Name::Static(name) = &self.name else {
            return None;
        };
        let path = b.scope.obs.field("path").and_then(Value::as_str)?;
        let stream = stream_of(b.scope.obs);
        let scratch = &mut *b.scratch;
        let memo = &mut scratch.resource;
        // The memo is this plan's (by its labels) and this file's: an
        // event of this file under this plan was written in full before.
        if memo.labels != std::ptr::from_ref(&self.resource) as usize
            || memo.path != path
            || memo.stream != stream
        {
            return None;
        }
        let own_related = match &memo.related {
            Some(related) => related.as_slice(),
            None if self.related.is_empty() => &[],
            None => return None,
        };
        let part = *memo.stretch.get_or_insert_with(|| {
            let mut bytes = b",\"event\":".to_vec();
            json::write_str(&mut bytes, name);
            bytes.extend_from_slice(b",\"resource\":");
            bytes.extend_from_slice(&memo.json);
            bytes.extend_from_slice(b",\"related\":[");
            bytes.extend_from_slice(own_related);
            if !own_related.is_empty() && !self.builtin_related.is_empty() {
                bytes.push(b',');
            }
            bytes.extend_from_slice(&self.builtin_related);
            bytes.extend_from_slice(b"],\"payload\":");
            queue::shared::intern(&bytes).map(|id| (id, bytes.len()))
        });
        if part.is_some() {
            scratch.resource_id.clone_from(&memo.id);
        }
        part
    }

    /// Writes the event's name, resource and related resources, up to
    /// its payload.
    fn write_stretch(&self, b: &mut Build<'_, '_>, out: &mut BytesMut) -> Result<(), Failure> {
        out.extend_from_slice(b",\"event\":");
        self.write_name(b, out)?;
        out.extend_from_slice(b",\"resource\":");
        write_resource(&self.resource, b, out)?;
        out.extend_from_slice(b",\"related\":[");
        let related_start = out.len();
        let mut written = 0;
        for related in &self.related {
            let mark = out.len();
            if written > 0 {
                out.put_u8(b',');
            }
            match write_labels(related, b, out, Some(written)) {
                Ok(()) => written += 1,
                // A related resource whose values this observation lacks
                // (a process outside any container) is left out.
                Err(Failure::Missing(_)) if related.optional => out.truncate(mark),
                Err(failure) => return Err(failure),
            }
        }
        // Kept with the file's resource, for the next lines' shared stretch.
        let memo = &mut b.scratch.resource;
        if !self.related.is_empty()
            && self.related.iter().all(|r| r.by_path)
            && memo.labels == std::ptr::from_ref(&self.resource) as usize
        {
            memo.related = Some(out[related_start..].to_vec());
        }
        if !self.builtin_related.is_empty() {
            if written > 0 {
                out.put_u8(b',');
            }
            match self.related_part.filter(|_| b.scratch.share) {
                Some(id) => b.scratch.write_ref(out, id, self.builtin_related.len()),
                None => out.extend_from_slice(&self.builtin_related),
            }
        }
        out.extend_from_slice(b"],\"payload\":");
        Ok(())
    }

    fn write_name(&self, b: &mut Build<'_, '_>, out: &mut BytesMut) -> Result<(), Failure> {
        let name: &str = match &self.name {
            Name::Static(name) => name,
            Name::KindPrefixed => {
                out.extend_from_slice(b"\"herald.");
                json::write_str_body(out, &b.scope.obs.kind);
                out.put_u8(b'"');
                return check_name_len(7 + b.scope.obs.kind.chars().count());
            }
            Name::Template(t) => t
                .render(b.scope, &mut b.scratch.text)
                .ok_or(Failure::Missing("event"))?,
        };
        if name.trim().is_empty() {
            return Err(Failure::Invalid(EventError::EmptyName));
        }
        if name.len() > MAX_EVENT_NAME_CHARS {
            let chars = name.chars().count();
            if chars > MAX_EVENT_NAME_CHARS {
                return Err(Failure::Invalid(EventError::NameTooLong {
                    chars,
                    name_start: name.chars().take(64).collect(),
                }));
            }
        }
        json::write_str(out, name);
        Ok(())
    }
}

fn check_name_len(chars: usize) -> Result<(), Failure> {
    if chars > MAX_EVENT_NAME_CHARS {
        return Err(Failure::Invalid(EventError::NameTooLong {
            chars,
            name_start: String::new(),
        }));
    }
    Ok(())
}

/// The container stream of a line, part of its resource's memo key.
fn stream_of(obs: &Observation) -> Option<Stream> {
    obs.line.as_ref().and_then(|line| line.stream)
}

/// Writes the event's resource, as [`write_labels`] does, reusing what it
/// wrote last when the labels depend on `path` alone and the path is the
/// same.
fn write_resource(
    labels: &Labels,
    b: &mut Build<'_, '_>,
    out: &mut BytesMut,
) -> Result<(), Failure> {
    let path = labels
        .by_path
        .then(|| b.scope.obs.field("path").and_then(Value::as_str))
        .flatten();
    let Some(path) = path else {
        return write_labels(labels, b, out, None);
    };
    let key = std::ptr::from_ref(labels) as usize;
    let stream = stream_of(b.scope.obs);
    let memo = &b.scratch.resource;
    if memo.labels == key && memo.path == path && memo.stream == stream {
        let scratch = &mut *b.scratch;
        scratch.resource_id.clone_from(&scratch.resource.id);
        match scratch.resource.part.filter(|_| scratch.share) {
            Some(id) => {
                let len = scratch.resource.json.len();
                scratch.write_ref(out, id, len);
            }
            None => out.extend_from_slice(&scratch.resource.json),
        }
        return Ok(());
    }
    let start = out.len();
    write_labels(labels, b, out, None)?;
    let memo = &mut b.scratch.resource;
    memo.labels = key;
    memo.path.clear();
    memo.path.push_str(path);
    memo.stream = stream;
    memo.related = None;
    memo.json.clear();
    memo.json.extend_from_slice(&out[start..]);
    memo.id.clone_from(&b.scratch.resource_id);
    memo.part = if b.scratch.share {
        queue::shared::intern(&memo.json)
    } else {
        None
    };
    memo.stretch = None;
    Ok(())
}

/// Writes a resource's labels; `related` is its index among the related
/// resources, `None` for the event's own resource.
fn write_labels(
    labels: &Labels,
    b: &mut Build<'_, '_>,
    out: &mut BytesMut,
    related: Option<usize>,
) -> Result<(), Failure> {
    out.put_u8(b'{');
    let mut written = 0;
    for (i, (key, label)) in labels.labels.iter().enumerate() {
        let mark = out.len();
        if written > 0 {
            out.put_u8(b',');
        }
        written += 1;
        out.extend_from_slice(key);
        let is_id = i == labels.id;
        let must_have = is_id || labels.role == Some(i);
        let template = match label {
            Label::Static { text, json } => {
                out.extend_from_slice(json);
                if is_id && related.is_none() {
                    b.scratch.resource_id.clear();
                    b.scratch.resource_id.push_str(text);
                }
                continue;
            }
            Label::Optional(t) => match t.render(b.scope, &mut b.scratch.text) {
                Some(text) => {
                    json::write_str(out, text);
                    continue;
                }
                None => {
                    out.truncate(mark);
                    written -= 1;
                    continue;
                }
            },
            Label::Template(t) => t,
        };
        let text = template
            .render(b.scope, &mut b.scratch.text)
            .ok_or(Failure::Missing("label"))?;
        if must_have && text.trim().is_empty() {
            return Err(Failure::Invalid(match (is_id, related) {
                (true, None) => EventError::MissingResourceId {
                    part: Part::Resource,
                },
                (true, Some(index)) => EventError::MissingResourceId {
                    part: Part::Related(index),
                },
                (false, index) => EventError::MissingRole {
                    index: index.unwrap_or_default(),
                    id: String::new(),
                },
            }));
        }
        json::write_str(out, text);
        if is_id && related.is_none() {
            b.scratch.resource_id.clear();
            b.scratch.resource_id.push_str(text);
        }
    }
    out.put_u8(b'}');
    Ok(())
}

/// A payload value to write.
enum Out<'a> {
    Val(Val<'a>),
    Raw(&'a Value),
    Text(String),
    Const(&'a Value),
}

impl Out<'_> {
    fn write(&self, out: &mut BytesMut) {
        match self {
            Out::Val(Val::Str(s)) => json::write_str(out, s),
            Out::Val(Val::Json(v)) | Out::Raw(v) | Out::Const(v) => json::write_value(out, v),
            Out::Text(s) => json::write_str(out, s),
        }
    }
}

impl Payload {
    fn write(&self, scope: &Scope<'_>, out: &mut BytesMut) -> Result<(), Failure> {
        // The spread is the source's own parse only (`json = true`): the
        // built-in mapping does not parse lines nobody asked to parse.
        let spread = match &self.spread {
            Some(spread) => match scope.obs.field(&spread.text) {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
            None => None,
        };
        if matches!(self.fields, FieldSelection::None) && spread.is_none() {
            return self.write_entries(scope, out);
        }
        // Collected in priority order (entries, then selected fields, then
        // the spread object); the first of a key wins.
        let mut items: Vec<(&str, Out<'_>)> = Vec::new();
        for entry in &self.entries {
            let value = match &entry.value {
                PayloadValue::Const(v) => Some(Out::Const(v)),
                PayloadValue::Template(t) => match t.single_field() {
                    Some(f) => scope.get(f).map(Out::Val),
                    None => {
                        let mut text = String::new();
                        t.render(scope, &mut text).map(|s| Out::Text(s.to_owned()))
                    }
                },
            };
            match value {
                Some(v) => items.push((&entry.key, v)),
                None if entry.optional => {}
                None => return Err(Failure::Missing("payload")),
            }
        }
        match &self.fields {
            FieldSelection::None => {}
            FieldSelection::All => {
                for (name, value) in scope.obs.all_fields() {
                    items.push((name, Out::Raw(value)));
                }
                for (name, text) in scope.captures() {
                    items.push((name, Out::Val(Val::Str(text))));
                }
            }
            FieldSelection::Named(fields) => {
                for f in fields {
                    match scope.get(f) {
                        Some(v) => items.push((&f.text, Out::Val(v))),
                        None => return Err(Failure::Missing("payload_fields")),
                    }
                }
            }
        }
        if let Some(map) = spread {
            for (k, v) in map {
                items.push((k, Out::Raw(v)));
            }
        }
        items.sort_by(|a, b| a.0.cmp(b.0));
        items.dedup_by(|later, earlier| later.0 == earlier.0);
        out.put_u8(b'{');
        for (i, (key, value)) in items.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            json::write_str(out, key);
            out.put_u8(b':');
            value.write(out);
        }
        out.put_u8(b'}');
        Ok(())
    }
}

impl Payload {
    /// Named entries only: already sorted and unique, so written as they
    /// come, with no list to sort.
    fn write_entries(&self, scope: &Scope<'_>, out: &mut BytesMut) -> Result<(), Failure> {
        out.put_u8(b'{');
        let mut first = true;
        let mut text = String::new();
        for entry in &self.entries {
            let value = match &entry.value {
                PayloadValue::Const(v) => Some(Out::Const(v)),
                PayloadValue::Template(t) => match t.single_field() {
                    Some(f) => scope.get(f).map(Out::Val),
                    None => t.render(scope, &mut text).map(|s| Out::Val(Val::Str(s))),
                },
            };
            let Some(value) = value else {
                if entry.optional {
                    continue;
                }
                return Err(Failure::Missing("payload"));
            };
            if !first {
                out.put_u8(b',');
            }
            first = false;
            json::write_str(out, &entry.key);
            out.put_u8(b':');
            value.write(out);
        }
        out.put_u8(b'}');
        Ok(())
    }
}

/// Reads `occurred`; `None` when the value is missing or does not parse
/// (or is outside years 0 to 9999).
fn parse_time(scope: &Scope<'_>, spec: &Occurred) -> Option<DateTime<Utc>> {
    let value = scope.get(&spec.field)?;
    let at = match &spec.format {
        TimeFormat::Rfc3339 => {
            let text = value.text();
            let text = text.trim();
            match time::rfc3339(text) {
                Some(at) => at,
                None => DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc),
            }
        }
        TimeFormat::Epoch(unit) => {
            let n = value.number()?;
            let scale = match unit {
                EpochUnit::Seconds => 1e6,
                EpochUnit::Millis => 1e3,
                EpochUnit::Micros => 1.0,
                EpochUnit::Nanos => 1e-3,
            };
            let micros = n * scale;
            if !micros.is_finite() || micros.abs() > 9.0e18 {
                return None;
            }
            DateTime::from_timestamp_micros(micros.round() as i64)?
        }
        TimeFormat::Chrono {
            items,
            offset,
            common_log,
        } => {
            let text = value.text();
            let text = text.trim();
            if *common_log && let Some(at) = time::common_log(text) {
                return json::in_range(&at).then_some(at);
            }
            let mut parsed = Parsed::new();
            chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
            if *offset {
                parsed.to_datetime().ok()?.with_timezone(&Utc)
            } else {
                parsed.to_naive_datetime_with_offset(0).ok()?.and_utc()
            }
        }
    };
    json::in_range(&at).then_some(at)
}
