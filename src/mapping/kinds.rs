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
            // Container formats (`format = "cri"` or `"docker"`).
            ("stream", Scalar),
            ("partial", Scalar),
            // `kubernetes = true`: from the kubelet's log path.
            ("namespace", Scalar),
            ("pod", Scalar),
            ("pod_uid", Scalar),
            ("container", Scalar),
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
        // A SIGHUP reload: `ok`, the digests, which sources stopped and
        // started, what needs a restart, or the mistakes (`errors`).
        kind: "agent.reloaded",
        fields: &[
            ("ok", Scalar),
            ("config_digest", Scalar),
            ("old_config_digest", Scalar),
            ("stopped", Object),
            ("started", Object),
            ("restart_needed", Object),
            ("sink_changed", Scalar),
            ("errors", Scalar),
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
    process_kind("process.started", PROCESS_FIELDS),
    process_kind("process.exited", PROCESS_EXITED_FIELDS),
    process_kind("process.restarted", PROCESS_RESTARTED_FIELDS),
    process_kind("process.cpu-high", PROCESS_CPU_FIELDS),
    process_kind("process.cpu-normal", PROCESS_CPU_FIELDS),
    process_kind("process.memory-high", PROCESS_MEMORY_FIELDS),
    process_kind("process.memory-normal", PROCESS_MEMORY_FIELDS),
    probe_kind("probe.up"),
    probe_kind("probe.down"),
    systemd_kind("systemd.unit.active"),
    systemd_kind("systemd.unit.inactive"),
    systemd_kind("systemd.unit.failed"),
    systemd_kind("systemd.unit.activating"),
    systemd_kind("systemd.unit.deactivating"),
    systemd_kind("systemd.unit.reloading"),
    systemd_kind("systemd.unit.maintenance"),
    systemd_kind("systemd.unit.refreshing"),
    host_kind("host.booted", HOST_BOOTED_FIELDS, &HOST),
    host_kind("host.cpu-high", HOST_CPU_FIELDS, &HOST),
    host_kind("host.cpu-normal", HOST_CPU_FIELDS, &HOST),
    host_kind("host.memory-high", HOST_MEMORY_FIELDS, &HOST),
    host_kind("host.memory-normal", HOST_MEMORY_FIELDS, &HOST),
    host_kind("host.swap-high", HOST_SWAP_FIELDS, &HOST),
    host_kind("host.swap-normal", HOST_SWAP_FIELDS, &HOST),
    host_kind("host.load-high", HOST_LOAD_FIELDS, &HOST),
    host_kind("host.load-normal", HOST_LOAD_FIELDS, &HOST),
    host_kind("host.disk-high", HOST_DISK_FIELDS, &MOUNT),
    host_kind("host.disk-normal", HOST_DISK_FIELDS, &MOUNT),
    host_kind("host.inodes-high", HOST_INODES_FIELDS, &MOUNT),
    host_kind("host.inodes-normal", HOST_INODES_FIELDS, &MOUNT),
    host_kind("host.mount-added", HOST_MOUNT_FIELDS, &MOUNT),
    host_kind("host.mount-removed", HOST_MOUNT_FIELDS, &MOUNT),
    host_kind("host.interface-up", HOST_INTERFACE_FIELDS, &INTERFACE),
    host_kind("host.interface-down", HOST_INTERFACE_FIELDS, &INTERFACE),
    host_kind(
        "host.interface-addresses-changed",
        HOST_ADDRESSES_FIELDS,
        &INTERFACE,
    ),
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

/// A process watched by a `[[sources.process]]`: one resource per pid, its
/// labels as first seen (the command line redacted and cut), and the
/// container it runs in, when its cgroup names one.
static PROCESS: ResourceSpec = ResourceSpec {
    id: "herald.process.{hostname}.{pid}",
    name: "{name}",
    labels: &[
        ("herald.process.name", "{name}"),
        ("herald.process.pid", "{pid}"),
        ("herald.process.exe", "{exe}"),
        ("herald.process.cmdline", "{cmdline}"),
        ("herald.process.user", "{user}"),
        ("herald.process.start-time", "{start_time}"),
        ("herald.process.pod-uid", "{pod_uid}"),
    ],
    related: &[RelatedSpec {
        role: "container",
        id: "herald.container.{container_id}",
        labels: &[("herald.container.runtime", "{container_runtime}")],
    }],
};

/// What every `process.*` observation carries: the process's pid, ppid,
/// name (comm), exe (when readable), cmdline (redacted, cut to 1024
/// bytes), user and uid, start_time (RFC 3339), the container_id,
/// container_runtime and pod_uid its cgroup names, and observed_late
/// (herald did not see it happen: it was not running then).
const PROCESS_FIELDS: &[(&str, FieldType)] = &[
    ("pid", Scalar),
    ("ppid", Scalar),
    ("name", Scalar),
    ("exe", Scalar),
    ("cmdline", Scalar),
    ("user", Scalar),
    ("uid", Scalar),
    ("start_time", Scalar),
    ("container_id", Scalar),
    ("container_runtime", Scalar),
    ("pod_uid", Scalar),
    ("observed_late", Scalar),
];

/// `process.exited`: the process's fields, whether its exit status is
/// known, then exit_code, or signal, signal_name and core_dumped; or
/// exit_status_unknown_reason; and run_time_seconds (absent when it exited
/// while herald was not running).
const PROCESS_EXITED_FIELDS: &[(&str, FieldType)] = &[
    ("pid", Scalar),
    ("ppid", Scalar),
    ("name", Scalar),
    ("exe", Scalar),
    ("cmdline", Scalar),
    ("user", Scalar),
    ("uid", Scalar),
    ("start_time", Scalar),
    ("container_id", Scalar),
    ("container_runtime", Scalar),
    ("pod_uid", Scalar),
    ("observed_late", Scalar),
    ("exit_status_known", Scalar),
    ("exit_code", Scalar),
    ("signal", Scalar),
    ("signal_name", Scalar),
    ("core_dumped", Scalar),
    ("exit_status_unknown_reason", Scalar),
    ("run_time_seconds", Scalar),
];

/// `process.restarted`: the new process's fields, and the one it replaced.
const PROCESS_RESTARTED_FIELDS: &[(&str, FieldType)] = &[
    ("pid", Scalar),
    ("ppid", Scalar),
    ("name", Scalar),
    ("exe", Scalar),
    ("cmdline", Scalar),
    ("user", Scalar),
    ("uid", Scalar),
    ("start_time", Scalar),
    ("container_id", Scalar),
    ("container_runtime", Scalar),
    ("pod_uid", Scalar),
    ("observed_late", Scalar),
    ("previous_pid", Scalar),
    ("previous_start_time", Scalar),
    ("downtime_seconds", Scalar),
];

/// `process.cpu-high` / `cpu-normal`: the process's fields, the reading
/// (percent of one core) and the threshold.
const PROCESS_CPU_FIELDS: &[(&str, FieldType)] = &[
    ("pid", Scalar),
    ("ppid", Scalar),
    ("name", Scalar),
    ("exe", Scalar),
    ("cmdline", Scalar),
    ("user", Scalar),
    ("uid", Scalar),
    ("start_time", Scalar),
    ("container_id", Scalar),
    ("container_runtime", Scalar),
    ("pod_uid", Scalar),
    ("cpu_percent", Scalar),
    ("high_percent", Scalar),
    ("clear_percent", Scalar),
    ("for_seconds", Scalar),
];

/// `process.memory-high` / `memory-normal`: the process's fields, its
/// resident set (bytes and percent of total memory) and the threshold.
const PROCESS_MEMORY_FIELDS: &[(&str, FieldType)] = &[
    ("pid", Scalar),
    ("ppid", Scalar),
    ("name", Scalar),
    ("exe", Scalar),
    ("cmdline", Scalar),
    ("user", Scalar),
    ("uid", Scalar),
    ("start_time", Scalar),
    ("container_id", Scalar),
    ("container_runtime", Scalar),
    ("pod_uid", Scalar),
    ("rss_bytes", Scalar),
    ("memory_percent", Scalar),
    ("high_bytes", Scalar),
    ("clear_bytes", Scalar),
    ("for_seconds", Scalar),
];

/// A `process.*` kind, on the process's resource.
const fn process_kind(
    kind: &'static str,
    fields: &'static [(&'static str, FieldType)],
) -> KindSchema {
    KindSchema {
        kind,
        fields,
        resource: Some(&PROCESS),
    }
}

