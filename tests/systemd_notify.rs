//! The service manager's notify protocol, end to end: the real binary runs
//! with `NOTIFY_SOCKET` pointing at a datagram socket the test binds (as
//! systemd does for `Type=notify`) and `WATCHDOG_USEC` set, and the test
//! reads what herald says: `READY=1` only once its sources started,
//! `STATUS=` lines, `WATCHDOG=1` pings at half the watchdog period, and
//! `RELOADING=1` … `READY=1` around a SIGHUP, and `STOPPING=1` at SIGTERM.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::{MockEndpoint, agent_and_sink, herald, write_config};

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
