//! `mcp-manager status`, `start`, `stop`, `restart`: the running manager's
//! daemons as a table a person reads.

use crate::control_api::{ChildStatus, ConfigStatus, DaemonAction, DaemonState, DaemonStatus};

/// The status table: one row per daemon, columns padded to their widest
/// cell, the last error unpadded at the end; below it, for a hosted server
/// whose child is not serving, what to do.
pub fn table(daemons: &[DaemonStatus]) -> String {
    let rows: Vec<[String; 9]> = daemons
        .iter()
        .map(|d| {
            [
                d.name.clone(),
                d.state.as_str().to_owned(),
                d.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                d.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                d.transport.as_str().to_owned(),
                d.uptime.map(human).unwrap_or_else(|| "-".into()),
                d.restarts.to_string(),
                d.child
                    .as_ref()
                    .map(child_cell)
                    .unwrap_or_else(|| "-".into()),
                d.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "STATE",
        "PID",
        "PORT",
        "TRANSPORT",
        "UPTIME",
        "RESTARTS",
        "CHILD",
        "LAST ERROR",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 9]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 8 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut text = line(header);
    for row in &rows {
        text.push('\n');
        text.push_str(&line(row.each_ref().map(String::as_str)));
    }
    for daemon in daemons {
        if let Some(advice) = advice(daemon) {
            text.push('\n');
            text.push_str(&advice);
        }
    }
    text
}

/// A hosted server's child in one cell: `running pid 4242`, `crash-loop`,
/// or with several children their count per state.
fn child_cell(child: &ChildStatus) -> String {
    if child.states.len() > 1 || child.children > 1 {
        return child
            .states
            .iter()
            .rev()
            .map(|(state, n)| format!("{n} {}", state.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
    }
    match child.pid {
        Some(pid) => format!("{} pid {pid}", child.state.as_str()),
        None => child.state.as_str().to_owned(),
    }
}

/// What to do about a hosted server whose child is not serving (`None`
/// for any other): its log says why.
pub fn advice(daemon: &DaemonStatus) -> Option<String> {
    let name = &daemon.name;
    let what = match daemon.state {
        DaemonState::CrashLoop => "its server keeps exiting",
        DaemonState::Degraded => "some of its server's processes keep failing",
        DaemonState::Restarting => "its server ended and is being started again",
        _ => return None,
    };
    let next = daemon
        .child
        .as_ref()
        .and_then(|c| c.next_try_at)
        .map(|at| {
            let now = crate::paths::now_ms();
            format!(" (next try in {})", human(at.saturating_sub(now)))
        })
        .unwrap_or_default();
    Some(format!(
        "{name}: {what}{next}; see why with `mcp-manager logs {name}`, fix it, then `mcp-manager restart {name}`"
    ))
}

/// The lines above the table: which config is in force, since when, the
/// last reload, and why the file on disk is not in force when it is not.
/// `now` in ms since the Unix epoch.
pub fn config_lines(config: &ConfigStatus, now: u64) -> String {
    let ago = |at: u64| human(now.saturating_sub(at));
    let mut text = match &config.path {
        Some(path) => format!(
            "config: {} (in force for {})",
            path.display(),
            ago(config.loaded_at)
        ),
        None => format!(
            "config: the built-in defaults, no config.json (for {})",
            ago(config.loaded_at)
        ),
    };
    if let Some(at) = config.reloaded_at {
        text.push_str(&format!("; last reloaded {} ago", ago(at)));
    }
    if let Some(error) = &config.error {
        text.push_str(&format!("\nconfig error, not applied: {error}"));
    }
    for note in &config.needs_restart {
        text.push_str(&format!("\nneeds a manager restart: {note}"));
    }
    if !config.unset_variables.is_empty() {
        text.push_str(&format!(
            "\nunset in the manager's environment (expanded to nothing): {}",
            config
                .unset_variables
                .iter()
                .map(|name| format!("${{{name}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    text
}

/// Why a daemon did not end up as `action` asked (`None` if it did):
/// "NAME is STATE: last error".
pub fn unmet(action: DaemonAction, status: &DaemonStatus) -> Option<String> {
    let wanted_running = action != DaemonAction::Stop;
    // A host whose child keeps exiting runs, but serves nothing.
    let serving = status.running && status.state != DaemonState::CrashLoop;
    (serving != wanted_running).then(|| {
        format!(
            "{} is {}{}",
            status.name,
            status.state.as_str(),
            status
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    })
}

/// A duration for people: `3h 04m`, `12m 05s`, `42s`.
pub fn human(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_config_lines_say_what_is_in_force_and_what_is_wrong() {
        let mut config = ConfigStatus {
            path: Some(PathBuf::from("/h/config.json")),
            loaded_at: 1_000,
            reloaded_at: None,
            error: None,
            needs_restart: Vec::new(),
            unset_variables: Vec::new(),
        };
        assert_eq!(
            config_lines(&config, 181_000),
            "config: /h/config.json (in force for 3m 00s)"
        );
        config.reloaded_at = Some(171_000);
        config.error = Some("config /h/config.json is not valid JSON".into());
        config.unset_variables = vec!["TOKEN".into()];
        let text = config_lines(&config, 181_000);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "config: /h/config.json (in force for 3m 00s); last reloaded 10s ago",
                "config error, not applied: config /h/config.json is not valid JSON",
                "unset in the manager's environment (expanded to nothing): ${TOKEN}",
            ]
        );
    }
    use crate::config::TransportKind;

    fn status(name: &str, state: DaemonState, error: Option<&str>) -> DaemonStatus {
        DaemonStatus {
            name: name.into(),
            running: state == DaemonState::Running,
            state,
            pid: (state == DaemonState::Running).then_some(42),
            port: Some(3100),
            transport: TransportKind::Stdio,
            uptime: (state == DaemonState::Running).then_some(3_725_000),
            restarts: 1,
            last_error: error.map(str::to_owned),
            adopted: false,
            log_tail: None,
            child: None,
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(42_000), "42s");
        assert_eq!(human(725_000), "12m 05s");
        assert_eq!(human(3_725_000 * 3), "3h 06m");
    }

    #[test]
    fn the_table_pads_every_column_but_the_last_error() {
        let text = table(&[
            status("memory", DaemonState::Running, None),
            status("a-long-name", DaemonState::Failed, Some("port taken")),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME         STATE    PID"), "{text}");
        assert!(lines[1].contains("1h 02m"), "{text}");
        assert!(lines[2].ends_with("1         -      port taken"), "{text}");
        assert!(!lines[1].ends_with(' '), "no trailing padding: {text:?}");
    }

    #[test]
    fn a_daemon_not_as_asked_says_its_state_and_error() {
        let failed = status("db", DaemonState::Failed, Some("port 5 is taken"));
        assert_eq!(
            unmet(DaemonAction::Start, &failed).as_deref(),
            Some("db is failed: port 5 is taken")
        );
        assert_eq!(unmet(DaemonAction::Stop, &failed), None);
        let running = status("db", DaemonState::Running, None);
        assert_eq!(unmet(DaemonAction::Restart, &running), None);
    }

    /// A crash-looping hosted server says so in its row, with its child's
    /// reason, and the line below the table says the fix; a start that
    /// ends in a crash loop did not do what was asked.
    #[test]
    fn a_crash_loop_shows_its_reason_and_the_fix() {
        let why = "it exited during start-up (exit status: 3)";
        let mut looping = status("crasher", DaemonState::CrashLoop, Some(why));
        looping.running = true;
        looping.child = Some(ChildStatus {
            state: crate::control_api::ChildState::CrashLoop,
            pid: None,
            restarts: 5,
            last_reason: Some(why.into()),
            sessions: 0,
            next_try_at: None,
            last_stderr: Vec::new(),
            scope: Some("shared".into()),
            children: 1,
            states: Default::default(),
        });
        let text = table(&[looping.clone()]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("crash-loop"), "{text}");
        assert!(lines[1].ends_with(why), "{text}");
        assert_eq!(
            lines[2],
            "crasher: its server keeps exiting; see why with `mcp-manager logs crasher`, fix it, then `mcp-manager restart crasher`"
        );
        assert!(
            unmet(DaemonAction::Start, &looping).is_some_and(|u| u.contains(why)),
            "{looping:?}"
        );
    }
}
