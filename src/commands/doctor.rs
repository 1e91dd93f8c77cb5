//! `mcp-manager doctor`: what is wrong with this installation, and how to
//! fix it.
//!
//! [`diagnose`] runs every check and returns a [`Report`]: one [`Check`] per
//! finding, each `ok`, `warning` or `problem`, with a one-line detail and,
//! when it is not ok, the fix to apply. The checks, in order:
//!
//! 1. the config file loads (else the built-in daemons stand in for it, and
//!    the checks below say so);
//! 2. the program of every entry with a `command` is on `PATH`;
//! 3. every configured port is free or served by its daemon (a live lock),
//!    and the manager's port is free or served by the manager;
//! 4. no lock file names a process that is gone;
//! 5. the manager answers `/ping` (not running is only a warning: proxies
//!    start it on demand);
//! 6. Claude Code's config files (`~/.claude.json`, the project's
//!    `.mcp.json`, and the `~/.claude/mcp.json` it does not read) run their
//!    servers through `mcp-proxy`;
//! 7. the `mcp-proxy` beside this binary is the same version.
//!
//! Only problems make the report unhealthy ([`Report::healthy`]).
//!
//! The doctor observes; it never starts, stops, removes or writes anything.
//! Secrets stay out of the report: the `env`, `headers` and `args` of an
//! entry are never quoted (a config error under `env` or `headers` has its
//! quoted values masked), only names, commands, ports and paths.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::commands::generate;
use crate::config::{Config, ConfigError, ServerConfig};
use crate::control_api::{ApiClient, Ping};
use crate::daemon::{launch, record};
use crate::{paths, process};

/// How long the manager may take to answer `/ping` (it answers at once).
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `mcp-proxy --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// This binary's version, which `mcp-proxy` must match.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the doctor looks at. Every location is an input, so tests (and
/// `--port`) can point it anywhere.
#[derive(Debug, Clone)]
pub struct DoctorInput {
    /// The tool's home: `config.json`, the lock files.
    pub home: PathBuf,
    /// The user's home directory, where Claude Code keeps `.claude.json`
    /// and `.claude/mcp.json`; `None` skips those files.
    pub user_home: Option<PathBuf>,
    /// The project directory: its `.mcp.json`, and its entry in
    /// `.claude.json`'s `projects`.
    pub cwd: PathBuf,
    /// `--port`: the manager's control port; `None` is the config's
    /// `managerPort`.
    pub manager_port: Option<u16>,
    /// The `mcp-proxy` whose version is checked; `None` is the one beside
    /// this binary (where `cargo install` puts both).
    pub proxy_exe: Option<PathBuf>,
}

impl DoctorInput {
    /// The input for the user running this: `home` (see
    /// [`crate::paths::home`]), the user's home directory, the current
    /// directory and the `mcp-proxy` beside this binary.
    pub fn for_current_user(home: PathBuf, manager_port: Option<u16>) -> DoctorInput {
        DoctorInput {
            home,
            user_home: dirs::home_dir(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            manager_port,
            proxy_exe: None,
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth fixing, but nothing fails because of it.
    Warning,
    /// Something will fail until it is fixed.
    Problem,
}

impl Status {
    fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warning => "!",
            Status::Problem => "✗",
        }
    }
}

/// One finding. Serialised as `{"name", "status", "detail", "fix"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, short and stable (`config`, `port 3100 (memory)`).
    pub name: String,
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// What to do about it; `None` when the check is ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warning(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Status::Warning, name.into(), detail.into(), fix.into())
    }

    fn problem(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Status::Problem, name.into(), detail.into(), fix.into())
    }

    fn with_fix(status: Status, name: String, detail: String, fix: String) -> Check {
        Check {
            name,
            status,
            detail,
            fix: Some(fix),
        }
    }
}

