//! `herald test` and `herald validate` on mapping configs, through the real
//! binary.

mod support;

use std::time::Duration;

use support::{herald, write_config};

const LIMIT: Duration = Duration::from_secs(30);

const RULES: &str = r#"
[agent]
hostname = "h1"

[[sources.heartbeat]]
name = "app"

[[mappings]]
name = "errors"
source = "app"
kind = "line"
when = [{ regex = 'ERROR (?P<code>\d+)' }]
event = "app.error.{code}"
"#;

fn run(command: &str, toml: &str) -> support::Finished {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), toml);
    herald().arg(command).arg("--config").arg(&path).run(LIMIT)
}

#[test]
fn passing_tests_exit_zero() {
    let toml = format!(
        "{RULES}\n[[tests]]\nname = \"an error\"\nsource = \"app\"\nline = \"ERROR 42\"\n\
         expect = {{ event = \"app.error.42\" }}\n"
    );
    let finished = run("test", &toml);
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr_text());
    let out = finished.stdout_text();
    assert!(out.contains("ok   an error"), "{out}");
    assert!(out.lines().any(|l| l == "1 passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_test_prints_its_diff_and_exits_one() {
    let toml = format!(
        "{RULES}\n[[tests]]\nname = \"good\"\nsource = \"app\"\nline = \"ERROR 1\"\n\
         expect = {{ event = \"app.error.1\" }}\n\
         [[tests]]\nname = \"bad\"\nsource = \"app\"\nline = \"ERROR 7\"\n\
         expect = {{ event = \"app.error.8\", payload = {{ line = \"x\" }} }}\n"
    );
    let finished = run("test", &toml);
    assert_eq!(finished.code(), Some(1), "{}", finished.stderr_text());
    let out = finished.stdout_text();
    assert!(out.contains("FAIL bad (line"), "{out}");
    assert!(
        out.contains("event: expected \"app.error.8\", got \"app.error.7\""),
        "{out}"
    );
    assert!(
        out.contains("payload.line: expected \"x\", got \"ERROR 7\""),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "1 passed, 1 failed"), "{out}");
}

#[test]
fn a_bad_template_fails_validation_at_its_position() {
    let toml = format!("{RULES}resource.id = \"app.{{cod | upper}}\"\n");
    let finished = run("validate", &toml);
    assert_eq!(finished.code(), Some(78), "{}", finished.stdout_text());
    let line = toml
        .lines()
        .position(|l| l.starts_with("resource.id"))
        .expect("present")
        + 1;
    let err = finished.stderr_text();
    assert!(
        err.contains(&format!(":{line}:21: in template: unknown field `cod`")),
        "{err}"
    );
    assert!(err.contains("did you mean `code`?"), "{err}");
    let finished = run("test", &toml);
    assert_eq!(
        finished.code(),
        Some(78),
        "test refuses a broken config too"
    );
}
