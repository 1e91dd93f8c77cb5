//! Fault injection: `mcp-proxy --url` against the in-repo fake daemon, one
//! behaviour of the proxy per test (mcp-transport.md §1–§5 and §6).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::fake_daemon::{Behaviour, FakeDaemon, Fault, GetMode, Recorded, ReplyMode, SseStyle};
use crate::util::{Proxy, TestHome, free_port, tool_text};

/// How long the fake daemon may take to see a request the proxy must send.
const T: Duration = Duration::from_secs(5);
/// The fake daemon's default session id.
const SID: &str = "fake-session-0123456789abcdef";
/// The fake daemon's default legacy endpoint.
const LEGACY_PATH: &str = "/messages/?session_id=a%2Fb";

/// A fake daemon and a proxy pointed at its `path` (`/mcp` or `/sse`).
async fn rig(behaviour: Behaviour, path: &str) -> (FakeDaemon, TestHome, Proxy) {
    let daemon = FakeDaemon::start(behaviour).await;
    let home = TestHome::new();
    let proxy = Proxy::start(&home, &["--url", &daemon.url(path)]);
    (daemon, home, proxy)
}

fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn echo(id: Value, message: &str) -> Value {
    let params = json!({"name": "echo", "arguments": {"message": message}});
    request(id, "tools/call", params)
}

fn is_get(r: &Recorded) -> bool {
    r.method == "GET"
}

/// A GET that resumes a stream (one carrying `Last-Event-ID`).
fn is_resume(r: &Recorded) -> bool {
    is_get(r) && r.header("last-event-id").is_some()
}

fn posts_of(daemon: &FakeDaemon, rpc_method: &str) -> Vec<Recorded> {
    let all = daemon.requests().into_iter();
    all.filter(|r| r.is_post_of(rpc_method)).collect()
}

/// Waits for the `n`-th POST of `rpc_method`.
async fn nth_post(daemon: &FakeDaemon, n: usize, rpc_method: &str) -> Recorded {
    let found = daemon
        .wait_for_nth(n, |r| r.is_post_of(rpc_method), T)
        .await;
    found.unwrap_or_else(|| panic!("POST #{n} of {rpc_method} never reached the daemon"))
}

/// The standalone GET stream has been opened (and registered by the daemon).
async fn get_stream_opened(daemon: &FakeDaemon) -> Recorded {
    let found = daemon.wait_for(|r| is_get(r) && !is_resume(r), T).await;
    found.expect("the proxy never opened the GET stream")
}

/// `initialize` and `initialized`, then a ping: once it is answered the daemon
/// has accepted `initialized` (requests wait for the notifications before
/// them), and the GET stream is open.
async fn ready(daemon: &FakeDaemon, proxy: &mut Proxy) {
    proxy.initialize().await;
    let pong = proxy.request(json!("ready"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    get_stream_opened(daemon).await;
}

/// An error made by the proxy for the request `id`.
fn assert_proxy_error(answer: &Value, id: &Value) {
    assert_eq!(&answer["id"], id, "{answer}");
    assert_eq!(answer["error"]["code"], json!(-32603), "{answer}");
    assert!(answer.get("result").is_none(), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "an error without a message: {answer}");
}

/// Ends the session with EOF; the proxy must exit 0 (within 10 s).
async fn eof_and_exit(proxy: &mut Proxy) {
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

// ── 1. End of the session ───────────────────────────────────────────────────

/// EOF on stdin sends `DELETE /mcp` carrying the session id, then exits 0.
#[tokio::test]
async fn eof_sends_delete_with_the_session_id_and_exits_zero() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    ready(&daemon, &mut proxy).await;
    eof_and_exit(&mut proxy).await;
    let deletes: Vec<_> = daemon
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, "/mcp");
    assert_eq!(deletes[0].header("mcp-session-id"), Some(SID));
}

/// With nothing in flight, EOF ends the process at once (the DELETE is
/// answered immediately; nothing else is worth waiting for).
#[tokio::test]
async fn eof_on_an_idle_session_exits_within_a_second() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    ready(&daemon, &mut proxy).await;
    let started = Instant::now();
    eof_and_exit(&mut proxy).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
}

/// Notifications the client sent just before EOF reach the daemon, before the
/// `DELETE` that ends the session (and no new session is opened for them).
#[tokio::test]
async fn notifications_sent_just_before_eof_reach_the_daemon_before_delete() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "faults", "version": "0"}});
    let init = proxy.request(json!(0), "initialize", params).await;
    assert!(init.get("result").is_some(), "{init}");
    let last_words = [
        "notifications/initialized",
        "notifications/roots/list_changed",
    ];
    for method in last_words {
        proxy.notify(method, json!({})).await;
    }
    eof_and_exit(&mut proxy).await;
    let all = daemon.requests();
    let order: Vec<_> = all.iter().map(|r| (&r.method, r.json())).collect();
    let delete = all.iter().find(|r| r.method == "DELETE");
    let delete = delete.expect("DELETE sent").seq;
    for method in last_words {
        let posted = all.iter().find(|r| r.is_post_of(method)).map(|r| r.seq);
        let before = posted.is_some_and(|seq| seq < delete);
        assert!(before, "{method} not POSTed before DELETE: {order:?}");
    }
    let inits = posts_of(&daemon, "initialize").len();
    assert_eq!(inits, 1, "a new session was opened: {order:?}");
}

