//! The daemon contract, shared by the proxy and the manager: how a daemon is
//! recorded, guarded, started, probed and logged. Whoever starts a daemon
//! (the manager, a second manager, a proxy that found none) goes through
//! here, so there is one way to do each.
//!
//! - [`record`]: `NAME.lock`, which process serves a daemon on which port
//!   (a record, not a lock; its JSON is an API boundary).
//! - [`identity`]: whether a record can be believed (its pid, start time,
//!   owner and port agree) and who listens on a port.
//! - [`guard`]: the `fs4` guards: a daemon's start guard, the manager's
//!   single-instance guard.
//! - [`launch`]: start a daemon race-free under its start guard, or find
//!   the one that runs; stop one we started or can prove is ours.
//! - [`probe`]: is it there (TCP), is it ready (HTTP, per transport).
//! - [`log`]: `NAME.log`, rotated, read back in blocks.

pub mod guard;
pub mod identity;
pub mod launch;
pub mod log;
pub mod probe;
pub mod record;
