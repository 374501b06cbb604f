//! Mapping throughput: lines/s through the mapper with 0, 1, 10 and 100
//! regex rules, on the line mix of `tools/bench/gen_lines.py` (about 80%
//! nginx combined access lines, 20% JSON application lines, ~200 bytes).
//!
//! `cargo bench --bench mapping` prints one row per case: lines/s with
//! the observation built the way the file source builds it (line text,
//! path, offset, identity for a derived id) and mapped to event JSON, and
//! the same minus the cost of building the observations alone.
//!
//! One core, one thread; the best of several rounds, so a noisy neighbour
//! does not decide the figure.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::identity::Identity;
use herald::mapping::Mapper;
use herald::observation::Observation;

const LINES: usize = 200_000;
const ROUNDS: usize = 5;

/// A small deterministic generator (xorshift), so every run maps the same
/// lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn lines() -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let methods = [
        "GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD",
    ];
    let paths = [
        "/api/v1/flows",
        "/api/v1/flow_runs/filter",
        "/api/v2/deployments/8f3a9c2e/runs",
        "/static/js/app.4f2a91cd.js",
        "/healthz",
        "/api/events/in",
        "/ui/dashboard",
        "/api/task_runs/0c9d1e2f3a4b/set_state",
        "/login",
        "/assets/img/logo.png",
        "/api/work_pools/default/get_scheduled_flow_runs",
    ];
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "curl/8.5.0",
        "python-httpx/0.27.0",
        "prefect/3.1.0 (API 0.8.4)",
        "Go-http-client/1.1",
        "kube-probe/1.29",
    ];
    let statuses = [
        "200", "200", "200", "200", "200", "200", "201", "204", "301", "304", "400", "401", "404",
        "500", "502",
    ];
    let levels = ["DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR"];
    let loggers = [
        "prefect.flow_runs",
        "prefect.task_runs",
        "prefect.workers.process",
        "uvicorn.access",
        "app.etl.extract",
    ];
    let words = [
        "the",
        "quick",
        "flow",
        "run",
        "task",
        "state",
        "completed",
        "failed",
        "retry",
        "worker",
        "queue",
        "timeout",
        "caf\u{e9}",
        "\\\"quoted\\\"",
    ];
    (0..LINES)
        .map(|seq| {
            if rng.below(10) < 8 {
                format!(
                    "{}.{}.{}.{} - - [{:02}/Oct/2024:{:02}:{:02}:{:02} +0000] \"{} {}?seq={seq} HTTP/1.1\" {} {} \"-\" \"{}\" rt={}.{:03}",
                    1 + rng.below(223),
                    rng.below(256),
                    rng.below(256),
                    1 + rng.below(254),
                    1 + rng.below(28),
                    rng.below(24),
                    rng.below(60),
                    rng.below(60),
                    rng.pick(&methods),
                    rng.pick(&paths),
                    rng.pick(&statuses),
                    rng.below(500_000),
                    rng.pick(&agents),
                    rng.below(2),
                    rng.below(1000),
                )
            } else {
                let n = 3 + rng.below(20);
                let msg: Vec<&str> = (0..n).map(|_| rng.pick(&words)).collect();
                format!(
                    "{{\"ts\":\"2024-05-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"logger\":\"{}\",\"seq\":{seq},\"flow_run_id\":\"{:016x}{:016x}\",\"msg\":\"{}\"}}",
                    1 + rng.below(28),
                    rng.below(24),
                    rng.below(60),
                    rng.below(60),
                    rng.below(1000),
                    rng.pick(&levels),
                    rng.pick(&loggers),
                    rng.next(),
                    rng.next(),
                    msg.join(" "),
                )
            }
        })
        .collect()
}

/// The rule every case ends with: any nginx access line becomes an
/// `nginx.request.<method>` event on its route, with its status, client
/// and timing.
const ACCESS_RULE: &str = r#"
[[mappings]]
name = "nginx-access"
source = "web"
kind = "line"
when = [{ regex = '^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<route>[^ "?]*)(?:\?[^ "]*)? [^"]*" (?P<status>\d{3}) (?P<bytes>\d+)' }]
event = "nginx.request.{method | lower}"
occurred = { field = "time", format = "%d/%b/%Y:%H:%M:%S %z" }
resource.id = "nginx.route.{route | slug}"
resource.labels = { "prefect.resource.name" = "{route}", "http.status" = "{status}" }
payload = { status = "{status}", bytes = "{bytes}", client = "{client}", method = "{method}" }
"#;

