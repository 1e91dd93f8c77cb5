//! Starting a daemon, race-free, for whoever asks: the manager, a second
//! manager, or a proxy that found no manager.
//!
//! Every starter takes the exclusive `fs4` lock on `NAME.start` (a file that
//! is never deleted, so every starter locks the same inode) and holds it
//! while it checks `NAME.lock`, probes the port, spawns and waits for the
//! daemon to answer. Twenty starters at once therefore give one daemon: the
//! first spawns it, the others find it live when the lock is theirs.
//!
//! A record is never trusted on its own: it is believed only when
//! [`identity::verdict`] proves it (its pid alive, this user's, with the
//! start time recorded, holding the port). A stale record is removed under
//! the guard and its process left alone; a port held by a program that is
//! not our daemon is described, never killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use tokio_util::sync::CancellationToken;

use super::guard;
use super::identity::{self, Verdict};
use super::probe::{answers, probe};
use super::record::{self, DaemonRecord};
use crate::config::{ServerConfig, TransportKind};
use crate::paths;
use crate::process::{self, detach, find_program};

/// How often a starting daemon is probed.
const READY_POLL: Duration = Duration::from_millis(100);
/// SIGTERM to SIGKILL, for a daemon known only by its record.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why a daemon could not be started. Every message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "{name} has no \"command\" in the config: start it by hand on its port, or add a command"
    )]
    NoCommand { name: String },
    #[error(
        "port {port} is held by {holder}, which is not {name}'s daemon; it is left alone: stop that program or give {name} another \"port\""
    )]
    PortTaken {
        name: String,
        port: u16,
        holder: String,
    },
    #[error("cannot start {name}: {cause}")]
    Spawn { name: String, cause: SpawnCause },
    #[error("{name} exited while starting ({status}){last_line}")]
    Exited {
        name: String,
        status: String,
        /// ": <the log's last line>", or empty.
        last_line: String,
    },
    #[error(
        "{name} did not answer HTTP on 127.0.0.1:{port} within {timeout:?} (stopped; see {log}; raise \"startTimeout\" if it needs longer)"
    )]
    NotReady {
        name: String,
        port: u16,
        timeout: Duration,
        log: String,
    },
    #[error(transparent)]
    Guard(#[from] guard::GuardError),
    #[error("cannot write {}: {error}", path.display())]
    Record {
        path: PathBuf,
        error: Arc<std::io::Error>,
    },
    /// The starter is shutting down: nothing was started.
    #[error("the manager is stopping")]
    Stopping,
}

/// Why a daemon's process could not be spawned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpawnCause {
    /// The program (or the runner a hosted server needs) is not installed.
    #[error("{}", missing_program(program))]
    MissingProgram { program: String },
    #[error("cannot open {}: {error}", path.display())]
    Log {
        path: PathBuf,
        error: Arc<std::io::Error>,
    },
    #[error("cannot run `{program}`: {error}")]
    Run {
        program: String,
        error: Arc<std::io::Error>,
    },
}

/// A daemon that serves its port.
#[derive(Debug)]
pub enum Running {
    /// Started earlier (by anyone) and still the same process.
    Existing(DaemonRecord),
    /// Started now; `child` is ours to wait on.
    Spawned {
        lock: DaemonRecord,
        child: Box<Child>,
    },
}

impl Running {
    pub fn lock(&self) -> &DaemonRecord {
        match self {
            Running::Existing(lock) | Running::Spawned { lock, .. } => lock,
        }
    }
}

/// What a daemon is started with.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub home: &'a Path,
    pub server: &'a ServerConfig,
    /// `mcp-manager`, which runs stdio entries as `mcp-manager host NAME`.
    pub manager_exe: &'a Path,
}

