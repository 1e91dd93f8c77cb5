//! `mcp-manager`, the supervisor: starting, stopping and restarting real
//! daemons (server-everything over Streamable HTTP and SSE, and over stdio
//! behind `mcp-manager host`), its control API and CLI, and the races and
//! accidents around it (crashes, foreign ports, stale locks, a second
//! manager, twenty proxies at once).

#![cfg(unix)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use mcp_session_manager::process;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::util::{
    ManagerProcess, Mode, Proxy, TestHome, everything_daemon_entry, free_port,
    hosted_everything_entry, manager_config, port_answers, proxy_bin, run_manager_cli, send_signal,
    tool_text,
};
#[cfg(target_os = "linux")]
use crate::util::{manager_bin, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// The daemon's pid from a status.
fn pid_of(status: &Value) -> u32 {
    status["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {status}"))
}

fn read_lock(home: &TestHome, name: &str) -> Option<Value> {
    let bytes = std::fs::read(home.path().join(format!("{name}.lock"))).ok()?;
    Some(serde_json::from_slice(&bytes).expect("the lock file is JSON"))
}

/// The lock files of daemons in the home (the manager's own excluded).
#[cfg(target_os = "linux")]
fn daemon_locks(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home)
        .expect("read home")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".lock") && !n.starts_with("manager"))
        .collect();
    names.sort();
    names
}

async fn echo_through_proxy(home: &TestHome, name: &str, manager_port: u16) {
    let mut proxy = Proxy::start(
        home,
        &[
            "--target",
            name,
            "--manager-port",
            &manager_port.to_string(),
        ],
    );
    proxy.initialize().await;
    let echo = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": format!("hello {name}")}}),
        )
        .await;
    assert!(
        tool_text(&echo).contains(&format!("hello {name}")),
        "{name}: {echo}"
    );
}

/// One Streamable HTTP server-everything daemon called `web`, not started.
async fn manager_with_web(args: &[&str]) -> (TestHome, ManagerProcess, u16) {
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
    ));
    let manager = ManagerProcess::start(&home, port, args).await;
    (home, manager, web)
}

/// `--start-all` brings up an HTTP daemon, an SSE daemon and a hosted stdio
/// server; each reaches `running`, answers on its port, and serves a tool
/// call through `mcp-proxy --target`.
#[tokio::test]
async fn start_all_runs_http_sse_and_hosted_stdio_daemons() {
    let home = TestHome::new();
    let port = free_port();
    let (http, sse, stdio) = (free_port(), free_port(), free_port());
    home.write_config(&manager_config(
        port,
        json!({
            "http": everything_daemon_entry(http, Mode::StreamableHttp),
            "legacy": everything_daemon_entry(sse, Mode::Sse),
            "hosted": hosted_everything_entry(stdio),
        }),
    ));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    for (name, daemon_port, transport) in [
        ("http", http, "streamable-http"),
        ("legacy", sse, "sse"),
        ("hosted", stdio, "stdio"),
    ] {
        let status = manager.wait_running(name).await;
        assert_eq!(status["port"], json!(daemon_port), "{status}");
        assert_eq!(status["transport"], json!(transport), "{status}");
        assert!(
            port_answers(daemon_port).await,
            "{name}: port {daemon_port}"
        );
    }
    let names: BTreeSet<String> = manager
        .daemons()
        .await
        .iter()
        .filter(|d| d["state"] == "running")
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        ["hosted", "http", "legacy"].map(str::to_owned).into(),
        "running in /status"
    );
    for name in ["http", "legacy", "hosted"] {
        echo_through_proxy(&home, name, port).await;
    }
}

