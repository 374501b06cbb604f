//! `[[sources.systemd]]`: state changes of systemd units, as
//! `systemd.unit.<ActiveState>` observations (`active`, `inactive`,
//! `failed`, `activating`, `deactivating`, `reloading`, and the rarer
//! `maintenance` and `refreshing`).
//!
//! # How units are read
//!
//! Every `interval` the source runs `systemctl show` for the configured
//! units (after expanding the glob patterns with `systemctl list-units
//! --all`), with `--user` for the user manager. It does not speak D-Bus:
//! that would add a D-Bus client to herald's dependencies and a second
//! code path for the user manager's bus, while `systemctl` is on every
//! systemd host, speaks to either manager the same way, and prints the
//! same text. The price is one or two short subprocesses per interval
//! (a few milliseconds of CPU each; at the default 5s, well under 1% of a
//! core). `systemctl` is found through `PATH`, runs with `TZ=UTC` so its
//! timestamps read unambiguously, and is killed when it takes longer than
//! `timeout`; the async workers never wait on it.
//!
//! # No systemd
//!
//! When `systemctl` is missing or cannot talk to the manager (a container,
//! a host booted without systemd, no user session), the source logs one
//! warning saying why, announces nothing, and checks again every
//! [`RECHECK`]; once the manager answers it logs that once and starts.
//!
//! # What is announced
//!
//! A unit is announced when its ActiveState changes. A unit seen for the
//! first time (the first run, or a new unit matching a pattern) is
//! announced once with its current state and no `previous`, so the
//! operator sees the inventory. A unit that disappears from the manager
//! (unloaded, or its file removed) counts as `inactive`. Units that do not
//! exist (`LoadState=not-found`) are not announced; a configured name that
//! does not exist is warned about once.
//!
//! The last announced state of every unit is the known state, kept in
//! `<state_dir>/<name>.systemd.json` and saved only once its announcements
//! are durably queued, so a restart announces only real changes. An
//! announcement's identity is (unit, state, the state change timestamps
//! systemd reports), or (unit, state, a per-unit counter) when systemd
//! gives none, so one re-emitted after a crash gets the same event id.
//!
//! This module does not decide what an event is called or where it goes:
//! that is the mapper's, from the kinds registered in
//! [`kinds`](crate::mapping::kinds).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toml::de::DeValue;
use tracing::{info, warn};

use super::Emitter;
use super::known_state::{KnownStateSaver, StateFile};
use crate::config::decode::{self, At, ConfigDuration, Decode, Decoder, Raw, Table};
use crate::observation::Observation;

/// How often a source with no systemd to talk to looks again.
pub const RECHECK: Duration = Duration::from_secs(300);
/// Polls unless configured.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long one `systemctl` may run unless configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a unit that is gone stays in the known state, in case it
/// comes back.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The ActiveState values systemd has; each is a kind
/// `systemd.unit.<state>`.
const STATES: &[&str] = &[
    "active",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "reloading",
    "maintenance",
    "refreshing",
];
/// Unit type suffixes; a configured name without one gets `.service`, as
/// `systemctl` itself does.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];
/// The properties read for each unit.
const PROPERTIES: &str = "--property=Id,LoadState,ActiveState,SubState,Result,Description,StateChangeTimestamp,StateChangeTimestampMonotonic";

/// A configured unit: a name, or a glob pattern expanded at every poll.
#[derive(Clone, Debug)]
pub enum UnitMatch {
    /// `nginx.service`.
    Name(String),
    /// `nginx*.service`.
    Pattern(glob::Pattern),
}

impl PartialEq for UnitMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (UnitMatch::Name(a), UnitMatch::Name(b)) => a == b,
            (UnitMatch::Pattern(a), UnitMatch::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl UnitMatch {
    fn matches(&self, unit: &str) -> bool {
        match self {
            UnitMatch::Name(name) => name == unit,
            UnitMatch::Pattern(pattern) => pattern.matches(unit),
        }
    }
}

/// `[[sources.systemd]]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemdConfig {
    /// Unique among sources; names the known-state file and is part of
    /// every event id this source derives.
    pub name: String,
    /// The units watched.
    pub units: Vec<UnitMatch>,
    /// Time between polls.
    pub interval: Duration,
    /// How long one `systemctl` may run before it is killed.
    pub timeout: Duration,
    /// Watch the user manager (`systemctl --user`) instead of the system's.
    pub user: bool,
}