/// Every finding, in the order of the checks. Serialised (`--json`) as
/// `{"healthy": bool, "checks": [...]}`; displayed as one line per check
/// with its mark (✓, ! or ✗), the fix indented below, and a summary line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    healthy: bool,
    checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            healthy: checks.iter().all(|c| c.status != Status::Problem),
            checks,
        }
    }

    /// No check found a problem (warnings are allowed): exit code 0.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                check.status.mark(),
                check.name,
                check.detail
            )?;
            if let Some(fix) = &check.fix {
                writeln!(f, "    fix: {fix}")?;
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        let (problems, warnings) = (count(Status::Problem), count(Status::Warning));
        match (problems, warnings) {
            (0, 0) => write!(f, "healthy"),
            (0, w) => write!(f, "healthy, {}", plural(w, "warning")),
            (p, w) => write!(
                f,
                "not healthy: {}, {}",
                plural(p, "problem"),
                plural(w, "warning")
            ),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Runs every check (see the module docs). Never fails: what cannot be
/// checked is itself a finding.
pub async fn diagnose(input: &DoctorInput) -> Report {
    let mut checks = Vec::new();
    let (config_check, config, config_valid) = check_config(&input.home);
    checks.push(config_check);
    let config_file = config
        .source
        .clone()
        .unwrap_or_else(|| paths::config_file(&input.home));
    let manager_port = input.manager_port.unwrap_or(config.manager_port);
    let proxy = input.proxy_exe.clone().unwrap_or_else(generate::proxy_path);

    // The two slow ones (bounded by their timeouts) run side by side.
    let (ping, version) = tokio::join!(ping_manager(manager_port), check_proxy_version(&proxy));

    checks.extend(check_runners(&config));
    for server in config.servers.values() {
        if let Some(check) = check_port(&input.home, server, &config_file).await {
            checks.push(check);
        }
    }
    checks.push(check_manager_port(manager_port, &ping, &config_file));
    checks.extend(check_locks(&input.home));
    let start = if manager_port == config.manager_port {
        "mcp-manager --start-all".to_owned()
    } else {
        format!("mcp-manager --port {manager_port} --start-all")
    };
    checks.push(check_manager(manager_port, &ping, &start));
    checks.extend(check_claude(input, &config, config_valid, &proxy));
    checks.push(version);
    Report::new(checks)
}

// ---- 1. config ----

/// The config check, the config the other checks use, and whether it is
/// the user's (`false`: the built-in daemons stand in for a broken file).
fn check_config(home: &Path) -> (Check, Config, bool) {
    match Config::load(home) {
        Ok(config) => {
            let names = config.names().join(", ");
            let detail = match &config.source {
                Some(file) => format!(
                    "{} is valid: {} ({names})",
                    file.display(),
                    plural(config.servers.len(), "daemon")
                ),
                None => format!(
                    "no {}; the built-in daemons are used ({names})",
                    paths::config_file(home).display()
                ),
            };
            (Check::ok("config", detail), config, true)
        }
        Err(error) => {
            let fix = match &error {
                ConfigError::Read { path, .. } => format!(
                    "make {} readable, or remove it to use the built-in daemons",
                    path.display()
                ),
                ConfigError::Syntax {
                    path, line, column, ..
                } => format!(
                    "repair the JSON of {} at line {line}, column {column}",
                    path.display()
                ),
                ConfigError::Invalid { path, key, .. } => {
                    format!("edit `{key}` in {}", path.display())
                }
            };
            let detail = format!(
                "{}; the checks below use the built-in daemons instead",
                config_error_text(&error)
            );
            (
                Check::problem("config", detail, fix),
                Config::builtin(),
                false,
            )
        }
    }
}

/// The error's message, its cause included, with the quoted values masked
/// when the key is under `env` or `headers` (serde quotes the value it
/// rejects: "invalid type: integer `1234`, expected a string").
fn config_error_text(error: &ConfigError) -> String {
    match error {
        ConfigError::Invalid { path, key, problem }
            if key
                .split('.')
                .any(|part| part == "env" || part == "headers") =>
        {
            format!(
                "config {}: key `{key}`: {}",
                path.display(),
                mask_quoted(problem)
            )
        }
        other => crate::http::error_chain(other),
    }
}

/// `text` with whatever stands between `"…"` or `` `…` `` replaced by `…`.
fn mask_quoted(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(quote) if c == quote => {
                masked.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                masked.push(c);
                if c == '"' || c == '`' {
                    masked.push('…');
                    open = Some(c);
                }
            }
        }
    }
    masked
}

// ---- 2. runners ----

/// One check per distinct `command`, naming the entries that use it.
fn check_runners(config: &Config) -> Vec<Check> {
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for server in config.servers.values() {
        if let Some(command) = server.command.as_deref() {
            users.entry(command).or_default().push(&server.name);
        }
    }
    if users.is_empty() {
        return vec![Check::ok("runners", "no entry starts a program")];
    }
    users
        .into_iter()
        .map(|(command, names)| {
            let name = format!("runner `{command}`");
            let used_by = names.join(", ");
            match process::find_program(command) {
                Some(found) => Check::ok(name, format!("{} (for {used_by})", found.display())),
                None => Check::problem(
                    name,
                    format!("not found (needed by {used_by})"),
                    launch::missing_program(command),
                ),
            }
        })
        .collect()
}

// ---- 3. ports ----

