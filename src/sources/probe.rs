//! `[[sources.probe]]`: is a service reachable? One target per source, a
//! TCP connect (`tcp = "host:port"`) or an HTTP GET (`http = "https://…"`)
//! every `interval`, announced as `probe.up` / `probe.down` observations on
//! transitions only.
//!
//! # When the level changes
//!
//! A probe is `down` after `failures` consecutive failed checks (default 2)
//! and `up` again after `successes` consecutive good ones (default 1). Two
//! failures because one lost packet or one slow answer past the timeout
//! is not an outage worth paging anyone for, while a real outage is still
//! reported one interval later; one success is enough to say "up" because
//! an answer is hard evidence that the service answers. `failures = 1`
//! reports every failed check.
//!
//! With no known state (the first run, or after the target changed), the
//! first check's result is announced at once, whatever the counts, so the
//! operator learns the current state. The announced level and a counter
//! of announcements are the known state, kept in
//! `<state_dir>/<name>.probe.json` and saved only once the announcement is
//! durably queued (see [`known_state`](super::known_state)); a restart
//! therefore does not announce the held level again. An announcement's
//! identity is (target, counter, level), so one re-emitted after a crash
//! gets the same event id.
//!
//! # What a check is
//!
//! - TCP: the connection is established within `timeout` (name resolution
//!   included), then closed.
//! - HTTP: a GET on a fresh connection (no pooling: a listener that stopped
//!   accepting must not hide behind a kept-alive connection), no proxy (the
//!   probe measures the target, not a proxy), certificates verified (extra
//!   roots from `ca_file`), redirects not followed (a 3xx is the target's
//!   own answer; following it would probe another server, maybe a login
//!   page elsewhere). The status must be in `expect_status` (default: any
//!   2xx or 3xx). The body is not read.
//!
//! This module does not decide what an event is called or where it goes:
//! that is the mapper's, from the kinds registered in
//! [`kinds`](crate::mapping::kinds).

use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toml::de::DeValue;
use tracing::{debug, info, warn};

use super::Emitter;
use super::known_state::{KnownStateSaver, StateFile};
use crate::config::decode::{self, At, ConfigDuration, Decode, Decoder, Raw, Table};
use crate::observation::Observation;

/// Checks between announcements unless configured.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long one check may take unless configured (never above the
/// interval).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed checks before `down`, unless configured.
const DEFAULT_FAILURES: u32 = 2;
/// Consecutive good checks before `up` again, unless configured.
const DEFAULT_SUCCESSES: u32 = 1;
/// The most consecutive checks a level change may wait for.
const MAX_COUNT: u32 = 100;

/// What a probe checks.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `host:port`: a TCP connection is established.
    Tcp(String),
    /// An `http://` or `https://` URL: a GET is answered with an expected
    /// status.
    Http(reqwest::Url),
}

impl Target {
    /// `tcp` or `http`: the probe type, in payloads and labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Http(_) => "http",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(address) => f.write_str(address),
            Target::Http(url) => f.write_str(url.as_str()),
        }
    }
}

/// HTTP statuses that count as up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

impl Default for StatusSet {
    /// Any 2xx or 3xx.
    fn default() -> Self {
        StatusSet(vec![200..=399])
    }
}

impl StatusSet {
    /// Whether `status` counts as up.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if range.start() == range.end() {
                write!(f, "{}", range.start())?;
            } else {
                write!(f, "{}-{}", range.start(), range.end())?;
            }
        }
        Ok(())
    }
}

/// `[[sources.probe]]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Unique among sources; names the resource, the known-state file and
    /// every event id this source derives.
    pub name: String,
    /// What is checked.
    pub target: Target,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failed checks before the probe is announced down.
    pub failures: u32,
    /// Consecutive good checks before it is announced up again.
    pub successes: u32,
    /// HTTP statuses that count as up.
    pub expect_status: StatusSet,
    /// Extra CA certificates (PEM) trusted for an `https` target.
    pub ca_pem: Option<Vec<u8>>,
}

impl ProbeConfig {
    /// A probe of `target` with every default; tests start from it.
    pub fn new(name: &str, target: Target) -> Self {
        ProbeConfig {
            name: name.to_owned(),
            target,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            failures: DEFAULT_FAILURES,
            successes: DEFAULT_SUCCESSES,
            expect_status: StatusSet::default(),
            ca_pem: None,
        }
    }
}

/// `tcp = "host:port"`.
struct TcpTarget(String);