/// One entry of `units`.
struct UnitEntry(UnitMatch);

impl Decode for UnitEntry {
    const EXPECTED: &'static str =
        "a unit name or pattern like \"nginx.service\" or \"app@*.service\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        let valid = !text.is_empty()
            && text.len() <= 255
            && !text.starts_with(['-', '.'])
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@*?[]!".contains(c));
        if !valid {
            decode::value_mistake(
                dec,
                raw,
                format!("invalid unit name {text:?}"),
                Some(
                    "unit names are letters, digits and : - _ . \\ @, and patterns add * ? [ ]"
                        .into(),
                ),
            );
            return None;
        }
        if text.contains(['*', '?', '[']) {
            return match glob::Pattern::new(&text) {
                Ok(pattern) => Some(UnitEntry(UnitMatch::Pattern(pattern))),
                Err(e) => {
                    decode::value_mistake(
                        dec,
                        raw,
                        format!("invalid pattern {text:?}: {}", e.msg),
                        None,
                    );
                    None
                }
            };
        }
        let typed = text
            .rsplit_once('.')
            .is_some_and(|(_, suffix)| UNIT_TYPES.contains(&suffix));
        Some(UnitEntry(UnitMatch::Name(if typed {
            text
        } else {
            format!("{text}.service")
        })))
    }
}

/// Reads one `[[sources.systemd]]` table whose `name` the caller already
/// read (and checked for uniqueness).
pub fn read(t: Table<'_, '_, '_>, name: Option<At<String>>) -> Option<SystemdConfig> {
    let dec = t.decoder();
    let units = match t.value("units") {
        None => {
            dec.error_at(
                t.span(),
                "[[sources.systemd]] is missing the required key `units`",
                Some("add units = [\"nginx.service\", \"app@*.service\"]".into()),
            );
            None
        }
        Some(value) => match value.get_ref() {
            DeValue::Array(items) if items.is_empty() => {
                dec.error_at(value.span(), "units must name at least one unit", None);
                None
            }
            DeValue::Array(items) => {
                let decoded: Vec<Option<UnitEntry>> = items
                    .iter()
                    .map(|item| UnitEntry::decode(dec, Raw::File(item)))
                    .collect();
                decoded
                    .into_iter()
                    .map(|u| u.map(|u| u.0))
                    .collect::<Option<Vec<_>>>()
            }
            other => {
                decode::type_mistake(
                    dec,
                    Raw::File(value),
                    "a list of unit names or patterns",
                    other.type_str(),
                );
                None
            }
        },
    };
    let interval = duration(&t, "interval", DEFAULT_INTERVAL);
    let timeout = duration(&t, "timeout", DEFAULT_TIMEOUT);
    let user = t.or("user", false);
    t.finish();
    Some(SystemdConfig {
        name: name?.value,
        units: units?,
        interval,
        timeout,
        user,
    })
}

/// Reads a duration of at least 100ms.
fn duration(t: &Table<'_, '_, '_>, key: &'static str, default: Duration) -> Duration {
    let Some(at) = t.get_at::<ConfigDuration>(key) else {
        return default;
    };
    if at.value.0 < Duration::from_millis(100) {
        t.decoder().error_at(
            at.span.unwrap_or(0..0),
            format!("{key} must be at least 100ms"),
            None,
        );
    }
    at.value.0
}

/// Why `systemctl` gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// There is no manager to talk to: no `systemctl`, or it cannot reach
    /// the manager. Checked again after [`RECHECK`].
    Unavailable(String),
    /// It failed this time (too slow, say); tried again next interval.
    Failed(String),
}

/// Runs `systemctl` with arguments and returns what it printed; the real
/// one, and scripted ones in tests.
pub trait Systemctl: Send {
    /// Runs `systemctl [--user] ARGS`.
    fn run(&mut self, args: Vec<String>) -> impl Future<Output = Result<String, RunError>> + Send;
}

/// The `systemctl` found on `PATH`.
pub struct SystemctlOnPath {
    /// `--user`.
    user: bool,
    /// Killed after this long.
    timeout: Duration,
}

