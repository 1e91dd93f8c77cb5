//! Where a supervised daemon is in its life ([`Phase`]), each phase with
//! only its own data, and the one function that turns it into the
//! [`DaemonStatus`] that `/status` and `/events` show ([`Shown::status`]).
//! The supervisor changes its phase; nothing patches a status by hand.
//!
//! A running hosted server's state is its child's, as its host's
//! `/health` says (one voice): a child being started again is
//! `restarting`, one that keeps ending `crash-loop`, a mix of children
//! `degraded`, and the child's last reason is the `lastError`. Its
//! restarts count the child's too.

use tokio::time::Instant;

use crate::config::TransportKind;
use crate::control_api::{ChildState, ChildStatus, DaemonState, DaemonStatus};

/// A supervised daemon's phase. `R` is what a running daemon holds: the
/// supervisor's own (its process) or, once published, only its [`Live`]
/// facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase<R = Live> {
    /// A `url` entry: lives elsewhere, never started here (for good).
    Remote,
    /// Not running, and not wanted.
    Stopped,
    /// Being started (spawned, or found serving), not answering yet.
    Starting,
    /// Answering HTTP.
    Running(R),
    /// Being stopped: still shown as running until it is gone.
    Stopping(Live),
    /// Not running, not started: a program that is not its daemon holds
    /// its port (seen on a health tick, maybe found first by a proxy);
    /// shown as `failed`, and stopped again once the port is free.
    Blocked,
    /// It crashed or failed (health checks, a start): started again at
    /// `until`.
    Backoff { until: Instant },
    /// It cannot start: tried again at `until` (a foreign program holds
    /// the port, which may go), or, with `None`, only when asked or when
    /// its entry changes (no command, no runner, or it kept failing: a
    /// retry loop would change nothing and fill its log).
    Failed { until: Option<Instant> },
    /// Stopped after `idleTimeout` without a session; started on demand.
    Idle,
}

/// What `/status` shows of a live daemon process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub pid: u32,
    /// Started by someone else (an earlier manager, a proxy) and taken over.
    pub adopted: bool,
    /// Since when it answers (the uptime's start).
    pub since: Instant,
    /// A hosted server's child, as its host last said.
    pub child: Option<ChildStatus>,
}

impl<R> Phase<R> {
    /// When the next start is due, if one is.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Phase::Backoff { until } => Some(*until),
            Phase::Failed { until } => *until,
            _ => None,
        }
    }

    /// The same phase with a running daemon reduced to its [`Live`] facts.
    pub fn shown(&self, live: impl FnOnce(&R) -> Live) -> Phase {
        match self {
            Phase::Remote => Phase::Remote,
            Phase::Stopped => Phase::Stopped,
            Phase::Starting => Phase::Starting,
            Phase::Running(running) => Phase::Running(live(running)),
            Phase::Stopping(stopping) => Phase::Stopping(stopping.clone()),
            Phase::Blocked => Phase::Blocked,
            Phase::Backoff { until } => Phase::Backoff { until: *until },
            Phase::Failed { until } => Phase::Failed { until: *until },
            Phase::Idle => Phase::Idle,
        }
    }
}

/// Everything a supervisor publishes on its watch channel: what does not
/// change (name, port, transport), its phase, and what outlives a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub name: String,
    /// The configured port (a `url` entry's port).
    pub port: Option<u16>,
    pub transport: TransportKind,
    pub phase: Phase,
    /// Starts after the first one (crashes, failed checks, restarts asked).
    pub restarts: u32,
    /// Restarts of the children of its hosts that have ended (a running
    /// host's own are in its [`Live::child`]).
    pub child_restarts: u64,
    /// The last failure, still shown once it runs again.
    pub last_error: Option<String>,
}

