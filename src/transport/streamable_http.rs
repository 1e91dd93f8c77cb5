//! Streamable HTTP, client side (MCP 2025-03-26 and later), and plain `http`.
//!
//! Every client message is one POST to the endpoint. A request's answer comes
//! back as a JSON body or as an SSE stream that may carry server requests and
//! notifications before the response; each is written to the client as it
//! arrives. The GET stream, for messages outside any request, is opened as
//! soon as the session exists (servers send `roots/list` and list changes
//! right after initialization; without a stream they would be lost). A POST stream cut before its response is
//! resumed with `Last-Event-ID`.
//!
//! A client in the 2026-07-28 style (its messages declare their version in
//! `_meta`, no `initialize`) gets that revision's headers on every POST
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) and no session
//! machinery the server does not give: no GET stream, no replay. An HTTP
//! error whose body is a JSON-RPC error for the request is the daemon's
//! answer, passed on as written.
//!
//! A GET answered 400 or 404 is "no standalone stream" unless our session
//! id is also refused a `ping`. A lost daemon (connection refused or reset,
//! the GET stream gone, 404 or "no valid session" for our session id) is
//! recovered from
//! ([`StreamableHttp::recover`]): the daemon is found again (and started,
//! for `--target`), a new session is opened with the client's own
//! `initialize`, its state restored ([`super::recovery`]); requests that
//! never reached the daemon, and reads, are sent again; anything else that
//! was cut gets an error saying it may or may not have run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener_check::StrangerListener;
use super::recovery::{self, InternalRequests, reconnect_backoff};
use super::{
    Delivered, Shared, StreamCursor, StreamEnd, http_error_data, read_sse, reqwest_reason,
    short_body, split_json_body,
};
use crate::http::{redacted, session_prefix};
use crate::jsonrpc::{self, Kind, Message, RawId};

use crate::mcp::{
    Declared, EVENT_STREAM, LAST_EVENT_ID_HEADER as LAST_EVENT_ID, METHOD_HEADER as MCP_METHOD,
    NAME_HEADER as MCP_NAME, PROTOCOL_VERSION_HEADER as MCP_PROTOCOL_VERSION,
    SESSION_ID_HEADER as MCP_SESSION_ID,
};

/// How often a cut POST stream is resumed before its request gets an error.
const MAX_RESUMES: u32 = 5;
/// A notification or response POST is answered with 202 at once; this only
/// keeps a hung daemon from blocking the ordered queue forever.
const ONE_WAY_TIMEOUT: Duration = Duration::from_secs(30);
/// A replayed `initialize` holds every other message back: bound it.
const REINITIALIZE_TIMEOUT: Duration = Duration::from_secs(60);
/// A `ping` that tells whether the old session still works.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);
/// `DELETE` at shutdown must not hold the exit up.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// GET stream reconnects: 1 s, then ×1.5, at most 30 s (a `retry:` overrides).
const GET_RETRY_FIRST: Duration = Duration::from_secs(1);
/// How long a recovery waits for the new session's GET stream before the
/// requests it held are sent.
const GET_ATTACH_WAIT: Duration = Duration::from_secs(2);
const GET_RETRY_MAX: Duration = Duration::from_secs(30);
/// The most of an HTTP error body read, to find the JSON-RPC error in it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Recoveries that follow each other closely wait first (250 ms, doubling
/// to 10 s), so that a daemon which keeps losing the session cannot make
/// the proxy re-initialize in a loop; after [`RECOVERY_CALM`] without one
/// the wait starts over.
const RECOVERY_PACE_FIRST: Duration = Duration::from_millis(250);
const RECOVERY_PACE_MAX: Duration = Duration::from_secs(10);
const RECOVERY_CALM: Duration = Duration::from_secs(30);

/// A Streamable HTTP session with one daemon.
pub struct StreamableHttp {
    shared: Shared,
    /// Where the daemon is; another port after a restart, maybe.
    endpoint: std::sync::Mutex<Url>,
    /// `false` for the plain `http` transport: JSON answers only.
    get_stream: bool,
    session: watch::Sender<Session>,
    ordered: mpsc::UnboundedSender<Message>,
    /// One re-initialization at a time.
    reinitializing: Mutex<()>,
    /// The session generation whose GET stream was last answered (attached,
    /// or refused for good): a recovery waits for it, bounded, before the
    /// requests it held go out, so that what a restored subscription sends
    /// has a stream to arrive on.
    get_answered: watch::Sender<u64>,
    /// When the last recovery ended, and the wait before the next one.
    pace: std::sync::Mutex<(Option<Instant>, crate::backoff::Backoff)>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug, Clone, Default)]
struct Session {
    phase: Phase,
    /// `Mcp-Session-Id`; `None` for a stateless server.
    id: Option<HeaderValue>,
    /// The negotiated version, sent as `MCP-Protocol-Version` after `initialize`.
    protocol_version: Option<HeaderValue>,
    /// The 2026-07-28 (or later) version the client's messages declare in
    /// `_meta`, with no `initialize`: every POST then carries it and
    /// `Mcp-Method` (and `Mcp-Name`), as that revision's transport requires.
    declared: Option<HeaderValue>,
    /// Counts sessions, so a task can tell that the one it used is gone.
    generation: u64,
    /// The generation whose GET stream has been opened.
    get_stream_opened: Option<u64>,
    /// Why the daemon could not be reached again (phase `Lost`).
    lost: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// No `initialize` yet: messages go out without session headers.
    #[default]
    New,
    /// `initialize` is on its way (or the daemon is being recovered):
    /// everything else waits.
    Initializing,
    Ready,
    /// The daemon did not come back within the bound: requests waiting got
    /// an error; the next one tries again.
    Lost,
}

