//! Issue 17, item 1: session-bound state stays per session in a shared
//! host. Two raw Streamable HTTP sessions A and B on `mcp-manager host`
//! (scope `shared`) wrapping the real server-everything over stdio: A's MCP
//! task (`simulate-research-query`, SEP-1686) is invisible to B (list, get,
//! result, cancel answered as the server itself answers an unknown task),
//! its status notifications reach A alone, and its related-task
//! elicitation reaches A though B sent the newest request.

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::util::{HostProcess, TestHome, everything_js, everything_stdio_entry, free_port};

/// How long any one awaited message may take.
const WAIT: Duration = Duration::from_secs(30);

/// One raw client session of the host.
struct RawSession {
    client: reqwest::Client,
    url: String,
    id: String,
}

/// The JSON-RPC messages of an SSE (or JSON) body, as they arrive.
type Events = mpsc::UnboundedReceiver<Value>;

/// Reads `response`'s body in the background: each SSE `data:` (or the
/// JSON body) onto the returned channel, which closes with the body.
fn events_of(response: reqwest::Response) -> Events {
    let (tx, rx) = mpsc::unbounded_channel();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            pending.extend_from_slice(&chunk);
            if !is_sse {
                continue;
            }
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&event).lines() {
                    if let Some(data) = line.strip_prefix("data: ")
                        && let Ok(value) = serde_json::from_str(data)
                    {
                        let _ = tx.send(value);
                    }
                }
            }
        }
        if !is_sse && let Ok(value) = serde_json::from_slice(&pending) {
            let _ = tx.send(value);
        }
    });
    rx
}

/// The next message on `events` that `matches`, within [`WAIT`].
async fn next_matching(events: &mut Events, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let found = async {
        while let Some(message) = events.recv().await {
            if matches(&message) {
                return Some(message);
            }
        }
        None
    };
    match tokio::time::timeout(WAIT, found).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("the stream ended before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

/// Everything on `events` for `window` (bounded).
async fn drain_for(events: &mut Events, window: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, events.recv()).await {
        seen.push(message);
    }
    seen
}

impl RawSession {
    /// `initialize` (2025-11-25, form elicitation) and `initialized`.
    async fn open(host: &HostProcess) -> RawSession {
        let client = mcp_session_manager::http::loopback_client_builder()
            .build()
            .expect("client");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "host-tasks-test", "version": "1"}}});
        let response = client
            .post(host.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string())
            .send()
            .await
            .expect("the host answers initialize");
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("a session id")
            .to_owned();
        let mut answer = events_of(response);
        next_matching(&mut answer, "the initialize result", |m| m["id"] == 0).await;
        let session = RawSession {
            client,
            url: host.url(),
            id,
        };
        session
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        session
    }

    /// POSTs `message` on the session; its body's messages, as they arrive.
    async fn post(&self, message: &Value) -> Events {
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .body(message.to_string())
            .send()
            .await
            .expect("the host answers a POST");
        assert!(
            response.status().is_success(),
            "POST: {}",
            response.status()
        );
        events_of(response)
    }

    /// A request and its answer.
    async fn request(&self, id: u64, method: &str, params: Value) -> Value {
        let mut events = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        next_matching(&mut events, method, |m| {
            m["id"] == id && m.get("method").is_none()
        })
        .await
    }

    /// The session's GET stream.
    async fn stream(&self) -> Events {
        let response = self
            .client
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .send()
            .await
            .expect("the host answers a GET");
        assert_eq!(response.status().as_u16(), 200, "GET stream");
        events_of(response)
    }
}

