//! `mcp-manager import`: moves the MCP servers a user already has in Claude
//! Code or Claude Desktop onto this tool.
//!
//! # What it reads
//!
//! - Claude Code ([`Source::ClaudeCode`]): `~/.claude.json`, its
//!   `mcpServers` (the user's servers); with a project `DIR` also
//!   `projects["DIR"].mcpServers` of the same file (`DIR` as the absolute
//!   path Claude Code keys it by) and `DIR/.mcp.json`.
//! - Claude Desktop ([`Source::ClaudeDesktop`]):
//!   `claude_desktop_config.json` ([`desktop_config`]).
//! - A file ([`Source::File`]): any file with an `mcpServers` object. A file
//!   named `.mcp.json` is a project's: its directory is the project.
//!
//! # What it writes
//!
//! Each server is added to the tool's `config.json` (created if missing; its
//! existing entries and keys are kept):
//!
//! - a **stdio** entry (a `command`, `type` absent or `"stdio"`) becomes a
//!   hosted entry: `command`, `args`, `env` and `cwd` as written, a `port`
//!   from 3110–3189 ([`PORTS`]) that no config entry uses and nothing listens
//!   on now, and a `scope`;
//! - a **remote** entry (`type` `"http"`/`"sse"`, or a `url`) stays remote:
//!   `type`, `url`, `headers` as written (plus `"allowHttp": true` for plain
//!   http to another host, which Claude Code allowed and this tool refuses
//!   by default).
//!
//! **Scope rule.** An entry from a project source (`projects["DIR"]` or
//! `DIR/.mcp.json`) gets scope `project` and, without a `cwd`, the project
//! directory as its `cwd` (Claude Code runs it there); a user-level entry
//! gets `shared`. [`ImportOptions::scopes`] (`--scope NAME=…`) overrides.
//!
//! `args`, `env` and `headers` are copied as JSON text, so a `${VAR}`
//! reference stays a reference (the config expands it when it is loaded);
//! no secret is ever expanded into a file.
//!
//! Then each imported entry of the source file becomes
//! `{"command": "<mcp-proxy>", "args": ["--target", NAME]}` (with
//! `"type": "stdio"` if the entry had a `type`).
//!
//! # Guarantees
//!
//! - **Every other byte stays.** Entries are found as byte spans (borrowed
//!   [`RawValue`]s, located by pointer arithmetic against the file's text)
//!   and only those spans are replaced, indented like their surroundings.
//!   `config.json` gets its new entries inserted the same way.
//! - **All or nothing.** Every file is read, every entry checked, and the
//!   new `config.json` validated with [`Config::parse`] before the first
//!   write; a file that changed meanwhile (Claude Code writes
//!   `~/.claude.json` often) stops the import before anything is written.
//! - **Backups and atomic writes.** Each file is first copied to
//!   `FILE.backup.<ms>` beside it (when `config.json` is new, an empty
//!   `config.json.created.<ms>` marks that), then replaced by a temporary
//!   file in the same directory renamed over it, with the file's
//!   permissions. On unix `config.json` (its `env` and `headers` may hold
//!   secrets) and every backup are 0600. `config.json` is written before the
//!   sources, so a source never points at a name the config lacks.
//! - **Idempotent.** An entry whose command already is `mcp-proxy` (or
//!   `mcp-proxy.exe`) is left alone and reported as already imported; a
//!   second run changes nothing.
//! - **Undo.** [`undo`] restores the newest backup of each file an import
//!   of that source changes (and removes a `config.json` the import
//!   created), byte for byte; what it replaces is kept as `FILE.undone.<ms>`.
//! - **No secrets shown.** The report names servers, files, ports, scopes
//!   and remote URLs without credentials or query; never `args`, `env` or
//!   `headers`. Nothing here logs them either.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::config::Scope;

/// The ports imported stdio servers are hosted on (documented range).
pub const PORTS: RangeInclusive<u16> = 3110..=3189;

/// Where the servers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `~/.claude.json`, and with `project` that project's servers too.
    ClaudeCode { project: Option<PathBuf> },
    /// Claude Desktop's `claude_desktop_config.json`.
    ClaudeDesktop,
    /// Any file with an `mcpServers` object.
    File(PathBuf),
}

impl Source {
    /// The source named by `--from` (`claude-code`, the default,
    /// `claude-desktop`, or a file) and `--project`.
    ///
    /// # Errors
    /// `--project` given with a source other than Claude Code.
    pub fn from_args(from: Option<&str>, project: Option<PathBuf>) -> Result<Source, String> {
        match from {
            None | Some("claude-code") => Ok(Source::ClaudeCode { project }),
            Some(_) if project.is_some() => Err(
                "--project only applies to --from claude-code (a project's .mcp.json can be given as --from DIR/.mcp.json)".into(),
            ),
            Some("claude-desktop") => Ok(Source::ClaudeDesktop),
            Some(file) => Ok(Source::File(PathBuf::from(file))),
        }
    }
}

/// What to import, and where to.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub source: Source,
    /// The user's home directory (`~`), where Claude's files live.
    pub user_home: PathBuf,
    /// The tool's home directory; `config.json` lives here.
    pub home: PathBuf,
    /// The absolute path of `mcp-proxy`, written into the source entries.
    pub proxy: PathBuf,
    /// `--scope NAME=…` overrides of the scope rule.
    pub scopes: BTreeMap<String, Scope>,
    /// Read and check everything, report, write nothing.
    pub dry_run: bool,
}

/// Claude Desktop's config file under `user_home`, for this platform.
pub fn desktop_config(user_home: &Path) -> PathBuf {
    let dir = if cfg!(target_os = "macos") {
        user_home.join("Library").join("Application Support")
    } else if cfg!(windows) {
        user_home.join("AppData").join("Roaming")
    } else {
        user_home.join(".config")
    };
    dir.join("Claude").join("claude_desktop_config.json")
}

/// `NAME=shared|project|session`, as `--scope` takes it.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_scope_override(text: &str) -> Result<(String, Scope), String> {
    let expected = || format!("expected NAME=shared, NAME=project or NAME=session, not {text:?}");
    let (name, scope) = text.split_once('=').ok_or_else(expected)?;
    let scope = match scope.trim() {
        "shared" => Scope::Shared,
        "project" => Scope::Project,
        "session" => Scope::Session,
        _ => return Err(expected()),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(expected());
    }
    Ok((name.to_owned(), scope))
}

/// Why nothing was imported (or, for [`ImportError::Write`], why the import
/// stopped part-way; the backups are then beside each file).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("nothing to import: none of {} exists", list(looked))]
    NoSource { looked: Vec<PathBuf> },
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is not valid JSON: {message} (line {line}, column {column}); fix it and import again",
        path.display()
    )]
    NotJson {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{}: `{key}` is not a JSON object", path.display())]
    NotAnObject { path: PathBuf, key: String },
    #[error("{} has no \"mcpServers\" object: nothing to import", path.display())]
    NoServers { path: PathBuf },
    #[error(
        "{}: server \"{name}\" has neither a \"command\" (a program to run) nor a \"url\" (a remote server); add one, or remove the entry, and import again",
        path.display()
    )]
    MissingCommandOrUrl { path: PathBuf, name: String },
    #[error("{}: server \"{name}\": {problem}", path.display())]
    BadEntry {
        path: PathBuf,
        name: String,
        problem: String,
    },
    #[error(
        "{}: the server name \"{name}\" cannot be used here (only letters, digits, '-', '_' and '.'; it names lock and log files); rename it in that file and import again",
        path.display()
    )]
    BadName { path: PathBuf, name: String },
    #[error(
        "{} already has a different server named \"{name}\"; rename the one in {} (or the one in config.json) and import again",
        config.display(),
        source_file.display()
    )]
    Clash {
        name: String,
        config: PathBuf,
        source_file: PathBuf,
    },
    #[error(
        "server \"{name}\" is defined differently in {first} and in {second}; rename one of them and import again"
    )]
    SourceClash {
        name: String,
        first: String,
        second: String,
    },
    #[error("--scope {name}=…: no server named \"{name}\" was found (found: {})", found.join(", "))]
    UnknownScopeName { name: String, found: Vec<String> },
    #[error(
        "no free port left in {}–{} for \"{name}\"; free one, or give some entries of config.json other ports",
        PORTS.start(),
        PORTS.end()
    )]
    NoFreePort { name: String },
    #[error("{message}")]
    Config { message: String },
    #[error(
        "{} is this tool's own config; import from Claude Code's or Claude Desktop's file instead",
        path.display()
    )]
    OwnConfig { path: PathBuf },
    #[error(
        "{} changed while importing (Claude Code may have just written it); nothing was written, run the import again",
        path.display()
    )]
    Changed { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

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
    #[serde(flatten)]
    pub outcome: Outcome,
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
    Hosted { port: u16, scope: Scope },
    /// A remote server, kept as a `url` entry (shown without credentials
    /// or query).
    Remote { url: String },
    /// `config.json` already has this very server; only the source entry
    /// is pointed at the proxy.
    AlreadyInConfig,
    /// The source entry already runs `mcp-proxy`: left alone.
    AlreadyImported { target: Option<String> },
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub path: PathBuf,
    /// The file did not exist before.
    pub created: bool,
    /// The copy of its old content (`None` in a dry run or for a new file).
    pub backup: Option<PathBuf>,
}

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

// ---------------------------------------------------------------------------
// Import.

