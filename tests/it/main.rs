//! The one integration-test binary (one link step on a 2-core machine):
//! every test drives the real `mcp-proxy` and `mcp-manager` binaries against
//! real servers from the pinned fixtures (`tests/fixtures`, installed by
//! `scripts/install-test-fixtures.sh`) or the in-repo fake daemon. The areas:
//! `cli` (flags, config errors, finding the daemon), `real_servers` (the MCP
//! feature list through `--url`), `transparency` (byte-for-byte answers),
//! `process` (signals, end of input, framing), `faults` (fault injection
//! against `fake_daemon`), `failures` (each way the proxy cannot serve, as
//! the client and `claude mcp list` see it), `restarts` (surviving daemon
//! restarts), `host` (`mcp-manager host`), `host_2026` (issue 17: a hosted
//! 2026-07-28 server serving both eras, each request's stream its own), `host_failures` (a hosted server
//! that fails at start), `host_tasks` (issue 17: a session's MCP tasks and
//! elicitations stay its own in a shared host), `manager` (the supervisor and its control API),
//! `adoption` (importing a Claude Code setup), `import_life` (issue 16:
//! import, import --project, claude mcp add and undo, as the real
//! `claude mcp list` sees them, never worse), `doctor_remote` (doctor and
//! a remote server behind mcp-proxy that needs a login), `bounds` (who may connect,
//! and what one client may hold), `safety` (what is believed, signalled and
//! left behind), `connections` (each new connection in a session checked), `sockets` (the hosts' and the manager's Unix sockets),
//! `files` (the modes of the home and the size of what a
//! status shows), `service` (`service install` in a throwaway HOME, and
//! how a proxy starts the manager), `sdk_clients` (the Python and
//! TypeScript SDK clients), `sdk_v2` (issue 17: both SDK generations, the
//! 2026-07-28 ones pinned and in auto mode, through the proxy and the host,
//! each beside the same pair directly), `conformance` (issue 17: the
//! official conformance suite's server scenarios against the host, its
//! client scenarios through the proxy) and `protocol_2026` (issue 17: the
//! 2026-07-28 revision's negotiation at the host and its headers through
//! the proxy, daemon errors passed through, a GET refused without a
//! reconnect storm).
//! The helpers live in `util` (re-exported
//! from `util.rs`, one file per concern under `util/`); what the tests share
//! with the benchmark (binary and fixture paths, free ports, `/proc`
//! readings) lives in `tests/support/`, which both include by path.

mod adoption;
mod bounds;
mod cli;
mod conformance;
mod connections;
mod doctor_remote;
mod failures;
mod fake_daemon;
mod faults;
mod files;
mod host;
mod host_2026;
mod host_failures;
mod host_tasks;
#[cfg(unix)]
mod import_life;
mod manager;
mod managing;
#[cfg(unix)]
mod one_voice;
mod pipes;
mod process;
mod protocol_2026;
mod real_servers;
mod refusal;
mod reload;
mod restarts;
mod safety;
mod sdk_clients;
mod sdk_v2;
#[cfg(unix)]
mod service;
mod sockets;
mod transparency;
mod util;
