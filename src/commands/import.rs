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
//! Then each imported entry of the source file becomes
//! `{"command": "<mcp-proxy>", "args": ["--target", NAME]}` (with
//! `"type": "stdio"` if the entry had a `type`).
//!
//! # Guarantees
//!
//! - **Every other byte stays.** Entries are found as byte spans (borrowed
//!   [`RawValue`](serde_json::value::RawValue)s, located by pointer arithmetic against the file's text)
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
//! - **Undo.** [`crate::commands::undo`] restores the newest backup of
//!   each file an import of that source changes (and removes a
//!   `config.json` the import created), byte for byte; what it replaces is
//!   kept as `FILE.undone.<ms>`.
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
//! and returns the [`ImportReport`] (`report`). Claude's files, their
//! project keys and the byte-keeping edits are [`crate::claude`]'s.

mod apply;
mod plan;
mod remote;
pub(crate) mod report;
mod scope;
pub(crate) mod source;
#[cfg(test)]
mod tests;
pub(crate) mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::claude::files::ReadError;
use crate::claude::json_text::{EditError, Node, indent_step};
use crate::claude::write::WriteError;
use crate::commands::generate::proxy_path;
use crate::commands::{NoUserHome, user_home};
use crate::config::{Config, Scope};
use crate::paths::NoHome;
use apply::Change;
use plan::{ConfigState, config_entry, definition, group_by_name, rewritten_sources, shown_url};
pub(crate) use plan::{free_port, scope_name};
use report::list;
pub use report::{FileChange, ImportReport, Outcome, ServerReport};
pub use scope::ScopeReason;
use source::{Kind, check_scope_names, find_servers, load_sources};

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
    /// `--from`, `--project`, each `--scope NAME=SCOPE`, `--dry-run` and
    /// `--remote`,
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
    // Remote servers stay with Claude Code unless `--remote` moves them.
    let left = remote::left_alone(&sites, options.remote, &mut notes);
    let mut kept = Vec::new();
    let mut order = Vec::new();
    let sites: Vec<_> = sites
        .into_iter()
        .enumerate()
        .filter_map(|(index, site)| match left.get(&index) {
            Some(reason) => {
                kept.push((
                    index,
                    ServerReport {
                        name: site.name.clone(),
                        file: files[site.file].path.clone(),
                        place: site.place.clone(),
                        outcome: Outcome::LeftWithClaude {
                            url: shown_url(site.entry.shape.url.as_deref().unwrap_or_default()),
                            reason: reason.clone(),
                        },
                    },
                ));
                None
            }
            None => {
                order.push(index);
                Some(site)
            }
        })
        .collect();
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
        let (scope, scope_reason) = scope::choose(name, site, &options.scopes);
        let hosted = matches!(site.entry.kind, Kind::Stdio);
        let draft = config_entry(site, 0, scope);
        if let Some(existing) = config.servers.get(name) {
            if definition(existing) == definition(&draft.to_value().map_err(internal)?) {
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
            Outcome::Hosted {
                port,
                scope,
                scope_reason,
            }
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
    // Every server found, in file order.
    let mut servers: Vec<(usize, ServerReport)> = order.into_iter().zip(servers).collect();
    servers.extend(kept);
    servers.sort_by_key(|(index, _)| *index);
    let servers: Vec<ServerReport> = servers.into_iter().map(|(_, s)| s).collect();
    let mut noted = BTreeSet::new();
    for site in &sites {
        let vars = site.entry.shell_vars();
        let moved = matches!(outcomes.get(&site.name), Some(Outcome::Hosted { .. }));
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
        apply::write_changes(&changes)?
    };
    Ok(report)
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