/// Imports the servers of `options.source` (see the module doc).
///
/// # Errors
/// An [`ImportError`] naming the file, the entry and the fix; nothing is
/// written then, except for [`ImportError::Write`] (a file system failure
/// part-way, the backups beside each file).
pub fn import(options: &ImportOptions) -> Result<ImportReport, ImportError> {
    let config_path = crate::paths::config_file(&options.home);
    let files = load_sources(options, &config_path)?;
    let mut notes = Vec::new();
    let mut sites = Vec::new();
    for (index, file) in files.iter().enumerate() {
        sites.extend(find_servers(index, file, &mut notes)?);
    }
    check_scope_names(options, &sites)?;
    let config = ConfigState::load(&config_path)?;
    let step = config
        .text
        .as_deref()
        .map_or_else(|| "  ".to_owned(), indent_step);

    let groups = group_by_name(&sites, &files)?;

    let mut used_ports = config.ports.clone();
    let mut new_members: Vec<(String, Node<'_>)> = Vec::new();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for (name, members) in &groups {
        let site = &sites[members[0]];
        let scope = options
            .scopes
            .get(name)
            .copied()
            .unwrap_or(if site.project.is_some() {
                Scope::Project
            } else {
                Scope::Shared
            });
        let hosted = matches!(site.entry.kind, Kind::Stdio);
        let draft = config_entry(site, 0, scope);
        if let Some(existing) = config.servers.get(name) {
            if definition(existing) == definition(&draft.to_value()?) {
                outcomes.insert(name.clone(), Outcome::AlreadyInConfig);
                continue;
            }
            return Err(ImportError::Clash {
                name: name.clone(),
                config: config_path.clone(),
                source_file: files[site.file].path.clone(),
            });
        }
        let outcome = if hosted {
            let port = free_port(&used_ports)
                .ok_or_else(|| ImportError::NoFreePort { name: name.clone() })?;
            used_ports.insert(port);
            new_members.push((name.clone(), config_entry(site, port, scope)));
            Outcome::Hosted { port, scope }
        } else {
            if draft.get("allowHttp").is_some() {
                notes.push(format!(
                    "{name}: plain http to another host, as Claude Code allowed it: \"allowHttp\": true"
                ));
            }
            new_members.push((name.clone(), draft));
            Outcome::Remote {
                url: shown_url(site.entry.shape.url.as_deref().unwrap_or_default()),
            }
        };
        outcomes.insert(name.clone(), outcome);
    }
    for (name, scope) in &options.scopes {
        let applies = sites
            .iter()
            .any(|s| s.name == *name && matches!(s.entry.kind, Kind::Stdio));
        let is_new = matches!(outcomes.get(name), Some(Outcome::Hosted { .. }));
        if !applies || !is_new {
            notes.push(format!(
                "--scope {name}={}: not applied ({name} is not a stdio server this import adds to config.json)",
                scope_name(*scope)
            ));
        }
    }

    // The new config.json, validated before anything is written.
    let new_config = if new_members.is_empty() {
        None
    } else {
        let text = config.with_members(&new_members, &step)?;
        Config::parse(&config_path, text.as_bytes()).map_err(|e| ImportError::Config {
            message: format!("the imported servers would make the config invalid: {e}"),
        })?;
        Some(text)
    };
    let final_names: BTreeSet<String> = match (&config.text, &new_config) {
        (None, None) => Config::builtin().servers.into_keys().collect(),
        _ => config
            .servers
            .keys()
            .cloned()
            .chain(new_members.iter().map(|(n, _)| n.clone()))
            .collect(),
    };

    let new_sources = rewritten_sources(&files, &sites, &options.proxy)?;

    // The report.
    let servers = sites
        .iter()
        .map(|site| ServerReport {
            name: site.name.clone(),
            file: files[site.file].path.clone(),
            place: site.place.clone(),
            outcome: match &site.entry.kind {
                Kind::Imported { target } => Outcome::AlreadyImported {
                    target: target.clone(),
                },
                _ => outcomes
                    .get(&site.name)
                    .cloned()
                    .unwrap_or(Outcome::AlreadyInConfig),
            },
        })
        .collect::<Vec<_>>();
    for site in &sites {
        if let Kind::Imported {
            target: Some(target),
        } = &site.entry.kind
        {
            if !final_names.contains(target) {
                notes.push(format!(
                    "{}: runs mcp-proxy --target {target}, but config.json has no \"{target}\"",
                    site.name
                ));
            }
        }
    }
    if new_config.is_some() && config.text.is_none() {
        notes.push(format!(
            "{} did not exist: it holds only the imported servers, so the built-in daemons ({}) are no longer configured; add their entries to it if you use them",
            config_path.display(),
            Config::builtin().names().join(", ")
        ));
    }
    if !new_sources.is_empty() {
        notes.push(
            "Claude Code and Claude Desktop read their servers when they start: restart them (running sessions keep the old servers)".into(),
        );
    }
    if (new_config.is_some() || !new_sources.is_empty()) && !options.proxy.is_file() {
        notes.push(format!(
            "{} does not exist (yet): the source entries run it, so install it there",
            options.proxy.display()
        ));
    }
    let mut report = ImportReport {
        dry_run: options.dry_run,
        sources: files.iter().map(|f| f.path.clone()).collect(),
        config: config_path.clone(),
        servers,
        files: Vec::new(),
        notes,
    };
    let mut changes = Vec::new();
    if let Some(text) = &new_config {
        changes.push(Change {
            path: config_path.clone(),
            old: config.text.as_deref(),
            new: text,
            private: true,
        });
    }
    for (index, text) in &new_sources {
        changes.push(Change {
            path: files[*index].path.clone(),
            old: Some(&files[*index].text),
            new: text,
            private: false,
        });
    }
    report.files = if options.dry_run {
        changes
            .iter()
            .map(|change| FileChange {
                path: change.path.clone(),
                created: change.old.is_none(),
                backup: None,
            })
            .collect()
    } else {
        write_changes(&changes)?
    };
    Ok(report)
}

/// The sites to import, by name in file order (already imported ones
/// left out); a name found twice must be the same server.
fn group_by_name(
    sites: &[Site<'_>],
    files: &[Loaded],
) -> Result<Vec<(String, Vec<usize>)>, ImportError> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, site) in sites.iter().enumerate() {
        if matches!(site.entry.kind, Kind::Imported { .. }) {
            continue;
        }
        match groups.iter_mut().find(|(name, _)| *name == site.name) {
            Some((_, members)) => {
                let first = &sites[members[0]];
                if first.entry.value != site.entry.value {
                    return Err(ImportError::SourceClash {
                        name: site.name.clone(),
                        first: first.describe(files),
                        second: site.describe(files),
                    });
                }
                members.push(index);
            }
            None => groups.push((site.name.clone(), vec![index])),
        }
    }
    Ok(groups)
}

/// Each source file with its imported entries pointed at the proxy (files
/// with nothing to change left out).
fn rewritten_sources(
    files: &[Loaded],
    sites: &[Site<'_>],
    proxy: &Path,
) -> Result<Vec<(usize, String)>, ImportError> {
    let mut rewritten = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let mut edits: Vec<(Range<usize>, String)> = sites
            .iter()
            .filter(|s| s.file == index && !matches!(s.entry.kind, Kind::Imported { .. }))
            .map(|s| (s.span.clone(), proxy_entry(&file.text, s, proxy)))
            .collect();
        if edits.is_empty() {
            continue;
        }
        edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
        let mut text = file.text.clone();
        for (span, replacement) in edits {
            text.replace_range(span, &replacement);
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(strip_bom(&text)).is_err() {
            return Err(ImportError::Internal(format!(
                "the rewritten {} would not be JSON",
                file.path.display()
            )));
        }
        rewritten.push((index, text));
    }
    Ok(rewritten)
}

/// One file to write: its content as read (`None`: it does not exist), the
/// new content, and whether it is private (0600 on unix).
struct Change<'a> {
    path: PathBuf,
    old: Option<&'a str>,
    new: &'a str,
    private: bool,
}

/// Checks that no file changed since it was read, backs each one up, then
/// writes them in order.
fn write_changes(changes: &[Change<'_>]) -> Result<Vec<FileChange>, ImportError> {
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
            Some(old) => Some(write_beside(&change.path, "backup", stamp, old.as_bytes())?),
            None => {
                write_beside(&change.path, "created", stamp, b"")?;
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

// ---------------------------------------------------------------------------
// Undo.

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
            BackupKind::Backup => {
                Some(
                    std::fs::read(&newest.0).map_err(|source| ImportError::Read {
                        path: newest.0.clone(),
                        source,
                    })?,
                )
            }
            BackupKind::Created => None,
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
                        replaced = Some(write_beside(&path, "undone", stamp, current)?);
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
                    write_beside(&path, "undone", stamp, &current)?;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BackupKind {
    Created,
    Backup,
}

/// The newest `FILE.backup.<ms>` or `FILE.created.<ms>` beside `path`.
fn newest_backup(path: &Path) -> Result<Option<(PathBuf, BackupKind)>, ImportError> {
    let (dir, name) = dir_and_name(path);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ImportError::Read { path: dir, source }),
    };
    let mut best: Option<(u128, BackupKind, PathBuf)> = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix(name.as_str()) else {
            continue;
        };
        let (kind, digits) = if let Some(d) = rest.strip_prefix(".backup.") {
            (BackupKind::Backup, d)
        } else if let Some(d) = rest.strip_prefix(".created.") {
            (BackupKind::Created, d)
        } else {
            continue;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(ms) = digits.parse::<u128>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(m, k, _)| (ms, kind) > (*m, *k)) {
            best = Some((ms, kind, entry.path()));
        }
    }
    Ok(best.map(|(_, kind, path)| (path, kind)))
}

// ---------------------------------------------------------------------------
// Sources.

/// Where in a file the servers are.
#[derive(Debug, Clone)]
enum Where {
    /// The top-level `mcpServers`.
    Top,
    /// `projects[KEY].mcpServers`, the first of these keys present.
    Project(Vec<String>),
}

