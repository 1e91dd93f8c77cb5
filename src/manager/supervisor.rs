//! One supervised daemon: an actor task that owns its process and is the
//! only one to start or stop it.
//!
//! Theory of operation. A [`DaemonHandle`] is a cheap handle to the task:
//! its commands (start, stop, restart, ensure) arrive on a channel and are
//! answered once done, one at a time. The task keeps its daemon's
//! `Phase` (stopped, starting, running with its process, stopping,
//! backoff, failed, idle; or remote for a `url` entry, never started here)
//! and publishes it on a watch channel, from which `/status` derives each
//! [`DaemonStatus`] (one function: `Shown::status`); every change is also
//! sent on the manager's event channel (`/events`).
//!
//! The task waits on its command channel, the running process's exit, the
//! back-off timer and a health tick. A daemon that exits is seen at once
//! (the manager is its parent; an adopted one's pid is polled) and started
//! again: at once the first time, then after a back-off (1 s, 2 s, 4 s …
//! 60 s) while it keeps failing; the back-off starts over once it has run
//! [`STABLE_AFTER`], and after any command. A start that fails is never
//! retried at once. A health probe that fails [`HEALTH_FAILURES`] times in
//! a row restarts it too. A hosted server whose host reports no session for
//! its `idleTimeout` is stopped (`idle`) and started again by the next
//! `/ensure`. At startup a daemon an earlier manager left running is
//! adopted from its lock; at shutdown every running daemon is stopped.
//!
//! One voice: a running hosted server's host is asked for its `/health`
//! every [`HOST_POLL`] (over its Unix socket when it has one), and what it
//! says of its child (pid, state, restarts, last reason, sessions) is
//! published with the phase, so `/status` and `/events` follow the child
//! within a few seconds: a child that keeps exiting makes it
//! `crash-loop`, never `running` (see `phase`). A poll, not a read in
//! `/status`, because `/events` must see the change when it happens, not
//! when someone asks. A daemon that is not running, whose port a program
//! that is not its daemon holds (a proxy may have found it first), is
//! shown `failed` with that program named, at startup and on every health
//! tick, until the port is free.
//!
//! The process side (spawn, adopt, wait, probe, stop) is behind the
//! `process::Launcher` trait: the manager runs `process::OsLauncher`,
//! the tests a fake under paused time.

mod child;
mod phase;
mod process;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::config::{ServerConfig, TransportKind};
use crate::control_api::{ChildStatus, DaemonStatus};
use crate::daemon::launch::LaunchError;
use crate::daemon::record::DaemonRecord;
use phase::{Live, Phase, Shown};
use process::{Adoption, DaemonProcess, Launcher, OsLauncher};

pub use process::STOP_GRACE;

/// Failed probes in a row before a restart.
pub const HEALTH_FAILURES: u32 = 3;
/// Up this long, a daemon's back-off starts again from an immediate retry.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Failed starts in a row (it never answered) after which a daemon is no
/// longer started again by itself: about two minutes of back-off.
pub const GIVE_UP_AFTER: u32 = 8;
/// How often a retiring hosted server is asked whether its sessions are
/// gone.
const RETIRE_POLL: Duration = Duration::from_millis(500);
/// How often a running hosted server's host is asked about its child: a
/// `/health` of a few hundred bytes, over its Unix socket where it has one.
/// Every second: a child restarted after its host's first 1 s back-off is
/// seen `restarting` before it serves again.
pub const HOST_POLL: Duration = Duration::from_secs(1);

/// A daemon's restarts: one immediate retry, then 1 s doubling to 60 s.
fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).immediate_first()
}

/// Why [`DaemonHandle::ensure`] has no running daemon to give.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnsureError {
    /// A `url` entry: nothing to start.
    #[error("{name} is a remote server (\"url\"); connect to it directly")]
    Remote { name: String },
    /// The start failed (it is retried after a back-off).
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The manager is shutting down.
    #[error("the manager is stopping")]
    ManagerStopping,
    /// Its last start failed and the next is not due yet: a new session
    /// is told at once instead of waiting for another failed start.
    #[error("{reason}; it is tried again in {retry_in_s} s")]
    Failing { reason: String, retry_in_s: u64 },
}

