//! The 2026-07-28 era of a backend: a second connection to the server, in
//! that era.
//!
//! A stdio server of the 2026-07-28 revision (TS SDK v2, Python `mcp` 2.x)
//! fixes a connection's era by its first message: `initialize` makes it a
//! 2025 connection (later `_meta`-versioned requests are answered the 2025
//! way), `server/discover` or a `_meta`-versioned request a 2026-07-28 one
//! (`initialize` is then refused with -32022). One child cannot serve both,
//! so a backend whose sessions are 2025 sessions on its main child gets, at
//! the first 2026-07-28 request, a second process of the same command whose
//! first line is the host's own `server/discover`. A child that lists
//! 2026-07-28 there is kept and serves every 2026-07-28 request of the
//! scope (they are stateless: everything a request needs is in it); one
//! that does not is stopped, and the backend answers such requests with
//! -32022 from then on, as before, so clients fall back to `initialize`.
//!
//! Each request goes to the child with the host's own id (and progress
//! token), and its answer (and the progress for its token) only to the
//! POST it came on. Nothing else the child sends is attributable to one
//! request, so nothing else is passed on (no broadcast); a server request
//! is refused. The two processes share no memory: a server that keeps
//! state in memory shows each era its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::child::{Child, ChildSpec};
use super::sink::{Outbound, Sink};
use crate::jsonrpc::{self, Kind, Message, rewrite};
use crate::stdio::Output;
use crate::sync::lock;

/// Requests waiting on the 2026-07-28 child at once, across its clients.
const MAX_PENDING: usize = 4_096;

/// From this many waiting requests on, each new one first drops those
/// whose client went away.
const SWEEP_FROM: usize = 64;

/// JSON-RPC's "method not found".
const METHOD_NOT_FOUND: i32 = -32_601;

/// How long the child may take to answer the host's `server/discover`
/// (the main child runs already, so its runner is warm); one that does
/// not answer in time is taken not to speak 2026-07-28.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the backend knows of its child's 2026-07-28 era.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Era {
    /// Not asked yet.
    Unknown,
    /// It speaks 2026-07-28: its `server/discover` result.
    Speaks(Bytes),
    /// It does not (its `server/discover` answer lists no 2026-07-28, or
    /// it gave none in time).
    DoesNot,
}

/// The 2026-07-28 child of one backend.
pub struct Modern {
    label: String,
    spec: ChildSpec,
    timeout: Duration,
    era: Mutex<Era>,
    /// Starts are one at a time.
    running: tokio::sync::Mutex<Option<Running>>,
    table: Arc<Mutex<Table>>,
    /// A start that failed holds the next one off until then.
    not_before: Mutex<Option<Instant>>,
    backoff: Mutex<crate::backoff::Backoff>,
}

struct Running {
    child: Child,
    stdin: Output,
    reader: JoinHandle<()>,
}

/// The requests waiting on the child, by the host's id.
#[derive(Default)]
struct Table {
    next: u64,
    pending: HashMap<u64, Pending>,
    /// Host progress token → host id of its request.
    tokens: HashMap<String, u64>,
}

struct Pending {
    client_id: String,
    sink: Option<Sink>,
    answer: Option<tokio::sync::oneshot::Sender<Bytes>>,
    token: Option<(String, String)>,
}

/// Why a 2026-07-28 request could not be served by the child.
#[derive(Debug, thiserror::Error)]
pub enum ModernError {
    /// The child does not speak 2026-07-28: answer -32022.
    #[error("the server does not speak 2026-07-28")]
    Unspoken,
    /// It could not be started or asked; the text says why.
    #[error("{0}")]
    Unavailable(String),
}

