//! `[[sources.host]]`: the host source's settings, read through the config
//! framework's [`Table`] so that every mistake is reported with its
//! position, and compiled once (thresholds checked, globs parsed) so the
//! sampling loop never re-parses anything.
//!
//! It also owns which mounts and interfaces are watched ([`MountFilter`],
//! [`InterfaceFilter`]), since that is configuration turned into a
//! decision; reading them is [`super::read`]'s business.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::DeValue;

use super::read::MountEntry;
use crate::config::decode::{self, At, ConfigDuration, Decode, Decoder, Raw, Table};
use crate::sources::threshold::{self, Threshold};

const MINUTE: Duration = Duration::from_secs(60);

/// CPU busy % over all cores: high at 90 for 2 minutes, normal at 80.
pub const DEFAULT_CPU: Threshold = Threshold::new(90.0, 80.0, Duration::from_secs(120));
/// Memory used % (1 - MemAvailable/MemTotal): high at 90 for a minute.
pub const DEFAULT_MEMORY: Threshold = Threshold::new(90.0, 80.0, MINUTE);
/// Swap used %: high at 50 for a minute, normal at 25.
pub const DEFAULT_SWAP: Threshold = Threshold::new(50.0, 25.0, MINUTE);
/// The 1-minute load average per core: high at 2.0 for 5 minutes.
pub const DEFAULT_LOAD: Threshold = Threshold::new(2.0, 1.5, Duration::from_secs(300));
/// Disk space used % of a mount, as `df` counts it: high at 90 at once.
pub const DEFAULT_DISK: Threshold = Threshold::new(90.0, 85.0, Duration::ZERO);
/// Inodes used % of a mount: high at 90 at once.
pub const DEFAULT_INODES: Threshold = Threshold::new(90.0, 85.0, Duration::ZERO);

/// File system types that never hold data an operator fills: kernel
/// interfaces, memory-backed scratch space, read-only images (a snap's
/// squashfs is always 100% full). `overlay` is only kept at `/` (a
/// container's root); elsewhere it is a container runtime's per-container
/// view of a disk that is watched at its own mount.
pub const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "nfsd",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Mount points left out unless `mounts.exclude` is configured: kernel
/// trees, and the per-container mounts of container runtimes.
pub const DEFAULT_MOUNT_EXCLUDE: &[&str] = &[
    "/proc",
    "/proc/*",
    "/sys",
    "/sys/*",
    "/dev",
    "/dev/*",
    "/run/credentials/*",
    "/var/lib/docker/*",
    "/var/lib/containers/*",
    "/var/lib/kubelet/*",
];

/// Interfaces left out unless `interfaces.exclude` is configured: the
/// loopback, and the host ends of container veth pairs (one per container,
/// coming and going with them).
pub const DEFAULT_INTERFACE_EXCLUDE: &[&str] = &["lo", "veth*"];

/// `[[sources.host]]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    /// Unique among sources; part of every event id and the name of the
    /// known-state file.
    pub name: String,
    /// Time between two samples of the host.
    pub interval: Duration,
    /// CPU busy %, or `None` when turned off.
    pub cpu: Option<Threshold>,
    /// Memory used %, or off.
    pub memory: Option<Threshold>,
    /// Swap used %, or off.
    pub swap: Option<Threshold>,
    /// 1-minute load average per core, or off.
    pub load: Option<Threshold>,
    /// Disk space used % per mount, or off.
    pub disk: Option<Threshold>,
    /// Inodes used % per mount, or off.
    pub inodes: Option<Threshold>,
    /// Which mounts are watched.
    pub mounts: MountFilter,
    /// Which interfaces are watched; `None` when interfaces are off.
    pub interfaces: Option<InterfaceFilter>,
    /// Whether `host.booted` is announced.
    pub boot: bool,
}

