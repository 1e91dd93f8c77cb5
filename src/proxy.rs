//! The proxy session: stdin → daemon, daemon → stdout, until the end.
//!
//! [`run`] reads client lines on a task of their own (so reading never waits
//! on the daemon and a cancelled `select!` never loses half a line), finds the
//! daemon while the first lines queue up, then dispatches each message:
//! requests are registered with the [`router::Router`] and sent concurrently,
//! everything else keeps its order. It ends on EOF, on the `shutdown` future
//! (SIGTERM/SIGHUP in the binary) or when stdout closes: in-flight requests
//! get a bounded grace period, then the daemon session is ended (`DELETE`).

pub mod discovery;
pub mod refusal;
pub mod router;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, TransportKind};
use crate::jsonrpc::{self, Incoming, Kind, Message, ParseError};
use crate::mcp::PROJECT_PATH_HEADER;
use crate::stdio::{self, LineReader};
use crate::transport::recovery::{self, Recovery, Rediscover};
use crate::transport::{Endpoint, Upstream};
use discovery::NotFound;
use router::{Batch, Router};

/// Where the proxy's daemon is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A known endpoint (`--url`).
    Url(Endpoint),
    /// A configured daemon, found with [`discovery::find`] (`--target`).
    Named {
        server: Box<ServerConfig>,
        home: PathBuf,
        manager_port: u16,
        /// Headers to send besides the configured ones.
        headers: HeaderMap,
    },
}

/// How the session ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// EOF, a signal, or a closed stdout: a normal end.
    Finished,
    /// No daemon serves the target; the client was told.
    NoDaemon,
}

/// Settings of one proxy session.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How long requests wait for a lost daemon to come back.
    pub reconnect_timeout: Duration,
}

/// How many client lines may wait while the daemon is being found.
const LINE_QUEUE: usize = 1024;

/// Runs one proxy session over `input`/`output` until EOF, `shutdown`, or a
/// closed `output`.
pub async fn run<R, W>(
    options: Options,
    input: R,
    output: W,
    shutdown: impl Future<Output = ()>,
) -> SessionEnd
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let stdout_closed = CancellationToken::new();
    let (out, writer) = stdio::spawn_writer(output, stdout_closed.clone());
    let router = Router::new(out.clone());
    let (lines_tx, mut lines) = mpsc::channel(LINE_QUEUE);
    // This task ends at EOF; it is never joined, because a blocking read of
    // stdin cannot be interrupted (the process exits around it).
    tokio::spawn(read_lines(input, lines_tx));
    tokio::pin!(shutdown);

    let endpoint = tokio::select! {
        found = resolve(options.target) => found,
        () = &mut shutdown => return SessionEnd::Finished,
        () = stdout_closed.cancelled() => return SessionEnd::Finished,
    };
    let (endpoint, rediscover) = match endpoint {
        Ok(found) => found,
        Err(not_found) => {
            let refusal = refusal::Refusal::no_daemon(&not_found);
            tracing::error!(data = %refusal.data(), "{}", refusal.message());
            refuse(&refusal, &router, &mut lines, &mut shutdown, &stdout_closed).await;
            drop(router);
            out.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
            return SessionEnd::NoDaemon;
        }
    };
    let shown = crate::http::redacted(&endpoint.url);
    tracing::info!(url = %shown, transport = %endpoint.transport, "connecting to the daemon");
    let recovery = Recovery {
        rediscover,
        timeout: options.reconnect_timeout,
    };
    let upstream = match Upstream::connect(endpoint, Arc::clone(&router) as _, recovery) {
        Ok(upstream) => upstream,
        Err(error) => {
            let refusal = refusal::Refusal::other(format!(
                "cannot set up the connection to the daemon ({error}): `mcp-manager doctor` says why"
            ));
            tracing::error!("{}", refusal.message());
            refuse(&refusal, &router, &mut lines, &mut shutdown, &stdout_closed).await;
            drop(router);
            out.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
            return SessionEnd::NoDaemon;
        }
    };

    loop {
        // `recv` is cancel-safe: a line is either taken or left in the queue.
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => dispatch(line, &router, &upstream).await,
                None => {
                    tracing::debug!("stdin closed");
                    break;
                }
            },
            () = &mut shutdown => {
                tracing::info!("shutdown signal received");
                break;
            }
            () = stdout_closed.cancelled() => break,
        }
    }

    if !stdout_closed.is_cancelled() {
        let grace = tokio::time::timeout(options.shutdown_grace, router.wait_idle());
        if grace.await.is_err() {
            tracing::warn!(
                waiting = router.waiting_client_requests().len(),
                "requests still running at shutdown; ending the session anyway"
            );
        }
    }
    upstream.close().await;
    drop(upstream);
    drop(router);
    out.finish();
    // Everything queued reaches the client before the exit; a dead stdout
    // must not hold it up.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    SessionEnd::Finished
}

async fn read_lines<R: AsyncRead + Unpin>(input: R, lines: mpsc::Sender<Bytes>) {
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, input));
    loop {
        match reader.next_line().await {
            Ok(Some(line)) => {
                if lines.send(line).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot read stdin; treating it as closed");
                return;
            }
        }
    }
}

