//! The HTTP sink: `POST {url}/events` with a JSON array, as Prefect's API
//! takes it. The body is the queued event bytes joined with commas; a 2xx
//! answer means delivered. Credentials follow Prefect's conventions:
//! `Authorization: Bearer <api_key>` (Prefect Cloud) or `Basic` from
//! `user:password` (a self-hosted server with basic auth). They are never
//! logged.

use std::sync::Once;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::{SendError, SinkError};
use crate::config::{Secret, SinkConfig};
use crate::identity::VERSION;

/// Longest part of an error body kept in a message.
const BODY_EXCERPT: usize = 512;

/// Posts batches to an events endpoint.
pub struct HttpSink {
    client: reqwest::Client,
    /// `{url}/events`.
    endpoint: Url,
    auth: Auth,
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
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(format!("herald/{VERSION}"))
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| SinkError::Client(format!("{e:#}")))?;
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
        })
    }

    /// Where events go, and how the sink authenticates (never with what).
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            Auth::None => "no auth",
            Auth::Bearer(_) => "bearer api key",
            Auth::Basic { .. } => "basic auth",
        };
        format!("POST {} ({auth})", self.endpoint)
    }

    /// Posts the batch as one JSON array.
    ///
    /// # Errors
    /// [`SendError::Status`] for a non-2xx answer, [`SendError::Transport`]
    /// when no answer came.
    pub async fn send<B: AsRef<[u8]>>(&mut self, batch: &[B]) -> Result<(), SendError> {
        // Built fresh per batch: it moves into the request without a copy.
        let mut body =
            Vec::with_capacity(batch.iter().map(|e| e.as_ref().len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, event) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event.as_ref());
        }
        body.push(b']');
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
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
        let body = response.text().await.unwrap_or_default();
        let mut end = body.len().min(BODY_EXCERPT);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Err(SendError::Status {
            status: status.as_u16(),
            body: body[..end].to_owned(),
        })
    }
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

/// rustls needs one process-wide crypto provider; herald uses ring.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is
        // as good for herald's purposes.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
