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

/// Why a daemon could not be started. Every message says what is wrong
/// and what fixes it in its first ~150 characters, the detail after, and
/// never needs the server's name to be read: Claude Code shows it with the
/// name redacted (the name stays in the fields, for the logs).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "nothing answers on {} and this server's entry in config.json has no \"command\": add one, or start the server yourself there",
        port.map_or_else(|| "its port".to_owned(), |port| format!("127.0.0.1:{port}"))
    )]
    NoCommand { name: String, port: Option<u16> },
    #[error(
        "port {port} is taken by another program: stop it, or give this server another \"port\" in config.json; it is held by {holder}, not this server, and was sent nothing"
    )]
    PortTaken {
        name: String,
        port: u16,
        holder: String,
    },
    #[error("{cause}")]
    Spawn { name: String, cause: SpawnCause },
    #[error(
        "the server exited at start ({status}){last_line}; fix that in config.json (its \"env\", \"args\"), then `mcp-manager reload`"
    )]
    Exited {
        name: String,
        status: String,
        /// ": <its last lines of output, ` | ` between them>" (bounded), or
        /// empty.
        last_line: String,
    },
    #[error(
        "the server did not answer on 127.0.0.1:{port} within its \"startTimeout\" ({timeout:?}) and was stopped: raise \"startTimeout\" in its entry in config.json if it needs longer (its log: {log})"
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
    #[error("cannot open the server's log {}: {error}", path.display())]
    Log {
        path: PathBuf,
        error: Arc<std::io::Error>,
    },
    #[error(
        "cannot run `{program}` ({error}): fix \"command\" in config.json (is it an executable program?)"
    )]
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
            port: None,
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
        let (mut child, log_offset) = self.spawn()?;
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
        match self.wait_ready(&mut child, port, log_offset, stop).await {
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

    /// Polls the port until it answers, the child exits (then its exit
    /// status and what it wrote to its log since `log_offset`), time is up
    /// or `stop` is cancelled.
    async fn wait_ready(
        &self,
        child: &mut Child,
        port: u16,
        log_offset: u64,
        stop: &CancellationToken,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + self.server.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = paths::log_file(self.home, self.name());
                let last_line = output_since(&log, log_offset);
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
    /// closed, stdout and stderr appended to `NAME.log`; with the log's
    /// length before it, where its own output starts.
    fn spawn(&self) -> Result<(Child, u64), LaunchError> {
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
                    port: server.port,
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
                    port: server.port,
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
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
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
        let child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                spawn_error(SpawnCause::MissingProgram { program })
            } else {
                spawn_error(SpawnCause::Run {
                    program,
                    error: Arc::new(e),
                })
            }
        })?;
        Ok((child, log_offset))
    }
}

/// A message for a program that is not on `PATH` (or, given as a path,
/// not there), naming what to install: a runner's package, else the
/// program itself or its full path in `"command"`.
pub fn missing_program(program: &str) -> String {
    let path = Path::new(program);
    let base = path
        .file_stem()
        .map_or_else(|| program.to_owned(), |s| s.to_string_lossy().into_owned());
    let install = match base.as_str() {
        "npx" | "node" | "npm" => "; install Node.js (https://nodejs.org), which comes with npx",
        "uvx" | "uv" => "; install uv (https://docs.astral.sh/uv/), which comes with uvx",
        "python" | "python3" => "; install Python 3",
        "docker" => "; install Docker (https://docs.docker.com/get-docker/)",
        "bunx" | "bun" => "; install Bun (https://bun.sh)",
        "deno" => "; install Deno (https://deno.com)",
        _ if path.components().count() > 1 => {
            return format!("`{program}` does not exist: fix \"command\" in config.json");
        }
        _ => "; install it, or give its full path in \"command\" in config.json",
    };
    format!("`{program}` was not found on PATH{install}")
}

/// How many of a server's last output lines an exit at start shows.
const EXIT_LINES: usize = 3;
/// How much of its output is read back for them (the end of what it wrote).
const EXIT_READ: u64 = 64 * 1024;
/// Characters of those lines shown, all together.
const EXIT_CHARS: usize = 200;

/// The last lines `path` (a daemon's log) got since it was `offset` bytes
/// long, as `": a | b | c"` (bounded), or empty when it wrote nothing. A
/// log truncated since (rotated) is read from its start.
fn output_since(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if len < offset { 0 } else { offset };
    let from = from.max(len.saturating_sub(EXIT_READ));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err()
        || file.take(EXIT_READ).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let shown = lines[lines.len().saturating_sub(EXIT_LINES)..].join(" | ");
    if shown.is_empty() {
        return String::new();
    }
    match shown.char_indices().nth(EXIT_CHARS) {
        // Said with how much is left out (of what it wrote since it
        // started, the part not read included).
        Some((at, _)) => {
            let skipped = from.saturating_sub(offset);
            let more = u64::try_from(shown.len() - at)
                .unwrap_or(u64::MAX)
                .saturating_add(skipped);
            format!(": {}… ({more} more bytes)", &shown[..at])
        }
        None => format!(": {shown}"),
    }
}

/// `text` cut to `chars` characters, with an ellipsis when it was longer.
pub fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
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
        assert!(missing_program("uvx").contains("install uv"));
        assert!(missing_program("/opt/x/bin/uvx").contains("install uv"));
        assert!(missing_program("/opt/x/bin/tool").contains("does not exist"));
        assert!(missing_program("tool").contains("full path"));
    }

    /// An exit at start shows the last lines of this start's own output,
    /// not an earlier run's, and never more than a bounded piece.
    #[test]
    fn an_exit_shows_its_own_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x.log");
        std::fs::write(&log, "an earlier run\n").expect("write");
        let offset = std::fs::metadata(&log).expect("len").len();
        assert_eq!(output_since(&log, offset), "");
        let mut text = std::fs::read_to_string(&log).expect("read");
        text.push_str("starting\n\nloading\nfatal: DATABASE_URL is not set\n");
        std::fs::write(&log, &text).expect("write");
        assert_eq!(
            output_since(&log, offset),
            ": starting | loading | fatal: DATABASE_URL is not set"
        );
        std::fs::write(&log, "x".repeat(5000)).expect("write");
        let long = output_since(&log, 1 << 20);
        assert!(long.chars().count() <= EXIT_CHARS + 30, "{long}");
        assert!(long.ends_with("… (4800 more bytes)"), "{long}");
        let error = LaunchError::Exited {
            name: "crasher".into(),
            status: "exit status: 3".into(),
            last_line: ": fatal: DATABASE_URL is not set".into(),
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the server exited at start (exit status: 3): fatal: DATABASE_URL is not set; fix"
            ),
            "{message}"
        );
        assert!(!message.contains("crasher"), "{message}");
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
