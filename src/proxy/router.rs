//! Where daemon messages go: the table of client requests in flight.
//!
//! Every client request is registered here before it is sent, and leaves the
//! table when its one answer has been written: the daemon's response, or an
//! error the proxy made because no response can come. That is how the proxy
//! keeps "exactly one answer per request" while several streams (POST streams,
//! the GET stream, a legacy SSE stream) deliver messages at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::jsonrpc::{self, Kind, RawId};
use crate::stdio::{Output, OutputClosed};
use crate::transport::recovery::SessionState;
use crate::transport::{ClientGone, Delivered, Inbound, InboundFuture};

/// Client requests in flight, and the client's output.
pub struct Router {
    output: Output,
    state: Mutex<State>,
    /// Woken whenever a request leaves the table.
    settled: Notify,
    /// Sees every daemon answer the client is given (the lists it knows).
    observer: std::sync::OnceLock<Arc<SessionState>>,
}

#[derive(Default)]
struct State {
    in_flight: HashMap<RawId, InFlight>,
    /// Requests the proxy answered itself (with an error): a late response
    /// from the daemon for one of these is dropped, so the client never gets
    /// two answers. Bounded; only the latest ids matter.
    answered_by_proxy: VecDeque<RawId>,
}

const ANSWERED_BY_PROXY_KEPT: usize = 256;

enum InFlight {
    /// A client request; its answer goes to stdout (or into its batch).
    Client {
        batch: Option<Arc<Batch>>,
        /// It came in a batch: even an answer that comes after the batch's
        /// array (the client cancelled it) is written as an array.
        in_batch: bool,
        /// The client sent `notifications/cancelled` for it: it no longer
        /// counts as in flight, and the proxy never invents an answer for it.
        cancelled: bool,
    },
    /// A request the proxy itself sent (a replayed `initialize`): its answer
    /// is handed back to the proxy, never to the client.
    Internal(oneshot::Sender<Bytes>),
}

/// The answers of one client batch, written as one array line when complete.
pub struct Batch {
    state: Mutex<BatchState>,
}

struct BatchState {
    remaining: usize,
    answers: Vec<Bytes>,
}

impl Batch {
    /// A batch that waits for `requests` answers.
    pub fn new(requests: usize) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState {
                remaining: requests,
                answers: Vec::with_capacity(requests),
            }),
        })
    }

    /// Adds an answer; returns the whole array once the last one is in.
    pub fn add(&self, answer: Bytes) -> Option<Bytes> {
        self.settle(Some(answer))
    }

    /// One request of the batch will get no answer (the client cancelled it);
    /// returns the whole array if that was the last one missing.
    fn skip(&self) -> Option<Bytes> {
        self.settle(None)
    }

    fn settle(&self, answer: Option<Bytes>) -> Option<Bytes> {
        let mut state = lock(&self.state);
        state.answers.extend(answer);
        state.remaining = state.remaining.saturating_sub(1);
        if state.remaining > 0 {
            return None;
        }
        let answers = std::mem::take(&mut state.answers);
        if answers.is_empty() {
            return None; // every request was cancelled: nothing to write
        }
        Some(jsonrpc::batch(&answers))
    }
}