/// A daemon that refuses `DELETE` with 405 still sees the proxy exit 0.
#[tokio::test]
async fn eof_exits_zero_when_delete_is_refused_with_405() {
    let behaviour = Behaviour::default().with(|b| b.delete_status = 405);
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    ready(&daemon, &mut proxy).await;
    eof_and_exit(&mut proxy).await;
    let delete = daemon.requests().into_iter().find(|r| r.method == "DELETE");
    let delete = delete.expect("DELETE sent although the daemon refuses it");
    assert_eq!(delete.header("mcp-session-id"), Some(SID));
}

// ── 2. Headers ──────────────────────────────────────────────────────────────

/// Session and version headers follow `initialize` (not on it), every request
/// names the project (the proxy's cwd), POSTs accept JSON and SSE, and no
/// request ever carries `Origin`.
#[tokio::test]
async fn every_request_carries_the_session_version_and_project_headers() {
    let daemon = FakeDaemon::start(Behaviour::default()).await;
    let home = TestHome::new();
    let project = tempfile::tempdir().expect("project dir");
    let cwd = project
        .path()
        .canonicalize()
        .expect("canonical project dir");
    let url = daemon.url("/mcp");
    let mut proxy = Proxy::start_with(&home, &["--url", &url], |c| {
        c.current_dir(&cwd);
    });
    // An older version than the fake's default, so the header must be the negotiated one.
    let params = json!({"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "faults", "version": "0"}});
    let init = proxy.request(json!(0), "initialize", params).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    proxy.notify("notifications/initialized", json!({})).await;
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    proxy.send(&echo(json!(2), "hi")).await;
    assert_eq!(tool_text(&proxy.response(&json!(2)).await), "hi");
    get_stream_opened(&daemon).await;
    eof_and_exit(&mut proxy).await;

    let all = daemon.requests();
    let kinds: Vec<_> = all.iter().map(|r| r.method.as_str()).collect();
    for kind in ["POST", "GET", "DELETE"] {
        assert!(kinds.contains(&kind), "no {kind} recorded: {kinds:?}");
    }
    let project_path = cwd.to_str().expect("UTF-8 temp path");
    for r in &all {
        let what = format!("{} {} {:?}", r.method, r.path, r.json());
        assert_eq!(r.header("mcp-project-path"), Some(project_path), "{what}");
        assert_eq!(r.header("origin"), None, "{what}");
        if r.method == "POST" {
            let accept = r.header("accept");
            assert_eq!(
                accept,
                Some("application/json, text/event-stream"),
                "{what}"
            );
            assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        }
        if r.is_post_of("initialize") {
            assert_eq!(r.header("mcp-session-id"), None, "{what}");
            assert_eq!(r.header("mcp-protocol-version"), None, "{what}");
        } else {
            assert_eq!(r.header("mcp-session-id"), Some(SID), "{what}");
            assert_eq!(
                r.header("mcp-protocol-version"),
                Some("2025-06-18"),
                "{what}"
            );
        }
    }
}

// ── 3. and 4. Faithful messages ─────────────────────────────────────────────

/// A 10 MiB message goes through and comes back byte-exact on one line.
#[tokio::test]
async fn a_ten_mib_message_round_trips_byte_exact_on_one_line() {
    let (_daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    proxy.initialize().await;
    let unit =
        "Lorem ipsum dolor sit amet, consectetur adipiscing \u{e9}lit \u{1F980}\n\"q\"\t\u{2028}. ";
    let message = unit.repeat(10 * 1024 * 1024 / unit.len() + 1);
    assert!(message.len() >= 10 * 1024 * 1024);
    // Serialised once (debug builds are slow), spliced into both lines.
    let text = serde_json::to_string(&message).expect("a string serialises");
    let splice = |v: Value| v.to_string().replace("\"@TEXT@\"", &text);
    let call = json!({"jsonrpc": "2.0", "id": "big", "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "@TEXT@"}}});
    proxy.send_raw(&splice(call)).await;
    let line = proxy.next_line().await;
    // What the fake daemon writes, serialised the same way.
    let content = json!([{"type": "text", "text": "@TEXT@"}]);
    let expected = splice(json!({"jsonrpc": "2.0", "id": "big", "result": {"content": content}}));
    assert!(
        line == expected,
        "the echo came back altered ({} bytes, expected {})",
        line.len(),
        expected.len()
    );
}

/// Ids come back byte for byte: a number beyond f64 precision, a string, a
/// non-ASCII string; and the POSTed request is the client's exact bytes.
#[tokio::test]
async fn ids_are_kept_byte_exact() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    proxy.initialize().await;
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}"#,
            r#""id":9007199254740993"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#,
            r#""id":"x""#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"ïd-🦀","method":"ping"}"#,
            r#""id":"ïd-🦀""#,
        ),
    ];
    for (n, (sent, id_text)) in cases.into_iter().enumerate() {
        proxy.send_raw(sent).await;
        let line = proxy.next_line().await;
        assert!(line.contains(id_text), "{id_text} not in {line}");
        assert!(line.contains(r#""result":{}"#), "{line}");
        let posted = nth_post(&daemon, n + 1, "ping").await;
        assert_eq!(
            &posted.body[..],
            sent.as_bytes(),
            "the POST body was rewritten"
        );
    }
}

// ── 5. and 6. Answer formats ────────────────────────────────────────────────

/// SSE answers with CR, CRLF or LF endings, a priming event, multi-line data,
/// keepalive comments and an `event: other` give exactly the progress lines
/// and the response line: nothing blank, no `{}`, nothing of the other event.
#[tokio::test]
async fn hostile_sse_answers_give_exactly_the_messages() {
    for eol in ["\r", "\r\n", "\n"] {
        let with_progress = SseStyle {
            progress: 2,
            ..SseStyle::hostile(eol)
        };
        let behaviour = Behaviour::default()
            .with(|b| b.reply = ReplyMode::Sse(SseStyle::hostile(eol)))
            .with_reply("tools/call", ReplyMode::Sse(with_progress));
        let (_daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;

        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                            "clientInfo": {"name": "faults", "version": "0"}});
        proxy.send(&request(json!(0), "initialize", params)).await;
        let init = proxy.next().await;
        assert_eq!(init["id"], json!(0), "{eol:?}: {init}");
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{eol:?}");
        proxy.notify("notifications/initialized", json!({})).await;

        let mut call = echo(json!(1), "multi\nline ü");
        call["params"]["_meta"] = json!({"progressToken": "tok"});
        proxy.send(&call).await;
        for i in 1..=2 {
            let progress = proxy.next().await;
            assert_eq!(
                progress["method"], "notifications/progress",
                "{eol:?}: {progress}"
            );
            let p = &progress["params"];
            assert_eq!(
                (&p["progressToken"], &p["progress"]),
                (&json!("tok"), &json!(i))
            );
            assert_eq!(p["total"], json!(2), "{eol:?}: {progress}");
        }
        let answer = proxy.next().await;
        assert_eq!(answer["id"], json!(1), "{eol:?}: {answer}");
        assert_eq!(tool_text(&answer), "multi\nline ü", "{eol:?}");

        // Nothing else was written in between: the next line answers the next request.
        proxy.send(&request(json!(2), "ping", json!({}))).await;
        let pong = proxy.next().await;
        assert_eq!(
            (&pong["id"], &pong["result"]),
            (&json!(2), &json!({})),
            "{eol:?}"
        );
    }
}

/// An `application/json` body holding an array (a 2025-03-26 batch answer)
/// is accepted: the client gets the response object.
#[tokio::test]
async fn a_json_array_body_is_accepted() {
    let behaviour = Behaviour::default().with(|b| b.reply = ReplyMode::JsonArray);
    let (_daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    proxy.send(&echo(json!(1), "in an array")).await;
    let answer = proxy.next().await;
    assert!(answer.is_object(), "{answer}");
    assert_eq!(answer["id"], json!(1), "{answer}");
    assert_eq!(tool_text(&answer), "in an array");
}

// ── 7. Cut streams ──────────────────────────────────────────────────────────

/// A POST stream cut after its first progress event is resumed with
/// `Last-Event-ID`, and the rest of the progress and the result still arrive,
/// in order.
#[tokio::test]
async fn a_cut_post_stream_is_resumed_with_last_event_id() {
    // A clean end of the body: with `cut_abrupt` the fake daemon's abort also
    // drops the events written just before it, so no id would reach the proxy.
    let style = SseStyle {
        priming: true,
        progress: 3,
        cut_after: Some(2), // the priming event and progress 1
        ..SseStyle::default()
    };
    let behaviour = Behaviour::default().with_reply("tools/call", ReplyMode::Sse(style));
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    proxy.send(&echo(json!("cut"), "after the cut")).await;
    for i in 1..=3 {
        let progress = proxy.next().await;
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        assert_eq!(progress["params"]["progress"], json!(i), "{progress}");
    }
    let answer = proxy.next().await;
    assert_eq!(answer["id"], json!("cut"), "{answer}");
    assert_eq!(tool_text(&answer), "after the cut");
    // The only SSE POST stream is number 0; its event 1 was the last one read.
    let resume = daemon.wait_for(is_resume, T).await.expect("a resuming GET");
    assert_eq!(resume.header("last-event-id"), Some("0-1"));
    assert_eq!(resume.header("mcp-session-id"), Some(SID));
}

/// A POST stream cut before its response and without event ids cannot be
/// resumed: the request gets a JSON-RPC error (not a hang).
#[tokio::test]
async fn a_cut_stream_without_ids_gives_an_error_for_that_id() {
    let style = SseStyle {
        no_ids: true,
        progress: 1,
        cut_after: Some(1),
        ..SseStyle::default()
    };
    let behaviour = Behaviour::default().with_reply("tools/call", ReplyMode::Sse(style));
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    proxy.send(&echo(json!("lost"), "never")).await;
    let progress = proxy.next().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    let answer = proxy.next().await;
    assert_proxy_error(&answer, &json!("lost"));
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(
        !daemon.requests().iter().any(is_resume),
        "resumed without an id"
    );
}

// ── 8. Lost sessions ────────────────────────────────────────────────────────

/// Checks a re-initialization: a second `initialize` (and `initialized`) went
/// out, the retried request carried the new session, and the client saw
/// neither the second initialize result nor anything else extra.
async fn assert_reinitialized(daemon: &FakeDaemon, proxy: &mut Proxy, retried: &str) {
    let second = nth_post(daemon, 2, "initialize").await;
    assert_eq!(second.header("mcp-session-id"), None);
    let initialized = nth_post(daemon, 2, "notifications/initialized").await;
    let new_sid = format!("{SID}-1");
    assert_eq!(initialized.header("mcp-session-id"), Some(new_sid.as_str()));
    let attempts = posts_of(daemon, retried);
    let sids: Vec<_> = attempts
        .iter()
        .map(|r| r.header("mcp-session-id"))
        .collect();
    assert_eq!(
        sids,
        [Some(SID), Some(new_sid.as_str())],
        "{retried} attempts"
    );
    // One more round trip flushes anything the proxy might have written.
    let pong = proxy.request(json!("after"), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(proxy.seen.is_empty(), "unexpected lines: {:?}", proxy.seen);
}

/// A 404 for our session (the daemon restarted) opens a new session with the
/// client's `initialize`, and the failed request is sent again and answered.
#[tokio::test]
async fn a_forgotten_session_is_reinitialized_and_the_request_retried() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    ready(&daemon, &mut proxy).await;
    daemon.forget_sessions();
    proxy.send(&echo(json!(1), "again")).await;
    let answer = proxy.response(&json!(1)).await;
    assert_eq!(tool_text(&answer), "again", "{answer}");
    assert_reinitialized(&daemon, &mut proxy, "tools/call").await;
}

/// A session that expires (404 after some requests) is re-initialized the
/// same way, transparently to the client.
#[tokio::test]
async fn an_expired_session_is_reinitialized_and_the_request_retried() {
    // `initialized` and the GET stream use the session twice; the third use is a 404.
    let behaviour = Behaviour::default().with(|b| b.expire_session_after = Some(2));
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    get_stream_opened(&daemon).await;
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert_reinitialized(&daemon, &mut proxy, "ping").await;
}

/// See: issue 13, item 11. An `initialize` cut by a daemon restart (the
/// daemon read it and died before answering) is sent again on the daemon
/// that comes back on the same port: the client gets its one answer, a
/// result, and the session works. Both transports.
#[tokio::test]
async fn an_initialize_cut_by_a_restart_is_sent_again() {
    for path in ["/mcp", "/sse"] {
        let behaviour = Behaviour::default().with_fault("initialize", Fault::Hang);
        let (daemon, _home, mut proxy) = rig(behaviour, path).await;
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                            "clientInfo": {"name": "faults", "version": "0"}});
        proxy.send(&request(json!(0), "initialize", params)).await;
        nth_post(&daemon, 1, "initialize").await;
        let addr = daemon.addr;
        daemon.stop().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let daemon = FakeDaemon::start_at(addr, Behaviour::default())
            .await
            .expect("the fake daemon starts again on its port");
        let answer = proxy.response(&json!(0)).await;
        assert!(
            answer["result"]["protocolVersion"].is_string(),
            "{path}: {answer}"
        );
        proxy.notify("notifications/initialized", json!({})).await;
        let pong = proxy.request(json!(1), "ping", json!({})).await;
        assert_eq!(pong["result"], json!({}), "{path}: {pong}");
        assert_eq!(
            posts_of(&daemon, "initialize").len(),
            1,
            "{path}: one initialize on the new daemon"
        );
        let extra: Vec<_> = proxy
            .seen
            .iter()
            .filter(|m| m.get("id").is_some())
            .collect();
        assert!(extra.is_empty(), "{path}: extra answers: {extra:?}");
        eof_and_exit(&mut proxy).await;
    }
}

// ── 9. The GET stream ───────────────────────────────────────────────────────

async fn get_refused_with(status: u16) {
    let behaviour = Behaviour::default().with(|b| b.get = GetMode::Status(status));
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    get_stream_opened(&daemon).await;
    // The proxy would retry after 1 s; give it twice that.
    let again = daemon.wait_for_nth(2, is_get, Duration::from_secs(2)).await;
    assert!(again.is_none(), "GET retried after {status}: {again:?}");
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

/// A GET answered 405 (no stream offered) or 409 (one already open) is not
/// retried.
#[tokio::test]
async fn a_get_stream_refused_with_405_or_409_is_not_retried() {
    tokio::join!(get_refused_with(405), get_refused_with(409));
}

/// A GET stream that ends after `retry: 300` is reopened after about 300 ms
/// (not the default 1 s), with `Last-Event-ID` of its last event.
#[tokio::test]
async fn a_closed_get_stream_reconnects_after_retry_with_last_event_id() {
    let mode = GetMode::RetryThenClose {
        retry_ms: 300,
        times: 1,
    };
    let behaviour = Behaviour::default().with(|b| b.get = mode);
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    let first = get_stream_opened(&daemon).await;
    let second = daemon.wait_for_nth(2, is_get, T).await;
    let second = second.expect("the GET stream was not reopened");
    assert_eq!(second.header("last-event-id"), Some("g0"));
    assert_eq!(second.header("mcp-session-id"), Some(SID));
    let gap = second.at.duration_since(first.at);
    assert!(
        gap >= Duration::from_millis(280) && gap < Duration::from_secs(1),
        "reconnected after {gap:?}, not the server's 300 ms"
    );
}

/// A server `ping` on the GET stream reaches the client, and the client's
/// answer is POSTed back to the daemon in the session.
#[tokio::test]
async fn a_server_ping_on_the_get_stream_reaches_the_client_and_back() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    proxy.initialize().await;
    get_stream_opened(&daemon).await;
    daemon.push_get_event(r#"{"jsonrpc":"2.0","id":"srv-1","method":"ping"}"#);
    let ping = proxy.until(|v| v["method"] == "ping").await;
    assert_eq!(ping["id"], json!("srv-1"), "{ping}");
    proxy
        .send(&json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}}))
        .await;
    let is_answer = |r: &Recorded| {
        let body = r.json().unwrap_or_default();
        r.method == "POST" && body["id"] == "srv-1" && body.get("result").is_some()
    };
    let answer = daemon.wait_for(is_answer, T).await;
    let answer = answer.expect("the client's answer never reached the daemon");
    assert_eq!(answer.header("mcp-session-id"), Some(SID));
}