/// Every route of the control API, its answers and its errors.
#[tokio::test]
async fn every_route_answers_as_documented() {
    let (home, manager, web) = manager_with_web(&[]).await;

    // /ping
    let (status, ping) = manager.api(Method::GET, "/ping", None).await;
    assert_eq!(status, 200);
    assert_eq!(ping["status"], "ok", "{ping}");
    assert_eq!(ping["message"], "Manager is running", "{ping}");
    assert_eq!(ping["pid"], json!(manager.pid), "{ping}");
    assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"), "{ping}");

    // /status: web is configured and not started.
    let daemons = manager.daemons().await;
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let d = &daemons[0];
    assert_eq!(d["name"], "web");
    assert_eq!(d["running"], false, "{d}");
    assert_eq!(d["state"], "stopped", "{d}");
    assert_eq!(d["transport"], "streamable-http", "{d}");
    assert_eq!(d["restarts"], 0, "{d}");
    assert_eq!(d["adopted"], false, "{d}");
    assert!(
        d.get("logTail").is_none(),
        "logTail only in /status/NAME: {d}"
    );
    assert!(!port_answers(web).await);

    // /ensure starts a stopped daemon.
    let (status, ensured) = manager.post("/ensure", "web").await;
    assert_eq!(status, 200, "{ensured}");
    assert_eq!(
        ensured,
        json!({"running": true, "port": web, "transport": "streamable-http"})
    );
    assert!(port_answers(web).await, "ensured, yet port {web} is closed");

    // /status/NAME with logTail (server-everything logs that it listens).
    let detail = manager
        .wait_status("web", Duration::from_secs(10), "logged", |s| {
            s["logTail"].as_array().is_some_and(|lines| {
                lines
                    .iter()
                    .any(|l| l.as_str().is_some_and(|l| l.contains("listening on port")))
            })
        })
        .await;
    assert_eq!(detail["state"], "running", "{detail}");
    assert_eq!(detail["running"], true, "{detail}");
    assert_eq!(detail["port"], json!(web), "{detail}");
    assert!(detail["uptime"].is_u64(), "{detail}");
    assert!(
        detail["logTail"]
            .as_array()
            .expect("array")
            .iter()
            .all(Value::is_string),
        "{detail}"
    );
    let first_pid = pid_of(&detail);
    assert_eq!(
        read_lock(&home, "web").expect("web.lock")["pid"],
        json!(first_pid)
    );

    // /ensure on a running daemon changes nothing.
    let (status, again) = manager.post("/ensure", "web").await;
    assert_eq!(
        (status.as_u16(), again["running"].clone()),
        (200, json!(true))
    );
    assert_eq!(pid_of(&manager.status_of("web").await), first_pid);

    // /stop answers once the daemon has stopped and its lock is gone.
    let (status, stopped) = manager.post("/stop", "web").await;
    assert_eq!(status, 200, "{stopped}");
    assert!(
        !port_answers(web).await,
        "port {web} still answers after /stop"
    );
    assert!(read_lock(&home, "web").is_none(), "web.lock survived /stop");
    assert_eq!(stopped["name"], "web");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["running"], false, "{stopped}");
    assert!(
        !process::is_alive(first_pid),
        "pid {first_pid} survived /stop"
    );

    // /start answers once it is running.
    let (status, started) = manager.post("/start", "web").await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["state"], "running", "{started}");
    assert!(port_answers(web).await);
    let start_pid = pid_of(&started);
    assert_eq!(
        read_lock(&home, "web").expect("web.lock")["pid"],
        json!(start_pid)
    );

    // /restart: a new process.
    let (status, restarted) = manager.post("/restart", "web").await;
    assert_eq!(status, 200, "{restarted}");
    assert_eq!(restarted["state"], "running", "{restarted}");
    let restart_pid = pid_of(&restarted);
    assert_ne!(restart_pid, start_pid, "/restart kept the old process");
    assert!(!process::is_alive(start_pid));
    assert!(port_answers(web).await);

    // The original README's `curl -X POST .../stop -d '{"name":"memory"}'`:
    // a form content type with a JSON body.
    let (status, _, text) = manager
        .send(
            manager
                .request(Method::POST, "/stop")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(r#"{"name":"web"}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let form_stopped: Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(form_stopped["state"], "stopped", "{form_stopped}");
    assert!(!port_answers(web).await);

    // /start-all and /stop-all.
    let (status, all) = manager.api(Method::POST, "/start-all", None).await;
    assert_eq!(status, 200, "{all}");
    let listed = all["daemons"].as_array().expect("daemons");
    assert!(
        listed
            .iter()
            .any(|d| d["name"] == "web" && d["state"] == "running"),
        "{all}"
    );
    assert!(port_answers(web).await);
    let (status, all) = manager.api(Method::POST, "/stop-all", None).await;
    assert_eq!(status, 200, "{all}");
    let listed = all["daemons"].as_array().expect("daemons");
    assert!(
        listed
            .iter()
            .any(|d| d["name"] == "web" && d["state"] == "stopped"),
        "{all}"
    );
    assert!(!port_answers(web).await);
    assert!(read_lock(&home, "web").is_none());

    // Errors.
    let (status, body) = manager.api(Method::GET, "/nope", None).await;
    assert_eq!(
        (status.as_u16(), body),
        (404, json!({"error": "Not found"}))
    );
    let (status, body) = manager.api(Method::POST, "/start", Some(json!({}))).await;
    assert_eq!(
        (status.as_u16(), body),
        (400, json!({"error": "Missing daemon name"}))
    );
    for (method, path, body) in [
        (Method::POST, "/start", Some(json!({"name": "nope"}))),
        (Method::POST, "/stop", Some(json!({"name": "nope"}))),
        (Method::POST, "/restart", Some(json!({"name": "nope"}))),
        (Method::GET, "/status/nope", None),
    ] {
        let (status, answer) = manager.api(method, path, body).await;
        assert_eq!(
            (status.as_u16(), answer),
            (404, json!({"error": "Unknown daemon: nope"})),
            "{path}"
        );
    }
    for (method, path) in [
        (Method::GET, "/start"),
        (Method::GET, "/stop-all"),
        (Method::POST, "/ping"),
        (Method::DELETE, "/status"),
    ] {
        let (status, answer) = manager.api(method.clone(), path, None).await;
        assert_eq!(status, 405, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    let (status, _, text) = manager
        .send(
            manager
                .request(Method::POST, "/start")
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON error");
    assert!(body["error"].is_string(), "{body}");
    let huge = json!({"name": "web", "padding": "x".repeat(70 * 1024)}).to_string();
    let (status, _, text) = manager
        .send(
            manager
                .request(Method::POST, "/start")
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_eq!(status, 413, "{text}");
    assert!(!port_answers(web).await, "the oversized /start started web");
}

/// Only loopback `Host` headers, no `Origin` at all, never CORS.
#[tokio::test]
async fn foreign_host_and_any_origin_are_refused() {
    let (_home, manager, _web) = manager_with_web(&[]).await;
    let port = manager.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, _, text) = manager
            .send(manager.request(Method::GET, "/ping").header("host", &host))
            .await;
        assert_eq!(status, 200, "Host {host}: {text}");
    }
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        for (method, path) in [(Method::GET, "/status"), (Method::POST, "/start-all")] {
            let (status, _, text) = manager
                .send(manager.request(method, path).header("host", &host))
                .await;
            assert_eq!(status, 403, "Host {host} {path}: {text}");
        }
    }
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{port}"),
    ] {
        for (method, path) in [
            (Method::GET, "/status"),
            (Method::POST, "/start-all"),
            (Method::OPTIONS, "/start-all"),
        ] {
            let (status, _, text) = manager
                .send(
                    manager
                        .request(method.clone(), path)
                        .header("origin", origin)
                        .header("access-control-request-method", "POST"),
                )
                .await;
            assert_eq!(status, 403, "Origin {origin} {method} {path}: {text}");
        }
    }
    // Refused requests changed nothing.
    assert_eq!(manager.status_of("web").await["state"], "stopped");
}

/// One server-sent event: (event name, parsed data).
async fn next_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) -> (String, Value) {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event within 20 s")
        .expect("the event stream is open")
}

