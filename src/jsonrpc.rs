//! JSON-RPC 2.0 messages as the proxy sees them: raw bytes plus a shape.
//!
//! The proxy is transparent, so it never re-serialises a message. A message is
//! kept as the exact bytes it arrived as; this module only *classifies* it
//! (request, notification, response) and pulls out the id as raw JSON text, so
//! `"1"`, `1` and `9007199254740993` come back exactly as sent. It knows
//! nothing of HTTP or stdio.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::value::RawValue;

pub mod rewrite;

/// JSON-RPC error codes used by the proxy.
pub mod code {
    /// The line is not valid JSON (or not UTF-8).
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON that is not a JSON-RPC message.
    pub const INVALID_REQUEST: i32 = -32600;
    /// The proxy could not get an answer from the daemon.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// Parameters the receiver cannot use (an unknown log level).
    pub const INVALID_PARAMS: i32 = -32602;
    /// A transport-level refusal (no session, unknown session, bad version).
    pub const SERVER_ERROR: i32 = -32000;
}

/// A request id as the raw JSON text it was sent with (`"abc"`, `7`).
///
/// Two ids are the same id when their texts are equal; that is what the peer
/// will compare too, since it gets back exactly these bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawId(Box<str>);

impl RawId {
    /// The id's JSON text, ready to be spliced into a message.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a message is, decided by its shape and never by its id alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: wants exactly one response.
    Request { id: RawId, method: String },
    /// `method` without `id`.
    Notification { method: String },
    /// `id` with `result` or `error`, no `method`.
    Response { id: RawId },
    /// An error response whose id is `null` (the peer could not read a request).
    OrphanError,
}

/// One JSON-RPC message: its exact bytes and its shape.
#[derive(Debug, Clone)]
pub struct Message {
    /// The message exactly as received (one JSON object, no trailing newline).
    pub raw: Bytes,
    pub kind: Kind,
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            _ => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&RawId> {
        match &self.kind {
            Kind::Request { id, .. } | Kind::Response { id } => Some(id),
            _ => None,
        }
    }
}

/// Why a piece of input is not a message we can forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8): answered with -32700.
    #[error("parse error: {0}")]
    NotJson(String),
    /// JSON, but not a JSON-RPC message: answered with -32600.
    #[error("invalid request: {reason}")]
    Invalid {
        /// The id, if the value had a usable one, so the error can carry it.
        id: Option<RawId>,
        reason: String,
    },
}

impl ParseError {
    /// The JSON-RPC error response the peer gets for this input.
    pub fn to_response(&self) -> Bytes {
        match self {
            ParseError::NotJson(detail) => {
                error_response(None, code::PARSE_ERROR, &format!("Parse error: {detail}"))
            }
            ParseError::Invalid { id, reason } => error_response(
                id.as_ref(),
                code::INVALID_REQUEST,
                &format!("Invalid Request: {reason}"),
            ),
        }
    }
}

/// A line of input: one message, or a batch (a JSON array of them).
#[derive(Debug)]
pub enum Incoming {
    Single(Message),
    /// Each element already classified; invalid elements carry their error.
    Batch(Vec<Result<Message, ParseError>>),
}

/// Reads one line of input (without its line ending) as a message or a batch.
///
/// # Errors
/// [`ParseError::NotJson`] for text that is not JSON, [`ParseError::Invalid`]
/// for JSON that is not a JSON-RPC message or is an empty batch.
pub fn parse_line(line: Bytes) -> Result<Incoming, ParseError> {
    // serde_json skips the contents of unknown fields without checking
    // their UTF-8, so check the whole line first: it must be text.
    if let Err(error) = std::str::from_utf8(&line) {
        return Err(ParseError::NotJson(format!(
            "the line is not UTF-8 ({error})"
        )));
    }
    let first = line
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied()
        .unwrap_or(b' ');
    if first == b'[' {
        let elements: Vec<&RawValue> =
            serde_json::from_slice(&line).map_err(|e| ParseError::NotJson(e.to_string()))?;
        if elements.is_empty() {
            return Err(ParseError::Invalid {
                id: None,
                reason: "empty batch".into(),
            });
        }
        let batch = elements
            .into_iter()
            .map(|element| {
                let raw = line.slice_ref(element.get().as_bytes());
                classify(raw)
            })
            .collect();
        return Ok(Incoming::Batch(batch));
    }
    classify(line).map(Incoming::Single)
}

