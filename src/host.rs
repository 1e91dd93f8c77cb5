//! Any stdio MCP server, shared: one child behind one Streamable HTTP endpoint.
//!
//! `mcp-manager host NAME` runs a [`Host`]: an HTTP server on
//! 127.0.0.1:`port` speaking the server side of Streamable HTTP (POST `/mcp`
//! answered as JSON or SSE, the GET stream, `DELETE`, `Mcp-Session-Id`
//! issued and checked, `MCP-Protocol-Version` checked, Host and Origin
//! checked) plus `GET /health`. Each client session is bound to a
//! backend (one child), chosen by the entry's scope: one for everyone
//! (`shared`), one per `Mcp-Project-Path` (`project`; the path must be an
//! existing directory), or one per session (`session`), at most
//! `maxChildren` at once. The backend multiplexes its sessions onto one
//! child.
//!
//! Besides the port it listens on `sockets/NAME.sock` in the home (Unix;
//! see [`crate::http::server::socket`]), where this user's proxies reach
//! it: the same routes, and the Host header still names the port.
//!
//! Bounds: this user's connections only, at most [`Limits::HOST`] of them
//! (see [`crate::http::server`]), POST bodies up to [`MAX_BODY`] read within
//! 10 s; what is queued for one client is bounded by [`sink::SINK_LIMIT`].
//!
//! Layout, from the wire down:
//! - this module: the HTTP endpoint (routes, per-request checks) and [`run`];
//! - `session`: client sessions (ids, idle timeouts, GET streams);
//! - `backend`: one child's life (start, restart, readiness, health);
//! - `readiness`: whether a session is served, waits or is refused at
//!   once (the crash-loop rule), pure;
//! - `failure`: why a start failed, as a session is told;
//! - `health`: the child's state as `/health` reports it;
//! - `modern`: the 2026-07-28 era's own process and its requests;
//! - `mux`: the multiplexing state, pure (ids, pending requests,
//!   subscriptions and log levels per session);
//! - `sink`: where messages for a session go;
//! - `child`: spawning the child process and its stdio;
//! - `stderr`: the child's stderr, appended to its log, its last lines kept.

mod backend;
mod child;
mod failure;
mod health;
mod modern;
mod mux;
mod readiness;
mod session;
mod sink;
mod stderr;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::Scope;
use crate::http::server::socket::UnixSocket;
use crate::http::server::{
    Body, BodyError, Limits, PageOrigin, empty_response as empty, json_bytes_response,
    json_response as json, sse_response as sse, text_response as plain,
};
use crate::jsonrpc::{self, Incoming as Parsed, Kind, Message, rewrite};
use crate::sync::lock;
use backend::Backend;
pub use backend::SupervisionTiming;
use child::ChildSpec;
use mux::{ClientCapabilities, SessionId};
use session::{ClientSession, Sessions, answer_stream, new_session_id, sse_message};
use sink::{Outbound, Sink, SinkReceiver};

/// Protocol versions the host accepts from clients.
use crate::mcp::SUPPORTED_VERSIONS;

/// How long a single request's answer may take to be sent as plain JSON.
const QUICK_ANSWER: Duration = Duration::from_millis(50);

/// The largest POST body accepted (what a client sends is a request or a
/// batch of them; the answers it gets may be of any size).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Everything a host needs to run.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub name: String,
    pub port: u16,
    pub scope: Scope,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// The child's stderr goes here.
    pub log: PathBuf,
    /// The tool's home: data directories under it are created for the child.
    pub home: PathBuf,
    pub timing: SupervisionTiming,
    /// A session with no request and no open stream for this long ends.
    pub session_timeout: Duration,
    /// Children running at once (the config's `maxChildren`); an
    /// `initialize` that would start one more is refused.
    pub max_children: usize,
}

/// The running host.
pub struct Host {
    options: HostOptions,
    /// Backends by scope key: `shared`, a project path, or a session id.
    backends: Mutex<HashMap<String, Arc<Backend>>>,
    sessions: Sessions,
    started: Instant,
}

/// Serves `listener`, and `unix` when there is one (`sockets/NAME.sock`,
/// removed when serving ends; the same routes), until `shutdown`
/// resolves, then stops every child.
pub async fn run(
    options: HostOptions,
    listener: TcpListener,
    unix: Option<UnixSocket>,
    shutdown: impl Future<Output = ()>,
) {
    let host = Arc::new(Host {
        options,
        backends: Mutex::new(HashMap::new()),
        sessions: Sessions::default(),
        started: Instant::now(),
    });
    if host.options.scope == Scope::Shared {
        // Start the shared child now: the first client should not wait for it.
        let _ = host.backend_for("shared");
    }
    tokio::spawn(Arc::clone(&host).reap_idle_sessions());
    let serving = Arc::clone(&host);
    crate::http::server::serve(
        listener,
        unix,
        Limits::HOST,
        move |request| Arc::clone(&serving).handle(request),
        shutdown,
    )
    .await;
    let backends: Vec<Arc<Backend>> = lock(&host.backends).values().cloned().collect();
    // Every child gets its SIGTERM grace, in parallel, before the exit.
    let stops = backends
        .iter()
        .map(|b| b.stop_and_wait(Duration::from_secs(5)));
    futures_util::future::join_all(stops).await;
}

