//! The config schema's unit tests: every key read, every mistake reported.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_embedded_default_is_valid_and_sends_to_stdout() {
    let config = parse("default", EMBEDDED_DEFAULT, &no_env).expect("valid");
    assert_eq!(config.sink.kind, SinkKind::Stdout);
    assert!(matches!(
        config.sources.as_slice(),
        [
            SourceConfig::Heartbeat(HeartbeatConfig { interval, .. }),
            SourceConfig::Host(_),
        ] if *interval == Duration::from_secs(30)
    ));
}

const EXAMPLE: &str = include_str!("../../config.example.toml");

#[test]
fn the_example_is_valid_and_documents_every_key() {
    parse("config.example.toml", EXAMPLE, &no_env).expect("the example is valid");
    let dec = Decoder::new("example", EXAMPLE, &no_env);
    let (document, syntax) = DeTable::parse_recoverable(EXAMPLE);
    assert!(syntax.is_empty());
    read_document(&dec, document.get_ref());
    for key in dec.asked() {
        let documented = EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} ="))
                || line.starts_with(&format!("[{key}]"))
                || (line.starts_with('[') && line.ends_with(&format!(".{key}]")))
                || line.starts_with(&format!("[[sources.{key}]]"))
                || line.starts_with(&format!("[[{key}]]"))
                || line.starts_with(&format!("[{key}."))
                || line.starts_with(&format!("[[{key}."))
        });
        assert!(documented, "config.example.toml does not document `{key}`");
    }
}

#[test]
fn prefect_api_url_turns_the_default_to_http() {
    let env =
        |name: &str| (name == "PREFECT_API_URL").then(|| "http://127.0.0.1:4200/api".to_owned());
    let config = parse("default", EMBEDDED_DEFAULT, &env).expect("valid");
    assert_eq!(config.sink.kind, SinkKind::Http);
    assert_eq!(
        config.sink.url.map(|u| u.to_string()),
        Some("http://127.0.0.1:4200/api".to_owned())
    );
}

#[test]
fn herald_env_overrides_scalar_keys() {
    let env = |name: &str| match name {
        "HERALD_AGENT_SHUTDOWN_GRACE" => Some("3s".to_owned()),
        "HERALD_SINK_BATCH_MAX_EVENTS" => Some("7".to_owned()),
        _ => None,
    };
    let config = parse("t", "[agent]\nshutdown_grace = \"1m\"\n", &env).expect("valid");
    assert_eq!(config.agent.shutdown_grace, Duration::from_secs(3));
    assert_eq!(config.sink.batch_max_events, 7);
    let bad = |name: &str| (name == "HERALD_AGENT_SHUTDOWN_GRACE").then(|| "soon".to_owned());
    let err = parse("t", "", &bad).expect_err("bad override");
    assert_eq!(
        err.0[0].origin,
        Origin::Env("HERALD_AGENT_SHUTDOWN_GRACE".into())
    );
}

#[test]
fn secrets_do_not_show() {
    let env = |name: &str| (name == "PREFECT_API_KEY").then(|| "pnu_secret".to_owned());
    let config = parse("t", "", &env).expect("valid");
    let shown = format!("{config:?}");
    assert!(!shown.contains("pnu_secret"), "{shown}");
    assert_eq!(
        config.sink.api_key.as_ref().map(Secret::expose),
        Some("pnu_secret")
    );
}

#[test]
fn every_mistake_is_listed_in_file_order() {
    let text = r#"
[agent]
shutdown_grace = "forever"
colour = "blue"

[sink]
type = "htp"
batch_max_events = "many"

[[sources.heartbeat]]
name = "hb"
intervl = "1s"

[[sources.heartbeat]]
name = "hb"
interval = 5
"#;
    let err = parse("h.toml", text, &no_env).expect_err("invalid");
    let lines: Vec<(usize, &str)> = err
        .0
        .iter()
        .map(|m| match &m.origin {
            Origin::File { line, .. } => (*line, m.message.as_str()),
            Origin::Env(_) => (0, m.message.as_str()),
        })
        .collect();
    let expected_lines = [3, 4, 7, 8, 12, 15, 16];
    assert_eq!(
        lines.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        expected_lines,
        "{err}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("h.toml:4:1: unknown key `colour` in [agent]"),
        "{shown}"
    );
    assert!(shown.contains("did you mean \"http\"?"), "{shown}");
    assert!(shown.contains("did you mean `interval`?"), "{shown}");
    assert!(
        shown.contains("source name \"hb\" is already used"),
        "{shown}"
    );
    assert!(shown.contains("found a bare number"), "{shown}");
    assert!(
        shown.ends_with("7 mistakes in the configuration"),
        "{shown}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let err = parse("s.toml", "[agent\nx = 1\n", &no_env).expect_err("invalid");
    assert!(
        matches!(&err.0[0].origin, Origin::File { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn the_websocket_transport_needs_a_url_and_no_gzip() {
    let text = "[sink]\nurl = \"http://127.0.0.1:4200/api\"\ntransport = \"websocket\"\n";
    let config = parse("t", text, &no_env).expect("valid");
    assert_eq!(config.sink.transport, Transport::Websocket);
    let config = parse("t", "", &no_env).expect("valid");
    assert_eq!(config.sink.transport, Transport::Http);
    let err = parse("t", "[sink]\ntransport = \"websocket\"\n", &no_env).expect_err("no url");
    assert!(
        err.to_string()
            .contains("t:2:13: transport = \"websocket\" needs a url"),
        "{err}"
    );
    let gzip = format!("{text}compression = \"gzip\"\n");
    let err = parse("t", &gzip, &no_env).expect_err("gzip");
    assert!(err.to_string().contains("not the websocket"), "{err}");
    let err = parse("t", "[sink]\ntransport = \"ws\"\n", &no_env).expect_err("unknown");
    assert!(err.to_string().contains("unknown value \"ws\""), "{err}");
}

#[test]
fn http_needs_a_url_and_urls_are_checked() {
    let err = parse("t", "[sink]\ntype = \"http\"\n", &no_env).expect_err("no url");
    assert!(err.to_string().contains("needs a url"), "{err}");
    let err = parse("t", "[sink]\nurl = \"ftp://x/api\"\n", &no_env).expect_err("ftp");
    assert!(err.to_string().contains("scheme must be http"), "{err}");
    let err = parse("t", "[sink]\nurl = \"not a url\"\n", &no_env).expect_err("junk");
    assert!(err.to_string().contains("invalid URL"), "{err}");
}
