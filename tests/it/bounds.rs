//! Who may connect to the host and the control API, and what one client may
//! hold there: another user gets nothing (Linux), half-open connections and
//! bodies that never come do not keep anyone out, a large answer reaches a
//! client that reads, children are capped, bad ids and batches get JSON-RPC
//! answers, and many idle sessions do not slow routing.

#![cfg(unix)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{
    HostProcess, ManagerProcess, McpHttp, TestHome, free_port, hosted_bounds_entry,
    initialize_request, manager_config,
};

/// The text of a tool result.
fn result_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Another user reaches neither a hosted server-memory (not even with a
/// session id it learnt) nor the control API (`/status/NAME`, `POST /stop`):
/// each request is answered `403` with a JSON error saying why, and never
/// handled. The same requests as this user work, and the daemon was not
/// stopped. (Linux, as root: the test makes a throwaway user; it skips
/// elsewhere.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn another_user_gets_nothing_from_the_host_or_the_control_api() {
    let user = match crate::util::ThrowawayUser::create("peer") {
        Ok(user) => user,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let home = TestHome::new();
    let (port, memory_port) = (free_port(), free_port());
    let memory_js = crate::util::memory_js();
    home.write_config(&manager_config(
        port,
        json!({"memory": {
            "command": "node",
            "args": [memory_js.to_string_lossy()],
            "env": {"MEMORY_FILE_PATH": home.path().join("memory.jsonl").to_string_lossy()},
            "port": memory_port,
        }}),
    ));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    manager.wait_running("memory").await;

    // This user writes a secret.
    let mcp = McpHttp::new(memory_port);
    let session = mcp.initialize(None).await.expect("a session");
    let created = mcp
        .call_json(
            &session,
            2,
            "create_entities",
            json!({"entities": [{"name": "secret-fact", "entityType": "note", "observations": ["only mine"]}]}),
        )
        .await;
    assert!(created.get("result").is_some(), "{created}");

    let read_graph = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "read_graph", "arguments": {}}})
    .to_string();
    let init = initialize_request(1).to_string();
    let host_url = format!("http://127.0.0.1:{memory_port}/mcp");
    let session_header = format!("mcp-session-id: {session}");
    let curl = |rest: &[&str]| -> Vec<String> {
        ["-sS", "-m", "10", "-w", "\n%{http_code}"]
            .iter()
            .chain(rest)
            .map(|a| (*a).to_owned())
            .collect()
    };
    let json_post = |body: &str, extra: &str| {
        curl(&[
            "-X",
            "POST",
            &host_url,
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
            "-H",
            extra,
            "-d",
            body,
        ])
    };
    let status_url = format!("http://127.0.0.1:{port}/status/memory");
    let stop_url = format!("http://127.0.0.1:{port}/stop");
    let requests: Vec<(&str, Vec<String>)> = vec![
        ("initialize on the host", json_post(&init, "x-test: 1")),
        (
            "read_graph on the host",
            json_post(&read_graph, &session_header),
        ),
        ("GET /status/memory", curl(&[&status_url])),
        (
            "POST /stop",
            curl(&["-X", "POST", &stop_url, "-d", r#"{"name":"memory"}"#]),
        ),
    ];
    for (what, args) in &requests {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let theirs = user.run("curl", &args);
        let out = String::from_utf8_lossy(&theirs.stdout);
        assert!(
            out.ends_with("403") && out.contains("forbidden") && !out.contains("secret-fact"),
            "{what} as another user got: {out} / {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
    }
    // Nothing was stopped, and the same requests as this user work.
    let status = manager.status_of("memory").await;
    assert_eq!(status["state"], "running", "{status}");
    for (what, args) in &requests[..3] {
        let mine = std::process::Command::new("curl")
            .args(args)
            .output()
            .expect("curl");
        let out = String::from_utf8_lossy(&mine.stdout);
        assert!(out.ends_with("200"), "{what} as this user: {out}");
        if what.starts_with("read_graph") {
            assert!(out.contains("secret-fact"), "{what}: {out}");
        }
    }
}

/// Opens `count` connections to `port` that never send a whole request
/// head (every other one sends half of one).
async fn half_open(port: u16, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            continue; // closed at once at the cap: fine
        };
        if i % 2 == 0 {
            let _ = stream
                .write_all(
                    format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAcc").as_bytes(),
                )
                .await;
        }
        held.push(stream);
    }
    held
}