#[derive(Debug, Clone)]
struct Place {
    at: Where,
    /// The project these servers belong to (scope `project`).
    project: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct PlannedFile {
    path: PathBuf,
    /// An error when missing (otherwise skipped).
    required: bool,
    places: Vec<Place>,
}

fn plan_sources(options: &ImportOptions) -> Vec<PlannedFile> {
    match &options.source {
        Source::ClaudeCode { project } => {
            let claude_json = options.user_home.join(".claude.json");
            let mut places = vec![Place {
                at: Where::Top,
                project: None,
            }];
            let mut plan = Vec::new();
            let mut project_file = None;
            if let Some(dir) = project {
                let dir = absolute(dir);
                places.push(Place {
                    at: Where::Project(project_keys(&dir)),
                    project: Some(dir.clone()),
                });
                project_file = Some(PlannedFile {
                    path: dir.join(".mcp.json"),
                    required: false,
                    places: vec![Place {
                        at: Where::Top,
                        project: Some(dir),
                    }],
                });
            }
            plan.push(PlannedFile {
                path: claude_json,
                required: false,
                places,
            });
            plan.extend(project_file);
            plan
        }
        Source::ClaudeDesktop => vec![PlannedFile {
            path: desktop_config(&options.user_home),
            required: true,
            places: vec![Place {
                at: Where::Top,
                project: None,
            }],
        }],
        Source::File(path) => {
            let project = (path.file_name() == Some(".mcp.json".as_ref()))
                .then(|| absolute(path))
                .and_then(|p| p.parent().map(Path::to_owned));
            vec![PlannedFile {
                path: path.clone(),
                required: true,
                places: vec![Place {
                    at: Where::Top,
                    project,
                }],
            }]
        }
    }
}

/// `dir` as an absolute path without `.` or a trailing separator.
fn absolute(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    absolute.components().collect()
}

/// The keys Claude Code may have used for the project at `dir`.
fn project_keys(dir: &Path) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |path: &Path| {
        let text = path.to_string_lossy();
        let text = text.strip_prefix(r"\\?\").unwrap_or(&text).to_owned();
        let mut variants = vec![text.clone()];
        if cfg!(windows) {
            variants.push(text.replace('\\', "/"));
        }
        for variant in variants {
            if !keys.contains(&variant) {
                keys.push(variant);
            }
        }
    };
    add(dir);
    if let Ok(real) = dir.canonicalize() {
        add(&real);
    }
    keys
}

/// A source file, read.
struct Loaded {
    path: PathBuf,
    text: String,
    /// A named file (`--from`): it must have an `mcpServers` object.
    required: bool,
    places: Vec<Place>,
}

fn load_sources(options: &ImportOptions, config_path: &Path) -> Result<Vec<Loaded>, ImportError> {
    let plan = plan_sources(options);
    let own = config_path.canonicalize().ok();
    let mut files = Vec::new();
    for planned in &plan {
        let Some(bytes) = read_optional(&planned.path)? else {
            if planned.required {
                return Err(ImportError::Missing {
                    path: planned.path.clone(),
                });
            }
            continue;
        };
        if own.is_some() && planned.path.canonicalize().ok() == own {
            return Err(ImportError::OwnConfig {
                path: planned.path.clone(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let column =
                valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            ImportError::NotJson {
                path: planned.path.clone(),
                message: "not UTF-8 text".into(),
                line,
                column,
            }
        })?;
        files.push(Loaded {
            path: planned.path.clone(),
            text,
            required: planned.required,
            places: planned.places.clone(),
        });
    }
    if files.is_empty() {
        return Err(ImportError::NoSource {
            looked: plan.into_iter().map(|p| p.path).collect(),
        });
    }
    Ok(files)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ImportError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ImportError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// One server entry found in a source file.
struct Site<'t> {
    file: usize,
    place: String,
    project: Option<PathBuf>,
    name: String,
    /// The entry's value, in the file's text.
    span: Range<usize>,
    entry: Entry<'t>,
}

impl Site<'_> {
    fn describe(&self, files: &[Loaded]) -> String {
        format!("{} ({})", files[self.file].path.display(), self.place)
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// It runs `mcp-proxy` already.
    Imported {
        target: Option<String>,
    },
    Stdio,
    Remote,
}

/// The typed view of an entry, for checking (its text is copied, not this).
#[derive(Debug, Default, Deserialize)]
struct Shape {
    command: Option<String>,
    args: Option<Vec<String>>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    env: Option<BTreeMap<String, String>>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    cwd: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    headers: Option<BTreeMap<String, String>>,
}

struct Entry<'t> {
    members: Vec<(String, &'t RawValue)>,
    /// For comparing entries of the same name.
    value: Value,
    shape: Shape,
    kind: Kind,
    had_type: bool,
}

impl<'t> Entry<'t> {
    /// The raw text of `key`, if present and not `null`.
    fn raw(&self, key: &str) -> Option<&'t RawValue> {
        get(&self.members, key).filter(|raw| raw.get() != "null")
    }
}

fn find_servers<'t>(
    index: usize,
    file: &'t Loaded,
    notes: &mut Vec<String>,
) -> Result<Vec<Site<'t>>, ImportError> {
    let path = &file.path;
    let body = strip_bom(&file.text);
    let top = members(body).map_err(|e| {
        if e.is_data() {
            ImportError::NotAnObject {
                path: path.clone(),
                key: "the top level".into(),
            }
        } else {
            ImportError::NotJson {
                path: path.clone(),
                message: strip_position(&e.to_string()),
                line: e.line(),
                column: e.column(),
            }
        }
    })?;
    let object = |raw: &'t RawValue, key: &str| {
        members(raw.get()).map_err(|_| ImportError::NotAnObject {
            path: path.clone(),
            key: key.to_owned(),
        })
    };
    let mut sites = Vec::new();
    let mut any = false;
    for place in &file.places {
        let (label, servers) = match &place.at {
            Where::Top => ("mcpServers".to_owned(), get(&top, "mcpServers")),
            Where::Project(keys) => {
                let projects = match get(&top, "projects") {
                    Some(projects) => object(projects, "projects")?,
                    None => Vec::new(),
                };
                let found = keys
                    .iter()
                    .find_map(|key| get(&projects, key).map(|project| (key, project)));
                let Some((key, project)) = found else {
                    if let Some(dir) = &place.project {
                        notes.push(format!(
                            "{} has no servers of its own for {} (no projects entry)",
                            path.display(),
                            dir.display()
                        ));
                    }
                    continue;
                };
                let label = format!("projects[{}]", json_string(key));
                let project = object(project, &label)?;
                (format!("{label}.mcpServers"), get(&project, "mcpServers"))
            }
        };
        let Some(servers) = servers else {
            continue;
        };
        any = true;
        for (name, raw) in object(servers, &label)? {
            let span = span_of(&file.text, raw.get())?;
            let entry = read_entry(path, &name, raw)?;
            let unknown: Vec<&str> = entry
                .members
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !known_key(&entry.kind, k))
                .collect();
            if !unknown.is_empty() {
                notes.push(format!(
                    "{name}: not carried over to config.json: {}",
                    unknown.join(", ")
                ));
            }
            if !matches!(entry.kind, Kind::Imported { .. }) && !is_valid_name(&name) {
                return Err(ImportError::BadName {
                    path: path.clone(),
                    name,
                });
            }
            sites.push(Site {
                file: index,
                place: label.clone(),
                project: place.project.clone(),
                name,
                span,
                entry,
            });
        }
    }
    if !any && file.required {
        return Err(ImportError::NoServers { path: path.clone() });
    }
    Ok(sites)
}

fn known_key(kind: &Kind, key: &str) -> bool {
    match kind {
        Kind::Imported { .. } => true,
        Kind::Stdio => matches!(key, "type" | "command" | "args" | "env" | "cwd"),
        Kind::Remote => matches!(key, "type" | "url" | "headers"),
    }
}

fn read_entry<'t>(path: &Path, name: &str, raw: &'t RawValue) -> Result<Entry<'t>, ImportError> {
    let bad = |problem: String| ImportError::BadEntry {
        path: path.to_owned(),
        name: name.to_owned(),
        problem,
    };
    let members = members(raw.get()).map_err(|_| bad("is not a JSON object".into()))?;
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let shape: Shape = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let key = e.path().to_string();
        // Never echo a value of env or headers: it may be a secret.
        if key.starts_with("env") || key.starts_with("headers") {
            bad(format!("`{key}`: every value must be a string"))
        } else {
            bad(format!(
                "`{key}`: {}",
                strip_position(&e.into_inner().to_string())
            ))
        }
    })?;
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ImportError::Internal(e.to_string()))?;
    let had_type = get(&members, "type").is_some();
    let kind = match (&shape.command, shape.kind.as_deref(), &shape.url) {
        (Some(command), _, _) if is_proxy(command) => Kind::Imported {
            target: target_of(shape.args.as_deref().unwrap_or_default()),
        },
        (Some(_), None | Some("stdio"), None) => Kind::Stdio,
        (None, Some("stdio"), _) => {
            return Err(bad(
                "has \"type\": \"stdio\" but no \"command\"; add the command to run".into(),
            ));
        }
        (Some(_), None, Some(_)) => {
            return Err(bad(
                "has both a \"command\" and a \"url\"; keep the one it uses (or add \"type\")"
                    .into(),
            ));
        }
        (Some(_), Some("stdio"), Some(_)) => Kind::Stdio,
        (_, Some("http" | "sse" | "streamable-http" | "streamableHttp"), None) => {
            return Err(bad(format!(
                "has \"type\": {:?} but no \"url\"; add the server's URL",
                shape.kind.as_deref().unwrap_or_default()
            )));
        }
        (_, None | Some("http" | "sse" | "streamable-http" | "streamableHttp"), Some(_)) => {
            Kind::Remote
        }
        (_, Some(other), _) => {
            return Err(bad(format!(
                "unknown \"type\": {other:?}; use \"stdio\", \"http\" or \"sse\""
            )));
        }
        (None, None, None) => {
            return Err(ImportError::MissingCommandOrUrl {
                path: path.to_owned(),
                name: name.to_owned(),
            });
        }
    };
    Ok(Entry {
        members,
        value,
        shape,
        kind,
        had_type,
    })
}

