//! `NAME.lock`: which process serves a daemon, on which port.
//!
//! The JSON keeps the original's fields (`pid`, `port`, `startedAt`,
//! `transport`), pretty-printed, so tools written for the original still read
//! it, and adds `processStart`: the pid's start time, so that a pid reused by
//! another program is never taken for the daemon. Written only by whoever
//! holds the daemon's start guard (see [`crate::daemon::launch`]), atomically
//! (a temporary file renamed over it). Its contents are an API boundary.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::TransportKind;

/// The contents of a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRecord {
    pub pid: u32,
    pub port: u16,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    pub transport: TransportKind,
    /// [`crate::process::start_time`] of `pid` when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl DaemonRecord {
    /// Does `pid` still name the process this record was written for: alive,
    /// and with the start time written with it? A record without one (the
    /// original's format), or naming pid 0 or 1, never does where start
    /// times can be read; elsewhere a live pid does. This proves the
    /// process, not that it is the daemon: see
    /// [`crate::daemon::identity::verdict`] before believing a record.
    pub fn is_live(&self) -> bool {
        if self.pid <= 1 || !crate::process::is_alive(self.pid) {
            return false;
        }
        if !crate::daemon::identity::CAN_TELL {
            return true;
        }
        self.process_start
            .is_some_and(|recorded| crate::process::start_time(self.pid) == Some(recorded))
    }
}

/// Reads a lock file; `None` if there is none or it cannot be understood
/// (a lock is only ever a hint, checked before it is trusted).
pub fn read(path: &Path) -> Option<DaemonRecord> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(lock) => Some(lock),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable lock file");
            None
        }
    }
}

/// Writes a lock file atomically: readers see the old or the new one.
///
/// # Errors
/// The file system's error.
pub fn write(path: &Path, lock: &DaemonRecord) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(lock).map_err(std::io::Error::other)?;
    text.push('\n');
    let temporary = path.with_extension(format!("lock.{}.tmp", std::process::id()));
    crate::paths::private_file()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&temporary)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Removes a lock file; one that is already gone is fine.
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(path = %path.display(), %error, "cannot remove a lock file"),
    }
}

/// Removes the record at `path` only if it still names `process` (the
/// same pid and start time): a record a newer starter wrote stays. Call it
/// under the daemon's start guard.
pub fn remove_if_names(path: &Path, process: &DaemonRecord) {
    if read(path)
        .is_some_and(|now| now.pid == process.pid && now.process_start == process.process_start)
    {
        remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written by a newer starter is not removed for the old one.
    #[test]
    fn only_the_record_of_the_process_named_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let old = DaemonRecord {
            pid: 10,
            port: 1,
            started_at: 1,
            transport: crate::config::TransportKind::Stdio,
            process_start: Some(5),
        };
        let newer = DaemonRecord {
            pid: 11,
            ..old.clone()
        };
        write(&path, &newer).expect("write");
        remove_if_names(&path, &old);
        assert_eq!(read(&path), Some(newer.clone()));
        remove_if_names(&path, &newer);
        assert_eq!(read(&path), None);
    }

    #[test]
    fn reads_the_originals_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memory.lock");
        std::fs::write(
            &path,
            "{\n  \"pid\": 42,\n  \"port\": 3100,\n  \"startedAt\": 1700000000000,\n  \"transport\": \"streamable-http\"\n}",
        )
        .expect("write");
        let lock = read(&path).expect("readable");
        assert_eq!((lock.pid, lock.port), (42, 3100));
        std::fs::write(&path, "garbage").expect("write");
        assert_eq!(read(&path), None);
        assert_eq!(read(&dir.path().join("none.lock")), None);
    }

    #[test]
    fn writes_what_it_reads_and_names_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let lock = DaemonRecord {
            pid: std::process::id(),
            port: 3100,
            started_at: 1,
            transport: TransportKind::Stdio,
            process_start: crate::process::start_time(std::process::id()),
        };
        write(&path, &lock).expect("write");
        assert_eq!(read(&path), Some(lock.clone()));
        assert!(lock.is_live(), "this process is alive");
        #[cfg(target_os = "linux")]
        {
            let reused = DaemonRecord {
                process_start: lock.process_start.map(|s| s + 1),
                ..lock
            };
            assert!(
                !reused.is_live(),
                "a pid with another start time is another process"
            );
        }
        remove(&path);
        remove(&path);
        assert_eq!(read(&path), None);
    }
}
