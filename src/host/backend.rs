//! One stdio child and its life: started, initialized, watched, started
//! again.
//!
//! A [`Backend`] owns the child process ([`super::child`]), started again
//! with back-off when it dies or stops answering `ping` while requests wait,
//! and re-set, once initialized, to the log level and subscriptions its
//! sessions had. Its [`Readiness`] says whether requests can go to the child
//! now, wait, or are refused at once (a crash loop: the last start failed
//! before the child was ready), and its [`ChildHealth`] what `/health`
//! reports. What goes where
//! between the sessions and the child is the [`Mux`]'s business; the backend
//! does the I/O the mux asks for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::child::{Child, ChildSpec, SpawnError};
use super::failure::{Cause, StartFailure, refusal_excerpt};
use super::health::{ChildHealth, ChildProcess, ChildState};
use super::modern::Modern;
use super::mux::{ClientCapabilities, Mux, ServerRequestRoute, SessionId};
use super::readiness::{End, Readiness, Verdict};
use super::sink::{Outbound, Sink};
use crate::jsonrpc::{self, Kind, Message, rewrite};
use crate::stdio::Output;
use crate::sync::lock;

/// How long the host waits on its child, and how often it checks on it.
#[derive(Debug, Clone, Copy)]
pub struct SupervisionTiming {
    /// How long the child may take to answer `initialize` (npx may download).
    pub initialize: Duration,
    /// How often the host pings the child while requests wait.
    pub ping_every: Duration,
    /// A child that does not answer a ping within this is restarted.
    pub ping_timeout: Duration,
}