// ── 10. and 11. HTTP failures ───────────────────────────────────────────────

/// HTTP faults become JSON-RPC errors carrying the request id: a 500 (with
/// its status in `data`), a body that is not JSON, a wrong content type, and
/// a redirect, which is not followed. The session goes on.
#[tokio::test]
async fn http_faults_become_json_rpc_errors_with_the_request_id() {
    let elsewhere = FakeDaemon::start(Behaviour::default()).await;
    let behaviour = Behaviour::default()
        .with_fault("boom", Fault::Status(500, "boom".into()))
        .with_fault("garbage", Fault::Garbage)
        .with_fault("html", Fault::WrongContentType)
        .with_fault("moved", Fault::Redirect(elsewhere.url("/mcp")));
    let (_daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;

    let boom = proxy.request(json!("e500"), "boom", json!({})).await;
    assert_proxy_error(&boom, &json!("e500"));
    assert_eq!(boom["error"]["data"]["status"], json!(500), "{boom}");
    assert_eq!(boom["error"]["data"]["body"], json!("boom"), "{boom}");
    for (id, method) in [(1, "garbage"), (2, "html"), (3, "moved")] {
        let answer = proxy.request(json!(id), method, json!({})).await;
        assert_proxy_error(&answer, &json!(id));
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
    let pong = proxy.request(json!(4), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(proxy.seen.is_empty(), "unexpected lines: {:?}", proxy.seen);
}

/// With nothing listening, each request gets an error line with its id and
/// the proxy keeps running.
#[tokio::test]
async fn a_refused_connection_gives_an_error_per_request_and_the_proxy_goes_on() {
    let home = TestHome::new();
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let mut proxy = Proxy::start(&home, &["--url", &url]);
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "faults", "version": "0"}});
    let init = proxy.request(json!(0), "initialize", params).await;
    assert_proxy_error(&init, &json!(0));
    for id in [1, 2] {
        let answer = proxy.request(json!(id), "ping", json!({})).await;
        assert_proxy_error(&answer, &json!(id));
    }
    let running = proxy.child.try_wait().expect("try_wait");
    assert!(running.is_none(), "the proxy ended: {running:?}");
}

