//! `[[sources.probe]]`: is a service reachable? One target per source, a
//! TCP connect (`tcp = "host:port"`) or an HTTP GET (`http = "https://…"`)
//! every `interval`, announced as `probe.up` / `probe.down` observations on
//! transitions only.
//!
//! # When the level changes
//!
//! A probe is `down` after `failures` consecutive failed checks (default 2)
//! and `up` again after `successes` consecutive good ones (default 1). Two
//! failures because one lost packet or one slow answer past the timeout
//! is not an outage worth paging anyone for, while a real outage is still
//! reported one interval later; one success is enough to say "up" because
//! an answer is hard evidence that the service answers. `failures = 1`
//! reports every failed check.
//!
//! With no known state (the first run, or after the target changed), the
//! first check's result is announced at once, whatever the counts, so the
//! operator learns the current state. The announced level and a counter
//! of announcements are the known state, kept in
//! `<state_dir>/<name>.probe.json` and saved only once the announcement is
//! durably queued (see [`known_state`](super::known_state)); a restart
//! therefore does not announce the held level again. An announcement's
//! identity is (target, counter, level), so one re-emitted after a crash
//! gets the same event id.
//!
//! # What a check is
//!
//! - TCP: the connection is established within `timeout` (name resolution
//!   included), then closed.
//! - HTTP: a GET on a fresh connection (no pooling: a listener that stopped
//!   accepting must not hide behind a kept-alive connection), no proxy (the
//!   probe measures the target, not a proxy), certificates verified (extra
//!   roots from `ca_file`), redirects not followed (a 3xx is the target's
//!   own answer; following it would probe another server, maybe a login
//!   page elsewhere). The status must be in `expect_status` (default: any
//!   2xx or 3xx). The body is not read.
//!
//! This module does not decide what an event is called or where it goes:
//! that is the mapper's, from the kinds registered in
//! [`kinds`](crate::mapping::kinds).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::Emitter;
use super::known_state::{KnownStateSaver, StateFile};
use crate::observation::Observation;

mod config;
pub use config::{ProbeConfig, StatusSet, Target, read};

/// Whether the target was reachable, as announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Checks succeed.
    Up,
    /// Checks fail.
    Down,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Up => "up",
            Level::Down => "down",
        }
    }
}

/// Why a check failed: a short class an automation can match on, and the
/// details for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `refused`, `timeout`, `dns`, `tls`, `connect`, `status` or `http`.
    pub kind: &'static str,
    /// What happened, e.g. "connection refused (os error 111)".
    pub message: String,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// How long the check took: to the connection (TCP), to the response
    /// head (HTTP), or to the failure.
    pub latency: Duration,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// Why it failed; `None` when it succeeded.
    pub failure: Option<Failure>,
}

/// Something that checks a target once; the real probes, and scripted
/// ones in tests.
pub trait Check: Send {
    /// Runs one check. Never takes (much) longer than the timeout.
    fn check(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// The real check of a [`Target`].
pub enum Prober {
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        address: String,
        /// The most one check may take, resolution included.
        timeout: Duration,
    },
    /// An HTTP GET.
    Http {
        /// Built once: no redirects, no pool, no proxy, the timeout.
        client: reqwest::Client,
        /// The URL.
        url: reqwest::Url,
        /// Statuses that count as up.
        expect: StatusSet,
        /// For the message of a timeout.
        timeout: Duration,
    },
}

impl Prober {
    /// The prober for `config`.
    ///
    /// # Errors
    /// The reason when the HTTP client cannot be built (a CA file that
    /// passed the config check but is refused by the TLS library).
    pub fn new(config: &ProbeConfig) -> Result<Prober, String> {
        match &config.target {
            Target::Tcp(address) => Ok(Prober::Tcp {
                address: address.clone(),
                timeout: config.timeout,
            }),
            Target::Http(url) => {
                crate::tls::install_crypto_provider();
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("herald-probe/", env!("CARGO_PKG_VERSION")))
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(0)
                    .no_proxy();
                if let Some(pem) = &config.ca_pem {
                    let certs =
                        reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
                    for cert in certs {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                let client = builder.build().map_err(|e| error_chain(&e))?;
                Ok(Prober::Http {
                    client,
                    url: url.clone(),
                    expect: config.expect_status.clone(),
                    timeout: config.timeout,
                })
            }
        }
    }
}

impl Check for Prober {
    async fn check(&mut self) -> Outcome {
        let started = Instant::now();
        match self {
            Prober::Tcp { address, timeout } => {
                let connected = tokio::time::timeout(
                    *timeout,
                    tokio::net::TcpStream::connect(address.as_str()),
                )
                .await;
                let latency = started.elapsed();
                let failure = match connected {
                    Ok(Ok(stream)) => {
                        drop(stream);
                        None
                    }
                    Ok(Err(e)) => Some(io_failure(&e)),
                    Err(_) => Some(timed_out(*timeout)),
                };
                Outcome {
                    latency,
                    status: None,
                    failure,
                }
            }
            Prober::Http {
                client,
                url,
                expect,
                timeout,
            } => {
                let answer = client.get(url.clone()).send().await;
                let latency = started.elapsed();
                match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The body is not read: dropping the response
                        // closes the (unpooled) connection.
                        drop(response);
                        let failure = (!expect.contains(status)).then(|| Failure {
                            kind: "status",
                            message: format!("status {status}, expected {expect}"),
                        });
                        Outcome {
                            latency,
                            status: Some(status),
                            failure,
                        }
                    }
                    Err(e) => Outcome {
                        latency,
                        status: None,
                        failure: Some(http_failure(e, *timeout)),
                    },
                }
            }
        }
    }
}

