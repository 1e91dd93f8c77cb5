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
//!   `claude_desktop_config.json` ([`crate::claude::files::desktop_config`]).
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
//! - a **remote** entry (`type` `"http"`/`"sse"`, or a `url`) is left with
//!   Claude Code by default, untouched in both files (it keeps Claude's
//!   OAuth login, reconnects and HTTP label; the report says so per
//!   server). With [`ImportOptions::remote`] (`--remote`) one with static
//!   `headers` is probed first (`remote`: a 401 with `WWW-Authenticate`
//!   stays, with the reason) and then kept remote in `config.json`: `type`,
//!   `url`, `headers` as written (plus `"allowHttp": true` for plain http
//!   to another host, which Claude Code allowed and this tool refuses by
//!   default).
//!
//! **Scope rule** (`scope`; the report says which applied). A
//! browser-automation server (playwright, puppeteer, chrome-devtools,
//! browser-use, browserbase: one browser per session, recognised by the
//! package it runs) gets scope `session`; another entry from a project
//! source (`projects["DIR"]` or `DIR/.mcp.json`) gets `project`; a
//! user-level entry gets `shared`. A project's entry without a `cwd` gets
//! the project directory as its `cwd` (Claude Code runs it there).
//! [`ImportOptions::scopes`] (`--scope NAME=…`) overrides.
//!
//! `args`, `env` and `headers` are copied as JSON text, so a `${VAR}`
//! reference stays a reference (the config expands it when it is loaded);
//! no secret is ever expanded into a file. A stdio server whose `env` or
//! `args` use one is noted: the daemon sees the manager's value of it,
//! not the session's shell's.
//!
//! **Names.** A user-level server keeps its name in `config.json`; a
//! project's server gets one of its own there, `PROJECT.NAME` (the
//! directory's name; `PROJECT-2.NAME` for another project of that name),
//! so two projects can each have a `db`. The Claude-side name stays, so
//! `mcp__db__*` rules in `allowedTools` keep working.
//!
//! **Where Claude Code is pointed at the proxy.** Each imported entry of
//! `~/.claude.json` (user or `projects["DIR"]`) or Claude Desktop's file
//! becomes `{"command": "<mcp-proxy>", "args": ["--target", NAME]}` (with
//! `"type": "stdio"` if the entry had a `type`). A project's `.mcp.json` is
//! most often committed and shared, so it is **never written**: each of its
//! servers the user approved in Claude Code (`approval`) gets a local-scope
//! entry of the same name in `~/.claude.json`
//! (`projects["DIR"].mcpServers`), which Claude Code runs instead of the
//! project's (its `claude mcp list` then shows a "Conflicting scopes"
//! note: that is all it means). A disabled or never-approved one is left
//! as it is. [`ImportOptions::rewrite_mcp_json`] (`--rewrite-mcp-json`)
//! rewrites the file itself instead, with a bare `mcp-proxy` (found on
//! each teammate's PATH; no path of this machine).
//!
//! # Guarantees
//!
//! - **Every other byte stays.** Entries are found as byte spans (borrowed
//!   [`RawValue`](serde_json::value::RawValue)s, located by pointer
//!   arithmetic against the file's text) and only those spans are replaced
//!   or new members inserted, indented like their surroundings.
//! - **All or nothing.** Every file is read, every entry checked, and the
//!   new `config.json` validated with [`Config::parse`] before the first
//!   write; a file that changed meanwhile (Claude Code writes
//!   `~/.claude.json` often) stops the import before anything is written.
//! - **A journal, not backups beside files.** Each import is recorded under
//!   the tool's home (`journal`: every entry's text before and after, and
//!   a copy of each file as it was), then each file is replaced by a
//!   temporary file in the same directory renamed over it, with the file's
//!   permissions (`config.json` and the journal 0600 on unix). Nothing is
//!   written inside a project directory. `config.json` is written before
//!   the sources, so a source never points at a name the config lacks.
//! - **Idempotent.** An entry whose command already is `mcp-proxy` (or
//!   `mcp-proxy.exe`) is left alone and reported as already imported; a
//!   second run changes nothing.
//! - **Undo keeps what changed since.** [`crate::commands::undo`] reverts
//!   the newest import (or all of them) entry by entry, into each file as
//!   it is now: Claude Code's later writes and servers added since stay,
//!   and an entry someone changed since is left alone and reported.
//! - **No secrets shown.** The report names servers, files, ports, scopes
//!   and remote URLs without credentials or query; never `args`, `env` or
//!   `headers`. Nothing here logs them either.
//!
//! # Layout
//!
//! [`import`] reads the sources (`source`: the files, the entries found
//! in them), plans the changes (`plan`: config entries, ports, proxy
//! entries, when two entries are the same server; `scope`: which scope
//! each server gets and why), writes them (`apply`)
//! and records them (`journal`),
//! and returns the [`ImportReport`] (`report`). Claude's files, their
//! project keys and the byte-keeping edits are [`crate::claude`]'s.

