//! `mcp-manager import --undo`: reverts the newest import (`--all`: every
//! one, newest first, back to before the first), from the import journal
//! ([`super::journal`]), entry by entry into each file as it is
//! now: what Claude Code or the user changed since stays. An entry changed
//! since the import is left alone and reported; a file the import created
//! is removed once it holds nothing else.
//!
//! Every file is read, every revert computed, then each file is written
//! once, atomically, after checking it did not change meanwhile (Claude
//! Code writes `~/.claude.json` often: then the whole undo is computed
//! again, up to [`ATTEMPTS`] times). Source files are written before
//! `config.json`, so no Claude entry is left pointing at a removed name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::journal::{self, Record, Reverted};
use super::{ImportError, edit_error};
use crate::claude::files::read_optional;
use crate::claude::json_text::indent_step;
use crate::claude::write::write_atomic;

/// How often an undo is computed again when a file changed meanwhile.
pub const ATTEMPTS: usize = 3;

/// Which imports to revert.
#[derive(Debug, Clone)]
pub struct UndoOptions {
    /// The tool's home (the journal is in it).
    pub home: PathBuf,
    /// Every import, not only the newest.
    pub all: bool,
    /// Report; write nothing.
    pub dry_run: bool,
}

impl UndoOptions {
    /// For the user running it.
    ///
    /// # Errors
    /// No home directory.
    pub fn for_current_user(all: bool, dry_run: bool) -> Result<UndoOptions, crate::paths::NoHome> {
        Ok(UndoOptions {
            home: crate::paths::home()?,
            all,
            dry_run,
        })
    }
}

/// What [`undo`] did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoReport {
    pub dry_run: bool,
    /// The imports reverted, newest first.
    pub imports: Vec<UndoneImport>,
    /// Each entry looked at.
    pub entries: Vec<EntryUndo>,
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Files the imports had created, removed (nothing else was left in
    /// them).
    pub removed: Vec<PathBuf>,
    /// Where the journal is.
    pub journal: PathBuf,
}

/// One import reverted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoneImport {
    pub id: String,
    pub at_ms: u64,
    pub source: String,
}

/// One entry put back, removed, or left alone.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryUndo {
    pub file: PathBuf,
    /// The keys to it, as `mcpServers.db`.
    pub at: String,
    pub outcome: Reverted,
}

/// A file as the undo sees it: as read, and as it will be written.
struct FileState {
    read: Option<Vec<u8>>,
    text: Option<String>,
    private: bool,
    /// Some import created it.
    created: bool,
}

/// Reverts the newest import not yet undone (`all`: every one).
///
/// # Errors
/// A journal or file that cannot be read or written, or files that kept
/// changing while the undo was computed.
pub fn undo(options: &UndoOptions) -> Result<UndoReport, ImportError> {
    for attempt in 1..=ATTEMPTS {
        match attempt_undo(options, None) {
            Err(ImportError::Changed { .. }) if attempt < ATTEMPTS => continue,
            other => return other,
        }
    }
    Err(ImportError::Internal("undo attempts exhausted".into()))
}

/// Reverts, in the import `id`, only the edits of the config.json names
/// `servers` (a verification found them broken); the record keeps the
/// rest for a later undo.
///
/// # Errors
/// As [`undo`].
pub(crate) fn revert_servers(
    home: &Path,
    id: &str,
    servers: &[String],
) -> Result<UndoReport, ImportError> {
    let options = UndoOptions {
        home: home.to_owned(),
        all: false,
        dry_run: false,
    };
    for attempt in 1..=ATTEMPTS {
        match attempt_undo(&options, Some((id, servers))) {
            Err(ImportError::Changed { .. }) if attempt < ATTEMPTS => continue,
            other => return other,
        }
    }
    Err(ImportError::Internal("revert attempts exhausted".into()))
}

