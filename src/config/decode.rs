//! Reads a TOML document into typed configuration while collecting every
//! mistake, each with its file:line:column and a hint.
//!
//! serde stops at the first error, and operators fixing a broken config on a
//! host want the whole list at once, so the schema in `config/mod.rs` is
//! read through [`Table`], which records an error and carries on. It owns
//! what all keys share: unknown-key detection with "did you mean",
//! `${VAR}` / `${VAR:-default}` interpolation in strings, the
//! `HERALD_<TABLE>_<KEY>` environment overrides, and the value grammars for
//! durations and sizes. It knows nothing about what any key means.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a configured value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A place in a file.
    File {
        /// The file as the user named it.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The text of that line, for the caret display.
        text: String,
        /// How many characters to underline.
        width: usize,
    },
    /// An environment variable.
    Env(String),
}

/// One mistake in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mistake {
    /// Where it is.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when herald can tell.
    pub hint: Option<String>,
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File {
                path,
                line,
                column,
                text,
                width,
            } => {
                writeln!(f, "{path}:{line}:{column}: {}", self.message)?;
                let gutter = line.to_string().len();
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{line} | {text}")?;
                write!(
                    f,
                    "{:gutter$} | {:pad$}{}",
                    "",
                    "",
                    "^".repeat((*width).max(1)),
                    pad = column - 1
                )?;
            }
            Origin::Env(var) => write!(f, "environment variable {var}: {}", self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every mistake found in one configuration, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Mistakes(pub Vec<Mistake>);

impl fmt::Display for Mistakes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for mistake in &self.0 {
            writeln!(f, "error: {mistake}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} mistake{} in the configuration",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// Reads environment variables; tests pass a fixed map.
pub type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// The shared state of one decoding pass: the source text, where it came
/// from, the environment, and the mistakes found so far.
pub struct Decoder<'s> {
    path: String,
    text: &'s str,
    env: EnvLookup<'s>,
    mistakes: RefCell<Vec<(usize, Mistake)>>,
    /// Every key the schema asked for, so a test can prove the example
    /// config documents each one.
    asked: RefCell<BTreeSet<&'static str>>,
}

impl<'s> Decoder<'s> {
    /// A decoder over `text`, read from `path` (used only in messages).
    pub fn new(path: impl Into<String>, text: &'s str, env: EnvLookup<'s>) -> Self {
        Decoder {
            path: path.into(),
            text,
            env,
            mistakes: RefCell::new(Vec::new()),
            asked: RefCell::new(BTreeSet::new()),
        }
    }

    /// Every key the schema asked for so far.
    pub fn asked(&self) -> BTreeSet<&'static str> {
        self.asked.borrow().clone()
    }

    /// Looks up an environment variable; an empty value counts as unset,
    /// as it does for Prefect's own settings.
    pub fn env(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// Records a mistake at a span of the file.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let origin = self.locate(span.clone());
        self.mistakes.borrow_mut().push((
            span.start,
            Mistake {
                origin,
                message: message.into(),
                hint,
            },
        ));
    }

    /// Records a mistake in an environment variable.
    pub fn error_env(&self, var: &str, message: impl Into<String>, hint: Option<String>) {
        self.mistakes.borrow_mut().push((
            usize::MAX,
            Mistake {
                origin: Origin::Env(var.to_owned()),
                message: message.into(),
                hint,
            },
        ));
    }

    /// The mistakes found, sorted by where they are (file first, then
    /// environment), or `Ok` when there were none.
    ///
    /// # Errors
    /// [`Mistakes`] when anything was wrong.
    pub fn finish(self) -> Result<(), Mistakes> {
        let mut found = self.mistakes.into_inner();
        if found.is_empty() {
            return Ok(());
        }
        found.sort_by_key(|(at, _)| *at);
        Err(Mistakes(found.into_iter().map(|(_, m)| m).collect()))
    }

    /// The file position of a span.
    pub fn locate(&self, span: Range<usize>) -> Origin {
        let start = floor_char_boundary(self.text, span.start.min(self.text.len()));
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(self.text, span.end.clamp(start, line_end));
        let text = self.text[line_start..line_end].trim_end_matches('\r');
        Origin::File {
            path: self.path.clone(),
            line,
            column,
            text: text.to_owned(),
            width: self.text[start..end].chars().count(),
        }
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A value from the file, or from an environment override, ready to be
/// read as some type.
#[derive(Clone, Copy)]
pub enum Raw<'a, 'i> {
    /// A value in the file.
    File(&'a Spanned<DeValue<'i>>),
    /// The text of an environment variable.
    Env(&'a str, &'a str),
}

/// A type that can be read from a configured value.
pub trait Decode: Sized {
    /// What the user should write, for messages: "a duration like \"10s\"".
    const EXPECTED: &'static str;

    /// Reads the value, or records why it cannot and returns `None`.
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self>;
}

/// Reads a string value: interpolated from the file, or the raw text of an
/// environment override. Records a type mistake when it is not a string.
pub fn decode_str(dec: &Decoder<'_>, raw: Raw<'_, '_>, expected: &str) -> Option<String> {
    match raw {
        Raw::Env(_, text) => Some(text.to_owned()),
        Raw::File(value) => match value.get_ref() {
            DeValue::String(s) => interpolate(dec, s, value.span()),
            other => {
                type_mistake(dec, raw, expected, other.type_str());
                None
            }
        },
    }
}

/// Records "expected X, found Y" at the value.
pub fn type_mistake(dec: &Decoder<'_>, raw: Raw<'_, '_>, expected: &str, found: &str) {
    let message = format!("expected {expected}, found {found}");
    match raw {
        Raw::File(value) => dec.error_at(value.span(), message, None),
        Raw::Env(var, _) => dec.error_env(var, message, None),
    }
}

/// Records a mistake about a value that has the right type but a wrong
/// content.
pub fn value_mistake(
    dec: &Decoder<'_>,
    raw: Raw<'_, '_>,
    message: impl Into<String>,
    hint: Option<String>,
) {
    match raw {
        Raw::File(value) => dec.error_at(value.span(), message, hint),
        Raw::Env(var, _) => dec.error_env(var, message, hint),
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.
/// An unset variable without a default is a mistake at the string.
fn interpolate(dec: &Decoder<'_>, text: &str, span: Range<usize>) -> Option<String> {
    if !text.contains('$') {
        return Some(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut ok = true;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                dec.error_at(
                    span.clone(),
                    "unclosed `${` in string",
                    Some("write ${NAME} or ${NAME:-default}; write $${ for a literal ${".into()),
                );
                return None;
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_env_name(name) {
                dec.error_at(
                    span.clone(),
                    format!("`${{{inner}}}` does not name an environment variable"),
                    Some("names are letters, digits and _, not starting with a digit".into()),
                );
                ok = false;
            } else {
                match (dec.env(name), default) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => {
                        dec.error_at(
                            span.clone(),
                            format!("environment variable {name} is not set"),
                            Some(format!("set {name}, or give a default: ${{{name}:-value}}")),
                        );
                        ok = false;
                    }
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    ok.then_some(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Decode for String {
    const EXPECTED: &'static str = "a string";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        decode_str(dec, raw, Self::EXPECTED)
    }
}

impl Decode for bool {
    const EXPECTED: &'static str = "true or false";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        match raw {
            Raw::File(value) => match value.get_ref() {
                DeValue::Boolean(b) => Some(*b),
                other => {
                    type_mistake(dec, raw, Self::EXPECTED, other.type_str());
                    None
                }
            },
            Raw::Env(_, text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => {
                    type_mistake(dec, raw, Self::EXPECTED, &format!("{text:?}"));
                    None
                }
            },
        }
    }
}

fn decode_integer(dec: &Decoder<'_>, raw: Raw<'_, '_>, expected: &str) -> Option<i128> {
    match raw {
        Raw::File(value) => match value.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                type_mistake(dec, raw, expected, other.type_str());
                None
            }
        },
        Raw::Env(_, text) => match text.trim().replace('_', "").parse::<i128>() {
            Ok(n) => Some(n),
            Err(_) => {
                type_mistake(dec, raw, expected, &format!("{text:?}"));
                None
            }
        },
    }
}

macro_rules! decode_unsigned {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            const EXPECTED: &'static str = "a whole number";
            fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
                let n = decode_integer(dec, raw, Self::EXPECTED)?;
                match <$t>::try_from(n) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        value_mistake(
                            dec,
                            raw,
                            format!("{n} is out of range (0 to {})", <$t>::MAX),
                            None,
                        );
                        None
                    }
                }
            }
        }
    )*};
}
decode_unsigned!(u32, u64, usize);

