//! The multiplexing state of one child shared by many sessions: pure state,
//! no I/O (a [`Sink`] is an in-memory queue).
//!
//! Every id the child sees is the host's own ([`Mux::next_id`]), so the ids
//! of two sessions never collide: a client request's id is rewritten on the
//! way in and restored on its answer, and so are progress tokens and the ids
//! of server requests sent to a session. The [`Mux`] also counts who
//! subscribed to which resource (only the first subscribe and the last
//! unsubscribe reach the child) and the log level each session asked for
//! (the child runs at the most verbose one).
//!
//! The child keys some state by ids of its own and sees one client (the
//! host), so the mux keeps who owns it ([`tasks`]): a task (2025-11-25,
//! SEP-1686) belongs to the session its `CreateTaskResult` went to, a
//! URL-mode elicitation to the session its `elicitation/create` went to.
//!
//! Routing rules, server → client (nothing that belongs to one session is
//! sent to another):
//! - a response goes to the request it answers (ids are rewritten
//!   upstream); a `tasks/list` answer is cut to the session's own tasks
//!   (`nextCursor` kept, so a page may come short);
//! - progress goes to the request that carries its token (its session once
//!   that stream closed; a token stays valid while the task its request
//!   created lives);
//! - `notifications/tasks/status`, and any message whose `_meta` carries
//!   `io.modelcontextprotocol/related-task`, goes to the task's owner only;
//!   for a task the host does not know (never seen, expired, evicted) a
//!   notification goes nowhere;
//! - `notifications/elicitation/complete` goes to the session its
//!   elicitation went to, only; unknown: nowhere;
//! - a server request related to a known task goes to its owner (on the
//!   owner's `tasks/result` stream for that task if one waits, else its GET
//!   stream or newest open request stream), or is refused if the owner
//!   cannot answer it; any other server request (`sampling/createMessage`,
//!   `roots/list`, `elicitation/create`, `ping`) goes to the session whose
//!   request was sent to the child most recently among those still
//!   waiting; with none waiting, to the session that was active last;
//!   either way only to a session whose client declared the capability it
//!   needs (`elicitation/create` by mode: `form`, `url`), else it is refused;
//! - `notifications/cancelled` goes to the session the cancelled server
//!   request went to;
//! - `notifications/message` goes to every session whose level admits it;
//! - `notifications/resources/updated` goes to the sessions subscribed to it;
//! - any other notification (`*/list_changed`, and kinds the host does not
//!   know) goes to every session: list changes are the child's one state
//!   all sessions share, and an unknown kind names no session to keep it to.
//!
//! Client → server: `tasks/get`, `tasks/result` and `tasks/cancel` for a task
//! the session does not own, and any request whose related-task `_meta`
//! names one, are answered as the reference server answers an unknown task
//! (-32602 "Task not found"), never forwarded.
//!
//! Routing costs what it delivers: sessions are indexed by the level they
//! asked for, among those that have somewhere to take a message (an open
//! GET stream, or a request waiting on an event stream), and by the URIs
//! they subscribed to; a session's own requests are indexed under it. A
//! log line is matched against the sessions that want it, never against
//! every session times every request, and [`Mux::child_notification`]
//! returns where it goes, so the writes happen outside the caller's lock.

mod facts;
mod tasks;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::sink::{Outbound, Sink};
use crate::jsonrpc::{self, rewrite};
use tasks::{Cursors, Elicitations, Tasks};

/// A client session's id (`Mcp-Session-Id`).
pub type SessionId = Arc<str>;

/// What a client said it can answer, in its `initialize`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    pub sampling: bool,
    /// Form-mode `elicitation/create` (`elicitation: {}` declares it alone).
    pub elicitation_form: bool,
    /// URL-mode `elicitation/create` (`elicitation: {"url": {}}`).
    pub elicitation_url: bool,
    pub roots: bool,
}

impl ClientCapabilities {
    /// What the `initialize` request `raw` declares (nothing if unreadable).
    pub fn from_initialize(raw: &[u8]) -> ClientCapabilities {
        #[derive(serde::Deserialize)]
        struct Init {
            params: Option<Params>,
        }
        #[derive(serde::Deserialize)]
        struct Params {
            capabilities: Option<Capabilities>,
        }
        #[derive(serde::Deserialize)]
        struct Capabilities {
            sampling: Option<serde::de::IgnoredAny>,
            elicitation: Option<Elicitation>,
            roots: Option<serde::de::IgnoredAny>,
        }
        #[derive(serde::Deserialize)]
        struct Elicitation {
            form: Option<serde::de::IgnoredAny>,
            url: Option<serde::de::IgnoredAny>,
        }
        let declared = serde_json::from_slice::<Init>(raw)
            .ok()
            .and_then(|i| i.params?.capabilities);
        declared.map_or_else(ClientCapabilities::default, |c| {
            let (form, url) = c.elicitation.map_or((false, false), |e| {
                // `{}` (the form before modes existed) means form.
                let url = e.url.is_some();
                (e.form.is_some() || !url, url)
            });
            ClientCapabilities {
                sampling: c.sampling.is_some(),
                elicitation_form: form,
                elicitation_url: url,
                roots: c.roots.is_some(),
            }
        })
    }

    /// Can this client answer a server request of `method` (with `mode`,
    /// for an elicitation)?
    fn answers(self, method: &str, mode: Option<&str>) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" if mode == Some("url") => self.elicitation_url,
            "elicitation/create" => self.elicitation_form,
            "roots/list" => self.roots,
            _ => true,
        }
    }
}

/// What an answer from the child means for the tasks of the session that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskInterest {
    None,
    /// A task-augmented request: a `CreateTaskResult` makes the session its owner.
    Create,
    /// `tasks/list`: the answer is cut to the session's own tasks.
    List,
    /// `tasks/result` of this task: once read, the task is forgotten.
    Result(String),
    /// `tasks/cancel` of this task: once cancelled, the task is forgotten.
    Cancel(String),
}

/// Who and what the child's sessions are waiting on.
#[derive(Default)]
pub struct Mux {
    /// The last id handed out (ids start at 1).
    last_id: u64,
    /// Host id of a request sent to the child → who waits for its answer.
    pending: HashMap<u64, PendingRequest>,
    /// Host progress token → the request that carries it.
    progress: HashMap<u64, ProgressRoute>,
    /// The id a server request got towards its session → where it went.
    server_requests: HashMap<u64, ServerRequest>,
    sessions: HashMap<SessionId, MuxSession>,
    /// URI → the sessions subscribed to it.
    subscriptions: HashMap<String, HashSet<SessionId>>,
    /// By the rank of the level each asked for (none: `debug`, rank 0), the
    /// sessions with somewhere to take a message (see [`MuxSession::reachable_at`]).
    reachable: [HashSet<SessionId>; LEVELS],
    /// The level the child was last set to.
    child_level: Option<String>,
    last_active: Option<SessionId>,
    /// Which session owns which of the child's tasks.
    tasks: Tasks,
    /// Which session each URL-mode elicitation went to.
    elicitations: Elicitations,
    /// The `tasks/list` cursors handed to sessions.
    cursors: Cursors,
    /// Host progress tokens kept past their request's answer, for the task
    /// it created (a token stays valid for the task's life) → that task.
    task_progress: HashMap<u64, String>,
}

