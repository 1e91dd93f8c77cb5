//! Share MCP servers between many Claude Code sessions.
//!
//! Claude Code starts every MCP server as its own child over stdio and sends
//! it SIGINT when another session starts. `mcp-proxy` is what Claude Code
//! launches instead: it ignores SIGINT and bridges stdio JSON-RPC to one
//! shared daemon over Streamable HTTP or legacy SSE. `mcp-manager`
//! supervises those daemons, hosts stdio-only servers for many sessions,
//! and sets a user's Claude Code up to use them.
//!
//! # Layers
//!
//! Each layer imports only from the layers below it (ARCHITECTURE.md has
//! the map and the invariants):
//!
//! 1. **Foundations**, importing nothing above them: [`backoff`] (the one
//!    retry policy), [`jsonrpc`] (messages as exact bytes; reading and
//!    splicing), [`mcp`] (the protocol's vocabulary: versions, headers,
//!    methods safe to send twice, lists, log levels), [`paths`] (every file
//!    name), [`process`] (who a pid is, process groups, programs on PATH),
//!    [`signals`], [`sync`] (the one mutex lock).
//! 2. **Formats and plumbing**: [`config`] (`config.json` into a validated
//!    [`config::Config`]), [`claude`] (Claude Code's and Claude Desktop's
//!    files: where they are, project keys, proxy entries, byte-exact edits,
//!    backups and atomic writes), [`http`] (client builders, the loopback rule,
//!    header parsing and redaction, the server side's accept loop and
//!    checks), [`stdio`] (line reading, the one writer task).
//! 3. **The daemon contract**, shared by proxy and manager: [`daemon`]
//!    (`NAME.lock` records, the `fs4` guards, starting, probing, logs) and
//!    [`control_api`] (the control API's JSON and its client).
//! 4. **Roles**: [`transport`] (the HTTP client side of MCP, delivering to
//!    an [`transport::Inbound`]), [`proxy`] (the stdio session: router and
//!    discovery, over a transport), [`host`] (the HTTP server side: one
//!    stdio child, many sessions), [`manager`] (one supervisor per daemon,
//!    the config followed while it runs, the control server). Host and
//!    manager import no other role; transport
//!    imports neither proxy nor stdio.
//! 5. **Commands**: [`commands`], `mcp-manager`'s one-shot commands (status,
//!    logs, host, import and undo, doctor, generate-config and register,
//!    add and remove, reload and shutdown, service):
//!    each returns what to print; the binaries print it.
#![deny(clippy::print_stdout)]

// Foundations: nothing above them.
pub mod backoff;
pub mod jsonrpc;
pub mod mcp;
pub mod paths;
pub mod process;
pub mod signals;
pub mod sync;

// Formats and plumbing.
pub mod claude;
pub mod config;
pub mod http;
pub mod stdio;

// The daemon contract.
pub mod control_api;
pub mod daemon;

// Roles.
pub mod host;
pub mod manager;
pub mod proxy;
pub mod transport;

// One-shot commands.
pub mod commands;
