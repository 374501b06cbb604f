//! The websocket sink: events go to `{url}/events/in` (the API url with
//! `http` turned to `ws`, `https` to `wss`) the way Prefect's own Python
//! client sends them: one event per text frame. It is not responsible for
//! batching, retries or dead letters (the sending stage is); it delivers one
//! batch over a long-lived connection and says whether that worked.
//!
//! Authentication follows Prefect's client:
//! - a self-hosted server (no `api_key`): subprotocol `prefect`, then a first
//!   frame `{"type":"auth","token":<auth_string or null>}` that the server
//!   answers with `{"type":"auth_success"}` or a close (policy violation);
//!   with an `auth_string` the upgrade also carries `Authorization: Basic`,
//!   for proxies that check it before the websocket exists;
//! - Prefect Cloud (`api_key` set): `Authorization: bearer <key>` on the
//!   upgrade request, no subprotocol and no auth frame.
//!
//! A refused upgrade (401, 403, 404, …) or a refused auth frame is reported
//! as that HTTP status (a refused auth frame as 401), so the sending stage
//! treats it as it treats the HTTP sink's: loud, retried slowly, nothing
//! dropped. Credentials are never logged or put in an error.
//!
//! # The weaker guarantee, and how herald bounds it
//! Prefect acknowledges nothing on this socket: it stores what it can parse
//! and drops the connection on the first event it cannot (no close frame,
//! the events after it in flight are lost). A pong only proves the server
//! *received* the frames before the ping; its handler may still be working
//! through them. So herald reports a batch delivered only when
//! 1. every frame of it was written, then a ping, and the matching pong came
//!    back within `timeout`; and
//! 2. the connection then stayed open for a settle window
//!    ([`SETTLE_BASE`] plus [`SETTLE_PER_EVENT`] per event, at most
//!    `timeout`), long enough for a local Prefect server to work through a
//!    batch of 500 and drop the connection if an event was bad.
//!
//! Whatever goes wrong before that is a failed batch ([`SendError::Transport`])
//! and the sending stage resends all of it on a new connection. Resending is
//! harmless: event ids are stable and Prefect keeps the first copy of an id.
//!
//! What is left, and how it is bounded:
//! - A server slower than the settle window can drop the connection after
//!   herald reported a batch delivered. herald keeps the last delivered
//!   batch (the frames it already holds, no copy) until a later batch is
//!   delivered on the same connection; when the connection is found lost
//!   before that, the kept batch is replayed first on the new one. If the
//!   replay itself is dropped [`STRIKES`] times, its events are logged as
//!   possibly lost (`WebsocketBatchUnconfirmed`, with the ids) and given up:
//!   the exposure is at most one batch, so keep `batch_max_events` small
//!   (100 or so) with this transport.
//! - An invalid event makes every attempt of its batch fail. When the very
//!   same batch has had its connection dropped while in flight [`STRIKES`]
//!   times in a row (each time after a connection that was accepted and
//!   authenticated), the batch is reported as a `422` naming no item: the
//!   sending stage halves it until the bad event is alone and keeps that as
//!   a dead letter, so one bad event cannot stop the queue. A server that
//!   drops every connection for another reason (its message broker down)
//!   looks the same; dead letters can be sent again with
//!   `herald dead-letter retry`.
//! - A crash loses nothing queued: what was not acknowledged is sent again
//!   after a restart, as with the HTTP sink. Only the replay copy above
//!   lives in memory.
//!
//! Not supported: HTTP proxies (`HTTPS_PROXY`); the socket is opened
//! directly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{
    AUTHORIZATION, HeaderName, HeaderValue, SEC_WEBSOCKET_PROTOCOL, USER_AGENT,
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::{error, info, warn};
use xxhash_rust::xxh3::Xxh3;

use super::{SendError, SinkError};
use crate::config::{Secret, SinkConfig};
use crate::identity::VERSION;