impl HostConfig {
    /// A config with every default; tests start from it.
    pub fn new(name: &str) -> Self {
        HostConfig {
            name: name.to_owned(),
            interval: Duration::from_secs(1),
            cpu: Some(DEFAULT_CPU),
            memory: Some(DEFAULT_MEMORY),
            swap: Some(DEFAULT_SWAP),
            load: Some(DEFAULT_LOAD),
            disk: Some(DEFAULT_DISK),
            inodes: Some(DEFAULT_INODES),
            mounts: MountFilter::default(),
            interfaces: Some(InterfaceFilter::default()),
            boot: true,
        }
    }

    /// Whether mounts are read at all.
    pub fn watches_mounts(&self) -> bool {
        self.disk.is_some() || self.inodes.is_some()
    }
}

/// Which mounts are watched: `include`/`exclude` globs over mount points,
/// and the file system types.
#[derive(Clone, Debug, PartialEq)]
pub struct MountFilter {
    /// A mount point must match one of these (empty: any).
    pub include: Vec<glob::Pattern>,
    /// A mount point matching one of these is left out.
    pub exclude: Vec<glob::Pattern>,
    /// Only these file system types; `None`: every type but
    /// [`PSEUDO_FS_TYPES`] (and `overlay` away from `/`).
    pub fs_types: Option<Vec<String>>,
}

impl Default for MountFilter {
    fn default() -> Self {
        MountFilter {
            include: Vec::new(),
            exclude: patterns(DEFAULT_MOUNT_EXCLUDE),
            fs_types: None,
        }
    }
}

impl MountFilter {
    /// Whether a mount at `mount_point` of type `fs_type` is watched (before
    /// bind mounts are folded, see [`MountFilter::select`]).
    pub fn selects(&self, mount_point: &str, fs_type: &str) -> bool {
        let type_ok = match &self.fs_types {
            Some(types) => types.iter().any(|t| t == fs_type),
            None => {
                !PSEUDO_FS_TYPES.contains(&fs_type) && (fs_type != "overlay" || mount_point == "/")
            }
        };
        type_ok
            && (self.include.is_empty() || self.include.iter().any(|p| p.matches(mount_point)))
            && !self.exclude.iter().any(|p| p.matches(mount_point))
    }

    /// The indexes of the watched entries of a mount table. A file system
    /// mounted at several places (bind mounts, a container's volumes) is
    /// watched once, since every place shows the same usage: at the mount
    /// of its root if there is one, else at the shortest mount point. A
    /// mount point mounted over is watched as its last (visible) mount.
    pub fn select(&self, table: &[MountEntry]) -> Vec<usize> {
        // The last mount at a mount point is the one in effect.
        let mut at_point: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, entry) in table.iter().enumerate() {
            at_point.insert(&entry.mount_point, i);
        }
        let mut by_device: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in at_point.values() {
            let entry = &table[i];
            if !self.selects(&entry.mount_point, &entry.fs_type) {
                continue;
            }
            let better = |old: &MountEntry| {
                (
                    entry.root != "/",
                    entry.mount_point.len(),
                    &entry.mount_point,
                ) < (old.root != "/", old.mount_point.len(), &old.mount_point)
            };
            match by_device.get(entry.device_id.as_str()) {
                Some(&old) if !better(&table[old]) => {}
                _ => {
                    by_device.insert(&entry.device_id, i);
                }
            }
        }
        let mut chosen: Vec<usize> = by_device.into_values().collect();
        chosen.sort_unstable();
        chosen
    }
}

/// Which network interfaces are watched: `include`/`exclude` globs over
/// interface names.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceFilter {
    /// A name must match one of these (empty: any).
    pub include: Vec<glob::Pattern>,
    /// A name matching one of these is left out.
    pub exclude: Vec<glob::Pattern>,
}

impl Default for InterfaceFilter {
    fn default() -> Self {
        InterfaceFilter {
            include: Vec::new(),
            exclude: patterns(DEFAULT_INTERFACE_EXCLUDE),
        }
    }
}