impl Host {
    /// The backend of `scope_key`, started if there is none.
    ///
    /// # Errors
    /// Why none can be started: `maxChildren` run already.
    fn backend_for(&self, scope_key: &str) -> Result<Arc<Backend>, String> {
        let mut backends = lock(&self.backends);
        if let Some(backend) = backends.get(scope_key) {
            return Ok(Arc::clone(backend));
        }
        let max = self.options.max_children;
        if backends.len() >= max {
            return Err(format!(
                "{name} already runs {max} children, its \"maxChildren\": end some sessions, or raise \"maxChildren\" in the {name} entry of config.json",
                name = self.options.name
            ));
        }
        let label = format!("{}[{}]", self.options.name, short(scope_key));
        let spec = self.child_spec(scope_key, &label);
        let backend = Backend::start(label, spec, self.options.timing);
        backends.insert(scope_key.to_owned(), Arc::clone(&backend));
        Ok(backend)
    }

    /// The command with `{project}` and `{projectHash}` filled in.
    fn child_spec(&self, scope_key: &str, label: &str) -> ChildSpec {
        let o = &self.options;
        let project = match (o.scope, scope_key) {
            (Scope::Project, "default") | (Scope::Shared | Scope::Session, _) => "",
            (Scope::Project, path) => path,
        };
        let hash = project_hash(project);
        let fill = |text: &str| {
            text.replace("{project}", project)
                .replace("{projectHash}", &hash)
        };
        let env: Vec<(String, String)> = o.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        create_data_dirs(&o.home, &env);
        ChildSpec {
            command: fill(&o.command),
            args: o.args.iter().map(|a| fill(a)).collect(),
            env,
            cwd: o
                .cwd
                .as_ref()
                .map(|c| PathBuf::from(fill(&c.to_string_lossy()))),
            log: o.log.clone(),
            label: label.to_owned(),
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        if let Err(refusal) = self.check_host_and_origin(&request) {
            return refusal;
        }
        let path = request.uri().path().to_owned();
        match (request.method(), path.as_str()) {
            (&Method::GET, "/health") => self.health(),
            (&Method::POST, "/mcp") => self.post(request).await,
            (&Method::GET, "/mcp") => self.get_stream(&request),
            (&Method::DELETE, "/mcp") => self.delete(&request).await,
            (_, "/mcp") => plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST, GET or DELETE on /mcp",
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "Not found"}),
            ),
        }
    }

    /// DNS-rebinding defence: the Host must be this loopback port, and an
    /// Origin (browsers send one) must be a loopback origin.
    #[expect(clippy::result_large_err, reason = "the error is the response to send")]
    fn check_host_and_origin(&self, request: &Request<Incoming>) -> Result<(), Response<Body>> {
        if !crate::http::server::is_own_host(request.headers(), self.options.port) {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "forbidden: the Host header must name this loopback port",
            ));
        }
        if crate::http::server::page_origin(request.headers()) == PageOrigin::Foreign {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "forbidden: requests from web pages of other origins are refused",
            ));
        }
        Ok(())
    }

    /// `/health`: `state` is "ok" when every child runs, else "degraded"
    /// (as it always was); `crashLoop` (added for issue 15) says whether a
    /// child's last start failed, each child's entry saying more (see
    /// [`health`]).
    fn health(&self) -> Response<Body> {
        let mut all_running = true;
        let mut crash_loop = false;
        let backends: Vec<serde_json::Value> = lock(&self.backends)
            .iter()
            .map(|(key, b)| {
                let health = b.health();
                all_running &= health.is_running();
                crash_loop |= health.is_crash_loop();
                let mut v = serde_json::to_value(health).unwrap_or_default();
                v["scopeKey"] = serde_json::Value::String(key.clone());
                v["sessions"] = b.session_count().into();
                v
            })
            .collect();
        let state = if all_running { "ok" } else { "degraded" };
        let first = backends.first().cloned().unwrap_or_default();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "name": self.options.name,
                "state": state,
                "scope": self.options.scope,
                "pid": first.get("pid").cloned().unwrap_or_default(),
                "sessions": self.sessions.count(),
                "uptimeMs": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "children": backends,
                "crashLoop": crash_loop,
            }),
        )
    }

    async fn post(self: &Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let headers = request.headers().clone();
        let is_json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
        if !is_json {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            );
        }
        let read = crate::http::server::read_body(
            request.into_body(),
            MAX_BODY,
            Limits::HOST.body_timeout,
        );
        let body = match read.await {
            Ok(body) => body,
            Err(error) => {
                let status = match error {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
                };
                return rpc_error(status, &error.to_string());
            }
        };
        let (messages, is_batch) = match jsonrpc::parse_line(body) {
            Ok(Parsed::Single(message)) => (vec![refuse_null_id(message)], false),
            Ok(Parsed::Batch(items)) => {
                let items = items
                    .into_iter()
                    .map(|item| item.and_then(refuse_in_batch))
                    .collect::<Vec<_>>();
                (items, true)
            }
            Err(error) => {
                return json_bytes(StatusCode::BAD_REQUEST, error.to_response(), None);
            }
        };
        let wants_sse = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        if let [Ok(message)] = messages.as_slice()
            && !is_batch
            && is_modern(message, &headers)
            && let Some(answer) = self.modern_post(message, &headers, wants_sse).await
        {
            return answer;
        }
        match messages.as_slice() {
            [Err(error)] if !is_batch => {
                return json_bytes(StatusCode::BAD_REQUEST, error.to_response(), None);
            }
            [Ok(message)]
                if !is_batch && let Some(refusal) = unspoken_version(message, &headers) =>
            {
                return refusal;
            }
            [Ok(message)]
                if !is_batch
                    && message.method() == Some("initialize")
                    && matches!(message.kind, Kind::Request { .. }) =>
            {
                return self.initialize(message, &headers).await;
            }
            // A batch of nothing usable is answered here, like bad JSON:
            // one error per element, as an array.
            all if is_batch && all.iter().all(Result::is_err) => {
                let errors: Vec<Bytes> = all
                    .iter()
                    .filter_map(|m| m.as_ref().err().map(jsonrpc::ParseError::to_response))
                    .collect();
                return json_bytes(StatusCode::BAD_REQUEST, jsonrpc::batch(&errors), None);
            }
            _ => {}
        }
        let session = match self.session_of(&headers) {
            Ok(session) => session,
            Err(refusal) => return refusal,
        };
        session.touch();
        let requests = messages
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    Ok(Message {
                        kind: Kind::Request { .. },
                        ..
                    }) | Err(_)
                )
            })
            .count();
        let (sink, rx) = Sink::new(wants_sse);
        let backend = Arc::clone(&session.backend);
        let session_id = Arc::clone(&session.id);
        tokio::spawn(async move {
            for message in messages {
                match message {
                    Ok(message) => backend.handle(&session_id, message, sink.clone()).await,
                    Err(error) => {
                        sink.send(Outbound::Response(error.to_response()));
                    }
                }
            }
        });
        let answers = Answers {
            requests,
            is_batch,
            wants_sse,
            modern: false,
        };
        self.answer(Some(&session), rx, answers).await
    }

    /// The answer to a POST whose `requests` answers come on `rx`: JSON,
    /// or an event stream when the client takes one and more than one
    /// message comes (or the answer is slow).
    async fn answer(
        &self,
        session: Option<&ClientSession>,
        rx: SinkReceiver,
        answers: Answers,
    ) -> Response<Body> {
        let Answers {
            requests,
            is_batch,
            wants_sse,
            modern,
        } = answers;
        if requests == 0 {
            return empty(StatusCode::ACCEPTED);
        }
        if !wants_sse {
            return self
                .json_answers(session, rx, requests, is_batch, modern)
                .await;
        }
        if requests > 1 {
            return sse(answer_stream(rx, requests));
        }
        // One request: if its answer comes quickly and before anything else,
        // send it as plain JSON (headers and body in one write). Otherwise
        // open the event stream at once, so that a client waiting on a long
        // call gets its headers (HTTP clients time out waiting for them).
        let mut rx = rx;
        match tokio::time::timeout(QUICK_ANSWER, rx.recv()).await {
            Ok(Some(Outbound::Response(answer))) => {
                let status = answer_status(&answer, modern);
                let body = if is_batch {
                    jsonrpc::batch(&[answer])
                } else {
                    answer
                };
                json_bytes(status, body, None)
            }
            Ok(Some(Outbound::Message(first))) => {
                let rest = answer_stream(rx, 1);
                sse(futures_util::stream::once(async move { sse_message(&first) }).chain(rest))
            }
            Ok(Some(Outbound::Done) | None) => empty(StatusCode::ACCEPTED),
            Err(_) => sse(answer_stream(rx, 1)),
        }
    }

    /// Collects the answers for a client that takes JSON only (an array
    /// for a batch); anything else goes to its GET stream, if it has one.
    async fn json_answers(
        &self,
        session: Option<&ClientSession>,
        mut rx: SinkReceiver,
        requests: usize,
        is_batch: bool,
        modern: bool,
    ) -> Response<Body> {
        let mut answers = Vec::with_capacity(requests);
        let mut settled = 0;
        while settled < requests {
            match rx.recv().await {
                Some(Outbound::Response(answer)) => {
                    answers.push(answer);
                    settled += 1;
                }
                Some(Outbound::Done) => settled += 1,
                Some(Outbound::Message(message)) => {
                    // A JSON answer cannot carry it: the GET stream can
                    // (a 2026-07-28 request has none: dropped).
                    let Some(session) = session else { continue };
                    if !session.backend.send_to_stream(&session.id, message) {
                        tracing::debug!(session = %short(&session.id), "a message for a JSON-only client with no GET stream; dropped");
                    }
                }
                None => break,
            }
        }
        if answers.is_empty() {
            return empty(StatusCode::ACCEPTED); // every request was cancelled
        }
        let status = match answers.as_slice() {
            [one] => answer_status(one, modern),
            _ => StatusCode::OK,
        };
        let body = if answers.len() == 1 && !is_batch {
            answers.remove(0)
        } else {
            jsonrpc::batch(&answers)
        };
        json_bytes(status, body, None)
    }

    /// A 2026-07-28 message (no session; see [`is_modern`]) for a child
    /// that speaks that era: forwarded to the backend's 2026-07-28 process
    /// (see [`modern`]) and answered on this POST. `None` when the child
    /// does not speak it, cannot be asked, or the scope is `session` (a
    /// child per session needs a session): then it is handled as before
    /// (-32022, so the client falls back to `initialize`).
    async fn modern_post(
        &self,
        message: &Message,
        headers: &hyper::HeaderMap,
        wants_sse: bool,
    ) -> Option<Response<Body>> {
        let scope_key = match self.options.scope {
            Scope::Shared => "shared".to_owned(),
            Scope::Project => project_of(headers)
                .ok()?
                .unwrap_or_else(|| "default".to_owned()),
            Scope::Session => return None,
        };
        let backend = self.backend_for(&scope_key).ok()?;
        let modern = backend.modern();
        if let Err(error) = modern.speaks().await {
            tracing::debug!(%error, "a 2026-07-28 request answered as by a 2025 server");
            return None;
        }
        let Kind::Request { id, method } = &message.kind else {
            modern.notify(message).await;
            return Some(empty(StatusCode::ACCEPTED));
        };
        if let Some(refusal) = header_mismatch(id, method, message, headers) {
            return Some(refusal);
        }
        let (sink, rx) = Sink::new(wants_sse);
        if let Err(error) = modern.request(message, id.as_json(), sink).await {
            tracing::debug!(%error, "a 2026-07-28 request the server's process could not take");
            return None;
        }
        let answers = Answers {
            requests: 1,
            is_batch: false,
            wants_sse,
            modern: true,
        };
        Some(self.answer(None, rx, answers).await)
    }

    async fn initialize(&self, message: &Message, headers: &hyper::HeaderMap) -> Response<Body> {
        let Kind::Request { id, .. } = &message.kind else {
            return plain(StatusCode::BAD_REQUEST, "initialize must be a request");
        };
        let session_id: SessionId = Arc::from(new_session_id().as_str());
        let refuse = |reason: &str| {
            let answer = jsonrpc::error_response(Some(id), jsonrpc::code::SERVER_ERROR, reason);
            json_bytes(StatusCode::OK, answer, None)
        };
        let scope_key = match self.options.scope {
            Scope::Shared => "shared".to_owned(),
            Scope::Project => match project_of(headers) {
                Ok(project) => project.unwrap_or_else(|| "default".to_owned()),
                Err(reason) => return refuse(&reason),
            },
            Scope::Session => session_id.to_string(),
        };
        let backend = match self.backend_for(&scope_key) {
            Ok(backend) => backend,
            Err(reason) => {
                tracing::warn!(reason, "refused a session");
                return refuse(&reason);
            }
        };
        let result = match backend
            .initialize_result(self.options.timing.initialize)
            .await
        {
            Ok(result) => result,
            Err(error) => {
                if self.options.scope == Scope::Session {
                    backend.stop();
                    lock(&self.backends).remove(&scope_key);
                }
                let answer = jsonrpc::error_response(
                    Some(id),
                    jsonrpc::code::INTERNAL_ERROR,
                    &error.to_string(),
                );
                return json_bytes(StatusCode::OK, answer, None);
            }
        };
        let requested = params_protocol_version(&message.raw);
        let child_version = rewrite::string_field(&result, "protocolVersion");
        let version = requested
            .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
            .filter(|v| child_version.as_ref().is_none_or(|c| v <= c))
            .or(child_version)
            .unwrap_or_else(|| backend::CHILD_PROTOCOL_VERSION.to_owned());
        let result = serde_json::to_string(&version)
            .ok()
            .and_then(|v| rewrite::replace_field(&result, "protocolVersion", &v))
            .unwrap_or(result);
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
            id.as_json(),
            String::from_utf8_lossy(&result)
        );
        let capabilities = ClientCapabilities::from_initialize(&message.raw);
        backend.open_session(Arc::clone(&session_id), capabilities);
        let session = ClientSession::new(
            Arc::clone(&session_id),
            backend,
            scope_key,
            capabilities.roots,
        );
        self.sessions.insert(Arc::new(session));
        tracing::info!(session = %short(&session_id), version, "session opened");
        json_bytes(StatusCode::OK, Bytes::from(answer), Some(&session_id))
    }

    /// The session a request names, after checking its `MCP-Protocol-Version`.
    #[expect(clippy::result_large_err, reason = "the error is the response to send")]
    fn session_of(&self, headers: &hyper::HeaderMap) -> Result<Arc<ClientSession>, Response<Body>> {
        if let Some(version) = headers.get(crate::mcp::PROTOCOL_VERSION_HEADER) {
            let known = version
                .to_str()
                .is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v));
            if !known {
                return Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unsupported MCP-Protocol-Version {version:?}; supported: {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ));
            }
        }
        let Some(id) = headers
            .get(crate::mcp::SESSION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: the Mcp-Session-Id header is required (send initialize first)",
            ));
        };
        self.sessions.get(id).ok_or_else(|| {
            rpc_error(
                StatusCode::NOT_FOUND,
                "Session not found: initialize a new session",
            )
        })
    }

    fn get_stream(&self, request: &Request<Incoming>) -> Response<Body> {
        // (A client that reconnects its stream re-triggers `roots/list`; harmless.)
        let accepts = request
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        if !accepts {
            return plain(
                StatusCode::NOT_ACCEPTABLE,
                "the GET stream needs Accept: text/event-stream",
            );
        }
        let session = match self.session_of(request.headers()) {
            Ok(session) => session,
            Err(refusal) => return refusal,
        };
        let Some(rx) = session.open_stream() else {
            return plain(
                StatusCode::CONFLICT,
                "this session already has a GET stream open",
            );
        };
        sse(answer_stream(rx, usize::MAX))
    }

    async fn delete(self: &Arc<Self>, request: &Request<Incoming>) -> Response<Body> {
        let session = match self.session_of(request.headers()) {
            Ok(session) => session,
            Err(refusal) => return refusal,
        };
        // Answer at once; the clean-up talks to the child, which may be slow.
        self.sessions.remove(&session.id);
        let host = Arc::clone(self);
        tokio::spawn(async move { host.end_session(&session).await });
        empty(StatusCode::OK)
    }

    async fn end_session(self: &Arc<Self>, session: &ClientSession) {
        self.sessions.remove(&session.id);
        session.backend.close_session(&session.id).await;
        match self.options.scope {
            Scope::Session => {
                if let Some(backend) = lock(&self.backends).remove(&session.scope_key) {
                    backend.stop();
                }
            }
            // A project's child stops when no session has used it for a
            // while; the next session of that project starts it again.
            Scope::Project if session.backend.session_count() == 0 => {
                let host = Arc::clone(self);
                let key = session.scope_key.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(host.options.session_timeout).await;
                    let mut backends = lock(&host.backends);
                    if backends.get(&key).is_some_and(|b| b.session_count() == 0) {
                        if let Some(backend) = backends.remove(&key) {
                            tracing::info!(project = %key, "stopping an unused project child");
                            backend.stop();
                        }
                    }
                });
            }
            _ => {}
        }
        tracing::info!(session = %short(&session.id), "session ended");
    }

    /// Ends sessions that sent nothing and hold no stream for too long.
    async fn reap_idle_sessions(self: Arc<Self>) {
        let every = (self.options.session_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            for session in self.sessions.idle(self.options.session_timeout) {
                tracing::info!(session = %short(&session.id), "ending an idle session");
                self.end_session(&session).await;
            }
        }
    }
}

