//! Reading processes from `/proc`: the [`ProcReader`] trait the process
//! source reads through, its real implementation [`ProcFs`], and the
//! parsers for the files it reads (`stat`, `status`, `cgroup`, `cmdline`).
//!
//! Everything here is about bytes in `/proc`; what to do with a process
//! (whether it matches, what it means that it is gone) is the tracker's
//! business. A file that vanishes mid-read is normal (the process
//! exited), so every read answers `None` rather than an error.
//!
//! The trait exists so that the tracker's transitions can be tested with
//! injected readings; [`ProcFs`] reuses one buffer and one path string for
//! all its reads, so a tick allocates nothing per process it only looks at.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `PF_KTHREAD` bit of a task's flags (stat field 9): a kernel thread,
/// which has no command line or executable and is never matched.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Most bytes of a command line herald reads: the `cmdline` selector and
/// the restart key see this much, labels far less.
pub const CMDLINE_READ_MAX: usize = 128 * 1024;

/// How long an unknown uid waits before `/etc/passwd` is read again.
const PASSWD_RETRY: Duration = Duration::from_secs(60);

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `comm`: the name the kernel knows it by (at most 15 bytes).
    pub comm: String,
    /// The state letter: `R`, `S`, `D`, `Z` (a zombie), ...
    pub state: u8,
    /// The parent's pid.
    pub ppid: u32,
    /// Whether it is a kernel thread.
    pub kernel_thread: bool,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When it started, in clock ticks since boot: with the pid, what
    /// names a process (pids are reused, this pair is not).
    pub start_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
    /// Field 52, `exit_code` (Linux 3.5 and later): the wait status once
    /// the process is a zombie; `None` on older kernels.
    pub exit_code: Option<i32>,
}

impl Stat {
    /// Whether the process has exited and waits for its parent to reap it.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
}

/// Parses `/proc/<pid>/stat`. The name sits in parentheses and may itself
/// hold spaces and parentheses, so the fields after it are found from the
/// last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // The fields after the name, numbered as in proc(5): state is field 3.
    let mut fields = [""; 53];
    let mut count = 3;
    for (slot, word) in fields[3..].iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = word;
        count += 1;
    }
    let number = |field: usize| -> Option<u64> {
        if field < count {
            fields[field].parse().ok()
        } else {
            None
        }
    };
    let state = *fields[3].as_bytes().first()?;
    Some(Stat {
        comm,
        state,
        ppid: u32::try_from(number(4)?).ok()?,
        kernel_thread: number(9)? & PF_KTHREAD != 0,
        cpu_ticks: number(14)?.saturating_add(number(15)?),
        start_ticks: number(22)?,
        // Signed in the kernel's format; never negative in practice.
        rss_pages: (24 < count)
            .then(|| fields[24].parse::<i64>().ok())
            .flatten()
            .map_or(0, |n| n.max(0) as u64),
        exit_code: (52 < count).then(|| fields[52].parse().ok()).flatten(),
    })
}

/// The credentials lines of `/proc/<pid>/status`: real, effective, saved
/// and filesystem ids, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Creds {
    /// `Uid:` real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// `Gid:` real, effective, saved, filesystem.
    pub gid: [u32; 4],
    /// `CapEff:` the effective capabilities.
    pub cap_eff: u64,
}

/// The bit of `CAP_SYS_PTRACE` in a capability set.
const CAP_SYS_PTRACE: u64 = 1 << 19;

impl Creds {
    /// The effective uid: the user a process runs as, as `ps` shows it.
    pub fn euid(&self) -> u32 {
        self.uid[1]
    }

    /// Whether a reader with these credentials may see `target`'s exit
    /// code in its `stat`. The kernel prints the real code only to a
    /// reader that passes its ptrace read check (same uids and gids as the
    /// target, or `CAP_SYS_PTRACE`) and a 0 to anyone else, which would
    /// read as a clean exit.
    pub fn may_read_exit_code_of(&self, target: &Creds) -> bool {
        if self.cap_eff & CAP_SYS_PTRACE != 0 {
            return true;
        }
        let fsuid = self.uid[3];
        let fsgid = self.gid[3];
        target.uid[..3].iter().all(|&u| u == fsuid) && target.gid[..3].iter().all(|&g| g == fsgid)
    }
}

