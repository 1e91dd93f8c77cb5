//! The MCP vocabulary, written once: protocol versions, header names, the
//! methods safe to send twice, the lists a client can be told changed, and
//! log levels. Both sides (the proxy's client side, the host's server side)
//! read them from here.
//!
//! The 2026-07-28 revision has no `initialize` and no sessions: a request
//! declares its version in `params._meta` ([`PROTOCOL_VERSION_META`]), and
//! over HTTP mirrors it, its method and (for `tools/call`, `prompts/get`,
//! `resources/read`) its target in headers ([`Declared`]). A server that
//! does not speak the declared version answers
//! [`UNSUPPORTED_PROTOCOL_VERSION`] with the versions it does
//! ([`unsupported_version_data`]); the client then falls back
//! (`initialize` with an older version).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The protocol versions the host serves (Streamable HTTP and before).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest of [`SUPPORTED_VERSIONS`]: what the host asks its child for.
pub const LATEST_VERSION: &str = "2025-11-25";

/// `Mcp-Session-Id`: a Streamable HTTP session (a credential: never logged whole).
pub const SESSION_ID_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`: the negotiated version, on every request after `initialize`.
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// `Last-Event-ID`: where a resumed SSE stream starts again.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";
/// `Mcp-Project-Path`: the session's project, which a hosted server of
/// scope `project` keys its child by (this tool's own header).
pub const PROJECT_PATH_HEADER: &str = "mcp-project-path";
/// The media type of an SSE stream.
pub const EVENT_STREAM: &str = "text/event-stream";
/// `Mcp-Method`: a 2026-07-28 message's method, mirrored from its body.
pub const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name`: the tool, prompt (`params.name`) or resource (`params.uri`)
/// a 2026-07-28 `tools/call`, `prompts/get` or `resources/read` targets.
pub const NAME_HEADER: &str = "mcp-name";

/// The first revision without `initialize` and sessions.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The 2026-07-28 request that reports what a server can do (and, answered
/// with [`UNSUPPORTED_PROTOCOL_VERSION`], that it speaks an older revision).
pub const DISCOVER: &str = "server/discover";
/// The `params._meta` key under which a 2026-07-28 request declares its version.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The `params._meta` key under which a 2026-07-28 request declares what
/// its client can do.
pub const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `params._meta` key by which a 2026-07-28 notification names the
/// `subscriptions/listen` request (its id) whose stream it belongs to.
pub const SUBSCRIPTION_ID_META: &str = "io.modelcontextprotocol/subscriptionId";
/// The error for a 2026-07-28 request that needs a client capability its
/// `_meta` does not declare (HTTP 400).
pub const MISSING_CLIENT_CAPABILITY: i32 = -32021;

/// Whether a 2026-07-28 request carries the `_meta` envelope that revision
/// requires of every request: its version and its client's capabilities
/// (`clientInfo` is a SHOULD, not required).
pub fn has_envelope(raw: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<&'a RawValue>,
        #[serde(borrow, rename = "io.modelcontextprotocol/clientCapabilities")]
        capabilities: Option<&'a RawValue>,
    }
    let meta = serde_json::from_slice::<Envelope<'_>>(raw)
        .ok()
        .and_then(|e| e.params)
        .and_then(|p| p.meta);
    let set = |v: Option<&RawValue>| v.is_some_and(|v| v.get() != "null");
    meta.is_some_and(|m| set(m.version) && set(m.capabilities))
}

/// The error a server answers a request whose declared version it does not
/// speak with (HTTP 400); its `data` is [`unsupported_version_data`].
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
/// The error for headers that disagree with the body (or are missing).
pub const HEADER_MISMATCH: i32 = -32020;

/// `{"supported": [...], "requested": "..."}`: the data of an
/// [`UNSUPPORTED_PROTOCOL_VERSION`] error, listing [`SUPPORTED_VERSIONS`].
pub fn unsupported_version_data(requested: &str) -> serde_json::Value {
    serde_json::json!({ "supported": SUPPORTED_VERSIONS, "requested": requested })
}

/// What a message declares of itself in the 2026-07-28 style.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Declared {
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub version: Option<String>,
    /// What `Mcp-Name` carries: `params.name` of a `tools/call` or
    /// `prompts/get`, `params.uri` of a `resources/read`.
    pub name: Option<String>,
}

impl Declared {
    /// Reads `raw` (a message whose method is `method`). Cheap for a
    /// message that declares nothing: unless `always` (the exchange is in
    /// the 2026-07-28 style already), only one that names the meta key is
    /// parsed.
    pub fn of(method: &str, raw: &[u8], always: bool) -> Declared {
        let name_key = name_key(method);
        if !always && !contains(raw, PROTOCOL_VERSION_META.as_bytes()) {
            return Declared::default();
        }
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            params: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "_meta")]
            meta: Option<&'a RawValue>,
            #[serde(borrow)]
            name: Option<&'a RawValue>,
            #[serde(borrow)]
            uri: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Meta {
            #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
            version: Option<serde_json::Value>,
        }
        let string =
            |raw: Option<&RawValue>| raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok());
        let Some(params) = serde_json::from_slice::<Envelope<'_>>(raw)
            .ok()
            .and_then(|e| e.params)
            .and_then(|p| serde_json::from_str::<Params<'_>>(p.get()).ok())
        else {
            return Declared::default();
        };
        let version = params
            .meta
            .and_then(|m| serde_json::from_str::<Meta>(m.get()).ok())
            .and_then(|m| m.version)
            .and_then(|v| v.as_str().map(str::to_owned));
        let name = match name_key {
            Some("uri") => string(params.uri),
            Some(_) => string(params.name),
            None => None,
        };
        Declared { version, name }
    }
}