impl InterfaceFilter {
    /// Whether the interface `name` is watched.
    pub fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

fn patterns(globs: &[&str]) -> Vec<glob::Pattern> {
    globs
        .iter()
        .filter_map(|g| glob::Pattern::new(g).ok())
        .collect()
}

/// A glob; `absolute` ones must start with `/` (mount points).
struct Glob<const ABSOLUTE: bool>(glob::Pattern);

impl<const ABSOLUTE: bool> Decode for Glob<ABSOLUTE> {
    const EXPECTED: &'static str = "a glob like \"/data/*\" or \"eth*\"";
    fn decode(dec: &Decoder<'_>, raw: Raw<'_, '_>) -> Option<Self> {
        let text = decode::decode_str(dec, raw, Self::EXPECTED)?;
        if ABSOLUTE && !text.starts_with('/') {
            decode::value_mistake(
                dec,
                raw,
                format!("{text:?} is not a mount point"),
                Some("mount points are absolute: write \"/data\" or \"/mnt/*\"".into()),
            );
            return None;
        }
        match glob::Pattern::new(&text) {
            Ok(pattern) => Some(Glob(pattern)),
            Err(e) => {
                decode::value_mistake(dec, raw, format!("invalid glob {text:?}: {}", e.msg), None);
                None
            }
        }
    }
}

/// Reads a key holding an array of values, each decoded on its own so that
/// every bad element is reported. `None` when absent or wrong.
fn array<T: Decode>(t: &Table<'_, '_, '_>, key: &'static str) -> Option<Vec<T>> {
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
    decoded.into_iter().collect()
}

/// Reads a filter sub-table: `key = { include = [..], exclude = [..] }`,
/// or `false` when `allow_off`. `None` inside: turned off.
fn filter_table<'d, 'a, 'i>(
    t: &Table<'d, 'a, 'i>,
    key: &'static str,
    allow_off: bool,
) -> Option<Option<Table<'d, 'a, 'i>>> {
    let dec = t.decoder();
    let value = t.value(key)?;
    match value.get_ref() {
        DeValue::Boolean(false) if allow_off => Some(None),
        DeValue::Boolean(true) if allow_off => None,
        DeValue::Table(_) => Table::new(dec, value, format!("`{key}`")).map(Some),
        other => {
            let expected = if allow_off {
                "a table like { include = [..], exclude = [..] } or false"
            } else {
                "a table like { include = [..], exclude = [..] }"
            };
            decode::type_mistake(dec, Raw::File(value), expected, other.type_str());
            None
        }
    }
}

fn read_mounts(t: &Table<'_, '_, '_>) -> MountFilter {
    let mut filter = MountFilter::default();
    let Some(Some(sub)) = filter_table(t, "mounts", false) else {
        return filter;
    };
    if let Some(include) = array::<Glob<true>>(&sub, "include") {
        filter.include = include.into_iter().map(|g| g.0).collect();
    }
    if let Some(exclude) = array::<Glob<true>>(&sub, "exclude") {
        filter.exclude = exclude.into_iter().map(|g| g.0).collect();
    }
    filter.fs_types = array::<String>(&sub, "fs_types");
    sub.finish();
    filter
}

fn read_interfaces(t: &Table<'_, '_, '_>) -> Option<InterfaceFilter> {
    let mut filter = InterfaceFilter::default();
    let sub = match filter_table(t, "interfaces", true) {
        None => return Some(filter),
        Some(None) => return None,
        Some(Some(sub)) => sub,
    };
    if let Some(include) = array::<Glob<false>>(&sub, "include") {
        filter.include = include.into_iter().map(|g| g.0).collect();
    }
    if let Some(exclude) = array::<Glob<false>>(&sub, "exclude") {
        filter.exclude = exclude.into_iter().map(|g| g.0).collect();
    }
    sub.finish();
    Some(filter)
}