impl Decode for TcpTarget {
    const EXPECTED: &'static str = "an address like \"db.internal:5432\" or \"[::1]:80\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        match check_host_port(&text) {
            Ok(()) => Some(TcpTarget(text)),
            Err(why) => {
                decode::value_mistake(
                    dec,
                    raw,
                    format!("invalid tcp target {text:?}: {why}"),
                    Some(format!("write {}", Self::EXPECTED)),
                );
                None
            }
        }
    }
}

/// Whether `text` is `host:port` with a port from 1 to 65535 (an IPv6
/// address in brackets).
fn check_host_port(text: &str) -> Result<(), &'static str> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("it has no port");
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("the port must be a number from 1 to 65535"),
        Ok(_) => {}
    }
    if host.is_empty() {
        return Err("it has no host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(address) if address.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            _ => Err("the address in brackets is not an IPv6 address"),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address must be written in brackets");
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("the host has a space or a slash");
    }
    Ok(())
}

/// `http = "https://…"`.
struct HttpTarget(reqwest::Url);

impl Decode for HttpTarget {
    const EXPECTED: &'static str = "a URL like \"http://127.0.0.1:8080/health\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        let mistake = |why: String, hint: &str| {
            decode::value_mistake(
                dec,
                raw,
                format!("invalid http target {text:?}: {why}"),
                Some(hint.to_owned()),
            );
        };
        let url = match reqwest::Url::parse(text.trim()) {
            Ok(url) => url,
            Err(e) => {
                mistake(e.to_string(), &format!("write {}", Self::EXPECTED));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            mistake(
                format!("the scheme must be http or https, not {:?}", url.scheme()),
                &format!("write {}", Self::EXPECTED),
            );
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            // The target is in every event and log line of this source.
            mistake(
                "it holds credentials, which would be sent in every event".into(),
                "a probe sends no credentials; to count an endpoint that asks for \
                 them as up, add 401 to expect_status",
            );
            return None;
        }
        Some(HttpTarget(url))
    }
}

/// One entry of `expect_status`: `200` or `"300-399"`.
struct StatusRange(RangeInclusive<u16>);

impl Decode for StatusRange {
    const EXPECTED: &'static str = "a status like 200 or a range like \"200-299\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let range = match raw {
            Raw::File(value) if matches!(value.get_ref(), DeValue::Integer(_)) => {
                let code = u16::try_from(u32::decode(dec, raw)?).unwrap_or(0);
                Some(code..=code)
            }
            _ => {
                let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
                let (low, high) = text.split_once('-').unwrap_or((&text, &text));
                match (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
                    (Ok(low), Ok(high)) if low <= high => Some(low..=high),
                    _ => None,
                }
            }
        };
        match range {
            Some(range) if *range.start() >= 100 && *range.end() <= 599 => Some(StatusRange(range)),
            _ => {
                decode::value_mistake(
                    dec,
                    raw,
                    "not an HTTP status from 100 to 599, or a range of them (low-high)",
                    Some(format!("write {}", Self::EXPECTED)),
                );
                None
            }
        }
    }
}