/// Why a request got no answer from the daemon.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("cannot reach the daemon at {}: {reason}", redacted(url))]
    Unreachable {
        url: Url,
        reason: String,
        /// The daemon provably never got the request ([`super::never_reached`]).
        connect: bool,
    },
    /// The port is now another user's: no connection was made.
    #[error("{0}")]
    Stranger(StrangerListener),
    #[error("the daemon answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { status: StatusCode, body: String },
    #[error("the daemon no longer knows this session (HTTP 404)")]
    SessionExpired {
        /// The session generation that got the 404.
        generation: u64,
    },
    #[error("the daemon answered with content type {0:?}, not JSON or an event stream")]
    ContentType(String),
    #[error("the daemon's answer held no response to this request")]
    NoAnswer,
    #[error("the daemon's stream ended before the response ({0})")]
    StreamEnded(String),
    #[error("cannot read the daemon's answer: {0}")]
    Body(String),
    #[error("the client has gone")]
    ClientGone,
    #[error("the daemon is unreachable: {0}")]
    Lost(String),
    #[error(
        "the daemon was lost while this request ran ({0}); it may or may not have run, so it was not sent again"
    )]
    Restarted(String),
}

impl Failure {
    /// Does this look like the daemon went away (or forgot the session)?
    fn lost_daemon(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable { .. }
                | Failure::SessionExpired { .. }
                | Failure::StreamEnded(_)
                | Failure::Body(_)
        )
    }

    /// The daemon never saw the request: sending it again runs it once.
    fn never_sent(&self) -> bool {
        matches!(
            self,
            Failure::SessionExpired { .. } | Failure::Unreachable { connect: true, .. }
        )
    }

    fn data(&self) -> Option<serde_json::Value> {
        match self {
            Failure::Status { status, body } => Some(http_error_data(*status, body)),
            _ => None,
        }
    }
}

impl StreamableHttp {
    pub(crate) fn start(shared: Shared, endpoint: Url, get_stream: bool) -> Arc<StreamableHttp> {
        let (ordered, queue) = mpsc::unbounded_channel();
        let this = Arc::new(StreamableHttp {
            shared,
            endpoint: std::sync::Mutex::new(endpoint),
            get_stream,
            session: watch::Sender::new(Session::default()),
            ordered,
            reinitializing: Mutex::new(()),
            get_answered: watch::Sender::new(0),
            pace: std::sync::Mutex::new((
                None,
                crate::backoff::Backoff::new(RECOVERY_PACE_FIRST, RECOVERY_PACE_MAX),
            )),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        this.tasks.spawn(Arc::clone(&this).run_ordered(queue));
        this
    }

    /// See [`super::Upstream::send`].
    pub fn send(self: &Arc<Self>, message: Message) {
        self.shared.remember(&message);
        self.note_declared(&message);
        match message.method() {
            Some(method) if matches!(message.kind, Kind::Request { .. }) => {
                if method == "initialize" {
                    // Set now, not in the task: a message read right after
                    // `initialize` must already wait for its session id.
                    self.session.send_modify(|s| s.phase = Phase::Initializing);
                }
                let ticket = self.shared.order.ticket();
                self.tasks.spawn(Arc::clone(self).request(message, ticket));
            }
            _ => {
                self.shared.order.enqueue();
                // The receiver lives as long as `self` (its task holds an Arc).
                let _ = self.ordered.send(message);
            }
        }
    }

    /// A client message that declares its protocol version in `_meta` (the
    /// 2026-07-28 style) before any `initialize` puts the session in that
    /// style: its POSTs carry the version and `Mcp-Method` headers.
    fn note_declared(&self, message: &Message) {
        let Some(method) = message.method() else {
            return;
        };
        let Some(version) = Declared::of(method, &message.raw, false).version else {
            return;
        };
        let Ok(version) = HeaderValue::from_str(&version) else {
            return;
        };
        self.session.send_if_modified(|s| {
            let changed = s.protocol_version.is_none() && s.declared.as_ref() != Some(&version);
            if changed {
                s.declared = Some(version);
            }
            changed
        });
    }

    /// See [`super::Upstream::close`].
    pub async fn close(&self) {
        // Notifications and responses the client sent before the end go out
        // before the session does (bounded: a hung daemon must not hold the exit).
        let flushed = self.shared.order.wait_for(self.shared.order.ticket());
        let _ = tokio::time::timeout(DELETE_TIMEOUT, flushed).await;
        // From here on nothing new is POSTed: the DELETE must be the last word.
        self.cancel.cancel();
        self.tasks.close();
        let session = self.session.borrow().clone();
        let Some(id) = session.id.clone() else {
            return;
        };
        let request = self
            .shared
            .http
            .delete(self.endpoint())
            .headers(self.shared.headers.clone())
            .header(MCP_SESSION_ID, id.clone())
            .timeout(DELETE_TIMEOUT);
        let request = with_version(request, &session);
        match request.send().await {
            Ok(r) if r.status().is_success() || matches!(r.status().as_u16(), 404 | 405) => {
                tracing::debug!(session = %session_prefix(&id), status = %r.status(), "session ended with DELETE");
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "the daemon refused DELETE of the session")
            }
            Err(error) => {
                let error = reqwest_reason(&error);
                tracing::warn!(%error, "cannot send DELETE to end the session");
            }
        }
    }

    /// Sends notifications and responses one at a time, in order.
    async fn run_ordered(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Message>) {
        loop {
            let message = tokio::select! {
                message = queue.recv() => message,
                () = self.cancel.cancelled() => return,
            };
            let Some(message) = message else { return };
            self.wait_ready().await;
            if !self.cancel.is_cancelled() {
                self.one_way(&message).await;
            }
            self.shared.order.mark_sent();
        }
    }

    /// POSTs a notification or response; true if the daemon accepted it.
    async fn one_way(self: &Arc<Self>, message: &Message) -> bool {
        let message_is = message.method();
        for attempt in 0..2 {
            let session = self.session.borrow().clone();
            let request = self.post(&session, Some(message)).timeout(ONE_WAY_TIMEOUT);
            match self.shared.send(request.body(message.raw.clone())).await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r)
                    if r.status() == StatusCode::NOT_FOUND
                        && session.id.is_some()
                        && attempt == 0 =>
                {
                    let lost = "the daemon no longer knows our session (HTTP 404)";
                    if self.recover(session.generation, lost).await.is_err() {
                        return false;
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    let body = short_body(r).await;
                    tracing::warn!(method = message_is, %status, body, "the daemon refused a message");
                    return false;
                }
                Err(error) => {
                    let error = reqwest_reason(&error);
                    tracing::warn!(method = message_is, %error, "cannot send a message to the daemon");
                    return false;
                }
            }
        }
        false
    }

