//! Templates: the strings that build an event's name, resource and payload
//! from an observation, like `"nginx.{method | lower}.{status}"`.
//!
//! Grammar: text with `{field}` placeholders; a field may be a path into
//! JSON (`{json.user.id}`) and may be followed by filters, applied left to
//! right: `{path | basename | truncate:40}`. `{{` and `}}` stand for
//! literal braces. Filters: `lower`, `upper`, `slug`, `basename`,
//! `truncate:N` (at most N characters), `default:TEXT` (used when the
//! value is missing or empty, so `{route | slug | default:root}` works;
//! `default:"a|b"` quotes text holding `|` or `}`).
//!
//! A template is parsed once, at load, into literal and field segments;
//! every mistake carries its byte range in the template so the config
//! error can point into the string. Rendering never panics: a missing
//! value without a `default` makes the whole render fail, and the caller
//! decides what that means. This module does not know which fields exist;
//! [`super::fields::Known`] does.

use std::borrow::Cow;
use std::ops::Range;

use super::fields::{FieldRef, Known, Root, Scope, Val};

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    /// As written, for messages.
    text: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Clone, Debug)]
enum Part {
    Lit(Box<str>),
    Field(Placeholder),
}

#[derive(Clone, Debug)]
struct Placeholder {
    /// The field as written, until resolved.
    name: Box<str>,
    /// Where the name is in the template, for messages.
    at: Range<usize>,
    field: Option<FieldRef>,
    filters: Box<[Filter]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    Lower,
    Upper,
    Slug,
    Basename,
    Truncate(usize),
    Default(Box<str>),
}

/// Every filter name, for hints.
const FILTERS: &[&str] = &["lower", "upper", "slug", "basename", "truncate", "default"];

