//! The proxy's error mode (issue 15, item 1, for two causes): when
//! `mcp-proxy --target NAME` cannot serve because config.json does not
//! load or NAME is not configured, it answers `initialize`,
//! `server/discover` and every other request with a JSON-RPC error that
//! says the cause and the fix, ignores notifications, writes the same on
//! stderr, and exits when stdin closes; `claude mcp list` (Claude Code
//! 2.1.331) shows that message on the server's line ("✘ Failed to connect
//! — -32603: …") instead of "Connection closed".

use std::time::Duration;

use serde_json::{Value, json};

#[cfg(unix)]
use crate::util::proxy_bin;
use crate::util::{TestHome, start_proxy_logged};

/// The refusal a proxy on `home` gives to `initialize` and
/// `server/discover` (raw lines, a notification between them), and its
/// stderr after stdin closed (it must exit within a few seconds).
async fn refusal_of(home: &TestHome, target: &str) -> (Value, Value, String) {
    let (mut proxy, log) = start_proxy_logged(home, &["--target", target], "warn");
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .await;
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    proxy
        .send_raw(r#"{"jsonrpc":"2.0","id":"discover-1","method":"server/discover","params":{}}"#)
        .await;
    let initialize = proxy.next().await;
    let discover = proxy.next().await;
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(5)).await;
    assert!(
        status.code().is_some(),
        "the proxy died of a signal: {status}"
    );
    let rest = proxy.rest().await;
    assert!(rest.is_empty(), "a notification was answered: {rest:?}");
    (initialize, discover, log.text())
}

/// A typo in `--target`: the error names the closest configured name and
/// every configured one.
#[tokio::test]
async fn an_unknown_target_answers_initialize_with_the_closest_name() {
    let home = TestHome::new();
    home.write_config(&json!({"mcpServers": {
        "filesystem": {"port": 1},
        "github": {"url": "https://example.com/mcp"},
    }}));
    let (initialize, discover, stderr) = refusal_of(&home, "filesystm").await;
    assert_eq!(initialize["id"], 1, "{initialize}");
    assert_eq!(discover["id"], "discover-1", "{discover}");
    for answer in [&initialize, &discover] {
        let error = &answer["error"];
        assert_eq!(error["code"], -32603, "{answer}");
        let message = error["message"].as_str().expect("a message");
        assert!(
            message.starts_with("unknown target: did you mean `filesystem`?"),
            "{message}"
        );
        assert!(message.contains("filesystem, github"), "{message}");
        assert_eq!(error["data"]["target"], "filesystm");
    }
    assert!(stderr.contains("did you mean `filesystem`?"), "{stderr}");
}

/// A config that does not parse or validate: file, line and column, or
/// key, and the fix.
#[tokio::test]
async fn a_broken_config_answers_initialize_with_the_file_the_place_and_the_fix() {
    let home = TestHome::new();
    home.write_raw_config("{\"mcpServers\": {\n  \"memory\": {\"port\": 3100},\n}}\n");
    let (initialize, discover, stderr) = refusal_of(&home, "memory").await;
    for answer in [&initialize, &discover] {
        let message = answer["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains("config.json is not valid JSON: trailing comma (line 3, column 1)")
                && message.contains("fix it"),
            "{message}"
        );
        assert_eq!(answer["error"]["data"]["line"], 3);
    }
    assert!(stderr.contains("trailing comma"), "{stderr}");

    home.write_raw_config(r#"{"mcpServers": {"memory": {"command": "x", "port": "3100"}}}"#);
    let (initialize, _, _) = refusal_of(&home, "memory").await;
    let message = initialize["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("config.json: key `mcpServers.memory.port`"),
        "{message}"
    );
    assert_eq!(initialize["error"]["data"]["key"], "mcpServers.memory.port");
}

/// `claude mcp list` in a throwaway `HOME` shows each cause on the
/// server's line.
#[cfg(unix)]
#[tokio::test]
async fn claude_mcp_list_shows_the_cause() {
    let home = TestHome::new();
    let user = tempfile::tempdir().expect("HOME");
    let proxy = proxy_bin().to_string_lossy().into_owned();
    std::fs::write(
        user.path().join(".claude.json"),
        json!({"mcpServers": {"typo": {"command": proxy, "args": ["--target", "filesystm"]}}})
            .to_string(),
    )
    .expect("write ~/.claude.json");
    let list = || crate::util::claude_mcp_list_line(home.path(), user.path(), "typo");
    home.write_config(&json!({"mcpServers": {"filesystem": {"port": 1}}}));
    let line = list().await;
    assert!(
        line.contains("Failed to connect") && line.contains("did you mean `filesystem`?"),
        "{line}"
    );
    home.write_raw_config("{\"mcpServers\": {\"filesystem\": {\"port\": 1},}}");
    let line = list().await;
    assert!(
        line.contains("config.json is not valid JSON: trailing comma"),
        "{line}"
    );
}
