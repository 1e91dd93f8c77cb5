//! Starting a daemon, race-free, for whoever asks: the manager, a second
//! manager, or a proxy that found no manager.
//!
//! Every starter takes the exclusive `fs4` lock on `NAME.start` (a file that
//! is never deleted, so every starter locks the same inode) and holds it
//! while it checks `NAME.lock`, probes the port, spawns and waits for the
//! daemon to answer. Twenty starters at once therefore give one daemon: the
//! first spawns it, the others find it live when the lock is theirs.
//!
//! A lock is never trusted on its own: its pid must be alive *and* have the
//! start time recorded with it (a pid reused by another program is not our
//! daemon). A port held by a program that is not our daemon is reported,
//! never killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::config::{ServerConfig, TransportKind};
use crate::lockfile::{self, DaemonLock};
use crate::{paths, procinfo};

/// How often a starting daemon is probed.
const READY_POLL: Duration = Duration::from_millis(100);
/// One HTTP probe's limit (loopback answers in microseconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    #[error("cannot start {name}: {reason}")]
    Spawn { name: String, reason: String },
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
    #[error("{0}")]
    Io(String),
}

/// A daemon that serves its port.
#[derive(Debug)]
pub enum Running {
    /// Started earlier (by anyone) and still the same process.
    Existing(DaemonLock),
    /// Started now; `child` is ours to wait on.
    Spawned { lock: DaemonLock, child: Box<Child> },
}

impl Running {
    pub fn lock(&self) -> &DaemonLock {
        match self {
            Running::Existing(lock) | Running::Spawned { lock, .. } => lock,
        }
    }
}

/// The exclusive right to start (or stop) one daemon; released on drop.
#[derive(Debug)]
pub struct StartGuard {
    _file: File,
}

