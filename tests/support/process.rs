//! [`Herald`]: the real herald binary running as a child process, with its
//! output captured line by line and ways to signal it and wait for it.
//!
//! The child never sees the developer's `PREFECT_*`, `HERALD_*` or
//! `RUST_LOG` variables (a test that wants one sets it explicitly), and gets
//! `NO_PROXY` for loopback so a proxy setting cannot swallow requests meant
//! for the mock endpoint.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::wait_until;

/// Environment variables removed from the child's inherited environment, by
/// prefix, so that what runs on a developer's machine is what runs in CI.
const SCRUBBED_PREFIXES: &[&str] = &["PREFECT_", "HERALD_"];
const SCRUBBED_NAMES: &[&str] = &["RUST_LOG"];
const LOOPBACK: &str = "127.0.0.1,localhost,::1";

/// How long to wait for the output pipes to close after the child exited;
/// only a grandchild that kept them open would make this wait the full time.
const DRAIN: Duration = Duration::from_secs(5);

/// Starts building a herald invocation.
pub fn herald() -> HeraldCommand {
    HeraldCommand::new()
}

/// A herald invocation: arguments, extra environment, working directory.
#[derive(Debug, Clone)]
pub struct HeraldCommand {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

impl Default for HeraldCommand {
    fn default() -> Self {
        Self::new()
    }
}

impl HeraldCommand {
    /// The herald binary Cargo built for this test run.
    pub fn new() -> Self {
        HeraldCommand {
            program: PathBuf::from(env!("CARGO_BIN_EXE_herald")),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    /// Runs another program with the same harness; the support self-test
    /// uses it to check the harness without depending on herald's behaviour.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets a variable in the child's environment (after scrubbing, so it
    /// may be a `PREFECT_*` or `HERALD_*` one).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Working directory; without it the child gets a fresh temp dir that
    /// lives as long as the [`Herald`] handle.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Bytes written to the child's stdin, which is then closed. Without it
    /// stdin is `/dev/null`.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Starts the process.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn spawn(self) -> Herald {
        let (tempdir, cwd) = match self.cwd {
            Some(dir) => (None, dir),
            None => {
                let dir = tempfile::tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temp dir for herald: {e}"));
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(&cwd);
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if SCRUBBED_PREFIXES.iter().any(|p| name.starts_with(p))
                || SCRUBBED_NAMES.contains(&name.as_ref())
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("NO_PROXY", LOOPBACK).env("no_proxy", LOOPBACK);
        // Every herald gets its own data_dir (two agents may not share one,
        // and tests run in parallel); this overrides a config file's
        // `data_dir`, and a test that needs another sets this variable.
        cmd.env("HERALD_AGENT_DATA_DIR", cwd.join("data"));
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} {:?}: {e}",
                self.program.display(),
                self.args
            )
        });
        if let (Some(bytes), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            // A child that exits without reading makes this fail; that is
            // its business, not a harness error.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let stdout = Lines::capture(child.stdout.take());
        let stderr = Lines::capture(child.stderr.take());
        Herald {
            child,
            status: None,
            stdout,
            stderr,
            cwd,
            _tempdir: tempdir,
        }
    }

    /// Runs the process to completion and returns its exit and output.
    ///
    /// # Panics
    /// If it cannot be started or has not exited within `timeout`.
    pub fn run(self, timeout: Duration) -> Finished {
        let mut herald = self.spawn();
        let status = herald.wait_exit(timeout);
        Finished {
            status,
            stdout: herald.stdout_lines(),
            stderr: herald.stderr_lines(),
        }
    }
}

/// A finished run: exit status and every output line.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// The exit code; `None` if a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.join("\n")
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

/// Output lines captured by a background reader thread.
struct Lines {
    lines: Mutex<Vec<String>>,
    /// Set when the pipe reached end of file: every line is in.
    closed: AtomicBool,
}

impl Lines {
    fn capture(pipe: Option<impl Read + Send + 'static>) -> Arc<Lines> {
        let lines = Arc::new(Lines {
            lines: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        let Some(pipe) = pipe else {
            lines.closed.store(true, Ordering::SeqCst);
            return lines;
        };
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        sink.lines
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(line);
                    }
                }
            }
            sink.closed.store(true, Ordering::SeqCst);
        });
        lines
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn find(&self, predicate: &impl Fn(&str) -> bool) -> Option<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|l| predicate(l))
            .cloned()
    }
}