/// What the control API asks of a daemon.
#[derive(Debug)]
enum Command {
    Start(oneshot::Sender<DaemonStatus>),
    Stop(oneshot::Sender<DaemonStatus>),
    Restart(oneshot::Sender<DaemonStatus>),
    /// Start it if needed; its lock once it answers.
    Ensure(oneshot::Sender<Result<DaemonRecord, EnsureError>>),
    /// Its entry is gone or changed: stop it for good (a hosted one once
    /// its sessions are gone or `grace` is over) and end the task.
    Retire {
        grace: Option<Duration>,
        done: oneshot::Sender<()>,
    },
}

/// The manager's side of one daemon task.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    /// Its name in the config.
    pub name: String,
    /// Started on demand only, never by `--start-all`.
    pub lazy: bool,
    commands: mpsc::Sender<Command>,
    shown: watch::Receiver<Shown>,
}

impl DaemonHandle {
    /// Its status now.
    pub fn status(&self) -> DaemonStatus {
        self.shown.borrow().status(Instant::now())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts it (if not running); its status once it answers or failed.
    pub async fn start(&self) -> DaemonStatus {
        self.ask(Command::Start)
            .await
            .unwrap_or_else(|| self.status())
    }

    /// Stops it; its status once it is gone.
    pub async fn stop(&self) -> DaemonStatus {
        self.ask(Command::Stop)
            .await
            .unwrap_or_else(|| self.status())
    }

    /// Stops it if it runs and starts it again; its status afterwards.
    pub async fn restart(&self) -> DaemonStatus {
        self.ask(Command::Restart)
            .await
            .unwrap_or_else(|| self.status())
    }

    /// Makes sure it runs; its lock (port, transport) or why not.
    ///
    /// # Errors
    /// [`EnsureError`]: a remote entry, a failed start, or the manager is
    /// stopping.
    pub async fn ensure(&self) -> Result<DaemonRecord, EnsureError> {
        self.ask(Command::Ensure)
            .await
            .unwrap_or(Err(EnsureError::ManagerStopping))
    }

    /// Stops it for good and ends its task (its entry left the config, or
    /// changed): a hosted server with open sessions first gets up to
    /// `grace` for them to end. Returns once it is stopped and its lock
    /// gone.
    pub async fn retire(&self, grace: Option<Duration>) {
        let _ = self.ask(|done| Command::Retire { grace, done }).await;
    }
}

/// What every supervisor shares: where daemons live and how hosted ones
/// are run, how often each is checked, where changes are announced, and
/// the token that stops them all.
#[derive(Debug, Clone)]
pub struct Supervision {
    pub home: PathBuf,
    /// This binary, which runs stdio entries as `mcp-manager host NAME`.
    pub manager_exe: PathBuf,
    /// The config's `healthCheckInterval`, which a reload may change.
    pub health_check_interval: watch::Receiver<Duration>,
    /// Every status change, for `/events`.
    pub events: broadcast::Sender<DaemonStatus>,
    /// Cancelled when the manager stops.
    pub shutdown: CancellationToken,
}

/// Starts the task for `server`, adopting a live daemon from its lock.
pub fn spawn(
    server: ServerConfig,
    supervision: Arc<Supervision>,
    tasks: &TaskTracker,
) -> DaemonHandle {
    let launcher = OsLauncher::new(&supervision, &server);
    spawn_with(server, supervision, launcher, tasks)
}

/// [`spawn`] with any [`Launcher`].
fn spawn_with<L: Launcher>(
    server: ServerConfig,
    supervision: Arc<Supervision>,
    launcher: L,
    tasks: &TaskTracker,
) -> DaemonHandle {
    let (shown_tx, shown_rx) = watch::channel(Shown {
        name: server.name.clone(),
        port: server.port.or_else(|| {
            server
                .url
                .as_ref()
                .and_then(url::Url::port_or_known_default)
        }),
        transport: server.transport,
        phase: first_phase(&server),
        restarts: 0,
        child_restarts: 0,
        last_error: None,
    });
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let handle = DaemonHandle {
        name: server.name.clone(),
        lazy: server.lazy,
        commands: commands_tx,
        shown: shown_rx,
    };
    let supervisor = Supervisor {
        phase: first_phase(&server),
        server,
        supervision,
        launcher,
        restarts: 0,
        child_restarts: 0,
        failed_starts: 0,
        last_error: None,
        backoff: restart_backoff(),
        shown: shown_tx,
    };
    tasks.spawn(supervisor.run(commands_rx));
    handle
}

/// After a failure: when the daemon is started again by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// After the back-off (`backoff`): it crashed, or died starting.
    Backoff,
    /// After the back-off, shown as `failed`: it cannot start now (the
    /// port is taken), which may change.
    Failed,
    /// Only when asked, or when its entry changes (`failed`).
    Never,
}

