//! Reloading the config with SIGHUP while events flow, with the real
//! binary: two files written without pause and short-lived processes
//! watched, while the config is reloaded 20 times (a source added, a source
//! removed, a broken file, a mapping changed). At the endpoint no line is
//! missing, no line arrived under two ids, every reload is announced, and
//! a broken config leaves the running one in place.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{MockEndpoint, agent_and_sink, herald, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

fn config(endpoint: &MockEndpoint, logs: &Path, variant: usize) -> String {
    let mut text = agent_and_sink(&endpoint.url());
    if variant == 2 {
        // Broken twice: a bad value and an unknown key.
        text.push_str(
            "\n[[sources.file]]\nname = \"a\"\npaths = [\"relative.log\"]\nstrat_at = \"end\"\n",
        );
        return text;
    }
    let file = |name: &str| {
        format!(
            "\n[[sources.file]]\nname = \"{name}\"\npaths = [\"{}/{name}.log\"]\nstart_at = \"beginning\"\nfingerprint_timeout = \"100ms\"\nrescan_interval = \"200ms\"\n",
            logs.display()
        )
    };
    text.push_str(&file("a"));
    text.push_str("\n[[sources.process]]\nname = \"procs\"\ninterval = \"100ms\"\nrestart_window = \"0s\"\n\n[sources.process.match]\nname = \"sleep\"\n");
    if variant == 0 || variant == 4 {
        text.push_str(&file("b"));
    }
    if variant == 3 || variant == 4 {
        text.push_str("\n[[mappings]]\nname = \"phase\"\nsource = \"a\"\nkind = \"line\"\nevent = \"test.phase.line\"\n");
    }
    text
}

fn append(path: &Path, line: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(line.as_bytes()).expect("write");
}

#[test]
fn twenty_reloads_while_events_flow_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    let endpoint = MockEndpoint::start();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config(&endpoint, &logs, 0)).expect("config");
    append(&logs.join("a.log"), "a 000000\n");
    append(&logs.join("b.log"), "b 000000\n");
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&path)
        .cwd(dir.path())
        .spawn();
    agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);

    // The applications: two logs written every 2 ms, a short process
    // every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let logs = logs.clone();
        std::thread::spawn(move || {
            let mut n = 1usize;
            let mut children = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                append(&logs.join("a.log"), &format!("a {n:06}\n"));
                append(&logs.join("b.log"), &format!("b {n:06}\n"));
                if n.is_multiple_of(50)
                    && let Ok(child) = Command::new("sleep").arg("0.3").spawn()
                {
                    children.push(child);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            for mut child in children {
                let _ = child.wait();
            }
            n
        })
    };

    let reloaded = |e: &Value| e["event"] == "herald.agent.reloaded";
    for i in 1..=20 {
        std::fs::write(&path, config(&endpoint, &logs, i % 5)).expect("config");
        agent.signal("HUP");
        assert!(
            wait_until(LIMIT, || endpoint
                .distinct_events("")
                .iter()
                .filter(|e| reloaded(e))
                .count()
                == i),
            "reload {i} not announced\n{}",
            agent.describe()
        );
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");

    // Everything written arrives: the last config reads both files.
    let lines = |events: &[Value]| -> BTreeMap<String, BTreeSet<String>> {
        let mut by_text: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in events {
            if let Some(line) = e["payload"]["line"].as_str() {
                by_text
                    .entry(line.to_owned())
                    .or_default()
                    .insert(e["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        by_text
    };
    assert!(
        wait_until(LIMIT, || lines(&endpoint.accepted_events()).len()
            >= 2 * written),
        "lines missing: {} of {}\n{}",
        lines(&endpoint.accepted_events()).len(),
        2 * written,
        agent.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );

    let events = endpoint.accepted_events();
    let by_text = lines(&events);
    for prefix in ["a", "b"] {
        for n in 0..written {
            let text = format!("{prefix} {n:06}");
            let ids = by_text.get(&text);
            assert!(ids.is_some(), "line {text:?} is missing");
            assert_eq!(ids.map(BTreeSet::len), Some(1), "line {text:?} has two ids");
        }
    }
    // The mapping change took: some of a's lines under the rule's name.
    assert!(events.iter().any(|e| e["event"] == "test.phase.line"));

    // Every reload announced; the broken ones (4 of 20) with their
    // mistakes, and the running config kept (lines kept flowing above).
    let announced: Vec<&Value> = {
        let mut seen = BTreeSet::new();
        events
            .iter()
            .filter(|e| reloaded(e) && seen.insert(e["id"].to_string()))
            .collect()
    };
    assert_eq!(announced.len(), 20);
    let failed: Vec<&&Value> = announced
        .iter()
        .filter(|e| e["payload"]["ok"] == Value::Bool(false))
        .collect();
    assert_eq!(failed.len(), 4);
    for e in &failed {
        let errors = e["payload"]["errors"].as_str().unwrap_or_default();
        assert!(
            errors.contains("herald.toml:"),
            "errors with positions: {errors}"
        );
        assert!(
            errors.contains("not an absolute path") && errors.contains("strat_at"),
            "{errors}"
        );
    }
    assert!(
        agent
            .stderr_lines()
            .iter()
            .any(|l| l.contains("ConfigReloadFailed")),
        "{}",
        agent.describe()
    );

    // Processes: each start and exit once.
    let mut process: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for e in &events {
        let name = e["event"].as_str().unwrap_or_default();
        if name.starts_with("herald.process.") {
            let pid = e["payload"]["pid"].to_string();
            process
                .entry((name.to_owned(), pid))
                .or_default()
                .insert(e["id"].to_string());
        }
    }
    println!("{written} lines per file, {} process events", process.len());
    assert!(!process.is_empty(), "no process events");
    for ((name, pid), ids) in &process {
        assert_eq!(ids.len(), 1, "{name} of pid {pid} under {} ids", ids.len());
    }
}

/// Points `dir/..data` at a new `dir/..<version>/herald.toml` the way the
/// kubelet updates a mounted ConfigMap: a new directory, a new symlink
/// renamed over `..data` in one step, the old directory removed.
fn configmap_update(dir: &Path, version: &str, text: &str, old: Option<&str>) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).expect("version dir");
    std::fs::write(versioned.join("herald.toml"), text).expect("config");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(format!("..{old}"))).expect("remove old");
    }
}

