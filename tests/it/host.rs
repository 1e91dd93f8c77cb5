//! `mcp-manager host`: one stdio child shared by many sessions over
//! Streamable HTTP, with real children (server-everything and server-memory
//! over stdio, the FastMCP fixture) and `mcp-proxy` as the client.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{
    HostProcess, Proxy, TestHome, everything_stdio_entry, fixtures, free_port, tool_text,
    venv_python,
};

async fn proxy_to(host: &HostProcess, home: &TestHome) -> Proxy {
    let mut proxy = Proxy::start(home, &["--url", &host.url()]);
    proxy.initialize().await;
    proxy
}

/// Two sessions run the progress tool at once with the same token: each
/// gets exactly its own five notifications (tokens are rewritten upstream
/// and restored), and both results arrive.
#[tokio::test]
async fn each_session_gets_only_its_own_progress() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let mut a = proxy_to(&host, &home).await;
    let mut b = proxy_to(&host, &home).await;
    for proxy in [&mut a, &mut b] {
        proxy
            .send(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 5},
                "_meta": {"progressToken": "same"}}}),
            )
            .await;
    }
    for proxy in [&mut a, &mut b] {
        let mut progress = Vec::new();
        loop {
            let message = proxy.next().await;
            if message["method"] == "notifications/progress" {
                assert_eq!(message["params"]["progressToken"], json!("same"));
                progress.push(message["params"]["progress"].as_f64().expect("number"));
            } else if message["id"] == json!(1) && message.get("method").is_none() {
                assert!(message.get("result").is_some(), "{message}");
                break;
            }
        }
        assert_eq!(progress, [1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}

/// Calls server-everything's sampling tool (request `id`) and returns the
/// `sampling/createMessage` it causes.
async fn start_sampling(proxy: &mut Proxy, id: u64) -> Value {
    proxy
        .send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5}}}),
        )
        .await;
    proxy
        .until(|v| v["method"] == "sampling/createMessage")
        .await
}

/// A sampling request from the child reaches the session whose tool call
/// caused it, not the other one, and that session's answer reaches the child.
#[tokio::test]
async fn sampling_reaches_the_session_that_asked() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let mut idle = proxy_to(&host, &home).await;
    let mut asking = proxy_to(&host, &home).await;
    let sampling = start_sampling(&mut asking, 7).await;
    asking
        .send(&json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": "from-the-asker"},
            "model": "m", "stopReason": "endTurn"}}))
        .await;
    let result = asking.response(&json!(7)).await;
    assert!(result.to_string().contains("from-the-asker"), "{result}");
    let pong = idle.request(json!("p"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    assert!(
        !idle
            .seen
            .iter()
            .any(|v| v["method"] == "sampling/createMessage"),
        "the idle session got the sampling request: {:?}",
        idle.seen
    );
}

/// Subscriptions are counted per URI: updates go to subscribers only, and
/// the child stays subscribed while one subscriber is left.
#[tokio::test]
async fn resource_updates_reach_subscribers_only() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let mut a = proxy_to(&host, &home).await;
    let mut b = proxy_to(&host, &home).await;
    let mut c = proxy_to(&host, &home).await;
    let list = a.request(json!(1), "resources/list", json!({})).await;
    let uri = list["result"]["resources"][0]["uri"].clone();
    for proxy in [&mut a, &mut b] {
        let sub = proxy
            .request(json!(2), "resources/subscribe", json!({"uri": uri}))
            .await;
        assert!(sub.get("result").is_some(), "{sub}");
    }
    let toggled = a
        .request(
            json!(3),
            "tools/call",
            json!({"name": "toggle-subscriber-updates", "arguments": {}}),
        )
        .await;
    assert!(tool_text(&toggled).starts_with("Started"), "{toggled}");
    let updated = |uri: Value| {
        move |v: &Value| {
            v["method"] == "notifications/resources/updated" && v["params"]["uri"] == uri
        }
    };
    a.until(updated(uri.clone())).await;
    b.until(updated(uri.clone())).await;

    // A leaves; B is still subscribed, so the child must still send updates.
    let unsub = a
        .request(json!(4), "resources/unsubscribe", json!({"uri": uri}))
        .await;
    assert!(unsub.get("result").is_some(), "{unsub}");
    b.seen.clear();
    b.until(updated(uri.clone())).await; // the periodic update (every 5 s)
    a.request(
        json!(5),
        "tools/call",
        json!({"name": "toggle-subscriber-updates", "arguments": {}}),
    )
    .await;
    let pong = c.request(json!("p"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    assert!(
        !c.seen
            .iter()
            .any(|v| v["method"] == "notifications/resources/updated"),
        "a session that never subscribed got an update"
    );
}

/// A list change from the child reaches every session, also one that is idle.
#[tokio::test]
async fn list_changes_reach_every_session() {
    let home = TestHome::new();
    let entry = json!({
        "command": venv_python().to_string_lossy(),
        "args": [fixtures().join("fastmcp_server.py").to_string_lossy(), "--transport", "stdio"],
        "port": free_port(),
    });
    let host = HostProcess::start(&home, "fast", entry).await;
    let mut a = proxy_to(&host, &home).await;
    let mut b = proxy_to(&host, &home).await;
    let done = a
        .request(
            json!(1),
            "tools/call",
            json!({"name": "notify_later", "arguments": {"delay": 0.2}}),
        )
        .await;
    assert!(done.get("result").is_some(), "{done}");
    a.until(|v| v["method"] == "notifications/tools/list_changed")
        .await;
    b.until(|v| v["method"] == "notifications/tools/list_changed")
        .await;
}

/// Killing the child mid-session: the request in flight gets a clear error,
/// the child is started again, and the same session goes on.
#[cfg(unix)]
#[tokio::test]
async fn sessions_survive_the_child_being_killed() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let mut proxy = proxy_to(&host, &home).await;
    let health = host
        .wait_health(|h| h["pid"].is_u64(), Duration::from_secs(20))
        .await;
    let pid = health["pid"].as_u64().expect("pid");
    proxy
        .send(
            &json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call", "params": {
            "name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30}}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let failed = proxy.response(&json!("long")).await;
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("restarted"), "{failed}");
    let health = host
        .wait_health(
            |h| h["children"][0]["restarts"] == json!(1) && h["children"][0]["state"] == "running",
            Duration::from_secs(30),
        )
        .await;
    assert_ne!(health["pid"], json!(pid));
    let echo = proxy
        .request(
            json!(2),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "again"}}),
        )
        .await;
    assert_eq!(tool_text(&echo), "Echo: again");
}