/// See: issue 13, item 11. A daemon that closes a keep-alive connection
/// with the next request unread (TCP resets it: the request on the pooled
/// connection never reached it) costs the client nothing: every request is
/// sent again on a new connection, answered once, and read by the daemon
/// once. Both transports; `tools/call` included (it is never sent twice
/// unless the daemon provably did not read it).
#[tokio::test]
async fn a_request_on_a_pooled_connection_the_daemon_reset_is_sent_again() {
    for path in ["/mcp", "/sse"] {
        let behaviour = Behaviour::default().with(|b| b.reset_reused = true);
        let (daemon, _home, mut proxy) = rig(behaviour, path).await;
        proxy.initialize().await;
        for n in 0..5 {
            let message = format!("pooled-{n}");
            let answer = proxy
                .request(
                    json!(n + 1),
                    "tools/call",
                    json!({"name": "echo", "arguments": {"message": message}}),
                )
                .await;
            assert_eq!(tool_text(&answer), message, "{path}: {answer}");
        }
        for n in 0..5 {
            let message = format!("pooled-{n}");
            let read = daemon
                .requests()
                .iter()
                .filter(|r| {
                    r.json()
                        .is_some_and(|v| v["params"]["arguments"]["message"] == message.as_str())
                })
                .count();
            assert_eq!(read, 1, "{path}: the daemon read {message} {read} times");
        }
        let extra: Vec<_> = proxy
            .seen
            .iter()
            .filter(|m| m.get("id").is_some())
            .collect();
        assert!(extra.is_empty(), "{path}: extra answers: {extra:?}");
        assert!(
            daemon.connections() > 3,
            "{path}: the connections were not reset"
        );
        eof_and_exit(&mut proxy).await;
    }
}

