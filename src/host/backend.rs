//! One stdio child and the sessions that share it.
//!
//! A [`Backend`] owns the child process (started again with back-off when it
//! dies or stops answering `ping`) and the multiplexing state: which upstream
//! id belongs to which session's request, which progress token to which
//! session, which session a server request went to, who subscribed to what,
//! and the log level each session asked for. Messages to a session go to a
//! [`Sink`]: the stream of the POST that asked, or the session's GET stream.
//!
//! Routing rules:
//! - a response goes to the request it answers (ids are rewritten upstream);
//! - progress goes to the request that carries its token;
//! - a server request (`sampling/createMessage`, `roots/list`,
//!   `elicitation/create`, `ping`) goes to the session whose request was
//!   sent to the child most recently among those still waiting; with none
//!   waiting, to the session that was active last;
//! - `notifications/message` goes to every session whose level admits it;
//! - `notifications/resources/updated` goes to the sessions subscribed to it;
//! - any other notification (`*/list_changed`) goes to every session.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::rewrite;
use crate::jsonrpc::{self, Kind, Message};
use crate::stdio::LineReader;

/// A client session's id (`Mcp-Session-Id`).
pub type SessionId = Arc<str>;

/// What goes to a client.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// The answer to one of its requests.
    Response(Bytes),
    /// A request of its own that will get no answer (the client cancelled it).
    Done,
    /// Anything else: server requests and notifications.
    Message(Bytes),
}

/// Most bytes queued for one client body. A client that stops reading its
/// stream must not grow the host without bound: past this, its body ends
/// (dropping what is queued) and the client reconnects.
const SINK_LIMIT: usize = 16 * 1024 * 1024;

/// Where messages for a client go: the body of one of its POSTs, or its GET
/// stream.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Outbound>,
    queue: Arc<SinkQueue>,
    /// An SSE body can carry any message; a JSON body only answers.
    streaming: bool,
}

/// Bytes queued between a [`Sink`] and its [`SinkReceiver`].
#[derive(Debug, Default)]
struct SinkQueue {
    bytes: AtomicUsize,
    overflowed: AtomicBool,
}

/// The HTTP body's end of a [`Sink`].
#[derive(Debug)]
pub struct SinkReceiver {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queue: Arc<SinkQueue>,
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Response(b) | Outbound::Message(b) => b.len(),
            Outbound::Done => 0,
        }
    }
}

impl Sink {
    /// A sink and the receiving end its HTTP body reads from.
    pub fn new(streaming: bool) -> (Sink, SinkReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(SinkQueue::default());
        let receiver = SinkReceiver {
            rx,
            queue: Arc::clone(&queue),
        };
        (
            Sink {
                tx,
                queue,
                streaming,
            },
            receiver,
        )
    }

    fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.queue.overflowed.load(Ordering::Relaxed)
    }

    /// Open, and able to carry server requests and notifications.
    fn carries_messages(&self) -> bool {
        self.streaming && self.is_open()
    }

    /// Queues a message; false if the body is gone or too far behind (it
    /// is then ended).
    pub fn send(&self, message: Outbound) -> bool {
        let len = message.len();
        let queued = self.queue.bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > SINK_LIMIT {
            if !self.queue.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    queued,
                    "a client stopped reading its stream; ending it (it can reconnect)"
                );
            }
            return false;
        }
        self.tx.send(message).is_ok()
    }
}

impl SinkReceiver {
    /// The next message; `None` once every sink is gone or the queue
    /// overflowed.
    pub async fn recv(&mut self) -> Option<Outbound> {
        if self.queue.overflowed.load(Ordering::Relaxed) {
            return None;
        }
        let message = self.rx.recv().await?;
        self.queue.bytes.fetch_sub(message.len(), Ordering::Relaxed);
        Some(message)
    }
}

/// How to start the child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// The child's stderr is appended here.
    pub log: PathBuf,
}

/// Timing of the child's supervision.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long the child may take to answer `initialize` (npx may download).
    pub initialize: Duration,
    /// How often the host pings the child while requests wait.
    pub ping_every: Duration,
    /// A child that does not answer a ping within this is restarted.
    pub ping_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            initialize: Duration::from_secs(120),
            ping_every: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a message from a session could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("the server process is not ready: {0}")]
    NotReady(String),
    #[error("the server process restarted; the request may or may not have run ({0})")]
    Restarted(String),
}

/// The child's state, for `/health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildHealth {
    pub state: &'static str,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub last_restart_reason: Option<String>,
    /// Milliseconds since the Unix epoch when the current child started.
    pub started_at: Option<u64>,
}

