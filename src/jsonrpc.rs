//! JSON-RPC 2.0 messages as the proxy sees them: raw bytes plus a shape.
//!
//! The proxy is transparent, so it never re-serialises a message. A message is
//! kept as the exact bytes it arrived as; this module only *classifies* it
//! (request, notification, response) and pulls out the id as raw JSON text, so
//! `"1"`, `1` and `9007199254740993` come back exactly as sent. It knows
//! nothing of HTTP or stdio.
//!
//! [`read`] turns lines into messages (and reads the few fields the proxy
//! needs); [`rewrite`] splices new values into a message's bytes (the host's
//! id and token rewriting); this file holds the types and the messages the
//! proxy makes itself (errors, batches).

use std::fmt;

use bytes::Bytes;

pub mod read;
pub mod rewrite;

pub use read::{
    Incoming, ParseError, cancelled_request_id, classify, negotiated_protocol_version, parse_line,
};

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
pub struct RawId(pub(super) Box<str>);

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

/// The `error.message` of a JSON-RPC error response (`None` for a result,
/// or anything else).
pub fn error_message(response: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Response {
        error: Option<ErrorObject>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        message: String,
    }
    serde_json::from_slice::<Response>(response)
        .ok()?
        .error
        .map(|error| error.message)
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_of_an_error_response_is_read() {
        assert_eq!(
            super::error_message(
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"it exited"}}"#
            ),
            Some("it exited".to_owned())
        );
        assert_eq!(
            super::error_message(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            None
        );
        assert_eq!(super::error_message(b"not json"), None);
    }

    use super::*;

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
}
