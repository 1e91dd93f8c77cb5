//! The import journal: what each import changed, entry by entry, kept
//! under the tool's home (`HOME/imports/`), so an undo puts back exactly
//! those entries, into each file as it is *now*.
//!
//! Claude Code rewrites `~/.claude.json` all the time (it moves keys, adds
//! `machineID`), and the user adds servers after an import; a whole-file
//! restore would lose all of that. So a [`Record`] holds, per file, each
//! [`Edit`]: the keys to the entry, its text before (`None`: the import
//! added it) and after. Reverting one ([`revert_edit`]) checks the entry
//! still is what the import wrote: then it is put back (or removed, with
//! the objects the import created on the way when they are empty again);
//! otherwise someone changed it since, and it is left alone and reported.
//!
//! Files: `imports/<id>.json` (0600: an entry's `env` may hold a secret),
//! and a copy of each file as it was before, `imports/<id>/<n>-<name>`
//! (never beside the file: a project directory gets nothing new). Copies
//! are kept for the newest [`KEEP_COPIES`] imports, records for the newest
//! [`KEEP_RECORDS`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{ImportError, internal};
use crate::claude::files::strip_bom;
use crate::claude::json_text::{self, EditError, Node};
use crate::claude::write::write_atomic;

/// The journal's directory under the tool's home.
pub(crate) const DIR: &str = "imports";

/// Imports whose whole-file copies are kept.
pub(crate) const KEEP_COPIES: usize = 10;

/// Imports whose records are kept (`--undo --all` reaches back this far).
pub(crate) const KEEP_RECORDS: usize = 200;

/// One import.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) version: u32,
    pub(crate) id: String,
    pub(crate) at_ms: u64,
    /// What was imported, as the user would say it (`claude-code --project /p`).
    pub(crate) source: String,
    pub(crate) files: Vec<FileRecord>,
    /// When an undo reverted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) undone_at_ms: Option<u64>,
}

/// What one import did to one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileRecord {
    pub(crate) path: PathBuf,
    /// The import created the file (an undo removes it once nothing but
    /// empty objects is left).
    pub(crate) created: bool,
    /// 0600 on unix.
    pub(crate) private: bool,
    /// The whole file as it was, under the journal (`None`: created, or
    /// the copy was pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) copy: Option<PathBuf>,
    pub(crate) edits: Vec<Edit>,
}

/// One entry an import set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Edit {
    /// The keys from the file's top to the entry.
    pub(crate) at: Vec<String>,
    /// The config.json name of the server it belongs to (a per-server
    /// revert picks edits by it).
    pub(crate) server: String,
    /// The entry's text before (`None`: the import added it).
    pub(crate) before: Option<String>,
    /// The entry's text the import wrote.
    pub(crate) after: String,
    /// How many keys of `at`, from the top, existed before; the import
    /// created the objects below.
    pub(crate) existed: usize,
    /// Already put back (by a failed verification).
    #[serde(default)]
    pub(crate) reverted: bool,
    /// The indentation of the entry's line before: a revert into a line
    /// indented the same puts `before` back verbatim (byte for byte), else
    /// re-indented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) indent: Option<String>,
}

/// What reverting one edit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reverted {
    /// The entry was the import's: put back as it was.
    PutBack,
    /// The import had added it: removed.
    Removed,
    /// It already is as it was before the import.
    AlreadyBack,
    /// Someone changed it since: left alone.
    ChangedSince,
    /// Someone removed it since: left alone.
    RemovedSince,
}

impl Reverted {
    /// Whether the file's text changed.
    pub fn wrote(self) -> bool {
        matches!(self, Reverted::PutBack | Reverted::Removed)
    }
}

fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// `text` with `edit` applied (the import's direction): the entry set to
/// `after`; `None` text is a new file.
///
/// # Errors
/// The text is not what the plan read (an internal error).
pub(crate) fn apply_edit(
    text: Option<&str>,
    edit: &Edit,
    step: &str,
) -> Result<(String, usize), EditError> {
    let raw: &RawValue = serde_json::from_str(&edit.after).map_err(|_| EditError::NotJson)?;
    let node = Node::from_raw(raw);
    let keys: Vec<&str> = edit.at.iter().map(String::as_str).collect();
    let Some((name, parent)) = keys.split_last() else {
        return Err(EditError::NoTopObject);
    };
    let Some(text) = text else {
        let new = json_text::insert_members_at(None, parent, &[((*name).to_owned(), node)], step)?;
        return Ok((new, 0));
    };
    let mut existed = 0;
    for depth in 1..=keys.len() {
        if json_text::find_at(text, &keys[..depth])?.is_none() {
            break;
        }
        existed = depth;
    }
    Ok((json_text::set_at(text, &keys, &node, step)?, existed))
}

