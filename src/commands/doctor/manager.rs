//! Checks 3, 5 and 8, the manager: its port is free or served by the
//! manager, the manager answers `/ping` (not running is only a warning:
//! proxies start it on demand) at this binary's version, and, when it
//! runs: whether the user service started it, and whether every `${VAR}`
//! the config uses is set in its environment.
//!
//! The manager is asked over `sockets/manager.sock` when that is ours
//! ([`ApiClient::for_home`]), else over TCP, where another user's listener
//! gets nothing (it is described instead).

use std::path::Path;
use std::time::Duration;

use super::{Check, VERSION};
use crate::control_api::{ApiClient, ConfigStatus, DaemonStatus, LaunchedBy, Ping};
use crate::process;

/// How long the manager may take to answer `/ping` (it answers at once)
/// and `/status`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Who answers `/ping` on the manager's port.
#[derive(Debug)]
pub(super) enum ManagerPing {
    Ours {
        pid: Option<u64>,
        version: Option<String>,
        /// `None`: an older manager, which does not say.
        launched_by: Option<LaunchedBy>,
        /// `/status`'s `config`; `None`: unknown (an older manager).
        config: Option<ConfigStatus>,
        /// `/status`'s daemons (empty if it did not answer).
        daemons: Vec<DaemonStatus>,
    },
    /// Nothing listens.
    Nothing,
    /// Something that is not our manager, or a manager that does not answer.
    Stranger(String),
}

pub(super) async fn ping_manager(port: u16, home: &Path) -> ManagerPing {
    let client = match ApiClient::for_home(port, PING_TIMEOUT, home) {
        Ok(client) => client,
        Err(error) => return ManagerPing::Stranger(error.to_string()),
    };
    match client.ping().await {
        Ping::Manager {
            pid,
            version,
            launched_by,
        } => {
            let list = client.status().await.ok();
            let (config, daemons) = list.map_or((None, Vec::new()), |l| (l.config, l.daemons));
            ManagerPing::Ours {
                pid: pid.map(u64::from),
                version,
                launched_by,
                config,
                daemons,
            }
        }
        Ping::Nothing => ManagerPing::Nothing,
        Ping::Stranger(what) => ManagerPing::Stranger(what),
    }
}

pub(super) fn check_manager_port(port: u16, ping: &ManagerPing, config_file: &Path) -> Check {
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

pub(super) fn check_manager(port: u16, ping: &ManagerPing, start: &str) -> Check {
    match ping {
        ManagerPing::Ours { pid, version, .. } => {
            let pid = pid.map_or_else(String::new, |pid| format!("pid {pid}, "));
            match version.as_deref() {
                Some(version) if version != VERSION => Check::warning(
                    "manager",
                    format!(
                        "running on 127.0.0.1:{port} ({pid}version {version}), but this mcp-manager is {VERSION}"
                    ),
                    format!("restart it: `mcp-manager shutdown`, then `{start}`"),
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

/// Check 8a, how the running manager was started: by a proxy, it runs
/// with the environment of whichever session was first, and nothing
/// starts it at login; the user service states both. `service_file` is
/// where this platform's service file would be (`None`: no service here).
pub(super) fn check_launcher(ping: &ManagerPing, service_file: Option<&Path>) -> Option<Check> {
    let ManagerPing::Ours {
        pid, launched_by, ..
    } = ping
    else {
        return None;
    };
    let installed = service_file.filter(|file| file.exists());
    let pid = pid.map_or_else(String::new, |pid| format!(" (pid {pid})"));
    let name = "manager service";
    Some(match (launched_by, installed) {
        (Some(LaunchedBy::Service), _) => Check::ok(
            name,
            format!("the manager{pid} was started by the user service"),
        ),
        (Some(LaunchedBy::Proxy), None) if service_file.is_some() => Check::warning(
            name,
            format!(
                "the manager{pid} was started by a proxy: it has the environment of the session that started it, and nothing starts it at login"
            ),
            "`mcp-manager service install` (a manager started at login, in a stated environment)",
        ),
        (Some(LaunchedBy::Proxy | LaunchedBy::Command) | None, Some(file)) => Check::warning(
            name,
            format!(
                "the service is installed ({}), but the running manager{pid} was not started by it",
                file.display()
            ),
            "`mcp-manager shutdown`, then `mcp-manager service install` (which starts the service)",
        ),
        (Some(LaunchedBy::Proxy), None) => Check::ok(
            name,
            format!("the manager{pid} was started by a proxy (this platform has no user service)"),
        ),
        (Some(LaunchedBy::Command), None) => {
            Check::ok(name, format!("the manager{pid} was started by a command"))
        }
        (None, None) => Check::ok(
            name,
            format!(
                "the manager{pid} is older than this doctor and does not say how it was started"
            ),
        ),
    })
}

/// Check 8b, the running manager's config: `${VAR}`s it found unset (they
/// expanded to nothing in every daemon), and changes that wait for a
/// restart. `None` when no manager of ours runs.
pub(super) fn check_running_config(ping: &ManagerPing, config_file: &Path) -> Vec<Check> {
    let ManagerPing::Ours { config, .. } = ping else {
        return Vec::new();
    };
    let name = "manager environment";
    let Some(config) = config else {
        return vec![Check::ok(
            name,
            "unknown: the running manager does not report which ${VAR}s it lacks (an older manager)",
        )];
    };
    let mut checks = Vec::new();
    if config.unset_variables.is_empty() {
        checks.push(Check::ok(
            name,
            "every ${VAR} the config uses is set for the manager",
        ));
    } else {
        let names = config
            .unset_variables
            .iter()
            .map(|v| format!("${{{v}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        checks.push(Check::warning(
            name,
            format!(
                "{names} used in {} {} unset for the running manager: {} to nothing in every daemon",
                config_file.display(),
                if config.unset_variables.len() == 1 { "is" } else { "are" },
                if config.unset_variables.len() == 1 { "it expands" } else { "they expand" },
            ),
            "set it where the manager starts (the service: `systemctl --user set-environment NAME=VALUE` on Linux, `launchctl setenv NAME VALUE` on macOS; else the shell that starts Claude Code), then restart the manager (`mcp-manager shutdown`); or give a default in the config: `${NAME:-value}`",
        ));
    }
    if !config.needs_restart.is_empty() {
        checks.push(Check::warning(
            "manager restart",
            format!(
                "changed in the config but not applied until the manager restarts: {}",
                config.needs_restart.join(", ")
            ),
            "`mcp-manager shutdown` (proxies, or the service, start it again)",
        ));
    }
    checks
}