/// Classifies one JSON value, keeping `raw` untouched.
///
/// # Errors
/// As [`parse_line`], for a single value.
pub fn classify(raw: Bytes) -> Result<Message, ParseError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') && serde_json::from_slice::<IgnoredAny>(&raw).is_ok() {
        return Err(ParseError::Invalid {
            id: None,
            reason: "a JSON-RPC message is a JSON object (or an array of them)".into(),
        });
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(&raw) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape (a number, a string, a bad field type).
            return Err(ParseError::Invalid {
                id: salvage_id(&raw),
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(ParseError::NotJson(e.to_string())),
    };
    let id = match envelope.id {
        Some(id) if is_valid_id(id) => Some(RawId(id.get().into())),
        Some(id) => {
            return Err(ParseError::Invalid {
                id: None,
                reason: format!("id must be a string or a number, not {}", id.get()),
            });
        }
        None => None,
    };
    let kind = match (envelope.method, id) {
        (Some(method), Some(id)) => Kind::Request {
            id,
            method: method.into_owned(),
        },
        (Some(method), None) => Kind::Notification {
            method: method.into_owned(),
        },
        (None, Some(id)) if envelope.result || envelope.error => Kind::Response { id },
        (None, None) if envelope.error => Kind::OrphanError,
        (None, id) => {
            return Err(ParseError::Invalid {
                id,
                reason: "a message needs a \"method\", or an \"id\" with \"result\" or \"error\""
                    .into(),
            });
        }
    };
    Ok(Message { raw, kind })
}

/// Builds `{"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M}}`.
///
/// `id` is spliced in as raw JSON text, so it is byte-exact; `None` gives `null`.
pub fn error_response(id: Option<&RawId>, code: i32, message: &str) -> Bytes {
    error_response_with_data(id, code, message, None)
}

/// As [`error_response`], with a `data` member.
pub fn error_response_with_data(
    id: Option<&RawId>,
    code: i32,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Bytes {
    let id = id.map_or("null", RawId::as_json);
    // Serialising a &str and a Value cannot fail.
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let data = data
        .and_then(|d| serde_json::to_string(d).ok())
        .map(|d| format!(",\"data\":{d}"))
        .unwrap_or_default();
    Bytes::from(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{message}{data}}}}}"
    ))
}

/// Messages joined into one JSON array (a batch answer).
pub fn batch(messages: &[Bytes]) -> Bytes {
    let len = messages.iter().map(|m| m.len() + 1).sum::<usize>() + 1;
    let mut line = Vec::with_capacity(len);
    line.push(b'[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(message);
    }
    line.push(b']');
    Bytes::from(line)
}

/// Makes a message fit on one line: raw CR and LF can only be whitespace
/// between JSON tokens (inside strings they must be escaped), so turning them
/// into spaces keeps the JSON valid and every value unchanged.
pub fn to_single_line(raw: Bytes) -> Bytes {
    if !raw.iter().any(|&b| b == b'\n' || b == b'\r') {
        return raw;
    }
    let flattened: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    Bytes::from(flattened)
}

/// Just enough of a message to classify it; everything else stays raw.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// True when the field is there at all, whatever its value (even `null`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

fn is_valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// Finds a usable id in a JSON object that failed to classify, so the -32600
/// error can still be matched to the request by the client.
fn salvage_id(raw: &[u8]) -> Option<RawId> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let only: IdOnly<'_> = serde_json::from_slice(raw).ok()?;
    only.id
        .filter(|id| is_valid_id(id))
        .map(|id| RawId(id.get().into()))
}

/// Reads the `result.protocolVersion` of an `initialize` response.
pub fn negotiated_protocol_version(response: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct InitResponse {
        result: Option<InitResult>,
    }
    #[derive(Deserialize)]
    struct InitResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    serde_json::from_slice::<InitResponse>(response)
        .ok()?
        .result?
        .protocol_version
}

