//! `[[sources.process]]`: which processes a process source watches and
//! what it reports about them, read through the config framework's
//! [`Table`] so every mistake is reported with its position, and compiled
//! once (globs, regexes) so a tick never parses anything.

use std::time::Duration;

use regex::Regex;
use toml::de::DeValue;

use crate::config::decode::{
    self, At, ConfigDuration, Decode, Decoder, Raw, Table, parse_size, value_mistake,
};
use crate::sources::threshold::{self, Threshold};

/// The longest `comm` the kernel keeps (`TASK_COMM_LEN` less its NUL).
pub const COMM_MAX: usize = 15;

/// The redactions applied to every command line unless
/// `redact_builtin = false`: values of options and variables whose names
/// say they are secret, passwords in URLs, and bearer/basic credentials.
/// Each replaces its `secret` group with `***`.
pub const BUILTIN_REDACT: &[&str] = &[
    // --password=x, --db-password x, -token x, --api-key=x
    r"(?i)(?:^|\s)--?[a-z0-9_.-]*(?:passw(?:or)?d|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credentials?)[a-z0-9_.-]*(?:=|\s+)(?P<secret>\S+)",
    // PGPASSWORD=x, token=x, ?api_key=x&...
    r"(?i)[a-z0-9_.-]*(?:passw(?:or)?d|secret|token|api[-_]?key|access[-_]?key)[a-z0-9_.-]*=(?P<secret>[^\s&]+)",
    // scheme://user:password@host
    r"(?i)[a-z][a-z0-9+.-]*://[^/\s:@]*:(?P<secret>[^/\s@]+)@",
    // Authorization: Bearer x / Basic x
    r"(?i)\b(?:bearer|basic)\s+(?P<secret>[a-z0-9._~+/=-]{8,})",
];

/// Which processes a source watches. Every selector given must hold.
#[derive(Clone, Debug)]
pub struct Selector {
    /// `comm`, exactly or as a glob.
    pub name: Option<glob::Pattern>,
    /// The executable's path, as a glob.
    pub exe: Option<glob::Pattern>,
    /// A regex searched in the command line (arguments joined by spaces).
    pub cmdline: Option<Regex>,
    /// The user it runs as (effective uid).
    pub user: Option<User>,
    /// `all = true`: every process (kernel threads excepted).
    pub all: bool,
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.exe == other.exe
            && self.cmdline.as_ref().map(Regex::as_str) == other.cmdline.as_ref().map(Regex::as_str)
            && self.user == other.user
            && self.all == other.all
    }
}

/// A user, by name or uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum User {
    /// A uid.
    Id(u32),
    /// A user name, looked up in the passwd file.
    Name(String),
}

/// A memory level: bytes, or a percent of the machine's total memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryLevel {
    /// Resident bytes.
    Bytes(u64),
    /// Percent of total memory.
    Percent(f64),
}

impl MemoryLevel {
    /// In bytes, given the machine's total memory.
    pub fn bytes(self, mem_total: u64) -> f64 {
        match self {
            MemoryLevel::Bytes(b) => b as f64,
            MemoryLevel::Percent(p) => mem_total as f64 * p / 100.0,
        }
    }
}

/// `memory = { high = "1GiB", clear = "800MiB", for = "30s" }`: the
/// resident set of one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryThreshold {
    /// At or above: high.
    pub high: MemoryLevel,
    /// At or below: normal again.
    pub clear: MemoryLevel,
    /// How long a reading must stay on one side.
    pub for_: Duration,
}

impl MemoryThreshold {
    /// As a [`Threshold`] over bytes.
    pub fn in_bytes(&self, mem_total: u64) -> Threshold {
        Threshold::new(
            self.high.bytes(mem_total),
            self.clear.bytes(mem_total),
            self.for_,
        )
    }
}

/// One redaction: the `secret` group of each match (or the whole match,
/// for a pattern without one) becomes `***`.
#[derive(Clone, Debug)]
pub struct Redaction(pub Regex);

impl PartialEq for Redaction {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// `[[sources.process]]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessConfig {
    /// Unique among sources; part of every event id and the name of its
    /// state file.
    pub name: String,
    /// Which processes.
    pub selector: Selector,
    /// How often `/proc` is looked at.
    pub interval: Duration,
    /// A matched command line that starts again within this time of an
    /// exit is reported as `process.restarted` too; zero turns it off.
    pub restart_window: Duration,
    /// CPU, in percent of one core; off unless configured.
    pub cpu: Option<Threshold>,
    /// Resident memory; off unless configured.
    pub memory: Option<MemoryThreshold>,
    /// Applied to command lines in order, before they are cut to
    /// [`CMDLINE_LABEL_MAX`](super::CMDLINE_LABEL_MAX).
    pub redact: Vec<Redaction>,
}

