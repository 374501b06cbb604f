//! herald's configuration: where it is found, its schema, and the checks
//! that turn raw TOML into a [`Config`] the rest of the agent trusts.
//!
//! Every table rejects unknown keys, every mistake is reported at once with
//! file:line:column (see [`decode`]), and everything is checked here, at
//! load, so nothing downstream meets a bad value at run time. This module
//! does not act on the configuration.

pub mod decode;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use crate::queue::{Durability, QueueConfig, WhenFull};
use decode::{ByteSize, ConfigDuration, Decode, Decoder, EnvLookup, Raw, Table};
pub use decode::{Mistake, Mistakes, Origin};

/// Implements [`Decode`] for a value written as one of a fixed set of
/// names, with a "did you mean" for a near miss.
macro_rules! decode_names {
    ($ty:ty, $expected:literal, [$($name:literal => $value:expr),+ $(,)?]) => {
        impl Decode for $ty {
            const EXPECTED: &'static str = $expected;
            fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
                one_of(dec, raw, &[$(($name, $value)),+])
            }
        }
    };
}

mod sink;
use sink::read_sink;
pub use sink::{Secret, SinkConfig, SinkKind, Transport};

/// The configuration herald runs with when it finds no file: a heartbeat
/// and lifecycle events, sent to stdout unless `PREFECT_API_URL` is set.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// herald's state directory unless configured otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/herald";

/// Where herald looks when neither `--config` nor `HERALD_CONFIG` is given.
pub const SYSTEM_PATH: &str = "/etc/herald/herald.toml";

/// Everything herald runs with, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// The agent itself: identity, state directory, shutdown.
    pub agent: AgentConfig,
    /// The disk queue between mapping and the sink.
    pub queue: QueueConfig,
    /// Where events go.
    pub sink: SinkConfig,
    /// What herald watches, in file order.
    pub sources: Vec<SourceConfig>,
    /// `[[mappings]]`, compiled, with `[agent.labels]` for every resource.
    pub mappings: crate::mapping::MappingConfig,
    /// `[[tests]]`: mapping test cases for `herald test`.
    pub tests: Vec<crate::mapping::testing::TestCase>,
    /// Where this configuration was read from.
    pub location: Location,
    /// SHA-256 of the configuration text (before interpolation, so no
    /// secret from the environment shapes it): tells which config an agent
    /// ran with, in its lifecycle events.
    pub digest: String,
}

/// `[agent]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Root of herald's state: queue, checkpoints, dead letters.
    pub data_dir: PathBuf,
    /// Whether `data_dir` is the default rather than configured: only the
    /// default may fall back to a per-user directory when herald does not
    /// run as root.
    pub data_dir_is_default: bool,
    /// Overrides the host name used in resource ids.
    pub hostname: Option<String>,
    /// How long shutdown may take to drain and flush before herald exits
    /// anyway (what is not sent stays queued).
    pub shutdown_grace: Duration,
    /// Labels added to every event's resource.
    pub labels: BTreeMap<String, String>,
}

/// One source of observations.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// `[[sources.heartbeat]]`.
    Heartbeat(HeartbeatConfig),
    /// `[[sources.file]]`.
    File(crate::sources::file::FileConfig),
    /// `[[sources.host]]`.
    Host(crate::sources::host::HostConfig),
    /// `[[sources.process]]`.
    Process(crate::sources::process::ProcessConfig),
    /// `[[sources.probe]]`.
    Probe(crate::sources::probe::ProbeConfig),
    /// `[[sources.systemd]]`.
    Systemd(crate::sources::systemd::SystemdConfig),
}

impl SourceConfig {
    /// The source's unique name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Heartbeat(h) => &h.name,
            SourceConfig::File(f) => &f.name,
            SourceConfig::Host(h) => &h.name,
            SourceConfig::Process(p) => &p.name,
            SourceConfig::Probe(p) => &p.name,
            SourceConfig::Systemd(s) => &s.name,
        }
    }
}

/// `[[sources.heartbeat]]`: a `herald.agent.heartbeat` event every
/// `interval`, so an automation can notice an agent that went silent.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatConfig {
    /// Unique among sources; part of every event id this source derives.
    pub name: String,
    /// Time between heartbeats.
    pub interval: Duration,
}