mod apply;
mod approval;
pub(crate) mod journal;
mod plan;
mod remote;
pub(crate) mod report;
mod scope;
pub(crate) mod source;
#[cfg(test)]
mod tests;
pub mod undo;
pub(crate) mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::claude::files::ReadError;
use crate::claude::json_text::{EditError, Node, indent_step, line_indent};
use crate::claude::write::WriteError;
use crate::commands::generate::proxy_path;
use crate::commands::{NoUserHome, user_home};
use crate::config::{Config, Scope};
use crate::paths::NoHome;
use apply::Change;
use journal::{Edit, FileRecord, Record};
use plan::{ConfigState, config_entry, definition, group_by_name, shown_url};
pub(crate) use plan::{free_port, scope_name};
use report::list;
pub use report::{Check, FileChange, ImportReport, Outcome, ServerReport};
pub use scope::ScopeReason;
use source::{Kind, check_scope_names, find_servers, load_sources};
pub use verify::Health;

/// How long one server gets to answer `initialize` in the check (Claude
/// Code's own connect timeout).
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// [`ArgsError::ProjectNeedsClaudeCode`]: `--project` given with a
    /// source other than Claude Code.
    pub fn from_args(from: Option<&str>, project: Option<PathBuf>) -> Result<Source, ArgsError> {
        match from {
            None | Some("claude-code") => Ok(Source::ClaudeCode { project }),
            Some(_) if project.is_some() => Err(ArgsError::ProjectNeedsClaudeCode),
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
    /// `--remote`: move remote servers with static headers too (each
    /// probed first; one that asks for a login stays). Without it every
    /// remote entry stays with Claude Code.
    pub remote: bool,
    /// `--rewrite-mcp-json`: point a project's `.mcp.json` entries at a
    /// bare `mcp-proxy` in the file itself, instead of local overrides in
    /// `~/.claude.json`.
    pub rewrite_mcp_json: bool,
    /// Connect to each server before and after (`--no-verify`: false).
    pub verify: bool,
}

/// `NAME=shared|project|session`, as `--scope` takes it.
///
/// # Errors
/// [`ArgsError::BadScope`], saying what is expected.
pub fn parse_scope_override(text: &str) -> Result<(String, Scope), ArgsError> {
    let expected = || ArgsError::BadScope(text.to_owned());
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

/// `import`'s arguments that make no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "--project only applies to --from claude-code (a project's .mcp.json can be given as --from DIR/.mcp.json)"
    )]
    ProjectNeedsClaudeCode,
    #[error("expected NAME=shared, NAME=project or NAME=session, not {0:?}")]
    BadScope(String),
}

/// Why the options of an import could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    NoUserHome(#[from] NoUserHome),
    #[error(transparent)]
    NoHome(#[from] NoHome),
}

