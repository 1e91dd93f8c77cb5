//! Both SDK generations through the proxy and the host (issue 17, item 6):
//! the v2 clients (`@modelcontextprotocol/client` 2.4.0 in auto mode and
//! pinned to 2026-07-28 or 2025-11-25, Python `mcp` 2.3.0 likewise) as stdio
//! clients through `mcp-proxy` to (a) server-everything hosted by
//! `mcp-manager host`, (b) a 2026-07-28 server hosted over stdio and (c) a
//! 2026-07-28 server serving HTTP itself (a `url` daemon); each test runs
//! the same pair directly first and requires the same negotiated version
//! and the same `tools/call` answer through the proxy. Then the same
//! clients as Streamable HTTP clients of the host, and the old clients
//! (`@modelcontextprotocol/sdk` 1.32.2, `mcp` 1.30.0) against the 2026-07-28
//! servers through the proxy and the host. The clients live in
//! `tests/fixtures/{ts2_client.mjs,py2_client.py,ts1_call.mjs,py1_call.py}`
//! and print one verdict line.

use serde_json::Value;

use crate::util::{
    HostProcess, Http2026, Server2026, Target, TestHome, V1Client, V2Client, VersionMode,
    everything_js, free_port, hosted_everything_entry, proxy_bin, run_v1_client, run_v2_client,
    server2026_hosted_entry, server2026_stdio,
};

/// What the client talks to, behind the proxy or directly.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// (a) server-everything over stdio, hosted by `mcp-manager host`.
    HostedEverything,
    /// (b) a 2026-07-28 server over stdio, hosted by `mcp-manager host`.
    Hosted2026(Server2026),
    /// (c) a 2026-07-28 server serving Streamable HTTP itself.
    Url2026(Server2026),
}

/// The backend, running: the direct target and the URL the proxy is given.
struct Running {
    direct: Target,
    url: String,
    home: TestHome,
    _host: Option<HostProcess>,
    _http: Option<Http2026>,
}

async fn start(backend: Backend) -> Running {
    let home = TestHome::new();
    match backend {
        Backend::HostedEverything => {
            let host =
                HostProcess::start(&home, "everything", hosted_everything_entry(free_port())).await;
            Running {
                direct: Target::Stdio(vec![
                    "node".into(),
                    everything_js().to_string_lossy().into_owned(),
                    "stdio".into(),
                ]),
                url: host.url(),
                home,
                _host: Some(host),
                _http: None,
            }
        }
        Backend::Hosted2026(server) => {
            let host = HostProcess::start(
                &home,
                "modern",
                server2026_hosted_entry(server, free_port()),
            )
            .await;
            Running {
                direct: Target::Stdio(server2026_stdio(server)),
                url: host.url(),
                home,
                _host: Some(host),
                _http: None,
            }
        }
        Backend::Url2026(server) => {
            let http = Http2026::start(server).await;
            Running {
                direct: Target::Url(http.url()),
                url: http.url(),
                home,
                _host: None,
                _http: Some(http),
            }
        }
    }
}

impl Running {
    /// `mcp-proxy --url URL` as a stdio command.
    fn through_proxy(&self) -> Target {
        Target::Stdio(vec![
            proxy_bin().to_string_lossy().into_owned(),
            "--url".into(),
            self.url.clone(),
        ])
    }

    fn env(&self) -> Vec<(&'static str, &std::ffi::OsStr)> {
        vec![
            ("MCP_SESSION_MANAGER_HOME", self.home.path().as_os_str()),
            ("MCP_PROXY_LOG", std::ffi::OsStr::new("warn")),
        ]
    }
}

fn assert_worked(verdict: &Value, what: &str) {
    assert_eq!(
        verdict["ok"],
        Value::Bool(true),
        "{what}: connect or tools/call failed: {verdict}"
    );
}

