//! Share MCP servers between many Claude Code sessions.
#![deny(clippy::print_stdout)]

// Foundations: nothing of the crate.
pub mod backoff;
pub mod jsonrpc;
pub mod mcp;
pub mod paths;
pub mod process;
pub mod signals;

// Formats and plumbing.
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

// Claude Code's and Claude Desktop's files.
pub mod claude;

// One-shot commands.
pub mod commands;