/// `body` as JSON, with the session's id if one is given.
fn json_bytes(status: StatusCode, body: Bytes, session: Option<&str>) -> Response<Body> {
    let mut response = json_bytes_response(status, body);
    if let Some(value) = session.and_then(|s| hyper::header::HeaderValue::from_str(s).ok()) {
        response
            .headers_mut()
            .insert(crate::mcp::SESSION_ID_HEADER, value);
    }
    response
}

/// How a POST is to be answered.
#[derive(Debug, Clone, Copy)]
struct Answers {
    /// How many answers are awaited.
    requests: usize,
    is_batch: bool,
    /// The client takes an event stream.
    wants_sse: bool,
    /// A 2026-07-28 request: its transport errors are HTTP 400.
    modern: bool,
}

/// Whether `message`, sent without a session, is of a 2026-07-28 exchange
/// (or a later one's): a `server/discover`, a message declaring a version
/// in its `_meta`, or one whose `MCP-Protocol-Version` header names no
/// session-era version.
fn is_modern(message: &Message, headers: &hyper::HeaderMap) -> bool {
    if headers.contains_key(crate::mcp::SESSION_ID_HEADER) {
        return false;
    }
    let method = match &message.kind {
        Kind::Request { method, .. } | Kind::Notification { method } => method.as_str(),
        _ => return false,
    };
    // As the reference server tells the eras apart: a `_meta` version, or
    // a header that names no session-era version.
    method == crate::mcp::DISCOVER
        || headers
            .get(crate::mcp::PROTOCOL_VERSION_HEADER)
            .is_some_and(|v| {
                v.to_str()
                    .map_or(true, |v| !SUPPORTED_VERSIONS.contains(&v))
            })
        || crate::mcp::Declared::of(method, &message.raw, false)
            .version
            .is_some()
}

