//! Finding the daemon that serves `--target NAME`.
//!
//! In the original's order: something answering on the configured port, then
//! the port in `NAME.lock`, then `POST /ensure` to the manager. A remote
//! (`url`) entry needs no search. When nothing serves the name, the error says
//! what was tried and what to run.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpStream;
use url::Url;

use crate::config::{self, ServerConfig, TransportKind};
use crate::{lockfile, paths};

/// How long a port probe may take: loopback answers in microseconds.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The manager may have to start the daemon (and `npx` may download it).
const ENSURE_TIMEOUT: Duration = Duration::from_secs(15);

/// A daemon ready to be connected to.
#[derive(Debug, Clone)]
pub struct Found {
    pub url: Url,
    pub transport: TransportKind,
    /// How it was found, for the log.
    pub via: &'static str,
}

/// Nothing serves the name: what was tried, in order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct NotFound {
    pub name: String,
    pub tried: Vec<String>,
    pub port: Option<u16>,
    pub manager_port: u16,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no daemon serves '{}': {}. ",
            self.name,
            self.tried.join("; ")
        )?;
        write!(
            f,
            "Start it with `mcp-manager --port {} --start-all`",
            self.manager_port
        )?;
        if let Some(port) = self.port {
            write!(f, " (or start the server yourself on 127.0.0.1:{port})")?;
        }
        write!(f, ", then reconnect the MCP server in Claude Code (/mcp)")
    }
}

/// Finds the daemon for `server`.
///
/// # Errors
/// [`NotFound`], listing each place that was tried.
pub async fn find(
    server: &ServerConfig,
    home: &Path,
    manager_port: u16,
) -> Result<Found, NotFound> {
    if let Some(url) = &server.url {
        return Ok(Found {
            url: url.clone(),
            transport: server.transport,
            via: "config url",
        });
    }
    let mut tried = Vec::new();
    if let Some(port) = server.port {
        if answers(port).await {
            return Ok(found(port, server.transport, "configured port"));
        }
        tried.push(format!("nothing answers on 127.0.0.1:{port}"));
    }
    let lock_path: PathBuf = paths::lock_file(home, &server.name);
    match lockfile::read(&lock_path) {
        Some(lock) if Some(lock.port) != server.port && answers(lock.port).await => {
            return Ok(found(lock.port, lock.transport, "lock file"));
        }
        Some(lock) => tried.push(format!(
            "the lock file {} names port {}, where nothing answers",
            lock_path.display(),
            lock.port
        )),
        None => tried.push(format!("no lock file at {}", lock_path.display())),
    }
    match ensure(&server.name, manager_port).await {
        Ok((port, transport)) => {
            return Ok(found(
                port,
                transport.unwrap_or(server.transport),
                "manager",
            ));
        }
        Err(reason) => tried.push(reason),
    }
    Err(NotFound {
        name: server.name.clone(),
        tried,
        port: server.port,
        manager_port,
    })
}

fn found(port: u16, transport: TransportKind, via: &'static str) -> Found {
    Found {
        url: config::local_endpoint(port, transport),
        transport,
        via,
    }
}

/// Is something accepting connections on 127.0.0.1:`port`? A TCP connect
/// opens no MCP session, so probing leaks nothing on the daemon.
pub async fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[derive(Deserialize)]
struct EnsureAnswer {
    running: bool,
    port: Option<u16>,
    transport: Option<TransportKind>,
    error: Option<String>,
}

/// Asks the manager to make sure the daemon runs; its port and transport.
async fn ensure(name: &str, manager_port: u16) -> Result<(u16, Option<TransportKind>), String> {
    let url = format!("http://127.0.0.1:{manager_port}/ensure");
    let client = crate::transport::loopback_client_builder()
        .timeout(ENSURE_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "name": name }).to_string())
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                format!("no manager answers on 127.0.0.1:{manager_port}")
            } else {
                format!("the manager on 127.0.0.1:{manager_port} did not answer: {e}")
            }
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read the manager's /ensure answer: {e}"))?;
    let answer: EnsureAnswer = serde_json::from_slice(&body).map_err(|e| {
        format!("the manager's /ensure answer (HTTP {status}) is not understood: {e}")
    })?;
    match answer {
        EnsureAnswer {
            running: true,
            port: Some(port),
            transport,
            ..
        } => Ok((port, transport)),
        EnsureAnswer { error, .. } => Err(format!(
            "the manager could not start it: {}",
            error.unwrap_or_else(|| format!("HTTP {status}"))
        )),
    }
}
