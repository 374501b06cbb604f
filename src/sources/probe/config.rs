//! `[[sources.probe]]`: the probe source's settings, read through the
//! config framework's [`Table`] so that every mistake is reported with its
//! position: the target (`tcp` host:port or an `http`/`https` URL), the
//! statuses that count as up, the interval, the timeout and how many
//! checks in a row change the level.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use toml::de::DeValue;

use crate::config::decode::{self, At, ConfigDuration, Decode, Decoder, Raw, Table};

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
pub(super) fn check_host_port(text: &str) -> Result<(), &'static str> {
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
