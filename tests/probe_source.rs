//! The probe source end to end: the real binary probes a real TCP listener
//! and a real HTTP server on 127.0.0.1 that go down and come back, and
//! posts to a mock endpoint. Each transition arrives exactly once, nothing
//! repeats while a level holds, and a restart does not announce the held
//! level again.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;
use support::tls::{ClientAuth, Pki, TlsEndpoint};
use support::{
    Herald, MockEndpoint, agent_and_sink, herald, prefect_rules, wait_until, write_config,
};
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(30);

/// A TCP listener that accepts (and closes) connections until it is taken
/// down, and can be brought up again on the same port.
struct Listener {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Listener {
    fn start() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
        let address = listener.local_addr().expect("address");
        let mut this = Listener {
            address,
            accepted: Arc::default(),
            running: None,
        };
        this.serve(listener);
        this
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::clone(&self.accepted);
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some((stop, handle));
    }

    /// Closes the port: connections are refused.
    fn down(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            handle.join().expect("accept thread");
        }
    }

    /// Listens on the same port again.
    fn up(&mut self) {
        let listener = TcpListener::bind(self.address).expect("the same port again");
        self.serve(listener);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.down();
    }
}

/// An HTTP server answering every request with the status it is set to.
struct StatusServer {
    address: SocketAddr,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
    /// Stops the accept loop when the server is dropped.
    _listener: Listener,
}

impl StatusServer {
    fn start(status: u16) -> StatusServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
        let address = listener.local_addr().expect("address");
        let status = Arc::new(AtomicU16::new(status));
        let requests = Arc::new(AtomicUsize::new(0));
        let (answer, count) = (Arc::clone(&status), Arc::clone(&requests));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (answer, count) = (Arc::clone(&answer), Arc::clone(&count));
                        thread::spawn(move || respond(stream, &answer, &count));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StatusServer {
            address,
            status,
            requests,
            _listener: Listener {
                address,
                accepted: Arc::default(),
                running: Some((stop, handle)),
            },
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn respond(stream: TcpStream, status: &AtomicU16, count: &AtomicUsize) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // The request head, up to its empty line.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    let status = status.load(Ordering::SeqCst);
    let _ = (&stream).write_all(
        format!("HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
}

/// A temp dir, a mock endpoint and a config with one probe source.
struct Rig {
    dir: TempDir,
    endpoint: MockEndpoint,
    config: PathBuf,
}

impl Rig {
    /// One probe named `name`, checking every 400ms; `probe` holds its
    /// target and further keys.
    fn new(name: &str, probe: &str) -> Rig {
        Rig::with_sources(&format!(
            "[[sources.probe]]\nname = \"{name}\"\ninterval = \"400ms\"\ntimeout = \"400ms\"\n{probe}\n"
        ))
    }

    fn with_sources(sources: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = MockEndpoint::start();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
{head}
{sources}
"#,
                head = agent_and_sink(&endpoint.url()),
            ),
        );
        Rig {
            dir,
            endpoint,
            config,
        }
    }

    fn start(&self) -> Herald {
        let agent = herald()
            .args(["run", "--config"])
            .arg(&self.config)
            .env("HERALD_LOG", "info,herald::sources::probe=debug")
            .cwd(self.dir.path())
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("ProbeSourceStarted"), LIMIT);
        agent
    }

    /// The probe events accepted so far, one per id, in arrival order.
    fn events(&self) -> Vec<Value> {
        self.endpoint.distinct_events("herald.probe.")
    }

    /// Every probe event accepted, copies included: a restart that
    /// announced a held level again, even with the same id, shows here.
    fn copies(&self) -> usize {
        self.endpoint
            .accepted_events()
            .iter()
            .filter(|e| {
                e["event"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("herald.probe."))
            })
            .count()
    }

    fn names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until exactly `expected` probe events (by name) have arrived.
    fn wait_names(&self, expected: &[&str]) -> Vec<Value> {
        let arrived = wait_until(LIMIT, || self.names().len() >= expected.len());
        assert!(arrived, "waited for {expected:?}, got {:?}", self.names());
        assert_eq!(self.names(), expected);
        self.events()
    }
}

/// How many checks the agent logged so far.
fn checks(agent: &Herald) -> usize {
    agent
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("ProbeChecked"))
        .count()
}

