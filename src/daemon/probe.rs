//! Is the daemon there? A TCP connect ([`answers`]), an HTTP readiness
//! probe per transport ([`probe`]), and what a host's `/health` says
//! ([`host_sessions`], [`host_name`]). None of them opens an MCP session.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::TransportKind;
use crate::http;

/// How long a TCP connect may take: loopback answers in microseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One HTTP probe's limit (loopback answers in microseconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Is something accepting connections on 127.0.0.1:`port`? A TCP connect
/// opens no MCP session, so probing leaks nothing on the daemon.
pub async fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Why a readiness probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("nothing listens on 127.0.0.1:{port}")]
    NothingListens { port: u16 },
    #[error("127.0.0.1:{port} accepted but did not answer within {timeout:?}")]
    Silent { port: u16, timeout: Duration },
    #[error("127.0.0.1:{port} did not answer HTTP: {reason}")]
    NotHttp { port: u16, reason: String },
    #[error("GET /{path} on 127.0.0.1:{port} answered HTTP {status}")]
    Refused {
        path: &'static str,
        port: u16,
        status: reqwest::StatusCode,
    },
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
}

/// Does the daemon answer HTTP? Never opens an MCP session: a hosted stdio
/// server answers `GET /health`; a Streamable HTTP server a GET without a
/// session (400 or 405, or 406 from a strict one); a legacy SSE server its
/// `GET /sse` headers (the stream is dropped at once, which ends it).
///
/// # Errors
/// A [`ProbeError`]: no answer, or the status.
pub async fn probe(port: u16, transport: TransportKind) -> Result<(), ProbeError> {
    let path = match transport {
        TransportKind::Stdio => "health",
        TransportKind::Sse => "sse",
        TransportKind::StreamableHttp | TransportKind::Http => "mcp",
    };
    let client = http::loopback_client_builder()
        .timeout(PROBE_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| ProbeError::Client(http::error_chain(&e)))?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/{path}"))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                ProbeError::NothingListens { port }
            } else if e.is_timeout() {
                ProbeError::Silent {
                    port,
                    timeout: PROBE_TIMEOUT,
                }
            } else {
                ProbeError::NotHttp {
                    port,
                    reason: e.to_string(),
                }
            }
        })?;
    let status = response.status();
    drop(response);
    if status.is_success() || matches!(status.as_u16(), 400 | 405 | 406) {
        Ok(())
    } else {
        Err(ProbeError::Refused { path, port, status })
    }
}

/// How many sessions a host (`mcp-manager host`) serves, from its
/// `/health`; `None` if it does not answer.
pub async fn host_sessions(port: u16) -> Option<u64> {
    host_health(port).await?.get("sessions")?.as_u64()
}

/// The entry a host (`mcp-manager host NAME`) serves, from its `/health`;
/// `None` if it does not answer or is no host.
pub async fn host_name(port: u16) -> Option<String> {
    host_name_at(port, None).await
}

/// As [`host_name`], asked over the host's Unix `socket` when one is given
/// (the URL still names `port`, for the host's Host check).
pub async fn host_name_at(port: u16, socket: Option<&std::path::Path>) -> Option<String> {
    Some(
        host_health_at(port, socket)
            .await?
            .get("name")?
            .as_str()?
            .to_owned(),
    )
}

/// A host's `/health` JSON; `None` if it does not answer with JSON.
async fn host_health(port: u16) -> Option<serde_json::Value> {
    host_health_at(port, None).await
}

/// A host's `/health` JSON over TCP or its Unix `socket` (the URL names
/// `port`, for the host's Host check); `None` if it does not answer with
/// JSON within the probe's limit, or sends more than a host would.
pub async fn host_health_at(
    port: u16,
    socket: Option<&std::path::Path>,
) -> Option<serde_json::Value> {
    let builder = http::loopback_client_builder().timeout(PROBE_TIMEOUT);
    #[cfg(unix)]
    let builder = match socket {
        Some(path) => builder.unix_socket(path),
        None => builder,
    };
    #[cfg(not(unix))]
    let _ = socket;
    let client = builder.build().ok()?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?;
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > HEALTH_LIMIT {
            return None;
        }
    }
    serde_json::from_slice(&body).ok()
}

/// A host's `/health` is a few hundred bytes per child.
const HEALTH_LIMIT: usize = 1 << 20;