/// `n - 1` rules for specific routes and JSON loggers (only some of which
/// match the mix), then the access rule.
fn rules(n: usize) -> String {
    let mut out =
        String::from("[agent]\nhostname = \"bench\"\n[[sources.heartbeat]]\nname = \"web\"\n");
    if n == 0 {
        return out;
    }
    for i in 0..n - 1 {
        let rule = match i % 4 {
            0 => format!(
                "when = [{{ regex = '\"(?P<method>[A-Z]+) /api/v{}/service{i}/(?P<rest>[^ \"]*) HTTP' }}]\nevent = \"svc{i}.{{method | lower}}\"",
                1 + i % 2
            ),
            1 => format!(
                "when = [{{ regex = '\"level\":\"ERROR\",\"logger\":\"app\\.job{i}\"' }}]\nevent = \"job{i}.error\""
            ),
            2 => format!(
                "when = [{{ regex = '\" (?P<status>5\\d\\d) \\d+ \"[^\"]*\" \"probe-{i}/' }}]\nevent = \"probe{i}.failed\""
            ),
            _ => format!(
                "when = [{{ regex = 'tenant={i}&(?P<q>\\S*)' }}]\nevent = \"tenant{i}.request\""
            ),
        };
        out.push_str(&format!(
            "\n[[mappings]]\nname = \"rule-{i}\"\nsource = \"web\"\nkind = \"line\"\n{rule}\n"
        ));
    }
    out.push_str(ACCESS_RULE);
    out
}

fn observation(source: &Arc<str>, path: &Arc<str>, line: &str, offset: u64) -> Observation {
    let mut identity = Vec::with_capacity(24);
    identity.extend_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
    identity.extend_from_slice(&offset.to_le_bytes());
    identity.extend_from_slice(&(line.len() as u64).to_le_bytes());
    let mut obs = Observation::new(source.clone(), "line")
        .with("line", line.to_owned())
        .with("path", path.to_string())
        .with("offset", offset);
    obs.identity = Some(identity);
    obs
}

/// Best time of [`ROUNDS`] for `f` over all lines.
fn best(mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        bytes = black_box(f());
        best = best.min(start.elapsed());
    }
    (best, bytes)
}

fn main() {
    let lines = lines();
    let source: Arc<str> = Arc::from("web");
    let path: Arc<str> = Arc::from("/var/log/nginx/access.log");
    let identity = Identity::discover(Some("bench"), &BTreeMap::new(), &|_| None);
    let avg = lines.iter().map(String::len).sum::<usize>() as f64 / lines.len() as f64;
    println!(
        "mapping benchmark: {} lines, {avg:.0} bytes on average, best of {ROUNDS}",
        lines.len()
    );

    let (build_only, _) = best(|| {
        let mut n = 0;
        for (i, line) in lines.iter().enumerate() {
            let obs = black_box(observation(&source, &path, line, i as u64 * 200));
            n += obs.fields.len();
        }
        n
    });
    let per_line = |d: Duration| d.as_secs_f64() * 1e9 / lines.len() as f64;
    println!(
        "building the observations alone: {:.0} ns/line",
        per_line(build_only)
    );
    println!(
        "{:>6} | {:>12} | {:>9} | {:>17} | {:>12}",
        "rules", "lines/s", "ns/line", "ns/line (mapping)", "event bytes"
    );
    let mut one_rule = 0.0;
    // BENCH_RULES=1 runs one case, for a profiler.
    let cases: Vec<usize> = match std::env::var("BENCH_RULES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![0, 1, 10, 100],
    };
    for n in cases {
        let text = rules(n);
        let config = match herald::config::parse("bench.toml", &text, &|_| None) {
            Ok(config) => config,
            Err(mistakes) => panic!("the benchmark's rules are invalid:\n{mistakes}"),
        };
        let mut mapper = Mapper::new(identity.clone(), &config.mappings, None);
        let mut out = Vec::with_capacity(4);
        let (elapsed, bytes) = best(|| {
            let mut bytes = 0;
            for (i, line) in lines.iter().enumerate() {
                let obs = observation(&source, &path, line, i as u64 * 200);
                if mapper.map(obs, &mut out).is_ok() {
                    bytes += out.iter().map(|m| m.json.len()).sum::<usize>();
                }
                out.clear();
            }
            bytes
        });
        let ns = per_line(elapsed);
        let mapping = ns - per_line(build_only);
        if n == 1 {
            one_rule = ns;
        }
        println!(
            "{n:>6} | {:>12.0} | {ns:>9.0} | {mapping:>17.0} | {:>12.0}",
            lines.len() as f64 / elapsed.as_secs_f64(),
            bytes as f64 / lines.len() as f64
        );
        if n == 100 && one_rule > 0.0 {
            println!("100 rules cost {:.2}x the 1-rule case", ns / one_rule);
        }
        let stats = mapper.stats();
        assert_eq!(stats.unmapped, 0, "every rule builds its events: {stats:?}");
    }
}