impl ProcessConfig {
    /// A config with every default, for tests and benches.
    pub fn new(name: &str, selector: Selector) -> Self {
        ProcessConfig {
            name: name.to_owned(),
            selector,
            interval: Duration::from_secs(1),
            restart_window: Duration::from_secs(60),
            cpu: None,
            memory: None,
            redact: builtin_redactions(),
        }
    }
}

impl Selector {
    /// A selector matching nothing until a field is set.
    pub fn none() -> Self {
        Selector {
            name: None,
            exe: None,
            cmdline: None,
            user: None,
            all: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.exe.is_none()
            && self.cmdline.is_none()
            && self.user.is_none()
            && !self.all
    }
}

/// The built-in redactions, compiled.
pub fn builtin_redactions() -> Vec<Redaction> {
    BUILTIN_REDACT
        .iter()
        // Constant patterns, covered by a unit test.
        .filter_map(|p| Regex::new(p).ok().map(Redaction))
        .collect()
}

struct Glob(glob::Pattern);

impl Decode for Glob {
    const EXPECTED: &'static str = "a name or glob like \"nginx*\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        match glob::Pattern::new(&text) {
            Ok(pattern) => Some(Glob(pattern)),
            Err(e) => {
                value_mistake(dec, raw, format!("invalid glob {text:?}: {}", e.msg), None);
                None
            }
        }
    }
}

struct Pattern(Regex);

impl Decode for Pattern {
    const EXPECTED: &'static str = "a regular expression";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        match Regex::new(&text) {
            Ok(regex) => Some(Pattern(regex)),
            Err(e) => {
                value_mistake(dec, raw, format!("invalid regex {text:?}: {e}"), None);
                None
            }
        }
    }
}

impl Decode for User {
    const EXPECTED: &'static str = "a user name or a uid";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        if let Raw::File(value) = raw
            && let DeValue::Integer(_) = value.get_ref()
        {
            return u32::decode(dec, raw).map(User::Id);
        }
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        let text = text.trim();
        if text.is_empty() {
            value_mistake(dec, raw, "the user is empty", None);
            return None;
        }
        Some(match text.parse() {
            Ok(uid) => User::Id(uid),
            Err(_) => User::Name(text.to_owned()),
        })
    }
}

impl Decode for MemoryLevel {
    const EXPECTED: &'static str = "a size like \"1GiB\" or a percent like \"50%\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        if let Raw::File(value) = raw
            && let DeValue::Integer(_) = value.get_ref()
        {
            return u64::decode(dec, raw).map(MemoryLevel::Bytes);
        }
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Some(MemoryLevel::Percent(p)),
                _ => {
                    value_mistake(
                        dec,
                        raw,
                        format!("invalid percent {text:?}: it must be above 0% and at most 100%"),
                        None,
                    );
                    None
                }
            };
        }
        match parse_size(text) {
            Ok(bytes) => Some(MemoryLevel::Bytes(bytes)),
            Err(why) => {
                value_mistake(
                    dec,
                    raw,
                    format!("invalid memory level {text:?}: {why}"),
                    Some(format!("write {}", Self::EXPECTED)),
                );
                None
            }
        }
    }
}

/// Reads one `[[sources.process]]` table whose `name` the caller already
/// read (and checked for uniqueness).
pub fn read(t: Table<'_, '_, '_>, name: Option<At<String>>) -> Option<ProcessConfig> {
    let dec = t.decoder();
    let selector = match t.value("match") {
        Some(value) => Table::new(dec, value, "`match`").and_then(read_selector),
        None => {
            dec.error_at(
                t.span(),
                "[[sources.process]] is missing the required key `match`",
                Some("add match = { name = \"nginx\" } (or exe, cmdline, user, all = true)".into()),
            );
            None
        }
    };
    let interval = t.get_at::<ConfigDuration>("interval");
    if let Some(at) = &interval
        && at.value.0 < Duration::from_millis(100)
    {
        dec.error_at(
            at.span.clone().unwrap_or(0..0),
            "interval must be at least 100ms",
            None,
        );
    }
    let restart_window = t.or("restart_window", ConfigDuration(Duration::from_secs(60)));
    let cpu = threshold::read(&t, "cpu", None);
    if let Some(cpu) = cpu
        && cpu.high <= 0.0
        && let Some(value) = t.value("cpu")
    {
        dec.error_at(
            value.span(),
            "cpu high must be above 0 (percent of one core)",
            None,
        );
    }
    let memory = read_memory(&t);
    let redact_builtin = t.or("redact_builtin", true);
    let redact = read_redact(&t);
    t.finish();
    let mut redactions = if redact_builtin {
        builtin_redactions()
    } else {
        Vec::new()
    };
    redactions.extend(redact?);
    Some(ProcessConfig {
        name: name?.value,
        selector: selector?,
        interval: interval.map_or(Duration::from_secs(1), |at| at.value.0),
        restart_window: restart_window.0,
        cpu,
        memory: memory?,
        redact: redactions,
    })
}

