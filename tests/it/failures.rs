//! Every way the proxy cannot serve reaches the Claude Code user with its
//! cause and its one fix (issue 15, items 1 and 4), end to end: the real
//! `mcp-proxy`, the real `mcp-manager` and the real Claude Code CLI
//! (`claude mcp list` in a throwaway `HOME`, offline).
//!
//! For each cause: a raw `initialize` and `server/discover` through the
//! proxy get a JSON-RPC error whose first 150 characters say what is wrong
//! and what fixes it, whose whole is at most 400 characters, with no
//! `--start-all` advice and without the server's name (Claude Code redacts
//! it); the proxy keeps answering until stdin closes. Then `claude mcp
//! list` shows that cause on the server's line. The causes: a missing
//! runner (a `PATH` without `uvx`), a missing command, a daemon that exits
//! at start (exit status 3 and its last output), a program of this user on
//! the daemon's port (sent nothing), and a stranger on the manager's port.

#![cfg(unix)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::util::{
    ManagerProcess, Mode, Proxy, TestHome, everything_daemon_entry, free_port, manager_config,
    proxy_bin, wait_for_port,
};

/// The one server of each test: a name that must not be needed to read
/// the message.
const NAME: &str = "srv-h6-name";

/// A daemon that exits at start the way a misconfigured one does.
fn crasher_entry(port: u16) -> Value {
    json!({
        "command": "sh",
        "args": ["-c", "echo starting up; echo 'fatal: DATABASE_URL is not set' >&2; exit 3"],
        "port": port,
        "transport": "streamable-http",
        "startTimeout": 20,
    })
}

/// What a proxy for [`NAME`] on `home` answers to `initialize` and then
/// `server/discover` (its stderr kept), and how long the first answer
/// took; with `env` added to its environment. It must exit once stdin
/// closes.
async fn refused(home: &TestHome, env: &[(&str, &Path)]) -> (Value, Value, Duration, String) {
    let file = tempfile::NamedTempFile::new().expect("stderr file");
    let mut proxy = Proxy::start_with(home, &["--target", NAME], |command| {
        command
            .env("MCP_PROXY_LOG", "warn")
            .stderr(Stdio::from(file.reopen().expect("reopen")));
        for (key, value) in env {
            command.env(key, value);
        }
    });
    let asked = Instant::now();
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .await;
    let initialize = proxy.next().await;
    let took = asked.elapsed();
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{}}"#)
        .await;
    let discover = proxy.next().await;
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1), "{status}");
    let stderr = std::fs::read_to_string(file.path()).unwrap_or_default();
    (initialize, discover, took, stderr)
}

/// The error's message, checked: both answers carry it; `parts` are all
/// within its first 150 characters; at most 400 in all; no name, no
/// `--start-all`.
fn message_of(initialize: &Value, discover: &Value, parts: &[&str]) -> String {
    assert_eq!(initialize["id"], 1, "{initialize}");
    assert_eq!(discover["id"], "d", "{discover}");
    assert_eq!(initialize["error"]["code"], -32603, "{initialize}");
    let message = initialize["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {initialize}"))
        .to_owned();
    assert_eq!(discover["error"]["message"], message.as_str(), "{discover}");
    let head: String = message.chars().take(150).collect();
    for part in parts {
        assert!(
            head.contains(part),
            "`{part}` is not within the first 150 characters of: {message}"
        );
    }
    assert!(message.chars().count() <= 401, "too long: {message}");
    assert!(
        !message.contains(NAME),
        "the message needs the name: {message}"
    );
    assert!(!message.contains("start-all"), "{message}");
    message
}

/// The line `claude mcp list` (Claude Code, offline, in a throwaway
/// `HOME`) shows for a proxy entry of [`NAME`] on `home`.
async fn claude_line(home: &TestHome) -> String {
    let user = tempfile::tempdir().expect("HOME");
    let proxy = proxy_bin().to_string_lossy().into_owned();
    std::fs::write(
        user.path().join(".claude.json"),
        json!({"mcpServers": {NAME: {"command": proxy, "args": ["--target", NAME]}}}).to_string(),
    )
    .expect("write ~/.claude.json");
    crate::util::claude_mcp_list_line(home.path(), user.path(), NAME).await
}

/// Asserts Claude Code's line shows the failure and `cause`.
fn assert_shown(line: &str, cause: &str) {
    assert!(
        line.contains("Failed to connect") && line.contains(cause),
        "claude mcp list does not show `{cause}`: {line}"
    );
}

/// `python3 -m http.server` of this user on `port`, its request log in
/// `log` (every request it is sent is a line there).
async fn http_server(port: u16, log: &Path) -> Child {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).expect("log")))
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 -m http.server");
    wait_for_port(port, Duration::from_secs(20)).await;
    child
}