fn timed_out(timeout: Duration) -> Failure {
    Failure {
        kind: "timeout",
        message: format!("no answer within {timeout:?}"),
    }
}

/// Classifies a TCP connect error.
fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    let kind = match e.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::TimedOut => "timeout",
        // tokio's resolver reports a failed lookup as an uncategorized
        // error whose text says so.
        _ if e.to_string().contains("lookup") => "dns",
        _ => "connect",
    };
    Failure {
        kind,
        message: e.to_string(),
    }
}

/// Classifies a failed HTTP exchange.
fn http_failure(e: reqwest::Error, timeout: Duration) -> Failure {
    // The URL is in every event already; keep the message to the cause.
    let e = e.without_url();
    if e.is_timeout() {
        return timed_out(timeout);
    }
    let message = error_chain(&e);
    let mut kind = if e.is_connect() { "connect" } else { "http" };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            kind = "tls";
            break;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // An io::Error's source() skips the error it wraps.
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                kind = "tls";
                break;
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    kind = "refused";
                    break;
                }
                std::io::ErrorKind::TimedOut => {
                    kind = "timeout";
                    break;
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    if kind == "connect" {
        let lower = message.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") {
            kind = "tls";
        } else if lower.contains("dns") || lower.contains("lookup") {
            kind = "dns";
        }
    }
    Failure { kind, message }
}

/// An error and its causes, joined by ": ", without repeats (reqwest and
/// hyper often repeat their cause's text).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// What is kept on disk: the last announced level and how many
/// announcements there were, for the target it was about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The target as configured; a state about another target is ignored.
    pub target: String,
    /// The last announced level.
    pub level: Level,
    /// Announcements so far; the next one is `transitions + 1`.
    pub transitions: u64,
}

/// One announcement to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The new level.
    pub level: Level,
    /// The level before, `None` for the first announcement.
    pub previous: Option<Level>,
    /// Its number: 1 for the first announcement ever.
    pub transition: u64,
    /// Consecutive failed checks, this one included.
    pub consecutive_failures: u32,
    /// Consecutive good checks, this one included.
    pub consecutive_successes: u32,
}

/// The level logic, apart from time and I/O.
#[derive(Clone, Debug)]
pub struct Tracker {
    failures: u32,
    successes: u32,
    /// The last announced level and its number; `None` until the first.
    known: Option<(Level, u64)>,
    consecutive_failures: u32,
    consecutive_successes: u32,
}

