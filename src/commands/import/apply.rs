//! Applying an import: every file checked unchanged since it was read,
//! a copy of each kept under the import journal (never beside it: a
//! project directory gets nothing new), then each replaced atomically,
//! `config.json` first.

use std::path::{Path, PathBuf};

use super::ImportError;
use super::journal;
use super::report::FileChange;
use crate::claude::files::read_optional;
use crate::claude::write::write_atomic;

/// One file to write: its content as read (`None`: it does not exist), the
/// new content, and whether it is private (0600 on unix).
pub(super) struct Change<'a> {
    pub(super) path: PathBuf,
    pub(super) old: Option<&'a str>,
    pub(super) new: &'a str,
    pub(super) private: bool,
}

/// Checks that no file changed since it was read, keeps a copy of each
/// under the journal entry `id` in `home`, then writes them in order.
pub(super) fn write_changes(
    changes: &[Change<'_>],
    home: &Path,
    id: &str,
) -> Result<Vec<FileChange>, ImportError> {
    for change in changes {
        if read_optional(&change.path)?.as_deref() != change.old.map(str::as_bytes) {
            return Err(ImportError::Changed {
                path: change.path.clone(),
            });
        }
    }
    let mut done = Vec::new();
    for (n, change) in changes.iter().enumerate() {
        if let Some(dir) = change.path.parent().filter(|_| change.old.is_none()) {
            std::fs::create_dir_all(dir).map_err(|source| ImportError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        let backup = match change.old {
            Some(old) => Some(journal::keep_copy(home, id, n, &change.path, old)?),
            None => None,
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
