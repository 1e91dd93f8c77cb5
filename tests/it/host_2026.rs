//! Issue 17: `mcp-manager host` serving a 2026-07-28 stdio server to both
//! eras at once. A stdio connection of that revision serves one era (its
//! first message decides), so the host runs a second process for the
//! 2026-07-28 requests; these tests hold it to its promises on the real
//! binaries and the TS SDK v2 server (`tests/fixtures/ts2_server.mjs`):
//! both eras answered as that server answers them, the transport's header
//! checks, each listen stream's notifications on its own POST only, and
//! scope `session` still answering -32022.

#![cfg(unix)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{HostProcess, McpHttp, Server2026, TestHome, free_port, server2026_hosted_entry};
use mcp_session_manager::mcp::{
    CLIENT_CAPABILITIES_META, HEADER_MISMATCH, PROTOCOL_VERSION_META, STATELESS_VERSION,
    UNSUPPORTED_PROTOCOL_VERSION,
};

/// The `_meta` envelope a 2026-07-28 client puts in every request.
fn envelope() -> Value {
    json!({ PROTOCOL_VERSION_META: STATELESS_VERSION, CLIENT_CAPABILITIES_META: {} })
}

/// A 2026-07-28 POST of `message` with the headers that revision requires
/// (`headers` may leave some out); its status and JSON body.
async fn post_2026(http: &McpHttp, message: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http
        .client
        .post(&http.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(serde_json::to_vec(message).expect("json"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    assert!(
        response.headers().get("mcp-session-id").is_none(),
        "a 2026-07-28 answer opens no session"
    );
    let body = response.bytes().await.expect("the whole body");
    (status, serde_json::from_slice(&body).expect("a JSON body"))
}

fn echo_2026(id: Value, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": text}, "_meta": envelope()}})
}

const ECHO_HEADERS: [(&str, &str); 3] = [
    ("mcp-protocol-version", STATELESS_VERSION),
    ("mcp-method", "tools/call"),
    ("mcp-name", "echo"),
];

async fn hosted(scope: &str) -> (TestHome, HostProcess) {
    let home = TestHome::new();
    let mut entry = server2026_hosted_entry(Server2026::Ts2, free_port());
    entry["scope"] = json!(scope);
    let host = HostProcess::start(&home, "ts2", entry).await;
    (home, host)
}

#[tokio::test]
async fn a_2025_session_and_2026_requests_share_a_hosted_2026_server_each_in_its_era() {
    let (_home, host) = hosted("shared").await;
    let http = McpHttp::new(host.port);
    let session = http.initialize(None).await.expect("a 2025 session opens");
    let old = http
        .call_json(&session, 2, "echo", json!({"text": "old"}))
        .await;
    assert_eq!(old["result"]["content"][0]["text"], "echo: old", "{old}");
    assert!(
        old["result"].get("resultType").is_none(),
        "a 2025 answer: {old}"
    );

    let discover = json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": envelope()}});
    let headers = [
        ("mcp-protocol-version", STATELESS_VERSION),
        ("mcp-method", "server/discover"),
    ];
    let (status, found) = post_2026(&http, &discover, &headers).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], "d");
    assert_eq!(
        found["result"]["supportedVersions"],
        json!([STATELESS_VERSION]),
        "{found}"
    );

    let (status, new) = post_2026(&http, &echo_2026(json!(77), "new"), &ECHO_HEADERS).await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["id"], 77);
    assert_eq!(new["result"]["content"][0]["text"], "echo: new", "{new}");
    assert_eq!(
        new["result"]["resultType"], "complete",
        "a 2026-07-28 answer: {new}"
    );

    // The 2025 session still works beside it.
    let again = http
        .call_json(&session, 3, "echo", json!({"text": "again"}))
        .await;
    assert_eq!(
        again["result"]["content"][0]["text"], "echo: again",
        "{again}"
    );
}