impl Decode for f64 {
    const EXPECTED: &'static str = "a number";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let parsed = match raw {
            Raw::File(value) => match value.get_ref() {
                DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .map(|n| n as f64),
                other => {
                    type_mistake(dec, raw, Self::EXPECTED, other.type_str());
                    return None;
                }
            },
            Raw::Env(_, text) => text.trim().replace('_', "").parse::<f64>().ok(),
        };
        match parsed {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                value_mistake(dec, raw, "not a finite number", None);
                None
            }
        }
    }
}

/// A span of time written as `"250ms"`, `"10s"`, `"5m"`, `"1h30m"` or `"2d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl Decode for ConfigDuration {
    const EXPECTED: &'static str = "a duration like \"500ms\", \"10s\" or \"5m\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        if let Raw::File(value) = raw
            && let DeValue::Integer(_) | DeValue::Float(_) = value.get_ref()
        {
            value_mistake(
                dec,
                raw,
                format!("expected {}, found a bare number", Self::EXPECTED),
                Some("add a unit: ms, s, m, h or d".into()),
            );
            return None;
        }
        let text = decode_str(dec, raw, Self::EXPECTED)?;
        match parse_duration(&text) {
            Ok(d) => Some(ConfigDuration(d)),
            Err(why) => {
                value_mistake(
                    dec,
                    raw,
                    format!("invalid duration {text:?}: {why}"),
                    Some(
                        "write a number and a unit (ms, s, m, h, d), e.g. \"500ms\" or \"1m30s\""
                            .into(),
                    ),
                );
                None
            }
        }
    }
}