/// A mistake in a template, with the byte range of the template it is
/// about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte range in the template text.
    pub at: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl TemplateError {
    fn new(at: Range<usize>, message: impl Into<String>, hint: Option<&str>) -> Self {
        TemplateError {
            at,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

impl Template {
    /// Parses a template. Field names are checked by [`Template::resolve`].
    ///
    /// # Errors
    /// Every syntax mistake found.
    pub fn parse(text: &str) -> Result<Template, Vec<TemplateError>> {
        let (template, errors) = Template::parse_lenient(text);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors)
        }
    }

    /// Parses what can be parsed, with every syntax mistake, so that the
    /// fields of a template with a bad filter are still checked.
    pub(crate) fn parse_lenient(text: &str) -> (Template, Vec<TemplateError>) {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < text.len() {
            // Braces are ASCII, so byte indexing stays on char boundaries.
            let Some(rel) = text[i..].find(['{', '}']) else {
                literal.push_str(&text[i..]);
                break;
            };
            literal.push_str(&text[i..i + rel]);
            i += rel;
            let brace = bytes[i];
            if bytes.get(i + 1) == Some(&brace) {
                literal.push(char::from(brace));
                i += 2;
                continue;
            }
            if brace == b'}' {
                errors.push(TemplateError::new(
                    i..i + 1,
                    "unmatched `}` in template",
                    Some("write `}}` for a literal brace"),
                ));
                i += 1;
                continue;
            }
            let Some(close) = find_close(text, i + 1) else {
                errors.push(TemplateError::new(
                    i..text.len(),
                    "unclosed `{` in template",
                    Some("close the placeholder with `}`, or write `{{` for a literal brace"),
                ));
                break;
            };
            if !literal.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut literal).into()));
            }
            let (placeholder, mut e) = parse_placeholder(text, i + 1, close);
            errors.append(&mut e);
            parts.extend(placeholder.map(Part::Field));
            i = close + 1;
        }
        if !literal.is_empty() {
            parts.push(Part::Lit(literal.into()));
        }
        let template = Template {
            text: text.into(),
            parts: parts.into(),
        };
        (template, errors)
    }

    /// Resolves every placeholder against what the rule can see.
    ///
    /// # Errors
    /// One mistake per unknown field.
    pub(crate) fn resolve(&mut self, known: &Known<'_>) -> Result<(), Vec<TemplateError>> {
        let mut errors = Vec::new();
        for part in self.parts.iter_mut() {
            if let Part::Field(p) = part {
                match known.resolve(&p.name) {
                    Ok(field) => p.field = Some(field),
                    Err((message, hint)) => errors.push(TemplateError {
                        at: p.at.clone(),
                        message,
                        hint,
                    }),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text, when the template has no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match &*self.parts {
            [] => Some(""),
            [Part::Lit(text)] => Some(text),
            _ => None,
        }
    }

    /// The field, when the template is exactly one placeholder without
    /// filters: a payload value written so keeps its JSON type.
    pub(crate) fn single_field(&self) -> Option<&FieldRef> {
        match &*self.parts {
            [Part::Field(p)] if p.filters.is_empty() => p.field.as_ref(),
            _ => None,
        }
    }

    /// Whether every placeholder names one of `fields` itself (a plain
    /// field, no nested path) or the host name: then the rendering depends
    /// on those fields' values only.
    pub(crate) fn only_uses(&self, fields: &[&str]) -> bool {
        self.parts.iter().all(|part| match part {
            Part::Lit(_) => true,
            Part::Field(p) => p.field.as_ref().is_some_and(|f| {
                f.path.is_empty()
                    && match &f.root {
                        Root::Field(name) => fields.contains(&&**name),
                        Root::Hostname => true,
                        _ => false,
                    }
            }),
        })
    }

    /// A template of one placeholder, for built-in mappings.
    pub(crate) fn of_field(field: FieldRef) -> Template {
        Template::from_parts(vec![Part::Field(Placeholder {
            name: field.text.clone(),
            at: 0..0,
            field: Some(field),
            filters: Box::new([]),
        })])
    }

    /// A literal followed by one placeholder with the `basename` filter
    /// or none, for built-in mappings.
    pub(crate) fn prefixed(prefix: &str, field: FieldRef, basename: bool) -> Template {
        let mut parts = Vec::new();
        if !prefix.is_empty() {
            parts.push(Part::Lit(prefix.into()));
        }
        parts.push(Part::Field(Placeholder {
            name: field.text.clone(),
            at: 0..0,
            field: Some(field),
            filters: if basename {
                Box::new([Filter::Basename])
            } else {
                Box::new([])
            },
        }));
        Template::from_parts(parts)
    }

    fn from_parts(parts: Vec<Part>) -> Template {
        let mut text = String::new();
        for part in &parts {
            match part {
                Part::Lit(t) => text.push_str(&t.replace('{', "{{").replace('}', "}}")),
                Part::Field(p) => {
                    text.push('{');
                    text.push_str(&p.name);
                    if p.filters.contains(&Filter::Basename) {
                        text.push_str(" | basename");
                    }
                    text.push('}');
                }
            }
        }
        Template {
            text: text.into(),
            parts: parts.into(),
        }
    }

    /// Renders the template for one observation, using `scratch` when the
    /// result is not simply a field's own text.
    ///
    /// Returns `None` when a field is missing and has no `default` (or the
    /// template was never resolved, which loading prevents).
    pub(crate) fn render<'x>(
        &'x self,
        scope: &Scope<'x>,
        scratch: &'x mut String,
    ) -> Option<&'x str> {
        if let [Part::Field(p)] = &*self.parts
            && p.filters.is_empty()
        {
            match scope.get(p.field.as_ref()?)? {
                Val::Str(s) => return Some(s),
                other => {
                    scratch.clear();
                    scratch.push_str(&other.text());
                    return Some(scratch.as_str());
                }
            }
        }
        scratch.clear();
        for part in &*self.parts {
            match part {
                Part::Lit(text) => scratch.push_str(text),
                Part::Field(p) => {
                    let value = p.field.as_ref().and_then(|f| scope.get(f));
                    push_filtered(&p.filters, value, scratch)?;
                }
            }
        }
        Some(scratch.as_str())
    }
}

/// Appends a value through its filters to `out`. No filter, or one that
/// is not `default` (the usual cases), writes straight into `out`; longer
/// chains go through [`apply`].
fn push_filtered(filters: &[Filter], value: Option<Val<'_>>, out: &mut String) -> Option<()> {
    match filters {
        [] => match value? {
            Val::Str(s) => out.push_str(s),
            other => out.push_str(&other.text()),
        },
        [filter] if !matches!(filter, Filter::Default(_)) => {
            push_one(filter, &value?.text(), out);
        }
        _ => out.push_str(&apply(filters, value.map(Val::text))?),
    }
    Some(())
}

