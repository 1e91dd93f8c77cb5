//! Where the binaries under test and the pinned fixtures are, shared by the
//! integration tests (`tests/it/util/fixtures.rs`) and the benchmark
//! (`benches/proxy/main.rs`), which both include this file with
//! `#[path = "..."] mod bins;`.
//!
//! These only build paths; they never check that a fixture is installed,
//! because the two report a missing one differently: a test panics naming
//! the install script, the benchmark prints a line and skips its table.

use std::path::PathBuf;

/// The `mcp-proxy` binary Cargo built for this test or bench target.
pub fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-proxy"))
}

/// The `mcp-manager` binary Cargo built for this test or bench target.
pub fn manager_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-manager"))
}

/// The crate's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures`: what `scripts/install-test-fixtures.sh` installs.
pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// `@modelcontextprotocol/server-everything`'s entry point (pinned).
pub fn everything_js() -> PathBuf {
    fixtures().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// `@modelcontextprotocol/server-memory`'s entry point (pinned).
pub fn memory_js() -> PathBuf {
    fixtures().join("node_modules/@modelcontextprotocol/server-memory/dist/index.js")
}

/// The real Claude Code CLI (`@anthropic-ai/claude-code`, pinned): the
/// native binary its install put in place of `bin/claude.exe` (the name on
/// every platform).
pub fn claude_bin() -> PathBuf {
    fixtures().join("node_modules/@anthropic-ai/claude-code/bin/claude.exe")
}

/// The Python of the fixtures' virtual environment (the pinned MCP SDK).
pub fn venv_python() -> PathBuf {
    if cfg!(windows) {
        fixtures().join(".venv/Scripts/python.exe")
    } else {
        fixtures().join(".venv/bin/python")
    }
}

/// `tests/fixtures/fastmcp_server.py`: a FastMCP server on the pinned SDK.
pub fn fastmcp_server() -> PathBuf {
    fixtures().join("fastmcp_server.py")
}
