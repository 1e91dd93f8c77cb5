//! HTTP plumbing shared by every role: [`client`] builders and the loopback
//! rule, [`headers`] parsing and redaction, and the [`server`] side the host
//! and the control API both stand on (accept loop, Host check).
//!
//! Nothing here knows MCP: the protocol's header names live in
//! [`crate::mcp`], its client and server sides in `transport` and `host`.

pub mod client;
pub mod headers;
pub mod server;

pub use client::{client_builder, error_chain, is_loopback, loopback_client_builder};
pub use headers::{parse_header, redacted, session_prefix};
