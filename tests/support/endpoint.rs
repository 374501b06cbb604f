//! [`MockEndpoint`]: a real HTTP/1.1 server on `127.0.0.1:0` that stands in
//! for Prefect's events endpoint, records every request and answers
//! `POST …/events` from a script.
//!
//! It is deliberately plain blocking `std::net` with a thread per connection:
//! tests stay independent of the async runtime herald itself uses, and the
//! wire behaviour (keep-alive, chunked bodies, `Expect: 100-continue`, resets,
//! a server that goes away) is exactly what a real server does.
//!
//! Which requests consume the script: only `POST` whose path ends in
//! `/events` (the ingestion route). Anything else is answered like a healthy
//! Prefect server would: `GET …/health` gets `200 true`, the rest `404`. So a
//! health probe or a stray request never eats a scripted failure.
//!
//! Not its job: validating events the way Prefect does. A test that wants a
//! 422 scripts one; `tests/*` that care about Prefect's real rules use the
//! e2e script against a real server.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::{POLL, wait_until};

/// Largest request head or body the mock accepts; far above anything herald
/// sends (Prefect's own per-event cap is 1.5 MB), low enough that a runaway
/// client fails a test instead of eating the machine's memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What the mock does with one `POST …/events` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status and no body (204 is Prefect's success).
    Status(u16),
    /// Answer with this status, these extra headers and this body, e.g. a 429
    /// with `Retry-After`. A non-empty body without a `content-type` header
    /// is sent as `application/json`.
    StatusWithHeaders(u16, Vec<(String, String)>, String),
    /// Answer 422 the way Prefect does when batch item `index` lacks its
    /// `resource`: `exception_detail[0].loc == ["body", index, "resource"]`.
    Unprocessable { index: usize },
    /// Read the request, then abort the connection (RST) without answering.
    Reset,
    /// Hold the connection without answering for this long (or until the
    /// endpoint is stopped), then close it.
    Stall(Duration),
}

impl Reply {
    /// A `status` answer carrying `Retry-After: value` (seconds or an
    /// HTTP-date, see [`http_date`]).
    pub fn retry_after(status: u16, value: &str) -> Reply {
        Reply::StatusWithHeaders(
            status,
            vec![("Retry-After".to_owned(), value.to_owned())],
            r#"{"detail":"Too Many Requests"}"#.to_owned(),
        )
    }

    /// The HTTP status this reply answers with; `None` when it never answers.
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Status(s) | Reply::StatusWithHeaders(s, _, _) => Some(*s),
            Reply::Unprocessable { .. } => Some(422),
            Reply::Reset | Reply::Stall(_) => None,
        }
    }
}

/// Formats `now + after` as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// for `Retry-After` headers.
pub fn http_date(after: Duration) -> String {
    let at: chrono::DateTime<chrono::Utc> = (SystemTime::now() + after).into();
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target as sent, query included.
    pub target: String,
    /// The target without its query string.
    pub path: String,
    /// Header names lowercased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// When the whole request (body included) had been read.
    pub received: Instant,
    /// Which TCP connection carried it (numbered from 0 in accept order), so a
    /// test can tell whether the client reused a connection.
    pub connection: u64,
    /// What the mock did with it.
    pub reply: Reply,
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `POST …/events`: an ingestion request.
    pub fn is_event_post(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/events")
    }

    /// Whether the mock answered it with a 2xx (Prefect "stored" it).
    pub fn accepted(&self) -> bool {
        self.reply.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// The body parsed as a JSON array of events.
    ///
    /// # Panics
    /// If the body is not a JSON array: herald sent something Prefect would
    /// reject, which is a test failure in itself.
    pub fn events(&self) -> Vec<Value> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Array(events)) => events,
            Ok(other) => panic!(
                "{} {} body is JSON but not an array: {other}",
                self.method, self.target
            ),
            Err(e) => panic!(
                "{} {} body is not JSON ({e}): {}",
                self.method,
                self.target,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }
}

