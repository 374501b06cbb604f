//! [`WsEndpoint`]: a stand-in for Prefect's event websocket
//! (`…/events/in`) on `127.0.0.1:0`, plain or TLS. It authenticates as
//! Prefect does (the `prefect` subprotocol and an auth frame for a
//! self-hosted server, an `Authorization` header for Cloud), records every
//! event frame, and can drop a connection the way Prefect drops it on an
//! event it cannot parse: without a close frame, that event and everything
//! after it unstored.
//!
//! Blocking `std::net` and tungstenite's server side, a thread per
//! connection, like [`MockEndpoint`](super::MockEndpoint). tungstenite
//! answers the client's pings while the connection is read, as the real
//! server's websocket layer does, independently of what the handler did
//! with the frames before them.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::tls::accept_tls;
use super::{POLL, wait_until};

/// How long a connection may sit idle before the endpoint drops it; far
/// above anything a test waits, so only a leaked connection hits it.
const IDLE: Duration = Duration::from_secs(30);

/// How clients must authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsAuth {
    /// A self-hosted server: subprotocol `prefect`, then an auth frame
    /// whose token must be this (`None`: a server without an auth string,
    /// which still requires the frame).
    Frame(Option<String>),
    /// Prefect Cloud: `Authorization: bearer <key>` on the upgrade.
    Bearer(String),
}

/// When the endpoint drops a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropRule {
    /// Once, on the event frame with this arrival number (0-based, counted
    /// over all connections and resends), which is not stored.
    AtArrival(u64),
    /// Every time an event with this `event` name arrives: a poison event
    /// Prefect cannot parse.
    OnEventName(String),
    /// Once, after the event with this arrival number: keep reading (and
    /// answering pings) for this long without storing anything, then drop.
    /// A server slower than herald's settle window.
    After(u64, Duration),
}

/// One event frame as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Which connection carried it (numbered from 0 in accept order).
    pub connection: u64,
    pub event: Value,
    /// Whether the endpoint kept it (Prefect stored it).
    pub stored: bool,
}

/// One accepted upgrade.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The request headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Whether the client authenticated.
    pub authenticated: bool,
}

impl Upgrade {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    auth: WsAuth,
    tls: Option<Arc<ServerConfig>>,
    rules: Mutex<Vec<DropRule>>,
    arrivals: Mutex<Vec<Arrival>>,
    upgrades: Mutex<Vec<Upgrade>>,
    /// Every auth frame's token as received, to check what was sent.
    tokens: Mutex<Vec<Option<String>>>,
    handshake_errors: Mutex<Vec<String>>,
    next_connection: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A websocket events endpoint. Dropping it stops the listener.
pub struct WsEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl WsEndpoint {
    /// Starts a plain (`ws://`) endpoint.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(auth: WsAuth) -> WsEndpoint {
        WsEndpoint::with(auth, None)
    }

    /// Starts a TLS (`wss://`) endpoint with `config`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start_tls(auth: WsAuth, config: Arc<ServerConfig>) -> WsEndpoint {
        WsEndpoint::with(auth, Some(config))
    }

    fn with(auth: WsAuth, tls: Option<Arc<ServerConfig>>) -> WsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("ws endpoint cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            auth,
            tls,
            rules: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            upgrades: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            handshake_errors: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("ws-accept-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else {
                            thread::sleep(POLL);
                            continue;
                        };
                        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
                        let shared = Arc::clone(&shared);
                        // Out of threads: the connection closes and the
                        // test sees it.
                        let _ = thread::Builder::new()
                            .name(format!("ws-conn-{id}"))
                            .spawn(move || connection(stream, id, &shared));
                    }
                })
                .expect("spawn the ws accept thread")
        };
        WsEndpoint {
            addr,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The API base URL herald is configured with (`http://` or
    /// `https://`); herald derives `ws[s]://…/api/events/in` from it.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/api", self.addr)
    }

    /// Adds a rule for dropping connections.
    pub fn drop_when(&self, rule: DropRule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Every event frame so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.shared.arrivals).clone()
    }

    /// The events the endpoint kept (a resent one may appear twice).
    pub fn stored(&self) -> Vec<Value> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.stored)
            .map(|a| a.event)
            .collect()
    }

    /// Whether an event with this id was kept.
    pub fn stored_id(&self, id: &str) -> bool {
        self.stored().iter().any(|e| e["id"] == id)
    }

    pub fn upgrades(&self) -> Vec<Upgrade> {
        lock(&self.shared.upgrades).clone()
    }

    /// The token of every auth frame received.
    pub fn tokens(&self) -> Vec<Option<String>> {
        lock(&self.shared.tokens).clone()
    }

    pub fn handshake_errors(&self) -> Vec<String> {
        lock(&self.shared.handshake_errors).clone()
    }

    /// Waits until at least `n` events were kept and returns them.
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub fn wait_for_stored(&self, n: usize, timeout: Duration) -> Vec<Value> {
        if wait_until(timeout, || self.stored().len() >= n) {
            return self.stored();
        }
        panic!(
            "ws endpoint: wanted {n} stored events within {timeout:?}\n{}",
            self.describe()
        );
    }

    /// What arrived, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} upgrades, tokens {:?}, TLS errors {:?}\n",
            self.upgrades().len(),
            self.tokens()
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>(),
            self.handshake_errors()
        );
        for a in self.arrivals() {
            out.push_str(&format!(
                "  conn {} {} {} {}\n",
                a.connection,
                a.event["event"],
                a.event["id"],
                if a.stored { "stored" } else { "dropped" }
            ));
        }
        out
    }
}

