//! `[[tests]]`: mapping test cases kept in the config, and running them
//! (`herald test`).
//!
//! ```toml
//! [[tests]]
//! name = "a 502 from nginx is a failed request"
//! source = "nginx"                  # a configured source (or "agent")
//! kind = "line"                     # default "line"
//! line = '10.0.0.1 - - [...] "GET / HTTP/1.1" 502 0 "-" "curl/8.5.0"'
//! fields = { path = "/var/log/nginx/access.log" }
//! expect = { event = "nginx.request.failed", resource = { "acme.service" = "web" }, payload = { status = "502" } }
//! ```
//! Each case runs through a fresh mapper built from the config's rules
//! (no `follows` state, no limits carried over from other cases). The
//! expectation is a subset: the event name, the resource labels given,
//! related resources each matching some related resource of the event by
//! the labels given, payload keys given (recursively), or `dropped = true`.
//! When a case makes several events (`continue = true`), the first with
//! the expected name is checked. A `line` case has `path`
//! [`DEFAULT_PATH`] and `offset` 0 unless its `fields` say otherwise. This module does not print; the CLI does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use toml::de::DeValue;

use super::rule::{known_sources, toml_to_json};
use super::{Mapper, MappingConfig, kinds};
use crate::config::decode::{Decoder, Origin, Table};
use crate::identity::Identity;
use crate::observation::Observation;

/// The path of a `line` case that does not give one.
pub const DEFAULT_PATH: &str = "/var/log/test.log";

/// One test case.
#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// What it checks, for the report.
    pub name: String,
    /// The config line it starts on, for the report.
    pub line: usize,
    source: String,
    kind: String,
    fields: Vec<(String, Value)>,
    expect: Expect,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Expect {
    event: Option<String>,
    resource: BTreeMap<String, String>,
    related: Vec<BTreeMap<String, String>>,
    payload: Option<Value>,
    dropped: bool,
}

/// Reads `[[tests]]`. `sources` are the configured source names.
pub fn read_tests(root: &Table<'_, '_, '_>, sources: &[String]) -> Vec<TestCase> {
    root.array_of_tables("tests", "[[tests]]", |t| {
        let case = read_case(&t, sources);
        t.finish();
        case
    })
}

fn read_case(t: &Table<'_, '_, '_>, sources: &[String]) -> Option<TestCase> {
    let dec = t.decoder();
    let line = match dec.locate(t.span()) {
        Origin::File { line, .. } => line,
        Origin::Env(_) => 0,
    };
    let name = t.required::<String>("name");
    let source = t.required::<String>("source");
    let known = known_sources(sources);
    if let Some(at) = &source
        && !known.contains(&at.value.as_str())
    {
        dec.error_at(
            at.span.clone().unwrap_or(0..0),
            format!("no source is named {:?}", at.value),
            Some(format!("sources: {}", known.join(", "))),
        );
    }
    let kind = t.get_at::<String>("kind");
    let schema = match &kind {
        None => kinds::schema("line"),
        Some(at) => {
            let schema = kinds::schema(&at.value);
            if schema.is_none() {
                let names: Vec<&str> = kinds::names().collect();
                dec.error_at(
                    at.span.clone().unwrap_or(0..0),
                    format!("unknown kind {:?}", at.value),
                    Some(format!("kinds: {}", names.join(", "))),
                );
            }
            schema
        }
    };
    let mut fields = Vec::new();
    if let Some(text) = t.get::<String>("line") {
        fields.push(("line".to_owned(), Value::String(text)));
    }
    if kind.is_none() || kind.as_ref().is_some_and(|k| k.value == "line") {
        // A line always has a path and an offset; a case need not care.
        fields.push(("path".to_owned(), Value::String(DEFAULT_PATH.to_owned())));
        fields.push(("offset".to_owned(), Value::from(0)));
    }
    if let Some(value) = t.value("fields") {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, v) in table.iter() {
                    let key_text = key.get_ref().to_string();
                    if let Some(schema) = schema
                        && !schema.fields.iter().any(|(f, _)| *f == key_text)
                    {
                        let names: Vec<&str> = schema.fields.iter().map(|(f, _)| *f).collect();
                        dec.error_at(
                            key.span(),
                            format!("kind {} has no field `{key_text}`", schema.kind),
                            Some(format!("its fields: {}", names.join(", "))),
                        );
                        continue;
                    }
                    if let Some(v) = toml_to_json(dec, v) {
                        fields.retain(|(k, _)| *k != key_text);
                        fields.push((key_text, v));
                    }
                }
            }
            other => dec.error_at(
                value.span(),
                format!("`fields` must be a table, found {}", other.type_str()),
                None,
            ),
        }
    }
    let expect = match t.value("expect") {
        Some(value) => read_expect(dec, value)?,
        None => {
            dec.error_at(
                t.span(),
                "[[tests]] is missing the required key `expect`",
                Some("add expect = { event = \"...\" } (or { dropped = true })".into()),
            );
            return None;
        }
    };
    Some(TestCase {
        name: name?.value,
        line,
        source: source?.value,
        kind: kind.map_or_else(|| "line".to_owned(), |at| at.value),
        fields,
        expect,
    })
}