/// A scripted HTTP/1.1 stand-in for Prefect's events endpoint.
///
/// All methods take `&self`, so a test can share one endpoint with helper
/// threads. Dropping it stops the listener and closes every connection.
pub struct MockEndpoint {
    shared: Arc<Shared>,
    acceptor: Mutex<Option<Acceptor>>,
}

/// The running accept loop, kept so [`MockEndpoint::stop`] can end it.
struct Acceptor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// State the accept loop and connection threads share with the test.
struct Shared {
    /// Fixed for the endpoint's life, so `start_again` keeps the URL valid.
    addr: SocketAddr,
    plan: Mutex<Plan>,
    requests: Mutex<Vec<Request>>,
    /// A clone of every open connection, so `stop` can shut them down: a
    /// server that is down must not keep answering on kept-alive sockets.
    live: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    /// Bumped by every `stop`; a stalled connection from an older epoch ends.
    epoch: AtomicU64,
}

/// The scripted replies still to give, then the one given when they run out.
struct Plan {
    script: VecDeque<Reply>,
    default: Reply,
}

/// Locks, ignoring poisoning: a panicking test thread must not turn every
/// later assertion into a confusing `PoisonError`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockEndpoint {
    /// Starts an endpoint that answers every event POST with `204`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start() -> MockEndpoint {
        MockEndpoint::with_default(Reply::Status(204))
    }

    /// Starts an endpoint whose answer, once the script is used up, is
    /// `default`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn with_default(default: Reply) -> MockEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("mock endpoint cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("mock endpoint has no local address: {e}"));
        let shared = Arc::new(Shared {
            addr,
            plan: Mutex::new(Plan {
                script: VecDeque::new(),
                default,
            }),
            requests: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        });
        let acceptor = spawn_acceptor(listener, Arc::clone(&shared));
        MockEndpoint {
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    /// The API base URL, as `PREFECT_API_URL` or `[sink] url` would hold it:
    /// `http://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Appends one reply to the script.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared.plan).script.push_back(reply);
    }

    /// Appends replies to the script, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.plan).script.extend(replies);
    }

    /// Sets the reply given once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared.plan).default = reply;
    }

    /// How many scripted replies have not been used yet.
    pub fn script_left(&self) -> usize {
        lock(&self.shared.plan).script.len()
    }

    /// Every request so far, in the order they were fully read.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// Only the `POST …/events` requests.
    pub fn event_posts(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_event_post)
            .collect()
    }

    /// Every event in every `POST …/events` body, flattened, whatever the
    /// mock answered (so a retried batch appears more than once).
    ///
    /// # Panics
    /// If a body is not a JSON array.
    pub fn events(&self) -> Vec<Value> {
        self.event_posts()
            .iter()
            .flat_map(Request::events)
            .collect()
    }

    /// The events of the event POSTs answered with a 2xx: what a real server
    /// would have stored (duplicates by id included; Prefect drops those).
    ///
    /// # Panics
    /// If a body is not a JSON array.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.event_posts()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(Request::events)
            .collect()
    }

    /// What Prefect would keep of the accepted events: the first copy of
    /// each id, in arrival order, of those whose name starts with
    /// `prefix` ("" for all).
    pub fn distinct_events(&self, prefix: &str) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.accepted_events()
            .into_iter()
            .filter(|e| e["event"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// How many TCP connections have been accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.next_connection.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` events have been accepted (see
    /// [`accepted_events`](Self::accepted_events)) and returns them all.
    ///
    /// # Panics
    /// When `timeout` passes first, listing what was received.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        if wait_until(timeout, || self.accepted_events().len() >= n) {
            return self.accepted_events();
        }
        panic!(
            "mock endpoint: wanted {n} accepted events within {timeout:?}, got {}\n{}",
            self.accepted_events().len(),
            self.describe()
        );
    }

    /// Waits until at least `n` requests of any kind have been received and
    /// returns them all.
    ///
    /// # Panics
    /// When `timeout` passes first, listing what was received.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        if wait_until(timeout, || lock(&self.shared.requests).len() >= n) {
            return self.requests();
        }
        panic!(
            "mock endpoint: wanted {n} requests within {timeout:?}\n{}",
            self.describe()
        );
    }

    /// One line per request received, for failure messages.
    pub fn describe(&self) -> String {
        let requests = self.requests();
        let mut out = format!("{} requests received:\n", requests.len());
        for (i, r) in requests.iter().enumerate() {
            out.push_str(&format!(
                "  #{i} conn {} {} {} ({} body bytes) -> {:?}\n",
                r.connection,
                r.method,
                r.target,
                r.body.len(),
                r.reply
            ));
        }
        out
    }

    /// Whether the listener is accepting connections.
    pub fn is_up(&self) -> bool {
        lock(&self.acceptor).is_some()
    }

    /// Takes the endpoint down: closes the listener (new connections are
    /// refused) and shuts down every open connection, including kept-alive
    /// idle ones and stalled ones. Recorded requests and the script are kept.
    /// Does nothing if already stopped.
    pub fn stop(&self) {
        let Some(acceptor) = lock(&self.acceptor).take() else {
            return;
        };
        acceptor.stop.store(true, Ordering::SeqCst);
        // The accept loop is blocked in accept(); a connection of our own
        // wakes it so it can see the flag. If the connect fails the listener
        // is already unusable and the loop has ended by itself.
        let _ = TcpStream::connect_timeout(&self.shared.addr, Duration::from_secs(2));
        let _ = acceptor.handle.join();
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for (_, stream) in lock(&self.shared.live).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Brings a stopped endpoint back on the same port. Does nothing if it is
    /// running.
    ///
    /// # Panics
    /// If the port cannot be bound again within 5 s (something else took it).
    pub fn start_again(&self) {
        let mut acceptor = lock(&self.acceptor);
        if acceptor.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.shared.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    panic!("mock endpoint cannot bind {} again: {e}", self.shared.addr)
                }
                Err(_) => thread::sleep(POLL),
            }
        };
        *acceptor = Some(spawn_acceptor(listener, Arc::clone(&self.shared)));
    }
}

