//! What the process benchmarks share: the discarding HTTP endpoint herald
//! posts to, and reading a process's CPU time and memory from /proc.
//! Included by each bench with `mod common;`; not every bench uses all.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An HTTP/1.1 endpoint that reads each request body, answers 204 and then
/// counts a marker in it (one per event or per line): the cheapest server
/// herald could post to.
pub struct Endpoint {
    /// Where it listens, on loopback.
    pub addr: SocketAddr,
    seen: Arc<AtomicU64>,
}

impl Endpoint {
    /// Starts serving on 127.0.0.1:0, counting `marker` in every body.
    pub fn start(marker: &'static [u8]) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, marker, &counter));
            }
        });
        Endpoint { addr, seen }
    }

    /// How many markers the bodies received so far held.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

fn serve(stream: TcpStream, marker: &[u8], seen: &AtomicU64) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut head = String::new();
    let mut body = Vec::new();
    let finder = memchr::memmem::Finder::new(marker);
    loop {
        let mut length = 0usize;
        let mut chunked = false;
        head.clear();
        loop {
            let before = head.len();
            match reader.read_line(&mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = head[before..].trim_end().to_ascii_lowercase();
            if line.is_empty() && before > 0 {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line.starts_with("transfer-encoding:") && line.contains("chunked") {
                chunked = true;
            }
            if line.starts_with("expect:") && line.contains("100-continue") {
                let _ = out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
        }
        body.clear();
        if chunked {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let start = body.len();
                body.resize(start + n + 2, 0);
                if reader.read_exact(&mut body[start..]).is_err() {
                    return;
                }
                body.truncate(start + n);
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        // Answer first, as an endpoint that reads and discards does; the
        // count is only for the bench to see when everything arrived.
        if out
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        let n = finder.find_iter(&body).count() as u64;
        seen.fetch_add(n, Ordering::Relaxed);
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime, in clock ticks, from the text of a stat file.
pub fn stat_ticks(stat: &str) -> f64 {
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> f64 {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// utime + stime of each thread of a process, in clock ticks, summed by
/// thread name (the file source is `herald-file-<name>`, the queue writer
/// `herald-queue-wr…`, the async workers `tokio-runtime-w`).
pub fn cpu_ticks_by_thread(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        *by_name.entry(name.trim().to_owned()).or_default() += stat_ticks(&stat);
    }
    by_name.into_iter().collect()
}

/// (VmHWM, VmRSS) of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
