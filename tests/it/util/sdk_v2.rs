//! The second SDK generation and the 2026-07-28 fixtures: the v2 clients
//! (`ts2_client.mjs` on `@modelcontextprotocol/client` 2.4.0, `py2_client.py`
//! on Python `mcp` 2.3.0 in `.venv2`) and the old ones (`ts_client.mjs`,
//! `py_client.py`) run once to a verdict, the 2026-07-28 servers
//! (`ts2_server.mjs`, `py2_server.py`) over stdio or HTTP, and the Node
//! ≥ 22 the conformance CLI needs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::fixtures::{fixtures, venv_python};
use super::wait::{free_port, wait_for_port};

/// `path`, after failing the test if it is not installed.
fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-test-fixtures.sh` (the README's test command does)",
        path.display()
    );
    path
}

/// The Python of the second venv (`tests/fixtures/.venv2`: `mcp` 2.3.0).
pub fn venv2_python() -> PathBuf {
    if cfg!(windows) {
        require(fixtures().join(".venv2/Scripts/python.exe"))
    } else {
        require(fixtures().join(".venv2/bin/python"))
    }
}

/// A Node ≥ 22 (the conformance CLI's minimum): the pinned one the install
/// script put in `tests/fixtures/node22` when the machine's is older, else
/// the machine's `node`.
pub fn node22() -> PathBuf {
    let pinned = fixtures().join(if cfg!(windows) {
        "node22/node_modules/.bin/node.cmd"
    } else {
        "node22/node_modules/.bin/node"
    });
    if pinned.exists() {
        pinned
    } else {
        PathBuf::from("node")
    }
}

/// `@modelcontextprotocol/conformance`'s CLI (run it with [`node22`]).
pub fn conformance_js() -> PathBuf {
    require(fixtures().join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
}

/// A client that prints one verdict line `{"ok", "version", "call", "error"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Client {
    /// `ts2_client.mjs` (`@modelcontextprotocol/client` 2.4.0).
    Ts2,
    /// `py2_client.py` (Python `mcp` 2.3.0).
    Py2,
}

/// Its negotiation mode (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionMode {
    /// `server/discover` first, `initialize` as the fallback.
    Auto,
    /// Pinned to 2026-07-28: no fallback.
    Pin2026,
    /// Pinned to 2025-11-25 (the SDKs' `legacy` mode: `initialize` only).
    Pin2025,
}

impl VersionMode {
    fn arg(self) -> &'static str {
        match self {
            VersionMode::Auto => "auto",
            VersionMode::Pin2026 => "2026",
            VersionMode::Pin2025 => "2025",
        }
    }
}

/// Where a client connects: a stdio command, or a Streamable HTTP URL.
#[derive(Debug, Clone)]
pub enum Target {
    Stdio(Vec<String>),
    Url(String),
}

/// Runs `client` in `mode` against `target` (bounded: 60 s) with the
/// environment `env`, and returns its verdict line.
pub async fn run_v2_client(
    client: V2Client,
    mode: VersionMode,
    target: &Target,
    env: &[(&str, &std::ffi::OsStr)],
) -> Value {
    let mut command = match client {
        V2Client::Ts2 => {
            let mut c = Command::new("node");
            c.arg(fixtures().join("ts2_client.mjs"));
            c
        }
        V2Client::Py2 => {
            let mut c = Command::new(venv2_python());
            c.arg(fixtures().join("py2_client.py"));
            c
        }
    };
    command.args(["--mode", mode.arg(), "--timeout", "45"]);
    verdict_of(command, target, env, &format!("{client:?} ({mode:?})")).await
}

/// Which 2026-07-28 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server2026 {
    /// `ts2_server.mjs` (`@modelcontextprotocol/server` 2.4.0).
    Ts2,
    /// `py2_server.py` (Python `mcp` 2.3.0, `MCPServer`).
    Py2,
}

/// The stdio command of `server` (program first).
pub fn server2026_stdio(server: Server2026) -> Vec<String> {
    match server {
        Server2026::Ts2 => vec![
            "node".into(),
            fixtures()
                .join("ts2_server.mjs")
                .to_string_lossy()
                .into_owned(),
            "--transport".into(),
            "stdio".into(),
        ],
        Server2026::Py2 => vec![
            venv2_python().to_string_lossy().into_owned(),
            fixtures()
                .join("py2_server.py")
                .to_string_lossy()
                .into_owned(),
            "--transport".into(),
            "stdio".into(),
        ],
    }
}

/// A config entry hosting `server` over stdio on `port`.
pub fn server2026_hosted_entry(server: Server2026, port: u16) -> Value {
    let argv = server2026_stdio(server);
    json!({"command": argv[0], "args": argv[1..], "port": port, "startTimeout": 20})
}

/// A 2026-07-28 server serving Streamable HTTP itself on a loopback port,
/// killed when dropped.
pub struct Http2026 {
    pub port: u16,
    child: Child,
}

impl Http2026 {
    /// Starts `server` over HTTP on a free port; waits (≤ 30 s) for it.
    pub async fn start(server: Server2026) -> Http2026 {
        let port = free_port();
        let mut command = match server {
            Server2026::Ts2 => {
                let mut c = Command::new("node");
                c.arg(fixtures().join("ts2_server.mjs"))
                    .args(["--transport", "http"]);
                c
            }
            Server2026::Py2 => {
                let mut c = Command::new(venv2_python());
                c.arg(fixtures().join("py2_server.py"))
                    .args(["--transport", "streamable-http"]);
                c
            }
        };
        command
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("start the 2026-07-28 server");
        wait_for_port(port, Duration::from_secs(30)).await;
        Http2026 { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// An old-generation client, reduced to connect + one tool call with the
/// same verdict line: `ts1_call.mjs` (`@modelcontextprotocol/sdk` 1.32.2)
/// or `py1_call.py` (`mcp` 1.30.0 in `.venv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Client {
    Ts1,
    Py1,
}

/// Runs `client` against `target` (bounded: 60 s) and returns its verdict.
pub async fn run_v1_client(
    client: V1Client,
    target: &Target,
    env: &[(&str, &std::ffi::OsStr)],
) -> Value {
    let mut command = match client {
        V1Client::Ts1 => {
            let mut c = Command::new("node");
            c.arg(fixtures().join("ts1_call.mjs"));
            c
        }
        V1Client::Py1 => {
            let mut c = Command::new(venv_python());
            c.arg(fixtures().join("py1_call.py"));
            c
        }
    };
    command.args(["--timeout", "45"]);
    verdict_of(command, target, env, &format!("{client:?}")).await
}

async fn verdict_of(
    mut command: Command,
    target: &Target,
    env: &[(&str, &std::ffi::OsStr)],
    what: &str,
) -> Value {
    match target {
        Target::Stdio(argv) => {
            command.arg("--").args(argv);
        }
        Target::Url(url) => {
            command.args(["--url", url]);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} finished within 60 s"))
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON verdict from {what}; stdout: {stdout}"))
}
