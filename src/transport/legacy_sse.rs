//! The HTTP+SSE transport of MCP 2024-11-05, client side.
//!
//! One long-lived GET stream carries everything the daemon sends. Its first
//! event, `endpoint`, names the URL to POST client messages to (resolved
//! against the stream URL, query string kept byte for byte, same origin
//! only). A POST is answered 202; the response arrives later on the stream.
//! The session lives as long as the stream: when it drops, a new stream is
//! opened (the daemon found again, or started, for `--target`), the client's
//! `initialize` is replayed on it and its state restored before anything
//! else is posted; reads that were waiting are posted again, other requests
//! get an error saying they may or may not have run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::recovery::{self, InternalRequests, reconnect_backoff};
use super::{
    Shared, StreamCursor, StreamEnd, http_error_data, read_sse, reqwest_reason, short_body,
};
use crate::http::redacted;
use crate::jsonrpc::{Kind, Message, RawId};

/// Each POST must be accepted within this time (its answer comes on the
/// stream, so this bounds only the hand-over; some servers never answer a
/// POST for an unknown session).
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing waits for queued notifications to go out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stream must have stayed open for its end to start the
/// reconnect back-off over.
const STREAM_UP_RESET: Duration = Duration::from_secs(5);

/// A legacy SSE session with one daemon.
pub struct LegacySse {
    shared: Shared,
    /// The stream's URL; another port after a restart, maybe.
    sse_url: Mutex<Url>,
    /// Where to POST: the current stream's endpoint once it is known, or why
    /// it cannot be used (another origin).
    endpoint: watch::Sender<Option<Result<Url, String>>>,
    ordered: mpsc::UnboundedSender<Message>,
    /// Requests posted on the current stream, and reads cut with the last.
    posted: Mutex<Posted>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl LegacySse {
    pub(crate) fn start(shared: Shared, sse_url: Url) -> Arc<LegacySse> {
        let (ordered, queue) = mpsc::unbounded_channel();
        let this = Arc::new(LegacySse {
            shared,
            sse_url: Mutex::new(sse_url),
            endpoint: watch::Sender::new(None),
            ordered,
            posted: Mutex::new(Posted::default()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        this.tasks.spawn(Arc::clone(&this).run_stream());
        this.tasks.spawn(Arc::clone(&this).run_ordered(queue));
        this
    }

    /// See [`super::Upstream::send`].
    pub fn send(self: &Arc<Self>, message: Message) {
        self.shared.remember(&message);
        if matches!(message.kind, Kind::Request { .. }) {
            let ticket = self.shared.order.ticket();
            self.tasks.spawn(Arc::clone(self).request(message, ticket));
        } else {
            self.shared.order.enqueue();
            // The receiver lives as long as `self` (its task holds an Arc).
            let _ = self.ordered.send(message);
        }
    }

    /// See [`super::Upstream::close`]: this transport has no DELETE; closing
    /// the stream ends the session.
    pub async fn close(&self) {
        // Notifications and responses the client sent before the end go out
        // first (bounded: a hung daemon must not hold the exit).
        let flushed = self.shared.order.wait_for(self.shared.order.ticket());
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flushed).await;
        self.cancel.cancel();
    }

    async fn run_ordered(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(message) = queue.recv().await {
            if let Err(error) = self.post(&message).await {
                tracing::warn!(method = message.method(), error = %error.message, "cannot send a message to the daemon");
            }
            self.shared.order.mark_sent();
        }
    }

    async fn request(self: Arc<Self>, message: Message, ticket: u64) {
        let Kind::Request { id, method } = &message.kind else {
            return;
        };
        self.shared.order.wait_for(ticket).await;
        let is_initialize = method == "initialize";
        let deadline = Instant::now() + self.shared.recovery.timeout;
        let (mut outcome, mut token) = self.post_request(id, &message).await;
        while let Err(error) = &outcome {
            // `initialize` opens the session: a daemon lost before it answered
            // ran nothing, so it is sent again on the next stream (within the
            // reconnect bound), like a request that never reached the daemon.
            let again = error.not_sent || (is_initialize && error.lost);
            if !again || !self.shared.inbound.is_pending(id) || Instant::now() >= deadline {
                break;
            }
            // The daemon went away before it got this. Unless the recovery
            // has already taken it (to post again, or to fail), post it once
            // more on the next stream, once this one is seen to be gone.
            if !error.taken && !self.lock_posted().take_back(id, token) {
                return;
            }
            let mut endpoint = self.endpoint.subscribe();
            if endpoint.borrow_and_update().is_some() {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, endpoint.changed()).await;
            }
            (outcome, token) = self.post_request(id, &message).await;
            if !is_initialize {
                break; // once: a second loss is told
            }
        }
        if let Err(error) = outcome {
            tracing::warn!(%id, method, error = %error.message, "request failed");
            let _ = self
                .shared
                .inbound
                .fail(id, &error.message, error.data.as_ref())
                .await;
        }
    }

    fn lock_posted(&self) -> std::sync::MutexGuard<'_, Posted> {
        crate::sync::lock(&self.posted)
    }

    /// Posts a request once the endpoint is known, recording it first: if
    /// the stream drops before its answer, the recovery deals with it.
    /// Returns the token of the record, for [`Posted::take_back`].
    async fn post_request(&self, id: &RawId, message: &Message) -> (Result<(), PostError>, u64) {
        let endpoint = match self.endpoint_or_error().await {
            Ok(endpoint) => endpoint,
            Err(error) => return (Err(error), 0),
        };
        let token = {
            let mut posted = self.lock_posted();
            if posted.on_stream.len() >= 1024 {
                posted
                    .on_stream
                    .retain(|id, _| self.shared.inbound.is_pending(id));
            }
            if posted.dropped.len() >= 1024 {
                posted
                    .dropped
                    .retain(|id, _| self.shared.inbound.is_pending(id));
            }
            posted.record(id, message)
        };
        let outcome = self.post_to(&endpoint, message.raw.clone()).await;
        let dropped = outcome.is_ok() && !self.lock_posted().accept(id, token);
        if dropped {
            // Accepted by a session whose stream is gone: its answer will
            // never come, and it may have run. (Its record is gone: the
            // caller has nothing to take back.)
            let mut error = PostError::new(CUT_MESSAGE.to_owned());
            (error.lost, error.taken) = (true, true);
            return (Err(error), token);
        }
        (outcome, token)
    }

    /// POSTs one message to the current endpoint.
    async fn post(&self, message: &Message) -> Result<(), PostError> {
        let endpoint = self.endpoint_or_error().await?;
        self.post_to(&endpoint, message.raw.clone()).await
    }

    /// The current endpoint, waiting (bounded) for a stream to give one.
    async fn endpoint_or_error(&self) -> Result<Url, PostError> {
        match self.wait_endpoint().await {
            Some(Ok(url)) => Ok(url),
            Some(Err(reason)) => Err(PostError::new(format!(
                "the daemon's SSE endpoint is unusable: {reason}"
            ))),
            None => {
                let url = redacted(&self.sse_url());
                let waited = self.shared.recovery.timeout;
                Err(PostError::new(format!(
                    "the daemon's SSE stream at {url} gave no endpoint within {waited:?} (the daemon is unreachable)"
                )))
            }
        }
    }

    async fn post_to(&self, endpoint: &Url, body: bytes::Bytes) -> Result<(), PostError> {
        let request = (self.shared.http)
            .post(endpoint.clone())
            .headers(self.shared.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(POST_TIMEOUT)
            .body(body);
        let response = self.shared.send(request).await.map_err(|e| {
                let reason = reqwest_reason(&e);
                let shown = redacted(endpoint);
                let not_sent = super::never_reached(&e, self.shared.loopback);
                let message = if not_sent {
                    format!("cannot reach the daemon at {shown}: {reason}")
                } else {
                    format!(
                        "the daemon was lost while this was sent to {shown} ({reason}); it may or may not have run, so it was not sent again"
                    )
                };
                PostError {
                    message,
                    data: None,
                    not_sent,
                    lost: true,
                    taken: false,
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = short_body(response).await;
        let data = http_error_data(status, &body);
        Err(PostError {
            message: format!("the daemon answered HTTP {status}: {body}"),
            data: Some(data),
            not_sent: false,
            lost: false,
            taken: false,
        })
    }

    async fn wait_endpoint(&self) -> Option<Result<Url, String>> {
        let mut endpoint = self.endpoint.subscribe();
        let wait = self.shared.recovery.timeout;
        let found = tokio::time::timeout(wait, endpoint.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(url)) => url.clone(),
            _ => None,
        }
    }

    fn sse_url(&self) -> Url {
        crate::sync::lock(&self.sse_url).clone()
    }

    /// Keeps a stream open, reconnecting (and re-initializing) when it drops.
    async fn run_stream(self: Arc<Self>) {
        let mut backoff = reconnect_backoff();
        let mut streams = 0u64;
        // When the current outage began, for the log.
        let mut lost_since: Option<Instant> = None;
        loop {
            let url = self.sse_url();
            let request = self
                .shared
                .http
                .get(url.clone())
                .headers(self.shared.headers.clone())
                .header(ACCEPT, "text/event-stream")
                .send();
            let response = tokio::select! {
                r = request => r,
                () = self.cancel.cancelled() => return,
            };
            match response {
                Ok(r) if r.status() == StatusCode::OK => {
                    let opened = Instant::now();
                    streams += 1;
                    let reconnected = streams > 1;
                    if let Some(since) = lost_since.take() {
                        let ms = since.elapsed().as_millis();
                        tracing::warn!(ms, "reconnected to the daemon's SSE stream");
                    }
                    let mut cursor = StreamCursor::default();
                    let on_event = |event: &str, data: &str| {
                        if event == "endpoint" {
                            self.on_endpoint(data, reconnected);
                        }
                    };
                    // Dropping a half-read stream on shutdown is fine: the
                    // session ends with it.
                    let end = tokio::select! {
                        end = read_sse(r, &*self.shared.inbound, None, &mut cursor, on_event) => end,
                        () = self.cancel.cancelled() => return,
                    };
                    if matches!(end, StreamEnd::ClientGone) {
                        return;
                    }
                    // A stream that stayed up a while starts the back-off
                    // over; one closed at once does not (no reconnect storm).
                    if opened.elapsed() >= STREAM_UP_RESET {
                        backoff.reset();
                    }
                    self.endpoint.send_replace(None);
                    lost_since = Some(Instant::now());
                    tracing::warn!("daemon lost: its SSE stream closed; reconnecting");
                    self.settle_posted().await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = short_body(r).await;
                    tracing::warn!(%status, body, url = %redacted(&url), "the daemon refused the SSE stream");
                }
                Err(error) => {
                    tracing::debug!(error = %reqwest_reason(&error), url = %redacted(&url), "cannot open the SSE stream");
                    self.rediscover().await;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// Finds the daemon again (starting it if need be), for `--target`.
    async fn rediscover(&self) {
        let Some(rediscover) = &self.shared.recovery.rediscover else {
            return;
        };
        let found = tokio::select! {
            found = tokio::time::timeout(self.shared.recovery.timeout, rediscover()) => found,
            () = self.cancel.cancelled() => return,
        };
        match found {
            Ok(Ok(url)) => {
                let mut current = crate::sync::lock(&self.sse_url);
                if *current != url {
                    tracing::info!(url = %redacted(&url), "the daemon moved");
                    self.shared.moved_to(&url);
                    *current = url;
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot find the daemon again yet"),
            Err(_) => tracing::warn!("finding the daemon again timed out"),
        }
    }

    fn on_endpoint(self: &Arc<Self>, data: &str, reconnected: bool) {
        let endpoint = match resolve_endpoint(&self.sse_url(), data.trim()) {
            Ok(url) => url,
            Err(reason) => {
                tracing::error!(
                    endpoint = data,
                    reason,
                    "the daemon's endpoint event is unusable"
                );
                self.endpoint.send_replace(Some(Err(reason)));
                return;
            }
        };
        tracing::debug!(endpoint = %redacted(&endpoint), "legacy SSE endpoint");
        if !reconnected {
            self.endpoint.send_replace(Some(Ok(endpoint)));
            return;
        }
        // A new stream is a new session: initialize it and restore the
        // client's state before anything else is posted there.
        let this = Arc::clone(self);
        self.tasks.spawn(async move {
            // A client whose own `initialize` is still unanswered has no
            // session to restore: its `initialize` is posted again instead.
            let unanswered = (this.shared.replay.client_id())
                .is_some_and(|id| this.shared.inbound.is_pending(&id));
            if !unanswered && this.reinitialize(&endpoint).await {
                let session = OnEndpoint {
                    sse: &this,
                    endpoint: &endpoint,
                };
                recovery::restore(&session, &this.shared.kept, &*this.shared.inbound).await;
            }
            this.endpoint.send_replace(Some(Ok(endpoint.clone())));
            this.post_again(&endpoint).await;
        });
    }

    /// Opens the new stream's session with the client's `initialize`; true
    /// if it was answered and `initialized` sent.
    async fn reinitialize(&self, endpoint: &Url) -> bool {
        let Some((id, raw, initialized)) = self.shared.replay.replay() else {
            return false;
        };
        let answer = self.shared.inbound.begin_internal(id.clone());
        if let Err(error) = self.post_to(endpoint, raw).await {
            tracing::warn!(
                error = error.message,
                "cannot re-initialize the new SSE session"
            );
            self.shared.inbound.abandon_internal(&id);
            return false;
        }
        if tokio::time::timeout(POST_TIMEOUT, answer).await.is_err() {
            tracing::warn!("the daemon did not answer the replayed initialize");
            self.shared.inbound.abandon_internal(&id);
            return false;
        }
        if let Err(error) = self.post_to(endpoint, initialized).await {
            tracing::warn!(
                error = error.message,
                "cannot send initialized to the new SSE session"
            );
            return false;
        }
        tracing::info!("the daemon's SSE session was opened again");
        true
    }

    /// The stream dropped: requests posted on it will get no answer there.
    /// Reads are kept to be posted again on the next stream; the others get
    /// an error now (they may have run: never twice).
    async fn settle_posted(&self) {
        let cut: Vec<RawId> = {
            let mut posted = self.lock_posted();
            let on_stream = std::mem::take(&mut posted.on_stream);
            let mut cut = Vec::new();
            for (id, record) in on_stream {
                if !self.shared.inbound.is_pending(&id) {
                    continue;
                }
                // Reads, and `initialize` (nothing ran on a lost session), go again.
                if record
                    .message
                    .method()
                    .is_some_and(|m| crate::mcp::is_safe_read(m) || m == "initialize")
                {
                    posted.resend.push((id, (record.token, record.message)));
                } else if record.accepted {
                    cut.push(id);
                } else {
                    // Its POST is still on its way: its outcome decides
                    // (refused: never sent, so sent again; accepted: cut).
                    posted.dropped.insert(id, (record.token, record.message));
                }
            }
            cut
        };
        for id in cut {
            if self
                .shared
                .inbound
                .fail(&id, CUT_MESSAGE, None)
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Posts the reads cut with the last stream again, on the new one.
    async fn post_again(&self, endpoint: &Url) {
        let reads = std::mem::take(&mut self.lock_posted().resend);
        for (id, (_, message)) in reads {
            if !self.shared.inbound.is_pending(&id) {
                continue;
            }
            tracing::info!(%id, method = message.method(), "sending again on the new daemon session");
            self.lock_posted().record(&id, &message);
            if let Err(error) = self.post_to(endpoint, message.raw.clone()).await {
                let _ = self
                    .shared
                    .inbound
                    .fail(&id, &error.message, error.data.as_ref())
                    .await;
            }
        }
    }
}

/// What a stream that dropped mid-request tells the client.
const CUT_MESSAGE: &str = "the daemon was lost (its SSE stream closed) before the response; the request may or may not have run, so it was not sent again";

/// Requests whose answer the stream owes, each with the token of the
/// post that recorded it.
#[derive(Default)]
struct Posted {
    /// Posted on the current stream.
    on_stream: HashMap<RawId, PostRecord>,
    /// Reads cut with the last stream, to post on the next.
    resend: Vec<(RawId, (u64, Message))>,
    /// Requests whose POST was still on its way when the stream dropped:
    /// settled by that POST's outcome.
    dropped: HashMap<RawId, (u64, Message)>,
    tokens: u64,
}

/// One request posted on the current stream.
struct PostRecord {
    token: u64,
    message: Message,
    /// The daemon answered the POST (202): it has the request.
    accepted: bool,
}

impl Posted {
    /// Records a post; its token.
    fn record(&mut self, id: &RawId, message: &Message) -> u64 {
        self.tokens += 1;
        let record = PostRecord {
            token: self.tokens,
            message: message.clone(),
            accepted: false,
        };
        self.on_stream.insert(id.clone(), record);
        self.tokens
    }

    /// The POST of record `token` was accepted. False if its stream dropped
    /// while it was on its way: the answer will not come.
    fn accept(&mut self, id: &RawId, token: u64) -> bool {
        if self.dropped.get(id).is_some_and(|(t, _)| *t == token) {
            self.dropped.remove(id);
            return false;
        }
        if let Some(record) = self.on_stream.get_mut(id).filter(|r| r.token == token) {
            record.accepted = true;
        }
        true
    }

    /// Takes back the record `token` of a request whose POST never reached
    /// the daemon; false if the recovery already posted it again (a newer
    /// record) or failed it.
    fn take_back(&mut self, id: &RawId, token: u64) -> bool {
        let before = self.resend.len();
        self.resend.retain(|(i, (t, _))| !(i == id && *t == token));
        let in_resend = self.resend.len() != before;
        let on_stream = self.on_stream.get(id).is_some_and(|r| r.token == token);
        if on_stream {
            self.on_stream.remove(id);
        }
        let dropped = self.dropped.get(id).is_some_and(|(t, _)| *t == token);
        if dropped {
            self.dropped.remove(id);
        }
        on_stream || in_resend || dropped
    }
}

/// Why a POST failed.
struct PostError {
    message: String,
    /// HTTP details for the JSON-RPC error's `data`.
    data: Option<serde_json::Value>,
    /// The connection was never made: the daemon did not get it.
    not_sent: bool,
    /// The daemon went away (or its stream did) before it answered, rather
    /// than refusing the message.
    lost: bool,
    /// The request's record is already gone from [`Posted`].
    taken: bool,
}

impl PostError {
    fn new(message: String) -> PostError {
        PostError {
            message,
            data: None,
            not_sent: false,
            lost: false,
            taken: false,
        }
    }
}

/// A new stream's session, before its endpoint is open to client messages.
struct OnEndpoint<'a> {
    sse: &'a LegacySse,
    endpoint: &'a Url,
}

impl InternalRequests for OnEndpoint<'_> {
    async fn internal_request(&self, method: &'static str, params: String) -> Option<Bytes> {
        let shared = &self.sse.shared;
        let (id, message, answer) = shared.internal_message(method, &params)?;
        if self.sse.post_to(self.endpoint, message.raw).await.is_err() {
            shared.inbound.abandon_internal(&id);
            return None;
        }
        let answer = tokio::time::timeout(recovery::INTERNAL_TIMEOUT, answer).await;
        shared.inbound.abandon_internal(&id);
        answer.ok()?.ok()
    }
}

/// Resolves the `endpoint` event's data against the stream URL, as a URL
/// reference, and refuses another origin (the session must not leak).
///
/// # Errors
/// A reason, when the reference is not a URL or points to another origin.
pub fn resolve_endpoint(sse_url: &Url, data: &str) -> Result<Url, String> {
    let endpoint = sse_url.join(data).map_err(|e| e.to_string())?;
    if endpoint.origin() != sse_url.origin() {
        return Err(format!(
            "it points to {}, another origin than the stream {}",
            endpoint.origin().ascii_serialization(),
            sse_url.origin().ascii_serialization()
        ));
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_is_taken_back_only_if_the_recovery_has_not_taken_it() {
        let message = crate::jsonrpc::classify(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ))
        .expect("valid");
        let id = message.id().expect("id").clone();
        let mut posted = Posted::default();
        let first = posted.record(&id, &message);
        assert!(posted.take_back(&id, first), "still ours");
        assert!(!posted.take_back(&id, first), "taken once");
        let second = posted.record(&id, &message);
        // The stream drops: the read moves to `resend`; still ours to take.
        let entry = posted.on_stream.remove(&id).expect("recorded");
        posted
            .resend
            .push((id.clone(), (entry.token, entry.message)));
        assert!(posted.take_back(&id, second));
        // The recovery posts it again under a new record: no longer ours.
        let third = posted.record(&id, &message);
        assert!(!posted.take_back(&id, second));
        assert!(posted.take_back(&id, third));
    }

    /// A request whose POST was on its way when the stream dropped is
    /// settled by that POST: refused, it is taken back to be sent again;
    /// accepted, it is cut (its answer would have come on the lost stream).
    #[test]
    fn a_post_in_flight_when_the_stream_drops_is_settled_by_its_outcome() {
        let message = crate::jsonrpc::classify(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#,
        ))
        .expect("valid");
        let id = message.id().expect("id").clone();
        let mut posted = Posted::default();
        let refused = posted.record(&id, &message);
        let record = posted.on_stream.remove(&id).expect("recorded");
        posted
            .dropped
            .insert(id.clone(), (record.token, record.message));
        assert!(
            posted.take_back(&id, refused),
            "never sent: ours to send again"
        );
        assert!(posted.dropped.is_empty());

        let accepted = posted.record(&id, &message);
        let record = posted.on_stream.remove(&id).expect("recorded");
        posted
            .dropped
            .insert(id.clone(), (record.token, record.message));
        assert!(
            !posted.accept(&id, accepted),
            "accepted by a lost session: cut"
        );
        assert!(posted.dropped.is_empty());

        let live = posted.record(&id, &message);
        assert!(posted.accept(&id, live), "accepted on the live stream");
        assert!(posted.on_stream.get(&id).is_some_and(|r| r.accepted));
    }

    #[test]
    fn endpoints_resolve_as_url_references_keeping_the_query() {
        let sse = Url::parse("http://127.0.0.1:3102/sse").expect("url");
        let cases = [
            (
                "/message?sessionId=abc",
                "http://127.0.0.1:3102/message?sessionId=abc",
            ),
            (
                "messages/?session_id=a%2Fb",
                "http://127.0.0.1:3102/messages/?session_id=a%2Fb",
            ),
            ("http://127.0.0.1:3102/x?y=1", "http://127.0.0.1:3102/x?y=1"),
        ];
        for (data, want) in cases {
            assert_eq!(resolve_endpoint(&sse, data).expect(data).as_str(), want);
        }
        let nested = Url::parse("http://127.0.0.1:1/a/sse").expect("url");
        assert_eq!(
            resolve_endpoint(&nested, "messages?s=1")
                .expect("relative")
                .as_str(),
            "http://127.0.0.1:1/a/messages?s=1"
        );
        assert!(resolve_endpoint(&sse, "http://evil.example/messages").is_err());
        assert!(resolve_endpoint(&sse, "http://127.0.0.1:9999/messages").is_err());
    }
}
