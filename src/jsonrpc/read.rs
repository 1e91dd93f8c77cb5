//! Reading input as JSON-RPC: a line becomes one message or a batch, each
//! classified by its shape with its id kept as raw text; and the few fields
//! the proxy reads from a message (`protocolVersion`, a cancelled id).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::value::RawValue;

use super::{Kind, Message, RawId, code, error_response};

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
    // `"id": null` is not "no id": a request with it is invalid (an id is a
    // string or a number), and only an error response may carry it (the
    // peer could not read the request it answers).
    let null_id = envelope.id.is_some_and(|id| id.get() == "null");
    if null_id {
        if envelope.method.is_some() {
            return Err(ParseError::Invalid {
                id: None,
                reason: "a request id must be a string or a number, not null".into(),
            });
        }
        if envelope.error && !envelope.result {
            return Ok(Message {
                raw,
                kind: Kind::OrphanError,
            });
        }
        return Err(ParseError::Invalid {
            id: None,
            reason: "only an error response may have a null id".into(),
        });
    }
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
        // An error response that left its id out: as good as a null one.
        (None, None) if envelope.error && !envelope.result => Kind::OrphanError,
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

/// Just enough of a message to classify it; everything else stays raw.
#[derive(Deserialize)]
struct Envelope<'a> {
    /// `Some("null")` for `"id": null`, `None` only when there is no `id`.
    #[serde(borrow, default, deserialize_with = "raw_present")]
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

/// The field's raw value whatever it is, `null` included (a plain
/// `Option<&RawValue>` reads `null` as absent).
fn raw_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
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

    /// See: issue 13, item 11. `"id": null` is a request with a bad id (not
    /// a notification); an error response may carry it.
    #[test]
    fn a_null_id_is_invalid_on_a_request_and_kept_on_an_error() {
        for text in [
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id" : null ,"method":"notifications/x"}"#,
        ] {
            let err = classify(Bytes::copy_from_slice(text.as_bytes())).expect_err(text);
            assert!(
                matches!(err, ParseError::Invalid { id: None, .. }),
                "{err:?}"
            );
            let v: serde_json::Value = serde_json::from_slice(&err.to_response()).expect("json");
            assert_eq!(v["error"]["code"], -32600);
            assert!(v["id"].is_null(), "{v}");
        }
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"x"}}"#),
            Kind::OrphanError
        );
        assert!(
            classify(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":null,"result":{}}"#
            ))
            .is_err()
        );
        let Ok(Incoming::Batch(items)) = parse_line(Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":null,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#,
        )) else {
            panic!("not a batch")
        };
        assert!(items[0].is_err() && items[1].is_ok());
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