/// `/events` reports every state change of a stop and a start, and a
/// config that cannot be applied.
#[tokio::test]
async fn events_report_state_changes() {
    let (home, manager, _web) = manager_with_web(&["--start-all"]).await;
    manager.wait_running("web").await;
    let response = manager
        .request(Method::GET, "/events")
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("/events answers");
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            let normalized = buffer.replace("\r\n", "\n");
            buffer = normalized;
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a comment or keep-alive
                }
                let value: Value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                if tx.send((name, value)).is_err() {
                    return;
                }
            }
        }
    });
    // Give the subscription a moment to be in place before anything changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = manager.post("/stop", "web").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = manager.post("/start", "web").await;
    assert_eq!(status, 200, "{body}");

    let expected = ["stopping", "stopped", "starting", "running"];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let (name, data) = next_event(&mut events).await;
        if data["name"] != "web" {
            continue;
        }
        assert_eq!(name, "state", "event name for {data}");
        let state = data["state"].as_str().expect("a state").to_owned();
        if seen.is_empty() && state != "stopping" {
            continue; // the state before the stop (e.g. a first snapshot)
        }
        if state == "running" || state == "stopped" {
            assert_eq!(
                data["running"],
                json!(state == "running"),
                "running vs state: {data}"
            );
        }
        // Repeats of a state (e.g. progress while starting) are allowed.
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        let want = &expected[..seen.len()];
        assert_eq!(seen, want, "state events out of order");
    }
    // A config that does not parse is an `event: config` with its error.
    home.write_raw_config("{\"mcpServers\": {},}");
    loop {
        let (name, data) = next_event(&mut events).await;
        if name == "config" && data["error"].is_string() {
            let error = data["error"].as_str().unwrap_or_default();
            assert!(error.contains("trailing comma"), "{data}");
            break;
        }
    }
    reader.abort();
}

