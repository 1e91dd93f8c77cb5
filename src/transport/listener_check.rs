//! Who is at the other end of every new TCP connection to a daemon.
//!
//! Discovery (and each recovery) checks that the daemon's port is held by
//! this user ([`identity::listener`]), but a session opens more connections
//! later: a pooled one the daemon's idle timeout closed, the GET stream
//! reconnecting. If the daemon died meanwhile, another user may hold the
//! port by then. So the transport's HTTP client runs this check before each
//! TCP connect ([`CheckListener`], a connector layer of reqwest): a port
//! held by another user is refused with [`StrangerListener`], which names
//! the port and the holder; nothing is sent to it, not even a connect.
//!
//! The check reads `/proc/net/tcp{,6}` on Linux (a few milliseconds; the
//! holder's name, only for a stranger, scans `/proc`), and this user's
//! processes' sockets on macOS: blocking work, run on the blocking pool so
//! the runtime thread that serves every other request is not held. It is
//! paid per new connection only; a pooled connection is reused unchecked
//! (it was checked when it was made, and a connection cannot change hands).
//! Where the platform cannot tell (Windows) every connection goes ahead.
//!
//! A burst of connections (64 requests at once, each on its own HTTP/1
//! connection) shares one check: checks run one at a time, and a
//! connection whose check waited behind another one that found the port to
//! be this user's takes that answer (a reading made while it waited, so
//! never older than its own request). A refusal is never shared.
//!
//! Connections over a Unix socket (a host's `sockets/NAME.sock`) need no
//! check: the socket is in this user's 0700 directory and its owner checked
//! before use; the transport adds this layer for TCP only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll};

use crate::daemon::identity::{self, Listener};

/// An error a connector returns (what reqwest's connector layers speak).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The daemon's port, shared between the transport (which moves it when the
/// daemon is found on another port) and the check.
#[derive(Debug, Clone)]
pub struct DaemonPort(Arc<AtomicU16>);

impl DaemonPort {
    /// Starts at `port`.
    pub fn new(port: u16) -> DaemonPort {
        DaemonPort(Arc::new(AtomicU16::new(port)))
    }

    /// The port new connections go to.
    pub fn get(&self) -> u16 {
        self.0.load(Ordering::Relaxed)
    }

    /// The daemon moved: new connections go to `port`.
    pub fn set(&self, port: u16) {
        self.0.store(port, Ordering::Relaxed);
    }
}

/// A connection refused before it was made: the port is another user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused to connect to port {port}: it is now held by {holder}, a process of another user (the daemon is gone); nothing was sent to it: stop that program, or give this server another \"port\""
)]
pub struct StrangerListener {
    pub port: u16,
    pub holder: String,
}

impl StrangerListener {
    /// The refusal somewhere in an error's chain (reqwest wraps what a
    /// connector layer returns).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a StrangerListener> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(found) = error.downcast_ref::<StrangerListener>() {
                return Some(found);
            }
            // An io::Error's `source` skips the error it wraps.
            let wrapped = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<StrangerListener>());
            if wrapped.is_some() {
                return wrapped;
            }
            cause = error.source();
        }
        None
    }
}

/// What the check decides for a listener.
fn admit(port: u16, listener: Listener) -> Result<(), StrangerListener> {
    match listener {
        Listener::Stranger { holder, .. } => Err(StrangerListener { port, holder }),
        // Nothing there: the connect itself will be refused. Unknown: the
        // platform cannot tell, so it goes ahead as before.
        Listener::Nobody | Listener::Mine | Listener::Unknown => Ok(()),
    }
}

/// Who listens on a port ([`identity::listener`]; a counter in tests).
type Look = fn(u16) -> Listener;

/// The last port found to be this user's, and when; one check at a time.
type Admitted = Arc<tokio::sync::Mutex<Option<(u16, tokio::time::Instant)>>>;

/// Checks the listener on `port`, off the runtime thread, unless a check
/// that ended while this one waited found it to be this user's.
async fn check(port: u16, admitted: &Admitted, look: Look) -> Result<(), BoxError> {
    let asked = tokio::time::Instant::now();
    let mut last = admitted.lock().await;
    if let Some((at_port, at)) = *last {
        if at_port == port && at >= asked {
            return Ok(());
        }
    }
    let listener = tokio::task::spawn_blocking(move || look(port))
        .await
        .map_err(|error| format!("cannot check who listens on port {port}: {error}"))?;
    admit(port, listener)?;
    *last = Some((port, tokio::time::Instant::now()));
    Ok(())
}

