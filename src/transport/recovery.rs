//! Surviving a daemon restart, the parts both transports share.
//!
//! The proxy keeps what the client set on its session (the log level, the
//! resource subscriptions) and a fingerprint of each list the client last
//! saw. When the daemon comes back, the transport opens a new session with
//! the client's own `initialize` ([`super::InitializeCache`]), then
//! [`restore`] sets the level and subscriptions again and tells the client
//! about every list that changed. Which requests may be sent again is
//! decided here too: only reads ([`crate::mcp::is_safe_read`]) or requests that never
//! reached the daemon; a `tools/call` cut mid-way is never run twice.

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::jsonrpc::{Kind, Message};
use crate::mcp::ListKind;

/// How long requests wait for a lost daemon to come back, by default.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one request of the proxy's own (restoring state) may take.
pub const INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the daemon again (it may have moved to another port), starting it
/// if need be: for `--target`, discovery; `None` for `--url`.
pub type Rediscover = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Url, RediscoverError>> + Send>> + Send + Sync,
>;

/// Why the daemon could not be found again (the proxy's discovery error:
/// the transport only shows it).
pub type RediscoverError = Box<dyn std::error::Error + Send + Sync>;

/// A [`RediscoverError`] that waiting will not change (the daemon cannot
/// be started, its port is someone else's): the recovery ends at once and
/// the requests waiting for it get this message; the next request tries
/// again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Final(pub String);

impl Final {
    /// Whether `error` is one.
    pub fn is(error: &(dyn std::error::Error + 'static)) -> bool {
        error.downcast_ref::<Final>().is_some()
    }
}

/// How a transport recovers from a lost daemon.
#[derive(Clone)]
pub struct Recovery {
    pub rediscover: Option<Rediscover>,
    /// How long requests wait for the daemon to come back.
    pub timeout: Duration,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("rediscover", &self.rediscover.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A fingerprint of a list answer's items (`result.tools`, …), `None` if it
/// is not a successful list answer. serde_json sorts object keys, so the
/// same list always gives the same fingerprint.
pub fn fingerprint(kind: ListKind, answer: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let items = value.get("result")?.get(kind.key())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    items.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

/// What the client set on its session (log level, subscriptions) and the
/// lists it has seen, kept so a new daemon session can be put in the same
/// state and the client told what changed.
#[derive(Debug, Default)]
pub struct SessionState {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The params of the last `logging/setLevel`.
    level: Option<String>,
    subscriptions: BTreeSet<String>,
    /// The last list of each kind the client was given (first page).
    lists: [Option<u64>; 3],
    /// Client requests for a first page of a list: id (as JSON) → kind.
    list_requests: Vec<(String, ListKind)>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UriParams {
    uri: Option<String>,
}

#[derive(Deserialize)]
struct CursorParams {
    cursor: Option<serde_json::Value>,
}

fn params_of(message: &Message) -> Option<String> {
    serde_json::from_slice::<Params<'_>>(&message.raw)
        .ok()?
        .params
        .map(|p| p.get().to_owned())
}

impl SessionState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        crate::sync::lock(&self.inner)
    }

    /// Notes what a client message sets (called for every message sent).
    pub fn observe(&self, message: &Message) {
        let Kind::Request { id, method } = &message.kind else {
            return;
        };
        let params = params_of(message);
        let uri = || {
            params
                .as_deref()
                .and_then(|p| serde_json::from_str::<UriParams>(p).ok())
                .and_then(|p| p.uri)
        };
        let mut kept = self.lock();
        match method.as_str() {
            "logging/setLevel" => kept.level = params.clone(),
            "resources/subscribe" => {
                if let Some(uri) = uri() {
                    kept.subscriptions.insert(uri);
                }
            }
            "resources/unsubscribe" => {
                if let Some(uri) = uri() {
                    kept.subscriptions.remove(&uri);
                }
            }
            other => {
                let first_page = params
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<CursorParams>(p).ok())
                    .is_none_or(|p| p.cursor.is_none());
                if let Some(kind) = ListKind::of(other).filter(|_| first_page) {
                    if kept.list_requests.len() >= 64 {
                        kept.list_requests.remove(0);
                    }
                    kept.list_requests.push((id.as_json().to_owned(), kind));
                }
            }
        }
    }

    /// Notes a response the client was given (a list it now knows).
    pub fn observe_answer(&self, id_json: &str, answer: &[u8]) {
        let mut kept = self.lock();
        let Some(at) = kept.list_requests.iter().position(|(id, _)| id == id_json) else {
            return;
        };
        let (_, kind) = kept.list_requests.remove(at);
        if let Some(print) = fingerprint(kind, answer) {
            kept.lists[kind.index()] = Some(print);
        }
    }

    /// The requests that put a new session in the client's state:
    /// `(method, params)`.
    pub fn restore_requests(&self) -> Vec<(&'static str, String)> {
        let kept = self.lock();
        let mut requests = Vec::new();
        if let Some(level) = &kept.level {
            requests.push(("logging/setLevel", level.clone()));
        }
        for uri in &kept.subscriptions {
            let params = serde_json::json!({ "uri": uri }).to_string();
            requests.push(("resources/subscribe", params));
        }
        requests
    }

    /// The lists the client has seen.
    fn known_lists(&self) -> Vec<(ListKind, u64)> {
        let kept = self.lock();
        ListKind::ALL
            .into_iter()
            .filter_map(|k| kept.lists[k.index()].map(|p| (k, p)))
            .collect()
    }

    fn set_list(&self, kind: ListKind, print: u64) {
        self.lock().lists[kind.index()] = Some(print);
    }
}

/// A transport that can send requests of the proxy's own on its session.
pub(crate) trait InternalRequests {
    /// Sends `method` with `params` (JSON text); its answer, if one came.
    fn internal_request(
        &self,
        method: &'static str,
        params: String,
    ) -> impl Future<Output = Option<Bytes>> + Send;
}

/// Puts the new session in the client's state, then tells the client
/// about every list that changed.
pub(crate) async fn restore(
    transport: &impl InternalRequests,
    kept: &SessionState,
    inbound: &dyn super::Inbound,
) {
    for (method, params) in kept.restore_requests() {
        if transport.internal_request(method, params).await.is_none() {
            tracing::warn!(method, "cannot restore this on the new daemon session");
        }
    }
    for (kind, before) in kept.known_lists() {
        let Some(answer) = transport
            .internal_request(kind.method(), "{}".to_owned())
            .await
        else {
            continue;
        };
        let Some(now) = fingerprint(kind, &answer) else {
            continue;
        };
        if now != before {
            kept.set_list(kind, now);
            tracing::info!(
                list = kind.method(),
                "the new daemon's list differs; telling the client"
            );
            if inbound.reply(kind.notification()).await.is_err() {
                return;
            }
        }
    }
}

/// Delays between attempts to reach a lost daemon: 50 ms, doubling to 1 s.
pub fn reconnect_backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &'static str) -> Message {
        crate::jsonrpc::classify(Bytes::from_static(text.as_bytes())).expect("valid")
    }