/// One child and its sessions.
pub struct Backend {
    pub label: String,
    spec: ChildSpec,
    timing: Timing,
    state: Mutex<MuxState>,
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// The child's `initialize` result (raw JSON), while a child is ready.
    ready: watch::Sender<Readiness>,
    ids: AtomicU64,
    health: Mutex<ChildHealth>,
    cancel: CancellationToken,
    /// The supervising task; done once the child is stopped and reaped.
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Clone)]
enum Readiness {
    Starting,
    Ready(Bytes),
    /// Ended; being started again.
    Down(String),
    /// Cannot be started at all (the command is missing): clients are told
    /// at once instead of waiting for a start that will not come.
    Unstartable(String),
}

#[derive(Default)]
struct MuxState {
    pending: HashMap<u64, Pending>,
    tokens: HashMap<u64, TokenRoute>,
    /// The id a server request got towards its session → where it went.
    server_requests: HashMap<u64, ServerRequest>,
    sessions: HashMap<SessionId, SessionState>,
    /// URI → number of sessions subscribed.
    subscriptions: HashMap<String, usize>,
    /// The level the child was last set to.
    child_level: Option<String>,
    last_active: Option<SessionId>,
}

impl MuxState {
    /// One subscriber of `uri` fewer; true if it was the last one.
    fn release_subscription(&mut self, uri: &str) -> bool {
        let Some(count) = self.subscriptions.get_mut(uri) else {
            return false;
        };
        *count -= 1;
        let last = *count == 0;
        if last {
            self.subscriptions.remove(uri);
        }
        last
    }
}

enum Pending {
    Client {
        session: SessionId,
        /// The client's id, as JSON text.
        id: String,
        sink: Sink,
        token: Option<u64>,
    },
    Internal(oneshot::Sender<Bytes>),
}

struct ServerRequest {
    session: SessionId,
    /// The child's own id, as JSON text.
    child_id: String,
}

struct TokenRoute {
    session: SessionId,
    token: String,
    sink: Sink,
}

#[derive(Default)]
struct SessionState {
    level: Option<String>,
    subscriptions: HashSet<String>,
    stream: Option<Sink>,
    capabilities: ClientCapabilities,
}

/// What a client said it can answer, in its `initialize`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCapabilities {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCapabilities {
    /// Can this client answer a server request of `method`?
    fn answers(self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => true,
        }
    }
}

/// The protocol version the host asks its child for.
pub const CHILD_PROTOCOL_VERSION: &str = crate::mcp::LATEST_VERSION;