/// Who waits for the answer to a request sent to the child.
enum PendingRequest {
    /// A client's request: the answer goes to `sink`, with the client's id.
    FromClient {
        session: SessionId,
        /// The client's id, as JSON text.
        id: String,
        sink: Sink,
        /// The host's progress token in the request, if it carried one.
        token: Option<u64>,
        /// What its answer means for the session's tasks.
        task: TaskInterest,
    },
    /// A request of the host's own (`initialize`, `ping`, ...).
    FromHost(oneshot::Sender<Bytes>),
}

/// A request of the child's, sent on to a session.
struct ServerRequest {
    session: SessionId,
    /// The child's own id, as JSON text.
    child_id: String,
}

/// Where progress for a host token goes.
struct ProgressRoute {
    session: SessionId,
    /// The client's own token, as JSON text.
    token: String,
    sink: Sink,
}

/// How many log levels there are (`debug` … `emergency`).
const LEVELS: usize = crate::mcp::LOG_LEVELS.len();

/// What the mux knows of one session.
#[derive(Default)]
struct MuxSession {
    level: Option<String>,
    subscriptions: HashSet<String>,
    stream: Option<Sink>,
    capabilities: ClientCapabilities,
    /// Host ids of its requests waiting on the child.
    pending: BTreeSet<u64>,
    /// Those of them whose answer goes to an event stream (which can carry
    /// other messages too).
    streaming: BTreeSet<u64>,
    /// The bucket of [`Mux::reachable`] it is in: while it has an open GET
    /// stream or a streaming request, the rank of its level.
    reachable_at: Option<usize>,
}

impl MuxSession {
    /// Its bucket in [`Mux::reachable`], if it has somewhere to take a message.
    fn reachable_rank(&self) -> Option<usize> {
        let open = self.stream.as_ref().is_some_and(Sink::is_open) || !self.streaming.is_empty();
        open.then(|| {
            self.level
                .as_deref()
                .and_then(rank)
                .unwrap_or(0)
                .min(LEVELS - 1)
        })
    }
}

/// What the child must be told when a session ends.
#[derive(Debug, Default)]
pub struct SessionEnd {
    /// Lines for the child: cancellations of the session's requests, then
    /// refusals of the server requests it will not answer.
    pub to_child: Vec<Bytes>,
    /// URIs no session is subscribed to any more.
    pub unsubscribe: Vec<String>,
    /// The level the child must change to, if it must.
    pub level: Option<String>,
}

/// What became of a request from the child.
#[derive(Debug)]
pub enum ServerRequestRoute {
    /// Sent to a session.
    Forwarded,
    /// No session can answer it; `refusal` is the error to answer the child.
    NoSession { refusal: Option<Bytes> },
}

fn rank(level: &str) -> Option<usize> {
    crate::mcp::log_level_rank(level)
}