/// What a 2026-07-28 request must carry, checked as that revision's HTTP
/// transport checks it (a stdio child cannot), in the reference server's
/// order: an `MCP-Protocol-Version` header (else -32020), the `_meta`
/// envelope (version and client capabilities, else -32602), that header
/// equal to the version in `_meta`, `Mcp-Method` equal to the method, and
/// `Mcp-Name` equal to the name or URI of a `tools/call`, `prompts/get` or
/// `resources/read` (else -32020); each refusal is HTTP 400.
fn header_mismatch(
    id: &jsonrpc::RawId,
    method: &str,
    message: &Message,
    headers: &hyper::HeaderMap,
) -> Option<Response<Body>> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let declared = crate::mcp::Declared::of(method, &message.raw, true);
    let refuse = |code: i32, problem: &str| {
        Some(json_bytes(
            StatusCode::BAD_REQUEST,
            jsonrpc::error_response(Some(id), code, problem),
            None,
        ))
    };
    let Some(version_header) = header(crate::mcp::PROTOCOL_VERSION_HEADER) else {
        return refuse(
            crate::mcp::HEADER_MISMATCH,
            "the MCP-Protocol-Version header is required on a 2026-07-28 request",
        );
    };
    if !crate::mcp::has_envelope(&message.raw) {
        return refuse(
            jsonrpc::code::INVALID_PARAMS,
            "invalid params: a 2026-07-28 request needs _meta with io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
        );
    }
    let version = match declared.version {
        Some(b) if b != version_header => Some(format!(
            "the MCP-Protocol-Version header {version_header:?} disagrees with the body's {b:?}; send the same version in both"
        )),
        _ => None,
    };
    let method_problem = || match header(crate::mcp::METHOD_HEADER) {
        None => Some(format!(
            "the Mcp-Method header is required on a 2026-07-28 request; send Mcp-Method: {method}"
        )),
        Some(h) if h != method => Some(format!(
            "the Mcp-Method header {h:?} disagrees with the body's method {method:?}"
        )),
        Some(_) => None,
    };
    let name_problem = || {
        let name = declared.name.as_deref()?;
        match header(crate::mcp::NAME_HEADER) {
            None => Some(format!(
                "the Mcp-Name header is required on a 2026-07-28 {method}; send the name the body names"
            )),
            Some(h) if h != crate::mcp::header_value(name) && h != name => Some(format!(
                "the Mcp-Name header {h:?} disagrees with the body's {name:?}"
            )),
            Some(_) => None,
        }
    };
    let problem = version.or_else(method_problem).or_else(name_problem)?;
    refuse(crate::mcp::HEADER_MISMATCH, &problem)
}

