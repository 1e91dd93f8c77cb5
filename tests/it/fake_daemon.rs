//! A small fake MCP daemon for fault-injection tests of `mcp-proxy` (§6 of
//! `mcp-transport.md`): Streamable HTTP at `/mcp`, legacy HTTP+SSE (2024-11-05) at `/sse`.
//! It binds 127.0.0.1 only, records every request it reads, and answers odd input with 4xx.
//!
//! JSON-RPC requests, on both transports: `initialize` → `{"protocolVersion": <the requested
//! one if known, else "2025-11-25">, "capabilities": {"tools": {}, "logging": {}},
//! "serverInfo": {..}}`; `ping` → `{}`; `tools/call` `{"name":"echo","arguments":{"message":M}}`
//! → `{"content":[{"type":"text","text":M}]}` (the arguments as compact JSON when there is no
//! string `message`); `slow` `{"ms":N}` → `{"method":"slow","ms":N}` after N ms; `hang` → never
//! answered (an SSE reply still sends its headers and early events); any other request →
//! `{"method": <method>}`. Notifications and client responses get 202 (legacy: 202 "Accepted").
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use std::{convert::Infallible, future::Future, io, net::SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

type Resp = Response<UnsyncBoxBody<Bytes, io::Error>>;
type Tx = mpsc::UnboundedSender<Result<Bytes, io::Error>>;
type EventLog = Arc<watch::Sender<Log>>;

const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const SSE: &str = "text/event-stream";
const JSON: &str = "application/json";

/// How an SSE stream is written. A POST stream carries, in order: the priming event, the
/// `other` event, `progress` notifications, then the response. Every POST stream event is kept,
/// so a GET with `Last-Event-ID` resumes the stream (replaying up to and including the response).
#[derive(Clone, Debug, Default)]
pub struct SseStyle {
    /// Line ending: `"\r\n"`, `"\r"` or `"\n"` (`""`, the default, means `"\n"`).
    pub eol: &'static str,
    /// Write no `id:` lines. Ids are `"<stream>-<k>"` on POST streams (streams are numbered
    /// from 0 per daemon, events from 0 per stream) and `"g<n>"` on standalone GET streams.
    pub no_ids: bool,
    /// Begin with a priming event: `id: X` and an empty `data:`.
    pub priming: bool,
    /// Pretty-print the JSON over several `data:` lines (clients join them with `\n`).
    pub split_data: bool,
    /// Put a `: keepalive` comment line before every event.
    pub keepalive: bool,
    /// Send an `event: other` event (JSON data, method `fake/other`) that clients must ignore.
    pub other_event: bool,
    /// `notifications/progress` sent before the response (progress 1..=N, total N, token from
    /// `params._meta.progressToken`, else `"fake-token"`).
    pub progress: usize,
    /// End the POST stream after this many events (priming included); the rest stays resumable.
    pub cut_after: Option<usize>,
    /// When cutting, abort the connection mid-body instead of ending the body cleanly.
    pub cut_abrupt: bool,
}

impl SseStyle {
    /// All a client must tolerate at once: priming, multi-line data, keepalives, `event: other`.
    pub fn hostile(eol: &'static str) -> Self {
        let mut s = SseStyle {
            eol,
            ..Self::default()
        };
        (s.priming, s.split_data, s.keepalive, s.other_event) = (true, true, true, true);
        s
    }

    fn line_end(&self) -> &'static str {
        if self.eol.is_empty() { "\n" } else { self.eol }
    }
}

/// How a POST carrying a request is answered on `/mcp`.
#[derive(Clone, Debug, Default)]
pub enum ReplyMode {
    /// 200 `application/json`, the response object.
    #[default]
    Json,
    /// 200 `application/json`, `[response]` (a 2025-03-26 batch body).
    JsonArray,
    /// 200 `text/event-stream`.
    Sse(SseStyle),
}

/// An HTTP-level fault that replaces the answer to a POST (both transports).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Never respond, not even headers.
    Hang,
    /// This status and a short `text/plain` body, e.g. `Status(500, "boom".into())`.
    Status(u16, String),
    /// 200 `application/json` whose body is not JSON.
    Garbage,
    /// 200 `text/html`.
    WrongContentType,
    /// 307 to this URL (e.g. another daemon's `url("/mcp")`).
    Redirect(String),
}

/// How a standalone GET `/mcp` (one without a resumable `Last-Event-ID`) is answered.
#[derive(Clone, Debug, Default)]
pub enum GetMode {
    /// An SSE stream kept open; `push_get_event` writes to it.
    #[default]
    Stream,
    /// This status (405: no GET stream offered; 409: one is already open).
    Status(u16),
    /// The first `times` GETs get `retry: <retry_ms>` plus an event with id `g<n>` and empty
    /// data, then the stream ends; later GETs get a normal stream.
    RetryThenClose { retry_ms: u64, times: usize },
}