impl Default for SupervisionTiming {
    fn default() -> Self {
        SupervisionTiming {
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
    /// Its last start failed (a crash loop): why, and when the next try is.
    #[error("{0}")]
    StartFailed(String),
    #[error("the server process restarted; the request may or may not have run ({0})")]
    Restarted(String),
}

/// The protocol version the host asks its child for.
pub const CHILD_PROTOCOL_VERSION: &str = crate::mcp::LATEST_VERSION;

/// One child and its sessions.
pub struct Backend {
    pub label: String,
    spec: ChildSpec,
    timing: SupervisionTiming,
    mux: Mutex<Mux>,
    /// The running child's stdin.
    stdin: Mutex<Option<Output>>,
    /// Whether sessions are served, wait or are refused (see
    /// [`super::readiness`]).
    ready: watch::Sender<Readiness>,
    health: Mutex<ChildHealth>,
    cancel: CancellationToken,
    /// The supervising task; done once the child is stopped and reaped.
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The 2026-07-28 era's own process, started at its first request
    /// (see [`super::modern`]).
    modern: Modern,
}

/// How long, after a child exited at start, its stderr is still read for
/// its last words (a child of its own may hold the pipe open).
const STDERR_GRACE: Duration = Duration::from_millis(300);

/// How long a child that closed its stdout at start is given to exit, so
/// that its exit status can be told.
const EXIT_GRACE: Duration = Duration::from_millis(300);

impl Backend {
    /// Starts the child (in the background) and returns the handle.
    pub fn start(label: String, spec: ChildSpec, timing: SupervisionTiming) -> Arc<Backend> {
        let modern = Modern::new(label.clone(), spec.clone(), timing.initialize);
        let backend = Arc::new(Backend {
            label,
            spec,
            modern,
            timing,
            mux: Mutex::new(Mux::default()),
            stdin: Mutex::new(None),
            ready: watch::Sender::new(Readiness::Starting),
            health: Mutex::new(ChildHealth::default()),
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
        lock(&self.mux).send_to_stream(session, message)
    }

    /// The 2026-07-28 side of this backend.
    pub fn modern(&self) -> &Modern {
        &self.modern
    }

    /// The child's health, for `/health`.
    pub fn health(&self) -> ChildHealth {
        lock(&self.health).clone()
    }

    /// The child's `initialize` result, waiting up to `timeout` for it
    /// while a child starts (or restarts after it ran); refused at once
    /// while the last start failed.
    ///
    /// # Errors
    /// [`BackendError::StartFailed`] with the failure and the next try when
    /// the last start failed (at once, or as soon as the start waited for
    /// fails); [`BackendError::NotReady`] with the reason when no child is
    /// ready in time.
    pub async fn initialize_result(&self, timeout: Duration) -> Result<Bytes, BackendError> {
        let mut ready = self.ready.subscribe();
        let wait = ready.wait_for(|r| r.verdict(Instant::now()) != Verdict::Wait);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(r)) => match r.verdict(Instant::now()) {
                Verdict::Serve(result) => Ok(result),
                Verdict::Refuse(message) => Err(BackendError::StartFailed(message)),
                Verdict::Wait => Err(BackendError::NotReady(r.waited_in_vain())),
            },
            _ => Err(BackendError::NotReady(self.ready.borrow().waited_in_vain())),
        }
    }

    /// Registers a session and what its client can answer.
    pub fn open_session(&self, session: SessionId, capabilities: ClientCapabilities) {
        lock(&self.mux).open_session(session, capabilities);
    }

    /// Has this session requests waiting on the child?
    pub fn has_pending(&self, session: &SessionId) -> bool {
        lock(&self.mux).has_pending(session)
    }

    /// Tells the child the roots may have changed: a session that can answer
    /// `roots/list` has arrived (a child's early `roots/list` found none).
    pub async fn roots_changed(&self) {
        self.to_child(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
        ))
        .await;
    }

    /// How many sessions use this child.
    pub fn session_count(&self) -> usize {
        lock(&self.mux).session_count()
    }

    /// Sets the session's GET stream. False if one is open already.
    pub fn set_stream(&self, session: &SessionId, sink: Sink) -> bool {
        lock(&self.mux).set_stream(session, sink)
    }

    /// Has this session an open GET stream?
    pub fn has_stream(&self, session: &SessionId) -> bool {
        lock(&self.mux).has_stream(session)
    }

    /// Ends a session: its requests are cancelled upstream, its server
    /// requests answered with an error, its subscriptions and level dropped.
    pub async fn close_session(&self, session: &SessionId) {
        let Some(end) = lock(&self.mux).close_session(session) else {
            return;
        };
        for line in end.to_child {
            self.to_child(line).await;
        }
        for uri in end.unsubscribe {
            self.internal_request("resources/unsubscribe", &serde_json::json!({ "uri": uri }))
                .await;
        }
        if let Some(level) = end.level {
            self.internal_request("logging/setLevel", &serde_json::json!({ "level": level }))
                .await;
        }
    }

    /// Handles one message from a session. Answers (to requests) go to `sink`.
    pub async fn handle(&self, session: &SessionId, message: Message, sink: Sink) {
        lock(&self.mux).touch(session);
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
                "notifications/cancelled" => {
                    let cancel = lock(&self.mux).client_cancel(session, &message.raw);
                    if let Some(cancel) = cancel {
                        self.to_child(cancel).await;
                    }
                }
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
                let answer = lock(&self.mux).client_answer(session, id.as_json(), &message.raw);
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
            sink.answer_error(&id, &error.to_string());
            return;
        }
        let registered = lock(&self.mux).client_request(session, id, &message.raw, sink);
        let Some((upstream, line)) = registered else {
            return;
        };
        if !self.to_child(line).await {
            lock(&self.mux).fail_request(upstream, "the server process is not running");
        }
    }

    async fn set_level(&self, session: &SessionId, message: &Message, id: &str, sink: &Sink) {
        let known = |l: &String| crate::mcp::log_level_rank(l).is_some();
        let Some(level) = rewrite::level(&message.raw).filter(known) else {
            sink.answer_error_code(id, jsonrpc::code::INVALID_PARAMS, "unknown log level");
            return;
        };
        let change = lock(&self.mux).set_level(session, level);
        if let Some(level) = change {
            self.internal_request("logging/setLevel", &serde_json::json!({ "level": level }))
                .await;
        }
        sink.answer_ok(id);
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
        let reaches_child = lock(&self.mux).change_subscription(session, uri, subscribe);
        if reaches_child {
            self.forward_request(session, message, id, sink).await;
        } else {
            sink.answer_ok(&id);
        }
    }

