//! The HTTP sink: `POST {url}/events` with a JSON array, as Prefect's API
//! takes it. The body is the queued event bytes joined with commas; a 2xx
//! answer means delivered. Credentials follow Prefect's conventions:
//! `Authorization: Bearer <api_key>` (Prefect Cloud) or `Basic` from
//! `user:password` (a self-hosted server with basic auth). They are never
//! logged.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Url;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};

use super::{SendError, SinkError};
use crate::config::{Secret, SinkConfig};
use crate::identity::VERSION;

/// Most of an error response body that is read: a 422 from Prefect echoes
/// the whole request, and its item indexes are what matters.
pub const BODY_MAX: usize = 4 << 20;

/// Posts batches to an events endpoint.
pub struct HttpSink {
    client: reqwest::Client,
    /// `{url}/events`.
    endpoint: Url,
    auth: Auth,
    /// Whether bodies are gzip-compressed (Prefect servers do not accept
    /// that; a proxy in front of one might).
    gzip: bool,
    /// Where bodies are built. Each request takes what was built as
    /// `Bytes`; once the client has let go of it, the next body reuses the
    /// same memory instead of a fresh (page-faulting) allocation.
    body: BytesMut,
}

enum Auth {
    None,
    Bearer(Secret),
    Basic { user: String, password: Secret },
}

impl HttpSink {
    /// A sink for the API at `url`.
    ///
    /// # Errors
    /// [`SinkError::Client`] when the HTTP client cannot be built.
    pub fn new(config: &SinkConfig, url: &Url) -> Result<Self, SinkError> {
        crate::tls::install_crypto_provider();
        let client_error = |e: reqwest::Error| SinkError::Client(format!("{e:#}"));
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            // Checked at config load; a failure here would be a bug there.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SinkError::Client(format!("header {name:?}: {e}")))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|e| SinkError::Client(format!("header {name}: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(format!("herald/{VERSION}"))
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .default_headers(headers);
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(client_error)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &config.client_identity_pem {
            let identity =
                reqwest::Identity::from_pem(pem.expose().as_bytes()).map_err(client_error)?;
            builder = builder.identity(identity);
        }
        if config.insecure_skip_verify {
            tracing::warn!(url = %url, "TlsVerificationDisabled: insecure_skip_verify = true accepts any certificate; anyone on the path can read and change what herald sends");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(client_error)?;
        let auth = match (&config.api_key, &config.auth_string) {
            (Some(key), _) => Auth::Bearer(key.clone()),
            (None, Some(auth)) => {
                let (user, password) = auth.expose().split_once(':').unwrap_or((auth.expose(), ""));
                Auth::Basic {
                    user: user.to_owned(),
                    password: Secret::from(password),
                }
            }
            (None, None) => Auth::None,
        };
        Ok(HttpSink {
            client,
            endpoint: events_url(url),
            auth,
            gzip: config.gzip,
            body: BytesMut::new(),
        })
    }

    /// Where events go, and how the sink authenticates (never with what).
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            Auth::None => "no auth",
            Auth::Bearer(_) => "bearer api key",
            Auth::Basic { .. } => "basic auth",
        };
        format!(
            "POST {} ({auth}{})",
            self.endpoint,
            if self.gzip { ", gzip" } else { "" }
        )
    }

    /// Posts the batch as one JSON array: `array` when given (the batch
    /// already joined), else the events joined here.
    ///
    /// # Errors
    /// [`SendError::Status`] for a non-2xx answer, [`SendError::Transport`]
    /// when no answer came.
    pub async fn send<B: AsRef<[u8]>>(
        &mut self,
        batch: &[B],
        array: Option<Bytes>,
    ) -> Result<(), SendError> {
        let body = match array {
            Some(array) => array,
            None => {
                let body = &mut self.body;
                body.clear();
                body.reserve(batch.iter().map(|e| e.as_ref().len() + 1).sum::<usize>() + 2);
                body.extend_from_slice(b"[");
                for (i, event) in batch.iter().enumerate() {
                    if i > 0 {
                        body.extend_from_slice(b",");
                    }
                    body.extend_from_slice(event.as_ref());
                }
                body.extend_from_slice(b"]");
                // Moves into the request without a copy.
                body.split().freeze()
            }
        };
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request = if self.gzip {
            let mut encoder =
                GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            encoder.write_all(&body).map_err(SendError::Io)?;
            let compressed = encoder.finish().map_err(SendError::Io)?;
            request
                .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                .body(compressed)
        } else {
            request.body(body)
        };
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(key) => request.bearer_auth(key.expose()),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password.expose())),
        };
        let response = request
            .send()
            .await
            .map_err(|e| SendError::Transport(transport_error(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        Err(SendError::Status {
            status: status.as_u16(),
            body: read_body(response).await,
            retry_after,
        })
    }
}

/// Reads at most [`BODY_MAX`] of a response body, as text. A body that
/// breaks off is kept as far as it came.
async fn read_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = BODY_MAX - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_MAX {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// `Retry-After` in either of its forms: seconds, or an HTTP date (how
/// long from `now`; a date in the past means now).
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// `{url}/events`, whether or not the url ends with a slash.
fn events_url(url: &Url) -> Url {
    let mut url = url.clone();
    let path = format!("{}/events", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// The error's chain without the URL (which is known) and with its causes,
/// which reqwest keeps out of its own message.
fn transport_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn events_url_appends_one_segment() {
        for (base, expected) in [
            (
                "http://127.0.0.1:4200/api",
                "http://127.0.0.1:4200/api/events",
            ),
            (
                "http://127.0.0.1:4200/api/",
                "http://127.0.0.1:4200/api/events",
            ),
            (
                "https://api.prefect.cloud/api/accounts/a/workspaces/w",
                "https://api.prefect.cloud/api/accounts/a/workspaces/w/events",
            ),
        ] {
            let url = Url::parse(base).expect("valid");
            assert_eq!(events_url(&url).as_str(), expected);
        }
    }
}
