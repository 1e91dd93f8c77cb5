//! A child's health, as `/health` reports it.
//!
//! **API boundary:** the JSON of [`ChildHealth`] (`state`, `pid`, `restarts`,
//! `lastRestartReason`, `startedAt`) is read by the manager and by tests;
//! its field names and values must not change. Fields are only added after
//! them: `crashLoop` (the last start failed before the child was ready, and
//! none has succeeded since: sessions are refused at once), `startError`
//! (what they are told then, without the next try; `null` unless
//! `crashLoop`), `nextTryAt` (ms since the Unix epoch when the next start is
//! due, while one waits; else `null`) and `lastStderr` (the last lines, at
//! most ten, each cut to 1,000 characters, that the last process to end
//! wrote to stderr; `[]` before one ended). Inside, the state is a
//! [`ChildState`] whose variants carry only their own data.

use serde::Serialize;

/// One process the host started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildProcess {
    /// Its pid (`None` if it was reaped before it could be read).
    pub pid: Option<u32>,
    /// Milliseconds since the Unix epoch when it started.
    pub started_at: u64,
}

/// Where the child is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    /// Not answering `initialize` yet; `None` before the first process is
    /// spawned.
    Starting(Option<ChildProcess>),
    /// Initialized and serving.
    Running(ChildProcess),
    /// The last process ended (or could not be started); another is started
    /// after a back-off. `last_started_at` is when the last one that ran had
    /// started, if any ever did.
    Restarting { last_started_at: Option<u64> },
    /// Stopped for good (the host is shutting down or the backend ended).
    Stopped(ChildProcess),
}

/// The child's health: its state and how often it was started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildHealth {
    pub state: ChildState,
    /// How many times the child ended and was started again.
    pub restarts: u64,
    /// Why it was last started again.
    pub last_restart_reason: Option<String>,
    /// What sessions are told while the last start failed before the child
    /// was ready (the crash loop), until a start succeeds.
    pub start_error: Option<String>,
    /// When the next start is due (ms since the Unix epoch), while one waits.
    pub next_try_at: Option<u64>,
    /// The last stderr lines of the last process that ended.
    pub last_stderr: Vec<String>,
}

impl Default for ChildHealth {
    fn default() -> Self {
        ChildHealth {
            state: ChildState::Starting(None),
            restarts: 0,
            last_restart_reason: None,
            start_error: None,
            next_try_at: None,
            last_stderr: Vec::new(),
        }
    }
}

impl ChildState {
    /// The state's name in `/health`.
    pub fn name(&self) -> &'static str {
        match self {
            ChildState::Starting(_) => "starting",
            ChildState::Running(_) => "running",
            ChildState::Restarting { .. } => "restarting",
            ChildState::Stopped(_) => "stopped",
        }
    }

    /// The process of this state, if it has one.
    fn process(&self) -> Option<ChildProcess> {
        match self {
            ChildState::Starting(process) => *process,
            ChildState::Running(process) | ChildState::Stopped(process) => Some(*process),
            ChildState::Restarting { .. } => None,
        }
    }

    /// When the current (or, restarting, the last) process started.
    fn started_at(&self) -> Option<u64> {
        match self {
            ChildState::Restarting { last_started_at } => *last_started_at,
            other => other.process().map(|p| p.started_at),
        }
    }
}

impl ChildHealth {
    /// The child ended for `reason`; it is started again.
    pub fn restarting(&mut self, reason: String) {
        self.state = ChildState::Restarting {
            last_started_at: self.state.started_at(),
        };
        self.restarts += 1;
        self.last_restart_reason = Some(reason);
    }

    /// A process was spawned: not initialized yet.
    pub fn starting(&mut self, process: ChildProcess) {
        self.state = ChildState::Starting(Some(process));
        self.next_try_at = None;
    }

    /// The process is initialized and serving: no crash loop any more.
    pub fn running(&mut self, process: ChildProcess) {
        self.state = ChildState::Running(process);
        self.start_error = None;
        self.next_try_at = None;
    }

    /// The last process ended with these last stderr lines; `start_error`
    /// is what sessions are told if it failed before it was ready (`None`:
    /// it ran). The next start is due at `next_try_at`.
    pub fn ended(
        &mut self,
        reason: String,
        start_error: Option<String>,
        stderr: Vec<String>,
        next_try_at: u64,
    ) {
        self.restarting(reason);
        self.start_error = start_error;
        self.last_stderr = stderr;
        self.next_try_at = Some(next_try_at);
    }

    /// Is the last start a failure, with none succeeded since?
    pub fn is_crash_loop(&self) -> bool {
        self.start_error.is_some()
    }

    /// Is the child initialized and serving?
    pub fn is_running(&self) -> bool {
        matches!(self.state, ChildState::Running(_))
    }