/// The promise: through the proxy, the pair negotiates what it negotiates
/// directly, and `tools/call` answers the same.
async fn same_through_proxy(client: V2Client, mode: VersionMode, backend: Backend) {
    let running = start(backend).await;
    let env = running.env();
    let direct = run_v2_client(client, mode, &running.direct, &env).await;
    assert_worked(
        &direct,
        &format!("{client:?} {mode:?} directly to {backend:?}"),
    );
    let via = run_v2_client(client, mode, &running.through_proxy(), &env).await;
    assert_worked(
        &via,
        &format!("{client:?} {mode:?} through mcp-proxy to {backend:?}"),
    );
    assert_eq!(
        via["version"], direct["version"],
        "{client:?} {mode:?} to {backend:?}: through mcp-proxy negotiated {} but directly {}\nvia: {via}\ndirect: {direct}",
        via["version"], direct["version"]
    );
    assert_eq!(via["call"], direct["call"], "tools/call answers differ");
    if let Some(expected) = expected_version(mode) {
        assert_eq!(direct["version"], expected, "the direct pair: {direct}");
    }
}

/// What a pinned client must end up on.
fn expected_version(mode: VersionMode) -> Option<&'static str> {
    match mode {
        VersionMode::Auto => None,
        VersionMode::Pin2026 => Some("2026-07-28"),
        VersionMode::Pin2025 => Some("2025-11-25"),
    }
}

// ---- (a) server-everything hosted, through the proxy -------------------------------------

#[tokio::test]
async fn ts2_auto_through_proxy_to_hosted_everything() {
    same_through_proxy(V2Client::Ts2, VersionMode::Auto, Backend::HostedEverything).await;
}

#[tokio::test]
async fn ts2_pinned_2025_through_proxy_to_hosted_everything() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Pin2025,
        Backend::HostedEverything,
    )
    .await;
}

#[tokio::test]
async fn py2_auto_through_proxy_to_hosted_everything() {
    same_through_proxy(V2Client::Py2, VersionMode::Auto, Backend::HostedEverything).await;
}

// ---- (b) a 2026-07-28 server hosted over stdio, through the proxy ------------------------

#[tokio::test]
async fn ts2_auto_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Auto,
        Backend::Hosted2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn ts2_pinned_2026_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Pin2026,
        Backend::Hosted2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn ts2_pinned_2025_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Pin2025,
        Backend::Hosted2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn py2_auto_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Auto,
        Backend::Hosted2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_pinned_2026_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Pin2026,
        Backend::Hosted2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_pinned_2025_through_proxy_to_hosted_2026_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Pin2025,
        Backend::Hosted2026(Server2026::Py2),
    )
    .await;
}

// ---- (c) a 2026-07-28 HTTP server as a url daemon, through the proxy ---------------------

#[tokio::test]
async fn ts2_auto_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Auto,
        Backend::Url2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn ts2_pinned_2026_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Pin2026,
        Backend::Url2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn ts2_pinned_2025_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Ts2,
        VersionMode::Pin2025,
        Backend::Url2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn py2_auto_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Auto,
        Backend::Url2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_pinned_2026_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Pin2026,
        Backend::Url2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_pinned_2025_through_proxy_to_2026_http_server() {
    same_through_proxy(
        V2Client::Py2,
        VersionMode::Pin2025,
        Backend::Url2026(Server2026::Py2),
    )
    .await;
}

// ---- the v2 clients as HTTP clients of the host ------------------------------------------

/// A v2 client straight over Streamable HTTP to the host: it connects and
/// calls the tool; in auto mode it falls back by the spec to a version the
/// host serves (the host answers `server/discover` with -32022 and its
/// supported versions), pinned to 2025-11-25 it gets exactly that.
async fn http_client_of_host(client: V2Client, mode: VersionMode, backend: Backend) {
    let running = start(backend).await;
    let env = running.env();
    let verdict = run_v2_client(client, mode, &Target::Url(running.url.clone()), &env).await;
    assert_worked(
        &verdict,
        &format!("{client:?} {mode:?} over HTTP to the host of {backend:?}"),
    );
    if let Some(expected) = expected_version(mode) {
        assert_eq!(verdict["version"], expected, "{verdict}");
    }
}