/// What the daemon does. Change it at runtime with [`FakeDaemon::update`].
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// `Mcp-Session-Id` of the first `initialize` reply; the n-th later one gets `"<id>-<n>"`.
    /// `None` = stateless. When stateful, other `/mcp` requests without an id get 400 and with
    /// an unknown id 404. Default `"fake-session-0123456789abcdef"`.
    pub session_id: Option<String>,
    /// The first session accepts this many requests carrying it (POST, GET, DELETE); the next
    /// one gets 404 and the session is forgotten. Later sessions never expire.
    pub expire_session_after: Option<usize>,
    /// 415 unless `Content-Type: application/json`; 406 unless `Accept` lists both JSON and SSE
    /// (POST) or SSE (GET). Default true.
    pub strict_headers: bool,
    /// Reply mode for requests, and per-method overrides (see [`Behaviour::with_reply`]).
    pub reply: ReplyMode,
    pub reply_by_method: HashMap<String, ReplyMode>,
    /// POST faults by JSON-RPC method; `"*"` matches any POST (notifications and responses
    /// too). Checked before the session. See [`Behaviour::with_fault`].
    pub faults: HashMap<String, Fault>,
    /// Standalone GET `/mcp` behaviour, and the style of its events (`eol`, `no_ids`,
    /// `split_data`, `keepalive` apply).
    pub get: GetMode,
    pub get_style: SseStyle,
    /// Status of DELETE `/mcp` (default 200). A 2xx ends the session and closes GET streams.
    pub delete_status: u16,
    /// Data of the legacy `event: endpoint` (default `/messages/?session_id=a%2Fb`); the n-th
    /// later GET `/sse` gets `"<endpoint>-<n>"`. POSTs must go to its path+query, resolved
    /// against `/sse` (an absolute `http://host/...` URL keeps only its path+query).
    pub legacy_endpoint: String,
    /// End each legacy SSE stream (and its session) after this many messages.
    pub legacy_close_after: Option<usize>,
    /// Accept TCP connections but never read or answer anything on them.
    pub stall: bool,
    /// Serve one request per connection: once it has been answered, the
    /// connection is closed as soon as the next request's bytes arrive,
    /// without reading them, so TCP resets it. A client's request written on
    /// its pooled keep-alive connection then never reached the daemon.
    pub reset_reused: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            session_id: Some("fake-session-0123456789abcdef".into()),
            expire_session_after: None,
            strict_headers: true,
            reply: ReplyMode::Json,
            reply_by_method: HashMap::new(),
            faults: HashMap::new(),
            get: GetMode::Stream,
            get_style: SseStyle::default(),
            delete_status: 200,
            legacy_endpoint: "/messages/?session_id=a%2Fb".into(),
            legacy_close_after: None,
            stall: false,
            reset_reused: false,
        }
    }
}

impl Behaviour {
    /// Builder helper: `Behaviour::default().with(|b| b.stall = true)`.
    pub fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }

    /// Answer requests of `method` with `mode`.
    pub fn with_reply(mut self, method: &str, mode: ReplyMode) -> Self {
        self.reply_by_method.insert(method.into(), mode);
        self
    }

    /// Answer POSTs of `method` (or `"*"`: all POSTs) with `fault`.
    pub fn with_fault(mut self, method: &str, fault: Fault) -> Self {
        self.faults.insert(method.into(), fault);
        self
    }
}

/// One HTTP request as the daemon read it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Arrival order from 0, and the time its body had been read.
    pub seq: usize,
    pub at: Instant,
    /// HTTP method (`"POST"`), and path+query exactly as sent (`/messages/?session_id=a%2Fb`).
    pub method: String,
    pub path: String,
    /// Headers in order, names lowercase, values decoded lossily.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// First value of a header (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let h = self.headers.iter().find(|h| h.0.eq_ignore_ascii_case(name));
        h.map(|h| h.1.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// True for a POST of a JSON-RPC message with this `method`.
    pub fn is_post_of(&self, rpc_method: &str) -> bool {
        self.method == "POST" && self.json().is_some_and(|v| v["method"] == rpc_method)
    }
}

#[derive(Default)]
struct Log {
    events: Vec<(String, Bytes)>,
    done: bool,
}

/// An open server→client stream: its sender, its legacy POST path (None: a standalone GET
/// stream), and how many messages it may still carry.
struct Target(Tx, Option<String>, Option<usize>);

#[derive(Default)]
struct State {
    recorded: Vec<Recorded>,
    connections: usize,
    live: HashSet<String>,
    inits: usize,
    first_uses: usize,
    logs: Vec<EventLog>,
    next_stream: usize,
    targets: Vec<Target>,
    pending: Vec<String>,
    get_opens: usize,
    get_events: usize,
    legacy_opens: usize,
}

impl State {
    /// Sends `json` on the newest live target (the legacy one with this POST path, if given).
    fn deliver(&mut self, path: Option<&str>, json: &str, style: &SseStyle) -> bool {
        for i in (0..self.targets.len()).rev() {
            let legacy = self.targets[i].1.as_deref();
            if path.is_some() && legacy != path {
                continue;
            }
            let bytes = if legacy.is_some() {
                fmt_event(&SseStyle::default(), "", Some("message"), json)
            } else {
                self.get_events += 1;
                fmt_event(style, &format!("g{}", self.get_events - 1), None, json)
            };
            let Target(tx, _, remaining) = &mut self.targets[i];
            let sent = tx.send(Ok(bytes)).is_ok();
            *remaining = remaining.map(|r| r.saturating_sub(1));
            if !sent || *remaining == Some(0) {
                self.targets.remove(i);
            }
            if sent {
                return true;
            }
        }
        false
    }

