//! `cargo bench --bench proxy`: `mcp-proxy` against a direct Streamable HTTP
//! client (the baseline) and the Node.js original (`mcp-session-manager@1.0.1`),
//! all talking to `@modelcontextprotocol/server-everything` on loopback.
//!
//! Prints a Markdown table on stdout, a cold-start breakdown and a one-line
//! summary of the targets, then the host table (below) and its summary.
//! `BENCH_QUICK=1` runs much smaller counts (a smoke test, well under 30 s
//! once built). `BENCH_ONLY=proxy`, `host`, `manager`, `fanout` or `failures` runs one table
//! (`host` with the log-routing table, `logs` that one alone).
//!
//! - **direct**: reqwest in this process, POST per message, minimal SSE parsing.
//! - **mcp-proxy**: the real binary with piped stdio, `--url` to server A.
//! - **original**: `node dist/proxy/index.js --target memory`, `npm install`ed
//!   once into `$TMPDIR/mcp-session-manager-bench/`, with `HOME` in a temp dir.
//!   It has no `--url`: it looks for its daemon on `localhost:3100`, so server B
//!   runs there (skipped, with a message, if 3100 is taken or npm fails).
//!
//! Cold starts are interleaved between clients; the long sessions are all
//! open at once and measured in alternating blocks, so that load from other
//! processes on the machine hits every column alike. A stub server in this
//! process (instant JSON answers) isolates the clients' own start-up cost.
//!
//! A second table compares `mcp-manager host` (server-everything over stdio
//! behind the host's Streamable HTTP endpoint, on a free loopback port) with
//! the same server spoken to directly over its stdin/stdout: `tools/call echo`
//! with 1 session (sequential), 8 and 32 sessions at once (each its own HTTP
//! client and `Mcp-Session-Id`, one call in flight each) against 1, 8 and 32
//! requests pipelined on stdio; plus the host's own peak RSS.
//!
//! With it (`BENCH_ONLY=host` too), the log-routing table: the host's CPU
//! per `notifications/message` line its child writes, with 1 session that
//! wants the lines, then with 5,000 sessions (200 GET streams, 300 calls
//! pending; 500, 20 and 50 with `BENCH_QUICK`) while 1 of them or all that
//! can take a message want them, and how long another session's echo waits
//! meanwhile. Its child is `log_server.py` beside this file (Python,
//! standard library only; the table is skipped, with a message, without
//! python3).
//!
//! The fan-out table (`BENCH_ONLY=fanout`) is about memory: 8 Claude Code
//! sessions × 3 stdio servers (server-memory, server-everything, the FastMCP
//! fixture), each session with its own three children as Claude Code starts
//! them, against the same through `mcp-proxy --target` and one manager
//! hosting the three: total RSS and process count of every process tree,
//! the growth for one more session, and what is left once the daemons have
//! stopped for idleness (Linux: `/proc`).
//!
//! The failures table (`BENCH_ONLY=failures`): a server that exits at
//! start, direct and hosted: how long a fresh proxy's `initialize` waits
//! for the error, beside the server's own time to exit.
//!
//! Every child is started with `kill_on_drop`; Ctrl-C drops them all (the
//! host's child dies with the host). The host gets SIGTERM at the end. Nothing
//! panics on an expected failure: errors are listed under the tables.
//!
//! Layout: one module per table, each measuring and printing it: `clients`
//! (mcp-proxy vs direct and the original), `host`, `host_logs`, `manager`,
//! `fanout` and `failures`.
//! Under them, `mcp_clients` (the MCP clients the tables speak with),
//! `servers` (server-everything, the stub, installing the original), `procs`
//! (CPU time, process trees, the load average) and `report` (percentiles,
//! units, ratios, verdicts, errors). Binary and fixture paths, free ports and
//! memory readings come from `tests/support/`, shared with the integration
//! tests.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

mod clients;
mod failures;
mod fanout;
mod host;
mod host_logs;
mod manager;
mod mcp_clients;
mod procs;
mod report;
mod servers;

// Shared with the integration tests (`tests/it/util.rs` includes them too).
#[allow(dead_code, reason = "the tests use the helpers the benchmark does not")]
#[path = "../../tests/support/bins.rs"]
mod bins;
#[path = "../../tests/support/ports.rs"]
mod ports;
#[allow(dead_code, reason = "the tests use the helpers the benchmark does not")]
#[path = "../../tests/support/procfs.rs"]
mod procfs;

