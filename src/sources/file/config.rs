//! `[[sources.file]]`: the file source's settings, read through the config
//! framework's [`Table`] so that every mistake is reported with its
//! position, and compiled once (globs and the multiline pattern parsed)
//! so the tailing loop never re-parses anything.

use std::path::Path;
use std::time::Duration;

use toml::de::DeValue;

use crate::config::decode::{
    self, At, ByteSize, ConfigDuration, Decode, Decoder, Raw, Table, value_mistake,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Where reading starts in a file found at start-up that herald has never
/// seen (a file with a checkpoint always resumes there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only what is written from now on.
    End,
    /// The whole file.
    Beginning,
}

/// How a file's lines are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Each line is the application's.
    Plain,
    /// The CRI log format of containerd and CRI-O:
    /// `<RFC 3339 time> <stdout|stderr> <P|F> <message>`.
    Cri,
    /// Docker's json-file driver: `{"log": "...\n", "stream": ..., "time": ...}`.
    Docker,
}

/// Where the kubelet keeps the logs of every container of a node.
pub const KUBERNETES_PATHS: &str = "/var/log/pods/*/*/*.log";

/// A compiled multiline rule: a record starts at a line matching `start`;
/// the lines that follow and do not match belong to it.
#[derive(Clone, Debug)]
pub struct Multiline {
    /// Matches the first line of a record (e.g. `^\S` or a timestamp).
    pub start: regex::bytes::Regex,
    /// A record with no new line for this long is complete.
    pub flush_timeout: Duration,
}

impl PartialEq for Multiline {
    fn eq(&self, other: &Self) -> bool {
        self.start.as_str() == other.start.as_str() && self.flush_timeout == other.flush_timeout
    }
}

/// `[[sources.file]]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct FileConfig {
    /// Unique among sources; part of every line's event id and the name of
    /// its checkpoint file.
    pub name: String,
    /// Glob patterns of the files to read (absolute paths).
    pub paths: Vec<glob::Pattern>,
    /// Files matching any of these are left alone.
    pub exclude: Vec<glob::Pattern>,
    /// Where files found at start-up and never seen before start.
    pub start_at: StartAt,
    /// Longest line kept; the rest of a longer one is skipped.
    pub max_line_bytes: usize,
    /// How many leading bytes identify a file.
    pub fingerprint_bytes: usize,
    /// How long a file shorter than `fingerprint_bytes` waits before its
    /// shorter content is taken as its identity.
    pub fingerprint_timeout: Duration,
    /// How often the globs are expanded again (the safety net under
    /// inotify, and the only discovery when inotify is unavailable).
    pub rescan_interval: Duration,
    /// Joins continuation lines into one record.
    pub multiline: Option<Multiline>,
    /// Parse lines that are JSON objects into a `json` field.
    pub json: bool,
    /// Read the files' lines.
    pub tail: bool,
    /// Report file lifecycle changes (`file.created`, `file.modified`, ...).
    pub watch: bool,
    /// How lines are framed (container formats).
    pub format: Format,
    /// Paths are the kubelet's pod logs: each line names its pod and
    /// container.
    pub kubernetes: bool,
}

impl FileConfig {
    /// A config with every default, for `paths`; tests and benches start
    /// from it.
    pub fn new(name: &str, paths: &[&str]) -> Self {
        FileConfig {
            name: name.to_owned(),
            paths: paths
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            exclude: Vec::new(),
            start_at: StartAt::End,
            max_line_bytes: MIB as usize,
            fingerprint_bytes: KIB as usize,
            fingerprint_timeout: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(1),
            multiline: None,
            json: false,
            tail: true,
            watch: false,
            format: Format::Plain,
            kubernetes: false,
        }
    }
}

impl Decode for Format {
    const EXPECTED: &'static str = "\"plain\", \"cri\" or \"docker\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        match text.as_str() {
            "plain" => Some(Format::Plain),
            "cri" => Some(Format::Cri),
            "docker" => Some(Format::Docker),
            _ => {
                let hint = decode::nearest(&text, ["plain", "cri", "docker"].into_iter())
                    .map_or_else(
                        || "choose \"plain\", \"cri\" or \"docker\"".to_owned(),
                        |near| format!("did you mean \"{near}\"?"),
                    );
                value_mistake(dec, raw, format!("unknown format {text:?}"), Some(hint));
                None
            }
        }
    }
}

impl Decode for StartAt {
    const EXPECTED: &'static str = "\"end\" or \"beginning\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        match text.as_str() {
            "end" => Some(StartAt::End),
            "beginning" => Some(StartAt::Beginning),
            _ => {
                let hint = decode::nearest(&text, ["end", "beginning"].into_iter()).map_or_else(
                    || "choose \"end\" or \"beginning\"".to_owned(),
                    |near| format!("did you mean \"{near}\"?"),
                );
                value_mistake(dec, raw, format!("unknown value {text:?}"), Some(hint));
                None
            }
        }
    }
}

