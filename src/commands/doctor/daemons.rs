//! Checks 2 to 4 and 9, the daemons: the program of every entry with a
//! `command` is on `PATH`; every configured port is free or served by its
//! daemon (a live lock on it); no lock file names a process that is gone;
//! and, when the manager runs, no daemon fails as its `/status` says (a
//! hosted server's state there is its child's, as its host says).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Check;
use super::manager::ManagerPing;
use crate::config::{Config, ServerConfig};
use crate::control_api::{DaemonState, DaemonStatus};
use crate::daemon::{launch, record};
use crate::{paths, process};

/// One check per distinct `command`, naming the entries that use it.
pub(super) fn check_runners(config: &Config) -> Vec<Check> {
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

/// A local daemon's port: free, served by its daemon (a live lock on this
/// port), or held by a stranger. `None` for a remote (`url`) entry.
pub(super) async fn check_port(
    home: &Path,
    server: &ServerConfig,
    config_file: &Path,
) -> Option<Check> {
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

/// One warning per `*.lock` (but `manager.lock`, the manager's own `fs4`
/// lock) whose process is gone or which cannot be read; else one ok.
pub(super) fn check_locks(home: &Path) -> Vec<Check> {
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

/// Check 9: one problem per daemon the running manager shows failing
/// (`crash-loop`, `degraded`, `failed`) and one warning per daemon on its
/// way back (`restarting`, `backoff`), each with its last error and the
/// fix; else one ok counting them. Nothing when no manager answers.
pub(super) fn check_states(ping: &ManagerPing, config_file: &Path) -> Vec<Check> {
    let ManagerPing::Ours { daemons, .. } = ping else {
        return Vec::new();
    };
    let mut checks: Vec<Check> = daemons
        .iter()
        .filter_map(|d| check_state(d, config_file))
        .collect();
    if checks.is_empty() && !daemons.is_empty() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for daemon in daemons {
            *counts.entry(daemon.state.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = counts
            .into_iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        checks.push(Check::ok(
            "daemons",
            format!("none failing ({})", counts.join(", ")),
        ));
    }
    checks
}

/// The finding for one daemon's status, if it is not well.
fn check_state(daemon: &DaemonStatus, config_file: &Path) -> Option<Check> {
    let name = &daemon.name;
    let check = format!("daemon {name}");
    let why = daemon
        .last_error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    let restarts = match daemon.restarts {
        1 => " (1 restart)".to_owned(),
        n => format!(" ({n} restarts)"),
    };
    let logs = format!(
        "see why with `mcp-manager logs {name}`, fix it, then `mcp-manager restart {name}`"
    );
    Some(match daemon.state {
        DaemonState::CrashLoop => Check::problem(
            check,
            format!("crash-loop: its server keeps exiting{restarts}{why}"),
            logs,
        ),
        DaemonState::Degraded => Check::problem(
            check,
            format!("degraded: some of its server's processes keep failing{restarts}{why}"),
            logs,
        ),
        DaemonState::Failed => {
            let port_taken = daemon
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(" is held by "));
            let fix = if port_taken {
                format!(
                    "stop that program, or give {name} another \"port\" in {}; then `mcp-manager start {name}`",
                    config_file.display()
                )
            } else {
                format!(
                    "see why with `mcp-manager logs {name}`, fix it, then `mcp-manager start {name}`"
                )
            };
            Check::problem(check, format!("failed{why}"), fix)
        }
        DaemonState::Restarting | DaemonState::Backoff => Check::warning(
            check,
            format!(
                "{}: it ended and is started again{restarts}{why}",
                daemon.state.as_str()
            ),
            format!("nothing if it comes back; if not, {logs}"),
        ),
        _ => return None,
    })
}
