//! A hosted server that fails at start (issue 15, items 1–2, the host's
//! side): the waiting `initialize` fails within seconds of the child's exit
//! with its exit status and its own last stderr lines; while it keeps
//! failing, every new session is refused at once with the next try; a
//! server that crashed after it ran is restarted and waited for; what the
//! host keeps of the child's stderr is bounded; `/health` says it all; and
//! the message reaches the client's stdout through the real `mcp-proxy`
//! unchanged.
//!
//! The crasher is a small python3 script written into the test's home.

#![cfg(unix)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::util::{
    HostProcess, ManagerProcess, McpHttp, Proxy, TestHome, everything_stdio_entry, free_port,
    manager_config, send_signal, wait_for_port,
};

/// The crasher: `crasher.py MODE DELAY EXITS`. After DELAY seconds it
/// writes its stderr (`fatal`: two lines; `huge`: 8 MiB without a
/// newline), appends the time to EXITS and exits 3; `closes-stdout`
/// closes its stdout at once and lives on.
const CRASHER: &str = r#"
import os, sys, time
mode, delay, exits = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if mode == "closes-stdout":
    os.close(1)
    time.sleep(60)
    sys.exit(0)
time.sleep(delay)
if mode == "huge":
    chunk = "z" * 65536
    for _ in range(128):
        sys.stderr.write(chunk)
else:
    sys.stderr.write("starting up\nfatal: DATABASE_URL is not set\n")
sys.stderr.flush()
with open(exits, "a") as f:
    f.write(f"{time.time()}\n")
sys.exit(3)
"#;

/// The first words of the crasher's error, as the issue asks for them.
const EXITED: &str = "the server exited at start (exit status: 3): ";

/// Bound of a whole wait for an error (the old wait was 120 s).
const BOUND: Duration = Duration::from_secs(15);

/// A config entry hosting the crasher in `mode`, exiting after `delay` s.
fn crasher_entry(home: &TestHome, port: u16, mode: &str, delay: f64) -> Value {
    let script = home.path().join("crasher.py");
    std::fs::write(&script, CRASHER).expect("write the crasher");
    json!({
        "command": "python3",
        "args": [script.to_string_lossy(), mode, delay.to_string(), exits_file(home).to_string_lossy()],
        "port": port,
    })
}

fn exits_file(home: &TestHome) -> PathBuf {
    home.path().join("exits.txt")
}

/// When the crasher last exited (seconds since the epoch).
fn last_exit(home: &TestHome) -> Option<f64> {
    let text = std::fs::read_to_string(exits_file(home)).ok()?;
    text.lines().last()?.trim().parse().ok()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `initialize` on the host; its error message (panics on success or on
/// an answer that is not a JSON-RPC error for its id).
async fn initialize_error(http: &McpHttp) -> String {
    let answer = http.post(&crate::util::initialize_request(7), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["id"], json!(7), "{answer:?}");
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("initialize did not fail: {answer:?}"))
        .to_owned()
}

/// A child that exits 3 two seconds into its start: the `initialize`
/// waiting for it fails soon after the exit (bounded by 15 s, not 120 s)
/// with the status and its own last line, then the next try; its stderr is
/// still appended to its log; `/health` says crash loop, the next try and
/// the lines.
#[tokio::test]
async fn a_child_that_exits_at_start_fails_the_waiting_initialize_with_its_words() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "crasher", crasher_entry(&home, port, "fatal", 2.0)).await;
    let http = McpHttp::new(port);
    let asked = Instant::now();
    let message = tokio::time::timeout(BOUND, initialize_error(&http))
        .await
        .expect("initialize failed within 15 s");
    let answered = now_secs();
    let took = asked.elapsed();
    assert!(
        message.starts_with(&format!(
            "{EXITED}starting up | fatal: DATABASE_URL is not set; next try in "
        )),
        "{message}"
    );
    assert!(message.len() < 300, "{message}");
    if let Some(exit) = last_exit(&home) {
        eprintln!(
            "initialize failed {:.2} s after the child's exit ({took:?} after it was sent)",
            answered - exit
        );
    }
    let health = host.health().await;
    let child = &health["children"][0];
    assert_eq!(health["state"], "degraded", "{health}");
    assert_eq!(health["crashLoop"], true, "{health}");
    assert_eq!(child["crashLoop"], true, "{health}");
    assert_eq!(
        child["lastRestartReason"], "it exited during start-up (exit status: 3)",
        "{health}"
    );
    assert_eq!(
        child["startError"],
        format!("{EXITED}starting up | fatal: DATABASE_URL is not set"),
        "{health}"
    );
    assert_eq!(
        child["lastStderr"],
        json!(["starting up", "fatal: DATABASE_URL is not set"]),
        "{health}"
    );
    assert!(child["restarts"].as_u64() >= Some(1), "{health}");
    let log = std::fs::read_to_string(home.path().join("crasher.log")).unwrap_or_default();
    assert!(
        log.contains("fatal: DATABASE_URL is not set"),
        "the log: {log}"
    );
}