/// A glob pattern over absolute paths.
struct PathGlob(glob::Pattern);

impl Decode for PathGlob {
    const EXPECTED: &'static str = "an absolute path or glob like \"/var/log/app/*.log\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        if !Path::new(&text).is_absolute() {
            value_mistake(
                dec,
                raw,
                format!("{text:?} is not an absolute path"),
                Some("write the full path, starting with /".into()),
            );
            return None;
        }
        match glob::Pattern::new(&text) {
            Ok(pattern) => Some(PathGlob(pattern)),
            Err(e) => {
                value_mistake(dec, raw, format!("invalid glob {text:?}: {}", e.msg), None);
                None
            }
        }
    }
}

/// Reads a key holding an array of values, each decoded on its own so
/// that every bad element is reported.
fn array<T: Decode>(t: &Table<'_, '_, '_>, key: &'static str) -> Option<At<Vec<T>>> {
    let value = t.value(key)?;
    let DeValue::Array(items) = value.get_ref() else {
        decode::type_mistake(
            t.decoder(),
            Raw::File(value),
            &format!("an array of {}", T::EXPECTED),
            value.get_ref().type_str(),
        );
        return None;
    };
    let decoded: Vec<Option<T>> = items
        .iter()
        .map(|item| T::decode(t.decoder(), Raw::File(item)))
        .collect();
    let all: Option<Vec<T>> = decoded.into_iter().collect();
    Some(At {
        value: all?,
        span: Some(value.span()),
    })
}

fn bounded_size(
    t: &Table<'_, '_, '_>,
    key: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    why: &str,
) -> usize {
    let Some(at) = t.get_at::<ByteSize>(key) else {
        return default as usize;
    };
    if !range.contains(&at.value.0) {
        t.decoder().error_at(
            at.span.unwrap_or(0..0),
            format!(
                "{key} must be from {} to {} bytes, not {}",
                range.start(),
                range.end(),
                at.value.0
            ),
            Some(why.to_owned()),
        );
    }
    usize::try_from(at.value.0.clamp(*range.start(), *range.end())).unwrap_or(usize::MAX)
}

fn positive_duration(
    t: &Table<'_, '_, '_>,
    key: &'static str,
    default: Duration,
    min: Duration,
) -> Duration {
    let Some(at) = t.get_at::<ConfigDuration>(key) else {
        return default;
    };
    if at.value.0 < min {
        t.decoder().error_at(
            at.span.unwrap_or(0..0),
            format!("{key} must be at least {min:?}"),
            None,
        );
    }
    at.value.0
}

/// Reads one `[[sources.file]]` table whose `name` the caller already read
/// (and checked for uniqueness).
pub fn read(t: Table<'_, '_, '_>, name: Option<At<String>>) -> Option<FileConfig> {
    let dec = t.decoder();
    let kubernetes = t.or("kubernetes", false);
    let mut paths = array::<PathGlob>(&t, "paths");
    if paths.is_none() && t.value("paths").is_none() && kubernetes {
        paths = glob::Pattern::new(KUBERNETES_PATHS).ok().map(|p| At {
            value: vec![PathGlob(p)],
            span: None,
        });
    }
    if paths.is_none() && t.value("paths").is_none() {
        dec.error_at(
            t.span(),
            "[[sources.file]] is missing the required key `paths`",
            Some("add paths = [\"/var/log/app/*.log\"] (or kubernetes = true for the node's pod logs)".into()),
        );
    }
    if let Some(at) = &paths
        && at.value.is_empty()
    {
        dec.error_at(
            at.span.clone().unwrap_or(0..0),
            "paths must name at least one file or glob",
            None,
        );
    }
    let exclude = array::<PathGlob>(&t, "exclude");
    let exclude_bad = exclude.is_none() && t.value("exclude").is_some();
    let start_at = t.or("start_at", StartAt::End);
    let max_line_bytes = bounded_size(
        &t,
        "max_line_bytes",
        MIB,
        KIB..=MIB,
        "a line becomes one event, and an event may not exceed 1.5 MB",
    );
    let fingerprint_bytes = bounded_size(
        &t,
        "fingerprint_bytes",
        KIB,
        16..=64 * KIB,
        "the leading bytes that identify a file; 1KiB suits most logs",
    );
    let fingerprint_timeout = positive_duration(
        &t,
        "fingerprint_timeout",
        Duration::from_secs(1),
        Duration::ZERO,
    );
    let rescan_interval = positive_duration(
        &t,
        "rescan_interval",
        Duration::from_secs(1),
        Duration::from_millis(100),
    );
    let multiline = match t.value("multiline") {
        Some(value) => Table::new(dec, value, "[sources.file.multiline]").and_then(read_multiline),
        None => None,
    };
    let multiline_bad = multiline.is_none() && t.value("multiline").is_some();
    let json = t.or("json", false);
    let tail = t.or("tail", true);
    let watch = t.or("watch", false);
    let format = t.or(
        "format",
        if kubernetes {
            Format::Cri
        } else {
            Format::Plain
        },
    );
    if !tail
        && !watch
        && let Some(value) = t.value("tail")
    {
        dec.error_at(
            value.span(),
            "with tail = false and watch = false this source does nothing",
            Some("set watch = true to report file changes without reading lines".into()),
        );
    }
    t.finish();
    if exclude_bad || multiline_bad {
        return None;
    }
    Some(FileConfig {
        name: name?.value,
        paths: paths?.value.into_iter().map(|p| p.0).collect(),
        exclude: exclude.map_or_else(Vec::new, |at| at.value.into_iter().map(|p| p.0).collect()),
        start_at,
        max_line_bytes,
        fingerprint_bytes,
        fingerprint_timeout,
        rescan_interval,
        multiline,
        json,
        tail,
        watch,
        format,
        kubernetes,
    })
}

