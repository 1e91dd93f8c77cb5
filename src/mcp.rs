//! The MCP vocabulary, written once: protocol versions, header names, the
//! methods safe to send twice, the lists a client can be told changed, and
//! log levels. Both sides (the proxy's client side, the host's server side)
//! read them from here.

use bytes::Bytes;

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
    fn log_levels_are_ranked_by_severity() {
        assert!(log_level_rank("debug") < log_level_rank("warning"));
        assert_eq!(log_level_rank("emergency"), Some(7));
        assert_eq!(log_level_rank("loud"), None);
    }
}