/// Appends `text` through one filter (not `default`) to `out`.
fn push_one(filter: &Filter, text: &str, out: &mut String) {
    let start = out.len();
    match filter {
        Filter::Lower if text.is_ascii() => {
            out.push_str(text);
            if let Some(tail) = out.get_mut(start..) {
                tail.make_ascii_lowercase();
            }
        }
        Filter::Upper if text.is_ascii() => {
            out.push_str(text);
            if let Some(tail) = out.get_mut(start..) {
                tail.make_ascii_uppercase();
            }
        }
        Filter::Lower => out.push_str(&text.to_lowercase()),
        Filter::Upper => out.push_str(&text.to_uppercase()),
        Filter::Slug => slug_into(text, out),
        Filter::Basename => out.push_str(&basename(Cow::Borrowed(text))),
        Filter::Truncate(n) => out.push_str(&truncate(Cow::Borrowed(text), *n)),
        Filter::Default(_) => out.push_str(text),
    }
}

/// Applies filters left to right; `default` fills a missing value.
fn apply<'a>(filters: &[Filter], mut value: Option<Cow<'a, str>>) -> Option<Cow<'a, str>> {
    for filter in filters {
        value = match (filter, value) {
            (Filter::Default(text), None) => Some(Cow::Owned(text.to_string())),
            (Filter::Default(text), Some(v)) if v.is_empty() => Some(Cow::Owned(text.to_string())),
            (_, None) => None,
            (Filter::Default(_), some) => some,
            (Filter::Lower, Some(v)) => Some(Cow::Owned(v.to_lowercase())),
            (Filter::Upper, Some(v)) => Some(Cow::Owned(v.to_uppercase())),
            (Filter::Slug, Some(v)) => Some(Cow::Owned(slug(&v))),
            (Filter::Basename, Some(v)) => Some(basename(v)),
            (Filter::Truncate(n), Some(v)) => Some(truncate(v, *n)),
        };
    }
    value
}

/// A safe resource-id segment: lower case ASCII letters, digits, `.`,
/// `_` and `-`; every run of anything else becomes one `-`, and `-` is
/// trimmed from both ends.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    slug_into(text, &mut out);
    out
}

/// [`slug`], appended to `out`.
fn slug_into(text: &str, out: &mut String) {
    let start = out.len();
    // Runs of kept characters are copied whole, one `-` between them.
    for run in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')) {
        if run.is_empty() {
            continue;
        }
        if out.len() > start {
            out.push('-');
        }
        let from = out.len();
        out.push_str(run);
        if let Some(tail) = out.get_mut(from..) {
            tail.make_ascii_lowercase();
        }
    }
}

fn basename(value: Cow<'_, str>) -> Cow<'_, str> {
    let trimmed_len = value.trim_end_matches('/').len();
    match value {
        Cow::Borrowed(s) => {
            let s = &s[..trimmed_len];
            Cow::Borrowed(s.rsplit('/').next().unwrap_or(s))
        }
        Cow::Owned(s) => {
            let s = &s[..trimmed_len];
            Cow::Owned(s.rsplit('/').next().unwrap_or(s).to_owned())
        }
    }
}

fn truncate(value: Cow<'_, str>, chars: usize) -> Cow<'_, str> {
    match value.char_indices().nth(chars) {
        None => value,
        Some((at, _)) => match value {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..at]),
            Cow::Owned(mut s) => {
                s.truncate(at);
                Cow::Owned(s)
            }
        },
    }
}

/// The `}` closing the placeholder opened before `from`, skipping quoted
/// filter arguments.
fn find_close(text: &str, from: usize) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[from..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(from + i),
            _ => {}
        }
    }
    None
}