/// `mcp-proxy` or `mcp-proxy.exe`, wherever it is.
fn is_proxy(command: &str) -> bool {
    let name = command.rsplit(['/', '\\']).next().unwrap_or(command);
    name == "mcp-proxy" || name.eq_ignore_ascii_case("mcp-proxy.exe")
}

fn target_of(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--target" {
            return args.next().cloned();
        }
        if let Some(name) = arg.strip_prefix("--target=") {
            return Some(name.to_owned());
        }
    }
    None
}

/// The config's rule for names (they name lock and log files).
fn is_valid_name(name: &str) -> bool {
    crate::config::is_valid_name(name)
}

fn check_scope_names(options: &ImportOptions, sites: &[Site<'_>]) -> Result<(), ImportError> {
    for name in options.scopes.keys() {
        if !sites.iter().any(|s| s.name == *name) {
            let found: BTreeSet<String> = sites.iter().map(|s| s.name.clone()).collect();
            return Err(ImportError::UnknownScopeName {
                name: name.clone(),
                found: found.into_iter().collect(),
            });
        }
    }
    Ok(())
}

/// The source entry, pointed at the proxy, formatted like the one it
/// replaces (on one line if that one was).
fn proxy_entry(text: &str, site: &Site<'_>, proxy: &Path) -> String {
    let mut members = Vec::new();
    if site.entry.had_type {
        members.push(("type".to_owned(), Node::string("stdio")));
    }
    members.push(("command".to_owned(), Node::string(&proxy.to_string_lossy())));
    members.push((
        "args".to_owned(),
        Node::Array(vec![Node::string("--target"), Node::string(&site.name)]),
    ));
    let node = Node::Object(members);
    let mut out = String::new();
    if text[site.span.clone()].contains('\n') {
        node.pretty(
            line_indent(text, site.span.start),
            &indent_step(text),
            &mut out,
        );
    } else {
        node.inline(&mut out);
    }
    out
}

/// The config.json entry for a source entry (`port` only for stdio ones).
fn config_entry<'t>(site: &Site<'t>, port: u16, scope: Scope) -> Node<'t> {
    let entry = &site.entry;
    let mut members = Vec::new();
    let mut copy = |key: &str| {
        if let Some(raw) = entry.raw(key) {
            members.push((key.to_owned(), Node::from_raw(raw)));
            true
        } else {
            false
        }
    };
    match entry.kind {
        Kind::Stdio => {
            copy("command");
            copy("args");
            copy("env");
            let has_cwd = copy("cwd");
            if let (false, Some(dir)) = (has_cwd, &site.project) {
                members.push(("cwd".to_owned(), Node::string(&dir.to_string_lossy())));
            }
            members.push(("port".to_owned(), Node::Text(port.to_string().into())));
            members.push(("scope".to_owned(), Node::string(scope_name(scope))));
        }
        _ => {
            copy("type");
            copy("url");
            copy("headers");
            let plain_http_elsewhere = entry
                .shape
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .is_some_and(|u| u.scheme() == "http" && !crate::http::is_loopback(&u));
            if plain_http_elsewhere {
                members.push(("allowHttp".to_owned(), Node::Text("true".into())));
            }
        }
    }
    Node::Object(members)
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Shared => "shared",
        Scope::Project => "project",
        Scope::Session => "session",
    }
}

/// What makes two entries the same server (ports, scopes and timeouts
/// aside).
#[derive(Debug, PartialEq)]
enum Definition {
    Hosted {
        command: Value,
        args: Value,
        env: Value,
        cwd: Value,
    },
    Remote {
        url: Value,
        headers: Value,
        transport: String,
    },
    Other(Value),
}

fn definition(entry: &Value) -> Definition {
    let field = |key: &str, default: Value| {
        entry
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    if let Some(url) = text("url") {
        let transport = match text("transport").or(text("type")) {
            Some("sse") => "sse",
            Some("http") if text("transport").is_some() => "http",
            Some(_) => "streamable-http",
            None if url.trim_end_matches('/').ends_with("/sse") => "sse",
            None => "streamable-http",
        };
        return Definition::Remote {
            url: field("url", Value::Null),
            headers: field("headers", Value::Object(serde_json::Map::new())),
            transport: transport.to_owned(),
        };
    }
    if entry.get("command").is_some_and(|c| !c.is_null()) {
        return Definition::Hosted {
            command: field("command", Value::Null),
            args: field("args", Value::Array(Vec::new())),
            env: field("env", Value::Object(serde_json::Map::new())),
            cwd: field("cwd", Value::Null),
        };
    }
    Definition::Other(entry.clone())
}

/// A URL fit to show: no user, password, query or fragment.
fn shown_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let hidden = url.query().is_some() || !url.username().is_empty();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            if hidden {
                format!("{url}?…")
            } else {
                url.to_string()
            }
        }
        Err(_) => "(a URL with variables)".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// config.json.

struct ConfigState {
    path: PathBuf,
    /// `None`: there is no config file.
    text: Option<String>,
    /// Its entries as written (not expanded), by name.
    servers: BTreeMap<String, Value>,
    /// Ports its entries use (the built-ins' when there is no file).
    ports: BTreeSet<u16>,
}

impl ConfigState {
    fn load(path: &Path) -> Result<ConfigState, ImportError> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(ConfigState {
                path: path.to_owned(),
                text: None,
                servers: BTreeMap::new(),
                ports: Config::builtin()
                    .servers
                    .values()
                    .filter_map(|s| s.port)
                    .collect(),
            });
        };
        let config = Config::parse(path, &bytes).map_err(|e| ImportError::Config {
            message: format!("{e}; fix it first, then import"),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ImportError::Config {
            message: format!("config {} is not UTF-8 text", path.display()),
        })?;
        let value: Value = serde_json::from_str(strip_bom(&text))
            .map_err(|e| ImportError::Internal(e.to_string()))?;
        let servers = value
            .get("mcpServers")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(ConfigState {
            path: path.to_owned(),
            text: Some(text),
            servers,
            ports: config.servers.values().filter_map(|s| s.port).collect(),
        })
    }

    /// The config text with `new` added to its `mcpServers`.
    fn with_members(&self, new: &[(String, Node<'_>)], step: &str) -> Result<String, ImportError> {
        let servers = Node::Object(
            new.iter()
                .map(|(name, node)| (name.clone(), node.clone()))
                .collect(),
        );
        let Some(text) = &self.text else {
            let mut out = String::new();
            Node::Object(vec![("mcpServers".to_owned(), servers)]).pretty("", step, &mut out);
            out.push('\n');
            return Ok(out);
        };
        let body = strip_bom(text);
        let internal =
            |what: &str| ImportError::Internal(format!("{what} in {}", self.path.display()));
        let top = members(body).map_err(|_| internal("no top-level object"))?;
        let (object, members_to_add) = match get(&top, "mcpServers") {
            Some(raw) => (raw, new.to_vec()),
            None => {
                let raw: &RawValue =
                    serde_json::from_str(body).map_err(|_| internal("no top-level object"))?;
                (raw, vec![("mcpServers".to_owned(), servers)])
            }
        };
        let span = span_of(text, object.get())?;
        let existing = members(object.get()).map_err(|_| internal("mcpServers not an object"))?;
        let mut out = text.clone();
        match existing.last() {
            None => {
                let mut rendered = String::new();
                Node::Object(members_to_add).pretty(
                    line_indent(text, span.start),
                    step,
                    &mut rendered,
                );
                out.replace_range(span, &rendered);
            }
            Some((_, last)) => {
                let end = span_of(text, last.get())?.end;
                let inner = &text[span.start + 1..];
                let lead = &inner[..inner.len() - inner.trim_start().len()];
                let mut insert = String::new();
                for (name, node) in &members_to_add {
                    insert.push(',');
                    match lead.rfind('\n') {
                        Some(cut) => {
                            let indent = &lead[cut + 1..];
                            insert.push('\n');
                            insert.push_str(indent);
                            insert.push_str(&json_string(name));
                            insert.push_str(": ");
                            node.pretty(indent, step, &mut insert);
                        }
                        None => {
                            insert.push(' ');
                            insert.push_str(&json_string(name));
                            insert.push_str(": ");
                            node.inline(&mut insert);
                        }
                    }
                }
                out.insert_str(end, &insert);
            }
        }
        Ok(out)
    }
}

fn free_port(used: &BTreeSet<u16>) -> Option<u16> {
    PORTS
        .filter(|port| !used.contains(port))
        .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
}

// ---------------------------------------------------------------------------
// JSON text: members in order, byte spans, rendering.

/// An object's members in file order, each value borrowed from the text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Collect;
        impl<'de> Visitor<'de> for Collect {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Collect)
    }
}

fn members(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    serde_json::from_str::<Members<'_>>(text).map(|m| m.0)
}

/// The last member named `key` (JSON.parse keeps the last of duplicates).
fn get<'a>(members: &[(String, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
}

