//! `mcp-manager reload` and `mcp-manager shutdown`: the running manager's
//! life, in words a person reads.

use std::time::Duration;

use crate::control_api::{ApiClient, ApiError, Ping, ReloadAnswer};

/// How long `shutdown` waits for the manager's process to be gone: the
/// manager's own limit for stopping every daemon, and some.
const GONE_WITHIN: Duration = Duration::from_secs(20);

/// Why `shutdown` did not leave the manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("127.0.0.1:{port} is not your mcp-manager ({why}); nothing was stopped")]
    Stranger { port: u16, why: String },
    #[error(
        "the manager (pid {pid}) still runs {within:?} after it was asked to stop; see manager.log (`mcp-manager logs` shows daemons), or end it with `kill {pid}`"
    )]
    StillRunning { pid: u32, within: Duration },
}

/// What a reload changed, one part per kind: `added fs`, `removed old,
/// older`, `restarted web` (empty: nothing changed).
pub fn changes(answer: &ReloadAnswer) -> Vec<String> {
    [
        ("added", &answer.added),
        ("removed", &answer.removed),
        ("restarted", &answer.changed),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| format!("{what} {}", names.join(", ")))
    .collect()
}

/// What a reload did, one line per kind of change.
pub fn reload_report(answer: &ReloadAnswer) -> String {
    if let Some(error) = &answer.error {
        return format!("not applied: {error}");
    }
    let mut lines = changes(answer);
    if lines.is_empty() {
        lines.push("reloaded: no entry changed".into());
    }
    lines.extend(
        answer
            .needs_restart
            .iter()
            .map(|note| format!("not yet: {note}")),
    );
    lines.join("\n")
}

/// Asks the manager on `api` to stop every daemon and exit, and waits
/// until its process is gone; what happened.
///
/// # Errors
/// [`ShutdownError`]: the port is not a manager's, the manager refused, or
/// it did not exit in time.
pub async fn shutdown(api: &ApiClient) -> Result<String, ShutdownError> {
    let port = api.port();
    let pid = match api.ping().await {
        Ping::Nothing => return Ok(format!("no manager runs on 127.0.0.1:{port}")),
        Ping::Stranger(why) => return Err(ShutdownError::Stranger { port, why }),
        Ping::Manager { pid, .. } => pid,
    };
    let answer = api.shutdown().await;
    let pid = match (answer, pid) {
        (Ok(answer), _) => answer.pid,
        // It may have closed the connection as it stopped: its pid says.
        (Err(ApiError::NotRunning { .. } | ApiError::Failed { .. }), Some(pid)) => pid,
        (Err(error), _) => return Err(error.into()),
    };
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    while crate::process::is_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return Err(ShutdownError::StillRunning {
                pid,
                within: GONE_WITHIN,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(format!(
        "stopped the manager (pid {pid}) and every daemon it ran; the next session starts it again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_report_names_each_change_or_the_error() {
        let answer = ReloadAnswer {
            applied: true,
            added: vec!["fs".into()],
            removed: vec!["old".into(), "older".into()],
            changed: vec!["web".into()],
            error: None,
            needs_restart: vec!["managerPort 3199 -> 4199: ...".into()],
        };
        assert_eq!(
            reload_report(&answer),
            "added fs\nremoved old, older\nrestarted web\nnot yet: managerPort 3199 -> 4199: ..."
        );
        assert_eq!(
            reload_report(&ReloadAnswer {
                applied: true,
                ..ReloadAnswer::default()
            }),
            "reloaded: no entry changed"
        );
        let refused = ReloadAnswer {
            error: Some("config x is not valid JSON".into()),
            ..ReloadAnswer::default()
        };
        assert_eq!(
            reload_report(&refused),
            "not applied: config x is not valid JSON"
        );
    }
}