/// Parses `name | filter | filter:arg` between `start` and `end`: the
/// placeholder when its name is valid (without the filters that are not),
/// and every mistake.
fn parse_placeholder(
    text: &str,
    start: usize,
    end: usize,
) -> (Option<Placeholder>, Vec<TemplateError>) {
    let pieces = split_pipes(text, start, end);
    let mut errors = Vec::new();
    let (name_at, name) = trimmed(text, pieces[0].clone());
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-".contains(c));
    if !name_ok {
        let at = if name.is_empty() {
            start.saturating_sub(1)..end + 1
        } else {
            name_at.clone()
        };
        errors.push(TemplateError::new(
            at,
            if name.is_empty() {
                "empty placeholder `{}`".to_owned()
            } else {
                format!("`{name}` is not a field name")
            },
            Some("write a field like {status} or {json.user.id}; `{{` is a literal brace"),
        ));
    }
    let mut filters = Vec::new();
    for piece in &pieces[1..] {
        match parse_filter(text, piece.clone()) {
            Ok(filter) => filters.push(filter),
            Err(e) => errors.push(e),
        }
    }
    let placeholder = name_ok.then(|| Placeholder {
        name: name.into(),
        at: name_at,
        field: None,
        filters: filters.into(),
    });
    (placeholder, errors)
}

/// The ranges between `|`s (outside quotes).
fn split_pipes(text: &str, start: usize, end: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = start;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[start..end].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '|' if !quoted => {
                out.push(from..start + i);
                from = start + i + 1;
            }
            _ => {}
        }
    }
    out.push(from..end);
    out
}

fn trimmed(text: &str, range: Range<usize>) -> (Range<usize>, &str) {
    let piece = &text[range.clone()];
    let lead = piece.len() - piece.trim_start().len();
    let value = piece.trim();
    (range.start + lead..range.start + lead + value.len(), value)
}

fn parse_filter(text: &str, range: Range<usize>) -> Result<Filter, TemplateError> {
    let (at, piece) = trimmed(text, range);
    let (name, arg) = match piece.split_once(':') {
        Some((name, arg)) => (name.trim_end(), Some(arg.trim_start())),
        None => (piece, None),
    };
    let arg_at = match arg {
        Some(a) => at.end - a.len()..at.end,
        None => at.clone(),
    };
    let no_arg = |filter: Filter| match arg {
        None => Ok(filter),
        Some(_) => Err(TemplateError::new(
            arg_at.clone(),
            format!("filter `{name}` takes no argument"),
            Some(&format!("write `| {name}`")),
        )),
    };
    match name {
        "lower" => no_arg(Filter::Lower),
        "upper" => no_arg(Filter::Upper),
        "slug" => no_arg(Filter::Slug),
        "basename" => no_arg(Filter::Basename),
        "truncate" => match arg.map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Ok(Filter::Truncate(n)),
            _ => Err(TemplateError::new(
                arg_at,
                "filter `truncate` needs a number of characters above zero",
                Some("write `| truncate:40`"),
            )),
        },
        "default" => match arg {
            None => Err(TemplateError::new(
                at,
                "filter `default` needs a value",
                Some("write `| default:unknown` or `| default:\"a|b\"`"),
            )),
            Some(arg) => unquote(arg).map(Filter::Default).ok_or_else(|| {
                TemplateError::new(
                    arg_at,
                    "unterminated quoted default",
                    Some("close the quote: `| default:\"text\"`"),
                )
            }),
        },
        _ => {
            let hint = match crate::config::decode::nearest(name, FILTERS.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("filters: {}", FILTERS.join(", ")),
            };
            Err(TemplateError {
                at: at.start..at.start + name.len(),
                message: format!("unknown filter `{name}`"),
                hint: Some(hint),
            })
        }
    }
}