// ── 12. Cancellation ────────────────────────────────────────────────────────

/// A cancelled request that never finishes gets no invented answer, the
/// cancellation is forwarded, later requests work, and EOF still exits
/// promptly although the hanging POST stream stays open.
#[tokio::test]
async fn a_cancelled_hanging_request_gets_no_answer_and_eof_is_still_prompt() {
    let hang_style = SseStyle {
        progress: 1,
        ..SseStyle::default()
    };
    let behaviour = Behaviour::default().with_reply("hang", ReplyMode::Sse(hang_style));
    let (daemon, _home, mut proxy) = rig(behaviour, "/mcp").await;
    proxy.initialize().await;
    proxy.send(&request(json!("h"), "hang", json!({}))).await;
    // Its stream is open: the progress event came through.
    let progress = proxy.next().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    let cancel = json!({"requestId": "h", "reason": "user"});
    proxy.notify("notifications/cancelled", cancel).await;
    let forwarded = nth_post(&daemon, 1, "notifications/cancelled").await;
    assert_eq!(forwarded.json().expect("json")["params"]["requestId"], "h");
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    let started = Instant::now();
    eof_and_exit(&mut proxy).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "EOF took {took:?}");
    let rest = proxy.rest().await;
    let seen = proxy.seen.iter().map(Value::to_string);
    let invented: Vec<_> = seen
        .chain(rest)
        .filter(|l| l.contains(r#""id":"h""#))
        .collect();
    assert!(
        invented.is_empty(),
        "an answer for the cancelled request: {invented:?}"
    );
}

// ── 13. Batches ─────────────────────────────────────────────────────────────

/// A batch of two requests and a notification gets exactly one array line
/// with both answers; a batch of notifications only gets no line.
#[tokio::test]
async fn a_batch_gets_one_array_line_and_notifications_only_get_none() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    proxy.initialize().await;
    proxy
        .send_raw(concat!(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},"#,
            r#"{"jsonrpc":"2.0","method":"notifications/batched"},"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}]"#
        ))
        .await;
    let line = proxy.next().await;
    let answers = line.as_array().expect("one array line");
    let mut ids: Vec<_> = answers.iter().map(|a| a["id"].clone()).collect();
    ids.sort_by_key(Value::to_string);
    assert_eq!(ids, [json!(1), json!(2)], "{line}");
    assert!(answers.iter().all(|a| a["result"] == json!({})), "{line}");
    nth_post(&daemon, 1, "notifications/batched").await;

    proxy
        .send_raw(concat!(
            r#"[{"jsonrpc":"2.0","method":"notifications/a"},"#,
            r#"{"jsonrpc":"2.0","method":"notifications/b"}]"#
        ))
        .await;
    nth_post(&daemon, 1, "notifications/a").await;
    nth_post(&daemon, 1, "notifications/b").await;
    proxy.send(&request(json!(3), "ping", json!({}))).await;
    let next = proxy.next().await;
    assert_eq!(
        (&next["id"], &next["result"]),
        (&json!(3), &json!({})),
        "{next}"
    );
}