impl Router {
    pub fn new(output: Output) -> Arc<Router> {
        Arc::new(Router {
            output,
            state: Mutex::new(State::default()),
            settled: Notify::new(),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Shows every daemon answer given to the client to `kept` (once).
    pub fn observe_answers(&self, kept: Arc<SessionState>) {
        let _ = self.observer.set(kept);
    }

    /// Registers a client request before it is sent.
    pub fn begin(&self, id: RawId, batch: Option<Arc<Batch>>) {
        let pending = InFlight::Client {
            in_batch: batch.is_some(),
            batch,
            cancelled: false,
        };
        lock(&self.state).in_flight.insert(id, pending);
    }

    /// Registers a request of the proxy's own; the answer comes back on the
    /// returned channel instead of going to the client.
    pub fn begin_internal(&self, id: RawId) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        lock(&self.state)
            .in_flight
            .insert(id, InFlight::Internal(tx));
        rx
    }

    /// Forgets a request of the proxy's own that will not be answered.
    pub fn abandon_internal(&self, id: &RawId) {
        let mut state = lock(&self.state);
        if matches!(state.in_flight.get(id), Some(InFlight::Internal(_))) {
            state.in_flight.remove(id);
        }
    }

    /// The client cancelled this request: stop counting it as in flight.
    /// Returns a batch line that this completes (its other answers were in).
    pub fn cancel(&self, id: &RawId) -> Option<Bytes> {
        let mut completed = None;
        if let Some(InFlight::Client {
            cancelled, batch, ..
        }) = lock(&self.state).in_flight.get_mut(id)
        {
            if !*cancelled {
                *cancelled = true;
                // Its batch stops waiting for it (a late answer goes out on its own).
                completed = batch.take().and_then(|b| b.skip());
            }
        }
        self.settled.notify_waiters();
        completed
    }

    /// Is this id one of the proxy's own requests?
    pub fn is_internal(&self, id: &RawId) -> bool {
        matches!(
            lock(&self.state).in_flight.get(id),
            Some(InFlight::Internal(_))
        )
    }

    /// Is this client request still waiting for its answer?
    pub fn is_pending(&self, id: &RawId) -> bool {
        lock(&self.state).in_flight.contains_key(id)
    }

    /// The client requests waiting for an answer (cancelled ones excluded).
    pub fn waiting_client_requests(&self) -> Vec<RawId> {
        lock(&self.state)
            .in_flight
            .iter()
            .filter(|(_, p)| {
                matches!(
                    p,
                    InFlight::Client {
                        cancelled: false,
                        ..
                    }
                )
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Waits until no client request is waiting for an answer.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.settled.notified();
            if self.waiting_client_requests().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Routes one message from the daemon. `answering` is the request whose
    /// own POST stream carried it: a response there is that request's answer
    /// even if the server re-wrote the id (`1.0` for `1`, `"A"` for
    /// `"\u0041"`), and gets the client's exact id back.
    ///
    /// # Errors
    /// [`OutputClosed`] when the client has gone.
    pub async fn deliver(
        &self,
        raw: Bytes,
        answering: Option<&RawId>,
    ) -> Result<Delivered, OutputClosed> {
        if std::str::from_utf8(&raw).is_err() {
            tracing::warn!("the daemon sent a message that is not UTF-8; dropped");
            return Ok(Delivered::Invalid);
        }
        let message = match jsonrpc::classify(raw) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "the daemon sent something that is not JSON-RPC; dropped");
                return Ok(Delivered::Invalid);
            }
        };
        let mut line = jsonrpc::to_single_line(message.raw);
        match message.kind {
            Kind::Response { id } => {
                let id = match answering {
                    Some(wanted) if *wanted != id => {
                        match jsonrpc::rewrite::replace_id(&line, wanted.as_json()) {
                            Some(fixed) => line = fixed,
                            None => return Ok(Delivered::Invalid),
                        }
                        wanted.clone()
                    }
                    _ => id,
                };
                self.answer(&id, line.clone(), true).await?;
                Ok(Delivered::Response(id, line))
            }
            _ => {
                self.output.send(line).await?;
                Ok(Delivered::Other)
            }
        }
    }

    /// Answers a waiting client request with an error made by the proxy.
    /// Does nothing if the request has been answered or was cancelled.
    ///
    /// # Errors
    /// [`OutputClosed`] when the client has gone.
    pub async fn fail(
        &self,
        id: &RawId,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<(), OutputClosed> {
        let answer = jsonrpc::error_response_with_data(
            Some(id),
            jsonrpc::code::INTERNAL_ERROR,
            message,
            data,
        );
        self.answer(id, answer, false).await
    }

    /// Writes a message the proxy made (a parse error) straight to the client.
    ///
    /// # Errors
    /// [`OutputClosed`] when the client has gone.
    pub async fn reply(&self, line: Bytes) -> Result<(), OutputClosed> {
        self.output.send(line).await
    }

    async fn answer(&self, id: &RawId, line: Bytes, from_daemon: bool) -> Result<(), OutputClosed> {
        let pending = {
            let mut state = lock(&self.state);
            let pending = state.in_flight.remove(id);
            match &pending {
                None if from_daemon && state.answered_by_proxy.contains(id) => {
                    tracing::debug!(%id, "late daemon response to a request the proxy already answered; dropped");
                    return Ok(());
                }
                // An answer of the proxy's own for a request that is no longer
                // waiting (already answered, or cancelled) is never sent.
                None if !from_daemon => return Ok(()),
                Some(InFlight::Client {
                    cancelled: true, ..
                }) if !from_daemon => return Ok(()),
                _ => {}
            }
            if !from_daemon {
                if state.answered_by_proxy.len() == ANSWERED_BY_PROXY_KEPT {
                    state.answered_by_proxy.pop_front();
                }
                state.answered_by_proxy.push_back(id.clone());
            }
            pending
        };
        self.settled.notify_waiters();
        if from_daemon && matches!(pending, Some(InFlight::Client { .. })) {
            if let Some(observer) = self.observer.get() {
                observer.observe_answer(id.as_json(), &line);
            }
        }
        match pending {
            Some(InFlight::Internal(tx)) => {
                let _ = tx.send(line);
                Ok(())
            }
            Some(InFlight::Client {
                batch: Some(batch), ..
            }) => match batch.add(line) {
                Some(array) => self.output.send(array).await,
                None => Ok(()),
            },
            // A late answer to a cancelled element of a batch: still an array.
            Some(InFlight::Client {
                batch: None,
                in_batch: true,
                ..
            }) => self.output.send(jsonrpc::batch(&[line])).await,
            // Unknown ids are forwarded too: nothing the daemon sends is dropped.
            Some(InFlight::Client { batch: None, .. }) | None => self.output.send(line).await,
        }
    }
}

/// The transport's view of the router: the same calls, with the client's
/// end of stdout seen only as [`ClientGone`].
impl Inbound for Router {
    fn deliver<'a>(
        &'a self,
        raw: Bytes,
        answering: Option<&'a RawId>,
    ) -> InboundFuture<'a, Delivered> {
        Box::pin(async move {
            Router::deliver(self, raw, answering)
                .await
                .map_err(|OutputClosed| ClientGone)
        })
    }

    fn fail<'a>(
        &'a self,
        id: &'a RawId,
        message: &'a str,
        data: Option<&'a serde_json::Value>,
    ) -> InboundFuture<'a, ()> {
        Box::pin(async move {
            Router::fail(self, id, message, data)
                .await
                .map_err(|OutputClosed| ClientGone)
        })
    }

    fn reply(&self, line: Bytes) -> InboundFuture<'_, ()> {
        Box::pin(async move {
            Router::reply(self, line)
                .await
                .map_err(|OutputClosed| ClientGone)
        })
    }

    fn is_pending(&self, id: &RawId) -> bool {
        Router::is_pending(self, id)
    }

    fn is_internal(&self, id: &RawId) -> bool {
        Router::is_internal(self, id)
    }

    fn begin_internal(&self, id: RawId) -> oneshot::Receiver<Bytes> {
        Router::begin_internal(self, id)
    }

    fn abandon_internal(&self, id: &RawId) {
        Router::abandon_internal(self, id)
    }

    fn observe_answers(&self, kept: Arc<SessionState>) {
        Router::observe_answers(self, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::spawn_writer;
    use tokio_util::sync::CancellationToken;

    fn id(text: &str) -> RawId {
        jsonrpc::classify(Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{text},"method":"x"}}"#
        )))
        .expect("valid")
        .id()
        .cloned()
        .expect("has id")
    }

    async fn collect(router: Arc<Router>, mut read: tokio::io::DuplexStream) -> Vec<String> {
        drop(router);
        let mut all = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut read, &mut all)
            .await
            .expect("read");
        all.lines().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn each_request_gets_exactly_one_answer() {
        let (write, read) = tokio::io::duplex(1 << 16);
        let (output, _task) = spawn_writer(write, CancellationToken::new());
        let router = Router::new(output);
        router.begin(id("1"), None);
        router
            .fail(&id("1"), "daemon gone", None)
            .await
            .expect("open");
        // The daemon's late answer and a second proxy error are both dropped.
        let late = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        router.deliver(late, None).await.expect("open");
        router.fail(&id("1"), "again", None).await.expect("open");
        let lines = collect(router, read).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("daemon gone"));
    }

    #[tokio::test]
    async fn cancelled_requests_get_no_invented_answer_and_do_not_block_idle() {
        let (write, read) = tokio::io::duplex(1 << 16);
        let (output, _task) = spawn_writer(write, CancellationToken::new());
        let router = Router::new(output);
        router.begin(id("\"a\""), None);
        assert!(router.cancel(&id("\"a\"")).is_none());
        tokio::time::timeout(std::time::Duration::from_secs(1), router.wait_idle())
            .await
            .expect("idle although the cancelled request never finished");
        router.fail(&id("\"a\""), "x", None).await.expect("open");
        assert!(collect(router, read).await.is_empty());
    }

    #[tokio::test]
    async fn an_answer_on_its_own_stream_gets_the_clients_exact_id() {
        let (write, read) = tokio::io::duplex(1 << 16);
        let (output, _task) = spawn_writer(write, CancellationToken::new());
        let router = Router::new(output);
        let client_id = id("\"\\u0041\"");
        router.begin(client_id.clone(), None);
        // A server that re-serialised the id as "A".
        let answer = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"A","result":{}}"#);
        let delivered = router
            .deliver(answer, Some(&client_id))
            .await
            .expect("open");
        assert!(matches!(delivered, Delivered::Response(ref got, _) if *got == client_id));
        assert!(!router.is_pending(&client_id));
        let lines = collect(router, read).await;
        assert_eq!(lines, [r#"{"jsonrpc":"2.0","id":"\u0041","result":{}}"#]);
    }

    #[tokio::test]
    async fn a_cancelled_request_does_not_hold_its_batch_back() {
        let (write, read) = tokio::io::duplex(1 << 16);
        let (output, _task) = spawn_writer(write, CancellationToken::new());
        let router = Router::new(output);
        let batch = Batch::new(2);
        router.begin(id("1"), Some(batch.clone()));
        router.begin(id("2"), Some(batch));
        let one = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        router.deliver(one, None).await.expect("open");
        let line = router.cancel(&id("2")).expect("the batch is complete");
        router.reply(line).await.expect("open");
        // Its late answer is still an array (the client sent it in one).
        let late = Bytes::from_static(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
        router.deliver(late, None).await.expect("open");
        let lines = collect(router, read).await;
        assert_eq!(
            lines,
            [
                r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
                r#"[{"jsonrpc":"2.0","id":2,"result":{}}]"#
            ]
        );
    }

    #[tokio::test]
    async fn batch_answers_are_written_as_one_array() {
        let (write, read) = tokio::io::duplex(1 << 16);
        let (output, _task) = spawn_writer(write, CancellationToken::new());
        let router = Router::new(output);
        let batch = Batch::new(2);
        router.begin(id("1"), Some(batch.clone()));
        router.begin(id("2"), Some(batch));
        let two = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\n\"id\":2,\"result\":{}}");
        router.deliver(two, None).await.expect("open");
        router.fail(&id("1"), "nope", None).await.expect("open");
        let lines = collect(router, read).await;
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json array");
        assert_eq!(v.as_array().map(Vec::len), Some(2));
    }
}