fn attempt_undo(
    options: &UndoOptions,
    only: Option<(&str, &[String])>,
) -> Result<UndoReport, ImportError> {
    let records = journal::records(&options.home)?;
    let mut chosen: Vec<Record> = match only {
        Some((id, _)) => records.into_iter().filter(|r| r.id == id).collect(),
        None => records
            .into_iter()
            .filter(|r| r.undone_at_ms.is_none())
            .collect(),
    };
    chosen.reverse();
    if !options.all && only.is_none() {
        chosen.truncate(1);
    }
    let mut report = UndoReport {
        dry_run: options.dry_run,
        journal: journal::dir(&options.home),
        ..UndoReport::default()
    };
    let mut states: BTreeMap<PathBuf, FileState> = BTreeMap::new();
    // Source files before config.json: the order files are written in.
    let mut order: Vec<PathBuf> = Vec::new();
    let config_path = crate::paths::config_file(&options.home);
    for record in &mut chosen {
        report.imports.push(UndoneImport {
            id: record.id.clone(),
            at_ms: record.at_ms,
            source: record.source.clone(),
        });
        for file in record.files.iter_mut().rev() {
            if !states.contains_key(&file.path) {
                let read = read_optional(&file.path)?;
                let text = read
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                states.insert(
                    file.path.clone(),
                    FileState {
                        read,
                        text,
                        private: file.private,
                        created: false,
                    },
                );
                order.push(file.path.clone());
            }
            let Some(state) = states.get_mut(&file.path) else {
                continue;
            };
            state.created |= file.created;
            for edit in file.edits.iter_mut().rev() {
                if edit.reverted {
                    continue;
                }
                if let Some((_, servers)) = only {
                    if !servers.contains(&edit.server) {
                        continue;
                    }
                }
                let at = edit.at.join(".");
                let Some(text) = &state.text else {
                    report.entries.push(EntryUndo {
                        file: file.path.clone(),
                        at,
                        outcome: if edit.before.is_none() {
                            Reverted::AlreadyBack
                        } else {
                            Reverted::RemovedSince
                        },
                    });
                    continue;
                };
                let step = indent_step(text);
                let (next, outcome) = journal::revert_edit(text, edit, &step)
                    .map_err(|e| edit_error(e, &file.path))?;
                state.text = Some(next);
                edit.reverted = only.is_some();
                report.entries.push(EntryUndo {
                    file: file.path.clone(),
                    at,
                    outcome,
                });
            }
        }
    }
    order.sort_by_key(|path| *path == config_path);
    for path in &order {
        let Some(state) = states.get(path) else {
            continue;
        };
        let Some(text) = &state.text else { continue };
        let remove = state.created && journal::is_empty_shell(text);
        let changed = remove || state.read.as_deref() != Some(text.as_bytes());
        if !changed {
            continue;
        }
        if remove {
            report.removed.push(path.clone());
        } else {
            report.written.push(path.clone());
        }
        if options.dry_run {
            continue;
        }
        if read_optional(path)? != state.read {
            return Err(ImportError::Changed { path: path.clone() });
        }
        if remove {
            std::fs::remove_file(path).map_err(|source| ImportError::Write {
                path: path.clone(),
                source,
            })?;
        } else {
            write_atomic(path, text.as_bytes(), state.private)?;
        }
    }
    if !options.dry_run {
        let now = crate::paths::now_ms();
        for record in &mut chosen {
            if only.is_none() {
                record.undone_at_ms = Some(now);
            }
            journal::save(&options.home, record)?;
        }
    }
    Ok(report)
}

impl fmt::Display for UndoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.imports.is_empty() {
            return writeln!(
                f,
                "nothing to undo: no import recorded in {} (imports before this version kept FILE.backup.<ms> copies beside each file; copy one back by hand)",
                self.journal.display()
            );
        }
        for import in &self.imports {
            writeln!(f, "undo of the import of {} ({})", import.source, import.id)?;
        }
        for entry in &self.entries {
            let what = match entry.outcome {
                Reverted::PutBack => "put back as it was",
                Reverted::Removed => "removed (the import added it)",
                Reverted::AlreadyBack => "already as it was",
                Reverted::ChangedSince => {
                    "left alone: changed since the import (by you or Claude Code); fix it by hand if needed"
                }
                Reverted::RemovedSince => "left alone: removed since the import",
            };
            writeln!(f, "  {} in {}: {what}", entry.at, entry.file.display())?;
        }
        let (write, remove) = if self.dry_run {
            ("would write", "would remove")
        } else {
            ("wrote", "removed")
        };
        for path in &self.written {
            writeln!(f, "{write} {}", path.display())?;
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