/// The fixed part of the settle window.
pub const SETTLE_BASE: Duration = Duration::from_millis(100);
/// The settle window's allowance per event of the batch. A local Prefect
/// 3.9 server on 2 cores dropped the connection 0.1 to 0.2 s after the
/// pong that followed 500 to 2000 events ahead of a bad one.
pub const SETTLE_PER_EVENT: Duration = Duration::from_micros(500);
/// How many times in a row the same batch may lose its connection while in
/// flight before it is judged to hold an invalid event (and a replayed
/// batch before it is given up).
pub const STRIKES: u32 = 3;
/// The subprotocol of Prefect's self-hosted event socket.
const SUBPROTOCOL: &str = "prefect";
/// The largest message herald accepts from the server: it only ever sends
/// the auth answer, pongs and a close.
const MAX_INCOMING: usize = 64 << 10;

/// Sends batches over a websocket to `{url}/events/in`.
pub struct WebsocketSink {
    /// `ws[s]://…/events/in`.
    endpoint: Url,
    auth: Auth,
    /// `[sink.headers]`, sent on the upgrade request as Prefect's client
    /// sends its custom headers.
    headers: Vec<(String, Secret)>,
    /// Set for `wss`.
    tls: Option<TlsConnector>,
    /// How long connecting (TLS and auth included) and the pong may take.
    timeout: Duration,
    connection: Option<Connection>,
    /// The last batch reported delivered, until a later batch is delivered
    /// on the same connection; replayed first when that connection is lost.
    unconfirmed: Option<Unconfirmed>,
    /// The batch whose connection dropped while it was in flight, and how
    /// many times in a row.
    suspect: Option<(u64, u32)>,
    /// The payload of the next ping; pongs carry it back.
    next_ping: u64,
}

enum Auth {
    /// A self-hosted server: the auth frame, with the auth string if any.
    Frame(Option<Secret>),
    /// Prefect Cloud: `Authorization: bearer <key>` on the upgrade.
    Bearer(Secret),
}

struct Unconfirmed {
    frames: Vec<Message>,
    /// Failed replays so far.
    strikes: u32,
}

/// One open, authenticated connection.
struct Connection {
    writer: SplitSink<WebSocketStream<Stream>, Message>,
    /// What the reader task saw: pongs and the end of the connection.
    link: watch::Receiver<Link>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Debug, Default)]
struct Link {
    /// The highest ping payload answered.
    pong: u64,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// Why one delivery did not happen.
enum Failure {
    /// Nothing of the batch was sent (no connection, auth refused, a stale
    /// connection, the previous batch's replay failed); says nothing about
    /// the batch.
    Before(SendError),
    /// The connection ended while the batch was in flight or settling.
    InFlight(String),
    /// The pong did not come in time; the connection is dropped.
    NoPong,
}

impl WebsocketSink {
    /// A sink for the API at `url` (`http[s]://…`).
    ///
    /// # Errors
    /// [`SinkError::Client`] when the TLS configuration cannot be built
    /// (the system's roots cannot be loaded, an unusable client identity).
    pub fn new(config: &SinkConfig, url: &Url) -> Result<Self, SinkError> {
        let endpoint = events_in_url(url)
            .ok_or_else(|| SinkError::Client(format!("cannot make a websocket url of {url}")))?;
        let tls = if endpoint.scheme() == "wss" {
            if config.insecure_skip_verify {
                warn!(url = %url, "TlsVerificationDisabled: insecure_skip_verify = true accepts any certificate; anyone on the path can read and change what herald sends");
            }
            Some(TlsConnector::from(Arc::new(tls_config(config)?)))
        } else {
            None
        };
        let auth = match &config.api_key {
            Some(key) => Auth::Bearer(key.clone()),
            None => Auth::Frame(config.auth_string.clone()),
        };
        Ok(WebsocketSink {
            endpoint,
            auth,
            headers: config.headers.clone(),
            tls,
            timeout: config.timeout,
            connection: None,
            unconfirmed: None,
            suspect: None,
            next_ping: 0,
        })
    }

    /// Where events go, and how the sink authenticates (never with what).
    pub fn describe(&self) -> String {
        let auth = match &self.auth {
            Auth::Frame(None) => "auth frame without a token",
            Auth::Frame(Some(_)) => "auth frame with the auth string",
            Auth::Bearer(_) => "bearer api key",
        };
        format!("websocket {} ({auth})", self.endpoint)
    }

