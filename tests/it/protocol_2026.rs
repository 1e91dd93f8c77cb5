//! Issue 17, items 2–4: the 2026-07-28 revision meets the host and the
//! proxy. The host answers `server/discover` (and any request declaring a
//! version it does not speak) with the spec's -32022, the request's id and
//! its versions, so a client falls back to `initialize`; the proxy mirrors
//! the headers that revision's transport requires, opens no session
//! machinery the server does not use, and hands a daemon's JSON-RPC error
//! body to the client unchanged; a GET answered 400 or 404 while POSTs work
//! is "no standalone stream", never a re-initialize loop.

#![cfg(unix)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_daemon::{Behaviour, FakeDaemon, Fault, GetMode, Recorded};
use crate::util::{HostProcess, McpHttp, Proxy, TestHome, everything_stdio_entry, free_port};
use mcp_session_manager::mcp::{
    PROTOCOL_VERSION_META, STATELESS_VERSION, SUPPORTED_VERSIONS, UNSUPPORTED_PROTOCOL_VERSION,
};

/// `_meta` declaring 2026-07-28, as a 2026 client puts in every request.
fn meta_2026() -> Value {
    json!({ PROTOCOL_VERSION_META: STATELESS_VERSION })
}

/// A 2026-07-28 `server/discover` with id `id`.
fn discover(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {"_meta": meta_2026()}})
}

/// Asserts `answer` is the -32022 for request `id`, listing the host's versions.
fn assert_unsupported(answer: &Value, id: &Value) {
    assert_eq!(&answer["id"], id, "{answer}");
    assert_eq!(
        answer["error"]["code"], UNSUPPORTED_PROTOCOL_VERSION,
        "{answer}"
    );
    assert_eq!(
        answer["error"]["data"]["supported"],
        json!(SUPPORTED_VERSIONS),
        "{answer}"
    );
    assert_eq!(
        answer["error"]["data"]["requested"], STATELESS_VERSION,
        "{answer}"
    );
}

/// The host (a real `mcp-manager host` over server-everything) answers a
/// raw `server/discover`, and a `tools/list` declaring 2026-07-28 without a
/// session, with HTTP 400, the request's own id, -32022 and the versions it
/// speaks; `initialize` with one of them then opens a session as before.
#[tokio::test]
async fn host_answers_discover_with_its_versions() {
    let home = TestHome::new();
    let port = free_port();
    let _host = HostProcess::start(&home, "everything", everything_stdio_entry(port)).await;
    let client = McpHttp::new(port);
    let answer = client.post(&discover(json!("probe-1")), None).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.session.is_none());
    assert_unsupported(&answer.body, &json!("probe-1"));

    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list",
        "params": {"_meta": meta_2026()}});
    let answer = client.post(&list, None).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_unsupported(&answer.body, &json!(9));

    let session = client
        .initialize(None)
        .await
        .expect("initialize still works");
    let tools = client
        .call_json(&session, 2, "echo", json!({"message": "hi"}))
        .await;
    assert!(tools.get("result").is_some(), "{tools}");
}

/// Claude Code's order through the proxy to the host: `server/discover`
/// first, then (told -32022) `initialize` 2025-11-25. The client gets the
/// host's error itself (code, message, data, its id), not -32603 "the
/// daemon answered HTTP 400", and the fallback session works.
#[tokio::test]
async fn discover_through_the_proxy_falls_back_by_the_spec() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(port)).await;
    let mut proxy = Proxy::start(&home, &["--url", &host.url()]);
    proxy.send(&discover(json!(0))).await;
    let answer = proxy.response(&json!(0)).await;
    assert_unsupported(&answer, &json!(0));
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("initialize")),
        "{answer}"
    );
    proxy.initialize().await;
    let tools = proxy.request(json!(1), "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
}

/// A daemon whose HTTP error body is a JSON-RPC error for the request (its
/// id, or `null`): the stdio client gets that error's code, message and
/// data unchanged, with its own id. A body that is not one still gets the
/// proxy's -32603 with the status.
#[tokio::test]
async fn a_daemon_error_body_reaches_the_client_unchanged() {
    let mismatch = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"header mismatch: Mcp-Method is required","data":{"header":"Mcp-Method"}}}"#;
    let own = r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"],"requested":"1999-01-01"}}}"#;
    let behaviour = Behaviour::default()
        .with(|b| b.session_id = None)
        .with_fault("tools/call", Fault::Status(400, mismatch.into()))
        .with_fault("prompts/get", Fault::Status(400, own.into()))
        .with_fault("resources/read", Fault::Status(500, "boom".into()));
    let daemon = FakeDaemon::start(behaviour).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &daemon.url("/mcp")]);
    proxy.initialize().await;

    let answer = proxy
        .request(
            json!("c"),
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
        )
        .await;
    assert_eq!(answer["id"], "c", "{answer}");
    assert_eq!(answer["error"]["code"], -32020, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "header mismatch: Mcp-Method is required"
    );
    assert_eq!(answer["error"]["data"], json!({"header": "Mcp-Method"}));

    let answer = proxy
        .request(json!(5), "prompts/get", json!({"name": "p"}))
        .await;
    let expected: Value = serde_json::from_str(own).expect("json");
    assert_eq!(answer, expected);

    let answer = proxy
        .request(json!(6), "resources/read", json!({"uri": "x://1"}))
        .await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(answer["error"]["data"]["status"], 500, "{answer}");
}

