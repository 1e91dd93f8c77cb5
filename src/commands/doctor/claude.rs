//! Check 6, Claude Code's files: `~/.claude.json` (its `mcpServers`, and
//! the project's `projects[DIR].mcpServers`), the project's `.mcp.json`,
//! and the original's `~/.claude/mcp.json` (which Claude Code does not
//! read) run their servers through `mcp-proxy`, each `--target` a
//! configured daemon. Only names, commands and paths are quoted, never an
//! entry's `args`, `env` or `headers`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::report::plural;
use super::{Check, DoctorInput};
use crate::claude::entries::{Entry, classify};
use crate::claude::files;
use crate::claude::projects::ProjectKeys;
use crate::config::Config;
use crate::{paths, process};

/// `~/.claude.json` (`mcpServers`, and `projects[CWD].mcpServers`), the
/// project's `.mcp.json`, and `~/.claude/mcp.json`. `--target` names are
/// checked against `config` only when it is the user's (`config_valid`).
pub(super) fn check_claude(
    input: &DoctorInput,
    config: &Config,
    config_valid: bool,
    proxy: &Path,
) -> Vec<Check> {
    let known = config_valid.then_some(config);
    let mut checks = Vec::new();
    let mut counted = Tally::default();
    let project = quote_path(&input.cwd);
    let user_import = "`mcp-manager import`".to_owned();
    let project_import = format!("`mcp-manager import --project {project}`");
    let sources = Sources {
        known,
        proxy,
        config_hint: known
            .and_then(|c| c.source.clone())
            .unwrap_or_else(|| paths::config_file(&input.home)),
    };

    if let Some(user_home) = &input.user_home {
        let file = files::user_config(user_home);
        let name = "claude user config";
        match read_json(&file) {
            Ok(None) => checks.push(Check::ok(name, format!("{} not found", file.display()))),
            Ok(Some(document)) => {
                let location = format!("{} mcpServers", file.display());
                checks.push(sources.servers_check(
                    name,
                    &location,
                    document.get("mcpServers"),
                    &user_import,
                    &mut counted,
                ));
                if let Some((key, servers)) = project_servers(&document, &input.cwd) {
                    let location = format!("{} projects[{key}].mcpServers", file.display());
                    checks.push(sources.servers_check(
                        "claude local config",
                        &location,
                        Some(servers),
                        &project_import,
                        &mut counted,
                    ));
                }
            }
            Err((detail, fix)) => checks.push(Check::problem(name, detail, fix)),
        }
    }

    let file = files::project_config(&input.cwd);
    let name = "claude project config";
    match read_json(&file) {
        Ok(None) => checks.push(Check::ok(name, format!("{} not found", file.display()))),
        Ok(Some(document)) => checks.push(sources.servers_check(
            name,
            &file.display().to_string(),
            document.get("mcpServers"),
            &project_import,
            &mut counted,
        )),
        Err((detail, fix)) => checks.push(Check::problem(name, detail, fix)),
    }

    if let Some(user_home) = &input.user_home {
        let file = files::original_config(user_home);
        let name = "claude mcp.json";
        let fix = "`mcp-manager generate-config --scope user` (it writes ~/.claude.json, which Claude Code reads)";
        match read_json(&file) {
            Ok(None) => checks.push(Check::ok(
                name,
                format!(
                    "{} not found (fine: Claude Code does not read it)",
                    file.display()
                ),
            )),
            Ok(Some(document)) => {
                let servers = document
                    .get("mcpServers")
                    .and_then(Value::as_object)
                    .map_or(0, serde_json::Map::len);
                checks.push(Check::warning(
                    name,
                    format!(
                        "{} exists ({}), but Claude Code does not read it",
                        file.display(),
                        plural(servers, "server")
                    ),
                    fix,
                ));
            }
            // Nobody reads it, so a broken one breaks nothing.
            Err((detail, _)) => checks.push(Check::warning(
                name,
                format!("{detail}; Claude Code does not read it anyway"),
                fix,
            )),
        }
    }

    if input.user_home.is_some() && counted.servers == 0 {
        let example = config.names().first().copied().unwrap_or("NAME");
        checks.push(Check::warning(
            "claude code",
            "no MCP server is configured for Claude Code here, so no session uses the shared daemons",
            format!(
                "register one: `claude mcp add --scope user {example} -- {} --target {example}`",
                quote_path(proxy)
            ),
        ));
    }
    checks
}

/// Servers seen in the files Claude Code reads.
#[derive(Debug, Default)]
struct Tally {
    servers: usize,
}

