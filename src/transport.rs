//! What the proxy talks to: one MCP daemon over HTTP.
//!
//! | transport         | module              | client → daemon           | daemon → client                          |
//! |-------------------|---------------------|---------------------------|------------------------------------------|
//! | `streamable-http` | [`streamable_http`] | POST per message          | POST answer (JSON or SSE), GET stream    |
//! | `http`            | [`streamable_http`] | POST per message          | POST answer (JSON); no GET stream        |
//! | `sse` (2024-11-05)| [`legacy_sse`]      | POST to the `endpoint`    | one long-lived GET stream                |
//!
//! Both take whole [`Message`]s from the proxy and hand everything the daemon
//! sends to an [`Inbound`] (the proxy's router implements it). This module
//! holds what they share: the HTTP client, the ordering of client messages
//! ([`Sequencer`]), the replayable `initialize`, and reading an SSE body.
//! It knows nothing of stdio: where answers go is the [`Inbound`]'s business.

pub mod legacy_sse;
pub mod listener_check;
pub mod recovery;
pub mod streamable_http;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::config::TransportKind;
use crate::http;
use crate::jsonrpc::{self, Message, RawId};

/// What [`Inbound::deliver`] did with a daemon message.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The response to this request id (as written to the client).
    Response(RawId, Bytes),
    /// A server request or notification, written to the client.
    Other,
    /// Not a JSON-RPC message; logged and dropped.
    Invalid,
}

/// The client has gone: nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client has gone")]
pub struct ClientGone;

/// A future an [`Inbound`] returns (boxed: the trait is used as `dyn`).
pub type InboundFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ClientGone>> + Send + 'a>>;

/// Where everything the daemon sends goes, and the table of requests in
/// flight that decides who gets it. The proxy's router implements it; the
/// transport only asks and delivers.
pub trait Inbound: Send + Sync + 'static {
    /// Routes one message from the daemon. `answering` is the request whose
    /// own POST stream carried it: a response there is that request's answer
    /// even if the server re-wrote its id.
    fn deliver<'a>(
        &'a self,
        raw: Bytes,
        answering: Option<&'a RawId>,
    ) -> InboundFuture<'a, Delivered>;
    /// Answers a waiting request with an error made by the proxy (nothing
    /// if it was answered or cancelled meanwhile).
    fn fail<'a>(
        &'a self,
        id: &'a RawId,
        message: &'a str,
        data: Option<&'a serde_json::Value>,
    ) -> InboundFuture<'a, ()>;
    /// Writes a message the proxy made (a notification) straight to the client.
    fn reply(&self, line: Bytes) -> InboundFuture<'_, ()>;
    /// Is this request still waiting for its answer?
    fn is_pending(&self, id: &RawId) -> bool;
    /// Is this id one of the proxy's own requests?
    fn is_internal(&self, id: &RawId) -> bool;
    /// Registers a request of the proxy's own; its answer comes back here
    /// instead of going to the client.
    fn begin_internal(&self, id: RawId) -> tokio::sync::oneshot::Receiver<Bytes>;
    /// Forgets a request of the proxy's own that will not be answered.
    fn abandon_internal(&self, id: &RawId);
    /// Shows every daemon answer given to the client to `kept` (set once).
    fn observe_answers(&self, kept: Arc<recovery::SessionState>);
}

/// Where and how to reach the daemon.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The MCP endpoint (`…/mcp`) or, for legacy SSE, the stream URL (`…/sse`).
    pub url: Url,
    pub transport: TransportKind,
    /// Sent with every HTTP request (configured headers, `Mcp-Project-Path`).
    pub headers: HeaderMap,
    /// A Unix domain socket every request goes over instead of TCP (a
    /// host's or a daemon's `sockets/NAME.sock`, Unix only); the URL still
    /// names the port, for the Host header. It is per name, so a daemon
    /// found again after a restart is on the same one.
    pub socket: Option<std::path::PathBuf>,
}

/// Why the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A live connection to the daemon.
pub enum Upstream {
    Streamable(Arc<streamable_http::StreamableHttp>),
    Legacy(Arc<legacy_sse::LegacySse>),
}

impl Upstream {
    /// Sets up the transport for `endpoint`. Nothing is sent until the first
    /// message; the legacy transport opens its stream at once.
    ///
    /// # Errors
    /// [`Error::Client`] if the HTTP client cannot be built (TLS set-up).
    pub fn connect(
        endpoint: Endpoint,
        inbound: Arc<dyn Inbound>,
        recovery: recovery::Recovery,
    ) -> Result<Upstream, Error> {
        let shared = Shared::new(&endpoint, inbound, recovery)?;
        Ok(match endpoint.transport {
            TransportKind::Sse => {
                Upstream::Legacy(legacy_sse::LegacySse::start(shared, endpoint.url))
            }
            TransportKind::StreamableHttp | TransportKind::Stdio => Upstream::Streamable(
                streamable_http::StreamableHttp::start(shared, endpoint.url, true),
            ),
            TransportKind::Http => Upstream::Streamable(streamable_http::StreamableHttp::start(
                shared,
                endpoint.url,
                false,
            )),
        })
    }

