//! `[[mappings]]`: reading the rules from the config and compiling them,
//! once, into [`Rule`]s (regexes built, templates parsed, every field name
//! checked against the kinds the rule can see).
//!
//! Every mistake is reported with file:line:column, pointing into the
//! template or pattern where the string is written plainly on one line,
//! and all of them at once. This module does not evaluate rules; the
//! [`super::Mapper`] does.

use chrono::format::{Item, StrftimeItems};
use serde_json::Value;
use toml::de::DeValue;

use super::condition::{Condition, Reader};
use super::fields::{FieldRef, Known};
use super::kinds::{self, KindSchema};
use super::spans::{inner_span, read_template, resolve_field};
use super::template::Template;
use crate::config::decode::{self, At, Decode, Decoder, Origin, Raw, Table};
use crate::event::{MAX_EVENT_NAME_CHARS, MAX_LABELS, MAX_RELATED, RESOURCE_ID, RESOURCE_ROLE};

/// One compiled mapping rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique among rules; names the rule in counters and messages.
    pub name: String,
    /// Source names or globs it applies to; empty means every source.
    pub(crate) sources: Vec<Glob>,
    /// Kinds or globs it applies to; empty means every kind.
    pub(crate) kinds: Vec<Glob>,
    pub(crate) when: Vec<Condition>,
    /// Capture names by slot.
    pub(crate) captures: Vec<String>,
    /// How many regexes `when` holds (each needs a search cache).
    pub(crate) regexes: usize,
    pub(crate) drop: bool,
    pub(crate) keep_going: bool,
    pub(crate) event: Option<Template>,
    pub(crate) occurred: Option<Occurred>,
    pub(crate) resource: ResourceSpec,
    pub(crate) related: Vec<RelatedSpec>,
    pub(crate) payload: Option<PayloadSpec>,
    pub(crate) follows: bool,
    pub(crate) builtin_related: bool,
    pub(crate) sample: u32,
    pub(crate) max_per_second: Option<u32>,
}

/// `resource`: an id (else the kind's default resource) and labels.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceSpec {
    pub id: Option<Template>,
    pub labels: Vec<(String, Template)>,
}

/// One entry of `related`.
#[derive(Clone, Debug)]
pub(crate) struct RelatedSpec {
    pub id: Template,
    pub role: Template,
    pub labels: Vec<(String, Template)>,
}

/// `payload` and `payload_fields`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PayloadSpec {
    /// Named entries, sorted by key.
    pub entries: Vec<(String, PayloadValue)>,
    pub fields: FieldSelection,
}

/// A value of `payload`.
#[derive(Clone, Debug)]
pub(crate) enum PayloadValue {
    /// A template; exactly one placeholder keeps the value's JSON type.
    Template(Template),
    /// A number, boolean, array or table written in the config.
    Const(Value),
}

/// `payload_fields`.
#[derive(Clone, Debug, Default)]
pub(crate) enum FieldSelection {
    #[default]
    None,
    /// Every field of the observation, and every capture.
    All,
    /// These fields, under their own names.
    Named(Vec<FieldRef>),
}

/// `occurred`: which field holds the time, and how it is written.
#[derive(Clone, Debug)]
pub(crate) struct Occurred {
    pub field: FieldRef,
    pub format: TimeFormat,
}

