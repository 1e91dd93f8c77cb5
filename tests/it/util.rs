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

/// `@modelcontextprotocol/server-memory` (stdio; `MEMORY_FILE_PATH` names its file).
pub fn memory_js() -> PathBuf {
    require(fixtures().join("node_modules/@modelcontextprotocol/server-memory/dist/index.js"))
}

/// The real Claude Code CLI, pinned in `tests/fixtures/package.json`
/// (`@anthropic-ai/claude-code`): the native binary its install put in place
/// of `bin/claude.exe` (the name on every platform).
pub fn claude_bin() -> PathBuf {
    require(fixtures().join("node_modules/@anthropic-ai/claude-code/bin/claude.exe"))
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
        let client = mcp_session_manager::http::loopback_client_builder()
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

// ---------------------------------------------------------------------------
// `mcp-manager` (the supervisor): configs, processes, signals, the control API.
// ---------------------------------------------------------------------------

/// A manager config: the control port, quick health checks, and `servers`
/// as `mcpServers`.
pub fn manager_config(manager_port: u16, servers: Value) -> Value {
    json!({
        "managerPort": manager_port,
        "healthCheckInterval": 0.5,
        "mcpServers": servers,
    })
}

/// server-everything serving HTTP itself on `port` (started by the manager
/// as is).
pub fn everything_daemon_entry(port: u16, mode: Mode) -> Value {
    let (arg, transport) = match mode {
        Mode::StreamableHttp => ("streamableHttp", "streamable-http"),
        Mode::Sse => ("sse", "sse"),
    };
    json!({
        "command": "node",
        "args": [everything_js().to_string_lossy(), arg],
        "env": {"PORT": port.to_string()},
        "port": port,
        "transport": transport,
        "startTimeout": 20,
    })
}

/// server-everything over stdio, hosted by `mcp-manager host` on `port`.
pub fn hosted_everything_entry(port: u16) -> Value {
    let mut entry = everything_stdio_entry(port);
    entry["startTimeout"] = json!(20);
    entry
}

/// Is something accepting connections on 127.0.0.1:`port` (within 500 ms)?
pub async fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Polls `check` every 100 ms until it yields a value; panics after
/// `timeout`, naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `signal` to `pid` (never to a group: `pid` must be > 1).
#[cfg(unix)]
#[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
pub fn send_signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    assert!(pid > 1, "refusing to signal pid {pid}");
    // SAFETY: kill(2) only sends a signal; it touches no memory of ours.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Sends `signal` to the process group `pgid` (must be > 1).
#[cfg(unix)]
#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    assert!(pgid > 1, "refusing to signal group {pgid}");
    // SAFETY: killpg(2) only sends a signal; it touches no memory of ours.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// The fields of `/proc/PID/stat` from field 3 (`state`) on.
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Does `pid` exist and is it not a zombie?
#[cfg(unix)]
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        match proc_stat(pid) {
            Some(fields) => !matches!(fields.first().map(String::as_str), Some("Z" | "X")),
            None => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// When `pid` started (clock ticks since boot): its identity across pid reuse.
#[cfg(unix)]
pub fn process_start(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        proc_stat(pid)?.get(19)?.parse().ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        pid_alive(pid).then_some(0)
    }
}

/// The process group of `pid`.
#[cfg(target_os = "linux")]
fn process_group(pid: u32) -> Option<u32> {
    proc_stat(pid)?.get(2)?.parse().ok()
}

/// The command line of `pid`, one string per argument.
#[cfg(target_os = "linux")]
pub fn process_cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live process (of ours) whose environment sets
/// `MCP_SESSION_MANAGER_HOME` to `home`: everything started for one test home.
#[cfg(target_os = "linux")]
pub fn processes_of_home(home: &Path) -> Vec<u32> {
    let mut needle = b"MCP_SESSION_MANAGER_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_slice()))
                && pid_alive(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs `mcp-manager ARGS` to completion (≤ 20 s) with `home`; extra
/// environment in `env`. (exit code, stdout, stderr).
pub async fn run_manager_cli(
    home: &TestHome,
    args: &[&str],
    env: &[(&str, &Path)],
) -> (i32, String, String) {
    let mut command = Command::new(manager_bin());
    command
        .args(args)
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("mcp-manager {args:?} did not finish within 20 s"))
        .expect("run mcp-manager");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A pid this test learnt from its manager, with its start time (so a
/// reused pid is never signalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    pid: u32,
    start: Option<u64>,
}

/// The supervisor, `mcp-manager --port PORT`, on a test home.
///
/// Dropping it SIGKILLs the manager and every daemon pid it ever reported
/// in an answer (and the live processes named by the home's lock files that
/// were started for this home), so no daemon outlives its test.
#[cfg(unix)]
pub struct ManagerProcess {
    pub port: u16,
    pub pid: u32,
    pub child: Option<Child>,
    home: PathBuf,
    manager_start: Option<u64>,
    stderr: Option<tempfile::NamedTempFile>,
    client: reqwest::Client,
    tracked: std::sync::Mutex<Vec<Tracked>>,
}

#[cfg(unix)]
impl ManagerProcess {
    /// Starts `mcp-manager --port PORT ARGS` and waits until `/ping` answers.
    pub async fn start(home: &TestHome, port: u16, args: &[&str]) -> ManagerProcess {
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let child = Command::new(manager_bin())
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr.reopen().expect("reopen stderr file")))
            .kill_on_drop(true)
            .spawn()
            .expect("start mcp-manager");
        let pid = child.id().expect("running");
        let mut manager = ManagerProcess {
            port,
            pid,
            manager_start: process_start(pid),
            child: Some(child),
            home: home.path().to_owned(),
            stderr: Some(stderr),
            client: Self::client(),
            tracked: std::sync::Mutex::new(Vec::new()),
        };
        manager.wait_ping().await;
        manager
    }

    /// A manager someone else started (e.g. `mcp-proxy`): found through
    /// `/ping` on `port` (waited for).
    pub async fn attach(home: &TestHome, port: u16) -> ManagerProcess {
        let mut manager = ManagerProcess {
            port,
            pid: 0,
            manager_start: None,
            child: None,
            home: home.path().to_owned(),
            stderr: None,
            client: Self::client(),
            tracked: std::sync::Mutex::new(Vec::new()),
        };
        let ping = manager.wait_ping().await;
        manager.pid = ping["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("/ping names no pid: {ping}"));
        manager.manager_start = process_start(manager.pid);
        manager
    }

    fn client() -> reqwest::Client {
        mcp_session_manager::http::loopback_client_builder()
            .timeout(Duration::from_secs(25))
            .build()
            .expect("client")
    }

    async fn wait_ping(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "mcp-manager exited with {status} before answering /ping:\n{}",
                    self.stderr_tail()
                );
            }
            if let Ok(response) = self
                .client
                .get(format!("http://127.0.0.1:{}/ping", self.port))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && response.status().is_success()
                && let Ok(bytes) = response.bytes().await
                && let Ok(body) = serde_json::from_slice::<Value>(&bytes)
            {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mcp-manager did not answer /ping on {} within 20 s:\n{}",
                self.port,
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the manager wrote to stderr (for failure messages).
    pub fn stderr_tail(&self) -> String {
        let text = match &self.stderr {
            Some(file) => std::fs::read_to_string(file.path()).unwrap_or_default(),
            None => std::fs::read_to_string(self.home.join("manager.log")).unwrap_or_default(),
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request to the control API, for tests that need headers of their own.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends a request; (status, headers, body text). Every answer is checked
    /// for `Access-Control-Allow-Origin` (never allowed), and daemon pids in
    /// it are remembered for the cleanup.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "the control API did not answer: {e}\n{}",
                self.stderr_tail()
            )
        });
        let status = response.status();
        let headers = response.headers().clone();
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "an answer carried Access-Control-Allow-Origin: {headers:?}"
        );
        let body = response.text().await.expect("answer body");
        if let Ok(value) = serde_json::from_str::<Value>(&body) {
            self.track(&value);
        }
        (status, headers, body)
    }

    /// `METHOD PATH` with an optional JSON body; (status, JSON body). A body
    /// that is not JSON comes back as a JSON string.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let (status, _, text) = self.send(request).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// `POST PATH {"name": NAME}`.
    pub async fn post(&self, path: &str, name: &str) -> (reqwest::StatusCode, Value) {
        self.api(reqwest::Method::POST, path, Some(json!({"name": name})))
            .await
    }

    /// `GET /status`: the daemons.
    pub async fn daemons(&self) -> Vec<Value> {
        let (status, body) = self.api(reqwest::Method::GET, "/status", None).await;
        assert_eq!(status, 200, "GET /status: {body}");
        body["daemons"]
            .as_array()
            .unwrap_or_else(|| panic!("/status has no daemons array: {body}"))
            .clone()
    }

    /// `GET /status/NAME` (must answer 200).
    pub async fn status_of(&self, name: &str) -> Value {
        let (status, body) = self
            .api(reqwest::Method::GET, &format!("/status/{name}"), None)
            .await;
        assert_eq!(status, 200, "GET /status/{name}: {body}");
        body
    }

    /// Polls `/status/NAME` until `ready` holds (≤ `timeout`).
    pub async fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status_of(name).await;
            if ready(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never became {what} within {timeout:?}; last status: {status}\nmanager stderr:\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until NAME is in state `running` (≤ 20 s).
    pub async fn wait_running(&self, name: &str) -> Value {
        self.wait_status(name, Duration::from_secs(20), "running", |s| {
            s["state"] == "running" && s["running"] == true && s["pid"].is_u64()
        })
        .await
    }

    /// Remembers every daemon pid (an object with `name` and `pid`) in `value`.
    fn track(&self, value: &Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("name")
                    && let Some(pid) = map
                        .get("pid")
                        .and_then(Value::as_u64)
                        .and_then(|p| u32::try_from(p).ok())
                {
                    self.remember(pid);
                }
                map.values().for_each(|v| self.track(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.track(v)),
            _ => {}
        }
    }

    fn remember(&self, pid: u32) {
        if pid <= 1 || pid == std::process::id() || pid == self.pid {
            return;
        }
        let Some(start) = process_start(pid) else {
            return;
        };
        let tracked = Tracked {
            pid,
            start: Some(start),
        };
        let mut list = self
            .tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !list.contains(&tracked) {
            list.push(tracked);
        }
    }

    /// Sends SIGTERM and waits (≤ 20 s) for the manager to exit; its exit
    /// status when it is our child.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(20)).await
    }

    /// SIGKILL: the manager dies at once and stops nothing.
    pub async fn sigkill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(20)).await;
    }

    /// Sends `signal` to the manager (if it is still the process we saw).
    pub fn signal(&self, signal: i32) {
        if self.pid > 1 && process_start(self.pid) == self.manager_start {
            send_signal(self.pid, signal);
        }
    }

    /// Waits (≤ `timeout`) for the manager to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(child) = &mut self.child {
            let status = tokio::time::timeout(timeout, child.wait())
                .await
                .unwrap_or_else(|_| panic!("mcp-manager did not exit within {timeout:?}"))
                .expect("wait for mcp-manager");
            return Some(status);
        }
        let pid = self.pid;
        wait_until(timeout, "the manager to exit", || async move {
            (!pid_alive(pid)).then_some(())
        })
        .await;
        None
    }

    /// One last `/status` over a plain HTTP/1.0 socket (usable in `drop`).
    fn last_status(&self) {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        ) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /status HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && let Ok(value) = serde_json::from_str::<Value>(body)
        {
            self.track(&value);
        }
    }
}