/// What every `mcpServers` check needs to know.
struct Sources<'a> {
    /// The user's valid config: `--target` names are checked against it.
    known: Option<&'a Config>,
    /// The installed proxy, for the fix of an entry whose proxy is gone.
    proxy: &'a Path,
    /// Where a missing target would be added.
    config_hint: PathBuf,
}

impl Sources<'_> {
    /// One check for one `mcpServers` object: every entry through
    /// `mcp-proxy` (ok), some run directly (warning), or some broken
    /// (problem: not an entry, a proxy that is gone, an unknown target).
    fn servers_check(
        &self,
        name: &str,
        location: &str,
        servers: Option<&Value>,
        import: &str,
        tally: &mut Tally,
    ) -> Check {
        let Some(servers) = servers else {
            return Check::ok(name, format!("{location}: no servers"));
        };
        let Some(servers) = servers.as_object() else {
            return Check::problem(
                name,
                format!("{location} is not an object"),
                "make it an object mapping each name to {\"command\", \"args\"} or {\"type\", \"url\"}",
            );
        };
        tally.servers += servers.len();
        let mut proxied = 0;
        let mut remote = 0;
        let mut direct = Vec::new();
        let mut broken = Vec::new();
        let mut fixes = Vec::new();
        for (server, entry) in servers {
            match classify(entry) {
                Entry::Proxy { command, target } => {
                    proxied += 1;
                    if process::find_program(command).is_none() {
                        broken.push(format!("{server} runs {command}, which is not there"));
                        fixes.push(format!(
                            "point {server} at the installed proxy, {}",
                            self.proxy.display()
                        ));
                    }
                    if let (Some(config), Some(target)) = (self.known, target) {
                        if !config.servers.contains_key(target) {
                            broken.push(format!(
                                "{server} asks for --target {target}, which is not configured"
                            ));
                            fixes.push(format!(
                                "add {target} to {} or change {server}'s --target (configured: {})",
                                self.config_hint.display(),
                                config.names().join(", ")
                            ));
                        }
                    }
                }
                Entry::Direct => direct.push(server.as_str()),
                Entry::Remote => remote += 1,
                Entry::Malformed => {
                    broken.push(format!("{server} has neither a \"command\" nor a \"url\""));
                    fixes.push(format!("give {server} a \"command\" or a \"url\""));
                }
            }
        }
        let total = servers.len();
        let remote_note = if remote > 0 {
            format!(" ({remote} remote, used directly)")
        } else {
            String::new()
        };
        if !broken.is_empty() {
            return Check::problem(
                name,
                format!("{location}: {}", broken.join("; ")),
                fixes.join("; "),
            );
        }
        if !direct.is_empty() {
            return Check::warning(
                name,
                format!(
                    "{location}: {} of {total} not through mcp-proxy (each session starts its own copy): {}",
                    direct.len(),
                    direct.join(", ")
                ),
                import,
            );
        }
        if total == 0 {
            return Check::ok(name, format!("{location}: no servers"));
        }
        Check::ok(
            name,
            format!(
                "{location}: {} through mcp-proxy{remote_note}",
                plural(proxied, "server")
            ),
        )
    }
}

/// `projects[CWD].mcpServers` when it has entries: the key as written
/// (found by [`ProjectKeys`], the rule `import --project` uses too), and
/// the servers.
pub(super) fn project_servers<'a>(document: &'a Value, cwd: &Path) -> Option<(&'a str, &'a Value)> {
    let projects = document.get("projects")?.as_object()?;
    let (_, (key, project)) = ProjectKeys::of(cwd).find(|key| projects.get_key_value(key))?;
    let servers = project.get("mcpServers")?;
    let empty = servers.as_object().is_some_and(serde_json::Map::is_empty);
    (!empty).then_some((key.as_str(), servers))
}

/// A JSON file: `Ok(None)` if it does not exist; `Err((detail, fix))` if it
/// cannot be read or is not JSON (naming the line and column).
pub(super) fn read_json(file: &Path) -> Result<Option<Value>, (String, String)> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err((
                format!("cannot read {}: {error}", file.display()),
                format!("make {} readable", file.display()),
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        let message = crate::config::strip_position(&error.to_string());
        (
            format!(
                "{} is not valid JSON: {message} (line {line}, column {column})",
                file.display()
            ),
            format!(
                "repair the JSON of {} at line {line}, column {column} (Claude Code cannot read it either)",
                file.display()
            ),
        )
    })
}

/// A path as a shell word: quoted when it holds a space or a quote.
pub(super) fn quote_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains([' ', '\'', '"']) {
        format!("\"{}\"", text.replace('"', "\\\""))
    } else {
        text
    }
}