impl ImportOptions {
    /// The options of `mcp-manager import` for the user running it:
    /// `--from`, `--project`, each `--scope NAME=SCOPE`, `--dry-run`,
    /// `--remote`, `--rewrite-mcp-json` and not `--no-verify`,
    /// with the user's home, the tool's home and the installed `mcp-proxy`.
    ///
    /// # Errors
    /// An [`OptionsError`]: bad arguments (checked first), or no home.
    pub fn for_current_user(
        from: Option<&str>,
        project: Option<PathBuf>,
        scopes: &[String],
        dry_run: bool,
        remote: bool,
        rewrite_mcp_json: bool,
        verify: bool,
    ) -> Result<ImportOptions, OptionsError> {
        let source = Source::from_args(from, project)?;
        let scopes = scopes
            .iter()
            .map(|text| parse_scope_override(text))
            .collect::<Result<_, _>>()?;
        Ok(ImportOptions {
            source,
            user_home: user_home()?,
            home: crate::paths::home()?,
            proxy: proxy_path(),
            scopes,
            dry_run,
            remote,
            rewrite_mcp_json,
            verify,
        })
    }
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
    #[error(
        "{} is a project's .mcp.json, most often shared with others: use `--project {}` (its servers then get local entries in ~/.claude.json and the file stays as it is), or `--rewrite-mcp-json` to rewrite the file itself",
        path.display(),
        path.parent().map_or_else(|| ".".into(), |d| d.display().to_string())
    )]
    ProjectFileNeedsProject { path: PathBuf },
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

impl From<ReadError> for ImportError {
    fn from(ReadError { path, source }: ReadError) -> ImportError {
        ImportError::Read { path, source }
    }
}

impl From<WriteError> for ImportError {
    fn from(WriteError { path, source }: WriteError) -> ImportError {
        ImportError::Write { path, source }
    }
}

/// A failed edit of `path`'s text, as an internal error.
pub(crate) fn edit_error(error: EditError, path: &Path) -> ImportError {
    match error {
        EditError::OutsideText => ImportError::Internal(error.to_string()),
        other => ImportError::Internal(format!("{other} in {}", path.display())),
    }
}

/// A can't-happen failure, to be reported.
pub(crate) fn internal(error: impl std::fmt::Display) -> ImportError {
    ImportError::Internal(error.to_string())
}

/// One file an import writes: its text as read (`None`: it does not
/// exist), the entry edits, and whether it is private (0600 on unix).
struct FilePlan {
    path: PathBuf,
    old: Option<String>,
    private: bool,
    edits: Vec<Edit>,
}

/// Adds `edit` to the plan of `path` (read as `old`).
fn plan_edit(plans: &mut Vec<FilePlan>, path: &Path, old: Option<&str>, private: bool, edit: Edit) {
    match plans.iter_mut().find(|p| p.path == path) {
        Some(plan) => plan.edits.push(edit),
        None => plans.push(FilePlan {
            path: path.to_owned(),
            old: old.map(str::to_owned),
            private,
            edits: vec![edit],
        }),
    }
}

fn inline(node: &Node<'_>) -> String {
    let mut out = String::new();
    node.inline(&mut out);
    out
}

/// What `options.source` is, as the user would say it.
fn describe_source(source: &Source) -> String {
    match source {
        Source::ClaudeCode { project: None } => "claude-code".to_owned(),
        Source::ClaudeCode { project: Some(dir) } => {
            format!("claude-code --project {}", dir.display())
        }
        Source::ClaudeDesktop => "claude-desktop".to_owned(),
        Source::File(path) => format!("file {}", path.display()),
    }
}