/// The `params.requestId` of a `notifications/cancelled`.
pub fn cancelled_request_id(notification: &[u8]) -> Option<RawId> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow)]
        params: Option<CancelledParams<'a>>,
    }
    #[derive(Deserialize)]
    struct CancelledParams<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a RawValue>,
    }
    let parsed: Cancelled<'_> = serde_json::from_slice(notification).ok()?;
    parsed
        .params?
        .request_id
        .filter(|id| is_valid_id(id))
        .map(|id| RawId(id.get().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Kind {
        classify(Bytes::copy_from_slice(text.as_bytes()))
            .expect("valid message")
            .kind
    }

    #[test]
    fn ids_keep_their_exact_text() {
        for id in [
            "\"1\"",
            "1",
            "9007199254740993",
            "\"ü\\u00fc\"",
            "-0",
            "1.5e3",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let Kind::Request { id: got, .. } = kind(&text) else {
                panic!("not a request: {text}")
            };
            assert_eq!(got.as_json(), id);
        }
    }

    #[test]
    fn shape_decides_the_kind() {
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#),
            Kind::Response {
                id: RawId("0".into())
            }
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":0,"result":null}"#),
            Kind::Response {
                id: RawId("0".into())
            }
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Kind::OrphanError
        );
    }

    #[test]
    fn garbage_is_a_parse_error_and_wrong_shapes_are_invalid() {
        assert!(matches!(
            classify(Bytes::from_static(b"{oops")),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            classify(Bytes::from_static(b"42")),
            Err(ParseError::Invalid { id: None, .. })
        ));
        let err = classify(Bytes::from_static(br#"{"id":"x","method":5}"#))
            .expect_err("method must be a string");
        assert_eq!(
            err,
            ParseError::Invalid {
                id: Some(RawId("\"x\"".into())),
                reason: err_reason(&err)
            }
        );
        assert!(matches!(
            classify(Bytes::from_static(br#"{"id":7}"#)),
            Err(ParseError::Invalid { id: Some(_), .. })
        ));
        assert!(matches!(
            classify(Bytes::from_static(b"\xff\xfe")),
            Err(ParseError::NotJson(_))
        ));
    }

    fn err_reason(err: &ParseError) -> String {
        match err {
            ParseError::Invalid { reason, .. } => reason.clone(),
            ParseError::NotJson(r) => r.clone(),
        }
    }

    #[test]
    fn batches_are_split_without_copying_elements() {
        let line = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"n"}, 5]"#,
        );
        let Ok(Incoming::Batch(items)) = parse_line(line) else {
            panic!("not a batch")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].as_ref().expect("first is valid").raw,
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        );
        assert!(items[2].is_err());
        assert!(matches!(
            parse_line(Bytes::from_static(b" [ ] ")),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn error_responses_splice_the_raw_id() {
        let id = RawId("9007199254740993".into());
        let text = error_response(Some(&id), code::INTERNAL_ERROR, "daemon \"gone\"");
        assert_eq!(
            &text[..],
            br#"{"jsonrpc":"2.0","id":9007199254740993,"error":{"code":-32603,"message":"daemon \"gone\""}}"#
        );
        let v: serde_json::Value =
            serde_json::from_slice(&error_response(None, -1, "x")).expect("valid json");
        assert!(v["id"].is_null());
    }

    #[test]
    fn single_line_keeps_values() {
        let pretty = Bytes::from_static(b"{\r\n  \"a\": \"x\\ny\",\n  \"b\": 1\n}");
        let flat = to_single_line(pretty.clone());
        assert!(!flat.contains(&b'\n'));
        let a: serde_json::Value = serde_json::from_slice(&pretty).expect("json");
        let b: serde_json::Value = serde_json::from_slice(&flat).expect("json");
        assert_eq!(a, b);
    }

    #[test]
    fn reads_initialize_version_and_cancelled_id() {
        assert_eq!(
            negotiated_protocol_version(
                br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#
            )
            .as_deref(),
            Some("2025-06-18")
        );
        assert_eq!(
            cancelled_request_id(
                br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r1"}}"#
            ),
            Some(RawId("\"r1\"".into()))
        );
    }
}
