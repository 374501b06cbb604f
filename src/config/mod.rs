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

/// The kinds of sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// JSON lines on standard output.
    Stdout,
    /// `POST {url}/events` with a JSON array.
    Http,
}

/// How the `http` sink reaches the API (`transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `POST {url}/events`: a batch is acknowledged as a whole.
    Http,
    /// The websocket `{url}/events/in`, as Prefect's own client does it: no
    /// acknowledgement per event (see `sink::websocket`).
    Websocket,
}

/// `[sink]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Which sink.
    pub kind: SinkKind,
    /// The API base, e.g. `http://127.0.0.1:4200/api`; set for `http`.
    pub url: Option<reqwest::Url>,
    /// Sent as `Authorization: Bearer` (Prefect Cloud).
    pub api_key: Option<Secret>,
    /// `user:password`, sent as `Authorization: Basic` (a self-hosted
    /// server with basic auth).
    pub auth_string: Option<Secret>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Most events in one request.
    pub batch_max_events: usize,
    /// Most bytes in one request body.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more events.
    pub batch_timeout: Duration,
    /// The first wait before resending a failed batch.
    pub retry_initial: Duration,
    /// The longest wait between resends (and the pace of retries while the
    /// endpoint refuses the credentials).
    pub retry_max: Duration,
    /// Events per second at most; 0 for no limit.
    pub max_events_per_second: u32,
    /// Events that may go at once above the rate.
    pub burst: u32,
    /// How much room the dead-letter files may take.
    pub dead_letter_max_bytes: u64,
    /// Extra request headers (names checked at load).
    pub headers: Vec<(String, Secret)>,
    /// Whether request bodies are gzip-compressed.
    pub gzip: bool,
    /// Extra CA certificates (PEM) to trust, e.g. a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key (PEM), for mutual TLS.
    pub client_identity_pem: Option<Secret>,
    /// Accept any server certificate. Dangerous; warned at every start.
    pub insecure_skip_verify: bool,
    /// How the `http` sink reaches the API.
    pub transport: Transport,
}

/// A value that must never be shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Decode for Secret {
    const EXPECTED: &'static str = "a string";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        String::decode(dec, raw).map(Secret)
    }
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

