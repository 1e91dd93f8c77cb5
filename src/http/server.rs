//! The HTTP server plumbing that `mcp-manager host` and the control API
//! share: the accept loop (one hyper HTTP/1 task per connection), who may
//! connect ([`peer`]: this user only, where the platform can tell), the
//! bounds on what a client may hold ([`Limits`]: a connection cap, header
//! and body read timeouts, idle keep-alive connections closed), the
//! DNS-rebinding defences (the Host header must name our loopback port; a
//! web page's `Origin` is told apart), request bodies read up to a limit,
//! and the [`response`] builders (JSON, text, SSE).
//!
//! Both servers bind 127.0.0.1 only, and on Unix also a Unix domain socket
//! in the home's 0700 `sockets/` directory ([`socket`]), served by the same
//! loop; what each refuses is its own policy
//! (the control API refuses any page, the host only foreign ones).

mod connections;
pub mod peer;
pub mod response;
pub mod socket;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HOST, ORIGIN};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use connections::{Busy, Connections};
pub use response::{
    empty_body, empty_response, json_bytes_response, json_response, sse_event, sse_response,
    text_response,
};

/// Every response body the servers send.
pub type Body = BoxBody<Bytes, Infallible>;

/// What one server lets its clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once. At the cap the oldest connection that is
    /// not serving a request is closed to make room; when all serve, the
    /// new one is closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, counted from
    /// the moment its connection waits for one: this also closes an idle
    /// keep-alive connection.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body (see
    /// [`read_body`]).
    pub body_timeout: Duration,
}