fn read_multiline(t: Table<'_, '_, '_>) -> Option<Multiline> {
    let dec = t.decoder();
    let start = t.required::<String>("start");
    let flush_timeout = positive_duration(
        &t,
        "flush_timeout",
        Duration::from_secs(1),
        Duration::from_millis(1),
    );
    t.finish();
    let start = start?;
    match regex::bytes::Regex::new(&start.value) {
        Ok(start) => Some(Multiline {
            start,
            flush_timeout,
        }),
        Err(e) => {
            dec.error_at(
                start.span.unwrap_or(0..0),
                format!("invalid regex {:?}: {e}", start.value),
                None,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{SourceConfig, parse};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_every_key() {
        let text = r#"
[[sources.file]]
name = "app"
paths = ["/var/log/app/*.log", "/srv/*/log.txt"]
exclude = ["/var/log/app/debug.log"]
start_at = "beginning"
max_line_bytes = "64KiB"
fingerprint_bytes = 256
fingerprint_timeout = "3s"
rescan_interval = "500ms"
json = true
watch = true

[sources.file.multiline]
start = '^\S'
flush_timeout = "2s"
"#;
        let config = parse("t.toml", text, &no_env).expect("valid");
        let [SourceConfig::File(file)] = config.sources.as_slice() else {
            panic!("one file source: {:?}", config.sources);
        };
        assert_eq!(file.name, "app");
        assert_eq!(file.paths.len(), 2);
        assert_eq!(file.exclude.len(), 1);
        assert_eq!(file.start_at, super::StartAt::Beginning);
        assert_eq!(file.max_line_bytes, 64 * 1024);
        assert_eq!(file.fingerprint_bytes, 256);
        let multiline = file.multiline.as_ref().expect("multiline");
        assert!(multiline.start.is_match(b"Exception"));
        assert!(!multiline.start.is_match(b"  at x"));
        assert!(file.json && file.watch && file.tail);
    }

    #[test]
    fn kubernetes_needs_no_paths_and_reads_cri() {
        let text = "[[sources.file]]\nname = \"pods\"\nkubernetes = true\n";
        let config = parse("t.toml", text, &no_env).expect("valid");
        let [SourceConfig::File(file)] = config.sources.as_slice() else {
            panic!("one file source: {:?}", config.sources);
        };
        assert_eq!(file.paths[0].as_str(), super::KUBERNETES_PATHS);
        assert_eq!(file.format, super::Format::Cri);
        let text = "[[sources.file]]\nname = \"d\"\npaths = [\"/x/*.log\"]\nformat = \"docker\"\n";
        let config = parse("t.toml", text, &no_env).expect("valid");
        let [SourceConfig::File(file)] = config.sources.as_slice() else {
            panic!("one file source");
        };
        assert_eq!(file.format, super::Format::Docker);
        assert!(!file.kubernetes);
        let text = "[[sources.file]]\nname = \"d\"\npaths = [\"/x/*.log\"]\nformat = \"cr\"\n";
        let shown = parse("t.toml", text, &no_env)
            .expect_err("invalid")
            .to_string();
        assert!(shown.contains("did you mean \"cri\"?"), "{shown}");
    }

    #[test]
    fn every_mistake_is_reported() {
        let text = r#"
[[sources.file]]
name = "app"
paths = ["relative/*.log", "/ok/[.log"]
start_at = "begining"
max_line_bytes = "100MiB"

[sources.file.multiline]
start = "("

[[sources.file]]
name = "app"
"#;
        let err = parse("t.toml", text, &no_env).expect_err("invalid");
        let shown = err.to_string();
        for expected in [
            "not an absolute path",
            "invalid glob",
            "did you mean \"beginning\"?",
            "max_line_bytes must be from",
            "invalid regex",
            "already used",
            "missing the required key `paths`",
        ] {
            assert!(shown.contains(expected), "{expected}: {shown}");
        }
    }
}
