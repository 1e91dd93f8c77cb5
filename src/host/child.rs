//! Spawning the child process and its stdio.
//!
//! A [`ChildSpec`] says how to start the child; [`Child::spawn`] starts it in
//! a process group of its own (so stopping it stops its whole tree: `npx`
//! runs node, which may run more), its stderr read by the host, appended to
//! its log and its last lines kept ([`super::stderr`]), its stdin owned by
//! the one line writer of [`crate::stdio`] and its stdout read line by line.
//! Messages are not interpreted here: that is the backend's job.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::process::{ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::stderr::{StderrTail, pump};
use crate::stdio::{LineReader, Output};
use crate::sync::lock;

/// How to start the child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// The child's stderr is appended here.
    pub log: PathBuf,
    /// Who it is, for the host's own log lines.
    pub label: String,
}

/// Why a child did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// It cannot be started at all (starting again will not help soon).
    #[error("{0}")]
    Unstartable(String),
    /// It started without the pipes it was given.
    #[error("the server process has no stdio")]
    NoStdio,
}

/// Lines queued for the child's stdin before senders wait.
const STDIN_QUEUE: usize = 256;

/// A running child process, with its stdin writer.
pub struct Child {
    process: tokio::process::Child,
    /// Its pid (`None` once it has been reaped).
    pub pid: Option<u32>,
    /// Lines for its stdin, one message each.
    pub stdin: Output,
    writer: JoinHandle<()>,
    stdout: Option<ChildStdout>,
    /// The last lines it wrote to stderr.
    stderr_tail: Arc<Mutex<StderrTail>>,
    /// The task reading its stderr (it ends when every holder of the pipe,
    /// the child's own children included, has closed it).
    stderr_pump: JoinHandle<()>,
}

impl Child {
    /// Starts the child of `spec`.
    ///
    /// # Errors
    /// [`SpawnError::Unstartable`] with why, for people: the log cannot be
    /// opened, the command is not on PATH (with what to install), or the
    /// spawn failed; [`SpawnError::NoStdio`] if its pipes are missing.
    pub fn spawn(spec: &ChildSpec) -> Result<Child, SpawnError> {
        let log = crate::paths::private_file()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| {
                SpawnError::Unstartable(format!("cannot open the log {}: {e}", spec.log.display()))
            })?;
        let mut command = Command::new(&spec.command);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        crate::process::isolate(&mut command);
        let mut process = command
            .spawn()
            .map_err(|e| SpawnError::Unstartable(not_started(&spec.command, &e)))?;
        let pid = process.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err(SpawnError::NoStdio);
        };
        let stderr_tail = Arc::new(Mutex::new(StderrTail::default()));
        let stderr_pump = pump(stderr, log, Arc::clone(&stderr_tail), spec.label.clone());
        // A child that closes its stdin is seen ending by `wait` or its stdout.
        let (stdin, writer) =
            crate::stdio::spawn_line_writer(stdin, STDIN_QUEUE, CancellationToken::new());
        Ok(Child {
            process,
            pid,
            stdin,
            writer,
            stdout: Some(stdout),
            stderr_tail,
            stderr_pump,
        })
    }

    /// Starts the task that reads the child's stdout and hands each line to
    /// `on_line`; the task ends when stdout closes (or on a read error).
    pub fn read_stdout(
        &mut self,
        mut on_line: impl FnMut(Bytes) + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        let stdout = self.stdout.take()?;
        Some(tokio::spawn(async move {
            let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, stdout));
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(line);
            }
        }))
    }

    /// The last lines it wrote to stderr, oldest first.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr_tail).lines()
    }

    /// Waits, up to `within`, until its stderr is read to the end (after it
    /// exited: its last words are in the tail then; a child of its own may
    /// hold the pipe open longer).
    pub async fn stderr_read(&mut self, within: Duration) {
        if !self.stderr_pump.is_finished() {
            let _ = tokio::time::timeout(within, &mut self.stderr_pump).await;
        }
    }

    /// Waits for the process to exit (cancel-safe).
    ///
    /// # Errors
    /// The error of the wait itself.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.process.wait().await
    }

    /// Stops the stdin writer and the whole process group (SIGTERM, a grace,
    /// then SIGKILL), and reaps the child.
    pub async fn terminate(mut self) {
        self.writer.abort();
        crate::process::terminate_group(&mut self.process).await;
    }
}

/// Why `runner` could not be started, with what to install when it is missing.
fn not_started(runner: &str, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::NotFound {
        match runner {
            "npx" | "node" | "npm" => format!(
                "`{runner}` was not found: install Node.js (it provides npx) and make sure it is on PATH"
            ),
            "uvx" | "uv" => format!(
                "`{runner}` was not found: install uv (https://docs.astral.sh/uv/) and make sure it is on PATH"
            ),
            _ => format!("`{runner}` was not found on PATH"),
        }
    } else {
        format!("cannot start `{runner}`: {error}")
    }
}