fn read_selector(t: Table<'_, '_, '_>) -> Option<Selector> {
    let dec = t.decoder();
    let name = t.get_at::<Glob>("name");
    if let Some(at) = &name {
        let text = at.value.0.as_str();
        let literal = !text.contains(['*', '?', '[']);
        if literal && text.len() > COMM_MAX {
            dec.error_at(
                at.span.clone().unwrap_or(0..0),
                format!(
                    "name {text:?} is longer than {COMM_MAX} bytes, and the kernel keeps only the first {COMM_MAX} of a process name"
                ),
                Some(format!(
                    "write name = {:?}, or match on exe or cmdline",
                    truncate(text, COMM_MAX)
                )),
            );
        }
    }
    let bad = |key| t.value(key).is_some();
    let exe = t.get::<Glob>("exe");
    let cmdline = t.get::<Pattern>("cmdline");
    let user = t.get::<User>("user");
    let all = t.or("all", false);
    let any_bad = (name.is_none() && bad("name"))
        || (exe.is_none() && bad("exe"))
        || (cmdline.is_none() && bad("cmdline"))
        || (user.is_none() && bad("user"));
    let selector = Selector {
        name: name.map(|at| at.value.0),
        exe: exe.map(|g| g.0),
        cmdline: cmdline.map(|p| p.0),
        user,
        all,
    };
    if selector.is_empty() && !any_bad {
        dec.error_at(
            t.span(),
            "`match` selects no process",
            Some("give at least one of name, exe, cmdline, user, or all = true".into()),
        );
    }
    t.finish();
    (!any_bad && !selector.is_empty()).then_some(selector)
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `memory = { high = .., clear = .., for = ".." }` or `memory = false`.
/// `Some(None)`: off; `None`: a mistake was recorded.
fn read_memory(t: &Table<'_, '_, '_>) -> Option<Option<MemoryThreshold>> {
    let dec = t.decoder();
    let Some(value) = t.value("memory") else {
        return Some(None);
    };
    match value.get_ref() {
        DeValue::Boolean(false) => return Some(None),
        DeValue::Table(_) => {}
        other => {
            decode::type_mistake(
                dec,
                Raw::File(value),
                "a table like { high = \"1GiB\", clear = \"800MiB\", for = \"1m\" } or false",
                other.type_str(),
            );
            return None;
        }
    }
    let sub = Table::new(dec, value, "`memory`")?;
    let high = sub.required::<MemoryLevel>("high");
    let clear = sub.get_at::<MemoryLevel>("clear");
    let for_ = sub
        .get::<ConfigDuration>("for")
        .map_or(Duration::ZERO, |d| d.0);
    let clear_bad = clear.is_none() && sub.value("clear").is_some();
    sub.finish();
    let high = high?;
    if clear_bad {
        return None;
    }
    let clear_level = clear.as_ref().map_or(high.value, |c| c.value);
    let ordered = match (high.value, clear_level) {
        (MemoryLevel::Bytes(h), MemoryLevel::Bytes(c)) => c < h || clear.is_none(),
        (MemoryLevel::Percent(h), MemoryLevel::Percent(c)) => c < h || clear.is_none(),
        _ => {
            dec.error_at(
                clear.and_then(|c| c.span).unwrap_or_else(|| value.span()),
                "`memory`: write high and clear alike, both as sizes or both as percents",
                None,
            );
            return None;
        }
    };
    if !ordered {
        dec.error_at(
            clear.and_then(|c| c.span).unwrap_or_else(|| value.span()),
            "`memory`: clear must be below high",
            Some("clear is the level memory must fall back to before it is normal again".into()),
        );
        return None;
    }
    Some(Some(MemoryThreshold {
        high: high.value,
        clear: clear_level,
        for_,
    }))
}

/// `redact = ['regex', ...]`, every element checked.
fn read_redact(t: &Table<'_, '_, '_>) -> Option<Vec<Redaction>> {
    let Some(value) = t.value("redact") else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        decode::type_mistake(
            t.decoder(),
            Raw::File(value),
            "an array of regular expressions",
            value.get_ref().type_str(),
        );
        return None;
    };
    let decoded: Vec<Option<Pattern>> = items
        .iter()
        .map(|item| Pattern::decode(t.decoder(), Raw::File(item)))
        .collect();
    decoded
        .into_iter()
        .map(|p| p.map(|p| Redaction(p.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, parse};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn one(text: &str) -> ProcessConfig {
        let config = parse("t.toml", text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        match config.sources.as_slice() {
            [SourceConfig::Process(p)] => p.clone(),
            other => panic!("one process source: {other:?}"),
        }
    }

    #[test]
    fn reads_every_key() {
        let p = one(r#"
[[sources.process]]
name = "workers"
interval = "2s"
restart_window = "5m"
cpu = { high = 150.0, clear = 100.0, for = "30s" }
memory = { high = "50%", clear = "40%", for = "1m" }
redact = ['--pin \d+']
redact_builtin = false

[sources.process.match]
name = "worker-*"
exe = "/usr/bin/*"
cmdline = '--queue=\w+'
user = "www-data"
all = true
"#);
        assert_eq!(p.name, "workers");
        assert_eq!(p.interval, Duration::from_secs(2));
        assert_eq!(p.restart_window, Duration::from_secs(300));
        assert_eq!(
            p.cpu,
            Some(Threshold::new(150.0, 100.0, Duration::from_secs(30)))
        );
        assert_eq!(
            p.memory,
            Some(MemoryThreshold {
                high: MemoryLevel::Percent(50.0),
                clear: MemoryLevel::Percent(40.0),
                for_: Duration::from_secs(60),
            })
        );
        assert_eq!(p.redact.len(), 1, "only the configured one");
        let s = &p.selector;
        assert!(s.name.as_ref().is_some_and(|g| g.matches("worker-7")));
        assert!(s.exe.as_ref().is_some_and(|g| g.matches("/usr/bin/worker")));
        assert!(
            s.cmdline
                .as_ref()
                .is_some_and(|r| r.is_match("w --queue=fast"))
        );
        assert_eq!(s.user, Some(User::Name("www-data".into())));
        assert!(s.all);
    }

    #[test]
    fn defaults() {
        let p = one("[[sources.process]]\nname = \"p\"\nmatch = { user = 0 }\n");
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.restart_window, Duration::from_secs(60));
        assert_eq!(p.cpu, None);
        assert_eq!(p.memory, None);
        assert_eq!(p.redact.len(), BUILTIN_REDACT.len());
        assert_eq!(p.selector.user, Some(User::Id(0)));
        let p = one(
            "[[sources.process]]\nname = \"p\"\nmatch = { user = \"1000\" }\nmemory = { high = \"1GiB\" }\n",
        );
        assert_eq!(p.selector.user, Some(User::Id(1000)));
        let memory = p.memory.expect("memory");
        assert_eq!(memory.in_bytes(0).high, (1u64 << 30) as f64);
        assert_eq!(memory.clear, memory.high);
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let text = r#"
[[sources.process]]
name = "a"

[[sources.process]]
name = "b"
match = {}

[[sources.process]]
name = "c"
interval = "10ms"
match = { name = "a-very-long-process-name", cmdline = "(", exe = "[" }
cpu = { high = 50, clear = 60 }
memory = { high = "1GiB", clear = "50%" }
redact = ["ok", "("]

[[sources.process]]
name = "d"
match = { nmae = "x" }
memory = { high = "120%" }
"#;
        let err = parse("t.toml", text, &no_env).expect_err("invalid");
        let shown = err.to_string();
        for expected in [
            "t.toml:2:1: [[sources.process]] is missing the required key `match`",
            "t.toml:7:9: `match` selects no process",
            "t.toml:11:12: interval must be at least 100ms",
            "t.toml:12:18: name \"a-very-long-process-name\" is longer than 15 bytes",
            "write name = \"a-very-long-pro\"",
            "invalid regex \"(\"",
            "invalid glob \"[\"",
            "clear (60) must be below high (50)",
            "write high and clear alike",
            "t.toml:15:17: invalid regex",
            "did you mean `name`?",
            "invalid percent \"120%\"",
        ] {
            assert!(shown.contains(expected), "{expected}\n{shown}");
        }
    }

    #[test]
    fn builtin_redactions_compile() {
        assert_eq!(builtin_redactions().len(), BUILTIN_REDACT.len());
    }
}
