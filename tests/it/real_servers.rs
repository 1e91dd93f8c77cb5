//! The whole MCP feature list through `mcp-proxy --url`, against real
//! servers: `@modelcontextprotocol/server-everything` and a Python FastMCP
//! server, each in Streamable HTTP and legacy SSE mode. The test speaks raw
//! JSON-RPC lines, so it sees exactly what the proxy writes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Flavor, Mode, Proxy, RealServer, TestHome, tool_text};

const ROOT_URI: &str = "file:///tmp/root-a";

async fn scenario(flavor: Flavor, mode: Mode) {
    let server = RealServer::start(flavor, mode).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);

    let init = proxy.initialize().await;
    assert_eq!(init["id"], json!(0));
    assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");

    if flavor == Flavor::Everything {
        // Unasked, outside any request: server-everything sends `roots/list`
        // shortly after `initialized` (on the GET stream over Streamable HTTP).
        let roots = proxy.until(|v| v["method"] == "roots/list").await;
        let old = json!({"roots": [{"uri": "file:///tmp/old", "name": "old"}]});
        answer(&mut proxy, &roots, old).await;
        // The client's `roots/list_changed` reaches the server, which asks again.
        proxy
            .notify("notifications/roots/list_changed", json!({}))
            .await;
        let again = proxy.until(|v| v["method"] == "roots/list").await;
        let new = json!({"roots": [{"uri": ROOT_URI, "name": "a"}]});
        answer(&mut proxy, &again, new).await;
    }

    // tools/list, with a string id made of non-ASCII text.
    let tools = proxy
        .request(json!("tøøls-1"), "tools/list", json!({}))
        .await;
    assert_eq!(tools["id"], json!("tøøls-1"));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let expected = match flavor {
        Flavor::Everything => [
            "echo",
            "trigger-long-running-operation",
            "trigger-sampling-request",
        ],
        Flavor::FastMcp => ["echo", "progress", "sample"],
    };
    for name in expected {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // echo: newlines, U+2028 and non-ASCII survive.
    let text = "a\nb\u{2028}ü";
    let echo = call(&mut proxy, json!(2), "echo", json!({"message": text})).await;
    assert!(tool_text(&echo).contains(text), "{echo}");

    // progress: every notification arrives, in order, before the result.
    let (tool, args) = match flavor {
        Flavor::Everything => (
            "trigger-long-running-operation",
            json!({"duration": 1, "steps": 5}),
        ),
        Flavor::FastMcp => ("progress", json!({"steps": 5, "delay": 0.05})),
    };
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": {"progressToken": 7}}}))
        .await;
    let mut progress = Vec::new();
    loop {
        let message = proxy.next().await;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], json!(7));
            progress.push(
                message["params"]["progress"]
                    .as_f64()
                    .expect("progress number"),
            );
        } else if message["id"] == json!(3) {
            assert!(message.get("result").is_some(), "{message}");
            break;
        } else {
            proxy.seen.push(message);
        }
    }
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0, 5.0]);

    // sampling: the server's request reaches the client, the client's answer
    // goes back, the tool result reflects it.
    let (tool, args) = match flavor {
        Flavor::Everything => (
            "trigger-sampling-request",
            json!({"prompt": "hi", "maxTokens": 5}),
        ),
        Flavor::FastMcp => ("sample", json!({"prompt": "hi"})),
    };
    send_call(&mut proxy, json!(4), tool, args).await;
    let sampling = proxy
        .until(|v| v["method"] == "sampling/createMessage")
        .await;
    answer(
        &mut proxy,
        &sampling,
        json!({"role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m", "stopReason": "endTurn"}),
    )
    .await;
    let sampled = proxy.response(&json!(4)).await;
    assert!(sampled.to_string().contains("hello"), "{sampled}");

    // elicitation.
    let tool = match flavor {
        Flavor::Everything => "trigger-elicitation-request",
        Flavor::FastMcp => "elicit",
    };
    send_call(&mut proxy, json!(5), tool, json!({})).await;
    let elicit = proxy.until(|v| v["method"] == "elicitation/create").await;
    answer(
        &mut proxy,
        &elicit,
        json!({"action": "accept", "content": {"name": "x"}}),
    )
    .await;
    let elicited = proxy.response(&json!(5)).await;
    assert!(elicited.get("result").is_some(), "{elicited}");
    if flavor == Flavor::FastMcp {
        assert_eq!(tool_text(&elicited), "elicited: accept x");
    }

    // roots: the client's answer is what the server sees.
    if flavor == Flavor::FastMcp {
        send_call(&mut proxy, json!(6), "roots", json!({})).await;
        let roots = proxy.until(|v| v["method"] == "roots/list").await;
        answer(
            &mut proxy,
            &roots,
            json!({"roots": [{"uri": ROOT_URI, "name": "a"}]}),
        )
        .await;
    } else {
        send_call(&mut proxy, json!(6), "get-roots-list", json!({})).await;
    }
    let roots = proxy.response(&json!(6)).await;
    assert!(roots.to_string().contains(ROOT_URI), "{roots}");

    // logging: the level is forwarded, and log messages arrive.
    match flavor {
        Flavor::Everything => {
            let set = proxy
                .request(json!(7), "logging/setLevel", json!({"level": "debug"}))
                .await;
            assert!(set.get("result").is_some(), "{set}");
            call(&mut proxy, json!(8), "toggle-simulated-logging", json!({})).await;
            let log = proxy
                .until(|v| v["method"] == "notifications/message")
                .await;
            assert!(log["params"]["level"].is_string(), "{log}");
            call(&mut proxy, json!(9), "toggle-simulated-logging", json!({})).await;
        }
        Flavor::FastMcp => {
            let set = proxy
                .request(json!(7), "logging/setLevel", json!({"level": "warning"}))
                .await;
            assert!(set.get("result").is_some(), "{set}");
            call(
                &mut proxy,
                json!(8),
                "log",
                json!({"level": "info", "message": "quiet"}),
            )
            .await;
            call(
                &mut proxy,
                json!(9),
                "log",
                json!({"level": "error", "message": "loud"}),
            )
            .await;
            let log = proxy
                .until(|v| v["method"] == "notifications/message")
                .await;
            assert_eq!(log["params"]["data"], json!("loud"), "{log}");
            assert!(
                !proxy.seen.iter().any(|v| v.to_string().contains("quiet")),
                "a message below the level was delivered"
            );
        }
    }

    // resources: subscribe, and the update reaches the subscriber.
    let (uri, trigger) = match flavor {
        Flavor::Everything => {
            let list = proxy.request(json!(10), "resources/list", json!({})).await;
            let uri = list["result"]["resources"][0]["uri"]
                .as_str()
                .expect("a resource")
                .to_owned();
            (uri, "toggle-subscriber-updates")
        }
        Flavor::FastMcp => ("test://counter".to_owned(), "bump"),
    };
    let sub = proxy
        .request(json!(11), "resources/subscribe", json!({"uri": uri}))
        .await;
    assert!(sub.get("result").is_some(), "{sub}");
    call(&mut proxy, json!(12), trigger, json!({})).await;
    let wanted = uri.clone();
    let updated = proxy
        .until(move |v| {
            v["method"] == "notifications/resources/updated" && v["params"]["uri"] == json!(wanted)
        })
        .await;
    assert_eq!(updated["params"]["uri"], json!(uri));
    if flavor == Flavor::Everything {
        call(&mut proxy, json!(13), trigger, json!({})).await;
    }

    // A notification outside any request (the GET stream, over Streamable HTTP).
    if flavor == Flavor::FastMcp {
        call(&mut proxy, json!(14), "notify_later", json!({"delay": 0.2})).await;
        proxy
            .until(|v| v["method"] == "notifications/tools/list_changed")
            .await;
    }

    // ping, with a string id.
    let pong = proxy.request(json!("p"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));

    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

async fn send_call(proxy: &mut Proxy, id: Value, name: &str, arguments: Value) {
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}))
        .await;
}

async fn call(proxy: &mut Proxy, id: Value, name: &str, arguments: Value) -> Value {
    send_call(proxy, id.clone(), name, arguments).await;
    let response = proxy.response(&id).await;
    assert!(
        response.get("result").is_some(),
        "tools/call {name} failed: {response}"
    );
    response
}

/// Answers a server request, keeping its id exactly.
async fn answer(proxy: &mut Proxy, request: &Value, result: Value) {
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
        .await;
}

#[tokio::test]
async fn everything_over_streamable_http() {
    scenario(Flavor::Everything, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn everything_over_legacy_sse() {
    scenario(Flavor::Everything, Mode::Sse).await;
}

#[tokio::test]
async fn fastmcp_over_streamable_http() {
    scenario(Flavor::FastMcp, Mode::StreamableHttp).await;
}

#[tokio::test]
async fn fastmcp_over_legacy_sse() {
    scenario(Flavor::FastMcp, Mode::Sse).await;
}
