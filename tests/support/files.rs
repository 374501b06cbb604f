//! The file-source tests' rig: a temp dir with `logs/`, a mock endpoint
//! and a config whose `[[sources.file]]` the test writes, plus helpers to
//! write numbered lines and read back what the endpoint accepted, one line
//! per event id (as Prefect keeps them).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::{Herald, MockEndpoint, agent_and_sink, herald, write_config};

pub const LIMIT: Duration = Duration::from_secs(30);

/// A line as the endpoint received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub id: String,
    pub line: String,
    pub path: String,
    pub offset: u64,
    pub truncated: bool,
}

pub fn as_line(event: &Value) -> Option<Line> {
    let payload = &event["payload"];
    let line = payload["line"].as_str()?.to_owned();
    let name = event["event"].as_str().unwrap_or_default();
    assert!(
        name == "herald.log.line" || name == "herald.line",
        "a line event is named {name}"
    );
    let path = payload["path"]
        .as_str()
        .or_else(|| event["resource"]["herald.file.path"].as_str())
        .unwrap_or_default()
        .to_owned();
    Some(Line {
        id: event["id"].as_str().expect("id").to_owned(),
        line,
        path,
        offset: payload["offset"].as_u64().expect("offset"),
        truncated: payload["truncated"] == Value::Bool(true),
    })
}

/// A temp dir with `logs/`, a mock endpoint and a config.
pub struct Rig {
    pub dir: TempDir,
    pub logs: PathBuf,
    pub endpoint: MockEndpoint,
    pub config: PathBuf,
}

impl Rig {
    /// `source` is the body of a `[[sources.file]]` named `app`; `{logs}`
    /// stands for the logs directory.
    pub fn new(source: &str) -> Rig {
        Rig::with(source, "")
    }

    pub fn with(source: &str, extra: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).expect("logs dir");
        let endpoint = MockEndpoint::start();
        let source = source.replace("{logs}", &logs.display().to_string());
        let config = write_config(
            dir.path(),
            &format!(
                r#"
{head}{extra}

[[sources.file]]
name = "app"
fingerprint_timeout = "100ms"
rescan_interval = "200ms"
{source}
"#,
                head = agent_and_sink(&endpoint.url()),
            ),
        );
        Rig {
            dir,
            logs,
            endpoint,
            config,
        }
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    pub fn start(&self) -> Herald {
        let agent = herald()
            .args(["run", "--config"])
            .arg(&self.config)
            .cwd(self.dir.path())
            .spawn();
        agent.wait_for_stderr_line(|l| l.contains("FileSourceStarted"), LIMIT);
        agent
    }

    /// Every line accepted so far, one per id (the first copy), in
    /// arrival order.
    pub fn lines(&self) -> Vec<Line> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for event in self.endpoint.accepted_events() {
            if let Some(line) = as_line(&event)
                && seen.insert(line.id.clone(), line.clone()).is_none()
            {
                out.push(line);
            }
        }
        out
    }

    /// Waits until `done` holds for the lines; returns them.
    pub fn wait_lines(&self, what: &str, done: impl Fn(&[Line]) -> bool) -> Vec<Line> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {LIMIT:?} for {what}; got {} lines: {:?}\n{}",
                    lines.len(),
                    lines
                        .iter()
                        .map(|l| &l.line)
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>(),
                    self.endpoint.describe()
                );
            }
            // Parsing every accepted body again is not free: look at a
            // pace that leaves the machine to herald.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_count(&self, n: usize) -> Vec<Line> {
        self.wait_lines(&format!("{n} lines"), |l| l.len() >= n)
    }

    pub fn stop(&self, mut agent: Herald) {
        agent.sigterm();
        assert_eq!(
            agent.wait_exit(LIMIT).code(),
            Some(0),
            "{}",
            agent.describe()
        );
    }
}

pub fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    write_lines(&mut f, lines);
}

pub fn write_lines(f: &mut File, lines: &[String]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).expect("write log");
}

pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix} {i:05} lorem ipsum"))
        .collect()
}

/// The texts of `lines` whose text starts with `prefix`, in file order.
pub fn texts(lines: &[Line], prefix: &str) -> Vec<String> {
    let mut picked: Vec<&Line> = lines
        .iter()
        .filter(|l| l.line.starts_with(prefix))
        .collect();
    picked.sort_by_key(|l| l.offset);
    picked.iter().map(|l| l.line.clone()).collect()
}

/// Every accepted line event, duplicates included.
pub fn all_copies(rig: &Rig) -> Vec<Line> {
    rig.endpoint
        .accepted_events()
        .iter()
        .filter_map(as_line)
        .collect()
}

/// No line was delivered under two ids.
pub fn assert_one_id_per_line(rig: &Rig) {
    let mut ids: BTreeMap<(String, u64, String), String> = BTreeMap::new();
    for l in all_copies(rig) {
        let key = (l.path.clone(), l.offset, l.line.clone());
        if let Some(other) = ids.insert(key, l.id.clone()) {
            assert_eq!(other, l.id, "line {:?} at {} got two ids", l.line, l.offset);
        }
    }
}