impl Systemctl for SystemctlOnPath {
    async fn run(&mut self, args: Vec<String>) -> Result<String, RunError> {
        let mut command = tokio::process::Command::new("systemctl");
        if self.user {
            command.arg("--user");
        }
        command
            .arg("--no-pager")
            .args(&args)
            .env("TZ", "UTC")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out systemctl is killed when its future is dropped.
            .kill_on_drop(true);
        let output = match tokio::time::timeout(self.timeout, command.output()).await {
            Err(_) => {
                return Err(RunError::Failed(format!(
                    "systemctl took longer than {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RunError::Unavailable(
                    "systemctl is not on PATH: this host does not run systemd".into(),
                ));
            }
            Ok(Err(e)) => {
                return Err(RunError::Unavailable(format!("cannot run systemctl: {e}")));
            }
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let mut reason = format!("systemctl failed ({}): {said}", output.status);
            if !self.user && !Path::new("/run/systemd/system").exists() {
                reason = format!(
                    "systemd is not running here (/run/systemd/system is absent); {reason}"
                );
            }
            return Err(RunError::Unavailable(reason));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// One unit as `systemctl show` reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `Id`: the unit's canonical name.
    pub id: String,
    /// `LoadState`: `loaded`, `not-found`, `masked`, ...
    pub load_state: String,
    /// `ActiveState`.
    pub active_state: String,
    /// `SubState`: `running`, `dead`, `exited`, ...
    pub sub_state: String,
    /// `Result`, for the unit types that have one (`success`,
    /// `exit-code`, ...).
    pub result: Option<String>,
    /// `Description`.
    pub description: String,
    /// `StateChangeTimestamp` as printed (`Thu 2024-05-02 10:11:12 UTC`).
    pub since: String,
    /// `StateChangeTimestampMonotonic`: microseconds since boot.
    pub since_monotonic: String,
}

/// Reads `systemctl show` output: one block of `Key=Value` lines per
/// unit, blocks separated by an empty line, properties in systemd's order.
pub fn parse_show(text: &str) -> Vec<UnitState> {
    let mut units = Vec::new();
    let mut current = UnitState::default();
    let mut any = false;
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if any && !current.id.is_empty() {
                units.push(std::mem::take(&mut current));
            }
            current = UnitState::default();
            any = false;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        any = true;
        let value = value.to_owned();
        match key {
            "Id" => current.id = value,
            "LoadState" => current.load_state = value,
            "ActiveState" => current.active_state = value,
            "SubState" => current.sub_state = value,
            "Result" => current.result = Some(value).filter(|v| !v.is_empty()),
            "Description" => current.description = value,
            // A unit that never changed state reports an empty, "n/a" or
            // zero timestamp: no timestamp.
            "StateChangeTimestamp" if value != "n/a" => current.since = value,
            "StateChangeTimestampMonotonic" if value != "0" => current.since_monotonic = value,
            _ => {}
        }
    }
    units
}

/// Reads `systemctl list-units --plain --no-legend --full` output: the
/// unit name is the first word that looks like one (a failed unit may be
/// marked with a bullet first).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.contains('.') && !word.starts_with(['●', '*']))
                .map(str::to_owned)
        })
        .collect()
}

/// `StateChangeTimestamp` (printed under `TZ=UTC`) as RFC 3339; the text
/// as printed when it is in another form.
fn since_rfc3339(since: &str) -> String {
    let words: Vec<&str> = since.split_whitespace().collect();
    if let [_, date, time, "UTC" | "GMT"] = words.as_slice()
        && let Ok(at) =
            NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S")
    {
        return at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true);
    }
    since.to_owned()
}

/// What is kept on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// Which manager the units belong to; a state about the other one is
    /// ignored.
    pub user: bool,
    /// The last announced state of each unit.
    pub units: BTreeMap<String, KnownUnit>,
}

/// The last announced state of one unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownUnit {
    /// Its ActiveState.
    pub state: String,
    /// Announcements of this unit so far.
    pub transitions: u64,
    /// When it was last found missing (unix seconds), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<i64>,
}

/// One announcement to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The unit as it is now.
    pub unit: UnitState,
    /// Its state before; `None` when it is announced for the first time.
    pub previous: Option<String>,
    /// The number of this announcement for this unit, from 1.
    pub transition: u64,
}

/// The transition logic, apart from time and I/O.
#[derive(Clone, Debug)]
pub struct Tracker {
    units: Vec<UnitMatch>,
    known: Known,
    /// Configured names already warned about as not found.
    warned_missing: BTreeSet<String>,
}