    /// Sends one client message. Never waits on the daemon: requests run
    /// concurrently, notifications and responses keep their order.
    pub fn send(&self, message: Message) {
        match self {
            Upstream::Streamable(t) => t.send(message),
            Upstream::Legacy(t) => t.send(message),
        }
    }

    /// Ends the session with the daemon (`DELETE` for streamable HTTP) and
    /// stops every background stream.
    pub async fn close(&self) {
        match self {
            Upstream::Streamable(t) => t.close().await,
            Upstream::Legacy(t) => t.close().await,
        }
    }
}

/// What both transports share: the HTTP client and what every client
/// session carries whichever transport serves it.
pub(crate) struct Shared {
    pub http: reqwest::Client,
    /// Sent with every HTTP request (configured headers, `Mcp-Project-Path`).
    pub headers: HeaderMap,
    /// Where the daemon's messages go.
    pub inbound: Arc<dyn Inbound>,
    /// The order of the client's notifications and responses.
    pub order: Sequencer,
    /// The client's `initialize`, for a new session after a restart.
    pub replay: InitializeCache,
    /// What the client set on its session, for a new one.
    pub kept: Arc<recovery::SessionState>,
    pub recovery: recovery::Recovery,
    /// The daemon is on this machine: a reset connection then proves that
    /// it never read the request ([`never_reached`]).
    pub loopback: bool,
    /// The port every new TCP connection is checked against
    /// ([`listener_check`]); `None` over a Unix socket or off this machine.
    checked_port: Option<listener_check::DaemonPort>,
    /// Numbers the proxy's own requests.
    internal_ids: AtomicU64,
}

impl Shared {
    fn new(
        endpoint: &Endpoint,
        inbound: Arc<dyn Inbound>,
        recovery: recovery::Recovery,
    ) -> Result<Shared, Error> {
        let kept = Arc::new(recovery::SessionState::default());
        inbound.observe_answers(Arc::clone(&kept));
        let checked_port = (endpoint.socket.is_none() && http::is_loopback(&endpoint.url))
            .then(|| endpoint.url.port_or_known_default())
            .flatten()
            .map(listener_check::DaemonPort::new);
        Ok(Shared {
            http: http_client(
                &endpoint.url,
                endpoint.socket.as_deref(),
                checked_port.clone(),
            )
            .map_err(Error::Client)?,
            headers: endpoint.headers.clone(),
            inbound,
            order: Sequencer::default(),
            replay: InitializeCache::default(),
            kept,
            recovery,
            loopback: http::is_loopback(&endpoint.url),
            checked_port,
            internal_ids: AtomicU64::new(0),
        })
    }

    /// The daemon was found at `url` (another port, maybe): new connections
    /// are checked against its port from now on.
    pub fn moved_to(&self, url: &Url) {
        if let (Some(checked), Some(port)) = (&self.checked_port, url.port_or_known_default()) {
            checked.set(port);
        }
    }

    /// Notes a client message before it is sent: `initialize` for a replay,
    /// and the state it sets.
    pub fn remember(&self, message: &Message) {
        self.replay.remember(message);
        self.kept.observe(message);
    }

    /// A request of the proxy's own, registered with the inbound: its id
    /// and the message. `params` is JSON text.
    pub fn internal_message(
        &self,
        method: &str,
        params: &str,
    ) -> Option<(RawId, Message, tokio::sync::oneshot::Receiver<Bytes>)> {
        let n = self.internal_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let raw = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":"mcp-proxy-internal-{n}","method":"{method}","params":{params}}}"#
        ));
        let message = jsonrpc::classify(raw).ok()?;
        let id = message.id()?.clone();
        let answer = self.inbound.begin_internal(id.clone());
        Some((id, message, answer))
    }
}

impl Shared {
    /// Sends an HTTP request to the daemon, and once more if it provably
    /// never reached it ([`never_reached`]): a pooled keep-alive connection
    /// the daemon had closed, or reset with the request unread.
    ///
    /// First the task yields, which lets the runtime poll its I/O driver: a
    /// pooled connection whose peer closed since is then seen closed by
    /// hyper, which leaves it out of the pool, before this request is
    /// written on it.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        tokio::task::yield_now().await;
        let again = request.try_clone();
        match request.send().await {
            Err(error) if never_reached(&error, self.loopback) => match again {
                Some(again) => {
                    let reason = reqwest_reason(&error);
                    tracing::debug!(%reason, "the daemon never read the request (a closed or reset connection); sending it again on a new one");
                    again.send().await
                }
                None => Err(error),
            },
            other => other,
        }
    }
}