    /// Runs one client request to its one answer.
    async fn request(self: Arc<Self>, message: Message, ticket: u64) {
        let Kind::Request { id, method } = &message.kind else {
            return;
        };
        let is_initialize = method == "initialize";
        self.shared.order.wait_for(ticket).await;
        if !is_initialize {
            if let Err(reason) = self.ready_or_recover().await {
                let _ = self.shared.inbound.fail(id, &reason, None).await;
                return;
            }
        }
        if self.cancel.is_cancelled() {
            return; // the session is over; the client is gone or going
        }
        let mut resent = false;
        let mut init_retry: Option<(Instant, crate::backoff::Backoff)> = None;
        let result = loop {
            let generation = self.session.borrow().generation;
            let result = self.exchange(&message, id, is_initialize).await;
            let failure = match result {
                Err(failure) if is_initialize && failure.lost_daemon() => {
                    // `initialize` opens the session: nothing ran on a daemon
                    // that died before answering it, so it is sent again on
                    // the recovered daemon, within the reconnect bound. (A
                    // first refused connection at `--url` is told at once:
                    // nothing listens there.)
                    let first_refused = init_retry.is_none()
                        && failure.never_sent()
                        && self.shared.recovery.rediscover.is_none();
                    if first_refused || !self.shared.inbound.is_pending(id) {
                        break Err(failure);
                    }
                    let (deadline, backoff) = init_retry.get_or_insert_with(|| {
                        let deadline = Instant::now() + self.shared.recovery.timeout;
                        (deadline, reconnect_backoff())
                    });
                    match self.await_daemon(*deadline, backoff, &failure).await {
                        Ok(()) => {
                            tracing::info!(%id, "sending initialize again: the daemon was lost before it answered");
                            continue;
                        }
                        Err(lost) => break Err(Failure::Lost(lost)),
                    }
                }
                Err(failure) if !is_initialize && !resent && failure.lost_daemon() => failure,
                other => break other,
            };
            if !self.shared.inbound.is_pending(id) {
                break Ok(()); // cancelled meanwhile: nothing is owed
            }
            resent = true;
            let reason = failure.to_string();
            let check_alive = !failure.never_sent();
            if failure.never_sent() || crate::mcp::is_safe_read(method) {
                match self.recover_checked(generation, &reason, check_alive).await {
                    Ok(()) => {
                        tracing::info!(%id, method, "sending again on the new daemon session");
                        continue;
                    }
                    Err(lost) => break Err(Failure::Lost(lost)),
                }
            }
            // Recover for the requests to come, without this one.
            let this = Arc::clone(&self);
            let why = reason.clone();
            self.tasks
                .spawn(async move { this.recover_checked(generation, &why, true).await });
            break Err(Failure::Restarted(reason));
        };
        if is_initialize {
            // On success `exchange` made the session ready; on failure let
            // the messages waiting for it go (they will fail on their own).
            self.session.send_if_modified(|s| {
                let stuck = s.phase == Phase::Initializing;
                if stuck {
                    s.phase = Phase::New;
                }
                stuck
            });
        }
        match result {
            Ok(()) | Err(Failure::ClientGone) => {}
            Err(failure) => {
                tracing::warn!(%id, method, %failure, "request failed");
                let data = failure.data();
                let _ = self
                    .shared
                    .inbound
                    .fail(id, &failure.to_string(), data.as_ref())
                    .await;
            }
        }
    }