fn rank(level: &str) -> Option<usize> {
    crate::mcp::log_level_rank(level)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend {
    /// Starts the child (in the background) and returns the handle.
    pub fn start(label: String, spec: ChildSpec, timing: Timing) -> Arc<Backend> {
        let backend = Arc::new(Backend {
            label,
            spec,
            timing,
            state: Mutex::new(MuxState::default()),
            stdin: Mutex::new(None),
            ready: watch::Sender::new(Readiness::Starting),
            ids: AtomicU64::new(1),
            health: Mutex::new(ChildHealth {
                state: "starting",
                pid: None,
                restarts: 0,
                last_restart_reason: None,
                started_at: None,
            }),
            cancel: CancellationToken::new(),
            supervisor: Mutex::new(None),
        });
        let task = tokio::spawn(Arc::clone(&backend).supervise());
        *lock(&backend.supervisor) = Some(task);
        backend
    }

    /// Stops the child for good (in the background).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Stops the child and waits, up to `timeout`, until it is reaped.
    pub async fn stop_and_wait(&self, timeout: Duration) {
        self.cancel.cancel();
        let task = lock(&self.supervisor).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(timeout, task).await;
        }
    }

    /// Sends a message to the session's GET stream; false if none is open.
    pub fn send_to_stream(&self, session: &SessionId, message: Bytes) -> bool {
        let state = lock(&self.state);
        state
            .sessions
            .get(session)
            .and_then(|s| s.stream.as_ref())
            .is_some_and(|sink| sink.send(Outbound::Message(message)))
    }

    pub fn health(&self) -> ChildHealth {
        lock(&self.health).clone()
    }

    /// The child's `initialize` result, waiting up to `timeout` for it.
    ///
    /// # Errors
    /// [`BackendError::NotReady`] with the reason when no child is ready in time.
    pub async fn initialize_result(&self, timeout: Duration) -> Result<Bytes, BackendError> {
        let mut ready = self.ready.subscribe();
        let wait = ready.wait_for(|r| matches!(r, Readiness::Ready(_) | Readiness::Unstartable(_)));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(r)) => match &*r {
                Readiness::Ready(result) => Ok(result.clone()),
                Readiness::Unstartable(reason) => Err(BackendError::NotReady(reason.clone())),
                _ => Err(BackendError::NotReady("it is still starting".into())),
            },
            _ => Err(BackendError::NotReady(match &*self.ready.borrow() {
                Readiness::Down(reason) | Readiness::Unstartable(reason) => reason.clone(),
                _ => "it is still starting".into(),
            })),
        }
    }

    /// Registers a session and what its client can answer.
    pub fn open_session(&self, session: SessionId, capabilities: ClientCapabilities) {
        let mut state = lock(&self.state);
        let session_state = SessionState {
            capabilities,
            ..SessionState::default()
        };
        state.sessions.insert(Arc::clone(&session), session_state);
        state.last_active = Some(session);
    }

    /// Has this session requests waiting on the child?
    pub fn has_pending(&self, session: &SessionId) -> bool {
        lock(&self.state)
            .pending
            .values()
            .any(|p| matches!(p, Pending::Client { session: s, .. } if s == session))
    }

    /// Tells the child the roots may have changed: a session that can answer
    /// `roots/list` has arrived (a child's early `roots/list` found none).
    pub async fn roots_changed(&self) {
        self.to_child(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
        ))
        .await;
    }

    pub fn session_count(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// Sets (or clears) the session's GET stream. False if one is open already.
    pub fn set_stream(&self, session: &SessionId, sink: Sink) -> bool {
        let mut state = lock(&self.state);
        let Some(s) = state.sessions.get_mut(session) else {
            return false;
        };
        if s.stream.as_ref().is_some_and(Sink::is_open) {
            return false;
        }
        s.stream = Some(sink);
        true
    }

    /// Has this session an open GET stream?
    pub fn has_stream(&self, session: &SessionId) -> bool {
        lock(&self.state)
            .sessions
            .get(session)
            .and_then(|s| s.stream.as_ref())
            .is_some_and(Sink::is_open)
    }

    /// Ends a session: its requests are cancelled upstream, its server
    /// requests answered with an error, its subscriptions and level dropped.
    pub async fn close_session(&self, session: &SessionId) {
        let (cancels, refusals, unsubscribes, level) = {
            let mut state = lock(&self.state);
            let Some(closed) = state.sessions.remove(session) else {
                return;
            };
            let mine: Vec<u64> = state
                .pending
                .iter()
                .filter(|(_, p)| matches!(p, Pending::Client { session: s, .. } if s == session))
                .map(|(u, _)| *u)
                .collect();
            for u in &mine {
                if let Some(Pending::Client { token: Some(t), .. }) = state.pending.remove(u) {
                    state.tokens.remove(&t);
                }
            }
            let refused: Vec<u64> = state
                .server_requests
                .iter()
                .filter(|(_, r)| r.session == *session)
                .map(|(h, _)| *h)
                .collect();
            let refusals: Vec<String> = refused
                .iter()
                .filter_map(|h| state.server_requests.remove(h))
                .map(|r| r.child_id)
                .collect();
            let mut unsubscribes = Vec::new();
            for uri in closed.subscriptions {
                if state.release_subscription(&uri) {
                    unsubscribes.push(uri);
                }
            }
            if state.last_active.as_ref() == Some(session) {
                state.last_active = None;
            }
            (mine, refusals, unsubscribes, Self::level_change(&mut state))
        };
        for u in cancels {
            let cancel = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{u},"reason":"the client session ended"}}}}"#
            );
            self.to_child(Bytes::from(cancel)).await;
        }
        for id in refusals {
            let refusal = jsonrpc::error_response(
                None,
                jsonrpc::code::INTERNAL_ERROR,
                "the client session ended before answering",
            );
            if let Some(refusal) = rewrite::replace_id(&refusal, &id) {
                self.to_child(refusal).await;
            }
        }
        for uri in unsubscribes {
            self.internal_request("resources/unsubscribe", &serde_json::json!({ "uri": uri }))
                .await;
        }
        if let Some(level) = level {
            self.internal_request("logging/setLevel", &serde_json::json!({ "level": level }))
                .await;
        }
    }

    /// Handles one message from a session. Answers (to requests) go to `sink`.
    pub async fn handle(&self, session: &SessionId, message: Message, sink: Sink) {
        lock(&self.state).last_active = Some(Arc::clone(session));
        match &message.kind {
            Kind::Request { id, method } => {
                let id = id.as_json().to_owned();
                match method.as_str() {
                    "logging/setLevel" => self.set_level(session, &message, &id, &sink).await,
                    "resources/subscribe" => {
                        self.change_subscription(session, message, id, sink, true)
                            .await;
                    }
                    "resources/unsubscribe" => {
                        self.change_subscription(session, message, id, sink, false)
                            .await;
                    }
                    _ => self.forward_request(session, message, id, sink).await,
                }
            }
            Kind::Notification { method } => match method.as_str() {
                // The child was initialized by the host, once.
                "notifications/initialized" => {}
                "notifications/cancelled" => self.forward_cancel(session, &message).await,
                _ => {
                    // A child being started again hears nothing before its
                    // own `initialized`; the wait is bounded like a request's.
                    if self.initialize_result(self.timing.initialize).await.is_ok() {
                        self.to_child(message.raw).await;
                    } else {
                        tracing::debug!(backend = %self.label, method, "no child to take a notification; dropped");
                    }
                }
            },
            Kind::Response { id } => {
                let request = {
                    let mut state = lock(&self.state);
                    let mine = id.as_json().parse::<u64>().ok().filter(|h| {
                        state
                            .server_requests
                            .get(h)
                            .is_some_and(|r| r.session == *session)
                    });
                    mine.and_then(|h| state.server_requests.remove(&h))
                };
                let answer = request.and_then(|r| rewrite::replace_id(&message.raw, &r.child_id));
                match answer {
                    Some(answer) => {
                        self.to_child(answer).await;
                    }
                    None => {
                        tracing::debug!(%id, "an answer to no server request of this session; dropped")
                    }
                }
            }
            Kind::OrphanError => {
                self.to_child(message.raw).await;
            }
        }
    }

    async fn forward_request(&self, session: &SessionId, message: Message, id: String, sink: Sink) {
        if let Err(error) = self.initialize_result(self.timing.initialize).await {
            answer_error(&sink, &id, &error.to_string());
            return;
        }
        let upstream = self.ids.fetch_add(1, Ordering::SeqCst);
        let Some(mut raw) = rewrite::replace_id(&message.raw, &upstream.to_string()) else {
            answer_error(&sink, &id, "the request's id cannot be read");
            return;
        };
        let token = match rewrite::request_progress_token(&message.raw) {
            Some(original) => {
                let token = self.ids.fetch_add(1, Ordering::SeqCst);
                if let Some(with_token) =
                    rewrite::replace_request_progress_token(&raw, &token.to_string())
                {
                    raw = with_token;
                }
                let route = TokenRoute {
                    session: Arc::clone(session),
                    token: original,
                    sink: sink.clone(),
                };
                lock(&self.state).tokens.insert(token, route);
                Some(token)
            }
            None => None,
        };
        let pending = Pending::Client {
            session: Arc::clone(session),
            id,
            sink,
            token,
        };
        lock(&self.state).pending.insert(upstream, pending);
        if !self.to_child(raw).await {
            self.fail_pending(upstream, "the server process is not running");
        }
    }

    async fn forward_cancel(&self, session: &SessionId, message: &Message) {
        let Some(client_id) = rewrite::cancelled_request_id(&message.raw) else {
            return;
        };
        let cancelled = {
            let mut state = lock(&self.state);
            let upstream = state.pending.iter().find_map(|(u, p)| match p {
                Pending::Client { session: s, id, .. } if s == session && *id == client_id => {
                    Some(*u)
                }
                _ => None,
            });
            // The request is released now: no answer will be written for it,
            // and a late one from the child is dropped.
            let pending = upstream.and_then(|u| state.pending.remove(&u).map(|p| (u, p)));
            if let Some((_, Pending::Client { token: Some(t), .. })) = &pending {
                state.tokens.remove(t);
            }
            pending
        };
        if let Some((upstream, Pending::Client { sink, .. })) = cancelled {
            sink.send(Outbound::Done);
            let upstream = upstream.to_string();
            if let Some(raw) = rewrite::replace_cancelled_request_id(&message.raw, &upstream) {
                self.to_child(raw).await;
            }
        }
    }

    async fn set_level(&self, session: &SessionId, message: &Message, id: &str, sink: &Sink) {
        let Some(level) = rewrite::level(&message.raw).filter(|l| rank(l).is_some()) else {
            let error =
                jsonrpc::error_response(None, jsonrpc::code::INVALID_PARAMS, "unknown log level");
            if let Some(error) = rewrite::replace_id(&error, id) {
                sink.send(Outbound::Response(error));
            }
            return;
        };
        let change = {
            let mut state = lock(&self.state);
            if let Some(s) = state.sessions.get_mut(session) {
                s.level = Some(level);
            }
            Self::level_change(&mut state)
        };
        if let Some(level) = change {
            self.internal_request("logging/setLevel", &serde_json::json!({ "level": level }))
                .await;
        }
        answer_ok(sink, id);
    }

    /// The most verbose level any session asked for, if the child must change.
    fn level_change(state: &mut MuxState) -> Option<String> {
        let wanted = state
            .sessions
            .values()
            .filter_map(|s| s.level.clone())
            .min_by_key(|l| rank(l).unwrap_or(usize::MAX));
        if wanted.is_some() && wanted != state.child_level {
            state.child_level.clone_from(&wanted);
            return wanted;
        }
        None
    }

    /// `resources/subscribe` (or unsubscribe): counted per URI, so only the
    /// first subscriber's request (or the last one's unsubscribe) reaches the
    /// child; the others are answered here.
    async fn change_subscription(
        &self,
        session: &SessionId,
        message: Message,
        id: String,
        sink: Sink,
        subscribe: bool,
    ) {
        let Some(uri) = rewrite::uri(&message.raw) else {
            return self.forward_request(session, message, id, sink).await;
        };
        let reaches_child = {
            let mut state = lock(&self.state);
            let changed = state.sessions.get_mut(session).is_some_and(|s| {
                if subscribe {
                    s.subscriptions.insert(uri.clone())
                } else {
                    s.subscriptions.remove(&uri)
                }
            });
            match (changed, subscribe) {
                (false, _) => false,
                (true, true) => {
                    let count = state.subscriptions.entry(uri).or_insert(0);
                    *count += 1;
                    *count == 1
                }
                (true, false) => state.release_subscription(&uri),
            }
        };
        if reaches_child {
            self.forward_request(session, message, id, sink).await;
        } else {
            answer_ok(&sink, &id);
        }
    }

    /// Sends a request of the host's own and waits (bounded) for the answer.
    async fn internal_request(&self, method: &str, params: &serde_json::Value) -> Option<Bytes> {
        let upstream = self.ids.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.state)
            .pending
            .insert(upstream, Pending::Internal(tx));
        let request = serde_json::json!({"jsonrpc": "2.0", "id": upstream, "method": method, "params": params});
        // The whole exchange is bounded, writing included: a child that
        // stops reading its stdin fills the queue and must count as wedged.
        let exchange = async {
            if !self.to_child(Bytes::from(request.to_string())).await {
                return None;
            }
            rx.await.ok()
        };
        let answer = tokio::time::timeout(self.timing.ping_timeout, exchange).await;
        lock(&self.state).pending.remove(&upstream);
        answer.ok().flatten()
    }

    /// Writes a line to the child; false if no child is running.
    async fn to_child(&self, line: Bytes) -> bool {
        let stdin = lock(&self.stdin).clone();
        match stdin {
            Some(stdin) => stdin.send(line).await.is_ok(),
            None => false,
        }
    }

    fn fail_pending(&self, upstream: u64, reason: &str) {
        let pending = {
            let mut state = lock(&self.state);
            let pending = state.pending.remove(&upstream);
            if let Some(Pending::Client { token: Some(t), .. }) = &pending {
                state.tokens.remove(t);
            }
            pending
        };
        if let Some(Pending::Client { id, sink, .. }) = pending {
            answer_error(&sink, &id, reason);
        }
    }

    /// Routes one message from the child.
    fn on_child_message(&self, raw: Bytes) {
        let message = match jsonrpc::classify(raw) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(backend = %self.label, %error, "the server wrote a line that is not JSON-RPC; dropped");
                return;
            }
        };
        let raw = jsonrpc::to_single_line(message.raw.clone());
        match &message.kind {
            Kind::Response { id } => self.on_child_response(id.as_json(), raw),
            Kind::Request { id, method } => self.on_child_request(id.as_json(), method, raw),
            Kind::Notification { method } => self.on_child_notification(method, raw),
            Kind::OrphanError => {
                tracing::warn!(backend = %self.label, "the server reported an error for an unreadable message");
            }
        }
    }

    fn on_child_response(&self, id: &str, raw: Bytes) {
        let Ok(upstream) = id.parse::<u64>() else {
            tracing::debug!(backend = %self.label, id, "a response to an id the host never sent; dropped");
            return;
        };
        let pending = {
            let mut state = lock(&self.state);
            let pending = state.pending.remove(&upstream);
            if let Some(Pending::Client { token: Some(t), .. }) = &pending {
                state.tokens.remove(t);
            }
            pending
        };
        match pending {
            Some(Pending::Client { id, sink, .. }) => {
                if let Some(answer) = rewrite::replace_id(&raw, &id) {
                    sink.send(Outbound::Response(answer));
                }
            }
            Some(Pending::Internal(tx)) => {
                let _ = tx.send(raw);
            }
            None => {
                tracing::debug!(backend = %self.label, upstream, "a late response (the request was cancelled or its session ended)")
            }
        }
    }

    fn on_child_request(&self, id: &str, method: &str, raw: Bytes) {
        let mut state = lock(&self.state);
        let target = server_request_target(&state, method);
        let host_id = self.ids.fetch_add(1, Ordering::SeqCst);
        let forwarded = rewrite::replace_id(&raw, &host_id.to_string());
        match (target, forwarded) {
            (Some((session, sink)), Some(forwarded)) => {
                let request = ServerRequest {
                    session,
                    child_id: id.to_owned(),
                };
                state.server_requests.insert(host_id, request);
                sink.send(Outbound::Message(forwarded));
            }
            _ => {
                drop(state);
                tracing::warn!(backend = %self.label, method, "a server request that no session can answer");
                let refusal = jsonrpc::error_response(
                    None,
                    jsonrpc::code::INTERNAL_ERROR,
                    &format!("no client session that can answer {method} is connected"),
                );
                if let (Some(refusal), Some(stdin)) =
                    (rewrite::replace_id(&refusal, id), lock(&self.stdin).clone())
                {
                    let _ = stdin.try_send(refusal);
                }
            }
        }
    }

    fn on_child_notification(&self, method: &str, raw: Bytes) {
        let state = lock(&self.state);
        match method {
            "notifications/progress" => {
                let route = rewrite::notification_progress_token(&raw)
                    .and_then(|t| t.parse::<u64>().ok())
                    .and_then(|t| state.tokens.get(&t));
                let Some(route) = route else {
                    tracing::debug!(backend = %self.label, "progress for an unknown token; dropped");
                    return;
                };
                let Some(restored) =
                    rewrite::replace_notification_progress_token(&raw, &route.token)
                else {
                    return;
                };
                let sink = if route.sink.is_open() {
                    Some(route.sink.clone())
                } else {
                    session_sink(&state, &route.session)
                };
                if let Some(sink) = sink {
                    sink.send(Outbound::Message(restored));
                }
            }
            "notifications/message" => {
                let level = rewrite::level(&raw).and_then(|l| rank(&l)).unwrap_or(0);
                for (session, s) in &state.sessions {
                    let wanted = s.level.as_deref().and_then(rank).unwrap_or(0);
                    if level >= wanted {
                        if let Some(sink) = session_sink(&state, session) {
                            sink.send(Outbound::Message(raw.clone()));
                        }
                    }
                }
            }
            "notifications/resources/updated" => {
                let uri = rewrite::uri(&raw);
                for (session, s) in &state.sessions {
                    if uri.as_ref().is_some_and(|u| s.subscriptions.contains(u)) {
                        if let Some(sink) = session_sink(&state, session) {
                            sink.send(Outbound::Message(raw.clone()));
                        }
                    }
                }
            }
            "notifications/cancelled" => {
                drop(state);
                let mut state = lock(&self.state);
                let child_id = rewrite::cancelled_request_id(&raw);
                let host_id = state
                    .server_requests
                    .iter()
                    .find(|(_, r)| Some(&r.child_id) == child_id.as_ref())
                    .map(|(h, _)| *h);
                let Some(request) =
                    host_id.and_then(|h| state.server_requests.remove(&h).map(|r| (h, r)))
                else {
                    return;
                };
                let (host_id, request) = request;
                let cancel = rewrite::replace_cancelled_request_id(&raw, &host_id.to_string());
                if let (Some(sink), Some(cancel)) = (session_sink(&state, &request.session), cancel)
                {
                    sink.send(Outbound::Message(cancel));
                }
            }
            _ => {
                for session in state.sessions.keys() {
                    if let Some(sink) = session_sink(&state, session) {
                        sink.send(Outbound::Message(raw.clone()));
                    }
                }
            }
        }
    }

    /// Keeps a child running until the backend is stopped.
    async fn supervise(self: Arc<Self>) {
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let started = Instant::now();
            let reason = self.run_child().await;
            let Some(reason) = reason else { return };
            tracing::warn!(backend = %self.label, reason, "the server process ended; starting it again");
            self.ready.send_if_modified(|r| {
                if matches!(r, Readiness::Unstartable(_)) {
                    return false; // keep saying why it cannot start
                }
                *r = Readiness::Down(reason.clone());
                true
            });
            self.fail_all(&reason);
            {
                let mut health = lock(&self.health);
                health.state = "restarting";
                health.pid = None;
                health.restarts += 1;
                health.last_restart_reason = Some(reason);
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// Fails every request waiting on the child that just ended.
    fn fail_all(&self, reason: &str) {
        let pending: Vec<Pending> = {
            let mut state = lock(&self.state);
            state.tokens.clear();
            state.server_requests.clear();
            state.pending.drain().map(|(_, p)| p).collect()
        };
        let message = BackendError::Restarted(reason.to_owned()).to_string();
        for p in pending {
            if let Pending::Client { id, sink, .. } = p {
                answer_error(&sink, &id, &message);
            }
        }
    }

    /// Runs one child to its end; the reason it ended, or `None` on stop.
    async fn run_child(self: &Arc<Self>) -> Option<String> {
        let mut child = match self.spawn() {
            Ok(child) => child,
            Err(reason) => {
                self.ready
                    .send_replace(Readiness::Unstartable(reason.clone()));
                return Some(reason);
            }
        };
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Some("the server process has no stdio".into());
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(256);
        *lock(&self.stdin) = Some(tx);
        let writer = tokio::spawn(async move {
            let mut stdin = tokio::io::BufWriter::new(stdin);
            while let Some(line) = rx.recv().await {
                let written = async {
                    stdin.write_all(&line).await?;
                    stdin.write_all(b"\n").await?;
                    // One write per burst, and never half a line.
                    if rx.is_empty() {
                        stdin.flush().await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                if written.await.is_err() {
                    return;
                }
            }
        });
        let this = Arc::clone(self);
        let mut reader = tokio::spawn(async move {
            let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, stdout));
            while let Ok(Some(line)) = lines.next_line().await {
                this.on_child_message(line);
            }
        });
        {
            let mut health = lock(&self.health);
            health.pid = pid;
            health.state = "starting";
            health.started_at = Some(crate::paths::now_ms());
        }
        let end = tokio::select! {
            ready = self.initialize_child() => match ready {
                Ok(()) => {
                    lock(&self.health).state = "running";
                    tracing::info!(backend = %self.label, pid, "server process ready");
                    tokio::select! {
                        status = child.wait() => Some(match status {
                            Ok(status) => format!("it exited ({status})"),
                            Err(e) => format!("cannot wait for it: {e}"),
                        }),
                        _ = &mut reader => Some("it closed its stdout".to_owned()),
                        reason = self.watchdog() => Some(reason),
                        () = self.cancel.cancelled() => None,
                    }
                }
                Err(reason) => Some(reason),
            },
            status = child.wait() => Some(match status {
                Ok(status) => format!("it exited during start-up ({status}); see {}", self.spec.log.display()),
                Err(e) => format!("cannot wait for it: {e}"),
            }),
            () = self.cancel.cancelled() => None,
        };
        *lock(&self.stdin) = None;
        writer.abort();
        reader.abort();
        kill_tree(&mut child).await;
        if end.is_none() {
            lock(&self.health).state = "stopped";
        }
        end
    }

    fn spawn(&self) -> Result<tokio::process::Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|e| format!("cannot open the log {}: {e}", self.spec.log.display()))?;
        let mut command = Command::new(&self.spec.command);
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(cwd) = &self.spec.cwd {
            command.current_dir(cwd);
        }
        crate::process::isolate(&mut command);
        command.spawn().map_err(|e| {
            let runner = &self.spec.command;
            if e.kind() == std::io::ErrorKind::NotFound {
                match runner.as_str() {
                    "npx" | "node" | "npm" => format!("`{runner}` was not found: install Node.js (it provides npx) and make sure it is on PATH"),
                    "uvx" | "uv" => format!("`{runner}` was not found: install uv (https://docs.astral.sh/uv/) and make sure it is on PATH"),
                    _ => format!("`{runner}` was not found on PATH"),
                }
            } else {
                format!("cannot start `{runner}`: {e}")
            }
        })
    }

    /// `initialize` + `initialized`, then the state the sessions had set.
    async fn initialize_child(&self) -> Result<(), String> {
        let params = serde_json::json!({
            "protocolVersion": CHILD_PROTOCOL_VERSION,
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "mcp-session-manager", "version": env!("CARGO_PKG_VERSION")},
        });
        let upstream = self.ids.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.state)
            .pending
            .insert(upstream, Pending::Internal(tx));
        let request = serde_json::json!({"jsonrpc": "2.0", "id": upstream, "method": "initialize", "params": params});
        self.to_child(Bytes::from(request.to_string())).await;
        let answer = tokio::time::timeout(self.timing.initialize, rx)
            .await
            .map_err(|_| {
                format!(
                    "it did not answer initialize within {:?}",
                    self.timing.initialize
                )
            })?
            .map_err(|_| "it did not answer initialize".to_owned())?;
        let result = init_result(&answer).ok_or_else(|| {
            format!(
                "it refused initialize: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            )
        })?;
        self.to_child(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await;
        let (level, uris) = {
            let state = lock(&self.state);
            (
                state.child_level.clone(),
                state.subscriptions.keys().cloned().collect::<Vec<_>>(),
            )
        };
        if let Some(level) = level {
            self.internal_request("logging/setLevel", &serde_json::json!({ "level": level }))
                .await;
        }
        for uri in uris {
            self.internal_request("resources/subscribe", &serde_json::json!({ "uri": uri }))
                .await;
        }
        self.ready.send_replace(Readiness::Ready(result));
        Ok(())
    }

    /// Resolves with a reason when the child stops answering pings while
    /// client requests wait on it.
    async fn watchdog(&self) -> String {
        loop {
            tokio::time::sleep(self.timing.ping_every).await;
            let waiting = lock(&self.state)
                .pending
                .values()
                .any(|p| matches!(p, Pending::Client { .. }));
            if !waiting {
                continue;
            }
            if self
                .internal_request("ping", &serde_json::json!({}))
                .await
                .is_none()
            {
                return format!(
                    "it did not answer ping within {:?} while requests waited",
                    self.timing.ping_timeout
                );
            }
        }
    }
}