/// Has the server closed this connection (EOF or reset) within `within`?
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// 1,100 connections that send nothing or half a header (more than either
/// server's cap) keep neither a `/status` of the control API nor a
/// `/health` of a host waiting, and they are closed by the servers
/// themselves (made room for, or timed out) while their client holds them.
#[tokio::test]
async fn half_open_connections_keep_nobody_out() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(port, json!({})));
    let manager = ManagerProcess::start(&home, port, &[]).await;
    let host_home = TestHome::new();
    let host = HostProcess::start(&host_home, "bounds", hosted_bounds_entry(free_port())).await;

    for (what, server_port, path) in [
        ("/status", port, "/status"),
        ("/health", host.port, "/health"),
    ] {
        let mut held = half_open(server_port, 1_100).await;
        // A fresh client, as `curl` would be.
        let client = mcp_session_manager::http::loopback_client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let started = Instant::now();
        let answer = client
            .get(format!("http://127.0.0.1:{server_port}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what} with 1,100 half-open connections: {e}"));
        assert_eq!(answer.status(), 200, "{what}");
        eprintln!(
            "{what} answered in {:?} with 1,100 half-open connections",
            started.elapsed()
        );
        // The servers end them: the oldest made room, the rest time out.
        for stream in held.iter_mut().rev().take(20) {
            assert!(
                closed_within(stream, Duration::from_secs(40)).await,
                "{what}: a half-open connection was never closed"
            );
        }
    }
    drop(manager);
}

/// Sends a request head and then `body` (forever, for a chunked body),
/// and says whether the server ended the connection within `within`.
async fn body_never_comes(port: u16, head: String, chunked: bool, within: Duration) -> bool {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.expect("write head");
    let feeding = tokio::spawn(async move {
        if !chunked {
            let _ = writer.write_all(br#"{"name""#).await;
            // Hold the connection; the promised rest never comes.
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
        loop {
            if writer.write_all(b"4\r\n    \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let ended = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    feeding.abort();
    ended
}

/// A `Content-Length` whose body never comes and an endless chunked body
/// are given up (the connection ends) on the control API and on a host.
#[tokio::test]
async fn bodies_that_never_end_are_dropped() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(port, json!({})));
    let manager = ManagerProcess::start(&home, port, &[]).await;
    let host_home = TestHome::new();
    let host = HostProcess::start(&host_home, "bounds", hosted_bounds_entry(free_port())).await;
    let head = |port: u16, path: &str, chunked: bool| {
        let length = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            "Content-Length: 1000".to_owned()
        };
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{length}\r\n\r\n"
        )
    };
    let within = Duration::from_secs(40);
    let cases = [
        ("control API, short body", port, "/stop", false),
        ("control API, endless chunked body", port, "/stop", true),
        ("host, short body", host.port, "/mcp", false),
        ("host, endless chunked body", host.port, "/mcp", true),
    ];
    let runs = cases.map(|(what, port, path, chunked)| async move {
        (
            what,
            body_never_comes(port, head(port, path, chunked), chunked, within).await,
        )
    });
    for (what, ended) in futures_util::future::join_all(runs).await {
        assert!(ended, "{what}: the connection was held past {within:?}");
    }
    assert!(
        manager.daemons().await.is_empty(),
        "the manager still answers"
    );
}

/// A tool result larger than the per-client limit (20 MiB) reaches a client
/// that reads, as JSON and as an event stream; a POST body over 16 MiB is
/// refused with 413.
#[tokio::test]
async fn a_20_mib_answer_arrives_whole() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "bounds", hosted_bounds_entry(free_port())).await;
    let mcp = McpHttp::new(host.port);
    let session = mcp.initialize(None).await.expect("a session");
    let answer = mcp.call_json(&session, 2, "big", json!({"mib": 20})).await;
    assert_eq!(result_text(&answer).len(), 20 * 1024 * 1024, "as JSON");
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "big", "arguments": {"mib": 20}}});
    let events = mcp.post(&call, Some(&session)).await.body;
    let answer = match &events {
        Value::Array(events) => events.iter().find(|e| e["id"] == 3).cloned(),
        single => Some(single.clone()),
    }
    .expect("an answer");
    assert_eq!(result_text(&answer).len(), 20 * 1024 * 1024, "as SSE");

    let huge = vec![b' '; 17 * 1024 * 1024];
    let refused = mcp
        .post_raw(huge, Some(&session), None, "application/json")
        .await;
    assert_eq!(refused.status, 413, "{:?}", refused.body);
}

/// `maxChildren` caps the children of a `project` host: the initialize that
/// would start one more gets a JSON-RPC error naming the key, while known
/// projects still get sessions; a project path that is not an existing
/// directory is refused with an error naming it.
#[tokio::test]
async fn children_are_capped_and_project_paths_must_be_directories() {
    let home = TestHome::new();
    let mut entry = hosted_bounds_entry(free_port());
    entry["scope"] = json!("project");
    entry["maxChildren"] = json!(2);
    let host = HostProcess::start(&home, "bounds", entry).await;
    let mcp = McpHttp::new(host.port);
    let projects: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let path = |i: usize| projects[i].path().to_string_lossy().into_owned();
    mcp.initialize(Some(&path(0))).await.expect("first project");
    mcp.initialize(Some(&path(1)))
        .await
        .expect("second project");
    let refused = mcp
        .initialize(Some(&path(2)))
        .await
        .expect_err("a third child");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("maxChildren"), "{refused}");
    assert_eq!(refused["id"], 1, "{refused}");
    mcp.initialize(Some(&path(0)))
        .await
        .expect("a known project still gets a session");
    let health = host.health().await;
    assert_eq!(
        health["children"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );

    let missing = projects[0].path().join("no-such-dir");
    let file = projects[0].path().join("a-file");
    std::fs::write(&file, "x").expect("file");
    for bad in [missing, file] {
        let bad = bad.to_string_lossy().into_owned();
        let refused = mcp
            .initialize(Some(&bad))
            .await
            .expect_err("not a directory");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&bad) && message.contains("directory"),
            "{refused}"
        );
    }
}

