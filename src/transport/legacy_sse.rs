//! The HTTP+SSE transport of MCP 2024-11-05, client side.
//!
//! One long-lived GET stream carries everything the daemon sends. Its first
//! event, `endpoint`, names the URL to POST client messages to (resolved
//! against the stream URL, query string kept byte for byte, same origin
//! only). A POST is answered 202; the response arrives later on the stream.
//! The session lives as long as the stream: when it drops, requests that were
//! posted get an error, a new stream is opened, and the client's `initialize`
//! is replayed on it before anything else is posted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    Link, StreamCursor, StreamEnd, http_error_data, read_sse, redacted, reqwest_reason, short_body,
};
use crate::jsonrpc::{Kind, Message, RawId};

/// Each POST must be accepted within this time (its answer comes on the
/// stream, so this bounds only the hand-over; some servers never answer a
/// POST for an unknown session).
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a message waits for the stream's `endpoint` event.
const ENDPOINT_WAIT: Duration = Duration::from_secs(30);
/// How long closing waits for queued notifications to go out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A legacy SSE session with one daemon.
pub struct LegacySse {
    link: Link,
    sse_url: Url,
    /// Where to POST: the current stream's endpoint once it is known, or why
    /// it cannot be used (another origin).
    endpoint: watch::Sender<Option<Result<Url, String>>>,
    ordered: mpsc::UnboundedSender<Message>,
    /// Requests posted on the current stream: they fail if it drops.
    posted: Mutex<HashSet<RawId>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl LegacySse {
    pub(crate) fn start(link: Link, sse_url: Url) -> Arc<LegacySse> {
        let (ordered, queue) = mpsc::unbounded_channel();
        let this = Arc::new(LegacySse {
            link,
            sse_url,
            endpoint: watch::Sender::new(None),
            ordered,
            posted: Mutex::new(HashSet::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        this.tasks.spawn(Arc::clone(&this).run_stream());
        this.tasks.spawn(Arc::clone(&this).run_ordered(queue));
        this
    }

    /// See [`super::Upstream::send`].
    pub fn send(self: &Arc<Self>, message: Message) {
        self.link.replay.remember(&message);
        if matches!(message.kind, Kind::Request { .. }) {
            let ticket = self.link.order.ticket();
            self.tasks.spawn(Arc::clone(self).request(message, ticket));
        } else {
            self.link.order.enqueue();
            // The receiver lives as long as `self` (its task holds an Arc).
            let _ = self.ordered.send(message);
        }
    }

    /// See [`super::Upstream::close`]: this transport has no DELETE; closing
    /// the stream ends the session.
    pub async fn close(&self) {
        // Notifications and responses the client sent before the end go out
        // first (bounded: a hung daemon must not hold the exit).
        let flushed = self.link.order.wait_for(self.link.order.ticket());
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flushed).await;
        self.cancel.cancel();
    }

    async fn run_ordered(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(message) = queue.recv().await {
            if let Err((error, _)) = self.post(&message).await {
                tracing::warn!(method = message.method(), %error, "cannot send a message to the daemon");
            }
            self.link.order.mark_sent();
        }
    }

    async fn request(self: Arc<Self>, message: Message, ticket: u64) {
        let Kind::Request { id, method } = &message.kind else {
            return;
        };
        self.link.order.wait_for(ticket).await;
        {
            // Recorded before the POST: if the stream drops meanwhile, this
            // request is among those that get an error.
            let mut posted = self.posted.lock().unwrap_or_else(PoisonError::into_inner);
            if posted.len() >= 1024 {
                posted.retain(|id| self.link.router.is_pending(id));
            }
            posted.insert(id.clone());
        }
        if let Err((error, data)) = self.post(&message).await {
            tracing::warn!(%id, method, %error, "request failed");
            let _ = self.link.router.fail(id, &error, data.as_ref()).await;
        }
    }

    /// POSTs one message to the current endpoint.
    async fn post(&self, message: &Message) -> Result<(), (String, Option<serde_json::Value>)> {
        let endpoint = match self.wait_endpoint().await {
            Some(Ok(url)) => url,
            Some(Err(reason)) => {
                return Err((
                    format!("the daemon's SSE endpoint is unusable: {reason}"),
                    None,
                ));
            }
            None => {
                let url = &self.sse_url;
                return Err((
                    format!("the daemon's SSE stream at {url} sent no endpoint"),
                    None,
                ));
            }
        };
        self.post_to(&endpoint, message.raw.clone()).await
    }

    async fn post_to(
        &self,
        endpoint: &Url,
        body: bytes::Bytes,
    ) -> Result<(), (String, Option<serde_json::Value>)> {
        let response = self
            .link
            .http
            .post(endpoint.clone())
            .headers(self.link.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(POST_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let reason = reqwest_reason(&e);
                let shown = redacted(endpoint);
                (
                    format!("cannot reach the daemon at {shown}: {reason}"),
                    None,
                )
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = short_body(response).await;
        let data = http_error_data(status, &body);
        Err((
            format!("the daemon answered HTTP {status}: {body}"),
            Some(data),
        ))
    }

    async fn wait_endpoint(&self) -> Option<Result<Url, String>> {
        let mut endpoint = self.endpoint.subscribe();
        let found = tokio::time::timeout(ENDPOINT_WAIT, endpoint.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(url)) => url.clone(),
            _ => None,
        }
    }

    /// Keeps a stream open, reconnecting (and re-initializing) when it drops.
    async fn run_stream(self: Arc<Self>) {
        let mut delay = RETRY_FIRST;
        let mut streams = 0u64;
        loop {
            let request = self
                .link
                .http
                .get(self.sse_url.clone())
                .headers(self.link.headers.clone())
                .header(ACCEPT, "text/event-stream")
                .send();
            let response = tokio::select! {
                r = request => r,
                () = self.cancel.cancelled() => return,
            };
            match response {
                Ok(r) if r.status() == StatusCode::OK => {
                    delay = RETRY_FIRST;
                    streams += 1;
                    let reconnected = streams > 1;
                    let mut cursor = StreamCursor::default();
                    let on_event = |event: &str, data: &str| {
                        if event == "endpoint" {
                            self.on_endpoint(data, reconnected);
                        }
                    };
                    // Dropping a half-read stream on shutdown is fine: the
                    // session ends with it.
                    let end = tokio::select! {
                        end = read_sse(r, &self.link.router, None, &mut cursor, on_event) => end,
                        () = self.cancel.cancelled() => return,
                    };
                    if matches!(end, StreamEnd::ClientGone) {
                        return;
                    }
                    self.endpoint.send_replace(None);
                    tracing::warn!("the daemon's SSE stream closed; reconnecting");
                    self.fail_posted().await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = short_body(r).await;
                    tracing::warn!(%status, body, url = %self.sse_url, "the daemon refused the SSE stream");
                }
                Err(error) => {
                    tracing::warn!(error = %reqwest_reason(&error), url = %self.sse_url, "cannot open the SSE stream");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return,
            }
            delay = delay.mul_f32(1.5).min(RETRY_MAX);
        }
    }

    fn on_endpoint(self: &Arc<Self>, data: &str, reconnected: bool) {
        let endpoint = match resolve_endpoint(&self.sse_url, data.trim()) {
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
        // A new stream is a new session: initialize it before anything else
        // is posted there.
        let this = Arc::clone(self);
        self.tasks.spawn(async move {
            this.reinitialize(&endpoint).await;
            this.endpoint.send_replace(Some(Ok(endpoint)));
        });
    }

    async fn reinitialize(&self, endpoint: &Url) {
        let Some((id, raw, initialized)) = self.link.replay.replay() else {
            return;
        };
        let answer = self.link.router.begin_internal(id.clone());
        if let Err((error, _)) = self.post_to(endpoint, raw).await {
            tracing::warn!(error, "cannot re-initialize the new SSE session");
            self.link.router.abandon_internal(&id);
            return;
        }
        if tokio::time::timeout(POST_TIMEOUT, answer).await.is_err() {
            tracing::warn!("the daemon did not answer the replayed initialize");
            self.link.router.abandon_internal(&id);
            return;
        }
        if let Err((error, _)) = self.post_to(endpoint, initialized).await {
            tracing::warn!(error, "cannot send initialized to the new SSE session");
        }
        tracing::info!("the daemon's SSE session was opened again");
    }

    async fn fail_posted(&self) {
        let posted: Vec<RawId> = self
            .posted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for id in posted {
            let message = "the daemon's SSE stream closed before the response; the request may or may not have run";
            if self.link.router.fail(&id, message, None).await.is_err() {
                return;
            }
        }
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