/// kill -9 of a daemon: the manager starts it again.
#[tokio::test]
async fn killed_daemon_is_restarted() {
    let (_home, manager, web) = manager_with_web(&["--start-all"]).await;
    let before = manager.wait_running("web").await;
    let old = pid_of(&before);
    assert!(send_signal(old, libc::SIGKILL), "kill -9 {old}");
    let after = manager
        .wait_status("web", WAIT, "running again", |s| {
            s["state"] == "running" && s["pid"].is_u64() && s["pid"] != json!(old)
        })
        .await;
    assert!(after["restarts"].as_u64() >= Some(1), "{after}");
    assert!(process::is_alive(pid_of(&after)));
    assert!(port_answers(web).await, "port {web} after the restart");
}

/// A command that exits at once: backoff with growing restarts, the reason
/// in `lastError`, and the manager stays responsive.
#[tokio::test]
async fn crash_loop_backs_off_and_says_why() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(
        port,
        json!({"boom": {
            "command": "sh",
            "args": ["-c", "echo boom >&2; exit 3"],
            "port": free_port(),
            "transport": "streamable-http",
            "startTimeout": 2,
        }}),
    ));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let first = manager
        .wait_status("boom", WAIT, "backing off", |s| {
            matches!(s["state"].as_str(), Some("backoff" | "failed"))
                && s["restarts"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(first["running"], false, "{first}");
    let error = first["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.to_lowercase().contains("exit") && error.contains('3'),
        "lastError does not give the exit status: {first}"
    );
    assert!(
        error.contains("boom"),
        "lastError lacks the last log line: {first}"
    );
    let restarts = first["restarts"].as_u64().expect("restarts");
    let later = manager
        .wait_status("boom", WAIT, "restarted again", |s| {
            s["restarts"].as_u64() > Some(restarts)
        })
        .await;
    assert!(
        matches!(
            later["state"].as_str(),
            Some("backoff" | "failed" | "starting")
        ),
        "{later}"
    );
    // Responsive throughout: /ping answers quickly.
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let (status, _) = manager.api(Method::GET, "/ping", None).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "slow /ping");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Twenty proxies at once with nothing running: one manager is started,
/// one daemon, and every proxy initializes.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn twenty_proxies_start_one_manager_and_one_daemon() {
    use crate::util::{process_cmdline, processes_of_home};
    let home = TestHome::new();
    let port = free_port();
    let daemon_port = free_port();
    home.write_config(&manager_config(
        port,
        json!({"shared": hosted_everything_entry(daemon_port)}),
    ));
    let manager_port = port.to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut proxy = Proxy::start(
            &home,
            &["--target", "shared", "--manager-port", &manager_port],
        );
        tasks.spawn(async move {
            proxy.initialize().await;
            (i, proxy)
        });
    }
    // The manager one of them starts: from here on, cleaned up whatever happens.
    let mut manager = ManagerProcess::attach(&home, port).await;
    let mut proxies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(pair) => proxies.push(pair),
            Err(e) => panic!("a proxy did not initialize: {e}"),
        }
    }
    assert_eq!(proxies.len(), 20);
    // Every session works.
    for (i, proxy) in &mut proxies {
        let pong = proxy.request(json!(i), "ping", json!({})).await;
        assert_eq!(pong["result"], json!({}), "proxy {i}");
    }

    let status = manager.wait_running("shared").await;
    let daemon = pid_of(&status);
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(daemon_locks(home.path()), ["shared.lock"]);
    assert_eq!(
        read_lock(&home, "shared").expect("shared.lock")["pid"],
        json!(daemon)
    );

    // Exactly one manager and one host for this home (losers exit).
    let manager_bin_name = manager_bin()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let classify = || {
        let (mut managers, mut hosts) = (Vec::new(), Vec::new());
        for pid in processes_of_home(home.path()) {
            let cmdline = process_cmdline(pid);
            let is_manager = cmdline
                .first()
                .is_some_and(|exe| exe.ends_with(&manager_bin_name));
            if !is_manager {
                continue;
            }
            if cmdline.get(1).map(String::as_str) == Some("host") {
                hosts.push(pid);
            } else {
                managers.push(pid);
            }
        }
        (managers, hosts)
    };
    let (managers, hosts) = wait_until(Duration::from_secs(10), "one manager", || {
        let found = classify();
        async move { (found.0.len() == 1).then_some(found) }
    })
    .await;
    assert_eq!(managers, [manager.pid], "manager processes");
    assert_eq!(
        hosts,
        [daemon],
        "hosts of `shared` (the daemon is {daemon})"
    );
    let log = std::fs::read_to_string(home.path().join("shared.log")).unwrap_or_default();
    assert!(
        !log.contains("cannot listen"),
        "a second host was started:\n{log}"
    );

    drop(proxies);
    manager.stop().await;
    assert!(
        !process::is_alive(daemon),
        "the daemon outlived the manager"
    );
}