/// Where a configuration was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A file, and how it was found.
    File {
        /// Its path.
        path: PathBuf,
        /// `--config`, `HERALD_CONFIG` or the system path.
        found_by: &'static str,
    },
    /// No file: the embedded default.
    Embedded,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, found_by } => write!(f, "{} ({found_by})", path.display()),
            Location::Embedded => f.write_str("the embedded default"),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read and has mistakes.
    #[error("{0}")]
    Invalid(Mistakes),
}

/// Finds the configuration: `--config`, then `HERALD_CONFIG`, then
/// [`SYSTEM_PATH`] when it exists, else the embedded default.
pub fn locate(cli: Option<&Path>, env: EnvLookup<'_>) -> Location {
    if let Some(path) = cli {
        return Location::File {
            path: path.to_owned(),
            found_by: "--config",
        };
    }
    if let Some(path) = env("HERALD_CONFIG").filter(|p| !p.is_empty()) {
        return Location::File {
            path: path.into(),
            found_by: "HERALD_CONFIG",
        };
    }
    if Path::new(SYSTEM_PATH).exists() {
        return Location::File {
            path: SYSTEM_PATH.into(),
            found_by: "the system path",
        };
    }
    Location::Embedded
}

/// Reads and checks the configuration at `location`.
///
/// # Errors
/// [`LoadError::Read`] when the file cannot be read, [`LoadError::Invalid`]
/// with every mistake otherwise.
pub fn load(location: Location, env: EnvLookup<'_>) -> Result<Config, LoadError> {
    let (name, text) = match &location {
        Location::File { path, .. } => {
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), text)
        }
        Location::Embedded => ("<embedded default>".to_owned(), EMBEDDED_DEFAULT.to_owned()),
    };
    let mut config = parse(&name, &text, env).map_err(LoadError::Invalid)?;
    config.location = location;
    Ok(config)
}

/// Checks configuration text; `name` is how messages refer to it.
///
/// # Errors
/// Every mistake found, in file order.
pub fn parse(name: &str, text: &str, env: EnvLookup<'_>) -> Result<Config, Mistakes> {
    let dec = Decoder::new(name, text, env);
    let (document, syntax) = DeTable::parse_recoverable(text);
    for error in &syntax {
        let span = error.span().unwrap_or(0..0);
        dec.error_at(span, error.message().trim().to_owned(), None);
    }
    let config = if syntax.is_empty() {
        read_document(&dec, document.get_ref())
    } else {
        // A document with syntax errors is not read further: what the
        // parser recovered could produce misleading follow-on mistakes.
        None
    };
    dec.finish()?;
    let Some(mut config) = config else {
        // Every path that returns None records a mistake first; this is
        // reached only if that invariant breaks.
        return Err(Mistakes(vec![Mistake {
            origin: Origin::Env("(none)".into()),
            message: "the configuration could not be read".into(),
            hint: None,
        }]));
    };
    config.digest = digest(text.as_bytes());
    Ok(config)
}

/// The digest of a configuration text, as [`Config::digest`] holds it.
pub fn digest(text: &[u8]) -> String {
    hex(&Sha256::digest(text))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_document(dec: &Decoder<'_>, document: &DeTable<'_>) -> Option<Config> {
    let root = Table::root(dec, document);
    let agent = Table::single(&root, "agent").and_then(read_agent);
    let queue = Table::single(&root, "queue").and_then(read_queue);
    let sink = Table::single(&root, "sink").and_then(read_sink);
    let sources = match root.value("sources") {
        Some(value) => Table::new(dec, value, "[sources]").map(read_sources),
        None => Some(Vec::new()),
    };
    let source_names: Vec<String> = sources
        .iter()
        .flatten()
        .map(|s| s.name().to_owned())
        .collect();
    let rules = crate::mapping::read_mappings(&root, &source_names);
    let tests = crate::mapping::testing::read_tests(&root, &source_names);
    root.finish();
    let agent = agent?;
    Some(Config {
        mappings: crate::mapping::MappingConfig {
            rules,
            labels: agent.labels.clone(),
        },
        tests,
        agent,
        queue: queue?,
        sink: sink?,
        sources: sources?,
        location: Location::Embedded,
        digest: String::new(),
    })
}

fn read_agent(t: Table<'_, '_, '_>) -> Option<AgentConfig> {
    let data_dir = t.get::<String>("data_dir");
    let hostname = t.get_at::<String>("hostname");
    if let Some(at) = &hostname {
        check_resource_segment(t.decoder(), at, "hostname");
    }
    let shutdown_grace = t.or("shutdown_grace", ConfigDuration(Duration::from_secs(10)));
    let labels = t
        .string_map("labels")
        .into_iter()
        .map(|(k, v)| (k.value, v))
        .collect();
    t.finish();
    Some(AgentConfig {
        data_dir_is_default: data_dir.is_none(),
        data_dir: data_dir
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned())
            .into(),
        hostname: hostname.map(|h| h.value),
        shutdown_grace: shutdown_grace.0,
        labels,
    })
}

