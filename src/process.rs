//! Processes: who a pid is, process groups, and programs on `PATH`.
//!
//! [`info`] observes other processes (is this pid still the one we
//! recorded? who holds this port?); [`group`] owns the one `killpg` and how
//! a child is isolated from its parent's terminal; [`program`] finds a
//! program on `PATH`. Nothing here decides whom to signal: callers prove a
//! process is theirs first.

pub mod group;
pub mod info;
pub mod program;

pub use group::{GroupSignal, detach, isolate, signal_group, terminate_group};
pub use info::{describe, is_alive, is_same_process, port_holder, start_time};
pub use program::find_program;