/// Imports the servers of `options.source` (see the module doc).
///
/// # Errors
/// An [`ImportError`] naming the file, the entry and the fix; nothing is
/// written then, except for [`ImportError::Write`] (a file system failure
/// part-way: the journal copies hold what each file was).
pub fn import(options: &ImportOptions) -> Result<ImportReport, ImportError> {
    let config_path = crate::paths::config_file(&options.home);
    let files = load_sources(options, &config_path)?;
    let mut notes = Vec::new();
    let mut sites = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if file.is_project_file() && !options.rewrite_mcp_json {
            if let Source::File(path) = &options.source {
                return Err(ImportError::ProjectFileNeedsProject { path: path.clone() });
            }
        }
        sites.extend(find_servers(index, file, &mut notes)?);
    }
    check_scope_names(options, &sites)?;
    // Remote servers stay with Claude Code unless `--remote` moves them.
    let mut left: BTreeMap<usize, Outcome> = remote::left_alone(&sites, options.remote, &mut notes)
        .into_iter()
        .map(|(index, reason)| {
            let url = shown_url(sites[index].entry.shape.url.as_deref().unwrap_or_default());
            (index, Outcome::LeftWithClaude { url, reason })
        })
        .collect();
    // A project's .mcp.json: only what the user approved, and not what a
    // local entry overrides already.
    let user_file = files
        .iter()
        .position(|f| f.path == crate::claude::files::user_config(&options.user_home));
    let overriding = matches!(options.source, Source::ClaudeCode { project: Some(_) })
        && !options.rewrite_mcp_json;
    let mut override_key: Option<String> = None;
    if let Source::ClaudeCode { project: Some(dir) } = &options.source {
        let dir = crate::claude::projects::absolute(dir);
        let keys = crate::claude::projects::ProjectKeys::of(&dir);
        let user_value: Option<serde_json::Value> = user_file.and_then(|i| {
            serde_json::from_str(crate::claude::files::strip_bom(&files[i].text)).ok()
        });
        let projects = user_value.as_ref().and_then(|v| v.get("projects"));
        let found = keys.find(|key| projects.and_then(|p| p.get(key)));
        // A new project entry is keyed as Claude Code keys it: by its
        // working directory, symlinks resolved (the last key tried).
        let new_key = || keys.all().last().cloned().unwrap_or_default();
        override_key = Some(found.map_or_else(new_key, |(key, _)| key.to_owned()));
        let answers = approval::Answers::read(&options.user_home, &dir, found.map(|(_, v)| v));
        for (index, site) in sites.iter().enumerate() {
            if !files[site.file].is_project_file() || left.contains_key(&index) {
                continue;
            }
            let local = sites.iter().find(|other| {
                Some(other.file) == user_file
                    && other.at.first().is_some_and(|k| k == "projects")
                    && other.name == site.name
            });
            if let Some(local) = local {
                // Ours (an earlier import's override), or the user's own.
                let outcome = match &local.entry.kind {
                    Kind::Imported { target } => Outcome::AlreadyImported {
                        target: target.clone(),
                    },
                    _ => Outcome::Shadowed,
                };
                left.insert(index, outcome);
                continue;
            }
            if matches!(site.entry.kind, Kind::Imported { .. }) {
                continue;
            }
            match answers.of(&site.name) {
                approval::Approval::Approved => {}
                approval::Approval::Disabled(place) => {
                    left.insert(
                        index,
                        Outcome::NotApproved {
                            reason: format!("disabled in Claude Code ({place})"),
                        },
                    );
                }
                approval::Approval::Pending => {
                    left.insert(index, Outcome::NotApproved {
                        reason: format!(
                            "not approved in Claude Code yet: start `claude` in {} and approve it, then import again",
                            dir.display()
                        ),
                    });
                }
            }
        }
    }

    let config = ConfigState::load(&config_path)?;

    // Each site's config.json name: a project's servers get their own.
    let wanted: Vec<Option<String>> = sites
        .iter()
        .enumerate()
        .map(|(index, site)| {
            if left.contains_key(&index) || matches!(site.entry.kind, Kind::Imported { .. }) {
                return None;
            }
            Some(match &site.project {
                Some(dir) => plan::project_name(dir, &site.name, 1),
                None => site.name.clone(),
            })
        })
        .collect();
    let groups = group_by_name(&sites, &wanted, &files)?;

    let mut used_ports = config.ports.clone();
    let mut used_names: BTreeSet<String> = config.servers.keys().cloned().collect();
    let mut new_entries: Vec<(String, Node<'_>)> = Vec::new();
    let mut outcomes: BTreeMap<usize, (String, Outcome)> = BTreeMap::new();
    for (wanted_name, members) in &groups {
        let site = &sites[members[0]];
        let (scope, scope_reason) = scope::choose(&site.name, site, &options.scopes);
        let hosted = matches!(site.entry.kind, Kind::Stdio);
        let draft = definition(&config_entry(site, 0, scope).to_value().map_err(internal)?);
        // The name: the wanted one, or for a project's server the next
        // `PROJECT-N.NAME` when another project took it.
        let mut name = wanted_name.clone();
        let mut already = false;
        for n in 1..=20 {
            if n > 1 {
                let Some(dir) = &site.project else { break };
                name = plan::project_name(dir, &site.name, n);
            }
            match config.servers.get(&name) {
                Some(existing) if definition(existing) == draft => {
                    already = true;
                    break;
                }
                Some(_) => {}
                None if !used_names.contains(&name) => break,
                None => {}
            }
            if site.project.is_none() || n == 20 {
                return Err(ImportError::Clash {
                    name: name.clone(),
                    config: config_path.clone(),
                    source_file: files[site.file].path.clone(),
                });
            }
        }
        let outcome = if already {
            Outcome::AlreadyInConfig
        } else if hosted {
            let port = free_port(&used_ports)
                .ok_or_else(|| ImportError::NoFreePort { name: name.clone() })?;
            used_ports.insert(port);
            used_names.insert(name.clone());
            new_entries.push((name.clone(), config_entry(site, port, scope)));
            Outcome::Hosted {
                port,
                scope,
                scope_reason,
            }
        } else {
            let entry = config_entry(site, 0, scope);
            if entry.get("allowHttp").is_some() {
                notes.push(format!(
                    "{}: plain http to another host, as Claude Code allowed it: \"allowHttp\": true",
                    site.name
                ));
            }
            used_names.insert(name.clone());
            new_entries.push((name.clone(), entry));
            Outcome::Remote {
                url: shown_url(site.entry.shape.url.as_deref().unwrap_or_default()),
            }
        };
        for &member in members {
            outcomes.insert(member, (name.clone(), outcome.clone()));
        }
    }
    for (name, scope) in &options.scopes {
        let applies = sites.iter().enumerate().any(|(i, s)| {
            s.name == *name
                && matches!(s.entry.kind, Kind::Stdio)
                && matches!(outcomes.get(&i), Some((_, Outcome::Hosted { .. })))
        });
        if !applies {
            notes.push(format!(
                "--scope {name}={}: not applied ({name} is not a stdio server this import adds to config.json)",
                scope_name(*scope)
            ));
        }
    }

    // Every edit, file by file: config.json first, then the sources.
    let mut plans: Vec<FilePlan> = Vec::new();
    for (name, node) in &new_entries {
        plan_edit(
            &mut plans,
            &config_path,
            config.text.as_deref(),
            true,
            Edit {
                at: vec!["mcpServers".to_owned(), name.clone()],
                server: name.clone(),
                before: None,
                after: inline(node),
                existed: 0,
                reverted: false,
                indent: None,
            },
        );
    }
    let proxy_command = options.proxy.to_string_lossy().into_owned();
    let user_path = crate::claude::files::user_config(&options.user_home);
    for (index, site) in sites.iter().enumerate() {
        let Some((target, _)) = outcomes.get(&index) else {
            continue;
        };
        let file = &files[site.file];
        if file.is_project_file() && overriding {
            // A local-scope override in ~/.claude.json; .mcp.json stays.
            let Some(key) = &override_key else { continue };
            let old = user_file.map(|i| files[i].text.as_str());
            plan_edit(
                &mut plans,
                &user_path,
                old,
                false,
                Edit {
                    at: vec![
                        "projects".to_owned(),
                        key.clone(),
                        "mcpServers".to_owned(),
                        site.name.clone(),
                    ],
                    server: target.clone(),
                    before: None,
                    after: inline(&plan::proxy_node(true, &proxy_command, target)),
                    existed: 0,
                    reverted: false,
                    indent: None,
                },
            );
            continue;
        }
        // A file shared with others gets a portable entry.
        let command = if file.is_project_file() {
            "mcp-proxy"
        } else {
            proxy_command.as_str()
        };
        plan_edit(
            &mut plans,
            &file.path,
            Some(&file.text),
            false,
            Edit {
                at: site.at.clone(),
                server: target.clone(),
                before: Some(file.text[site.span.clone()].to_owned()),
                after: inline(&plan::proxy_node(site.entry.had_type, command, target)),
                existed: 0,
                reverted: false,
                indent: Some(line_indent(&file.text, site.span.start).to_owned()),
            },
        );
    }
    // The new texts, config.json validated before anything is written.
    let mut new_texts = Vec::new();
    for plan in &mut plans {
        let mut text = plan.old.clone();
        let step = text.as_deref().map_or_else(|| "  ".to_owned(), indent_step);
        for edit in &mut plan.edits {
            let (next, existed) = journal::apply_edit(text.as_deref(), edit, &step)
                .map_err(|e| edit_error(e, &plan.path))?;
            edit.existed = existed;
            text = Some(next);
        }
        let text = text.unwrap_or_default();
        if plan.path == config_path {
            Config::parse(&config_path, text.as_bytes()).map_err(|e| ImportError::Config {
                message: format!("the imported servers would make the config invalid: {e}"),
            })?;
        }
        new_texts.push(text);
    }
    let final_names: BTreeSet<String> = if config.text.is_none() && new_entries.is_empty() {
        Config::builtin().servers.into_keys().collect()
    } else {
        used_names.clone()
    };

    // The report: every server found, in file order.
    let servers: Vec<ServerReport> = sites
        .iter()
        .enumerate()
        .map(|(index, site)| {
            let (target, outcome) = if let Some(outcome) = left.get(&index) {
                (None, outcome.clone())
            } else if let Kind::Imported { target } = &site.entry.kind {
                (
                    target.clone(),
                    Outcome::AlreadyImported {
                        target: target.clone(),
                    },
                )
            } else {
                match outcomes.get(&index) {
                    Some((name, outcome)) => (Some(name.clone()), outcome.clone()),
                    None => (None, Outcome::AlreadyInConfig),
                }
            };
            ServerReport {
                name: site.name.clone(),
                file: files[site.file].path.clone(),
                place: site.place.clone(),
                target,
                outcome,
                check: None,
            }
        })
        .collect();
    let mut noted = BTreeSet::new();
    for (index, site) in sites.iter().enumerate() {
        let vars = site.entry.shell_vars();
        let moved = matches!(outcomes.get(&index), Some((_, Outcome::Hosted { .. })));
        if moved && !vars.is_empty() && noted.insert(site.name.clone()) {
            let vars: Vec<String> = vars.iter().map(|v| format!("${{{v}}}")).collect();
            notes.push(format!(
                "{}: its env or args use {}: the shared daemon sees the manager's value of {}, not your session's shell's (set it where the manager runs)",
                site.name,
                vars.join(", "),
                if vars.len() == 1 { "it" } else { "them" }
            ));
        }
    }
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
    let overridden: Vec<&str> = sites
        .iter()
        .enumerate()
        .filter(|(index, site)| {
            overriding && files[site.file].is_project_file() && outcomes.contains_key(index)
        })
        .map(|(_, site)| site.name.as_str())
        .collect();
    if !overridden.is_empty() {
        notes.push(format!(
            "{}: .mcp.json is not changed (teammates keep it as it is): each gets a local entry in ~/.claude.json, which Claude Code runs instead of .mcp.json's; `claude mcp list` shows \"Conflicting scopes\" for it, which only means that (`--rewrite-mcp-json` rewrites .mcp.json itself instead)",
            overridden.join(", ")
        ));
    }
    if config.text.is_none() && plans.iter().any(|p| p.path == config_path) {
        notes.push(format!(
            "{} did not exist: it holds only the imported servers, so the built-in daemons ({}) are no longer configured; add their entries to it if you use them",
            config_path.display(),
            Config::builtin().names().join(", ")
        ));
    }
    if plans.iter().any(|p| p.path != config_path) {
        notes.push(
            "Claude Code and Claude Desktop read their servers when they start: restart them (running sessions keep the old servers)".into(),
        );
    }
    if !plans.is_empty() && !options.proxy.is_file() {
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
        journal: None,
        notes,
    };
    let changes: Vec<Change<'_>> = plans
        .iter()
        .zip(&new_texts)
        .map(|(plan, text)| Change {
            path: plan.path.clone(),
            old: plan.old.as_deref(),
            new: text,
            private: plan.private,
        })
        .collect();
    if options.dry_run {
        report.files = changes
            .iter()
            .map(|change| FileChange {
                path: change.path.clone(),
                created: change.old.is_none(),
                backup: None,
            })
            .collect();
        return Ok(report);
    }
    if changes.is_empty() {
        return Ok(report);
    }
    // Before: each moved server as Claude Code runs it now.
    let checked: Vec<(usize, String)> = if options.verify {
        sites
            .iter()
            .enumerate()
            .filter_map(|(index, _)| outcomes.get(&index).map(|(t, _)| (index, t.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let before = verify::run(
        &checked
            .iter()
            .map(|(index, _)| verify::Probe::Entry {
                value: sites[*index].entry.value.clone(),
                dir: sites[*index]
                    .project
                    .clone()
                    .unwrap_or_else(|| options.user_home.clone()),
            })
            .collect::<Vec<_>>(),
        CHECK_TIMEOUT,
    );
    let at_ms = crate::paths::now_ms();
    let id = journal::new_id(at_ms);
    report.files = apply::write_changes(&changes, &options.home, &id)?;
    let record = Record {
        version: 1,
        id: id.clone(),
        at_ms,
        source: describe_source(&options.source),
        files: plans
            .into_iter()
            .zip(&report.files)
            .map(|(plan, written)| FileRecord {
                path: plan.path,
                created: plan.old.is_none(),
                private: plan.private,
                copy: written.backup.clone(),
                edits: plan.edits,
            })
            .collect(),
        undone_at_ms: None,
    };
    report.journal = Some(journal::save(&options.home, &record)?);
    if !checked.is_empty() {
        check_after(options, &mut report, &id, &checked, before);
    }
    Ok(report)
}

/// After: each moved server through `mcp-proxy`, as a Claude session
/// starts it; one that answered before and fails now is put back at once.
fn check_after(
    options: &ImportOptions,
    report: &mut ImportReport,
    id: &str,
    checked: &[(usize, String)],
    before: Vec<Health>,
) {
    let targets: BTreeSet<&str> = checked.iter().map(|(_, t)| t.as_str()).collect();
    let targets: Vec<&str> = targets.into_iter().collect();
    let after: BTreeMap<&str, Health> = targets
        .iter()
        .copied()
        .zip(verify::run(
            &targets
                .iter()
                .map(|target| verify::Probe::Proxy {
                    proxy: options.proxy.clone(),
                    target: (*target).to_owned(),
                    home: options.home.clone(),
                })
                .collect::<Vec<_>>(),
            CHECK_TIMEOUT,
        ))
        .collect();
    let mut broken: Vec<String> = Vec::new();
    let mut checks = Vec::new();
    for ((_, target), before) in checked.iter().zip(before) {
        let after = after
            .get(target.as_str())
            .cloned()
            .unwrap_or_else(|| Health::Failed("not checked".into()));
        let rank = |health: &Health| match health {
            Health::Connected => 2,
            Health::NeedsLogin => 1,
            Health::Failed(_) => 0,
        };
        let worse = rank(&after) < rank(&before);
        if worse && !broken.contains(target) {
            broken.push(target.clone());
        }
        checks.push((target.clone(), before, after, worse));
    }
    let reverted = if broken.is_empty() {
        Ok(())
    } else {
        undo::revert_servers(&options.home, id, &broken).map(|_| ())
    };
    if let Err(error) = &reverted {
        report.notes.push(format!(
            "could not put back {}: {error}; `mcp-manager import --undo` reverts this import",
            broken.join(", ")
        ));
    }
    // One report line per site, in site order.
    for ((index, _), (_, before, after, worse)) in checked.iter().zip(checks) {
        if let Some(server) = report.servers.get_mut(*index) {
            server.check = Some(Check {
                before,
                after,
                put_back: worse && reverted.is_ok(),
            });
        }
    }
    if !broken.is_empty() && reverted.is_ok() {
        report.notes.push(format!(
            "{}: worked before and not through mcp-proxy: put back as it was (its cause above; `mcp-manager logs NAME` has the daemon's side)",
            broken.join(", ")
        ));
    }
}

/// The arguments, parsed.
#[cfg(test)]
mod arguments {
    use super::*;

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
            assert!(error.to_string().contains("NAME=project"), "{error}");
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
}