    fn add_target(&mut self, tx: Tx, legacy_path: Option<String>, b: &Behaviour) {
        let remaining = legacy_path.as_ref().and(b.legacy_close_after);
        self.targets.push(Target(tx, legacy_path, remaining));
        for json in std::mem::take(&mut self.pending) {
            if !self.deliver(None, &json, &b.get_style) {
                self.pending.push(json);
            }
        }
    }
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    state: Mutex<State>,
    seen: watch::Sender<usize>,
    tasks: Mutex<JoinSet<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs `f` until it ends or the daemon stops (it outlives the connection that started it).
    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        lock(&self.tasks).spawn(f);
    }

    fn record(&self, mut rec: Recorded) {
        let mut st = self.st();
        rec.seq = st.recorded.len();
        st.recorded.push(rec);
        self.seen.send_replace(st.recorded.len());
    }

    /// 400 for an unknown `MCP-Protocol-Version` (2026-07-28 is known: a 2026 client's
    /// requests declare it); when stateful 400 without a session id, 404 for an unknown or
    /// expired one.
    fn check_session(&self, b: &Behaviour, rec: &Recorded) -> Option<Resp> {
        let bad = |msg| Some(rpc_err(400, -32000, msg));
        let version = rec.header("mcp-protocol-version");
        if version.is_some_and(|v| !VERSIONS.contains(&v) && v != "2026-07-28") {
            return bad("Bad Request: unsupported protocol version");
        }
        let first = b.session_id.as_deref()?;
        let Some(sid) = rec.header("mcp-session-id") else {
            return bad("Bad Request: Mcp-Session-Id header is required");
        };
        let mut st = self.st();
        if sid == first {
            st.first_uses += 1;
            if b.expire_session_after.is_some_and(|n| st.first_uses > n) {
                st.live.remove(sid);
            }
        }
        let known = st.live.contains(sid);
        (!known).then(|| rpc_err(404, -32001, "Session not found"))
    }
}

/// A running fake daemon. Dropping it (or [`FakeDaemon::stop`]) closes the port and every
/// connection, open streams included.
pub struct FakeDaemon {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Serves `behaviour` on 127.0.0.1 and a free port.
    pub async fn start(behaviour: Behaviour) -> FakeDaemon {
        let daemon = Self::start_at(([127, 0, 0, 1], 0).into(), behaviour);
        daemon.await.expect("fake daemon: bind 127.0.0.1:0")
    }

    /// Serves on a given loopback address (e.g. a stopped daemon's `addr`, to restart it).
    pub async fn start_at(addr: SocketAddr, behaviour: Behaviour) -> io::Result<FakeDaemon> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::other("the fake daemon binds loopback only"));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            state: Mutex::default(),
            seen: watch::Sender::new(0),
            tasks: Mutex::default(),
        });
        let (sh, addr) = (shared.clone(), listener.local_addr()?);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                sh.st().connections += 1;
                let (stall, sh2) = (lock(&sh.behaviour).stall, sh.clone());
                let reset_reused = lock(&sh.behaviour).reset_reused;
                let mut tasks = lock(&sh.tasks);
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    if stall {
                        let _held = tcp;
                        return std::future::pending().await;
                    }
                    let svc = hyper::service::service_fn(move |req| handle(sh2.clone(), req));
                    let io = hyper_util::rt::TokioIo::new(OneRequest {
                        tcp,
                        answered: false,
                        reset_reused,
                        resetting: false,
                    });
                    let conn = hyper::server::conn::http1::Builder::new();
                    let _ = conn.serve_connection(io, svc).await;
                });
            }
        });
        let mut daemon = FakeDaemon {
            addr,
            shared,
            accept: None,
        };
        daemon.accept = Some(accept);
        Ok(daemon)
    }

    /// `"http://127.0.0.1:PORT{path}"`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.st().recorded.clone()
    }

    /// TCP connections accepted so far (stalled ones included).
    pub fn connections(&self) -> usize {
        self.shared.st().connections
    }

    /// The first recorded request matching `pred`, waiting up to `t` for it.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&Recorded) -> bool,
        t: Duration,
    ) -> Option<Recorded> {
        self.wait_for_nth(1, pred, t).await
    }

    /// The `n`-th (from 1) recorded request matching `pred`, waiting up to `t` for it.
    pub async fn wait_for_nth(
        &self,
        n: usize,
        pred: impl Fn(&Recorded) -> bool,
        t: Duration,
    ) -> Option<Recorded> {
        let deadline = tokio::time::Instant::now() + t;
        let mut rx = self.shared.seen.subscribe();
        loop {
            let all = self.requests();
            let found = all.into_iter().filter(|r| pred(r)).nth(n.max(1) - 1);
            if found.is_some() {
                return found;
            }
            let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return None;
            }
        }
    }

    /// Sends a JSON-RPC message (e.g. a server `ping` request; the client's POSTed answer is
    /// recorded) on the newest open standalone GET or legacy `/sse` stream. When none is open
    /// it is queued for the next stream to open. A GET is recorded only once its stream is
    /// registered, so waiting for the GET and then pushing is race-free.
    pub fn push_get_event(&self, json: &str) {
        let style = lock(&self.shared.behaviour).get_style.clone();
        let mut st = self.shared.st();
        if !st.deliver(None, json, &style) {
            st.pending.push(json.to_owned());
        }
    }

    /// Changes the behaviour from now on (running requests keep their settings).
    pub fn update(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.shared.behaviour));
    }

    /// Forgets every session: requests carrying an old id get 404 (as after a restart).
    pub fn forget_sessions(&self) {
        self.shared.st().live.clear();
    }

    /// Cleanly ends every open standalone GET and legacy `/sse` stream (legacy sessions end).
    pub fn close_streams(&self) {
        self.shared.st().targets.clear();
    }

    /// Stops the daemon and waits until the port and all its connections are closed.
    pub async fn stop(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let mut tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        tasks.shutdown().await;
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        lock(&self.shared.tasks).abort_all();
        self.shared.st().targets.clear();
    }
}