/// Parses the `Uid:`, `Gid:` and `CapEff:` lines of `/proc/<pid>/status`.
pub fn parse_status(text: &[u8]) -> Option<Creds> {
    let text = std::str::from_utf8(text).ok()?;
    let mut creds = Creds::default();
    let (mut uid, mut gid) = (false, false);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = parse_ids(rest, &mut creds.uid);
        } else if let Some(rest) = line.strip_prefix("Gid:") {
            gid = parse_ids(rest, &mut creds.gid);
        } else if let Some(rest) = line.strip_prefix("CapEff:") {
            creds.cap_eff = u64::from_str_radix(rest.trim(), 16).unwrap_or(0);
        }
    }
    (uid && gid).then_some(creds)
}

fn parse_ids(text: &str, out: &mut [u32; 4]) -> bool {
    let mut n = 0;
    for (slot, word) in out.iter_mut().zip(text.split_ascii_whitespace()) {
        match word.parse() {
            Ok(id) => *slot = id,
            Err(_) => return false,
        }
        n += 1;
    }
    n == 4
}

/// Which container engine a cgroup path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container's id: 64 hex digits.
    pub id: String,
    /// `docker`, `containerd`, `crio` or `podman`, when the path tells.
    pub runtime: Option<&'static str>,
    /// The Kubernetes pod's uid, from a `kubepods` path.
    pub pod_uid: Option<String>,
}

/// Finds the container (and pod) a process runs in from its
/// `/proc/<pid>/cgroup`: the last path segment holding a 64-hex-digit id,
/// as docker (`/docker/<id>`, `docker-<id>.scope`), containerd/CRI
/// (`cri-containerd-<id>.scope`, `/kubepods/.../<id>`), CRI-O
/// (`crio-<id>.scope`) and podman (`libpod-<id>.scope`) name them.
/// `None` for a process outside any container.
pub fn parse_cgroup(text: &[u8]) -> Option<Container> {
    let text = std::str::from_utf8(text).ok()?;
    let mut found: Option<Container> = None;
    for line in text.lines() {
        // hierarchy-id:controllers:path
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let mut container: Option<Container> = None;
        let mut pod_uid = None;
        let mut previous = "";
        for segment in path.split('/') {
            if let Some(uid) = pod_segment(segment) {
                pod_uid = Some(uid);
            }
            if let Some((id, runtime)) = container_segment(segment, previous) {
                container = Some(Container {
                    id,
                    runtime,
                    pod_uid: None,
                });
            }
            previous = segment;
        }
        if let Some(mut container) = container {
            // A kubepods path without a runtime prefix (cgroupfs with
            // containerd or CRI-O) does not say which runtime it is.
            container.pod_uid = pod_uid;
            // cgroup v2's single line, or the first v1 hierarchy that names
            // one: they agree.
            if found.is_none() || container.pod_uid.is_some() {
                found = Some(container);
            }
        }
    }
    found
}