/// Reads one `[[sources.probe]]` table whose `name` the caller already read
/// (and checked for uniqueness).
pub fn read(t: Table<'_, '_, '_>, name: Option<At<String>>) -> Option<ProbeConfig> {
    let dec = t.decoder();
    let tcp_raw = t.value("tcp");
    let http_raw = t.value("http");
    let tcp = t.get_at::<TcpTarget>("tcp");
    let http = t.get_at::<HttpTarget>("http");
    if let (Some(_), Some(second)) = (tcp_raw, http_raw) {
        dec.error_at(
            second.span(),
            "a probe checks one target: tcp or http, not both",
            Some("make a second [[sources.probe]] for the other target".into()),
        );
    }
    if tcp_raw.is_none() && http_raw.is_none() {
        dec.error_at(
            t.span(),
            "[[sources.probe]] needs a target",
            Some(
                "add tcp = \"db.internal:5432\" or http = \"http://127.0.0.1:8080/health\"".into(),
            ),
        );
    }
    let interval = t.get_at::<ConfigDuration>("interval");
    if let Some(at) = &interval
        && at.value.0 < Duration::from_millis(100)
    {
        dec.error_at(
            at.span.clone().unwrap_or(0..0),
            "interval must be at least 100ms",
            None,
        );
    }
    let interval = interval.map_or(DEFAULT_INTERVAL, |at| at.value.0);
    let timeout = match t.get_at::<ConfigDuration>("timeout") {
        Some(at) => {
            let span = at.span.clone().unwrap_or(0..0);
            if at.value.0.is_zero() {
                dec.error_at(span, "timeout must be more than zero", None);
            } else if at.value.0 > interval {
                dec.error_at(
                    span,
                    format!(
                        "timeout ({:?}) must not be longer than the interval ({interval:?})",
                        at.value.0
                    ),
                    Some("checks run one after another; a longer one delays the next".into()),
                );
            }
            at.value.0
        }
        None => DEFAULT_TIMEOUT.min(interval),
    };
    let failures = count(&t, "failures", DEFAULT_FAILURES);
    let successes = count(&t, "successes", DEFAULT_SUCCESSES);
    let expect_status = read_statuses(&t, http_raw.is_some());
    let ca_pem = t.get_at::<String>("ca_file").and_then(|at| {
        let span = at.span.clone().unwrap_or(0..0);
        let is_https = http.as_ref().is_some_and(|h| h.value.0.scheme() == "https");
        if !is_https {
            dec.error_at(
                span.clone(),
                "ca_file applies only to an https target",
                None,
            );
        }
        match std::fs::read(Path::new(&at.value)) {
            Ok(pem) if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) => {
                Some(pem)
            }
            Ok(_) => {
                dec.error_at(
                    span,
                    format!("ca_file {} holds no PEM certificate", at.value),
                    None,
                );
                None
            }
            Err(e) => {
                dec.error_at(span, format!("cannot read ca_file {}: {e}", at.value), None);
                None
            }
        }
    });
    t.finish();
    let target = match (tcp, http) {
        (Some(tcp), None) => Target::Tcp(tcp.value.0),
        (None, Some(http)) => Target::Http(http.value.0),
        _ => return None,
    };
    if tcp_raw.is_some() && http_raw.is_some() {
        return None;
    }
    Some(ProbeConfig {
        name: name?.value,
        target,
        interval,
        timeout,
        failures,
        successes,
        expect_status: expect_status?,
        ca_pem,
    })
}

/// Reads `failures` or `successes`: 1 to [`MAX_COUNT`].
fn count(t: &Table<'_, '_, '_>, key: &'static str, default: u32) -> u32 {
    let Some(at) = t.get_at::<u32>(key) else {
        return default;
    };
    if !(1..=MAX_COUNT).contains(&at.value) {
        t.decoder().error_at(
            at.span.unwrap_or(0..0),
            format!("{key} must be from 1 to {MAX_COUNT}, not {}", at.value),
            Some(format!(
                "the number of consecutive checks; {default} is the default"
            )),
        );
    }
    at.value.clamp(1, MAX_COUNT)
}

/// Reads `expect_status`; `None` when it is malformed (the mistakes are
/// recorded).
fn read_statuses(t: &Table<'_, '_, '_>, is_http: bool) -> Option<StatusSet> {
    let dec = t.decoder();
    let Some(value) = t.value("expect_status") else {
        return Some(StatusSet::default());
    };
    if !is_http {
        dec.error_at(
            value.span(),
            "expect_status applies only to an http target",
            None,
        );
    }
    let DeValue::Array(items) = value.get_ref() else {
        decode::type_mistake(
            dec,
            Raw::File(value),
            "a list like [200, \"300-399\"]",
            value.get_ref().type_str(),
        );
        return None;
    };
    if items.is_empty() {
        dec.error_at(
            value.span(),
            "expect_status must name at least one status",
            Some("leave it out for any 2xx or 3xx".into()),
        );
        return None;
    }
    let ranges: Option<Vec<_>> = items
        .iter()
        .map(|item| StatusRange::decode(dec, Raw::File(item)).map(|s| s.0))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    ranges.map(StatusSet)
}

/// Whether the target was reachable, as announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Checks succeed.
    Up,
    /// Checks fail.
    Down,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Up => "up",
            Level::Down => "down",
        }
    }
}

/// Why a check failed: a short class an automation can match on, and the
/// details for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `refused`, `timeout`, `dns`, `tls`, `connect`, `status` or `http`.
    pub kind: &'static str,
    /// What happened, e.g. "connection refused (os error 111)".
    pub message: String,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// How long the check took: to the connection (TCP), to the response
    /// head (HTTP), or to the failure.
    pub latency: Duration,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// Why it failed; `None` when it succeeded.
    pub failure: Option<Failure>,
}

