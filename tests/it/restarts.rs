//! `mcp-proxy` survives daemon restarts (issue 7): a daemon killed with
//! SIGKILL under the manager (`--target`) or by the test (`--url`, started
//! again on the same port) costs the client nothing but the calls that were
//! cut: the next request succeeds, reads are sent again, a cut `tools/call`
//! gets one error and never runs twice, the log level and subscriptions are
//! restored, a changed tool list is announced, the wait is bounded by
//! `--reconnect-timeout`, and fifty restarts in a row leak neither answers
//! nor memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{
    Flavor, Mode, Proxy, ProxyLog, RealServer, TestHome, start_proxy_logged, tool_text,
};
#[cfg(unix)]
use crate::util::{
    ManagerProcess, everything_daemon_entry, free_port, hosted_everything_entry, manager_config,
    send_signal,
};

/// How long a state change (a restart, a recovery) may take.
const WAIT: Duration = Duration::from_secs(30);
/// The proxy's log filter for these tests: recovery steps are `info`/`warn`.
const LOG: &str = "mcp_session_manager=debug,warn";

/// The text of a JSON-RPC error's message, `None` for a success.
fn error_message(answer: &Value) -> Option<&str> {
    answer
        .get("error")
        .map(|e| e["message"].as_str().unwrap_or(""))
}

/// `tools/call NAME ARGS` and its answer.
async fn call(proxy: &mut Proxy, id: Value, name: &str, arguments: Value) -> Value {
    proxy
        .request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
}

/// `echo MESSAGE` must come back as a tool result with the message.
async fn echo_ok(proxy: &mut Proxy, log: &ProxyLog, id: u64, message: &str) {
    let answer = call(proxy, json!(id), "echo", json!({"message": message})).await;
    assert!(
        answer.get("result").is_some() && tool_text(&answer).contains(message),
        "echo {message:?} (id {id}) failed: {answer}\nproxy stderr:\n{}",
        log.tail(40)
    );
}

/// `ping` must succeed.
async fn ping_ok(proxy: &mut Proxy, log: &ProxyLog, id: u64) {
    let answer = proxy.request(json!(id), "ping", json!({})).await;
    assert_eq!(
        answer["result"],
        json!({}),
        "ping (id {id}) failed: {answer}\nproxy stderr:\n{}",
        log.tail(40)
    );
}

/// The proxy logged a loss and a recovery (both transports say "daemon
/// lost" and "reconnected to the daemon").
fn assert_recovery_logged(log: &ProxyLog) {
    let text = log.text();
    assert!(
        text.contains("daemon lost") && text.contains("reconnected to the daemon"),
        "the proxy did not log the loss and the recovery:\n{}",
        log.tail(40)
    );
}

/// kill -9 of `pid`, then waits until it is gone (reaped by the manager)
/// and a moment more, so the kernel has closed its sockets: the next
/// request is one sent after the daemon died. (One written at the very
/// moment of the kill may be reset mid-way, which the proxy rightly
/// treats as "may or may not have run".)
#[cfg(unix)]
async fn kill_daemon(pid: u32) {
    assert!(send_signal(pid, libc::SIGKILL), "kill -9 {pid}");
    crate::util::wait_until(WAIT, "the killed daemon to be gone", || async move {
        (!mcp_session_manager::process::is_alive(pid)).then_some(())
    })
    .await;
    tokio::time::sleep(SOCKETS_CLOSED).await;
}

/// After a kill: long enough for the proxy's HTTP client to see its idle
/// connections closed.
const SOCKETS_CLOSED: Duration = Duration::from_millis(100);

/// The daemon's pid from a manager status.
#[cfg(unix)]
fn pid_of(status: &Value) -> u32 {
    status["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {status}"))
}

// ---------------------------------------------------------------------------
// 1. Under the manager: kill -9 of the daemon mid-session.
// ---------------------------------------------------------------------------

