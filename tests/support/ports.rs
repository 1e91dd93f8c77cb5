//! Loopback ports, shared by the integration tests and the benchmark (both
//! include this file with `#[path = "..."] mod ports;`).

use std::net::{Ipv4Addr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it for a
/// listener that is closed again at once).
///
/// # Errors
///
/// When nothing can bind 127.0.0.1:0, or the bound address is unreadable.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