/// Parses `"250ms"`, `"10s"`, `"1h30m"`.
///
/// # Errors
/// A short reason when the text is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty");
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number needs a unit")?;
        if digits == 0 {
            return Err("expected a number");
        }
        let number: f64 = rest[..digits].parse().map_err(|_| "bad number")?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match rest[..unit_len].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err("unknown unit (use ms, s, m, h or d)"),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| "out of range")?;
    }
    Ok(total)
}

/// A number of bytes written as `"64MiB"`, `"1GB"`, `"512KiB"` or a bare
/// integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl Decode for ByteSize {
    const EXPECTED: &'static str = "a size like \"64MiB\" or a number of bytes";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        if let Raw::File(value) = raw
            && let DeValue::Integer(_) = value.get_ref()
        {
            return u64::decode(dec, raw).map(ByteSize);
        }
        let text = decode_str(dec, raw, Self::EXPECTED)?;
        match parse_size(&text) {
            Ok(n) => Some(ByteSize(n)),
            Err(why) => {
                value_mistake(
                    dec,
                    raw,
                    format!("invalid size {text:?}: {why}"),
                    Some(
                        "write a number and a unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. \"64MiB\""
                            .into(),
                    ),
                );
                None
            }
        }
    }
}

/// Parses `"64MiB"`, `"1.5GB"`, `"4096"`.
///
/// # Errors
/// A short reason when the text is not a size.
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    if split == 0 {
        return Err("expected a number");
    }
    let number: f64 = text[..split]
        .replace('_', "")
        .parse()
        .map_err(|_| "bad number")?;
    let multiplier: u64 = match text[split..].trim() {
        "" | "B" | "b" => 1,
        "KB" | "kB" | "K" | "k" => 1_000,
        "KiB" => 1 << 10,
        "MB" | "M" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" | "G" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" | "T" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return Err("unknown unit"),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err("out of range");
    }
    if bytes.fract() != 0.0 {
        return Err("not a whole number of bytes");
    }
    Ok(bytes as u64)
}

/// A key of a table with the values it was read from, so a later check
/// (a name used twice, two options that exclude each other) can point at it.
#[derive(Clone, Debug)]
pub struct At<T> {
    /// The value read.
    pub value: T,
    /// Its span in the file, when it came from the file.
    pub span: Option<Range<usize>>,
}