impl Modern {
    /// The 2026-07-28 side of a backend whose child is started from `spec`.
    pub fn new(label: String, spec: ChildSpec, timeout: Duration) -> Modern {
        Modern {
            label: format!("{label}[2026-07-28]"),
            spec,
            timeout: timeout.min(PROBE_TIMEOUT),
            era: Mutex::new(Era::Unknown),
            running: tokio::sync::Mutex::new(None),
            table: Arc::new(Mutex::new(Table::default())),
            not_before: Mutex::new(None),
            backoff: Mutex::new(crate::backoff::Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(60),
            )),
        }
    }

    /// Forwards `message` (a 2026-07-28 request whose id is `id`) to the
    /// child, started (and asked `server/discover`) if none runs; its answer
    /// and progress go to `sink`.
    ///
    /// # Errors
    /// [`ModernError::Unspoken`] when the child does not speak 2026-07-28;
    /// [`ModernError::Unavailable`] when it cannot be started or asked.
    pub async fn request(
        &self,
        message: &Message,
        id: &str,
        sink: Sink,
    ) -> Result<(), ModernError> {
        let stdin = self.ensure().await?;
        let mut abandoned = Vec::new();
        let registered = register(&self.table, message, id, sink, &mut abandoned);
        for gone in abandoned {
            let cancel = serde_json::json!({
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": gone, "reason": "the client went away", "_meta": {
                    crate::mcp::PROTOCOL_VERSION_META: crate::mcp::STATELESS_VERSION,
                    crate::mcp::CLIENT_CAPABILITIES_META: {},
                }},
            });
            let _ = stdin.send(Bytes::from(cancel.to_string())).await;
        }
        let (upstream, line) = registered?;
        if stdin.send(line).await.is_err() {
            if let Some(p) = forget(&self.table, upstream) {
                if let Some(sink) = p.sink {
                    sink.answer_error(id, "the server process is not running; retry");
                }
            }
        }
        Ok(())
    }

    /// Whether the child speaks 2026-07-28, started (and asked) if need be.
    ///
    /// # Errors
    /// As [`Modern::request`].
    pub async fn speaks(&self) -> Result<(), ModernError> {
        self.ensure().await.map(|_| ())
    }

    /// Forwards a 2026-07-28 notification to a running child that speaks
    /// that era; dropped otherwise (nothing waits on it).
    pub async fn notify(&self, message: &Message) {
        let running = self.running.lock().await;
        if let Some(running) = running.as_ref().filter(|r| !r.reader.is_finished()) {
            let _ = running.stdin.send(message.raw.clone()).await;
        }
    }

    /// What is known of the child's era.
    pub fn era(&self) -> Era {
        lock(&self.era).clone()
    }

    /// Stops the child, if one runs.
    pub async fn stop(&self) {
        if let Some(running) = self.running.lock().await.take() {
            running.reader.abort();
            running.child.terminate().await;
        }
        fail_all(&self.table, "the server process was stopped");
    }

    /// The running child's stdin, started (and its era learnt) if needed.
    async fn ensure(&self) -> Result<Output, ModernError> {
        if self.era() == Era::DoesNot {
            return Err(ModernError::Unspoken);
        }
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            if !r.reader.is_finished() {
                return Ok(r.stdin.clone());
            }
        }
        if let Some(old) = running.take() {
            old.child.terminate().await;
            fail_all(
                &self.table,
                "the server process ended; the request may or may not have run",
            );
        }
        if let Some(at) = *lock(&self.not_before) {
            if Instant::now() < at {
                return Err(ModernError::Unavailable(
                    "the server's 2026-07-28 process failed to start; retry in a moment".into(),
                ));
            }
        }
        match self.start().await {
            Ok(started) => {
                let stdin = started.stdin.clone();
                *running = Some(started);
                lock(&self.backoff).reset();
                Ok(stdin)
            }
            Err(error) => {
                if matches!(error, ModernError::Unavailable(_)) {
                    let delay = lock(&self.backoff).next_delay();
                    *lock(&self.not_before) = Some(Instant::now() + delay);
                }
                Err(error)
            }
        }
    }

    /// Spawns the child and asks it `server/discover`.
    async fn start(&self) -> Result<Running, ModernError> {
        let mut child = Child::spawn(&self.spec).map_err(|e| {
            ModernError::Unavailable(format!("the server process did not start: {e}"))
        })?;
        let stdin = child.stdin.clone();
        let table = Arc::clone(&self.table);
        let label = self.label.clone();
        let reply = stdin.clone();
        let Some(reader) = child.read_stdout(move |line| on_line(&table, &label, &reply, line))
        else {
            child.terminate().await;
            return Err(ModernError::Unavailable(
                "the server process has no stdio".into(),
            ));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let upstream = {
            let mut table = lock(&self.table);
            table.next += 1;
            let upstream = table.next;
            table.pending.insert(
                upstream,
                Pending {
                    client_id: String::new(),
                    sink: None,
                    answer: Some(tx),
                    token: None,
                },
            );
            upstream
        };
        let discover = serde_json::json!({
            "jsonrpc": "2.0", "id": upstream, "method": crate::mcp::DISCOVER,
            "params": {"_meta": {
                crate::mcp::PROTOCOL_VERSION_META: crate::mcp::STATELESS_VERSION,
                crate::mcp::CLIENT_CAPABILITIES_META: {},
                "io.modelcontextprotocol/clientInfo": {"name": "mcp-session-manager", "version": env!("CARGO_PKG_VERSION")},
            }},
        });
        let _ = stdin.send(Bytes::from(discover.to_string())).await;
        let answer = tokio::time::timeout(self.timeout, rx).await;
        forget(&self.table, upstream);
        let speaks = match answer {
            Ok(Ok(answer)) => speaks_2026(&answer),
            // A 2026-07-28 server answers at once; one that ignores an
            // unknown method before `initialize` is a 2025 one.
            Ok(Err(_)) | Err(_) => None,
        };
        if let Some(result) = speaks {
            tracing::info!(backend = %self.label, "the server speaks 2026-07-28: a second process serves that era");
            *lock(&self.era) = Era::Speaks(result);
            Ok(Running {
                child,
                stdin,
                reader,
            })
        } else {
            tracing::info!(backend = %self.label, "the server does not speak 2026-07-28; its clients fall back to initialize");
            *lock(&self.era) = Era::DoesNot;
            reader.abort();
            child.terminate().await;
            Err(ModernError::Unspoken)
        }
    }
}