fn string_labels(
    dec: &Decoder<'_>,
    value: &toml::Spanned<DeValue<'_>>,
) -> BTreeMap<String, String> {
    match toml_to_json(dec, value) {
        Some(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                other => {
                    dec.error_at(
                        value.span(),
                        format!("label {k:?} must be a string, not {other}"),
                        None,
                    );
                    None
                }
            })
            .collect(),
        Some(_) => {
            dec.error_at(value.span(), "expected a table of labels", None);
            BTreeMap::new()
        }
        None => BTreeMap::new(),
    }
}

fn read_expect(dec: &Decoder<'_>, value: &toml::Spanned<DeValue<'_>>) -> Option<Expect> {
    let t = Table::new(dec, value, "`expect`")?;
    let mut expect = Expect {
        event: t.get::<String>("event"),
        dropped: t.or("dropped", false),
        ..Expect::default()
    };
    if let Some(v) = t.value("resource") {
        expect.resource = string_labels(dec, v);
    }
    if let Some(v) = t.value("related") {
        match v.get_ref() {
            DeValue::Array(items) => {
                expect.related = items.iter().map(|i| string_labels(dec, i)).collect();
            }
            other => dec.error_at(
                v.span(),
                format!(
                    "`related` must be an array of tables, found {}",
                    other.type_str()
                ),
                None,
            ),
        }
    }
    if let Some(v) = t.value("payload") {
        match toml_to_json(dec, v) {
            Some(payload @ Value::Object(_)) => expect.payload = Some(payload),
            Some(_) => dec.error_at(v.span(), "`payload` must be a table", None),
            None => {}
        }
    }
    if expect.dropped && (expect.event.is_some() || expect.payload.is_some()) {
        dec.error_at(
            t.span(),
            "a case expecting dropped = true makes no event to check",
            None,
        );
    }
    t.finish();
    Some(expect)
}

/// The result of one case.
#[derive(Debug)]
pub struct Outcome {
    /// The case's name.
    pub name: String,
    /// Its config line.
    pub line: usize,
    /// What differed; empty when it passed.
    pub differences: Vec<String>,
}

impl Outcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Runs every case.
pub fn run(identity: &Identity, config: &MappingConfig, cases: &[TestCase]) -> Vec<Outcome> {
    cases
        .iter()
        .map(|case| Outcome {
            name: case.name.clone(),
            line: case.line,
            differences: run_case(identity, config, case),
        })
        .collect()
}

fn run_case(identity: &Identity, config: &MappingConfig, case: &TestCase) -> Vec<String> {
    let mut mapper = Mapper::new(identity.clone(), config, None);
    let mut obs = Observation::new(Arc::from(case.source.as_str()), case.kind.clone());
    for (k, v) in &case.fields {
        obs = obs.with(k.clone(), v.clone());
    }
    let mut out = Vec::new();
    let events: Vec<Value> = match mapper.map(obs, &mut out) {
        Ok(_) => out
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.json).ok())
            .collect(),
        Err(error) => return vec![format!("no event: {error}")],
    };
    let mut diff = Vec::new();
    let expect = &case.expect;
    if expect.dropped {
        if !events.is_empty() {
            let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
            diff.push(format!(
                "expected the observation to be dropped, got {names:?}"
            ));
        }
        return diff;
    }
    let event = expect
        .event
        .as_ref()
        .and_then(|name| events.iter().find(|e| e["event"] == name.as_str()))
        .or_else(|| events.first());
    let Some(event) = event else {
        diff.push("expected an event, but the observation was dropped".into());
        return diff;
    };
    if let Some(name) = &expect.event
        && event["event"] != name.as_str()
    {
        diff.push(format!("event: expected {name:?}, got {}", event["event"]));
    }
    for (key, want) in &expect.resource {
        let got = &event["resource"][key];
        if got != want.as_str() {
            diff.push(format!(
                "resource[{key:?}]: expected {want:?}, got {}",
                shown(got)
            ));
        }
    }
    let related = event["related"].as_array().cloned().unwrap_or_default();
    for want in &expect.related {
        let found = related
            .iter()
            .any(|r| want.iter().all(|(k, v)| r[k] == v.as_str()));
        if !found {
            diff.push(format!(
                "related: none has {}; related were {}",
                serde_json::to_string(want).unwrap_or_default(),
                Value::Array(related.clone())
            ));
        }
    }
    if let Some(want) = &expect.payload {
        subset("payload", want, &event["payload"], &mut diff);
    }
    diff
}

fn shown(value: &Value) -> String {
    if value.is_null() {
        "(missing)".into()
    } else {
        value.to_string()
    }
}

/// Records where `got` does not hold everything `want` holds.
fn subset(path: &str, want: &Value, got: &Value, diff: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(want), Value::Object(got_map)) => {
            for (k, w) in want {
                let g = got_map.get(k).unwrap_or(&Value::Null);
                subset(&format!("{path}.{k}"), w, g, diff);
            }
        }
        _ if want == got => {}
        _ => diff.push(format!("{path}: expected {want}, got {}", shown(got))),
    }
}