/// Ticks every `every`, the first one `every` from now.
fn health_ticks(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    ticks
}

/// A `url` entry is remote for good; any other starts out stopped.
fn first_phase<R>(server: &ServerConfig) -> Phase<R> {
    if server.url.is_some() {
        Phase::Remote
    } else {
        Phase::Stopped
    }
}

/// A running daemon, as its supervisor holds it.
#[derive(Debug)]
struct Up<P> {
    process: P,
    since: Instant,
    /// Health probes failed in a row.
    failed_checks: u32,
    /// Since when its host has reported no session.
    idle_since: Option<Instant>,
    /// What its host last said of its child (a hosted server).
    child: Option<ChildStatus>,
    /// Per scope key, the child's restarts when it was last seen serving.
    serving: std::collections::HashMap<String, u64>,
}

impl<P: DaemonProcess> Up<P> {
    fn new(process: P) -> Up<P> {
        Up {
            process,
            since: Instant::now(),
            failed_checks: 0,
            idle_since: None,
            child: None,
            serving: std::collections::HashMap::new(),
        }
    }

    fn live(&self) -> Live {
        Live {
            pid: self.process.record().pid,
            adopted: self.process.adopted(),
            since: self.since,
            child: self.child.clone(),
        }
    }
}

/// The task of one daemon.
struct Supervisor<L: Launcher> {
    server: ServerConfig,
    supervision: Arc<Supervision>,
    launcher: L,
    phase: Phase<Up<L::Process>>,
    restarts: u32,
    /// Restarts of the children of its hosts that have ended.
    child_restarts: u64,
    /// Starts in a row that failed (reset once one answers).
    failed_starts: u32,
    last_error: Option<String>,
    /// Restarts since it was last stable (or last asked for).
    backoff: Backoff,
    shown: watch::Sender<Shown>,
}

impl<L: Launcher> Supervisor<L> {
    fn name(&self) -> &str {
        &self.server.name
    }