/// A program of someone else's on the daemon's port: `failed`, the port
/// named, and the program left alone.
#[tokio::test]
async fn foreign_listener_is_reported_and_left_alone() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let held = listener.local_addr().expect("addr").port();
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(held, Mode::StreamableHttp)}),
    ));
    let manager = ManagerProcess::start(&home, port, &[]).await;
    let (status, answer) = manager.post("/start", "web").await;
    assert_eq!(
        answer["state"], "failed",
        "/start answered {status}: {answer}"
    );
    let failed = manager.status_of("web").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["running"], false, "{failed}");
    let error = failed["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&held.to_string()),
        "port not named: {failed}"
    );
    let me = std::process::id().to_string();
    assert!(
        error.contains(&me) || error.contains("held"),
        "neither our pid {me} nor \"held\": {failed}"
    );

    // Our listener still works.
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", held));
    let (accepted, connected) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), listener.accept()),
        connect
    );
    assert!(connected.is_ok(), "cannot connect to our own listener");
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "our listener stopped accepting"
    );
}

/// A lock naming a live process that is not the daemon (a reused pid): the
/// daemon is started, the process is left alone, the lock is replaced.
#[tokio::test]
async fn lock_with_a_reused_pid_is_replaced_not_killed() {
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sleep");
    let sleeper_pid = sleeper.id().expect("running");
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
    ));
    std::fs::write(
        home.path().join("web.lock"),
        serde_json::to_vec_pretty(&json!({
            "pid": sleeper_pid, "port": web, "startedAt": 1_000,
            "transport": "streamable-http", "processStart": 1,
            "command": "node"
        }))
        .expect("json"),
    )
    .expect("write lock");
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let status = manager.wait_running("web").await;
    let daemon = pid_of(&status);
    assert_ne!(daemon, sleeper_pid, "{status}");
    assert_eq!(status["adopted"], false, "{status}");
    assert!(port_answers(web).await);
    assert!(
        sleeper.try_wait().expect("try_wait").is_none(),
        "the process named by the stale lock was killed"
    );
    let lock = read_lock(&home, "web").expect("web.lock");
    assert_eq!(lock["pid"], json!(daemon), "{lock}");
    assert_eq!(lock["port"], json!(web), "{lock}");
}