/// See: issue 13, item 11. A batch is always answered with an array, whatever
/// it holds: `[initialize]` (which the proxy keeps for a replay), a request
/// with `"id": null` (-32600 with a null id, in the array), a request the
/// proxy fails itself; and a batch of notifications only gets no line.
#[tokio::test]
async fn a_batch_is_always_answered_with_an_array() {
    for path in ["/mcp", "/sse"] {
        let (daemon, _home, mut proxy) = rig(Behaviour::default(), path).await;
        let init = request(
            json!(0),
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "faults", "version": "0"}}),
        );
        proxy.send_raw(&format!("[{init}]")).await;
        let line = proxy.next().await;
        let answers = line
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not an array: {line}"));
        assert_eq!(answers.len(), 1, "{path}: {line}");
        assert_eq!(answers[0]["id"], json!(0), "{path}: {line}");
        assert!(
            answers[0]["result"]["protocolVersion"].is_string(),
            "{path}: {line}"
        );
        proxy
            .send_raw(r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#)
            .await;

        proxy
            .send_raw(concat!(
                r#"[{"jsonrpc":"2.0","id":null,"method":"ping"},"#,
                r#"{"jsonrpc":"2.0","id":"p","method":"ping"}]"#
            ))
            .await;
        let line = proxy.next().await;
        let answers = line
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not an array: {line}"));
        assert_eq!(answers.len(), 2, "{path}: {line}");
        let invalid = answers
            .iter()
            .find(|a| a["id"].is_null())
            .expect("the null id's answer");
        assert_eq!(invalid["error"]["code"], json!(-32600), "{path}: {line}");
        assert!(
            answers
                .iter()
                .any(|a| a["id"] == "p" && a["result"] == json!({})),
            "{path}: {line}"
        );

        // Only notifications: no answer at all; the next request is answered first.
        proxy
            .send_raw(r#"[{"jsonrpc":"2.0","method":"notifications/a"}]"#)
            .await;
        nth_post(&daemon, 1, "notifications/a").await;
        let pong = proxy.request(json!("after"), "ping", json!({})).await;
        assert_eq!(pong["result"], json!({}), "{path}: {pong}");
        assert!(
            proxy.seen.is_empty(),
            "{path}: unexpected lines: {:?}",
            proxy.seen
        );
        eof_and_exit(&mut proxy).await;
    }
}

