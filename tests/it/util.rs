//! Test support: the real binaries, real servers from the pinned fixtures, a
//! private home directory per test, and clients for the proxy, the host and
//! the manager under test. Every helper is re-exported here, so a test says
//! `use crate::util::{Proxy, TestHome, ...}` whichever file it lives in.
//!
//! - `fixtures`: binaries and fixtures (checked), real servers on loopback.
//! - `config`: the test home and the config entries written into it.
//! - `proxy`: `mcp-proxy` with piped stdio, read line by line.
//! - `host`: `mcp-manager host NAME` and its `/health`.
//! - `manager`: `mcp-manager` (the supervisor), its control API, cleanup.
//! - `mcp_http`: MCP over plain HTTP to a host, and the bounds fixture server.
//! - `processes`: signals, process groups, argv, memory (no `unsafe`).
//! - `sdk_v2`: the v2 SDK clients and 2026-07-28 servers, the old clients
//!   reduced to one call, Node ≥ 22 and the conformance CLI.
//! - `users`: a throwaway unprivileged user for the multi-user tests.
//! - `wait`: free ports, waiting for listeners and for conditions.
//! - `foreign_user`: a throwaway user and a listener of theirs (Linux, root).
//!
//! The paths, the free-port helper and the `/proc` readings are shared with
//! the benchmark through `tests/support/` (included below by path).

#![allow(dead_code, reason = "each test file uses some of the helpers")]

#[path = "../support/bins.rs"]
mod bins;
#[path = "../support/ports.rs"]
mod ports;
#[path = "../support/procfs.rs"]
mod procfs;

mod config;
mod fixtures;
#[cfg(target_os = "linux")]
mod foreign_user;
mod host;
#[cfg(unix)]
mod manager;
#[cfg(unix)]
mod mcp_http;
#[cfg(unix)]
mod processes;
mod proxy;
mod sdk_v2;
#[cfg(unix)]
mod users;
mod wait;

// Globs, so that a helper that exists on some platforms only is re-exported
// there and nowhere else.
pub use config::*;
pub use fixtures::*;
#[cfg(target_os = "linux")]
pub use foreign_user::*;
pub use host::*;
#[cfg(unix)]
pub use manager::*;
#[cfg(unix)]
pub use mcp_http::*;
#[cfg(unix)]
pub use processes::*;
pub use proxy::*;
pub use sdk_v2::*;
#[cfg(unix)]
pub use users::*;
pub use wait::*;
