//! Tests of the test harness itself (`tests/support`): the mock endpoint is
//! driven by a plain `TcpStream` client that writes HTTP/1.1 by hand, and the
//! process helper by `sh`, so these pass whatever state herald is in.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{MockEndpoint, Reply, herald, wait_until};

const WAIT: Duration = Duration::from_secs(10);

/// A response as the hand-written client read it.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(mock: &MockEndpoint) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(mock.addr()).expect("connect to the mock");
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    BufReader::new(stream)
}

fn post(conn: &mut BufReader<TcpStream>, path: &str, body: &str) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut()
        .write_all(request.as_bytes())
        .expect("write the request");
}

fn read_response(conn: &mut BufReader<TcpStream>) -> io::Result<Response> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (n, v) = trimmed.split_once(':').expect("header has a colon");
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("numeric content-length"));
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn batch(ids: &[&str]) -> String {
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "occurred": "2026-01-01T00:00:00.000000Z",
                "event": "herald.selftest",
                "resource": {"prefect.resource.id": "herald.selftest"},
            })
        })
        .collect();
    Value::Array(events).to_string()
}

#[test]
fn a_post_is_answered_204_and_recorded() {
    let mock = MockEndpoint::start();
    assert!(mock.url().starts_with("http://127.0.0.1:"));
    assert!(mock.url().ends_with("/api"));
    let mut conn = connect(&mock);
    let body = batch(&["e1", "e2"]);
    post(&mut conn, "/api/events", &body);

    let response = read_response(&mut conn).expect("a response");
    assert_eq!(response.status, 204);
    assert_eq!(response.header("content-length"), None, "204 has no length");

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/events");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.body, body.as_bytes());
    assert!(r.accepted());
    let ids: Vec<_> = mock.events().iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, [json!("e1"), json!("e2")]);
}

#[test]
fn scripted_429_then_204_on_one_kept_alive_connection() {
    let mock = MockEndpoint::start();
    mock.push(Reply::retry_after(429, "2"));
    let mut conn = connect(&mock);

    post(&mut conn, "/api/events", &batch(&["a"]));
    let first = read_response(&mut conn).expect("first response");
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("2"));

    post(&mut conn, "/api/events", &batch(&["a"]));
    let second = read_response(&mut conn).expect("second response");
    assert_eq!(second.status, 204);

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].connection, requests[1].connection);
    assert_eq!(mock.connections(), 1);
    assert_eq!(mock.events().len(), 2, "both attempts are recorded");
    assert_eq!(mock.accepted_events().len(), 1, "only the 204 one stored");
    assert_eq!(mock.script_left(), 0);
}