    /// Sends a request of the host's own and waits (bounded) for the answer.
    async fn internal_request(&self, method: &str, params: &serde_json::Value) -> Option<Bytes> {
        let (tx, rx) = oneshot::channel();
        let upstream = lock(&self.mux).host_request(tx);
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
        lock(&self.mux).forget(upstream);
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
            Kind::Response { id } => {
                let Ok(upstream) = id.as_json().parse::<u64>() else {
                    tracing::debug!(backend = %self.label, id = id.as_json(), "a response to an id the host never sent; dropped");
                    return;
                };
                if !lock(&self.mux).child_answer(upstream, raw) {
                    tracing::debug!(backend = %self.label, upstream, "a late response (the request was cancelled or its session ended)");
                }
            }
            Kind::Request { id, method } => {
                let route = lock(&self.mux).server_request(id.as_json(), method, &raw);
                if let ServerRequestRoute::NoSession { refusal } = route {
                    tracing::warn!(backend = %self.label, method, "a server request that no session can answer");
                    if let (Some(refusal), Some(stdin)) = (refusal, lock(&self.stdin).clone()) {
                        stdin.try_send(refusal);
                    }
                }
            }
            Kind::Notification { method } if method == "notifications/progress" => {
                if !lock(&self.mux).child_progress(&raw) {
                    tracing::debug!(backend = %self.label, "progress for an unknown token; dropped");
                }
            }
            Kind::Notification { method } => {
                // Routed under the lock, written outside it: the cost under
                // the lock is the number of sessions that want it.
                let (message, sinks) = lock(&self.mux).child_notification(method, &raw);
                for sink in sinks {
                    sink.send(Outbound::Message(message.clone()));
                }
            }
            Kind::OrphanError => {
                tracing::warn!(backend = %self.label, "the server reported an error for an unreadable message");
            }
        }
    }

    /// Keeps a child running until the backend is stopped.
    async fn supervise(self: Arc<Self>) {
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let started = Instant::now();
            self.ready.send_modify(Readiness::trying);
            let (end, child) = self.run_child().await;
            let Some(end) = end else {
                // Stopped: the process (if any) goes, for good.
                if let Some(child) = child {
                    child.terminate().await;
                }
                self.modern.stop().await;
                return;
            };
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let next_try = tokio::time::Instant::now() + delay;
            let stderr = child.as_ref().map(Child::stderr_lines).unwrap_or_default();
            self.ended(&end, stderr, delay, next_try.into_std());
            // Told first, stopped after: a child that ignores SIGTERM
            // delays no session (nor the next try it was told of).
            if let Some(child) = child {
                child.terminate().await;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next_try) => {}
                () = self.cancel.cancelled() => {
                    self.modern.stop().await;
                    return;
                }
            }
        }
    }

    /// Tells the sessions and `/health` how the child's run ended; the next
    /// try is `delay` from now, at `next_try`.
    fn ended(&self, end: &End, stderr: Vec<String>, delay: Duration, next_try: Instant) {
        let next_try_at = crate::paths::now_ms()
            .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        let (reason, start_error) = match end {
            End::Ran(reason) => (reason.clone(), None),
            End::FailedStart(failure) => (failure.reason(), Some(failure.message())),
        };
        tracing::warn!(backend = %self.label, reason, next_try_in = ?delay, "the server process ended; starting it again");
        self.ready.send_modify(|r| r.ended(end, next_try));
        // Every request waiting on the child that just ended fails.
        let message = match end {
            End::Ran(reason) => BackendError::Restarted(reason.clone()).to_string(),
            End::FailedStart(failure) => failure.message_with_next_try(Some(delay)),
        };
        lock(&self.mux).fail_all(&message);
        lock(&self.health).ended(reason, start_error, stderr, next_try_at);
    }

    /// Runs one child to its end: how it ended (`None` on stop) and the
    /// process, still to be terminated (`None` if none was spawned).
    async fn run_child(self: &Arc<Self>) -> (Option<End>, Option<Child>) {
        let failed = |cause| Some(End::FailedStart(StartFailure::new(cause)));
        let mut child = match Child::spawn(&self.spec) {
            Ok(child) => child,
            Err(SpawnError::Unstartable(reason)) => {
                return (failed(Cause::Unstartable(reason)), None);
            }
            Err(SpawnError::NoStdio) => return (failed(Cause::NoStdio), None),
        };
        let pid = child.pid;
        *lock(&self.stdin) = Some(child.stdin.clone());
        let this = Arc::clone(self);
        let Some(mut reader) = child.read_stdout(move |line| this.on_child_message(line)) else {
            *lock(&self.stdin) = None;
            return (failed(Cause::NoStdio), Some(child));
        };
        let process = ChildProcess {
            pid,
            started_at: crate::paths::now_ms(),
        };
        lock(&self.health).starting(process);
        let start = tokio::select! {
            ready = self.initialize_child() => ready,
            status = child.wait() => Err(exit_cause(status)),
            _ = &mut reader => {
                // Its exit (if it comes at once) says more than the pipe.
                match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(status) => Err(exit_cause(status)),
                    Err(_) => Err(Cause::ClosedStdout),
                }
            }
            () = self.cancel.cancelled() => {
                *lock(&self.stdin) = None;
                reader.abort();
                lock(&self.health).state = ChildState::Stopped(process);
                return (None, Some(child));
            }
        };
        let end = match start {
            Err(cause) => {
                *lock(&self.stdin) = None;
                reader.abort();
                if matches!(cause, Cause::Exited(_)) {
                    child.stderr_read(STDERR_GRACE).await;
                }
                let stderr = child.stderr_lines();
                Some(End::FailedStart(StartFailure { cause, stderr }))
            }
            Ok(()) => {
                lock(&self.health).running(process);
                tracing::info!(backend = %self.label, pid, "server process ready");
                let mut exited = false;
                let end = tokio::select! {
                    status = child.wait() => Some(match status {
                        Ok(status) => {
                            exited = true;
                            format!("it exited ({status})")
                        }
                        Err(e) => format!("cannot wait for it: {e}"),
                    }),
                    _ = &mut reader => Some("it closed its stdout".to_owned()),
                    reason = self.watchdog() => Some(reason),
                    () = self.cancel.cancelled() => None,
                };
                *lock(&self.stdin) = None;
                reader.abort();
                if exited {
                    // Its last words, for `/health`.
                    child.stderr_read(STDERR_GRACE).await;
                }
                if end.is_none() {
                    lock(&self.health).state = ChildState::Stopped(process);
                }
                end.map(End::Ran)
            }
        };
        (end, Some(child))
    }

    /// `initialize` + `initialized`, then the state the sessions had set.
    async fn initialize_child(&self) -> Result<(), Cause> {
        let params = serde_json::json!({
            "protocolVersion": CHILD_PROTOCOL_VERSION,
            // Both elicitation modes: the mux sends each only to sessions
            // that declared it, and refuses it when none did.
            "capabilities": {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "mcp-session-manager", "version": env!("CARGO_PKG_VERSION")},
        });
        let (tx, rx) = oneshot::channel();
        let upstream = lock(&self.mux).host_request(tx);
        let request = serde_json::json!({"jsonrpc": "2.0", "id": upstream, "method": "initialize", "params": params});
        self.to_child(Bytes::from(request.to_string())).await;
        let answer = tokio::time::timeout(self.timing.initialize, rx)
            .await
            .map_err(|_| Cause::NoAnswer(self.timing.initialize))?
            .map_err(|_| Cause::Unanswered)?;
        let result =
            init_result(&answer).ok_or_else(|| Cause::Refused(refusal_excerpt(&answer)))?;
        self.to_child(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await;
        let (level, uris) = lock(&self.mux).child_setup();
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
            if !lock(&self.mux).clients_waiting() {
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

/// Why a child that exited at start ended, from its wait.
fn exit_cause(status: std::io::Result<std::process::ExitStatus>) -> Cause {
    match status {
        Ok(status) => Cause::Exited(status.to_string()),
        Err(error) => Cause::Unwaitable(error.to_string()),
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