impl Tracker {
    /// A tracker for `units`, starting from what was last announced.
    pub fn new(units: Vec<UnitMatch>, known: Known) -> Self {
        Tracker {
            units,
            known,
            warned_missing: BTreeSet::new(),
        }
    }

    /// The state to save once the changes returned so far are durable.
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// Takes one poll's units (every unit the configuration matches that
    /// the manager has); returns the announcements to make. `now` is unix
    /// seconds, for forgetting units long gone.
    pub fn observe(&mut self, units: Vec<UnitState>, now: i64) -> Vec<Change> {
        // What the manager has of the configured units (a configured alias
        // shows up under the unit's own name).
        let present: HashSet<String> = units
            .iter()
            .filter(|u| u.load_state != "not-found" && STATES.contains(&u.active_state.as_str()))
            .map(|u| u.id.clone())
            .collect();
        let configured = &self.units;
        // Units no longer configured are forgotten, silently.
        self.known
            .units
            .retain(|id, _| present.contains(id) || configured.iter().any(|u| u.matches(id)));
        let mut changes = Vec::new();
        for unit in units {
            if unit.load_state == "not-found" {
                if self.units.contains(&UnitMatch::Name(unit.id.clone()))
                    && self.warned_missing.insert(unit.id.clone())
                {
                    warn!(stage = "receiving", unit = %unit.id, "SystemdUnitNotFound: it is watched once it exists");
                }
                continue;
            }
            if !STATES.contains(&unit.active_state.as_str()) {
                // A state this herald does not know (a newer systemd):
                // nothing to announce it as.
                continue;
            }
            let previous = self.known.units.get(&unit.id);
            if let Some(known) = previous
                && known.state == unit.active_state
            {
                self.known
                    .units
                    .entry(unit.id.clone())
                    .and_modify(|k| k.gone_since = None);
                continue;
            }
            let transition = previous.map_or(1, |k| k.transitions + 1);
            let previous = previous.map(|k| k.state.clone());
            self.known.units.insert(
                unit.id.clone(),
                KnownUnit {
                    state: unit.active_state.clone(),
                    transitions: transition,
                    gone_since: None,
                },
            );
            changes.push(Change {
                unit,
                previous,
                transition,
            });
        }
        for (id, known) in &mut self.known.units {
            if present.contains(id) {
                continue;
            }
            known.gone_since.get_or_insert(now);
            if known.state != "inactive" {
                let previous = std::mem::replace(&mut known.state, "inactive".into());
                known.transitions += 1;
                changes.push(Change {
                    unit: UnitState {
                        id: id.clone(),
                        load_state: "not-loaded".into(),
                        active_state: "inactive".into(),
                        sub_state: "dead".into(),
                        ..UnitState::default()
                    },
                    previous: Some(previous),
                    transition: known.transitions,
                });
            }
        }
        let forget = i64::try_from(FORGET_AFTER.as_secs()).unwrap_or(i64::MAX);
        self.known.units.retain(|_, k| {
            k.gone_since
                .is_none_or(|gone| now.saturating_sub(gone) < forget)
        });
        changes
    }
}

/// Asks the manager for the configured units' states.
///
/// # Errors
/// [`RunError`] when `systemctl` gave no answer.
pub async fn poll<S: Systemctl>(
    systemctl: &mut S,
    units: &[UnitMatch],
) -> Result<Vec<UnitState>, RunError> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut patterns = Vec::new();
    for unit in units {
        match unit {
            UnitMatch::Name(name) => {
                names.insert(name.clone());
            }
            UnitMatch::Pattern(pattern) => patterns.push(pattern.as_str().to_owned()),
        }
    }
    if !patterns.is_empty() {
        let mut args: Vec<String> = ["list-units", "--all", "--plain", "--no-legend", "--full"]
            .map(str::to_owned)
            .to_vec();
        args.extend(patterns);
        let listed = systemctl.run(args).await?;
        names.extend(parse_list(&listed));
    }
    if names.is_empty() {
        // Nothing matches now; that is an answer too.
        return Ok(Vec::new());
    }
    let mut args = vec!["show".to_owned(), PROPERTIES.to_owned()];
    args.extend(names);
    let shown = systemctl.run(args).await?;
    Ok(parse_show(&shown))
}