impl Tracker {
    /// A tracker needing `failures` / `successes` consecutive checks to
    /// change level, starting from what was last announced (if anything).
    pub fn new(failures: u32, successes: u32, known: Option<(Level, u64)>) -> Self {
        Tracker {
            failures: failures.max(1),
            successes: successes.max(1),
            known,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }

    /// Takes one check's result; returns the announcement to make, if any.
    pub fn record(&mut self, ok: bool) -> Option<Announcement> {
        let (level, needed) = if ok {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
            (Level::Up, self.successes <= self.consecutive_successes)
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            (Level::Down, self.failures <= self.consecutive_failures)
        };
        let (previous, transition) = match self.known {
            None => (None, 1),
            Some((known, _)) if known == level => return None,
            Some(_) if !needed => return None,
            Some((known, n)) => (Some(known), n + 1),
        };
        self.known = Some((level, transition));
        Some(Announcement {
            level,
            previous,
            transition,
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
        })
    }
}

/// Starts the probe source on `tracker`.
pub fn spawn(
    config: ProbeConfig,
    state_dir: &Path,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let prober = match Prober::new(&config) {
        Ok(prober) => prober,
        Err(error) => {
            warn!(stage = "receiving", source = %config.name, error = %error, "ProbeSourceFailed: the source does not run");
            return;
        }
    };
    let file = StateFile::new(state_dir, &config.name, "probe");
    tracker.spawn(run(config, prober, file, emitter, cancel));
}

/// Checks every interval until `cancel` fires or the pipeline closes.
pub async fn run<C: Check>(
    config: ProbeConfig,
    mut checker: C,
    file: StateFile,
    emitter: Emitter,
    cancel: CancellationToken,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let target = config.target.to_string();
    let probe = config.target.kind();
    let known = file
        .load::<Known>()
        .filter(|known| known.target == target)
        .map(|known| (known.level, known.transitions));
    let saver = KnownStateSaver::new(file);
    let mut levels = Tracker::new(config.failures, config.successes, known);
    info!(source = %name, probe, target = %target, interval = ?config.interval, known = ?known.map(|k| k.0), "ProbeSourceStarted");
    let mut ticks = tokio::time::interval(config.interval);
    // After a stall, check once, not in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = saver.ready() => {
                saver.save_pending().await;
                continue;
            }
            _ = ticks.tick() => {}
        }
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            outcome = checker.check() => outcome,
        };
        debug!(
            source = %name,
            ok = outcome.failure.is_none(),
            latency = ?outcome.latency,
            status = outcome.status,
            error = outcome.failure.as_ref().map(|f| f.message.as_str()),
            "ProbeChecked"
        );
        let Some(announcement) = levels.record(outcome.failure.is_none()) else {
            continue;
        };
        match &outcome.failure {
            Some(failure) => {
                info!(source = %name, target = %target, error = %failure.message, "ProbeDown")
            }
            None => info!(source = %name, target = %target, "ProbeUp"),
        }
        let state = Known {
            target: target.clone(),
            level: announcement.level,
            transitions: announcement.transition,
        };
        let mut observation = observation(&name, &target, probe, &announcement, &outcome);
        observation.on_durable = Some(saver.on_durable(state));
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = emitter.emit(observation) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The observation announcing `announcement`.
fn observation(
    source: &Arc<str>,
    target: &str,
    probe: &'static str,
    announcement: &Announcement,
    outcome: &Outcome,
) -> Observation {
    let level = announcement.level.as_str();
    let mut identity = Vec::with_capacity(target.len() + 32);
    identity.extend_from_slice(target.as_bytes());
    identity.push(0);
    identity.extend_from_slice(&announcement.transition.to_be_bytes());
    identity.extend_from_slice(level.as_bytes());
    // Milliseconds with microsecond precision: small latencies stay
    // readable.
    let latency_ms = (outcome.latency.as_secs_f64() * 1e6).round() / 1e3;
    let mut observation = Observation::new(
        Arc::clone(source),
        if announcement.level == Level::Up {
            "probe.up"
        } else {
            "probe.down"
        },
    )
    .with("target", target)
    .with("probe", probe)
    .with("latency_ms", latency_ms)
    .with("consecutive_failures", announcement.consecutive_failures)
    .with("consecutive_successes", announcement.consecutive_successes);
    if let Some(status) = outcome.status {
        observation = observation.with("status", status);
    }
    if let Some(failure) = &outcome.failure {
        observation = observation
            .with("error", failure.message.as_str())
            .with("error_kind", failure.kind);
    }
    if let Some(previous) = announcement.previous {
        observation = observation.with("previous", previous.as_str());
    }
    observation.identity = Some(identity);
    observation
}

#[cfg(test)]
mod tests;