/// `text` with `edit` reverted, if the entry still is what the import
/// wrote (see the module doc).
///
/// # Errors
/// The text has no top-level object or a key on the way is not an object.
pub(crate) fn revert_edit(
    text: &str,
    edit: &Edit,
    step: &str,
) -> Result<(String, Reverted), EditError> {
    let keys: Vec<&str> = edit.at.iter().map(String::as_str).collect();
    let Some((name, parent)) = keys.split_last() else {
        return Err(EditError::NoTopObject);
    };
    let current = json_text::find_at(text, &keys)?.and_then(|span| parse(&text[span]));
    let before = edit.before.as_deref().and_then(parse);
    let Some(current) = current else {
        let outcome = if edit.before.is_none() {
            Reverted::AlreadyBack
        } else {
            Reverted::RemovedSince
        };
        return Ok((text.to_owned(), outcome));
    };
    if before.as_ref() == Some(&current) {
        return Ok((text.to_owned(), Reverted::AlreadyBack));
    }
    if parse(&edit.after).as_ref() != Some(&current) {
        return Ok((text.to_owned(), Reverted::ChangedSince));
    }
    match &edit.before {
        Some(before) => {
            if let Some(span) = json_text::find_at(text, &keys)? {
                if edit.indent.as_deref() == Some(json_text::line_indent(text, span.start)) {
                    let out = json_text::replace_spans(text, vec![(span, before.clone())])?;
                    return Ok((out, Reverted::PutBack));
                }
            }
            let raw: &RawValue = serde_json::from_str(before).map_err(|_| EditError::NotJson)?;
            let node = Node::from_raw(raw);
            Ok((
                json_text::set_at(text, &keys, &node, step)?,
                Reverted::PutBack,
            ))
        }
        None => {
            let mut out =
                json_text::remove_member_at(text, parent, name)?.ok_or(EditError::OutsideText)?;
            // The objects the import created on the way, now empty.
            for depth in (edit.existed + 1..keys.len()).rev() {
                let Some(span) = json_text::find_at(&out, &keys[..depth])? else {
                    break;
                };
                let empty =
                    parse(&out[span]).is_some_and(|v| v.as_object().is_some_and(|o| o.is_empty()));
                if !empty {
                    break;
                }
                match json_text::remove_member_at(&out, &keys[..depth - 1], keys[depth - 1])? {
                    Some(next) => out = next,
                    None => break,
                }
            }
            Ok((out, Reverted::Removed))
        }
    }
}

/// Whether a file the import created holds nothing any more: `{}`, or
/// only empty objects (`{"mcpServers": {}}`).
pub(crate) fn is_empty_shell(text: &str) -> bool {
    let empty = |value: &Value| value.as_object().is_some_and(serde_json::Map::is_empty);
    parse(strip_bom(text))
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|top| top.values().all(empty))
}

/// The journal's directory.
pub(crate) fn dir(home: &Path) -> PathBuf {
    home.join(DIR)
}

/// A new record's id: the time and this process, sortable.
pub(crate) fn new_id(at_ms: u64) -> String {
    format!("{at_ms:015}-{}", std::process::id())
}

fn record_path(home: &Path, id: &str) -> PathBuf {
    dir(home).join(format!("{id}.json"))
}

fn create_dir(path: &Path) -> Result<(), ImportError> {
    let made = std::fs::create_dir_all(path);
    #[cfg(unix)]
    let made = made.and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    });
    made.map_err(|source| ImportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Keeps a copy of `text` (file number `n` of import `id`) under the
/// journal. Returns where.
///
/// # Errors
/// [`ImportError::Write`].
pub(crate) fn keep_copy(
    home: &Path,
    id: &str,
    n: usize,
    file: &Path,
    text: &str,
) -> Result<PathBuf, ImportError> {
    let copies = dir(home).join(id);
    create_dir(&copies)?;
    let name = file
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    let path = copies.join(format!("{n}-{name}"));
    write_atomic(&path, text.as_bytes(), true)?;
    Ok(path)
}

/// Writes (or rewrites) `record`, then prunes old copies and records.
///
/// # Errors
/// [`ImportError::Write`].
pub(crate) fn save(home: &Path, record: &Record) -> Result<PathBuf, ImportError> {
    create_dir(&dir(home))?;
    let path = record_path(home, &record.id);
    let text = serde_json::to_string_pretty(record).map_err(internal)?;
    write_atomic(&path, text.as_bytes(), true)?;
    prune(home);
    Ok(path)
}

/// Every record, oldest first; unreadable ones are skipped with a warning.
///
/// # Errors
/// The directory exists but cannot be listed.
pub(crate) fn records(home: &Path) -> Result<Vec<Record>, ImportError> {
    let dir = dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ImportError::Read { path: dir, source }),
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) if record.version == 1 => records.push(record),
            Ok(_) | Err(_) => {
                tracing::warn!(file = %path.display(), "import journal: unreadable record skipped");
            }
        }
    }
    records.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
    Ok(records)
}