/// Where a message for this session goes outside any request: its GET
/// stream, else the stream of its newest request still open.
fn session_sink(state: &MuxState, session: &SessionId) -> Option<Sink> {
    if let Some(stream) = state
        .sessions
        .get(session)
        .and_then(|s| s.stream.as_ref())
        .filter(|s| s.is_open())
    {
        return Some(stream.clone());
    }
    state
        .pending
        .iter()
        .filter_map(|(u, p)| match p {
            Pending::Client {
                session: s, sink, ..
            } if s == session && sink.carries_messages() => Some((*u, sink)),
            _ => None,
        })
        .max_by_key(|(u, _)| *u)
        .map(|(_, sink)| sink.clone())
}

/// Who gets a server request: among the sessions whose client declared the
/// capability it needs, the one whose request went to the child last (on
/// that request's stream when it can carry it); with none waiting, the one
/// active last; else any.
fn server_request_target(state: &MuxState, method: &str) -> Option<(SessionId, Sink)> {
    let capable = |session: &SessionId| {
        state
            .sessions
            .get(session)
            .is_some_and(|s| s.capabilities.answers(method))
    };
    let mut waiting: Vec<(u64, &SessionId, &Sink)> = state
        .pending
        .iter()
        .filter_map(|(u, p)| match p {
            Pending::Client { session, sink, .. } if capable(session) => Some((*u, session, sink)),
            _ => None,
        })
        .collect();
    waiting.sort_by_key(|(u, _, _)| std::cmp::Reverse(*u));
    for (_, session, sink) in waiting {
        if sink.carries_messages() {
            return Some((Arc::clone(session), sink.clone()));
        }
        if let Some(sink) = session_sink(state, session) {
            return Some((Arc::clone(session), sink));
        }
    }
    let last = state.last_active.iter().filter(|s| capable(s));
    let any = state.sessions.keys().filter(|s| capable(s));
    last.chain(any)
        .find_map(|s| session_sink(state, s).map(|sink| (Arc::clone(s), sink)))
}