/// `"id": null` gets -32600 with id null (not 202 and silence); a batch
/// holding `initialize` gets an array (initialize must come alone); a batch
/// of one request on a session gets an array, as JSON-RPC answers batches.
#[tokio::test]
async fn null_ids_and_batches_get_json_rpc_answers() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "bounds", hosted_bounds_entry(free_port())).await;
    let mcp = McpHttp::new(host.port);
    let session = mcp.initialize(None).await.expect("a session");

    for on in [None, Some(session.as_str())] {
        let answer = mcp
            .post(&json!({"jsonrpc": "2.0", "id": null, "method": "ping"}), on)
            .await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], -32600, "{:?}", answer.body);
        assert!(answer.body["id"].is_null(), "{:?}", answer.body);
    }

    let answer = mcp.post(&json!([initialize_request(1)]), None).await;
    let items = answer.body.as_array().expect("an array");
    assert_eq!(items.len(), 1, "{:?}", answer.body);
    assert_eq!(items[0]["error"]["code"], -32600, "{:?}", answer.body);
    assert_eq!(items[0]["id"], 1, "{:?}", answer.body);

    let body =
        serde_json::to_vec(&json!([{"jsonrpc": "2.0", "id": 5, "method": "ping"}])).expect("json");
    for accept in ["application/json", "application/json, text/event-stream"] {
        let answer = mcp
            .post_raw(body.clone(), Some(&session), None, accept)
            .await;
        assert_eq!(answer.status, 200, "{accept}: {:?}", answer.body);
        let items = answer.body.as_array().expect("an array");
        assert_eq!(items.len(), 1, "{accept}: {:?}", answer.body);
        assert_eq!(items[0]["id"], 5, "{accept}: {:?}", answer.body);
    }
}

/// With 2,000 idle sessions and 300 calls waiting, 2,000 log lines from the
/// child do not stall another session's echo: routing costs the sessions
/// that want a line, not every session times every waiting call.
#[tokio::test]
async fn many_idle_sessions_do_not_stall_routing() {
    use futures_util::StreamExt;

    let home = TestHome::new();
    let host = HostProcess::start(&home, "bounds", hosted_bounds_entry(free_port())).await;
    let mcp = McpHttp::new(host.port);
    let sessions: Vec<String> = futures_util::stream::iter(0..2_000)
        .map(|_| {
            let mcp = mcp.clone();
            async move { mcp.initialize(None).await.expect("a session") }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut waiting = Vec::new();
    for (i, session) in sessions.iter().take(300).enumerate() {
        let mcp = mcp.clone();
        let session = session.clone();
        let id = 100 + i as u64;
        waiting.push(tokio::spawn(async move {
            mcp.call_json(&session, id, "sleep", json!({"seconds": 60}))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The 300 new connections are each checked for their owner first (a
    // walk of the kernel's socket table): let that settle, so what is
    // measured below is the routing.
    let settled = mcp
        .call_json(&sessions[1_501], 11, "echo", json!({"message": "settled"}))
        .await;
    assert_eq!(result_text(&settled), "Echo: settled", "{settled}");
    let spammer = {
        let mcp = mcp.clone();
        let session = sessions[1_000].clone();
        tokio::spawn(async move {
            mcp.call_json(&session, 9, "spam", json!({"lines": 2_000}))
                .await
        })
    };
    let started = Instant::now();
    let echo = tokio::time::timeout(
        Duration::from_secs(30),
        mcp.call_json(
            &sessions[1_500],
            10,
            "echo",
            json!({"message": "still here"}),
        ),
    )
    .await
    .expect("the echo is answered while the log lines are routed");
    assert_eq!(result_text(&echo), "Echo: still here", "{echo}");
    eprintln!(
        "echo answered in {:?} during 2,000 log lines",
        started.elapsed()
    );
    let spammed = tokio::time::timeout(Duration::from_secs(60), spammer)
        .await
        .expect("the spam call ends")
        .expect("task");
    assert_eq!(result_text(&spammed), "spammed 2000", "{spammed}");
    for call in waiting {
        call.abort();
    }
}