impl Launch<'_> {
    fn name(&self) -> &str {
        &self.server.name
    }

    fn port(&self) -> Result<u16, LaunchError> {
        self.server.port.ok_or_else(|| LaunchError::NoCommand {
            name: self.name().to_owned(),
        })
    }

    /// Makes sure the daemon runs and answers, starting it if needed; holds
    /// the start guard throughout. Never cancelled: see
    /// [`Launch::ensure_until`].
    ///
    /// # Errors
    /// A [`LaunchError`] that says what to do.
    pub async fn ensure(&self) -> Result<Running, LaunchError> {
        self.ensure_until(&CancellationToken::new()).await
    }

    /// [`Launch::ensure`] that gives up when `stop` is cancelled, leaving
    /// nothing behind: while it waits for the guard or for a daemon it did
    /// not start, nothing is started; a daemon it spawned and that does not
    /// answer yet is stopped and its record removed. Everything else runs
    /// to its end (bounded), so this future itself need never be dropped
    /// half-way.
    ///
    /// # Errors
    /// A [`LaunchError`] that says what to do; [`LaunchError::Stopping`]
    /// once `stop` is cancelled.
    pub async fn ensure_until(&self, stop: &CancellationToken) -> Result<Running, LaunchError> {
        // Cancel-safe: the guard is a file lock taken on a blocking task;
        // dropped before it is ours, the lock is released when that task
        // ends.
        let _guard = tokio::select! {
            guard = guard::start(self.home, self.name()) => guard?,
            () = stop.cancelled() => return Err(LaunchError::Stopping),
        };
        self.ensure_guarded(stop).await
    }

    /// The work of [`Launch::ensure_until`], under the guard.
    async fn ensure_guarded(&self, stop: &CancellationToken) -> Result<Running, LaunchError> {
        let port = self.port()?;
        let lock_path = paths::lock_file(self.home, self.name());
        if let Some(lock) = record::read(&lock_path)
            && let Some(existing) = self.reuse(lock, port, stop).await?
        {
            return Ok(existing);
        }
        if answers(port).await {
            return Err(LaunchError::PortTaken {
                name: self.name().to_owned(),
                port,
                holder: identity::describe_holder(port),
            });
        }
        let mut child = self.spawn()?;
        let pid = child.id().unwrap_or_default();
        let lock = DaemonRecord {
            pid,
            port,
            started_at: crate::paths::now_ms(),
            transport: self.server.transport,
            process_start: process::start_time(pid),
        };
        if let Err(error) = record::write(&lock_path, &lock) {
            stop_child(&mut child).await;
            return Err(LaunchError::Record {
                path: lock_path,
                error: Arc::new(error),
            });
        }
        match self.wait_ready(&mut child, port, stop).await {
            Ok(()) => Ok(Running::Spawned {
                lock,
                child: Box::new(child),
            }),
            Err(error) => {
                stop_child(&mut child).await;
                record::remove(&lock_path);
                Err(error)
            }
        }
    }

    /// What the record found under the guard is worth: the daemon it
    /// names, if that is proven ours ([`identity::verdict`]), on the
    /// configured port, and answers within the start timeout. Otherwise
    /// the record is removed (`None`): a stale one at once (its process
    /// left alone); a daemon of ours on another port (the config changed
    /// since it started) is stopped, so that it is started again where the
    /// config, and every client written from it, says; one of ours that
    /// never answers its startTimeout is stopped and started again; its
    /// process that never listens is left alone.
    async fn reuse(
        &self,
        lock: DaemonRecord,
        port: u16,
        stop: &CancellationToken,
    ) -> Result<Option<Running>, LaunchError> {
        let lock_path = paths::lock_file(self.home, self.name());
        let name = self.name();
        let deadline = Instant::now() + self.server.start_timeout;
        let verdict = loop {
            let verdict = identity::verdict(&lock);
            match &verdict {
                Verdict::Ours if lock.port != port => {
                    tracing::info!(
                        daemon = name,
                        pid = lock.pid,
                        from = lock.port,
                        to = port,
                        "the daemon runs on a port the config no longer names: stopping it to start it on the configured one"
                    );
                    stop_pid(&lock, STOP_GRACE).await;
                    record::remove(&lock_path);
                    return Ok(None);
                }
                Verdict::Ours => {
                    if probe(lock.port, lock.transport).await.is_ok() {
                        return Ok(Some(Running::Existing(lock)));
                    }
                }
                // Its process, still starting (its starter died): its time.
                Verdict::NotListening if lock.port == port => {}
                Verdict::NotListening | Verdict::Stale(_) => break verdict,
            }
            if Instant::now() >= deadline {
                break verdict;
            }
            tokio::select! {
                () = tokio::time::sleep(READY_POLL) => {}
                () = stop.cancelled() => return Err(LaunchError::Stopping),
            }
        };
        match verdict {
            Verdict::Ours => {
                tracing::warn!(
                    daemon = name,
                    pid = lock.pid,
                    "the daemon holds its port but did not answer HTTP within its startTimeout: stopping it to start it again"
                );
                stop_pid(&lock, STOP_GRACE).await;
            }
            Verdict::NotListening => tracing::warn!(
                daemon = name,
                process = %process::describe(lock.pid),
                "the daemon's process never listened on port {}; it is left alone and the record removed",
                lock.port
            ),
            Verdict::Stale(why) => tracing::info!(
                daemon = name,
                "removing a stale record: it {why}; its process is left alone"
            ),
        }
        record::remove(&lock_path);
        Ok(None)
    }

    /// Polls the port until it answers, the child exits, time is up or
    /// `stop` is cancelled.
    async fn wait_ready(
        &self,
        child: &mut Child,
        port: u16,
        stop: &CancellationToken,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + self.server.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = paths::log_file(self.home, self.name());
                let last_line = crate::daemon::log::tail(&log, 1)
                    .ok()
                    .and_then(|mut lines| lines.pop())
                    .map(|line| format!(": {}", line.trim()))
                    .unwrap_or_default();
                return Err(LaunchError::Exited {
                    name: self.name().to_owned(),
                    status: status.to_string(),
                    last_line,
                });
            }
            // Cancel-safe: a probe holds nothing; dropped, it is a closed
            // connection.
            let probed = tokio::select! {
                probed = probe(port, self.server.transport) => probed,
                () = stop.cancelled() => return Err(LaunchError::Stopping),
            };
            if probed.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::NotReady {
                    name: self.name().to_owned(),
                    port,
                    timeout: self.server.start_timeout,
                    log: paths::log_file(self.home, self.name())
                        .display()
                        .to_string(),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(READY_POLL) => {}
                () = stop.cancelled() => return Err(LaunchError::Stopping),
            }
        }
    }

    /// Spawns the daemon detached: its own session and process group, stdin
    /// closed, stdout and stderr appended to `NAME.log`.
    fn spawn(&self) -> Result<Child, LaunchError> {
        let server = self.server;
        let spawn_error = |cause: SpawnCause| LaunchError::Spawn {
            name: self.name().to_owned(),
            cause,
        };
        let mut command = if server.transport == TransportKind::Stdio {
            // The host checks the runner itself; say so now, before a
            // daemon that can only fail is started.
            let runner = server
                .command
                .as_deref()
                .ok_or_else(|| LaunchError::NoCommand {
                    name: self.name().to_owned(),
                })?;
            if find_program(runner).is_none() {
                return Err(spawn_error(SpawnCause::MissingProgram {
                    program: runner.to_owned(),
                }));
            }
            let mut command = Command::new(self.manager_exe);
            command.arg("host").arg(self.name());
            command
        } else {
            let program = server
                .command
                .as_deref()
                .ok_or_else(|| LaunchError::NoCommand {
                    name: self.name().to_owned(),
                })?;
            let mut command = Command::new(program);
            command.args(&server.args).envs(&server.env);
            if let Some(cwd) = &server.cwd {
                command.current_dir(cwd);
            }
            command
        };
        let log_path = paths::log_file(self.home, self.name());
        let log_error = |e| {
            spawn_error(SpawnCause::Log {
                path: log_path.clone(),
                error: Arc::new(e),
            })
        };
        let log = crate::daemon::log::open_append(&log_path).map_err(log_error)?;
        let log_err = log.try_clone().map_err(log_error)?;
        command
            .env(paths::HOME_ENV, self.home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(false);
        detach(&mut command);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                spawn_error(SpawnCause::MissingProgram { program })
            } else {
                spawn_error(SpawnCause::Run {
                    program,
                    error: Arc::new(e),
                })
            }
        })
    }
}

