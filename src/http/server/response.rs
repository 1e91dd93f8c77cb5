//! The responses the host and the control API send: JSON, plain text,
//! empty, and Server-Sent Events. One builder each, so both servers answer
//! with the same headers (`content-type`; `cache-control: no-cache` on an
//! event stream).

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::Body;

/// A body with nothing in it.
pub fn empty_body() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// A response with no body (and no `content-type`).
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = status;
    response
}

/// `value` as JSON (an empty body if it cannot be serialized).
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    json_bytes_response(status, Bytes::from(body))
}

/// `body`, which is JSON already.
pub fn json_bytes_response(status: StatusCode, body: Bytes) -> Response<Body> {
    with_body(status, "application/json", Full::new(body).boxed())
}

/// `text`, as `text/plain; charset=utf-8`.
pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(text.to_owned())).boxed();
    with_body(status, "text/plain; charset=utf-8", body)
}

/// A `200` event stream of `events` (each one a whole event, see
/// [`sse_event`]), never cached.
pub fn sse_response(
    events: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static,
) -> Response<Body> {
    let body = StreamBody::new(events.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut response = with_body(StatusCode::OK, "text/event-stream", BodyExt::boxed(body));
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// One SSE event named `event` whose data is `data` (a single line).
pub fn sse_event(event: &str, data: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(event.len() + data.len() + 16);
    bytes.extend_from_slice(b"event: ");
    bytes.extend_from_slice(event.as_bytes());
    bytes.extend_from_slice(b"\ndata: ");
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\n\n");
    Bytes::from(bytes)
}

fn with_body(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sse_event_is_named_and_ends_with_a_blank_line() {
        assert_eq!(
            sse_event("message", br#"{"a":1}"#),
            Bytes::from_static(b"event: message\ndata: {\"a\":1}\n\n")
        );
    }

    #[test]
    fn responses_carry_their_content_type() {
        let sse = sse_response(futures_util::stream::empty());
        assert_eq!(sse.status(), StatusCode::OK);
        assert_eq!(sse.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(sse.headers()[hyper::header::CACHE_CONTROL], "no-cache");
        let json = json_response(StatusCode::NOT_FOUND, &serde_json::json!({"error": "x"}));
        assert_eq!(json.status(), StatusCode::NOT_FOUND);
        assert_eq!(json.headers()[CONTENT_TYPE], "application/json");
        let text = text_response(StatusCode::FORBIDDEN, "no");
        assert_eq!(text.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let empty = empty_response(StatusCode::ACCEPTED);
        assert!(empty.headers().get(CONTENT_TYPE).is_none());
    }
}