/// The endpoint, and for `--target` how to find (or start) the daemon
/// again after it is lost.
async fn resolve(target: Target) -> Result<(Endpoint, Option<Rediscover>), NotFound> {
    let project = project_path_header();
    match target {
        Target::Url(mut endpoint) => {
            if let Some(value) = project {
                endpoint.headers.entry(PROJECT_PATH_HEADER).or_insert(value);
            }
            Ok((endpoint, None))
        }
        Target::Named {
            server,
            home,
            manager_port,
            mut headers,
        } => {
            let found = discovery::find(&server, &home, manager_port).await?;
            tracing::debug!(via = found.via, url = %found.url, socket = ?found.socket, "daemon found");
            for (name, value) in &server.headers {
                // Validated with the config.
                if let Ok((name, value)) = crate::http::parse_header(&format!("{name}: {value}")) {
                    headers.insert(name, value);
                }
            }
            if let Some(value) = project {
                headers.entry(PROJECT_PATH_HEADER).or_insert(value);
            }
            let endpoint = Endpoint {
                url: found.url,
                transport: match found.transport {
                    TransportKind::Stdio => TransportKind::StreamableHttp,
                    other => other,
                },
                headers,
                socket: found.socket,
            };
            let server = Arc::new(*server);
            let home = Arc::new(home);
            let rediscover: Rediscover = Arc::new(move || {
                let (server, home) = (Arc::clone(&server), Arc::clone(&home));
                Box::pin(async move {
                    discovery::find(&server, &home, manager_port)
                        .await
                        .map(|found| found.url)
                        .map_err(|not_found| {
                            if not_found.is_final() {
                                Box::new(recovery::Final(not_found.message())) as _
                            } else {
                                not_found.into()
                            }
                        })
                })
            });
            Ok((endpoint, Some(rediscover)))
        }
    }
}

/// `Mcp-Project-Path: <cwd>`, as the original sends: Claude Code starts the
/// proxy in the project, and a shared daemon can keep per-project state.
fn project_path_header() -> Option<HeaderValue> {
    let cwd = std::env::current_dir().ok()?;
    let text = cwd.to_str()?;
    match HeaderValue::from_str(text) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::warn!(path = %cwd.display(), "the working directory cannot be sent as a header; Mcp-Project-Path left out");
            None
        }
    }
}

/// Handles one client line.
async fn dispatch(line: Bytes, router: &Router, upstream: &Upstream) {
    let reply = match jsonrpc::parse_line(line) {
        Ok(Incoming::Single(message)) => forward(message, None, router, upstream),
        Ok(Incoming::Batch(items)) => dispatch_batch(items, router, upstream),
        Err(error) => {
            tracing::warn!(%error, "bad line from the client");
            Some(error.to_response())
        }
    };
    if let Some(reply) = reply {
        // Only fails when stdout is closed, which ends the loop anyway.
        let _ = router.reply(reply).await;
    }
}

/// Sends each element of a batch as its own message; the answers to its
/// requests (and errors for its invalid elements) come back as one array.
fn dispatch_batch(
    items: Vec<Result<Message, ParseError>>,
    router: &Router,
    upstream: &Upstream,
) -> Option<Bytes> {
    let answers = items
        .iter()
        .filter(|item| {
            matches!(
                item,
                Ok(Message {
                    kind: Kind::Request { .. },
                    ..
                }) | Err(_)
            )
        })
        .count();
    if answers == 0 {
        let mut completed = None;
        for message in items.into_iter().flatten() {
            completed = forward(message, None, router, upstream).or(completed);
        }
        return completed;
    }
    let batch = Batch::new(answers);
    let mut complete = None;
    for item in items {
        match item {
            Ok(message) => {
                let belongs = matches!(message.kind, Kind::Request { .. });
                let batch = belongs.then(|| Arc::clone(&batch));
                complete = forward(message, batch, router, upstream).or(complete);
            }
            Err(error) => complete = batch.add(error.to_response()).or(complete),
        }
    }
    complete
}

/// Sends one message on; returns a line for the client if cancelling a
/// request completed its batch.
fn forward(
    message: Message,
    batch: Option<Arc<Batch>>,
    router: &Router,
    upstream: &Upstream,
) -> Option<Bytes> {
    let mut completed = None;
    match &message.kind {
        Kind::Request { id, .. } => router.begin(id.clone(), batch),
        Kind::Notification { method } if method == "notifications/cancelled" => {
            if let Some(id) = jsonrpc::cancelled_request_id(&message.raw) {
                completed = router.cancel(&id);
            }
        }
        _ => {}
    }
    upstream.send(message);
    completed
}

/// Answers every request of the client with `refusal` (the error mode of
/// [`refusal`]: `initialize`, `server/discover`, whatever follows) until
/// stdin closes, `shutdown` resolves or stdout closes: never silence.
async fn refuse(
    refusal: &refusal::Refusal,
    router: &Router,
    lines: &mut mpsc::Receiver<Bytes>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    stdout_closed: &CancellationToken,
) {
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            () = &mut *shutdown => return,
            () = stdout_closed.cancelled() => return,
        };
        let Some(line) = line else { return };
        if let Some(answer) = refusal.answer(line) {
            if router.reply(answer).await.is_err() {
                return;
            }
        }
    }
}

/// Builds the headers of `--header` arguments and config `headers`.
///
/// # Errors
/// The first header that is not `Name: value`.
pub fn headers_from_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for arg in args {
        let (name, value): (HeaderName, HeaderValue) = crate::http::parse_header(arg)?;
        headers.append(name, value);
    }
    Ok(headers)
}
