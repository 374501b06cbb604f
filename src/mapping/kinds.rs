//! The observation kinds herald's sources produce, and the fields each one
//! carries.
//!
//! The mapper reads this table at load so that a template or condition
//! naming a field no source of that kind ever sets is a config error with
//! its position, not an event that silently never matches. A source that
//! adds a kind (or a field) adds it here in the same change. This module
//! does not produce observations and knows nothing about rules.

/// What kind of value a field holds, so nested access (`{json.user.id}`)
/// is allowed only into fields that can have a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A string, a number or a boolean: no nested access.
    Scalar,
    /// A JSON object or array whose shape is only known at run time: any
    /// nested path is accepted.
    Object,
}

/// One kind and its fields.
#[derive(Debug)]
pub struct KindSchema {
    /// The observation's `kind`.
    pub kind: &'static str,
    /// Its fields. A field may be absent from one observation (for example
    /// `truncated`); templates then fall back to their `default`.
    pub fields: &'static [(&'static str, FieldType)],
    /// The resource the built-in default puts its event on; `None`: the
    /// agent's (or, for `line` and `file.*`, the file's).
    pub resource: Option<&'static ResourceSpec>,
}

/// A kind's own resource, for the built-in default mapping: templates over
/// the kind's fields and `{hostname}` (see `template.rs`). Kinds that share
/// a resource (`process.started`, `process.exited`) share one spec.
#[derive(Debug)]
pub struct ResourceSpec {
    /// `prefect.resource.id`, e.g. `"herald.process.{hostname}.{pid}"`.
    pub id: &'static str,
    /// `prefect.resource.name`.
    pub name: &'static str,
    /// Further labels, (key, template). A label whose template names a
    /// field the observation lacks is left out.
    pub labels: &'static [(&'static str, &'static str)],
    /// Related resources besides the host, agent and pod that every event
    /// gets; each is left out when a field it names is missing.
    pub related: &'static [RelatedSpec],
}

/// A related resource of a [`ResourceSpec`].
#[derive(Debug)]
pub struct RelatedSpec {
    /// `prefect.resource.role`.
    pub role: &'static str,
    /// `prefect.resource.id`, a template.
    pub id: &'static str,
    /// Further labels, (key, template).
    pub labels: &'static [(&'static str, &'static str)],
}

use FieldType::{Object, Scalar};

/// Every kind a source can produce.
pub const KINDS: &[KindSchema] = &[
    KindSchema {
        // A line of a tailed file. `json` is set when the source parses
        // lines as JSON; otherwise the mapper parses the line on demand the
        // first time a rule looks into `json`.
        kind: "line",
        fields: &[
            ("line", Scalar),
            ("path", Scalar),
            ("offset", Scalar),
            ("json", Object),
            ("truncated", Scalar),
        ],
        resource: None,
    },
    file_kind("file.created"),
    file_kind("file.modified"),
    file_kind("file.renamed"),
    file_kind("file.rotated"),
    file_kind("file.truncated"),
    file_kind("file.deleted"),
    KindSchema {
        kind: "agent.started",
        fields: &[
            ("version", Scalar),
            ("config_digest", Scalar),
            ("config", Scalar),
            ("pid", Scalar),
        ],
        resource: None,
    },
    KindSchema {
        kind: "agent.stopped",
        fields: &[
            ("version", Scalar),
            ("config_digest", Scalar),
            ("reason", Scalar),
            ("uptime_seconds", Scalar),
        ],
        resource: None,
    },
    KindSchema {
        kind: "agent.heartbeat",
        fields: &[
            ("uptime_seconds", Scalar),
            ("interval_seconds", Scalar),
            ("beat", Scalar),
            ("health", Object),
        ],
        resource: None,
    },
    KindSchema {
        // What the mapper's own rate limits held back (see
        // `Mapper::suppressed_observation`).
        kind: "agent.suppressed",
        fields: &[("rules", Object), ("total", Scalar)],
        resource: None,
    },
];

/// A file lifecycle kind: the file's path, size, mtime (RFC 3339), owner
/// (uid) and mode (octal text); `from` is the old path of a rename.
const fn file_kind(kind: &'static str) -> KindSchema {
    KindSchema {
        kind,
        fields: &[
            ("path", Scalar),
            ("size", Scalar),
            ("mtime", Scalar),
            ("owner", Scalar),
            ("mode", Scalar),
            ("from", Scalar),
        ],
        resource: None,
    }
}

/// Names every template can use whatever the kind: the observation's
/// source name, its kind, and the agent's host name.
pub const BUILTIN_FIELDS: &[&str] = &["source", "kind", "hostname"];

/// The schema of one kind.
pub fn schema(kind: &str) -> Option<&'static KindSchema> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Every distinct resource spec, in the order of [`KINDS`]: the mapper
/// builds one default plan per spec.
pub fn resource_specs() -> Vec<&'static ResourceSpec> {
    let mut specs: Vec<&'static ResourceSpec> = Vec::new();
    for spec in KINDS.iter().filter_map(|k| k.resource) {
        if !specs.iter().any(|s| std::ptr::eq(*s, spec)) {
            specs.push(spec);
        }
    }
    specs
}

/// The kinds that put their events on `spec`.
pub fn kinds_of(spec: &'static ResourceSpec) -> Vec<&'static KindSchema> {
    KINDS
        .iter()
        .filter(|k| k.resource.is_some_and(|r| std::ptr::eq(r, spec)))
        .collect()
}

/// Every known kind's name, for hints.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_do_not_shadow_builtins() {
        for (i, k) in KINDS.iter().enumerate() {
            assert!(
                KINDS[i + 1..].iter().all(|o| o.kind != k.kind),
                "{}",
                k.kind
            );
            for (field, _) in k.fields {
                assert!(!BUILTIN_FIELDS.contains(field), "{}.{field}", k.kind);
            }
        }
        assert!(schema("line").is_some());
        assert!(schema("nope").is_none());
    }

    #[test]
    fn every_resource_spec_resolves_against_its_kinds() {
        use super::super::fields::Known;
        use super::super::template::Template;
        for spec in resource_specs() {
            let kinds = kinds_of(spec);
            let known = Known {
                kinds: &kinds,
                captures: &[],
            };
            let mut texts = vec![spec.id, spec.name];
            texts.extend(spec.labels.iter().map(|(_, t)| *t));
            for r in spec.related {
                texts.push(r.id);
                texts.extend(r.labels.iter().map(|(_, t)| *t));
            }
            for text in texts {
                let mut template = Template::parse(text)
                    .unwrap_or_else(|e| panic!("{}: {text:?}: {e:?}", spec.id));
                if let Err(e) = template.resolve(&known) {
                    panic!("{}: {text:?}: {e:?}", spec.id);
                }
            }
            assert!(spec.id.starts_with("herald."), "{}", spec.id);
        }
    }
}
