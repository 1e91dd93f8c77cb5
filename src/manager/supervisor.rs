//! One supervised daemon: a task that owns its process and is the only one
//! to start or stop it (commands arrive on a channel, answered when done),
//! publishing its [`DaemonStatus`] on a watch channel (read by `/status`)
//! and every change on the manager's event channel (`/events`).
//!
//! A daemon that exits is seen at once (the manager is its parent; an
//! adopted one's pid is polled) and started again: at once the first time,
//! then after a back-off (1 s, 2 s, 4 s … 60 s) while it keeps failing; the
//! back-off starts over once it has run [`STABLE_AFTER`]. A periodic HTTP
//! probe that fails [`HEALTH_FAILURES`] times in a row restarts it too.
//! A hosted server whose host reports no session for its `idleTimeout` is
//! stopped (state `idle`) and started again by the next `/ensure`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{ServerConfig, TransportKind};
use crate::control_api::{DaemonState, DaemonStatus};
use crate::daemon::launch::{self, Launch, LaunchError, Running};
use crate::daemon::record::{self, DaemonRecord};
use crate::daemon::{guard, log, probe};
use crate::paths;

/// Failed probes in a row before a restart.
pub const HEALTH_FAILURES: u32 = 3;
/// A daemon's restarts: one immediate retry, then 1 s doubling to 60 s.
fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).immediate_first()
}
/// Up this long, a daemon's back-off starts again from an immediate retry.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often an adopted daemon's pid is checked.
const PID_POLL: Duration = Duration::from_millis(250);
/// SIGTERM to SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the control API asks of a daemon.
#[derive(Debug)]
enum Command {
    Start(oneshot::Sender<DaemonStatus>),
    Stop(oneshot::Sender<DaemonStatus>),
    Restart(oneshot::Sender<DaemonStatus>),
    /// Start it if needed; its lock once it answers.
    Ensure(oneshot::Sender<Result<DaemonRecord, String>>),
}

/// The manager's side of one daemon task.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    pub name: String,
    /// Started on demand only, never by `--start-all`.
    pub lazy: bool,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Published>,
}

/// A daemon's status and since when it runs (for `uptime`).
#[derive(Debug, Clone)]
struct Published {
    status: DaemonStatus,
    since: Option<Instant>,
}