fn answer_ok(sink: &Sink, id: &str) {
    let ok = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
    sink.send(Outbound::Response(Bytes::from(ok)));
}

fn answer_error(sink: &Sink, id: &str, message: &str) {
    let error = jsonrpc::error_response(None, jsonrpc::code::INTERNAL_ERROR, message);
    if let Some(error) = rewrite::replace_id(&error, id) {
        sink.send(Outbound::Response(error));
    }
}

/// The `result` of an `initialize` response, as raw JSON.
fn init_result(answer: &Bytes) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
    }
    let parsed: Answer<'_> = serde_json::from_slice(answer).ok()?;
    Some(answer.slice_ref(parsed.result?.get().as_bytes()))
}

async fn kill_tree(child: &mut tokio::process::Child) {
    crate::process::terminate_group(child).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sink_that_is_not_read_ends_at_its_limit() {
        let (sink, mut receiver) = Sink::new(true);
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        let mut accepted = 0;
        while sink.send(Outbound::Message(chunk.clone())) {
            accepted += 1;
            assert!(accepted <= 16, "more than SINK_LIMIT was queued");
        }
        assert_eq!(accepted, 16);
        assert!(
            !sink.carries_messages(),
            "an overflowed sink must count as closed"
        );
        assert!(receiver.recv().await.is_none(), "its body must end");
    }

    #[tokio::test]
    async fn a_sink_that_is_read_never_overflows() {
        let (sink, mut receiver) = Sink::new(true);
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        for _ in 0..64 {
            assert!(sink.send(Outbound::Message(chunk.clone())));
            assert!(
                matches!(receiver.recv().await, Some(Outbound::Message(m)) if m.len() == chunk.len())
            );
        }
        assert!(sink.carries_messages());
    }
}