/// A manager running one server-everything daemon `web` in `mode`; a proxy
/// `--target web` with a session; kill -9 of the daemon; the next call
/// succeeds and the manager counts the restart.
#[cfg(unix)]
async fn daemon_killed_under_the_manager(mode: Mode) {
    let home = TestHome::new();
    let manager_port = free_port();
    let web = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({"web": everything_daemon_entry(web, mode)}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    let before = manager.wait_running("web").await;
    let (mut proxy, log) = start_proxy_logged(
        &home,
        &[
            "--target",
            "web",
            "--manager-port",
            &manager_port.to_string(),
        ],
        LOG,
    );
    proxy.initialize().await;
    echo_ok(&mut proxy, &log, 1, "before the kill").await;

    let old = pid_of(&before);
    kill_daemon(old).await;
    // Right away: the proxy finds the daemon again (the manager restarts it).
    echo_ok(&mut proxy, &log, 2, "after the kill").await;
    let after = manager
        .wait_status("web", WAIT, "running again", |s| {
            s["state"] == "running" && s["pid"].is_u64() && s["pid"] != json!(old)
        })
        .await;
    assert!(after["restarts"].as_u64() >= Some(1), "{after}");
    echo_ok(&mut proxy, &log, 3, "and again").await;
    assert_recovery_logged(&log);
}

#[cfg(unix)]
#[tokio::test]
async fn streamable_http_daemon_killed_under_the_manager_next_call_succeeds() {
    daemon_killed_under_the_manager(Mode::StreamableHttp).await;
}

#[cfg(unix)]
#[tokio::test]
async fn sse_daemon_killed_under_the_manager_next_call_succeeds() {
    daemon_killed_under_the_manager(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 2. `--url`, no manager: the proxy waits for the server to come back.
// ---------------------------------------------------------------------------

/// server-everything in `mode`, killed; a call sent while nothing listens
/// waits (no answer for a second), and succeeds once the server is started
/// again on the same port.
async fn url_waits_for_the_server_to_come_back(mode: Mode) {
    let mut server = RealServer::start(Flavor::Everything, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;
    echo_ok(&mut proxy, &log, 1, "before the kill").await;

    server.kill().await;
    tokio::time::sleep(SOCKETS_CLOSED).await;
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "sent while down"}}}))
        .await;
    let early = proxy.collect_for(Duration::from_secs(1)).await;
    assert!(
        !early
            .iter()
            .any(|m| m["id"] == json!(2) && m.get("method").is_none()),
        "the call was answered while the server was down: {early:#?}\nproxy stderr:\n{}",
        log.tail(40)
    );
    proxy.seen.extend(early);

    let _server = RealServer::start_on(Flavor::Everything, mode, port, &[]).await;
    let answer = proxy.response(&json!(2)).await;
    assert!(
        answer.get("result").is_some() && tool_text(&answer).contains("sent while down"),
        "the call sent while the server was down: {answer}\nproxy stderr:\n{}",
        log.tail(40)
    );
    echo_ok(&mut proxy, &log, 3, "after the restart").await;
    assert_recovery_logged(&log);
}

#[tokio::test]
async fn url_streamable_http_server_killed_and_started_again_next_call_succeeds() {
    url_waits_for_the_server_to_come_back(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn url_sse_server_killed_and_started_again_next_call_succeeds() {
    url_waits_for_the_server_to_come_back(Mode::Sse).await;
}

/// FastMCP in `mode`, killed; `bump` (which counts) is sent while nothing
/// listens, then the server is started again (its counter at 0). The call
/// never reached the old server, so it is sent on the new session: once.
/// Its answer is 1, the next `bump` answers 2 (3 would mean the first one
/// ran twice), and neither is answered twice.
async fn call_sent_while_down_runs_once(mode: Mode) {
    let mut server = RealServer::start(Flavor::FastMcp, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;
    ping_ok(&mut proxy, &log, 1).await;

    server.kill().await;
    tokio::time::sleep(SOCKETS_CLOSED).await;
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "bump", "arguments": {}}}))
        .await;
    let _server = RealServer::start_on(Flavor::FastMcp, mode, port, &[]).await;
    let first = proxy.response(&json!(2)).await;
    assert!(
        first.get("result").is_some(),
        "the bump sent while the server was down: {first}\nproxy stderr:\n{}",
        log.tail(40)
    );
    let second = call(&mut proxy, json!(3), "bump", json!({})).await;
    assert_eq!(
        (tool_text(&first), tool_text(&second)),
        ("1".to_owned(), "2".to_owned()),
        "the bump sent while the server was down ran more than once\nproxy stderr:\n{}",
        log.tail(40)
    );
    let later = proxy.collect_for(Duration::from_secs(1)).await;
    let again: Vec<&Value> = proxy
        .seen
        .iter()
        .chain(&later)
        .filter(|m| m.get("method").is_none() && m.get("id").is_some())
        .collect();
    assert!(
        again.is_empty(),
        "answers beyond one per request: {again:#?}\nproxy stderr:\n{}",
        log.tail(40)
    );
}

