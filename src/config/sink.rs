//! `[sink]`: where events go (stdout, or Prefect's API over HTTP or a
//! websocket), how they are batched, retried and rate-limited, and the
//! secrets and TLS material the connection needs, checked and read once.
//! A secret never shows in a log, an error or `Debug`.

use std::fmt;
use std::time::Duration;

use super::decode::{self, ByteSize, ConfigDuration, Decode, Decoder, Raw, Table};
use super::{one_of, report};

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

pub(super) fn read_sink(t: Table<'_, '_, '_>) -> Option<SinkConfig> {
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