fn check_resource_segment(dec: &Decoder<'_>, at: &decode::At<String>, what: &str) {
    if at.value.is_empty() || at.value.chars().any(char::is_whitespace) {
        let message = format!("{what} must be non-empty and without spaces");
        match &at.span {
            Some(span) => dec.error_at(span.clone(), message, None),
            None => dec.error_env(
                &format!("HERALD_AGENT_{}", what.to_ascii_uppercase()),
                message,
                None,
            ),
        }
    }
}

fn read_queue(t: Table<'_, '_, '_>) -> Option<QueueConfig> {
    let dec = t.decoder();
    let defaults = QueueConfig::default();
    let max_bytes = t.get_at::<ByteSize>("max_bytes");
    let segment_bytes = t.get_at::<ByteSize>("segment_bytes");
    let when_full = t.or("when_full", defaults.when_full);
    let durability = t.get_at::<DurabilityKind>("durability");
    let sync_interval = t.get_at::<ConfigDuration>("sync_interval");
    let mut config = QueueConfig {
        max_bytes: max_bytes
            .as_ref()
            .map_or(defaults.max_bytes, |at| at.value.0),
        segment_bytes: segment_bytes
            .as_ref()
            .map_or(defaults.segment_bytes, |at| at.value.0),
        when_full,
        durability: defaults.durability,
    };
    let interval = sync_interval
        .as_ref()
        .map_or(Duration::from_millis(100), |at| at.value.0);
    match durability.as_ref().map(|at| at.value) {
        Some(DurabilityKind::Interval) => config.durability = Durability::Interval(interval),
        Some(DurabilityKind::EveryBatch) | None => {
            if let Some(at) = &sync_interval {
                report(
                    dec,
                    at.span.clone(),
                    "HERALD_QUEUE_SYNC_INTERVAL",
                    "sync_interval applies only with durability = \"interval\"",
                    Some("remove it, or set durability = \"interval\"".into()),
                );
            }
        }
    }
    for (at, key, min) in [
        (&max_bytes, "max_bytes", QueueConfig::MIN_MAX_BYTES),
        (
            &segment_bytes,
            "segment_bytes",
            QueueConfig::MIN_SEGMENT_BYTES,
        ),
    ] {
        if let Some(at) = at
            && at.value.0 < min
        {
            report(
                dec,
                at.span.clone(),
                &format!("HERALD_QUEUE_{}", key.to_ascii_uppercase()),
                format!("{key} must be at least {min} bytes, not {}", at.value.0),
                None,
            );
        }
    }
    if let Some(at) = &sync_interval
        && at.value.0.is_zero()
    {
        report(
            dec,
            at.span.clone(),
            "HERALD_QUEUE_SYNC_INTERVAL",
            "sync_interval must be more than zero",
            None,
        );
    }
    t.finish();
    Some(config)
}

/// Records a mistake at a value's place in the file, or at the
/// environment variable that overrode it.
fn report(
    dec: &Decoder<'_>,
    span: Option<std::ops::Range<usize>>,
    var: &str,
    message: impl Into<String>,
    hint: Option<String>,
) {
    match span {
        Some(span) => dec.error_at(span, message, hint),
        None => dec.error_env(var, message, hint),
    }
}

#[derive(Clone, Copy)]
enum DurabilityKind {
    EveryBatch,
    Interval,
}

