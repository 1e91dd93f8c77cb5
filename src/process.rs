//! Processes: who a pid is, process groups, and programs on `PATH`.
//!
//! [`info`] observes other processes (is this pid still the one we
//! recorded? who holds this port?); [`group`] owns the one `killpg` and how
//! a child is isolated from its parent's terminal; [`program`] finds a
//! program on `PATH`; [`socket`] tells which user owns a TCP socket (a
//! listener, a connection's other end). Nothing here decides whom to signal
//! or let in: callers prove a process is theirs first.

pub mod group;
pub mod info;
pub mod program;
pub mod socket;

pub use group::{GroupSignal, detach, isolate, signal_group, terminate_group};
pub use info::{describe, is_alive, is_same_process, port_holder, start_time};
pub use program::find_program;
pub use socket::{current_uid, listener_uid, peer_uid};