/// A connection that, with `reset_reused`, fails the first read after it
/// has written an answer, without reading: the unread bytes make the close
/// a TCP reset (see [`Behaviour::reset_reused`]).
struct OneRequest {
    tcp: tokio::net::TcpStream,
    answered: bool,
    reset_reused: bool,
    /// The read failed: no FIN (`shutdown`) may precede the reset, as when
    /// a process dies with the bytes unread.
    resetting: bool,
}

impl tokio::io::AsyncRead for OneRequest {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.reset_reused && self.answered {
            std::task::ready!(self.tcp.poll_read_ready(cx))?;
            self.resetting = true;
            return std::task::Poll::Ready(Err(io::Error::other("reset_reused: a second request")));
        }
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for OneRequest {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.answered = true;
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.resetting {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.answered = true;
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

fn resp(code: u16, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let body = Full::new(body.into()).map_err(|e: Infallible| match e {});
    let mut r = Response::new(body.boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !ctype.is_empty() {
        let ctype = HeaderValue::from_static(ctype);
        r.headers_mut().insert(CONTENT_TYPE, ctype);
    }
    r
}

fn text(code: u16, msg: &str) -> Resp {
    resp(code, "text/plain", msg.to_owned())
}

fn rpc_err(code: u16, rpc: i64, msg: &str) -> Resp {
    let err = json!({"jsonrpc": "2.0", "id": null, "error": {"code": rpc, "message": msg}});
    resp(code, JSON, err.to_string())
}

/// A `text/event-stream` response whose body is whatever is sent on the returned sender.
fn sse_response() -> (Tx, Resp) {
    let (tx, rx): (Tx, _) = mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(SSE));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (tx, r)
}

fn accepts(rec: &Recorded, media: &str) -> bool {
    let accept = rec.header("accept").unwrap_or_default();
    accept.to_ascii_lowercase().contains(media)
}

/// Formats one SSE event (`id` empty: no id line; `data` empty: a lone `data:` line).
fn fmt_event(style: &SseStyle, id: &str, event: Option<&str>, data: &str) -> Bytes {
    let eol = style.line_end();
    let mut s = String::new();
    if style.keepalive {
        s += &format!(": keepalive{eol}");
    }
    if !style.no_ids && !id.is_empty() {
        s += &format!("id: {id}{eol}");
    }
    if let Some(ev) = event {
        s += &format!("event: {ev}{eol}");
    }
    let split = |data| serde_json::to_string_pretty(&serde_json::from_str::<Value>(data)?);
    let pretty = style.split_data.then(|| split(data).ok()).flatten();
    for line in pretty.as_deref().unwrap_or(data).split('\n') {
        s += &format!("data:{}{line}{eol}", if line.is_empty() { "" } else { " " });
    }
    Bytes::from(s + eol)
}

/// Copies events `idx..` of `log` into `tx`; stops after `cut` events or when the log is done.
async fn feed_log(log: EventLog, mut idx: usize, cut: Option<usize>, abrupt: bool, tx: Tx) {
    let mut rx = log.subscribe();
    for sent in 0.. {
        if cut.is_some_and(|n| sent >= n) {
            if abrupt {
                let _ = tx.send(Err(io::Error::other("fake daemon: stream cut")));
            }
            return;
        }
        loop {
            let (next, done) = {
                let l = rx.borrow_and_update();
                (l.events.get(idx).map(|e| e.1.clone()), l.done)
            };
            if let Some(bytes) = next {
                if tx.send(Ok(bytes)).is_err() {
                    return;
                }
                idx += 1;
                break;
            }
            if done || rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The response line to a request.
async fn answer(msg: &Value) -> String {
    let (method, params) = (msg["method"].as_str().unwrap_or_default(), &msg["params"]);
    let result = match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let v = VERSIONS.into_iter().find(|v| *v == asked);
            json!({"protocolVersion": v.unwrap_or("2025-11-25"),
                   "capabilities": {"tools": {}, "logging": {}},
                   "serverInfo": {"name": "fake-daemon", "version": "0.1.0"}})
        }
        "ping" => json!({}),
        "tools/call" if params["name"] == "echo" => {
            let args = &params["arguments"];
            let text = args["message"].as_str().map(str::to_owned);
            json!({"content": [{"type": "text", "text": text.unwrap_or(args.to_string())}]})
        }
        "slow" => {
            let ms = params["ms"].as_u64().unwrap_or(0).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json!({"method": "slow", "ms": ms})
        }
        "hang" => std::future::pending().await,
        other => json!({"method": other}),
    };
    json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}).to_string()
}

/// Content-type check, JSON parse, then any fault for the message's method.
async fn parse(rec: &Recorded, b: &Behaviour) -> Result<Value, Box<Resp>> {
    let ct = rec.header("content-type").unwrap_or_default();
    if b.strict_headers && !ct.to_ascii_lowercase().starts_with(JSON) {
        return Err(Box::new(text(415, "need application/json")));
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&rec.body) else {
        return Err(Box::new(rpc_err(400, -32700, "Parse error")));
    };
    if !msg.is_object() {
        return Err(Box::new(rpc_err(400, -32600, "Invalid Request")));
    }
    let method = msg["method"].as_str().unwrap_or("*");
    let Some(fault) = b.faults.get(method).or_else(|| b.faults.get("*")) else {
        return Ok(msg);
    };
    Err(Box::new(match fault.clone() {
        Fault::Hang => std::future::pending().await,
        Fault::Status(code, body) => text(code, &body),
        Fault::Garbage => resp(200, JSON, "this is {not json"),
        Fault::WrongContentType => resp(200, "text/html", "<html><body>hi</body></html>"),
        Fault::Redirect(to) => {
            let mut r = resp(307, "", "");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
    }))
}

async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, 64 << 20).collect().await else {
        return Ok(text(413, "request body too large or unreadable"));
    };
    let header = |(n, v): (&hyper::header::HeaderName, &HeaderValue)| {
        let v = String::from_utf8_lossy(v.as_bytes());
        (n.to_string(), v.into_owned())
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let rec = Recorded {
        seq: 0,
        at: Instant::now(),
        method: parts.method.to_string(),
        path: path.to_owned(),
        headers: parts.headers.iter().map(header).collect(),
        body: body.to_bytes(),
    };
    let b = lock(&sh.behaviour).clone();
    // A GET is recorded once its stream is registered (see `push_get_event`).
    if rec.method != "GET" {
        sh.record(rec.clone());
    }
    let legacy = sh
        .st()
        .targets
        .iter()
        .any(|t| t.1 == Some(rec.path.clone()));
    let (delete_ok, delete_status) = ((200..300).contains(&b.delete_status), b.delete_status);
    let route = rec.path.split('?').next().unwrap_or_default();
    let r = match (rec.method.as_str(), route) {
        ("POST", _) if legacy => post_legacy(&sh, &rec, b).await,
        ("POST", "/mcp") => post_mcp(&sh, &rec, b).await,
        ("GET", "/mcp") => get_mcp(&sh, &rec, &b),
        ("DELETE", "/mcp") if !delete_ok => resp(delete_status, "", ""),
        ("DELETE", "/mcp") => sh.check_session(&b, &rec).unwrap_or_else(|| {
            let mut st = sh.st();
            let sid = rec.header("mcp-session-id").unwrap_or_default();
            st.live.remove(sid);
            st.targets.retain(|t| t.1.is_some());
            resp(delete_status, "", "")
        }),
        (_, "/mcp") => text(405, "Method Not Allowed"),
        ("GET", "/sse") => get_legacy(&sh, &b),
        _ => text(404, "Not Found"),
    };
    if rec.method == "GET" {
        sh.record(rec);
    }
    Ok(r)
}

async fn post_mcp(sh: &Arc<Shared>, rec: &Recorded, b: Behaviour) -> Resp {
    if b.strict_headers && !(accepts(rec, JSON) && accepts(rec, SSE)) {
        return text(406, "need Accept: application/json, text/event-stream");
    }
    let msg = match parse(rec, &b).await {
        Ok(msg) => msg,
        Err(r) => return *r,
    };
    let method = msg["method"].as_str().unwrap_or_default();
    let mut new_sid = None;
    if method == "initialize" {
        if let Some(base) = &b.session_id {
            let mut st = sh.st();
            let sid = match st.inits {
                0 => base.clone(),
                n => format!("{base}-{n}"),
            };
            st.inits += 1;
            st.live.insert(sid.clone());
            new_sid = HeaderValue::from_bytes(sid.as_bytes()).ok();
        }
    } else if let Some(r) = sh.check_session(&b, rec) {
        return r;
    }
    if method.is_empty() || msg.get("id").is_none() {
        return resp(202, "", ""); // a notification, or a response to a server request
    }
    let mut r = match b.reply_by_method.get(method).unwrap_or(&b.reply).clone() {
        ReplyMode::Sse(style) => sse_reply(sh, msg, style),
        ReplyMode::JsonArray => resp(200, JSON, format!("[{}]", answer(&msg).await)),
        ReplyMode::Json => resp(200, JSON, answer(&msg).await),
    };
    if let Some(v) = new_sid {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

fn sse_reply(sh: &Arc<Shared>, msg: Value, style: SseStyle) -> Resp {
    let log: EventLog = Arc::new(watch::Sender::new(Log::default()));
    let no = {
        let mut st = sh.st();
        st.logs.push(log.clone());
        if st.logs.len() > 256 {
            st.logs.remove(0);
        }
        st.next_stream += 1;
        st.next_stream - 1
    };
    let (tx, r) = sse_response();
    let (cut, abrupt) = (style.cut_after, style.cut_abrupt);
    sh.spawn(feed_log(log.clone(), 0, cut, abrupt, tx));
    sh.spawn(async move {
        let push = |event: Option<&str>, data: &str| {
            log.send_modify(|l| {
                let id = format!("{no}-{}", l.events.len());
                let bytes = fmt_event(&style, &id, event, data);
                l.events.push((id, bytes));
            })
        };
        if style.priming {
            push(None, "");
        }
        if style.other_event {
            push(Some("other"), r#"{"jsonrpc":"2.0","method":"fake/other"}"#);
        }
        let token = msg.pointer("/params/_meta/progressToken").cloned();
        let token = token.unwrap_or_else(|| json!("fake-token"));
        for i in 1..=style.progress {
            let p = json!({"progressToken": token, "progress": i, "total": style.progress});
            let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": p});
            push(None, &note.to_string());
        }
        push(None, &answer(&msg).await);
        log.send_modify(|l| l.done = true);
    });
    r
}

fn get_mcp(sh: &Arc<Shared>, rec: &Recorded, b: &Behaviour) -> Resp {
    if let GetMode::Status(code) = b.get {
        return text(code, "no GET stream");
    }
    if b.strict_headers && !accepts(rec, SSE) {
        return text(406, "need Accept: text/event-stream");
    }
    if let Some(r) = sh.check_session(b, rec) {
        return r;
    }
    let last = rec.header("last-event-id").unwrap_or_default();
    let mut st = sh.st();
    let found = st.logs.iter().find_map(|log| {
        let idx = log.borrow().events.iter().position(|e| e.0 == last)?;
        Some((log.clone(), idx))
    });
    let (tx, r) = sse_response();
    if let Some((log, idx)) = found {
        sh.spawn(feed_log(log, idx + 1, None, false, tx));
        return r;
    }
    st.get_opens += 1;
    match b.get {
        GetMode::RetryThenClose { retry_ms, times } if st.get_opens <= times => {
            let id = format!("g{}", st.get_events);
            st.get_events += 1;
            let event = fmt_event(&b.get_style, &id, None, "");
            let retry = format!("retry: {retry_ms}{}", b.get_style.line_end());
            let _ = tx.send(Ok([retry.as_bytes(), &event].concat().into()));
        }
        _ => st.add_target(tx, None, b),
    }
    r
}

fn get_legacy(sh: &Arc<Shared>, b: &Behaviour) -> Resp {
    let mut st = sh.st();
    st.legacy_opens += 1;
    let data = match st.legacy_opens {
        1 => b.legacy_endpoint.clone(),
        n => format!("{}-{}", b.legacy_endpoint, n - 1),
    };
    let (tx, r) = sse_response();
    let _ = tx.send(Ok(format!("event: endpoint\ndata: {data}\n\n").into()));
    let scheme = data
        .split_once("://")
        .filter(|(s, _)| s.starts_with("http"));
    let path = match scheme {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
        None if data.starts_with('/') => data,
        None => format!("/{data}"),
    };
    if b.legacy_close_after != Some(0) {
        st.add_target(tx, Some(path), b);
    }
    r
}

async fn post_legacy(sh: &Arc<Shared>, rec: &Recorded, b: Behaviour) -> Resp {
    let msg = match parse(rec, &b).await {
        Ok(msg) => msg,
        Err(r) => return *r,
    };
    if msg.get("method").is_some() && msg.get("id").is_some() {
        let (sh2, path) = (sh.clone(), rec.path.clone());
        sh.spawn(async move {
            let out = answer(&msg).await;
            sh2.st().deliver(Some(&path), &out, &SseStyle::default());
        });
    }
    text(202, "Accepted")
}

#[cfg(test)]
mod self_tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn client() -> reqwest::Client {
        #[cfg(feature = "tls")] // reqwest is built with `rustls-no-provider`
        let _ = rustls::crypto::ring::default_provider().install_default();
        let no_redirect = reqwest::redirect::Policy::none();
        let builder = reqwest::Client::builder().no_proxy().redirect(no_redirect);
        builder.build().expect("client")
    }

    fn rpc(id: u64, method: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
    }

    /// POSTs `body` (with `sid` unless empty); returns status, session header and body.
    async fn post(d: &FakeDaemon, path: &str, sid: &str, body: Value) -> (u16, String, String) {
        let rb = client().post(d.url(path)).header("content-type", JSON);
        let mut rb = rb.header("accept", "application/json, text/event-stream");
        if !sid.is_empty() {
            rb = rb.header("mcp-session-id", sid);
        }
        let r = rb.body(body.to_string()).send().await.expect("post");
        let sid = r.headers().get("mcp-session-id").map(|v| v.as_bytes());
        let sid = String::from_utf8_lossy(sid.unwrap_or_default()).into_owned();
        let status = r.status().as_u16();
        (status, sid, r.text().await.unwrap_or_default())
    }

    async fn get(d: &FakeDaemon, path: &str, last_event_id: &str) -> reqwest::Response {
        let mut rb = client().get(d.url(path)).header("accept", SSE);
        if !last_event_id.is_empty() {
            rb = rb.header("last-event-id", last_event_id);
        }
        rb.send().await.expect("get")
    }

    async fn recorded(d: &FakeDaemon, n: usize, method: &str) -> Recorded {
        let found = d.wait_for_nth(n, |r| r.method == method, T).await;
        found.expect("request recorded")
    }

    /// Reads the body into `acc` until it contains `needle`; false if it ends first or 5 s pass.
    async fn read_until(r: &mut reqwest::Response, acc: &mut String, needle: &str) -> bool {
        let fut = async {
            while !acc.contains(needle) {
                let Ok(Some(chunk)) = r.chunk().await else {
                    return false;
                };
                acc.push_str(&String::from_utf8_lossy(&chunk));
            }
            true
        };
        tokio::time::timeout(T, fut).await.unwrap_or(false)
    }

    #[tokio::test]
    async fn json_sessions_and_faults() {
        let b = Behaviour::default().with(|b| b.expire_session_after = Some(2));
        let b = b
            .with_fault("r", Fault::Redirect("http://127.0.0.1:1/mcp".into()))
            .with_fault("g", Fault::Garbage)
            .with_fault("e", Fault::Status(500, "boom".into()))
            .with_fault("h", Fault::Hang);
        let d = FakeDaemon::start(b).await;
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18"}});
        let (status, sid, body) = post(&d, "/mcp", "", init.clone()).await;
        assert_eq!((status, &*sid), (200, "fake-session-0123456789abcdef"));
        assert!(body.contains(r#""protocolVersion":"2025-06-18""#), "{body}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(post(&d, "/mcp", &sid, note).await.0, 202);
        let echo = json!({"name": "echo", "arguments": {"message": "a\nb\u{2028}ü"}});
        let call = json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": echo});
        let body = post(&d, "/mcp", &sid, call).await.2;
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["result"]["content"][0]["text"], "a\nb\u{2028}ü");
        assert_eq!(post(&d, "/mcp", &sid, rpc(2, "x")).await.0, 404); // expired
        assert_eq!(post(&d, "/mcp", "", rpc(3, "x")).await.0, 400);
        let (_, sid2, _) = post(&d, "/mcp", "", init).await;
        assert_eq!(sid2, "fake-session-0123456789abcdef-1");
        let body = post(&d, "/mcp", &sid2, rpc(4, "other/thing")).await.2;
        assert!(body.contains(r#""result":{"method":"other/thing"}"#));
        let r = client()
            .delete(d.url("/mcp"))
            .header("mcp-session-id", &sid2);
        assert_eq!(r.send().await.expect("delete").status(), 200);
        let del = recorded(&d, 1, "DELETE").await;
        assert_eq!(del.header("Mcp-Session-Id"), Some(sid2.as_str()));
        assert_eq!(post(&d, "/mcp", &sid2, rpc(5, "x")).await.0, 404);
        assert_eq!(post(&d, "/mcp", "", json!([1])).await.0, 400);
        assert_eq!(post(&d, "/mcp", "", rpc(6, "r")).await.0, 307);
        let boom = post(&d, "/mcp", "", rpc(6, "e")).await;
        assert_eq!((boom.0, &*boom.2), (500, "boom"));
        let garbage = post(&d, "/mcp", "", rpc(6, "g")).await.2;
        assert!(serde_json::from_str::<Value>(&garbage).is_err());
        let hang = post(&d, "/mcp", "", rpc(6, "h"));
        let hang = tokio::time::timeout(Duration::from_millis(300), hang).await;
        assert!(hang.is_err());
        assert!(d.requests().iter().any(|r| r.is_post_of("tools/call")));
    }

    #[tokio::test]
    async fn sse_cut_resume_and_array() {
        let mut style = SseStyle::hostile("\r\n");
        (style.progress, style.cut_after) = (2, Some(2));
        let b = Behaviour::default().with(|b| b.session_id = None);
        let d = FakeDaemon::start(b.with_reply("slow", ReplyMode::Sse(style))).await;
        let slow = json!({"jsonrpc": "2.0", "id": 7, "method": "slow", "params": {"ms": 200}});
        let cut = post(&d, "/mcp", "", slow).await.2;
        assert!(
            cut.starts_with(": keepalive\r\nid: 0-0\r\ndata:\r\n\r\n"),
            "{cut:?}"
        );
        assert!(cut.contains("id: 0-1\r\nevent: other\r\n") && !cut.contains("0-2"));
        let (mut resumed, mut acc) = (get(&d, "/mcp", "0-1").await, String::new());
        assert!(read_until(&mut resumed, &mut acc, "\"ms\": 200").await);
        assert!(acc.contains("id: 0-2") && acc.contains("progress") && !acc.contains("0-1"));
        assert!(!read_until(&mut resumed, &mut acc, "never").await); // ends after the response
        let r = recorded(&d, 1, "GET").await;
        assert_eq!(r.header("last-event-id"), Some("0-1"));
        d.update(|b| b.reply = ReplyMode::JsonArray);
        let body = post(&d, "/mcp", "", rpc(8, "ping")).await.2;
        assert_eq!(body, r#"[{"id":8,"jsonrpc":"2.0","result":{}}]"#);
    }

    #[tokio::test]
    async fn get_stream_retry_and_push() {
        let get_mode = GetMode::RetryThenClose {
            retry_ms: 500,
            times: 1,
        };
        let b = Behaviour::default().with(|b| (b.session_id, b.get) = (None, get_mode));
        let d = FakeDaemon::start(b).await;
        let first = get(&d, "/mcp", "").await.text().await.expect("closes");
        assert_eq!(first, "retry: 500\nid: g0\ndata:\n\n");
        d.push_get_event(r#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#); // queued
        let (mut s, mut acc) = (get(&d, "/mcp", "g0").await, String::new());
        assert!(read_until(&mut s, &mut acc, "\n\n").await, "{acc:?}");
        assert!(acc.starts_with("id: g1\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"p1\""));
        recorded(&d, 2, "GET").await;
        d.push_get_event(r#"{"jsonrpc":"2.0","method":"late"}"#);
        assert!(read_until(&mut s, &mut acc, "late").await, "{acc:?}");
        let pong = json!({"jsonrpc": "2.0", "id": "p1", "result": {}});
        assert_eq!(post(&d, "/mcp", "", pong).await.0, 202);
        let pong = d.wait_for(|r| r.json().is_some_and(|v| v["id"] == "p1"), T);
        assert!(pong.await.is_some());
        d.close_streams();
        assert!(!read_until(&mut s, &mut acc, "never").await);
        d.update(|b| (b.get, b.delete_status) = (GetMode::Status(405), 405));
        assert_eq!(get(&d, "/mcp", "").await.status(), 405);
        let delete = client().delete(d.url("/mcp")).send().await;
        assert_eq!(delete.expect("delete").status(), 405);
    }

    #[tokio::test]
    async fn legacy_sse_stop_and_stall() {
        let b = Behaviour::default().with(|b| b.legacy_close_after = Some(2));
        let d = FakeDaemon::start(b).await;
        let (mut s, mut acc) = (get(&d, "/sse", "").await, String::new());
        assert!(read_until(&mut s, &mut acc, "\n\n").await);
        let path = "/messages/?session_id=a%2Fb";
        assert_eq!(acc, format!("event: endpoint\ndata: {path}\n\n"));
        let (status, _, body) = post(&d, path, "", rpc(1, "initialize")).await;
        assert_eq!((status, body.as_str()), (202, "Accepted"));
        assert!(read_until(&mut s, &mut acc, "2025-11-25").await);
        assert!(acc.contains("event: message\ndata: {\"id\":1,"));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(post(&d, path, "", note).await.0, 202);
        assert_eq!(recorded(&d, 1, "POST").await.path, path);
        assert_eq!(post(&d, path, "", rpc(2, "ping")).await.0, 202);
        assert!(read_until(&mut s, &mut acc, "\"id\":2").await);
        assert!(!read_until(&mut s, &mut acc, "never").await); // closed after 2 messages
        assert_eq!(post(&d, path, "", rpc(3, "ping")).await.0, 404);
        let (mut s, mut acc) = (get(&d, "/sse", "").await, String::new());
        assert!(read_until(&mut s, &mut acc, "a%2Fb-1\n\n").await, "{acc:?}");
        let addr = d.addr;
        d.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        let stall = Behaviour::default().with(|b| b.stall = true);
        let d = FakeDaemon::start_at(addr, stall).await.expect("restart");
        let stalled = tokio::time::timeout(Duration::from_millis(300), get(&d, "/mcp", ""));
        assert!(stalled.await.is_err());
        // The accept may lag on a loaded machine: wait for it (bounded).
        let accepted = tokio::time::timeout(Duration::from_secs(10), async {
            while d.connections() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            accepted.await.is_ok(),
            "the stalled connection was never accepted"
        );
        assert_eq!((d.connections(), d.requests().len()), (1, 0));
    }
}
