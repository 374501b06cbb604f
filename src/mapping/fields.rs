//! Field references and their lookup: what `{json.user.id}` or
//! `field = "status"` names, checked at load against the kinds a rule can
//! see, and resolved at run time against one observation.
//!
//! A reference is resolved once, at load, to where its value lives (a
//! regex capture of the rule, a built-in like `hostname`, or an
//! observation field plus a nested path), so the hot path never parses a
//! name. This module does not evaluate conditions or render templates.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt::Write as _;

use serde_json::Value;

use super::kinds::{self, FieldType, KindSchema};
use crate::observation::Observation;

/// Where a referenced value lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    /// A named capture of one of the rule's regexes, by slot.
    Capture(usize),
    /// The observation's source name.
    Source,
    /// The observation's kind.
    Kind,
    /// The agent's host name.
    Hostname,
    /// An observation field by name.
    Field(Box<str>),
}

/// A resolved reference to a value: a root and a path into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldRef {
    /// As written, for messages and as the key of regex prefilters.
    pub text: Box<str>,
    pub root: Root,
    /// Object keys (or array indices) below the root.
    pub path: Box<[Box<str>]>,
}

/// What a rule can refer to: the fields of the kinds it may see and the
/// captures of its regexes so far.
pub(crate) struct Known<'k> {
    /// The kinds the rule can see; empty means it cannot see any field.
    pub kinds: &'k [&'static KindSchema],
    /// Capture names, by slot.
    pub captures: &'k [String],
}

impl Known<'_> {
    /// Resolves `text` (`status`, `json.user.id`).
    ///
    /// # Errors
    /// A message and an optional hint when the name is unknown, or when
    /// it looks into a field that has no structure.
    pub fn resolve(&self, text: &str) -> Result<FieldRef, (String, Option<String>)> {
        let mut segments = text.split('.');
        let name = segments.next().unwrap_or_default();
        let path: Vec<Box<str>> = segments.map(Box::from).collect();
        if name.is_empty() || path.iter().any(|s| s.is_empty()) {
            return Err((
                format!("`{text}` is not a field name"),
                Some("write a name like `status` or a path like `json.user.id`".into()),
            ));
        }
        let structured = |root: &Root| -> bool {
            match root {
                Root::Field(name) => self.kinds.iter().any(|k| {
                    k.fields
                        .iter()
                        .any(|(f, t)| *f == &**name && *t == FieldType::Object)
                }),
                _ => false,
            }
        };
        let root = if let Some(slot) = self.captures.iter().position(|c| c == name) {
            Root::Capture(slot)
        } else if name == "source" {
            Root::Source
        } else if name == "kind" {
            Root::Kind
        } else if name == "hostname" {
            Root::Hostname
        } else if self
            .kinds
            .iter()
            .any(|k| k.fields.iter().any(|(f, _)| *f == name))
        {
            Root::Field(name.into())
        } else {
            let mut names: Vec<&str> = self.captures.iter().map(String::as_str).collect();
            names.extend(kinds::BUILTIN_FIELDS);
            for k in self.kinds {
                names.extend(k.fields.iter().map(|(f, _)| *f));
            }
            names.sort_unstable();
            names.dedup();
            let hint = match crate::config::decode::nearest(name, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("fields here: {}", names.join(", ")),
            };
            return Err((format!("unknown field `{name}`"), Some(hint)));
        };
        if !path.is_empty() && !structured(&root) {
            return Err((
                format!("`{name}` has no fields: `{text}` cannot look inside it"),
                Some("nested paths work on JSON fields, like `json.user.id`".into()),
            ));
        }
        Ok(FieldRef {
            text: text.into(),
            root,
            path: path.into_boxed_slice(),
        })
    }
}

/// The captures of the rule being evaluated, copied out of the haystack so
/// that they outlive it: one string with every capture, and a span per
/// slot.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    text: String,
    spans: Vec<Option<(usize, usize)>>,
}

impl Captured {
    /// No captures at all.
    pub const EMPTY: Captured = Captured {
        text: String::new(),
        spans: Vec::new(),
    };

    /// Forgets every capture and makes room for `slots`.
    pub fn reset(&mut self, slots: usize) {
        self.text.clear();
        self.spans.clear();
        self.spans.resize(slots, None);
    }

    /// Records the value of a slot.
    pub fn set(&mut self, slot: usize, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        if let Some(span) = self.spans.get_mut(slot) {
            *span = Some((start, self.text.len()));
        }
    }

    /// The value of a slot, when its group took part in the match.
    pub fn get(&self, slot: usize) -> Option<&str> {
        let (start, end) = (*self.spans.get(slot)?)?;
        self.text.get(start..end)
    }
}

/// A looked-up value. Strings are always [`Val::Str`], and JSON null counts
/// as missing, so a `Json` is a number, a boolean, an array or an object.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl<'a> Val<'a> {
    fn of(value: &'a Value) -> Option<Val<'a>> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(Val::Str(s)),
            other => Some(Val::Json(other)),
        }
    }

    /// The value as text: strings as they are, numbers and booleans as
    /// JSON writes them, arrays and objects as compact JSON.
    pub fn text(self) -> Cow<'a, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Json(Value::Bool(true)) => Cow::Borrowed("true"),
            Val::Json(Value::Bool(false)) => Cow::Borrowed("false"),
            Val::Json(other) => {
                let mut out = String::new();
                let _ = write!(out, "{other}");
                Cow::Owned(out)
            }
        }
    }

    /// The value as a number: JSON numbers, and strings that parse as one
    /// (captures are strings: `status >= 500` must work on them).
    pub fn number(self) -> Option<f64> {
        match self {
            Val::Str(s) => s.trim().parse().ok(),
            Val::Json(Value::Number(n)) => n.as_f64(),
            Val::Json(_) => None,
        }
    }
}