/// A new manager adopts the daemons of a SIGKILLed one (same pid, no
/// restart, the port answering throughout), and supervises them.
#[tokio::test]
async fn new_manager_adopts_running_daemons() {
    let (home, mut first, web) = manager_with_web(&["--start-all"]).await;
    let started = first.wait_running("web").await;
    let pid = pid_of(&started);

    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = tokio::spawn({
        let probing = probing.clone();
        async move {
            let mut failures = 0;
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                if !port_answers(web).await {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failures
        }
    });

    first.sigkill().await;
    assert!(process::is_alive(pid), "the daemon died with its manager");
    let second = ManagerProcess::start(&home, first.port, &[]).await;
    let adopted = second
        .wait_status("web", WAIT, "adopted", |s| s["state"] == "running")
        .await;
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        probe.await.expect("probe"),
        0,
        "port {web} stopped answering"
    );
    assert_eq!(adopted["pid"], json!(pid), "{adopted}");
    assert_eq!(adopted["adopted"], true, "{adopted}");
    assert_eq!(adopted["restarts"], 0, "{adopted}");

    // The adopted daemon is supervised: killed, it comes back.
    assert!(send_signal(pid, libc::SIGKILL));
    let back = second
        .wait_status("web", WAIT, "restarted", |s| {
            s["state"] == "running" && s["pid"].is_u64() && s["pid"] != json!(pid)
        })
        .await;
    assert!(port_answers(web).await, "{back}");
    drop(first);
}

/// SIGTERM: every daemon stopped, every lock removed, exit 0, within 15 s.
#[tokio::test]
async fn sigterm_stops_every_daemon_and_exits_zero() {
    let home = TestHome::new();
    let port = free_port();
    let (web, hosted) = (free_port(), free_port());
    home.write_config(&manager_config(
        port,
        json!({
            "web": everything_daemon_entry(web, Mode::StreamableHttp),
            "hosted": hosted_everything_entry(hosted),
        }),
    ));
    let mut manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let mut pids = Vec::new();
    for name in ["web", "hosted"] {
        pids.push(pid_of(&manager.wait_running(name).await));
        assert!(read_lock(&home, name).is_some(), "{name}.lock");
    }
    // Within 15 s: the status is taken from the child itself.
    manager.signal(libc::SIGTERM);
    let status = manager
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("our child");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    for pid in pids {
        assert!(!process::is_alive(pid), "daemon {pid} outlived the manager");
    }
    for (name, daemon_port) in [("web", web), ("hosted", hosted)] {
        assert!(!port_answers(daemon_port).await, "{name} still answers");
        assert!(read_lock(&home, name).is_none(), "{name}.lock left behind");
    }
    #[cfg(target_os = "linux")]
    {
        // Nothing started for this home lives on (the hosted child included).
        let home_path = home.path().to_owned();
        wait_until(Duration::from_secs(3), "no process of the home", || {
            let left = crate::util::processes_of_home(&home_path);
            async move { left.is_empty().then_some(()) }
        })
        .await;
    }
}

/// A second manager on the same home exits 1 and names the first one's pid.
#[tokio::test]
async fn second_manager_exits_naming_the_first() {
    let (home, manager, _web) = manager_with_web(&[]).await;
    for port in [manager.port, free_port()] {
        let (code, _, stderr) = run_manager_cli(&home, &["--port", &port.to_string()], &[]).await;
        assert_eq!(code, 1, "second manager on port {port}: {stderr}");
        assert!(
            stderr.contains(&manager.pid.to_string()),
            "the first manager's pid {} is not named: {stderr}",
            manager.pid
        );
    }
    // The first one is unharmed.
    let (status, _) = manager.api(Method::GET, "/ping", None).await;
    assert_eq!(status, 200);
}

fn backups(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read .claude")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("mcp.json.backup.")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort();
    names
}