fn read_sink(t: Table<'_, '_, '_>) -> Option<SinkConfig> {
    let dec = t.decoder();
    let kind = t.get_at::<SinkKind>("type");
    let url = match t.get_at::<HttpUrl>("url") {
        Some(at) => Some(at.value.0),
        None if t.value("url").is_some() => None,
        None => dec
            .env("PREFECT_API_URL")
            .and_then(|text| HttpUrl::decode(dec, Raw::Env("PREFECT_API_URL", &text)).map(|u| u.0)),
    };
    let api_key = t
        .get::<Secret>("api_key")
        .or_else(|| dec.env("PREFECT_API_KEY").map(Secret));
    let auth_string = t
        .get::<Secret>("auth_string")
        .or_else(|| dec.env("PREFECT_API_AUTH_STRING").map(Secret));
    if let (Some(_), Some(key)) = (t.value("api_key"), t.value("auth_string")) {
        dec.error_at(
            key.span(),
            "set api_key or auth_string, not both",
            Some("api_key is for Prefect Cloud, auth_string for a server with basic auth".into()),
        );
    }
    let timeout = t.or("timeout", ConfigDuration(Duration::from_secs(10)));
    let batch_max_events = t.or("batch_max_events", 500usize);
    let batch_max_bytes = t.or("batch_max_bytes", ByteSize(1 << 20));
    let batch_timeout = t.or("batch_timeout", ConfigDuration(Duration::from_millis(250)));
    let retry_initial = t.or("retry_initial", ConfigDuration(Duration::from_millis(250)));
    let retry_max = t.or("retry_max", ConfigDuration(Duration::from_secs(30)));
    let max_events_per_second = t.or("max_events_per_second", 500u32);
    let burst = t.or("burst", 5000u32);
    let dead_letter_max_bytes = t.or("dead_letter_max_bytes", ByteSize(64 << 20));
    let api_key = match t.get_at::<String>("api_key_file") {
        Some(at) => {
            if t.value("api_key").is_some() {
                report(
                    dec,
                    at.span.clone(),
                    "HERALD_SINK_API_KEY_FILE",
                    "set api_key or api_key_file, not both",
                    None,
                );
            }
            match std::fs::read_to_string(&at.value) {
                Ok(text) if !text.trim().is_empty() => Some(Secret(text.trim().to_owned())),
                Ok(_) => {
                    report(
                        dec,
                        at.span,
                        "HERALD_SINK_API_KEY_FILE",
                        format!("api_key_file {} is empty", at.value),
                        None,
                    );
                    None
                }
                Err(e) => {
                    report(
                        dec,
                        at.span,
                        "HERALD_SINK_API_KEY_FILE",
                        format!("cannot read api_key_file {}: {e}", at.value),
                        None,
                    );
                    None
                }
            }
        }
        None => api_key,
    };
    let headers = t
        .string_map("headers")
        .into_iter()
        .filter_map(|(name, value)| {
            let valid = reqwest::header::HeaderName::from_bytes(name.value.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(&value).is_ok();
            if !valid {
                report(
                    dec,
                    name.span,
                    "HERALD_SINK_HEADERS",
                    format!("invalid HTTP header {:?}", name.value),
                    Some("names are letters, digits and '-'; values are visible ASCII".into()),
                );
            }
            valid.then_some((name.value, Secret(value)))
        })
        .collect();
    let gzip = matches!(t.get::<Compression>("compression"), Some(Compression::Gzip));
    let ca_pem = t.get_at::<String>("ca_file").and_then(|at| {
        let pem = read_pem(dec, &at, "ca_file")?;
        if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |certs| certs.is_empty()) {
            report(
                dec,
                at.span,
                "HERALD_SINK_CA_FILE",
                format!("ca_file {} holds no PEM certificate", at.value),
                None,
            );
            return None;
        }
        Some(pem)
    });
    let cert = t.get_at::<String>("client_cert_file");
    let key = t.get_at::<String>("client_key_file");
    let client_identity_pem = match (cert, key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(dec, &cert, "client_cert_file");
            let key_pem = read_pem(dec, &key, "client_key_file");
            match (cert_pem, key_pem) {
                (Some(mut pem), Some(key_pem)) => {
                    pem.push(b'\n');
                    pem.extend_from_slice(&key_pem);
                    if reqwest::Identity::from_pem(&pem).is_err() {
                        report(
                            dec,
                            cert.span,
                            "HERALD_SINK_CLIENT_CERT_FILE",
                            "client_cert_file and client_key_file do not make a usable identity",
                            Some(
                                "both must be PEM: the certificate (chain) and its private key"
                                    .into(),
                            ),
                        );
                        None
                    } else {
                        Some(Secret(String::from_utf8_lossy(&pem).into_owned()))
                    }
                }
                _ => None,
            }
        }
        (Some(only), None) | (None, Some(only)) => {
            report(
                dec,
                only.span,
                "HERALD_SINK_CLIENT_CERT_FILE",
                "client_cert_file and client_key_file go together",
                None,
            );
            None
        }
        (None, None) => None,
    };
    let insecure_skip_verify = t.or("insecure_skip_verify", false);
    let transport = t.get_at::<Transport>("transport");
    if !(1..=10_000).contains(&batch_max_events)
        && let Some(value) = t.value("batch_max_events")
    {
        dec.error_at(
            value.span(),
            format!("batch_max_events must be from 1 to 10000, not {batch_max_events}"),
            None,
        );
    }
    for (key, value) in [
        ("timeout", timeout),
        ("batch_timeout", batch_timeout),
        ("retry_initial", retry_initial),
        ("retry_max", retry_max),
    ] {
        if value.0.is_zero()
            && let Some(raw) = t.value(key)
        {
            dec.error_at(raw.span(), format!("{key} must be more than zero"), None);
        }
    }
    let kind = match kind {
        Some(at) => {
            if at.value == SinkKind::Http && url.is_none() {
                let message = "sink type \"http\" needs a url";
                let hint =
                    Some("set url = \"http://127.0.0.1:4200/api\" or PREFECT_API_URL".into());
                match at.span {
                    Some(span) => dec.error_at(span, message, hint),
                    None => dec.error_env("HERALD_SINK_TYPE", message, hint),
                }
            }
            at.value
        }
        None if url.is_some() => SinkKind::Http,
        None => SinkKind::Stdout,
    };
    if let Some(at) = &transport
        && at.value == Transport::Websocket
    {
        if kind != SinkKind::Http {
            report(
                dec,
                at.span.clone(),
                "HERALD_SINK_TRANSPORT",
                "transport = \"websocket\" needs a url",
                Some("set url = \"http://127.0.0.1:4200/api\" or PREFECT_API_URL".into()),
            );
        }
        if gzip {
            report(
                dec,
                at.span.clone(),
                "HERALD_SINK_TRANSPORT",
                "compression = \"gzip\" is for the http transport, not the websocket",
                None,
            );
        }
    }
    let transport = transport.map_or(Transport::Http, |at| at.value);
    t.finish();
    Some(SinkConfig {
        kind,
        url,
        api_key,
        auth_string,
        timeout: timeout.0,
        batch_max_events,
        batch_max_bytes: usize::try_from(batch_max_bytes.0).unwrap_or(usize::MAX),
        batch_timeout: batch_timeout.0,
        retry_initial: retry_initial.0,
        retry_max: retry_max.0.max(retry_initial.0),
        max_events_per_second,
        burst,
        dead_letter_max_bytes: dead_letter_max_bytes.0,
        headers,
        gzip,
        ca_pem,
        client_identity_pem,
        insecure_skip_verify,
        transport,
    })
}

