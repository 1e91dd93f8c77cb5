//! The one integration-test binary (one link step): every test drives the
//! real `mcp-proxy` binary.

mod adoption;
mod cli;
mod fake_daemon;
mod faults;
mod host;
mod manager;
mod process;
mod real_servers;
mod restarts;
mod sdk_clients;
mod transparency;
mod util;
