//! Writing Claude's files (and this tool's config) safely: a copy of what
//! was there beside the file first, then an atomic replace.
//!
//! - **Beside the file.** [`write_beside`] writes `FILE.<tag>.<ms>` next to
//!   `FILE` (0600 on unix: a backup may hold secrets), never over an
//!   existing one. The tags are [`Tag`]: `backup` (the content before a
//!   change), `created` (an empty marker: the change created the file),
//!   `undone` (what an undo replaced). [`newest_backup`] finds the newest
//!   `backup` or `created` one.
//! - **Atomic replace.** [`write_atomic`] writes a temporary file in the
//!   same directory and renames it over the file (through a symlink: over
//!   its target), so a reader sees the old content or the new, never half.
//!   The file keeps its permissions; a private one, or a new one, is 0600
//!   on unix.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file that could not be written, with the path.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// What a file beside another one holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// An empty marker: the change created the file.
    Created,
    /// The file's content before a change.
    Backup,
    /// What an undo replaced.
    Undone,
}

impl Tag {
    /// The tag in the file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Created => "created",
            Tag::Backup => "backup",
            Tag::Undone => "undone",
        }
    }
}

/// `path`'s directory (`.` when it has none) and file name.
fn dir_and_name(path: &Path) -> (PathBuf, String) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// Writes `bytes` to a new `FILE.<tag>.<ms>` beside `path` (0600 on unix),
/// taking the next free number if that one exists. Returns its path.
///
/// # Errors
/// [`WriteError`] naming the file that could not be written.
pub fn write_beside(path: &Path, tag: Tag, ms: u64, bytes: &[u8]) -> Result<PathBuf, WriteError> {
    let (dir, name) = dir_and_name(path);
    for bump in 0..1000 {
        let target = dir.join(format!("{name}.{}.{}", tag.as_str(), ms + bump));
        match create_private(&target) {
            Ok(mut file) => {
                return file
                    .write_all(bytes)
                    .and_then(|()| file.sync_all())
                    .map(|()| target.clone())
                    .map_err(|source| WriteError {
                        path: target,
                        source,
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(WriteError {
                    path: target,
                    source,
                });
            }
        }
    }
    Err(WriteError {
        path: path.to_owned(),
        source: std::io::Error::other("too many backups with the same time"),
    })
}

/// A new file, readable and writable by its owner only (on unix).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Replaces `path` (through a symlink: its target) with `bytes`, atomically:
/// a temporary file in the same directory renamed over it. The file keeps
/// its permissions; `private` ones, and new ones, are 0600 on unix.
///
/// # Errors
/// [`WriteError`] naming `path`; the temporary file is removed then.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), WriteError> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let permissions = std::fs::metadata(&target).ok().map(|m| m.permissions());
    #[cfg(unix)]
    let permissions = if private {
        use std::os::unix::fs::PermissionsExt;
        Some(std::fs::Permissions::from_mode(0o600))
    } else {
        permissions
    };
    #[cfg(not(unix))]
    let _ = private;
    let (dir, name) = dir_and_name(&target);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = create_private(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if let Some(permissions) = permissions {
            std::fs::set_permissions(&temporary, permissions)?;
        }
        std::fs::rename(&temporary, &target)
    });
    written.map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        WriteError {
            path: path.to_owned(),
            source,
        }
    })
}

/// The newest `FILE.backup.<ms>` or `FILE.created.<ms>` beside `path`,
/// with its tag (at the same time, a backup wins over a marker).
///
/// # Errors
/// The directory exists but cannot be listed (the error names it).
pub fn newest_backup(path: &Path) -> Result<Option<(PathBuf, Tag)>, super::files::ReadError> {
    let (dir, name) = dir_and_name(path);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(super::files::ReadError { path: dir, source }),
    };
    let mut best: Option<(u128, Tag, PathBuf)> = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix(name.as_str()) else {
            continue;
        };
        let (tag, digits) = if let Some(d) = rest.strip_prefix(".backup.") {
            (Tag::Backup, d)
        } else if let Some(d) = rest.strip_prefix(".created.") {
            (Tag::Created, d)
        } else {
            continue;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(ms) = digits.parse::<u128>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(m, t, _)| (ms, tag) > (*m, *t)) {
            best = Some((ms, tag, entry.path()));
        }
    }
    Ok(best.map(|(_, tag, path)| (path, tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backups never overwrite one another, and the newest is found.
    #[test]
    fn backups_are_numbered_and_the_newest_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f.json");
        assert_eq!(newest_backup(&file).expect("listed"), None);
        let first = write_beside(&file, Tag::Created, 5, b"").expect("marker");
        assert_eq!(first, dir.path().join("f.json.created.5"));
        let second = write_beside(&file, Tag::Backup, 5, b"old").expect("backup");
        assert_eq!(second, dir.path().join("f.json.backup.5"));
        let third = write_beside(&file, Tag::Backup, 5, b"older").expect("backup");
        assert_eq!(third, dir.path().join("f.json.backup.6"));
        write_beside(&file, Tag::Undone, 9, b"x").expect("undone");
        assert_eq!(
            newest_backup(&file).expect("listed"),
            Some((third, Tag::Backup))
        );
    }

    /// The write replaces the file and keeps its mode; a private one is
    /// 0600; no temporary file is left.
    #[cfg(unix)]
    #[test]
    fn the_replace_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        let file = dir.path().join("f.json");
        std::fs::write(&file, "old").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomic(&file, b"new", false).expect("written");
        assert_eq!(std::fs::read(&file).expect("read"), b"new");
        assert_eq!(mode(&file), 0o640);
        write_atomic(&file, b"newer", true).expect("written");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
