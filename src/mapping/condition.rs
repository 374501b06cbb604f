//! A rule's `when` conditions: reading them from the config, and testing
//! one observation against them.
//!
//! ```toml
//! when = [
//!   { regex = '" (?P<status>5\d\d) ' },            # on `line` unless `field` says
//!   { field = "json.level", in = ["ERROR", "CRITICAL"] },
//!   { field = "status", gte = 500, lt = 600 },       # several tests: all must hold
//!   { field = "json.user", exists = true },
//!   { not = { field = "path", equals = "/healthz" } },
//!   { any = [ { field = "status", equals = 502 }, { field = "status", equals = 504 } ] },
//! ]
//! ```
//! Every condition of the list must hold. Named captures of the regexes at
//! the top of the list become fields, usable by the conditions after them
//! and by every template of the rule; captures inside `not` or `any` are
//! not (they may not have matched). `equals` and `in` compare text
//! (numbers also by value, so `equals = 503` holds for a captured "503");
//! `gt`, `gte`, `lt`, `lte` compare numbers, and a value that is not a
//! number fails them. A missing field fails every test but
//! `exists = false`.
//!
//! This module does not decide which rule wins or build events.

use std::borrow::Cow;
use std::cell::OnceCell;

use memchr::memmem;
use regex_automata::Input;
use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use serde_json::Value;
use toml::de::DeValue;

use super::fields::{Captured, FieldRef, Root, Scope, Val};
use super::kinds::KindSchema;
use super::spans::{inner_span, resolve_field};
use crate::config::decode::{self, At, Decode, Decoder, Raw, Table};
use crate::observation::Observation;

/// One test of a rule's `when`.
#[derive(Clone, Debug)]
pub(crate) enum Condition {
    Regex(RegexCondition),
    Equals {
        field: FieldRef,
        value: Literal,
    },
    In {
        field: FieldRef,
        values: Box<[Literal]>,
    },
    Exists {
        field: FieldRef,
        present: bool,
    },
    Compare {
        field: FieldRef,
        op: Op,
        value: f64,
    },
    Not(Box<Condition>),
    All(Box<[Condition]>),
    Any(Box<[Condition]>),
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A regex test; its named captures become fields when it sits at the top
/// of `when`.
#[derive(Clone, Debug)]
pub(crate) struct RegexCondition {
    pub field: FieldRef,
    pub pattern: Box<str>,
    pub regex: Regex,
    /// Index among the rule's regexes, for its search cache.
    pub local: usize,
    /// (group index, capture slot) for each named group exposed as a field.
    pub groups: Box<[(usize, usize)]>,
    /// Whether it sits at the top of `when`: only those can be decided by
    /// the rule set's prefilter.
    pub top: bool,
    /// Bytes every match contains (see `super::literal`): a haystack
    /// without them is rejected without running the regex.
    pub required: Option<Box<memmem::Finder<'static>>>,
}

/// A value to compare with: its text, and its number when it is one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Literal {
    text: Box<str>,
    number: Option<f64>,
}

impl Literal {
    fn matches(&self, value: Val<'_>) -> bool {
        match value {
            Val::Str(s) => *s == *self.text,
            Val::Json(Value::Number(n)) => self.number.is_some() && n.as_f64() == self.number,
            Val::Json(other) => value_text(other) == *self.text,
        }
    }
}

fn value_text(value: &Value) -> Cow<'_, str> {
    Val::Json(value).text()
}

impl Decode for Literal {
    const EXPECTED: &'static str = "a string, a number or a boolean";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = match raw {
            Raw::File(value) => match value.get_ref() {
                DeValue::Integer(i) => {
                    let n = i128::from_str_radix(i.as_str(), i.radix()).ok()?;
                    n.to_string()
                }
                DeValue::Float(f) => {
                    let n: f64 = f.as_str().replace('_', "").parse().ok()?;
                    return Some(Literal {
                        text: n.to_string().into(),
                        number: Some(n),
                    });
                }
                DeValue::Boolean(b) => b.to_string(),
                _ => decode::decode_str(dec, raw, Self::EXPECTED)?,
            },
            Raw::Env(_, text) => text.to_owned(),
        };
        Some(Literal {
            number: text.trim().parse().ok(),
            text: text.into(),
        })
    }
}

/// A list of literals (`in = [...]`).
struct Literals(Vec<Literal>);