/// `project` scope: sessions of one project share a server-memory child
/// (and its file); a session of another project has its own.
#[tokio::test]
async fn project_scope_keeps_one_memory_per_project() {
    let home = TestHome::new();
    let memory_js =
        fixtures().join("node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(memory_js.exists(), "run scripts/install-test-fixtures.sh");
    let memory_dir = home.path().join("memory");
    std::fs::create_dir_all(&memory_dir).expect("memory dir");
    let entry = json!({
        "command": "node",
        "args": [memory_js.to_string_lossy()],
        "env": {"MEMORY_FILE_PATH": memory_dir.join("{projectHash}.jsonl").to_string_lossy()},
        "port": free_port(),
        "scope": "project",
    });
    let host = HostProcess::start(&home, "memory", entry).await;
    let project_a = tempfile::tempdir().expect("project a");
    let project_b = tempfile::tempdir().expect("project b");
    let in_project = |dir: &std::path::Path| {
        let dir = dir.to_owned();
        let mut proxy = Proxy::start_with(&home, &["--url", &host.url()], move |c| {
            c.current_dir(dir);
        });
        async move {
            proxy.initialize().await;
            proxy
        }
    };
    let mut writer = in_project(project_a.path()).await;
    let created = writer
        .request(json!(1), "tools/call", json!({"name": "create_entities", "arguments": {"entities": [
            {"name": "shared-fact", "entityType": "note", "observations": ["written by session 1"]}]}}))
        .await;
    assert!(created.get("result").is_some(), "{created}");
    let mut reader = in_project(project_a.path()).await;
    let graph = reader
        .request(
            json!(2),
            "tools/call",
            json!({"name": "read_graph", "arguments": {}}),
        )
        .await;
    assert!(
        graph.to_string().contains("shared-fact"),
        "same project: {graph}"
    );
    let mut stranger = in_project(project_b.path()).await;
    let graph = stranger
        .request(
            json!(3),
            "tools/call",
            json!({"name": "read_graph", "arguments": {}}),
        )
        .await;
    assert!(
        !graph.to_string().contains("shared-fact"),
        "other project: {graph}"
    );
    let health = host.health().await;
    assert_eq!(
        health["children"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
}

/// Bad input gets a clear HTTP status (with a JSON-RPC error body where a
/// client reads one), and the host keeps serving.
#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let client = mcp_session_manager::http::loopback_client_builder()
        .build()
        .expect("client");
    let post = |body: Vec<u8>| {
        client
            .post(host.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };
    let status = |r: reqwest::Response| r.status().as_u16();

    let r = post(b"{oops".to_vec()).send().await.expect("answer");
    assert_eq!(status(r), 400);
    let r = post(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec())
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 400, "no session id");
    let r = post(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec())
        .header("mcp-session-id", "not-a-session")
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 404, "unknown session id");
    let r = post(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec())
        .header("host", "evil.example")
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 403, "foreign Host");
    let r = post(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec())
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 403, "foreign Origin");
    let r = client
        .post(host.url())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 415);
    // Over the cap: 413, and the client that is still writing its body
    // gets to read it (the rest is drained, bounded).
    let huge = vec![b' '; 65 * 1024 * 1024];
    let r = post(huge).send().await.expect("answer");
    assert_eq!(status(r), 413);

    // A real session, then a wrong protocol version.
    let home2 = TestHome::new();
    let mut proxy = proxy_to(&host, &home2).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = post(init.as_bytes().to_vec()).send().await.expect("answer");
    let session = r.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let r = post(br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_vec())
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .expect("answer");
    assert_eq!(status(r), 400, "unsupported protocol version");
    let r = client
        .get(host.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        status(r),
        400,
        "unsupported protocol version on the GET stream"
    );
    let pong = proxy.request(json!("still"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

/// A child that is alive but answers nothing (not even the host's ping)
/// while a request waits is killed and started again; the waiting request
/// gets a clear error and `/health` says why.
#[tokio::test]
async fn a_wedged_child_is_restarted() {
    let home = TestHome::new();
    let entry = json!({
        "command": "python3",
        "args": [fixtures().join("wedge_server.py").to_string_lossy()],
        "port": free_port(),
        "pingTimeout": 1,
    });
    let host = HostProcess::start(&home, "wedge", entry).await;
    let mut proxy = proxy_to(&host, &home).await;
    let stuck = proxy
        .request(
            json!("w"),
            "tools/call",
            json!({"name": "wedge", "arguments": {}}),
        )
        .await;
    let message = stuck["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("restarted") && message.contains("ping"),
        "{stuck}"
    );
    let health = host
        .wait_health(
            |h| h["children"][0]["state"] == "running",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(health["children"][0]["restarts"], json!(1), "{health}");
    let pong = proxy.request(json!("p"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
}

/// Each session sees the log messages its own level admits; the child is
/// set to the most verbose level any session asked for.
#[tokio::test]
async fn log_levels_are_per_session() {
    let home = TestHome::new();
    let entry = json!({
        "command": venv_python().to_string_lossy(),
        "args": [fixtures().join("fastmcp_server.py").to_string_lossy(), "--transport", "stdio"],
        "port": free_port(),
    });
    let host = HostProcess::start(&home, "fast", entry).await;
    let mut strict = proxy_to(&host, &home).await;
    let mut verbose = proxy_to(&host, &home).await;
    strict
        .request(json!(1), "logging/setLevel", json!({"level": "error"}))
        .await;
    verbose
        .request(json!(1), "logging/setLevel", json!({"level": "debug"}))
        .await;
    strict
        .request(
            json!(2),
            "tools/call",
            json!({"name": "log", "arguments": {"level": "info", "message": "quiet"}}),
        )
        .await;
    strict
        .request(
            json!(3),
            "tools/call",
            json!({"name": "log", "arguments": {"level": "error", "message": "loud"}}),
        )
        .await;
    let loud = strict
        .until(|v| v["method"] == "notifications/message")
        .await;
    assert_eq!(loud["params"]["data"], json!("loud"));
    assert!(
        !strict.seen.iter().any(|v| v.to_string().contains("quiet")),
        "below the strict level"
    );
    let quiet = verbose
        .until(|v| v["method"] == "notifications/message")
        .await;
    assert_eq!(quiet["params"]["data"], json!("quiet"));
}

/// `session` scope: every session gets a child of its own, which stops when
/// the session ends.
#[tokio::test]
async fn session_scope_gives_each_session_its_own_child() {
    let home = TestHome::new();
    let mut entry = everything_stdio_entry(free_port());
    entry["scope"] = json!("session");
    let host = HostProcess::start(&home, "isolated", entry).await;
    let a = proxy_to(&host, &home).await;
    let mut b = proxy_to(&host, &home).await;
    let health = host.health().await;
    assert_eq!(
        health["children"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
    drop(a); // kill_on_drop: the proxy dies without DELETE…
    b.close_stdin(); // …and this one ends cleanly with DELETE.
    assert!(b.wait(Duration::from_secs(10)).await.success());
    let health = host
        .wait_health(
            |h| h["children"].as_array().map(Vec::len) == Some(1),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(health["sessions"], json!(1));
}

/// A session that sends nothing and holds no stream ends after
/// `sessionTimeout`; its id then gets 404.
#[tokio::test]
async fn idle_sessions_end() {
    let home = TestHome::new();
    let mut entry = everything_stdio_entry(free_port());
    entry["sessionTimeout"] = json!(1);
    let host = HostProcess::start(&home, "everything", entry).await;
    let client = mcp_session_manager::http::loopback_client_builder()
        .build()
        .expect("client");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = client
        .post(host.url())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(init)
        .send()
        .await
        .expect("initialize");
    let session = r.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    host.wait_health(|h| h["sessions"] == json!(0), Duration::from_secs(10))
        .await;
    let r = client
        .post(host.url())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", session)
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 404);
}

/// A runner that is not installed gives an error that says what to install.
#[tokio::test]
async fn a_missing_runner_names_what_to_install() {
    let home = TestHome::new();
    let entry = json!({
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-memory"],
        "env": {"PATH": "/nonexistent"},
        "port": free_port(),
    });
    let host = HostProcess::start(&home, "memory", entry).await;
    let health = host
        .wait_health(
            |h| h["children"][0]["restarts"].as_u64() >= Some(1),
            Duration::from_secs(10),
        )
        .await;
    let reason = health["children"][0]["lastRestartReason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("install Node.js"), "{health}");
}

/// With no config file, `memory` is server-memory hosted per project, its
/// file under `HOME/memory/{projectHash}.jsonl`; the child's stderr goes to
/// `memory.log`. (npx finds the pinned package in tests/fixtures, offline.)
#[tokio::test]
async fn builtin_memory_works_without_a_config_file() {
    use crate::util::{manager_bin, wait_for_port};
    let home = TestHome::new();
    assert!(
        !mcp_session_manager::daemon::probe::answers(3100).await,
        "port 3100 (the built-in memory port) is taken on this machine; free it to run this test"
    );
    {
        let mut host = tokio::process::Command::new(manager_bin())
            .args(["host", "memory"])
            .current_dir(fixtures())
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start the host");
        wait_for_port(3100, Duration::from_secs(30)).await;
        let project = tempfile::tempdir().expect("project");
        let dir = project.path().to_owned();
        let mut proxy = Proxy::start_with(&home, &["--target", "memory"], move |c| {
            c.current_dir(dir);
        });
        proxy.initialize().await;
        let created = proxy
            .request(
                json!(1),
                "tools/call",
                json!({"name": "create_entities", "arguments": {"entities": [
                {"name": "builtin", "entityType": "note", "observations": ["x"]}]}}),
            )
            .await;
        assert!(created.get("result").is_some(), "{created}");
        let files: Vec<_> = std::fs::read_dir(home.path().join("memory"))
            .expect("memory dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(
            files[0].ends_with(".jsonl") && files[0].len() == 16 + 6,
            "{files:?}"
        );
        assert!(home.path().join("memory.log").exists());
        let _ = host.kill().await;
    }
}

/// The child dies with the host, even when the host is killed with SIGKILL
/// (Linux: the parent-death signal).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_child_dies_with_the_host() {
    let home = TestHome::new();
    let mut host =
        HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let health = host
        .wait_health(|h| h["pid"].is_u64(), Duration::from_secs(20))
        .await;
    let child = health["pid"].as_u64().expect("pid");
    let _ = host.child.start_kill(); // SIGKILL
    let _ = host.child.wait().await;
    let gone = async {
        while std::path::Path::new(&format!("/proc/{child}")).exists()
            && !std::fs::read_to_string(format!("/proc/{child}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the child outlived its host");
}

/// A server started through a wrapper (`npx`, a shell) runs as the host's
/// grandchild, which the parent-death signal does not reach. When the host
/// is SIGKILLed, the grandchild's stdin closes and, as the MCP stdio
/// transport asks, it exits: nothing outlives the host.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_grandchild_dies_with_the_host() {
    let home = TestHome::new();
    let script = format!(
        "node '{}' stdio; exit 0",
        crate::util::everything_js().to_string_lossy()
    );
    let entry = json!({"command": "sh", "args": ["-c", script], "port": free_port()});
    let mut host = HostProcess::start(&home, "everything", entry).await;
    let health = host
        .wait_health(|h| h["state"] == "ok", Duration::from_secs(20))
        .await;
    let shell = health["pid"].as_u64().expect("pid");
    let grandchild = children_of(shell)
        .into_iter()
        .next()
        .expect("the shell's node child");
    let _ = host.child.start_kill(); // SIGKILL
    let _ = host.child.wait().await;
    let gone = async {
        while is_alive(grandchild) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the grandchild outlived its host");
}

/// Live processes whose parent is `pid`.
#[cfg(target_os = "linux")]
fn children_of(pid: u64) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid …`; comm may hold spaces.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u64>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Neither gone nor a zombie.
#[cfg(target_os = "linux")]
fn is_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A session cannot answer another session's server request: the answer
/// is dropped, and the real one still reaches the child.
#[tokio::test]
async fn a_server_request_is_answered_only_by_its_session() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let mut other = proxy_to(&host, &home).await;
    let mut asking = proxy_to(&host, &home).await;
    let sampling = start_sampling(&mut asking, 7).await;
    let answer = |text: &str| {
        json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": text}, "model": "m", "stopReason": "endTurn"}})
    };
    other.send(&answer("from-the-intruder")).await;
    let pong = other.request(json!("p"), "ping", json!({})).await; // the intruder's answer was handled
    assert_eq!(pong["result"], json!({}));
    asking.send(&answer("from-the-asker")).await;
    let result = asking.response(&json!(7)).await;
    let text = result.to_string();
    assert!(
        text.contains("from-the-asker") && !text.contains("intruder"),
        "{result}"
    );
}

/// Cancelling a request releases it: its answer stream ends (nothing is
/// owed), and the session can go on.
#[tokio::test]
async fn a_cancelled_request_ends_its_answer_stream() {
    let home = TestHome::new();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(free_port())).await;
    let client = mcp_session_manager::http::loopback_client_builder()
        .build()
        .expect("client");
    let post = |body: String, session: Option<&str>| {
        let mut request = client
            .post(host.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = post(init.to_owned(), None).await.expect("initialize");
    let session = r.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let long = r#"{"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":30,"steps":30}}}"#;
    let stream = post(long.to_owned(), Some(&session)).await.expect("call");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel =
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long"}}"#;
    let r = post(cancel.to_owned(), Some(&session))
        .await
        .expect("cancel");
    assert_eq!(r.status().as_u16(), 202);
    let body = tokio::time::timeout(Duration::from_secs(10), stream.bytes())
        .await
        .expect("the answer stream ends after the cancel")
        .expect("body");
    assert!(
        !String::from_utf8_lossy(&body).contains("\"result\""),
        "no answer for a cancelled request"
    );
    let ping = post(
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_owned(),
        Some(&session),
    )
    .await
    .expect("ping");
    assert_eq!(ping.status().as_u16(), 200);
}

/// A project's child stops once no session has used it for `sessionTimeout`.
#[tokio::test]
async fn an_unused_project_child_stops() {
    let home = TestHome::new();
    let mut entry = everything_stdio_entry(free_port());
    entry["scope"] = json!("project");
    entry["sessionTimeout"] = json!(1);
    let host = HostProcess::start(&home, "perproject", entry).await;
    let mut proxy = proxy_to(&host, &home).await;
    let health = host.health().await;
    assert_eq!(
        health["children"].as_array().map(Vec::len),
        Some(1),
        "{health}"
    );
    proxy.close_stdin(); // DELETE
    assert!(proxy.wait(Duration::from_secs(10)).await.success());
    host.wait_health(
        |h| h["children"].as_array().is_some_and(Vec::is_empty),
        Duration::from_secs(15),
    )
    .await;
}