/// JSON-RPC's "method not found".
const METHOD_NOT_FOUND: i64 = -32_601;

/// The HTTP status of a single answer: 200, but for a 2026-07-28 request
/// as that revision's HTTP transport answers: 400 for -32022, -32020 and
/// -32021, 404 for -32601 (a method the server does not implement).
fn answer_status(answer: &[u8], modern: bool) -> StatusCode {
    #[derive(Deserialize)]
    struct Answer {
        error: Option<Error>,
    }
    #[derive(Deserialize)]
    struct Error {
        code: i64,
    }
    if !modern {
        return StatusCode::OK;
    }
    let code = serde_json::from_slice::<Answer>(answer)
        .ok()
        .and_then(|a| a.error)
        .map(|e| e.code);
    let bad_request = [
        crate::mcp::UNSUPPORTED_PROTOCOL_VERSION,
        crate::mcp::HEADER_MISMATCH,
        crate::mcp::MISSING_CLIENT_CAPABILITY,
    ];
    match code {
        Some(c) if bad_request.iter().any(|b| i64::from(*b) == c) => StatusCode::BAD_REQUEST,
        Some(METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// An HTTP error whose body is a JSON-RPC error (what MCP clients read).
fn rpc_error(status: StatusCode, message: &str) -> Response<Body> {
    json_bytes(
        status,
        jsonrpc::error_response(None, jsonrpc::code::SERVER_ERROR, message),
        None,
    )
}

/// The 2026-07-28 version negotiation: a request that declares a version
/// the host does not speak (in `params._meta` or `MCP-Protocol-Version`),
/// and any `server/discover` (a 2026-07-28 request), is answered HTTP 400
/// with -32022, its own id and the versions the host speaks, so the client
/// falls back to `initialize` as the spec says.
fn unspoken_version(message: &Message, headers: &hyper::HeaderMap) -> Option<Response<Body>> {
    let Kind::Request { id, method } = &message.kind else {
        return None;
    };
    let header = headers
        .get(crate::mcp::PROTOCOL_VERSION_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let requested = crate::mcp::Declared::of(method, &message.raw, false)
        .version
        .or(header);
    let requested = match requested {
        Some(version) if !SUPPORTED_VERSIONS.contains(&version.as_str()) => version,
        Some(version) if method == crate::mcp::DISCOVER => version,
        None if method == crate::mcp::DISCOVER => crate::mcp::STATELESS_VERSION.to_owned(),
        _ => return None,
    };
    let data = crate::mcp::unsupported_version_data(&requested);
    let text = format!(
        "unsupported protocol version {requested:?}: this server speaks {}; initialize with one of them",
        SUPPORTED_VERSIONS.join(", ")
    );
    Some(json_bytes(
        StatusCode::BAD_REQUEST,
        jsonrpc::error_response_with_data(
            Some(id),
            crate::mcp::UNSUPPORTED_PROTOCOL_VERSION,
            &text,
            Some(&data),
        ),
        None,
    ))
}

/// `params.protocolVersion` of an `initialize` request.
fn params_protocol_version(raw: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Init {
        params: Option<Params>,
    }
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    serde_json::from_slice::<Init>(raw)
        .ok()?
        .params?
        .protocol_version
}

/// Creates the directory of every file path in `env` that lies in our home
/// directory (`MEMORY_FILE_PATH` of the built-in memory), so the child can
/// write there; 0700, like the home: a hosted server's data is this user's.
fn create_data_dirs(home: &std::path::Path, env: &[(String, String)]) {
    for (_, value) in env {
        let path = std::path::Path::new(value);
        if path.is_absolute() && path.starts_with(home) {
            if let Some(dir) = path.parent() {
                if let Err(error) = crate::paths::create_private_dir(dir) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot create a data directory");
                }
            }
        }
    }
}

/// The `Mcp-Project-Path` header (`None` if there is none). It must be a
/// plain absolute path (no `..`: it ends up in a command line, an
/// environment and a directory name) of an existing directory: every new
/// project starts a child.
///
/// # Errors
/// What is wrong with the header, naming it.
fn project_of(headers: &hyper::HeaderMap) -> Result<Option<String>, String> {
    let header = "Mcp-Project-Path";
    let Some(value) = headers.get(crate::mcp::PROJECT_PATH_HEADER) else {
        return Ok(None);
    };
    let Ok(text) = value.to_str() else {
        return Err(format!(
            "the {header} header is not plain text; send the project's absolute path"
        ));
    };
    let path = std::path::Path::new(text);
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !plain {
        return Err(format!(
            "the {header} {text:?} is not a plain absolute path (no \"..\"); send the project's absolute path"
        ));
    }
    if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "the {header} {text:?} is not an existing directory; send the path of the project's directory"
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A single message with `"id": null` reads as a notification, but a
/// request's id may not be null (JSON-RPC 2.0, and MCP): refused with
/// -32600 and id null, as the spec answers an invalid request.
fn refuse_null_id(message: Message) -> Result<Message, jsonrpc::ParseError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "present")]
        id: bool,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| true)
    }
    let null_id = matches!(message.kind, Kind::Notification { .. })
        && serde_json::from_slice::<Probe>(&message.raw).is_ok_and(|p| p.id);
    if null_id {
        return Err(jsonrpc::ParseError::Invalid {
            id: None,
            reason: "the id must be a string or a number, not null (a notification has no id)"
                .into(),
        });
    }
    Ok(message)
}