/// See: issue 13, item 11. A request whose id is `null` is answered -32600
/// with a null id (it is not a notification), and is not sent to the daemon;
/// a notification (no `id` at all) still goes through unanswered.
#[tokio::test]
async fn a_request_with_a_null_id_gets_invalid_request() {
    let (daemon, _home, mut proxy) = rig(Behaviour::default(), "/mcp").await;
    proxy.initialize().await;
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo","arguments":{"message":"null-id"}}}"#)
        .await;
    let answer = proxy.next().await;
    assert!(answer["id"].is_null(), "{answer}");
    assert_eq!(answer["error"]["code"], json!(-32600), "{answer}");
    proxy.notify("notifications/plain", json!({})).await;
    nth_post(&daemon, 1, "notifications/plain").await;
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(proxy.seen.is_empty(), "unexpected lines: {:?}", proxy.seen);
    let posted = daemon
        .requests()
        .iter()
        .filter(|r| r.json().is_some_and(|v| v.to_string().contains("null-id")))
        .count();
    assert_eq!(posted, 0, "the invalid request reached the daemon");
}

// ── 14. Legacy HTTP+SSE ─────────────────────────────────────────────────────

/// The legacy `endpoint` (absolute path or relative reference, with an
/// encoded query) is used byte for byte for every POST, notifications included.
#[tokio::test]
async fn the_legacy_endpoint_is_used_byte_for_byte_for_every_post() {
    for endpoint in [LEGACY_PATH, "messages/?session_id=a%2Fb"] {
        let behaviour = Behaviour::default().with(|b| b.legacy_endpoint = endpoint.into());
        let (daemon, _home, mut proxy) = rig(behaviour, "/sse").await;
        proxy.initialize().await;
        proxy.send(&echo(json!(1), "legacy")).await;
        assert_eq!(tool_text(&proxy.response(&json!(1)).await), "legacy");
        proxy
            .notify("notifications/roots/list_changed", json!({}))
            .await;
        nth_post(&daemon, 1, "notifications/roots/list_changed").await;
        let posts: Vec<_> = daemon
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(posts.len(), 4, "{endpoint}: {posts:?}");
        for post in &posts {
            assert_eq!(post.path, LEGACY_PATH, "{endpoint}: {:?}", post.json());
            assert_eq!(post.header("mcp-session-id"), None);
        }
    }
}

