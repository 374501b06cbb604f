//! The real binary on broken configs: every mistake listed with
//! file:line:column, exit 78, nothing started.

mod support;

use std::time::Duration;

use support::{Finished, herald, write_config};

const LIMIT: Duration = Duration::from_secs(30);

fn validate(toml: &str) -> (Finished, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), toml);
    let shown = path.display().to_string();
    let finished = herald()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .run(LIMIT);
    (finished, shown)
}

/// Asserts the run failed with exit 78 and that stderr has a line starting
/// with `file:line:column: ` followed by `message`.
fn assert_mistake(finished: &Finished, path: &str, line: u32, column: u32, message: &str) {
    assert_eq!(finished.code(), Some(78), "{}", finished.stderr_text());
    let expected = format!("{path}:{line}:{column}: {message}");
    assert!(
        finished.stderr.iter().any(|l| l.contains(&expected)),
        "expected a line containing {expected:?} in:\n{}",
        finished.stderr_text()
    );
}

#[test]
fn the_example_config_validates() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let finished = herald()
        .arg("validate")
        .arg("--config")
        .arg(example)
        .run(LIMIT);
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr_text());
    assert!(finished.stdout_text().contains("valid"));
}

#[test]
fn unknown_key() {
    let (run, path) = validate("[agent]\nshutdown_grac = \"5s\"\n");
    assert_mistake(&run, &path, 2, 1, "unknown key `shutdown_grac` in [agent]");
    assert!(run.stderr_text().contains("did you mean `shutdown_grace`?"));
}

#[test]
fn wrong_type() {
    let (run, path) = validate("[sink]\nbatch_max_events = \"lots\"\n");
    assert_mistake(&run, &path, 2, 20, "expected a whole number, found string");
}

#[test]
fn bad_duration() {
    let (run, path) = validate("[[sources.heartbeat]]\nname = \"hb\"\ninterval = \"10 parsecs\"\n");
    assert_mistake(&run, &path, 3, 12, "invalid duration \"10 parsecs\"");
}

#[test]
fn bad_size() {
    let (run, path) = validate("[sink]\nbatch_max_bytes = \"1 bucket\"\n");
    assert_mistake(&run, &path, 2, 19, "invalid size \"1 bucket\"");
}

#[test]
fn unset_env_var_without_default() {
    let (run, path) = validate("[sink]\nurl = \"${HERALD_TEST_SURELY_UNSET}/api\"\n");
    assert_mistake(
        &run,
        &path,
        2,
        7,
        "environment variable HERALD_TEST_SURELY_UNSET is not set",
    );
    assert!(
        run.stderr_text()
            .contains("${HERALD_TEST_SURELY_UNSET:-value}")
    );
}

#[test]
fn env_var_with_default_is_fine() {
    let (run, _) =
        validate("[sink]\nurl = \"${HERALD_TEST_SURELY_UNSET:-http://127.0.0.1:9/api}\"\n");
    assert_eq!(run.code(), Some(0), "{}", run.stderr_text());
}

#[test]
fn invalid_url() {
    let (run, path) = validate("[sink]\nurl = \"127.0.0.1:4200/api\"\n");
    assert_mistake(&run, &path, 2, 7, "invalid URL \"127.0.0.1:4200/api\"");
}

#[test]
fn syntax_error() {
    let (run, path) = validate("[agent]\ndata_dir = \"/x\n");
    assert_eq!(run.code(), Some(78), "{}", run.stderr_text());
    assert!(
        run.stderr
            .iter()
            .any(|l| l.starts_with(&format!("error: {path}:2:"))),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn several_mistakes_are_all_listed() {
    let toml = r#"[agent]
colour = "blue"
shutdown_grace = 10

[sink]
url = "ftp://example.invalid/api"
batch_max_bytes = "huge"

[[sources.heartbeat]]
name = "beat"
interval = "soon"

[[sources.heartbeat]]
name = "beat"
"#;
    let (run, path) = validate(toml);
    assert_mistake(&run, &path, 2, 1, "unknown key `colour` in [agent]");
    assert_mistake(&run, &path, 3, 18, "expected a duration");
    assert_mistake(&run, &path, 6, 7, "invalid URL");
    assert_mistake(&run, &path, 7, 19, "invalid size \"huge\"");
    assert_mistake(&run, &path, 11, 12, "invalid duration \"soon\"");
    assert_mistake(&run, &path, 14, 8, "source name \"beat\" is already used");
    assert!(
        run.stderr_text()
            .contains("6 mistakes in the configuration"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn run_refuses_a_broken_config_before_starting_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "[agent]\nnope = 1\n");
    let run = herald().arg("run").arg("--config").arg(&path).run(LIMIT);
    assert_mistake(
        &run,
        &path.display().to_string(),
        2,
        1,
        "unknown key `nope`",
    );
    assert!(
        run.stdout.is_empty(),
        "no event may be printed: {:?}",
        run.stdout
    );
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let run = herald()
        .args(["validate", "--config", "/nonexistent/herald.toml"])
        .run(LIMIT);
    assert_eq!(run.code(), Some(78));
    assert!(
        run.stderr_text()
            .contains("cannot read config file /nonexistent/herald.toml"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn herald_config_env_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "[agent]\nbad_key = 1\n");
    let run = herald()
        .arg("validate")
        .env("HERALD_CONFIG", &path)
        .run(LIMIT);
    assert_mistake(
        &run,
        &path.display().to_string(),
        2,
        1,
        "unknown key `bad_key`",
    );
}

#[test]
fn a_bad_env_override_names_the_variable() {
    let run = herald()
        .arg("validate")
        .env(
            "HERALD_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"),
        )
        .env("HERALD_SINK_TIMEOUT", "whenever")
        .run(LIMIT);
    assert_eq!(run.code(), Some(78));
    assert!(
        run.stderr_text()
            .contains("environment variable HERALD_SINK_TIMEOUT: invalid duration \"whenever\""),
        "{}",
        run.stderr_text()
    );
}
