//! Applying an import: every file checked unchanged since it was read,
//! each backed up (or marked as created), then each replaced atomically,
//! `config.json` first.

use std::path::PathBuf;

use super::ImportError;
use super::report::FileChange;
use crate::claude::files::read_optional;
use crate::claude::write::{Tag, write_atomic, write_beside};

/// One file to write: its content as read (`None`: it does not exist), the
/// new content, and whether it is private (0600 on unix).
pub(super) struct Change<'a> {
    pub(super) path: PathBuf,
    pub(super) old: Option<&'a str>,
    pub(super) new: &'a str,
    pub(super) private: bool,
}

/// Checks that no file changed since it was read, backs each one up, then
/// writes them in order.
pub(super) fn write_changes(changes: &[Change<'_>]) -> Result<Vec<FileChange>, ImportError> {
    for change in changes {
        if read_optional(&change.path)?.as_deref() != change.old.map(str::as_bytes) {
            return Err(ImportError::Changed {
                path: change.path.clone(),
            });
        }
    }
    let stamp = crate::paths::now_ms();
    let mut done = Vec::new();
    for change in changes {
        if change.private {
            if let Some(dir) = change.path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ImportError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        let backup = match change.old {
            Some(old) => Some(write_beside(
                &change.path,
                Tag::Backup,
                stamp,
                old.as_bytes(),
            )?),
            None => {
                write_beside(&change.path, Tag::Created, stamp, b"")?;
                None
            }
        };
        done.push(FileChange {
            path: change.path.clone(),
            created: change.old.is_none(),
            backup,
        });
    }
    for change in changes {
        write_atomic(&change.path, change.new.as_bytes(), change.private)?;
        tracing::info!(file = %change.path.display(), "import: written");
    }
    Ok(done)
}