/// In back-off after failed starts, a new session is refused at once: its
/// answer comes before the next try is due, with the reason and "next try
/// in N s".
#[tokio::test]
async fn a_crash_loop_refuses_a_new_session_at_once_with_the_next_try() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "crasher", crasher_entry(&home, port, "fatal", 0.0)).await;
    // Back-off 1 s, 2 s, 4 s: after the third failure the next try is
    // seconds away.
    let health = host
        .wait_health(
            |h| {
                h["children"][0]["restarts"].as_u64() >= Some(3)
                    && h["children"][0]["nextTryAt"].is_u64()
            },
            BOUND,
        )
        .await;
    let next_try_at = health["children"][0]["nextTryAt"]
        .as_u64()
        .expect("nextTryAt");
    let http = McpHttp::new(port);
    let message = initialize_error(&http).await;
    let answered_ms = (now_secs() * 1000.0) as u64;
    assert!(
        answered_ms < next_try_at,
        "the refusal came at {answered_ms}, after the next try at {next_try_at}: it waited ({health})"
    );
    assert!(message.starts_with(EXITED), "{message}");
    assert!(
        message.contains("fatal: DATABASE_URL is not set"),
        "{message}"
    );
    assert!(message.contains("; next try in "), "{message}");
    // A second one too.
    let again = initialize_error(&http).await;
    assert!(again.contains("; next try in "), "{again}");
}

/// A child that closes its stdout at start (and lives on) fails the
/// waiting `initialize` at once, saying so.
#[tokio::test]
async fn a_child_that_closes_its_stdout_at_start_is_told() {
    let home = TestHome::new();
    let port = free_port();
    let _host = HostProcess::start(
        &home,
        "crasher",
        crasher_entry(&home, port, "closes-stdout", 0.0),
    )
    .await;
    let message = tokio::time::timeout(BOUND, initialize_error(&McpHttp::new(port)))
        .await
        .expect("initialize failed within 15 s");
    assert!(
        message.starts_with("the server closed its stdout at start; next try in "),
        "{message}"
    );
}

/// A child that prints 8 MiB without a newline and exits: the error and
/// `/health` stay small (the line cut, saying so); the log has it all.
#[tokio::test]
async fn what_the_host_keeps_of_stderr_is_bounded() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "crasher", crasher_entry(&home, port, "huge", 0.0)).await;
    host.wait_health(|h| h["crashLoop"] == true, BOUND).await;
    let message = initialize_error(&McpHttp::new(port)).await;
    assert!(message.starts_with(&format!("{EXITED}zzz")), "{message}");
    assert!(message.contains("… (cut)"), "{message}");
    assert!(
        message.chars().count() < 320,
        "{} chars: {message}",
        message.len()
    );
    let health = host.health().await;
    let text = health.to_string();
    assert!(text.len() < 8 * 1024, "/health is {} bytes", text.len());
    let lines = health["children"][0]["lastStderr"]
        .as_array()
        .expect("lastStderr");
    assert_eq!(lines.len(), 1, "{health}");
    assert!(
        lines[0]
            .as_str()
            .is_some_and(|l| l.ends_with(" more bytes)")),
        "{health}"
    );
    let log = std::fs::metadata(home.path().join("crasher.log")).map_or(0, |m| m.len());
    assert!(log >= 8 * 1024 * 1024, "the log has {log} bytes");
}