    /// Its pid, if a process is current.
    pub fn pid(&self) -> Option<u32> {
        self.state.process().and_then(|p| p.pid)
    }
}

/// The `/health` shape of a [`ChildHealth`] (field order as it always was).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJson<'a> {
    state: &'static str,
    pid: Option<u32>,
    restarts: u64,
    last_restart_reason: Option<&'a str>,
    started_at: Option<u64>,
    crash_loop: bool,
    start_error: Option<&'a str>,
    next_try_at: Option<u64>,
    last_stderr: &'a [String],
}

impl Serialize for ChildHealth {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HealthJson {
            state: self.state.name(),
            pid: self.pid(),
            restarts: self.restarts,
            last_restart_reason: self.last_restart_reason.as_deref(),
            started_at: self.state.started_at(),
            crash_loop: self.is_crash_loop(),
            start_error: self.start_error.as_deref(),
            next_try_at: self.next_try_at,
            last_stderr: &self.last_stderr,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(health: &ChildHealth) -> String {
        serde_json::to_string(health).expect("serializes")
    }

    const PROCESS: ChildProcess = ChildProcess {
        pid: Some(4242),
        started_at: 1_700_000_000_000,
    };

    /// `/health` is read by the manager and by tests: each state's JSON is
    /// pinned here, field names, values and order (the fields of issue 15
    /// come after the ones it always had).
    #[test]
    fn each_state_has_the_json_it_always_had() {
        let mut health = ChildHealth::default();
        assert_eq!(
            json(&health),
            r#"{"state":"starting","pid":null,"restarts":0,"lastRestartReason":null,"startedAt":null,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
        health.state = ChildState::Starting(Some(PROCESS));
        assert_eq!(
            json(&health),
            r#"{"state":"starting","pid":4242,"restarts":0,"lastRestartReason":null,"startedAt":1700000000000,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
        health.state = ChildState::Running(PROCESS);
        assert_eq!(
            json(&health),
            r#"{"state":"running","pid":4242,"restarts":0,"lastRestartReason":null,"startedAt":1700000000000,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
        health.restarting("it exited (exit status: 1)".into());
        assert_eq!(
            json(&health),
            r#"{"state":"restarting","pid":null,"restarts":1,"lastRestartReason":"it exited (exit status: 1)","startedAt":1700000000000,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
        health.state = ChildState::Stopped(PROCESS);
        assert_eq!(
            json(&health),
            r#"{"state":"stopped","pid":4242,"restarts":1,"lastRestartReason":"it exited (exit status: 1)","startedAt":1700000000000,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
    }

    /// A child that never started (its command is missing) restarts with no
    /// start time, and keeps counting.
    #[test]
    fn a_child_that_never_ran_restarts_without_a_start_time() {
        let mut health = ChildHealth::default();
        health.restarting("`npx` was not found on PATH".into());
        health.restarting("`npx` was not found on PATH".into());
        assert_eq!(
            json(&health),
            r#"{"state":"restarting","pid":null,"restarts":2,"lastRestartReason":"`npx` was not found on PATH","startedAt":null,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":[]}"#
        );
        assert!(!health.is_running());
    }

    /// A start that fails says so until one succeeds: the crash loop, what
    /// sessions are told, the next try and the child's own last lines.
    #[test]
    fn a_failed_start_is_a_crash_loop_until_a_start_succeeds() {
        let mut health = ChildHealth::default();
        health.starting(PROCESS);
        health.ended(
            "it exited during start-up (exit status: 3)".into(),
            Some("the server exited at start (exit status: 3): fatal: x".into()),
            vec!["fatal: x".into()],
            1_700_000_004_000,
        );
        assert_eq!(
            json(&health),
            r#"{"state":"restarting","pid":null,"restarts":1,"lastRestartReason":"it exited during start-up (exit status: 3)","startedAt":1700000000000,"crashLoop":true,"startError":"the server exited at start (exit status: 3): fatal: x","nextTryAt":1700000004000,"lastStderr":["fatal: x"]}"#
        );
        health.starting(PROCESS);
        assert!(health.is_crash_loop());
        assert_eq!(health.next_try_at, None);
        health.running(PROCESS);
        assert!(!health.is_crash_loop());
        assert_eq!(
            json(&health),
            r#"{"state":"running","pid":4242,"restarts":1,"lastRestartReason":"it exited during start-up (exit status: 3)","startedAt":1700000000000,"crashLoop":false,"startError":null,"nextTryAt":null,"lastStderr":["fatal: x"]}"#
        );
        // A crash after running is no crash loop.
        health.ended(
            "it exited (exit status: 1)".into(),
            None,
            vec![],
            1_700_000_005_000,
        );
        assert!(!health.is_crash_loop());
    }
}