/// Where `part`, which borrows from `text`, lies in it.
fn span_of(text: &str, part: &str) -> Result<Range<usize>, ImportError> {
    (part.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .map(|start| start..start + part.len())
        .filter(|span| span.end <= text.len())
        .ok_or_else(|| ImportError::Internal("a JSON value outside its text".into()))
}

/// The whitespace that starts the line holding byte `at`.
fn line_indent(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The file's indentation unit: the leading whitespace of its first
/// indented line ("  " when there is none).
fn indent_step(text: &str) -> String {
    text.lines()
        .map(|line| {
            let rest = line.trim_start_matches([' ', '\t']);
            (&line[..line.len() - rest.len()], rest)
        })
        .find(|(indent, rest)| !indent.is_empty() && !rest.is_empty())
        .map_or_else(|| "  ".to_owned(), |(indent, _)| indent.to_owned())
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A JSON value to write: objects and arrays in their given order, every
/// scalar as its exact source text.
#[derive(Debug, Clone)]
enum Node<'a> {
    Object(Vec<(String, Node<'a>)>),
    Array(Vec<Node<'a>>),
    Text(Cow<'a, str>),
}

impl<'a> Node<'a> {
    fn string(text: &str) -> Node<'a> {
        Node::Text(Cow::Owned(json_string(text)))
    }

    fn from_raw(raw: &'a RawValue) -> Node<'a> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => match members(text) {
                Ok(m) => Node::Object(m.into_iter().map(|(k, v)| (k, Node::from_raw(v))).collect()),
                Err(_) => Node::Text(Cow::Borrowed(text)),
            },
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => Node::Array(items.into_iter().map(Node::from_raw).collect()),
                Err(_) => Node::Text(Cow::Borrowed(text)),
            },
            _ => Node::Text(Cow::Borrowed(text)),
        }
    }

    /// The member `key` of an object.
    fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn to_value(&self) -> Result<Value, ImportError> {
        let mut text = String::new();
        self.inline(&mut text);
        serde_json::from_str(&text).map_err(|e| ImportError::Internal(e.to_string()))
    }

    /// Multi-line, members at `indent` + `step`, closing at `indent`.
    fn pretty(&self, indent: &str, step: &str, out: &mut String) {
        let inner = format!("{indent}{step}");
        match self {
            Node::Text(text) => out.push_str(text),
            Node::Object(members) if members.is_empty() => out.push_str("{}"),
            Node::Array(items) if items.is_empty() => out.push_str("[]"),
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&inner);
                    out.push_str(&json_string(key));
                    out.push_str(": ");
                    value.pretty(&inner, step, out);
                }
                out.push('\n');
                out.push_str(indent);
                out.push('}');
            }
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&inner);
                    item.pretty(&inner, step, out);
                }
                out.push('\n');
                out.push_str(indent);
                out.push(']');
            }
        }
    }

    /// On one line: `{"a": 1, "b": [2, 3]}`.
    fn inline(&self, out: &mut String) {
        match self {
            Node::Text(text) => out.push_str(text),
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&json_string(key));
                    out.push_str(": ");
                    value.inline(out);
                }
                out.push('}');
            }
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.inline(out);
                }
                out.push(']');
            }
        }
    }
}