/// Something that checks a target once; the real probes, and scripted
/// ones in tests.
pub trait Check: Send {
    /// Runs one check. Never takes (much) longer than the timeout.
    fn check(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// The real check of a [`Target`].
pub enum Prober {
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        address: String,
        /// The most one check may take, resolution included.
        timeout: Duration,
    },
    /// An HTTP GET.
    Http {
        /// Built once: no redirects, no pool, no proxy, the timeout.
        client: reqwest::Client,
        /// The URL.
        url: reqwest::Url,
        /// Statuses that count as up.
        expect: StatusSet,
        /// For the message of a timeout.
        timeout: Duration,
    },
}

impl Prober {
    /// The prober for `config`.
    ///
    /// # Errors
    /// The reason when the HTTP client cannot be built (a CA file that
    /// passed the config check but is refused by the TLS library).
    pub fn new(config: &ProbeConfig) -> Result<Prober, String> {
        match &config.target {
            Target::Tcp(address) => Ok(Prober::Tcp {
                address: address.clone(),
                timeout: config.timeout,
            }),
            Target::Http(url) => {
                crate::tls::install_crypto_provider();
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("herald-probe/", env!("CARGO_PKG_VERSION")))
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(0)
                    .no_proxy();
                if let Some(pem) = &config.ca_pem {
                    let certs =
                        reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
                    for cert in certs {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                let client = builder.build().map_err(|e| error_chain(&e))?;
                Ok(Prober::Http {
                    client,
                    url: url.clone(),
                    expect: config.expect_status.clone(),
                    timeout: config.timeout,
                })
            }
        }
    }
}

impl Check for Prober {
    async fn check(&mut self) -> Outcome {
        let started = Instant::now();
        match self {
            Prober::Tcp { address, timeout } => {
                let connected = tokio::time::timeout(
                    *timeout,
                    tokio::net::TcpStream::connect(address.as_str()),
                )
                .await;
                let latency = started.elapsed();
                let failure = match connected {
                    Ok(Ok(stream)) => {
                        drop(stream);
                        None
                    }
                    Ok(Err(e)) => Some(io_failure(&e)),
                    Err(_) => Some(timed_out(*timeout)),
                };
                Outcome {
                    latency,
                    status: None,
                    failure,
                }
            }
            Prober::Http {
                client,
                url,
                expect,
                timeout,
            } => {
                let answer = client.get(url.clone()).send().await;
                let latency = started.elapsed();
                match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The body is not read: dropping the response
                        // closes the (unpooled) connection.
                        drop(response);
                        let failure = (!expect.contains(status)).then(|| Failure {
                            kind: "status",
                            message: format!("status {status}, expected {expect}"),
                        });
                        Outcome {
                            latency,
                            status: Some(status),
                            failure,
                        }
                    }
                    Err(e) => Outcome {
                        latency,
                        status: None,
                        failure: Some(http_failure(e, *timeout)),
                    },
                }
            }
        }
    }
}

fn timed_out(timeout: Duration) -> Failure {
    Failure {
        kind: "timeout",
        message: format!("no answer within {timeout:?}"),
    }
}

/// Classifies a TCP connect error.
fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    let kind = match e.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::TimedOut => "timeout",
        // tokio's resolver reports a failed lookup as an uncategorized
        // error whose text says so.
        _ if e.to_string().contains("lookup") => "dns",
        _ => "connect",
    };
    Failure {
        kind,
        message: e.to_string(),
    }
}

/// Classifies a failed HTTP exchange.
fn http_failure(e: reqwest::Error, timeout: Duration) -> Failure {
    // The URL is in every event already; keep the message to the cause.
    let e = e.without_url();
    if e.is_timeout() {
        return timed_out(timeout);
    }
    let message = error_chain(&e);
    let mut kind = if e.is_connect() { "connect" } else { "http" };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            kind = "tls";
            break;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // An io::Error's source() skips the error it wraps.
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                kind = "tls";
                break;
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    kind = "refused";
                    break;
                }
                std::io::ErrorKind::TimedOut => {
                    kind = "timeout";
                    break;
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    if kind == "connect" {
        let lower = message.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") {
            kind = "tls";
        } else if lower.contains("dns") || lower.contains("lookup") {
            kind = "dns";
        }
    }
    Failure { kind, message }
}