impl Drop for MockEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> Acceptor {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = thread::Builder::new()
        .name(format!("mock-accept-{}", shared.addr.port()))
        .spawn(move || accept_loop(&listener, &flag, &shared))
        .unwrap_or_else(|e| panic!("cannot spawn mock accept thread: {e}"));
    Acceptor { stop, handle }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(POLL);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        let epoch = shared.epoch.load(Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.live).insert(id, clone);
        }
        let shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("mock-conn-{id}"))
            .spawn(move || serve_connection(stream, id, epoch, &shared));
        if spawned.is_err() {
            // Out of threads: the stream was moved into the failed closure
            // and is closed; the client sees a reset, which a test reports.
            continue;
        }
    }
}

/// How a connection ends.
enum End {
    /// Close normally (FIN).
    Close,
    /// Abort (RST), as [`Reply::Reset`] asks.
    Reset,
}

fn serve_connection(stream: TcpStream, id: u64, epoch: u64, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let end = serve(&mut reader, id, epoch, shared);
    // Drop our clone first: the RST is sent on the socket's last close only.
    lock(&shared.live).remove(&id);
    let stream = reader.into_inner();
    if let End::Reset = end {
        // SO_LINGER 0 makes close() abort the connection with an RST. tokio's
        // socket type gives that without unsafe code and without a runtime.
        let socket = tokio::net::TcpSocket::from_std_stream(stream);
        let _ = socket.set_zero_linger();
    }
}

