//! Client sessions: their ids, when they were last seen, their GET streams.
//!
//! A session starts with a client's `initialize` and is bound to one
//! [`Backend`] (by the entry's scope). It ends on `DELETE`, or once it has
//! sent nothing, held no stream and waited on nothing for the session
//! timeout (the host reaps it). The messages for a session reach its client
//! as an SSE body built by [`answer_stream`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::backend::Backend;
use super::mux::SessionId;
use super::sink::{Outbound, Sink, SinkReceiver};
use crate::sync::lock;

/// One client session.
pub struct ClientSession {
    pub id: SessionId,
    pub backend: Arc<Backend>,
    /// Which backend of the host it uses (`shared`, a project, or its id).
    pub scope_key: String,
    last_seen: Mutex<Instant>,
    /// The client can answer `roots/list`.
    has_roots: bool,
}

impl ClientSession {
    pub fn new(
        id: SessionId,
        backend: Arc<Backend>,
        scope_key: String,
        has_roots: bool,
    ) -> ClientSession {
        ClientSession {
            id,
            backend,
            scope_key,
            last_seen: Mutex::new(Instant::now()),
            has_roots,
        }
    }

    /// The client sent something.
    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// Has it sent nothing, held no stream and waited on nothing for `timeout`?
    fn is_idle(&self, timeout: Duration) -> bool {
        lock(&self.last_seen).elapsed() > timeout
            && !self.backend.has_stream(&self.id)
            && !self.backend.has_pending(&self.id)
    }

    /// Opens the session's GET stream: the receiver its SSE body reads.
    /// `None` if one is open already.
    pub fn open_stream(&self) -> Option<SinkReceiver> {
        let (sink, rx) = Sink::new(true);
        if !self.backend.set_stream(&self.id, sink) {
            return None;
        }
        self.touch();
        if self.has_roots {
            // A child's early `roots/list` may have found no session able to
            // answer; now one can, on this stream.
            let backend = Arc::clone(&self.backend);
            tokio::spawn(async move { backend.roots_changed().await });
        }
        Some(rx)
    }
}

/// The host's sessions, by id.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<SessionId, Arc<ClientSession>>>);

impl Sessions {
    pub fn insert(&self, session: Arc<ClientSession>) {
        lock(&self.0).insert(Arc::clone(&session.id), session);
    }

    pub fn get(&self, id: &str) -> Option<Arc<ClientSession>> {
        lock(&self.0).get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<ClientSession>> {
        lock(&self.0).remove(id)
    }

    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }

    /// The sessions idle for longer than `timeout`.
    pub fn idle(&self, timeout: Duration) -> Vec<Arc<ClientSession>> {
        lock(&self.0)
            .values()
            .filter(|s| s.is_idle(timeout))
            .cloned()
            .collect()
    }
}

/// A new session id: 128 random bits, hex (visible ASCII, unguessable).
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to time and a counter; still unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[8..].copy_from_slice(&(t as u64).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An SSE body of the messages on `rx`; ends after `answers` responses.
pub fn answer_stream(
    rx: SinkReceiver,
    answers: usize,
) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold((rx, answers), |(mut rx, mut left)| async move {
        loop {
            if left == 0 {
                return None;
            }
            let message = match rx.recv().await? {
                Outbound::Response(m) => {
                    left -= 1;
                    m
                }
                // A cancelled request: nothing to write, one less to wait for.
                Outbound::Done => {
                    left -= 1;
                    continue;
                }
                Outbound::Message(m) => m,
            };
            return Some((sse_message(&message), (rx, left)));
        }
    })
}

/// One JSON-RPC message as an SSE `message` event.
pub fn sse_message(message: &[u8]) -> Bytes {
    crate::http::server::sse_event("message", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_visible_ascii_and_differ() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_ne!(a, new_session_id());
    }
}
