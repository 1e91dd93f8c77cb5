//! The proxy under test: `mcp-proxy` with piped stdio, read one JSON-RPC
//! line at a time with a deadline, optionally with its stderr kept in a
//! file for failure messages.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::config::TestHome;
use super::fixtures::proxy_bin;

/// How long any single expected line may take. Generous: the machine is shared.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The text of the first content item of a tool result.
pub fn tool_text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {response}"))
        .to_owned()
}