impl Drop for WsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn connection(stream: TcpStream, id: u64, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(tcp) = stream.try_clone() else {
        return;
    };
    match &shared.tls {
        None => serve(stream, &tcp, id, shared),
        Some(config) => {
            if let Ok(tls) = accept_tls(stream, config, &shared.handshake_errors) {
                serve(tls, &tcp, id, shared);
            }
        }
    }
    let _ = tcp.shutdown(Shutdown::Both);
}

/// The upgrade, the auth, then event frames until the client leaves or a
/// rule drops the connection. `tcp` is the socket under `stream`, for read
/// timeouts and the drop.
fn serve<S: Read + Write>(stream: S, tcp: &TcpStream, id: u64, shared: &Shared) {
    let mut headers = Vec::new();
    // tungstenite's `Callback` fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        headers = request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "prefect");
        match &shared.auth {
            WsAuth::Frame(_) if offered => {
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("prefect"),
                );
                Ok(response)
            }
            WsAuth::Frame(_) => Err(refuse(StatusCode::BAD_REQUEST, "subprotocol required")),
            WsAuth::Bearer(key) => {
                let expected = format!("bearer {key}");
                let sent = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                if sent.is_some_and(|s| s.eq_ignore_ascii_case(&expected)) {
                    Ok(response)
                } else {
                    Err(refuse(StatusCode::UNAUTHORIZED, "Invalid API key"))
                }
            }
        }
    };
    // `.ok()` drops a failed handshake, and the callback's hold on
    // `headers` with it.
    let accepted = tungstenite::accept_hdr(stream, callback).ok();
    let Some(mut socket) = accepted else {
        lock(&shared.upgrades).push(Upgrade {
            headers,
            authenticated: false,
        });
        return;
    };
    let authenticated = match &shared.auth {
        WsAuth::Bearer(_) => true,
        WsAuth::Frame(expected) => authenticate(&mut socket, expected.as_deref(), shared),
    };
    lock(&shared.upgrades).push(Upgrade {
        headers,
        authenticated,
    });
    if !authenticated {
        return;
    }
    // Some(deadline): a rule said to drop the connection then, keeping
    // nothing until it does.
    let mut dropping: Option<Instant> = None;
    loop {
        if dropping.is_some_and(|at| Instant::now() >= at) {
            return;
        }
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e))
                if dropping.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let arrival = shared.arrivals_so_far();
        let rule = if dropping.is_some() {
            None
        } else {
            shared.take_rule(arrival, &event)
        };
        let stored = dropping.is_none() && rule.is_none();
        lock(&shared.arrivals).push(Arrival {
            connection: id,
            event,
            stored,
        });
        match rule {
            Some(DropRule::After(_, delay)) => {
                let _ = tcp.set_read_timeout(Some(POLL));
                dropping = Some(Instant::now() + delay);
            }
            Some(_) => return,
            None => {}
        }
    }
}

/// Prefect's auth handshake: the first frame must be the auth frame with
/// the right token; a wrong one gets a policy-violation close.
fn authenticate<S: Read + Write>(
    socket: &mut WebSocket<S>,
    expected: Option<&str>,
    shared: &Shared,
) -> bool {
    let Ok(Message::Text(text)) = socket.read() else {
        return false;
    };
    let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let token = frame["token"].as_str().map(str::to_owned);
    lock(&shared.tokens).push(token.clone());
    let ok = frame["type"] == "auth" && (expected.is_none() || token.as_deref() == expected);
    if ok {
        let answer = json!({"type": "auth_success"}).to_string();
        return socket.send(Message::Text(answer.into())).is_ok();
    }
    let _ = socket.close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: "Invalid token".into(),
    }));
    // Lets the close frame go out before the socket is shut.
    let _ = socket.flush();
    false
}

impl Shared {
    fn arrivals_so_far(&self) -> u64 {
        lock(&self.arrivals).len() as u64
    }

    /// The rule that applies to this arrival, if any; one-shot rules are
    /// used up.
    fn take_rule(&self, arrival: u64, event: &Value) -> Option<DropRule> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|rule| match rule {
            DropRule::AtArrival(n) | DropRule::After(n, _) => *n == arrival,
            DropRule::OnEventName(name) => event["event"] == name.as_str(),
        })?;
        Some(match &rules[index] {
            DropRule::OnEventName(_) => rules[index].clone(),
            _ => rules.remove(index),
        })
    }
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(json!({ "detail": why }).to_string()));
    *response.status_mut() = status;
    response
}