/// A local daemon's port: free, served by its daemon (a live lock on this
/// port), or held by a stranger. `None` for a remote (`url`) entry.
async fn check_port(home: &Path, server: &ServerConfig, config_file: &Path) -> Option<Check> {
    if server.url.is_some() {
        return None;
    }
    let port = server.port?;
    let daemon = &server.name;
    let name = format!("port {port} ({daemon})");
    let holder = process::port_holder(port);
    // `port_holder` cannot see everything (other users' processes, other
    // platforms); a connect can.
    if holder.is_none() && !crate::daemon::probe::answers(port).await {
        if server.command.is_none() {
            return Some(Check::warning(
                name,
                format!(
                    "nothing listens; {daemon} has no \"command\", so it must be started by hand"
                ),
                format!(
                    "start {daemon} on port {port}, or give it a \"command\" in {}",
                    config_file.display()
                ),
            ));
        }
        return Some(Check::ok(name, "free"));
    }
    let lock = record::read(&paths::lock_file(home, daemon))
        .filter(|lock| lock.port == port && lock.is_live());
    if let Some(lock) = lock {
        // A runner (`npx`) may leave the listening to its child.
        let detail = match holder {
            Some(pid) if pid != lock.pid => format!(
                "served by {daemon}, pid {} (listening: {})",
                lock.pid,
                process::describe(pid)
            ),
            _ => format!("served by {daemon}, pid {}", lock.pid),
        };
        return Some(Check::ok(name, detail));
    }
    let who = holder.map_or_else(|| "another program".to_owned(), process::describe);
    if server.command.is_none() {
        return Some(Check::ok(
            name,
            format!("held by {who} ({daemon} is started by hand)"),
        ));
    }
    Some(Check::problem(
        name,
        format!("held by {who}, which is not {daemon}'s daemon"),
        format!(
            "stop that program, or give {daemon} another \"port\" in {}",
            config_file.display()
        ),
    ))
}

/// Who answers `/ping` on the manager's port.
#[derive(Debug)]
enum ManagerPing {
    Ours {
        pid: Option<u64>,
        version: Option<String>,
    },
    /// Nothing listens.
    Nothing,
    /// Something that is not our manager, or a manager that does not answer.
    Stranger(String),
}

async fn ping_manager(port: u16) -> ManagerPing {
    let client = match ApiClient::new(port, PING_TIMEOUT) {
        Ok(client) => client,
        Err(error) => return ManagerPing::Stranger(error.to_string()),
    };
    match client.ping().await {
        Ping::Manager { pid, version } => ManagerPing::Ours {
            pid: pid.map(u64::from),
            version,
        },
        Ping::Nothing => ManagerPing::Nothing,
        Ping::Stranger(what) => ManagerPing::Stranger(what),
    }
}

fn check_manager_port(port: u16, ping: &ManagerPing, config_file: &Path) -> Check {
    let name = format!("manager port {port}");
    match ping {
        ManagerPing::Ours { pid, .. } => Check::ok(
            name,
            match pid {
                Some(pid) => format!("served by mcp-manager, pid {pid}"),
                None => "served by mcp-manager".to_owned(),
            },
        ),
        ManagerPing::Nothing => Check::ok(name, "free"),
        ManagerPing::Stranger(reason) => {
            let who = process::port_holder(port)
                .map_or_else(|| "another program".to_owned(), process::describe);
            Check::problem(
                name,
                format!("held by {who}, which is not mcp-manager ({reason})"),
                format!(
                    "stop that program, or choose another port with `--port` or \"managerPort\" in {}",
                    config_file.display()
                ),
            )
        }
    }
}

// ---- 4. stale locks ----

/// One warning per `*.lock` (but `manager.lock`, the manager's own `fs4`
/// lock) whose process is gone or which cannot be read; else one ok.
fn check_locks(home: &Path) -> Vec<Check> {
    let entries = match std::fs::read_dir(home) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::ok(
                "locks",
                format!("no lock files ({} does not exist yet)", home.display()),
            )];
        }
        Err(error) => {
            return vec![Check::warning(
                "locks",
                format!("cannot list {}: {error}", home.display()),
                format!("make {} readable", home.display()),
            )];
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "lock")
                && path.file_name().is_some_and(|name| name != "manager.lock")
        })
        .collect();
    files.sort();
    let mut live = 0;
    let mut checks = Vec::new();
    for file in files {
        let name = format!(
            "lock {}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        match record::read(&file) {
            Some(lock) if lock.is_live() => live += 1,
            Some(lock) => checks.push(Check::warning(
                name,
                format!(
                    "stale: pid {} (port {}) is no longer running",
                    lock.pid, lock.port
                ),
                format!(
                    "remove {} (the manager also removes it on its next start)",
                    file.display()
                ),
            )),
            // Gone since it was listed: nothing to report.
            None if !file.exists() => {}
            None => checks.push(Check::warning(
                name,
                "cannot be read as a lock file",
                format!("remove {}", file.display()),
            )),
        }
    }
    if checks.is_empty() {
        checks.push(Check::ok("locks", format!("none stale ({live} live)")));
    }
    checks
}

