//! Exact edits of raw JSON-RPC messages: swap one value, keep every other byte.
//!
//! The host multiplexes many sessions onto one child, so ids and progress
//! tokens must be made unique upstream and restored on the way back. Each
//! edit finds the value with a borrowed [`RawValue`] (which points into the
//! message) and splices the replacement in; nothing is re-serialised.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Replaces the text of `part`, which must borrow from `raw`, with `replacement`.
fn splice(raw: &Bytes, part: &RawValue, replacement: &str) -> Option<Bytes> {
    let part = part.get();
    let start = (part.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > raw.len() {
        return None;
    }
    let mut out = BytesMut::with_capacity(raw.len() - part.len() + replacement.len());
    out.extend_from_slice(&raw[..start]);
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(&raw[end..]);
    Some(out.freeze())
}

#[derive(Deserialize)]
struct WithId<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

/// The message with its `id` replaced by the JSON text `id`.
pub fn replace_id(raw: &Bytes, id: &str) -> Option<Bytes> {
    let parsed: WithId<'_> = serde_json::from_slice(raw).ok()?;
    splice(raw, parsed.id, id)
}

#[derive(Deserialize)]
struct RequestMeta<'a> {
    #[serde(borrow)]
    params: Option<RequestParams<'a>>,
}

#[derive(Deserialize)]
struct RequestParams<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, rename = "io.modelcontextprotocol/subscriptionId")]
    subscription_id: Option<&'a RawValue>,
}

/// The `params._meta.progressToken` of a request, as JSON text.
pub fn request_progress_token(raw: &[u8]) -> Option<String> {
    let parsed: RequestMeta<'_> = serde_json::from_slice(raw).ok()?;
    Some(parsed.params?.meta?.progress_token?.get().to_owned())
}

/// The request with `params._meta.progressToken` replaced by `token` (JSON text).
pub fn replace_request_progress_token(raw: &Bytes, token: &str) -> Option<Bytes> {
    let parsed: RequestMeta<'_> = serde_json::from_slice(raw).ok()?;
    splice(raw, parsed.params?.meta?.progress_token?, token)
}

/// The `params._meta` subscription id of a message (a 2026-07-28
/// `subscriptions/listen` stream's notification names its request so), as
/// JSON text. A message without the key is not parsed.
pub fn subscription_id(raw: &[u8]) -> Option<String> {
    let key = crate::mcp::SUBSCRIPTION_ID_META.as_bytes();
    if !raw.windows(key.len()).any(|w| w == key) {
        return None;
    }
    let parsed: RequestMeta<'_> = serde_json::from_slice(raw).ok()?;
    Some(parsed.params?.meta?.subscription_id?.get().to_owned())
}

/// The message with its `params._meta` subscription id replaced by `id`
/// (JSON text).
pub fn replace_subscription_id(raw: &Bytes, id: &str) -> Option<Bytes> {
    let parsed: RequestMeta<'_> = serde_json::from_slice(raw).ok()?;
    splice(raw, parsed.params?.meta?.subscription_id?, id)
}

#[derive(Deserialize)]
struct NotificationParams<'a> {
    #[serde(borrow)]
    params: Option<TokenParams<'a>>,
}

#[derive(Deserialize)]
struct TokenParams<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, rename = "requestId")]
    request_id: Option<&'a RawValue>,
    #[serde(borrow)]
    level: Option<&'a RawValue>,
    #[serde(borrow)]
    uri: Option<&'a RawValue>,
}

/// `params.progressToken` of a `notifications/progress`, as JSON text.
pub fn notification_progress_token(raw: &[u8]) -> Option<String> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    Some(parsed.params?.progress_token?.get().to_owned())
}

/// The notification with `params.progressToken` replaced by `token`.
pub fn replace_notification_progress_token(raw: &Bytes, token: &str) -> Option<Bytes> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    splice(raw, parsed.params?.progress_token?, token)
}

/// `params.requestId` of a `notifications/cancelled`, as JSON text.
pub fn cancelled_request_id(raw: &[u8]) -> Option<String> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    Some(parsed.params?.request_id?.get().to_owned())
}

/// The notification with `params.requestId` replaced by `id`.
pub fn replace_cancelled_request_id(raw: &Bytes, id: &str) -> Option<Bytes> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    splice(raw, parsed.params?.request_id?, id)
}

/// `params.level` of a log message or `logging/setLevel`, unquoted.
pub fn level(raw: &[u8]) -> Option<String> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    serde_json::from_str(parsed.params?.level?.get()).ok()
}

/// `params.uri` of a subscription request or `notifications/resources/updated`.
pub fn uri(raw: &[u8]) -> Option<String> {
    let parsed: NotificationParams<'_> = serde_json::from_slice(raw).ok()?;
    serde_json::from_str(parsed.params?.uri?.get()).ok()
}

/// The JSON object `raw` with its top-level `key` replaced by `value` (JSON text).
pub fn replace_field(raw: &Bytes, key: &str, value: &str) -> Option<Bytes> {
    let fields: std::collections::HashMap<std::borrow::Cow<'_, str>, &RawValue> =
        serde_json::from_slice(raw).ok()?;
    splice(raw, fields.get(key)?, value)
}

/// The text of a top-level string field of the JSON object `raw`.
pub fn string_field(raw: &[u8], key: &str) -> Option<String> {
    let fields: std::collections::HashMap<std::borrow::Cow<'_, str>, &RawValue> =
        serde_json::from_slice(raw).ok()?;
    serde_json::from_str(fields.get(key)?.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_swapped_and_nothing_else_moves() {
        let raw = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"client-1","method":"tools/call","params":{"name":"x","_meta":{"progressToken":9007199254740993},"z":1}}"#,
        );
        let upstream = replace_id(&raw, "17").expect("has id");
        let upstream = replace_request_progress_token(&upstream, "18").expect("has token");
        assert_eq!(
            &upstream[..],
            br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":18},"z":1}}"#
        );
        assert_eq!(
            request_progress_token(&raw).as_deref(),
            Some("9007199254740993")
        );
        assert_eq!(request_progress_token(b"{\"id\":1}"), None);
    }

    #[test]
    fn notifications_give_up_their_fields() {
        let progress = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":18,"progress":1}}"#,
        );
        assert_eq!(
            notification_progress_token(&progress).as_deref(),
            Some("18")
        );
        let back = replace_notification_progress_token(&progress, "\"t\"").expect("token");
        assert!(
            std::str::from_utf8(&back)
                .expect("utf8")
                .contains(r#""progressToken":"t","progress":1"#)
        );
        let cancel = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a","reason":"r"}}"#,
        );
        assert_eq!(cancelled_request_id(&cancel).as_deref(), Some("\"a\""));
        let up = replace_cancelled_request_id(&cancel, "5").expect("id");
        assert!(
            std::str::from_utf8(&up)
                .expect("utf8")
                .contains(r#""requestId":5,"#)
        );
        assert_eq!(
            level(br#"{"method":"notifications/message","params":{"level":"error","data":1}}"#)
                .as_deref(),
            Some("error")
        );
        assert_eq!(
            uri(br#"{"method":"resources/subscribe","params":{"uri":"file:///a"}}"#).as_deref(),
            Some("file:///a")
        );
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert!(replace_id(&Bytes::from_static(b"nope"), "1").is_none());
        assert!(replace_id(&Bytes::from_static(b"{}"), "1").is_none());
        assert!(
            replace_request_progress_token(&Bytes::from_static(b"{\"params\":5}"), "1").is_none()
        );
    }
}