use std::time::Duration;

use crate::bins::everything_js;
use crate::clients::run_proxy;
use crate::failures::run_failures;
use crate::fanout::run_fanout;
use crate::host::run_host;
use crate::host_logs::run_host_logs;
use crate::manager::run_manager;
use crate::servers::check_node;

/// The MCP version every client of the benchmark asks for.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Longest wait for any single answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a child to exit after its stdin closes.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of everything a run measures: [`FULL`] or, with
/// `BENCH_QUICK=1`, [`QUICK`].
#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    /// Spawns per client for the cold-start rows.
    cold_runs: usize,
    /// Untimed calls before the sequential ones.
    warmup: usize,
    sequential: usize,
    burst: usize,
    in_flight: usize,
    burst_timeout: Duration,
    /// Untimed load on each server before anything is measured (JIT warm-up).
    server_warmup: usize,
    /// Sequential calls and the burst are split into this many blocks per
    /// client, alternating between clients.
    rounds: usize,
    /// Host table: sequential calls on one session, and calls per
    /// concurrency level.
    host_sequential: usize,
    host_calls: usize,
    /// The host table stops measuring (and says so) after this long.
    host_budget: Duration,
    /// Log-routing table: sessions opened, of them with a GET stream and
    /// with a call pending, log lines per run, and its time limit.
    log_sessions: usize,
    log_streams: usize,
    log_pending: usize,
    log_lines: usize,
    log_budget: Duration,
}

/// The full run (`cargo bench --bench proxy`).
const FULL: Plan = Plan {
    quick: false,
    cold_runs: 10,
    warmup: 100,
    sequential: 500,
    burst: 3000,
    in_flight: 32,
    burst_timeout: Duration::from_secs(60),
    server_warmup: 1000,
    rounds: 5,
    host_sequential: 500,
    host_calls: 3000,
    host_budget: Duration::from_secs(55),
    log_sessions: 5000,
    log_streams: 200,
    log_pending: 300,
    log_lines: 2000,
    log_budget: Duration::from_secs(120),
};

/// The smoke test (`BENCH_QUICK=1`): much smaller counts.
const QUICK: Plan = Plan {
    quick: true,
    cold_runs: 3,
    warmup: 10,
    sequential: 50,
    burst: 300,
    in_flight: 32,
    burst_timeout: Duration::from_secs(15),
    server_warmup: 100,
    rounds: 2,
    host_sequential: 50,
    host_calls: 300,
    host_budget: Duration::from_secs(15),
    log_sessions: 500,
    log_streams: 20,
    log_pending: 50,
    log_lines: 2000,
    log_budget: Duration::from_secs(30),
};

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = if quick { QUICK } else { FULL };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("cannot start the tokio runtime: {error}");
            return;
        }
    };
    runtime.block_on(async {
        tokio::select! {
            () = run(plan) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping every child"),
        }
    });
    // Dropping the runtime drops what is left; every child has kill_on_drop.
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// Runs the tables `BENCH_ONLY` names (all of them if unset), once node
/// and server-everything are known to be there.
async fn run(plan: Plan) {
    if let Err(error) = check_node().await {
        println!("cannot run the proxy benchmark: {error}");
        return;
    }
    let everything = everything_js();
    if !everything.exists() {
        println!(
            "cannot run the proxy benchmark: {} is missing; run `bash scripts/install-test-fixtures.sh --npm-only`",
            everything.display()
        );
        return;
    }
    // `BENCH_ONLY=proxy`, `host`, `manager`, `fanout` or `failures` runs one table
    // (`host`: with the log-routing one; `logs`: that one alone).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "proxy" {
        run_proxy(plan, &everything).await;
    }
    if only.is_empty() || only == "host" {
        run_host(plan, &everything).await;
    }
    if only.is_empty() || only == "host" || only == "logs" {
        run_host_logs(plan).await;
    }
    if only.is_empty() || only == "manager" {
        run_manager(plan, &everything).await;
    }
    if only.is_empty() || only == "fanout" {
        run_fanout(plan).await;
    }
    if only.is_empty() || only == "failures" {
        run_failures(plan).await;
    }
}