#[tokio::test]
async fn ts2_auto_over_http_to_hosted_everything() {
    http_client_of_host(V2Client::Ts2, VersionMode::Auto, Backend::HostedEverything).await;
}

#[tokio::test]
async fn ts2_pinned_2025_over_http_to_hosted_2026_server() {
    http_client_of_host(
        V2Client::Ts2,
        VersionMode::Pin2025,
        Backend::Hosted2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn ts2_auto_over_http_to_hosted_2026_server() {
    http_client_of_host(
        V2Client::Ts2,
        VersionMode::Auto,
        Backend::Hosted2026(Server2026::Ts2),
    )
    .await;
}

#[tokio::test]
async fn py2_auto_over_http_to_hosted_2026_server() {
    http_client_of_host(
        V2Client::Py2,
        VersionMode::Auto,
        Backend::Hosted2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_pinned_2025_over_http_to_hosted_2026_server() {
    http_client_of_host(
        V2Client::Py2,
        VersionMode::Pin2025,
        Backend::Hosted2026(Server2026::Py2),
    )
    .await;
}

#[tokio::test]
async fn py2_auto_over_http_to_hosted_everything() {
    http_client_of_host(V2Client::Py2, VersionMode::Auto, Backend::HostedEverything).await;
}

// ---- the old clients against the 2026-07-28 servers --------------------------------------

/// An old client through the proxy: what it gets directly (2025-11-25, the
/// call answered) it gets through the proxy.
async fn old_client_through_proxy(client: V1Client, backend: Backend) {
    let running = start(backend).await;
    let env = running.env();
    let direct = run_v1_client(client, &running.direct, &env).await;
    assert_worked(&direct, &format!("{client:?} directly to {backend:?}"));
    let via = run_v1_client(client, &running.through_proxy(), &env).await;
    assert_worked(
        &via,
        &format!("{client:?} through mcp-proxy to {backend:?}"),
    );
    assert_eq!(
        via["version"], direct["version"],
        "via: {via}\ndirect: {direct}"
    );
    assert_eq!(via["call"], direct["call"]);
}

#[tokio::test]
async fn ts1_through_proxy_to_hosted_2026_server() {
    old_client_through_proxy(V1Client::Ts1, Backend::Hosted2026(Server2026::Ts2)).await;
}

#[tokio::test]
async fn ts1_through_proxy_to_2026_http_server() {
    old_client_through_proxy(V1Client::Ts1, Backend::Url2026(Server2026::Ts2)).await;
}

#[tokio::test]
async fn py1_through_proxy_to_hosted_2026_server() {
    old_client_through_proxy(V1Client::Py1, Backend::Hosted2026(Server2026::Py2)).await;
}

#[tokio::test]
async fn py1_through_proxy_to_2026_http_server() {
    old_client_through_proxy(V1Client::Py1, Backend::Url2026(Server2026::Py2)).await;
}

#[tokio::test]
async fn ts1_over_http_to_hosted_2026_server() {
    let running = start(Backend::Hosted2026(Server2026::Ts2)).await;
    let verdict = run_v1_client(
        V1Client::Ts1,
        &Target::Url(running.url.clone()),
        &running.env(),
    )
    .await;
    assert_worked(
        &verdict,
        "sdk 1.32.2 over HTTP to the host of a 2026-07-28 server",
    );
}

#[tokio::test]
async fn py1_over_http_to_hosted_2026_server() {
    let running = start(Backend::Hosted2026(Server2026::Py2)).await;
    let verdict = run_v1_client(
        V1Client::Py1,
        &Target::Url(running.url.clone()),
        &running.env(),
    )
    .await;
    assert_worked(
        &verdict,
        "mcp 1.30.0 over HTTP to the host of a 2026-07-28 server",
    );
}