// ---- 5. the manager ----

fn check_manager(port: u16, ping: &ManagerPing, start: &str) -> Check {
    match ping {
        ManagerPing::Ours { pid, version } => {
            let pid = pid.map_or_else(String::new, |pid| format!("pid {pid}, "));
            match version.as_deref() {
                Some(version) if version != VERSION => Check::warning(
                    "manager",
                    format!(
                        "running on 127.0.0.1:{port} ({pid}version {version}), but this mcp-manager is {VERSION}"
                    ),
                    format!("restart it: stop it (Ctrl-C, or SIGTERM), then `{start}`"),
                ),
                version => Check::ok(
                    "manager",
                    format!(
                        "running on 127.0.0.1:{port} ({pid}version {})",
                        version.unwrap_or("unknown")
                    ),
                ),
            }
        }
        ManagerPing::Nothing => Check::warning(
            "manager",
            format!("not running on 127.0.0.1:{port} (proxies start it on demand)"),
            format!("nothing, or start it now: `{start}`"),
        ),
        ManagerPing::Stranger(_) => Check::warning(
            "manager",
            format!("not reachable: port {port} is held by another program"),
            format!("see \"manager port {port}\""),
        ),
    }
}

// ---- 6. Claude Code's config files ----

/// `~/.claude.json` (`mcpServers`, and `projects[CWD].mcpServers`), the
/// project's `.mcp.json`, and `~/.claude/mcp.json`. `--target` names are
/// checked against `config` only when it is the user's (`config_valid`).
fn check_claude(
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
        let file = user_home.join(".claude.json");
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

    let file = input.cwd.join(".mcp.json");
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
        let file = generate::target(user_home);
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

/// What one Claude Code server entry runs.
#[derive(Debug, PartialEq, Eq)]
enum Entry<'a> {
    /// `mcp-proxy`, with its `--target` if it has one.
    Proxy {
        command: &'a str,
        target: Option<&'a str>,
    },
    /// Another program: one copy per session.
    Direct,
    /// `type`/`url`: Claude Code connects itself; nothing runs per session.
    Remote,
    Malformed,
}

fn classify(entry: &Value) -> Entry<'_> {
    let Some(entry) = entry.as_object() else {
        return Entry::Malformed;
    };
    match entry.get("command") {
        Some(Value::String(command)) if is_proxy(command) => Entry::Proxy {
            command,
            target: target_arg(entry.get("args")),
        },
        Some(Value::String(_)) => Entry::Direct,
        Some(_) => Entry::Malformed,
        None if entry.get("url").is_some_and(Value::is_string) => Entry::Remote,
        None => Entry::Malformed,
    }
}

/// Is the command's file name `mcp-proxy` (`mcp-proxy.exe`)? Either
/// separator, whatever this platform's.
fn is_proxy(command: &str) -> bool {
    let file = command.rsplit(['/', '\\']).next().unwrap_or(command);
    file == "mcp-proxy" || file.eq_ignore_ascii_case("mcp-proxy.exe")
}

/// The value of `--target NAME` or `--target=NAME` in `args`.
fn target_arg(args: Option<&Value>) -> Option<&str> {
    let args = args?.as_array()?;
    let mut words = args.iter().filter_map(Value::as_str);
    while let Some(word) = words.next() {
        if word == "--target" {
            return words.next();
        }
        if let Some(target) = word.strip_prefix("--target=") {
            return Some(target);
        }
    }
    None
}

/// `projects[CWD].mcpServers` when it has entries: the key as written
/// (Claude Code may write Windows paths with `/`), and the servers.
fn project_servers<'a>(document: &'a Value, cwd: &Path) -> Option<(&'a str, &'a Value)> {
    let projects = document.get("projects")?.as_object()?;
    let exact = cwd.to_string_lossy();
    let slashed = exact.replace('\\', "/");
    let (key, project) = projects
        .get_key_value(exact.as_ref())
        .or_else(|| projects.get_key_value(&slashed))?;
    let servers = project.get("mcpServers")?;
    let empty = servers.as_object().is_some_and(serde_json::Map::is_empty);
    (!empty).then_some((key.as_str(), servers))
}

/// A JSON file: `Ok(None)` if it does not exist; `Err((detail, fix))` if it
/// cannot be read or is not JSON (naming the line and column).
fn read_json(file: &Path) -> Result<Option<Value>, (String, String)> {
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
        let message = error.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(message.as_str());
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
fn quote_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains([' ', '\'', '"']) {
        format!("\"{}\"", text.replace('"', "\\\""))
    } else {
        text
    }
}

