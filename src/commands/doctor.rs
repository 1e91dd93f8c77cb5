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
//! 7. the `mcp-proxy` beside this binary is the same version;
//! 8. when the manager runs: it was started by the user service (a
//!    warning when a proxy started it), and every `${VAR}` the config uses
//!    is set for it (from `/status`'s `config.unsetVariables`; unknown for
//!    an older manager), and no config change waits for its restart;
//! 9. when the manager runs: no daemon is failing as its `/status` says
//!    (a hosted server whose child keeps exiting, a port held by a
//!    stranger, a start that failed), each with its reason and the fix;
//! 10. no Claude Code entry runs `mcp-proxy --target X` where `X` is a
//!     remote server that answers 401 with `WWW-Authenticate`: it needs a
//!     login (OAuth), which only Claude Code does (probed for five seconds
//!     at most, only over https or to loopback).
//!
//! Only problems make the report unhealthy ([`Report::healthy`]).
//!
//! One module per concern: `config` (1), `daemons` (2–4 and 9), `manager` (3,
//! 5 and 8, over `sockets/manager.sock` when it is ours, else TCP), `claude` (6; where Claude's files are and how a project is
//! keyed are [`crate::claude`]'s, shared with `import`), `version` (7),
//! `remote` (10, with `import`'s probe),
//! and `report`, the text and JSON of the findings.
//!
//! The doctor observes; it never starts, stops, removes or writes anything
//! (check 10's probe closes any session it opens).
//! Secrets stay out of the report: the `env`, `headers` and `args` of an
//! entry are never quoted (a config error under `env` or `headers` has its
//! quoted values masked), only names, commands, ports and paths.

mod claude;
mod config;
mod daemons;
mod manager;
mod remote;
mod report;
#[cfg(test)]
mod tests;
mod version;

use std::path::PathBuf;

use serde::Serialize;

use crate::commands::{generate, service};
use crate::paths;
pub use report::Report;

/// This binary's version, which `mcp-proxy` must match.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// Where this platform's user service file is (`mcp-manager service
    /// install`); `None`: no service on this platform.
    pub service_file: Option<PathBuf>,
}

impl DoctorInput {
    /// The input for the user running this: `home` (see
    /// [`crate::paths::home`]), the user's home directory, the current
    /// directory and the `mcp-proxy` beside this binary.
    pub fn for_current_user(home: PathBuf, manager_port: Option<u16>) -> DoctorInput {
        let user_home = dirs::home_dir();
        let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
        let service_file = service::ServiceKind::of_this_platform()
            .zip(user_home.as_deref())
            .map(|(kind, dir)| kind.file(dir, xdg.as_deref()));
        DoctorInput {
            home,
            user_home,
            service_file,
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
    pub(super) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(super) fn warning(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Status::Warning, name.into(), detail.into(), fix.into())
    }

    pub(super) fn problem(
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

/// Runs every check (see the module docs). Never fails: what cannot be
/// checked is itself a finding.
pub async fn diagnose(input: &DoctorInput) -> Report {
    let mut checks = Vec::new();
    let (config_check, config, config_valid) = config::check_config(&input.home);
    checks.push(config_check);
    let config_file = config
        .source
        .clone()
        .unwrap_or_else(|| paths::config_file(&input.home));
    let manager_port = input.manager_port.unwrap_or(config.manager_port);
    let proxy = input.proxy_exe.clone().unwrap_or_else(generate::proxy_path);

    // The two slow ones (bounded by their timeouts) run side by side.
    let (ping, version) = tokio::join!(
        manager::ping_manager(manager_port, &input.home),
        version::check_proxy_version(&proxy)
    );

    checks.extend(daemons::check_runners(&config));
    for server in config.servers.values() {
        if let Some(check) = daemons::check_port(&input.home, server, &config_file).await {
            checks.push(check);
        }
    }
    checks.push(manager::check_manager_port(
        manager_port,
        &ping,
        &config_file,
    ));
    checks.extend(daemons::check_locks(&input.home));
    let start = if manager_port == config.manager_port {
        "mcp-manager --start-all".to_owned()
    } else {
        format!("mcp-manager --port {manager_port} --start-all")
    };
    checks.push(manager::check_manager(manager_port, &ping, &start));
    checks.extend(manager::check_launcher(
        &ping,
        input.service_file.as_deref(),
    ));
    checks.extend(manager::check_running_config(&ping, &config_file));
    checks.extend(daemons::check_states(&ping, &config_file));
    checks.extend(claude::check_claude(input, &config, config_valid, &proxy));
    checks.extend(remote::check_logins(input, &config, config_valid).await);
    checks.push(version);
    Report::new(checks)
}
