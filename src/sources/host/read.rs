//! Reading the host: what the kernel says about CPU time, memory, load,
//! mounts, network interfaces and the boot, behind the [`HostReader`]
//! trait so that the transition logic can be tested with made-up readings.
//!
//! [`ProcReader`] is the real one: small reads of `/proc` and `/sys` into
//! reused buffers, `statvfs` per watched mount, and `getifaddrs` (one
//! netlink round trip) for the interfaces. It does not interpret what it
//! reads (no percentages, no thresholds), and it does not report failures:
//! every method returns an error that the caller reports once. Files under
//! `/proc` and `/sys` may be missing or unreadable (containers hide
//! things); each part fails on its own and the rest keeps working.
//!
//! A `statvfs` on a network file system whose server is gone can block for
//! as long as the server stays away. The real reader therefore runs
//! `statvfs` on a helper thread of its own and gives up waiting after
//! [`USAGE_TIMEOUT`]; until that call returns, further usage reads fail at
//! once, and everything else goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

/// How long one `statvfs` may take before its mount counts as unresponsive.
pub const USAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Cumulative CPU time of all cores, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every state together.
    pub total: u64,
    /// Idle and waiting for I/O.
    pub idle: u64,
}

/// The first lines of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// All cores' CPU time.
    pub cpu: CpuTimes,
    /// How many CPUs are online.
    pub cores: u32,
}

/// Memory and swap, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable` (what can be had without swapping).
    pub available: u64,
    /// `SwapTotal`; 0 without swap.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

/// The load averages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Over 1 minute.
    pub one: f64,
    /// Over 5 minutes.
    pub five: f64,
    /// Over 15 minutes.
    pub fifteen: f64,
}

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: String,
    /// What is mounted (`/dev/sda1`, `server:/export`).
    pub device: String,
    /// `major:minor` of the file system, the same for every place it is
    /// mounted.
    pub device_id: String,
    /// The directory of the file system that is mounted here (`/` unless
    /// it is a bind mount of a part).
    pub root: String,
    /// The file system type.
    pub fs_type: String,
}

/// Space and inodes of a mounted file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Size in bytes.
    pub total_bytes: u64,
    /// Free bytes, including those reserved for root.
    pub free_bytes: u64,
    /// Bytes an unprivileged user can still write.
    pub available_bytes: u64,
    /// Inodes in all; 0 when the file system does not count them.
    pub inodes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

impl Usage {
    /// Used space in % the way `df` counts it: reserved blocks count as
    /// neither used nor available. `None` for an empty file system.
    pub fn used_percent(&self) -> Option<f64> {
        let used = self.total_bytes.saturating_sub(self.free_bytes);
        let base = used + self.available_bytes;
        (base > 0).then(|| used as f64 * 100.0 / base as f64)
    }

