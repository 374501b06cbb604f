//! Where in the config file a mapping string's parts are, and reading
//! field names and templates written as config strings with every mistake
//! reported at its place in the string. Shared by the rules and their
//! conditions, below both.

use std::ops::Range;

use super::fields::{FieldRef, Known};
use super::kinds::KindSchema;
use super::template::{Template, TemplateError};
use crate::config::decode::{At, Decoder, Origin};

/// The file span of `range` inside the string value `at`: exact when the
/// string is written on one line without escapes (so the template's bytes
/// are the file's), else the whole string.
pub(crate) fn inner_span(dec: &Decoder<'_>, at: &At<String>, range: Range<usize>) -> Range<usize> {
    let Some(span) = at.span.clone() else {
        return 0..0;
    };
    if let Origin::File {
        text,
        column,
        width,
        ..
    } = dec.locate(span.clone())
    {
        let raw: String = text.chars().skip(column - 1).take(width).collect();
        let plain = raw.len() == span.len()
            && raw.len() >= 2
            && (raw.starts_with('"') || raw.starts_with('\''))
            && !raw.starts_with("\"\"\"")
            && !raw.starts_with("'''")
            && raw.get(1..raw.len() - 1) == Some(at.value.as_str());
        if plain && range.end <= at.value.len() {
            return span.start + 1 + range.start..span.start + 1 + range.end;
        }
    }
    span
}

/// Resolves a field name written as a config string, reporting a mistake
/// at it.
pub(crate) fn resolve_field(
    dec: &Decoder<'_>,
    kinds: &[&'static KindSchema],
    captures: &[String],
    at: &At<String>,
) -> Option<FieldRef> {
    match (Known { kinds, captures }).resolve(&at.value) {
        Ok(field) => Some(field),
        Err((message, hint)) => {
            dec.error_at(inner_span(dec, at, 0..at.value.len()), message, hint);
            None
        }
    }
}

/// Parses and resolves a template written as a config string, reporting
/// every mistake at its place in the string.
pub(crate) fn read_template(
    dec: &Decoder<'_>,
    at: &At<String>,
    known: &Known<'_>,
) -> Option<Template> {
    let report = |errors: Vec<TemplateError>| {
        for e in errors {
            dec.error_at(
                inner_span(dec, at, e.at),
                format!("in template: {}", e.message),
                e.hint,
            );
        }
    };
    let (mut template, mut errors) = Template::parse_lenient(&at.value);
    if let Err(mut unknown) = template.resolve(known) {
        errors.append(&mut unknown);
    }
    if errors.is_empty() {
        Some(template)
    } else {
        errors.sort_by_key(|e| e.at.start);
        report(errors);
        None
    }
}