/// Reads a PEM file named by a key; a mistake at the key when it cannot.
fn read_pem(dec: &Decoder<'_>, at: &decode::At<String>, key: &str) -> Option<Vec<u8>> {
    match std::fs::read(&at.value) {
        Ok(pem) => Some(pem),
        Err(e) => {
            report(
                dec,
                at.span.clone(),
                &format!("HERALD_SINK_{}", key.to_ascii_uppercase()),
                format!("cannot read {key} {}: {e}", at.value),
                None,
            );
            None
        }
    }
}

#[derive(Clone, Copy)]
enum Compression {
    None,
    Gzip,
}

decode_names!(
    Compression,
    "\"none\" or \"gzip\"",
    [
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
    ]
);

decode_names!(
    Transport,
    "\"http\" or \"websocket\"",
    [
        "http" => Transport::Http,
        "websocket" => Transport::Websocket,
    ]
);

decode_names!(
    SinkKind,
    "\"http\" or \"stdout\"",
    [
        "http" => SinkKind::Http,
        "stdout" => SinkKind::Stdout,
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

/// An `http://` or `https://` URL with a host.
struct HttpUrl(reqwest::Url);

impl Decode for HttpUrl {
    const EXPECTED: &'static str = "a URL like \"http://127.0.0.1:4200/api\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        let hint = Some(format!("write {}", Self::EXPECTED));
        match reqwest::Url::parse(text.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(HttpUrl(url))
            }
            Ok(url) => {
                decode::value_mistake(
                    dec,
                    raw,
                    format!(
                        "invalid URL {text:?}: the scheme must be http or https, not {:?}",
                        url.scheme()
                    ),
                    hint,
                );
                None
            }
            Err(error) => {
                decode::value_mistake(dec, raw, format!("invalid URL {text:?}: {error}"), hint);
                None
            }
        }
    }
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