/// Starts the systemd source on `tracker`.
pub fn spawn(
    config: SystemdConfig,
    state_dir: &Path,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let systemctl = SystemctlOnPath {
        user: config.user,
        timeout: config.timeout,
    };
    let file = StateFile::new(state_dir, &config.name, "systemd");
    tracker.spawn(run(config, systemctl, file, emitter, cancel));
}

/// Whether the manager answered last time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reachable {
    /// Not asked yet.
    Unknown,
    /// It answered.
    Yes,
    /// It could not be reached (warned once).
    No,
}

/// Polls until `cancel` fires or the pipeline closes.
pub async fn run<S: Systemctl>(
    config: SystemdConfig,
    mut systemctl: S,
    file: StateFile,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let manager = if config.user { "user" } else { "system" };
    let known = file
        .load::<Known>()
        .filter(|known| known.user == config.user)
        .unwrap_or(Known {
            user: config.user,
            units: BTreeMap::new(),
        });
    let saver = KnownStateSaver::new(file);
    let mut units = Tracker::new(config.units.clone(), known);
    info!(source = %name, manager, units = config.units.len(), interval = ?config.interval, "SystemdSourceStarted");
    let mut reachable = Reachable::Unknown;
    let mut failing = false;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = saver.ready() => {
                saver.save_pending().await;
                continue;
            }
            () = tokio::time::sleep_until(next) => {}
        }
        let polled = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            polled = poll(&mut systemctl, &config.units) => polled,
        };
        // The next poll is an interval after this one started, or after
        // now when this one overran it (no burst after a stall).
        next = (next + config.interval).max(Instant::now());
        let states = match polled {
            Ok(states) => states,
            Err(RunError::Unavailable(reason)) => {
                if reachable != Reachable::No {
                    warn!(stage = "receiving", source = %name, manager, reason = %reason, recheck = ?RECHECK, "SystemdUnavailable: nothing is announced until it answers");
                }
                reachable = Reachable::No;
                next = Instant::now() + RECHECK;
                continue;
            }
            Err(RunError::Failed(reason)) => {
                if !failing {
                    warn!(stage = "receiving", source = %name, manager, reason = %reason, "SystemctlFailed: trying again every interval");
                }
                failing = true;
                continue;
            }
        };
        if reachable == Reachable::No {
            info!(source = %name, manager, "SystemdAvailable: watching units");
        }
        reachable = Reachable::Yes;
        failing = false;
        let changes = units.observe(states, Utc::now().timestamp());
        if changes.is_empty() {
            continue;
        }
        let mut batch: Vec<Observation> = changes
            .iter()
            .map(|change| observation(&name, manager, change))
            .collect();
        if let Some(last) = batch.last_mut() {
            last.on_durable = Some(saver.on_durable(units.known().clone()));
        }
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = emitter.emit_batch(batch) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The observation announcing `change`.
fn observation(source: &Arc<str>, manager: &'static str, change: &Change) -> Observation {
    let unit = &change.unit;
    let mut identity = Vec::with_capacity(unit.id.len() + 64);
    identity.extend_from_slice(unit.id.as_bytes());
    identity.push(0);
    identity.extend_from_slice(unit.active_state.as_bytes());
    identity.push(0);
    if unit.since.is_empty() {
        identity.push(b'#');
        identity.extend_from_slice(&change.transition.to_be_bytes());
    } else {
        identity.extend_from_slice(unit.since.as_bytes());
        identity.push(0);
        identity.extend_from_slice(unit.since_monotonic.as_bytes());
    }
    let mut observation = Observation::new(
        Arc::clone(source),
        format!("systemd.unit.{}", unit.active_state),
    )
    .with("unit", unit.id.as_str())
    .with("state", unit.active_state.as_str())
    .with("sub_state", unit.sub_state.as_str())
    .with("manager", manager);
    if let Some(result) = &unit.result {
        observation = observation.with("result", result.as_str());
    }
    if let Some(previous) = &change.previous {
        observation = observation.with("previous", previous.as_str());
    }
    if !unit.since.is_empty() {
        observation = observation.with("since", since_rfc3339(&unit.since));
    }
    if !unit.description.is_empty() {
        observation = observation.with("description", unit.description.as_str());
    }
    observation.identity = Some(identity);
    observation
}

#[cfg(test)]
mod tests;