/// A value as a 2026-07-28 header carries it (SEP-2243's value encoding):
/// printable ASCII without surrounding whitespace as it is; anything else
/// (non-ASCII, control characters, leading or trailing whitespace, or a
/// value that looks like the sentinel) as `=?base64?{Base64 of UTF-8}?=`.
pub fn header_value(value: &str) -> String {
    const PREFIX: &str = "=?base64?";
    const SUFFIX: &str = "?=";
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with(PREFIX) && value.ends_with(SUFFIX));
    if plain {
        return value.to_owned();
    }
    format!("{PREFIX}{}{SUFFIX}", base64(value.as_bytes()))
}

/// Standard Base64 (RFC 4648 §4, padded).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The member of `params` that `Mcp-Name` mirrors for `method`, if any.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Does `haystack` hold `needle`?
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| *b == first)
        .any(|(i, _)| haystack.get(i + 1..i + needle.len()) == Some(rest))
}

/// Requests that change nothing on the server: sent again on a new session
/// when their answer was lost with the old one.
pub fn is_safe_read(method: &str) -> bool {
    matches!(
        method,
        "ping"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "prompts/get"
            | "completion/complete"
    )
}

/// A list the client can be told has changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    /// Every kind, in index order.
    pub const ALL: [ListKind; 3] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources];

    /// A dense index (for a table of one slot per kind).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The request that lists it.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
        }
    }

    /// The key of its items in the list's result.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        }
    }

    /// Its `notifications/…/list_changed`, as a line.
    pub fn notification(self) -> Bytes {
        Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/{}/list_changed"}}"#,
            self.key()
        ))
    }

    /// The kind that `method` lists, if any.
    pub fn of(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }
}

/// `logging/setLevel` levels, least severe first (RFC 5424's order).
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A level's severity (0 = `debug`); `None` if it is not a level.
pub fn log_level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_kinds_round_trip_through_their_methods() {
        for kind in ListKind::ALL {
            assert_eq!(ListKind::of(kind.method()), Some(kind));
            assert_eq!(ListKind::ALL[kind.index()], kind);
        }
        assert_eq!(ListKind::of("tools/call"), None);
        assert!(
            std::str::from_utf8(&ListKind::Prompts.notification())
                .is_ok_and(|n| n.contains("notifications/prompts/list_changed"))
        );
    }

    #[test]
    fn reads_are_safe_calls_are_not() {
        assert!(
            is_safe_read("tools/list") && is_safe_read("resources/read") && is_safe_read("ping")
        );
        assert!(!is_safe_read("tools/call") && !is_safe_read("resources/subscribe"));
    }

    #[test]
    fn a_2026_request_declares_its_version_and_target() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let declared = Declared::of("tools/call", call, false);
        assert_eq!(declared.version.as_deref(), Some(STATELESS_VERSION));
        assert_eq!(declared.name.as_deref(), Some("echo"));
        let read =
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://1"}}"#;
        assert_eq!(
            Declared::of("resources/read", read, true),
            Declared {
                version: None,
                name: Some("test://1".into())
            }
        );
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#;
        assert_eq!(Declared::of("tools/list", list, true), Declared::default());
        let odd = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#;
        assert_eq!(Declared::of("tools/call", odd, true), Declared::default());
        let data = unsupported_version_data(STATELESS_VERSION);
        assert_eq!(data["requested"], STATELESS_VERSION);
        assert_eq!(data["supported"][3], LATEST_VERSION);
    }

    #[test]
    fn a_2026_request_needs_its_version_and_capabilities_in_meta() {
        let full = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(has_envelope(full));
        let no_caps = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert!(!has_envelope(no_caps));
        assert!(!has_envelope(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#
        ));
        assert!(!has_envelope(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        ));
    }

    #[test]
    fn header_values_are_encoded_as_sep_2243_says() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("file:///a b.txt"), "file:///a b.txt");
        assert_eq!(header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(header_value(" x"), "=?base64?IHg=?=");
        assert_eq!(header_value("a\r\nb"), "=?base64?YQ0KYg==?=");
        assert_eq!(
            header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }

    #[test]
    fn log_levels_are_ranked_by_severity() {
        assert!(log_level_rank("debug") < log_level_rank("warning"));
        assert_eq!(log_level_rank("emergency"), Some(7));
        assert_eq!(log_level_rank("loud"), None);
    }
}