impl Shown {
    /// The status at `now` (its uptime counted to `now`).
    pub fn status(&self, now: Instant) -> DaemonStatus {
        let (state, live) = match &self.phase {
            Phase::Remote => (DaemonState::Remote, None),
            Phase::Stopped => (DaemonState::Stopped, None),
            Phase::Starting => (DaemonState::Starting, None),
            Phase::Running(live) => (running_state(live.child.as_ref()), Some(live)),
            Phase::Stopping(live) => (DaemonState::Stopping, Some(live)),
            Phase::Backoff { .. } => (DaemonState::Backoff, None),
            Phase::Failed { .. } | Phase::Blocked => (DaemonState::Failed, None),
            Phase::Idle => (DaemonState::Idle, None),
        };
        let child = live.and_then(|live| live.child.clone());
        let child_restarts = self
            .child_restarts
            .saturating_add(child.as_ref().map_or(0, |c| c.restarts));
        // The child's reason is newer than any of the supervisor's own: those
        // were all set before this host started.
        let last_error = child
            .as_ref()
            .and_then(child_error)
            .or_else(|| self.last_error.clone());
        DaemonStatus {
            name: self.name.clone(),
            running: live.is_some(),
            state,
            pid: live.map(|live| live.pid),
            port: self.port,
            transport: self.transport,
            uptime: live.map(|live| {
                u64::try_from(now.saturating_duration_since(live.since).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            restarts: u32::try_from(u64::from(self.restarts).saturating_add(child_restarts))
                .unwrap_or(u32::MAX),
            last_error,
            adopted: live.is_some_and(|live| live.adopted),
            log_tail: None,
            child,
        }
    }
}

/// A child's last reason, with its last stderr line when its host gives
/// one the reason does not already contain.
fn child_error(child: &ChildStatus) -> Option<String> {
    let reason = child.last_reason.as_deref()?;
    Some(match child.last_stderr.last().map(|l| l.trim()) {
        Some(line) if !line.is_empty() && !reason.contains(line) => {
            format!("{reason}; its last stderr: {line}")
        }
        _ => reason.to_owned(),
    })
}

/// A running daemon's state: `running`, unless it is a hosted server
/// whose child is not: `restarting` or `crash-loop` as its worst child
/// is, `degraded` when some of its children run and some do not (or a
/// child stopped while its host runs). A first start of the child is
/// still `running` (its host answers; sessions wait for the child).
fn running_state(child: Option<&ChildStatus>) -> DaemonState {
    let Some(child) = child else {
        return DaemonState::Running;
    };
    let some_run = child
        .states
        .get(&ChildState::Running)
        .is_some_and(|n| *n > 0);
    match child.state {
        ChildState::Running | ChildState::Starting => DaemonState::Running,
        _ if some_run => DaemonState::Degraded,
        ChildState::Stopped => DaemonState::Degraded,
        ChildState::Restarting => DaemonState::Restarting,
        ChildState::CrashLoop => DaemonState::CrashLoop,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn shown(phase: Phase, last_error: Option<&str>) -> serde_json::Value {
        let shown = Shown {
            name: "web".into(),
            port: Some(3100),
            transport: TransportKind::StreamableHttp,
            phase,
            restarts: 2,
            child_restarts: 0,
            last_error: last_error.map(str::to_owned),
        };
        let now = Instant::now();
        serde_json::to_value(shown.status(now + Duration::from_millis(1500))).expect("json")
    }

    /// Every phase's JSON, as `/status` and `/events` send it: the field
    /// names, the `state` strings, and which fields are left out.
    #[test]
    fn every_phase_gives_the_status_json_of_the_api() {
        let now = Instant::now();
        let live = |adopted| Live {
            pid: 42,
            adopted,
            since: now,
            child: None,
        };
        let idle = |state: &str| {
            json!({
                "name": "web", "running": false, "state": state, "port": 3100,
                "transport": "streamable-http", "restarts": 2, "adopted": false,
            })
        };
        assert_eq!(shown(Phase::Stopped, None), idle("stopped"));
        assert_eq!(shown(Phase::Starting, None), idle("starting"));
        assert_eq!(shown(Phase::Idle, None), idle("idle"));
        assert_eq!(shown(Phase::Remote, None), idle("remote"));
        let up = shown(Phase::Running(live(false)), Some("exited (signal: 9)"));
        let expected = json!({
            "name": "web", "running": true, "state": "running", "pid": 42, "port": 3100,
            "transport": "streamable-http", "uptime": 1500, "restarts": 2,
            "lastError": "exited (signal: 9)", "adopted": false,
        });
        assert_eq!(up, expected);
        let stopping = shown(Phase::Stopping(live(true)), None);
        let expected = json!({
            "name": "web", "running": true, "state": "stopping", "pid": 42, "port": 3100,
            "transport": "streamable-http", "uptime": 1500, "restarts": 2, "adopted": true,
        });
        assert_eq!(stopping, expected);
        for (phase, state) in [
            (Phase::Backoff { until: now }, "backoff"),
            (Phase::Failed { until: Some(now) }, "failed"),
            (Phase::Failed { until: None }, "failed"),
            (Phase::Blocked, "failed"),
        ] {
            let expected = json!({
                "name": "web", "running": false, "state": state, "port": 3100,
                "transport": "streamable-http", "restarts": 2, "lastError": "port taken",
                "adopted": false,
            });
            assert_eq!(shown(phase, Some("port taken")), expected);
        }
    }

    fn child(state: ChildState, states: &[(ChildState, u32)]) -> ChildStatus {
        ChildStatus {
            state,
            pid: None,
            restarts: 5,
            last_reason: Some("it exited during start-up (exit status: 3)".into()),
            sessions: 1,
            next_try_at: None,
            last_stderr: Vec::new(),
            scope: Some("shared".into()),
            children: states.iter().map(|(_, n)| n).sum::<u32>().max(1),
            states: states.iter().copied().collect(),
        }
    }

    /// A running hosted server's state and error are its child's: never
    /// `running` while the child is not serving, and the child's restarts
    /// add to its own.
    #[test]
    fn a_running_hosted_servers_state_is_its_childs() {
        let now = Instant::now();
        let with = |c: Option<ChildStatus>| {
            let shown = Shown {
                name: "db".into(),
                port: Some(3100),
                transport: TransportKind::Stdio,
                phase: Phase::Running(Live {
                    pid: 42,
                    adopted: false,
                    since: now,
                    child: c,
                }),
                restarts: 1,
                child_restarts: 2,
                last_error: Some("exited (signal: 9)".into()),
            };
            shown.status(now)
        };
        let plain = with(None);
        assert_eq!(
            (plain.state, plain.restarts, plain.last_error.as_deref()),
            (DaemonState::Running, 3, Some("exited (signal: 9)"))
        );
        for (state, shown) in [
            (ChildState::Running, DaemonState::Running),
            (ChildState::Starting, DaemonState::Running),
            (ChildState::Restarting, DaemonState::Restarting),
            (ChildState::CrashLoop, DaemonState::CrashLoop),
            (ChildState::Stopped, DaemonState::Degraded),
        ] {
            let status = with(Some(child(state, &[])));
            assert_eq!(status.state, shown, "{state:?}");
            assert_eq!(status.restarts, 8, "1 + 2 + the child's 5");
            assert_eq!(
                status.last_error.as_deref(),
                Some("it exited during start-up (exit status: 3)")
            );
        }
        let mixed = with(Some(child(
            ChildState::CrashLoop,
            &[(ChildState::Running, 2), (ChildState::CrashLoop, 1)],
        )));
        assert_eq!(mixed.state, DaemonState::Degraded);
        let json = serde_json::to_value(&mixed).expect("json");
        assert_eq!(json["state"], "degraded");
        assert_eq!(json["child"]["state"], "crash-loop");
        assert_eq!(
            json["child"]["states"],
            json!({"running": 2, "crash-loop": 1})
        );
        assert_eq!(
            json["child"]["lastReason"],
            "it exited during start-up (exit status: 3)"
        );
        let back: DaemonStatus = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, mixed);
    }
}
