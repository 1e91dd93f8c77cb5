//! Loopback ports, shared by the integration tests and the benchmark (both
//! include this file with `#[path = "..."] mod ports;`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports this process has handed out already: a port is free again the
/// moment its probe listener closes, so two calls could otherwise return
/// the same one to two servers of one test (seen: a hosted server given the
/// manager's own port).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it for a
/// listener that is closed again at once), and never handed out before by
/// this process.
///
/// # Errors
///
/// When nothing can bind 127.0.0.1:0, or the bound address is unreadable.
pub fn free_port() -> Result<u16, String> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let mut seen = handed_out()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(port) {
            return Ok(port);
        }
    }
    Err("no new free port on 127.0.0.1 after 64 tries".into())
}
