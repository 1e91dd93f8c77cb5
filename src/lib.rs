//! Share MCP servers between many Claude Code sessions.
//!
//! Claude Code starts every MCP server as its own child over stdio and sends
//! it SIGINT when another session starts. `mcp-proxy` is what Claude Code
//! launches instead: it ignores SIGINT and bridges stdio JSON-RPC to one
//! shared daemon over Streamable HTTP or legacy SSE.
//!
//! # Layout
//!
//! - [`config`]: the config file, raw shape then validated [`config::Config`];
//!   the built-in daemons.
//! - [`paths`]: the home directory and every file in it.
//! - [`jsonrpc`]: messages as exact bytes plus their shape; error responses.
//! - [`stdio`]: line framing on stdin, the one task that owns stdout.
//! - [`transport`]: the HTTP side (Streamable HTTP, plain HTTP, legacy SSE).
//! - [`proxy`]: the session loop; [`proxy::router`] pairs daemon answers with
//!   client requests.
//! - [`host`]: a stdio server shared behind one Streamable HTTP endpoint
//!   (`mcp-manager host`); [`host::backend`] multiplexes sessions onto a child.
//! - [`discovery`]: finding the daemon for `--target` (port, lock, manager).
//! - [`lockfile`]: `NAME.lock`, read and written atomically.
//! - [`launch`]: starting a daemon race-free under its start guard (the
//!   manager's way and, without a manager, the proxy's).
//! - [`manager`]: `mcp-manager`: one task per supervised daemon
//!   ([`manager::daemon`]), the control API ([`manager::control`]) and its
//!   client ([`manager::api`]), daemon logs, `generate-config`.
//! - [`http_server`]: the accept loop and Host check the host and the
//!   control API share.
//! - [`procinfo`]: facts about other processes (alive, start time, port
//!   holder, command line) and signals, so nothing kills what it did not start.
//! - [`signals`]: SIGINT ignored, SIGTERM/SIGHUP as a clean end.
#![deny(clippy::print_stdout)]

pub mod config;
pub mod discovery;
pub mod host;
pub mod http_server;
pub mod jsonrpc;
pub mod launch;
pub mod lockfile;
pub mod manager;
pub mod paths;
pub mod procinfo;
pub mod proxy;
pub mod signals;
pub mod stdio;
pub mod transport;
