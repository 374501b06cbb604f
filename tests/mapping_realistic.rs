//! Realistic mapping configs (an nginx access log, a JSON application log,
//! a Python traceback joined by multiline) through the public API: every
//! event they make passes Prefect's rules (`support::prefect_rules`), and
//! all of them are written to `<CARGO_TARGET_TMPDIR>/mapping_events.jsonl`
//! for a check by hand with Prefect's own model:
//! `python3 ../shared/tools/prefect/validate.py < .../mapping_events.jsonl`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use herald::config::{self, Config};
use herald::identity::Identity;
use herald::mapping::Mapper;
use herald::observation::Observation;
use serde_json::{Value, json};
use support::prefect_rules;

const CONFIG: &str = r#"
[agent]
hostname = "web-1"
[agent.labels]
"acme.env" = "production"

[[sources.heartbeat]]
name = "nginx"
[[sources.heartbeat]]
name = "api"
[[sources.heartbeat]]
name = "worker"

# nginx: health checks are noise; 5xx are failed requests on their route;
# every other request is a request event, sampled.
[[mappings]]
name = "nginx-health"
source = "nginx"
kind = "line"
when = [{ regex = '"GET /healthz' }]
drop = true

[[mappings]]
name = "nginx-failed"
source = "nginx"
kind = "line"
when = [
  { regex = '^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<route>[^ "?]*)(?:\?(?P<query>[^ "]*))? [^"]*" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"' },
  { field = "status", gte = 500 },
]
event = "nginx.request.failed"
occurred = { field = "time", format = "%d/%b/%Y:%H:%M:%S %z" }
resource.id = "nginx.route.{route | slug | default:root}"
resource.labels = { "prefect.resource.name" = "{method} {route}", "http.status" = "{status}" }
related = [ { id = "http.client.{client | slug}", role = "client", labels = { "http.user-agent" = "{agent | truncate:64}" } } ]
payload = { status = "{status}", bytes = "{bytes}", query = "{query | default:}", user = "{user}" }

[[mappings]]
name = "nginx-request"
source = "nginx"
kind = "line"
when = [{ regex = '"(?P<method>[A-Z]+) (?P<route>[^ "?]*)[^"]*" (?P<status>\d{3}) ' }]
event = "nginx.request.{method | lower}"
resource.id = "nginx.route.{route | slug | default:root}"
payload_fields = ["status"]
sample = 2

# A JSON application log: errors become events on the flow run they name.
[[mappings]]
name = "api-errors"
source = "api"
kind = "line"
when = [
  { field = "json.level", in = ["ERROR", "CRITICAL"] },
  { field = "json.flow_run_id", exists = true },
]
event = "acme.api.{json.level | lower}"
occurred = { field = "json.ts", format = "rfc3339" }
resource.id = "prefect.flow-run.{json.flow_run_id}"
resource.labels = { "acme.logger" = "{json.logger}" }
related = [ { id = "acme.user.{json.user.id | default:anonymous}", role = "user" } ]
payload = { message = "{json.msg}", attempt = "{json.attempt}" }

[[mappings]]
name = "api-debug"
source = "api"
kind = "line"
when = [{ field = "json.level", equals = "DEBUG" }]
drop = true

# A Python traceback (joined into one record by the file source's
# multiline): the exception type and message, on the worker.
[[mappings]]
name = "worker-traceback"
source = "worker"
kind = "line"
when = [
  { regex = '^Traceback \(most recent call last\):' },
  { regex = '(?m)^(?P<exception>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt))(?::\s*(?P<message>.*))?\z' },
  { regex = '(?m)File "(?P<file>[^"]+)", line (?P<lineno>\d+), in (?P<function>\S+)\n[^\n]*\n[A-Za-z_]' },
]
event = "acme.worker.exception.{exception | slug}"
resource.id = "acme.worker.{hostname}"
resource.labels = { "prefect.resource.name" = "worker on {hostname}" }
payload = { exception = "{exception}", message = "{message | default:}", where = "{file}:{lineno} in {function}", traceback = "{line}" }

[[tests]]
name = "a 502 is a failed request"
source = "nginx"
line = '10.1.2.3 - alice [10/Oct/2024:13:55:36 +0000] "POST /api/v1/flows?limit=5 HTTP/1.1" 502 0 "-" "curl/8.5.0"'
fields = { path = "/var/log/nginx/access.log" }
expect = { event = "nginx.request.failed", resource = { "prefect.resource.id" = "nginx.route.api-v1-flows", "http.status" = "502", "acme.env" = "production" }, related = [ { "prefect.resource.role" = "client", "prefect.resource.id" = "http.client.10.1.2.3" } ], payload = { status = "502", query = "limit=5", user = "alice" } }