/// What server-everything itself (over stdio, one client) answers
/// `tasks/get`, `tasks/result` and `tasks/cancel` for a task it does not
/// know, `task_id`: the errors, in that order.
async fn direct_unknown_task_errors(task_id: &str) -> Vec<Value> {
    let mut child = tokio::process::Command::new("node")
        .arg(everything_js())
        .arg("stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut messages = vec![
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "direct", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ];
    for (id, method) in [(1, "tasks/get"), (2, "tasks/result"), (3, "tasks/cancel")] {
        messages.push(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"taskId": task_id}}),
        );
    }
    for message in messages {
        let line = format!("{message}\n");
        stdin.write_all(line.as_bytes()).await.expect("write");
    }
    let mut errors = [Value::Null, Value::Null, Value::Null];
    let read = async {
        while errors.iter().any(Value::is_null) {
            let Ok(Some(line)) = lines.next_line().await else {
                break;
            };
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(slot) = message["id"].as_u64().and_then(|i| i.checked_sub(1)) {
                if let Some(slot) = errors.get_mut(usize::try_from(slot).unwrap_or(usize::MAX)) {
                    *slot = message["error"].clone();
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("server-everything answers");
    errors.to_vec()
}

#[tokio::test]
async fn one_sessions_task_stays_its_own_in_a_shared_host() {
    let home = TestHome::new();
    let mut entry = everything_stdio_entry(free_port());
    entry["scope"] = json!("shared");
    let host = HostProcess::start(&home, "everything", entry).await;
    let a = RawSession::open(&host).await;
    let b = RawSession::open(&host).await;
    let mut a_stream = a.stream().await;
    let mut b_stream = b.stream().await;

    // A starts an ambiguous research task: it will ask A to clarify.
    let created = a
        .request(
            1,
            "tools/call",
            json!({"name": "simulate-research-query",
                "arguments": {"topic": "python", "ambiguous": true}, "task": {"ttl": 60000}}),
        )
        .await;
    let task = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a CreateTaskResult: {created}"))
        .to_owned();

    // B's list lacks it; A's has it.
    let b_list = b.request(2, "tasks/list", json!({})).await;
    let ids = |list: &Value| -> Vec<String> {
        list["result"]["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("a task list: {list}"))
            .iter()
            .filter_map(|t| t["taskId"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(!ids(&b_list).contains(&task), "B lists A's task: {b_list}");
    let a_list = a.request(2, "tasks/list", json!({})).await;
    assert!(ids(&a_list).contains(&task), "A's own list: {a_list}");

    // B's get, result and cancel on A's id: the server's own unknown-task answers.
    let direct = direct_unknown_task_errors(&task).await;
    for (n, method) in ["tasks/get", "tasks/result", "tasks/cancel"]
        .into_iter()
        .enumerate()
    {
        let answer = b
            .request(10 + n as u64, method, json!({"taskId": task}))
            .await;
        assert_eq!(
            answer["error"], direct[n],
            "B's {method} on A's task: {answer}"
        );
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
    }

    // A waits for its result; B then sends the newest request (a slow tool
    // call), which the old rule would have handed A's question to.
    let mut a_result = a
        .post(&json!({"jsonrpc": "2.0", "id": 20, "method": "tasks/result", "params": {"taskId": task}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b_call = b
        .post(
            &json!({"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation", "arguments": {"duration": 6, "steps": 3}}}),
        )
        .await;
    let question = next_matching(&mut a_result, "A's related-task elicitation", |m| {
        m["method"] == "elicitation/create"
    })
    .await;
    assert_eq!(
        question["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        json!(task),
        "{question}"
    );
    let accepted = a
        .post(&json!({"jsonrpc": "2.0", "id": question["id"],
            "result": {"action": "accept", "content": {"interpretation": "snake"}}}))
        .await;
    drop(accepted);
    let result = next_matching(&mut a_result, "A's task result", |m| m["id"] == 20).await;
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("(snake)"),
        "A's result used A's answer: {result}"
    );

    let b_done = next_matching(&mut b_call, "B's tool result", |m| m["id"] == 21).await;
    assert!(b_done.get("result").is_some(), "{b_done}");
    let b_saw: Vec<Value> = b_call.recv().await.into_iter().collect();

    // Status: A saw its task's, B none; B was never asked A's question.
    let a_saw = drain_for(&mut a_stream, Duration::from_millis(500)).await;
    let b_got = drain_for(&mut b_stream, Duration::from_millis(500)).await;
    let status_of_task = |m: &Value| {
        m["method"] == "notifications/tasks/status" && m["params"]["taskId"] == json!(task)
    };
    assert!(
        a_saw
            .iter()
            .any(|m| status_of_task(m) && m["params"]["status"] == "completed"),
        "A's stream lacks its task's completion: {a_saw:?}"
    );
    for m in b_got.iter().chain(&b_saw) {
        assert_ne!(m["method"], "notifications/tasks/status", "B saw: {m}");
        assert_ne!(m["method"], "elicitation/create", "B was asked: {m}");
    }

    // Read: the task is A's no more either (the host forgot it).
    let again = a.request(30, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
}