/// An element of a batch: as [`refuse_null_id`], and `initialize` is
/// refused (MCP: it must not be part of a batch; it opens the session the
/// rest belongs to).
fn refuse_in_batch(message: Message) -> Result<Message, jsonrpc::ParseError> {
    let message = refuse_null_id(message)?;
    if message.method() == Some("initialize") {
        return Err(jsonrpc::ParseError::Invalid {
            id: message.id().cloned(),
            reason: "initialize must be sent alone, not in a batch".into(),
        });
    }
    Ok(message)
}

/// A stable short hash of a project path, for file names (FNV-1a, 64 bits).
pub fn project_hash(project: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in project.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The first characters of an id or key, for logs.
fn short(text: &str) -> String {
    text.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_hashes_are_stable_and_distinct() {
        assert_eq!(
            project_hash("/home/a/project"),
            project_hash("/home/a/project")
        );
        assert_ne!(
            project_hash("/home/a/project"),
            project_hash("/home/a/other")
        );
        assert_eq!(project_hash("").len(), 16);
    }

    fn request(raw: &'static [u8]) -> Message {
        jsonrpc::classify(Bytes::from_static(raw)).expect("a message")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> hyper::HeaderMap {
        let mut map = hyper::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, hyper::header::HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_session_less_2026_message_is_told_from_a_2025_one() {
        let discover = request(br#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#);
        assert!(is_modern(&discover, &headers(&[])));
        let meta = request(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert!(is_modern(&meta, &headers(&[])));
        assert!(!is_modern(&meta, &headers(&[("mcp-session-id", "abc")])));
        let legacy = request(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(!is_modern(
            &legacy,
            &headers(&[("mcp-protocol-version", "2025-11-25")])
        ));
        assert!(is_modern(
            &legacy,
            &headers(&[("mcp-protocol-version", "2026-07-28")])
        ));
        let init = request(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        );
        assert!(!is_modern(&init, &headers(&[])));
    }

    #[test]
    fn a_2026_request_is_checked_as_its_http_transport_checks_it() {
        let call = request(
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        );
        let Kind::Request { id, method } = &call.kind else {
            panic!("a request")
        };
        let good = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ];
        assert!(header_mismatch(id, method, &call, &headers(&good)).is_none());
        for bad in [
            &good[1..],
            &[good[0], good[2]][..],
            &[good[0], good[1]][..],
            &[good[0], ("mcp-method", "tools/list"), good[2]][..],
            &[good[0], good[1], ("mcp-name", "other")][..],
            &[("mcp-protocol-version", "2099-01-01"), good[1], good[2]][..],
        ] {
            let refusal = header_mismatch(id, method, &call, &headers(bad)).expect("refused");
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let bare = request(br#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#);
        let refusal = header_mismatch(
            id,
            "tools/list",
            &bare,
            &headers(&[good[0], ("mcp-method", "tools/list")]),
        )
        .expect("refused: no envelope");
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_2026_answer_has_the_status_its_http_transport_gives_it() {
        let error = |code: i32| jsonrpc::error_response(None, code, "x").to_vec();
        assert_eq!(
            answer_status(&error(-32_022), true),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            answer_status(&error(-32_021), true),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(answer_status(&error(-32_601), true), StatusCode::NOT_FOUND);
        assert_eq!(answer_status(&error(-32_602), true), StatusCode::OK);
        assert_eq!(answer_status(&error(-32_601), false), StatusCode::OK);
        assert_eq!(
            answer_status(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, true),
            StatusCode::OK
        );
    }

    #[test]
    fn a_json_answer_carries_the_session_id_it_is_given() {
        let answer = json_bytes(StatusCode::OK, Bytes::from_static(b"{}"), Some("abc123"));
        assert_eq!(answer.headers()[crate::mcp::SESSION_ID_HEADER], "abc123");
        assert_eq!(answer.headers()[CONTENT_TYPE], "application/json");
        let plain_answer = json_bytes(StatusCode::OK, Bytes::from_static(b"{}"), None);
        assert!(
            plain_answer
                .headers()
                .get(crate::mcp::SESSION_ID_HEADER)
                .is_none()
        );
    }
}
