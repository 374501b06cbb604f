//! The sinks: where events go. A sink takes a batch of events, each already
//! serialized by the mapper, and delivers it as one unit; it never
//! re-serializes an event. Which events to send and when (batching,
//! acknowledgement) is the agent's business, not the sink's.

pub mod dead_letter;
pub mod http;
pub mod rate;
pub mod retry;
pub mod sender;
pub mod stdout;
pub mod websocket;

use bytes::Bytes;

use crate::config::{SinkConfig, SinkKind, Transport};

/// A configured sink.
pub enum Sink {
    /// JSON lines on standard output.
    Stdout(stdout::StdoutSink),
    /// `POST {url}/events`.
    Http(http::HttpSink),
    /// One event per text frame on the websocket `{url}/events/in`.
    Websocket(websocket::WebsocketSink),
}

impl Sink {
    /// Builds the sink the configuration names.
    ///
    /// # Errors
    /// [`SinkError`] when the HTTP client cannot be built (for example the
    /// system's TLS roots cannot be loaded).
    pub fn from_config(config: &SinkConfig) -> Result<Sink, SinkError> {
        match (config.kind, &config.url) {
            (SinkKind::Http, Some(url)) => match config.transport {
                Transport::Http => Ok(Sink::Http(http::HttpSink::new(config, url)?)),
                Transport::Websocket => {
                    Ok(Sink::Websocket(websocket::WebsocketSink::new(config, url)?))
                }
            },
            (SinkKind::Http, None) => Err(SinkError::NoUrl),
            (SinkKind::Stdout, _) => Ok(Sink::Stdout(stdout::StdoutSink::new())),
        }
    }

    /// Delivers a batch as one unit. `array`, when given, is the batch
    /// already joined into a JSON array (see
    /// [`crate::queue::Reader::body_of`]); the HTTP sink posts it as it
    /// is instead of joining the events again.
    ///
    /// # Errors
    /// [`SendError`] when the batch was not delivered; nothing of it should
    /// be assumed stored.
    pub async fn send<B: AsRef<[u8]>>(
        &mut self,
        batch: &[B],
        array: Option<Bytes>,
    ) -> Result<(), SendError> {
        match self {
            Sink::Stdout(sink) => sink.send(batch).await,
            Sink::Http(sink) => sink.send(batch, array).await,
            Sink::Websocket(sink) => sink.send(batch).await,
        }
    }

    /// Says where events go, for the start-up log (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Sink::Stdout(_) => "stdout".to_owned(),
            Sink::Http(sink) => sink.describe(),
            Sink::Websocket(sink) => sink.describe(),
        }
    }
}

/// A sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// `type = "http"` without a url (config validation prevents this).
    #[error("the http sink has no url")]
    NoUrl,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The endpoint answered with a status other than 2xx.
    #[error("the endpoint answered {status}: {}", excerpt(body))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The response body (up to [`http::BODY_MAX`]); a 422's names the
        /// bad items.
        body: String,
        /// When the endpoint asked to be retried (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// The request did not complete (connection refused, reset, timeout).
    #[error("the request failed: {0}")]
    Transport(String),
    /// Writing to standard output failed.
    #[error("cannot write to stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest part of a response body shown in a message.
const EXCERPT: usize = 512;

/// The start of a response body, for messages.
fn excerpt(body: &str) -> String {
    if body.len() <= EXCERPT {
        return body.to_owned();
    }
    let mut end = EXCERPT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &body[..end], body.len())
}