    /// Sends the batch, one event per text frame, on the open connection or
    /// a new one, and waits until it counts as delivered (see the module
    /// doc).
    ///
    /// # Errors
    /// [`SendError::Transport`] when the batch may not have been stored (it
    /// should be sent again); [`SendError::Status`] when the endpoint refused
    /// the upgrade or the credentials, or (as a `422`) when the same batch
    /// keeps losing its connection.
    pub async fn send<B: AsRef<[u8]>>(&mut self, batch: &[B]) -> Result<(), SendError> {
        let frames = frames(batch)?;
        let fingerprint = fingerprint(batch);
        if let Err(failure) = self.replay().await {
            return Err(self.failed(failure, None));
        }
        // Taken, not borrowed: if this future is dropped halfway (the agent
        // stops), the half-used connection goes with it.
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        self.next_ping += 1;
        match deliver(&mut connection, &frames, self.next_ping, self.timeout).await {
            Ok(()) => {
                self.connection = Some(connection);
                self.suspect = None;
                // The batch before this one was followed by a delivered
                // batch on the same connection: it is as sure as it gets.
                self.unconfirmed = Some(Unconfirmed { frames, strikes: 0 });
                Ok(())
            }
            Err(failure) => Err(self.failed(failure, Some(fingerprint))),
        }
    }

    /// Resends the last delivered batch on a new connection when the one it
    /// went over was lost; gives it up after [`STRIKES`] failed replays.
    async fn replay(&mut self) -> Result<(), Failure> {
        let lost = self
            .connection
            .as_ref()
            .and_then(|c| c.link.borrow().closed.clone());
        if lost.is_some() {
            self.connection = None;
        }
        if self.connection.is_some() {
            return Ok(());
        }
        let Some(unconfirmed) = &self.unconfirmed else {
            return Ok(());
        };
        if unconfirmed.strikes >= STRIKES {
            let ids = ids(&unconfirmed.frames);
            error!(stage = "sending", events = unconfirmed.frames.len(), ids = %ids.join(","), "WebsocketBatchUnconfirmed: the endpoint kept dropping the connection while these events, already reported delivered, were sent again; they may not be stored");
            self.unconfirmed = None;
            return Ok(());
        }
        if let Some(reason) = &lost {
            info!(stage = "sending", events = unconfirmed.frames.len(), reason = %reason, "WebsocketBatchResending: the connection was lost after the last batch; sending it again first (the endpoint drops repeated ids)");
        }
        let mut connection = self.connect().await.map_err(Failure::Before)?;
        self.next_ping += 1;
        let resent = deliver(
            &mut connection,
            &unconfirmed.frames,
            self.next_ping,
            self.timeout,
        )
        .await;
        match resent {
            Ok(()) => {
                self.connection = Some(connection);
                self.unconfirmed = None;
                Ok(())
            }
            Err(failure) => {
                if let Some(unconfirmed) = &mut self.unconfirmed {
                    unconfirmed.strikes += 1;
                }
                Err(match failure {
                    Failure::InFlight(reason) => Failure::Before(SendError::Transport(format!(
                        "the connection was lost while resending the previous batch: {reason}"
                    ))),
                    other => other,
                })
            }
        }
    }

    /// Turns a failure into the error the sending stage judges, counting
    /// strikes against `batch` when its connection dropped in flight.
    fn failed(&mut self, failure: Failure, batch: Option<u64>) -> SendError {
        self.connection = None;
        match failure {
            Failure::Before(e) => e,
            Failure::NoPong => SendError::Transport(format!(
                "the endpoint did not answer a ping within {:?}",
                self.timeout
            )),
            Failure::InFlight(reason) => {
                let Some(batch) = batch else {
                    return SendError::Transport(reason);
                };
                let strikes = match self.suspect {
                    Some((suspect, strikes)) if suspect == batch => strikes + 1,
                    _ => 1,
                };
                if strikes < STRIKES {
                    self.suspect = Some((batch, strikes));
                    return SendError::Transport(format!(
                        "the connection was lost while sending the batch: {reason}"
                    ));
                }
                self.suspect = None;
                SendError::Status {
                    status: 422,
                    body: format!(
                        "the endpoint dropped the websocket {STRIKES} times in a row while taking this batch, so an event in it is likely invalid (Prefect drops the connection on an event it cannot parse): {reason}"
                    ),
                    retry_after: None,
                }
            }
        }
    }