/// Did this request provably never reach the daemon? True when no
/// connection could be made; when hyper never wrote it (the pooled
/// connection was found closed: "canceled"); and, for a loopback daemon,
/// when the connection was reset before an answer: TCP resets a connection
/// whose owner closed it with data unread, and on one HTTP/1.1 connection
/// the unread data can only be (part of) this request. A clean end of the
/// connection before the answer ("connection closed before message
/// completed") proves nothing: a daemon that read the request and died
/// mid-way looks the same, so that request may have run. Off loopback a
/// reset may come from a middlebox that forwarded the request: not proof.
pub(crate) fn never_reached(error: &reqwest::Error, loopback: bool) -> bool {
    if error.is_connect() {
        return true;
    }
    if !error.is_request() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            let reset = matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
            return reset && loopback;
        }
        source = cause.source();
    }
    false
}

/// How long to wait for a TCP connection (the only deadline the proxy sets on
/// its own: answers may take as long as the tool needs).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The session's client: every request over `socket` when one is given
/// (Unix; the URL's host and port then only fill the Host header), else
/// over TCP, each new connection to a daemon on this machine checked
/// against the listener on `checked` ([`listener_check`]).
fn http_client(
    url: &Url,
    socket: Option<&std::path::Path>,
    checked: Option<listener_check::DaemonPort>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = http::client_builder()
        // Never follow a redirect: it could carry the session to another host.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64);
    if http::is_loopback(url) {
        builder = builder.no_proxy();
    }
    if url.scheme() == "http" {
        builder = http::client::without_tls_roots(builder);
    }
    #[cfg(unix)]
    if let Some(socket) = socket {
        builder = builder.unix_socket(socket);
    }
    #[cfg(not(unix))]
    let _ = socket;
    if let Some(port) = checked {
        builder = builder.connector_layer(listener_check::CheckListener::new(port));
    }
    builder.build()
}

/// Keeps client messages in order where order matters.
///
/// Notifications and responses go out one at a time, in arrival order (so
/// `notifications/initialized` reaches the daemon before the `tools/list`
/// sent after it). A request never waits for other requests, only for the
/// notifications and responses queued before it.
#[derive(Default)]
pub(crate) struct Sequencer {
    queued: AtomicU64,
    sent: watch::Sender<u64>,
}

impl Sequencer {
    /// Counts one more ordered message; returns its ticket.
    pub fn enqueue(&self) -> u64 {
        self.queued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The ticket a request must wait for: everything queued so far.
    pub fn ticket(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits until every ordered message up to `ticket` has been sent.
    pub async fn wait_for(&self, ticket: u64) {
        let mut sent = self.sent.subscribe();
        // Fails only if the sender is dropped, which cannot happen while `self` lives.
        let _ = sent.wait_for(|sent| *sent >= ticket).await;
    }

    /// Marks the oldest queued message as sent.
    pub fn mark_sent(&self) {
        self.sent.send_modify(|sent| *sent += 1);
    }
}

/// The client's `initialize` and `initialized`, kept so that a new session
/// can be opened on the client's behalf when the daemon lost the old one.
#[derive(Default)]
pub(crate) struct InitializeCache {
    initialize: Mutex<Option<Message>>,
    initialized: Mutex<Option<Message>>,
    replays: AtomicU64,
}

impl InitializeCache {
    pub fn remember(&self, message: &Message) {
        let slot = match message.method() {
            Some("initialize") => &self.initialize,
            Some("notifications/initialized") => &self.initialized,
            _ => return,
        };
        *crate::sync::lock(slot) = Some(message.clone());
    }

    /// The id of the client's own (last) `initialize`.
    pub fn client_id(&self) -> Option<RawId> {
        crate::sync::lock(&self.initialize)
            .as_ref()
            .and_then(|m| m.id().cloned())
    }

    /// A copy of the client's `initialize` with an id of the proxy's own, so
    /// its answer can be kept from the client; and the `initialized` to send
    /// after it. `None` if the client has not initialized yet.
    pub fn replay(&self) -> Option<(RawId, Bytes, Bytes)> {
        let initialize = crate::sync::lock(&self.initialize).clone()?;
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            params: Option<&'a RawValue>,
        }
        let params = serde_json::from_slice::<Params<'_>>(&initialize.raw)
            .ok()
            .and_then(|p| p.params.map(|p| p.get().to_owned()))
            .unwrap_or_else(|| "{}".into());
        let n = self.replays.fetch_add(1, Ordering::SeqCst) + 1;
        let id_text = format!("\"mcp-proxy-reinitialize-{n}\"");
        let raw = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id_text},"method":"initialize","params":{params}}}"#
        ));
        let id = jsonrpc::classify(raw.clone()).ok()?.id()?.clone();
        let initialized = crate::sync::lock(&self.initialized)
            .as_ref()
            .map(|m| m.raw.clone())
            .unwrap_or_else(|| {
                Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            });
        Some((id, raw, initialized))
    }
}

