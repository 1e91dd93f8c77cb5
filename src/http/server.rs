//! The HTTP server plumbing that `mcp-manager host` and the control API
//! share: the accept loop (one hyper HTTP/1 task per connection) and the
//! DNS-rebinding defence of the Host header.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
}