fn check_generated(config: &Value) {
    let proxy = std::fs::canonicalize(proxy_bin()).expect("proxy path");
    for name in ["alpha", "beta"] {
        let entry = &config["mcpServers"][name];
        let command = entry["command"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no command: {config}"));
        assert!(Path::new(command).is_absolute(), "{command}");
        assert_eq!(
            std::fs::canonicalize(command).ok().as_deref(),
            Some(proxy.as_path()),
            "{name}: {command} is not mcp-proxy"
        );
        let args: Vec<&str> = entry["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no args: {config}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            args.windows(2).any(|w| w == ["--target", name]),
            "{name}: {args:?}"
        );
    }
}

/// `generate-config` writes ~/.claude/mcp.json, keeps a backup of the
/// previous one, and `--print` writes nothing.
#[tokio::test]
async fn generate_config_writes_backs_up_and_prints() {
    let home = TestHome::new();
    let user = tempfile::tempdir().expect("HOME");
    home.write_config(&manager_config(
        free_port(),
        json!({
            "alpha": hosted_everything_entry(free_port()),
            "beta": everything_daemon_entry(free_port(), Mode::StreamableHttp),
        }),
    ));
    let env = [("HOME", user.path())];
    let claude = user.path().join(".claude");
    let file = claude.join("mcp.json");

    let (code, _, stderr) = run_manager_cli(&home, &["generate-config"], &env).await;
    assert_eq!(code, 0, "{stderr}");
    let written: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("mcp.json written")).expect("JSON");
    check_generated(&written);

    // Run again over a file that differs: the previous content is kept.
    let previous = serde_json::to_vec_pretty(&json!({"mcpServers": {
        "mine": {"command": "/bin/true", "args": []}
    }}))
    .expect("json");
    std::fs::write(&file, &previous).expect("edit mcp.json");
    let (code, _, stderr) = run_manager_cli(&home, &["generate-config"], &env).await;
    assert_eq!(code, 0, "{stderr}");
    let kept = backups(&claude);
    assert_eq!(kept.len(), 1, "backups: {kept:?}");
    assert_eq!(
        std::fs::read(claude.join(&kept[0])).expect("backup"),
        previous,
        "the backup does not hold the previous content"
    );
    let rewritten: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("mcp.json")).expect("JSON");
    check_generated(&rewritten);

    // --print: the JSON on stdout, nothing written.
    let before = std::fs::read(&file).expect("mcp.json");
    let (code, stdout, stderr) =
        run_manager_cli(&home, &["generate-config", "--print"], &env).await;
    assert_eq!(code, 0, "{stderr}");
    let printed: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("--print output is not JSON ({e}): {stdout}"));
    check_generated(&printed);
    assert_eq!(backups(&claude), kept, "--print made a backup");
    assert_eq!(std::fs::read(&file).expect("mcp.json"), before);
}

