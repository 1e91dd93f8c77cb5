//! `mcp-manager import --undo`: puts back the files an import of a source
//! changed, byte for byte, from the newest backup beside each (and removes
//! a `config.json` the import created). What it replaces is kept as
//! `FILE.undone.<ms>`, so an undo can itself be undone by hand.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::import::report::list;
use super::import::source::plan_sources;
use super::import::{ImportError, ImportOptions};
use crate::claude::files::read_optional;
use crate::claude::write::{Tag, newest_backup, write_atomic, write_beside};

/// What [`undo`] did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoReport {
    pub dry_run: bool,
    /// The files that have a backup, restored from it.
    pub restored: Vec<Restored>,
    /// Files the import had created, removed.
    pub removed: Vec<PathBuf>,
    /// Every file looked at.
    pub looked: Vec<PathBuf>,
}

/// One file put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub path: PathBuf,
    pub backup: PathBuf,
    /// Where the content it replaced was kept (`None` when it was equal to
    /// the backup already, or in a dry run).
    pub replaced: Option<PathBuf>,
}

impl UndoReport {
    /// The files changed back (restored or removed).
    pub fn files(&self) -> Vec<PathBuf> {
        self.restored
            .iter()
            .map(|r| r.path.clone())
            .chain(self.removed.iter().cloned())
            .collect()
    }
}

/// Restores the newest backup of each file an import of `options.source`
/// changes (the source files and `config.json`), byte for byte, and removes
/// a `config.json` the import created. What it replaces is kept as
/// `FILE.undone.<ms>`. With `dry_run`, only reports.
///
/// # Errors
/// A backup or file that cannot be read or written.
pub fn undo(options: &ImportOptions) -> Result<UndoReport, ImportError> {
    let config_path = crate::paths::config_file(&options.home);
    let mut looked: Vec<PathBuf> = plan_sources(options)
        .into_iter()
        .map(|plan| plan.path)
        .collect();
    looked.push(config_path.clone());
    looked.dedup();
    // Read everything first.
    let mut work = Vec::new();
    for path in &looked {
        let Some(newest) = newest_backup(path)? else {
            continue;
        };
        let current = read_optional(path)?;
        let restore = match &newest.1 {
            Tag::Backup => Some(
                std::fs::read(&newest.0).map_err(|source| ImportError::Read {
                    path: newest.0.clone(),
                    source,
                })?,
            ),
            Tag::Created | Tag::Undone => None,
        };
        work.push((path.clone(), newest.0, current, restore));
    }
    let mut report = UndoReport {
        dry_run: options.dry_run,
        looked: looked.clone(),
        ..UndoReport::default()
    };
    let stamp = crate::paths::now_ms();
    for (path, backup, current, restore) in work {
        match restore {
            Some(bytes) => {
                let mut replaced = None;
                if current.as_deref() != Some(bytes.as_slice()) && !options.dry_run {
                    if let Some(current) = &current {
                        replaced = Some(write_beside(&path, Tag::Undone, stamp, current)?);
                    }
                    write_atomic(&path, &bytes, path == config_path)?;
                }
                report.restored.push(Restored {
                    path,
                    backup,
                    replaced,
                });
            }
            None => {
                let Some(current) = current else { continue };
                if !options.dry_run {
                    write_beside(&path, Tag::Undone, stamp, &current)?;
                    std::fs::remove_file(&path).map_err(|source| ImportError::Write {
                        path: path.clone(),
                        source,
                    })?;
                }
                report.removed.push(path);
            }
        }
    }
    Ok(report)
}

impl fmt::Display for UndoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.restored.is_empty() && self.removed.is_empty() {
            return writeln!(
                f,
                "nothing to undo: no backup beside {}",
                list(&self.looked)
            );
        }
        let (restore, remove) = if self.dry_run {
            ("would restore", "would remove")
        } else {
            ("restored", "removed")
        };
        for r in &self.restored {
            write!(
                f,
                "{restore} {} from {}",
                r.path.display(),
                r.backup.display()
            )?;
            match &r.replaced {
                Some(kept) => writeln!(f, " (what it replaced: {})", kept.display())?,
                None => writeln!(f)?,
            }
        }
        for path in &self.removed {
            writeln!(f, "{remove} {} (the import created it)", path.display())?;
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        Ok(())
    }
}