/// Waits for `n` more checks than `before`, so a test knows the probe ran
/// while a level held.
fn wait_checks(agent: &Herald, before: usize, n: usize) {
    let ran = wait_until(LIMIT, || checks(agent) >= before + n);
    assert!(ran, "fewer than {n} more checks\n{}", agent.describe());
}

fn check_resource(event: &Value, name: &str, target: &str, probe: &str) {
    prefect_rules::check(event).unwrap_or_else(|e| panic!("{e}: {event}"));
    let resource = &event["resource"];
    assert_eq!(
        resource["prefect.resource.id"],
        format!("herald.probe.test-host.{name}"),
        "{event}"
    );
    assert_eq!(resource["prefect.resource.name"], name, "{event}");
    assert_eq!(resource["herald.probe.target"], target, "{event}");
    assert_eq!(resource["herald.probe.type"], probe, "{event}");
    assert_eq!(event["payload"]["target"], target, "{event}");
    assert_eq!(event["payload"]["probe"], probe, "{event}");
    let latency = event["payload"]["latency_ms"].as_f64();
    assert!(
        latency.is_some_and(|l| (0.0..1000.0).contains(&l)),
        "{event}"
    );
}

#[test]
fn tcp_probe_announces_each_transition_once_and_a_restart_keeps_the_level() {
    let mut listener = Listener::start();
    let target = listener.address.to_string();
    let rig = Rig::new(
        "db",
        &format!("tcp = \"{target}\"\nfailures = 2\nsuccesses = 1\n"),
    );
    let mut agent = rig.start();

    // The current state is announced once, then held.
    let events = rig.wait_names(&["herald.probe.up"]);
    check_resource(&events[0], "db", &target, "tcp");
    assert!(
        events[0]["payload"].get("previous").is_none(),
        "{}",
        events[0]
    );
    assert!(events[0]["payload"].get("error").is_none(), "{}", events[0]);
    let before = listener.accepted();
    assert!(wait_until(LIMIT, || listener.accepted() >= before + 3));
    assert_eq!(rig.names(), ["herald.probe.up"], "no repeat while up");

    // Down: refused, after two failed checks.
    listener.down();
    let events = rig.wait_names(&["herald.probe.up", "herald.probe.down"]);
    let down = &events[1];
    check_resource(down, "db", &target, "tcp");
    assert_eq!(down["payload"]["error_kind"], "refused", "{down}");
    assert!(
        down["payload"]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("refused")),
        "{down}"
    );
    assert_eq!(down["payload"]["consecutive_failures"], 2, "{down}");
    assert_eq!(down["payload"]["previous"], "up", "{down}");
    wait_checks(&agent, checks(&agent), 3);
    assert_eq!(rig.names().len(), 2, "no repeat while down");

    // Up again on the same port.
    listener.up();
    let events = rig.wait_names(&["herald.probe.up", "herald.probe.down", "herald.probe.up"]);
    let up = &events[2];
    check_resource(up, "db", &target, "tcp");
    assert_eq!(up["payload"]["previous"], "down", "{up}");
    assert_eq!(up["payload"]["consecutive_successes"], 1, "{up}");
    assert!(up["payload"].get("error").is_none(), "{up}");
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), 3, "three distinct events");

    // A restart while up: the known level holds, nothing is announced.
    support::stop_agent(agent);
    let copies = rig.copies();
    let state = rig.dir.path().join("data/state/db.probe.json");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("known state saved")).expect("json");
    assert_eq!(saved["level"], "up", "{saved}");
    assert_eq!(saved["transitions"], 3, "{saved}");
    agent = rig.start();
    wait_checks(&agent, 0, 4);
    assert_eq!(
        rig.copies(),
        copies,
        "the held level is not announced again"
    );

    // And a transition after the restart continues the count.
    listener.down();
    let events = rig.wait_names(&[
        "herald.probe.up",
        "herald.probe.down",
        "herald.probe.up",
        "herald.probe.down",
    ]);
    assert_eq!(events[3]["payload"]["previous"], "up");
    support::stop_agent(agent);
}

