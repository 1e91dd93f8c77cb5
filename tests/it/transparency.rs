//! Transparency: one scripted session gives the same answers, byte for byte,
//! from server-everything's stdio build directly and through `mcp-proxy` to
//! its Streamable HTTP and SSE builds (ids, field order, unicode included).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::util::{Flavor, Mode, RealServer, TestHome, everything_js, proxy_bin};

/// Requests whose answers do not depend on the transport.
fn script() -> Vec<Value> {
    let call = |id: Value, name: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}})
    };
    vec![
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
            "clientInfo": {"name": "transparency", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": "tools", "method": "tools/list"}),
        call(json!(2), "echo", json!({"message": "a\nb\u{2028}ü \"q\""})),
        call(json!("sum-ü"), "get-sum", json!({"a": 1.5, "b": 2})),
        json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/list"}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/templates/list"}),
        json!({"jsonrpc": "2.0", "id": -6, "method": "ping"}),
    ]
}

/// Runs the script against `command` (a stdio MCP server); each request's
/// answer line, by id, exactly as written on stdout.
async fn answers(mut command: Command) -> BTreeMap<String, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut answers = BTreeMap::new();
    for message in script() {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .expect("write");
        let Some(id) = message.get("id") else {
            continue;
        };
        // One request at a time, so the order of the session is the same.
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("an answer within 20 s")
                .expect("read")
                .expect("not EOF");
            let value: Value = serde_json::from_str(&line).expect("JSON line");
            if value.get("method").is_none() && value["id"] == *id {
                answers.insert(id.to_string(), line);
                break;
            }
        }
    }
    answers
}

async fn compare(mode: Mode) {
    let mut direct = Command::new("node");
    direct.arg(everything_js()).arg("stdio");
    let direct = answers(direct).await;

    let server = RealServer::start(Flavor::Everything, mode).await;
    let home = TestHome::new();
    let mut proxied = Command::new(proxy_bin());
    proxied
        .args(["--url", &server.url()])
        .env("MCP_SESSION_MANAGER_HOME", home.path());
    let proxied = answers(proxied).await;

    assert_eq!(direct.len(), 7);
    for (id, line) in &direct {
        assert_eq!(Some(line), proxied.get(id), "answer to id {id} differs");
    }
}

#[tokio::test]
async fn proxy_answers_match_the_stdio_build_over_streamable_http() {
    compare(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn proxy_answers_match_the_stdio_build_over_sse() {
    compare(Mode::Sse).await;
}