/// One TOML table being read: every key read is remembered, and
/// [`Table::finish`] reports the rest as unknown, with a suggestion.
pub struct Table<'d, 'a, 'i> {
    dec: &'d Decoder<'a>,
    table: Option<&'d DeTable<'i>>,
    /// `[agent]`, `[[sources.heartbeat]]`: how messages name this table.
    name: String,
    /// `HERALD_AGENT` for single tables, whose scalar keys the environment
    /// may override.
    env_prefix: Option<String>,
    known: RefCell<BTreeSet<&'static str>>,
    span: Range<usize>,
}

impl<'d, 'a, 'i> Table<'d, 'a, 'i> {
    /// Reads `value` as a table named `name` in messages. Records a type
    /// mistake and returns `None` when it is not a table.
    pub fn new(
        dec: &'d Decoder<'a>,
        value: &'d Spanned<DeValue<'i>>,
        name: impl Into<String>,
    ) -> Option<Self> {
        let name = name.into();
        match value.get_ref() {
            DeValue::Table(table) => Some(Table {
                dec,
                table: Some(table),
                name,
                env_prefix: None,
                known: RefCell::new(BTreeSet::new()),
                span: value.span(),
            }),
            other => {
                dec.error_at(
                    value.span(),
                    format!("{name} must be a table, found {}", other.type_str()),
                    None,
                );
                None
            }
        }
    }

    /// The top-level document.
    pub fn root(dec: &'d Decoder<'a>, table: &'d DeTable<'i>) -> Self {
        Table {
            dec,
            table: Some(table),
            name: "the top level".into(),
            env_prefix: None,
            known: RefCell::new(BTreeSet::new()),
            span: 0..0,
        }
    }

    /// A single table (`[agent]`) of the document, which may be absent; its
    /// scalar keys may be overridden by `HERALD_<TABLE>_<KEY>`.
    pub fn single(parent: &Table<'d, 'a, 'i>, key: &'static str) -> Option<Self> {
        let mut table = match parent.value(key) {
            Some(value) => Table::new(parent.dec, value, format!("[{key}]"))?,
            None => Table {
                dec: parent.dec,
                table: None,
                name: format!("[{key}]"),
                env_prefix: None,
                known: RefCell::new(BTreeSet::new()),
                span: parent.span.clone(),
            },
        };
        table.env_prefix = Some(format!("HERALD_{}", key.to_ascii_uppercase()));
        Some(table)
    }

    /// The decoder, for checks that span several keys.
    pub fn decoder(&self) -> &'d Decoder<'a> {
        self.dec
    }

    /// The span of the table header or inline table.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The raw value of a key, marking it known.
    pub fn value(&self, key: &'static str) -> Option<&'d Spanned<DeValue<'i>>> {
        self.known.borrow_mut().insert(key);
        self.dec.asked.borrow_mut().insert(key);
        self.table.and_then(|t| t.get(key))
    }

    /// The environment override of a key, when this table has them.
    fn env_override(&self, key: &str) -> Option<(String, String)> {
        let prefix = self.env_prefix.as_ref()?;
        let var = format!("{prefix}_{}", key.to_ascii_uppercase());
        let value = self.dec.env(&var)?;
        Some((var, value))
    }

    /// Reads an optional key, with its span.
    pub fn get_at<T: Decode>(&self, key: &'static str) -> Option<At<T>> {
        let file = self.value(key);
        if let Some((var, text)) = self.env_override(key) {
            let value = T::decode(self.dec, Raw::Env(&var, &text))?;
            return Some(At {
                value,
                span: file.map(Spanned::span),
            });
        }
        let file = file?;
        let value = T::decode(self.dec, Raw::File(file))?;
        Some(At {
            value,
            span: Some(file.span()),
        })
    }

    /// Reads an optional key.
    pub fn get<T: Decode>(&self, key: &'static str) -> Option<T> {
        self.get_at(key).map(|at| at.value)
    }

    /// Reads a key with a default.
    pub fn or<T: Decode>(&self, key: &'static str, default: T) -> T {
        self.get(key).unwrap_or(default)
    }

    /// Reads a key that must be there; records a mistake when it is not.
    pub fn required<T: Decode>(&self, key: &'static str) -> Option<At<T>> {
        let at = self.get_at(key);
        if at.is_none() && self.table.and_then(|t| t.get(key)).is_none() {
            self.dec.error_at(
                self.span.clone(),
                format!("{} is missing the required key `{key}`", self.name),
                Some(format!("add {key} = {}", T::EXPECTED)),
            );
        }
        at
    }