/// An error and its causes, joined by ": ", without repeats (reqwest and
/// hyper often repeat their cause's text).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// What is kept on disk: the last announced level and how many
/// announcements there were, for the target it was about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The target as configured; a state about another target is ignored.
    pub target: String,
    /// The last announced level.
    pub level: Level,
    /// Announcements so far; the next one is `transitions + 1`.
    pub transitions: u64,
}

/// One announcement to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The new level.
    pub level: Level,
    /// The level before, `None` for the first announcement.
    pub previous: Option<Level>,
    /// Its number: 1 for the first announcement ever.
    pub transition: u64,
    /// Consecutive failed checks, this one included.
    pub consecutive_failures: u32,
    /// Consecutive good checks, this one included.
    pub consecutive_successes: u32,
}

/// The level logic, apart from time and I/O.
#[derive(Clone, Debug)]
pub struct Tracker {
    failures: u32,
    successes: u32,
    /// The last announced level and its number; `None` until the first.
    known: Option<(Level, u64)>,
    consecutive_failures: u32,
    consecutive_successes: u32,
}

impl Tracker {
    /// A tracker needing `failures` / `successes` consecutive checks to
    /// change level, starting from what was last announced (if anything).
    pub fn new(failures: u32, successes: u32, known: Option<(Level, u64)>) -> Self {
        Tracker {
            failures: failures.max(1),
            successes: successes.max(1),
            known,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }

    /// Takes one check's result; returns the announcement to make, if any.
    pub fn record(&mut self, ok: bool) -> Option<Announcement> {
        let (level, needed) = if ok {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
            (Level::Up, self.successes <= self.consecutive_successes)
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            (Level::Down, self.failures <= self.consecutive_failures)
        };
        let (previous, transition) = match self.known {
            None => (None, 1),
            Some((known, _)) if known == level => return None,
            Some(_) if !needed => return None,
            Some((known, n)) => (Some(known), n + 1),
        };
        self.known = Some((level, transition));
        Some(Announcement {
            level,
            previous,
            transition,
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
        })
    }
}

/// Starts the probe source on `tracker`.
pub fn spawn(
    config: ProbeConfig,
    state_dir: &Path,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let prober = match Prober::new(&config) {
        Ok(prober) => prober,
        Err(error) => {
            warn!(stage = "receiving", source = %config.name, error = %error, "ProbeSourceFailed: the source does not run");
            return;
        }
    };
    let file = StateFile::new(state_dir, &config.name, "probe");
    tracker.spawn(run(config, prober, file, emitter, cancel));
}

/// Checks every interval until `cancel` fires or the pipeline closes.
pub async fn run<C: Check>(
    config: ProbeConfig,
    mut checker: C,
    file: StateFile,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let target = config.target.to_string();
    let probe = config.target.kind();
    let known = file
        .load::<Known>()
        .filter(|known| known.target == target)
        .map(|known| (known.level, known.transitions));
    let saver = KnownStateSaver::new(file);
    let mut levels = Tracker::new(config.failures, config.successes, known);
    info!(source = %name, probe, target = %target, interval = ?config.interval, known = ?known.map(|k| k.0), "ProbeSourceStarted");
    let mut ticks = tokio::time::interval(config.interval);
    // After a stall, check once, not in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = saver.ready() => {
                saver.save_pending().await;
                continue;
            }
            _ = ticks.tick() => {}
        }
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            outcome = checker.check() => outcome,
        };
        debug!(
            source = %name,
            ok = outcome.failure.is_none(),
            latency = ?outcome.latency,
            status = outcome.status,
            error = outcome.failure.as_ref().map(|f| f.message.as_str()),
            "ProbeChecked"
        );
        let Some(announcement) = levels.record(outcome.failure.is_none()) else {
            continue;
        };
        match &outcome.failure {
            Some(failure) => {
                info!(source = %name, target = %target, error = %failure.message, "ProbeDown")
            }
            None => info!(source = %name, target = %target, "ProbeUp"),
        }
        let state = Known {
            target: target.clone(),
            level: announcement.level,
            transitions: announcement.transition,
        };
        let mut observation = observation(&name, &target, probe, &announcement, &outcome);
        observation.on_durable = Some(saver.on_durable(state));
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = emitter.emit(observation) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The observation announcing `announcement`.
fn observation(
    source: &Arc<str>,
    target: &str,
    probe: &'static str,
    announcement: &Announcement,
    outcome: &Outcome,
) -> Observation {
    let level = announcement.level.as_str();
    let mut identity = Vec::with_capacity(target.len() + 32);
    identity.extend_from_slice(target.as_bytes());
    identity.push(0);
    identity.extend_from_slice(&announcement.transition.to_be_bytes());
    identity.extend_from_slice(level.as_bytes());
    // Milliseconds with microsecond precision: small latencies stay
    // readable.
    let latency_ms = (outcome.latency.as_secs_f64() * 1e6).round() / 1e3;
    let mut observation = Observation::new(
        Arc::clone(source),
        if announcement.level == Level::Up {
            "probe.up"
        } else {
            "probe.down"
        },
    )
    .with("target", target)
    .with("probe", probe)
    .with("latency_ms", latency_ms)
    .with("consecutive_failures", announcement.consecutive_failures)
    .with("consecutive_successes", announcement.consecutive_successes);
    if let Some(status) = outcome.status {
        observation = observation.with("status", status);
    }
    if let Some(failure) = &outcome.failure {
        observation = observation
            .with("error", failure.message.as_str())
            .with("error_kind", failure.kind);
    }
    if let Some(previous) = announcement.previous {
        observation = observation.with("previous", previous.as_str());
    }
    observation.identity = Some(identity);
    observation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, parse};
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::{Mutex, PoisonError};
    use tokio::sync::mpsc;

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn probe(text: &str) -> ProbeConfig {
        let config = parse("t.toml", text, &no_env).expect("valid");
        match config.sources.as_slice() {
            [SourceConfig::Probe(probe)] => probe.clone(),
            other => panic!("one probe source: {other:?}"),
        }
    }

    fn mistakes(text: &str) -> String {
        parse("t.toml", text, &no_env)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn reads_every_key_and_the_defaults() {
        let tcp = probe("[[sources.probe]]\nname = \"db\"\ntcp = \"db.internal:5432\"\n");
        assert_eq!(tcp.target, Target::Tcp("db.internal:5432".into()));
        assert_eq!(tcp.interval, Duration::from_secs(10));
        assert_eq!(tcp.timeout, Duration::from_secs(5));
        assert_eq!((tcp.failures, tcp.successes), (2, 1));
        let http = probe(
            r#"
[[sources.probe]]
name = "api"
http = "http://127.0.0.1:8080/health"
interval = "2s"
failures = 3
successes = 2
expect_status = [200, "300-302", "401"]
"#,
        );
        assert_eq!(http.target.kind(), "http");
        assert_eq!(http.interval, Duration::from_secs(2));
        assert_eq!(
            http.timeout,
            Duration::from_secs(2),
            "capped at the interval"
        );
        assert_eq!((http.failures, http.successes), (3, 2));
        assert!(http.expect_status.contains(200));
        assert!(http.expect_status.contains(301));
        assert!(http.expect_status.contains(401));
        assert!(!http.expect_status.contains(204));
        assert_eq!(http.expect_status.to_string(), "200, 300-302, 401");
        let ipv6 = probe("[[sources.probe]]\nname = \"v6\"\ntcp = \"[::1]:22\"\n");
        assert_eq!(ipv6.target.to_string(), "[::1]:22");
    }

    #[test]
    fn the_default_statuses_are_2xx_and_3xx() {
        let set = StatusSet::default();
        assert!(set.contains(200) && set.contains(204) && set.contains(302) && set.contains(399));
        assert!(!set.contains(199) && !set.contains(400) && !set.contains(503));
    }

    #[test]
    fn a_probe_needs_exactly_one_target() {
        let both =
            mistakes("[[sources.probe]]\nname = \"p\"\ntcp = \"h:1\"\nhttp = \"http://h/\"\n");
        assert!(
            both.contains("t.toml:4:8: a probe checks one target: tcp or http, not both"),
            "{both}"
        );
        let none = mistakes("[[sources.probe]]\nname = \"p\"\n");
        assert!(none.contains("[[sources.probe]] needs a target"), "{none}");
        assert!(none.contains("t.toml:"), "{none}");
    }

    #[test]
    fn mistakes_point_at_their_key() {
        let text = r#"
[[sources.probe]]
name = "p"
tcp = "db.internal"
interval = "10ms"
failures = 0
expect_status = [200]

[[sources.probe]]
name = "q"
http = "ftp://h/x"
timeout = "1m"

[[sources.probe]]
name = "r"
http = "https://user:pw@h/x"
expect_status = [200, "abc", 700]
colour = "red"
"#;
        let shown = mistakes(text);
        for expected in [
            "t.toml:4:7: invalid tcp target \"db.internal\": it has no port",
            "t.toml:5:12: interval must be at least 100ms",
            "t.toml:6:12: failures must be from 1 to 100, not 0",
            "t.toml:7:17: expect_status applies only to an http target",
            "t.toml:11:8: invalid http target \"ftp://h/x\": the scheme must be http or https",
            "t.toml:12:11: timeout (60s) must not be longer than the interval (10s)",
            "t.toml:16:8: invalid http target",
            "holds credentials",
            "t.toml:17:23: not an HTTP status",
            "t.toml:17:30: not an HTTP status",
            "t.toml:18:1: unknown key `colour` in [[sources.probe]]",
        ] {
            assert!(shown.contains(expected), "{expected}\n{shown}");
        }
    }

    #[test]
    fn host_port_checks() {
        assert_eq!(check_host_port("h:80"), Ok(()));
        assert_eq!(check_host_port("10.0.0.1:65535"), Ok(()));
        assert_eq!(check_host_port("[fe80::1]:443"), Ok(()));
        assert!(check_host_port("h:0").is_err());
        assert!(check_host_port("h:99999").is_err());
        assert!(check_host_port(":80").is_err());
        assert!(check_host_port("::1:80").is_err());
        assert!(check_host_port("[nope]:80").is_err());
        assert!(check_host_port("h/x:80").is_err());
    }

    #[test]
    fn two_failures_go_down_and_one_success_comes_back() {
        let mut t = Tracker::new(2, 1, Some((Level::Up, 4)));
        assert_eq!(t.record(true), None, "the known level holds");
        assert_eq!(t.record(false), None, "one failure is not down");
        assert_eq!(t.record(true), None, "and a success resets it");
        assert_eq!(t.record(false), None);
        let down = t.record(false).expect("down");
        assert_eq!(
            down,
            Announcement {
                level: Level::Down,
                previous: Some(Level::Up),
                transition: 5,
                consecutive_failures: 2,
                consecutive_successes: 0,
            }
        );
        assert_eq!(t.record(false), None, "no repeat while down");
        let up = t.record(true).expect("up");
        assert_eq!(
            (up.level, up.previous, up.transition),
            (Level::Up, Some(Level::Down), 6)
        );
        assert_eq!(up.consecutive_successes, 1);
    }

    #[test]
    fn the_first_result_is_announced_whatever_the_counts() {
        let mut t = Tracker::new(3, 3, None);
        let first = t.record(false).expect("first");
        assert_eq!(
            (first.level, first.previous, first.transition),
            (Level::Down, None, 1)
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), None);
        let up = t.record(true).expect("three successes");
        assert_eq!(
            (up.level, up.transition, up.consecutive_successes),
            (Level::Up, 2, 3)
        );
    }

    /// Outcomes given in order, each after a simulated delay.
    struct Scripted {
        outcomes: VecDeque<Outcome>,
        checked: Arc<Mutex<Vec<Instant>>>,
    }

    impl Check for Scripted {
        async fn check(&mut self) -> Outcome {
            self.checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Instant::now());
            let outcome = self.outcomes.pop_front().unwrap_or_else(good);
            tokio::time::sleep(outcome.latency).await;
            outcome
        }
    }

    fn good() -> Outcome {
        Outcome {
            latency: Duration::from_millis(3),
            status: Some(200),
            failure: None,
        }
    }

    fn refused() -> Outcome {
        Outcome {
            latency: Duration::from_millis(1),
            status: None,
            failure: Some(Failure {
                kind: "refused",
                message: "connection refused".into(),
            }),
        }
    }

    /// Fires every observation's callback, as the agent does once the
    /// event is durable.
    fn durable(mut batch: Vec<Observation>) -> Observation {
        let mut observation = batch.remove(0);
        if let Some(callback) = observation.on_durable.take() {
            callback.fire();
        }
        observation
    }

    #[tokio::test(start_paused = true)]
    async fn announces_on_the_interval_and_saves_only_what_is_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
        config.interval = Duration::from_secs(10);
        let checked = Arc::new(Mutex::new(Vec::new()));
        let outcomes = VecDeque::from([good(), refused(), refused(), refused(), good()]);
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let file = StateFile::new(dir.path(), "web", "probe");
        let task = tokio::spawn(run(
            config.clone(),
            Scripted {
                outcomes,
                checked: checked.clone(),
            },
            file.clone(),
            Emitter::new(tx),
            cancel.clone(),
        ));
        let first = rx.recv().await.expect("first");
        assert_eq!(first[0].kind, "probe.up");
        assert_eq!(
            first[0].field("previous"),
            None,
            "the first has no previous"
        );
        assert_eq!(file.load::<Known>(), None, "nothing saved before durable");
        let first = durable(first);
        assert_eq!(first.field("latency_ms"), Some(&serde_json::json!(3.0)));
        let down = durable(rx.recv().await.expect("down"));
        assert_eq!(down.kind, "probe.down");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(20) + Duration::from_millis(1),
            "the second failure, one interval after the first"
        );
        assert_eq!(
            down.field("error_kind"),
            Some(&serde_json::json!("refused"))
        );
        assert_eq!(
            down.field("consecutive_failures"),
            Some(&serde_json::json!(2))
        );
        assert_eq!(down.field("previous"), Some(&serde_json::json!("up")));
        let up = durable(rx.recv().await.expect("up"));
        assert_eq!(up.kind, "probe.up");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(40) + Duration::from_millis(3)
        );
        // The loop saves what became durable; give it its turn.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            file.load::<Known>(),
            Some(Known {
                target: "127.0.0.1:9".into(),
                level: Level::Up,
                transitions: 3,
            })
        );
        cancel.cancel();
        task.await.expect("stops cleanly");
        let times = checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(times.len() >= 5, "{times:?}");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(10), "{times:?}");
        }
        let ids: Vec<_> = [first, down, up]
            .iter()
            .map(|o| o.identity.clone().expect("identity"))
            .collect();
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_announces_nothing_while_the_level_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = StateFile::new(dir.path(), "web", "probe");
        file.save(&Known {
            target: "127.0.0.1:9".into(),
            level: Level::Down,
            transitions: 7,
        })
        .expect("saved");
        let config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let outcomes = VecDeque::from([refused(), refused(), refused(), good()]);
        let task = tokio::spawn(run(
            config,
            Scripted {
                outcomes,
                checked: Arc::default(),
            },
            file.clone(),
            Emitter::new(tx),
            cancel.clone(),
        ));
        let up = rx.recv().await.expect("up").remove(0);
        assert_eq!(up.kind, "probe.up", "the held down was not announced again");
        assert_eq!(up.field("previous"), Some(&serde_json::json!("down")));
        let mut expected = b"127.0.0.1:9\0".to_vec();
        expected.extend_from_slice(&8u64.to_be_bytes());
        expected.extend_from_slice(b"up");
        assert_eq!(up.identity, Some(expected), "(target, counter, level)");
        cancel.cancel();
        task.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_about_another_target_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = StateFile::new(dir.path(), "web", "probe");
        file.save(&Known {
            target: "10.0.0.1:80".into(),
            level: Level::Up,
            transitions: 3,
        })
        .expect("saved");
        let config = ProbeConfig::new("web", Target::Tcp("127.0.0.1:9".into()));
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            config,
            Scripted {
                outcomes: VecDeque::new(),
                checked: Arc::default(),
            },
            file,
            Emitter::new(tx),
            cancel.clone(),
        ));
        let first = rx.recv().await.expect("announced").remove(0);
        assert_eq!(first.kind, "probe.up");
        assert_eq!(first.field("previous"), None);
        cancel.cancel();
        task.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_a_timeout() {
        // Accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let port = listener.local_addr().expect("address").port();
        let url = reqwest::Url::parse(&format!("http://{}/health", loopback(port))).expect("url");
        let mut config = ProbeConfig::new("api", Target::Http(url));
        config.timeout = Duration::from_secs(2);
        let mut prober = Prober::new(&config).expect("client");
        let outcome = prober.check().await;
        let failure = outcome.failure.expect("failed");
        assert_eq!(failure.kind, "timeout", "{failure:?}");
        assert_eq!(failure.message, "no answer within 2s");
        assert_eq!(outcome.status, None);
        drop(listener);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let config = ProbeConfig::new("db", Target::Tcp(address.to_string()));
        let outcome = Prober::new(&config).expect("prober").check().await;
        assert_eq!(outcome.failure.map(|f| f.kind), Some("refused"));
        let url = reqwest::Url::parse(&format!("http://{address}/")).expect("url");
        let config = ProbeConfig::new("api", Target::Http(url));
        let outcome = Prober::new(&config).expect("prober").check().await;
        let failure = outcome.failure.expect("failed");
        assert_eq!(failure.kind, "refused", "{failure:?}");
        assert!(!failure.message.contains("http://"), "{failure:?}");
    }
}
