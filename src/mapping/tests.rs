//! The mapper end to end: rules read from config text, observations in,
//! event JSON out.

use super::*;
use crate::config::{self, Config};
use crate::event::{Event, RelatedResource, Resource};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

fn no_env(_: &str) -> Option<String> {
    None
}

const HEAD: &str = "[agent]\nhostname = \"h1\"\n[agent.labels]\n\"acme.team\" = \"data\"\n\
[[sources.heartbeat]]\nname = \"nginx\"\n[[sources.heartbeat]]\nname = \"app\"\n";

fn config(rules: &str) -> Config {
    config::parse("t.toml", &format!("{HEAD}{rules}"), &no_env).unwrap_or_else(|e| panic!("{e}"))
}

fn mistakes(rules: &str) -> String {
    config::parse("t.toml", &format!("{HEAD}{rules}"), &no_env)
        .expect_err("invalid")
        .to_string()
}

fn identity(config: &Config) -> Identity {
    Identity::discover(
        config.agent.hostname.as_deref(),
        &config.agent.labels,
        &|_| None,
    )
}

fn mapper(rules: &str) -> Mapper {
    let c = config(rules);
    Mapper::new(identity(&c), &c.mappings, None)
}

fn line(source: &str, text: &str) -> Observation {
    Observation::new(Arc::from(source), "line")
        .with("line", text)
        .with("path", "/var/log/app/access.log")
        .with("offset", 120)
}

fn events(mapper: &mut Mapper, obs: Observation) -> Vec<Value> {
    let mut out = Vec::new();
    mapper.map(obs, &mut out).expect("maps");
    out.iter()
        .map(|m| {
            let value: Value = serde_json::from_slice(&m.json).expect("json");
            assert_eq!(value["id"], m.id.to_string());
            value
        })
        .collect()
}