    /// Reads a table of string values (`[agent.labels]`).
    pub fn string_map(&self, key: &'static str) -> Vec<(At<String>, String)> {
        let Some(value) = self.value(key) else {
            return Vec::new();
        };
        let Some(sub) = Table::new(self.dec, value, format!("{}.{key}", self.name)) else {
            return Vec::new();
        };
        let Some(table) = sub.table else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in table.iter() {
            if let Some(text) = decode_str(self.dec, Raw::File(v), "a string") {
                out.push((
                    At {
                        value: k.get_ref().to_string(),
                        span: Some(k.span()),
                    },
                    text,
                ));
            }
        }
        out
    }

    /// Reads an array of tables (`[[sources.heartbeat]]`), giving each
    /// element to `read`.
    pub fn array_of_tables<T>(
        &self,
        key: &'static str,
        name: &str,
        mut read: impl FnMut(Table<'d, 'a, 'i>) -> Option<T>,
    ) -> Vec<T> {
        let Some(value) = self.value(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.dec.error_at(
                value.span(),
                format!(
                    "{name} must be an array of tables, found {}",
                    value.get_ref().type_str()
                ),
                Some(format!("write each one under its own {name} header")),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| Table::new(self.dec, item, name.to_owned()))
            .filter_map(&mut read)
            .collect()
    }

    /// Reports every key that was not read as unknown, suggesting the
    /// nearest known one.
    pub fn finish(self) {
        let Some(table) = self.table else { return };
        let known = self.known.borrow();
        for (key, _) in table.iter() {
            let key_text: &str = key.get_ref();
            if known.contains(key_text) {
                continue;
            }
            let hint = match nearest(key_text, known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "known keys here: {}",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            };
            self.dec.error_at(
                key.span(),
                format!("unknown key `{key_text}` in {}", self.name),
                Some(hint),
            );
        }
    }
}

/// The known name closest to `word`, when it is close enough to be what
/// the user meant.
pub fn nearest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1_000 B"), Ok(1000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0.5B").is_err());
    }

    #[test]
    fn suggestions() {
        let known = ["interval", "name"];
        assert_eq!(nearest("intervl", known.into_iter()), Some("interval"));
        assert_eq!(nearest("nmae", known.into_iter()), Some("name"));
        assert_eq!(nearest("colour", known.into_iter()), None);
    }

    fn interpolated(text: &str) -> Result<Option<String>, Mistakes> {
        let env = |name: &str| match name {
            "HOME_DIR" => Some("/home/h".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let dec = Decoder::new("t.toml", text, &env);
        let out = interpolate(&dec, text, 0..text.len());
        dec.finish().map(|()| out)
    }

    #[test]
    fn interpolation() {
        assert_eq!(
            interpolated("${HOME_DIR}/x"),
            Ok(Some("/home/h/x".to_owned()))
        );
        assert_eq!(interpolated("${NOPE:-d}"), Ok(Some("d".to_owned())));
        assert_eq!(interpolated("${EMPTY:-d}"), Ok(Some("d".to_owned())));
        assert_eq!(
            interpolated("$${HOME_DIR}"),
            Ok(Some("${HOME_DIR}".to_owned()))
        );
        assert_eq!(interpolated("cost $5"), Ok(Some("cost $5".to_owned())));
        let err = interpolated("${NOPE}").expect_err("unset");
        assert!(err.0[0].message.contains("NOPE is not set"), "{err}");
        assert!(interpolated("${OPEN").is_err());
        assert!(interpolated("${1BAD}").is_err());
    }

    #[test]
    fn mistakes_point_at_line_and_column() {
        let text = "a = 1\nbé = \"x\"\n";
        let env = |_: &str| None;
        let dec = Decoder::new("f.toml", text, &env);
        let at = text.find("\"x\"").expect("present");
        dec.error_at(at..at + 3, "bad", Some("fix it".into()));
        let mistakes = dec.finish().expect_err("one mistake");
        let shown = mistakes.to_string();
        assert!(shown.contains("f.toml:2:6: bad"), "{shown}");
        assert!(shown.contains("2 | bé = \"x\""), "{shown}");
        assert!(shown.contains("  |      ^^^"), "{shown}");
        assert!(shown.contains("hint: fix it"), "{shown}");
    }
}
