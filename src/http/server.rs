//! The HTTP server plumbing that `mcp-manager host` and the control API
//! share: the accept loop (one hyper HTTP/1 task per connection), the
//! DNS-rebinding defences (the Host header must name our loopback port; a
//! web page's `Origin` is told apart), request bodies read up to a limit,
//! and the [`response`] builders (JSON, text, SSE).
//!
//! Both servers bind 127.0.0.1 only; what each refuses is its own policy
//! (the control API refuses any page, the host only foreign ones).

pub mod response;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HOST, ORIGIN};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use response::{
    empty_body, empty_response, json_bytes_response, json_response, sse_event, sse_response,
    text_response,
};

/// Every response body the servers send.
pub type Body = BoxBody<Bytes, Infallible>;

/// Serves `handle` on `listener` until `shutdown` resolves. Connections
/// still open then are left to end on their own (their tasks are detached).
pub async fn serve<H, F>(listener: TcpListener, handle: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handle = Arc::new(handle);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                // Answers are small writes after the headers: without this,
                // Nagle holds each one for the client's delayed ACK (~40 ms).
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(error) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = Arc::clone(&handle);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        });
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
    #[error("cannot read the body")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The whole body of a request, if it is at most `limit` bytes.
///
/// # Errors
/// [`BodyError::TooLarge`] past `limit`; [`BodyError::Unreadable`] when the
/// connection fails while it is read.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(error) => Err(BodyError::Unreadable(error)),
    }
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