impl Mux {
    /// A new id for the child: request ids, progress tokens and the ids of
    /// server requests towards sessions all come from here, so none collide.
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Registers a session and what its client can answer.
    pub fn open_session(&mut self, session: SessionId, capabilities: ClientCapabilities) {
        let state = MuxSession {
            capabilities,
            ..MuxSession::default()
        };
        self.sessions.insert(Arc::clone(&session), state);
        self.last_active = Some(session);
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The session sent something: it is the one active last.
    pub fn touch(&mut self, session: &SessionId) {
        self.last_active = Some(Arc::clone(session));
    }

    /// Has this session requests waiting on the child?
    pub fn has_pending(&self, session: &SessionId) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|s| !s.pending.is_empty())
    }

    /// Is any client request waiting on the child?
    pub fn clients_waiting(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p, PendingRequest::FromClient { .. }))
    }

    /// Sets the session's GET stream. False if one is open already.
    pub fn set_stream(&mut self, session: &SessionId, sink: Sink) -> bool {
        let Some(s) = self.sessions.get_mut(session) else {
            return false;
        };
        if s.stream.as_ref().is_some_and(Sink::is_open) {
            return false;
        }
        s.stream = Some(sink);
        self.refresh(session);
        true
    }

    /// Puts the session in the bucket of [`Mux::reachable`] it belongs to
    /// now (after its stream, requests or level changed); a closed GET
    /// stream is dropped.
    fn refresh(&mut self, session: &SessionId) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if s.stream.as_ref().is_some_and(|stream| !stream.is_open()) {
            s.stream = None;
        }
        let now = s.reachable_rank();
        if now == s.reachable_at {
            return;
        }
        if let Some(old) = s.reachable_at {
            self.reachable[old].remove(session);
        }
        if let Some(new) = now {
            self.reachable[new].insert(Arc::clone(session));
        }
        s.reachable_at = now;
    }

    /// Has this session an open GET stream?
    pub fn has_stream(&self, session: &SessionId) -> bool {
        self.sessions
            .get(session)
            .and_then(|s| s.stream.as_ref())
            .is_some_and(Sink::is_open)
    }

    /// Sends a message to the session's GET stream; false if none is open.
    pub fn send_to_stream(&self, session: &SessionId, message: Bytes) -> bool {
        self.sessions
            .get(session)
            .and_then(|s| s.stream.as_ref())
            .is_some_and(|sink| sink.send(Outbound::Message(message)))
    }

    /// Registers a client's request `id` (JSON text) whose answer goes to
    /// `sink`: the host id it gets and the line for the child, with the
    /// host's id (and progress token). `None` if the request's id cannot be
    /// replaced (the client is answered with an error).
    pub fn client_request(
        &mut self,
        session: &SessionId,
        id: String,
        raw: &Bytes,
        sink: Sink,
    ) -> Option<(u64, Bytes)> {
        let (task, replaced) = match self.task_gate(session, raw) {
            Ok(gate) => gate,
            Err(refusal) => {
                sink.answer_error_code(&id, jsonrpc::code::INVALID_PARAMS, &refusal);
                return None;
            }
        };
        let raw = replaced.as_ref().unwrap_or(raw);
        let upstream = self.next_id();
        let Some(mut line) = rewrite::replace_id(raw, &upstream.to_string()) else {
            sink.answer_error(&id, "the request's id cannot be read");
            return None;
        };
        let token = rewrite::request_progress_token(raw).map(|original| {
            let token = self.next_id();
            if let Some(with_token) =
                rewrite::replace_request_progress_token(&line, &token.to_string())
            {
                line = with_token;
            }
            let route = ProgressRoute {
                session: Arc::clone(session),
                token: original,
                sink: sink.clone(),
            };
            self.progress.insert(token, route);
            token
        });
        if let Some(s) = self.sessions.get_mut(session) {
            s.pending.insert(upstream);
            if sink.carries_messages() {
                s.streaming.insert(upstream);
            }
        }
        let pending = PendingRequest::FromClient {
            session: Arc::clone(session),
            id,
            sink,
            token,
            task,
        };
        self.pending.insert(upstream, pending);
        self.refresh(session);
        Some((upstream, line))
    }

    /// What a client request means for tasks: what its answer will mean, and
    /// the request to send instead (a `tasks/list` cursor of the host's
    /// replaced by the child's). `Err` with the message to refuse it with
    /// (-32602): it names a task the session does not own, or a cursor not
    /// handed to it.
    fn task_gate(
        &mut self,
        session: &SessionId,
        raw: &Bytes,
    ) -> Result<(TaskInterest, Option<Bytes>), String> {
        if !facts::mentions(raw, "task") {
            return Ok((TaskInterest::None, None));
        }
        let facts = facts::of_message(raw);
        let method = facts
            .method
            .clone()
            .or_else(|| rewrite::string_field(raw, "method"))
            .unwrap_or_default();
        let now = Instant::now();
        if matches!(
            method.as_str(),
            "tasks/get" | "tasks/result" | "tasks/cancel"
        ) {
            let task_id = facts.task_id.unwrap_or_default();
            if !self.tasks.owns(session, &task_id, now) {
                return Err(unknown_task(&method, &task_id));
            }
            let interest = match method.as_str() {
                "tasks/result" => TaskInterest::Result(task_id),
                "tasks/cancel" => TaskInterest::Cancel(task_id),
                _ => TaskInterest::None,
            };
            return Ok((interest, None));
        }
        if let Some(related) = &facts.related_task
            && !self.tasks.owns(session, related, now)
        {
            return Err(unknown_task(&method, related));
        }
        if method == "tasks/list" {
            let Some(cursor) = facts.cursor else {
                return Ok((TaskInterest::List, None));
            };
            let Some(child_cursor) = self.cursors.child_cursor(session, &cursor) else {
                return Err(format!(
                    "MCP error -32602: Failed to list tasks: Invalid cursor: {cursor}"
                ));
            };
            let mut request: serde_json::Value =
                serde_json::from_slice(raw).map_err(|e| e.to_string())?;
            if let Some(params) = request.get_mut("params") {
                params["cursor"] = serde_json::Value::String(child_cursor);
            }
            let line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            return Ok((TaskInterest::List, Some(Bytes::from(line))));
        }
        let interest = if facts.task_augmented {
            TaskInterest::Create
        } else {
            TaskInterest::None
        };
        Ok((interest, None))
    }

    /// An answer for `session` seen for its tasks: a created task becomes
    /// its own (and is returned), a task whose result it read (or that it
    /// cancelled) is forgotten, a task list is cut to its own tasks.
    fn task_answer(
        &mut self,
        session: &SessionId,
        task: &TaskInterest,
        raw: Bytes,
    ) -> (Bytes, Option<String>) {
        let now = Instant::now();
        match task {
            TaskInterest::List => return (self.own_tasks_only(session, raw, now), None),
            TaskInterest::Result(task_id) | TaskInterest::Cancel(task_id) => {
                if facts::of_answer(&raw).ok {
                    self.tasks.forget(task_id);
                }
            }
            // An answer to a request that neither asked for a task nor named
            // one of the session's (the gate refused any other) owns nothing
            // new: it is not read (answers may be megabytes, read under the lock).
            TaskInterest::None => {}
            TaskInterest::Create => {
                let answer = facts::of_answer(&raw);
                let created = answer.created.is_some();
                let owned = answer
                    .created
                    .or_else(|| answer.related_task.map(|t| (t, None)));
                if let Some((task_id, ttl)) = owned {
                    let ttl = ttl.map(Duration::from_millis);
                    if self.tasks.own(session, &task_id, ttl, now) && created {
                        return (raw, Some(task_id));
                    }
                }
            }
        }
        (raw, None)
    }

    /// Forgets the progress tokens kept for tasks no longer known, once
    /// they outnumber the tasks (so the cost is amortised and the map
    /// bounded by the ledger).
    fn sweep_task_progress(&mut self) {
        if self.task_progress.len() <= 2 * self.tasks.len() + 64 {
            return;
        }
        let now = Instant::now();
        let (tasks, progress) = (&mut self.tasks, &mut self.progress);
        self.task_progress.retain(|token, task| {
            let known = tasks.owner(task, now).is_some();
            if !known {
                progress.remove(token);
            }
            known
        });
    }

    /// A `tasks/list` answer with only the session's own tasks, and its
    /// `nextCursor` replaced by one of the host's.
    fn own_tasks_only(&mut self, session: &SessionId, raw: Bytes, now: Instant) -> Bytes {
        let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            return raw;
        };
        let Some(result) = answer.get_mut("result").and_then(|r| r.as_object_mut()) else {
            return raw;
        };
        if let Some(list) = result.get_mut("tasks").and_then(|t| t.as_array_mut()) {
            let tasks = &mut self.tasks;
            list.retain(|t| {
                t.get("taskId")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|id| tasks.owns(session, id, now))
            });
        }
        if let Some(cursor) = result.get_mut("nextCursor")
            && let Some(child) = cursor.as_str()
        {
            *cursor = serde_json::Value::String(self.cursors.hand_out(session, child.to_owned()));
        }
        match serde_json::to_vec(&answer) {
            Ok(line) => Bytes::from(line),
            Err(_) => jsonrpc::error_response(
                None,
                jsonrpc::code::INTERNAL_ERROR,
                "the task list could not be read; ask again",
            ),
        }
    }

    /// Registers a request of the host's own; its answer goes to `waiter`.
    pub fn host_request(&mut self, waiter: oneshot::Sender<Bytes>) -> u64 {
        let upstream = self.next_id();
        self.pending
            .insert(upstream, PendingRequest::FromHost(waiter));
        upstream
    }

    /// Forgets a request: its answer, if one comes, is dropped.
    pub fn forget(&mut self, upstream: u64) {
        self.take_pending(upstream);
    }

    /// Answers a client request with an error instead of the child.
    pub fn fail_request(&mut self, upstream: u64, reason: &str) {
        if let Some(PendingRequest::FromClient { id, sink, .. }) = self.take_pending(upstream) {
            sink.answer_error(&id, reason);
        }
    }

    /// Fails every request waiting on a child that ended; its server
    /// requests and progress tokens are forgotten.
    pub fn fail_all(&mut self, message: &str) {
        self.progress.clear();
        self.server_requests.clear();
        self.tasks.clear();
        self.elicitations.clear();
        self.cursors.forget(None);
        self.task_progress.clear();
        let mut waited = HashSet::new();
        for (_, pending) in self.pending.drain() {
            if let PendingRequest::FromClient {
                id, sink, session, ..
            } = pending
            {
                sink.answer_error(&id, message);
                waited.insert(session);
            }
        }
        for session in &waited {
            if let Some(s) = self.sessions.get_mut(session) {
                s.pending.clear();
                s.streaming.clear();
            }
            self.refresh(session);
        }
    }

    fn take_pending(&mut self, upstream: u64) -> Option<PendingRequest> {
        let pending = self.pending.remove(&upstream);
        if let Some(PendingRequest::FromClient { token, session, .. }) = &pending {
            if let Some(t) = token {
                self.progress.remove(t);
            }
            if let Some(s) = self.sessions.get_mut(session) {
                s.pending.remove(&upstream);
                s.streaming.remove(&upstream);
            }
            let session = Arc::clone(session);
            self.refresh(&session);
        }
        pending
    }

    /// The child answered request `upstream`: the answer goes to whoever
    /// waits, with the client's own id. False if nobody waits any more (the
    /// request was cancelled or its session ended).
    pub fn child_answer(&mut self, upstream: u64, raw: Bytes) -> bool {
        let task_token = match self.pending.get(&upstream) {
            Some(PendingRequest::FromClient {
                task: TaskInterest::Create,
                token: Some(token),
                ..
            }) => Some(*token),
            _ => None,
        };
        let kept = task_token.and_then(|t| self.progress.remove(&t).map(|route| (t, route)));
        match self.take_pending(upstream) {
            Some(PendingRequest::FromClient {
                id,
                sink,
                session,
                task,
                ..
            }) => {
                let (raw, created) = self.task_answer(&session, &task, raw);
                if let (Some(task_id), Some((token, route))) = (created, kept) {
                    self.progress.insert(token, route);
                    self.task_progress.insert(token, task_id);
                    self.sweep_task_progress();
                }
                if let Some(answer) = rewrite::replace_id(&raw, &id) {
                    sink.send(Outbound::Response(answer));
                }
                true
            }
            Some(PendingRequest::FromHost(waiter)) => {
                let _ = waiter.send(raw);
                true
            }
            None => false,
        }
    }

    /// The session cancels one of its requests (`notifications/cancelled`):
    /// it is released now (no answer is written for it, a late one from the
    /// child is dropped), and the cancellation for the child is returned.
    pub fn client_cancel(&mut self, session: &SessionId, raw: &Bytes) -> Option<Bytes> {
        let client_id = rewrite::cancelled_request_id(raw)?;
        let mine = &self.sessions.get(session)?.pending;
        let upstream = mine.iter().copied().find(|u| {
            matches!(self.pending.get(u), Some(PendingRequest::FromClient { id, .. }) if *id == client_id)
        })?;
        let Some(PendingRequest::FromClient { sink, .. }) = self.take_pending(upstream) else {
            return None;
        };
        sink.send(Outbound::Done);
        rewrite::replace_cancelled_request_id(raw, &upstream.to_string())
    }

    /// The session answers a server request it was sent (`id` is the host's
    /// id, as JSON text): the answer for the child, with the child's id.
    /// `None` if it answers no server request of this session.
    pub fn client_answer(&mut self, session: &SessionId, id: &str, raw: &Bytes) -> Option<Bytes> {
        let host_id = id.parse::<u64>().ok().filter(|h| {
            self.server_requests
                .get(h)
                .is_some_and(|r| r.session == *session)
        })?;
        let request = self.server_requests.remove(&host_id)?;
        rewrite::replace_id(raw, &request.child_id)
    }

    /// The session asks for `level`; the level the child must change to, if
    /// it must (the most verbose any session asked for).
    pub fn set_level(&mut self, session: &SessionId, level: String) -> Option<String> {
        if let Some(s) = self.sessions.get_mut(session) {
            s.level = Some(level);
        }
        self.refresh(session);
        self.level_change()
    }

    /// The most verbose level any session asked for, if the child must change.
    fn level_change(&mut self) -> Option<String> {
        let wanted = self
            .sessions
            .values()
            .filter_map(|s| s.level.clone())
            .min_by_key(|l| rank(l).unwrap_or(usize::MAX));
        if wanted.is_some() && wanted != self.child_level {
            self.child_level.clone_from(&wanted);
            return wanted;
        }
        None
    }

    /// The session subscribes to `uri` (or unsubscribes); true if the
    /// request must reach the child: the first subscriber's, or the last
    /// one's unsubscribe.
    pub fn change_subscription(
        &mut self,
        session: &SessionId,
        uri: String,
        subscribe: bool,
    ) -> bool {
        let changed = self.sessions.get_mut(session).is_some_and(|s| {
            if subscribe {
                s.subscriptions.insert(uri.clone())
            } else {
                s.subscriptions.remove(&uri)
            }
        });
        match (changed, subscribe) {
            (false, _) => false,
            (true, true) => {
                let subscribers = self.subscriptions.entry(uri).or_default();
                subscribers.insert(Arc::clone(session));
                subscribers.len() == 1
            }
            (true, false) => self.release_subscription(session, &uri),
        }
    }

    /// `session` no longer subscribes to `uri`; true if it was the last one.
    fn release_subscription(&mut self, session: &SessionId, uri: &str) -> bool {
        let Some(subscribers) = self.subscriptions.get_mut(uri) else {
            return false;
        };
        subscribers.remove(session);
        let last = subscribers.is_empty();
        if last {
            self.subscriptions.remove(uri);
        }
        last
    }

    /// What a new child must be set to: the level, and every URI subscribed.
    pub fn child_setup(&self) -> (Option<String>, Vec<String>) {
        (
            self.child_level.clone(),
            self.subscriptions.keys().cloned().collect(),
        )
    }

    /// Ends a session: its requests are released (the child is told to
    /// cancel them), its server requests refused, its subscriptions and
    /// level dropped. `None` if the session is unknown.
    pub fn close_session(&mut self, session: &SessionId) -> Option<SessionEnd> {
        let closed = self.sessions.remove(session)?;
        if let Some(at) = closed.reachable_at {
            self.reachable[at].remove(session);
        }
        let mine: Vec<u64> = closed.pending.iter().copied().collect();
        for u in &mine {
            self.take_pending(*u);
        }
        let mut to_child: Vec<Bytes> = mine
            .iter()
            .map(|u| {
                Bytes::from(format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{u},"reason":"the client session ended"}}}}"#
                ))
            })
            .collect();
        let refused: Vec<u64> = self
            .server_requests
            .iter()
            .filter(|(_, r)| r.session == *session)
            .map(|(h, _)| *h)
            .collect();
        for host_id in refused {
            let Some(request) = self.server_requests.remove(&host_id) else {
                continue;
            };
            let refusal = jsonrpc::error_response(
                None,
                jsonrpc::code::INTERNAL_ERROR,
                "the client session ended before answering",
            );
            if let Some(refusal) = rewrite::replace_id(&refusal, &request.child_id) {
                to_child.push(refusal);
            }
        }
        let unsubscribe = closed
            .subscriptions
            .into_iter()
            .filter(|uri| self.release_subscription(session, uri))
            .collect();
        if self.last_active.as_ref() == Some(session) {
            self.last_active = None;
        }
        self.tasks.close_session(session);
        self.elicitations.close_session(session);
        self.cursors.forget(Some(session));
        let progress = &mut self.progress;
        self.task_progress.retain(|token, _| {
            let mine = progress.get(token).is_some_and(|r| r.session == *session);
            if mine {
                progress.remove(token);
            }
            !mine
        });
        Some(SessionEnd {
            to_child,
            unsubscribe,
            level: self.level_change(),
        })
    }

    /// A request from the child (`id` is its id, as JSON text): sent to the
    /// session that should answer it, with a host id.
    pub fn server_request(&mut self, id: &str, method: &str, raw: &Bytes) -> ServerRequestRoute {
        let facts = facts::of_message(raw);
        let mode = facts.mode.as_deref();
        let related = facts.related_task.as_deref();
        let owner = related.and_then(|t| self.tasks.owner(t, Instant::now()));
        let target = match (owner, related) {
            (Some(owner), Some(task)) => self.owner_target(&owner, task, method, mode),
            _ => self.server_request_target(method, mode),
        };
        let host_id = self.next_id();
        let forwarded = rewrite::replace_id(raw, &host_id.to_string());
        if let (Some((session, sink)), Some(forwarded)) = (target, forwarded) {
            if let (true, Some(elicitation)) = (mode == Some("url"), &facts.elicitation_id) {
                self.elicitations.sent(elicitation, &session);
            }
            let request = ServerRequest {
                session,
                child_id: id.to_owned(),
            };
            self.server_requests.insert(host_id, request);
            sink.send(Outbound::Message(forwarded));
            return ServerRequestRoute::Forwarded;
        }
        let refusal = jsonrpc::error_response(
            None,
            jsonrpc::code::INTERNAL_ERROR,
            &format!("no client session that can answer {method} is connected"),
        );
        ServerRequestRoute::NoSession {
            refusal: rewrite::replace_id(&refusal, id),
        }
    }

    /// `notifications/progress` from the child: to the request carrying its
    /// token (or, once that stream is closed or answered, to its session, for
    /// as long as the task the request created lives), with the
    /// client's token. False if the token is unknown.
    pub fn child_progress(&mut self, raw: &Bytes) -> bool {
        let token = rewrite::notification_progress_token(raw).and_then(|t| t.parse::<u64>().ok());
        if let Some(t) = token
            && let Some(task) = self.task_progress.get(&t)
            && self.tasks.owner(task, Instant::now()).is_none()
        {
            // Its task is over (or forgotten): so is its token.
            self.task_progress.remove(&t);
            self.progress.remove(&t);
            return false;
        }
        let route = token.and_then(|t| self.progress.get(&t));
        let Some(route) = route else {
            return false;
        };
        let Some(restored) = rewrite::replace_notification_progress_token(raw, &route.token) else {
            return true;
        };
        let sink = if route.sink.carries_messages() {
            Some(route.sink.clone())
        } else {
            self.session_sink(&route.session)
        };
        if let Some(sink) = sink {
            sink.send(Outbound::Message(restored));
        }
        true
    }

    /// The session a notification belongs to, if it belongs to one:
    /// `Some(None)` when it does but the host does not know which (it then
    /// goes nowhere).
    fn notification_owner(&mut self, method: &str, raw: &[u8]) -> Option<Option<SessionId>> {
        let now = Instant::now();
        match method {
            "notifications/tasks/status" => {
                let task = facts::of_message(raw).task_id;
                return Some(task.and_then(|t| self.tasks.owner(&t, now)));
            }
            "notifications/elicitation/complete" => {
                let elicitation = facts::of_message(raw).elicitation_id;
                return Some(elicitation.and_then(|e| self.elicitations.complete(&e)));
            }
            _ => {}
        }
        if !facts::mentions(raw, facts::RELATED_TASK) {
            return None;
        }
        let related = facts::of_message(raw).related_task?;
        Some(self.tasks.owner(&related, now))
    }

    /// Does the session's level admit the log message `raw`?
    fn admits(&self, session: &SessionId, raw: &[u8]) -> bool {
        let level = rewrite::level(raw).and_then(|l| rank(&l)).unwrap_or(0);
        self.sessions
            .get(session)
            .is_some_and(|s| s.level.as_deref().and_then(rank).unwrap_or(0) <= level)
    }

    /// Any other notification from the child, routed by its `method`: the
    /// message to write and the sinks it goes to (the caller writes them,
    /// outside its lock). The cost is the number of sessions that want it.
    pub fn child_notification(&mut self, method: &str, raw: &Bytes) -> (Bytes, Vec<Sink>) {
        if let Some(owner) = self.notification_owner(method, raw) {
            let to = owner
                .filter(|o| method != "notifications/message" || self.admits(o, raw))
                .and_then(|o| self.session_sink(&o));
            return (raw.clone(), to.into_iter().collect());
        }
        let mut stale = Vec::new();
        let mut to = Vec::new();
        let mut add = |mux: &Mux, session: &SessionId| match mux.session_sink(session) {
            Some(sink) => to.push(sink),
            None => stale.push(Arc::clone(session)),
        };
        match method {
            "notifications/message" => {
                let level = rewrite::level(raw)
                    .and_then(|l| rank(&l))
                    .unwrap_or(0)
                    .min(LEVELS - 1);
                for session in self.reachable[..=level].iter().flatten() {
                    add(self, session);
                }
            }
            "notifications/resources/updated" => {
                let subscribers = rewrite::uri(raw).and_then(|u| self.subscriptions.get(&u));
                for session in subscribers.into_iter().flatten() {
                    if self
                        .sessions
                        .get(session)
                        .is_some_and(|s| s.reachable_at.is_some())
                    {
                        add(self, session);
                    }
                }
            }
            "notifications/cancelled" => {
                let child_id = rewrite::cancelled_request_id(raw);
                let host_id = self
                    .server_requests
                    .iter()
                    .find(|(_, r)| Some(&r.child_id) == child_id.as_ref())
                    .map(|(h, _)| *h);
                let Some((host_id, request)) =
                    host_id.and_then(|h| self.server_requests.remove(&h).map(|r| (h, r)))
                else {
                    return (raw.clone(), Vec::new());
                };
                let cancel = rewrite::replace_cancelled_request_id(raw, &host_id.to_string());
                return match (self.session_sink(&request.session), cancel) {
                    (Some(sink), Some(cancel)) => (cancel, vec![sink]),
                    _ => (raw.clone(), Vec::new()),
                };
            }
            _ => {
                for session in self.reachable.iter().flatten() {
                    add(self, session);
                }
            }
        }
        for session in &stale {
            self.refresh(session);
        }
        (raw.clone(), to)
    }

    /// Where a message for this session goes outside any request: its GET
    /// stream, else the stream of its newest request still open.
    fn session_sink(&self, session: &SessionId) -> Option<Sink> {
        let s = self.sessions.get(session)?;
        if let Some(stream) = s.stream.as_ref().filter(|s| s.is_open()) {
            return Some(stream.clone());
        }
        s.streaming
            .iter()
            .rev()
            .find_map(|u| match self.pending.get(u) {
                Some(PendingRequest::FromClient { sink, .. }) if sink.carries_messages() => {
                    Some(sink.clone())
                }
                _ => None,
            })
    }

    /// Who gets a server request related to `task`, owned by `owner`: the
    /// owner, if its client can answer it, on its `tasks/result` stream for
    /// that task if one waits, else where its messages go.
    fn owner_target(
        &self,
        owner: &SessionId,
        task: &str,
        method: &str,
        mode: Option<&str>,
    ) -> Option<(SessionId, Sink)> {
        let s = self.sessions.get(owner)?;
        if !s.capabilities.answers(method, mode) {
            return None;
        }
        let waiting = s
            .streaming
            .iter()
            .rev()
            .find_map(|u| match self.pending.get(u) {
                Some(PendingRequest::FromClient {
                    sink,
                    task: TaskInterest::Result(t),
                    ..
                }) if t == task && sink.carries_messages() => Some(sink.clone()),
                _ => None,
            });
        waiting
            .or_else(|| self.session_sink(owner))
            .map(|sink| (Arc::clone(owner), sink))
    }

    /// Who gets a server request: among the sessions whose client declared
    /// the capability it needs, the one whose request went to the child last
    /// (on that request's stream when it can carry it); with none waiting,
    /// the one active last; else any.
    fn server_request_target(&self, method: &str, mode: Option<&str>) -> Option<(SessionId, Sink)> {
        let capable = |session: &SessionId| {
            self.sessions
                .get(session)
                .is_some_and(|s| s.capabilities.answers(method, mode))
        };
        let mut waiting: Vec<(u64, &SessionId, &Sink)> = self
            .pending
            .iter()
            .filter_map(|(u, p)| match p {
                PendingRequest::FromClient { session, sink, .. } if capable(session) => {
                    Some((*u, session, sink))
                }
                _ => None,
            })
            .collect();
        waiting.sort_by_key(|(u, _, _)| std::cmp::Reverse(*u));
        for (_, session, sink) in waiting {
            if sink.carries_messages() {
                return Some((Arc::clone(session), sink.clone()));
            }
            if let Some(sink) = self.session_sink(session) {
                return Some((Arc::clone(session), sink));
            }
        }
        let last = self.last_active.iter().filter(|s| capable(s));
        let any = self.sessions.keys().filter(|s| capable(s));
        last.chain(any)
            .find_map(|s| self.session_sink(s).map(|sink| (Arc::clone(s), sink)))
    }
}