/// Reads a threshold and, for a percentage, checks that `high` is one.
fn percent(t: &Table<'_, '_, '_>, key: &'static str, default: Threshold) -> Option<Threshold> {
    let threshold = threshold::read(t, key, Some(default))?;
    check_high(
        t,
        key,
        threshold,
        100.0,
        "a percentage above 0 and at most 100",
    );
    Some(threshold)
}

fn check_high(
    t: &Table<'_, '_, '_>,
    key: &'static str,
    threshold: Threshold,
    max: f64,
    what: &str,
) {
    if threshold.high > 0.0 && threshold.high <= max {
        return;
    }
    let span = t.value(key).map_or_else(|| t.span(), |v| v.span());
    t.decoder().error_at(
        span,
        format!("`{key}`: high ({}) must be {what}", threshold.high),
        None,
    );
}

/// Reads one `[[sources.host]]` table whose `name` the caller already read
/// (and checked for uniqueness).
pub fn read(t: Table<'_, '_, '_>, name: Option<At<String>>) -> Option<HostConfig> {
    let dec = t.decoder();
    let interval = t.get_at::<ConfigDuration>("interval");
    if let Some(at) = &interval
        && at.value.0 < Duration::from_millis(100)
    {
        dec.error_at(
            at.span.clone().unwrap_or_else(|| t.span()),
            "interval must be at least 100ms",
            None,
        );
    }
    let cpu = percent(&t, "cpu", DEFAULT_CPU);
    let memory = percent(&t, "memory", DEFAULT_MEMORY);
    let swap = percent(&t, "swap", DEFAULT_SWAP);
    let load = threshold::read(&t, "load", Some(DEFAULT_LOAD));
    if let Some(load) = load {
        check_high(&t, "load", load, f64::MAX, "a load per core above 0");
    }
    let disk = percent(&t, "disk", DEFAULT_DISK);
    let inodes = percent(&t, "inodes", DEFAULT_INODES);
    let mounts = read_mounts(&t);
    let interfaces = read_interfaces(&t);
    let boot = t.or("boot", true);
    t.finish();
    Some(HostConfig {
        name: name?.value,
        interval: interval.map_or(Duration::from_secs(1), |at| at.value.0),
        cpu,
        memory,
        swap,
        load,
        disk,
        inodes,
        mounts,
        interfaces,
        boot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, parse};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn host(body: &str) -> Result<HostConfig, String> {
        let text = format!("[[sources.host]]\nname = \"h\"\n{body}");
        match parse("t.toml", &text, &no_env) {
            Ok(config) => match config.sources.into_iter().next() {
                Some(SourceConfig::Host(h)) => Ok(h),
                other => Err(format!("not a host source: {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    fn entry(mount_point: &str, device_id: &str, root: &str, fs_type: &str) -> MountEntry {
        MountEntry {
            mount_point: mount_point.into(),
            device: format!("/dev/{device_id}"),
            device_id: device_id.into(),
            root: root.into(),
            fs_type: fs_type.into(),
        }
    }

    #[test]
    fn defaults_watch_everything_with_documented_thresholds() {
        let config = host("").expect("valid");
        assert_eq!(config, HostConfig::new("h"));
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.load, Some(DEFAULT_LOAD));
    }

    #[test]
    fn metrics_can_be_tuned_or_turned_off() {
        let config = host(
            "interval = \"5s\"\ncpu = false\nmemory = { high = 0.1, clear = 0.05, for = \"0s\" }\n\
             load = { high = 4 }\ninterfaces = false\nboot = false\n\
             mounts = { include = [\"/data*\"], exclude = [], fs_types = [\"ext4\"] }\n",
        )
        .expect("valid");
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.cpu, None);
        assert_eq!(
            config.memory,
            Some(Threshold::new(0.1, 0.05, Duration::ZERO))
        );
        assert_eq!(
            config.load,
            Some(Threshold::new(4.0, 1.5, DEFAULT_LOAD.for_))
        );
        assert_eq!(config.interfaces, None);
        assert!(!config.boot);
        assert!(config.mounts.selects("/data2", "ext4"));
        assert!(!config.mounts.selects("/data2", "xfs"));
        assert!(!config.mounts.selects("/", "ext4"));
    }

    #[test]
    fn mistakes_have_positions() {
        let err = host("cpu = { high = 80, clear = 90 }\n").expect_err("clear above high");
        assert!(
            err.contains("t.toml:3:28: `cpu`: clear (90) must be below high (80)"),
            "{err}"
        );
        let err = host("disk = { high = 150 }\n").expect_err("not a percentage");
        assert!(
            err.contains("t.toml:3:8: `disk`: high (150) must be a percentage"),
            "{err}"
        );
        let err = host("mounts = { include = [\"data\"] }\n").expect_err("relative");
        assert!(err.contains("\"data\" is not a mount point"), "{err}");
        let err = host("interfaces = { exclude = [\"[\"] }\n").expect_err("bad glob");
        assert!(err.contains("invalid glob"), "{err}");
        let err = host("interval = \"1ms\"\nmounts = false\n").expect_err("two mistakes");
        assert!(err.contains("interval must be at least 100ms"), "{err}");
        assert!(err.contains("t.toml:4:10: expected a table"), "{err}");
        let err = host("interfacs = false\n").expect_err("typo");
        assert!(err.contains("did you mean `interfaces`?"), "{err}");
    }

    #[test]
    fn pseudo_file_systems_are_left_out_and_overlay_only_at_root() {
        let filter = MountFilter::default();
        assert!(filter.selects("/", "ext4"));
        assert!(filter.selects("/", "overlay"));
        assert!(filter.selects("/mnt/nfs", "nfs4"));
        assert!(!filter.selects("/var/lib/docker/overlay2/x/merged", "overlay"));
        assert!(!filter.selects("/run", "tmpfs"));
        assert!(!filter.selects("/snap/core/1", "squashfs"));
        assert!(!filter.selects("/proc", "proc"));
        assert!(!filter.selects("/dev/vdb", "ext4"), "under /dev");
        assert!(!filter.selects("/var/lib/kubelet/pods/x/volumes/y", "ext4"));
    }

    #[test]
    fn a_file_system_mounted_twice_is_watched_once() {
        let table = [
            entry("/", "254:0", "/", "ext4"),
            entry("/etc/hosts", "254:0", "/containers/1/hosts", "ext4"),
            entry("/srv/data", "8:16", "/data", "xfs"),
            entry("/data", "8:16", "/", "xfs"),
            entry("/backup", "8:32", "/sub", "xfs"),
            entry("/backup/x", "8:32", "/sub/x", "xfs"),
            entry("/proc", "0:21", "/", "proc"),
        ];
        let chosen: Vec<&str> = MountFilter::default()
            .select(&table)
            .into_iter()
            .map(|i| table[i].mount_point.as_str())
            .collect();
        assert_eq!(chosen, ["/", "/data", "/backup"]);
    }

    #[test]
    fn the_last_mount_at_a_point_is_the_one_in_effect() {
        let table = [
            entry("/mnt", "8:1", "/", "ext4"),
            entry("/mnt", "0:40", "/", "tmpfs"),
        ];
        assert!(MountFilter::default().select(&table).is_empty());
    }

    #[test]
    fn interfaces_exclude_loopback_and_veth_by_default() {
        let filter = InterfaceFilter::default();
        assert!(filter.selects("eth0"));
        assert!(!filter.selects("lo"));
        assert!(!filter.selects("veth1a2b"));
        let config =
            host("interfaces = { include = [\"eth*\", \"lo\"], exclude = [] }\n").expect("valid");
        let filter = config.interfaces.expect("on");
        assert!(filter.selects("lo"));
        assert!(!filter.selects("wlan0"));
    }
}
