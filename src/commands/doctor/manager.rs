//! Checks 3 and 5, the manager: its port is free or served by the
//! manager, and the manager answers `/ping` (not running is only a
//! warning: proxies start it on demand), at this binary's version.

use std::path::Path;
use std::time::Duration;

use super::{Check, VERSION};
use crate::control_api::{ApiClient, Ping};
use crate::process;

/// How long the manager may take to answer `/ping` (it answers at once).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Who answers `/ping` on the manager's port.
#[derive(Debug)]
pub(super) enum ManagerPing {
    Ours {
        pid: Option<u64>,
        version: Option<String>,
    },
    /// Nothing listens.
    Nothing,
    /// Something that is not our manager, or a manager that does not answer.
    Stranger(String),
}

pub(super) async fn ping_manager(port: u16) -> ManagerPing {
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
