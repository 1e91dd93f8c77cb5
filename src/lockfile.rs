//! `NAME.lock`: which process serves a daemon, on which port.
//!
//! The JSON keeps the original's fields (`pid`, `port`, `startedAt`,
//! `transport`), pretty-printed, so tools written for the original still read
//! it. This module only reads it; writing (under an exclusive lock) belongs to
//! the manager. Its contents are an API boundary.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::TransportKind;

/// The contents of a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonLock {
    pub pid: u32,
    pub port: u16,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    pub transport: TransportKind,
}

/// Reads a lock file; `None` if there is none or it cannot be understood
/// (a lock is only ever a hint, checked before it is trusted).
pub fn read(path: &Path) -> Option<DaemonLock> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(lock) => Some(lock),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable lock file");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