/// How a time is written.
#[derive(Clone, Debug)]
pub(crate) enum TimeFormat {
    Rfc3339,
    /// Seconds since 1970 (fractions allowed), or milli-, micro-, nano-.
    Epoch(EpochUnit),
    /// A chrono format, parsed once; `offset` says whether it reads a UTC
    /// offset (without one the time is taken as UTC).
    Chrono {
        items: Box<[Item<'static>]>,
        offset: bool,
        /// Whether it is the common log format, which has a fast path
        /// (`super::time`).
        common_log: bool,
    },
}

/// The unit of an epoch time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

/// A name or a glob (`*` any run of characters, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob(Box<str>);

impl Glob {
    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear enough
    // for names, and no recursion on hostile patterns.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A name or a list of names (`source = "app"`, `kind = ["line", ...]`).
struct Names(Vec<At<String>>);

impl Decode for Names {
    const EXPECTED: &'static str = "a name or an array of names";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        if let Raw::File(value) = raw
            && let DeValue::Array(items) = value.get_ref()
        {
            let mut out = Vec::new();
            for item in items.iter() {
                let value = String::decode(dec, Raw::File(item))?;
                out.push(At {
                    value,
                    span: Some(item.span()),
                });
            }
            return Some(Names(out));
        }
        let span = match raw {
            Raw::File(v) => Some(v.span()),
            Raw::Env(..) => None,
        };
        String::decode(dec, raw).map(|value| Names(vec![At { value, span }]))
    }
}

/// Converts a TOML value to JSON (strings interpolated as everywhere else).
pub(crate) fn toml_to_json(dec: &Decoder<'_>, value: &toml::Spanned<DeValue<'_>>) -> Option<Value> {
    Some(match value.get_ref() {
        DeValue::String(_) => Value::String(String::decode(dec, Raw::File(value))?),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::from(n),
            Err(_) => {
                dec.error_at(value.span(), "integer out of range", None);
                return None;
            }
        },
        DeValue::Float(f) => {
            let n: f64 = f.as_str().replace('_', "").parse().ok()?;
            match serde_json::Number::from_f64(n) {
                Some(n) => Value::Number(n),
                None => {
                    dec.error_at(value.span(), "JSON has no infinity or NaN", None);
                    return None;
                }
            }
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| toml_to_json(dec, v))
                .collect::<Option<_>>()?,
        ),
        DeValue::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| Some((k.get_ref().to_string(), toml_to_json(dec, v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// Reads `[[mappings]]`. `sources` are the configured source names, which
/// `source` patterns must match.
pub fn read_mappings(root: &Table<'_, '_, '_>, sources: &[String]) -> Vec<Rule> {
    let dec = root.decoder();
    let mut names: Vec<(String, usize)> = Vec::new();
    root.array_of_tables("mappings", "[[mappings]]", |t| {
        let rule = read_rule(&t, sources);
        if let Some(name) = t.value("name")
            && let Some(rule) = &rule
        {
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == rule.name) {
                let line = match dec.locate(*first..*first) {
                    Origin::File { line, .. } => line,
                    Origin::Env(_) => 0,
                };
                dec.error_at(
                    name.span(),
                    format!("mapping name {:?} is already used", rule.name),
                    Some(format!(
                        "every mapping needs its own name (the first is on line {line})"
                    )),
                );
            } else {
                names.push((rule.name.clone(), name.span().start));
            }
        }
        t.finish();
        rule
    })
}

/// Matches configured names against patterns, reporting patterns that
/// match nothing; returns the globs.
fn read_patterns(dec: &Decoder<'_>, names: Option<Names>, what: &str, known: &[&str]) -> Vec<Glob> {
    let Some(Names(names)) = names else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for at in names {
        let glob = Glob(at.value.clone().into());
        if !known.iter().any(|k| glob.matches(k)) {
            let hint = match decode::nearest(&at.value, known.iter().copied()) {
                Some(near) => format!("did you mean {near:?}?"),
                None => format!("known {what}s: {}", known.join(", ")),
            };
            dec.error_at(
                inner_span(dec, &at, 0..at.value.len()),
                format!("{what} {:?} matches no known {what}", at.value),
                Some(hint),
            );
        }
        out.push(glob);
    }
    out
}

/// The kinds a rule (or test) can see, given its `kind` patterns.
pub(crate) fn kinds_of(globs: &[Glob]) -> Vec<&'static KindSchema> {
    kinds::KINDS
        .iter()
        .filter(|k| globs.is_empty() || globs.iter().any(|g| g.matches(k.kind)))
        .collect()
}

/// The names a `source` pattern may match: configured sources and the
/// agent's own.
pub(crate) fn known_sources(sources: &[String]) -> Vec<&str> {
    let mut known: Vec<&str> = sources.iter().map(String::as_str).collect();
    known.push(super::AGENT_SOURCE);
    known
}

pub(crate) fn read_source_and_kind(
    t: &Table<'_, '_, '_>,
    sources: &[String],
) -> (Vec<Glob>, Vec<Glob>) {
    let dec = t.decoder();
    let source = read_patterns(
        dec,
        t.get::<Names>("source"),
        "source",
        &known_sources(sources),
    );
    let kind_names: Vec<&str> = kinds::names().collect();
    let kind = read_patterns(dec, t.get::<Names>("kind"), "kind", &kind_names);
    (source, kind)
}

fn read_rule(t: &Table<'_, '_, '_>, sources: &[String]) -> Option<Rule> {
    let dec = t.decoder();
    let name = t.required::<String>("name");
    let (source_globs, kind_globs) = read_source_and_kind(t, sources);
    let kinds = kinds_of(&kind_globs);
    let mut reader = Reader {
        kinds: &kinds,
        captures: Vec::new(),
        regexes: 0,
    };
    let when = reader.read_when(t);
    let Reader {
        captures, regexes, ..
    } = reader;
    let known = Known {
        kinds: &kinds,
        captures: &captures,
    };
    let drop = t.or("drop", false);
    let keep_going = t.or("continue", false);
    let event = t
        .get_at::<String>("event")
        .and_then(|at| read_event_name(dec, &at, &known));
    let occurred = t
        .value("occurred")
        .and_then(|v| read_occurred(dec, v, &known));
    let resource = t
        .value("resource")
        .and_then(|v| read_resource(dec, v, &known))
        .unwrap_or_default();
    let related = t
        .value("related")
        .map(|v| read_related(dec, v, &known))
        .unwrap_or_default();
    let payload = read_payload(t, &known);
    let follows = t
        .get_at::<String>("follows")
        .map(|at| match at.value.as_str() {
            "auto" => true,
            "off" => false,
            other => {
                dec.error_at(
                    at.span.clone().unwrap_or(0..0),
                    format!("unknown value {other:?}"),
                    Some("choose one of: auto, off".into()),
                );
                true
            }
        });
    let builtin_related = t.or("builtin_related", true);
    let sample = t.get_at::<u32>("sample");
    let max_per_second = t.get_at::<u32>("max_per_second");
    for (key, at) in [("sample", &sample), ("max_per_second", &max_per_second)] {
        if let Some(at) = at
            && at.value == 0
        {
            dec.error_at(
                at.span.clone().unwrap_or(0..0),
                format!("{key} must be at least 1"),
                None,
            );
        }
    }
    if drop {
        let outputs = [
            "event",
            "occurred",
            "resource",
            "related",
            "payload",
            "payload_fields",
            "continue",
            "sample",
            "max_per_second",
        ];
        for key in outputs {
            if let Some(v) = t.value(key) {
                dec.error_at(
                    v.span(),
                    format!("a rule with drop = true builds no event, so `{key}` does nothing"),
                    Some("remove it, or remove drop = true".into()),
                );
            }
        }
    }
    let builtin = if builtin_related { 3 } else { 0 };
    if related.len() + builtin > MAX_RELATED {
        dec.error_at(
            t.span(),
            format!("an event holds at most {MAX_RELATED} related resources"),
            None,
        );
    }
    Some(Rule {
        name: name?.value,
        sources: source_globs,
        kinds: kind_globs,
        when,
        captures,
        regexes,
        drop,
        keep_going,
        event,
        occurred,
        resource,
        related,
        payload,
        follows: follows.unwrap_or(true),
        builtin_related,
        sample: sample.map_or(1, |at| at.value.max(1)),
        max_per_second: max_per_second.map(|at| at.value.max(1)),
    })
}

fn read_event_name(dec: &Decoder<'_>, at: &At<String>, known: &Known<'_>) -> Option<Template> {
    let template = read_template(dec, at, known)?;
    if let Some(text) = template.literal() {
        let span = at.span.clone().unwrap_or(0..0);
        if text.trim().is_empty() {
            dec.error_at(span, "the event name is empty", None);
        } else if text.chars().count() > MAX_EVENT_NAME_CHARS {
            dec.error_at(
                span,
                format!("the event name is over {MAX_EVENT_NAME_CHARS} characters"),
                None,
            );
        }
    }
    Some(template)
}

fn read_occurred(
    dec: &Decoder<'_>,
    value: &toml::Spanned<DeValue<'_>>,
    known: &Known<'_>,
) -> Option<Occurred> {
    let t = Table::new(dec, value, "`occurred`")?;
    let field = t
        .required::<String>("field")
        .and_then(|at| resolve_field(dec, known.kinds, known.captures, &at));
    let format = match t.get_at::<String>("format") {
        None => Some(TimeFormat::Rfc3339),
        Some(at) => time_format(dec, &at),
    };
    t.finish();
    Some(Occurred {
        field: field?,
        format: format?,
    })
}

fn time_format(dec: &Decoder<'_>, at: &At<String>) -> Option<TimeFormat> {
    let format = match at.value.as_str() {
        "rfc3339" => TimeFormat::Rfc3339,
        "epoch" => TimeFormat::Epoch(EpochUnit::Seconds),
        "epoch_ms" => TimeFormat::Epoch(EpochUnit::Millis),
        "epoch_us" => TimeFormat::Epoch(EpochUnit::Micros),
        "epoch_ns" => TimeFormat::Epoch(EpochUnit::Nanos),
        text if text.contains('%') => {
            let Ok(items) = StrftimeItems::new(text).parse_to_owned() else {
                dec.error_at(
                    at.span.clone().unwrap_or(0..0),
                    format!("invalid time format {text:?}"),
                    Some("use chrono's strftime syntax, like \"%d/%b/%Y:%H:%M:%S %z\"".into()),
                );
                return None;
            };
            let offset = ["%z", "%:z", "%::z", "%:::z", "%#z"]
                .iter()
                .any(|z| text.contains(z));
            TimeFormat::Chrono {
                items: items.into(),
                offset,
                common_log: text == super::time::COMMON_LOG,
            }
        }
        other => {
            dec.error_at(
                at.span.clone().unwrap_or(0..0),
                format!("unknown time format {other:?}"),
                Some(
                    "write rfc3339, epoch, epoch_ms, epoch_us, epoch_ns, or a chrono format with %"
                        .into(),
                ),
            );
            return None;
        }
    };
    Some(format)
}

/// Reads a table of label templates; the keys are literal.
fn read_labels(
    dec: &Decoder<'_>,
    value: &toml::Spanned<DeValue<'_>>,
    known: &Known<'_>,
    reserved: &[&str],
) -> Vec<(String, Template)> {
    let DeValue::Table(table) = value.get_ref() else {
        dec.error_at(
            value.span(),
            format!(
                "labels must be a table, found {}",
                value.get_ref().type_str()
            ),
            Some("write labels = { \"acme.team\" = \"payments\" }".into()),
        );
        return Vec::new();
    };
    if table.len() > MAX_LABELS {
        dec.error_at(value.span(), format!("more than {MAX_LABELS} labels"), None);
    }
    let mut out = Vec::new();
    for (key, v) in table.iter() {
        let key_text = key.get_ref().to_string();
        if reserved.contains(&key_text.as_str()) {
            dec.error_at(
                key.span(),
                format!("`{key_text}` is set by its own key here, not as a label"),
                Some(if key_text == RESOURCE_ID {
                    "write it as id = \"...\"".into()
                } else {
                    "write it as role = \"...\"".into()
                }),
            );
            continue;
        }
        if key_text.is_empty() {
            dec.error_at(key.span(), "a label needs a name", None);
            continue;
        }
        let Some(text) = String::decode(dec, Raw::File(v)) else {
            continue;
        };
        let at = At {
            value: text,
            span: Some(v.span()),
        };
        if let Some(template) = read_template(dec, &at, known) {
            out.push((key_text, template));
        }
    }
    out
}

fn read_resource(
    dec: &Decoder<'_>,
    value: &toml::Spanned<DeValue<'_>>,
    known: &Known<'_>,
) -> Option<ResourceSpec> {
    let t = Table::new(dec, value, "`resource`")?;
    let id = t.get_at::<String>("id").and_then(|at| {
        let template = read_template(dec, &at, known)?;
        if template.literal().is_some_and(|l| l.trim().is_empty()) {
            dec.error_at(
                at.span.clone().unwrap_or(0..0),
                "the resource id is empty",
                None,
            );
        }
        Some(template)
    });
    let labels = t
        .value("labels")
        .map(|v| read_labels(dec, v, known, &[RESOURCE_ID]))
        .unwrap_or_default();
    t.finish();
    Some(ResourceSpec { id, labels })
}

fn read_related(
    dec: &Decoder<'_>,
    value: &toml::Spanned<DeValue<'_>>,
    known: &Known<'_>,
) -> Vec<RelatedSpec> {
    let DeValue::Array(items) = value.get_ref() else {
        dec.error_at(
            value.span(),
            format!(
                "`related` must be an array of tables, found {}",
                value.get_ref().type_str()
            ),
            Some("write related = [ { id = \"...\", role = \"...\" } ]".into()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let Some(t) = Table::new(dec, item, "a `related` entry") else {
            continue;
        };
        let id = t
            .required::<String>("id")
            .and_then(|at| read_template(dec, &at, known));
        let role = t
            .required::<String>("role")
            .and_then(|at| read_template(dec, &at, known));
        let labels = t
            .value("labels")
            .map(|v| read_labels(dec, v, known, &[RESOURCE_ID, RESOURCE_ROLE]))
            .unwrap_or_default();
        t.finish();
        if let (Some(id), Some(role)) = (id, role) {
            out.push(RelatedSpec { id, role, labels });
        }
    }
    out
}

fn read_payload(t: &Table<'_, '_, '_>, known: &Known<'_>) -> Option<PayloadSpec> {
    let dec = t.decoder();
    let entries_value = t.value("payload");
    let fields_value = t.value("payload_fields");
    if entries_value.is_none() && fields_value.is_none() {
        return None;
    }
    let mut spec = PayloadSpec::default();
    if let Some(value) = entries_value {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, v) in table.iter() {
                    let entry = match v.get_ref() {
                        DeValue::String(_) => {
                            let Some(text) = String::decode(dec, Raw::File(v)) else {
                                continue;
                            };
                            let at = At {
                                value: text,
                                span: Some(v.span()),
                            };
                            read_template(dec, &at, known).map(PayloadValue::Template)
                        }
                        _ => toml_to_json(dec, v).map(PayloadValue::Const),
                    };
                    if let Some(entry) = entry {
                        spec.entries.push((key.get_ref().to_string(), entry));
                    }
                }
                spec.entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            other => dec.error_at(
                value.span(),
                format!("`payload` must be a table, found {}", other.type_str()),
                Some("write payload = { status = \"{status}\" }".into()),
            ),
        }
    }
    if let Some(value) = fields_value {
        match value.get_ref() {
            DeValue::String(s) if &**s == "all" => spec.fields = FieldSelection::All,
            DeValue::Array(items) => {
                let mut named = Vec::new();
                for item in items.iter() {
                    if let Some(text) = String::decode(dec, Raw::File(item)) {
                        let at = At {
                            value: text,
                            span: Some(item.span()),
                        };
                        named.extend(resolve_field(dec, known.kinds, known.captures, &at));
                    }
                }
                spec.fields = FieldSelection::Named(named);
            }
            _ => dec.error_at(
                value.span(),
                "`payload_fields` must be \"all\" or an array of field names",
                Some(
                    "write payload_fields = \"all\" or payload_fields = [\"status\", \"path\"]"
                        .into(),
                ),
            ),
        }
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str, t: &str| Glob(p.into()).matches(t);
        assert!(g("nginx", "nginx"));
        assert!(!g("nginx", "nginx2"));
        assert!(g("nginx-*", "nginx-access"));
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXXbYYc"));
        assert!(!g("a*b*c", "aXXbYY"));
        assert!(g("agent.*", "agent.heartbeat"));
        assert!(g("?ine", "line"));
        assert!(!g("?ine", "ine"));
        assert!(g("**x", "abcx"));
    }
}
