//! Test homes and config builders: a private `MCP_SESSION_MANAGER_HOME` per
//! test, and the `config.json` entries the tests write into it.

use std::path::Path;

use serde_json::{Value, json};

use super::fixtures::{Mode, everything_js};

/// A private `MCP_SESSION_MANAGER_HOME` for one test.
pub struct TestHome {
    pub dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> TestHome {
        TestHome {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, config: &Value) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("write config");
    }

    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.path().join("config.json"), text).expect("write config");
    }
}

/// The command that runs server-everything over stdio.
pub fn everything_stdio_entry(port: u16) -> Value {
    json!({
        "command": "node",
        "args": [everything_js().to_string_lossy(), "stdio"],
        "port": port,
    })
}

/// A manager config: the control port, quick health checks, and `servers`
/// as `mcpServers`.
pub fn manager_config(manager_port: u16, servers: Value) -> Value {
    json!({
        "managerPort": manager_port,
        "healthCheckInterval": 0.5,
        "mcpServers": servers,
    })
}

/// server-everything serving HTTP itself on `port` (started by the manager
/// as is).
pub fn everything_daemon_entry(port: u16, mode: Mode) -> Value {
    let (arg, transport) = match mode {
        Mode::StreamableHttp => ("streamableHttp", "streamable-http"),
        Mode::Sse => ("sse", "sse"),
    };
    json!({
        "command": "node",
        "args": [everything_js().to_string_lossy(), arg],
        "env": {"PORT": port.to_string()},
        "port": port,
        "transport": transport,
        "startTimeout": 20,
    })
}

/// server-everything over stdio, hosted by `mcp-manager host` on `port`.
pub fn hosted_everything_entry(port: u16) -> Value {
    let mut entry = everything_stdio_entry(port);
    entry["startTimeout"] = json!(20);
    entry
}
