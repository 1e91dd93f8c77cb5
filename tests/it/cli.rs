//! The command line: flags, config errors, and finding the daemon for
//! `--target` (configured port, lock file, manager `/ensure`, nothing).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::util::{Flavor, Mode, Proxy, RealServer, TestHome, free_port, proxy_bin, tool_text};

/// Runs `mcp-proxy ARGS` with stdin closed; (exit code, stdout, stderr).
async fn run(home: &TestHome, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(proxy_bin())
        .args(args)
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("mcp-proxy finished")
        .expect("run mcp-proxy");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `--help` lists every flag; `--version` prints the crate version.
#[tokio::test]
async fn help_and_version() {
    let home = TestHome::new();
    let (code, out, _) = run(&home, &["--help"]).await;
    assert_eq!(code, 0);
    for flag in [
        "--target",
        "--manager-port",
        "--url",
        "--transport",
        "--header",
        "--allow-http",
        "MCP_PROXY_LOG",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    let (code, out, _) = run(&home, &["--version"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

/// An unknown target prints the valid names and exits 1.
#[tokio::test]
async fn unknown_target_lists_the_valid_names() {
    let home = TestHome::new();
    let (code, out, err) = run(&home, &["--target", "nope"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "stdout must stay protocol-only: {out}");
    for name in ["memory", "code-index", "ast-grep"] {
        assert!(err.contains(name), "{name} missing: {err}");
    }
}

/// A broken config names the file and the key, and exits 1 without panicking.
#[tokio::test]
async fn broken_config_names_the_file_and_the_key() {
    let home = TestHome::new();
    home.write_raw_config(r#"{"mcpServers": {"memory": {"command": "x", "port": "3100"}}}"#);
    let (code, _, err) = run(&home, &["--target", "memory"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("config.json") && err.contains("mcpServers.memory.port"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    home.write_raw_config("{ not json");
    let (code, _, err) = run(&home, &["--target", "memory"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("config.json") && err.contains("line 1"),
        "{err}"
    );
}

/// Plain http to another host needs `--allow-http`; bad headers are named.
#[tokio::test]
async fn url_and_header_mistakes_are_explained() {
    let home = TestHome::new();
    let (code, _, err) = run(&home, &["--url", "http://example.invalid/mcp"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--allow-http"), "{err}");
    let (code, _, err) = run(
        &home,
        &["--url", "http://127.0.0.1:1/mcp", "--header", "no colon"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("Name: value"), "{err}");
}

/// A daemon answering on the configured port is used (here in SSE mode).
#[tokio::test]
async fn target_found_on_its_configured_port() {
    let server = RealServer::start(Flavor::Everything, Mode::Sse).await;
    let home = TestHome::new();
    home.write_config(
        &json!({"mcpServers": {"everything": {"port": server.port, "transport": "sse"}}}),
    );
    let mut proxy = Proxy::start(&home, &["--target", "everything"]);
    proxy.initialize().await;
    let echo = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "via port"}}),
        )
        .await;
    assert!(tool_text(&echo).contains("via port"));
}

/// Nothing on the configured port: the port in `NAME.lock` is tried next,
/// when the record is believed (its process, with its start time, holds
/// that port).
#[tokio::test]
async fn target_found_through_its_lock_file() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let pid = server.pid().expect("the server runs");
    let home = TestHome::new();
    let configured = free_port();
    home.write_config(&json!({"mcpServers": {"shared": {"port": configured}}}));
    std::fs::write(
        home.path().join("shared.lock"),
        serde_json::to_vec_pretty(&json!({
            "pid": pid, "port": server.port,
            "startedAt": 0, "transport": "streamable-http",
            "processStart": mcp_session_manager::process::start_time(pid),
        }))
        .expect("json"),
    )
    .expect("write lock");
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "shared",
            "--manager-port",
            &free_port().to_string(),
        ],
    );
    proxy.initialize().await;
    let pong = proxy.request(json!("p"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

/// Nothing on the port and no lock: the manager's `/ensure` names the port.
#[tokio::test]
async fn target_found_through_the_manager() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let manager = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let manager_port = manager.local_addr().expect("addr").port();
    let daemon_port = server.port;
    // A stand-in manager: answers `/ping` as mcp-manager does, then the
    // `/ensure` with the daemon's port.
    let asked = tokio::spawn(async move {
        loop {
            let (mut socket, _) = manager.accept().await.expect("the proxy asks the manager");
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.expect("read request");
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let body = if request.starts_with("GET /ping") {
                r#"{"status":"ok","message":"Manager is running"}"#.to_owned()
            } else {
                format!(r#"{{"running":true,"port":{daemon_port},"transport":"streamable-http"}}"#)
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.expect("answer");
            if !request.starts_with("GET /ping") {
                return request;
            }
        }
    });
    let home = TestHome::new();
    home.write_config(
        &json!({"managerPort": manager_port, "mcpServers": {"shared": {"port": free_port()}}}),
    );
    let mut proxy = Proxy::start(&home, &["--target", "shared"]);
    proxy.initialize().await;
    let request = asked.await.expect("manager task");
    assert!(request.starts_with("POST /ensure"), "{request}");
    assert!(request.contains(r#""name":"shared""#), "{request}");
}

/// Nothing serves the target: `initialize` gets a JSON-RPC error that says
/// what to do, and the proxy exits 1 once stdin closes.
#[cfg(unix)] // the manager helper signals with libc
#[tokio::test]
async fn no_daemon_answers_initialize_with_the_fix() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&json!({"mcpServers": {"gone": {"port": port}}}));
    let manager_port = free_port().to_string();
    let mut proxy = Proxy::start(
        &home,
        &["--target", "gone", "--manager-port", &manager_port],
    );
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": "init", "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .await;
    let error = proxy.next().await;
    assert_eq!(error["id"], json!("init"));
    let message = error["error"]["message"].as_str().expect("message");
    // The proxy started a manager (detached) to ask; it said why it could
    // not start "gone" (the cause and the fix, without the name, which
    // Claude Code redacts), and stays up for the next proxy: stop it.
    assert!(
        message.contains(&format!("nothing answers on 127.0.0.1:{port}"))
            && message.contains("no \"command\": add one"),
        "{message}"
    );
    assert!(!message.contains("start-all"), "{message}");
    let mut manager =
        crate::util::ManagerProcess::attach(&home, manager_port.parse().expect("port")).await;
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1));
    manager.stop().await;
}