#[tokio::test]
async fn streamable_http_call_sent_while_the_daemon_is_down_runs_once() {
    call_sent_while_down_runs_once(Mode::StreamableHttp).await;
}

/// Over legacy SSE the request's own task and the recovery (which posts
/// cut reads again) must not both post it: the second `bump` answers 2.
#[tokio::test]
async fn sse_call_sent_while_the_daemon_is_down_runs_once() {
    call_sent_while_down_runs_once(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 3. A call in flight when the daemon dies: one error, never run twice.
// ---------------------------------------------------------------------------

/// FastMCP's `progress` (steps × delay, a progress notification per step)
/// is killed after its first step. Its one answer is an error saying it may
/// or may not have run; once the server is back, nothing more arrives for
/// it: no second answer, and no progress (which a run on the new server
/// would send, with the same token).
async fn cut_call_gets_one_error_and_is_not_run_again(mode: Mode) {
    const STEPS: u64 = 3;
    const DELAY: f64 = 1.0;
    let mut server = RealServer::start(Flavor::FastMcp, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;

    let token = "cut-call";
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": STEPS, "delay": DELAY},
                "_meta": {"progressToken": token}}}))
        .await;
    let first = proxy
        .until(|m| m["method"] == "notifications/progress")
        .await;
    assert_eq!(first["params"]["progressToken"], json!(token), "{first}");
    assert!(proxy.seen.is_empty(), "unexpected: {:#?}", proxy.seen);

    server.kill().await;
    let answer = proxy.response(&json!(1)).await;
    let message = error_message(&answer).unwrap_or_else(|| {
        panic!(
            "the cut call got a result, not an error: {answer}\nproxy stderr:\n{}",
            log.tail(40)
        )
    });
    assert!(
        message.contains("may or may not have run"),
        "the cut call's error does not say it may or may not have run: {answer}\nproxy stderr:\n{}",
        log.tail(40)
    );

    let _server = RealServer::start_on(Flavor::FastMcp, mode, port, &[]).await;
    ping_ok(&mut proxy, &log, 2).await;
    echo_ok(&mut proxy, &log, 3, "after the restart").await;
    // A run again would end within STEPS × DELAY of the recovery.
    let later = proxy
        .collect_for(Duration::from_secs_f64(STEPS as f64 * DELAY + 1.5))
        .await;
    let about_the_call: Vec<&Value> = proxy
        .seen
        .iter()
        .chain(&later)
        .filter(|m| {
            m["id"] == json!(1)
                || m["params"]["progressToken"] == json!(token)
                || m["params"]["requestId"] == json!(1)
        })
        .collect();
    assert!(
        about_the_call.is_empty(),
        "the cut call was run again (or answered twice): {about_the_call:#?}\nproxy stderr:\n{}",
        log.tail(40)
    );
}