/// A running (or finished) herald process. Dropping it kills the process if
/// it is still running.
pub struct Herald {
    child: Child,
    /// Set once the child has been reaped; after that its pid may belong to
    /// someone else, so no signal is sent.
    status: Option<ExitStatus>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    cwd: PathBuf,
    _tempdir: Option<TempDir>,
}

impl Herald {
    /// Starts herald with these arguments in a fresh temp dir.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn spawn<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Herald {
        herald().args(args).spawn()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Waits for a stdout line (seen so far or yet to come) matching
    /// `predicate` and returns it.
    ///
    /// # Panics
    /// When `timeout` passes first, or stdout closes without such a line.
    pub fn wait_for_stdout_line(
        &self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        self.wait_for_line(true, predicate, timeout)
    }

    /// As [`wait_for_stdout_line`](Self::wait_for_stdout_line), on stderr
    /// (where herald's logs go).
    ///
    /// # Panics
    /// When `timeout` passes first, or stderr closes without such a line.
    pub fn wait_for_stderr_line(
        &self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        self.wait_for_line(false, predicate, timeout)
    }

    fn wait_for_line(
        &self,
        stdout: bool,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let lines = Arc::clone(if stdout { &self.stdout } else { &self.stderr });
        let mut found = None;
        // Stop early once the pipe is closed: the line can no longer come.
        wait_until(timeout, || {
            let closed = lines.closed.load(Ordering::SeqCst);
            found = lines.find(&predicate);
            found.is_some() || closed
        });
        match found {
            Some(line) => line,
            None => panic!(
                "no matching {} line within {timeout:?}\n{}",
                if stdout { "stdout" } else { "stderr" },
                self.describe()
            ),
        }
    }

    /// Sends SIGTERM, as a service manager stopping herald would.
    ///
    /// # Panics
    /// If `kill` cannot be run.
    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// Sends the named signal (`"TERM"`, `"HUP"`, `"INT"`, …) with `kill(1)`,
    /// which keeps the harness free of `unsafe` and of a libc dependency.
    /// Does nothing once the process has been reaped.
    ///
    /// # Panics
    /// If `kill` cannot be run.
    pub fn signal(&mut self, name: &str) {
        if self.try_status().is_some() {
            return;
        }
        // Not yet reaped: even if it has exited, the pid is still ours (a
        // zombie), so this cannot hit an unrelated process.
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        if !status.success() && self.try_status().is_none() {
            panic!("kill -{name} {} failed: {status}", self.pid());
        }
    }

    /// Sends SIGKILL: a crash, as far as herald can tell.
    pub fn sigkill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to exit and for its output to be fully read.
    ///
    /// # Panics
    /// When `timeout` passes first (the process is then killed by `Drop`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exited = wait_until(timeout, || self.try_status().is_some());
        let Some(status) = self.status.filter(|_| exited) else {
            panic!(
                "herald (pid {}) still running after {timeout:?}\n{}",
                self.pid(),
                self.describe()
            );
        };
        wait_until(DRAIN, || {
            self.stdout.closed.load(Ordering::SeqCst) && self.stderr.closed.load(Ordering::SeqCst)
        });
        status
    }

    /// The process state and its captured output, for failure messages.
    pub fn describe(&self) -> String {
        let state = match self.status {
            Some(status) => format!("exited: {status}"),
            None => "running or not yet reaped".to_owned(),
        };
        format!(
            "herald pid {} ({state}) in {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.child.id(),
            self.cwd.display(),
            self.stdout.snapshot().join("\n"),
            self.stderr.snapshot().join("\n"),
        )
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