    /// One POST of a request, and reading its answer to the end.
    async fn exchange(
        self: &Arc<Self>,
        message: &Message,
        id: &RawId,
        is_initialize: bool,
    ) -> Result<(), Failure> {
        let is_replay = is_initialize && self.shared.inbound.is_internal(id);
        let session = self.session.borrow().clone();
        let request = if is_initialize {
            self.post_initialize()
        } else {
            self.post(&session, Some(message))
        };
        let request = request.body(message.raw.clone());
        let response = (self.shared.send(request).await).map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let new_session_id = if is_initialize && status.is_success() {
            session_id_of(&response)
        } else {
            None
        };
        if session.id.is_some() && !is_initialize {
            if status == StatusCode::NOT_FOUND {
                return Err(Failure::SessionExpired {
                    generation: session.generation,
                });
            }
            if status == StatusCode::BAD_REQUEST {
                // Some servers (the TypeScript SDK's) answer an unknown
                // session with 400 "No valid session ID provided".
                let body = error_body(response).await;
                if String::from_utf8_lossy(&body)
                    .to_ascii_lowercase()
                    .contains("session")
                {
                    return Err(Failure::SessionExpired {
                        generation: session.generation,
                    });
                }
                return self.refused(status, body, id).await;
            }
        }
        if let Some(session_id) = new_session_id.clone() {
            // Known before the answer is read, so a cut answer stream can be
            // resumed within this session.
            self.session.send_modify(|s| s.id = Some(session_id));
        }
        if !status.is_success() {
            let body = error_body(response).await;
            return self.refused(status, body, id).await;
        }
        let answer = match media_type(&response).as_deref() {
            Some("application/json") => {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| Failure::Body(reqwest_reason(&e)))?;
                self.deliver_json(body, id).await?
            }
            Some(EVENT_STREAM) => self.follow_stream(response, id).await?,
            // 202 (or an empty 2xx) for a request: its answer can only come
            // on the GET stream, which the plain `http` transport lacks.
            None if self.get_stream
                && (status == StatusCode::ACCEPTED || response.content_length() == Some(0)) =>
            {
                None
            }
            other => return Err(Failure::ContentType(other.unwrap_or("none").to_owned())),
        };
        let refused = answer.as_deref().is_some_and(is_error_response);
        if is_initialize && refused && !is_replay && new_session_id.is_none() {
            // The daemon refused the session (a hosted server that fails at
            // start): the client has its error; nothing is open, so no GET
            // stream and no recovery. The phase goes back to `New`.
            return Ok(());
        }
        if is_initialize {
            let version = answer
                .as_deref()
                .and_then(jsonrpc::negotiated_protocol_version)
                .and_then(|v| HeaderValue::from_str(&v).ok());
            if let Some(session_id) = &new_session_id {
                tracing::info!(session = %session_prefix(session_id), "session opened");
            }
            self.session.send_modify(|s| {
                s.phase = if is_replay {
                    // Stays closed until the replayed `initialized` is accepted.
                    Phase::Initializing
                } else {
                    Phase::Ready
                };
                s.id = new_session_id;
                s.protocol_version = version;
                // The client fell back to `initialize`: the session is in
                // the negotiated version's style from here on.
                s.declared = None;
                s.generation += 1;
            });
            if !is_replay {
                self.open_get_stream();
            }
        }
        Ok(())
    }

    /// An HTTP error answer to request `id`. A body that is a JSON-RPC error
    /// for it (its id, or `null`) is the daemon's answer: the client gets
    /// it as written (code, message, data), with its own id. Anything else
    /// is [`Failure::Status`].
    async fn refused(&self, status: StatusCode, body: Bytes, id: &RawId) -> Result<(), Failure> {
        if let Some(answer) = rpc_error_for(&body, id) {
            tracing::debug!(%id, %status, "the daemon answered with a JSON-RPC error over HTTP");
            return match self.shared.inbound.deliver(answer, Some(id)).await {
                Ok(_) => Ok(()),
                Err(_) => Err(Failure::ClientGone),
            };
        }
        Err(Failure::Status {
            status,
            body: short_text(&body),
        })
    }

    /// Hands a JSON answer to the inbound; returns the response to `id`.
    async fn deliver_json(&self, body: Bytes, id: &RawId) -> Result<Option<Bytes>, Failure> {
        let mut answer = None;
        for message in split_json_body(body) {
            match self.shared.inbound.deliver(message, Some(id)).await {
                Ok(Delivered::Response(rid, raw)) if &rid == id => answer = Some(raw),
                Ok(_) => {}
                Err(_) => return Err(Failure::ClientGone),
            }
        }
        match answer {
            Some(answer) => Ok(Some(answer)),
            None if !self.shared.inbound.is_pending(id) => Ok(None),
            None => Err(Failure::NoAnswer),
        }
    }

    /// Reads a POST's event stream up to its response, resuming it with
    /// `Last-Event-ID` if the connection is cut first.
    async fn follow_stream(
        &self,
        response: Response,
        id: &RawId,
    ) -> Result<Option<Bytes>, Failure> {
        let mut cursor = StreamCursor::default();
        let mut end = read_sse(
            response,
            &*self.shared.inbound,
            Some(id),
            &mut cursor,
            ignore,
        )
        .await;
        let mut resumes = 0;
        loop {
            let reason = match end {
                StreamEnd::Answered(raw) => return Ok(Some(raw)),
                StreamEnd::ClientGone => return Err(Failure::ClientGone),
                // Answered elsewhere, or cancelled by the client: nothing is owed.
                _ if !self.shared.inbound.is_pending(id) => return Ok(None),
                StreamEnd::Closed => "closed by the daemon".to_owned(),
                StreamEnd::Broken(reason) => reason,
            };
            let Some(last_event_id) = cursor.last_event_id.clone() else {
                return Err(Failure::StreamEnded(format!(
                    "{reason}; it cannot be resumed"
                )));
            };
            if resumes == MAX_RESUMES || self.cancel.is_cancelled() {
                return Err(Failure::StreamEnded(reason));
            }
            resumes += 1;
            let pause = cursor
                .retry
                .map_or(Duration::from_millis(100) * resumes, clamp_retry);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.cancel.cancelled() => return Err(Failure::StreamEnded(reason)),
            }
            tracing::info!(%id, resumes, "resuming a cut answer stream");
            let session = self.session.borrow().clone();
            let resumed = self
                .shared
                .send(self.get(&session, Some(&last_event_id)))
                .await;
            end = match resumed {
                Ok(r)
                    if r.status().is_success()
                        && media_type(&r).as_deref() == Some(EVENT_STREAM) =>
                {
                    read_sse(r, &*self.shared.inbound, Some(id), &mut cursor, ignore).await
                }
                Ok(r) => StreamEnd::Broken(format!("resuming got HTTP {}", r.status())),
                Err(e) => StreamEnd::Broken(reqwest_reason(&e)),
            };
        }
    }

    fn open_get_stream(self: &Arc<Self>) {
        if !self.get_stream {
            return;
        }
        let mut generation = None;
        self.session.send_if_modified(|s| {
            if s.phase != Phase::Ready || s.get_stream_opened == Some(s.generation) {
                return false;
            }
            s.get_stream_opened = Some(s.generation);
            generation = Some(s.generation);
            true
        });
        if let Some(generation) = generation {
            self.tasks
                .spawn(Arc::clone(self).run_get_stream(generation));
        }
    }

    /// Keeps the GET stream open for this session: server requests and
    /// notifications outside any request arrive here.
    async fn run_get_stream(self: Arc<Self>, generation: u64) {
        let mut cursor = StreamCursor::default();
        let mut backoff = crate::backoff::Backoff::new(GET_RETRY_FIRST, GET_RETRY_MAX);
        loop {
            let session = self.session.borrow().clone();
            if session.generation != generation {
                return;
            }
            let request = self
                .shared
                .send(self.get(&session, cursor.last_event_id.as_deref()));
            let response = tokio::select! {
                r = request => r,
                () = self.cancel.cancelled() => return,
            };
            match response {
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!("the daemon offers no GET stream (405)");
                    self.get_answered.send_replace(generation);
                    return;
                }
                Ok(r) if r.status() == StatusCode::CONFLICT => {
                    tracing::debug!("the daemon already has a GET stream for this session (409)");
                    self.get_answered.send_replace(generation);
                    return;
                }
                Ok(r) if matches!(r.status(), StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) => {
                    // Without a session id there is no session to lose: the
                    // daemon has no standalone stream (a stateless server,
                    // the 2026-07-28 revision). With one, the session is
                    // lost only if it no longer answers a `ping` either.
                    let status = r.status();
                    if session.id.is_some() {
                        let lost = format!("the GET stream's session is gone (HTTP {status})");
                        let recovered = self.recover_checked(generation, &lost, true).await;
                        if recovered.is_err() || self.session.borrow().generation != generation {
                            return; // lost, or the new session has its own stream
                        }
                    }
                    tracing::debug!(%status, "the daemon offers no GET stream");
                    self.get_answered.send_replace(generation);
                    return;
                }
                Ok(r)
                    if r.status().is_success()
                        && media_type(&r).as_deref() == Some(EVENT_STREAM) =>
                {
                    backoff.reset();
                    self.get_answered.send_replace(generation);
                    // Dropping a half-read stream on shutdown is fine: the
                    // session is ending and nothing else reads from it.
                    let end = tokio::select! {
                        end = read_sse(r, &*self.shared.inbound, None, &mut cursor, ignore) => end,
                        () = self.cancel.cancelled() => return,
                    };
                    match end {
                        StreamEnd::ClientGone => return,
                        StreamEnd::Broken(reason) => tracing::debug!(reason, "GET stream cut"),
                        _ => tracing::debug!("GET stream closed by the daemon"),
                    }
                }
                Ok(r) => tracing::debug!(status = %r.status(), "GET stream refused"),
                Err(error) if error.is_connect() => {
                    let lost = format!("cannot reopen the GET stream: {}", reqwest_reason(&error));
                    self.recover(generation, &lost).await.ok();
                    return;
                }
                Err(error) => {
                    tracing::debug!(error = %reqwest_reason(&error), "cannot open the GET stream")
                }
            }
            let delay = backoff.next_delay();
            let wait = cursor.retry.map_or(delay, clamp_retry);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// Gets the client a working session again after the daemon was lost
    /// (or forgot ours): finds the daemon (starting it, for `--target`),
    /// opens a new session with the client's `initialize`, restores its
    /// state. One recovery at a time; requests wait meanwhile. Bounded by
    /// the recovery timeout; `Err` says why the daemon is still lost.
    async fn recover(self: &Arc<Self>, lost_generation: u64, reason: &str) -> Result<(), String> {
        self.recover_checked(lost_generation, reason, false).await
    }

    /// [`Self::recover`]; with `check_alive`, first asks the old session
    /// for a `ping` (the sign of loss was ambiguous: a cut stream).
    async fn recover_checked(
        self: &Arc<Self>,
        lost_generation: u64,
        reason: &str,
        check_alive: bool,
    ) -> Result<(), String> {
        let _one_at_a_time = self.reinitializing.lock().await;
        if self.cancel.is_cancelled() {
            return Err("the session is ending".into()); // never open a new one
        }
        {
            let session = self.session.borrow();
            if session.generation != lost_generation && session.phase != Phase::Lost {
                return Ok(()); // another task already did it
            }
        }
        if self.shared.replay.replay().is_none() || lost_generation == 0 {
            // No session was ever opened: nothing to recover, only to report.
            return Err(reason.to_owned());
        }
        if check_alive && self.session_works().await {
            return Ok(()); // a passing hiccup: the daemon still knows us
        }
        self.pace_recovery().await;
        if self.cancel.is_cancelled() {
            return Err("the session is ending".into());
        }
        let started = Instant::now();
        tracing::warn!(reason, "daemon lost; reconnecting");
        self.session.send_modify(|s| {
            s.phase = Phase::Initializing;
            s.lost = None;
        });
        let deadline = started + self.shared.recovery.timeout;
        let mut backoff = reconnect_backoff();
        let mut last = reason.to_owned();
        let mut settled = false;
        loop {
            if let Some(rediscover) = &self.shared.recovery.rediscover {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rediscover()).await {
                    Ok(Ok(url)) => self.set_endpoint(url),
                    Ok(Err(error)) if recovery::Final::is(&*error) => {
                        // Waiting out the bound would change nothing.
                        last = error.to_string();
                        settled = true;
                        break;
                    }
                    Ok(Err(error)) => last = error.to_string(),
                    Err(_) => break,
                }
            }
            if !self.cancel.is_cancelled() {
                match self.open_session().await {
                    Ok(()) => {
                        recovery::restore(self, &self.shared.kept, &*self.shared.inbound).await;
                        self.session.send_modify(|s| s.phase = Phase::Ready);
                        self.open_get_stream();
                        self.await_get_stream().await;
                        let ms = started.elapsed().as_millis();
                        tracing::warn!(ms, "reconnected to the daemon");
                        crate::sync::lock(&self.pace).0 = Some(Instant::now());
                        return Ok(());
                    }
                    Err(failed) if failed.settled => {
                        // Another user holds the port: waiting out the
                        // bound would only delay the answer. The next
                        // request checks again.
                        settled = true;
                        last = failed.reason;
                        break;
                    }
                    Err(failed) => last = failed.reason,
                }
            }
            let delay = backoff.next_delay();
            if self.cancel.is_cancelled() || Instant::now() + delay >= deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => break,
            }
        }
        let timeout = self.shared.recovery.timeout;
        let lost = if settled {
            last
        } else {
            format!("not back after {timeout:?} ({last})")
        };
        tracing::error!(%lost, "the daemon is lost; the next request tries again");
        self.session.send_modify(|s| {
            s.phase = Phase::Lost;
            s.lost = Some(lost.clone());
        });
        Err(lost)
    }

    /// Waits before a recovery that follows the last one closely: a step of
    /// the pace back-off, which starts over after [`RECOVERY_CALM`].
    async fn pace_recovery(&self) {
        let wait = {
            let mut pace = crate::sync::lock(&self.pace);
            let (last, backoff) = &mut *pace;
            match last {
                Some(ended) if ended.elapsed() < RECOVERY_CALM => backoff.next_delay(),
                _ => {
                    backoff.reset();
                    Duration::ZERO
                }
            }
        };
        if wait.is_zero() {
            return;
        }
        tracing::debug!(
            ms = wait.as_millis(),
            "the last recovery was recent; waiting first"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.cancel.cancelled() => {}
        }
    }

    /// Waits a back-off step for a lost daemon to come back before an
    /// `initialize` is sent again (finding it again, for `--target`). `Err`
    /// once the deadline would pass: why the daemon is still lost.
    async fn await_daemon(
        &self,
        deadline: Instant,
        backoff: &mut crate::backoff::Backoff,
        failure: &Failure,
    ) -> Result<(), String> {
        let timeout = self.shared.recovery.timeout;
        let lost = || {
            format!(
                "the daemon was lost before it answered initialize and is not back after {timeout:?} ({failure})"
            )
        };
        let delay = backoff.next_delay();
        if self.cancel.is_cancelled() || Instant::now() + delay >= deadline {
            return Err(lost());
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.cancel.cancelled() => return Err(lost()),
        }
        if let Some(rediscover) = &self.shared.recovery.rediscover {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rediscover()).await {
                Ok(Ok(url)) => self.set_endpoint(url),
                Ok(Err(error)) => tracing::debug!(%error, "cannot find the daemon again yet"),
                Err(_) => return Err(lost()),
            }
        }
        Ok(())
    }

    /// Waits (at most [`GET_ATTACH_WAIT`]) for the GET stream of the
    /// current session to be answered.
    async fn await_get_stream(&self) {
        if !self.get_stream {
            return;
        }
        let generation = self.session.borrow().generation;
        let mut answered = self.get_answered.subscribe();
        let _ = tokio::time::timeout(
            GET_ATTACH_WAIT,
            answered.wait_for(|answered| *answered >= generation),
        )
        .await;
    }

    /// Does the current session still answer a `ping`?
    async fn session_works(self: &Arc<Self>) -> bool {
        if self.session.borrow().id.is_none() {
            return false;
        }
        let ping = self.internal_request("ping", "{}".to_owned());
        matches!(
            tokio::time::timeout(LIVENESS_TIMEOUT, ping).await,
            Ok(Some(_))
        )
    }

    /// Opens a new session with the client's own `initialize` and sends its
    /// `initialized`; the phase stays `Initializing` for the caller.
    async fn open_session(self: &Arc<Self>) -> Result<(), OpenFailed> {
        let (id, raw, initialized) = self
            .shared
            .replay
            .replay()
            .ok_or_else(|| OpenFailed::from("the client has not initialized"))?;
        let message = jsonrpc::classify(raw).map_err(|e| OpenFailed::from(e.to_string()))?;
        let answer = self.shared.inbound.begin_internal(id.clone());
        let replayed =
            tokio::time::timeout(REINITIALIZE_TIMEOUT, self.exchange(&message, &id, true)).await;
        self.shared.inbound.abandon_internal(&id);
        match replayed {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                return Err(OpenFailed {
                    settled: matches!(failure, Failure::Stranger(_)),
                    reason: failure.to_string(),
                });
            }
            Err(_) => return Err("the daemon did not answer initialize".into()),
        }
        let Ok(answer) = answer.await else {
            return Err("the daemon sent no answer to initialize".into());
        };
        // The daemon itself said no (a hosted server in a crash loop, say):
        // its words, and no point in asking again before the next request.
        if let Some(refusal) = jsonrpc::error_message(&answer) {
            return Err(OpenFailed {
                reason: refusal,
                settled: true,
            });
        }
        let session = self.session.borrow().clone();
        let request = self.post(&session, None).timeout(ONE_WAY_TIMEOUT);
        let sent = self.shared.send(request.body(initialized)).await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(OpenFailed::from(format!(
                "the daemon refused initialized (HTTP {})",
                r.status()
            ))),
            Err(e) => Err(OpenFailed {
                settled: StrangerListener::find(&e).is_some(),
                reason: reqwest_reason(&e),
            }),
        }
    }

    /// Waits while the session is being opened or recovered. A request that
    /// arrives while the daemon is lost tries to recover it; one that waited
    /// through a recovery that failed gets its reason.
    async fn ready_or_recover(self: &Arc<Self>) -> Result<(), String> {
        let arrived_lost = self.session.borrow().phase == Phase::Lost;
        let mut session = self.session.subscribe();
        let now = match session.wait_for(|s| s.phase != Phase::Initializing).await {
            Ok(now) => now.clone(),
            Err(_) => return Ok(()),
        };
        if now.phase != Phase::Lost {
            return Ok(());
        }
        if arrived_lost {
            let lost = now.lost.clone().unwrap_or_default();
            return self.recover(now.generation, &lost).await;
        }
        Err(format!(
            "the daemon is unreachable: {}",
            now.lost.unwrap_or_default()
        ))
    }

    async fn wait_ready(&self) {
        let mut session = self.session.subscribe();
        // Fails only when the sender is dropped, i.e. never while `self` lives.
        let _ = session.wait_for(|s| s.phase != Phase::Initializing).await;
    }

    fn endpoint(&self) -> Url {
        crate::sync::lock(&self.endpoint).clone()
    }

    fn set_endpoint(&self, url: Url) {
        let mut endpoint = crate::sync::lock(&self.endpoint);
        if *endpoint != url {
            tracing::info!(url = %redacted(&url), "the daemon moved");
            self.shared.moved_to(&url);
            *endpoint = url;
        }
    }

    /// A POST of `initialize`: no session headers.
    fn post_initialize(&self) -> RequestBuilder {
        self.shared
            .http
            .post(self.endpoint())
            .headers(self.shared.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
    }

    /// A POST in `session` (of `message`, whose headers a 2026-07-28
    /// exchange mirrors: [`with_declared`]).
    fn post(&self, session: &Session, message: Option<&Message>) -> RequestBuilder {
        let request = with_session(self.post_initialize(), session);
        match message {
            Some(message) if session.declared.is_some() || session.protocol_version.is_none() => {
                with_declared(request, session, message)
            }
            _ => with_version(request, session),
        }
    }

    fn get(&self, session: &Session, last_event_id: Option<&str>) -> RequestBuilder {
        let mut request = self
            .shared
            .http
            .get(self.endpoint())
            .headers(self.shared.headers.clone())
            .header(ACCEPT, EVENT_STREAM);
        if let Some(last) = last_event_id.and_then(|l| HeaderValue::from_str(l).ok()) {
            request = request.header(LAST_EVENT_ID, last);
        }
        with_version(with_session(request, session), session)
    }

    fn unreachable(&self, error: &reqwest::Error) -> Failure {
        if let Some(refused) = StrangerListener::find(error) {
            return Failure::Stranger(refused.clone());
        }
        Failure::Unreachable {
            url: self.endpoint(),
            reason: reqwest_reason(error),
            connect: super::never_reached(error, self.shared.loopback),
        }
    }
}