#[tokio::test]
async fn streamable_http_call_in_flight_gets_one_may_or_may_not_have_run_error() {
    cut_call_gets_one_error_and_is_not_run_again(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn sse_call_in_flight_gets_one_may_or_may_not_have_run_error() {
    cut_call_gets_one_error_and_is_not_run_again(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 4. Subscriptions survive.
// ---------------------------------------------------------------------------

fn is_counter_update(message: &Value) -> bool {
    message["method"] == "notifications/resources/updated"
        && message["params"]["uri"] == "test://counter"
}

/// FastMCP in `mode`: subscribed to test://counter before the
/// restart, the client is sent its update by the new server.
async fn subscription_survives(mode: Mode) {
    let mut server = RealServer::start(Flavor::FastMcp, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;
    let subscribed = proxy
        .request(
            json!(1),
            "resources/subscribe",
            json!({"uri": "test://counter"}),
        )
        .await;
    assert!(subscribed.get("result").is_some(), "{subscribed}");
    let bumped = call(&mut proxy, json!(2), "bump", json!({})).await;
    assert_eq!(tool_text(&bumped), "1", "{bumped}");
    proxy.until(is_counter_update).await;
    proxy.seen.clear();

    server.kill().await;
    let _server = RealServer::start_on(Flavor::FastMcp, mode, port, &[]).await;
    let bumped = call(&mut proxy, json!(3), "bump", json!({})).await;
    assert_eq!(
        tool_text(&bumped),
        "1",
        "not the new server's counter: {bumped}\nproxy stderr:\n{}",
        log.tail(40)
    );
    let update = tokio::time::timeout(Duration::from_secs(10), proxy.until(is_counter_update))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no notifications/resources/updated for test://counter after the restart; seen: {:#?}\nproxy stderr:\n{}",
                proxy.seen,
                log.tail(40)
            )
        });
    assert_eq!(update["params"]["uri"], "test://counter");
    assert_recovery_logged(&log);
}

#[tokio::test]
async fn streamable_http_subscription_still_delivers_updates_after_recovery() {
    subscription_survives(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn sse_subscription_still_delivers_updates_after_recovery() {
    subscription_survives(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 5. A changed tool list is announced; an unchanged one is not.
// ---------------------------------------------------------------------------

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn is_tools_list_changed(message: &Value) -> bool {
    message["method"] == "notifications/tools/list_changed"
}

/// FastMCP in `mode`: the client listed the tools; the server comes
/// back with one more (`--extra-tool extra_one`): `tools/list_changed`,
/// unasked (the client is idle meanwhile). It comes back again with that
/// same list: no `tools/list_changed` (none within 1.5 s of a request
/// that succeeded on the new server).
async fn list_changes_are_announced(mode: Mode) {
    let mut server = RealServer::start(Flavor::FastMcp, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;
    let listed = proxy.request(json!(1), "tools/list", json!({})).await;
    let names = tool_names(&listed);
    assert!(names.iter().any(|n| n == "echo"), "{names:?}");
    assert!(!names.iter().any(|n| n == "extra_one"), "{names:?}");

    server.kill().await;
    server =
        RealServer::start_on(Flavor::FastMcp, mode, port, &["--extra-tool", "extra_one"]).await;
    // The client sends nothing: the proxy sees the loss itself (its GET or
    // SSE stream ends), recovers, and tells the client.
    tokio::time::timeout(WAIT, proxy.until(is_tools_list_changed))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no notifications/tools/list_changed (without a request) after the tool list changed; seen: {:#?}\nproxy stderr:\n{}",
                proxy.seen,
                log.tail(40)
            )
        });
    ping_ok(&mut proxy, &log, 2).await;
    let listed = proxy.request(json!(3), "tools/list", json!({})).await;
    assert!(
        tool_names(&listed).iter().any(|n| n == "extra_one"),
        "{listed}"
    );
    proxy.seen.clear();

    // The same list again: nothing to announce.
    server.kill().await;
    let _server =
        RealServer::start_on(Flavor::FastMcp, mode, port, &["--extra-tool", "extra_one"]).await;
    ping_ok(&mut proxy, &log, 4).await;
    let after = proxy.collect_for(Duration::from_millis(1500)).await;
    let announced: Vec<&Value> = proxy
        .seen
        .iter()
        .chain(&after)
        .filter(|m| is_tools_list_changed(m))
        .collect();
    assert!(
        announced.is_empty(),
        "tools/list_changed sent though the list is the same: {announced:#?}\nproxy stderr:\n{}",
        log.tail(40)
    );
    let recoveries = log.text().matches("reconnected to the daemon").count();
    assert!(
        recoveries >= 2,
        "two recoveries expected, {recoveries} logged:\n{}",
        log.tail(40)
    );
}

#[tokio::test]
async fn streamable_http_changed_tool_list_sends_list_changed_and_same_list_does_not() {
    list_changes_are_announced(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn sse_changed_tool_list_sends_list_changed_and_same_list_does_not() {
    list_changes_are_announced(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 6. The log level is restored.
// ---------------------------------------------------------------------------

fn is_log(message: &Value, data: &str) -> bool {
    message["method"] == "notifications/message" && message["params"]["data"] == data
}

/// `log LEVEL DATA`; the answer must be "logged".
async fn log_call(proxy: &mut Proxy, log: &ProxyLog, id: u64, level: &str, data: &str) {
    let answer = call(
        proxy,
        json!(id),
        "log",
        json!({"level": level, "message": data}),
    )
    .await;
    assert!(
        answer.get("result").is_some() && tool_text(&answer) == "logged",
        "log {level} (id {id}): {answer}\nproxy stderr:\n{}",
        log.tail(40)
    );
}

/// FastMCP in `mode`: `logging/setLevel warning`; after the restart
/// an `info` message is not delivered (the new session got the level
/// again: FastMCP sends everything to a session without one) and an
/// `error` message is.
async fn log_level_survives(mode: Mode) {
    let mut server = RealServer::start(Flavor::FastMcp, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], LOG);
    proxy.initialize().await;
    let set = proxy
        .request(json!(1), "logging/setLevel", json!({"level": "warning"}))
        .await;
    assert!(set.get("result").is_some(), "{set}");
    // The messages travel on the call's own stream, before its answer.
    log_call(&mut proxy, &log, 2, "info", "info before").await;
    log_call(&mut proxy, &log, 3, "error", "error before").await;
    assert!(
        proxy.seen.iter().any(|m| is_log(m, "error before")),
        "{:#?}",
        proxy.seen
    );
    assert!(
        !proxy.seen.iter().any(|m| is_log(m, "info before")),
        "{:#?}",
        proxy.seen
    );
    proxy.seen.clear();

    server.kill().await;
    let _server = RealServer::start_on(Flavor::FastMcp, mode, port, &[]).await;
    log_call(&mut proxy, &log, 4, "info", "info after").await;
    log_call(&mut proxy, &log, 5, "error", "error after").await;
    assert!(
        !proxy.seen.iter().any(|m| is_log(m, "info after")),
        "an info message was delivered after the restart: the level was not restored; seen: {:#?}\nproxy stderr:\n{}",
        proxy.seen,
        log.tail(40)
    );
    assert!(
        proxy.seen.iter().any(|m| is_log(m, "error after")),
        "the error message was not delivered after the restart; seen: {:#?}\nproxy stderr:\n{}",
        proxy.seen,
        log.tail(40)
    );
    assert_recovery_logged(&log);
}

#[tokio::test]
async fn streamable_http_log_level_is_restored_after_recovery() {
    log_level_survives(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn sse_log_level_is_restored_after_recovery() {
    log_level_survives(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 7. A hosted stdio server whose host is killed.
// ---------------------------------------------------------------------------

/// server-everything over stdio behind `mcp-manager host`, under the
/// manager: kill -9 of the host; the manager starts it again and the next
/// call through `--target` succeeds.
#[cfg(unix)]
#[tokio::test]
async fn hosted_stdio_server_whose_host_is_killed_next_call_succeeds() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({"hosted": hosted_everything_entry(port)}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    let before = manager.wait_running("hosted").await;
    let (mut proxy, log) = start_proxy_logged(
        &home,
        &[
            "--target",
            "hosted",
            "--manager-port",
            &manager_port.to_string(),
        ],
        LOG,
    );
    proxy.initialize().await;
    echo_ok(&mut proxy, &log, 1, "before the kill").await;

    let old = pid_of(&before);
    kill_daemon(old).await;
    echo_ok(&mut proxy, &log, 2, "after the kill").await;
    let after = manager
        .wait_status("hosted", WAIT, "running again", |s| {
            s["state"] == "running" && s["pid"].is_u64() && s["pid"] != json!(old)
        })
        .await;
    assert!(after["restarts"].as_u64() >= Some(1), "{after}");
    echo_ok(&mut proxy, &log, 3, "and again").await;
    assert_recovery_logged(&log);
}

// ---------------------------------------------------------------------------
// 8. The bound: --reconnect-timeout.
// ---------------------------------------------------------------------------

/// server-everything in `mode`, `--reconnect-timeout 2`, killed and not started again: a
/// call gets an error within 2–5 s saying the daemon is unreachable (not
/// back); so does the next one. Started again, a later call succeeds.
async fn reconnect_timeout_bounds_the_wait(mode: Mode) {
    let mut server = RealServer::start(Flavor::Everything, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(
        &home,
        &["--url", &server.url(), "--reconnect-timeout", "2"],
        LOG,
    );
    proxy.initialize().await;
    echo_ok(&mut proxy, &log, 1, "before the kill").await;

    server.kill().await;
    for id in [2, 3] {
        let started = Instant::now();
        let answer = call(&mut proxy, json!(id), "echo", json!({"message": "down"})).await;
        let took = started.elapsed();
        let message = error_message(&answer).unwrap_or_else(|| {
            panic!(
                "a call to a dead server succeeded: {answer}\nproxy stderr:\n{}",
                log.tail(40)
            )
        });
        assert!(
            message.contains("unreachable") || message.contains("not back"),
            "the error does not say the daemon is unreachable: {answer}\nproxy stderr:\n{}",
            log.tail(40)
        );
        assert!(
            took <= Duration::from_secs(5),
            "the error for id {id} took {took:?} (bound: 2 s)\nproxy stderr:\n{}",
            log.tail(40)
        );
    }

    let _server = RealServer::start_on(Flavor::Everything, mode, port, &[]).await;
    echo_ok(&mut proxy, &log, 4, "back again").await;
    assert_recovery_logged(&log);
}

#[tokio::test]
async fn streamable_http_reconnect_timeout_bounds_the_wait_then_later_requests_try_again() {
    reconnect_timeout_bounds_the_wait(Mode::StreamableHttp).await;
}

#[tokio::test]
async fn sse_reconnect_timeout_bounds_the_wait_then_later_requests_try_again() {
    reconnect_timeout_bounds_the_wait(Mode::Sse).await;
}

// ---------------------------------------------------------------------------
// 9. Soak: fifty restarts under a steady client.
// ---------------------------------------------------------------------------

/// How the soak's answers ended.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    /// "may or may not have run": a call cut mid-way.
    cut: u64,
    /// "unreachable" / "cannot reach": sent while the daemon was away.
    unreachable: u64,
}

/// server-everything in `mode` (the quickest real server to start: ~0.65
/// s) killed with SIGKILL and started again on its port `restarts` times,
/// while one client sends ping / echo / ping, three in flight at a time,
/// nonstop. Each restart waits for the client to get a success after the
/// previous one (so every restart hits a working session), then lets
/// requests flow for 100 ms. Every batch is answered within 15 s, every
/// request exactly once, each answer a success or one of the errors the
/// feature allows, and the proxy's memory stays flat (Linux: `VmRSS` at the
/// end within 4 MiB of its value after the first 5 restarts).
async fn soak(mode: Mode, restarts: usize) {
    const ANSWER_BOUND: Duration = Duration::from_secs(15);
    #[cfg(target_os = "linux")]
    const RSS_AFTER: usize = 5;
    let started = Instant::now();
    let server = RealServer::start(Flavor::Everything, mode).await;
    let port = server.port;
    let home = TestHome::new();
    let (mut proxy, log) = start_proxy_logged(&home, &["--url", &server.url()], "warn");
    proxy.initialize().await;

    let successes = Arc::new(AtomicU64::new(0));
    let restarts_done = Arc::new(AtomicUsize::new(0));
    let restarter = {
        let successes = Arc::clone(&successes);
        let restarts_done = Arc::clone(&restarts_done);
        let mut server = server;
        tokio::spawn(async move {
            let mut restart_ms = Vec::new();
            for i in 0..restarts {
                // Wait for the client to get through on the current server.
                let seen = successes.load(Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(20);
                while successes.load(Ordering::SeqCst) <= seen + 1 {
                    assert!(
                        Instant::now() < deadline,
                        "restart {i}: the client got no success within 20 s"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let down = Instant::now();
                server.kill().await;
                server = RealServer::start_on(Flavor::Everything, mode, port, &[]).await;
                restart_ms.push(down.elapsed().as_millis());
                restarts_done.fetch_add(1, Ordering::SeqCst);
            }
            (server, restart_ms)
        })
    };

    // Linux: the resident set once the proxy has settled (a few restarts in:
    // the first recoveries allocate what every later one reuses).
    #[cfg(target_os = "linux")]
    let mut rss_start = None;
    let mut answers: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut sent = 0u64;
    let mut slowest = Duration::ZERO;
    let mut batches = 0u64;
    // Until the restarts are over, then three more batches on the last server.
    let mut tail = 3;
    while tail > 0 {
        if restarter.is_finished() {
            tail -= 1;
        }
        let first = sent + 1;
        let batch = [(first, "ping"), (first + 1, "echo"), (first + 2, "ping")];
        for (id, kind) in batch {
            let message = if kind == "ping" {
                json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": format!("soak {id}")}}})
            };
            proxy.send(&message).await;
        }
        sent += 3;
        let batch_started = Instant::now();
        let mut waiting: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
        while !waiting.is_empty() {
            let left = ANSWER_BOUND.saturating_sub(batch_started.elapsed());
            let Some(message) = proxy.next_within(left).await else {
                panic!(
                    "hang: ids {waiting:?} unanswered after {ANSWER_BOUND:?} (batch {batches})\nproxy stderr:\n{}",
                    log.tail(60)
                );
            };
            if message["method"] == "roots/list" && message.get("id").is_some() {
                // server-everything asks every new session for its roots.
                proxy
                    .send(&json!({"jsonrpc": "2.0", "id": message["id"], "result": {"roots": []}}))
                    .await;
                continue;
            }
            if message.get("method").is_some() {
                continue; // notifications (logs, list changes)
            }
            let id = message["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("an answer with an unexpected id: {message}"));
            *answers.entry(id).or_default() += 1;
            waiting.retain(|w| *w != id);
            let is_echo = (id - 1) % 3 == 1;
            match error_message(&message) {
                None => {
                    if is_echo {
                        assert_eq!(tool_text(&message), format!("Echo: soak {id}"), "{message}");
                    } else {
                        assert_eq!(message["result"], json!({}), "{message}");
                    }
                    tally.ok += 1;
                    successes.fetch_add(1, Ordering::SeqCst);
                }
                Some(text) if text.contains("may or may not have run") => tally.cut += 1,
                Some(text)
                    if text.contains("unreachable")
                        || text.contains("cannot reach")
                        || text.contains("not back") =>
                {
                    tally.unreachable += 1;
                }
                Some(_) => panic!(
                    "an answer that is neither a success nor a loss error: {message}\nproxy stderr:\n{}",
                    log.tail(60)
                ),
            }
        }
        slowest = slowest.max(batch_started.elapsed());
        batches += 1;
        #[cfg(target_os = "linux")]
        if rss_start.is_none() && restarts_done.load(Ordering::SeqCst) >= RSS_AFTER {
            rss_start = crate::util::vm_rss_kib(proxy.pid());
        }
    }
    let (server, restart_ms) = restarter.await.expect("the restarter finished");
    #[cfg(target_os = "linux")]
    let rss_end = crate::util::vm_rss_kib(proxy.pid());

    // The end: nothing more may arrive (no late or duplicate answers).
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "mcp-proxy exited with {status}");
    for line in proxy.rest().await {
        let message: Value = serde_json::from_str(&line).expect("JSON line");
        if message.get("method").is_none()
            && let Some(id) = message["id"].as_u64()
        {
            *answers.entry(id).or_default() += 1;
        }
    }
    drop(server);

    let twice: Vec<(&u64, &u32)> = answers.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    assert_eq!(
        answers.len() as u64,
        sent,
        "requests without an answer: {:?}",
        (1..=sent)
            .filter(|id| !answers.contains_key(id))
            .collect::<Vec<_>>()
    );
    assert_eq!(tally.ok + tally.cut + tally.unreachable, sent, "{tally:?}");
    let recoveries = log.text().matches("reconnected to the daemon").count();
    eprintln!(
        "soak ({mode:?}): {restarts} restarts, {sent} requests ({tally:?}), {recoveries} recoveries, slowest batch {slowest:?}, restart ms {restart_ms:?}, {:?} in all",
        started.elapsed()
    );
    assert!(
        recoveries >= restarts,
        "{recoveries} recoveries logged for {restarts} restarts"
    );
    #[cfg(target_os = "linux")]
    {
        let (start, end) = (
            rss_start.expect("VmRSS at the start"),
            rss_end.expect("VmRSS at the end"),
        );
        eprintln!(
            "soak ({mode:?}): proxy VmRSS {start} KiB after {RSS_AFTER} restarts, {end} KiB at the end"
        );
        assert!(
            end <= start + 4 * 1024,
            "the proxy's memory grew from {start} KiB to {end} KiB over {restarts} restarts"
        );
    }
}

/// Fifty restarts of a Streamable HTTP daemon (about 50 s: a restart takes
/// ~0.6 s to start node, ~0.1 s more to recover, plus 100 ms of traffic).
#[tokio::test]
async fn soak_fifty_restarts_every_request_answered_once_no_hang_flat_memory() {
    soak(Mode::StreamableHttp, 50).await;
}

/// The same over legacy SSE, twenty restarts (about 20 s; the
/// Streamable HTTP soak already spends the minute this file may take).
#[tokio::test]
async fn sse_soak_twenty_restarts_every_request_answered_once_no_hang_flat_memory() {
    soak(Mode::Sse, 20).await;
}
