//! The service manager's notify protocol, end to end: the real binary runs
//! with `NOTIFY_SOCKET` pointing at a datagram socket the test binds (as
//! systemd does for `Type=notify`) and `WATCHDOG_USEC` set, and the test
//! reads what herald says: `READY=1` only once its sources started,
//! `STATUS=` lines, `WATCHDOG=1` pings at half the watchdog period, and
//! `RELOADING=1` … `READY=1` around a SIGHUP, and `STOPPING=1` at SIGTERM;
//! pings that stop when the queue's disk hangs (a test-only fault), and go
//! on while the endpoint fails and the queue is full.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{MockEndpoint, Reply, agent_and_sink, herald, write_config};

const LIMIT: Duration = Duration::from_secs(30);

/// One datagram herald sent, and when it came.
struct Message {
    text: String,
    at: Instant,
}

fn receive_until(socket: &UnixDatagram, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let deadline = Instant::now() + LIMIT;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "waited {LIMIT:?}; got {:?}",
            got.iter().map(|m| &m.text).collect::<Vec<_>>()
        );
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(Message {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                at: Instant::now(),
            });
        }
    }
    got
}

fn has(messages: &[Message], line: &str) -> bool {
    messages.iter().any(|m| m.text.lines().any(|l| l == line))
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    std::fs::write(logs.join("app.log"), "one\ntwo\n").expect("log");
    let endpoint = MockEndpoint::start();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n[[sources.file]]\nname = \"app\"\npaths = [\"{}/*.log\"]\nstart_at = \"beginning\"\n",
            agent_and_sink(&endpoint.url()),
            logs.display()
        ),
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&config)
        .cwd(dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        // 400 ms: a ping every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .spawn();

    let got = receive_until(&socket, |m| has(m, "READY=1"));
    // READY comes after the file source started, never before.
    assert!(
        agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("FileSourceStarted")),
        "READY=1 before the sources started:\n{}",
        agent.describe()
    );
    let ready = got
        .iter()
        .find(|m| has(std::slice::from_ref(m), "READY=1"))
        .expect("ready");
    assert!(
        ready
            .text
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("queued")),
        "READY carries a status: {:?}",
        ready.text
    );

    // Pings at the rate asked for: about 10 in 2 s.
    let since = Instant::now();
    let got = receive_until(&socket, |m| {
        m.iter().filter(|m| m.text.trim() == "WATCHDOG=1").count() >= 8
    });
    let pings: Vec<&Message> = got
        .iter()
        .filter(|m| m.text.trim() == "WATCHDOG=1")
        .collect();
    let spent = pings.last().map_or(Duration::ZERO, |m| m.at - since);
    assert!(
        spent >= Duration::from_millis(1000) && spent < Duration::from_secs(6),
        "8 pings took {spent:?}"
    );
    // A status line is renewed now and then.
    receive_until(&socket, |m| {
        m.iter()
            .any(|m| m.text.starts_with("STATUS=") && m.text.contains("sent"))
    });

    // A reload is bracketed: RELOADING=1 (with the monotonic time systemd
    // 253 wants), then READY=1 again.
    agent.signal("HUP");
    let got = receive_until(&socket, |m| {
        m.iter()
            .position(|m| m.text.contains("RELOADING=1"))
            .is_some_and(|at| m[at..].iter().any(|m| m.text.contains("READY=1")))
    });
    let reloading = got
        .iter()
        .find(|m| m.text.contains("RELOADING=1"))
        .expect("reloading");
    assert!(
        reloading.text.contains("MONOTONIC_USEC="),
        "{:?}",
        reloading.text
    );

    agent.sigterm();
    let got = receive_until(&socket, |m| has(m, "STOPPING=1"));
    let stopping = got
        .iter()
        .find(|m| m.text.contains("STOPPING=1"))
        .expect("stopping");
    assert!(
        stopping.text.contains("STATUS=stopping"),
        "{:?}",
        stopping.text
    );
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
}

#[test]
fn without_a_notify_socket_nothing_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = MockEndpoint::start();
    let config = write_config(dir.path(), &agent_and_sink(&endpoint.url()));
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&config)
        .cwd(dir.path())
        .spawn();
    agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    assert!(
        !agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("NotifyFailed")),
        "{}",
        agent.describe()
    );
}