/// server-everything that ran and is killed: no crash loop; a session that
/// arrives while it restarts waits for the restart and is served.
#[tokio::test]
async fn a_server_that_crashed_after_running_is_waited_for() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "everything", everything_stdio_entry(port)).await;
    let http = McpHttp::new(port);
    http.initialize(None).await.expect("first session");
    let health = host
        .wait_health(|h| h["children"][0]["state"] == "running", BOUND)
        .await;
    let pid = health["children"][0]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("the child's pid");
    assert!(send_signal(pid, 9), "kill -9 {pid}");
    let restarting = host
        .wait_health(|h| h["children"][0]["state"] != "running", BOUND)
        .await;
    assert_eq!(
        restarting["children"][0]["crashLoop"], false,
        "{restarting}"
    );
    let session = tokio::time::timeout(Duration::from_secs(30), http.initialize(None))
        .await
        .expect("initialize within 30 s");
    assert!(
        session.is_ok(),
        "the session was not served: {session:?} ({restarting})"
    );
    let health = host.health().await;
    assert_eq!(health["children"][0]["state"], "running", "{health}");
    assert_eq!(health["crashLoop"], false, "{health}");
    assert!(
        health["children"][0]["restarts"].as_u64() >= Some(1),
        "{health}"
    );
}

/// Through a manager and the real `mcp-proxy --target`: the client's
/// `initialize` gets the host's error for its own id, unchanged, well
/// before the old 120 s; the proxy's stdout holds only JSON-RPC.
#[tokio::test]
async fn the_error_reaches_the_client_through_the_proxy_unchanged() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    let entry = crasher_entry(&home, port, "fatal", 1.0);
    home.write_config(&manager_config(manager_port, json!({"crasher": entry})));
    let _manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    wait_for_port(port, BOUND).await;
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "crasher",
            "--manager-port",
            &manager_port.to_string(),
        ],
    );
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        BOUND,
        proxy.request(
            json!(0),
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}),
        ),
    )
    .await
    .expect("an answer within 15 s");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "{EXITED}starting up | fatal: DATABASE_URL is not set; "
        )),
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], json!(-32603), "{answer}");
    // What the host itself answers, word for word (up to the next try).
    let direct = initialize_error(&McpHttp::new(port)).await;
    let cause = |m: &str| m.rsplit_once("; ").map(|(c, _)| c.to_owned());
    assert_eq!(cause(message), cause(&direct), "{answer}");
    eprintln!(
        "initialize through the proxy failed after {:?}",
        asked.elapsed()
    );
    // The proxy goes on answering (an error per request), and says nothing
    // but JSON-RPC.
    let list = proxy.request(json!(1), "tools/list", json!({})).await;
    assert!(list.get("error").is_some(), "{list}");
    proxy.close_stdin();
    assert!(proxy.wait(BOUND).await.success());
    for line in proxy.rest().await {
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(value["jsonrpc"], "2.0", "{line}");
    }
}

/// `claude mcp list` (the real Claude Code CLI, in a throwaway `HOME`)
/// shows the crasher's cause on its line: the status and its own words,
/// nothing that needs the server's name.
#[tokio::test]
async fn claude_mcp_list_shows_why_the_server_fails_at_start() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    let entry = crasher_entry(&home, port, "fatal", 0.0);
    home.write_config(&manager_config(manager_port, json!({"crasher": entry})));
    let _manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    wait_for_port(port, BOUND).await;
    let user = tempfile::tempdir().expect("HOME");
    let proxy = crate::util::proxy_bin().to_string_lossy().into_owned();
    std::fs::write(
        user.path().join(".claude.json"),
        json!({"mcpServers": {"crasher": {"command": proxy,
            "args": ["--target", "crasher", "--manager-port", manager_port.to_string()]}}})
        .to_string(),
    )
    .expect("write ~/.claude.json");
    let started = Instant::now();
    let line = crate::util::claude_mcp_list_line(home.path(), user.path(), "crasher").await;
    let line = line.as_str();
    assert!(
        line.contains("Failed to connect")
            && line.contains("exited at start (exit status: 3): starting up | fatal: DATABASE_URL is not set; next try in "),
        "{line}"
    );
    eprintln!("claude mcp list took {:?}: {line}", started.elapsed());
}
