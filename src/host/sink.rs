//! Where messages for a client session go.
//!
//! A [`Sink`] is the sending end of one HTTP body: the stream of the POST
//! that asked, or the session's GET stream. Its [`SinkReceiver`] is read by
//! that body. The queue between them is bounded by its backlog in bytes
//! ([`SINK_LIMIT`]): a client that stops reading must not grow the host
//! without bound, so past the limit its body ends and the client
//! reconnects; a message of any size is queued while the backlog is under
//! the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::jsonrpc::{self, rewrite};

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

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Response(b) | Outbound::Message(b) => b.len(),
            Outbound::Done => 0,
        }
    }
}

/// Most bytes waiting unread for one client body. A message is queued
/// while less than this waits before it, whatever its own size: any single
/// answer reaches a client that reads, and one that stops reading holds at
/// most this plus one message before its body ends (dropping what is
/// queued) and it reconnects.
pub const SINK_LIMIT: usize = 16 * 1024 * 1024;

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

impl Sink {
    /// A sink and the receiving end its HTTP body reads from. A `streaming`
    /// sink (an SSE body) carries any message; the other kind only answers.
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

    /// Its body is still read, and not too far behind.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.queue.overflowed.load(Ordering::Relaxed)
    }

    /// Open, and able to carry server requests and notifications.
    pub fn carries_messages(&self) -> bool {
        self.streaming && self.is_open()
    }

    /// Queues a message; false if the body is gone or too far behind (it
    /// is then ended).
    pub fn send(&self, message: Outbound) -> bool {
        let len = message.len();
        let waiting = self.queue.bytes.fetch_add(len, Ordering::Relaxed);
        if waiting >= SINK_LIMIT {
            let queued = waiting + len;
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

    /// Answers the request `id` (JSON text) with an empty result.
    pub fn answer_ok(&self, id: &str) {
        let ok = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
        self.send(Outbound::Response(Bytes::from(ok)));
    }

    /// Answers the request `id` (JSON text) with an internal error.
    pub fn answer_error(&self, id: &str, message: &str) {
        self.answer_error_code(id, jsonrpc::code::INTERNAL_ERROR, message);
    }

    /// Answers the request `id` (JSON text) with an error of `code`.
    pub fn answer_error_code(&self, id: &str, code: i32, message: &str) {
        let error = jsonrpc::error_response(None, code, message);
        if let Some(error) = rewrite::replace_id(&error, id) {
            self.send(Outbound::Response(error));
        }
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

    /// The next message if one is queued now (for tests of the routing).
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let message = self.rx.try_recv().ok()?;
        self.queue.bytes.fetch_sub(message.len(), Ordering::Relaxed);
        Some(message)
    }
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

    /// The limit counts the backlog, not one message: an answer larger
    /// than the limit reaches a client that reads.
    #[tokio::test]
    async fn one_message_over_the_limit_gets_through() {
        let (sink, mut receiver) = Sink::new(true);
        let huge = Bytes::from(vec![b'x'; SINK_LIMIT + 4 * 1024 * 1024]);
        assert!(sink.send(Outbound::Response(huge.clone())));
        assert!(
            matches!(receiver.recv().await, Some(Outbound::Response(m)) if m.len() == huge.len())
        );
        assert!(sink.send(Outbound::Response(huge)), "read: room again");
        assert!(
            !sink.send(Outbound::Message(Bytes::from_static(b"more"))),
            "unread past the limit: ended"
        );
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
