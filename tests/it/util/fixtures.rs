//! The binaries under test and the pinned fixtures, checked: a missing
//! fixture fails the test with the command that installs it. The paths
//! themselves come from `tests/support/bins.rs`, shared with the benchmark.
//! Also the real servers those fixtures provide, on loopback ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::bins;
pub use super::bins::{fixtures, manager_bin, proxy_bin};
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

/// `@modelcontextprotocol/server-everything` (pinned).
pub fn everything_js() -> PathBuf {
    require(bins::everything_js())
}

/// `@modelcontextprotocol/server-memory` (stdio; `MEMORY_FILE_PATH` names its file).
pub fn memory_js() -> PathBuf {
    require(bins::memory_js())
}

/// The real Claude Code CLI, pinned in `tests/fixtures/package.json`
/// (`@anthropic-ai/claude-code`): the native binary its install put in place
/// of `bin/claude.exe` (the name on every platform).
pub fn claude_bin() -> PathBuf {
    require(bins::claude_bin())
}

/// The line the real `claude mcp list` (Claude Code, offline, in the
/// throwaway `HOME` `user_home`, whose `.claude.json` the test wrote) shows
/// for the server `name`, with the tool's home `home`.
pub async fn claude_mcp_list_line(
    home: &std::path::Path,
    user_home: &std::path::Path,
    name: &str,
) -> String {
    let output = Command::new(claude_bin())
        .args(["mcp", "list"])
        .current_dir(user_home)
        .env("HOME", user_home)
        .env("MCP_SESSION_MANAGER_HOME", home)
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env_remove("CLAUDE_CONFIG_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("claude mcp list finished")
        .expect("run claude");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
        .to_owned()
}

/// The Python of the fixtures' virtual environment (the pinned MCP SDK).
pub fn venv_python() -> PathBuf {
    require(bins::venv_python())
}

/// Which real server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `@modelcontextprotocol/server-everything`, pinned.
    Everything,
    /// `tests/fixtures/fastmcp_server.py` on the pinned Python SDK.
    FastMcp,
}

/// How it serves MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    StreamableHttp,
    Sse,
}

/// A real MCP server on a loopback port, killed when dropped.
pub struct RealServer {
    pub port: u16,
    pub flavor: Flavor,
    pub mode: Mode,
    child: Child,
}

impl RealServer {
    pub async fn start(flavor: Flavor, mode: Mode) -> RealServer {
        let port = free_port();
        let mut command = match flavor {
            Flavor::Everything => {
                let mut c = Command::new("node");
                c.arg(everything_js())
                    .arg(match mode {
                        Mode::StreamableHttp => "streamableHttp",
                        Mode::Sse => "sse",
                    })
                    .env("PORT", port.to_string());
                c
            }
            Flavor::FastMcp => {
                let mut c = Command::new(venv_python());
                c.arg(fixtures().join("fastmcp_server.py"))
                    .arg("--transport")
                    .arg(match mode {
                        Mode::StreamableHttp => "streamable-http",
                        Mode::Sse => "sse",
                    })
                    .arg("--port")
                    .arg(port.to_string());
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("start the real MCP server");
        wait_for_port(port, Duration::from_secs(30)).await;
        RealServer {
            port,
            flavor,
            mode,
            child,
        }
    }

    pub fn url(&self) -> String {
        match self.mode {
            Mode::StreamableHttp => format!("http://127.0.0.1:{}/mcp", self.port),
            Mode::Sse => format!("http://127.0.0.1:{}/sse", self.port),
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts a real server on `port` (e.g. the port of one that was
    /// killed); `extra` goes to FastMCP's command line (e.g. `--extra-tool
    /// NAME`). Waits (≤ 30 s) until it accepts connections; panics if it
    /// exits first (the port is taken).
    pub async fn start_on(flavor: Flavor, mode: Mode, port: u16, extra: &[&str]) -> RealServer {
        let mut command = match flavor {
            Flavor::Everything => {
                assert!(
                    extra.is_empty(),
                    "server-everything takes no extra arguments"
                );
                let mut c = Command::new("node");
                c.arg(everything_js())
                    .arg(match mode {
                        Mode::StreamableHttp => "streamableHttp",
                        Mode::Sse => "sse",
                    })
                    .env("PORT", port.to_string());
                c
            }
            Flavor::FastMcp => {
                let mut c = Command::new(venv_python());
                c.arg(fixtures().join("fastmcp_server.py"))
                    .arg("--transport")
                    .arg(match mode {
                        Mode::StreamableHttp => "streamable-http",
                        Mode::Sse => "sse",
                    })
                    .arg("--port")
                    .arg(port.to_string())
                    .args(extra);
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the real MCP server");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the {flavor:?} server for port {port} exited with {status} before listening"
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {flavor:?} server did not listen on {addr} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RealServer {
            port,
            flavor,
            mode,
            child,
        }
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Held by every test whose `import` or `add` hosts servers: both pick
/// ports in 3110–3189 that nothing listens on *now*, so two in parallel
/// (different homes, daemons not yet started) would pick the same ones.
pub static IMPORT_PORTS_IN_USE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
