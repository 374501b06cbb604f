//! The real binary against an HTTPS endpoint whose certificate comes from a
//! private CA made at test time: `ca_file` trusts it, nothing else does
//! (certificates are always verified unless `insecure_skip_verify`), and
//! mutual TLS works with `client_cert_file`/`client_key_file`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::tls::{ClientAuth, Pki, TlsEndpoint};
use support::{dead_letters, herald, run_agent as run, stop_agent as stop, write_config};

const LIMIT: Duration = Duration::from_secs(30);

/// A config with a fast heartbeat and quick retries sending to `url`;
/// `sink` is added to the `[sink]` table.
fn config(dir: &Path, url: &str, sink: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[agent]
hostname = "tls-test"
shutdown_grace = "2s"

[[sources.heartbeat]]
name = "beat"
interval = "100ms"

[sink]
url = "{url}"
timeout = "2s"
retry_initial = "10ms"
retry_max = "200ms"
batch_timeout = "50ms"
{sink}
"#
        ),
    )
}

/// A TOML string holding a path.
fn toml_path(path: &Path) -> String {
    Value::String(path.display().to_string()).to_string()
}

/// The 1-based number of the first line of `path` starting with `prefix`.
fn line_of(path: &Path, prefix: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read the config back");
    text.lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

fn event_names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect::<Vec<_>>()
}

#[test]
fn a_private_ca_in_ca_file_is_trusted() {
    let pki = Pki::new();
    let endpoint = TlsEndpoint::start(pki.server_config(ClientAuth::None));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &endpoint.url(),
        &format!("ca_file = {}", toml_path(&pki.ca_file)),
    );
    let agent = run(dir.path(), &config);
    let events = endpoint.wait_for_events(3, LIMIT);
    let agent = stop(agent);
    assert_eq!(event_names(&events)[0], "herald.agent.started");
    assert!(endpoint.handshake_errors().is_empty());
    assert!(
        !agent.stderr_lines().join("\n").contains("BatchSendFailed"),
        "{}",
        agent.describe()
    );
}

#[test]
fn an_unknown_ca_is_refused_and_events_stay_queued() {
    let pki = Pki::new();
    let endpoint = TlsEndpoint::start(pki.server_config(ClientAuth::None));
    let dir = tempfile::tempdir().expect("temp dir");
    // Neither the system's roots nor an unrelated CA vouch for the endpoint.
    for extra in [
        String::new(),
        format!("ca_file = {}", toml_path(&pki.other_ca_file)),
    ] {
        let agent = run(dir.path(), &config(dir.path(), &endpoint.url(), &extra));
        let failed = agent.wait_for_stderr_line(|l| l.contains("BatchSendFailed"), LIMIT);
        assert!(
            failed.to_lowercase().contains("certificate") || failed.contains("UnknownIssuer"),
            "a certificate error, not another one: {failed}"
        );
        stop(agent);
    }
    assert!(endpoint.posts().is_empty(), "nothing got through");
    assert!(!endpoint.handshake_errors().is_empty());
    assert!(dead_letters(dir.path()).is_empty(), "nothing dead-lettered");

    // Trusting the right CA delivers what the refused runs queued: the
    // first run's start event comes first.
    let agent = run(
        dir.path(),
        &config(
            dir.path(),
            &endpoint.url(),
            &format!("ca_file = {}", toml_path(&pki.ca_file)),
        ),
    );
    // Three runs, three start events.
    let starts = || {
        event_names(&endpoint.events())
            .iter()
            .filter(|n| **n == "herald.agent.started")
            .count()
    };
    assert!(
        support::wait_until(LIMIT, || starts() >= 3),
        "{:?}",
        event_names(&endpoint.events())
    );
    let events = endpoint.events();
    stop(agent);
    assert_eq!(event_names(&events)[0], "herald.agent.started");
}

#[test]
fn insecure_skip_verify_delivers_and_warns() {
    let pki = Pki::new();
    let endpoint = TlsEndpoint::start(pki.server_config(ClientAuth::None));
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = run(
        dir.path(),
        &config(dir.path(), &endpoint.url(), "insecure_skip_verify = true"),
    );
    let warning = agent.wait_for_stderr_line(|l| l.contains("TlsVerificationDisabled"), LIMIT);
    assert!(warning.contains("WARN"), "{warning}");
    endpoint.wait_for_events(2, LIMIT);
    stop(agent);
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let endpoint = TlsEndpoint::start(pki.server_config(ClientAuth::Required));
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = format!("ca_file = {}", toml_path(&pki.ca_file));

    // Without a client certificate the endpoint refuses the handshake.
    let agent = run(dir.path(), &config(dir.path(), &endpoint.url(), &ca));
    let errors = endpoint.wait_for_handshake_errors(1, LIMIT);
    assert!(
        errors.iter().any(|e| e.contains("certificate")),
        "{errors:?}"
    );
    agent.wait_for_stderr_line(|l| l.contains("BatchSendFailed"), LIMIT);
    stop(agent);
    assert!(endpoint.posts().is_empty());

    let with_identity = format!(
        "{ca}\nclient_cert_file = {}\nclient_key_file = {}",
        toml_path(&pki.client_cert_file),
        toml_path(&pki.client_key_file)
    );
    let agent = run(
        dir.path(),
        &config(dir.path(), &endpoint.url(), &with_identity),
    );
    endpoint.wait_for_events(3, LIMIT);
    stop(agent);
    assert!(dead_letters(dir.path()).is_empty());
}

#[test]
fn a_missing_ca_file_fails_validation_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-ca.pem");
    let path = config(
        dir.path(),
        "https://127.0.0.1:9/api",
        &format!("ca_file = {}", toml_path(&missing)),
    );
    let run = herald()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .run(LIMIT);
    assert_eq!(run.code(), Some(78), "{}", run.stderr_text());
    // The value after `ca_file = ` starts at column 11.
    let expected = format!(
        "{}:{}:11: cannot read ca_file {}",
        path.display(),
        line_of(&path, "ca_file ="),
        missing.display()
    );
    assert!(
        run.stderr.iter().any(|l| l.contains(&expected)),
        "expected {expected:?} in:\n{}",
        run.stderr_text()
    );
}

#[test]
fn a_ca_file_without_certificates_fails_validation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let path = config(
        dir.path(),
        "https://127.0.0.1:9/api",
        &format!("ca_file = {}", toml_path(&junk)),
    );
    let run = herald()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .run(LIMIT);
    assert_eq!(run.code(), Some(78), "{}", run.stderr_text());
    let expected = format!(
        "{}:{}:11: ca_file {} holds no PEM certificate",
        path.display(),
        line_of(&path, "ca_file ="),
        junk.display()
    );
    assert!(
        run.stderr.iter().any(|l| l.contains(&expected)),
        "expected {expected:?} in:\n{}",
        run.stderr_text()
    );
}