/// Why a new session could not be opened on a recovered daemon.
struct OpenFailed {
    reason: String,
    /// Final for now (the next request tries again): the port is another
    /// user's ([`Failure::Stranger`]), or the daemon refused `initialize`.
    settled: bool,
}

impl<T: Into<String>> From<T> for OpenFailed {
    fn from(reason: T) -> OpenFailed {
        OpenFailed {
            reason: reason.into(),
            settled: false,
        }
    }
}

impl InternalRequests for Arc<StreamableHttp> {
    async fn internal_request(&self, method: &'static str, params: String) -> Option<Bytes> {
        let (id, message, answer) = self.shared.internal_message(method, &params)?;
        let sent = tokio::time::timeout(
            recovery::INTERNAL_TIMEOUT,
            self.exchange(&message, &id, false),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            self.shared.inbound.abandon_internal(&id);
            return None;
        }
        let answer = tokio::time::timeout(recovery::INTERNAL_TIMEOUT, answer).await;
        self.shared.inbound.abandon_internal(&id);
        answer.ok()?.ok()
    }
}

/// A server's `retry:` within sane bounds: no busy loop, no endless wait.
fn clamp_retry(retry: Duration) -> Duration {
    retry.clamp(Duration::from_millis(100), GET_RETRY_MAX)
}

