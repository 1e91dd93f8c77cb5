//! Test support: the real binaries, real servers from the pinned fixtures, a
//! private home directory per test, and a line-oriented client for the proxy.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long any single expected line may take. Generous: the machine is shared.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-test-fixtures.sh` (the README's test command does)",
        path.display()
    );
    path
}

pub fn everything_js() -> PathBuf {
    require(fixtures().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
}

pub fn venv_python() -> PathBuf {
    let unix = fixtures().join(".venv/bin/python");
    if cfg!(windows) {
        require(fixtures().join(".venv/Scripts/python.exe"))
    } else {
        require(unix)
    }
}

pub fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-proxy"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, timeout: Duration) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listened on {addr} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
}

/// A private `MCP_SESSION_MANAGER_HOME` for one test.
pub struct TestHome {
    pub dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> TestHome {
        TestHome {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, config: &Value) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("write config");
    }

    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.path().join("config.json"), text).expect("write config");
    }
}

/// A running `mcp-proxy` with piped stdio.
pub struct Proxy {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Messages read while waiting for something else.
    pub seen: Vec<Value>,
}

impl Proxy {
    /// Starts `mcp-proxy ARGS` with `home` as its home directory.
    pub fn start(home: &TestHome, args: &[&str]) -> Proxy {
        Proxy::start_with(home, args, |_| {})
    }

    pub fn start_with(
        home: &TestHome,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Proxy {
        let mut command = Command::new(proxy_bin());
        command
            .args(args)
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_PROXY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        customize(&mut command);
        let mut child = command.spawn().expect("start mcp-proxy");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        Proxy {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub async fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.expect("write stdin");
        stdin.write_all(b"\n").await.expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }

    pub async fn send(&mut self, message: &Value) {
        self.send_raw(&message.to_string()).await;
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// The next stdout line as raw text; panics on EOF or timeout.
    pub async fn next_line(&mut self) -> String {
        match tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("mcp-proxy closed stdout; seen so far: {:#?}", self.seen),
            Ok(Err(e)) => panic!("cannot read mcp-proxy stdout: {e}"),
            Err(_) => panic!(
                "no line from mcp-proxy within {LINE_TIMEOUT:?}; seen so far: {:#?}",
                self.seen
            ),
        }
    }

    /// The next stdout line, which must be a JSON-RPC message.
    pub async fn next(&mut self) -> Value {
        let line = self.next_line().await;
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert!(
            value.is_array() || value["jsonrpc"] == "2.0",
            "stdout line is not JSON-RPC 2.0: {line}"
        );
        value
    }

    /// Reads until a message matches; the others are kept in `seen`.
    pub async fn until(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&mut matches) {
            return self.seen.remove(i);
        }
        loop {
            let value = self.next().await;
            if matches(&value) {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// Reads until the response with this id (compared as JSON values).
    pub async fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.until(move |v| v["id"] == id && v.get("method").is_none())
            .await
    }

    /// Sends a request and waits for its response; other messages go to `seen`.
    pub async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(&id).await
    }

    /// `initialize` (declaring sampling, elicitation and roots) + `initialized`.
    pub async fn initialize(&mut self) -> Value {
        let result = self
            .request(
                json!(0),
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                    "clientInfo": {"name": "mcp-proxy-tests", "version": "0"}
                }),
            )
            .await;
        assert!(
            result.get("result").is_some(),
            "initialize failed: {result}"
        );
        self.notify("notifications/initialized", json!({})).await;
        result
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit; panics if it takes longer than `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("mcp-proxy did not exit within {timeout:?}"))
            .expect("wait for mcp-proxy")
    }

    /// Everything left on stdout until EOF (after the process has ended).
    pub async fn rest(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line()).await
        {
            lines.push(line);
        }
        lines
    }

    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("pid fits");
        // kill(2) through the shell-free libc call would need unsafe; the
        // `kill` command is everywhere on Unix.
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }
}

/// The text of the first content item of a tool result.
pub fn tool_text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {response}"))
        .to_owned()
}

pub fn manager_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-manager"))
}

/// `mcp-manager host NAME` running in the foreground, killed when dropped.
pub struct HostProcess {
    pub port: u16,
    pub child: Child,
}

impl HostProcess {
    /// Writes a config with one stdio entry and hosts it.
    pub async fn start(home: &TestHome, name: &str, entry: Value) -> HostProcess {
        let port = entry["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("entry has a port");
        home.write_config(&json!({"mcpServers": {name: entry}}));
        let child = Command::new(manager_bin())
            .args(["host", name])
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mcp-manager host");
        wait_for_port(port, Duration::from_secs(30)).await;
        HostProcess { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub async fn health(&self) -> Value {
        let client = mcp_session_manager::transport::loopback_client_builder()
            .build()
            .expect("client");
        client
            .get(format!("http://127.0.0.1:{}/health", self.port))
            .send()
            .await
            .expect("health answers")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("health is JSON"))
            .expect("health body")
    }

    /// Waits until `/health` satisfies `ready`.
    pub async fn wait_health(&self, ready: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let health = self.health().await;
            if ready(&health) {
                return health;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "health never got ready: {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The command that runs server-everything over stdio.
pub fn everything_stdio_entry(port: u16) -> Value {
    json!({
        "command": "node",
        "args": [everything_js().to_string_lossy(), "stdio"],
        "port": port,
    })
}