impl Published {
    fn now(&self) -> DaemonStatus {
        let mut status = self.status.clone();
        if status.running {
            status.uptime = self
                .since
                .map(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        status
    }
}

impl DaemonHandle {
    /// Its status now.
    pub fn status(&self) -> DaemonStatus {
        self.status.borrow().now()
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

    pub async fn restart(&self) -> DaemonStatus {
        self.ask(Command::Restart)
            .await
            .unwrap_or_else(|| self.status())
    }

    /// Makes sure it runs; its lock (port, transport) or why not.
    ///
    /// # Errors
    /// Why it could not be started.
    pub async fn ensure(&self) -> Result<DaemonRecord, String> {
        self.ask(Command::Ensure)
            .await
            .unwrap_or_else(|| Err("the manager is stopping".into()))
    }
}

/// What every daemon task shares.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: PathBuf,
    pub manager_exe: PathBuf,
    pub health_check_interval: Duration,
    pub events: broadcast::Sender<DaemonStatus>,
    pub shutdown: CancellationToken,
}

/// Starts the task for `server`, adopting a live daemon from its lock.
pub fn spawn(
    server: ServerConfig,
    context: Arc<Context>,
    tasks: &tokio_util::task::TaskTracker,
) -> DaemonHandle {
    let initial = DaemonStatus {
        name: server.name.clone(),
        running: false,
        state: if server.url.is_some() {
            DaemonState::Remote
        } else {
            DaemonState::Stopped
        },
        pid: None,
        port: server.port.or_else(|| {
            server
                .url
                .as_ref()
                .and_then(url::Url::port_or_known_default)
        }),
        transport: server.transport,
        uptime: None,
        restarts: 0,
        last_error: None,
        adopted: false,
        log_tail: None,
    };
    let (status_tx, status_rx) = watch::channel(Published {
        status: initial,
        since: None,
    });
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let handle = DaemonHandle {
        name: server.name.clone(),
        lazy: server.lazy,
        commands: commands_tx,
        status: status_rx,
    };
    let daemon = Daemon {
        server,
        context,
        status: status_tx,
        process: None,
        wanted: false,
        backoff: restart_backoff(),
        running_since: None,
    };
    tasks.spawn(daemon.run(commands_rx));
    handle
}

/// The process behind a running daemon.
#[derive(Debug)]
enum Process {
    /// Spawned by this manager: its exit is seen at once.
    Child {
        child: Box<Child>,
        lock: DaemonRecord,
    },
    /// Started by an earlier manager (or a proxy): its pid is polled.
    Adopted(DaemonRecord),
}

impl Process {
    fn lock(&self) -> &DaemonRecord {
        match self {
            Process::Child { lock, .. } | Process::Adopted(lock) => lock,
        }
    }

    /// Resolves when the process has exited; its status if known.
    async fn exited(&mut self) -> String {
        match self {
            Process::Child { child, .. } => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("cannot wait for it: {error}"),
            },
            Process::Adopted(lock) => {
                while lock.is_live() {
                    tokio::time::sleep(PID_POLL).await;
                }
                "exited".into()
            }
        }
    }

    async fn stop(self) {
        match self {
            Process::Child { mut child, .. } => launch::stop_child(&mut child).await,
            Process::Adopted(lock) => launch::stop_pid(&lock, STOP_GRACE).await,
        }
    }
}

struct Daemon {
    server: ServerConfig,
    context: Arc<Context>,
    status: watch::Sender<Published>,
    process: Option<Process>,
    /// Should it be running (started and not stopped)?
    wanted: bool,
    /// Restarts since it was last stable.
    backoff: Backoff,
    running_since: Option<Instant>,
}

impl Daemon {
    fn name(&self) -> &str {
        &self.server.name
    }

    fn is_remote(&self) -> bool {
        self.server.url.is_some()
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        if !self.is_remote() {
            self.adopt();
        }
        let shutdown = self.context.shutdown.clone();
        let mut health = tokio::time::interval(self.context.health_check_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.reset();
        let mut failures = 0;
        let mut retry_at: Option<tokio::time::Instant> = None;
        // Since when the host has reported no session.
        let mut idle_since: Option<Instant> = None;
        loop {
            let process = self.process.as_mut();
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => {
                        retry_at = None;
                        failures = 0;
                        self.on_command(command, &mut retry_at).await;
                    }
                    None => break,
                },
                why = async { match process { Some(p) => p.exited().await, None => std::future::pending().await } } => {
                    self.process = None;
                    record::remove(&paths::lock_file(&self.context.home, self.name()));
                    let reason = format!("exited ({why}){}", self.last_log_line());
                    tracing::warn!(daemon = self.name(), %reason, "the daemon died");
                    retry_at = Some(self.fail(DaemonState::Backoff, reason));
                }
                () = async { match retry_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    retry_at = None;
                    if self.wanted {
                        self.bump_restarts();
                        retry_at = self.start().await.err();
                    }
                }
                _ = health.tick() => {
                    self.rotate_log();
                    if self.process.is_some() {
                        match self.check().await {
                            Ok(()) => {
                                failures = 0;
                                self.stop_if_idle(&mut idle_since).await;
                            }
                            Err(error) => {
                                failures += 1;
                                tracing::warn!(daemon = self.name(), failures, %error, "health check failed");
                                if failures >= HEALTH_FAILURES {
                                    failures = 0;
                                    let reason = format!("did not answer {HEALTH_FAILURES} health checks in a row: {error}");
                                    self.stop_process().await;
                                    retry_at = Some(self.fail(DaemonState::Backoff, reason));
                                }
                            }
                        }
                    }
                }
            }
        }
        // The manager is stopping: so is every daemon it runs.
        if self.process.is_some() {
            self.set(|s| s.state = DaemonState::Stopping);
            self.stop_process().await;
            self.set(|s| {
                s.state = DaemonState::Stopped;
                s.running = false;
            });
        }
    }