/// Starts herald on `config` with the notify socket and a 400 ms watchdog
/// (a ping every 200 ms), and an extra environment variable.
fn notified(dir: &Path, config: &Path, extra: (&str, &str)) -> (support::Herald, UnixDatagram) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let agent = herald()
        .args(["run", "--config"])
        .arg(config)
        .cwd(dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env(extra.0, extra.1)
        .spawn();
    (agent, socket)
}

/// The pings received within `span`.
fn pings_within(socket: &UnixDatagram, span: Duration) -> usize {
    let until = Instant::now() + span;
    let mut pings = 0;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).trim() == "WATCHDOG=1"
        {
            pings += 1;
        }
    }
    pings
}

/// After READY, herald reports `stage` stuck and sends no more pings.
fn assert_pings_stop(mut agent: support::Herald, socket: &UnixDatagram, stage: &str) {
    receive_until(socket, |m| has(m, "READY=1"));
    agent.wait_for_stderr_line(|l| l.contains("StageStuck") && l.contains(stage), LIMIT);
    // What was sent before it noticed is still in the socket's buffer.
    let mut buf = vec![0u8; 4096];
    while socket.recv(&mut buf).is_ok() {}
    assert_eq!(
        pings_within(socket, Duration::from_millis(1500)),
        0,
        "{}",
        agent.describe()
    );
    agent.sigkill();
}

#[test]
fn a_stuck_queue_writer_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = MockEndpoint::start();
    let config = write_config(dir.path(), &agent_and_sink(&endpoint.url()));
    // The queue's disk never answers (a test-only fault).
    let (agent, socket) = notified(
        dir.path(),
        &config,
        ("HERALD_TEST_FAULT", "hang-queue-writer"),
    );
    assert_pings_stop(agent, &socket, "queue writer");
}

#[test]
fn a_hung_file_read_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    std::fs::write(logs.join("app.log"), "one\n").expect("log");
    let endpoint = MockEndpoint::start();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n[[sources.file]]\nname = \"app\"\npaths = [\"{}/*.log\"]\nstart_at = \"beginning\"\nfingerprint_timeout = \"0s\"\n",
            agent_and_sink(&endpoint.url()),
            logs.display()
        ),
    );
    // The file system never answers a read (a test-only fault).
    let (agent, socket) = notified(dir.path(), &config, ("HERALD_TEST_FAULT", "hang-file-read"));
    assert_pings_stop(agent, &socket, "source");
}

#[test]
fn a_failing_endpoint_and_a_full_queue_do_not_stop_the_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    let mut text = String::new();
    for i in 0..60_000 {
        text.push_str(&format!("line {i:06} of a log that fills the queue\n"));
    }
    std::fs::write(logs.join("app.log"), text).expect("log");
    let endpoint = MockEndpoint::with_default(Reply::Status(503));
    let config = write_config(
        dir.path(),
        &format!(
            "{}retry_max = \"200ms\"\n\n[queue]\nmax_bytes = \"1MiB\"\nsegment_bytes = \"64KiB\"\n\n[[sources.file]]\nname = \"app\"\npaths = [\"{}/*.log\"]\nstart_at = \"beginning\"\n",
            agent_and_sink(&endpoint.url()),
            logs.display()
        ),
    );
    let (mut agent, socket) = notified(dir.path(), &config, ("HERALD_TEST_FAULT", "none"));
    receive_until(&socket, |m| has(m, "READY=1"));
    // 60,000 lines do not fit in 1 MiB of events: wait until the queue's
    // segments hold about that much, so the writer waits for room.
    let queue = dir.path().join("data/queue");
    let queued = || -> u64 {
        std::fs::read_dir(&queue)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    assert!(
        support::wait_until(LIMIT, || queued() >= 900 * 1024),
        "the queue did not fill: {} bytes\n{}",
        queued(),
        agent.describe()
    );
    let pings = pings_within(&socket, Duration::from_secs(2));
    assert!(pings >= 5, "{pings} pings in 2 s\n{}", agent.describe());
    assert!(
        !agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("StageStuck")),
        "{}",
        agent.describe()
    );
    agent.sigkill();
}