impl Decode for Literals {
    const EXPECTED: &'static str = "an array of strings, numbers or booleans";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let Raw::File(value) = raw else {
            decode::type_mistake(dec, raw, Self::EXPECTED, "text");
            return None;
        };
        let DeValue::Array(items) = value.get_ref() else {
            decode::type_mistake(dec, raw, Self::EXPECTED, value.get_ref().type_str());
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match Literal::decode(dec, Raw::File(item)) {
                Some(l) => out.push(l),
                None => ok = false,
            }
        }
        ok.then_some(Literals(out))
    }
}

/// A number (`gte = 500`, `lt = 0.5`).
struct Number(f64);

impl Decode for Number {
    const EXPECTED: &'static str = "a number";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let parsed = match raw {
            Raw::File(value) => match value.get_ref() {
                DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .map(|n| n as f64),
                DeValue::Float(f) => f.as_str().replace('_', "").parse().ok(),
                other => {
                    decode::type_mistake(dec, raw, Self::EXPECTED, other.type_str());
                    return None;
                }
            },
            Raw::Env(_, text) => text.trim().parse().ok(),
        };
        match parsed {
            Some(n) if f64::is_finite(n) => Some(Number(n)),
            _ => {
                decode::value_mistake(dec, raw, "expected a finite number", None);
                None
            }
        }
    }
}

/// What reading a rule's conditions gathers besides the conditions.
pub(crate) struct Reader<'k> {
    /// The kinds the rule can see.
    pub kinds: &'k [&'static KindSchema],
    /// Capture names by slot, growing as top-level regexes are read.
    pub captures: Vec<String>,
    /// How many regexes the rule has.
    pub regexes: usize,
}

const TESTS: &[&str] = &[
    "regex", "equals", "in", "exists", "gt", "gte", "lt", "lte", "not", "any",
];