/// The error the reference server (the TypeScript SDK's task handlers)
/// answers for a task it does not know, for `method`.
fn unknown_task(method: &str, task_id: &str) -> String {
    if method == "tasks/get" {
        "MCP error -32602: Failed to retrieve task: Task not found".to_owned()
    } else {
        format!("MCP error -32602: Task not found: {task_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::sink::SinkReceiver;

    fn session(name: &str) -> SessionId {
        Arc::from(name)
    }

    fn open(mux: &mut Mux, name: &str) -> SessionId {
        let id = session(name);
        mux.open_session(Arc::clone(&id), ClientCapabilities::default());
        id
    }

    fn answer(receiver: &mut SinkReceiver) -> Option<String> {
        match receiver.try_recv()? {
            Outbound::Response(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn id_of(line: &[u8]) -> serde_json::Value {
        let value: serde_json::Value = serde_json::from_slice(line).expect("json");
        value["id"].clone()
    }

    /// Two sessions may use the same id (even the same text as a number and
    /// as a string): the child sees distinct ids, and each answer goes back to
    /// the session that asked, with its exact id.
    #[test]
    fn ids_from_two_sessions_never_collide_and_answers_keep_their_ids() {
        let mut mux = Mux::default();
        let a = open(&mut mux, "a");
        let b = open(&mut mux, "b");
        let (sink_a, mut rx_a) = Sink::new(false);
        let (sink_b, mut rx_b) = Sink::new(false);
        let request_a = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let request_b = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"1","method":"tools/list"}"#);
        let (up_a, line_a) = mux
            .client_request(&a, "1".into(), &request_a, sink_a)
            .expect("registered");
        let (up_b, line_b) = mux
            .client_request(&b, r#""1""#.into(), &request_b, sink_b)
            .expect("registered");
        assert_ne!(up_a, up_b);
        assert_eq!(id_of(&line_a), serde_json::json!(up_a));
        assert_eq!(id_of(&line_b), serde_json::json!(up_b));
        assert!(mux.has_pending(&a) && mux.has_pending(&b));

        let reply = |up: u64, who: &str| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{up},"result":{{"who":"{who}"}}}}"#
            ))
        };
        assert!(mux.child_answer(up_b, reply(up_b, "b")));
        assert_eq!(
            answer(&mut rx_b).as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":"1","result":{"who":"b"}}"#)
        );
        assert!(answer(&mut rx_a).is_none(), "a got b's answer");
        assert!(mux.child_answer(up_a, reply(up_a, "a")));
        assert_eq!(
            answer(&mut rx_a).as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{"who":"a"}}"#)
        );
        assert!(!mux.child_answer(up_a, reply(up_a, "a")), "answered twice");
        assert!(!mux.has_pending(&a) && !mux.has_pending(&b));
    }

    /// A session that ends releases its subscriptions; the child is told to
    /// unsubscribe only when no other session still holds one.
    #[test]
    fn a_session_end_unsubscribes_the_child_only_when_it_was_the_last() {
        let mut mux = Mux::default();
        let a = open(&mut mux, "a");
        let b = open(&mut mux, "b");
        let uri = "file:///notes".to_owned();
        assert!(mux.change_subscription(&a, uri.clone(), true), "first");
        assert!(!mux.change_subscription(&b, uri.clone(), true), "second");
        assert!(!mux.change_subscription(&a, uri.clone(), true), "again");
        assert_eq!(mux.child_setup().1, std::slice::from_ref(&uri));

        let end_a = mux.close_session(&a).expect("a was open");
        assert!(end_a.unsubscribe.is_empty(), "b still holds it");
        assert_eq!(mux.child_setup().1, std::slice::from_ref(&uri));

        let end_b = mux.close_session(&b).expect("b was open");
        assert_eq!(end_b.unsubscribe, [uri]);
        assert!(mux.child_setup().1.is_empty());
        assert!(mux.close_session(&b).is_none(), "closed twice");
    }

    /// The child runs at the most verbose level any session asked for, and
    /// falls back to the next one when that session ends.
    #[test]
    fn the_most_verbose_level_wins_and_falls_back_when_its_session_ends() {
        let mut mux = Mux::default();
        let a = open(&mut mux, "a");
        let b = open(&mut mux, "b");
        assert_eq!(mux.set_level(&a, "error".into()).as_deref(), Some("error"));
        assert_eq!(mux.set_level(&b, "debug".into()).as_deref(), Some("debug"));
        assert_eq!(
            mux.set_level(&a, "warning".into()),
            None,
            "debug still wins"
        );

        let end_b = mux.close_session(&b).expect("b was open");
        assert_eq!(end_b.level.as_deref(), Some("warning"));
        let end_a = mux.close_session(&a).expect("a was open");
        assert_eq!(end_a.level, None, "nobody asks: the child is left as it is");
        assert_eq!(mux.child_setup().0.as_deref(), Some("warning"));
    }

    /// A session that ends has its requests cancelled upstream, with the ids
    /// the child knows them by; their late answers are dropped.
    #[test]
    fn a_session_end_cancels_its_requests_upstream() {
        let mut mux = Mux::default();
        let a = open(&mut mux, "a");
        let (sink, _rx) = Sink::new(true);
        let request =
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#);
        let (upstream, _) = mux
            .client_request(&a, "7".into(), &request, sink)
            .expect("registered");
        let end = mux.close_session(&a).expect("a was open");
        assert_eq!(end.to_child.len(), 1);
        let cancel: serde_json::Value = serde_json::from_slice(&end.to_child[0]).expect("json");
        assert_eq!(cancel["method"], "notifications/cancelled");
        assert_eq!(cancel["params"]["requestId"], serde_json::json!(upstream));
        let late = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{}}}}"#
        ));
        assert!(!mux.child_answer(upstream, late));
    }

    /// A log line goes to the sessions whose level admits it and that have
    /// somewhere to take it; a list change to every such session; the
    /// router hands back the sinks instead of writing under its lock.
    #[test]
    fn notifications_go_to_the_sessions_that_want_them() {
        let mut mux = Mux::default();
        let verbose = open(&mut mux, "verbose");
        let quiet = open(&mut mux, "quiet");
        let _nowhere = open(&mut mux, "nowhere");
        let (stream_v, mut rx_v) = Sink::new(true);
        let (stream_q, rx_q) = Sink::new(true);
        assert!(mux.set_stream(&verbose, stream_v));
        assert!(mux.set_stream(&quiet, stream_q));
        mux.set_level(&quiet, "error".into());
        let log = |level: &str| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"{level}","data":"x"}}}}"#
            ))
        };
        let (_, to) = mux.child_notification("notifications/message", &log("info"));
        assert_eq!(to.len(), 1, "only the verbose session wants info");
        let (_, to) = mux.child_notification("notifications/message", &log("error"));
        assert_eq!(to.len(), 2);
        let changed =
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        let (_, to) = mux.child_notification("notifications/tools/list_changed", &changed);
        assert_eq!(
            to.len(),
            2,
            "the session with nowhere to take it is skipped"
        );
        assert!(rx_v.try_recv().is_none(), "the mux itself writes nothing");
        drop(rx_q); // the quiet session's stream ends
        let (_, to) = mux.child_notification("notifications/tools/list_changed", &changed);
        assert_eq!(to.len(), 1);
        assert!(mux.reachable.iter().map(HashSet::len).sum::<usize>() == 1);
    }

    /// Progress tokens are rewritten like ids and come back as the client's.
    #[test]
    fn progress_goes_to_its_request_with_the_clients_token() {
        let mut mux = Mux::default();
        let a = open(&mut mux, "a");
        let (sink, mut rx) = Sink::new(true);
        let request = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}"#,
        );
        let (_, line) = mux
            .client_request(&a, "1".into(), &request, sink)
            .expect("registered");
        let sent: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let token = sent["params"]["_meta"]["progressToken"].clone();
        assert_ne!(token, serde_json::json!("t"));
        let progress = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},"progress":1}}}}"#
        ));
        assert!(mux.child_progress(&progress));
        let Some(Outbound::Message(got)) = rx.try_recv() else {
            panic!("no progress delivered");
        };
        let got: serde_json::Value = serde_json::from_slice(&got).expect("json");
        assert_eq!(got["params"]["progressToken"], "t");
    }

    /// Opens a session with a GET stream, able to answer form elicitations.
    fn open_streaming(mux: &mut Mux, name: &str) -> (SessionId, SinkReceiver) {
        let id = session(name);
        let capabilities = ClientCapabilities {
            elicitation_form: true,
            ..ClientCapabilities::default()
        };
        mux.open_session(Arc::clone(&id), capabilities);
        let (stream, rx) = Sink::new(true);
        assert!(mux.set_stream(&id, stream));
        (id, rx)
    }

    /// Sends `request` (id 1) from `session` and answers it with `result`:
    /// what the session got.
    fn exchange(
        mux: &mut Mux,
        session: &SessionId,
        request: &str,
        result: &str,
    ) -> serde_json::Value {
        let (sink, mut rx) = Sink::new(false);
        let raw = Bytes::from(request.to_owned());
        let Some((upstream, _)) = mux.client_request(session, "1".into(), &raw, sink) else {
            return serde_json::from_str(&answer(&mut rx).expect("refused with an answer"))
                .expect("json");
        };
        let reply = format!(r#"{{"jsonrpc":"2.0","id":{upstream},"result":{result}}}"#);
        assert!(mux.child_answer(upstream, Bytes::from(reply)));
        serde_json::from_str(&answer(&mut rx).expect("answered")).expect("json")
    }

    /// A creates a task (a `CreateTaskResult` routed to it).
    fn create_task(mux: &mut Mux, a: &SessionId, task: &str) {
        let got = exchange(
            mux,
            a,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","task":{"ttl":60000}}}"#,
            &format!(r#"{{"task":{{"taskId":"{task}","status":"working","ttl":60000}}}}"#),
        );
        assert_eq!(got["result"]["task"]["taskId"], task);
    }

    fn message(rx: &mut SinkReceiver) -> Option<serde_json::Value> {
        match rx.try_recv()? {
            Outbound::Message(bytes) => Some(serde_json::from_slice(&bytes).expect("json")),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// B never sees A's task: its list lacks it, and its get, result and
    /// cancel are answered as an unknown task without reaching the child.
    #[test]
    fn another_sessions_task_is_unknown_to_it() {
        let mut mux = Mux::default();
        let (a, _rx_a) = open_streaming(&mut mux, "a");
        let (b, _rx_b) = open_streaming(&mut mux, "b");
        create_task(&mut mux, &a, "ta");
        create_task(&mut mux, &b, "tb");
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{}}"#;
        let child_list = r#"{"tasks":[{"taskId":"ta"},{"taskId":"tb"}],"nextCursor":"ta"}"#;
        let got = exchange(&mut mux, &b, list, child_list);
        assert_eq!(
            got["result"]["tasks"],
            serde_json::json!([{"taskId": "tb"}])
        );
        let cursor = got["result"]["nextCursor"]
            .as_str()
            .expect("a cursor")
            .to_owned();
        assert_ne!(cursor, "ta", "the child's cursor names a's task");
        let next = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{{"cursor":"{cursor}"}}}}"#
        );
        let (sink, _rx) = Sink::new(false);
        let (_, line) = mux
            .client_request(&b, "1".into(), &Bytes::from(next.clone()), sink)
            .expect("b's own cursor is forwarded");
        let sent: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(sent["params"]["cursor"], "ta", "as the child's");
        let refused = exchange(&mut mux, &a, &next, "{}");
        assert_eq!(
            refused["error"]["code"], -32602,
            "b's cursor is not a's: {refused}"
        );

        for (method, message) in [
            (
                "tasks/get",
                "MCP error -32602: Failed to retrieve task: Task not found",
            ),
            ("tasks/result", "MCP error -32602: Task not found: ta"),
            ("tasks/cancel", "MCP error -32602: Task not found: ta"),
        ] {
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"taskId":"ta"}}}}"#
            );
            let before = mux.last_id;
            let got = exchange(&mut mux, &b, &request, "{}");
            assert_eq!(got["error"]["code"], -32602, "{method}: {got}");
            assert_eq!(got["error"]["message"], message);
            assert_eq!(got["id"], 1);
            assert_eq!(mux.last_id, before, "{method} reached the child");
        }
        let related = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"ta"}}}}"#;
        assert_eq!(
            exchange(&mut mux, &b, related, "{}")["error"]["code"],
            -32602
        );

        let get = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"ta"}}"#;
        let got = exchange(&mut mux, &a, get, r#"{"taskId":"ta","status":"working"}"#);
        assert_eq!(got["result"]["status"], "working", "a reads its own");
        let result = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/result","params":{"taskId":"ta"}}"#;
        let got = exchange(&mut mux, &a, result, r#"{"content":[]}"#);
        assert!(got.get("result").is_some());
        assert_eq!(
            exchange(&mut mux, &a, get, "{}")["error"]["code"],
            -32602,
            "read: forgotten"
        );
    }

    /// A task's status, and any notification related to it, reach its owner only.
    #[test]
    fn task_notifications_reach_the_owner_only() {
        let mut mux = Mux::default();
        let (a, _rx_a) = open_streaming(&mut mux, "a");
        let (_b, _rx_b) = open_streaming(&mut mux, "b");
        create_task(&mut mux, &a, "ta");
        let status = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"ta","status":"working"}}"#,
        );
        let (_, to) = mux.child_notification("notifications/tasks/status", &status);
        assert_eq!(to.len(), 1);
        let unknown = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"other","status":"working"}}"#,
        );
        let (_, to) = mux.child_notification("notifications/tasks/status", &unknown);
        assert!(to.is_empty(), "an unknown task's status goes nowhere");
        let log = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"ta"}}}}"#,
        );
        let (_, to) = mux.child_notification("notifications/message", &log);
        assert_eq!(to.len(), 1, "a related log line goes to the owner alone");
        let plain = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
        );
        assert_eq!(
            mux.child_notification("notifications/message", &plain)
                .1
                .len(),
            2
        );
    }

    /// A related-task elicitation goes to the owner's GET stream though it
    /// has no request waiting and another session has; its answer reaches
    /// the child. An owner that cannot answer it has it refused.
    #[test]
    fn a_related_elicitation_goes_to_the_owner_without_a_waiting_request() {
        let mut mux = Mux::default();
        let (a, mut rx_a) = open_streaming(&mut mux, "a");
        let (b, mut rx_b) = open_streaming(&mut mux, "b");
        create_task(&mut mux, &a, "ta");
        let (sink_b, _keep) = Sink::new(true);
        let waiting = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow"}}"#,
        );
        mux.client_request(&b, "9".into(), &waiting, sink_b)
            .expect("b waits");
        let elicit = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"c1","method":"elicitation/create","params":{"message":"which?","requestedSchema":{"type":"object"},"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"ta"}}}}"#,
        );
        assert!(matches!(
            mux.server_request(r#""c1""#, "elicitation/create", &elicit),
            ServerRequestRoute::Forwarded
        ));
        let got = message(&mut rx_a).expect("a got it");
        assert_eq!(got["method"], "elicitation/create");
        assert!(message(&mut rx_b).is_none(), "b got a's question");
        let reply = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"action":"accept"}}}}"#,
            got["id"]
        );
        let host_id = got["id"].to_string();
        assert!(
            mux.client_answer(&b, &host_id, &Bytes::from(reply.clone()))
                .is_none(),
            "b cannot answer it"
        );
        let to_child = mux
            .client_answer(&a, &host_id, &Bytes::from(reply))
            .expect("a answers");
        assert_eq!(id_of(&to_child), serde_json::json!("c1"));

        let url = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"c2","method":"elicitation/create","params":{"mode":"url","elicitationId":"e","url":"https://x","message":"m","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"ta"}}}}"#,
        );
        let route = mux.server_request(r#""c2""#, "elicitation/create", &url);
        assert!(
            matches!(route, ServerRequestRoute::NoSession { refusal: Some(_) }),
            "a declared no url mode"
        );
    }

    /// A task's progress token outlives the request that created the task:
    /// its progress reaches the owner's stream, with the client's token,
    /// until the task's result is read.
    #[test]
    fn a_tasks_progress_reaches_its_owner_until_the_task_is_done() {
        let mut mux = Mux::default();
        let (a, mut rx_a) = open_streaming(&mut mux, "a");
        let (sink, _rx) = Sink::new(false);
        let call = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","task":{},"_meta":{"progressToken":"p"}}}"#,
        );
        let (upstream, line) = mux
            .client_request(&a, "1".into(), &call, sink)
            .expect("sent");
        let sent: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let token = sent["params"]["_meta"]["progressToken"].clone();
        let created = format!(
            r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{"task":{{"taskId":"ta","ttl":null}}}}}}"#
        );
        assert!(mux.child_answer(upstream, Bytes::from(created)));
        let progress = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},"progress":1}}}}"#
        ));
        assert!(mux.child_progress(&progress));
        assert_eq!(
            message(&mut rx_a).expect("on a's stream")["params"]["progressToken"],
            "p"
        );
        let result = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/result","params":{"taskId":"ta"}}"#;
        exchange(&mut mux, &a, result, r#"{"content":[]}"#);
        assert!(
            !mux.child_progress(&progress),
            "the task is done: so is its token"
        );
        assert!(mux.progress.is_empty() && mux.task_progress.is_empty());
    }

    /// A URL-mode elicitation's completion reaches the session it was sent to, once.
    #[test]
    fn a_url_elicitation_completes_for_its_session_only() {
        let mut mux = Mux::default();
        let capabilities = ClientCapabilities::from_initialize(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{"elicitation":{"url":{}}}}}"#,
        );
        assert!(capabilities.elicitation_url && !capabilities.elicitation_form);
        let a = session("a");
        mux.open_session(Arc::clone(&a), capabilities);
        let (stream, mut rx_a) = Sink::new(true);
        assert!(mux.set_stream(&a, stream));
        let (_b, _rx_b) = open_streaming(&mut mux, "b");
        let url = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{"mode":"url","elicitationId":"e","url":"https://x","message":"m"}}"#,
        );
        assert!(matches!(
            mux.server_request("3", "elicitation/create", &url),
            ServerRequestRoute::Forwarded
        ));
        assert_eq!(
            message(&mut rx_a).expect("to a")["params"]["elicitationId"],
            "e"
        );
        let done = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/elicitation/complete","params":{"elicitationId":"e"}}"#,
        );
        assert_eq!(
            mux.child_notification("notifications/elicitation/complete", &done)
                .1
                .len(),
            1
        );
        assert!(
            mux.child_notification("notifications/elicitation/complete", &done)
                .1
                .is_empty()
        );
        let plain = ClientCapabilities::from_initialize(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#,
        );
        assert!(plain.elicitation_form && !plain.elicitation_url);
    }
}
