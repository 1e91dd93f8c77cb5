//! The host under test: `mcp-manager host NAME` in the foreground, and its
//! `/health` endpoint.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::config::TestHome;
use super::fixtures::manager_bin;
use super::wait::wait_for_port;

/// `mcp-manager host NAME` running in the foreground, killed when dropped.
pub struct HostProcess {
    pub port: u16,
    pub child: Child,
}

impl HostProcess {
    /// Writes a config with one stdio entry and hosts it.
    pub async fn start(home: &TestHome, name: &str, entry: Value) -> HostProcess {
        let port = entry["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("entry has a port");
        home.write_config(&json!({"mcpServers": {name: entry}}));
        let child = Command::new(manager_bin())
            .args(["host", name])
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mcp-manager host");
        wait_for_port(port, Duration::from_secs(30)).await;
        HostProcess { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub async fn health(&self) -> Value {
        let client = mcp_session_manager::http::loopback_client_builder()
            .build()
            .expect("client");
        client
            .get(format!("http://127.0.0.1:{}/health", self.port))
            .send()
            .await
            .expect("health answers")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("health is JSON"))
            .expect("health body")
    }

    /// Waits until `/health` satisfies `ready`.
    pub async fn wait_health(&self, ready: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let health = self.health().await;
            if ready(&health) {
                return health;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "health never got ready: {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