impl Reader<'_> {
    /// Reads `when`: an array of condition tables.
    pub fn read_when(&mut self, t: &Table<'_, '_, '_>) -> Vec<Condition> {
        let mut out = Vec::new();
        let Some(value) = t.value("when") else {
            return out;
        };
        let dec = t.decoder();
        let Some(items) = tables(dec, value, "when") else {
            return out;
        };
        for item in items {
            if let Some(table) = Table::new(dec, item, "a `when` condition") {
                out.extend(self.read_condition(table, true));
            }
        }
        out
    }

    /// Reads one condition table; several tests in it all must hold.
    fn read_condition(&mut self, t: Table<'_, '_, '_>, top: bool) -> Vec<Condition> {
        let dec = t.decoder();
        let field_at = t.get_at::<String>("field");
        let mut out = Vec::new();
        let mut tests = 0;
        // A regex comes first so that its captures exist for the rest.
        if let Some(pattern) = t.get_at::<String>("regex") {
            tests += 1;
            let field = match &field_at {
                Some(at) => self.field(dec, at),
                None => self.resolve_or_report(dec, "line", pattern.span.clone()),
            };
            if let (Some(field), Some(regex)) = (field, self.regex(dec, &pattern, top)) {
                out.push(Condition::Regex(RegexCondition { field, ..regex }));
            }
        }
        let field = match &field_at {
            Some(at) => self.field(dec, at),
            None => None,
        };
        let need_field = |key: &'static str| {
            if field_at.is_none()
                && let Some(v) = t.value(key)
            {
                dec.error_at(
                    v.span(),
                    format!("`{key}` needs a `field` to test"),
                    Some(format!("write {{ field = \"status\", {key} = ... }}")),
                );
            }
        };
        if let Some(value) = t.get::<Literal>("equals") {
            tests += 1;
            need_field("equals");
            if let Some(field) = field.clone() {
                out.push(Condition::Equals { field, value });
            }
        }
        if let Some(values) = t.get::<Literals>("in") {
            tests += 1;
            need_field("in");
            if let Some(field) = field.clone() {
                out.push(Condition::In {
                    field,
                    values: values.0.into(),
                });
            }
        }
        if let Some(present) = t.get::<bool>("exists") {
            tests += 1;
            need_field("exists");
            if let Some(field) = field.clone() {
                out.push(Condition::Exists { field, present });
            }
        }
        for (key, op) in [
            ("gt", Op::Gt),
            ("gte", Op::Gte),
            ("lt", Op::Lt),
            ("lte", Op::Lte),
        ] {
            if let Some(Number(value)) = t.get::<Number>(key) {
                tests += 1;
                need_field(key);
                if let Some(field) = field.clone() {
                    out.push(Condition::Compare { field, op, value });
                }
            }
        }
        if let Some(value) = t.value("not") {
            tests += 1;
            if let Some(inner) = Table::new(dec, value, "`not`") {
                let mut inner = self.read_condition(inner, false);
                match inner.len() {
                    0 => {}
                    1 => out.push(Condition::Not(Box::new(inner.remove(0)))),
                    _ => out.push(Condition::Not(Box::new(Condition::All(inner.into())))),
                }
            }
        }
        if let Some(value) = t.value("any") {
            tests += 1;
            if let Some(items) = tables(dec, value, "any") {
                let mut any = Vec::new();
                for item in items {
                    if let Some(table) = Table::new(dec, item, "an `any` condition") {
                        let all = self.read_condition(table, false);
                        if all.len() == 1 {
                            any.extend(all);
                        } else if !all.is_empty() {
                            any.push(Condition::All(all.into()));
                        }
                    }
                }
                out.push(Condition::Any(any.into()));
            }
        }
        if tests == 0 {
            dec.error_at(
                t.span(),
                "this condition tests nothing",
                Some(format!("add one of: {}", TESTS.join(", "))),
            );
        }
        t.finish();
        out
    }

    fn field(&self, dec: &Decoder<'_>, at: &At<String>) -> Option<FieldRef> {
        resolve_field(dec, self.kinds, &self.captures, at)
    }

    /// Resolves the implicit `line` of a regex without `field`, reporting
    /// at the pattern when the rule's kinds have no `line`.
    fn resolve_or_report(
        &self,
        dec: &Decoder<'_>,
        name: &str,
        span: Option<std::ops::Range<usize>>,
    ) -> Option<FieldRef> {
        let known = super::fields::Known {
            kinds: self.kinds,
            captures: &self.captures,
        };
        match known.resolve(name) {
            Ok(field) => Some(field),
            Err((message, _)) => {
                dec.error_at(
                    span.unwrap_or(0..0),
                    format!("a regex without `field` tests `{name}`, but {message}"),
                    Some("add field = \"...\" to say what to match".into()),
                );
                None
            }
        }
    }

    /// Compiles a regex; at the top of `when`, its named groups become
    /// capture slots.
    fn regex(
        &mut self,
        dec: &Decoder<'_>,
        pattern: &At<String>,
        top: bool,
    ) -> Option<RegexCondition> {
        let span = pattern.span.clone().unwrap_or(0..0);
        let regex = match Regex::builder()
            .configure(Regex::config().nfa_size_limit(Some(10 << 20)))
            .build(&pattern.value)
        {
            Ok(regex) => regex,
            Err(error) => {
                let detail = error
                    .syntax_error()
                    .map_or_else(|| error.to_string(), |e| e.to_string());
                dec.error_at(
                    span,
                    format!(
                        "invalid regex: {}",
                        detail.lines().last().unwrap_or_default()
                    ),
                    Some("the syntax is Rust's regex crate: named groups are (?P<name>...)".into()),
                );
                return None;
            }
        };
        let mut groups = Vec::new();
        let names: Vec<(usize, String)> = regex
            .group_info()
            .pattern_names(regex_automata::PatternID::ZERO)
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
            .collect();
        if top {
            for (group, name) in names {
                let at = pattern
                    .value
                    .find(&format!("<{name}>"))
                    .map_or(span.clone(), |i| {
                        inner_span(dec, pattern, i + 1..i + 1 + name.len())
                    });
                if name.contains('.') {
                    dec.error_at(at, format!("capture name `{name}` has a `.`"), None);
                    continue;
                }
                if self.captures.contains(&name) {
                    dec.error_at(
                        at,
                        format!("capture `{name}` is already captured by this rule"),
                        Some("give each named group its own name".into()),
                    );
                    continue;
                }
                groups.push((group, self.captures.len()));
                self.captures.push(name);
            }
        }
        let local = self.regexes;
        self.regexes += 1;
        Some(RegexCondition {
            field: FieldRef {
                text: "".into(),
                root: Root::Source,
                path: Box::new([]),
            },
            pattern: pattern.value.clone().into(),
            regex,
            local,
            groups: groups.into(),
            top,
            required: super::literal::required(&pattern.value)
                .map(|literal| Box::new(memmem::Finder::new(&literal).into_owned())),
        })
    }
}