/// What reading an SSE body ended with.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The response to the request we were waiting for went by.
    Answered(Bytes),
    /// The server closed the stream normally.
    Closed,
    /// The connection failed mid-stream.
    Broken(String),
    /// The client has gone; stop everything.
    ClientGone,
}

/// What an SSE reader remembers between connections.
#[derive(Debug, Default)]
pub(crate) struct StreamCursor {
    /// The last `id:` seen, for `Last-Event-ID` on a reconnect.
    pub last_event_id: Option<String>,
    /// The last `retry:` seen: the server's reconnect delay.
    pub retry: Option<Duration>,
}

/// Reads JSON-RPC messages from an SSE body and hands them to the inbound, as
/// each event arrives. Stops after the response to `wanted` (if given).
/// Events of another type than `message` are not JSON-RPC (the legacy
/// `endpoint` event is handled by `on_other`).
pub(crate) async fn read_sse(
    response: reqwest::Response,
    inbound: &dyn Inbound,
    wanted: Option<&RawId>,
    cursor: &mut StreamCursor,
    mut on_other: impl FnMut(&str, &str),
) -> StreamEnd {
    let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => return StreamEnd::Broken(error.to_string()),
        };
        if let Some(id) = event.id {
            cursor.last_event_id = Some(id);
        }
        if let Some(retry) = event.retry {
            cursor.retry = Some(Duration::from_millis(retry));
        }
        let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
            continue; // a priming event, or only metadata
        };
        match event.event.as_deref() {
            None | Some("message") | Some("") => {}
            Some(other) => {
                on_other(other, &data);
                continue;
            }
        }
        for message in split_json_body(Bytes::from(data)) {
            match inbound.deliver(message, wanted).await {
                Err(ClientGone) => return StreamEnd::ClientGone,
                Ok(Delivered::Response(id, raw)) if Some(&id) == wanted => {
                    return StreamEnd::Answered(raw);
                }
                Ok(_) => {}
            }
        }
    }
    StreamEnd::Closed
}

/// One JSON body as messages: an object is one, an array (a batch answer,
/// which 2025-03-26 servers may send) is split into its elements.
pub(crate) fn split_json_body(body: Bytes) -> Vec<Bytes> {
    let starts_array = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    if starts_array {
        if let Ok(elements) = serde_json::from_slice::<Vec<&RawValue>>(&body) {
            return elements
                .into_iter()
                .map(|e| body.slice_ref(e.get().as_bytes()))
                .collect();
        }
    }
    vec![body]
}

/// Up to 300 characters of an error body, for the JSON-RPC error the client sees.
pub(crate) async fn short_body(response: reqwest::Response) -> String {
    const LIMIT: usize = 300;
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= LIMIT {
                break;
            }
        }
        body
    })
    .await
    .unwrap_or_default();
    let text = String::from_utf8_lossy(&read);
    let text = text.trim();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The JSON-RPC error data for an HTTP failure: `{"status": 400, "body": "…"}`.
pub(crate) fn http_error_data(status: reqwest::StatusCode, body: &str) -> serde_json::Value {
    serde_json::json!({ "status": status.as_u16(), "body": body })
}

/// A reqwest error as one line, without the URL reqwest puts in it (a
/// legacy endpoint's query holds the session id, a credential).
pub(crate) fn reqwest_reason(error: &reqwest::Error) -> String {
    let mut text = http::error_chain(error);
    while let Some(start) = text.find(" for url (") {
        let Some(len) = text[start..].find(')') else {
            break;
        };
        text.replace_range(start..=start + len, "");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_split_arrays() {
        let parts = split_json_body(Bytes::from_static(br#" [{"id":1},{"id":2}]"#));
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1][..], br#"{"id":2}"#);
        assert_eq!(split_json_body(Bytes::from_static(b"{}")).len(), 1);
    }

    #[test]
    fn replayed_initialize_uses_an_id_of_the_proxy() {
        let cache = InitializeCache::default();
        assert!(cache.replay().is_none());
        let init = jsonrpc::classify(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","x":[1]}}"#,
        ))
        .expect("valid");
        cache.remember(&init);
        let (id, raw, initialized) = cache.replay().expect("cached");
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(v["params"]["x"][0], 1);
        assert_eq!(id.as_json(), "\"mcp-proxy-reinitialize-1\"");
        assert!(
            std::str::from_utf8(&initialized)
                .expect("utf8")
                .contains("notifications/initialized")
        );
    }
}