    /// Used inodes in %; `None` when the file system has no inode count
    /// (btrfs, some network file systems).
    pub fn inodes_used_percent(&self) -> Option<f64> {
        (self.inodes_total > 0).then(|| {
            self.inodes_total.saturating_sub(self.inodes_free) as f64 * 100.0
                / self.inodes_total as f64
        })
    }
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceReading {
    /// Its name (`eth0`).
    pub name: String,
    /// `/sys/class/net/<name>/operstate` (`up`, `down`, `unknown`,
    /// `dormant`, ...), or `unknown` when it cannot be read.
    pub operstate: String,
    /// Whether it carries traffic: operstate `up`, or, where the driver
    /// reports `unknown`, administratively up with a carrier.
    pub up: bool,
    /// Its hardware address, when it has one.
    pub mac: Option<String>,
    /// Its addresses as `address/prefix`.
    pub addresses: BTreeSet<String>,
}

/// What identifies this boot.
#[derive(Clone, Debug, PartialEq)]
pub struct BootInfo {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// When the host booted (Unix seconds, `btime` of `/proc/stat`).
    pub boot_time: Option<i64>,
    /// Seconds since boot (`/proc/uptime`).
    pub uptime_seconds: Option<f64>,
}

/// The host as the kernel shows it. Every method may fail on its own
/// (a file hidden in a container); the caller reports and carries on.
pub trait HostReader: Send + 'static {
    /// This boot's identity.
    ///
    /// # Errors
    /// When the boot id cannot be read.
    fn boot(&mut self) -> io::Result<BootInfo>;
    /// CPU time and cores.
    ///
    /// # Errors
    /// When `/proc/stat` cannot be read or parsed.
    fn stat(&mut self) -> io::Result<Stat>;
    /// Memory and swap.
    ///
    /// # Errors
    /// When `/proc/meminfo` cannot be read or parsed.
    fn memory(&mut self) -> io::Result<Memory>;
    /// Load averages.
    ///
    /// # Errors
    /// When `/proc/loadavg` cannot be read or parsed.
    fn load(&mut self) -> io::Result<Load>;
    /// The mount table. The same `Arc` comes back while it is unchanged.
    ///
    /// # Errors
    /// When the mount table cannot be read.
    fn mounts(&mut self) -> io::Result<Arc<[MountEntry]>>;
    /// Usage of the file system mounted at `mount_point`.
    ///
    /// # Errors
    /// When it cannot be asked (gone, no permission, not answering).
    fn usage(&mut self, mount_point: &str) -> io::Result<Usage>;
    /// Every network interface.
    ///
    /// # Errors
    /// When the interfaces cannot be listed.
    fn interfaces(&mut self) -> io::Result<Vec<InterfaceReading>>;
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads the host from `/proc`, `/sys`, `statvfs` and `getifaddrs`.
pub struct ProcReader {
    /// Reused for every file read.
    buf: String,
    /// The mount table text last parsed, so an unchanged table is not
    /// parsed again.
    mountinfo_text: String,
    /// What it parsed to.
    mount_table: Arc<[MountEntry]>,
    /// The `statvfs` helper thread.
    stat_worker: StatWorker,
}

impl Default for ProcReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcReader {
    /// A reader of this host.
    pub fn new() -> Self {
        ProcReader {
            buf: String::with_capacity(4096),
            mountinfo_text: String::new(),
            mount_table: Arc::from(Vec::new()),
            stat_worker: StatWorker::start(statvfs, USAGE_TIMEOUT),
        }
    }

