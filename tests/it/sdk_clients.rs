//! The official SDK clients (Python `ClientSession`, TypeScript `Client`)
//! talking to real servers through `mcp-proxy` over stdio: initialize,
//! tools, echo, progress, sampling, elicitation, roots, logging, resource
//! subscriptions, a notification outside any request, ping. The scenarios
//! live in `tests/fixtures/{py_client.py,ts_client.mjs}` and print a JSON
//! verdict per check.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::util::{
    Flavor, HostProcess, Mode, RealServer, TestHome, everything_stdio_entry, fixtures, free_port,
    proxy_bin, venv_python,
};

#[derive(Clone, Copy)]
enum Sdk {
    Python,
    TypeScript,
}

/// How the SDK client reaches the server.
enum Route {
    /// Over stdio through `mcp-proxy --url` to a real HTTP server.
    Proxy(Mode),
    /// Straight over Streamable HTTP to `mcp-manager host` serving the
    /// server's stdio build.
    Host,
}

async fn run_client(sdk: Sdk, flavor: Flavor, mode: Mode) {
    run_client_via(sdk, flavor, Route::Proxy(mode)).await;
}

async fn run_client_via(sdk: Sdk, flavor: Flavor, route: Route) {
    let home = TestHome::new();
    let mut command = match sdk {
        Sdk::Python => {
            let mut c = Command::new(venv_python());
            c.arg(fixtures().join("py_client.py"));
            c
        }
        Sdk::TypeScript => {
            let mut c = Command::new("node");
            c.arg(fixtures().join("ts_client.mjs"));
            c
        }
    };
    let flavor_arg = match flavor {
        Flavor::Everything => "everything",
        Flavor::FastMcp => "fastmcp",
    };
    // Kept alive until the client is done.
    let (_server, _host);
    command.args(["--server", flavor_arg, "--timeout", "90"]);
    match route {
        Route::Proxy(mode) => {
            let server = RealServer::start(flavor, mode).await;
            command
                .arg("--")
                .arg(proxy_bin())
                .args(["--url", &server.url()]);
            _server = Some(server);
            _host = None;
        }
        Route::Host => {
            let entry = match flavor {
                Flavor::Everything => everything_stdio_entry(free_port()),
                Flavor::FastMcp => serde_json::json!({
                    "command": venv_python().to_string_lossy(),
                    "args": [fixtures().join("fastmcp_server.py").to_string_lossy(), "--transport", "stdio"],
                    "port": free_port(),
                }),
            };
            let host = HostProcess::start(&home, flavor_arg, entry).await;
            command.args(["--url", &host.url()]);
            _server = None;
            _host = Some(host);
        }
    }
    command
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_PROXY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the SDK client finished within 120 s")
        .expect("run the SDK client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON verdict from the client; stdout: {stdout}"));
    let failed: Vec<(&String, &Value)> = verdict["checks"]
        .as_object()
        .expect("checks object")
        .iter()
        .filter(|(_, ok)| **ok != Value::Bool(true))
        .collect();
    assert!(
        failed.is_empty(),
        "failed checks: {failed:#?}\nverdict: {verdict}"
    );
    for check in [
        "initialize",
        "tools_list",
        "echo",
        "progress",
        "sampling",
        "elicitation",
        "roots",
        "logging",
        "resource_subscribe",
        "out_of_request_notification",
        "ping",
    ] {
        assert_eq!(
            verdict["checks"][check],
            Value::Bool(true),
            "check {check} missing: {verdict}"
        );
    }
    assert!(
        output.status.success(),
        "client exit status {}",
        output.status
    );
}

#[tokio::test]
async fn python_sdk_through_proxy_to_everything_streamable_http() {
    run_client(Sdk::Python, Flavor::Everything, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn python_sdk_through_proxy_to_everything_sse() {
    run_client(Sdk::Python, Flavor::Everything, Mode::Sse).await;
}

#[tokio::test]
async fn python_sdk_through_proxy_to_fastmcp_streamable_http() {
    run_client(Sdk::Python, Flavor::FastMcp, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn python_sdk_through_proxy_to_fastmcp_sse() {
    run_client(Sdk::Python, Flavor::FastMcp, Mode::Sse).await;
}

#[tokio::test]
async fn typescript_sdk_through_proxy_to_everything_streamable_http() {
    run_client(Sdk::TypeScript, Flavor::Everything, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn typescript_sdk_through_proxy_to_everything_sse() {
    run_client(Sdk::TypeScript, Flavor::Everything, Mode::Sse).await;
}

#[tokio::test]
async fn typescript_sdk_through_proxy_to_fastmcp_streamable_http() {
    run_client(Sdk::TypeScript, Flavor::FastMcp, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn typescript_sdk_through_proxy_to_fastmcp_sse() {
    run_client(Sdk::TypeScript, Flavor::FastMcp, Mode::Sse).await;
}

#[tokio::test]
async fn python_sdk_over_http_to_hosted_everything() {
    run_client_via(Sdk::Python, Flavor::Everything, Route::Host).await;
}

#[tokio::test]
async fn python_sdk_over_http_to_hosted_fastmcp() {
    run_client_via(Sdk::Python, Flavor::FastMcp, Route::Host).await;
}

#[tokio::test]
async fn typescript_sdk_over_http_to_hosted_everything() {
    run_client_via(Sdk::TypeScript, Flavor::Everything, Route::Host).await;
}

#[tokio::test]
async fn typescript_sdk_over_http_to_hosted_fastmcp() {
    run_client_via(Sdk::TypeScript, Flavor::FastMcp, Route::Host).await;
}