    fn is_remote(&self) -> bool {
        self.server.url.is_some()
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        if !self.is_remote() {
            match self.launcher.adopt() {
                Adoption::Adopted(process) => {
                    tracing::info!(
                        daemon = self.name(),
                        pid = process.record().pid,
                        "adopting a running daemon"
                    );
                    self.enter(Phase::Running(Up::new(process)));
                }
                Adoption::Refused(why) => {
                    tracing::warn!(daemon = self.name(), "{why}");
                    self.last_error = Some(why);
                    self.enter(Phase::Stopped);
                }
                Adoption::Nothing => self.look_at_port().await,
            }
        }
        let shutdown = self.supervision.shutdown.clone();
        let mut every = self.supervision.health_check_interval.clone();
        let mut health = health_ticks(*every.borrow_and_update());
        let mut host_poll = health_ticks(HOST_POLL);
        let hosted = self.server.transport == TransportKind::Stdio && !self.is_remote();
        let mut was_polling = false;
        let mut retunable = true;
        let mut retired = None;
        loop {
            let retry_at = self.phase.retry_at();
            let polling = hosted && matches!(self.phase, Phase::Running(_));
            if polling && !was_polling {
                // A new host: first asked one poll after it answers.
                host_poll.reset();
            }
            was_polling = polling;
            let running = match &mut self.phase {
                Phase::Running(up) => Some(&mut up.process),
                _ => None,
            };
            tokio::select! {
                // Shutdown first: once asked, nothing else starts.
                biased;
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(Command::Retire { grace, done }) => {
                        self.await_sessions_end(grace, &shutdown).await;
                        retired = Some(done);
                        break;
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                changed = every.changed(), if retunable => match changed {
                    Ok(()) => health = health_ticks(*every.borrow_and_update()),
                    // No one can change it any more: keep the one in force.
                    Err(_) => retunable = false,
                },
                why = async { match running { Some(p) => p.exited().await, None => std::future::pending().await } } => {
                    self.on_exit(why);
                }
                () = async { match retry_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    self.restarts = self.restarts.saturating_add(1);
                    let _ = self.start().await;
                }
                _ = health.tick() => self.on_health_tick().await,
                _ = host_poll.tick(), if polling => self.on_host_poll().await,
            }
        }
        // The manager is stopping (or the entry is gone): so is the
        // daemon.
        if self.stop_process().await.is_some() || retired.is_some() {
            self.enter(Phase::Stopped);
        }
        if let Some(done) = retired {
            tracing::info!(
                daemon = self.name(),
                "retired: its entry left the config or changed"
            );
            let _ = done.send(());
        }
    }

    /// Before a retirement: a hosted server's open sessions get up to
    /// `grace` to end (the host is asked every [`RETIRE_POLL`]).
    async fn await_sessions_end(&mut self, grace: Option<Duration>, shutdown: &CancellationToken) {
        let Some(grace) = grace else {
            return;
        };
        if self.server.transport != TransportKind::Stdio {
            return;
        }
        let deadline = Instant::now() + grace;
        loop {
            let Phase::Running(up) = &self.phase else {
                return;
            };
            let open = up.process.sessions().await.unwrap_or(0);
            if open == 0 || Instant::now() >= deadline {
                if open > 0 {
                    tracing::info!(
                        daemon = self.name(),
                        open,
                        "grace over: stopping with sessions open"
                    );
                }
                return;
            }
            tracing::debug!(
                daemon = self.name(),
                open,
                "waiting for its sessions before retiring"
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETIRE_POLL) => {}
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        // A session while a daemon that failed to start waits out its
        // back-off: told why at once (a start now would fail the same way
        // and make every session wait for it); a person's `start` retries.
        let command = match (command, &self.phase) {
            (Command::Ensure(reply), Phase::Backoff { until }) if self.failed_starts > 0 => {
                let retry_in = until.saturating_duration_since(Instant::now());
                let _ = reply.send(Err(EnsureError::Failing {
                    reason: self
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "it failed to start".to_owned()),
                    retry_in_s: retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0),
                }));
                return;
            }
            (command, _) => command,
        };
        // Asked by a person (or a proxy): no back-off owed.
        self.backoff.reset();
        if let Phase::Running(up) = &mut self.phase {
            up.failed_checks = 0;
        }
        match command {
            Command::Start(reply) => {
                if !self.is_remote() && !matches!(self.phase, Phase::Running(_)) {
                    let _ = self.start().await;
                }
                let _ = reply.send(self.status());
            }
            Command::Ensure(reply) => {
                let answer = match &self.phase {
                    _ if self.is_remote() => Err(EnsureError::Remote {
                        name: self.name().to_owned(),
                    }),
                    Phase::Running(up) => Ok(up.process.record().clone()),
                    _ => self.start().await.map_err(EnsureError::from),
                };
                let _ = reply.send(answer);
            }
            Command::Stop(reply) => {
                self.stop_process().await;
                if !self.is_remote() {
                    self.enter(Phase::Stopped);
                }
                let _ = reply.send(self.status());
            }
            // `run` takes it before: it ends the task.
            Command::Retire { done, .. } => drop(done),
            Command::Restart(reply) => {
                if !self.is_remote() {
                    if self.stop_process().await.is_some() {
                        self.restarts = self.restarts.saturating_add(1);
                    }
                    let _ = self.start().await;
                }
                let _ = reply.send(self.status());
            }
        }
    }

