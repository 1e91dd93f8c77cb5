//! The servers the tables run against: server-everything (streamableHttp)
//! on a loopback port, an in-process stub that answers at once (for the
//! clients' own start-up cost), and the Node.js original
//! (`mcp-session-manager@1.0.1`), `npm install`ed once into a cache dir.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::PROTOCOL_VERSION;

/// The original's built-in `memory` daemon port.
pub(crate) const ORIGINAL_PORT: u16 = 3100;
const ORIGINAL_VERSION: &str = "1.0.1";

/// Whether `node` runs (`node --version`).
pub(crate) async fn check_node() -> Result<(), String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("node is needed for server-everything: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`node --version` failed: {}", output.status))
    }
}

/// server-everything (streamableHttp) on `port`, killed when dropped.
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) pid: Option<u32>,
    _child: Child,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// Starts server-everything (`js`, streamableHttp) on `port` and waits
/// (≤ 30 s) until it listens there.
pub(crate) async fn start_server(js: &Path, port: u16) -> Result<Server, String> {
    let mut child = Command::new("node")
        .arg(js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        // It logs every request on stdout.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "it exited ({status}) before listening on {address}"
            ));
        }
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listened on {address} within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still ours (not another process that took the port meanwhile)?
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!("it exited ({status}); is port {port} taken?"));
    }
    Ok(Server {
        port,
        pid: child.id(),
        _child: child,
    })
}

/// A Streamable HTTP server in this process that answers every request at
/// once with plain JSON: cold starts against it show the client's own cost.
pub(crate) struct Stub {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the [`Stub`] on a free loopback port.
pub(crate) async fn start_stub() -> Result<Stub, String> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            connections.spawn(async move {
                let service = hyper::service::service_fn(stub_answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Ok(Stub { port, task })
}

async fn stub_answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::{BodyExt, Full};
    use hyper::{Method, Response, StatusCode};
    let method = request.method().clone();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").cloned());
    let response = match (method, id) {
        (Method::POST, Some(id)) => {
            let answer = json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bench-stub", "version": "0"}
                }
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", "bench-stub-session")
                .body(Full::new(bytes::Bytes::from(answer.to_string())))
        }
        (Method::POST, None) => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Full::default()),
        (Method::DELETE, _) => Response::builder().body(Full::default()),
        _ => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(Full::default()),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::default())))
}

/// The original connects to `localhost:3100`, so neither 127.0.0.1 nor ::1
/// may have a listener there already.
pub(crate) fn port_is_free(port: u16) -> Result<(), String> {
    let busy = |ip: std::net::IpAddr| {
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(300)).is_ok()
    };
    if busy(Ipv4Addr::LOCALHOST.into()) || busy(Ipv6Addr::LOCALHOST.into()) {
        return Err(format!(
            "port {port} is busy: something answers on localhost:{port}"
        ));
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map(drop)
        .map_err(|e| format!("port {port} is busy: {e}"))
}

/// `npm install`s the original into a cache dir under the temp dir (once);
/// the path of its `mcp-proxy` bin.
pub(crate) async fn install_original() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir()
        .join("mcp-session-manager-bench")
        .join(format!("original-{ORIGINAL_VERSION}"));
    let package = dir.join("node_modules/mcp-session-manager");
    let js = package.join("dist/proxy/index.js");
    let installed = |package: &Path| {
        std::fs::read_to_string(package.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|v| v["version"] == ORIGINAL_VERSION)
    };
    if installed(&package) && js.exists() {
        return Ok(js);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = dir.join("package.json");
    if !manifest.exists() {
        std::fs::write(&manifest, "{\"private\": true}\n")
            .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    }
    eprintln!(
        "bench: installing mcp-session-manager@{ORIGINAL_VERSION} into {}",
        dir.display()
    );
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .arg(format!("mcp-session-manager@{ORIGINAL_VERSION}"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(120), install).await {
        Err(_) => return Err("npm install took over 120 s".to_owned()),
        Ok(Err(error)) => return Err(format!("cannot run npm: {error}")),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The first error lines say why; the last one only where the log is.
        let why: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("error") && !l.contains("complete log"))
            .take(2)
            .collect();
        let last = if why.is_empty() {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned()
        } else {
            why.join(" / ")
        };
        return Err(format!("npm install failed ({}): {last}", output.status));
    }
    if installed(&package) && js.exists() {
        Ok(js)
    } else {
        Err(format!("npm install left no {}", js.display()))
    }
}