/// serde_json appends " at line L column C"; the error shows those itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Files.

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
/// taking the next free number if that one exists.
fn write_beside(path: &Path, tag: &str, ms: u64, bytes: &[u8]) -> Result<PathBuf, ImportError> {
    let (dir, name) = dir_and_name(path);
    for bump in 0..1000 {
        let target = dir.join(format!("{name}.{tag}.{}", ms + bump));
        match create_private(&target) {
            Ok(mut file) => {
                return file
                    .write_all(bytes)
                    .and_then(|()| file.sync_all())
                    .map(|()| target.clone())
                    .map_err(|source| ImportError::Write {
                        path: target,
                        source,
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(ImportError::Write {
                    path: target,
                    source,
                });
            }
        }
    }
    Err(ImportError::Write {
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
/// its permissions; `private` ones are 0600 on unix.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), ImportError> {
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
        ImportError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Display.

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.servers.is_empty() {
            writeln!(f, "no MCP servers found in {}", list(&self.sources))?;
        }
        let width = self.servers.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for server in &self.servers {
            let what = match &server.outcome {
                Outcome::Hosted { port, scope } => format!(
                    "stdio server → hosted on port {port}, scope {}",
                    scope_name(*scope)
                ),
                Outcome::Remote { url } => format!("remote server {url} → kept as a url entry"),
                Outcome::AlreadyInConfig => {
                    "already in config.json → entry pointed at mcp-proxy".to_owned()
                }
                Outcome::AlreadyImported { .. } => "already imported (runs mcp-proxy)".to_owned(),
            };
            writeln!(
                f,
                "  {:<width$}  {what}   [{} of {}]",
                server.name,
                server.place,
                server.file.display()
            )?;
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
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        Ok(())
    }
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

// ---------------------------------------------------------------------------
// Registering proxies in a Claude Code file (generate-config --scope).

/// What [`register_proxies`] did.
#[derive(Debug, Default, Serialize)]
pub struct Registered {
    pub path: PathBuf,
    /// Entries added.
    pub added: Vec<String>,
    /// Entries that already ran mcp-proxy: left as they were.
    pub kept: Vec<String>,
    pub backup: Option<PathBuf>,
}

/// Adds `{"command": proxy, "args": ["--target", NAME, extra…]}` for each
/// name to the `mcpServers` of a Claude Code file (`~/.claude.json`, a
/// project's `.mcp.json`), creating it if need be and keeping every other
/// byte. An entry that already runs mcp-proxy is left alone; a different
/// server of the same name is refused (move it with `import` first). A
/// backup is kept beside the file; the write is atomic.
///
/// # Errors
/// [`ImportError`]: unreadable or invalid file, a clash; nothing written.
pub fn register_proxies(
    path: &Path,
    names: &[String],
    proxy: &Path,
    extra_args: &[String],
) -> Result<Registered, ImportError> {
    let bytes = read_optional(path)?;
    let text = match &bytes {
        Some(bytes) => Some(
            String::from_utf8(bytes.clone()).map_err(|_| ImportError::Config {
                message: format!("{} is not UTF-8 text", path.display()),
            })?,
        ),
        None => None,
    };
    let existing: serde_json::Map<String, Value> = match &text {
        Some(text) => {
            let value: Value =
                serde_json::from_str(strip_bom(text)).map_err(|e| ImportError::NotJson {
                    path: path.to_owned(),
                    message: strip_position(&e.to_string()),
                    line: e.line(),
                    column: e.column(),
                })?;
            if !value.is_object() {
                return Err(ImportError::NotAnObject {
                    path: path.to_owned(),
                    key: "(the file)".into(),
                });
            }
            match value.get("mcpServers") {
                None => serde_json::Map::new(),
                Some(Value::Object(servers)) => servers.clone(),
                Some(_) => {
                    return Err(ImportError::NotAnObject {
                        path: path.to_owned(),
                        key: "mcpServers".into(),
                    });
                }
            }
        }
        None => serde_json::Map::new(),
    };
    let mut report = Registered {
        path: path.to_owned(),
        ..Registered::default()
    };
    let mut new = Vec::new();
    for name in names {
        match existing.get(name) {
            Some(entry)
                if entry
                    .get("command")
                    .and_then(Value::as_str)
                    .is_some_and(is_proxy) =>
            {
                report.kept.push(name.clone());
            }
            Some(_) => {
                return Err(ImportError::BadEntry {
                    path: path.to_owned(),
                    name: name.clone(),
                    problem: "a different server has this name; move it onto the shared daemons with `mcp-manager import` first (or rename it)".into(),
                });
            }
            None => {
                let args = ["--target".to_owned(), name.clone()]
                    .iter()
                    .chain(extra_args)
                    .map(|a| Node::string(a))
                    .collect();
                let entry = Node::Object(vec![
                    ("command".to_owned(), Node::string(&proxy.to_string_lossy())),
                    ("args".to_owned(), Node::Array(args)),
                ]);
                new.push((name.clone(), entry));
                report.added.push(name.clone());
            }
        }
    }
    if new.is_empty() {
        return Ok(report);
    }
    let step = text.as_deref().map_or_else(|| "  ".to_owned(), indent_step);
    let state = ConfigState {
        path: path.to_owned(),
        text,
        servers: BTreeMap::new(),
        ports: BTreeSet::new(),
    };
    let out = state.with_members(&new, &step)?;
    if let Some(bytes) = &bytes {
        report.backup = Some(write_beside(path, "backup", crate::paths::now_ms(), bytes)?);
    }
    write_atomic(path, out.as_bytes(), false)?;
    Ok(report)
}

impl fmt::Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.added.is_empty() {
            write!(
                f,
                "{}: every entry already runs mcp-proxy; nothing to write",
                self.path.display()
            )?;
        } else {
            write!(
                f,
                "wrote {}: added {}",
                self.path.display(),
                self.added.join(", ")
            )?;
        }
        if !self.kept.is_empty() {
            write!(
                f,
                "\nalready through mcp-proxy, left as they were: {}",
                self.kept.join(", ")
            )?;
        }
        if let Some(backup) = &self.backup {
            write!(f, "\nthe previous file is kept as {}", backup.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A user home, a tool home inside it and an installed proxy.
    struct Fixture {
        dir: tempfile::TempDir,
        user_home: PathBuf,
        home: PathBuf,
        proxy: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let user_home = dir.path().join("me");
        let home = user_home.join(".mcp-session-manager");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&user_home).expect("user home");
        std::fs::create_dir_all(&bin).expect("bin");
        let proxy = bin.join("mcp-proxy");
        std::fs::write(&proxy, "").expect("proxy");
        Fixture {
            dir,
            user_home,
            home,
            proxy,
        }
    }

    impl Fixture {
        fn options(&self, source: Source) -> ImportOptions {
            ImportOptions {
                source,
                user_home: self.user_home.clone(),
                home: self.home.clone(),
                proxy: self.proxy.clone(),
                scopes: BTreeMap::new(),
                dry_run: false,
            }
        }

        fn claude_code(&self) -> ImportOptions {
            self.options(Source::ClaudeCode { project: None })
        }

        fn claude_json(&self) -> PathBuf {
            self.user_home.join(".claude.json")
        }

        fn config(&self) -> PathBuf {
            crate::paths::config_file(&self.home)
        }

        fn write(&self, path: &Path, text: &str) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("dir");
            }
            std::fs::write(path, text).expect("write");
        }

        /// Every file under the temporary directory, with its bytes.
        fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
            fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
                for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        out.insert(path.clone(), std::fs::read(&path).expect("read"));
                    }
                }
            }
            let mut out = BTreeMap::new();
            walk(self.dir.path(), &mut out);
            out
        }
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
    }

    fn read_text(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read")
    }

    const CLAUDE_JSON: &str = r#"{
  "numStartups": 5,
  "mcpServers": {
    "github": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-github"
      ],
      "env": {
        "GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}",
        "PLAIN_SECRET": "s3cr3t-value"
      }
    },
    "linear": {
      "type": "sse",
      "url": "https://mcp.linear.app/sse",
      "headers": {
        "Authorization": "Bearer ${LINEAR_TOKEN}",
        "X-Api-Key": "h3ader-s3cret"
      }
    }
  },
  "tipsHistory": {}
}
"#;

    /// A stdio entry becomes a hosted one and a remote one a url entry, both
    /// with their env and headers as written (`${VAR}` kept); the source
    /// entries run the proxy; the config parses; no secret is shown.
    #[test]
    fn claude_code_servers_move_to_the_config() {
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        let report = import(&f.claude_code()).expect("import");

        let config_text = read_text(&f.config());
        let config = Config::parse(&f.config(), config_text.as_bytes()).expect("config parses");
        assert!(config_text.contains(r#""GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}""#));
        assert!(config_text.contains(r#""Authorization": "Bearer ${LINEAR_TOKEN}""#));
        let written = read_json(&f.config());
        let github = &written["mcpServers"]["github"];
        assert_eq!(github["command"], "npx");
        assert_eq!(
            github["args"],
            json!(["-y", "@modelcontextprotocol/server-github"])
        );
        assert_eq!(github["scope"], "shared");
        let port = github["port"].as_u64().expect("a port");
        assert!(PORTS.contains(&u16::try_from(port).expect("u16")));
        assert_eq!(
            config.servers["github"].transport,
            crate::config::TransportKind::Stdio
        );
        let linear = &written["mcpServers"]["linear"];
        assert_eq!(
            linear,
            &json!({"type": "sse", "url": "https://mcp.linear.app/sse",
                "headers": {"Authorization": "Bearer ${LINEAR_TOKEN}", "X-Api-Key": "h3ader-s3cret"}})
        );
        assert_eq!(
            config.servers["linear"].transport,
            crate::config::TransportKind::Sse
        );

        let source = read_json(&f.claude_json());
        let proxy = f.proxy.to_string_lossy();
        assert_eq!(
            source["mcpServers"]["github"],
            json!({"type": "stdio", "command": proxy, "args": ["--target", "github"]})
        );
        assert_eq!(
            source["mcpServers"]["linear"],
            json!({"type": "stdio", "command": proxy, "args": ["--target", "linear"]})
        );
        assert_eq!(source["numStartups"], 5);

        assert!(matches!(
            report.servers[0].outcome,
            Outcome::Hosted {
                scope: Scope::Shared,
                ..
            }
        ));
        assert_eq!(
            report.servers[1].outcome,
            Outcome::Remote {
                url: "https://mcp.linear.app/sse".into()
            }
        );
        assert_eq!(report.files.len(), 2);
        assert_eq!(report.files[0].path, f.config());
        assert!(report.files[0].created);
        assert!(report.files[1].backup.is_some());
        assert!(
            report.notes.iter().any(|n| n.contains("built-in")),
            "{:?}",
            report.notes
        );
        let shown = format!(
            "{report}{}",
            serde_json::to_string(&report).expect("serialize")
        );
        for secret in [
            "s3cr3t",
            "h3ader",
            "Bearer",
            "GITHUB_TOKEN",
            "server-github",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("github") && shown.contains("linear"),
            "{shown}"
        );
    }

    /// Only the entry's bytes change: keys before and after, nested
    /// objects, unicode, odd spacing and CRLF stay byte for byte, and an
    /// entry on one line is replaced by one on one line.
    #[test]
    fn every_other_byte_of_the_source_stays() {
        let f = fixture();
        let before = "{\n\t\"zeta\" : {\"nested\": {\"deep\": [1, 2, {\"x\": \"é ☃ \\u00e9\"}]}},\r\n  \"mcpServers\":{ \"keep\" :{\"command\":\"/opt/mcp-proxy\",\"args\":[\"--target\",\"keep\"]},\n      \"srv\"   :   ";
        let entry =
            "{ \"command\" : \"node\", \"args\": [\"s.js\", \"ü\"], \"env\": {\"K\": \"${V}\"} }";
        let after = "  ,\"other\": {\"command\": \"C:\\\\bin\\\\MCP-PROXY.EXE\"}},\n\"alpha\": 1e3, \"emoji\": \"🦀\",   \"arr\":[ ]\n}\n";
        f.write(&f.claude_json(), &format!("{before}{entry}{after}"));
        let report = import(&f.claude_code()).expect("import");
        let text = read_text(&f.claude_json());
        assert!(text.starts_with(before), "{text}");
        assert!(text.ends_with(after), "{text}");
        let middle = &text[before.len()..text.len() - after.len()];
        assert!(!middle.contains('\n'), "{middle}");
        assert_eq!(
            serde_json::from_str::<Value>(middle).expect("entry"),
            json!({"command": f.proxy.to_string_lossy(), "args": ["--target", "srv"]})
        );
        let outcomes: Vec<&Outcome> = report.servers.iter().map(|s| &s.outcome).collect();
        assert!(matches!(outcomes[0], Outcome::AlreadyImported { target: Some(t) } if t == "keep"));
        assert!(matches!(outcomes[1], Outcome::Hosted { .. }));
        assert!(matches!(
            outcomes[2],
            Outcome::AlreadyImported { target: None }
        ));
        let config = read_json(&f.config());
        assert_eq!(config["mcpServers"]["srv"]["args"], json!(["s.js", "ü"]));
        assert_eq!(config["mcpServers"]["srv"]["env"], json!({"K": "${V}"}));
    }

    /// A multi-line entry is replaced by one indented like its neighbours.
    #[test]
    fn a_replaced_entry_is_indented_like_the_file() {
        let f = fixture();
        f.write(
            &f.claude_json(),
            "{\n    \"mcpServers\": {\n        \"a\": {\n            \"command\": \"x\"\n        }\n    }\n}\n",
        );
        import(&f.claude_code()).expect("import");
        let proxy = json_string(&f.proxy.to_string_lossy());
        assert_eq!(
            read_text(&f.claude_json()),
            format!(
                "{{\n    \"mcpServers\": {{\n        \"a\": {{\n            \"command\": {proxy},\n            \"args\": [\n                \"--target\",\n                \"a\"\n            ]\n        }}\n    }}\n}}\n"
            )
        );
    }

    /// A dry run reads and checks everything, reports, and writes nothing.
    #[test]
    fn a_dry_run_writes_nothing() {
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        let before = f.snapshot();
        let mut options = f.claude_code();
        options.dry_run = true;
        let report = import(&options).expect("dry run");
        assert_eq!(f.snapshot(), before);
        assert!(!f.home.exists());
        assert_eq!(report.files.len(), 2);
        assert!(report.files.iter().all(|c| c.backup.is_none()));
        let shown = report.to_string();
        assert!(
            shown.contains("would write") && shown.contains("dry run"),
            "{shown}"
        );
    }

    /// Running the import again changes nothing: every entry already runs
    /// the proxy.
    #[test]
    fn a_second_run_is_a_no_op() {
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        import(&f.claude_code()).expect("first");
        let before = f.snapshot();
        let report = import(&f.claude_code()).expect("second");
        assert_eq!(f.snapshot(), before);
        assert!(report.files.is_empty());
        assert!(
            report
                .servers
                .iter()
                .all(|s| matches!(s.outcome, Outcome::AlreadyImported { .. }))
        );
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        assert!(report.to_string().contains("already imported"));
    }

    /// Undo puts the source and an existing config.json back byte for byte
    /// (keeping what it replaces); a config.json the import created is
    /// removed.
    #[test]
    fn undo_restores_every_file_byte_for_byte() {
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        let original_config = "{\"managerPort\": 3199,\n \"mcpServers\": {\"fs\": {\"command\": \"fs-server\", \"port\": 3110}}}";
        f.write(&f.config(), original_config);
        import(&f.claude_code()).expect("import");
        assert_ne!(read_text(&f.claude_json()), CLAUDE_JSON);

        let mut dry = f.claude_code();
        dry.dry_run = true;
        let before = f.snapshot();
        let planned = undo(&dry).expect("dry undo");
        assert_eq!(f.snapshot(), before);
        assert_eq!(planned.restored.len(), 2);

        let report = undo(&f.claude_code()).expect("undo");
        assert_eq!(read_text(&f.claude_json()), CLAUDE_JSON);
        assert_eq!(read_text(&f.config()), original_config);
        assert_eq!(report.files(), vec![f.claude_json(), f.config()]);
        assert!(report.restored.iter().all(|r| r.replaced.is_some()));
        assert!(report.to_string().contains("restored"));

        // Without a config.json before, undo removes the one import wrote.
        let g = fixture();
        g.write(&g.claude_json(), CLAUDE_JSON);
        import(&g.claude_code()).expect("import");
        let report = undo(&g.claude_code()).expect("undo");
        assert_eq!(read_text(&g.claude_json()), CLAUDE_JSON);
        assert!(!g.config().exists());
        assert_eq!(report.removed, vec![g.config()]);
        // And nothing to undo in a fresh home.
        let h = fixture();
        let report = undo(&h.claude_code()).expect("undo");
        assert!(report.files().is_empty());
        assert!(report.to_string().contains("nothing to undo"));
    }

    /// A name config.json already uses for another server stops the
    /// import before anything is written; the same server is reused.
    #[test]
    fn a_clashing_name_is_refused_and_nothing_is_written() {
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        f.write(
            &f.config(),
            r#"{"mcpServers": {"github": {"command": "other", "port": 3150}}}"#,
        );
        let before = f.snapshot();
        let error = import(&f.claude_code()).expect_err("clash").to_string();
        assert!(
            error.contains("\"github\"") && error.contains("rename"),
            "{error}"
        );
        assert_eq!(f.snapshot(), before);

        // The very same server: reused, only the source is rewritten.
        f.write(
            &f.config(),
            r#"{"mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}", "PLAIN_SECRET": "s3cr3t-value"}, "port": 3150, "scope": "session"}}}"#,
        );
        let report = import(&f.claude_code()).expect("import");
        assert_eq!(report.servers[0].outcome, Outcome::AlreadyInConfig);
        let config = read_json(&f.config());
        assert_eq!(config["mcpServers"]["github"]["port"], 3150);
        assert!(config["mcpServers"]["linear"].is_object());
    }

    /// A source that is not JSON is named with the line and column.
    #[test]
    fn a_source_that_is_not_json_is_named_with_its_position() {
        let f = fixture();
        f.write(&f.claude_json(), "{\n  \"mcpServers\": {,\n}");
        let before = f.snapshot();
        let error = import(&f.claude_code()).expect_err("not json");
        assert!(
            matches!(error, ImportError::NotJson { line: 2, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(".claude.json")
                && message.contains("line 2")
                && message.contains("column"),
            "{message}"
        );
        assert_eq!(f.snapshot(), before);
    }

    /// An entry with neither command nor url is named, with the fix.
    #[test]
    fn an_entry_without_command_or_url_is_refused() {
        let f = fixture();
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"ok": {"command": "x"}, "broken": {"args": ["y"]}}}"#,
        );
        let before = f.snapshot();
        let error = import(&f.claude_code()).expect_err("broken").to_string();
        assert!(
            error.contains("\"broken\"")
                && error.contains("\"command\"")
                && error.contains("\"url\""),
            "{error}"
        );
        assert_eq!(f.snapshot(), before);
    }

    /// Other bad entries: a bad name, a wrong type, an env value that is
    /// not a string (whose value is never echoed).
    #[test]
    fn bad_entries_are_named() {
        let f = fixture();
        let error = |text: &str| {
            f.write(&f.claude_json(), text);
            import(&f.claude_code()).expect_err("bad").to_string()
        };
        let e = error(r#"{"mcpServers": {"my server": {"command": "x"}}}"#);
        assert!(e.contains("\"my server\"") && e.contains("rename"), "{e}");
        let e = error(r#"{"mcpServers": {"w": {"type": "ws", "url": "wss://x"}}}"#);
        assert!(e.contains("\"w\"") && e.contains("\"ws\""), "{e}");
        let e = error(r#"{"mcpServers": {"h": {"type": "http"}}}"#);
        assert!(e.contains("\"h\"") && e.contains("url"), "{e}");
        let e = error(r#"{"mcpServers": {"n": {"command": "x", "env": {"PIN": 123456}}}}"#);
        assert!(e.contains("env.PIN") && !e.contains("123456"), "{e}");
        let e = error(r#"{"mcpServers": []}"#);
        assert!(e.contains("mcpServers") && e.contains("object"), "{e}");
        let e = error(r#"{"mcpServers": {"s": "npx"}}"#);
        assert!(e.contains("\"s\"") && e.contains("object"), "{e}");
        assert!(!f.config().exists());
    }

    /// Servers of a project (its `projects` entry and its `.mcp.json`) get
    /// scope `project` and the project as cwd; user-level ones `shared`;
    /// `--scope` overrides.
    #[test]
    fn project_servers_get_the_project_scope() {
        let f = fixture();
        let project = f.dir.path().join("work").join("app");
        std::fs::create_dir_all(&project).expect("project");
        let key = absolute(&project).to_string_lossy().into_owned();
        let claude = json!({
            "mcpServers": {"user1": {"command": "u"}, "user2": {"command": "v"}},
            "projects": {
                "/somewhere/else": {"mcpServers": {"elsewhere": {"command": "e"}}},
                key.clone(): {"allowedTools": [], "mcpServers": {"local1": {"command": "l", "cwd": "/srv"}}}
            }
        });
        f.write(
            &f.claude_json(),
            &serde_json::to_string_pretty(&claude).expect("json"),
        );
        f.write(
            &project.join(".mcp.json"),
            r#"{"mcpServers": {"team1": {"type": "stdio", "command": "t", "args": []}}}"#,
        );
        let mut options = f.options(Source::ClaudeCode {
            project: Some(project.clone()),
        });
        options.scopes.insert("user2".into(), Scope::Session);
        let report = import(&options).expect("import");
        let scope_of = |name: &str| {
            report
                .servers
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.outcome.clone())
        };
        assert!(matches!(
            scope_of("user1"),
            Some(Outcome::Hosted {
                scope: Scope::Shared,
                ..
            })
        ));
        assert!(matches!(
            scope_of("user2"),
            Some(Outcome::Hosted {
                scope: Scope::Session,
                ..
            })
        ));
        assert!(matches!(
            scope_of("local1"),
            Some(Outcome::Hosted {
                scope: Scope::Project,
                ..
            })
        ));
        assert!(matches!(
            scope_of("team1"),
            Some(Outcome::Hosted {
                scope: Scope::Project,
                ..
            })
        ));
        assert!(scope_of("elsewhere").is_none());
        let local = report
            .servers
            .iter()
            .find(|s| s.name == "local1")
            .expect("local1");
        assert_eq!(
            local.place,
            format!("projects[{}].mcpServers", json_string(&key))
        );

        let config = read_json(&f.config());
        assert_eq!(config["mcpServers"]["team1"]["cwd"], json!(key));
        assert_eq!(config["mcpServers"]["local1"]["cwd"], "/srv");
        assert!(config["mcpServers"]["user1"].get("cwd").is_none());
        Config::parse(&f.config(), &std::fs::read(f.config()).expect("read")).expect("parses");
        let ports: BTreeSet<Option<u64>> = config["mcpServers"]
            .as_object()
            .expect("servers")
            .values()
            .map(|s| s["port"].as_u64())
            .collect();
        assert_eq!(ports.len(), 4);

        let claude = read_json(&f.claude_json());
        assert_eq!(
            claude["projects"][&key]["mcpServers"]["local1"]["args"],
            json!(["--target", "local1"])
        );
        assert_eq!(
            claude["projects"]["/somewhere/else"]["mcpServers"]["elsewhere"]["command"],
            "e"
        );
        let team = read_json(&project.join(".mcp.json"));
        assert_eq!(team["mcpServers"]["team1"]["type"], "stdio");
        assert_eq!(
            team["mcpServers"]["team1"]["args"],
            json!(["--target", "team1"])
        );

        // A name --scope does not know is refused.
        options.scopes.insert("nope".into(), Scope::Shared);
        let error = import(&options).expect_err("unknown").to_string();
        assert!(error.contains("nope") && error.contains("user1"), "{error}");
    }

    /// An existing config.json keeps its bytes, keys and ports; new
    /// entries get ports nobody uses.
    #[test]
    fn an_existing_config_keeps_its_keys_and_ports() {
        let f = fixture();
        let original = "{\n  \"managerPort\": 3199,\n  \"healthCheckInterval\": 5,\n  \"mcpServers\": {\n    \"fs\": {\n      \"command\": \"fs-server\",\n      \"port\": 3110\n    }\n  }\n}\n";
        f.write(&f.config(), original);
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"a": {"command": "a"}, "b": {"url": "http://example.com/mcp"}}}"#,
        );
        let report = import(&f.claude_code()).expect("import");
        let text = read_text(&f.config());
        let cut = original.find("\n    }\n  }").expect("end of fs") + "\n    }".len();
        assert!(text.starts_with(&original[..cut]), "{text}");
        assert!(text.ends_with(&original[cut..]), "{text}");
        let config = Config::parse(&f.config(), text.as_bytes()).expect("parses");
        assert_eq!(
            config.health_check_interval,
            std::time::Duration::from_secs(5)
        );
        assert_ne!(config.servers["a"].port, Some(3110));
        assert!(config.servers["b"].url.is_some());
        assert!(text.contains("\"allowHttp\": true"), "{text}");
        assert!(report.notes.iter().any(|n| n.contains("allowHttp")));
        assert!(!report.notes.iter().any(|n| n.contains("built-in")));
    }

    /// A config.json without `mcpServers`, or with an empty one, gets one.
    #[test]
    fn servers_are_added_to_an_empty_config() {
        for original in ["{}", "{\"managerPort\": 4000}", "{\"mcpServers\": {}}\n"] {
            let f = fixture();
            f.write(&f.config(), original);
            f.write(
                &f.claude_json(),
                r#"{"mcpServers": {"a": {"command": "a"}}}"#,
            );
            import(&f.claude_code()).expect("import");
            let text = read_text(&f.config());
            let config = Config::parse(&f.config(), text.as_bytes()).expect("parses");
            assert!(config.servers.contains_key("a"), "{text}");
        }
    }

    /// A port something listens on is not given out.
    #[test]
    fn a_busy_port_is_skipped() {
        let f = fixture();
        let Some(held) = PORTS
            .clone()
            .find_map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
        else {
            return;
        };
        let held_port = held.local_addr().expect("addr").port();
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"a": {"command": "a"}}}"#,
        );
        let report = import(&f.claude_code()).expect("import");
        match report.servers[0].outcome {
            Outcome::Hosted { port, .. } => assert_ne!(port, held_port),
            ref other => panic!("{other:?}"),
        }
    }

    /// The same name in two places must be the same server.
    #[test]
    fn the_same_name_twice_must_be_the_same_server() {
        let f = fixture();
        let project = f.dir.path().join("p");
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"a": {"command": "a"}}}"#,
        );
        f.write(
            &project.join(".mcp.json"),
            r#"{"mcpServers": {"a": {"command": "a"}}}"#,
        );
        let options = f.options(Source::ClaudeCode {
            project: Some(project.clone()),
        });
        let report = import(&options).expect("import");
        assert_eq!(report.servers.len(), 2);
        assert_eq!(report.servers[0].outcome, report.servers[1].outcome);
        assert_eq!(
            read_json(&f.config())["mcpServers"]
                .as_object()
                .map(|m| m.len()),
            Some(1)
        );
        assert_eq!(
            read_json(&project.join(".mcp.json"))["mcpServers"]["a"]["args"],
            json!(["--target", "a"])
        );

        let g = fixture();
        let project = g.dir.path().join("p");
        g.write(
            &g.claude_json(),
            r#"{"mcpServers": {"a": {"command": "a"}}}"#,
        );
        g.write(
            &project.join(".mcp.json"),
            r#"{"mcpServers": {"a": {"command": "b"}}}"#,
        );
        let before = g.snapshot();
        let error = import(&g.options(Source::ClaudeCode {
            project: Some(project),
        }))
        .expect_err("clash")
        .to_string();
        assert!(
            error.contains("\"a\"") && error.contains("rename"),
            "{error}"
        );
        assert_eq!(g.snapshot(), before);
    }

    /// Claude Desktop's file and any named file are read; a named file must
    /// exist and have `mcpServers`; the tool's own config is refused.
    #[test]
    fn desktop_and_named_files() {
        let f = fixture();
        let desktop = desktop_config(&f.user_home);
        f.write(
            &desktop,
            r#"{"mcpServers": {"d": {"command": "d"}}, "globalShortcut": "Ctrl+Space"}"#,
        );
        let report = import(&f.options(Source::ClaudeDesktop)).expect("desktop");
        assert_eq!(report.sources, vec![desktop.clone()]);
        assert_eq!(read_json(&desktop)["globalShortcut"], "Ctrl+Space");

        let missing = f.dir.path().join("nope.json");
        let error = import(&f.options(Source::File(missing))).expect_err("missing");
        assert!(matches!(error, ImportError::Missing { .. }), "{error:?}");
        let empty = f.dir.path().join("empty.json");
        f.write(&empty, "{}");
        let error = import(&f.options(Source::File(empty))).expect_err("no servers");
        assert!(matches!(error, ImportError::NoServers { .. }), "{error:?}");
        let error = import(&f.options(Source::File(f.config()))).expect_err("own");
        assert!(matches!(error, ImportError::OwnConfig { .. }), "{error:?}");
        let nothing = fixture();
        let error = import(&nothing.claude_code()).expect_err("no source");
        assert!(error.to_string().contains(".claude.json"), "{error}");
    }

    /// The source keeps its permissions; config.json and backups are 0600.
    #[cfg(unix)]
    #[test]
    fn permissions_are_kept_and_secrets_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        let f = fixture();
        f.write(&f.claude_json(), CLAUDE_JSON);
        std::fs::set_permissions(f.claude_json(), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let report = import(&f.claude_code()).expect("import");
        assert_eq!(mode(&f.claude_json()), 0o640);
        assert_eq!(mode(&f.config()), 0o600);
        for change in &report.files {
            if let Some(backup) = &change.backup {
                assert_eq!(mode(backup), 0o600);
            }
        }
        // A second import into the existing config keeps it private.
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"z": {"command": "z"}}}"#,
        );
        std::fs::set_permissions(f.config(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        import(&f.claude_code()).expect("import");
        assert_eq!(mode(&f.config()), 0o600);
    }

    /// A symlinked source is written through the link.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_source_stays_a_symlink() {
        let f = fixture();
        let real = f.dir.path().join("dotfiles").join("claude.json");
        f.write(&real, r#"{"mcpServers": {"a": {"command": "a"}}}"#);
        std::os::unix::fs::symlink(&real, f.claude_json()).expect("symlink");
        import(&f.claude_code()).expect("import");
        assert!(
            std::fs::symlink_metadata(f.claude_json())
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            read_json(&real)["mcpServers"]["a"]["args"],
            json!(["--target", "a"])
        );
    }

    /// A file that changed after it was read is not overwritten.
    #[test]
    fn a_file_changed_meanwhile_stops_the_writes() {
        let f = fixture();
        let path = f.claude_json();
        f.write(&path, "{\"b\": 2}");
        let error = write_changes(&[Change {
            path: path.clone(),
            old: Some("{\"a\": 1}"),
            new: "{}",
            private: false,
        }])
        .expect_err("changed");
        assert!(matches!(error, ImportError::Changed { .. }), "{error:?}");
        assert!(
            error.to_string().contains("run the import again"),
            "{error}"
        );
        assert_eq!(read_text(&path), "{\"b\": 2}");
        assert_eq!(std::fs::read_dir(&f.user_home).expect("dir").count(), 1);
    }

    /// An entry already running the proxy for a built-in that the new
    /// config.json no longer has is pointed out; a BOM is kept.
    #[test]
    fn a_target_the_new_config_lacks_is_noted() {
        let f = fixture();
        let text = "\u{feff}{\"mcpServers\": {\"memory\": {\"command\": \"/x/mcp-proxy\", \"args\": [\"--target\", \"memory\"]}, \"a\": {\"command\": \"a\"}}}";
        f.write(&f.claude_json(), text);
        let report = import(&f.claude_code()).expect("import");
        assert!(
            report.notes.iter().any(|n| n.contains("--target memory")),
            "{:?}",
            report.notes
        );
        assert!(
            read_text(&f.claude_json()).starts_with(
                "\u{feff}{\"mcpServers\": {\"memory\": {\"command\": \"/x/mcp-proxy\""
            )
        );
    }

    #[test]
    fn scope_overrides_parse() {
        assert_eq!(
            parse_scope_override("github=project"),
            Ok(("github".to_owned(), Scope::Project))
        );
        assert_eq!(
            parse_scope_override("a=session"),
            Ok(("a".to_owned(), Scope::Session))
        );
        assert_eq!(
            parse_scope_override("a=shared"),
            Ok(("a".to_owned(), Scope::Shared))
        );
        for bad in ["a", "=project", "a=global", "a="] {
            let error = parse_scope_override(bad).expect_err(bad);
            assert!(error.contains("NAME=project"), "{error}");
        }
    }

    #[test]
    fn sources_come_from_the_arguments() {
        assert_eq!(
            Source::from_args(None, None),
            Ok(Source::ClaudeCode { project: None })
        );
        assert_eq!(
            Source::from_args(Some("claude-code"), Some("/p".into())),
            Ok(Source::ClaudeCode {
                project: Some("/p".into())
            })
        );
        assert_eq!(
            Source::from_args(Some("claude-desktop"), None),
            Ok(Source::ClaudeDesktop)
        );
        assert_eq!(
            Source::from_args(Some("x.json"), None),
            Ok(Source::File("x.json".into()))
        );
        assert!(Source::from_args(Some("claude-desktop"), Some("/p".into())).is_err());
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://u:p@example.com/mcp?key=1"),
            "https://example.com/mcp?…"
        );
        assert_eq!(
            shown_url("https://example.com/sse"),
            "https://example.com/sse"
        );
        assert!(!shown_url("https://${HOST}/x").contains("HOST"));
    }

    #[test]
    fn proxies_are_registered_keeping_every_other_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".claude.json");
        let before = "{\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"mine\": {\"command\": \"/bin/mcp-proxy\", \"args\": [\"--target\", \"mine\"]}\n  },\n  \"tail\": [1, 2]\n}\n";
        std::fs::write(&path, before).expect("write");
        let names = vec!["mine".to_owned(), "new".to_owned()];
        let done =
            register_proxies(&path, &names, Path::new("/bin/mcp-proxy"), &[]).expect("registered");
        assert_eq!(done.added, ["new"]);
        assert_eq!(done.kept, ["mine"]);
        let after = std::fs::read_to_string(&path).expect("read");
        let value: Value = serde_json::from_str(&after).expect("json");
        assert_eq!(
            value["mcpServers"]["new"]["args"],
            serde_json::json!(["--target", "new"])
        );
        assert!(after.starts_with("{\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"mine\": {\"command\": \"/bin/mcp-proxy\""));
        assert!(after.ends_with("  },\n  \"tail\": [1, 2]\n}\n"), "{after}");
        let backup = done.backup.expect("backup");
        assert_eq!(std::fs::read_to_string(backup).expect("backup"), before);
        // A different server of the same name is refused; nothing written.
        std::fs::write(&path, r#"{"mcpServers": {"new": {"command": "node"}}}"#).expect("write");
        let refused = register_proxies(&path, &names, Path::new("/bin/mcp-proxy"), &[]);
        assert!(refused.is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            r#"{"mcpServers": {"new": {"command": "node"}}}"#
        );
    }
}