/// Drops copies beyond the newest [`KEEP_COPIES`] imports and records
/// beyond the newest [`KEEP_RECORDS`] (best effort).
fn prune(home: &Path) {
    let Ok(all) = records(home) else { return };
    let count = all.len();
    for (index, record) in all.iter().enumerate() {
        let age = count - index;
        if age > KEEP_COPIES {
            let _ = std::fs::remove_dir_all(dir(home).join(&record.id));
        }
        if age > KEEP_RECORDS {
            let _ = std::fs::remove_file(record_path(home, &record.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(at: &[&str], before: Option<&str>, after: &str) -> Edit {
        Edit {
            at: at.iter().map(|k| (*k).to_owned()).collect(),
            server: "db".into(),
            before: before.map(str::to_owned),
            after: after.to_owned(),
            existed: 0,
            reverted: false,
            indent: None,
        }
    }

    /// A replaced entry is put back; an added one is removed with the
    /// objects created for it; every other byte stays.
    #[test]
    fn an_edit_reverts_into_the_file_as_it_is_now() {
        let text =
            "{\n  \"a\": 1,\n  \"mcpServers\": {\n    \"db\": {\"command\": \"x\"}\n  }\n}\n";
        let mut replace = edit(
            &["mcpServers", "db"],
            Some(r#"{"command": "x"}"#),
            r#"{"command": "p"}"#,
        );
        let (applied, existed) = apply_edit(Some(text), &replace, "  ").expect("applied");
        replace.existed = existed;
        assert_eq!(existed, 2);
        assert!(applied.contains(r#""db": {"command": "p"}"#), "{applied}");
        // Claude Code writes another key meanwhile.
        let later = applied.replacen("\"a\": 1", "\"a\": 1,\n  \"machineID\": \"m\"", 1);
        let (back, outcome) = revert_edit(&later, &replace, "  ").expect("reverted");
        assert_eq!(outcome, Reverted::PutBack);
        assert_eq!(
            back,
            text.replacen("\"a\": 1", "\"a\": 1,\n  \"machineID\": \"m\"", 1)
        );

        let mut add = edit(
            &["projects", "/p", "mcpServers", "db"],
            None,
            r#"{"command": "p"}"#,
        );
        let (added, existed) = apply_edit(Some(text), &add, "  ").expect("applied");
        add.existed = existed;
        assert_eq!(existed, 0);
        let (removed, outcome) = revert_edit(&added, &add, "  ").expect("reverted");
        assert_eq!(outcome, Reverted::Removed);
        assert_eq!(parse(&removed), parse(text), "{removed}");
    }

    /// An entry someone changed or removed since is left alone; one that
    /// is back already is not touched.
    #[test]
    fn a_changed_entry_is_left_alone() {
        let e = edit(
            &["mcpServers", "db"],
            Some(r#"{"command": "x"}"#),
            r#"{"command": "p"}"#,
        );
        let changed = r#"{"mcpServers": {"db": {"command": "q"}}}"#;
        assert_eq!(
            revert_edit(changed, &e, "  ").expect("ok").1,
            Reverted::ChangedSince
        );
        let gone = r#"{"mcpServers": {}}"#;
        assert_eq!(
            revert_edit(gone, &e, "  ").expect("ok").1,
            Reverted::RemovedSince
        );
        let back = r#"{"mcpServers": {"db": {"command": "x"}}}"#;
        assert_eq!(
            revert_edit(back, &e, "  ").expect("ok"),
            (back.to_owned(), Reverted::AlreadyBack)
        );
    }

    #[test]
    fn empty_shells_are_recognised() {
        assert!(is_empty_shell("{}"));
        assert!(is_empty_shell("{\n  \"mcpServers\": {}\n}\n"));
        assert!(!is_empty_shell(r#"{"mcpServers": {"a": {}}, "x": 1}"#));
        assert!(!is_empty_shell("not json"));
    }
}