    #[test]
    fn the_clients_level_and_subscriptions_are_kept() {
        let kept = SessionState::default();
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}"#,
        ));
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"a://1"}}"#,
        ));
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"a://2"}}"#,
        ));
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":{"uri":"a://1"}}"#,
        ));
        let requests = kept.restore_requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(requests[0].0, "logging/setLevel");
        assert!(requests[0].1.contains("debug"));
        assert_eq!(
            requests[1],
            ("resources/subscribe", r#"{"uri":"a://2"}"#.to_owned())
        );
    }

    #[test]
    fn a_list_the_client_saw_is_fingerprinted() {
        let kept = SessionState::default();
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":"t","method":"tools/list"}"#,
        ));
        kept.observe(&message(
            r#"{"jsonrpc":"2.0","id":"p2","method":"prompts/list","params":{"cursor":"x"}}"#,
        ));
        kept.observe_answer(
            r#""t""#,
            br#"{"jsonrpc":"2.0","id":"t","result":{"tools":[{"name":"a"}]}}"#,
        );
        kept.observe_answer(
            r#""p2""#,
            br#"{"jsonrpc":"2.0","id":"p2","result":{"prompts":[]}}"#,
        );
        let known = kept.known_lists();
        assert_eq!(known.len(), 1, "only first pages count: {known:?}");
        assert_eq!(known[0].0, ListKind::Tools);
        let same = fingerprint(
            ListKind::Tools,
            br#"{"result":{"tools":[{"name":"a"}]},"id":9}"#,
        );
        let other = fingerprint(ListKind::Tools, br#"{"result":{"tools":[{"name":"b"}]}}"#);
        assert_eq!(same, Some(known[0].1));
        assert_ne!(other, same);
    }

    #[test]
    fn back_off_doubles_to_a_second() {
        let mut backoff = reconnect_backoff();
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
    }
}