#[test]
fn reset_aborts_the_connection_without_an_answer() {
    let mock = MockEndpoint::start();
    mock.push(Reply::Reset);
    let mut conn = connect(&mock);
    post(&mut conn, "/api/events", &batch(&["r"]));

    let err = read_response(&mut conn).expect_err("no answer after a reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(mock.requests().len(), 1, "the request itself is recorded");
    assert!(!mock.requests()[0].accepted());
    assert!(mock.accepted_events().is_empty());

    // The next request, on a new connection, gets the default.
    let mut conn = connect(&mock);
    post(&mut conn, "/api/events", &batch(&["r"]));
    assert_eq!(read_response(&mut conn).expect("answer").status, 204);
}

#[test]
fn a_chunked_body_is_reassembled() {
    let mock = MockEndpoint::start();
    let mut conn = connect(&mock);
    let body = batch(&["c1", "c2", "c3"]);
    let (a, b) = body.split_at(body.len() / 3);
    let mut request =
        String::from("POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for chunk in [a, b] {
        request.push_str(&format!("{:x};ext=1\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\nx-trailer: t\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).expect("write");

    assert_eq!(read_response(&mut conn).expect("answer").status, 204);
    assert_eq!(mock.requests()[0].body, body.as_bytes());
    assert_eq!(mock.events().len(), 3);
}

#[test]
fn expect_100_continue_is_honoured() {
    let mock = MockEndpoint::start();
    let mut conn = connect(&mock);
    let body = batch(&["x"]);
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut()
        .write_all(head.as_bytes())
        .expect("write head");
    let interim = read_response(&mut conn).expect("interim response");
    assert_eq!(interim.status, 100);
    conn.get_mut()
        .write_all(body.as_bytes())
        .expect("write body");
    assert_eq!(read_response(&mut conn).expect("final").status, 204);
    assert_eq!(mock.events().len(), 1);
}

#[test]
fn unprocessable_looks_like_prefects_422() {
    let mock = MockEndpoint::start();
    mock.push(Reply::Unprocessable { index: 1 });
    let mut conn = connect(&mock);
    let body = batch(&["ok", "bad", "ok2"]);
    post(&mut conn, "/api/events", &body);

    let response = read_response(&mut conn).expect("answer");
    assert_eq!(response.status, 422);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let detail: Value = serde_json::from_slice(&response.body).expect("JSON body");
    assert_eq!(detail["exception_message"], "Invalid request received.");
    assert_eq!(
        detail["exception_detail"][0]["loc"],
        json!(["body", 1, "resource"])
    );
    assert_eq!(detail["exception_detail"][0]["type"], "missing");
    assert_eq!(detail["exception_detail"][0]["input"]["id"], "bad");
    let sent: Value = serde_json::from_str(&body).expect("our own JSON");
    assert_eq!(detail["request_body"], sent);
}

#[test]
fn stall_holds_the_connection_then_closes_it() {
    let mock = MockEndpoint::start();
    mock.push(Reply::Stall(Duration::from_millis(600)));
    let mut conn = connect(&mock);
    conn.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    post(&mut conn, "/api/events", &batch(&["s"]));
    let err = read_response(&mut conn).expect_err("nothing within 200 ms");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    conn.get_mut()
        .set_read_timeout(Some(WAIT))
        .expect("timeout");
    let mut rest = Vec::new();
    let started = Instant::now();
    conn.read_to_end(&mut rest)
        .expect("clean close after the stall");
    assert!(rest.is_empty(), "the stall never answers");
    assert!(started.elapsed() < WAIT);
}

#[test]
fn stop_refuses_connections_and_start_again_reuses_the_port() {
    let mock = MockEndpoint::start();
    let url = mock.url();
    let mut idle = connect(&mock);
    post(&mut idle, "/api/events", &batch(&["1"]));
    assert_eq!(read_response(&mut idle).expect("answer").status, 204);

    mock.stop();
    assert!(!mock.is_up());
    let refused = TcpStream::connect(mock.addr()).expect_err("down");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    // The kept-alive connection was closed too: no server answers on it.
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "idle connection still open: {closed:?}"
    );

    mock.start_again();
    assert_eq!(mock.url(), url);
    let mut conn = connect(&mock);
    post(&mut conn, "/api/events", &batch(&["2"]));
    assert_eq!(read_response(&mut conn).expect("answer").status, 204);
    assert_eq!(mock.accepted_events().len(), 2);
}

#[test]
fn other_routes_do_not_consume_the_script() {
    let mock = MockEndpoint::start();
    mock.push(Reply::Status(503));
    let mut conn = connect(&mock);
    conn.get_mut()
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let health = read_response(&mut conn).expect("health");
    assert_eq!((health.status, health.body.as_slice()), (200, &b"true"[..]));
    post(&mut conn, "/api/events/filter", "{}");
    assert_eq!(read_response(&mut conn).expect("404").status, 404);
    post(&mut conn, "/api/events", &batch(&["z"]));
    assert_eq!(read_response(&mut conn).expect("503").status, 503);
}

#[test]
fn connection_close_is_respected() {
    let mock = MockEndpoint::start();
    let mut conn = connect(&mock);
    let body = batch(&["c"]);
    let request = format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes()).expect("write");
    let response = read_response(&mut conn).expect("answer");
    assert_eq!(response.status, 204);
    assert_eq!(response.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).expect("eof"), 0);
}

#[test]
fn wait_for_events_sees_events_posted_later() {
    let mock = MockEndpoint::start();
    let addr = mock.addr();
    let poster = thread::spawn(move || {
        for id in ["w1", "w2", "w3"] {
            let stream = TcpStream::connect(addr).expect("connect");
            let mut conn = BufReader::new(stream);
            post(&mut conn, "/api/events", &batch(&[id]));
            read_response(&mut conn).expect("answer");
        }
    });
    let events = mock.wait_for_events(3, WAIT);
    assert_eq!(events.len(), 3);
    poster.join().expect("poster thread");
    assert_eq!(mock.connections(), 3);
}

#[test]
#[should_panic(expected = "wanted 1 accepted events")]
fn wait_for_events_panics_with_what_it_saw() {
    let mock = MockEndpoint::start();
    mock.wait_for_events(1, Duration::from_millis(50));
}

#[test]
fn process_helper_captures_output_and_scrubs_the_environment() {
    let finished = herald()
        .program("sh")
        .args(["-c", "echo out; echo err >&2; env"])
        .env("HERALD_EXPLICIT", "yes")
        .run(WAIT);
    assert!(finished.status.success());
    assert_eq!(finished.stdout[0], "out");
    assert_eq!(finished.stderr, ["err"]);
    let env = &finished.stdout[1..];
    assert!(env.iter().any(|l| l == "HERALD_EXPLICIT=yes"));
    assert!(env.iter().any(|l| l == "NO_PROXY=127.0.0.1,localhost,::1"));
    let leaked: Vec<_> = env
        .iter()
        .filter(|l| l.starts_with("PREFECT_") || l.starts_with("RUST_LOG="))
        .collect();
    assert!(leaked.is_empty(), "leaked from the parent: {leaked:?}");
    // The only HERALD_ variables are the test's own and the per-process
    // data_dir the harness gives every herald.
    assert!(
        env.iter().all(|l| !l.starts_with("HERALD_")
            || l == "HERALD_EXPLICIT=yes"
            || l.starts_with("HERALD_AGENT_DATA_DIR=")),
        "{env:?}"
    );
}

#[test]
fn process_helper_signals_and_waits() {
    let mut child = herald()
        .program("sh")
        .args([
            "-c",
            "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .spawn();
    child.wait_for_stdout_line(|l| l == "ready", WAIT);
    assert!(child.try_status().is_none());
    child.sigterm();
    let status = child.wait_exit(WAIT);
    assert_eq!(status.code(), Some(7));
    assert_eq!(child.stdout_lines(), ["ready", "bye"]);
    assert!(child.cwd().is_dir(), "runs in its own temp dir");

    let mut stubborn = herald()
        .program("sh")
        .args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .spawn();
    stubborn.wait_for_stdout_line(|l| l == "ready", WAIT);
    stubborn.sigterm();
    assert!(!wait_until(Duration::from_millis(300), || stubborn
        .try_status()
        .is_some()));
    stubborn.sigkill();
    assert_eq!(stubborn.wait_exit(WAIT).code(), None, "killed by a signal");
}

#[test]
fn process_helper_feeds_stdin() {
    let finished = herald()
        .program("sh")
        .args(["-c", "cat"])
        .stdin("line one\nline two\n")
        .run(WAIT);
    assert_eq!(finished.stdout, ["line one", "line two"]);
}

#[test]
fn the_herald_binary_runs() {
    // Only that the binary Cargo built starts and answers `--help` with
    // success; what it prints is for herald's own tests.
    let finished = herald().arg("--help").run(WAIT);
    assert!(
        finished.status.success(),
        "{finished:?}\nstderr: {}",
        finished.stderr_text()
    );
}

/// The mock against the HTTP client herald uses: keep-alive reuse, a 204
/// without a length, a scripted 429, a reset, and a server that goes away
/// and comes back while the client holds a pooled connection.
#[tokio::test]
async fn reqwest_talks_to_the_mock() {
    // herald picks ring; reqwest is built without a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockEndpoint::start();
    let client = reqwest::Client::new();
    let url = format!("{}/events", mock.url());
    let send = |ids: &'static [&'static str]| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(batch(ids))
            .send()
    };

    assert_eq!(send(&["q1"]).await.expect("204").status(), 204);
    mock.push(Reply::retry_after(
        429,
        &support::http_date(Duration::from_secs(2)),
    ));
    let limited = send(&["q2"]).await.expect("429");
    assert_eq!(limited.status(), 429);
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .ends_with(" GMT")
    );
    assert_eq!(send(&["q2"]).await.expect("204").status(), 204);
    assert_eq!(mock.connections(), 1, "{}", mock.describe());

    mock.push(Reply::Reset);
    send(&["q3"]).await.expect_err("reset is an error");

    mock.stop();
    send(&["q4"]).await.expect_err("down is an error");
    mock.start_again();
    assert_eq!(send(&["q4"]).await.expect("back up").status(), 204);

    let ids: Vec<_> = mock
        .accepted_events()
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["q1", "q2", "q4"]);
}
