//! `mcp-manager doctor` and a remote server behind `mcp-proxy` (issue 16,
//! item 1): a Claude Code entry running `mcp-proxy --target X`, where the
//! config's `X` is a remote server that answers 401 with
//! `WWW-Authenticate`, is a problem (the server wants a login, which only
//! Claude Code does) with the way back as its fix; the same setup with a
//! server that answers is not. The real `mcp-manager` and `mcp-proxy`, a
//! throwaway `HOME` and tool home, and a loopback server answering each
//! connection with one canned HTTP response (at most a few connections).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::util::{TestHome, free_port, manager_bin, proxy_bin};

/// How long one doctor run may take (its probe is bounded by 5 s).
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback server answering up to `count` connections with `response`;
/// its `/mcp` URL with a query that must never be shown.
async fn serve(count: usize, response: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        for _ in 0..count {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/mcp?key=hidden-secret")
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `doctor --json` for a user whose Claude Code runs `mcp-proxy --target
/// notion` and whose config's `notion` is the remote server at `url`:
/// (exit code, report, the text output).
async fn doctor_with_remote(url: &str) -> (i32, Value, String) {
    let home = TestHome::new();
    let user = tempfile::tempdir().expect("HOME");
    let cwd = tempfile::tempdir().expect("working directory");
    home.write_config(&json!({
        "managerPort": free_port(),
        "mcpServers": {"notion": {"type": "http", "url": url, "headers": {"X-Api-Key": "header-secret"}}},
    }));
    let claude = json!({"mcpServers": {"notion": {
        "type": "stdio",
        "command": proxy_bin(),
        "args": ["--target", "notion"],
    }}});
    std::fs::write(user.path().join(".claude.json"), claude.to_string()).expect("~/.claude.json");
    let run = |json: bool| {
        let mut command = Command::new(manager_bin());
        command.arg("doctor");
        if json {
            command.arg("--json");
        }
        command
            .current_dir(cwd.path())
            .env("HOME", user.path())
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(DOCTOR_TIMEOUT, command.output())
                .await
                .expect("doctor finished within 30 s")
                .expect("run mcp-manager doctor")
        }
    };
    let output = run(true).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {stdout}"));
    let text = run(false).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    (output.status.code().unwrap_or(-1), report, text)
}

fn login_checks(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["name"] == "remote login")
        .collect()
}

/// A target that asks for a login (401 + WWW-Authenticate): a problem, the
/// fix gives the server back to Claude Code, nothing secret is shown, and
/// doctor exits non-zero.
#[tokio::test]
async fn doctor_flags_a_remote_target_that_needs_a_login() {
    let url = serve(
        4,
        http(
            "401 Unauthorized",
            "www-authenticate: Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource\"\r\n",
            "",
        ),
    )
    .await;
    let (code, report, text) = doctor_with_remote(&url).await;
    assert_ne!(code, 0, "a problem fails doctor: {report:#}");
    assert_eq!(report["healthy"], false, "{report:#}");
    let checks = login_checks(&report);
    assert_eq!(checks.len(), 1, "{report:#}");
    let check = checks[0];
    assert_eq!(check["status"], "problem", "{check:#}");
    let detail = check["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(
            "notion: a remote server that needs a login (OAuth), which mcp-proxy cannot do"
        ),
        "{detail}"
    );
    let fix = check["fix"].as_str().expect("fix");
    assert!(fix.contains("`mcp-manager import --undo`"), "{fix}");
    let shown = url.split('?').next().expect("url");
    assert!(
        fix.contains(&format!(
            "`claude mcp add --transport http notion {shown}?…`"
        )),
        "{fix}"
    );
    for secret in ["hidden-secret", "header-secret"] {
        assert!(!report.to_string().contains(secret), "{report:#}");
        assert!(!text.contains(secret), "{text}");
    }
    assert!(
        text.contains("✗ remote login: notion: a remote server that needs a login"),
        "{text}"
    );
}

/// The same setup with a server that answers `initialize`: no such problem.
#[tokio::test]
async fn doctor_accepts_a_remote_target_that_answers() {
    let result = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}"#;
    let url = serve(
        4,
        http("200 OK", "content-type: application/json\r\n", result),
    )
    .await;
    let (code, report, _) = doctor_with_remote(&url).await;
    let checks = login_checks(&report);
    assert_eq!(checks.len(), 1, "{report:#}");
    assert_eq!(checks[0]["status"], "ok", "{report:#}");
    assert_eq!(code, 0, "no problem: {report:#}");
}