fn one(mapper: &mut Mapper, obs: Observation) -> Value {
    let mut all = events(mapper, obs);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn heartbeat_maps_to_an_agent_event() {
    let mut m = mapper("");
    let obs = Observation::new(Arc::from("hb"), "agent.heartbeat").with("uptime_seconds", 5);
    let e = one(&mut m, obs);
    assert_eq!(e["event"], "herald.agent.heartbeat");
    assert_eq!(e["resource"]["prefect.resource.id"], "herald.agent.h1");
    assert_eq!(e["resource"]["acme.team"], "data");
    assert_eq!(e["related"][0]["prefect.resource.role"], "host");
    assert!(
        e["related"]
            .as_array()
            .expect("array")
            .iter()
            .all(|r| r["prefect.resource.role"] != "agent"),
        "the agent is not related to its own events"
    );
    assert_eq!(e["payload"]["uptime_seconds"], 5);
}

#[test]
fn the_default_agent_event_is_byte_for_byte_what_event_writes() {
    let c = config("");
    let id = identity(&c);
    let mut m = Mapper::new(id.clone(), &c.mappings, None);
    let mut obs = Observation::new(Arc::from("hb"), "agent.started")
        .with("version", "1.0")
        .with("pid", 42)
        .with("nested", json!({"b": [1, "x\n"], "a": null}));
    obs.identity = Some(b"same".to_vec());
    let at = obs.observed_at;
    let mut out = Vec::new();
    m.map(obs, &mut out).expect("maps");
    let reference = Event {
        occurred: at,
        event: "herald.agent.started".into(),
        resource: id.agent.clone(),
        related: id.related(),
        payload: json!({"version": "1.0", "pid": 42, "nested": {"b": [1, "x\n"], "a": null}}),
        id: event::derived_id(&id.hostname, "hb", b"same"),
        follows: None,
    };
    assert_eq!(
        String::from_utf8(out[0].json.to_vec()).expect("utf8"),
        String::from_utf8(reference.to_json().expect("valid")).expect("utf8")
    );
}

#[test]
fn a_line_by_default_is_a_log_line_on_its_file() {
    let mut m = mapper("");
    let e = one(
        &mut m,
        line("app", r#"{"level":"INFO","msg":"hi","line":"inner"}"#).with(
            "json",
            json!({"level": "INFO", "msg": "hi", "line": "inner"}),
        ),
    );
    assert_eq!(e["event"], "herald.log.line");
    let r = &e["resource"];
    assert_eq!(
        r["prefect.resource.id"],
        "herald.file.h1:/var/log/app/access.log"
    );
    assert_eq!(r["prefect.resource.name"], "access.log");
    assert_eq!(r["herald.file.name"], "access.log");
    assert_eq!(r["herald.file.path"], "/var/log/app/access.log");
    assert_eq!(r["acme.team"], "data", "[agent.labels] on every resource");
    let roles: Vec<&str> = e["related"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["prefect.resource.role"].as_str())
        .collect();
    assert_eq!(roles, ["host", "agent"]);
    assert_eq!(e["payload"]["offset"], 120);
    assert_eq!(e["payload"]["level"], "INFO");
    assert_eq!(
        e["payload"]["line"], r#"{"level":"INFO","msg":"hi","line":"inner"}"#,
        "the line wins over a JSON field of the same name"
    );
    assert!(e["payload"].get("truncated").is_none());
    let cut = one(&mut m, line("app", "x").with("truncated", true));
    assert_eq!(cut["payload"]["truncated"], true);
    assert_eq!(cut["payload"]["line"], "x");
}

#[test]
fn a_line_without_a_path_goes_to_the_agent() {
    let mut m = mapper("");
    let e = one(
        &mut m,
        Observation::new(Arc::from("app"), "line").with("line", "x"),
    );
    assert_eq!(e["resource"]["prefect.resource.id"], "herald.agent.h1");
}

#[test]
fn file_lifecycle_events_are_on_the_file() {
    let mut m = mapper("");
    let obs = Observation::new(Arc::from("app"), "file.rotated")
        .with("path", "/var/log/x.log")
        .with("size", 10);
    let e = one(&mut m, obs);
    assert_eq!(e["event"], "herald.file.rotated");
    assert_eq!(
        e["resource"]["prefect.resource.id"],
        "herald.file.h1:/var/log/x.log"
    );
    assert_eq!(e["payload"]["size"], 10);
}

const NGINX_RULE: &str = r#"
[[mappings]]
name = "nginx-errors"
source = "nginx"
kind = "line"
when = [
  { regex = '"(?P<method>[A-Z]+) (?P<path>[^ "]*) [^"]*" (?P<status>\d{3}) ' },
  { field = "status", gte = 500 },
]
event = "nginx.request.{method | lower}.failed"
resource.id = "nginx.route.{path | slug}"
resource.labels = { "http.status" = "{status}", "prefect.resource.name" = "{method} {path}" }
related = [ { id = "nginx.method.{method | lower}", role = "method", labels = { "x.m" = "{method}" } } ]
payload = { status = "{status}", code = "{status}", fixed = 7 }
"#;

#[test]
fn captures_become_fields_labels_and_payload() {
    let mut m = mapper(NGINX_RULE);
    let e = one(
        &mut m,
        line(
            "nginx",
            r#"1.2.3.4 - - [x] "POST /api/Flows HTTP/1.1" 502 10 "-" "-""#,
        ),
    );
    assert_eq!(e["event"], "nginx.request.post.failed");
    assert_eq!(
        e["resource"]["prefect.resource.id"],
        "nginx.route.api-flows"
    );
    assert_eq!(e["resource"]["http.status"], "502");
    assert_eq!(e["resource"]["prefect.resource.name"], "POST /api/Flows");
    assert_eq!(e["resource"]["acme.team"], "data");
    assert!(
        e["resource"].get("herald.file.path").is_none(),
        "an own id drops the file labels"
    );
    assert_eq!(e["related"][0]["prefect.resource.id"], "nginx.method.post");
    assert_eq!(e["related"][0]["prefect.resource.role"], "method");
    assert_eq!(e["related"][0]["x.m"], "POST");
    assert_eq!(e["related"][1]["prefect.resource.role"], "host");
    assert_eq!(
        e["payload"],
        json!({"status": "502", "code": "502", "fixed": 7})
    );
    // A 200 fails `gte`, and a line on another source is not looked at.
    let ok = one(
        &mut m,
        line(
            "nginx",
            r#"1.2.3.4 - - [x] "GET / HTTP/1.1" 200 10 "-" "-""#,
        ),
    );
    assert_eq!(ok["event"], "herald.log.line");
    let other = one(&mut m, line("app", r#"x "GET / HTTP/1.1" 503 1"#));
    assert_eq!(other["event"], "herald.log.line");
}

fn matches(rule_when: &str, obs: Observation) -> bool {
    let mut m = mapper(&format!(
        "[[mappings]]\nname = \"r\"\nkind = \"line\"\nwhen = {rule_when}\nevent = \"hit\"\n"
    ));
    one(&mut m, obs)["event"] == "hit"
}

#[test]
fn each_condition() {
    let j = |v: Value| line("app", &v.to_string()).with("json", v);
    let doc = json!({"level": "ERROR", "n": 5, "user": {"id": "u1"}, "ok": true, "ratio": 0.5});
    assert!(matches(
        r#"[{ field = "json.level", equals = "ERROR" }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ field = "json.level", equals = "error" }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.n", equals = 5 }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.n", equals = "5" }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.ok", equals = true }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.level", in = ["WARN", "ERROR"] }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ field = "json.level", in = ["WARN"] }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.user.id", exists = true }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.user.name", exists = false }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ field = "json.user.name", exists = true }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.n", gt = 4, lt = 6 }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.n", gte = 5, lte = 5 }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ field = "json.n", gt = 5 }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ field = "json.n", lt = 5 }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ field = "json.ratio", lt = 0.75 }]"#,
        j(doc.clone())
    ));
    assert!(
        !matches(r#"[{ field = "json.level", gt = 1 }]"#, j(doc.clone())),
        "not a number"
    );
    assert!(!matches(
        r#"[{ field = "json.nope", gt = 1 }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ not = { field = "json.level", equals = "INFO" } }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ not = { field = "json.level", equals = "ERROR" } }]"#,
        j(doc.clone())
    ));
    assert!(matches(
        r#"[{ any = [{ field = "json.n", equals = 1 }, { field = "json.level", regex = "^ERR" }] }]"#,
        j(doc.clone())
    ));
    assert!(!matches(
        r#"[{ any = [{ field = "json.n", equals = 1 }, { field = "json.level", regex = "^W" }] }]"#,
        j(doc.clone())
    ));
    assert!(
        matches(r#"[{ regex = "(?i)error" }]"#, j(doc.clone())),
        "regex on the line"
    );
    // JSON paths work on lines the source did not parse: parsed on demand.
    assert!(matches(
        r#"[{ field = "json.user.id", equals = "u1" }]"#,
        line("app", &doc.to_string())
    ));
    assert!(!matches(
        r#"[{ field = "json.level", exists = true }]"#,
        line("app", "not json")
    ));
    // Numeric tests on captures, which are strings.
    assert!(matches(
        r#"[{ regex = 'took (?P<ms>\d+)ms' }, { field = "ms", gte = 100 }]"#,
        line("app", "took 250ms")
    ));
    assert!(!matches(
        r#"[{ regex = 'took (?P<ms>\d+)ms' }, { field = "ms", gte = 100 }]"#,
        line("app", "took 25ms")
    ));
    // A regex on a capture.
    assert!(matches(
        r#"[{ regex = 'user=(?P<user>\S+)' }, { field = "user", regex = '^adm' }]"#,
        line("app", "login user=admin")
    ));
}

#[test]
fn first_match_wins_drop_drops_and_continue_goes_on() {
    let rules = r#"
[[mappings]]
name = "health"
when = [{ regex = "/healthz" }]
drop = true

[[mappings]]
name = "audit"
kind = "line"
when = [{ regex = "ERROR" }]
event = "app.audit"
continue = true

[[mappings]]
name = "errors"
kind = "line"
when = [{ regex = "ERROR" }]
event = "app.error"

[[mappings]]
name = "never"
kind = "line"
when = [{ regex = "ERROR" }]
event = "app.never"
"#;
    let mut m = mapper(rules);
    assert!(events(&mut m, line("app", "GET /healthz")).is_empty());
    assert_eq!(m.stats().dropped, 1);
    let fired = Arc::new(AtomicUsize::new(0));
    let mut obs = line("app", "ERROR boom");
    obs.identity = Some(b"x".to_vec());
    let counter = fired.clone();
    obs.on_durable = Some(OnDurable::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let mut out = Vec::new();
    assert_eq!(m.map(obs, &mut out).expect("maps"), 2);
    let names: Vec<Value> = out
        .iter()
        .map(|o| serde_json::from_slice::<Value>(&o.json).expect("json")["event"].clone())
        .collect();
    assert_eq!(names, [json!("app.audit"), json!("app.error")]);
    assert_ne!(
        out[0].id, out[1].id,
        "each event of one observation has its own id"
    );
    assert_eq!(out[0].id, event::derived_id("h1", "app", b"x"));
    assert!(out[0].on_durable.is_none());
    out.pop()
        .and_then(|m| m.on_durable)
        .expect("the last carries it")
        .fire();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    // continue alone ends at the built-in default.
    let mut m =
        mapper("[[mappings]]\nname = \"a\"\nkind = \"line\"\nevent = \"also\"\ncontinue = true\n");
    let all = events(&mut m, line("app", "x"));
    assert_eq!(all[0]["event"], "also");
    assert_eq!(all[1]["event"], "herald.log.line");
}

#[test]
fn a_missing_value_uses_its_default_or_falls_through_counted() {
    let rules = r#"
[[mappings]]
name = "needs-user"
kind = "line"
event = "user.{json.user}"

[[mappings]]
name = "defaulted"
kind = "line"
event = "user.{json.user | default:anonymous}"
"#;
    let mut m = mapper(rules);
    let e = one(&mut m, line("app", r#"{"user":"ann"}"#));
    assert_eq!(e["event"], "user.ann");
    let e = one(&mut m, line("app", r#"{"other":1}"#));
    assert_eq!(e["event"], "user.anonymous");
    assert_eq!(m.stats().unmapped, 1);
    // Without a later rule, the built-in default takes it.
    let mut m =
        mapper("[[mappings]]\nname = \"n\"\nkind = \"line\"\nresource.id = \"x.{json.id}\"\n");
    let e = one(&mut m, line("app", "plain"));
    assert_eq!(e["event"], "herald.log.line");
    assert_eq!(m.stats().unmapped, 1);
    // An empty rendered name is invalid: counted, not sent.
    let mut m = mapper("[[mappings]]\nname = \"n\"\nkind = \"line\"\nevent = \"{json.e}\"\n");
    let e = one(&mut m, line("app", r#"{"e":" "}"#));
    assert_eq!(e["event"], "herald.log.line");
    assert_eq!(m.stats().unmapped, 1);
}

#[test]
fn occurred_from_a_field() {
    let rule = |field: &str, format: &str| {
        mapper(&format!(
            "[[mappings]]\nname = \"t\"\nkind = \"line\"\nwhen = [{{ regex = '^(?P<t>[^|]+)\\|' }}]\n\
             occurred = {{ field = \"{field}\", format = \"{format}\" }}\n"
        ))
    };
    let mut m = rule("t", "%d/%b/%Y:%H:%M:%S %z");
    let e = one(&mut m, line("app", "10/Oct/2024:13:55:36 +0200|x"));
    assert_eq!(e["occurred"], "2024-10-10T11:55:36.000000Z");
    let mut m = rule("t", "%Y-%m-%d %H:%M:%S%.f");
    let e = one(&mut m, line("app", "2024-10-10 13:55:36.25|x"));
    assert_eq!(
        e["occurred"], "2024-10-10T13:55:36.250000Z",
        "no offset is UTC"
    );
    let mut m = rule("t", "rfc3339");
    let e = one(&mut m, line("app", "2024-05-01T10:00:00.123456+01:00|"));
    assert_eq!(e["occurred"], "2024-05-01T09:00:00.123456Z");
    let mut m = rule("t", "epoch");
    let e = one(&mut m, line("app", "1700000000.5|"));
    assert_eq!(e["occurred"], "2023-11-14T22:13:20.500000Z");
    let mut m = rule("t", "epoch_ms");
    let e = one(&mut m, line("app", "1700000000123|"));
    assert_eq!(e["occurred"], "2023-11-14T22:13:20.123000Z");
    let mut m = rule("json.ts", "epoch");
    let obs = line("app", "x|").with("json", json!({"ts": 1_700_000_000}));
    assert_eq!(one(&mut m, obs)["occurred"], "2023-11-14T22:13:20.000000Z");
    // Failures fall back to the observed time, counted.
    let mut m = rule("t", "rfc3339");
    let obs = line("app", "yesterday|");
    let seen = json::in_range(&obs.observed_at);
    let observed = crate::event::format_timestamp(&obs.observed_at);
    let e = one(&mut m, obs);
    assert!(seen);
    assert_eq!(e["occurred"], observed);
    let mut m2 = rule("t", "epoch");
    one(&mut m2, line("app", "99999999999999999|"));
    assert_eq!(m.stats().occurred_failures, 1);
    assert_eq!(m2.stats().occurred_failures, 1, "year past 9999");
}

#[test]
fn payload_fields_and_builtin_related() {
    let rules = r#"
[[mappings]]
name = "all"
kind = "line"
when = [{ regex = "^(?P<word>\\w+)" }]
payload_fields = "all"
builtin_related = false

[[mappings]]
name = "named"
kind = "agent.heartbeat"
payload = { n = "{beat}", text = "beat {beat}" }
payload_fields = ["uptime_seconds"]
"#;
    let mut m = mapper(rules);
    let e = one(&mut m, line("app", "hello world"));
    assert_eq!(
        e["payload"],
        json!({"line": "hello world", "path": "/var/log/app/access.log", "offset": 120, "word": "hello"})
    );
    assert_eq!(e["related"], json!([]));
    let hb = Observation::new(Arc::from("hb"), "agent.heartbeat")
        .with("beat", 3)
        .with("uptime_seconds", 9);
    let e = one(&mut m, hb);
    assert_eq!(
        e["payload"],
        json!({"n": 3, "text": "beat 3", "uptime_seconds": 9})
    );
}

#[test]
fn follows_chains_per_resource_and_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = config("");
    let first = {
        let mut m = Mapper::new(identity(&c), &c.mappings, Some(dir.path()));
        let a = one(&mut m, line("app", "a"));
        assert!(a.get("follows").is_none(), "nothing before the first");
        let b = one(&mut m, line("app", "b"));
        assert_eq!(b["follows"], a["id"]);
        let elsewhere = Observation::new(Arc::from("app"), "line")
            .with("line", "c")
            .with("path", "/other.log");
        let other = one(&mut m, elsewhere);
        assert!(other.get("follows").is_none(), "another resource");
        m.flush_state().expect("saved");
        b["id"].clone()
    };
    let mut m = Mapper::new(identity(&c), &c.mappings, Some(dir.path()));
    let next = one(&mut m, line("app", "d"));
    assert_eq!(next["follows"], first, "the chain survived the restart");
    // Over five minutes apart: no follows.
    let mut late = line("app", "e");
    late.observed_at += chrono::Duration::minutes(6);
    assert!(one(&mut m, late).get("follows").is_none());
    // A re-read line (same derived id) never follows itself.
    let mut m = mapper("");
    let make = || {
        let mut o = line("app", "same");
        o.identity = Some(b"line-1".to_vec());
        o
    };
    one(&mut m, make());
    assert!(one(&mut m, make()).get("follows").is_none());
    // follows = "off".
    let mut m = mapper("[[mappings]]\nname = \"o\"\nkind = \"line\"\nfollows = \"off\"\n");
    one(&mut m, line("app", "a"));
    assert!(one(&mut m, line("app", "b")).get("follows").is_none());
}

#[test]
fn sample_and_rate_limits_are_counted_and_reported() {
    let rules = r#"
[[mappings]]
name = "chatty"
kind = "line"
when = [{ regex = "chatty" }]
event = "app.chatty"
max_per_second = 2

[[mappings]]
name = "sampled"
kind = "line"
when = [{ regex = "sampled" }]
event = "app.sampled"
sample = 10
"#;
    let mut m = mapper(rules);
    let at = Utc::now();
    let mut made = 0;
    for _ in 0..5 {
        let mut o = line("app", "chatty");
        o.observed_at = at;
        made += events(&mut m, o).len();
    }
    for _ in 0..20 {
        made += events(&mut m, line("app", "sampled")).len();
    }
    assert_eq!(made, 2 + 2);
    assert_eq!(m.stats().suppressed, 3 + 18);
    let report = m.suppressed_observation().expect("something held back");
    let e = one(&mut m, report);
    assert_eq!(e["event"], "herald.agent.suppressed");
    assert_eq!(e["resource"]["prefect.resource.id"], "herald.agent.h1");
    assert_eq!(
        e["payload"],
        json!({"rules": {"chatty": 3, "sampled": 18}, "total": 21})
    );
    assert!(m.suppressed_observation().is_none(), "counts were taken");
}

use chrono::Utc;

#[test]
fn an_oversized_event_is_an_error_not_a_panic() {
    let mut m = mapper("");
    let obs = Observation::new(Arc::from("hb"), "agent.heartbeat")
        .with("big", "x".repeat(event::MAX_EVENT_BYTES));
    let mut out = Vec::new();
    let error = m.map(obs, &mut out).expect_err("too large");
    assert_eq!(error.error.rule(), "too_large");
    assert!(error.to_string().contains("source hb"), "{error}");
    assert!(out.is_empty());
}

#[test]
fn the_prefilter_agrees_with_each_rule_alone() {
    // Many rules on the line: the first that matches must win exactly as
    // if each regex ran on its own.
    let words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "ep[s]ilon",
        "(?i)ZETA",
        "^eta",
        "theta$",
    ];
    let mut rules = String::new();
    for (i, w) in words.iter().enumerate() {
        rules.push_str(&format!(
            "[[mappings]]\nname = \"r{i}\"\nkind = \"line\"\nwhen = [{{ regex = '{w}' }}]\nevent = \"hit.{i}\"\n"
        ));
    }
    let mut m = mapper(&rules);
    assert_eq!(m.sets.len(), 1);
    let regexes: Vec<Regex> = words
        .iter()
        .map(|w| Regex::new(w).expect("regex"))
        .collect();
    for text in [
        "x beta alpha",
        "zeta",
        "eta",
        "no",
        "a theta",
        "epsilon!",
        "xeta",
    ] {
        let expected = regexes
            .iter()
            .position(|r| r.is_match(text))
            .map_or("herald.log.line".to_owned(), |i| format!("hit.{i}"));
        assert_eq!(
            one(&mut m, line("app", text))["event"],
            expected.as_str(),
            "{text}"
        );
    }
}

#[test]
fn mapping_mistakes_are_all_reported_with_positions() {
    let text = r#"
[[mappings]]
name = "a"
kind = "line"
event = "x.{pth}.{line | lowr}"
when = [{ regex = "(unclosed" }, { field = "json.level", equals = "x", bogus = 1 }]

[[mappings]]
name = "a"
source = "ngnix"
kind = "proces.exited"
drop = true
event = "never"
resource.labels = { "prefect.resource.id" = "x" }
occurred = { field = "line", format = "%Q" }
sample = 0
"#;
    let shown = mistakes(text);
    let line_of = |needle: &str| {
        format!("{HEAD}{text}")
            .lines()
            .position(|l| l.contains(needle))
            .expect("present")
            + 1
    };
    let event_line = line_of("event = \"x.{pth}");
    // `pth` starts at column 13 of `event = "x.{pth}...`.
    assert!(
        shown.contains(&format!(
            "t.toml:{event_line}:13: in template: unknown field `pth`"
        )),
        "{shown}"
    );
    assert!(shown.contains("did you mean `path`?"), "{shown}");
    assert!(
        shown.contains(&format!(
            "t.toml:{event_line}:26: in template: unknown filter `lowr`"
        )),
        "{shown}"
    );
    assert!(shown.contains("invalid regex"), "{shown}");
    assert!(shown.contains("unknown key `bogus`"), "{shown}");
    assert!(
        shown.contains("mapping name \"a\" is already used"),
        "{shown}"
    );
    assert!(
        shown.contains("source \"ngnix\" matches no known source"),
        "{shown}"
    );
    assert!(shown.contains("did you mean \"nginx\"?"), "{shown}");
    assert!(
        shown.contains("kind \"proces.exited\" matches no known kind"),
        "{shown}"
    );
    assert!(
        shown.contains("builds no event, so `event` does nothing"),
        "{shown}"
    );
    assert!(
        shown.contains("`prefect.resource.id` is set by its own key"),
        "{shown}"
    );
    assert!(shown.contains("invalid time format"), "{shown}");
    assert!(shown.contains("sample must be at least 1"), "{shown}");
}

#[test]
fn fields_are_checked_against_the_kind() {
    let shown =
        mistakes("[[mappings]]\nname = \"a\"\nkind = \"agent.heartbeat\"\nevent = \"{line}\"\n");
    assert!(shown.contains("unknown field `line`"), "{shown}");
    let shown =
        mistakes("[[mappings]]\nname = \"a\"\nkind = \"agent.*\"\nwhen = [{ regex = \"x\" }]\n");
    assert!(
        shown.contains("a regex without `field` tests `line`"),
        "{shown}"
    );
    let shown = mistakes("[[mappings]]\nname = \"a\"\nevent = \"{path.x}\"\n");
    assert!(shown.contains("`path` has no fields"), "{shown}");
    let shown =
        mistakes("[[mappings]]\nname = \"a\"\nwhen = [{ regex = '(?P<x>a)(?P<x2>b)' }, {}]\n");
    assert!(shown.contains("this condition tests nothing"), "{shown}");
    let shown = mistakes("[[mappings]]\nname = \"a\"\nwhen = [{ equals = 1 }]\n");
    assert!(shown.contains("`equals` needs a `field`"), "{shown}");
    // Globs: agent.* sees every agent kind's fields.
    config("[[mappings]]\nname = \"a\"\nkind = \"agent.*\"\nevent = \"x.{uptime_seconds}\"\n");
}

#[test]
fn mapping_tests_run_and_show_their_differences() {
    let c = config(&format!(
        "{NGINX_RULE}\n{}",
        r#"
[[tests]]
name = "a 502 fails"
source = "nginx"
line = '1.2.3.4 - - [x] "GET /a HTTP/1.1" 502 1 "-" "-"'
fields = { path = "/var/log/nginx/access.log" }
expect = { event = "nginx.request.get.failed", resource = { "http.status" = "502" }, related = [ { "prefect.resource.role" = "method" } ], payload = { status = "502" } }

[[tests]]
name = "wrong on purpose"
source = "nginx"
line = '1.2.3.4 - - [x] "GET /a HTTP/1.1" 503 1 "-" "-"'
[tests.expect]
event = "nginx.request.get.broken"
resource = { "http.status" = "502", "nope" = "x" }
related = [ { "prefect.resource.role" = "client" } ]
payload = { status = "500", deep = { x = 1 } }

[[tests]]
name = "not dropped"
source = "app"
line = "x"
expect = { dropped = true }
"#
    ));
    let outcomes = testing::run(&identity(&c), &c.mappings, &c.tests);
    assert!(outcomes[0].passed(), "{:?}", outcomes[0].differences);
    let d = &outcomes[1].differences;
    assert_eq!(d.len(), 6, "{d:#?}");
    assert!(
        d[0].contains("event: expected \"nginx.request.get.broken\""),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.contains("resource[\"nope\"]: expected \"x\", got (missing)")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.contains("payload.status: expected \"500\", got \"503\"")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.contains("payload.deep: expected {\"x\":1}, got (missing)")),
        "{d:?}"
    );
    assert!(!outcomes[2].passed());
    assert!(outcomes[1].line > outcomes[0].line);
}

#[test]
fn test_cases_are_checked_at_load() {
    let shown = mistakes(
        "[[tests]]\nname = \"t\"\nsource = \"nope\"\nkind = \"lines\"\nfields = { pth = \"x\" }\n\
         [[tests]]\nname = \"u\"\nsource = \"app\"\nfields = { pth = \"x\" }\n",
    );
    assert!(shown.contains("no source is named \"nope\""), "{shown}");
    assert!(shown.contains("unknown kind \"lines\""), "{shown}");
    assert!(shown.contains("kind line has no field `pth`"), "{shown}");
    assert!(
        shown.contains("missing the required key `expect`"),
        "{shown}"
    );
}

/// Every key the mapping schema reads, read from a config using them all,
/// is documented in config.example.toml (whose own test only sees keys its
/// uncommented tables use).
#[test]
fn every_mapping_key_is_documented() {
    let text = format!(
        "{HEAD}{NGINX_RULE}{}",
        r#"
[[mappings]]
name = "all-keys"
source = "app"
kind = ["line"]
when = [
  { field = "line", regex = "x", equals = "x", in = ["x"], exists = true, gt = 1, gte = 1, lt = 1, lte = 1 },
  { not = { field = "line", equals = "y" } },
  { any = [ { field = "line", equals = "z" } ] },
]
continue = false
occurred = { field = "line", format = "rfc3339" }
payload_fields = "all"
follows = "off"
builtin_related = true
sample = 2
max_per_second = 3

[[mappings]]
name = "dropper"
drop = true

[[tests]]
name = "t"
source = "app"
kind = "line"
line = "x"
fields = { offset = 1 }
expect = { event = "e", resource = {}, related = [], payload = {}, dropped = false }
"#
    );
    let dec = crate::config::decode::Decoder::new("t", &text, &no_env);
    let (document, syntax) = toml::de::DeTable::parse_recoverable(&text);
    assert!(syntax.is_empty());
    let root = crate::config::decode::Table::root(&dec, document.get_ref());
    let names = vec!["app".to_owned(), "nginx".to_owned()];
    read_mappings(&root, &names);
    testing::read_tests(&root, &names);
    let asked = dec.asked();
    assert!(asked.contains("max_per_second") && asked.contains("lte") && asked.contains("dropped"));
    let example = include_str!("../../config.example.toml");
    for key in asked {
        let documented = example.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} ="))
                || l.starts_with(&format!("[[{key}]]"))
                || l.starts_with(&format!("{key}."))
        });
        assert!(documented, "config.example.toml does not document `{key}`");
    }
}

#[test]
fn resources_and_related_keep_their_checks() {
    // A related resource whose role renders empty is invalid: the rule is
    // skipped, the default used.
    let mut m = mapper(
        "[[mappings]]\nname = \"r\"\nkind = \"line\"\nevent = \"e\"\n\
         related = [ { id = \"x\", role = \"{json.role}\" } ]\n",
    );
    assert_eq!(
        one(&mut m, line("app", r#"{"role":""}"#))["event"],
        "herald.log.line"
    );
    assert_eq!(one(&mut m, line("app", r#"{"role":"r"}"#))["event"], "e");
    let _ = (Resource::new("x"), RelatedResource::new("x", "y"));
}

/// Regression: two agents tailing files with the same content (the same
/// log on two hosts) made the same ids, and Prefect kept only one agent's
/// events.
#[test]
fn the_same_observation_on_two_agents_gets_two_ids() {
    let on = |hostname: &str| {
        let c = config::parse(
            "t.toml",
            &HEAD.replace("hostname = \"h1\"", &format!("hostname = \"{hostname}\"")),
            &no_env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut m = Mapper::new(identity(&c), &c.mappings, None);
        let mut obs = line("app", "same line");
        obs.identity = Some(b"fingerprint+offset+hash".to_vec());
        let mut out = Vec::new();
        m.map(obs, &mut out).expect("maps");
        out.remove(0).id
    };
    assert_eq!(on("web-1"), on("web-1"), "stable on one agent");
    assert_ne!(on("web-1"), on("web-2"), "distinct across agents");
}

/// The file source hands lines over typed ([`crate::observation::Line`]);
/// every rule must see them exactly as the same values in `fields`, and
/// make the same bytes and ids.
#[test]
fn a_typed_line_maps_exactly_like_its_fields() {
    use crate::observation::Line;
    let rules = r#"
[[mappings]]
name = "status"
kind = "line"
when = [{ regex = "\" (?P<status>\\d{3}) " }, { field = "offset", gte = 100 }]
event = "web.{status}"
resource = { id = "web.{path|basename}", labels = { status = "{status}" } }
continue = true

[[mappings]]
name = "all"
kind = "line"
when = [{ field = "json.level", equals = "warn" }]
payload_fields = "all"
continue = true

[[mappings]]
name = "cut"
kind = "line"
when = [{ field = "truncated", exists = true }]
payload = { at = "{offset}", file = "{path}" }
continue = true
"#;
    let texts = [
        (r#"1.2.3.4 - - "GET / HTTP/1.1" 200 5 "a\tb""#, false, None),
        (
            r#"{"level":"warn","msg":"x","line":"inner"}"#,
            false,
            Some(json!({"level": "warn", "msg": "x", "line": "inner"})),
        ),
        ("cut h\u{e9}re", true, None),
    ];
    for rules in ["", rules] {
        for (i, (text, truncated, json)) in texts.iter().enumerate() {
            let offset = 120 * (i as u64 + 1);
            let identity: [u8; 32] = std::array::from_fn(|b| (b + i) as u8);
            let typed = Observation::line(
                Arc::from("app"),
                chrono::Utc::now(),
                Line::new(
                    (*text).to_owned(),
                    Arc::new(Value::from("/var/log/app/access.log")),
                    offset,
                    *truncated,
                    json.clone(),
                    identity,
                ),
            );
            let mut named = Observation::new(Arc::from("app"), "line")
                .with("line", *text)
                .with("path", "/var/log/app/access.log")
                .with("offset", offset);
            if *truncated {
                named = named.with("truncated", true);
            }
            if let Some(json) = json {
                named = named.with("json", json.clone());
            }
            named.identity = Some(identity.to_vec());
            named.observed_at = typed.observed_at;
            let bytes = |obs: Observation| -> Vec<(Uuid, Vec<u8>)> {
                let mut out = Vec::new();
                mapper(rules).map(obs, &mut out).expect("maps");
                out.iter().map(|m| (m.id, m.json.to_vec())).collect()
            };
            let (a, b) = (bytes(typed), bytes(named));
            let rule_events = usize::from(!rules.is_empty());
            assert_eq!(
                a.len(),
                1 + rule_events,
                "line {text:?}: one rule and the default"
            );
            assert_eq!(a, b, "rules {rules:?}, line {text:?}");
        }
    }
}

fn process_started(pid: u32) -> Observation {
    Observation::new(Arc::from("workers"), "process.started")
        .with("pid", pid)
        .with("name", "worker")
        .with("cmdline", "worker --queue default")
        .with("user", "app")
        .with("start_time", "2026-11-27T10:00:00Z")
}

fn related_roles(e: &Value) -> Vec<String> {
    e["related"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r["prefect.resource.role"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_kind_with_its_own_resource_is_put_on_it_by_default() {
    let mut m = mapper("");
    let e = one(&mut m, process_started(4242));
    assert_eq!(e["event"], "herald.process.started");
    let resource = &e["resource"];
    assert_eq!(resource["prefect.resource.id"], "herald.process.h1.4242");
    assert_eq!(resource["prefect.resource.name"], "worker");
    assert_eq!(resource["herald.process.pid"], "4242");
    assert_eq!(resource["herald.process.cmdline"], "worker --queue default");
    assert_eq!(resource["acme.team"], "data", "the agent's labels too");
    // No exe and no container in this observation: the label and the
    // related container are left out, not the event.
    assert!(resource.get("herald.process.exe").is_none(), "{resource}");
    assert_eq!(related_roles(&e), ["host", "agent"]);
    assert_eq!(e["payload"]["pid"], 4242);

    let e = one(
        &mut m,
        process_started(7)
            .with("exe", "/usr/bin/worker")
            .with("container_id", "abc123")
            .with("container_runtime", "containerd"),
    );
    assert_eq!(e["resource"]["herald.process.exe"], "/usr/bin/worker");
    assert_eq!(related_roles(&e), ["container", "host", "agent"]);
    assert_eq!(
        e["related"][0]["prefect.resource.id"],
        "herald.container.abc123"
    );
    assert_eq!(e["related"][0]["herald.container.runtime"], "containerd");
}

#[test]
fn a_rule_without_a_resource_keeps_the_kinds_own() {
    let mut m = mapper(
        "[[mappings]]\nname = \"crash\"\nkind = \"process.started\"\nevent = \"ops.worker.up\"\n",
    );
    let e = one(
        &mut m,
        process_started(9)
            .with("container_id", "c9")
            .with("container_runtime", "docker"),
    );
    assert_eq!(e["event"], "ops.worker.up");
    assert_eq!(e["resource"]["prefect.resource.id"], "herald.process.h1.9");
    assert_eq!(related_roles(&e), ["container", "host", "agent"]);
}

#[test]
fn the_hosts_own_events_are_on_the_host_and_not_related_to_it() {
    let mut m = mapper("");
    let obs = Observation::new(Arc::from("host"), "host.memory-high").with("used_percent", 95.5);
    let e = one(&mut m, obs);
    assert_eq!(e["event"], "herald.host.memory-high");
    assert_eq!(e["resource"]["prefect.resource.id"], "herald.host.h1");
    assert_eq!(e["resource"]["prefect.resource.name"], "h1");
    assert!(e["resource"].get("prefect.resource.role").is_none());
    assert_eq!(related_roles(&e), ["agent"]);
}

/// Writes `event` into the arena and takes it.
fn keep(arena: &mut Arena, event: &[u8]) -> Bytes {
    arena.block().extend_from_slice(event);
    arena.take()
}

#[test]
fn the_arena_reuses_a_block_once_its_events_are_gone() {
    let mut arena = Arena::default();
    let event = vec![b'x'; ARENA_BLOCK / 4];
    let first: Vec<Bytes> = (0..4).map(|_| keep(&mut arena, &event)).collect();
    let first_block = first[0].as_ptr();
    assert_eq!(first[3].as_ptr(), first_block.wrapping_add(3 * event.len()));
    // The fifth does not fit: a second block, as the first is still used.
    let second = keep(&mut arena, b"{\"n\":5}");
    assert_eq!(&second[..], b"{\"n\":5}");
    assert!(first.iter().all(|e| e[..] == event[..]));
    drop(first);
    // Events go on in the second block until it has too little room left;
    // then the first, now unused, is taken again.
    let small = vec![b'z'; 1024];
    let mut more = Vec::new();
    let moved = loop {
        let e = keep(&mut arena, &small);
        let second_block = second.as_ptr() as usize..second.as_ptr() as usize + ARENA_BLOCK;
        let elsewhere = !second_block.contains(&(e.as_ptr() as usize));
        more.push(e);
        if elsewhere {
            break more.last().map(|e| e.as_ptr());
        }
        assert!(
            more.len() < ARENA_BLOCK / small.len(),
            "never left the second block"
        );
    };
    assert_eq!(moved, Some(first_block));
    assert_eq!(&second[..], b"{\"n\":5}", "what is kept never changes");
    assert!(more.iter().all(|e| e[..] == small[..]));
    // An event larger than the room left moves to an allocation of its
    // own, and the next event goes on in a block.
    let big = vec![b'y'; ARENA_BLOCK * 2];
    let spent = arena.spent.len();
    assert_eq!(&keep(&mut arena, &big)[..], &big[..]);
    assert!(
        arena.block.is_none(),
        "the rest of its allocation is no block"
    );
    assert_eq!(&keep(&mut arena, b"{}")[..], b"{}");
    assert_eq!(arena.spent.len(), spent, "nor is it kept for reuse");
    // A write given up leaves nothing behind.
    arena.block().extend_from_slice(b"half an ev");
    arena.block().clear();
    assert_eq!(&keep(&mut arena, b"{}")[..], b"{}");
}

/// A file's resource is written once and reused for its next lines; a
/// line of another file, or an event of another rule, must never get it.
#[test]
fn a_reused_resource_is_always_the_lines_own() {
    let rules = r#"
[[mappings]]
name = "web"
kind = "line"
when = [{ regex = "^web" }]
resource = { id = "web.{path|basename}", labels = { "app.path" = "{path}" } }
"#;
    let at = chrono::Utc::now();
    let obs = |path: &str, text: &str, offset: u64| {
        let mut o = Observation::new(Arc::from("app"), "line")
            .with("line", text)
            .with("path", path)
            .with("offset", offset);
        o.observed_at = at;
        o.identity = Some(offset.to_le_bytes().to_vec());
        o
    };
    let sequence = [
        ("/var/log/a.log", "one", 0),
        ("/var/log/a.log", "web two", 10),
        ("/var/log/a.log", "three", 20),
        ("/var/log/b.log", "four", 30),
        ("/var/log/a.log", "web five", 40),
        ("/var/log/a.log", "six", 50),
    ];
    let mut shared = mapper(rules);
    let mut last_on: std::collections::HashMap<String, Value> = Default::default();
    for (path, text, offset) in sequence {
        let mut reused = Vec::new();
        shared
            .map(obs(path, text, offset), &mut reused)
            .expect("maps");
        let mut alone = Vec::new();
        mapper(rules)
            .map(obs(path, text, offset), &mut alone)
            .expect("maps");
        let json = |out: &[Mapped]| -> Vec<Value> {
            out.iter()
                .map(|m| serde_json::from_slice::<Value>(&m.json).expect("json"))
                .collect()
        };
        let (mut reused, alone) = (json(&reused), json(&alone));
        // Only `follows` may differ: the shared mapper chains each
        // resource's events, which needs the right resource id.
        for event in &mut reused {
            let resource = event["resource"]["prefect.resource.id"].to_string();
            let follows = event.as_object_mut().and_then(|o| o.remove("follows"));
            assert_eq!(follows.as_ref(), last_on.get(&resource), "{path} {text}");
            last_on.insert(resource, event["id"].clone());
        }
        assert_eq!(reused, alone, "{path} {text}");
        let want = if text.starts_with("web") {
            format!("web.{}", path.rsplit('/').next().unwrap_or_default())
        } else {
            format!("herald.file.h1:{path}")
        };
        assert_eq!(reused[0]["resource"]["prefect.resource.id"], want.as_str());
    }
}

/// What a sharing mapper wrote, with its shared parts put back as the
/// queue's reader does.
fn put_back(json: &[u8]) -> Vec<u8> {
    use crate::queue::shared;
    assert!(shared::has_refs(json), "written in the queue's format");
    let parts: shared::PartMap = shared::refs(json)
        .map(|id| {
            let id = id.expect("well-formed reference");
            let def = shared::definition(id).expect("registered");
            let (_, part) = shared::as_definition(&def).expect("a definition");
            (id, Bytes::copy_from_slice(part))
        })
        .collect();
    let mut whole = Vec::new();
    shared::expand(json, &parts, &mut whole).expect("every part known");
    whole
}

#[test]
fn events_written_for_the_queue_come_back_byte_for_byte() {
    let rules = r#"
[[mappings]]
name = "web"
kind = "line"
when = [{ regex = "^web" }]
resource = { id = "web.{path|basename}", labels = { "app.path" = "{path}" } }
related = [{ id = "team.{path|basename}", role = "team" }]
continue = true
"#;
    let at = chrono::Utc::now();
    let observations = || {
        let mut all: Vec<Observation> = [
            ("/var/log/a.log", "web one"),
            ("/var/log/a.log", "two"),
            ("/var/log/b.log", "web three \"quoted\""),
            ("/var/log/a.log", "four"),
            ("/var/log/b.log", "five"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (path, text))| {
            Observation::new(Arc::from("app"), "line")
                .with("line", text)
                .with("path", path)
                .with("offset", i as u64 * 10)
        })
        .collect();
        all.push(process_started(4242));
        all.push(Observation::new(Arc::from("hb"), "agent.heartbeat").with("uptime_seconds", 5));
        for (i, obs) in all.iter_mut().enumerate() {
            obs.observed_at = at;
            obs.identity = Some(i.to_le_bytes().to_vec());
        }
        all
    };
    let mut plain = mapper(rules);
    let mut sharing = mapper(rules);
    sharing.share_repeated_parts();
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for obs in observations() {
        plain.map(obs, &mut want).expect("maps");
    }
    for obs in observations() {
        sharing.map(obs, &mut got).expect("maps");
    }
    assert_eq!(got.len(), want.len());
    let mut saved = 0;
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got.id, want.id);
        let whole = put_back(&got.json);
        assert_eq!(
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&want.json)
        );
        saved += want.json.len().saturating_sub(got.json.len());
    }
    assert!(
        saved > want.len() * 200,
        "resources and related resources are references: {saved} bytes saved"
    );
}

#[test]
fn a_shared_event_counts_its_full_size_against_the_limit() {
    let mut m = mapper("");
    m.share_repeated_parts();
    // Just over the limit in full, well under it once the host and agent
    // are references.
    let at = chrono::Utc::now();
    let obs = |pad: usize| {
        let mut o =
            Observation::new(Arc::from("hb"), "agent.heartbeat").with("big", "x".repeat(pad));
        o.observed_at = at;
        o
    };
    let mut out = Vec::new();
    // The second event follows the first, as the next ones will.
    m.map(obs(0), &mut out).expect("maps");
    m.map(obs(0), &mut out).expect("maps");
    let whole = put_back(&out[1].json).len();
    let pad = event::MAX_EVENT_BYTES - whole + 1;
    let error = m.map(obs(pad), &mut out).expect_err("too large");
    assert_eq!(error.error.rule(), "too_large");
    m.map(obs(pad - 12), &mut out).expect("fits");
}