/// `"a|b"` becomes `a|b` (with `\"` and `\\` escapes); unquoted text is
/// taken as it is.
fn unquote(arg: &str) -> Option<Box<str>> {
    let Some(inner) = arg.strip_prefix('"') else {
        return Some(arg.into());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::fields::Captured;
    use crate::mapping::kinds;
    use crate::observation::Observation;
    use std::cell::OnceCell;
    use std::sync::Arc;

    fn render(template: &str, obs: &Observation) -> Option<String> {
        let mut t = Template::parse(template).expect("parses");
        let line = [kinds::schema("line").expect("line")];
        let captures = ["status".to_owned()];
        t.resolve(&Known {
            kinds: &line,
            captures: &captures,
        })
        .expect("resolves");
        let mut captured = Captured::default();
        captured.reset(1);
        captured.set(0, "503");
        let json = OnceCell::new();
        let scope = Scope {
            obs,
            captured: &captured,
            capture_names: &captures,
            json: &json,
            hostname: "h1",
        };
        let mut scratch = String::new();
        t.render(&scope, &mut scratch).map(str::to_owned)
    }

    fn obs() -> Observation {
        Observation::new(Arc::from("nginx"), "line")
            .with("line", r#"{"user":{"id":"U-7"},"msg":"Hello World"}"#)
            .with("path", "/var/log/nginx/Access Log.txt")
            .with("offset", 42)
    }

    #[test]
    fn fields_and_literals() {
        let o = obs();
        assert_eq!(render("plain", &o).as_deref(), Some("plain"));
        assert_eq!(render("{{x}}", &o).as_deref(), Some("{x}"));
        assert_eq!(render("at {offset}", &o).as_deref(), Some("at 42"));
        assert_eq!(render("{status}", &o).as_deref(), Some("503"));
        assert_eq!(render("{json.user.id}", &o).as_deref(), Some("U-7"));
        assert_eq!(
            render("{ source }.{hostname}", &o).as_deref(),
            Some("nginx.h1")
        );
        assert_eq!(
            render("{json.user}", &o).as_deref(),
            Some(r#"{"id":"U-7"}"#)
        );
    }

    #[test]
    fn each_filter() {
        let o = obs();
        assert_eq!(
            render("{json.msg|lower}", &o).as_deref(),
            Some("hello world")
        );
        assert_eq!(
            render("{json.msg | upper}", &o).as_deref(),
            Some("HELLO WORLD")
        );
        assert_eq!(
            render("{path | basename}", &o).as_deref(),
            Some("Access Log.txt")
        );
        assert_eq!(
            render("{path | basename | slug}", &o).as_deref(),
            Some("access-log.txt")
        );
        assert_eq!(
            render("{json.msg | truncate:5}", &o).as_deref(),
            Some("Hello")
        );
        assert_eq!(
            render("{json.msg | truncate:50}", &o).as_deref(),
            Some("Hello World")
        );
        assert_eq!(
            render("{json.nope | default:anon}", &o).as_deref(),
            Some("anon")
        );
        assert_eq!(
            render("{json.nope | default:\"a|b}\"}", &o).as_deref(),
            Some("a|b}")
        );
        assert_eq!(
            render("{json.msg | default:x}", &o).as_deref(),
            Some("Hello World")
        );
        assert_eq!(
            render("{json.nope | default:\"Mixed\" | lower}", &o).as_deref(),
            Some("mixed")
        );
        assert_eq!(
            render("{json.nope | upper | default:z}", &o).as_deref(),
            Some("z")
        );
        assert_eq!(render("x{json.nope}", &o), None, "missing without default");
        assert_eq!(render("{json.nope}", &o), None);
    }

    #[test]
    fn slug_rules() {
        assert_eq!(slug("  Hello, World!  "), "hello-world");
        assert_eq!(slug("a/b/c.log"), "a-b-c.log");
        assert_eq!(slug("üñí"), "");
        assert_eq!(slug("x__y--z"), "x__y-z");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate(Cow::Borrowed("café!"), 4), "café");
        assert_eq!(truncate(Cow::Owned("éé".into()), 1), "é");
    }

    fn errors(template: &str) -> Vec<TemplateError> {
        match Template::parse(template) {
            Ok(mut t) => {
                let line = [kinds::schema("line").expect("line")];
                t.resolve(&Known {
                    kinds: &line,
                    captures: &[],
                })
                .expect_err("should not resolve")
            }
            Err(e) => e,
        }
    }

    #[test]
    fn mistakes_point_into_the_template() {
        let e = errors("a.{pth}.b");
        assert_eq!(
            (e[0].at.clone(), e[0].message.as_str()),
            (3..6, "unknown field `pth`")
        );
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `path`?"));
        let e = errors("{path | lowr}");
        assert_eq!(e[0].at, 8..12);
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `lower`?"));
        let e = errors("x {path");
        assert_eq!(e[0].at, 2..7);
        assert!(e[0].message.contains("unclosed"));
        let e = errors("x } y");
        assert_eq!(e[0].at, 2..3);
        let e = errors("{}");
        assert!(e[0].message.contains("empty"));
        let e = errors("{path | truncate:0}");
        assert_eq!(e[0].at, 17..18);
        let e = errors("{path | lower:1}");
        assert!(e[0].message.contains("takes no argument"));
        let e = errors("{path | default}");
        assert!(e[0].message.contains("needs a value"));
        let e = errors("{a b} {c|nope} {d");
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