decode_names!(
    DurabilityKind,
    "\"every_batch\" or \"interval\"",
    [
        "every_batch" => DurabilityKind::EveryBatch,
        "interval" => DurabilityKind::Interval,
    ]
);

decode_names!(
    WhenFull,
    "\"block\" or \"drop_oldest\"",
    [
        "block" => WhenFull::Block,
        "drop_oldest" => WhenFull::DropOldest,
    ]
);

/// Reads a string that must be one of a fixed set of names.
fn one_of<T: Copy>(
    dec: &Decoder<'_>,
    raw: Raw<'_, '_>,
    choices: &[(&'static str, T)],
) -> Option<T> {
    let text = decode::decode_str(dec, raw, "a string")?;
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let hint = match decode::nearest(&text, names.iter().copied()) {
        Some(near) => format!("did you mean \"{near}\"?"),
        None => format!("choose one of: {}", names.join(", ")),
    };
    decode::value_mistake(dec, raw, format!("unknown value {text:?}"), Some(hint));
    None
}

fn read_sources(t: Table<'_, '_, '_>) -> Vec<SourceConfig> {
    let dec = t.decoder();
    let mut sources = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut claim = |name: &decode::At<String>| {
        let span = name.span.clone().unwrap_or(0..0);
        let valid = !name.value.is_empty()
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            dec.error_at(
                span.clone(),
                format!("invalid source name {:?}", name.value),
                Some("use letters, digits, '-', '_' and '.'".into()),
            );
        }
        if let Some(first) = names.insert(name.value.clone(), span.start) {
            names.insert(name.value.clone(), first);
            let line = decode_line(dec, first);
            dec.error_at(
                span,
                format!("source name {:?} is already used", name.value),
                Some(format!(
                    "every source needs its own name (the first is on line {line})"
                )),
            );
        }
    };
    sources.extend(
        t.array_of_tables("heartbeat", "[[sources.heartbeat]]", |h| {
            let name = h.required::<String>("name");
            if let Some(name) = &name {
                claim(name);
            }
            let interval = h.get_at::<ConfigDuration>("interval");
            if let Some(at) = &interval
                && at.value.0 < Duration::from_millis(100)
                && let Some(span) = at.span.clone()
            {
                dec.error_at(span, "interval must be at least 100ms", None);
            }
            h.finish();
            Some(SourceConfig::Heartbeat(HeartbeatConfig {
                name: name?.value,
                interval: interval.map_or(Duration::from_secs(30), |at| at.value.0),
            }))
        }),
    );
    sources.extend(t.array_of_tables("file", "[[sources.file]]", |f| {
        let name = f.required::<String>("name");
        if let Some(name) = &name {
            claim(name);
        }
        crate::sources::file::config::read(f, name).map(SourceConfig::File)
    }));
    sources.extend(t.array_of_tables("host", "[[sources.host]]", |h| {
        let name = h.required::<String>("name");
        if let Some(name) = &name {
            claim(name);
        }
        crate::sources::host::config::read(h, name).map(SourceConfig::Host)
    }));
    sources.extend(t.array_of_tables("process", "[[sources.process]]", |p| {
        let name = p.required::<String>("name");
        if let Some(name) = &name {
            claim(name);
        }
        crate::sources::process::config::read(p, name).map(SourceConfig::Process)
    }));
    sources.extend(t.array_of_tables("probe", "[[sources.probe]]", |p| {
        let name = p.required::<String>("name");
        if let Some(name) = &name {
            claim(name);
        }
        crate::sources::probe::read(p, name).map(SourceConfig::Probe)
    }));
    sources.extend(t.array_of_tables("systemd", "[[sources.systemd]]", |s| {
        let name = s.required::<String>("name");
        if let Some(name) = &name {
            claim(name);
        }
        crate::sources::systemd::read(s, name).map(SourceConfig::Systemd)
    }));
    t.finish();
    sources
}

fn decode_line(dec: &Decoder<'_>, offset: usize) -> usize {
    match dec.locate(offset..offset) {
        Origin::File { line, .. } => line,
        Origin::Env(_) => 0,
    }
}

#[cfg(test)]
mod tests;
