//! Every new TCP connection inside a session is checked (issue 13): the
//! daemon's listener is proven this user's at discovery, but a session opens
//! connections later (a pooled one closed by the daemon's idle timeout, the
//! GET stream reconnecting). A daemon that dies mid-session leaves its port
//! free; another user who binds it then must get nothing, and the client's
//! next request an error naming the port and the holder. Real binaries, a
//! real server (server-everything), a throwaway user (root only, else
//! skipped).

#![cfg(target_os = "linux")]

use serde_json::json;

use crate::util::{
    Flavor, ForeignUser, Mode, Proxy, RealServer, StrangerListener, TestHome, free_port,
};

/// The daemon dies under a live session and another user binds its port:
/// the next request gets an error naming the port and the holder, and the
/// stranger is never even connected to. `transport` `http` has no GET
/// stream, so the proxy does not notice the death before that request;
/// `streamable-http` notices it through its GET stream (retried after 1 s;
/// the request waits `settle` ms for that) and recovers into the
/// stranger's port.
async fn a_stranger_on_a_dead_daemons_port_gets_nothing(tag: &str, transport: &str, settle: u64) {
    let Some(user) = ForeignUser::create(tag) else {
        return;
    };
    let port = free_port();
    let mut server =
        RealServer::start_on(Flavor::Everything, Mode::StreamableHttp, port, &[]).await;
    let home = TestHome::new();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut proxy = Proxy::start(
        &home,
        &[
            "--url",
            &url,
            "--transport",
            transport,
            "--reconnect-timeout",
            "20",
            "-H",
            "Authorization: Bearer secret-of-the-victim",
        ],
    );
    proxy.initialize().await;
    let echo = |id: u64| {
        (
            json!(id),
            json!({"name": "echo", "arguments": {"message": "secret words"}}),
        )
    };
    let (id, params) = echo(1);
    let answered = proxy.request(id, "tools/call", params).await;
    assert!(answered.get("result").is_some(), "{answered}");

    server.kill().await;
    let Some(stranger) = StrangerListener::start(&user, port).await else {
        return;
    };
    // Time for a GET stream to notice the loss and recover into the port.
    tokio::time::sleep(std::time::Duration::from_millis(settle)).await;
    let (id, params) = echo(2);
    let started = std::time::Instant::now();
    let refused = proxy.request(id, "tools/call", params).await;
    let waited = started.elapsed();
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("port {port}"))
            && message.contains("another user")
            && message.contains(&format!("uid {}", user.uid)),
        "the error names the port and the holder: {refused}"
    );
    assert!(
        waited < std::time::Duration::from_secs(15),
        "a stranger's port is told at once, not after the reconnect bound: {waited:?}"
    );
    // Once more: every new connection is checked, not only the first.
    let (id, params) = echo(3);
    let again = proxy.request(id, "tools/call", params).await;
    assert!(again.get("error").is_some(), "{again}");
    let received = stranger.received().await;
    assert!(
        received.is_empty(),
        "the stranger was connected to (bytes per connection: {received:?})"
    );
    drop(proxy);
}

/// See [`a_stranger_on_a_dead_daemons_port_gets_nothing`]: no GET stream.
#[tokio::test]
async fn a_stranger_on_the_port_of_a_daemon_that_died_unnoticed_gets_nothing() {
    a_stranger_on_a_dead_daemons_port_gets_nothing("conn", "http", 0).await;
}

/// See [`a_stranger_on_a_dead_daemons_port_gets_nothing`]: the GET stream
/// notices, and the recovery finds the stranger.
#[tokio::test]
async fn a_recovery_into_a_strangers_port_sends_it_nothing() {
    a_stranger_on_a_dead_daemons_port_gets_nothing("recon", "streamable-http", 2500).await;
}