/// A probe's resource: one per `[[sources.probe]]`, named after it.
static PROBE: ResourceSpec = ResourceSpec {
    id: "herald.probe.{hostname}.{source}",
    name: "{source}",
    labels: &[
        ("herald.probe.target", "{target}"),
        ("herald.probe.type", "{probe}"),
    ],
    related: &[],
};

/// A probe's announcement (`probe.up`, `probe.down`): the target (host:port
/// or URL), the probe type (tcp, http), latency_ms of the check, the HTTP
/// status when one came, error and error_kind (refused, timeout, dns, tls,
/// connect, status, http) when it failed, the consecutive failures and
/// successes counted, and the previous level (absent on a first
/// announcement).
const fn probe_kind(kind: &'static str) -> KindSchema {
    KindSchema {
        kind,
        fields: &[
            ("target", Scalar),
            ("probe", Scalar),
            ("latency_ms", Scalar),
            ("status", Scalar),
            ("error", Scalar),
            ("error_kind", Scalar),
            ("consecutive_failures", Scalar),
            ("consecutive_successes", Scalar),
            ("previous", Scalar),
        ],
        resource: Some(&PROBE),
    }
}

/// A systemd unit's resource.
static SYSTEMD_UNIT: ResourceSpec = ResourceSpec {
    id: "herald.systemd.{hostname}.{unit}",
    name: "{unit}",
    labels: &[
        ("herald.systemd.unit", "{unit}"),
        ("herald.systemd.manager", "{manager}"),
    ],
    related: &[],
};

