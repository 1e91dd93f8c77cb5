//! The manager under test: `mcp-manager --port PORT` on a test home, its
//! control API, and a cleanup that leaves no daemon behind; plus one-shot
//! `mcp-manager` commands.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::config::TestHome;
use super::fixtures::manager_bin;

// The rest is for the supervisor, which the tests run on Unix only.
#[cfg(unix)]
use std::net::{Ipv4Addr, SocketAddr};
#[cfg(unix)]
use std::path::PathBuf;
#[cfg(unix)]
use std::process::ExitStatus;

#[cfg(unix)]
use mcp_session_manager::process;
#[cfg(unix)]
use serde_json::{Value, json};
#[cfg(unix)]
use tokio::process::Child;

#[cfg(unix)]
use super::processes::send_signal;
#[cfg(target_os = "linux")]
use super::processes::{process_group, processes_of_home};
#[cfg(unix)]
use super::wait::wait_until;

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
#[cfg(unix)]
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
            manager_start: process::start_time(pid),
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
        manager.manager_start = process::start_time(manager.pid);
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
        let Some(start) = process::start_time(pid) else {
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
        if self.pid > 1 && process::start_time(self.pid) == self.manager_start {
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
            (!process::is_alive(pid)).then_some(())
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
                            start: process::start_time(pid),
                        });
                    }
                }
            }
        }
        for Tracked { pid, start } in tracked {
            if pid <= 1 || start.is_none() || process::start_time(pid) != start {
                continue;
            }
            #[cfg(target_os = "linux")]
            if process_group(pid) == Some(pid) {
                process::signal_group(pid, process::GroupSignal::Kill);
            }
            send_signal(pid, libc::SIGKILL);
        }
    }
}
