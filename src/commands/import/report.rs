//! What an import did, or in a dry run would do: every server found and
//! what became of it, the files written and their backups, and notes.
//! Serialised as is; `Display` is the human summary. Neither ever shows
//! `args`, `env` or `headers`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::plan::scope_name;
use super::scope::ScopeReason;
use super::verify::Health;
use crate::config::Scope;

/// What an import did (or, in a dry run, would do). `Display` is the
/// human summary; it never shows `args`, `env` or `headers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub dry_run: bool,
    /// The files read.
    pub sources: Vec<PathBuf>,
    /// The tool's `config.json`.
    pub config: PathBuf,
    /// Every server found, in file order.
    pub servers: Vec<ServerReport>,
    /// The files written (or that would be), `config.json` first.
    pub files: Vec<FileChange>,
    /// The journal record of this import (what `--undo` reverts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// Things the user should know (built-ins dropped, keys not carried over…).
    pub notes: Vec<String>,
}

/// One server found in a source.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerReport {
    pub name: String,
    pub file: PathBuf,
    /// Where in the file: `mcpServers` or `projects["DIR"].mcpServers`.
    pub place: String,
    /// Its name in config.json (a project's server gets one of its own:
    /// `PROJECT.NAME`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How it answered before and after (`None`: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// A server connected to before the import (as Claude Code ran it) and
/// after (through mcp-proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub before: Health,
    pub after: Health,
    /// It answered before and not after: its entries were put back.
    pub put_back: bool,
}

/// What became of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    /// A stdio server, now hosted by the manager.
    Hosted {
        port: u16,
        scope: Scope,
        /// Why this scope (`asked`, `browser`, `project`, `user`).
        scope_reason: ScopeReason,
    },
    /// A remote server, kept as a `url` entry (shown without credentials
    /// or query).
    Remote { url: String },
    /// A remote server left with Claude Code: neither `config.json` nor
    /// its entry changes (shown without credentials or query), and why.
    LeftWithClaude { url: String, reason: String },
    /// `config.json` already has this very server; only the source entry
    /// is pointed at the proxy.
    AlreadyInConfig,
    /// The source entry already runs `mcp-proxy`: left alone.
    AlreadyImported { target: Option<String> },
    /// A project's `.mcp.json` server the user has not approved in Claude
    /// Code (disabled, or never answered): left alone.
    NotApproved { reason: String },
    /// A project's `.mcp.json` server that a local entry of the same name
    /// overrides already (Claude Code runs that one): left alone.
    Shadowed,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub path: PathBuf,
    /// The file did not exist before.
    pub created: bool,
    /// The copy of its old content, under the import journal (`None` in a
    /// dry run or for a new file).
    pub backup: Option<PathBuf>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.servers.is_empty() {
            writeln!(f, "no MCP servers found in {}", list(&self.sources))?;
        }
        let width = self.servers.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for server in &self.servers {
            let what = match &server.outcome {
                Outcome::Hosted {
                    port,
                    scope,
                    scope_reason,
                } => format!(
                    "stdio server → hosted on port {port}, scope {}: {}",
                    scope_name(*scope),
                    scope_reason.text()
                ),
                Outcome::Remote { url } => format!("remote server {url} → kept as a url entry"),
                Outcome::LeftWithClaude { url, reason } => {
                    format!("remote server {url} → left as it is: {reason}")
                }
                Outcome::AlreadyInConfig => {
                    "already in config.json → entry pointed at mcp-proxy".to_owned()
                }
                Outcome::AlreadyImported { .. } => "already imported (runs mcp-proxy)".to_owned(),
                Outcome::NotApproved { reason } => format!("left as it is: {reason}"),
                Outcome::Shadowed => {
                    "left as it is: a local entry of the same name overrides it".to_owned()
                }
            };
            let what = match &server.target {
                Some(target) if *target != server.name => {
                    format!("{what} (config.json name: {target})")
                }
                _ => what,
            };
            writeln!(
                f,
                "  {:<width$}  {what}   [{} of {}]",
                server.name,
                server.place,
                server.file.display()
            )?;
        }
        let checked: Vec<(&ServerReport, &Check)> = self
            .servers
            .iter()
            .filter_map(|s| s.check.as_ref().map(|c| (s, c)))
            .collect();
        if !checked.is_empty() {
            writeln!(
                f,
                "checked as `claude mcp list` connects (before → through mcp-proxy):"
            )?;
            let before_width = checked
                .iter()
                .map(|(_, c)| c.before.to_string().chars().count())
                .max()
                .unwrap_or(0);
            for (server, check) in checked {
                let before = check.before.to_string();
                let pad = before_width - before.chars().count();
                write!(
                    f,
                    "  {:<width$}  {before}{:pad$}  →  {}",
                    server.name, "", check.after
                )?;
                if check.put_back {
                    write!(f, "   put back as it was")?;
                }
                writeln!(f)?;
            }
        }
        if self.files.is_empty() {
            writeln!(f, "nothing to change")?;
        }
        let verb = if self.dry_run { "would write" } else { "wrote" };
        for file in &self.files {
            let how = match (&file.backup, file.created) {
                (_, true) => " (new)".to_owned(),
                (Some(backup), false) => format!(" (backup: {})", backup.display()),
                (None, false) => String::new(),
            };
            writeln!(f, "{verb} {}{how}", file.path.display())?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if self.journal.is_some() {
            writeln!(
                f,
                "undo: `mcp-manager import --undo` (this import), `--undo --all` (every import)"
            )?;
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        Ok(())
    }
}

/// The paths, comma-separated.
pub(crate) fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