/// An `endpoint` on another origin is refused: nothing is posted there (nor
/// anywhere) and the client's request gets an error instead.
#[tokio::test]
async fn a_legacy_endpoint_on_another_origin_is_refused() {
    let elsewhere = FakeDaemon::start(Behaviour::default()).await;
    let foreign = elsewhere.url("/x");
    let behaviour = Behaviour::default().with(|b| b.legacy_endpoint = foreign);
    let (daemon, _home, mut proxy) = rig(behaviour, "/sse").await;
    let params = json!({"protocolVersion": "2024-11-05", "capabilities": {},
                        "clientInfo": {"name": "faults", "version": "0"}});
    proxy.send(&request(json!(0), "initialize", params)).await;
    let answer = tokio::time::timeout(T, proxy.next()).await;
    let answer = answer.expect("no error within 5 s for a request that cannot be posted");
    assert_proxy_error(&answer, &json!(0));
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    let posts = daemon.requests().into_iter().filter(|r| r.method == "POST");
    assert_eq!(posts.count(), 0);
}

/// When the legacy stream ends, the request posted on it gets an error, the
/// proxy reconnects, replays `initialize` on the new endpoint (unseen by the
/// client), and a later request succeeds there.
#[tokio::test]
async fn a_dropped_legacy_stream_fails_posted_requests_and_reconnects() {
    // Each stream carries two messages: the initialize result and one more.
    let behaviour = Behaviour::default().with(|b| b.legacy_close_after = Some(2));
    let (daemon, _home, mut proxy) = rig(behaviour, "/sse").await;
    proxy.initialize().await;
    proxy.send(&request(json!("h"), "hang", json!({}))).await;
    nth_post(&daemon, 1, "hang").await;
    // Its answer is the stream's second message: the stream then ends.
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    let failed = proxy.response(&json!("h")).await;
    assert_proxy_error(&failed, &json!("h"));

    proxy.send(&echo(json!(2), "reconnected")).await;
    let answer = proxy.response(&json!(2)).await;
    assert_eq!(tool_text(&answer), "reconnected", "{answer}");
    let new_path = format!("{LEGACY_PATH}-1");
    let replayed = nth_post(&daemon, 2, "initialize").await;
    assert_eq!(replayed.path, new_path);
    let initialized = nth_post(&daemon, 2, "notifications/initialized").await;
    assert_eq!(initialized.path, new_path);
    assert!(initialized.seq > replayed.seq);
    let echoed = nth_post(&daemon, 1, "tools/call").await;
    assert_eq!(echoed.path, new_path);
    assert!(echoed.seq > initialized.seq, "posted before the replay");
    assert!(proxy.seen.is_empty(), "unexpected lines: {:?}", proxy.seen);
}

// ── 15. and 16. Logs and a stalled daemon ───────────────────────────────────

/// At `MCP_PROXY_LOG=debug` the session id (old and re-initialized) never
/// appears in full on stderr, nor in any URL.
#[tokio::test]
async fn the_session_id_never_appears_in_full_in_debug_logs() {
    let daemon = FakeDaemon::start(Behaviour::default()).await;
    let home = TestHome::new();
    let url = daemon.url("/mcp");
    let mut proxy = Proxy::start_with(&home, &["--url", &url], |c| {
        c.env("MCP_PROXY_LOG", "debug").stderr(Stdio::piped());
    });
    let mut stderr = proxy.child.stderr.take().expect("stderr piped");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.map(|_| text)
    });
    ready(&daemon, &mut proxy).await;
    daemon.forget_sessions();
    let pong = proxy.request(json!(1), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    nth_post(&daemon, 2, "initialize").await;
    eof_and_exit(&mut proxy).await;
    let log = tokio::time::timeout(T, log).await.expect("stderr closes");
    let log = log.expect("reader task").expect("stderr is UTF-8");
    assert!(log.contains("DEBUG"), "no debug logging at all: {log}");
    assert!(!log.contains(SID), "the full session id is logged:\n{log}");
    assert!(daemon.requests().iter().all(|r| !r.path.contains(SID)));
}

/// A daemon that accepts connections but never answers does not stop the
/// proxy from reading stdin: bad lines are answered at once while
/// `initialize` (and a request queued behind it) hang.
#[tokio::test]
async fn a_stalled_daemon_does_not_block_reading_stdin() {
    let daemon = FakeDaemon::start(Behaviour::default().with(|b| b.stall = true)).await;
    let home = TestHome::new();
    let url = daemon.url("/mcp");
    let mut proxy = Proxy::start(&home, &["--url", &url, "--shutdown-grace-ms", "200"]);
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "faults", "version": "0"}});
    proxy.send(&request(json!(0), "initialize", params)).await;
    // Bounded poll: a stalled connection records no request to wait for.
    let deadline = Instant::now() + T;
    while daemon.connections() == 0 {
        assert!(Instant::now() < deadline, "the proxy never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.send(&request(json!(1), "ping", json!({}))).await;
    for (line, code) in [("{oops", -32700), ("42", -32600), ("{oops again", -32700)] {
        proxy.send_raw(line).await;
        let error = proxy.next().await;
        assert_eq!(error["error"]["code"], json!(code), "{line}: {error}");
        assert_eq!(error["id"], json!(null), "{line}: {error}");
    }
    assert!(daemon.requests().is_empty());
    eof_and_exit(&mut proxy).await;
}