    fn read(&mut self, path: &str) -> io::Result<&str> {
        self.buf.clear();
        File::open(path)?.read_to_string(&mut self.buf)?;
        Ok(&self.buf)
    }
}

impl HostReader for ProcReader {
    fn boot(&mut self) -> io::Result<BootInfo> {
        let boot_id = self
            .read("/proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned();
        if boot_id.is_empty() {
            return Err(invalid("the boot id is empty"));
        }
        let boot_time = self.read("/proc/stat").ok().and_then(parse_btime);
        let uptime_seconds = self.read("/proc/uptime").ok().and_then(|text| {
            text.split_ascii_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
        });
        Ok(BootInfo {
            boot_id,
            boot_time,
            uptime_seconds,
        })
    }

    fn stat(&mut self) -> io::Result<Stat> {
        let text = self.read("/proc/stat")?;
        parse_stat(text).ok_or_else(|| invalid("no cpu line in /proc/stat"))
    }

    fn memory(&mut self) -> io::Result<Memory> {
        let text = self.read("/proc/meminfo")?;
        parse_meminfo(text).ok_or_else(|| invalid("no MemTotal in /proc/meminfo"))
    }

    fn load(&mut self) -> io::Result<Load> {
        let text = self.read("/proc/loadavg")?;
        parse_loadavg(text).ok_or_else(|| invalid("/proc/loadavg is not three numbers"))
    }

    fn mounts(&mut self) -> io::Result<Arc<[MountEntry]>> {
        self.buf.clear();
        File::open("/proc/self/mountinfo")?.read_to_string(&mut self.buf)?;
        if self.buf != self.mountinfo_text {
            std::mem::swap(&mut self.buf, &mut self.mountinfo_text);
            self.mount_table = parse_mountinfo(&self.mountinfo_text).into();
        }
        Ok(self.mount_table.clone())
    }

    fn usage(&mut self, mount_point: &str) -> io::Result<Usage> {
        self.stat_worker.usage(mount_point)
    }

    fn interfaces(&mut self) -> io::Result<Vec<InterfaceReading>> {
        use nix::net::if_::InterfaceFlags;
        let mut by_name: BTreeMap<String, (InterfaceFlags, InterfaceReading)> = BTreeMap::new();
        for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
            let (flags, reading) = by_name
                .entry(ifa.interface_name.clone())
                .or_insert_with(|| {
                    (
                        InterfaceFlags::empty(),
                        InterfaceReading {
                            name: ifa.interface_name.clone(),
                            operstate: String::new(),
                            up: false,
                            mac: None,
                            addresses: BTreeSet::new(),
                        },
                    )
                });
            *flags |= ifa.flags;
            let Some(address) = ifa.address else { continue };
            if let Some(v4) = address.as_sockaddr_in() {
                let prefix = ifa
                    .netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map_or(32, |m| m.ip().to_bits().count_ones());
                reading.addresses.insert(format!("{}/{prefix}", v4.ip()));
            } else if let Some(v6) = address.as_sockaddr_in6() {
                let prefix = ifa
                    .netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in6())
                    .map_or(128, |m| m.ip().to_bits().count_ones());
                reading.addresses.insert(format!("{}/{prefix}", v6.ip()));
            } else if let Some(link) = address.as_link_addr()
                && link.halen() == 6
                && let Some(mac) = link.addr()
                && mac != [0; 6]
            {
                reading.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
        }
        let mut out = Vec::with_capacity(by_name.len());
        for (name, (flags, mut reading)) in by_name {
            // Names come from the kernel; one with a path separator would
            // not name a file under /sys/class/net.
            let operstate = if name.contains('/') || name.starts_with('.') {
                None
            } else {
                self.read(&format!("/sys/class/net/{name}/operstate"))
                    .ok()
                    .map(|s| s.trim().to_owned())
            };
            let running = flags.contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
            reading.up = match operstate.as_deref() {
                Some("up") => true,
                Some("unknown") | Some("") | None => running,
                Some(_) => false,
            };
            reading.operstate = operstate
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_owned());
            out.push(reading);
        }
        Ok(out)
    }
}

/// `statvfs` on a thread of its own, so a mount that does not answer
/// cannot stop the source.
struct StatWorker {
    /// Requests to the thread; `None` when it could not be started (then
    /// `statvfs` runs inline).
    requests: Option<Sender<PathBuf>>,
    replies: Receiver<io::Result<Usage>>,
    /// A request whose answer did not come in time and is still owed.
    owed: Option<String>,
    /// How long to wait for an answer.
    timeout: Duration,
}

impl StatWorker {
    /// Starts the thread, which answers with `stat`.
    fn start(
        stat: impl Fn(&std::path::Path) -> io::Result<Usage> + Send + 'static,
        timeout: Duration,
    ) -> Self {
        let (request_tx, request_rx) = mpsc::channel::<PathBuf>();
        let (reply_tx, reply_rx) = mpsc::channel();
        // Detached on purpose: a thread stuck in statvfs must not hold up
        // the agent's exit. It ends when the reader (its request sender)
        // is dropped.
        let spawned = std::thread::Builder::new()
            .name("herald-statvfs".into())
            .spawn(move || {
                for path in request_rx {
                    if reply_tx.send(stat(&path)).is_err() {
                        return;
                    }
                }
            });
        StatWorker {
            requests: spawned.ok().map(|_| request_tx),
            replies: reply_rx,
            owed: None,
            timeout,
        }
    }