    /// Stops a hosted server whose host has had no session for its
    /// `idleTimeout` (checked twice: never while a session is open).
    async fn stop_if_idle(&mut self, idle_since: &mut Option<Instant>) {
        let (Some(limit), Some(process)) = (self.server.idle_timeout, &self.process) else {
            return;
        };
        if self.server.transport != TransportKind::Stdio {
            return;
        }
        let port = process.lock().port;
        if probe::host_sessions(port).await != Some(0) {
            *idle_since = None;
            return;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < limit {
            return;
        }
        // Under the start guard, so no proxy starts it half-way; and one
        // last look, so a session that just opened keeps it.
        let guard = guard::start(&self.context.home, self.name()).await;
        if probe::host_sessions(port).await != Some(0) {
            *idle_since = None;
            return;
        }
        drop(guard);
        *idle_since = None;
        tracing::info!(
            daemon = self.name(),
            idle_s = since.elapsed().as_secs(),
            "no session for its idleTimeout: stopping until it is needed"
        );
        self.set(|s| s.state = DaemonState::Stopping);
        self.stop_process().await;
        self.wanted = false;
        self.running_since = None;
        self.set(|s| {
            s.state = DaemonState::Idle;
            s.running = false;
            s.pid = None;
            s.uptime = None;
        });
    }

    /// Takes over a daemon that an earlier manager (or a proxy) started.
    fn adopt(&mut self) {
        let lock_path = paths::lock_file(&self.context.home, self.name());
        let Some(lock) = record::read(&lock_path) else {
            return;
        };
        if lock.is_live() && Some(lock.port) == self.server.port {
            tracing::info!(
                daemon = self.name(),
                pid = lock.pid,
                "adopting a running daemon"
            );
            self.wanted = true;
            self.running_since = Some(Instant::now());
            self.set(|s| {
                s.state = DaemonState::Running;
                s.running = true;
                s.pid = Some(lock.pid);
                s.adopted = true;
                s.uptime = Some(0);
            });
            self.process = Some(Process::Adopted(lock));
        }
    }

    async fn on_command(&mut self, command: Command, retry_at: &mut Option<tokio::time::Instant>) {
        // Asked by a person (or a proxy): no back-off owed.
        self.backoff.reset();
        match command {
            Command::Start(reply) => {
                if !self.is_remote() && self.process.is_none() {
                    *retry_at = self.start().await.err();
                }
                let _ = reply.send(self.snapshot());
            }
            Command::Ensure(reply) => {
                let answer = if self.is_remote() {
                    Err(format!(
                        "{} is a remote server (\"url\"); connect to it directly",
                        self.name()
                    ))
                } else {
                    if self.process.is_none() {
                        *retry_at = self.start().await.err();
                    }
                    match &self.process {
                        Some(process) => Ok(process.lock().clone()),
                        None => Err(self
                            .status
                            .borrow()
                            .status
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "it could not be started".into())),
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Stop(reply) => {
                self.wanted = false;
                if self.process.is_some() {
                    self.set(|s| s.state = DaemonState::Stopping);
                    self.stop_process().await;
                }
                self.running_since = None;
                if !self.is_remote() {
                    self.set(|s| {
                        s.state = DaemonState::Stopped;
                        s.running = false;
                        s.pid = None;
                        s.uptime = None;
                    });
                }
                let _ = reply.send(self.snapshot());
            }
            Command::Restart(reply) => {
                if !self.is_remote() {
                    if self.process.is_some() {
                        self.set(|s| s.state = DaemonState::Stopping);
                        self.stop_process().await;
                        self.bump_restarts();
                    }
                    *retry_at = self.start().await.err();
                }
                let _ = reply.send(self.snapshot());
            }
        }
    }

    /// Starts the daemon (or finds it already serving); on failure, the
    /// time of the next try.
    async fn start(&mut self) -> Result<(), tokio::time::Instant> {
        self.wanted = true;
        self.set(|s| {
            s.state = DaemonState::Starting;
            s.running = false;
        });
        let launch = Launch {
            home: &self.context.home,
            server: &self.server,
            manager_exe: &self.context.manager_exe,
        };
        let started = tokio::select! {
            started = launch.ensure() => started,
            () = self.context.shutdown.cancelled() => Err(LaunchError::Stopping),
        };
        match started {
            Ok(running) => {
                let adopted = matches!(running, Running::Existing(_));
                let process = match running {
                    Running::Existing(lock) => Process::Adopted(lock),
                    Running::Spawned { lock, child } => Process::Child { child, lock },
                };
                let pid = process.lock().pid;
                tracing::info!(daemon = self.name(), pid, adopted, "running");
                self.process = Some(process);
                self.running_since = Some(Instant::now());
                self.set(|s| {
                    s.state = DaemonState::Running;
                    s.running = true;
                    s.pid = Some(pid);
                    s.adopted = adopted;
                    s.uptime = Some(0);
                });
                Ok(())
            }
            Err(error) => {
                tracing::warn!(daemon = self.name(), %error, "cannot start");
                let state = match error {
                    LaunchError::PortTaken { .. }
                    | LaunchError::NoCommand { .. }
                    | LaunchError::Spawn { .. } => DaemonState::Failed,
                    _ => DaemonState::Backoff,
                };
                // It never served: no immediate retry (only a crash of a
                // daemon that ran gets one).
                self.backoff.skip_immediate();
                Err(self.fail(state, error.to_string()))
            }
        }
    }

    /// Records a failure; the time of the next start.
    fn fail(&mut self, state: DaemonState, reason: String) -> tokio::time::Instant {
        if self
            .running_since
            .take()
            .is_some_and(|since| since.elapsed() >= STABLE_AFTER)
        {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        self.set(|s| {
            s.state = state;
            s.running = false;
            s.pid = None;
            s.uptime = None;
            s.last_error = Some(reason);
        });
        tokio::time::Instant::now() + delay
    }

    fn bump_restarts(&mut self) {
        self.set(|s| s.restarts = s.restarts.saturating_add(1));
    }

    async fn stop_process(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        // Under the start guard: no proxy starts it again half-way.
        let guard = guard::start(&self.context.home, self.name()).await;
        process.stop().await;
        record::remove(&paths::lock_file(&self.context.home, self.name()));
        drop(guard);
    }

    /// One HTTP probe of the running daemon.
    async fn check(&self) -> Result<(), String> {
        let Some(process) = &self.process else {
            return Ok(());
        };
        let lock = process.lock();
        let transport = if self.server.transport == TransportKind::Stdio {
            TransportKind::Stdio
        } else {
            lock.transport
        };
        probe::probe(lock.port, transport)
            .await
            .map_err(|e| e.to_string())
    }

    fn rotate_log(&self) {
        let log = paths::log_file(&self.context.home, self.name());
        if let Err(error) = log::rotate_if_large(&log, log::LOG_CAP) {
            tracing::warn!(daemon = self.name(), %error, "cannot rotate the log");
        }
    }

    fn last_log_line(&self) -> String {
        log::tail(&paths::log_file(&self.context.home, self.name()), 1)
            .ok()
            .and_then(|mut lines| lines.pop())
            .map(|line| format!(": {}", line.trim()))
            .unwrap_or_default()
    }

    /// The status now (uptime filled in).
    fn snapshot(&self) -> DaemonStatus {
        self.status.borrow().now()
    }

    /// Changes the status; a change is published as an event.
    fn set(&self, change: impl FnOnce(&mut DaemonStatus)) {
        let since = self.running_since;
        let mut changed = false;
        self.status.send_modify(|published| {
            let before = published.status.clone();
            change(&mut published.status);
            published.since = since;
            changed = published.status != before;
        });
        if changed {
            let _ = self.context.events.send(self.snapshot());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_is_immediate_then_doubles_to_a_minute() {
        let mut backoff = restart_backoff();
        let secs: Vec<u64> = (0..10).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