[[tests]]
name = "health checks are dropped"
source = "nginx"
line = '10.1.2.3 - - [10/Oct/2024:13:55:36 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"'
expect = { dropped = true }

[[tests]]
name = "an API error is on its flow run"
source = "api"
line = '{"ts":"2024-05-01T10:00:00.5Z","level":"ERROR","logger":"app.etl","flow_run_id":"f-123","msg":"boom","attempt":2,"user":{"id":"u7"}}'
expect = { event = "acme.api.error", resource = { "prefect.resource.id" = "prefect.flow-run.f-123" }, related = [ { "prefect.resource.id" = "acme.user.u7" } ], payload = { message = "boom", attempt = 2 } }
"#;

const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/app/etl/extract.py\", line 42, in fetch\n    rows = client.get(url)\n  File \"/usr/lib/python3.12/http/client.py\", line 1411, in getresponse\n    response.begin()\nConnectionResetError: [Errno 104] Connection reset by peer";

fn load() -> Config {
    config::parse("realistic.toml", CONFIG, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn identity(config: &Config) -> Identity {
    Identity::discover(
        config.agent.hostname.as_deref(),
        &config.agent.labels,
        &|_| None,
    )
}

fn line(source: &str, path: &str, text: &str, offset: u64) -> Observation {
    let mut obs = Observation::new(Arc::from(source), "line")
        .with("line", text)
        .with("path", path)
        .with("offset", offset);
    obs.identity = Some(format!("{path}:{offset}").into_bytes());
    obs
}

fn map_all(mapper: &mut Mapper, observations: Vec<Observation>) -> Vec<Value> {
    let mut events = Vec::new();
    for obs in observations {
        let mut out = Vec::new();
        mapper.map(obs, &mut out).expect("maps");
        for mapped in out {
            let event: Value = serde_json::from_slice(&mapped.json).expect("json");
            if let Err(rule) = prefect_rules::check(&event) {
                panic!("{rule}: {event}");
            }
            events.push(event);
        }
    }
    save(&events);
    events
}

/// Appends events for the by-hand check with Prefect's own model.
fn save(events: &[Value]) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mapping_events.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("events file");
    for event in events {
        writeln!(file, "{event}").expect("write");
    }
}

#[test]
fn nginx_access_log() {
    let c = load();
    let mut mapper = Mapper::new(identity(&c), &c.mappings, None);
    let path = "/var/log/nginx/access.log";
    let lines = [
        r#"10.1.2.3 - - [10/Oct/2024:13:55:36 +0200] "GET /api/v1/flows?limit=5 HTTP/1.1" 200 512 "-" "curl/8.5.0""#,
        r#"10.1.2.3 - - [10/Oct/2024:13:55:37 +0200] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29""#,
        r#"10.1.2.4 - bob [10/Oct/2024:13:55:38 +0200] "POST /api/v1/flows HTTP/1.1" 503 0 "https://app.example.com/" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36""#,
        r#"10.1.2.5 - - [10/Oct/2024:13:55:39 +0200] "GET / HTTP/1.1" 500 0 "-" "curl/8.5.0""#,
        r#"10.1.2.3 - - [10/Oct/2024:13:55:40 +0200] "GET /api/v1/flows HTTP/1.1" 200 512 "-" "curl/8.5.0""#,
        "this is not an access line \u{1} \"quoted\" caf\u{e9}",
    ];
    let observations = lines
        .iter()
        .enumerate()
        .map(|(i, l)| line("nginx", path, l, i as u64 * 200))
        .collect();
    let events = map_all(&mut mapper, observations);
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    // The health check is dropped; of the two 200s the sample keeps the first.
    assert_eq!(
        names,
        [
            "nginx.request.get",
            "nginx.request.failed",
            "nginx.request.failed",
            "herald.log.line"
        ]
    );
    let failed = &events[1];
    assert_eq!(failed["occurred"], "2024-10-10T11:55:38.000000Z");
    assert_eq!(
        failed["resource"]["prefect.resource.id"],
        "nginx.route.api-v1-flows"
    );
    assert_eq!(
        failed["resource"]["prefect.resource.name"],
        "POST /api/v1/flows"
    );
    assert_eq!(failed["resource"]["acme.env"], "production");
    assert_eq!(
        failed["related"][0]["prefect.resource.id"],
        "http.client.10.1.2.4"
    );
    assert_eq!(
        failed["related"][0]["http.user-agent"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(64)
    );
    assert_eq!(
        failed["payload"],
        json!({"status": "503", "bytes": "0", "query": "", "user": "bob"})
    );
    assert_eq!(
        events[2]["resource"]["prefect.resource.id"],
        "nginx.route.root"
    );
    assert_eq!(
        events[3]["resource"]["prefect.resource.id"],
        "herald.file.web-1:/var/log/nginx/access.log"
    );
    // The two failed requests on different routes do not chain; the
    // unmatched line chains to nothing on its file resource.
    assert!(failed.get("follows").is_none());
    let stats = mapper.stats();
    assert_eq!((stats.dropped, stats.suppressed, stats.unmapped), (1, 1, 0));
}

#[test]
fn json_application_log() {
    let c = load();
    let mut mapper = Mapper::new(identity(&c), &c.mappings, None);
    let path = "/var/log/api/app.jsonl";
    let docs = [
        json!({"ts": "2024-05-01T10:00:00.123Z", "level": "ERROR", "logger": "app.etl", "flow_run_id": "f-1", "msg": "boom \"x\"", "attempt": 2, "user": {"id": "u7"}}),
        json!({"ts": "2024-05-01T10:00:01Z", "level": "DEBUG", "msg": "noise"}),
        json!({"ts": "2024-05-01T10:00:02Z", "level": "CRITICAL", "logger": "app.etl", "flow_run_id": "f-1", "msg": "down", "attempt": 3}),
        json!({"ts": "not a time", "level": "ERROR", "logger": "app.etl", "flow_run_id": "f-2", "msg": "m", "attempt": 1}),
        json!({"level": "ERROR", "msg": "no flow run"}),
        json!({"level": "INFO", "msg": "ok"}),
    ];
    let observations = docs
        .iter()
        .enumerate()
        .map(|(i, d)| line("api", path, &d.to_string(), i as u64 * 100))
        .collect();
    let events = map_all(&mut mapper, observations);
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        [
            "acme.api.error",
            "acme.api.critical",
            "acme.api.error",
            "herald.log.line",
            "herald.log.line"
        ]
    );
    assert_eq!(events[0]["occurred"], "2024-05-01T10:00:00.123000Z");
    assert_eq!(
        events[0]["resource"]["prefect.resource.id"],
        "prefect.flow-run.f-1"
    );
    assert_eq!(events[0]["resource"]["acme.logger"], "app.etl");
    assert_eq!(
        events[0]["related"][0]["prefect.resource.id"],
        "acme.user.u7"
    );
    assert_eq!(
        events[0]["payload"],
        json!({"message": "boom \"x\"", "attempt": 2})
    );
    assert_eq!(
        events[1]["related"][0]["prefect.resource.id"],
        "acme.user.anonymous"
    );
    assert_eq!(
        events[1]["follows"], events[0]["id"],
        "same flow run, 2 s apart"
    );
    assert_eq!(mapper.stats().occurred_failures, 1);
}

#[test]
fn python_traceback_through_multiline() {
    let c = load();
    let mut mapper = Mapper::new(identity(&c), &c.mappings, None);
    let events = map_all(
        &mut mapper,
        vec![
            line("worker", "/var/log/worker.log", TRACEBACK, 0),
            line("worker", "/var/log/worker.log", "INFO started", 400),
        ],
    );
    let e = &events[0];
    assert_eq!(e["event"], "acme.worker.exception.connectionreseterror");
    assert_eq!(e["resource"]["prefect.resource.id"], "acme.worker.web-1");
    assert_eq!(e["payload"]["exception"], "ConnectionResetError");
    assert_eq!(
        e["payload"]["message"],
        "[Errno 104] Connection reset by peer"
    );
    assert_eq!(
        e["payload"]["where"],
        "/usr/lib/python3.12/http/client.py:1411 in getresponse"
    );
    assert_eq!(e["payload"]["traceback"], TRACEBACK);
    assert_eq!(events[1]["event"], "herald.log.line");
}

#[test]
fn the_config_tests_pass() {
    let c = load();
    let outcomes = herald::mapping::testing::run(&identity(&c), &c.mappings, &c.tests);
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert!(o.passed(), "{}: {:?}", o.name, o.differences);
    }
    let _ = BTreeMap::<(), ()>::new();
}