/// The connector layer: see the module documentation.
#[derive(Debug, Clone)]
pub struct CheckListener {
    port: DaemonPort,
    admitted: Admitted,
    look: Look,
}

impl CheckListener {
    /// Checks every connection against the listener on `port` (now).
    pub fn new(port: DaemonPort) -> CheckListener {
        CheckListener {
            port,
            admitted: Admitted::default(),
            look: identity::listener,
        }
    }
}

impl<S> tower_layer::Layer<S> for CheckListener {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            port: self.port.clone(),
            admitted: Arc::clone(&self.admitted),
            look: self.look,
        }
    }
}

/// The connector with the check in front. Generic over the request type:
/// reqwest's is sealed, and only passed through.
#[derive(Debug, Clone)]
pub struct Checked<S> {
    inner: S,
    port: DaemonPort,
    admitted: Admitted,
    look: Look,
}

impl<S, R> tower_service::Service<R> for Checked<S>
where
    S: tower_service::Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The service that was polled ready makes the call; a fresh clone
        // stays behind for the next one (tower's usual hand-over).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let port = self.port.get();
        let (admitted, look) = (Arc::clone(&self.admitted), self.look);
        Box::pin(async move {
            check(port, &admitted, look).await?;
            ready.call(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[test]
    fn only_a_stranger_is_refused() {
        for listener in [Listener::Nobody, Listener::Mine, Listener::Unknown] {
            assert_eq!(admit(1, listener.clone()), Ok(()), "{listener:?}");
        }
        let stranger = Listener::Stranger {
            uid: Some(1001),
            holder: "pid 7 (python3) of uid 1001".into(),
        };
        let refusal = admit(3100, stranger).expect_err("refused");
        let text = refusal.to_string();
        assert!(text.contains("port 3100") && text.contains("pid 7 (python3) of uid 1001"));
        let boxed: BoxError = refusal.clone().into();
        let wrapped = std::io::Error::other(boxed);
        assert_eq!(StrangerListener::find(&wrapped), Some(&refusal));
        assert_eq!(
            StrangerListener::find(&std::io::Error::other("refused")),
            None
        );
    }

    /// A connector that counts its calls.
    #[derive(Clone, Default)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Service<&'static str> for Counting {
        type Response = &'static str;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<&'static str, std::io::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: &'static str) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(request))
        }
    }

    /// A port of this user's is connected to; the request passes through.
    #[tokio::test]
    async fn a_listener_of_this_user_is_connected_to() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let connector = Counting::default();
        let mut checked = tower_layer::Layer::layer(
            &CheckListener::new(DaemonPort::new(port)),
            connector.clone(),
        );
        std::future::poll_fn(|cx| checked.poll_ready(cx))
            .await
            .expect("ready");
        assert_eq!(checked.call("dst").await.expect("connected"), "dst");
        assert_eq!(connector.0.load(Ordering::SeqCst), 1);
    }

    static LOOKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted_mine(_port: u16) -> Listener {
        LOOKS.fetch_add(1, Ordering::SeqCst);
        Listener::Mine
    }

    fn counted_stranger(_port: u16) -> Listener {
        LOOKS.fetch_add(1, Ordering::SeqCst);
        Listener::Stranger {
            uid: Some(1001),
            holder: "pid 7 (nc) of uid 1001".into(),
        }
    }

    /// A burst of 64 connections reads the socket table about once (the
    /// first reading is shared by all that waited for it); a later
    /// connection reads it again; a refusal is looked at every time.
    #[tokio::test]
    async fn a_burst_of_connections_shares_one_check() {
        let admitted = Admitted::default();
        let before = LOOKS.load(Ordering::SeqCst);
        let burst = (0..64).map(|_| check(3100, &admitted, counted_mine));
        for result in futures_util::future::join_all(burst).await {
            assert!(result.is_ok());
        }
        let burst = LOOKS.load(Ordering::SeqCst) - before;
        assert!(burst <= 2, "{burst} readings for one burst");
        check(3100, &admitted, counted_mine).await.expect("mine");
        assert_eq!(LOOKS.load(Ordering::SeqCst) - before, burst + 1);
        let strangers = Admitted::default();
        for _ in 0..2 {
            assert!(check(3100, &strangers, counted_stranger).await.is_err());
        }
        assert_eq!(LOOKS.load(Ordering::SeqCst) - before, burst + 3);
    }
}