    fn usage(&mut self, mount_point: &str) -> io::Result<Usage> {
        let Some(requests) = &self.requests else {
            return statvfs(mount_point.as_ref());
        };
        if let Some(owed) = &self.owed {
            match self.replies.try_recv() {
                Ok(_) => self.owed = None,
                Err(TryRecvError::Empty) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("waiting for statvfs of {owed}, which has not returned"),
                    ));
                }
                Err(TryRecvError::Disconnected) => return Err(worker_gone()),
            }
        }
        requests
            .send(PathBuf::from(mount_point))
            .map_err(|_| worker_gone())?;
        match self.replies.recv_timeout(self.timeout) {
            Ok(usage) => usage,
            Err(RecvTimeoutError::Timeout) => {
                self.owed = Some(mount_point.to_owned());
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("statvfs did not return within {:?}", self.timeout),
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err(worker_gone()),
        }
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("the statvfs thread is gone")
}

// The statvfs field types are aliases whose width depends on the platform.
#[allow(clippy::unnecessary_cast)]
fn statvfs(path: &std::path::Path) -> io::Result<Usage> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let unit = match stat.fragment_size() {
        0 => stat.block_size(),
        size => size,
    } as u64;
    Ok(Usage {
        total_bytes: (stat.blocks() as u64).saturating_mul(unit),
        free_bytes: (stat.blocks_free() as u64).saturating_mul(unit),
        available_bytes: (stat.blocks_available() as u64).saturating_mul(unit),
        inodes_total: stat.files() as u64,
        inodes_free: stat.files_free() as u64,
    })
}

/// CPU time and online cores from `/proc/stat`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let mut cpu = None;
    let mut cores = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            if cpu.is_some() {
                // The cpu lines come first; nothing after them is needed.
                break;
            }
            continue;
        };
        if rest.starts_with(' ') {
            // user nice system idle iowait irq softirq steal (guest time
            // is already counted in user and nice).
            let fields: Vec<u64> = rest
                .split_ascii_whitespace()
                .take(8)
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if fields.len() < 4 {
                return None;
            }
            cpu = Some(CpuTimes {
                total: fields.iter().sum(),
                idle: fields[3] + fields.get(4).copied().unwrap_or(0),
            });
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cores += 1;
        }
    }
    Some(Stat {
        cpu: cpu?,
        cores: cores.max(1),
    })
}

/// `btime` of `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Memory and swap from `/proc/meminfo`. Kernels before 3.14 have no
/// `MemAvailable`; free + buffers + cached stands in for it.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let mut total = None;
    let mut available = None;
    let (mut free, mut buffers, mut cached) = (0, 0, 0);
    let (mut swap_total, mut swap_free) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(value) = parts.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        match key {
            "MemTotal" => total = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = bytes,
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            "SwapTotal" => swap_total = bytes,
            "SwapFree" => swap_free = bytes,
            _ => {}
        }
    }
    Some(Memory {
        total: total?,
        available: available.unwrap_or(free + buffers + cached),
        swap_total,
        swap_free,
    })
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<Load> {
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok());
    Some(Load {
        one: fields.next()??,
        five: fields.next()??,
        fifteen: fields.next()??,
    })
}