#[tokio::test]
async fn a_2026_request_without_its_headers_is_refused_as_that_transport_refuses_it() {
    let (_home, host) = hosted("shared").await;
    let http = McpHttp::new(host.port);
    let cases: [&[(&str, &str)]; 4] = [
        &ECHO_HEADERS[1..],
        &[ECHO_HEADERS[0], ECHO_HEADERS[2]],
        &[
            ECHO_HEADERS[0],
            ("mcp-method", "tools/list"),
            ECHO_HEADERS[2],
        ],
        &[ECHO_HEADERS[0], ECHO_HEADERS[1], ("mcp-name", "other")],
    ];
    for (n, headers) in cases.iter().enumerate() {
        let (status, answer) = post_2026(&http, &echo_2026(json!(n), "x"), headers).await;
        assert_eq!(status, 400, "{headers:?}: {answer}");
        assert_eq!(
            answer["error"]["code"], HEADER_MISMATCH,
            "{headers:?}: {answer}"
        );
        assert_eq!(answer["id"], n, "the request's own id: {answer}");
    }
    // Nothing of them ran: a good one after them is answered as usual.
    let (status, ok) = post_2026(&http, &echo_2026(json!("ok"), "fine"), &ECHO_HEADERS).await;
    assert_eq!(
        (status, &ok["result"]["content"][0]["text"]),
        (200, &json!("echo: fine")),
        "{ok}"
    );
}

/// Reads one listen stream until its first message (bounded).
async fn first_listen_message(http: &McpHttp, id: Value) -> (Value, reqwest::Response) {
    let listen = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
                        "params": {"_meta": envelope(), "notifications": {"toolsListChanged": true}}});
    let mut response = http
        .client
        .post(&http.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", STATELESS_VERSION)
        .header("mcp-method", "subscriptions/listen")
        .body(serde_json::to_vec(&listen).expect("json"))
        .send()
        .await
        .expect("the host answers");
    let mut text = String::new();
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = response
                .chunk()
                .await
                .expect("the stream")
                .expect("more of it");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str::<Value>(data).expect("an event is JSON");
            }
        }
    })
    .await
    .expect("the listen stream's first message within 10 s");
    (first, response)
}

#[tokio::test]
async fn each_listen_stream_gets_its_own_acknowledgement_under_its_own_id() {
    let (_home, host) = hosted("shared").await;
    let http = McpHttp::new(host.port);
    let (a, mut stream_a) = first_listen_message(&http, json!("listen-a")).await;
    let (b, _keep_b) = first_listen_message(&http, json!(5)).await;
    // B's acknowledgement has been written; none of it reached A's stream
    // (what A's stream holds by now is all it will get of B's).
    let more = tokio::time::timeout(Duration::from_millis(500), stream_a.chunk()).await;
    if let Ok(chunk) = more {
        let chunk = chunk.expect("A's stream").unwrap_or_default();
        panic!(
            "A's listen stream got another message: {}",
            String::from_utf8_lossy(&chunk)
        );
    }
    let id = |m: &Value| m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone();
    assert_eq!(
        a["method"], "notifications/subscriptions/acknowledged",
        "{a}"
    );
    assert_eq!(id(&a), "listen-a", "A's stream names A's request: {a}");
    assert_eq!(
        b["method"], "notifications/subscriptions/acknowledged",
        "{b}"
    );
    assert_eq!(id(&b), 5, "B's stream names B's request: {b}");
}

#[tokio::test]
async fn scope_session_still_answers_discover_with_its_versions() {
    let (_home, host) = hosted("session").await;
    let http = McpHttp::new(host.port);
    let discover = json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover", "params": {"_meta": envelope()}});
    let headers = [
        ("mcp-protocol-version", STATELESS_VERSION),
        ("mcp-method", "server/discover"),
    ];
    let (status, answer) = post_2026(&http, &discover, &headers).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["code"], UNSUPPORTED_PROTOCOL_VERSION,
        "{answer}"
    );
    assert_eq!(answer["id"], 4);
}