#[cfg(unix)]
impl Drop for ManagerProcess {
    fn drop(&mut self) {
        self.last_status();
        // The manager first, so it restarts nothing.
        self.signal(libc::SIGKILL);
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        #[cfg_attr(
            not(target_os = "linux"),
            allow(unused_mut, reason = "only Linux adds the home's daemons")
        )]
        let mut tracked = std::mem::take(
            &mut *self
                .tracked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        // Daemons the manager started since the last answer: named by a lock
        // file of this home, and started for this home (its environment says so).
        #[cfg(target_os = "linux")]
        {
            let ours = processes_of_home(&self.home);
            if let Ok(entries) = std::fs::read_dir(&self.home) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "lock")
                        && let Ok(bytes) = std::fs::read(&path)
                        && let Ok(lock) = serde_json::from_slice::<Value>(&bytes)
                        && let Some(pid) = lock["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
                        && ours.contains(&pid)
                    {
                        tracked.push(Tracked {
                            pid,
                            start: process_start(pid),
                        });
                    }
                }
            }
        }
        for Tracked { pid, start } in tracked {
            if pid <= 1 || start.is_none() || process_start(pid) != start {
                continue;
            }
            #[cfg(target_os = "linux")]
            if process_group(pid) == Some(pid) {
                signal_group(pid, libc::SIGKILL);
            }
            send_signal(pid, libc::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------
// Daemon restarts: a real server started again on the same port, a proxy
// whose stderr is kept, reads with a deadline of one's own, memory.
// ---------------------------------------------------------------------------

impl RealServer {
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

/// The stderr of a proxy started by [`start_proxy_logged`].
pub struct ProxyLog {
    file: tempfile::NamedTempFile,
}

impl ProxyLog {
    /// Everything the proxy wrote to stderr so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.file.path()).unwrap_or_default()
    }

    /// The last `n` lines (for failure messages).
    pub fn tail(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `mcp-proxy ARGS` (as [`Proxy::start`]) with `MCP_PROXY_LOG=filter` and
/// its stderr kept in a file.
pub fn start_proxy_logged(home: &TestHome, args: &[&str], filter: &str) -> (Proxy, ProxyLog) {
    let file = tempfile::NamedTempFile::new().expect("stderr file");
    let stderr = file.reopen().expect("reopen stderr file");
    let proxy = Proxy::start_with(home, args, |command| {
        command
            .env("MCP_PROXY_LOG", filter)
            .stderr(Stdio::from(stderr));
    });
    (proxy, ProxyLog { file })
}

impl Proxy {
    /// The next message if one comes within `timeout` (it is not kept in
    /// `seen`); panics on EOF.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Err(_) => None,
            Ok(Ok(Some(line))) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")),
            ),
            Ok(Ok(None)) => panic!("mcp-proxy closed stdout; seen so far: {:#?}", self.seen),
            Ok(Err(e)) => panic!("cannot read mcp-proxy stdout: {e}"),
        }
    }

    /// Every message that arrives within `window` (none kept in `seen`).
    pub async fn collect_for(&mut self, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut messages = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return messages;
            }
            match self.next_within(left).await {
                Some(message) => messages.push(message),
                None => return messages,
            }
        }
    }
}

/// The resident set size of `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
#[cfg(target_os = "linux")]
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