impl Limits {
    /// The control API's: few clients, small bodies.
    pub const CONTROL_API: Limits = Limits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
    /// A host's: one connection or two per session.
    pub const HOST: Limits = Limits {
        max_connections: 1024,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
}

/// Serves `handle` on `listener`, and on `unix` when there is one (the
/// same routes, the same [`Limits`] and one connection table for both),
/// until `shutdown` resolves, to this user's connections only
/// ([`peer::check`] on TCP, [`peer::check_unix`] on the socket: another
/// user's request is answered `403` with a JSON `error` saying why, never
/// handled, and its connection closed). The socket file is removed when
/// the accept loop ends; connections still open then are left to end on
/// their own (their tasks are detached).
pub async fn serve<H, F>(
    listener: TcpListener,
    unix: Option<socket::UnixSocket>,
    limits: Limits,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let connections = Connections::new(limits.max_connections);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted.map(|(stream, peer)| Accepted::Tcp(stream, peer)),
            accepted = accept_unix(unix.as_ref()) => accepted,
            () = &mut shutdown => break,
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: make room by closing the
                // oldest idle connection, and back off instead of spinning.
                let evicted = connections.evict_oldest_waiting();
                tracing::warn!(%error, evicted, "cannot accept a connection");
                let pause = if evicted { 10 } else { 100 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let Some(registration) = connections.register() else {
            tracing::debug!(
                open = connections.len(),
                "every connection is serving a request; closing a new one"
            );
            continue;
        };
        let handle = Arc::clone(&handle);
        let builder = builder.clone();
        match accepted {
            Accepted::Tcp(stream, peer) => {
                // Answers are small writes after the headers: without this,
                // Nagle holds each one for the client's delayed ACK (~40 ms).
                let _ = stream.set_nodelay(true);
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                tracing::debug!(%peer, listener = "tcp", "accepted a connection");
                let check = Check::Tcp { local, peer };
                tokio::spawn(connection(stream, check, registration, builder, handle));
            }
            #[cfg(unix)]
            Accepted::Unix(stream) => {
                // The kernel names the peer: no table to walk.
                let check = Check::Decided(peer::check_unix(&stream));
                tracing::debug!(listener = "unix socket", "accepted a connection");
                tokio::spawn(connection(stream, check, registration, builder, handle));
            }
        }
    }
    // The socket file goes now, not when the caller is done.
    #[cfg(unix)]
    drop(unix);
}

/// A connection just accepted.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// The next connection on the socket; never, without one.
async fn accept_unix(unix: Option<&socket::UnixSocket>) -> std::io::Result<Accepted> {
    #[cfg(unix)]
    if let Some(unix) = unix {
        return unix.accept().await.map(Accepted::Unix);
    }
    #[cfg(not(unix))]
    let _ = unix;
    std::future::pending().await
}

/// How a connection's owner is known.
enum Check {
    /// Looked up from the two TCP ends, at the first request head.
    Tcp { local: SocketAddr, peer: SocketAddr },
    /// Known already (the kernel said, on a Unix socket).
    #[cfg_attr(not(unix), expect(dead_code, reason = "Unix sockets only"))]
    Decided(Result<(), peer::Refusal>),
}

/// Serves one connection until it ends or must make room.
async fn connection<S, H, F>(
    stream: S,
    check: Check,
    registration: connections::Registration,
    builder: hyper::server::conn::http1::Builder,
    handle: Arc<H>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let marker = registration.busy_marker();
    let who = match check {
        Check::Tcp { peer, .. } => peer.to_string(),
        Check::Decided(_) => "the unix socket".to_owned(),
    };
    // Who connected is looked up once, at its first request head: a TCP
    // connection that never sends one costs no look-up, and the look-up (a
    // walk of the kernel's socket table on Linux) runs off this runtime's
    // thread.
    let owner: Arc<OnceCell<Result<(), peer::Refusal>>> = Arc::new(match check {
        Check::Decided(verdict) => OnceCell::new_with(Some(verdict)),
        Check::Tcp { .. } => OnceCell::new(),
    });
    let tcp_ends = match check {
        Check::Tcp { local, peer } => Some((local, peer)),
        Check::Decided(_) => None,
    };
    let peer_shown = who.clone();
    let service = hyper::service::service_fn(move |request| {
        let busy = marker.busy();
        let handle = Arc::clone(&handle);
        let owner = Arc::clone(&owner);
        let who = peer_shown.clone();
        async move {
            let verdict = owner
                .get_or_init(|| async move {
                    let Some((local, peer)) = tcp_ends else {
                        return Err(peer::Refusal::Unchecked);
                    };
                    tokio::task::spawn_blocking(move || peer::check(local, peer))
                        .await
                        .unwrap_or(Err(peer::Refusal::Unchecked))
                })
                .await;
            let answer = match verdict {
                Ok(()) => handle(request).await,
                Err(refusal) => {
                    tracing::warn!(peer = %who, %refusal, "refused a request");
                    refused(refusal)
                }
            };
            Ok::<_, Infallible>(answer.map(|body| Serving { body, _busy: busy }))
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        ended = connection => {
            if let Err(error) = ended {
                tracing::debug!(%error, "client connection ended with an error");
            }
        }
        () = registration.close.cancelled() => {
            tracing::debug!(peer = %who, "closed a waiting connection to make room");
        }
    }
    drop(registration);
}

/// `403` for another user's request, and the connection closes after it.
fn refused(refusal: &peer::Refusal) -> Response<Body> {
    let mut response = json_response(
        hyper::StatusCode::FORBIDDEN,
        &serde_json::json!({ "error": format!("forbidden: {refusal}") }),
    );
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// A response body that marks its connection as serving until it is done.
struct Serving {
    body: Body,
    /// Held, not read: its drop marks the connection waiting again.
    _busy: Busy,
}

impl hyper::body::Body for Serving {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Does the Host header name this loopback port? A page on a rebound DNS
/// name (`evil.example` → 127.0.0.1) sends its own name and is refused.
pub fn is_own_host(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((name, host_port)) = host.rsplit_once(':') else {
        return false;
    };
    host_port.parse::<u16>() == Ok(port)
        && ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// Where a request comes from, by its `Origin` header (browsers send one;
/// command-line tools do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOrigin {
    /// No `Origin`: not a web page.
    None,
    /// A page served from this machine's loopback.
    Loopback,
    /// A page of any other origin (or an `Origin` that cannot be read).
    Foreign,
}

/// The [`PageOrigin`] of a request.
pub fn page_origin(headers: &HeaderMap) -> PageOrigin {
    let Some(origin) = headers.get(ORIGIN) else {
        return PageOrigin::None;
    };
    let loopback = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .is_some_and(|o| super::is_loopback(&o));
    if loopback {
        PageOrigin::Loopback
    } else {
        PageOrigin::Foreign
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {after:?}")]
    TimedOut { after: Duration },
    #[error("cannot read the body")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The whole body of a request, if it is at most `limit` bytes and arrives
/// within `timeout` (an endless chunked body, or a `Content-Length` whose
/// bytes never come, is given up).
///
/// # Errors
/// [`BodyError::TooLarge`] past `limit`; [`BodyError::TimedOut`] past
/// `timeout`; [`BodyError::Unreadable`] when the connection fails while it
/// is read.
pub async fn read_body(
    mut body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let read = async {
        // A Content-Length over the limit is known at once: nothing of it
        // is kept.
        let declared = hyper::body::Body::size_hint(&body).lower();
        let mut whole = bytes::BytesMut::new();
        let mut over = usize::try_from(declared).map_or(true, |declared| declared > limit);
        while !over {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|error| BodyError::Unreadable(Box::new(error)))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if whole.len() + data.len() > limit {
                over = true;
            } else {
                whole.extend_from_slice(&data);
            }
        }
        if over {
            // Let the client finish writing, bounded, so that it reads the
            // 413 instead of a connection closed under its upload.
            drain(&mut body).await;
            return Err(BodyError::TooLarge { limit });
        }
        Ok(whole.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut { after: timeout }))
}

/// How much of a refused body is read and thrown away (so the client reads
/// the refusal), and for how long at most.
const DRAIN_BYTES: usize = 128 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and discards what is left of `body`, up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`].
async fn drain(body: &mut Incoming) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > DRAIN_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn only_this_loopback_port_is_our_host() {
        for ok in [
            "127.0.0.1:3199",
            "localhost:3199",
            "LOCALHOST:3199",
            "[::1]:3199",
        ] {
            assert!(is_own_host(&with_host(ok), 3199), "{ok}");
        }
        for bad in [
            "evil.example:3199",
            "127.0.0.1:3100",
            "127.0.0.1",
            "localhost.evil.example:3199",
            "127.0.0.1:3199:1",
        ] {
            assert!(!is_own_host(&with_host(bad), 3199), "{bad}");
        }
        assert!(!is_own_host(&HeaderMap::new(), 3199));
    }

    #[test]
    fn page_origins_are_told_apart() {
        let with_origin = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, value.parse().expect("header value"));
            headers
        };
        assert_eq!(page_origin(&HeaderMap::new()), PageOrigin::None);
        assert_eq!(
            page_origin(&with_origin("http://127.0.0.1:3199")),
            PageOrigin::Loopback
        );
        assert_eq!(
            page_origin(&with_origin("http://localhost:8080")),
            PageOrigin::Loopback
        );
        for foreign in ["https://evil.example", "null", "not a url"] {
            assert_eq!(
                page_origin(&with_origin(foreign)),
                PageOrigin::Foreign,
                "{foreign}"
            );
        }
    }
}