/// One line from the child: an answer to its request, progress to its
/// request's POST; a server request refused; anything else dropped.
fn on_line(table: &Mutex<Table>, label: &str, stdin: &Output, raw: Bytes) {
    let Ok(message) = jsonrpc::classify(raw) else {
        tracing::warn!(backend = %label, "the server wrote a line that is not JSON-RPC; dropped");
        return;
    };
    let raw = jsonrpc::to_single_line(message.raw.clone());
    match &message.kind {
        Kind::Response { id } => {
            let Some(pending) = id
                .as_json()
                .parse::<u64>()
                .ok()
                .and_then(|u| forget(table, u))
            else {
                tracing::debug!(backend = %label, "a late or unknown response; dropped");
                return;
            };
            if let Some(tx) = pending.answer {
                let _ = tx.send(raw);
            } else if let Some(sink) = pending.sink {
                if let Some(answer) = rewrite::replace_id(&raw, &pending.client_id) {
                    sink.send(Outbound::Response(answer));
                }
            }
        }
        Kind::Notification { method } if method == "notifications/progress" => {
            let Some(host_token) = rewrite::notification_progress_token(&raw) else {
                return;
            };
            let table = lock(table);
            let target = table
                .tokens
                .get(&host_token)
                .and_then(|u| table.pending.get(u))
                .and_then(|p| Some((p.sink.as_ref()?, p.token.as_ref()?)));
            if let Some((sink, (_, client_token))) = target {
                if let Some(m) = rewrite::replace_notification_progress_token(&raw, client_token) {
                    sink.send(Outbound::Message(m));
                }
            }
        }
        Kind::Request { id, method } => {
            tracing::warn!(backend = %label, method, "a server request on the 2026-07-28 connection; refused");
            let refusal = jsonrpc::error_response(
                None,
                METHOD_NOT_FOUND,
                "the host takes no server requests on a 2026-07-28 connection",
            );
            if let Some(refusal) = rewrite::replace_id(&refusal, id.as_json()) {
                stdin.try_send(refusal);
            }
        }
        Kind::Notification { method } => {
            // A `subscriptions/listen` stream's: its `_meta` names the
            // request (by the host's id); to that request's POST only.
            let target = subscription_of(&raw).and_then(|(upstream, quoted)| {
                let table = lock(table);
                let pending = table.pending.get(&upstream)?;
                let sink = pending.sink.clone()?;
                // A server that names it as a string gets the client's id
                // as a string back (as it would have named it).
                let id = &pending.client_id;
                let id = if quoted && !id.starts_with('"') {
                    format!("\"{id}\"")
                } else {
                    id.clone()
                };
                Some((rewrite::replace_subscription_id(&raw, &id)?, sink))
            });
            match target {
                Some((message, sink)) => {
                    sink.send(Outbound::Message(message));
                }
                None => {
                    tracing::debug!(backend = %label, method, "a notification of no request on the 2026-07-28 connection; dropped");
                }
            }
        }
        Kind::OrphanError => {
            tracing::warn!(backend = %label, "the server reported an error for an unreadable message");
        }
    }
}

/// Enters a request in the table: its host id and the line for the child
/// (the host's id and progress token in it).
fn register(
    table: &Mutex<Table>,
    message: &Message,
    id: &str,
    sink: Sink,
    abandoned: &mut Vec<u64>,
) -> Result<(u64, Bytes), ModernError> {
    let mut table = lock(table);
    if table.pending.len() >= SWEEP_FROM {
        sweep(&mut table, abandoned);
    }
    if table.pending.len() >= MAX_PENDING {
        return Err(ModernError::Unavailable(format!(
            "{MAX_PENDING} requests wait on the server already; retry when some are answered"
        )));
    }
    table.next += 1;
    let upstream = table.next;
    let mut line = rewrite::replace_id(&message.raw, &upstream.to_string())
        .ok_or_else(|| ModernError::Unavailable("the request's id cannot be rewritten".into()))?;
    let mut token = None;
    if let Some(client_token) = rewrite::request_progress_token(&line) {
        let host_token = format!("\"m{upstream}\"");
        if let Some(rewritten) = rewrite::replace_request_progress_token(&line, &host_token) {
            line = rewritten;
            table.tokens.insert(host_token.clone(), upstream);
            token = Some((host_token, client_token));
        }
    }
    table.pending.insert(
        upstream,
        Pending {
            client_id: id.to_owned(),
            sink: Some(sink),
            answer: None,
            token,
        },
    );
    Ok((upstream, line))
}