// ---- 7. the proxy's version ----

async fn check_proxy_version(proxy: &Path) -> Check {
    let name = "mcp-proxy version";
    let fix = "`cargo install --path .` in the source tree (it installs both binaries), or reinstall mcp-proxy and mcp-manager from the same release";
    let output = match run_version(proxy).await {
        Ok(output) => output,
        Err(detail) => return Check::problem(name, detail, fix),
    };
    let line = output.lines().next().unwrap_or_default().trim();
    match line.split_whitespace().last() {
        Some(version) if version == VERSION => Check::ok(
            name,
            format!("{}: {VERSION}, same as mcp-manager", proxy.display()),
        ),
        _ => Check::problem(
            name,
            format!(
                "{} says {line:?}; this mcp-manager is {VERSION}",
                proxy.display()
            ),
            fix,
        ),
    }
}

/// `proxy --version`'s output, within [`VERSION_TIMEOUT`].
async fn run_version(proxy: &Path) -> Result<String, String> {
    let shown = proxy.display();
    let mut busy_retries = 5;
    loop {
        let mut command = tokio::process::Command::new(proxy);
        command
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(VERSION_TIMEOUT, command.output()).await {
            Err(_) => {
                return Err(format!(
                    "{shown} did not answer --version within {} s",
                    VERSION_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("no mcp-proxy at {shown}"));
            }
            // A binary being replaced (`cargo install`) is busy for a moment.
            Ok(Err(error))
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy && busy_retries > 0 =>
            {
                busy_retries -= 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(error)) => return Err(format!("cannot run {shown}: {error}")),
            Ok(Ok(output)) if !output.status.success() => {
                return Err(format!("{shown} --version failed ({})", output.status));
            }
            Ok(Ok(output)) => return Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::{Ipv4Addr, TcpListener};

    /// A home, a user home and a project directory, all temporary, and a
    /// fake `mcp-proxy` (on unix) that prints this crate's version.
    struct Setup {
        _dir: tempfile::TempDir,
        home: PathBuf,
        user_home: PathBuf,
        cwd: PathBuf,
        proxy: PathBuf,
        manager_port: u16,
        daemon_port: u16,
    }

    /// A port nothing listens on (the OS gave it out and it was let go).
    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// A program that surely exists: this test binary.
    fn existing_program() -> String {
        std::env::current_exe()
            .expect("the test binary")
            .to_string_lossy()
            .into_owned()
    }

    impl Setup {
        /// Everything healthy: a valid config with one daemon (on a free
        /// port, its runner present), a free manager port, no locks, and
        /// `~/.claude.json` running it through the proxy.
        fn healthy() -> Setup {
            let dir = tempfile::tempdir().expect("tempdir");
            let home = dir.path().join("home");
            let user_home = dir.path().join("user");
            let cwd = dir.path().join("project");
            for d in [&home, &user_home, &cwd] {
                std::fs::create_dir_all(d).expect("mkdir");
            }
            let setup = Setup {
                proxy: dir.path().join("bin").join("mcp-proxy"),
                _dir: dir,
                home,
                user_home,
                cwd,
                manager_port: free_port(),
                daemon_port: free_port(),
            };
            setup.fake_proxy(&format!("mcp-proxy {VERSION}"));
            setup.config(&json!({
                "managerPort": setup.manager_port,
                "mcpServers": {
                    "svc": { "command": existing_program(), "port": setup.daemon_port }
                }
            }));
            setup.claude_user(json!({
                "mcpServers": {
                    "svc": {
                        "command": setup.proxy.to_string_lossy(),
                        "args": ["--target", "svc"]
                    }
                }
            }));
            setup
        }

        /// On unix, a shell script that prints `line` for `--version`.
        fn fake_proxy(&self, line: &str) {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let dir = self.proxy.parent().expect("the proxy's directory");
                std::fs::create_dir_all(dir).expect("mkdir");
                std::fs::write(&self.proxy, format!("#!/bin/sh\necho '{line}'\n"))
                    .expect("write the fake proxy");
                std::fs::set_permissions(&self.proxy, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            #[cfg(not(unix))]
            let _ = line;
        }

        fn config(&self, config: &Value) {
            self.write(&paths::config_file(&self.home), &config.to_string());
        }

        fn claude_user(&self, document: Value) {
            self.write(&self.user_home.join(".claude.json"), &document.to_string());
        }

        fn write(&self, path: &Path, text: &str) {
            std::fs::write(path, text).expect("write");
        }

        fn input(&self) -> DoctorInput {
            DoctorInput {
                home: self.home.clone(),
                user_home: Some(self.user_home.clone()),
                cwd: self.cwd.clone(),
                manager_port: None,
                proxy_exe: Some(self.proxy.clone()),
            }
        }

        async fn diagnose(&self) -> Report {
            diagnose(&self.input()).await
        }
    }

    /// The one check called `name`.
    fn check<'a>(report: &'a Report, name: &str) -> &'a Check {
        report
            .checks()
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in\n{report}"))
    }

    /// A problem, with a fix, that makes the report unhealthy.
    fn assert_problem(report: &Report, name: &str) -> Check {
        let found = check(report, name).clone();
        assert_eq!(found.status, Status::Problem, "{report}");
        assert!(found.fix.is_some(), "a problem says how to fix it");
        assert!(!report.healthy(), "{report}");
        found
    }

    /// A healthy setup is healthy: every check is ok but "manager" (not
    /// running is a warning), and both outputs have their promised shape.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_healthy_setup_is_healthy() {
        let setup = Setup::healthy();
        let report = setup.diagnose().await;
        assert!(report.healthy(), "{report}");
        for check in report.checks() {
            if check.name != "manager" {
                assert_eq!(check.status, Status::Ok, "{check:?}\n{report}");
                assert_eq!(check.fix, None);
            }
        }
        let port = format!("port {} (svc)", setup.daemon_port);
        assert_eq!(check(&report, &port).detail, "free");
        assert_eq!(check(&report, "manager").status, Status::Warning);
        assert!(
            check(&report, "claude user config")
                .detail
                .ends_with("1 server through mcp-proxy")
        );
        assert!(check(&report, "mcp-proxy version").detail.contains(VERSION));

        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["healthy"], true);
        let first = &json["checks"][0];
        assert_eq!(first["name"], "config");
        assert_eq!(first["status"], "ok");
        assert!(first["detail"].is_string());
        assert!(first.get("fix").is_none(), "an ok check has no fix");
        let text = report.to_string();
        assert!(text.starts_with("✓ config: "), "{text}");
        assert!(text.contains("! manager: not running"), "{text}");
        assert!(text.contains("\n    fix: "), "{text}");
        assert!(text.ends_with("healthy, 1 warning"), "{text}");
    }

    /// A config that is not JSON is a problem naming the line and column,
    /// and the other checks fall back to the built-in daemons.
    #[tokio::test]
    async fn bad_config_json_is_a_problem() {
        let setup = Setup::healthy();
        setup.write(
            &paths::config_file(&setup.home),
            "{\n  \"mcpServers\": {,\n}",
        );
        let report = setup.diagnose().await;
        let config = assert_problem(&report, "config");
        assert!(config.detail.contains("line 2"), "{}", config.detail);
        assert!(config.detail.contains("built-in daemons"));
        assert!(
            config
                .fix
                .is_some_and(|f| f.contains("line 2, column") && f.contains("config.json"))
        );
        // The built-in daemons stand in for the broken file.
        check(&report, "port 3100 (memory)");
    }

    /// A key of the wrong type names the key in the detail and the fix; a
    /// bad value under `env` is never printed.
    #[tokio::test]
    async fn an_invalid_key_is_named_and_secrets_are_masked() {
        let setup = Setup::healthy();
        setup.config(&json!({
            "mcpServers": { "svc": { "command": "x", "port": 3999, "env": { "TOKEN": 987654321 } } }
        }));
        let report = setup.diagnose().await;
        let config = assert_problem(&report, "config");
        assert!(
            config.detail.contains("mcpServers.svc.env.TOKEN"),
            "{}",
            config.detail
        );
        assert_eq!(
            config.fix.as_deref(),
            Some(
                format!(
                    "edit `mcpServers.svc.env.TOKEN` in {}",
                    paths::config_file(&setup.home).display()
                )
                .as_str()
            )
        );
        let everything = format!("{report}{}", serde_json::to_string(&report).expect("json"));
        assert!(!everything.contains("987654321"), "{everything}");

        setup.config(&json!({ "mcpServers": { "svc": { "port": "3100" } } }));
        let report = setup.diagnose().await;
        let config = assert_problem(&report, "config");
        assert!(config.detail.contains("`mcpServers.svc.port`"));
        assert!(config.detail.contains("\"3100\""), "not a secret: shown");
    }

    /// A runner that is not on PATH is a problem whose fix says what to
    /// install.
    #[tokio::test]
    async fn a_missing_runner_is_a_problem() {
        let setup = Setup::healthy();
        setup.config(&json!({
            "managerPort": setup.manager_port,
            "mcpServers": {
                "svc": { "command": existing_program(), "port": setup.daemon_port },
                "gone": { "command": "surely-not-installed-xyz", "port": free_port() }
            }
        }));
        let report = setup.diagnose().await;
        let runner = assert_problem(&report, "runner `surely-not-installed-xyz`");
        assert!(runner.detail.contains("gone"));
        assert_eq!(
            runner.fix,
            Some(launch::missing_program("surely-not-installed-xyz"))
        );
        let svc = format!("runner `{}`", existing_program());
        assert_eq!(check(&report, &svc).status, Status::Ok);
    }

    /// A daemon's port held by a program that is not its daemon is a
    /// problem naming the holder (here: this test process).
    #[tokio::test]
    async fn a_port_held_by_a_stranger_is_a_problem() {
        let setup = Setup::healthy();
        let stranger = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = stranger.local_addr().expect("addr").port();
        setup.config(&json!({
            "managerPort": setup.manager_port,
            "mcpServers": { "svc": { "command": existing_program(), "port": port } }
        }));
        let report = setup.diagnose().await;
        let held = assert_problem(&report, &format!("port {port} (svc)"));
        #[cfg(target_os = "linux")]
        assert!(
            held.detail.contains(&format!("pid {}", std::process::id())),
            "{}",
            held.detail
        );
        assert!(held.fix.is_some_and(|f| f.contains("\"port\"")));
        drop(stranger);
    }

    /// The manager's port held by something that does not answer `/ping`
    /// as the manager is a problem; "manager" itself stays a warning.
    #[tokio::test]
    async fn a_manager_port_held_by_a_stranger_is_a_problem() {
        let setup = Setup::healthy();
        // Accepts connections (the kernel's backlog) and never answers.
        let stranger = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = stranger.local_addr().expect("addr").port();
        let input = DoctorInput {
            manager_port: Some(port),
            ..setup.input()
        };
        let report = diagnose(&input).await;
        let held = assert_problem(&report, &format!("manager port {port}"));
        assert!(held.fix.is_some_and(|f| f.contains("--port")));
        assert_eq!(check(&report, "manager").status, Status::Warning);
        drop(stranger);
    }

    /// A lock whose process is gone is a warning naming the file to
    /// remove; warnings alone keep the report healthy. `manager.lock` is
    /// the manager's own and is never reported.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_stale_lock_is_a_warning() {
        let setup = Setup::healthy();
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("reap");
        let lock_path = paths::lock_file(&setup.home, "svc");
        let lock = record::DaemonRecord {
            pid,
            port: setup.daemon_port,
            started_at: 1,
            transport: crate::config::TransportKind::Stdio,
            process_start: None,
        };
        record::write(&lock_path, &lock).expect("write the lock");
        setup.write(&setup.home.join("manager.lock"), "");
        let report = setup.diagnose().await;
        let stale = check(&report, "lock svc.lock");
        assert_eq!(stale.status, Status::Warning);
        assert!(stale.detail.contains(&format!("pid {pid}")));
        assert_eq!(
            stale.fix.as_deref(),
            Some(
                format!(
                    "remove {} (the manager also removes it on its next start)",
                    lock_path.display()
                )
                .as_str()
            )
        );
        assert!(
            report
                .checks()
                .iter()
                .all(|c| c.name != "lock manager.lock")
        );
        assert!(report.healthy(), "{report}");
    }

    /// Claude Code entries that run their server directly are warnings
    /// (fix: import them), per file and scope; `~/.claude/mcp.json` is
    /// noted as unread. Nothing of an entry's env or args is printed.
    #[cfg(unix)]
    #[tokio::test]
    async fn claude_entries_not_through_the_proxy_are_warnings() {
        let setup = Setup::healthy();
        let cwd = setup.cwd.to_string_lossy().into_owned();
        setup.claude_user(json!({
            "mcpServers": {
                "svc": { "command": setup.proxy.to_string_lossy(), "args": ["--target", "svc"] },
                "memory": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-memory"],
                    "env": { "API_KEY": "sk-very-secret" }
                },
                "remote": { "type": "http", "url": "https://example.com/mcp",
                            "headers": { "Authorization": "Bearer hidden-token" } }
            },
            "projects": { cwd.clone(): { "mcpServers": { "local": { "command": "uvx", "args": ["x"] } } } }
        }));
        setup.write(
            &setup.cwd.join(".mcp.json"),
            &json!({ "mcpServers": { "shared": { "command": "node", "args": ["s.js"] } } })
                .to_string(),
        );
        let legacy = generate::target(&setup.user_home);
        std::fs::create_dir_all(legacy.parent().expect("dir")).expect("mkdir");
        setup.write(&legacy, r#"{"mcpServers": {}}"#);

        let report = setup.diagnose().await;
        assert!(report.healthy(), "warnings only: {report}");
        let user = check(&report, "claude user config");
        assert_eq!(user.status, Status::Warning);
        assert!(user.detail.contains("1 of 3 not through mcp-proxy"));
        assert!(user.detail.ends_with(": memory"), "{}", user.detail);
        assert_eq!(user.fix.as_deref(), Some("`mcp-manager import`"));
        let project_fix = format!("`mcp-manager import --project {cwd}`");
        for name in ["claude local config", "claude project config"] {
            let found = check(&report, name);
            assert_eq!(found.status, Status::Warning, "{name}");
            assert_eq!(found.fix.as_deref(), Some(project_fix.as_str()), "{name}");
        }
        let unread = check(&report, "claude mcp.json");
        assert_eq!(unread.status, Status::Warning);
        assert!(
            unread
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("generate-config --scope user"))
        );
        let everything = format!("{report}{}", serde_json::to_string(&report).expect("json"));
        for secret in ["sk-very-secret", "hidden-token", "server-memory"] {
            assert!(
                !everything.contains(secret),
                "{secret} shown:\n{everything}"
            );
        }
    }

    /// With no server in any file Claude Code reads, a warning says how
    /// to register one through the proxy.
    #[tokio::test]
    async fn no_claude_server_at_all_is_a_warning() {
        let setup = Setup::healthy();
        std::fs::remove_file(setup.user_home.join(".claude.json")).expect("remove");
        let report = setup.diagnose().await;
        assert_eq!(check(&report, "claude user config").status, Status::Ok);
        let none = check(&report, "claude code");
        assert_eq!(none.status, Status::Warning);
        assert!(
            none.fix
                .as_deref()
                .is_some_and(|f| f.contains("claude mcp add") && f.contains("--target svc")),
            "{none:?}"
        );
    }

    /// A proxy entry whose target is not configured is a problem, and so
    /// is a `.claude.json` that is not JSON (with its line and column).
    #[tokio::test]
    async fn broken_claude_files_are_problems() {
        let setup = Setup::healthy();
        setup.claude_user(json!({
            "mcpServers": {
                "direct": { "command": existing_program(), "args": [] },
                "other": { "command": "/opt/x/mcp-proxy.exe", "args": ["--target=nope"] }
            }
        }));
        let report = setup.diagnose().await;
        let user = assert_problem(&report, "claude user config");
        assert!(user.detail.contains("--target nope"), "{}", user.detail);
        assert!(
            user.detail
                .contains("/opt/x/mcp-proxy.exe, which is not there")
        );

        setup.write(
            &setup.user_home.join(".claude.json"),
            "{\"a\": 1,\n\n  oops}",
        );
        let report = setup.diagnose().await;
        let user = assert_problem(&report, "claude user config");
        assert!(
            user.detail.contains("(line 3, column 3)"),
            "{}",
            user.detail
        );
        assert!(user.fix.is_some_and(|f| f.contains("line 3, column 3")));
    }

    /// An `mcp-proxy` of another version, or none at all, is a problem
    /// whose fix is to install both again.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_version_mismatch_is_a_problem() {
        let setup = Setup::healthy();
        setup.fake_proxy("mcp-proxy 0.0.0-other");
        let report = setup.diagnose().await;
        let version = assert_problem(&report, "mcp-proxy version");
        assert!(version.detail.contains("0.0.0-other") && version.detail.contains(VERSION));
        assert!(
            version
                .fix
                .is_some_and(|f| f.contains("cargo install --path ."))
        );

        let input = DoctorInput {
            proxy_exe: Some(setup.home.join("no-such-mcp-proxy")),
            ..setup.input()
        };
        let report = diagnose(&input).await;
        let version = assert_problem(&report, "mcp-proxy version");
        assert!(version.detail.starts_with("no mcp-proxy at "));
    }

    #[test]
    fn entries_are_classified_by_their_command() {
        let proxy = json!({"command": "C:\\bin\\MCP-PROXY.EXE", "args": ["--target", "a"]});
        assert_eq!(
            classify(&proxy),
            Entry::Proxy {
                command: "C:\\bin\\MCP-PROXY.EXE",
                target: Some("a")
            }
        );
        assert_eq!(
            classify(&json!({"command": "mcp-proxy-old"})),
            Entry::Direct
        );
        assert_eq!(classify(&json!({"url": "https://x"})), Entry::Remote);
        assert_eq!(classify(&json!({"command": 3})), Entry::Malformed);
        assert_eq!(classify(&json!("mcp-proxy")), Entry::Malformed);
    }

    #[test]
    fn quoted_values_are_masked() {
        assert_eq!(
            mask_quoted("invalid type: integer `12`, expected a string \"x\""),
            "invalid type: integer `…`, expected a string \"…\""
        );
    }
}