/// The mount table of `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional...] - type source super
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let device_id = left.nth(2)?;
    let root = left.next()?;
    let mount_point = left.next()?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let device = right.next().unwrap_or("");
    Some(MountEntry {
        mount_point: unescape(mount_point),
        device: unescape(device),
        device_id: device_id.to_owned(),
        root: unescape(root),
        fs_type: fs_type.to_owned(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mount table
/// fields.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(code) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 1 7 0\n\
        cpu0 50 2 25 400 10 1 1 0 3 0\n\
        cpu1 50 3 25 400 10 2 1 1 4 0\n\
        intr 12345 0 0\n\
        ctxt 999\n\
        btime 1700000000\n";

    #[test]
    fn stat_gives_cpu_time_and_cores() {
        let stat = parse_stat(STAT).expect("parsed");
        assert_eq!(stat.cores, 2);
        assert_eq!(stat.cpu.total, 100 + 5 + 50 + 800 + 20 + 3 + 2 + 1);
        assert_eq!(stat.cpu.idle, 820);
        assert_eq!(parse_btime(STAT), Some(1_700_000_000));
        assert_eq!(parse_stat("intr 1\n"), None);
        assert_eq!(parse_stat("cpu 1 2\n"), None);
    }

    #[test]
    fn meminfo_in_bytes_with_a_fallback_for_old_kernels() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\n\
                    Buffers: 10 kB\nCached: 20 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        let memory = parse_meminfo(text).expect("parsed");
        assert_eq!(memory.total, 1000 * 1024);
        assert_eq!(memory.available, 400 * 1024);
        assert_eq!(memory.swap_total, 0);
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\n";
        assert_eq!(parse_meminfo(old).expect("parsed").available, 130 * 1024);
        assert_eq!(parse_meminfo("garbage\n"), None);
    }

    #[test]
    fn loadavg() {
        let load = parse_loadavg("1.95 1.18 1.11 8/122 20446\n").expect("parsed");
        assert_eq!((load.one, load.five, load.fifteen), (1.95, 1.18, 1.11));
        assert_eq!(parse_loadavg("1.0 x"), None);
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 27 8:16 /exports /srv/my\\040data rw master:2 - xfs /dev/sdb1 rw\n\
                    broken line\n\
                    31 27 0:40 / /run rw - tmpfs tmpfs rw\n";
        let table = parse_mountinfo(text);
        assert_eq!(table.len(), 3);
        assert_eq!(
            table[1],
            MountEntry {
                mount_point: "/srv/my data".into(),
                device: "/dev/sdb1".into(),
                device_id: "8:16".into(),
                root: "/exports".into(),
                fs_type: "xfs".into(),
            }
        );
        assert_eq!(table[2].fs_type, "tmpfs");
    }

    #[test]
    fn usage_percent_counts_like_df() {
        let usage = Usage {
            total_bytes: 1000,
            free_bytes: 150,
            available_bytes: 100,
            inodes_total: 0,
            inodes_free: 0,
        };
        // used 850 of 850 + 100 available.
        let percent = usage.used_percent().expect("has space");
        assert!((percent - 89.47).abs() < 0.01, "{percent}");
        assert_eq!(usage.inodes_used_percent(), None);
    }

    #[test]
    fn a_mount_that_does_not_answer_holds_up_only_the_usage_reads() {
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let usage = Usage {
            total_bytes: 1,
            free_bytes: 1,
            available_bytes: 1,
            inodes_total: 0,
            inodes_free: 0,
        };
        let stat = move |path: &std::path::Path| {
            if path == std::path::Path::new("/stuck")
                && let Ok(released) = released.lock()
            {
                let _ = released.recv();
            }
            Ok(usage)
        };
        let mut worker = StatWorker::start(stat, Duration::from_millis(50));
        assert_eq!(worker.usage("/ok").ok(), Some(usage));
        let stuck = worker.usage("/stuck").expect_err("does not answer");
        assert_eq!(stuck.kind(), io::ErrorKind::TimedOut);
        let waiting = worker.usage("/ok").expect_err("the thread is still stuck");
        assert!(waiting.to_string().contains("/stuck"), "{waiting}");
        release.send(()).expect("released");
        let answered = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            worker.usage("/ok").is_ok()
        });
        assert!(answered, "usage reads work again once the mount answers");
    }

    #[test]
    fn the_real_reader_reads_this_host() {
        let mut reader = ProcReader::new();
        let stat = reader.stat().expect("/proc/stat");
        assert!(stat.cores >= 1 && stat.cpu.total > 0);
        let memory = reader.memory().expect("/proc/meminfo");
        assert!(memory.total > 0 && memory.available <= memory.total);
        reader.load().expect("/proc/loadavg");
        let table = reader.mounts().expect("mountinfo");
        assert!(table.iter().any(|m| m.mount_point == "/"));
        let again = reader.mounts().expect("mountinfo");
        assert!(Arc::ptr_eq(&table, &again), "an unchanged table is reused");
        let root = reader.usage("/").expect("statvfs /");
        assert!(root.total_bytes > 0);
        assert!(reader.usage("/no/such/mount").is_err());
        let interfaces = reader.interfaces().expect("getifaddrs");
        assert!(interfaces.iter().any(|i| i.name == "lo"));
        reader.boot().expect("boot id");
    }
}