/// The items of an array of tables, or a mistake.
fn tables<'a, 'i>(
    dec: &Decoder<'_>,
    value: &'a toml::Spanned<DeValue<'i>>,
    key: &str,
) -> Option<Vec<&'a toml::Spanned<DeValue<'i>>>> {
    match value.get_ref() {
        DeValue::Array(items) => Some(items.iter().collect()),
        other => {
            dec.error_at(
                value.span(),
                format!(
                    "`{key}` must be an array of conditions, found {}",
                    other.type_str()
                ),
                Some(format!(
                    "write {key} = [ {{ field = \"...\", equals = \"...\" }} ]"
                )),
            );
            None
        }
    }
}

/// The run-time state of one regex: its search cache and capture slots,
/// and what the prefilter already decided for this observation.
pub(crate) struct RegexState {
    cache: meta::Cache,
    caps: Captures,
    /// `Some(matched)` when the rule set's prefilter decided it.
    pub known: Option<bool>,
}

impl RegexState {
    pub fn new(regex: &Regex) -> Self {
        RegexState {
            cache: regex.create_cache(),
            caps: regex.create_captures(),
            known: None,
        }
    }
}

/// What evaluating a rule's conditions needs.
pub(crate) struct Eval<'a> {
    pub obs: &'a Observation,
    pub capture_names: &'a [String],
    pub json: &'a OnceCell<Option<Value>>,
    pub hostname: &'a str,
    pub captured: &'a mut Captured,
    pub regexes: &'a mut [RegexState],
}

/// No captures: for looking up fields that are not captures while the
/// captures are being written.
static NO_CAPTURES: Captured = Captured::EMPTY;

impl Condition {
    /// Whether the condition holds for this observation.
    pub fn holds(&self, e: &mut Eval<'_>) -> bool {
        match self {
            Condition::Regex(r) => r.holds(e),
            Condition::Equals { field, value } => {
                lookup(e, field).is_some_and(|v| value.matches(v))
            }
            Condition::In { field, values } => {
                lookup(e, field).is_some_and(|v| values.iter().any(|l| l.matches(v)))
            }
            Condition::Exists { field, present } => lookup(e, field).is_some() == *present,
            Condition::Compare { field, op, value } => {
                match lookup(e, field).and_then(Val::number) {
                    Some(n) => match op {
                        Op::Gt => n > *value,
                        Op::Gte => n >= *value,
                        Op::Lt => n < *value,
                        Op::Lte => n <= *value,
                    },
                    None => false,
                }
            }
            Condition::Not(inner) => !inner.holds(e),
            Condition::All(all) => all.iter().all(|c| c.holds(e)),
            Condition::Any(any) => any.iter().any(|c| c.holds(e)),
        }
    }
}

fn lookup<'a>(e: &'a Eval<'_>, field: &FieldRef) -> Option<Val<'a>> {
    Scope {
        obs: e.obs,
        captured: e.captured,
        capture_names: e.capture_names,
        json: e.json,
        hostname: e.hostname,
    }
    .get(field)
}

impl RegexCondition {
    fn holds(&self, e: &mut Eval<'_>) -> bool {
        match e.regexes.get(self.local).map(|state| state.known) {
            None | Some(Some(false)) => return false,
            Some(Some(true)) if self.groups.is_empty() => return true,
            Some(_) => {}
        }
        // The haystack may itself be a capture; copy it then, since the
        // captures are about to be written.
        let hay: Cow<'_, str> = if matches!(self.field.root, Root::Capture(_)) {
            match lookup(e, &self.field) {
                Some(v) => Cow::Owned(v.text().into_owned()),
                None => return false,
            }
        } else {
            let scope = Scope {
                obs: e.obs,
                captured: &NO_CAPTURES,
                capture_names: &[],
                json: e.json,
                hostname: e.hostname,
            };
            match scope.get(&self.field) {
                Some(v) => v.text(),
                None => return false,
            }
        };
        let input = Input::new(hay.as_bytes());
        let Some(state) = e.regexes.get_mut(self.local) else {
            return false;
        };
        // Unless the prefilter already saw it match, a haystack without
        // the required literal cannot match.
        if state.known.is_none()
            && let Some(required) = &self.required
            && required.find(hay.as_bytes()).is_none()
        {
            return false;
        }
        if self.groups.is_empty() {
            return self.regex.is_match_with(&mut state.cache, &input);
        }
        self.regex
            .search_captures_with(&mut state.cache, &input, &mut state.caps);
        if !state.caps.is_match() {
            return false;
        }
        for &(group, slot) in &*self.groups {
            if let Some(span) = state.caps.get_group(group)
                && let Some(text) = hay.get(span.range())
            {
                e.captured.set(slot, text);
            }
        }
        true
    }
}