/// A hosted server whose runner is not on the manager's `PATH`: the proxy
/// starts the manager with its own `PATH` (here one without `uvx`), which
/// says which runner is missing and what installs it.
#[tokio::test]
async fn a_missing_runner_names_it_and_what_installs_it() {
    let home = TestHome::new();
    let manager_port = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({NAME: {"command": "uvx", "args": ["mcp-server-fetch"], "port": free_port()}}),
    ));
    let empty = tempfile::tempdir().expect("an empty PATH");
    let (initialize, discover, _, stderr) = refused(&home, &[("PATH", empty.path())]).await;
    let mut manager = ManagerProcess::attach(&home, manager_port).await;
    message_of(
        &initialize,
        &discover,
        &[
            "`uvx` was not found on PATH",
            "install uv (https://docs.astral.sh/uv/)",
        ],
    );
    assert!(stderr.contains("`uvx` was not found"), "{stderr}");
    assert_shown(&claude_line(&home).await, "install uv");
    manager.stop().await;
}

/// A command that is not installed: the command, and where to fix it.
#[tokio::test]
async fn a_missing_command_names_it_and_the_fix() {
    let home = TestHome::new();
    let manager_port = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({NAME: {"command": "uvx-surely-missing", "port": free_port(), "transport": "streamable-http"}}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let (initialize, discover, _, _) = refused(&home, &[]).await;
    message_of(
        &initialize,
        &discover,
        &[
            "`uvx-surely-missing` was not found on PATH",
            "give its full path in \"command\"",
        ],
    );
    assert_shown(
        &claude_line(&home).await,
        "`uvx-surely-missing` was not found",
    );
    drop(manager);
}

/// A daemon (not hosted) that exits at start: its exit status and its own
/// last output, within seconds of the exit (not Claude's 30 s, not
/// `startTimeout`).
#[tokio::test]
async fn a_daemon_that_exits_at_start_says_its_status_and_last_output() {
    let home = TestHome::new();
    let manager_port = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({NAME: crasher_entry(free_port())}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let (initialize, discover, took, _) = refused(&home, &[]).await;
    let message = message_of(
        &initialize,
        &discover,
        &[
            "the server exited at start (exit status: 3)",
            "fatal: DATABASE_URL is not set",
        ],
    );
    assert!(message.contains("`mcp-manager reload`"), "{message}");
    assert!(
        took < Duration::from_secs(10),
        "the error took {took:?}: {message}"
    );
    assert_shown(
        &claude_line(&home).await,
        "exited at start (exit status: 3): starting up | fatal: DATABASE_URL is not set",
    );
    drop(manager);
}

/// A program of this user on the port of an entry with a command, with no
/// record of ours: it is not the daemon. It gets no session (no request
/// at all: its request log stays empty); the error names its pid and
/// command line and the fix.
#[tokio::test]
async fn a_program_on_the_daemons_port_is_named_and_sent_nothing() {
    let home = TestHome::new();
    let (manager_port, port) = (free_port(), free_port());
    let requests = tempfile::NamedTempFile::new().expect("request log");
    let mut holder = http_server(port, requests.path()).await;
    let pid = holder.id().expect("running").to_string();
    home.write_config(&manager_config(
        manager_port,
        json!({NAME: everything_daemon_entry(port, Mode::StreamableHttp)}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let (initialize, discover, _, _) = refused(&home, &[]).await;
    let message = message_of(
        &initialize,
        &discover,
        &[
            &format!("port {port} is taken by another program"),
            "give this server another \"port\" in config.json",
        ],
    );
    assert!(
        message.contains(&format!("pid {pid} (")) && message.contains("http.server"),
        "the holder is not named: {message}"
    );
    assert_shown(&claude_line(&home).await, &format!("held by pid {pid}"));
    drop(manager);
    let _ = holder.start_kill();
    let _ = holder.wait().await;
    let log = std::fs::read_to_string(requests.path()).unwrap_or_default();
    assert!(
        !log.contains("HTTP/1."),
        "the program on the port was sent requests: {log}"
    );
}

/// The manager's port held by a program of this user that is not
/// mcp-manager: the proxy sends it a `/ping` only (never `/ensure`), starts
/// the daemon itself, and says both: the manager's trouble and its fix
/// first, then why the daemon failed.
#[tokio::test]
async fn a_stranger_on_the_manager_port_is_named_with_the_fix() {
    let home = TestHome::new();
    let manager_port = free_port();
    let requests = tempfile::NamedTempFile::new().expect("request log");
    let mut holder = http_server(manager_port, requests.path()).await;
    let pid = holder.id().expect("running").to_string();
    home.write_config(&manager_config(
        manager_port,
        json!({NAME: crasher_entry(free_port())}),
    ));
    let (initialize, discover, _, _) = refused(&home, &[]).await;
    let message = message_of(
        &initialize,
        &discover,
        &[
            &format!(
                "the manager's port {manager_port} is taken by a program that is not mcp-manager"
            ),
            "set another \"managerPort\" in config.json",
        ],
    );
    assert!(
        message.contains(&format!("pid {pid} (")) && message.contains("exit status: 3"),
        "{message}"
    );
    assert_shown(&claude_line(&home).await, "not mcp-manager");
    let _ = holder.start_kill();
    let _ = holder.wait().await;
    let log = std::fs::read_to_string(requests.path()).unwrap_or_default();
    assert!(
        !log.contains("/ensure"),
        "the stranger was asked /ensure: {log}"
    );
}