#[test]
fn watch_config_follows_a_configmap_symlink_swap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    append(&logs.join("a.log"), "a 000000\n");
    append(&logs.join("b.log"), "b 000000\n");
    let endpoint = MockEndpoint::start();
    let mount = dir.path().join("config");
    std::fs::create_dir(&mount).expect("mount");
    configmap_update(&mount, "v1", &config(&endpoint, &logs, 1), None);
    std::os::unix::fs::symlink("..data/herald.toml", mount.join("herald.toml")).expect("link");
    let mut agent = herald()
        .args(["run", "--watch-config", "--config"])
        .arg(mount.join("herald.toml"))
        .cwd(dir.path())
        .spawn();
    agent.wait_for_stderr_line(|l| l.contains("AgentStarted"), LIMIT);
    let reloads = || -> Vec<Value> { endpoint.distinct_events("herald.agent.reloaded") };
    let line_b = || {
        endpoint
            .distinct_events("herald.log.line")
            .iter()
            .any(|e| e["payload"]["line"] == "b 000000")
    };
    assert!(!line_b());

    // The new version adds source b.
    configmap_update(&mount, "v2", &config(&endpoint, &logs, 0), Some("v1"));
    assert!(
        wait_until(LIMIT, || reloads().len() == 1),
        "{}",
        agent.describe()
    );
    assert_eq!(reloads()[0]["payload"]["started"], serde_json::json!(["b"]));
    assert!(wait_until(LIMIT, line_b), "{}", agent.describe());

    // A broken version is reported once, and the running config stays.
    configmap_update(&mount, "v3", &config(&endpoint, &logs, 2), Some("v2"));
    assert!(
        wait_until(LIMIT, || reloads().len() == 2),
        "{}",
        agent.describe()
    );
    assert_eq!(reloads()[1]["payload"]["ok"], Value::Bool(false));
    append(&logs.join("b.log"), "b 000001\n");
    assert!(wait_until(LIMIT, || endpoint
        .distinct_events("herald.log.line")
        .iter()
        .any(|e| e["payload"]["line"] == "b 000001")));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(reloads().len(), 2, "the broken file was reported again");
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
}

#[test]
fn a_reload_moves_sending_to_a_new_endpoint_without_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    let first = MockEndpoint::start();
    let second = MockEndpoint::start();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config(&first, &logs, 1)).expect("config");
    for n in 0..100 {
        append(&logs.join("a.log"), &format!("a {n:06}\n"));
    }
    let mut agent = herald()
        .args(["run", "--config"])
        .arg(&path)
        .cwd(dir.path())
        .spawn();
    let texts = |endpoint: &MockEndpoint| -> BTreeSet<String> {
        endpoint
            .distinct_events("herald.log.line")
            .iter()
            .filter_map(|e| e["payload"]["line"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        wait_until(LIMIT, || texts(&first).len() == 100),
        "{}",
        agent.describe()
    );
    std::fs::write(&path, config(&second, &logs, 1)).expect("config");
    agent.signal("HUP");
    agent.wait_for_stderr_line(|l| l.contains("ConfigReloaded"), LIMIT);
    for n in 100..200 {
        append(&logs.join("a.log"), &format!("a {n:06}\n"));
    }
    assert!(
        wait_until(LIMIT, || texts(&second).iter().any(|t| t == "a 000199")),
        "{}",
        agent.describe()
    );
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        agent.describe()
    );
    let all: BTreeSet<String> = texts(&first).union(&texts(&second)).cloned().collect();
    assert_eq!(all.len(), 200, "every line, at one endpoint or the other");
    assert!(
        texts(&second).len() >= 100,
        "the new lines went to the new endpoint"
    );
    let reloaded = second.distinct_events("herald.agent.reloaded");
    assert_eq!(reloaded.len(), 1);
    assert_eq!(reloaded[0]["payload"]["sink_changed"], Value::Bool(true));
}
