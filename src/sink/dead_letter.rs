//! Dead letters: events the endpoint rejected for what they are (a 422, or
//! another 4xx that a retry did not cure), kept under
//! `<data_dir>/dead-letter/` as JSON lines with the status, the reason and
//! the time, so nothing is silently lost and a user can resend them after
//! fixing the cause (`herald dead-letter retry`).
//!
//! A line is `{"time":…,"status":422,"reason":…,"seq":…,"event":{…}}`, the
//! event being the exact bytes that were sent. Lines are fdatasynced before
//! the sink acknowledges the events they hold. The files are bounded:
//! `dead-letter.jsonl` is rotated to `dead-letter.1.jsonl` (and so on) when
//! it passes a quarter of the limit, and the oldest file is removed, so at
//! most about `max_bytes` is kept.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::{Value, json};

use crate::event::format_timestamp;

/// Files kept: the current one and this many rotated ones.
const ROTATED: usize = 3;
const CURRENT: &str = "dead-letter.jsonl";

/// One rejected event.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The HTTP status that rejected it, when there was one.
    pub status: Option<u16>,
    /// Why, as the endpoint (or herald) said it.
    pub reason: String,
    /// Its queue seq.
    pub seq: u64,
    /// The event's JSON, as sent.
    pub event: &'a [u8],
}

/// The dead-letter files of one data_dir.
#[derive(Debug)]
pub struct DeadLetters {
    dir: PathBuf,
    /// Size at which the current file is rotated.
    rotate_at: u64,
}

impl DeadLetters {
    /// Dead letters in `dir`, keeping about `max_bytes` in all.
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        DeadLetters {
            dir: dir.to_owned(),
            rotate_at: (max_bytes / (ROTATED as u64 + 1)).max(4096),
        }
    }

    /// Appends the entries and syncs them to disk.
    ///
    /// # Errors
    /// When the file cannot be written or synced; the caller must not ack
    /// the events then.
    pub fn write(&self, entries: &[DeadLetter<'_>]) -> io::Result<()> {
        let mut text = Vec::new();
        let time = format_timestamp(&Utc::now());
        for entry in entries {
            let head = json!({
                "time": time,
                "status": entry.status,
                "reason": entry.reason,
                "seq": entry.seq,
            });
            let head = serde_json::to_vec(&head).map_err(io::Error::other)?;
            // `{"reason":…,"seq":…,"status":…,"time":…` + `,"event":` + event + `}`
            text.extend_from_slice(&head[..head.len() - 1]);
            text.extend_from_slice(b",\"event\":");
            text.extend_from_slice(entry.event);
            text.extend_from_slice(b"}\n");
        }
        let path = self.dir.join(CURRENT);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(&text)?;
        file.sync_data()?;
        if file.metadata()?.len() >= self.rotate_at {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&self) -> io::Result<()> {
        let oldest = self.dir.join(rotated_name(ROTATED));
        match std::fs::remove_file(&oldest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..ROTATED).rev() {
            let from = self.dir.join(rotated_name(n));
            if from.exists() {
                std::fs::rename(&from, self.dir.join(rotated_name(n + 1)))?;
            }
        }
        std::fs::rename(self.dir.join(CURRENT), self.dir.join(rotated_name(1)))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Every dead letter kept, oldest first, as parsed JSON lines. A line
    /// that does not parse (a torn write) is returned as an error entry.
    ///
    /// # Errors
    /// When a file cannot be read.
    pub fn read_all(&self) -> io::Result<Vec<Result<Value, String>>> {
        let mut out = Vec::new();
        for path in self.files() {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in io::BufReader::new(file).split(b'\n') {
                let line = line?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(
                    serde_json::from_slice(&line)
                        .map_err(|e| format!("{}: unreadable line ({e})", path.display())),
                );
            }
        }
        Ok(out)
    }

    /// The files, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=ROTATED)
            .rev()
            .map(|n| self.dir.join(rotated_name(n)))
            .collect();
        files.push(self.dir.join(CURRENT));
        files.retain(|p| p.exists());
        files
    }

    /// Removes every dead-letter file (after they were re-queued).
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn clear(&self) -> io::Result<()> {
        for path in self.files() {
            std::fs::remove_file(path)?;
        }
        File::open(&self.dir)?.sync_all()
    }
}

fn rotated_name(n: usize) -> String {
    format!("dead-letter.{n}.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_hold_the_event_as_sent_and_rotation_bounds_the_total() {
        let dir = tempfile::tempdir().expect("temp dir");
        let letters = DeadLetters::new(dir.path(), 4 * 4096);
        let event = br#"{"event":"x","id":"1"}"#;
        letters
            .write(&[DeadLetter {
                status: Some(422),
                reason: "resource: Field required".into(),
                seq: 7,
                event,
            }])
            .expect("written");
        let all = letters.read_all().expect("read");
        let first = all[0].as_ref().expect("parses");
        assert_eq!(first["status"], 422);
        assert_eq!(first["seq"], 7);
        assert_eq!(first["event"]["event"], "x");
        assert!(
            first["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Field required"))
        );

        let big = vec![b'x'; 3000];
        let event = [b"\"".as_slice(), &big, b"\""].concat();
        for seq in 0..40 {
            letters
                .write(&[DeadLetter {
                    status: None,
                    reason: "r".into(),
                    seq,
                    event: &event,
                }])
                .expect("written");
        }
        let total: u64 = letters
            .files()
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 5 * 4096 + 4096, "bounded: {total}");
        let kept = letters.read_all().expect("read");
        assert!(kept.iter().all(Result::is_ok));
        let last = kept.last().expect("some").as_ref().expect("ok");
        assert_eq!(last["seq"], 39, "the newest is kept, oldest first");
        letters.clear().expect("cleared");
        assert!(letters.read_all().expect("read").is_empty());
    }
}
