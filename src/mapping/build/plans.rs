//! The plans: each flavor's built-in default (a line on its file's
//! resource, a pod log's line with its pod and container, a kind on its
//! own resource, anything else on the agent's), and a rule's plan, its
//! outputs over the flavor's default. Building an event from a plan is the
//! parent module's.

use std::collections::BTreeMap;

use bytes::BufMut;

use super::{Entry, Flavor, Label, Labels, Name, Payload, Plan, field, static_label};
use crate::event::{RESOURCE_ID, RESOURCE_NAME, RESOURCE_ROLE};
use crate::identity::Identity;
use crate::mapping::fields::Known;
use crate::mapping::kinds::{self, ResourceSpec};
use crate::mapping::rule::{FieldSelection, PayloadValue, Rule};
use crate::mapping::template::Template;

/// What every plan of one agent shares.
pub(crate) struct Base<'a> {
    pub identity: &'a Identity,
    /// `[agent.labels]`, added to every resource.
    pub labels: &'a BTreeMap<String, String>,
    /// The kinds' own resources, by [`Flavor::Resource`] index.
    pub specs: &'a [&'static ResourceSpec],
}

impl Base<'_> {
    fn builtin_related(&self, with_agent: bool) -> Box<[u8]> {
        self.builtin_related_of(true, with_agent)
    }

    fn builtin_related_of(&self, with_host: bool, with_agent: bool) -> Box<[u8]> {
        self.builtin_related_of_pod(with_host, with_agent, true)
    }

    fn builtin_related_of_pod(
        &self,
        with_host: bool,
        with_agent: bool,
        with_pod: bool,
    ) -> Box<[u8]> {
        let mut related = Vec::new();
        if with_host {
            related.push(self.identity.host.clone());
        }
        if with_agent {
            let agent = &self.identity.agent;
            let mut r = crate::event::RelatedResource::new(agent.id(), "agent");
            for key in [RESOURCE_NAME, "herald.agent.version"] {
                if let Some(value) = agent.get(key) {
                    r.insert(key, value);
                }
            }
            related.push(r);
        }
        if with_pod {
            related.extend(self.identity.pod.clone());
        }
        let mut out = Vec::new();
        for (i, r) in related.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            // Writing labels (strings) into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, r);
        }
        out.into_boxed_slice()
    }

    fn agent_resource(&self) -> BTreeMap<String, Label> {
        self.identity
            .agent
            .labels()
            .iter()
            .map(|(k, v)| (k.clone(), static_label(v)))
            .collect()
    }

    fn file_resource(&self) -> BTreeMap<String, Label> {
        let mut labels: BTreeMap<String, Label> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), static_label(v)))
            .collect();
        let prefix = format!("herald.file.{}:", self.identity.hostname);
        labels.insert(
            RESOURCE_ID.into(),
            Label::Template(Template::prefixed(&prefix, field("path"), false)),
        );
        labels.insert(
            "herald.file.path".into(),
            Label::Template(Template::of_field(field("path"))),
        );
        for key in ["herald.file.name", RESOURCE_NAME] {
            labels.insert(
                key.into(),
                Label::Template(Template::prefixed("", field("path"), true)),
            );
        }
        // A container's stdout and stderr in one file (container formats).
        labels.insert(
            "herald.log.stream".into(),
            Label::Optional(Template::of_field(field("stream"))),
        );
        labels
    }

    /// The pod (`herald.pod.<namespace>.<pod>`, as the identity names a
    /// pod) and the container (`herald.container.<namespace>.<pod>.<name>`)
    /// of a pod's container log line.
    fn pod_log_related(&self) -> Vec<Labels> {
        let kinds = kinds::schema("line").into_iter().collect::<Vec<_>>();
        let known = Known {
            kinds: &kinds,
            captures: &[],
        };
        let template = |text: &str| -> Option<Template> {
            let mut t = Template::parse(text).ok()?;
            t.resolve(&known).ok()?;
            Some(t)
        };
        let pod = [
            (RESOURCE_ID, "herald.pod.{namespace}.{pod}"),
            (RESOURCE_NAME, "{pod}"),
            ("herald.pod.namespace", "{namespace}"),
            ("herald.pod.uid", "{pod_uid}"),
        ];
        let container = [
            (
                RESOURCE_ID,
                "herald.container.{namespace}.{pod}.{container}",
            ),
            (RESOURCE_NAME, "{container}"),
            ("herald.container.name", "{container}"),
            ("herald.pod.uid", "{pod_uid}"),
        ];
        [("pod", &pod), ("container", &container)]
            .into_iter()
            .filter_map(|(role, labels)| {
                let mut map = BTreeMap::new();
                map.insert(RESOURCE_ROLE.into(), static_label(role));
                for (key, text) in labels {
                    map.insert((*key).into(), Label::Template(template(text)?));
                }
                let mut labels = Labels::new(map);
                labels.optional = true;
                Some(labels)
            })
            .collect()
    }

    /// The built-in mapping of a flavor.
    pub fn default_plan(&self, flavor: Flavor) -> Plan {
        match flavor {
            Flavor::Line => Plan {
                name: Name::Static("herald.log.line".into()),
                occurred: None,
                resource: Labels::new(self.file_resource()),
                related: Vec::new(),
                builtin_related: self.builtin_related(true),
                related_part: None,
                payload: Payload {
                    entries: ["line", "offset", "truncated", "stream", "partial"]
                        .into_iter()
                        .map(|key| Entry {
                            key: key.into(),
                            value: PayloadValue::Template(Template::of_field(field(key))),
                            optional: !matches!(key, "line" | "offset"),
                        })
                        .collect(),
                    fields: FieldSelection::None,
                    spread: Some(field("json")),
                },
                follows: true,
            },
            Flavor::PodLine => {
                let mut plan = self.default_plan(Flavor::Line);
                plan.related = self.pod_log_related();
                // The line's own pod is the pod; herald's (a DaemonSet's)
                // is the agent's business.
                plan.builtin_related = self.builtin_related_of_pod(true, true, false);
                plan
            }
            Flavor::File => Plan {
                name: Name::KindPrefixed,
                occurred: None,
                resource: Labels::new(self.file_resource()),
                related: Vec::new(),
                builtin_related: self.builtin_related(true),
                related_part: None,
                payload: Payload {
                    entries: Vec::new(),
                    fields: FieldSelection::All,
                    spread: None,
                },
                follows: true,
            },
            Flavor::Resource(i) => match self.specs.get(i).and_then(|s| self.spec_plan(s)) {
                Some(plan) => plan,
                None => self.default_plan(Flavor::Other),
            },
            Flavor::Other => Plan {
                name: Name::KindPrefixed,
                occurred: None,
                resource: Labels::new(self.agent_resource()),
                related: Vec::new(),
                builtin_related: self.builtin_related(false),
                related_part: None,
                payload: Payload {
                    entries: Vec::new(),
                    fields: FieldSelection::All,
                    spread: None,
                },
                follows: true,
            },
        }
    }

    /// The labels of a kind's own resource and its related resources;
    /// `None` when a template of the spec does not resolve (a defect the
    /// kinds' tests catch).
    fn spec_resource(
        &self,
        spec: &'static ResourceSpec,
    ) -> Option<(BTreeMap<String, Label>, Vec<Labels>)> {
        let kinds = kinds::kinds_of(spec);
        let known = Known {
            kinds: &kinds,
            captures: &[],
        };
        let template = |text: &str| -> Option<Template> {
            let mut t = Template::parse(text).ok()?;
            t.resolve(&known).ok()?;
            Some(t)
        };
        let mut resource = self.static_labels();
        if is_host(spec) {
            // The host's own events carry what herald knows of it (boot
            // id, OS, kernel), as its related resource does elsewhere.
            for (key, value) in self.identity.host.resource().labels() {
                if key != RESOURCE_ROLE {
                    resource.insert(key.clone(), static_label(value));
                }
            }
        }
        resource.insert(RESOURCE_ID.into(), Label::Template(template(spec.id)?));
        resource.insert(RESOURCE_NAME.into(), Label::Optional(template(spec.name)?));
        for (key, text) in spec.labels {
            resource.insert((*key).into(), Label::Optional(template(text)?));
        }
        let mut related = Vec::with_capacity(spec.related.len());
        for r in spec.related {
            let mut labels = BTreeMap::new();
            labels.insert(RESOURCE_ID.into(), Label::Template(template(r.id)?));
            labels.insert(RESOURCE_ROLE.into(), static_label(r.role));
            for (key, text) in r.labels {
                labels.insert((*key).into(), Label::Optional(template(text)?));
            }
            let mut labels = Labels::new(labels);
            labels.optional = true;
            related.push(labels);
        }
        Some((resource, related))
    }

    /// The built-in plan of a kind's own resource.
    fn spec_plan(&self, spec: &'static ResourceSpec) -> Option<Plan> {
        let (resource, related) = self.spec_resource(spec)?;
        Some(Plan {
            name: Name::KindPrefixed,
            occurred: None,
            resource: Labels::new(resource),
            related,
            // The host is not related to its own events.
            builtin_related: self.builtin_related_of(!is_host(spec), true),
            related_part: None,
            payload: Payload {
                entries: Vec::new(),
                fields: FieldSelection::All,
                spread: None,
            },
            follows: true,
        })
    }

    fn static_labels(&self) -> BTreeMap<String, Label> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), static_label(v)))
            .collect()
    }

    /// A rule's plan for a flavor: its outputs over the flavor's default.
    pub fn rule_plan(&self, rule: &Rule, flavor: Flavor) -> Plan {
        let mut plan = self.default_plan(flavor);
        if let Some(event) = &rule.event {
            plan.name = Name::Template(event.clone());
        }
        plan.occurred = rule.occurred.clone();
        let own_resource = rule.resource.id.is_some();
        let mut resource = match &rule.resource.id {
            Some(id) => {
                let mut labels: BTreeMap<String, Label> = self
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), static_label(v)))
                    .collect();
                labels.insert(RESOURCE_ID.into(), Label::Template(id.clone()));
                labels
            }
            None => match flavor {
                Flavor::Line | Flavor::PodLine | Flavor::File => self.file_resource(),
                Flavor::Resource(i) => self
                    .specs
                    .get(i)
                    .and_then(|spec| self.spec_resource(spec))
                    .map_or_else(|| self.agent_resource(), |(labels, _)| labels),
                Flavor::Other => self.agent_resource(),
            },
        };
        for (key, template) in &rule.resource.labels {
            resource.insert(key.clone(), Label::Template(template.clone()));
        }
        plan.resource = Labels::new(resource);
        // A kind's own related resources (a process's container) stay with
        // its own resource.
        let kind_related = std::mem::take(&mut plan.related);
        plan.related = rule
            .related
            .iter()
            .map(|r| {
                let mut labels: BTreeMap<String, Label> = r
                    .labels
                    .iter()
                    .map(|(k, t)| (k.clone(), Label::Template(t.clone())))
                    .collect();
                labels.insert(RESOURCE_ID.into(), Label::Template(r.id.clone()));
                labels.insert(RESOURCE_ROLE.into(), Label::Template(r.role.clone()));
                Labels::new(labels)
            })
            .collect();
        if !own_resource && rule.builtin_related {
            plan.related.extend(kind_related);
        }
        plan.builtin_related = if !rule.builtin_related {
            Box::new([])
        } else {
            // The agent is related unless it is the event's own resource.
            self.builtin_related(own_resource || flavor != Flavor::Other)
        };
        if let Some(spec) = &rule.payload {
            plan.payload = Payload {
                entries: spec
                    .entries
                    .iter()
                    .map(|(key, value)| Entry {
                        key: key.as_str().into(),
                        value: value.clone(),
                        optional: false,
                    })
                    .collect(),
                fields: spec.fields.clone(),
                spread: None,
            };
        }
        plan.follows = rule.follows;
        plan
    }
}

/// Whether a kind's resource is the host itself (`herald.host.<hostname>`).
fn is_host(spec: &ResourceSpec) -> bool {
    spec.id == "herald.host.{hostname}"
}