/// A message for a program that is not on `PATH`, naming what to install.
pub fn missing_program(program: &str) -> String {
    let base = Path::new(program)
        .file_stem()
        .map_or_else(|| program.to_owned(), |s| s.to_string_lossy().into_owned());
    let install = match base.as_str() {
        "npx" | "node" | "npm" => "; install Node.js (https://nodejs.org), which comes with npx",
        "uvx" | "uv" => "; install uv (https://docs.astral.sh/uv/), which comes with uvx",
        "python" | "python3" => "; install Python 3",
        _ => "; install it or give the full path in \"command\"",
    };
    format!("`{program}` was not found on PATH{install}")
}

/// Stops a daemon this process spawned: SIGTERM to its group, SIGKILL after
/// a grace period, reaped.
pub async fn stop_child(child: &mut Child) {
    crate::process::terminate_group(child).await;
}

/// Stops a daemon known only by its record (one we adopted, once
/// [`identity::verdict`] proved it ours): only if the pid is still the
/// process the record was written for and this user's. Returns once it is
/// gone or after the grace period and a SIGKILL.
pub async fn stop_pid(lock: &DaemonRecord, grace: Duration) {
    if !lock.is_live() {
        return;
    }
    if identity::CAN_TELL && process::info::owner_uid(lock.pid) != process::current_uid() {
        tracing::warn!(pid = lock.pid, "not stopping a process of another user");
        return;
    }
    process::signal_group(lock.pid, process::GroupSignal::Terminate);
    let deadline = Instant::now() + grace;
    while lock.is_live() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if lock.is_live() {
        process::signal_group(lock.pid, process::GroupSignal::Kill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_runners_name_what_to_install() {
        assert!(missing_program("npx").contains("Node.js"));
        assert!(missing_program("uvx").contains("uv"));
        assert!(missing_program("/opt/x/bin/tool").contains("full path"));
    }

    #[tokio::test]
    async fn starters_take_turns() {
        let home = tempfile::tempdir().expect("tempdir");
        let first = guard::start(home.path(), "x").await.expect("first");
        let path = home.path().to_owned();
        let second = tokio::spawn(async move { guard::start(&path, "x").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "the second starter must wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second starter gets the guard once it is free")
            .expect("task")
            .expect("guard");
    }
}
