//! MCP over plain HTTP, for tests that talk to a host without a proxy:
//! `initialize` (with or without `Mcp-Project-Path`) and requests on a
//! session, the answer read whole (JSON, or the events of an SSE body).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The fixture server of the bounds tests (`bounds_server.py`).
pub fn bounds_server_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/util/bounds_server.py")
}

/// A config entry hosting `bounds_server.py` on `port`.
pub fn hosted_bounds_entry(port: u16) -> Value {
    json!({
        "command": super::fixtures::venv_python().to_string_lossy(),
        "args": [bounds_server_py().to_string_lossy()],
        "port": port,
    })
}

/// An `initialize` request with id `id`.
pub fn initialize_request(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bounds-test", "version": "1"}}})
}

/// A plain HTTP MCP client of one host.
#[derive(Clone)]
pub struct McpHttp {
    pub client: reqwest::Client,
    pub url: String,
}

/// One answer: its HTTP status, session id (if any) and JSON-RPC messages.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub session: Option<String>,
    /// The body as JSON (an SSE body: an array of its events' data).
    pub body: Value,
}

impl McpHttp {
    pub fn new(port: u16) -> McpHttp {
        McpHttp {
            client: mcp_session_manager::http::loopback_client_builder()
                .build()
                .expect("client"),
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }

    /// POSTs `body` (raw bytes) on `session` with `accept`.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        session: Option<&str>,
        project: Option<&str>,
        accept: &str,
    ) -> Answer {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(project) = project {
            request = request.header("mcp-project-path", project);
        }
        let response = request.send().await.expect("the host answers");
        let status = response.status().as_u16();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let bytes = response.bytes().await.expect("the whole body");
        let body = if is_sse {
            let text = String::from_utf8_lossy(&bytes);
            Value::Array(
                text.lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .map(|d| serde_json::from_str(d).expect("an event is JSON"))
                    .collect(),
            )
        } else if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the body is JSON")
        };
        Answer {
            status,
            session,
            body,
        }
    }

    /// POSTs `message` as JSON, answers as JSON or SSE.
    pub async fn post(&self, message: &Value, session: Option<&str>) -> Answer {
        let body = serde_json::to_vec(message).expect("json");
        self.post_raw(body, session, None, "application/json, text/event-stream")
            .await
    }

    /// Opens a session (in `project`, if given); its id, or the refusal.
    pub async fn initialize(&self, project: Option<&str>) -> Result<String, Value> {
        let body = serde_json::to_vec(&initialize_request(1)).expect("json");
        let answer = self
            .post_raw(body, None, project, "application/json, text/event-stream")
            .await;
        match answer.session {
            Some(session) if answer.body.get("result").is_some() => Ok(session),
            _ => Err(answer.body),
        }
    }

    /// Calls `tool` on `session`, taking JSON answers only; the answer.
    pub async fn call_json(&self, session: &str, id: u64, tool: &str, arguments: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        let body = serde_json::to_vec(&message).expect("json");
        self.post_raw(body, Some(session), None, "application/json")
            .await
            .body
    }
}