fn serve(reader: &mut BufReader<TcpStream>, id: u64, epoch: u64, shared: &Shared) -> End {
    loop {
        let head = match read_head(reader) {
            Ok(Some(head)) => head,
            Ok(None) => return End::Close,
            Err(e) => {
                let body = json!({ "detail": format!("bad request: {e}") }).to_string();
                let _ = write_response(reader.get_mut(), 400, &[], body.as_bytes(), true);
                return End::Close;
            }
        };
        if head.expects_continue()
            && reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return End::Close;
        }
        let body = match read_body(reader, &head) {
            Ok(body) => body,
            Err(_) => return End::Close,
        };
        let path = head.target.split('?').next().unwrap_or("").to_owned();
        let is_event_post = head.method == "POST" && path.ends_with("/events");
        let reply = if is_event_post {
            let mut plan = lock(&shared.plan);
            let default = plan.default.clone();
            plan.script.pop_front().unwrap_or(default)
        } else if head.method == "GET" && path.ends_with("/health") {
            Reply::StatusWithHeaders(200, Vec::new(), "true".to_owned())
        } else {
            Reply::StatusWithHeaders(404, Vec::new(), r#"{"detail":"Not Found"}"#.to_owned())
        };
        let close = head.wants_close();
        let unprocessable_body = match &reply {
            Reply::Unprocessable { index } => Some(prefect_422_body(*index, &body)),
            _ => None,
        };
        lock(&shared.requests).push(Request {
            method: head.method,
            target: head.target,
            path,
            headers: head.headers,
            body,
            received: Instant::now(),
            connection: id,
            reply: reply.clone(),
        });
        let stream = reader.get_mut();
        let written = match reply {
            Reply::Status(status) => write_response(stream, status, &[], b"", close),
            Reply::StatusWithHeaders(status, headers, body) => {
                write_response(stream, status, &headers, body.as_bytes(), close)
            }
            Reply::Unprocessable { .. } => {
                let body = unprocessable_body.unwrap_or_default();
                write_response(stream, 422, &[], body.as_bytes(), close)
            }
            Reply::Reset => return End::Reset,
            Reply::Stall(duration) => {
                let until = Instant::now() + duration;
                while Instant::now() < until && shared.epoch.load(Ordering::SeqCst) == epoch {
                    thread::sleep(POLL);
                }
                return End::Close;
            }
        };
        if written.is_err() || close {
            return End::Close;
        }
    }
}

/// The body Prefect 3.9.1 answers when batch item `index` has no `resource`:
/// a FastAPI validation error plus the request body echoed back.
fn prefect_422_body(index: usize, request_body: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(request_body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(request_body).into_owned()));
    let input = parsed.get(index).cloned().unwrap_or(Value::Null);
    json!({
        "exception_message": "Invalid request received.",
        "exception_detail": [{
            "type": "missing",
            "loc": ["body", index, "resource"],
            "msg": "Field required",
            "input": input,
        }],
        "request_body": parsed,
    })
    .to_string()
}

/// A request line and its headers.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    fn wants_close(&self) -> bool {
        if self.version == "HTTP/1.0" {
            !self.has_token("connection", "keep-alive")
        } else {
            self.has_token("connection", "close")
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF- (or LF-) terminated line without its terminator; `None`
/// at a clean end of stream.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    let mut raw = Vec::new();
    let n = reader
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut raw)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(invalid("request head too large"));
    }
    *budget -= n;
    if raw.last() != Some(&b'\n') {
        return Err(invalid("connection closed mid-line"));
    }
    raw.pop();
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| invalid("request head is not UTF-8"))
}

/// Reads a request line and headers; `None` when the client closed the
/// connection between requests.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD_BYTES;
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let request_line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(invalid("connection closed inside the headers"));
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    }))
}

fn read_body(reader: &mut impl BufRead, head: &Head) -> io::Result<Vec<u8>> {
    if head.has_token("transfer-encoding", "chunked") {
        return read_chunked(reader);
    }
    let Some(length) = head.header("content-length") else {
        return Ok(Vec::new());
    };
    let length: usize = length
        .parse()
        .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
    if length > MAX_BODY_BYTES {
        return Err(invalid("body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD_BYTES;
        let line = read_line(reader, &mut budget)?.ok_or_else(|| invalid("eof in chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailer fields, then the empty line that ends the message.
            loop {
                let trailer =
                    read_line(reader, &mut budget)?.ok_or_else(|| invalid("eof in trailer"))?;
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    // RFC 9110 §8.6: no Content-Length (and no body) on 1xx, 204 and 304.
    let bodiless = status < 200 || status == 204 || status == 304;
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let has = |n: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if !bodiless {
        if !body.is_empty() && !has("content-type") {
            out.push_str("content-type: application/json\r\n");
        }
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !bodiless {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}