fn container_segment(segment: &str, parent: &str) -> Option<(String, Option<&'static str>)> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    if name.contains("conmon") {
        return None;
    }
    let prefixes: [(&str, &'static str); 5] = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "crio"),
        ("libpod-", "podman"),
        ("containerd-", "containerd"),
    ];
    let (id, runtime) = prefixes
        .iter()
        .find_map(|(prefix, runtime)| name.strip_prefix(prefix).map(|id| (id, Some(*runtime))))
        .unwrap_or((name, None));
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let runtime = runtime.or(match parent {
        "docker" => Some("docker"),
        "libpod_parent" | "machine.slice" => Some("podman"),
        _ => None,
    });
    Some((id.to_ascii_lowercase(), runtime))
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice` (systemd,
/// with `_` for `-`).
fn pod_segment(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".slice").unwrap_or(segment);
    let at = name.rfind("pod")?;
    if at > 0 && !name.starts_with("kubepods") {
        return None;
    }
    let uid = name[at + 3..].replace('_', "-");
    let valid = uid.len() == 36
        && uid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    valid.then(|| uid.to_ascii_lowercase())
}

/// Facts about the machine that do not change while herald runs.
#[derive(Clone, Debug)]
pub struct System {
    /// The kernel's boot id (or, where it cannot be read, the boot time):
    /// part of every process identity, since pids and start times repeat
    /// across boots.
    pub boot_id: String,
    /// Clock ticks per second (`USER_HZ`), the unit of stat's times.
    pub clock_ticks: u64,
    /// Bytes per page, the unit of stat's resident set.
    pub page_size: u64,
    /// Total memory, for thresholds written as a percent.
    pub mem_total: u64,
    /// When the machine booted, in Unix seconds: start times are counted
    /// from it.
    pub boot_time: f64,
    /// herald's own credentials, to tell whose exit codes it may read.
    pub own: Creds,
}

impl System {
    /// Reads the machine's facts from `/proc`, with the usual Linux values
    /// where a file cannot be read.
    pub fn read() -> System {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        let clock_ticks = auxv_value(&auxv, AT_CLKTCK)
            .filter(|&t| t > 0)
            .unwrap_or(100);
        let page_size = auxv_value(&auxv, AT_PAGESZ)
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| parse_mem_total(&text))
            .unwrap_or(0);
        let uptime = read_uptime_seconds().unwrap_or(0.0);
        let now = chrono::Utc::now();
        let boot_time =
            now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6 - uptime;
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("booted-{}", boot_time.round() as i64));
        let own = std::fs::read("/proc/self/status")
            .ok()
            .and_then(|b| parse_status(&b))
            .unwrap_or_default();
        System {
            boot_id,
            clock_ticks,
            page_size,
            mem_total,
            boot_time,
            own,
        }
    }
}

const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// A value of the process's auxiliary vector (pairs of native-endian
/// words), which carries `USER_HZ` and the page size without a libc call.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let word = |bytes: &[u8]| -> Option<u64> {
            let mut buf = [0u8; WORD];
            buf.copy_from_slice(bytes.get(..WORD)?);
            Some(usize::from_ne_bytes(buf) as u64)
        };
        (word(&pair[..WORD])? == key).then(|| word(&pair[WORD..]))?
    })
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn read_uptime_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// What the process source reads, one call per file. Every method answers
/// `None` when the process (or the file) is gone or unreadable.
pub trait ProcReader: Send {
    /// Lists the pids of every process (not thread) into `out`.
    ///
    /// # Errors
    /// When `/proc` itself cannot be listed.
    fn pids(&mut self, out: &mut Vec<u32>) -> io::Result<()>;
    /// Seconds since boot (`/proc/uptime`).
    fn uptime(&mut self) -> Option<f64>;
    /// `/proc/<pid>/stat`.
    fn stat(&mut self, pid: u32) -> Option<Stat>;
    /// `/proc/<pid>/cmdline`, arguments separated by NUL, at most
    /// [`CMDLINE_READ_MAX`] bytes. Empty for a zombie.
    fn cmdline(&mut self, pid: u32) -> Option<Vec<u8>>;
    /// Where `/proc/<pid>/exe` points (not readable for another user's
    /// process without privileges).
    fn exe(&mut self, pid: u32) -> Option<String>;
    /// The credentials in `/proc/<pid>/status`.
    fn creds(&mut self, pid: u32) -> Option<Creds>;
    /// The container `/proc/<pid>/cgroup` names, if any.
    fn container(&mut self, pid: u32) -> Option<Container>;
    /// The name of a user, `None` when the uid has none.
    fn user_name(&mut self, uid: u32) -> Option<String>;
}

/// The real `/proc`.
pub struct ProcFs {
    root: PathBuf,
    /// Reused for every file read.
    buf: Vec<u8>,
    /// Reused for every path.
    path: String,
    users: Users,
}

impl ProcFs {
    /// Reads `/proc`, and user names from `/etc/passwd`.
    pub fn new() -> Self {
        ProcFs {
            root: PathBuf::from("/proc"),
            buf: Vec::with_capacity(4096),
            path: String::with_capacity(64),
            users: Users::new(PathBuf::from("/etc/passwd")),
        }
    }

    fn set_path(&mut self, pid: u32, file: &str) -> &str {
        self.path.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "{}/{pid}/{file}", self.root.display());
        &self.path
    }

    /// Reads a file into the shared buffer, up to `max` bytes.
    fn read(&mut self, pid: u32, file: &str, max: usize) -> Option<&[u8]> {
        self.set_path(pid, file);
        let file = File::open(&self.path).ok()?;
        self.buf.clear();
        file.take(max as u64).read_to_end(&mut self.buf).ok()?;
        Some(&self.buf)
    }
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new()
    }
}

impl ProcReader for ProcFs {
    fn pids(&mut self, out: &mut Vec<u32>) -> io::Result<()> {
        out.clear();
        for entry in std::fs::read_dir(&self.root)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.bytes().all(|b| b.is_ascii_digit())
                && let Ok(pid) = name.parse()
            {
                out.push(pid);
            }
        }
        Ok(())
    }

    fn uptime(&mut self) -> Option<f64> {
        self.path.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "{}/uptime", self.root.display());
        let mut file = File::open(&self.path).ok()?;
        self.buf.clear();
        file.read_to_end(&mut self.buf).ok()?;
        let text = std::str::from_utf8(&self.buf).ok()?;
        text.split_ascii_whitespace().next()?.parse().ok()
    }

    fn stat(&mut self, pid: u32) -> Option<Stat> {
        parse_stat(self.read(pid, "stat", 4096)?)
    }

    fn cmdline(&mut self, pid: u32) -> Option<Vec<u8>> {
        self.read(pid, "cmdline", CMDLINE_READ_MAX)
            .map(<[u8]>::to_vec)
    }

    fn exe(&mut self, pid: u32) -> Option<String> {
        self.set_path(pid, "exe");
        let target = std::fs::read_link(&self.path).ok()?;
        Some(target.to_string_lossy().into_owned())
    }

    fn creds(&mut self, pid: u32) -> Option<Creds> {
        parse_status(self.read(pid, "status", 16 * 1024)?)
    }

    fn container(&mut self, pid: u32) -> Option<Container> {
        parse_cgroup(self.read(pid, "cgroup", 16 * 1024)?)
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users.name(uid)
    }
}

/// User names by uid, from a passwd file read when a uid is not in it
/// (at most once a minute). Users known only through NSS (LDAP, ...) are
/// shown by uid.
struct Users {
    path: PathBuf,
    names: HashMap<u32, String>,
    read_at: Option<Instant>,
}

impl Users {
    fn new(path: PathBuf) -> Self {
        Users {
            path,
            names: HashMap::new(),
            read_at: None,
        }
    }

    fn name(&mut self, uid: u32) -> Option<String> {
        if let Some(name) = self.names.get(&uid) {
            return Some(name.clone());
        }
        if self.read_at.is_none_or(|at| at.elapsed() >= PASSWD_RETRY) {
            self.read_at = Some(Instant::now());
            if let Ok(text) = std::fs::read_to_string(&self.path) {
                self.names = parse_passwd(&text);
            }
        }
        self.names.get(&uid).cloned()
    }
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>()
            && !name.is_empty()
        {
            // The first entry of a uid wins, as getpwuid does.
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

/// What a wait status (stat's `exit_code`) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It returned or called exit with this code.
    Exited(i32),
    /// A signal ended it; `core_dumped` when it left a core.
    Signaled {
        /// The signal's number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Decodes a wait status as `waitpid` returns it.
    pub fn from_wait_status(status: i32) -> Option<ExitStatus> {
        let low = status & 0x7f;
        if low == 0 {
            Some(ExitStatus::Exited((status >> 8) & 0xff))
        } else if low != 0x7f {
            Some(ExitStatus::Signaled {
                signal: low,
                core_dumped: status & 0x80 != 0,
            })
        } else {
            // Stopped, not ended: not an exit status.
            None
        }
    }
}

/// The usual name of a Linux signal number, e.g. `SIGKILL` for 9.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_name_holding_spaces_and_parens() {
        let text = b"4242 (my (odd) name) Z 17 4242 17 0 -1 4194560 99 0 0 0 150 50 0 0 20 0 1 0 912732 3133440 378 18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 1 1 1 1 1 1 1 2304\n";
        let stat = parse_stat(text).expect("parsed");
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!(stat.state, b'Z');
        assert!(stat.is_zombie());
        assert_eq!(stat.ppid, 17);
        assert!(!stat.kernel_thread);
        assert_eq!(stat.cpu_ticks, 200);
        assert_eq!(stat.start_ticks, 912_732);
        assert_eq!(stat.rss_pages, 378);
        assert_eq!(stat.exit_code, Some(2304));
        assert_eq!(
            ExitStatus::from_wait_status(2304),
            Some(ExitStatus::Exited(9))
        );
    }

    #[test]
    fn parses_this_process_stat_and_status() {
        let text = std::fs::read("/proc/self/stat").expect("readable");
        let stat = parse_stat(&text).expect("parsed");
        assert!(!stat.is_zombie());
        assert!(stat.start_ticks > 0);
        let creds =
            parse_status(&std::fs::read("/proc/self/status").expect("readable")).expect("parsed");
        assert!(creds.may_read_exit_code_of(&creds), "one's own processes");
    }

    #[test]
    fn old_kernels_without_exit_code_and_kernel_threads() {
        let kthread = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0 18446744073709551615";
        let stat = parse_stat(kthread).expect("parsed");
        assert!(stat.kernel_thread);
        assert_eq!(stat.exit_code, None);
        assert!(parse_stat(b"12 (cut").is_none());
        assert!(parse_stat(b"").is_none());
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(
            ExitStatus::from_wait_status(3 << 8),
            Some(ExitStatus::Exited(3))
        );
        assert_eq!(
            ExitStatus::from_wait_status(9),
            Some(ExitStatus::Signaled {
                signal: 9,
                core_dumped: false
            })
        );
        assert_eq!(
            ExitStatus::from_wait_status(11 | 0x80),
            Some(ExitStatus::Signaled {
                signal: 11,
                core_dumped: true
            })
        );
        assert_eq!(ExitStatus::from_wait_status(0x137f), None, "stopped");
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(64), None);
    }

    #[test]
    fn exit_codes_of_other_users_need_ptrace_rights() {
        let me = Creds {
            uid: [1000; 4],
            gid: [1000; 4],
            cap_eff: 0,
        };
        let other = Creds {
            uid: [33; 4],
            gid: [33; 4],
            cap_eff: 0,
        };
        let setuid = Creds {
            uid: [1000, 0, 0, 0],
            gid: [1000; 4],
            cap_eff: 0,
        };
        assert!(me.may_read_exit_code_of(&me));
        assert!(!me.may_read_exit_code_of(&other));
        assert!(!me.may_read_exit_code_of(&setuid));
        let root = Creds {
            uid: [0; 4],
            gid: [0; 4],
            cap_eff: 0x1ff_ffff_ffff,
        };
        assert!(root.may_read_exit_code_of(&other));
    }

    #[test]
    fn containers_from_cgroup_paths() {
        let id = "3f0a1b2c".repeat(8);
        let cases = [
            (
                format!("0::/system.slice/docker-{id}.scope\n"),
                Some("docker"),
                None,
            ),
            (
                format!("12:memory:/docker/{id}\n0::/docker/{id}\n"),
                Some("docker"),
                None,
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c7a1d2e_1111_2222_3333_444455556666.slice/cri-containerd-{id}.scope\n"
                ),
                Some("containerd"),
                Some("0c7a1d2e-1111-2222-3333-444455556666"),
            ),
            (
                format!("0::/kubepods/besteffort/pod0c7a1d2e-1111-2222-3333-444455556666/{id}\n"),
                None,
                Some("0c7a1d2e-1111-2222-3333-444455556666"),
            ),
            (
                format!("0::/machine.slice/libpod-{id}.scope/container\n"),
                Some("podman"),
                None,
            ),
            (
                format!("0::/system.slice/crio-{id}.scope\n"),
                Some("crio"),
                None,
            ),
        ];
        for (text, runtime, pod) in cases {
            let container = parse_cgroup(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(container.id, id, "{text}");
            assert_eq!(container.runtime, runtime, "{text}");
            assert_eq!(container.pod_uid.as_deref(), pod, "{text}");
        }
        for none in [
            "0::/\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "4:memory:/process_api/8aa89ba8530f39439de988d99b99fd9c\n",
            &format!("0::/system.slice/crio-conmon-{id}.scope\n"),
        ] {
            assert_eq!(parse_cgroup(none.as_bytes()), None, "{none}");
        }
    }

    #[test]
    fn machine_facts() {
        let system = System::read();
        assert!(system.clock_ticks > 0);
        assert!(system.page_size >= 4096);
        assert!(system.boot_time > 0.0);
        assert!(!system.boot_id.is_empty());
        assert_eq!(
            parse_mem_total("MemTotal:       16384 kB\n"),
            Some(16 << 20)
        );
    }

    #[test]
    fn user_names_from_passwd() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# junk\nwww:x:33:33::/:/bin/false\nalias:x:0:0::/:/x\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&33).map(String::as_str), Some("www"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn the_real_proc_lists_this_process() {
        let mut proc = ProcFs::new();
        let mut pids = Vec::new();
        proc.pids(&mut pids).expect("listed");
        assert!(pids.contains(&std::process::id()));
        let me = std::process::id();
        assert!(proc.stat(me).is_some());
        assert!(proc.exe(me).is_some());
        assert!(!proc.cmdline(me).unwrap_or_default().is_empty());
        assert!(proc.stat(u32::MAX).is_none(), "no such process");
        assert!(proc.uptime().is_some_and(|s| s > 0.0));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert_eq!(proc.user_name(0), parse_passwd(&passwd).remove(&0));
    }
}