/// The CLI: `status` (table and JSON), `start`, `stop`, `logs`, and the
/// message when no manager runs.
#[tokio::test]
async fn cli_status_start_stop_and_logs() {
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    home.write_config(&manager_config(
        port,
        json!({
            "web": everything_daemon_entry(web, Mode::StreamableHttp),
            "quiet": hosted_everything_entry(free_port()),
            "far": {"type": "http", "url": "http://127.0.0.1:9/mcp"},
        }),
    ));
    let p = port.to_string();
    for args in [
        vec!["status", "--port", &p],
        vec!["start", "web", "--port", &p],
    ] {
        let (code, _, stderr) = run_manager_cli(&home, &args, &[]).await;
        assert_eq!(code, 1, "{args:?} without a manager: {stderr}");
        assert!(
            stderr.contains(&format!("no manager is running on 127.0.0.1:{port}")),
            "{args:?}: {stderr}"
        );
    }

    // logs reads NAME.log directly (no manager needed).
    let lines: Vec<String> = (1..=20).map(|i| format!("quiet line {i}")).collect();
    std::fs::write(home.path().join("quiet.log"), lines.join("\n") + "\n").expect("write log");
    let (code, stdout, stderr) = run_manager_cli(&home, &["logs", "quiet", "-n", "5"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !printed.is_empty() && printed.len() <= 5,
        "logs -n 5 printed {}: {stdout}",
        printed.len()
    );
    assert!(
        printed.iter().all(|l| lines.iter().any(|x| x == l)),
        "lines not from quiet.log: {stdout}"
    );
    assert_eq!(printed.last(), Some(&"quiet line 20"), "{stdout}");

    let manager = ManagerProcess::start(&home, port, &[]).await;
    let (code, table, stderr) = run_manager_cli(&home, &["status", "--port", &p], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    for word in ["web", "quiet", "far", "stopped", "remote"] {
        assert!(
            table.contains(word),
            "{word} missing from the table:\n{table}"
        );
    }

    let (code, _, stderr) = run_manager_cli(&home, &["start", "web", "--port", &p], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let running = manager.status_of("web").await;
    assert_eq!(running["state"], "running", "after `start web`: {running}");
    assert!(port_answers(web).await);

    let (code, stdout, stderr) =
        run_manager_cli(&home, &["status", "--json", "--port", &p], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let parsed: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {stdout}"));
    let daemons = parsed["daemons"].as_array().expect("daemons");
    let web_status = daemons
        .iter()
        .find(|d| d["name"] == "web")
        .unwrap_or_else(|| panic!("no web in {parsed}"));
    assert_eq!(web_status["state"], "running", "{parsed}");
    let far = daemons
        .iter()
        .find(|d| d["name"] == "far")
        .unwrap_or_else(|| panic!("no far in {parsed}"));
    assert_eq!(far["state"], "remote", "{parsed}");

    let (code, table, _) = run_manager_cli(&home, &["status", "--port", &p], &[]).await;
    assert_eq!(code, 0);
    let web_row = table
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "web"))
        .unwrap_or_else(|| panic!("no row for web:\n{table}"));
    assert!(web_row.contains("running"), "{web_row}");

    let (code, _, stderr) = run_manager_cli(&home, &["stop", "web", "--port", &p], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let stopped = manager.status_of("web").await;
    assert_eq!(stopped["state"], "stopped", "after `stop web`: {stopped}");
    assert!(!port_answers(web).await);
}

/// A foreign program holds the manager's port (it answers HTTP, but not as
/// mcp-manager): proxies start the daemon themselves, under the same start
/// guard, so three at once still give exactly one daemon, and no manager.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn without_a_manager_proxies_start_one_daemon_themselves() {
    use crate::util::{process_cmdline, processes_of_home};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
    ));
    // The stranger: 404 to everything, then closes.
    let stranger = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the manager port");
    let answering = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = stranger.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3 {
        let mut proxy = Proxy::start(
            &home,
            &["--target", "web", "--manager-port", &port.to_string()],
        );
        tasks.spawn(async move {
            proxy.initialize().await;
            let pong = proxy.request(json!(i), "ping", json!({})).await;
            assert_eq!(pong["result"], json!({}), "proxy {i}");
            proxy
        });
    }
    let mut proxies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        proxies.push(joined.expect("a proxy initialized and answered ping"));
    }
    let lock = read_lock(&home, "web").expect("web.lock");
    let daemon = u32::try_from(lock["pid"].as_u64().expect("pid")).expect("pid");
    // Everything started for this home but the proxies themselves.
    let started: Vec<u32> = processes_of_home(home.path())
        .into_iter()
        .filter(|pid| {
            !process_cmdline(*pid)
                .first()
                .is_some_and(|exe| exe.ends_with("mcp-proxy"))
        })
        .collect();
    let managers: Vec<&u32> = started
        .iter()
        .filter(|pid| {
            process_cmdline(**pid)
                .first()
                .is_some_and(|exe| exe.ends_with("mcp-manager"))
        })
        .collect();
    assert!(managers.is_empty(), "no manager may run: {managers:?}");
    assert_eq!(started, [daemon], "exactly one daemon for the home");
    assert!(port_answers(web).await);
    answering.abort();
    drop(proxies);
    // Detached, it outlives the proxies: stop it (it is ours, by its lock).
    send_signal(daemon, libc::SIGKILL);
}
