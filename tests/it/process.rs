//! The proxy as a process: signals, end of input, a closed stdout, framing
//! of bad and huge lines, concurrency. Against real servers.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::util::{Flavor, Mode, Proxy, RealServer, TestHome, proxy_bin, tool_text};

/// SIGINT (which Claude Code sends to every MCP server of other sessions)
/// changes nothing: the session goes on and later requests are answered.
#[cfg(unix)]
#[tokio::test]
async fn sigint_mid_session_changes_nothing() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
    proxy.initialize().await;
    for _ in 0..5 {
        proxy.signal(2);
    }
    // A request in flight while SIGINTs arrive completes too.
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 2}}}))
        .await;
    proxy.signal(2);
    let long = proxy.response(&json!(1)).await;
    assert!(long.get("result").is_some(), "{long}");
    let echo = proxy
        .request(
            json!(2),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "still here"}}),
        )
        .await;
    assert!(tool_text(&echo).contains("still here"));
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "SIGINT killed the proxy"
    );
    proxy.close_stdin();
    assert!(proxy.wait(Duration::from_secs(10)).await.success());
}

/// EOF on stdin ends the session: exit 0 promptly, even with the GET stream
/// open (the DELETE itself is checked against the fake daemon).
#[tokio::test]
async fn eof_exits_zero_promptly() {
    for mode in [Mode::StreamableHttp, Mode::Sse] {
        let server = RealServer::start(Flavor::Everything, mode).await;
        let home = TestHome::new();
        let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
        proxy.initialize().await;
        proxy.close_stdin();
        let started = Instant::now();
        let status = proxy.wait(Duration::from_secs(10)).await;
        assert!(status.success(), "{mode:?}: exit status {status}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode:?}: exit took {:?}",
            started.elapsed()
        );
    }
}

/// SIGTERM and SIGHUP end the session cleanly with exit 0.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_and_sighup_end_cleanly() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    for signal in [15, 1] {
        let home = TestHome::new();
        let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
        proxy.initialize().await;
        proxy.signal(signal);
        let status = proxy.wait(Duration::from_secs(10)).await;
        assert!(status.success(), "signal {signal}: exit status {status}");
    }
}

/// Requests in flight at EOF are given time to finish: their answers still
/// reach the client before the exit.
#[tokio::test]
async fn eof_lets_requests_in_flight_finish() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(
        &home,
        &["--url", &server.url(), "--shutdown-grace-ms", "10000"],
    );
    proxy.initialize().await;
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 1}}}))
        .await;
    proxy.close_stdin();
    let answer = proxy.response(&json!(9)).await;
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(proxy.wait(Duration::from_secs(15)).await.success());
}

/// Bad input gets a JSON-RPC error on stdout and the proxy goes on.
#[tokio::test]
async fn bad_lines_get_errors_and_the_proxy_goes_on() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
    proxy.initialize().await;

    // Server notifications (list changes) may come in between: wait for errors.
    let is_error = |v: &serde_json::Value| v.get("error").is_some();
    proxy.send_raw("{oops").await;
    let e = proxy.until(is_error).await;
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(null), json!(-32700)),
        "{e}"
    );

    proxy.send_raw("42").await;
    let e = proxy.until(is_error).await;
    assert_eq!(e["error"]["code"], json!(-32600), "{e}");

    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":"m","method":5}"#)
        .await;
    let e = proxy.until(is_error).await;
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!("m"), json!(-32600)),
        "{e}"
    );

    proxy.send_raw("[]").await;
    let e = proxy.until(is_error).await;
    assert_eq!(e["error"]["code"], json!(-32600), "{e}");

    // A raw control character inside a string is not JSON.
    proxy
        .send_raw("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\u{1}b\"}")
        .await;
    let e = proxy.until(is_error).await;
    assert_eq!(e["error"]["code"], json!(-32700), "{e}");

    // CRLF endings and blank lines.
    proxy.send_raw("\r\n   \r").await;
    proxy
        .send_raw("{\"jsonrpc\":\"2.0\",\"id\":\"crlf\",\"method\":\"ping\"}\r")
        .await;
    let pong = proxy.response(&json!("crlf")).await;
    assert_eq!(pong["result"], json!({}));
    let errors: Vec<_> = proxy
        .seen
        .iter()
        .filter(|v| v.get("error").is_some())
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
}