    /// Opens a connection and authenticates.
    async fn connect(&self) -> Result<Connection, SendError> {
        let connecting = async {
            let stream = self.open_stream().await?;
            let request = self.request()?;
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_INCOMING))
                .max_frame_size(Some(MAX_INCOMING));
            let (mut socket, _) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(handshake_error)?;
            if let Auth::Frame(token) = &self.auth {
                authenticate(&mut socket, token.as_ref()).await?;
            }
            Ok::<_, SendError>(socket)
        };
        let socket = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| {
                SendError::Transport(format!(
                    "connecting and authenticating took longer than {:?}",
                    self.timeout
                ))
            })??;
        let (writer, reader) = socket.split();
        let (tell, link) = watch::channel(Link::default());
        let reader = tokio::spawn(read(reader, tell));
        Ok(Connection {
            writer,
            link,
            reader,
        })
    }

    async fn open_stream(&self) -> Result<Stream, SendError> {
        let host = self
            .endpoint
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or_default();
        let port = self.endpoint.port_or_known_default().unwrap_or(80);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| SendError::Transport(format!("could not connect: {e}")))?;
        // Frames should leave at once; batching is done above.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| SendError::Transport(format!("invalid TLS server name {host:?}: {e}")))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Transport(format!("TLS handshake failed: {e}")))?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    /// The upgrade request, with its headers.
    fn request(&self) -> Result<tungstenite::handshake::client::Request, SendError> {
        let invalid =
            |what: &str| SendError::Transport(format!("cannot build the request: {what}"));
        let mut request = self
            .endpoint
            .as_str()
            .into_client_request()
            .map_err(|e| invalid(&e.to_string()))?;
        let headers = request.headers_mut();
        if let Ok(agent) = HeaderValue::from_str(&format!("herald/{VERSION}")) {
            headers.insert(USER_AGENT, agent);
        }
        for (name, value) in &self.headers {
            // Names and values are checked at config load.
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("a header"))?;
            let mut value =
                HeaderValue::from_str(value.expose()).map_err(|_| invalid("a header"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let authorization = match &self.auth {
            Auth::Frame(token) => {
                headers.insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(SUBPROTOCOL),
                );
                token.as_ref().map(|t| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(t.expose());
                    format!("Basic {encoded}")
                })
            }
            // Prefect's own client spells it this way for Cloud.
            Auth::Bearer(key) => Some(format!("bearer {}", key.expose())),
        };
        if let Some(authorization) = authorization {
            let mut value =
                HeaderValue::from_str(&authorization).map_err(|_| invalid("the credentials"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(request)
    }
}

/// Writes the frames and a ping, waits for the pong, then for the settle
/// window.
async fn deliver(
    connection: &mut Connection,
    frames: &[Message],
    ping: u64,
    timeout: Duration,
) -> Result<(), Failure> {
    if let Some(reason) = &connection.link.borrow().closed {
        return Err(Failure::Before(SendError::Transport(reason.clone())));
    }
    let lost = |connection: &Connection, error: tungstenite::Error| {
        // The reader usually knows better why the connection ended.
        let reason = connection.link.borrow().closed.clone();
        Failure::InFlight(reason.unwrap_or_else(|| error.to_string()))
    };
    for frame in frames {
        if let Err(e) = connection.writer.feed(frame.clone()).await {
            return Err(lost(connection, e));
        }
    }
    let payload = Bytes::copy_from_slice(&ping.to_be_bytes());
    if let Err(e) = connection.writer.send(Message::Ping(payload)).await {
        return Err(lost(connection, e));
    }
    // The watch guard is dropped at once: holding it would block the reader.
    let answered = tokio::time::timeout(
        timeout,
        connection
            .link
            .wait_for(|l| l.pong >= ping || l.closed.is_some()),
    )
    .await
    .map(|link| link.map(|link| link.closed.clone()));
    match answered {
        Err(_) => return Err(Failure::NoPong),
        // The reader ended without saying why: only an abort does that.
        Ok(Err(_)) => return Err(Failure::InFlight("the connection ended".into())),
        Ok(Ok(Some(reason))) => return Err(Failure::InFlight(reason)),
        Ok(Ok(None)) => {}
    }
    let settle = settle_window(frames.len()).min(timeout);
    let ended = tokio::time::timeout(settle, connection.link.wait_for(|l| l.closed.is_some()))
        .await
        .map(|link| link.ok().and_then(|link| link.closed.clone()));
    if let Ok(reason) = ended {
        return Err(Failure::InFlight(
            reason.unwrap_or_else(|| "the connection ended".into()),
        ));
    }
    Ok(())
}

/// How long a connection must stay open after the pong for a batch of
/// `events` to count as delivered.
pub fn settle_window(events: usize) -> Duration {
    SETTLE_BASE + SETTLE_PER_EVENT * u32::try_from(events).unwrap_or(u32::MAX)
}

/// The self-hosted handshake: the auth frame, then `auth_success`.
async fn authenticate(
    socket: &mut WebSocketStream<Stream>,
    token: Option<&Secret>,
) -> Result<(), SendError> {
    let frame = json!({
        "type": "auth",
        "token": token.map(|t| Value::String(t.expose().to_owned())),
    });
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| SendError::Transport(format!("cannot send the auth frame: {e}")))?;
    let refused = |why: String| SendError::Status {
        status: 401,
        body: format!("the endpoint refused the websocket auth frame: {why}"),
        retry_after: None,
    };
    loop {
        let Some(answer) = socket.next().await else {
            return Err(SendError::Transport(
                "the connection ended before the auth answer".into(),
            ));
        };
        match answer {
            Ok(Message::Text(text)) => {
                let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                return match answer["type"].as_str() {
                    Some("auth_success") => Ok(()),
                    _ => Err(refused(
                        answer["reason"]
                            .as_str()
                            .map_or_else(|| excerpt(&text), str::to_owned),
                    )),
                };
            }
            Ok(Message::Close(Some(frame)))
                if matches!(frame.code, CloseCode::Policy | CloseCode::Protocol) =>
            {
                return Err(refused(format!(
                    "closed ({}) {}",
                    u16::from(frame.code),
                    frame.reason
                )));
            }
            Ok(Message::Close(frame)) => {
                return Err(SendError::Transport(format!(
                    "the connection was closed during auth{}",
                    frame.map_or(String::new(), |f| format!(
                        " ({}) {}",
                        u16::from(f.code),
                        f.reason
                    ))
                )));
            }
            // Pings are answered by tungstenite; nothing else is expected.
            Ok(_) => {}
            Err(e) => {
                return Err(SendError::Transport(format!(
                    "the connection failed during auth: {e}"
                )));
            }
        }
    }
}

/// Reads the server's side of a connection until it ends: pongs, and why it
/// ended. Reading also answers the server's pings (tungstenite queues the
/// pong and flushes it on the next read), which keeps an idle connection
/// alive.
async fn read(mut reader: SplitStream<WebSocketStream<Stream>>, tell: watch::Sender<Link>) {
    let reason = loop {
        match reader.next().await {
            Some(Ok(Message::Pong(payload))) => {
                if let Ok(bytes) = <[u8; 8]>::try_from(payload.as_ref()) {
                    let answered = u64::from_be_bytes(bytes);
                    tell.send_modify(|link| link.pong = link.pong.max(answered));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) if f.reason.is_empty() => {
                        format!("the endpoint closed the connection ({})", u16::from(f.code))
                    }
                    Some(f) => format!(
                        "the endpoint closed the connection ({}: {})",
                        u16::from(f.code),
                        excerpt(&f.reason)
                    ),
                    None => "the endpoint closed the connection".to_owned(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("the connection failed: {e}"),
            None => break "the connection ended".to_owned(),
        }
    };
    tell.send_modify(|link| link.closed = Some(reason));
}

/// One text frame per event.
///
/// # Errors
/// A `422` naming the first event that is not UTF-8 text (a websocket text
/// frame must be), in Prefect's shape, so the sending stage dead-letters it.
fn frames<B: AsRef<[u8]>>(batch: &[B]) -> Result<Vec<Message>, SendError> {
    batch
        .iter()
        .enumerate()
        .map(|(i, event)| {
            Utf8Bytes::try_from(Bytes::copy_from_slice(event.as_ref()))
                .map(Message::Text)
                .map_err(|_| SendError::Status {
                    status: 422,
                    body: json!({"exception_detail": [{"loc": ["body", i], "msg": "the event is not UTF-8 text"}]}).to_string(),
                    retry_after: None,
                })
        })
        .collect()
}

/// Tells one batch from another, for the strike count.
fn fingerprint<B: AsRef<[u8]>>(batch: &[B]) -> u64 {
    let mut hasher = Xxh3::new();
    for event in batch {
        hasher.update(&(event.as_ref().len() as u64).to_le_bytes());
        hasher.update(event.as_ref());
    }
    hasher.digest()
}

/// The ids of the events in `frames`, for a log line.
fn ids(frames: &[Message]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Message::Text(text) => serde_json::from_str::<Value>(text).ok(),
            _ => None,
        })
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect()
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn handshake_error(error: tungstenite::Error) -> SendError {
    match error {
        tungstenite::Error::Http(response) => SendError::Status {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .map(|b| excerpt(&String::from_utf8_lossy(b)))
                .unwrap_or_default(),
            retry_after: None,
        },
        other => SendError::Transport(format!("the websocket upgrade failed: {other}")),
    }
}

/// `{url}/events/in` with `http` turned to `ws` and `https` to `wss`.
fn events_in_url(url: &Url) -> Option<Url> {
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    let text = format!(
        "{scheme}{}/events/in",
        url.as_str()
            .strip_prefix(url.scheme())?
            .split(['?', '#'])
            .next()?
            .trim_end_matches('/')
    );
    Url::parse(&text).ok()
}

/// The TLS client configuration the config asks for: the system's roots
/// plus `ca_file`, verified unless `insecure_skip_verify`, with the client
/// identity for mutual TLS.
fn tls_config(config: &SinkConfig) -> Result<ClientConfig, SinkError> {
    let error = |what: &str, e: &dyn std::fmt::Display| SinkError::Client(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| error("TLS versions", &e))?;
    let builder = if config.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let extra: Vec<CertificateDer<'static>> = match &config.ca_pem {
            Some(pem) => CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| error("ca_file", &e))?,
            None => Vec::new(),
        };
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
            .map_err(|e| error("cannot load the system's TLS roots", &e))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut tls = match &config.client_identity_pem {
        Some(pem) => {
            let pem = pem.expose().as_bytes();
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| error("client_cert_file", &e))?;
            let key =
                PrivateKeyDer::from_pem_slice(pem).map_err(|e| error("client_key_file", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake
/// signatures are still checked, so the peer holds the key of what it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_url_follows_prefects_client() {
        for (api, expected) in [
            (
                "http://127.0.0.1:4200/api",
                "ws://127.0.0.1:4200/api/events/in",
            ),
            (
                "http://127.0.0.1:4200/api/",
                "ws://127.0.0.1:4200/api/events/in",
            ),
            (
                "https://api.prefect.cloud/api/accounts/a/workspaces/w",
                "wss://api.prefect.cloud/api/accounts/a/workspaces/w/events/in",
            ),
            ("https://[::1]:4200/api", "wss://[::1]:4200/api/events/in"),
        ] {
            let url = Url::parse(api).expect("valid");
            assert_eq!(
                events_in_url(&url).map(|u| u.to_string()).as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn the_settle_window_grows_with_the_batch() {
        assert_eq!(settle_window(0), SETTLE_BASE);
        assert_eq!(settle_window(500), Duration::from_millis(350));
    }

    #[test]
    fn text_that_is_not_utf8_is_named_like_a_422() {
        let batch: [&[u8]; 2] = [b"{}", b"\xff"];
        let Err(SendError::Status { status, body, .. }) = frames(&batch) else {
            panic!("not refused");
        };
        assert_eq!(status, 422);
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["exception_detail"][0]["loc"], json!(["body", 1]));
    }

    #[test]
    fn batches_are_told_apart() {
        let a: [&[u8]; 2] = [b"ab", b"c"];
        let b: [&[u8]; 2] = [b"a", b"bc"];
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let owned: Vec<Vec<u8>> = a.iter().map(|e| e.to_vec()).collect();
        assert_eq!(fingerprint(&a), fingerprint(&owned));
    }
}