fn with_session(request: RequestBuilder, session: &Session) -> RequestBuilder {
    match &session.id {
        Some(id) => request.header(MCP_SESSION_ID, id.clone()),
        None => request,
    }
}

/// The headers of the 2026-07-28 transport for `message`: its declared
/// version (or the session's) as `MCP-Protocol-Version`, its method as
/// `Mcp-Method`, its target as `Mcp-Name`. A message that declares nothing
/// in a session that declared nothing gets only the negotiated version.
fn with_declared(request: RequestBuilder, session: &Session, message: &Message) -> RequestBuilder {
    let Some(method) = message.method() else {
        return with_version(request, session);
    };
    let declared = Declared::of(method, &message.raw, session.declared.is_some());
    let version = declared
        .version
        .and_then(|v| HeaderValue::from_str(&v).ok())
        .or_else(|| session.declared.clone());
    let Some(version) = version else {
        return with_version(request, session);
    };
    let mut request = request.header(MCP_PROTOCOL_VERSION, version);
    if let Ok(method) = HeaderValue::from_str(method) {
        request = request.header(MCP_METHOD, method);
    }
    let name = declared
        .name
        .and_then(|name| HeaderValue::from_str(&crate::mcp::header_value(&name)).ok());
    match name {
        Some(name) => request.header(MCP_NAME, name),
        None => request,
    }
}