/// How many `initialize` POSTs the daemon has read.
fn initializes(daemon: &FakeDaemon) -> usize {
    daemon
        .requests()
        .iter()
        .filter(|r| r.is_post_of("initialize"))
        .count()
}

fn gets(daemon: &FakeDaemon) -> usize {
    daemon
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

/// A stateless daemon whose GET is answered 400 (the conformance suite's
/// scenario server): the idle proxy opens no new session (the issue saw
/// 214 in 5 s), asks for the stream once, and POSTs keep working.
#[tokio::test]
async fn a_get_answered_400_is_no_stream_not_a_lost_session() {
    for status in [400, 404] {
        let behaviour = Behaviour::default().with(|b| {
            b.session_id = None;
            b.get = GetMode::Status(status);
        });
        let daemon = FakeDaemon::start(behaviour).await;
        let home = TestHome::new();
        let mut proxy = Proxy::start(&home, &["--url", &daemon.url("/mcp")]);
        proxy.initialize().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(initializes(&daemon), 1, "GET {status}: re-initialized");
        assert_eq!(gets(&daemon), 1, "GET {status}: asked again");
        let answer = proxy.request(json!(1), "ping", json!({})).await;
        assert!(answer.get("result").is_some(), "{answer}");
        daemon.stop().await;
    }
}

/// With a session id, a GET answered 400 while the session still answers a
/// `ping` is no stream either: at most one liveness check, no new session.
#[tokio::test]
async fn a_get_400_on_a_live_session_does_not_reinitialize() {
    let behaviour = Behaviour::default().with(|b| b.get = GetMode::Status(400));
    let daemon = FakeDaemon::start(behaviour).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &daemon.url("/mcp")]);
    proxy.initialize().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        initializes(&daemon) <= 2,
        "{} initializes",
        initializes(&daemon)
    );
    assert!(gets(&daemon) <= 2, "{} GETs", gets(&daemon));
    let answer = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "m"}}),
        )
        .await;
    assert_eq!(answer["result"]["content"][0]["text"], "m", "{answer}");
}

/// The POST of a JSON-RPC message with this method.
fn post_of<'a>(requests: &'a [Recorded], method: &str) -> &'a Recorded {
    requests
        .iter()
        .find(|r| r.is_post_of(method))
        .unwrap_or_else(|| panic!("no POST of {method}"))
}

/// A 2026-07-28 exchange through the proxy, as a 2026 server sees it: every
/// POST carries `MCP-Protocol-Version: 2026-07-28` and `Mcp-Method`;
/// `tools/call`, `resources/read` and `prompts/get` carry `Mcp-Name`
/// (encoded as SEP-2243 says when it is not printable ASCII); no
/// `initialize` is sent on the client's behalf, no session id, no GET
/// stream; the answers come back as the server wrote them.
#[tokio::test]
async fn a_2026_exchange_carries_the_headers_it_requires() {
    let behaviour = Behaviour::default().with(|b| b.session_id = None);
    let daemon = FakeDaemon::start(behaviour).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &daemon.url("/mcp")]);
    let found = proxy
        .request(json!(0), "server/discover", json!({"_meta": meta_2026()}))
        .await;
    assert_eq!(found["result"]["method"], "server/discover", "{found}");
    let call = json!({"name": "echo", "arguments": {"message": "hi"}, "_meta": meta_2026()});
    let answer = proxy.request(json!(1), "tools/call", call).await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    let read = json!({"uri": "test://static/1", "_meta": meta_2026()});
    proxy.request(json!(2), "resources/read", read).await;
    let get = json!({"name": "simple", "_meta": meta_2026()});
    proxy.request(json!(3), "prompts/get", get).await;
    proxy
        .request(json!(4), "tools/list", json!({"_meta": meta_2026()}))
        .await;
    let odd = json!({"name": "café", "arguments": {}, "_meta": meta_2026()});
    proxy.request(json!(5), "tools/call", odd).await;
    proxy
        .notify("notifications/roots/list_changed", json!({}))
        .await;
    daemon
        .wait_for(
            |r| r.is_post_of("notifications/roots/list_changed"),
            Duration::from_secs(5),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let requests = daemon.requests();
    for (method, name) in [
        ("server/discover", None),
        ("tools/call", Some("echo")),
        ("resources/read", Some("test://static/1")),
        ("prompts/get", Some("simple")),
        ("tools/list", None),
        ("notifications/roots/list_changed", None),
    ] {
        let post = post_of(&requests, method);
        assert_eq!(
            post.header("mcp-protocol-version"),
            Some(STATELESS_VERSION),
            "{method}"
        );
        assert_eq!(post.header("mcp-method"), Some(method), "{method}");
        assert_eq!(post.header("mcp-name"), name, "{method}");
        assert_eq!(post.header("mcp-session-id"), None, "{method}");
    }
    let odd = requests
        .iter()
        .find(|r| r.is_post_of("tools/call") && r.json().is_some_and(|v| v["id"] == 5))
        .expect("the second call");
    // SEP-2243: a value that is not printable ASCII goes as Base64 of its UTF-8.
    assert_eq!(odd.header("mcp-name"), Some("=?base64?Y2Fmw6k=?="));
    assert_eq!(initializes(&daemon), 0);
    assert_eq!(gets(&daemon), 0);
}