/// The host id a notification's `_meta` subscription id names, and
/// whether it names it as a string.
fn subscription_of(raw: &Bytes) -> Option<(u64, bool)> {
    let text = rewrite::subscription_id(raw)?;
    let upstream = text.trim_matches('"').parse::<u64>().ok()?;
    Some((upstream, text.starts_with('"')))
}

/// Drops the requests whose client went away (its POST's answer is read
/// by no one: a `subscriptions/listen` stream ends this way), naming them
/// in `abandoned` so the child is told.
fn sweep(table: &mut Table, abandoned: &mut Vec<u64>) {
    let gone: Vec<u64> = table
        .pending
        .iter()
        .filter(|(_, p)| p.sink.as_ref().is_some_and(|s| !s.is_open()))
        .map(|(u, _)| *u)
        .collect();
    for upstream in gone {
        if let Some(pending) = table.pending.remove(&upstream) {
            if let Some((host_token, _)) = &pending.token {
                table.tokens.remove(host_token);
            }
            abandoned.push(upstream);
        }
    }
}

/// Removes a waiting request (and its progress token).
fn forget(table: &Mutex<Table>, upstream: u64) -> Option<Pending> {
    let mut table = lock(table);
    let pending = table.pending.remove(&upstream)?;
    if let Some((host_token, _)) = &pending.token {
        table.tokens.remove(host_token);
    }
    Some(pending)
}

/// Fails every waiting request with `reason`.
fn fail_all(table: &Mutex<Table>, reason: &str) {
    let drained: Vec<Pending> = {
        let mut table = lock(table);
        table.tokens.clear();
        table.pending.drain().map(|(_, p)| p).collect()
    };
    for pending in drained {
        if let Some(sink) = pending.sink {
            sink.answer_error(&pending.client_id, reason);
        }
    }
}

/// The `result` of a `server/discover` answer that lists 2026-07-28.
fn speaks_2026(answer: &Bytes) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Discover {
        #[serde(default, rename = "supportedVersions")]
        supported: Vec<String>,
    }
    let parsed: Answer<'_> = serde_json::from_slice(answer).ok()?;
    let result = parsed.result?;
    let discover: Discover = serde_json::from_str(result.get()).ok()?;
    discover
        .supported
        .iter()
        .any(|v| v == crate::mcp::STATELESS_VERSION)
        .then(|| answer.slice_ref(result.get().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discover_answer_listing_2026_07_28_speaks_it() {
        let yes = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#,
        );
        assert!(speaks_2026(&yes).is_some());
        let no = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
        );
        assert!(speaks_2026(&no).is_none());
        let other = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}"#,
        );
        assert!(speaks_2026(&other).is_none());
    }

    #[test]
    fn a_listen_streams_notification_names_its_request_by_the_hosts_id() {
        let number = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":7}}}"#,
        );
        assert_eq!(subscription_of(&number), Some((7, false)));
        let back = rewrite::replace_subscription_id(&number, r#""abc""#).expect("spliced");
        assert!(back.ends_with(br#"{"io.modelcontextprotocol/subscriptionId":"abc"}}}"#));
        let string = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"12"}}}"#,
        );
        assert_eq!(subscription_of(&string), Some((12, true)));
        let none = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#,
        );
        assert!(subscription_of(&none).is_none());
    }

    #[test]
    fn requests_whose_client_went_away_are_swept_and_named() {
        let table = Mutex::new(Table::default());
        let message = jsonrpc::classify(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"a","method":"subscriptions/listen","params":{"_meta":{"progressToken":1}}}"#,
        ))
        .expect("a request");
        let mut abandoned = Vec::new();
        let (sink, rx) = Sink::new(true);
        let (upstream, line) =
            register(&table, &message, r#""a""#, sink, &mut abandoned).expect("entered");
        assert!(line.starts_with(format!(r#"{{"jsonrpc":"2.0","id":{upstream},"#).as_bytes()));
        assert!(
            std::str::from_utf8(&line)
                .is_ok_and(|l| l.contains(&format!(r#""progressToken":"m{upstream}""#)))
        );
        drop(rx);
        sweep(&mut lock(&table), &mut abandoned);
        assert_eq!(abandoned, vec![upstream]);
        assert!(lock(&table).pending.is_empty() && lock(&table).tokens.is_empty());
    }
}