/// A line that is not UTF-8 is a parse error, not the end of the session.
#[tokio::test]
async fn invalid_utf8_is_a_parse_error() {
    let home = TestHome::new();
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let mut child = tokio::process::Command::new(proxy_bin())
        .args(["--url", &server.url()])
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"{\"a\":\"\xff\xfe\"}\n")
        .await
        .expect("write");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}\n")
        .await
        .expect("write");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let text = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["error"]["code"], json!(-32700));
    assert_eq!(lines[1]["id"], json!(1));
    assert!(output.status.success());
}

/// An HTTP error from the daemon becomes a JSON-RPC error for that request,
/// with the status and a short body; the session goes on.
#[tokio::test]
async fn http_errors_become_json_rpc_errors() {
    let server = RealServer::start(Flavor::FastMcp, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
    proxy.initialize().await;
    // The Python SDK refuses bodies over 4 MB with HTTP 413.
    let big = "x".repeat(5 * 1024 * 1024);
    let error = proxy
        .request(
            json!("big"),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": big}}),
        )
        .await;
    assert_eq!(error["error"]["code"], json!(-32603), "{error}");
    assert_eq!(error["error"]["data"]["status"], json!(413), "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("413")
    );
    let echo = proxy
        .request(
            json!(2),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "ok"}}),
        )
        .await;
    assert_eq!(tool_text(&echo), "Echo: ok");
}

/// Requests run concurrently: a quick one is answered while a slow one runs,
/// and with many in flight every stdout line is a whole message.
#[tokio::test]
async fn many_requests_in_flight_are_answered_as_they_complete() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
    proxy.initialize().await;
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 2, "steps": 2}}}))
        .await;
    for i in 0..64 {
        proxy
            .send(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": format!("m{i}-{}", "x".repeat(4000))}}}))
            .await;
    }
    let mut answered = std::collections::BTreeSet::new();
    let mut slow_done = false;
    while answered.len() < 64 || !slow_done {
        let message = proxy.next().await;
        if message["id"] == json!("slow") {
            assert_eq!(
                answered.len(),
                64,
                "the slow call finished before the quick ones"
            );
            slow_done = true;
        } else if let (Some(i), None) = (message["id"].as_u64(), message.get("method")) {
            assert!(tool_text(&message).starts_with(&format!("Echo: m{i}-")));
            assert!(answered.insert(i), "two answers for {i}");
        }
    }
}

/// A client that closes stdout (EPIPE) ends the proxy quietly: no panic.
#[tokio::test]
async fn closed_stdout_ends_quietly() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut child = tokio::process::Command::new(proxy_bin())
        .args(["--url", &server.url()])
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().expect("stdin");
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    stdin.write_all(init).await.expect("write");
    stdin.write_all(b"\n").await.expect("write");
    stdin.flush().await.expect("flush");
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the proxy exits once stdout is gone")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.success(),
        "status {} stderr {stderr}",
        output.status
    );
    drop(stdin);
}

/// A slow client does not make the proxy buffer without bound: with stdout
/// unread, a flood of notifications on the GET stream stays in the pipes
/// (TCP backpressure), not in the proxy's memory; reading resumes the flow
/// and every message arrives, in order.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_stays_bounded_when_stdout_is_slow() {
    use crate::fake_daemon::{Behaviour, FakeDaemon};
    let daemon = FakeDaemon::start(Behaviour::default()).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &daemon.url("/mcp")]);
    proxy.initialize().await;
    daemon
        .wait_for(|r| r.method == "GET", Duration::from_secs(10))
        .await
        .expect("the proxy opens the GET stream");
    const COUNT: usize = 240;
    let filler = "x".repeat(256 * 1024);
    for i in 0..COUNT {
        daemon.push_get_event(
            &json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": {"seq": i, "filler": filler}}})
            .to_string(),
        );
    }
    // 60 MiB was pushed; give the proxy time to take in whatever it would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib = rss_kib(proxy.pid());
    eprintln!("proxy RSS with stdout unread: {rss_kib} KiB");
    assert!(
        rss_kib < 32 * 1024,
        "the proxy holds {rss_kib} KiB while stdout is unread"
    );
    for i in 0..COUNT {
        let message = proxy
            .until(|v| v["method"] == "notifications/message")
            .await;
        assert_eq!(message["params"]["data"]["seq"], json!(i));
    }
}