/// Waits for, and takes, the start guard of `name`.
///
/// # Errors
/// The file cannot be created or locked.
pub async fn guard(home: &Path, name: &str) -> Result<StartGuard, LaunchError> {
    let path = home.join(format!("{name}.start"));
    let shown = path.display().to_string();
    let locked = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        fs4::fs_std::FileExt::lock_exclusive(&file)?;
        Ok(file)
    })
    .await
    .map_err(|e| LaunchError::Io(format!("the start lock task failed: {e}")))?;
    locked
        .map(|file| StartGuard { _file: file })
        .map_err(|e| LaunchError::Io(format!("cannot lock {shown}: {e}")))
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
    /// the start guard throughout.
    ///
    /// # Errors
    /// A [`LaunchError`] that says what to do.
    pub async fn ensure(&self) -> Result<Running, LaunchError> {
        let _guard = guard(self.home, self.name()).await?;
        self.ensure_guarded().await
    }

    /// [`Launch::ensure`] for a caller that already holds the guard.
    ///
    /// # Errors
    /// A [`LaunchError`] that says what to do.
    pub async fn ensure_guarded(&self) -> Result<Running, LaunchError> {
        let port = self.port()?;
        let lock_path = paths::lock_file(self.home, self.name());
        if let Some(lock) = lockfile::read(&lock_path) {
            if lock.is_live() {
                // Ours; give a daemon that is still starting its time.
                let deadline = Instant::now() + self.server.start_timeout;
                loop {
                    if probe(lock.port, lock.transport).await.is_ok() {
                        return Ok(Running::Existing(lock));
                    }
                    if Instant::now() >= deadline || !lock.is_live() {
                        break;
                    }
                    tokio::time::sleep(READY_POLL).await;
                }
                if lock.is_live() {
                    return Err(LaunchError::NotReady {
                        name: self.name().to_owned(),
                        port: lock.port,
                        timeout: self.server.start_timeout,
                        log: paths::log_file(self.home, self.name())
                            .display()
                            .to_string(),
                    });
                }
            }
            tracing::info!(
                daemon = self.name(),
                pid = lock.pid,
                "removing a stale lock"
            );
            lockfile::remove(&lock_path);
        }
        if crate::discovery::answers(port).await {
            return Err(LaunchError::PortTaken {
                name: self.name().to_owned(),
                port,
                holder: procinfo::port_holder(port)
                    .map_or_else(|| "another program".to_owned(), procinfo::describe),
            });
        }
        let mut child = self.spawn()?;
        let pid = child.id().unwrap_or_default();
        let lock = DaemonLock {
            pid,
            port,
            started_at: crate::paths::now_ms(),
            transport: self.server.transport,
            process_start: procinfo::start_time(pid),
        };
        if let Err(error) = lockfile::write(&lock_path, &lock) {
            stop_child(&mut child).await;
            return Err(LaunchError::Io(format!(
                "cannot write {}: {error}",
                lock_path.display()
            )));
        }
        match self.wait_ready(&mut child, port).await {
            Ok(()) => Ok(Running::Spawned {
                lock,
                child: Box::new(child),
            }),
            Err(error) => {
                stop_child(&mut child).await;
                lockfile::remove(&lock_path);
                Err(error)
            }
        }
    }

    /// Polls the port until it answers, the child exits or time is up.
    async fn wait_ready(&self, child: &mut Child, port: u16) -> Result<(), LaunchError> {
        let deadline = Instant::now() + self.server.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = paths::log_file(self.home, self.name());
                let last_line = crate::manager::logfile::tail(&log, 1)
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
            if probe(port, self.server.transport).await.is_ok() {
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
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Spawns the daemon detached: its own session and process group, stdin
    /// closed, stdout and stderr appended to `NAME.log`.
    fn spawn(&self) -> Result<Child, LaunchError> {
        let server = self.server;
        let spawn_error = |reason: String| LaunchError::Spawn {
            name: self.name().to_owned(),
            reason,
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
                return Err(spawn_error(missing_program(runner)));
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
        let log = crate::manager::logfile::open_append(&log_path)
            .map_err(|e| spawn_error(format!("cannot open {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| spawn_error(format!("cannot open {}: {e}", log_path.display())))?;
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
                spawn_error(missing_program(&program))
            } else {
                spawn_error(format!("cannot run `{program}`: {e}"))
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

/// `program` as the OS would find it: a path as given, else the first
/// match on `PATH` (with `PATHEXT` on Windows).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_owned());
    }
    let extensions: Vec<String> = if cfg!(windows) {
        std::env::var("PATHEXT")
            .unwrap_or_else(|_| ".EXE;.CMD;.BAT;.COM".into())
            .split(';')
            .map(str::to_owned)
            .chain(std::iter::once(String::new()))
            .collect()
    } else {
        vec![String::new()]
    };
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).find_map(|dir| {
        extensions.iter().find_map(|ext| {
            let candidate = dir.join(format!("{program}{ext}"));
            candidate.is_file().then_some(candidate)
        })
    })
}

/// Does the daemon answer HTTP? Never opens an MCP session: a hosted stdio
/// server answers `GET /health`; a Streamable HTTP server a GET without a
/// session (400 or 405, or 406 from a strict one); a legacy SSE server its
/// `GET /sse` headers (the stream is dropped at once, which ends it).
///
/// # Errors
/// What was wrong: no answer, or the status.
pub async fn probe(port: u16, transport: TransportKind) -> Result<(), String> {
    let path = match transport {
        TransportKind::Stdio => "health",
        TransportKind::Sse => "sse",
        TransportKind::StreamableHttp | TransportKind::Http => "mcp",
    };
    let client = crate::transport::loopback_client_builder()
        .timeout(PROBE_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/{path}"))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                format!("nothing listens on 127.0.0.1:{port}")
            } else if e.is_timeout() {
                format!("127.0.0.1:{port} accepted but did not answer within {PROBE_TIMEOUT:?}")
            } else {
                format!("127.0.0.1:{port} did not answer HTTP: {e}")
            }
        })?;
    let status = response.status();
    drop(response);
    if status.is_success() || matches!(status.as_u16(), 400 | 405 | 406) {
        Ok(())
    } else {
        Err(format!(
            "GET /{path} on 127.0.0.1:{port} answered HTTP {status}"
        ))
    }
}

/// How many sessions a host (`mcp-manager host`) serves, from its
/// `/health`; `None` if it does not answer.
pub async fn host_sessions(port: u16) -> Option<u64> {
    let client = crate::transport::loopback_client_builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .ok()?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?;
    let body = response.bytes().await.ok()?;
    let health: serde_json::Value = serde_json::from_slice(&body).ok()?;
    health.get("sessions")?.as_u64()
}

/// Stops a daemon this process spawned: SIGTERM to its group, SIGKILL after
/// a grace period, reaped.
pub async fn stop_child(child: &mut Child) {
    crate::host::child::terminate_group(child).await;
}

/// Stops a daemon known only by its lock (one we adopted): only if the pid
/// is still the process the lock was written for. Returns once it is gone
/// or after the grace period and a SIGKILL.
pub async fn stop_pid(lock: &DaemonLock, grace: Duration) {
    if !lock.is_live() {
        return;
    }
    procinfo::signal_group(lock.pid, procinfo::GroupSignal::Terminate);
    let deadline = Instant::now() + grace;
    while lock.is_live() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if lock.is_live() {
        procinfo::signal_group(lock.pid, procinfo::GroupSignal::Kill);
    }
}

/// A new session and process group: no terminal signal reaches the daemon,
/// it outlives whoever started it, and its group can be stopped as one.
pub fn detach(command: &mut Command) {
    #[cfg(unix)]
    new_session(command);
    #[cfg(windows)]
    {
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = command;
}

#[cfg(unix)]
#[expect(
    unsafe_code,
    reason = "setsid(2) must run in the child between fork and exec"
)]
fn new_session(command: &mut Command) {
    // SAFETY: setsid is async-signal-safe and touches no parent memory.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
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

    #[test]
    fn programs_are_found_on_path() {
        #[cfg(unix)]
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-no-such-program-here").is_none());
        assert!(find_program("/surely/not/here").is_none());
    }

    #[tokio::test]
    async fn starters_take_turns() {
        let home = tempfile::tempdir().expect("tempdir");
        let first = guard(home.path(), "x").await.expect("first");
        let path = home.path().to_owned();
        let second = tokio::spawn(async move { guard(&path, "x").await.map(|_| ()) });
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