/// Everything a reference can be resolved against for one observation.
pub(crate) struct Scope<'a> {
    pub obs: &'a Observation,
    pub captured: &'a Captured,
    /// The names of the captures, by slot.
    pub capture_names: &'a [String],
    /// The line parsed as JSON, on demand, when the source did not set a
    /// `json` field itself.
    pub json: &'a OnceCell<Option<Value>>,
    pub hostname: &'a str,
}

impl<'a> Scope<'a> {
    /// Every capture that took part in the match, with its name.
    pub fn captures(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.capture_names
            .iter()
            .enumerate()
            .filter_map(|(slot, name)| Some((name.as_str(), self.captured.get(slot)?)))
    }

    /// The value a reference names in this observation, if it has one.
    pub fn get(&self, field: &FieldRef) -> Option<Val<'a>> {
        let mut value = match &field.root {
            Root::Capture(slot) => return self.captured.get(*slot).map(Val::Str),
            Root::Source => return Some(Val::Str(&self.obs.source)),
            Root::Kind => return Some(Val::Str(&self.obs.kind)),
            Root::Hostname => return Some(Val::Str(self.hostname)),
            Root::Field(name) => {
                // A typed line's text is read in place: no JSON value is
                // made of it (a line has no fields below it).
                if &**name == "line"
                    && let Some(line) = &self.obs.line
                {
                    return field.path.is_empty().then(|| Val::Str(line.text.as_str()));
                }
                match self.obs.field(name) {
                    Some(value) => value,
                    None if &**name == "json" => self.parsed_line()?,
                    None => return None,
                }
            }
        };
        for key in &field.path {
            value = match value {
                Value::Object(map) => map.get(&**key)?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Val::of(value)
    }

    fn parsed_line(&self) -> Option<&'a Value> {
        self.json
            .get_or_init(|| {
                let line = match &self.obs.line {
                    Some(line) => line.text.as_str(),
                    None => self.obs.field("line")?.as_str()?,
                }
                .trim_start();
                if !line.starts_with('{') {
                    return None;
                }
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(Value::is_object)
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn known_line(captures: &[String]) -> Known<'_> {
        static LINE: std::sync::LazyLock<Vec<&'static KindSchema>> =
            std::sync::LazyLock::new(|| vec![kinds::schema("line").expect("line kind")]);
        Known {
            kinds: &LINE,
            captures,
        }
    }

    #[test]
    fn resolution_and_its_mistakes() {
        let caps = vec!["status".to_owned()];
        let known = known_line(&caps);
        assert_eq!(
            known.resolve("status").expect("capture").root,
            Root::Capture(0)
        );
        assert_eq!(
            known.resolve("hostname").expect("builtin").root,
            Root::Hostname
        );
        let nested = known.resolve("json.user.id").expect("nested");
        assert_eq!(nested.path.len(), 2);
        let (message, hint) = known.resolve("pth").expect_err("typo");
        assert_eq!(message, "unknown field `pth`");
        assert_eq!(hint.as_deref(), Some("did you mean `path`?"));
        assert!(known.resolve("path.x").is_err(), "path is a scalar");
        assert!(known.resolve("json..x").is_err());
        assert!(known.resolve("").is_err());
    }

    #[test]
    fn lookup_walks_json_and_parses_lines_on_demand() {
        let obs = Observation::new(Arc::from("app"), "line")
            .with("line", r#"{"user":{"id":7,"tags":["a","b"]},"n":null}"#)
            .with("offset", 3);
        let captured = Captured::default();
        let json = OnceCell::new();
        let scope = Scope {
            obs: &obs,
            captured: &captured,
            capture_names: &[],
            json: &json,
            hostname: "h1",
        };
        let known = known_line(&[]);
        let get = |text: &str| scope.get(&known.resolve(text).expect("known"));
        assert_eq!(
            get("json.user.id").map(|v| v.text().into_owned()),
            Some("7".into())
        );
        assert_eq!(
            get("json.user.tags.1").map(|v| v.text().into_owned()),
            Some("b".into())
        );
        assert!(get("json.n").is_none(), "null is missing");
        assert!(get("json.nope").is_none());
        assert_eq!(get("offset").and_then(Val::number), Some(3.0));
        assert_eq!(
            get("source").map(|v| v.text().into_owned()),
            Some("app".into())
        );
        assert!(get("path").is_none());
    }

    #[test]
    fn captures_are_kept_by_slot() {
        let mut captured = Captured::default();
        captured.reset(2);
        captured.set(1, "503");
        assert_eq!(captured.get(0), None);
        assert_eq!(captured.get(1), Some("503"));
        assert_eq!(captured.get(9), None);
        captured.reset(1);
        assert_eq!(captured.get(1), None);
    }
}