#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// No proxy-imposed deadline: a tool call of 70 s (longer than the
/// original's 60 s timeout) completes with all its progress. Ignored in the
/// normal suite for its length: `cargo test -- --ignored long_tool_call`.
#[tokio::test]
#[ignore = "takes 70 s"]
async fn long_tool_call_outlasts_the_originals_timeout() {
    let server = RealServer::start(Flavor::Everything, Mode::StreamableHttp).await;
    let home = TestHome::new();
    let mut proxy = Proxy::start(&home, &["--url", &server.url()]);
    proxy.initialize().await;
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 70, "steps": 7},
                "_meta": {"progressToken": "p"}}}))
        .await;
    let mut progress = 0;
    loop {
        let message = proxy.next().await;
        if message["method"] == "notifications/progress" {
            progress += 1;
        } else if message["id"] == json!("long") {
            assert!(message.get("result").is_some(), "{message}");
            break;
        }
    }
    assert_eq!(progress, 7);
}

/// Sends SIGINT to `pid` at once (the `kill` command would take about a
/// millisecond to start, longer than the window measured).
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "kill(2) within microseconds of a spawn")]
fn sigint_now(pid: u32) {
    let pid = i32::try_from(pid).expect("a pid fits in pid_t");
    assert!(pid > 1, "refusing to signal pid {pid}");
    // SAFETY: kill(2) with a positive pid of our own child and a valid signal.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
}

/// Has `pid` set SIGINT to ignored or caught (`/proc/PID/status`)?
#[cfg(target_os = "linux")]
fn sigint_handled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    Some((mask("SigIgn:") | mask("SigCgt:")) & 0b10 != 0)
}

/// A proxy that waits on its stdin (nothing is sent: it never connects).
#[cfg(target_os = "linux")]
fn spawn_idle_proxy(home: &TestHome, url: &str) -> std::process::Child {
    std::process::Command::new(proxy_bin())
        .args(["--url", url])
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mcp-proxy")
}

/// Killed by SIGINT within `wait`?
#[cfg(target_os = "linux")]
fn died_of_sigint(child: &mut std::process::Child, wait: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.signal() == Some(2);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// See: issue 13, item 11. Claude Code may send SIGINT to a proxy it has just
/// spawned. SIGINT is ignored by a load-time constructor (`.init_array`),
/// before `main`; the window left is the kernel's exec and the dynamic
/// loader (relocating the binary), which no code of the proxy can shorten.
/// Asserted, where the platform lets the test see it (Linux, `/proc`): once
/// the process shows SIGINT ignored or caught, a SIGINT never kills it (20
/// spawns). Measured and printed, not asserted (it is a matter of load):
/// how long that point takes after spawn, and how many of 50 proxies a
/// SIGINT 0–2 ms after spawn kills.
#[test]
fn sigint_right_after_spawn_kills_only_before_the_loader_is_done() {
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("skipped: reading a process's signal dispositions needs Linux's /proc");
    }
    #[cfg(target_os = "linux")]
    {
        let home = TestHome::new();
        let url = format!("http://127.0.0.1:{}/mcp", crate::util::free_port());
        let mut ready_after = Vec::new();
        for _ in 0..20 {
            let mut child = spawn_idle_proxy(&home, &url);
            let spawned = Instant::now();
            let deadline = spawned + Duration::from_secs(10);
            while sigint_handled(child.id()) != Some(true) {
                assert!(
                    Instant::now() < deadline,
                    "SIGINT never ignored within 10 s"
                );
                std::hint::spin_loop();
            }
            ready_after.push(spawned.elapsed());
            sigint_now(child.id());
            assert!(
                !died_of_sigint(&mut child, Duration::from_millis(200)),
                "a SIGINT after the proxy ignored it killed it"
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        ready_after.sort();
        let median = ready_after[ready_after.len() / 2];
        let max = ready_after[ready_after.len() - 1];
        eprintln!("SIGINT ignored after spawn: median {median:?}, max {max:?} (20 spawns)");

        let mut killed = [0usize; 5];
        for run in 0..50 {
            let delay = Duration::from_micros(500 * (run % 5) as u64);
            let mut child = spawn_idle_proxy(&home, &url);
            let spawned = Instant::now();
            while spawned.elapsed() < delay {
                std::hint::spin_loop();
            }
            sigint_now(child.id());
            if died_of_sigint(&mut child, Duration::from_millis(100)) {
                killed[run % 5] += 1;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        eprintln!(
            "killed by SIGINT of 10 each, at 0 / 0.5 / 1 / 1.5 / 2 ms after spawn: {killed:?}"
        );
    }
}