#[test]
fn http_probe_reports_503_then_recovers_on_200() {
    let server = StatusServer::start(200);
    let url = format!("http://{}/health", server.address);
    let rig = Rig::new("api", &format!("http = \"{url}\"\nfailures = 1\n"));
    let agent = rig.start();

    let events = rig.wait_names(&["herald.probe.up"]);
    check_resource(&events[0], "api", &url, "http");
    assert_eq!(events[0]["payload"]["status"], 200, "{}", events[0]);

    server.set(503);
    let events = rig.wait_names(&["herald.probe.up", "herald.probe.down"]);
    let down = &events[1];
    check_resource(down, "api", &url, "http");
    assert_eq!(down["payload"]["status"], 503, "{down}");
    assert_eq!(down["payload"]["error_kind"], "status", "{down}");
    assert_eq!(
        down["payload"]["error"], "status 503, expected 200-399",
        "{down}"
    );
    assert_eq!(down["payload"]["consecutive_failures"], 1, "{down}");
    let before = server.requests();
    assert!(wait_until(LIMIT, || server.requests() >= before + 3));
    assert_eq!(rig.names().len(), 2, "no repeat while 503");

    server.set(200);
    let events = rig.wait_names(&["herald.probe.up", "herald.probe.down", "herald.probe.up"]);
    assert_eq!(events[2]["payload"]["status"], 200);
    assert_eq!(events[2]["payload"]["previous"], "down");
    let before = server.requests();
    assert!(wait_until(LIMIT, || server.requests() >= before + 3));
    assert_eq!(rig.names().len(), 3, "no repeat while 200");
    support::stop_agent(agent);
}

#[test]
fn a_restart_does_not_announce_a_held_down() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let rig = Rig::new("gone", &format!("tcp = \"{port}\"\n"));
    let agent = rig.start();
    let events = rig.wait_names(&["herald.probe.down"]);
    assert_eq!(
        events[0]["payload"]["consecutive_failures"], 1,
        "the first result"
    );
    assert!(events[0]["payload"].get("previous").is_none());
    let state = rig.dir.path().join("data/state/gone.probe.json");
    assert!(
        wait_until(LIMIT, || state.exists()),
        "the known state is saved once the event is durable"
    );
    support::stop_agent(agent);
    let copies = rig.copies();

    let agent = rig.start();
    wait_checks(&agent, 0, 4);
    assert_eq!(
        rig.copies(),
        copies,
        "not announced again, not even as a copy"
    );
    assert_eq!(rig.names(), ["herald.probe.down"]);
    support::stop_agent(agent);
}

#[test]
fn https_probe_verifies_certificates_and_trusts_ca_file() {
    let pki = Pki::new();
    let server = TlsEndpoint::start(pki.server_config(ClientAuth::None));
    // The test server answers 404 to anything but an event post: here,
    // that is the expected answer.
    let url = format!("{}/health", server.url().trim_end_matches('/'));
    let rig = Rig::with_sources(&format!(
        r#"
[[sources.probe]]
name = "untrusted"
http = "{url}"
interval = "1s"
expect_status = [404]

[[sources.probe]]
name = "trusted"
http = "{url}"
interval = "1s"
expect_status = [404]
ca_file = "{ca}"
"#,
        ca = pki.ca_file.display(),
    ));
    let agent = rig.start();
    assert!(
        wait_until(LIMIT, || rig.events().len() >= 2),
        "{:?}\n{}",
        rig.names(),
        agent.describe()
    );
    let events = rig.events();
    let by_name = |name: &str| {
        events
            .iter()
            .find(|e| e["resource"]["prefect.resource.name"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {events:?}"))
    };
    let untrusted = by_name("untrusted");
    assert_eq!(untrusted["event"], "herald.probe.down", "{untrusted}");
    assert_eq!(untrusted["payload"]["error_kind"], "tls", "{untrusted}");
    assert!(
        untrusted["payload"]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate")),
        "{untrusted}"
    );
    let trusted = by_name("trusted");
    assert_eq!(trusted["event"], "herald.probe.up", "{trusted}");
    assert_eq!(trusted["payload"]["status"], 404, "{trusted}");
    check_resource(trusted, "trusted", &url, "http");
    assert!(
        !server.handshake_errors().is_empty(),
        "the untrusted probe was refused at the handshake"
    );
    support::stop_agent(agent);
}
