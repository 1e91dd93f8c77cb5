//! Where a supervised daemon is in its life ([`Phase`]), each phase with
//! only its own data, and the one function that turns it into the
//! [`DaemonStatus`] that `/status` and `/events` show ([`Shown::status`]).
//! The supervisor changes its phase; nothing patches a status by hand.

use tokio::time::Instant;

use crate::config::TransportKind;
use crate::control_api::{DaemonState, DaemonStatus};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub pid: u32,
    /// Started by someone else (an earlier manager, a proxy) and taken over.
    pub adopted: bool,
    /// Since when it answers (the uptime's start).
    pub since: Instant,
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
            Phase::Stopping(stopping) => Phase::Stopping(*stopping),
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
            Phase::Running(live) => (DaemonState::Running, Some(live)),
            Phase::Stopping(live) => (DaemonState::Stopping, Some(live)),
            Phase::Backoff { .. } => (DaemonState::Backoff, None),
            Phase::Failed { .. } => (DaemonState::Failed, None),
            Phase::Idle => (DaemonState::Idle, None),
        };
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
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            adopted: live.is_some_and(|live| live.adopted),
            log_tail: None,
        }
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
        ] {
            let expected = json!({
                "name": "web", "running": false, "state": state, "port": 3100,
                "transport": "streamable-http", "restarts": 2, "lastError": "port taken",
                "adopted": false,
            });
            assert_eq!(shown(phase, Some("port taken")), expected);
        }
    }
}