fn with_version(request: RequestBuilder, session: &Session) -> RequestBuilder {
    match &session.protocol_version {
        Some(version) => request.header(MCP_PROTOCOL_VERSION, version.clone()),
        None => request,
    }
}

/// `Mcp-Session-Id`, if present and made of visible ASCII as the spec requires.
fn session_id_of(response: &Response) -> Option<HeaderValue> {
    let id = response.headers().get(MCP_SESSION_ID)?;
    let visible = !id.is_empty() && id.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b));
    if !visible {
        tracing::warn!(
            "the daemon sent an Mcp-Session-Id with characters outside visible ASCII; ignored"
        );
        return None;
    }
    Some(id.clone())
}

/// The media type, lowercased, without parameters.
fn media_type(response: &Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

fn ignore(_event: &str, _data: &str) {}

/// At most [`ERROR_BODY_LIMIT`] of an HTTP error answer (bounded in time too).
async fn error_body(response: Response) -> Bytes {
    use futures_util::StreamExt;
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_LIMIT {
                body.truncate(ERROR_BODY_LIMIT);
                break;
            }
        }
        body
    })
    .await
    .unwrap_or_default();
    Bytes::from(read)
}

/// Up to 300 characters of an error body, for [`Failure::Status`].
fn short_text(body: &[u8]) -> String {
    const LIMIT: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `body` as the JSON-RPC error answering `id`: a single error response
/// whose id is `id` or `null` (then given `id`). `None` for anything else.
fn rpc_error_for(body: &Bytes, id: &RawId) -> Option<Bytes> {
    let message = jsonrpc::classify(body.clone()).ok()?;
    match &message.kind {
        Kind::Response { id: answered } if answered == id && is_error_response(body) => {
            Some(message.raw)
        }
        Kind::OrphanError => jsonrpc::rewrite::replace_id(&message.raw, id.as_json()),
        _ => None,
    }
}

/// Is `answer` a JSON-RPC error response (an `error`, no `result`)?
fn is_error_response(answer: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer {
        result: Option<serde::de::IgnoredAny>,
        error: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Answer>(answer).is_ok_and(|a| a.result.is_none() && a.error.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(json: &str) -> RawId {
        let raw = format!(r#"{{"jsonrpc":"2.0","id":{json},"method":"ping"}}"#);
        jsonrpc::classify(Bytes::from(raw))
            .ok()
            .and_then(|m| m.id().cloned())
            .expect("a request id")
    }

    #[test]
    fn an_error_body_for_the_request_is_its_answer() {
        let own = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32022,"message":"no","data":{"supported":["2026-07-28"]}}}"#,
        );
        assert_eq!(rpc_error_for(&own, &id("7")), Some(own.clone()));
        assert_eq!(
            rpc_error_for(&own, &id("8")),
            None,
            "another request's error"
        );
        let orphan = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"mismatch"}}"#,
        );
        let fixed = rpc_error_for(&orphan, &id(r#""a""#)).expect("given the request's id");
        let fixed: serde_json::Value = serde_json::from_slice(&fixed).expect("json");
        assert_eq!(fixed["id"], "a");
        assert_eq!(fixed["error"]["code"], -32020);
        for other in [
            &b"Bad Request"[..],
            br#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            br#"[{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}]"#,
        ] {
            assert_eq!(rpc_error_for(&Bytes::from_static(other), &id("7")), None);
        }
        assert_eq!(short_text("é".repeat(400).as_bytes()).chars().count(), 301);
    }
}