    /// The running process has exited: started again after the back-off.
    fn on_exit(&mut self, why: String) {
        let Phase::Running(up) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return;
        };
        self.keep_child(&up);
        tracing::warn!(daemon = self.name(), reason = %why, "the daemon died");
        self.fail(Retry::Backoff, why, Some(up.since));
    }

    /// Keeps the log small, probes a running daemon, and stops it when it
    /// fails [`HEALTH_FAILURES`] probes in a row (started again after the
    /// back-off) or has been idle its `idleTimeout`.
    async fn on_health_tick(&mut self) {
        self.launcher.rotate_log();
        if matches!(self.phase, Phase::Stopped | Phase::Idle | Phase::Blocked) {
            self.look_at_port().await;
            return;
        }
        let Phase::Running(up) = &mut self.phase else {
            return;
        };
        match up.process.check().await {
            Ok(()) => {
                up.failed_checks = 0;
                self.stop_if_idle().await;
            }
            Err(error) => {
                up.failed_checks += 1;
                let failures = up.failed_checks;
                tracing::warn!(daemon = self.name(), failures, %error, "health check failed");
                if failures >= HEALTH_FAILURES {
                    let reason =
                        format!("did not answer {HEALTH_FAILURES} health checks in a row: {error}");
                    let ran_since = self.stop_process().await;
                    self.fail(Retry::Backoff, reason, ran_since);
                }
            }
        }
    }

    /// Asks a running host about its child and publishes what changed.
    async fn on_host_poll(&mut self) {
        let Phase::Running(up) = &mut self.phase else {
            return;
        };
        // A host that does not answer keeps its last view: the health
        // checks deal with a host gone silent.
        let Some(health) = up.process.health().await else {
            return;
        };
        let child = child::summarise(&health, &mut up.serving);
        if child != up.child {
            if let Some(now) = &child
                && up.child.as_ref().is_none_or(|was| was.state != now.state)
            {
                tracing::info!(
                    daemon = self.server.name.as_str(),
                    child = now.state.as_str(),
                    restarts = now.restarts,
                    reason = now.last_reason.as_deref().unwrap_or(""),
                    "its host's child"
                );
            }
            up.child = child;
            self.publish();
        }
    }

    /// A daemon that is not running: is its port held by a program that is
    /// not its daemon? Then it is shown as such (`failed`, the holder
    /// named) until the port is free again.
    async fn look_at_port(&mut self) {
        match self.launcher.stranger_on_port().await {
            Some(why) => {
                if self.last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(daemon = self.name(), "{why}");
                }
                self.last_error = Some(why);
                self.enter(Phase::Blocked);
            }
            None if matches!(self.phase, Phase::Blocked) => self.enter(Phase::Stopped),
            None => {}
        }
    }

    /// Its host is gone: what it said of its child outlives it (its
    /// restarts still count; its last reason is the last error).
    fn keep_child(&mut self, up: &Up<L::Process>) {
        if let Some(child) = &up.child {
            self.child_restarts = self.child_restarts.saturating_add(child.restarts);
            if child.last_reason.is_some() {
                self.last_error.clone_from(&child.last_reason);
            }
        }
    }

    /// Stops a hosted server whose host has had no session for its
    /// `idleTimeout` (checked twice: never while a session is open).
    async fn stop_if_idle(&mut self) {
        let Some(limit) = self.server.idle_timeout else {
            return;
        };
        if self.server.transport != TransportKind::Stdio {
            return;
        }
        let Phase::Running(up) = &mut self.phase else {
            return;
        };
        if up.process.sessions().await != Some(0) {
            up.idle_since = None;
            return;
        }
        let since = *up.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < limit {
            return;
        }
        // One last look, so a session that just opened keeps it.
        if up.process.sessions_under_guard().await != Some(0) {
            up.idle_since = None;
            return;
        }
        tracing::info!(
            daemon = self.name(),
            idle_s = since.elapsed().as_secs(),
            "no session for its idleTimeout: stopping until it is needed"
        );
        self.stop_process().await;
        self.enter(Phase::Idle);
    }

    /// Starts the daemon (or finds it already serving): its lock, or why
    /// not (then the next try is set).
    async fn start(&mut self) -> Result<DaemonRecord, LaunchError> {
        if self.supervision.shutdown.is_cancelled() {
            return Err(LaunchError::Stopping);
        }
        self.enter(Phase::Starting);
        // Not raced against the shutdown: dropped half-way, a start would
        // leave its daemon running with its record. The launcher finishes
        // or undoes it (bounded), and a daemon it gives back is stopped by
        // the shutdown like any other.
        match self.launcher.start().await {
            Err(LaunchError::Stopping) => {
                tracing::info!(
                    daemon = self.name(),
                    "start abandoned: the manager is stopping"
                );
                self.enter(Phase::Stopped);
                Err(LaunchError::Stopping)
            }
            Ok(process) => {
                self.failed_starts = 0;
                let record = process.record().clone();
                let adopted = process.adopted();
                tracing::info!(daemon = self.name(), pid = record.pid, adopted, "running");
                self.enter(Phase::Running(Up::new(process)));
                Ok(record)
            }
            Err(error) => {
                tracing::warn!(daemon = self.name(), %error, "cannot start");
                self.failed_starts = self.failed_starts.saturating_add(1);
                let mut reason = error.to_string();
                let retry = match error {
                    LaunchError::PortTaken { .. } => Retry::Failed,
                    // Nothing changes by trying again: a person must.
                    LaunchError::NoCommand { .. } | LaunchError::Spawn { .. } => Retry::Never,
                    _ if self.failed_starts >= GIVE_UP_AFTER => {
                        reason.push_str(&format!(
                            " (gave up after {GIVE_UP_AFTER} failed starts in a row: `mcp-manager start {}` tries again)",
                            self.name()
                        ));
                        Retry::Never
                    }
                    _ => Retry::Backoff,
                };
                // It never served: no immediate retry (only a crash of a
                // daemon that ran gets one).
                self.backoff.skip_immediate();
                self.fail(retry, reason, None);
                Err(error)
            }
        }
    }

    /// Records a failure and when the next start is due, if one is; a
    /// daemon that ran [`STABLE_AFTER`] starts its back-off over.
    fn fail(&mut self, retry: Retry, reason: String, ran_since: Option<Instant>) {
        if ran_since.is_some_and(|since| since.elapsed() >= STABLE_AFTER) {
            self.backoff.reset();
        }
        self.last_error = Some(reason);
        let phase = match retry {
            Retry::Never => Phase::Failed { until: None },
            Retry::Failed => Phase::Failed {
                until: Some(Instant::now() + self.backoff.next_delay()),
            },
            Retry::Backoff => Phase::Backoff {
                until: Instant::now() + self.backoff.next_delay(),
            },
        };
        self.enter(phase);
    }

    /// Stops the running process (shown as `stopping` meanwhile); since
    /// when it ran, or `None` if none ran.
    async fn stop_process(&mut self) -> Option<Instant> {
        let Phase::Running(up) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return None;
        };
        self.keep_child(&up);
        let live = up.live();
        let since = live.since;
        self.enter(Phase::Stopping(live));
        up.process.stop().await;
        Some(since)
    }

    /// The status now.
    fn status(&self) -> DaemonStatus {
        self.shown.borrow().status(Instant::now())
    }

    /// Moves to `phase` and publishes it; a change of status is also an
    /// event.
    fn enter(&mut self, phase: Phase<Up<L::Process>>) {
        self.phase = phase;
        self.publish();
    }

    /// Publishes the phase and what outlives it; a change of status is
    /// also an event.
    fn publish(&mut self) {
        let phase = self.phase.shown(Up::live);
        let now = Instant::now();
        let mut before = None;
        self.shown.send_modify(|shown| {
            before = Some(shown.status(now));
            shown.phase = phase;
            shown.restarts = self.restarts;
            shown.child_restarts = self.child_restarts;
            shown.last_error.clone_from(&self.last_error);
        });
        let after = self.shown.borrow().status(now);
        if before.as_ref() != Some(&after) {
            let _ = self.supervision.events.send(after);
        }
    }
}