/// A unit's new ActiveState (`systemd.unit.<state>`): the unit, state,
/// sub_state, result (services and the like), the previous state (absent
/// when the unit is announced for the first time), since (when systemd
/// says the state changed, RFC 3339), its description, and the manager
/// (system or user).
const fn systemd_kind(kind: &'static str) -> KindSchema {
    KindSchema {
        kind,
        fields: &[
            ("unit", Scalar),
            ("state", Scalar),
            ("sub_state", Scalar),
            ("result", Scalar),
            ("previous", Scalar),
            ("since", Scalar),
            ("description", Scalar),
            ("manager", Scalar),
        ],
        resource: Some(&SYSTEMD_UNIT),
    }
}

/// The host itself (`[[sources.host]]`): its boot and its host-wide
/// thresholds.
static HOST: ResourceSpec = ResourceSpec {
    id: "herald.host.{hostname}",
    name: "{hostname}",
    labels: &[],
    related: &[],
};

/// A mounted file system (`[[sources.host]]`).
static MOUNT: ResourceSpec = ResourceSpec {
    id: "herald.mount.{hostname}:{mount_point}",
    name: "{mount_point}",
    labels: &[
        ("herald.mount.point", "{mount_point}"),
        ("herald.mount.device", "{device}"),
        ("herald.mount.fs-type", "{fs_type}"),
    ],
    related: &[],
};

/// A network interface (`[[sources.host]]`).
static INTERFACE: ResourceSpec = ResourceSpec {
    id: "herald.interface.{hostname}.{interface}",
    name: "{interface}",
    labels: &[
        ("herald.interface.name", "{interface}"),
        ("herald.interface.mac", "{mac}"),
    ],
    related: &[],
};

/// A host source kind on its resource.
const fn host_kind(
    kind: &'static str,
    fields: &'static [(&'static str, FieldType)],
    resource: &'static ResourceSpec,
) -> KindSchema {
    KindSchema {
        kind,
        fields,
        resource: Some(resource),
    }
}

/// `host.booted`: this boot's id, the one herald last knew (absent on a
/// first run), when the host booted (RFC 3339), its uptime, and whether
/// herald had no state at all (`first_run`).
const HOST_BOOTED_FIELDS: &[(&str, FieldType)] = &[
    ("boot_id", Scalar),
    ("previous_boot_id", Scalar),
    ("boot_time", Scalar),
    ("uptime_seconds", Scalar),
    ("first_run", Scalar),
];

/// `host.cpu-*`: busy % of all cores, and the threshold crossed.
const HOST_CPU_FIELDS: &[(&str, FieldType)] = &[
    ("usage_percent", Scalar),
    ("cores", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.memory-*`: used % (1 - available/total), in bytes, threshold.
const HOST_MEMORY_FIELDS: &[(&str, FieldType)] = &[
    ("used_percent", Scalar),
    ("total_bytes", Scalar),
    ("available_bytes", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.swap-*`: used %, in bytes, threshold.
const HOST_SWAP_FIELDS: &[(&str, FieldType)] = &[
    ("used_percent", Scalar),
    ("total_bytes", Scalar),
    ("free_bytes", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.load-*`: the 1-minute load per core, the three averages, cores,
/// threshold.
const HOST_LOAD_FIELDS: &[(&str, FieldType)] = &[
    ("load_per_core", Scalar),
    ("load1", Scalar),
    ("load5", Scalar),
    ("load15", Scalar),
    ("cores", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.disk-*`: the mount, space used % (as `df`), bytes, threshold.
const HOST_DISK_FIELDS: &[(&str, FieldType)] = &[
    ("mount_point", Scalar),
    ("device", Scalar),
    ("fs_type", Scalar),
    ("used_percent", Scalar),
    ("total_bytes", Scalar),
    ("available_bytes", Scalar),
    ("used_bytes", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.inodes-*`: the mount, inodes used %, counts, threshold.
const HOST_INODES_FIELDS: &[(&str, FieldType)] = &[
    ("mount_point", Scalar),
    ("device", Scalar),
    ("fs_type", Scalar),
    ("used_percent", Scalar),
    ("inodes_total", Scalar),
    ("inodes_free", Scalar),
    ("high", Scalar),
    ("clear", Scalar),
    ("for_seconds", Scalar),
];

/// `host.mount-added`, `host.mount-removed`: the mount.
const HOST_MOUNT_FIELDS: &[(&str, FieldType)] = &[
    ("mount_point", Scalar),
    ("device", Scalar),
    ("fs_type", Scalar),
];

/// `host.interface-up`, `host.interface-down`: the interface, its
/// operstate (`absent` when it disappeared), MAC and addresses (a list of
/// `address/prefix`).
const HOST_INTERFACE_FIELDS: &[(&str, FieldType)] = &[
    ("interface", Scalar),
    ("operstate", Scalar),
    ("mac", Scalar),
    ("addresses", Object),
];

/// `host.interface-addresses-changed`: as above, with the addresses
/// `added` and `removed`.
const HOST_ADDRESSES_FIELDS: &[(&str, FieldType)] = &[
    ("interface", Scalar),
    ("operstate", Scalar),
    ("mac", Scalar),
    ("addresses", Object),
    ("added", Object),
    ("removed", Object),
];

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
