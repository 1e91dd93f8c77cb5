//! `cargo bench --bench proxy`: `mcp-proxy` against a direct Streamable HTTP
//! client (the baseline) and the Node.js original (`mcp-session-manager@1.0.1`),
//! all talking to `@modelcontextprotocol/server-everything` on loopback.
//!
//! Prints a Markdown table on stdout, a cold-start breakdown and a one-line
//! summary of the targets, then the host table (below) and its summary.
//! `BENCH_QUICK=1` runs much smaller counts (a smoke test, well under 30 s
//! once built). `BENCH_ONLY=proxy`, `host`, `manager` or `fanout` runs one table.
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
//! The fan-out table (`BENCH_ONLY=fanout`) is about memory: 8 Claude Code
//! sessions × 3 stdio servers (server-memory, server-everything, the FastMCP
//! fixture), each session with its own three children as Claude Code starts
//! them, against the same through `mcp-proxy --target` and one manager
//! hosting the three: total RSS and process count of every process tree,
//! the growth for one more session, and what is left once the daemons have
//! stopped for idleness (Linux: `/proc`).
//!
//! Every child is started with `kill_on_drop`; Ctrl-C drops them all (the
//! host's child dies with the host). The host gets SIGTERM at the end. Nothing
//! panics on an expected failure: errors are listed under the tables.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const PROTOCOL_VERSION: &str = "2025-11-25";
/// The original's built-in `memory` daemon port.
const ORIGINAL_PORT: u16 = 3100;
const ORIGINAL_VERSION: &str = "1.0.1";
/// Longest wait for any single answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a child to exit after its stdin closes.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

// Targets for mcp-proxy.
const TARGET_COLD_START: Duration = Duration::from_millis(10);
const TARGET_P50_RATIO: f64 = 1.10;
const TARGET_THROUGHPUT_RATIO: f64 = 0.9;
const TARGET_RSS_KIB: u64 = 8 * 1024;

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
}

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
};

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

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// What one client column measured.
#[derive(Debug, Default)]
struct Column {
    cold: Vec<Duration>,
    /// Cold starts against the in-process stub server (instant answers).
    cold_stub: Vec<Duration>,
    latencies: Vec<Duration>,
    /// Calls per second with `in_flight` outstanding.
    throughput: Option<f64>,
    rss_kib: Option<u64>,
    cpu_per_call: Option<Duration>,
    server_cpu_per_call: Option<Duration>,
    /// Failures, for the notes under the table.
    errors: Vec<String>,
}

impl Column {
    fn error(&mut self, name: &str, error: impl std::fmt::Display) {
        let text = format!("{name}: {error}");
        eprintln!("bench: {text}");
        self.errors.push(text);
    }
}

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
    // `BENCH_ONLY=proxy`, `host`, `manager` or `fanout` runs one table.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "proxy" {
        run_proxy(plan, &everything).await;
    }
    if only.is_empty() || only == "host" {
        run_host(plan, &everything).await;
    }
    if only.is_empty() || only == "manager" {
        run_manager(plan, &everything).await;
    }
    if only.is_empty() || only == "fanout" {
        run_fanout(plan).await;
    }
}

/// The first table: mcp-proxy against direct HTTP and the original.
async fn run_proxy(plan: Plan, everything: &Path) {
    let started = Instant::now();
    let load_before = load_average();
    let (proxy_home, original_home) = match (tempfile::tempdir(), tempfile::tempdir()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(error), _) | (_, Err(error)) => {
            println!("cannot run the proxy benchmark: no temp dir: {error}");
            return;
        }
    };

    // Install the original before anything is measured (npm uses CPU).
    let original_js = install_original().await;

    let server = match free_port() {
        Ok(port) => start_server(everything, port).await,
        Err(error) => Err(error),
    };
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            println!("cannot run the proxy benchmark: server-everything: {error}");
            return;
        }
    };
    let original = match original_js {
        Ok(js) => match port_is_free(ORIGINAL_PORT) {
            Ok(()) => match start_server(everything, ORIGINAL_PORT).await {
                Ok(server) => Ok((js, server)),
                Err(error) => Err(format!(
                    "cannot start server-everything on port {ORIGINAL_PORT}: {error}"
                )),
            },
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    if let Err(reason) = &original {
        println!("original: not available ({reason})");
    }
    let stub = match start_stub().await {
        Ok(stub) => Some(stub),
        Err(error) => {
            eprintln!("bench: no stub server, so no stub cold-start row: {error}");
            None
        }
    };

    for s in std::iter::once(&server).chain(original.as_ref().ok().map(|(_, s)| s)) {
        if let Err(error) = warm_up(&s.url(), plan).await {
            eprintln!(
                "bench: warming up the server on port {} failed: {error}",
                s.port
            );
        }
    }

    let proxy_command = |url: &str| {
        let mut command = Command::new(proxy_bin());
        command
            .arg("--url")
            .arg(url)
            .env("MCP_SESSION_MANAGER_HOME", proxy_home.path())
            .env("MCP_PROXY_LOG", "error")
            .current_dir(proxy_home.path())
            .stderr(Stdio::inherit());
        command
    };
    let original_command = |js: &Path| {
        let mut command = Command::new("node");
        command
            .arg(js)
            .arg("--target")
            .arg("memory")
            .env("HOME", original_home.path())
            .env("USERPROFILE", original_home.path())
            .current_dir(original_home.path())
            // It logs every step to stderr.
            .stderr(Stdio::null());
        command
    };

    let url = server.url();
    let mut direct = Contender::new("direct", server.pid);
    let mut proxy = Contender::new("mcp-proxy", server.pid);
    let mut orig = Contender::new("original", original.as_ref().ok().and_then(|(_, s)| s.pid));

    // Cold starts, interleaved so that drift and load hit every client alike.
    for _ in 0..plan.cold_runs {
        match cold_direct(&url).await {
            Ok(d) => direct.column.cold.push(d),
            Err(error) => direct.column.error("direct cold start", error),
        }
        match cold_stdio("mcp-proxy", proxy_command(&url)).await {
            Ok(d) => proxy.column.cold.push(d),
            Err(error) => proxy.column.error("mcp-proxy cold start", error),
        }
        if let Ok((js, _)) = &original {
            match cold_stdio("original", original_command(js)).await {
                Ok(d) => orig.column.cold.push(d),
                Err(error) => orig.column.error("original cold start", error),
            }
        }
        if let Some(stub) = &stub {
            match cold_direct(&stub.url()).await {
                Ok(d) => direct.column.cold_stub.push(d),
                Err(error) => direct.column.error("direct cold start (stub)", error),
            }
            match cold_stdio("mcp-proxy", proxy_command(&stub.url())).await {
                Ok(d) => proxy.column.cold_stub.push(d),
                Err(error) => proxy.column.error("mcp-proxy cold start (stub)", error),
            }
        }
    }
    drop(stub);
    let breakdown = cold_breakdown(plan).await;

    // Long sessions, all open at once, measured in alternating blocks.
    match Direct::new(&url) {
        Ok(client) => direct.open(AnyClient::Direct(client), plan).await,
        Err(error) => direct.column.error("direct", error),
    }
    match StdioClient::spawn("mcp-proxy", proxy_command(&url)) {
        Ok(client) => proxy.open(AnyClient::Stdio(Box::new(client)), plan).await,
        Err(error) => proxy.column.error("mcp-proxy", error),
    }
    if let Ok((js, _)) = &original {
        match StdioClient::spawn("original", original_command(js)) {
            Ok(client) => orig.open(AnyClient::Stdio(Box::new(client)), plan).await,
            Err(error) => orig.column.error("original", error),
        }
    }
    let rounds = plan.rounds.max(1);
    for _ in 0..rounds {
        for c in [&mut direct, &mut proxy, &mut orig] {
            c.block(Block::Sequential(plan.sequential / rounds), plan)
                .await;
        }
    }
    for _ in 0..rounds {
        for c in [&mut direct, &mut proxy, &mut orig] {
            c.block(Block::Burst(plan.burst / rounds), plan).await;
        }
    }
    for c in [&mut direct, &mut proxy, &mut orig] {
        c.finish().await;
    }

    print_report(
        plan,
        &direct.column,
        &proxy.column,
        original.is_ok().then_some(&orig.column),
        &breakdown,
        started.elapsed(),
        (load_before, load_average()),
    );
    drop(original);
    drop(server);
}

/// Load that lets the server's JIT settle before anything is measured.
async fn warm_up(url: &str, plan: Plan) -> Result<(), String> {
    let mut client = Direct::new(url)?;
    client.initialize().await?;
    for _ in 0..plan.server_warmup / 4 {
        client.echo().await?;
    }
    client
        .burst(plan.server_warmup, plan.in_flight, plan.burst_timeout)
        .await?;
    client.close().await;
    Ok(())
}

async fn cold_direct(url: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let mut client = Direct::new(url)?;
    let answer = client.request("initialize", init_params()).await;
    let elapsed = start.elapsed();
    client.close().await;
    let answer = answer?;
    if answer.get("result").is_none() {
        return Err(format!("initialize failed: {answer}"));
    }
    Ok(elapsed)
}

async fn cold_stdio(name: &'static str, command: Command) -> Result<Duration, String> {
    let start = Instant::now();
    let mut client = StdioClient::spawn(name, command)?;
    let answer = client.request("initialize", init_params()).await;
    let elapsed = start.elapsed();
    client.close().await;
    let answer = answer?;
    if answer.get("result").is_none() {
        return Err(format!("initialize failed: {answer}"));
    }
    Ok(elapsed)
}

/// Where mcp-proxy's cold start goes, besides the server's `initialize`.
#[derive(Debug, Default)]
struct Breakdown {
    /// `mcp-proxy --version`: spawn, exec, argument parsing, exit.
    version_spawn: Vec<Duration>,
    /// A `reqwest::Client` with the platform's root certificates loaded (what
    /// an https URL needs).
    client_build: Vec<Duration>,
    /// The client the proxy builds for a plain-http URL: no root certificates.
    client_build_no_roots: Vec<Duration>,
}

async fn cold_breakdown(plan: Plan) -> Breakdown {
    let mut breakdown = Breakdown::default();
    for _ in 0..plan.cold_runs {
        let start = Instant::now();
        let status = Command::new(proxy_bin())
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
        if matches!(status, Ok(s) if s.success()) {
            breakdown.version_spawn.push(start.elapsed());
        }
        let start = Instant::now();
        if mcp_session_manager::http::client_builder()
            .no_proxy()
            .build()
            .is_ok()
        {
            breakdown.client_build.push(start.elapsed());
        }
        let start = Instant::now();
        if mcp_session_manager::http::loopback_client_builder()
            .build()
            .is_ok()
        {
            breakdown.client_build_no_roots.push(start.elapsed());
        }
    }
    breakdown
}

/// A measured block of one client's session.
#[derive(Debug, Clone, Copy)]
enum Block {
    Sequential(usize),
    Burst(usize),
}

/// One client's long session and what it measured. A failure closes the
/// session (recorded in the column); later blocks skip it.
struct Contender {
    name: &'static str,
    client: Option<AnyClient>,
    server_pid: Option<u32>,
    column: Column,
    /// Calls in measured blocks, and the CPU time they took.
    calls: u32,
    cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    burst_calls: usize,
    burst_time: Duration,
}

impl Contender {
    fn new(name: &'static str, server_pid: Option<u32>) -> Contender {
        Contender {
            name,
            client: None,
            server_pid,
            column: Column::default(),
            calls: 0,
            cpu: Some(Duration::ZERO),
            server_cpu: Some(Duration::ZERO),
            burst_calls: 0,
            burst_time: Duration::ZERO,
        }
    }

    /// initialize + initialized + untimed warm-up calls.
    async fn open(&mut self, mut client: AnyClient, plan: Plan) {
        let opened = async {
            client
                .initialize()
                .await
                .map_err(|e| format!("initialize: {e}"))?;
            for _ in 0..plan.warmup {
                client
                    .echo()
                    .await
                    .map_err(|e| format!("warm-up call: {e}"))?;
            }
            Ok::<_, String>(())
        }
        .await;
        match opened {
            Ok(()) => self.client = Some(client),
            Err(error) => {
                self.column.error(self.name, error);
                client.close().await;
            }
        }
    }

    async fn block(&mut self, block: Block, plan: Plan) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let server_cpu = |pid: Option<u32>| pid.and_then(|pid| cpu_time(&pid.to_string()));
        let cpu_before = client.cpu_time();
        let server_before = server_cpu(self.server_pid);
        let (calls, result) = match block {
            Block::Sequential(n) => {
                let mut result = Ok(());
                for _ in 0..n {
                    let start = Instant::now();
                    if let Err(error) = client.echo().await {
                        result = Err(format!("sequential call: {error}"));
                        break;
                    }
                    self.column.latencies.push(start.elapsed());
                }
                (n, result)
            }
            Block::Burst(n) => {
                let result = client.burst(n, plan.in_flight, plan.burst_timeout).await;
                match result {
                    Ok(elapsed) => {
                        self.burst_calls += n;
                        self.burst_time += elapsed;
                        (n, Ok(()))
                    }
                    Err(error) => (n, Err(format!("burst of {n} calls: {error}"))),
                }
            }
        };
        let add = |total: Option<Duration>, before: Option<Duration>, after: Option<Duration>| {
            Some(total? + after?.saturating_sub(before?))
        };
        self.cpu = add(self.cpu, cpu_before, client.cpu_time());
        self.server_cpu = add(self.server_cpu, server_before, server_cpu(self.server_pid));
        self.calls = self
            .calls
            .saturating_add(u32::try_from(calls).unwrap_or(u32::MAX));
        if let Err(error) = result {
            self.column.error(self.name, error);
            if let Some(client) = self.client.take() {
                client.close().await;
            }
        }
    }

    /// Peak RSS (just before stdin closes), CPU per call, then the end.
    async fn finish(&mut self) {
        if self.burst_calls > 0 {
            self.column.throughput = Some(self.burst_calls as f64 / self.burst_time.as_secs_f64());
        }
        if self.calls > 0 {
            self.column.cpu_per_call = self.cpu.map(|cpu| cpu / self.calls);
            self.column.server_cpu_per_call = self.server_cpu.map(|cpu| cpu / self.calls);
        }
        if let Some(client) = self.client.take() {
            self.column.rss_kib = client.peak_rss_kib();
            client.close().await;
        }
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// What the session needs from each kind of client.
trait Client {
    /// Sends a request and returns its response message.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String>;
    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String>;
    /// `total` echo calls with `in_flight` outstanding; how long they took.
    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String>;
    /// utime + stime of the process doing the client side's work.
    fn cpu_time(&self) -> Option<Duration>;
    /// `VmHWM` of that process, if it is not this one.
    fn peak_rss_kib(&self) -> Option<u64>;
    async fn close(self);

    async fn initialize(&mut self) -> Result<(), String> {
        let answer = self.request("initialize", init_params()).await?;
        if answer.get("result").is_none() {
            return Err(format!("initialize failed: {answer}"));
        }
        self.notify("notifications/initialized", json!({})).await
    }

    async fn echo(&mut self) -> Result<(), String> {
        let answer = self.request("tools/call", echo_params()).await?;
        check_echo(&answer)
    }
}

fn init_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcp-proxy-bench", "version": "0"}
    })
}

fn echo_params() -> Value {
    json!({"name": "echo", "arguments": {"message": "bench"}})
}

fn request_line(id: u64, method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn is_response_to(message: &Value, id: u64) -> bool {
    message.get("method").is_none() && message.get("id").and_then(Value::as_u64) == Some(id)
}

fn check_echo(answer: &Value) -> Result<(), String> {
    match answer
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
    {
        Some(text) if text.starts_with("Echo:") => Ok(()),
        _ => Err(format!(
            "unexpected answer: {}",
            shorten(&answer.to_string())
        )),
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Either client, for the alternating blocks.
enum AnyClient {
    Direct(Direct),
    Stdio(Box<StdioClient>),
}

impl Client for AnyClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        match self {
            AnyClient::Direct(c) => c.request(method, params).await,
            AnyClient::Stdio(c) => c.request(method, params).await,
        }
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        match self {
            AnyClient::Direct(c) => c.notify(method, params).await,
            AnyClient::Stdio(c) => c.notify(method, params).await,
        }
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        match self {
            AnyClient::Direct(c) => c.burst(total, in_flight, limit).await,
            AnyClient::Stdio(c) => c.burst(total, in_flight, limit).await,
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        match self {
            AnyClient::Direct(c) => c.cpu_time(),
            AnyClient::Stdio(c) => c.cpu_time(),
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        match self {
            AnyClient::Direct(c) => c.peak_rss_kib(),
            AnyClient::Stdio(c) => c.peak_rss_kib(),
        }
    }

    async fn close(self) {
        match self {
            AnyClient::Direct(c) => c.close().await,
            AnyClient::Stdio(c) => (*c).close().await,
        }
    }
}

/// The baseline: Streamable HTTP from this process.
#[derive(Clone)]
struct Direct {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    version: Option<String>,
    ids: Arc<AtomicU64>,
}

impl Direct {
    fn new(url: &str) -> Result<Direct, String> {
        // The same client set-up as the proxy's for a loopback http URL.
        let http = mcp_session_manager::http::loopback_client_builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Direct {
            http,
            url: url.to_owned(),
            session: None,
            version: None,
            ids: Arc::new(AtomicU64::new(1)),
        })
    }

    fn post(&self) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .timeout(ANSWER_TIMEOUT);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version);
        }
        request
    }

    /// One POST; the response to `id` and the session id header, if any.
    async fn call(
        &self,
        id: u64,
        method: &str,
        params: &Value,
    ) -> Result<(Value, Option<String>), String> {
        let mut response = self
            .post()
            .body(request_line(id, method, params))
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            let answer: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the answer is not JSON: {e}"))?;
            return Ok((answer, session));
        }
        // Minimal SSE: events end with a blank line; `data:` lines carry JSON.
        // Read to the end of the stream (the server ends it right after the
        // response) so that the connection goes back to the pool.
        let mut buffer = Vec::new();
        let mut answer = None;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read the event stream: {e}"))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                if answer.is_none() {
                    answer = sse_data(&event)
                        .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
                        .filter(|message| is_response_to(message, id));
                }
            }
        }
        answer
            .map(|answer| (answer, session))
            .ok_or_else(|| "the event stream ended without the response".to_owned())
    }

    async fn one_echo(&self) -> Result<(), String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (answer, _) = self.call(id, "tools/call", &echo_params()).await?;
        check_echo(&answer)
    }
}

/// The `data:` lines of one SSE event, joined; `None` if there are none or
/// they are empty (the priming event).
fn sse_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    (!data.iter().all(u8::is_ascii_whitespace)).then_some(data)
}

impl Client for Direct {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (answer, session) = self.call(id, method, &params).await?;
        if method == "initialize" {
            self.session = session;
            self.version = answer
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(answer)
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string();
        let response = self
            .post()
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        let status = response.status();
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("notification answered HTTP {status}"))
        }
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..in_flight {
            let client = self.clone();
            let next = Arc::clone(&next);
            workers.spawn(async move {
                let mut failures = (0usize, None);
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    if let Err(error) = client.one_echo().await {
                        failures.0 += 1;
                        failures.1.get_or_insert(error);
                    }
                }
                failures
            });
        }
        let mut failed = 0;
        let mut first_error = None;
        let joined = tokio::time::timeout(limit, async {
            while let Some(worker) = workers.join_next().await {
                match worker {
                    Ok((n, error)) => {
                        failed += n;
                        if first_error.is_none() {
                            first_error = error;
                        }
                    }
                    Err(error) => {
                        failed += 1;
                        first_error.get_or_insert(format!("worker failed: {error}"));
                    }
                }
            }
        })
        .await;
        let elapsed = start.elapsed();
        if joined.is_err() {
            return Err(format!("not done within {limit:?}"));
        }
        match first_error {
            Some(error) => Err(format!("{failed} of {total} calls failed; first: {error}")),
            None => Ok(elapsed),
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        cpu_time("self")
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        None // in-process
    }

    async fn close(self) {
        let Some(session) = &self.session else { return };
        let _ = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
    }
}

/// A stdio MCP client of a child process (mcp-proxy or the original).
struct StdioClient {
    name: &'static str,
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    next_id: u64,
}

impl StdioClient {
    fn spawn(name: &'static str, mut command: Command) -> Result<StdioClient, String> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .map(|out| BufReader::with_capacity(64 * 1024, out));
        Ok(StdioClient {
            name,
            child,
            pid,
            stdin,
            stdout,
            next_id: 1,
        })
    }

    async fn send_line(&mut self, mut line: String) -> Result<(), String> {
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}'s stdin is closed", self.name))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, stdin.write_all(line.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("cannot write to {}: {error}", self.name)),
            Err(_) => Err(format!("{} does not read its stdin", self.name)),
        }
    }

    async fn read_response(&mut self, id: u64) -> Result<Value, String> {
        let name = self.name;
        let stdout = self
            .stdout
            .as_mut()
            .ok_or_else(|| format!("{name}'s stdout is gone"))?;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, stdout.read_line(&mut line)).await {
                Err(_) => return Err(format!("no answer from {name} within {ANSWER_TIMEOUT:?}")),
                Ok(Err(error)) => return Err(format!("cannot read {name}'s stdout: {error}")),
                Ok(Ok(0)) => return Err(format!("{name} closed its stdout")),
                Ok(Ok(_)) => {}
            }
            if let Ok(message) = serde_json::from_str::<Value>(&line) {
                if is_response_to(&message, id) {
                    return Ok(message);
                }
            }
        }
    }

    /// `total` echo calls with `in_flight` outstanding on stdin/stdout; how
    /// long they took and, if `timed`, each call's latency (write → answer).
    async fn pipelined(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
        timed: bool,
    ) -> Result<(Duration, Vec<Duration>), String> {
        let name = self.name;
        let (Some(mut stdin), Some(mut stdout)) = (self.stdin.take(), self.stdout.take()) else {
            return Err(format!("{name}'s stdio is gone"));
        };
        let first = self.next_id;
        let count = u64::try_from(total).map_err(|e| e.to_string())?;
        self.next_id += count;
        let permits = Arc::new(Semaphore::new(in_flight));
        let start = Instant::now();
        // Nanoseconds from `start` to each request's write, if timed.
        let sent: Arc<Vec<AtomicU64>> = Arc::new(
            (0..if timed { total } else { 0 })
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        let since = |start: Instant| u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);

        let writer_permits = Arc::clone(&permits);
        let writer_sent = Arc::clone(&sent);
        let mut writer = tokio::spawn(async move {
            let params = echo_params();
            for id in first..first + count {
                let permit = writer_permits
                    .acquire()
                    .await
                    .map_err(|e| format!("semaphore closed: {e}"))?;
                permit.forget();
                let mut line = request_line(id, "tools/call", &params);
                line.push('\n');
                if let Some(slot) = usize::try_from(id - first)
                    .ok()
                    .and_then(|i| writer_sent.get(i))
                {
                    slot.store(since(start), Ordering::Relaxed);
                }
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("cannot write to {name}: {e}"))?;
            }
            Ok::<_, String>(stdin)
        });
        let mut reader = tokio::spawn(async move {
            let mut line = String::new();
            let (mut done, mut failed, mut first_error) = (0usize, 0usize, None);
            let mut latencies = Vec::with_capacity(sent.len());
            while done < total {
                line.clear();
                match stdout.read_line(&mut line).await {
                    Ok(0) => return Err(format!("{name} closed its stdout")),
                    Ok(_) => {}
                    Err(error) => return Err(format!("cannot read {name}'s stdout: {error}")),
                }
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if message.get("method").is_some() {
                    continue;
                }
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if !(first..first + count).contains(&id) {
                    continue;
                }
                done += 1;
                if let Some(slot) = usize::try_from(id - first).ok().and_then(|i| sent.get(i)) {
                    let at = slot.load(Ordering::Relaxed);
                    latencies.push(Duration::from_nanos(since(start).saturating_sub(at)));
                }
                if let Err(error) = check_echo(&message) {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
                permits.add_permits(1);
            }
            Ok::<_, String>((stdout, failed, first_error, latencies))
        });

        let joined = tokio::time::timeout(limit, async {
            let read = (&mut reader).await;
            let written = (&mut writer).await;
            (written, read)
        })
        .await;
        let elapsed = start.elapsed();
        let Ok((written, read)) = joined else {
            writer.abort();
            reader.abort();
            return Err(format!("not done within {limit:?}"));
        };
        let stdin = written.map_err(|e| format!("writer task: {e}"))??;
        let (stdout, failed, first_error, latencies) =
            read.map_err(|e| format!("reader task: {e}"))??;
        self.stdin = Some(stdin);
        self.stdout = Some(stdout);
        match first_error {
            Some(error) => Err(format!("{failed} of {total} calls failed; first: {error}")),
            None => Ok((elapsed, latencies)),
        }
    }
}

impl Client for StdioClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(request_line(id, method, &params)).await?;
        self.read_response(id).await
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        let line = json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string();
        self.send_line(line).await
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        self.pipelined(total, in_flight, limit, false)
            .await
            .map(|(elapsed, _)| elapsed)
    }

    fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid.to_string())
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(self.pid)
    }

    async fn close(mut self) {
        self.stdin = None;
        if tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "bench: {} did not exit within {EXIT_TIMEOUT:?} of stdin closing; killing it",
                self.name
            );
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The host table: `mcp-manager host` against the same child over stdio
// ---------------------------------------------------------------------------

/// The config entry the host serves.
const HOST_ENTRY: &str = "everything";
/// Concurrent sessions through the host, and requests in flight on stdio.
const CONCURRENCY: [usize; 2] = [8, 32];

// Targets for the host.
const TARGET_HOST_P50_RATIO: f64 = 1.15;
const TARGET_HOST_THROUGHPUT_RATIO: f64 = 0.8;
const TARGET_HOST_RSS_KIB: u64 = 10 * 1024;

/// One concurrency level's calls.
#[derive(Debug, Default, Clone)]
struct Level {
    latencies: Vec<Duration>,
    calls: usize,
    time: Duration,
}

impl Level {
    fn add(&mut self, elapsed: Duration, latencies: Vec<Duration>) {
        self.calls += latencies.len();
        self.time += elapsed;
        self.latencies.extend(latencies);
    }

    fn throughput(&self) -> Option<f64> {
        (self.calls > 0 && !self.time.is_zero())
            .then(|| self.calls as f64 / self.time.as_secs_f64())
    }
}

/// CPU time of this process, the node child and (host side) mcp-manager.
#[derive(Debug, Clone, Copy)]
struct Cpu([Option<Duration>; 3]);

impl Cpu {
    const ZERO: Cpu = Cpu([Some(Duration::ZERO); 3]);

    fn now(child: Option<u32>, host: Option<u32>) -> Cpu {
        let of = |pid: Option<u32>| pid.and_then(|pid| cpu_time(&pid.to_string()));
        Cpu([cpu_time("self"), of(child), of(host)])
    }

    /// Adds `after - before` to each total (none where a reading is missing).
    fn add(&mut self, before: Cpu, after: Cpu) {
        for ((total, b), a) in self.0.iter_mut().zip(before.0).zip(after.0) {
            *total = match (*total, b, a) {
                (Some(t), Some(b), Some(a)) => Some(t + a.saturating_sub(b)),
                _ => None,
            };
        }
    }
}

/// What one side of the host table measured.
#[derive(Debug)]
struct Side {
    name: &'static str,
    /// The node child's pid, and mcp-manager's (host side only).
    child_pid: Option<u32>,
    host_pid: Option<u32>,
    /// `initialize` + `initialized` of each session (host side only).
    opens: Vec<Duration>,
    sequential: Vec<Duration>,
    levels: [Level; 2],
    /// Calls in measured blocks, and the CPU they took.
    calls: usize,
    cpu: Cpu,
    host_rss_kib: Option<u64>,
    child_rss_kib: Option<u64>,
    /// A failure stops the side; later blocks skip it.
    failed: bool,
    errors: Vec<String>,
}

impl Side {
    fn new(name: &'static str) -> Side {
        Side {
            name,
            child_pid: None,
            host_pid: None,
            opens: Vec::new(),
            sequential: Vec::new(),
            levels: [Level::default(), Level::default()],
            calls: 0,
            cpu: Cpu::ZERO,
            host_rss_kib: None,
            child_rss_kib: None,
            failed: false,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, error: impl std::fmt::Display) {
        let text = format!("{}: {error}", self.name);
        eprintln!("bench: {text}");
        self.errors.push(text);
        self.failed = true;
    }

    /// Runs one measured block unless the side has failed or the time
    /// budget is spent; records its CPU.
    async fn block<F>(&mut self, budget: &Budget, run: F) -> Option<(Duration, Vec<Duration>)>
    where
        F: Future<Output = Result<(Duration, Vec<Duration>), String>>,
    {
        if self.failed {
            return None;
        }
        if budget.spent() {
            self.error(budget.message());
            return None;
        }
        let before = Cpu::now(self.child_pid, self.host_pid);
        let result = run.await;
        self.cpu
            .add(before, Cpu::now(self.child_pid, self.host_pid));
        match result {
            Ok((elapsed, latencies)) => {
                self.calls += latencies.len();
                Some((elapsed, latencies))
            }
            Err(error) => {
                self.error(error);
                None
            }
        }
    }

    fn cpu_per_call(&self, which: usize) -> Option<Duration> {
        let calls = u32::try_from(self.calls).ok().filter(|&c| c > 0)?;
        self.cpu
            .0
            .get(which)
            .copied()
            .flatten()
            .map(|cpu| cpu / calls)
    }
}

/// The host table's time limit.
struct Budget {
    total: Duration,
    deadline: Instant,
    /// The longest wait for one block.
    block: Duration,
}

impl Budget {
    fn new(plan: Plan) -> Budget {
        Budget {
            total: plan.host_budget,
            deadline: Instant::now() + plan.host_budget,
            block: plan.burst_timeout,
        }
    }

    fn spent(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// How long the next block may take.
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(self.block)
    }

    fn message(&self) -> String {
        format!(
            "the host table's time budget ({:?}) ran out; the blocks left were skipped",
            self.total
        )
    }
}

/// `mcp-manager host everything` with a config of its own, killed when dropped.
struct Hosted {
    child: Child,
    pid: u32,
    port: u16,
    /// The node process the host started.
    child_pid: Option<u32>,
    _home: tempfile::TempDir,
}

impl Hosted {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    async fn start(everything: &Path) -> Result<Hosted, String> {
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let port = free_port()?;
        let config = json!({"mcpServers": {HOST_ENTRY: {
            "command": "node",
            "args": [everything.to_string_lossy(), "stdio"],
            "port": port,
        }}});
        let file = mcp_session_manager::paths::config_file(home.path());
        std::fs::write(&file, config.to_string())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let mut child = Command::new(manager_bin())
            .args(["host", HOST_ENTRY])
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start mcp-manager: {e}"))?;
        let pid = child.id().ok_or("mcp-manager exited at once")?;
        let http = mcp_session_manager::http::loopback_client_builder()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let health_url = format!("http://127.0.0.1:{port}/health");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("mcp-manager exited ({status}) before it was ready"));
            }
            if let Some(health) = health(&http, &health_url).await {
                if health["state"] == "ok" {
                    if let Some(child_pid) = health["pid"].as_u64() {
                        return Ok(Hosted {
                            child,
                            pid,
                            port,
                            child_pid: u32::try_from(child_pid).ok(),
                            _home: home,
                        });
                    }
                }
                last = health;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the host was not ready within 30 s; /health: {}",
                    shorten(&last.to_string())
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (the host stops its child), a bounded wait, then SIGKILL.
    /// Says so if the host's child outlived it.
    async fn stop(mut self) -> Result<(), String> {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
        if tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
            return Err(format!(
                "mcp-manager did not exit within {EXIT_TIMEOUT:?} of SIGTERM; killed"
            ));
        }
        // Its child should be gone with it (Linux: /proc tells).
        let Some(child_pid) = self.child_pid else {
            return Ok(());
        };
        let alive = || {
            std::fs::read(format!("/proc/{child_pid}/cmdline")).is_ok_and(|c| {
                c.windows(b"server-everything".len())
                    .any(|w| w == b"server-everything")
            })
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(child_pid.to_string())
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await;
            return Err(format!(
                "the host's child (pid {child_pid}) outlived mcp-manager; killed"
            ));
        }
        Ok(())
    }
}

async fn health(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body = response.bytes().await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// `sessions` echo calls in parallel (one in flight each) until `total`
/// calls are done; how long they took and each call's latency.
async fn host_calls(
    sessions: &[Arc<tokio::sync::Mutex<LeanSession>>],
    total: usize,
    limit: Duration,
) -> Result<(Duration, Vec<Duration>), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for session in sessions {
        let session = Arc::clone(session);
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut client = session.lock_owned().await;
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let call = Instant::now();
                client.one_echo().await?;
                latencies.push(call.elapsed());
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let joined = tokio::time::timeout(limit, async {
        let mut first_error = None;
        while let Some(worker) = workers.join_next().await {
            match worker {
                Ok(Ok(mine)) => latencies.extend(mine),
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(error) => {
                    first_error.get_or_insert(format!("worker failed: {error}"));
                }
            }
        }
        first_error
    })
    .await;
    let elapsed = start.elapsed();
    match joined {
        Err(_) => Err(format!(
            "{total} calls over {} sessions not done within {limit:?}",
            sessions.len()
        )),
        Ok(Some(error)) => Err(format!(
            "{} of {total} calls done; a session failed: {error}",
            latencies.len()
        )),
        Ok(None) => Ok((elapsed, latencies)),
    }
}

/// One host session on a keep-alive HTTP/1 connection that the calling task
/// drives itself: no connection task, no pool, no channel between them. It
/// is the HTTP counterpart of the pipe client on the stdio side, so that
/// the table measures the host rather than the client library (reqwest
/// costs ~50 µs of CPU per call here, four times the pipe client).
struct LeanSession {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    connection: std::pin::Pin<Box<LeanConnection>>,
    host: String,
    session: String,
    version: String,
    next_id: u64,
}

type LeanConnection = hyper::client::conn::http1::Connection<
    hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    http_body_util::Full<bytes::Bytes>,
>;

impl LeanSession {
    /// A connection for a session `opened` (initialized) by a [`Direct`].
    async fn connect(port: u16, opened: &Direct) -> Result<LeanSession, String> {
        let (Some(session), Some(version)) = (&opened.session, &opened.version) else {
            return Err("the session has no id or protocol version".to_owned());
        };
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| format!("cannot connect to the host: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        Ok(LeanSession {
            sender,
            connection: Box::pin(connection),
            host: format!("127.0.0.1:{port}"),
            session: session.clone(),
            version: version.clone(),
            next_id: 1_000_000,
        })
    }

    /// `work`, with the connection driven while it runs.
    async fn drive<T>(
        connection: &mut std::pin::Pin<Box<LeanConnection>>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, String> {
        tokio::select! {
            biased;
            done = work => Ok(done),
            ended = connection.as_mut() => Err(format!("the connection ended: {ended:?}")),
        }
    }

    async fn one_echo(&mut self) -> Result<(), String> {
        use http_body_util::BodyExt;
        let id = self.next_id;
        self.next_id += 1;
        let request = hyper::Request::post("/mcp")
            .header(hyper::header::HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", &self.version)
            .body(http_body_util::Full::new(bytes::Bytes::from(request_line(
                id,
                "tools/call",
                &echo_params(),
            ))))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let Self {
            sender, connection, ..
        } = self;
        let answer = Self::drive(connection, async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("POST failed: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let is_sse = response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?
                .to_bytes();
            let json = if is_sse {
                body.split(|b| *b == b'\n')
                    .filter_map(|line| line.strip_prefix(b"data: "))
                    .find(|data| !data.is_empty())
                    .unwrap_or_default()
                    .to_vec()
            } else {
                body.to_vec()
            };
            serde_json::from_slice::<Value>(&json)
                .map_err(|e| format!("the answer is not JSON: {e}"))
        })
        .await??;
        if !is_response_to(&answer, id) {
            return Err(format!(
                "not the answer to {id}: {}",
                shorten(&answer.to_string())
            ));
        }
        check_echo(&answer)
    }
}

/// `total` sequential echo calls on stdio, within `limit`; their latencies.
async fn stdio_sequential(
    client: &mut StdioClient,
    total: usize,
    limit: Duration,
) -> Result<(Duration, Vec<Duration>), String> {
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    let calls = async {
        for _ in 0..total {
            let call = Instant::now();
            client.echo().await?;
            latencies.push(call.elapsed());
        }
        Ok::<_, String>(())
    };
    match tokio::time::timeout(limit, calls).await {
        Ok(Ok(())) => Ok((start.elapsed(), latencies)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!(
            "{total} sequential calls not done within {limit:?}"
        )),
    }
}

/// Opens `count` sessions on the host (each its own HTTP client), timing
/// `initialize` + `initialized`.
async fn open_host_sessions(
    url: &str,
    count: usize,
    side: &mut Side,
    budget: &Budget,
) -> Vec<(Direct, Arc<tokio::sync::Mutex<LeanSession>>)> {
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        if budget.spent() {
            side.error(budget.message());
            break;
        }
        let opened = async {
            let mut client = Direct::new(url)?;
            let start = Instant::now();
            client.initialize().await?;
            let elapsed = start.elapsed();
            let port = url::Url::parse(url)
                .ok()
                .and_then(|u| u.port())
                .ok_or("the host URL has no port")?;
            let lean = LeanSession::connect(port, &client).await?;
            Ok::<_, String>(((client, Arc::new(tokio::sync::Mutex::new(lean))), elapsed))
        }
        .await;
        match opened {
            Ok((client, elapsed)) => {
                side.opens.push(elapsed);
                sessions.push(client);
            }
            Err(error) => {
                side.error(format!("opening session {}: {error}", sessions.len() + 1));
                break;
            }
        }
    }
    sessions
}

/// The second table: `tools/call echo` through `mcp-manager host` with 1, 8
/// and 32 sessions against the same child spoken to over stdio.
async fn run_host(plan: Plan, everything: &Path) {
    let started = Instant::now();
    let load_before = load_average();
    let budget = Budget::new(plan);
    let mut host = Side::new("mcp-manager host");
    let mut stdio = Side::new("direct stdio");
    let sequential_block = plan.host_sequential / plan.rounds.max(1);
    let calls_block = plan.host_calls / plan.rounds.max(1);

    let hosted = match Hosted::start(everything).await {
        Ok(hosted) => {
            host.host_pid = Some(hosted.pid);
            host.child_pid = hosted.child_pid;
            Some(hosted)
        }
        Err(error) => {
            host.error(error);
            None
        }
    };
    let mut command = Command::new("node");
    command.arg(everything).arg("stdio").stderr(Stdio::null());
    let mut child = match StdioClient::spawn("direct stdio", command) {
        Ok(client) => {
            stdio.child_pid = Some(client.pid);
            Some(client)
        }
        Err(error) => {
            stdio.error(error);
            None
        }
    };

    // Sessions, then untimed load on both children (JIT warm-up).
    let max_sessions = CONCURRENCY.iter().copied().max().unwrap_or(1);
    let (openers, sessions): (Vec<Direct>, Vec<_>) = match &hosted {
        Some(hosted) => open_host_sessions(&hosted.url(), max_sessions, &mut host, &budget)
            .await
            .into_iter()
            .unzip(),
        None => (Vec::new(), Vec::new()),
    };
    if let Some(first) = sessions.first() {
        let warm = async {
            host_calls(std::slice::from_ref(first), plan.warmup, budget.left()).await?;
            host_calls(&sessions, plan.server_warmup, budget.left()).await
        };
        if let Err(error) = warm.await {
            host.error(format!("warm-up: {error}"));
        }
    }
    if let Some(client) = child.as_mut() {
        let warm = async {
            client
                .initialize()
                .await
                .map_err(|e| format!("initialize: {e}"))?;
            stdio_sequential(client, plan.warmup, budget.left()).await?;
            client
                .pipelined(plan.server_warmup, max_sessions, budget.left(), false)
                .await
        };
        if let Err(error) = warm.await {
            stdio.error(format!("warm-up: {error}"));
        }
    }

    // Measured blocks, alternating between the sides; each round has every
    // kind of block, so a spent budget leaves fewer rounds, not fewer rows.
    let one = sessions.get(..1).unwrap_or(&[]);
    for _ in 0..plan.rounds.max(1) {
        if let Some((_, latencies)) = host
            .block(&budget, host_calls(one, sequential_block, budget.left()))
            .await
        {
            host.sequential.extend(latencies);
        }
        if let Some(client) = child.as_mut() {
            let run = stdio_sequential(client, sequential_block, budget.left());
            if let Some((_, latencies)) = stdio.block(&budget, run).await {
                stdio.sequential.extend(latencies);
            }
        }
        for (level, &count) in CONCURRENCY.iter().enumerate() {
            let group = sessions.get(..count).unwrap_or(&[]);
            if let Some((elapsed, latencies)) = host
                .block(&budget, host_calls(group, calls_block, budget.left()))
                .await
            {
                host.levels[level].add(elapsed, latencies);
            }
            if let Some(client) = child.as_mut() {
                let run = client.pipelined(calls_block, count, budget.left(), true);
                if let Some((elapsed, latencies)) = stdio.block(&budget, run).await {
                    stdio.levels[level].add(elapsed, latencies);
                }
            }
        }
    }

    // Peak RSS, then the end of everything.
    host.host_rss_kib = host.host_pid.and_then(vm_hwm_kib);
    host.child_rss_kib = host.child_pid.and_then(vm_hwm_kib);
    stdio.child_rss_kib = stdio.child_pid.and_then(vm_hwm_kib);
    drop(sessions);
    for session in openers {
        session.close().await;
    }
    if let Some(hosted) = hosted {
        if let Err(error) = hosted.stop().await {
            host.error(error);
        }
    }
    if let Some(client) = child {
        client.close().await;
    }
    print_host_report(
        plan,
        &stdio,
        &host,
        started.elapsed(),
        (load_before, load_average()),
    );
}

// ---------------------------------------------------------------------------
// The manager table: supervision costs
// ---------------------------------------------------------------------------

// Targets for the manager.
const TARGET_MANAGER_RSS_KIB: u64 = 10 * 1024;
const TARGET_RECOVERY_OVERHEAD: Duration = Duration::from_millis(300);

/// `mcp-manager` (no subcommand) over three server-everything daemons
/// (streamableHttp, sse, stdio hosted), killed when dropped.
struct ManagerRun {
    child: Child,
    port: u16,
    daemon_port: u16,
    http: reqwest::Client,
    home: tempfile::TempDir,
}

impl ManagerRun {
    async fn start(everything: &Path) -> Result<ManagerRun, String> {
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let [port, http_port, sse_port, stdio_port] =
            [free_port()?, free_port()?, free_port()?, free_port()?];
        let js = everything.to_string_lossy();
        let config = json!({"managerPort": port, "mcpServers": {
            "http": {"command": "node", "args": [js, "streamableHttp"],
                     "env": {"PORT": http_port.to_string()}, "port": http_port,
                     "transport": "streamable-http"},
            "sse": {"command": "node", "args": [js, "sse"],
                    "env": {"PORT": sse_port.to_string()}, "port": sse_port, "transport": "sse"},
            "stdio": {"command": "node", "args": [js, "stdio"], "port": stdio_port},
        }});
        let file = mcp_session_manager::paths::config_file(home.path());
        std::fs::write(&file, config.to_string())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let child = Command::new(manager_bin())
            .arg("--start-all")
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start mcp-manager: {e}"))?;
        let http = mcp_session_manager::http::loopback_client_builder()
            .timeout(ANSWER_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let run = ManagerRun {
            child,
            port,
            daemon_port: http_port,
            http,
            home,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = run.status().await {
                let daemons = status["daemons"].as_array().cloned().unwrap_or_default();
                if daemons.len() == 3 && daemons.iter().all(|d| d["state"] == "running") {
                    return Ok(run);
                }
            }
            if Instant::now() > deadline {
                return Err("the three daemons were not running within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status(&self) -> Option<Value> {
        manager_status(&self.http, self.port).await
    }

    async fn daemon_pid(&self, name: &str) -> Option<u32> {
        let status = self.status().await?;
        let daemons = status["daemons"].as_array()?;
        let daemon = daemons.iter().find(|d| d["name"] == name)?;
        u32::try_from(daemon["pid"].as_u64()?).ok()
    }

    /// SIGTERM: the manager stops its daemons and exits.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY-free: a plain signal to our own child.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A manager's `GET /status` on `port`, parsed; `None` if it does not answer.
async fn manager_status(http: &reqwest::Client, port: u16) -> Option<Value> {
    let url = format!("http://127.0.0.1:{port}/status");
    let body = http.get(url).send().await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// Polls `GET /mcp` on `port` every 2 ms until it answers HTTP (400, the
/// answer without a session); the time it took.
async fn until_serving(http: &reqwest::Client, port: u16, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/mcp");
    while start.elapsed() < limit {
        if http.get(&url).send().await.is_ok() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// server-everything (streamableHttp) started by hand: spawn → serving.
async fn own_start(everything: &Path, http: &reqwest::Client) -> Result<Duration, String> {
    let port = free_port()?;
    let start = Instant::now();
    let mut child = Command::new("node")
        .arg(everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let serving = until_serving(http, port, Duration::from_secs(20)).await;
    let elapsed = start.elapsed();
    let _ = child.kill().await;
    serving
        .map(|_| elapsed)
        .ok_or_else(|| "server-everything did not start".into())
}

/// The third table: the manager's own cost and how fast it heals.
async fn run_manager(plan: Plan, everything: &Path) {
    let started = Instant::now();
    let rounds = if plan.quick { 2 } else { 5 };
    let mut errors = Vec::new();
    let http = match mcp_session_manager::http::loopback_client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            println!("cannot run the manager benchmark: {error}");
            return;
        }
    };
    let run = match ManagerRun::start(everything).await {
        Ok(run) => run,
        Err(error) => {
            println!("cannot run the manager benchmark: {error}");
            return;
        }
    };
    let manager_pid = run.child.id();
    // Idle: three daemons up, nothing asked for two health-check-free seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = manager_pid.and_then(|pid| proc_status_kib(pid, "VmRSS:"));
    // /status, sequential, on one keep-alive connection.
    let mut status_latencies = Vec::new();
    for _ in 0..if plan.quick { 50 } else { 500 } {
        let call = Instant::now();
        if run.status().await.is_none() {
            errors.push("a /status call failed".to_owned());
            break;
        }
        status_latencies.push(call.elapsed());
    }
    // kill -9 → serving again, against the daemon's own start time.
    let mut recoveries = Vec::new();
    let mut own_starts = Vec::new();
    for round in 0..rounds {
        match own_start(everything, &http).await {
            Ok(own) => own_starts.push(own),
            Err(error) => errors.push(error),
        }
        if round > 0 {
            // Past the manager's stability window, so each kill is a first
            // crash (a crash loop backs off by design).
            tokio::time::sleep(mcp_session_manager::manager::supervisor::STABLE_AFTER).await;
        }
        let Some(pid) = run.daemon_pid("http").await else {
            errors.push("no pid for the http daemon".into());
            break;
        };
        let killed = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        // Wait until the old one is gone (its port closes), then time the new.
        let url = format!("http://127.0.0.1:{}/mcp", run.daemon_port);
        while http.get(&url).send().await.is_ok() && killed.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match until_serving(&http, run.daemon_port, Duration::from_secs(30)).await {
            Some(_) => recoveries.push(killed.elapsed()),
            None => errors.push(format!("round {round}: not serving 30 s after kill -9")),
        }
    }
    // The same through a proxy session: kill -9 → its next call answered.
    let mut proxy_recoveries = Vec::new();
    let mut proxy = Command::new(proxy_bin());
    proxy
        .args(["--target", "http", "--manager-port", &run.port.to_string()])
        .env("MCP_SESSION_MANAGER_HOME", run.home.path())
        .env("MCP_PROXY_LOG", "error")
        .stderr(Stdio::null());
    match StdioClient::spawn("mcp-proxy", proxy) {
        Ok(mut client) => {
            if let Err(error) = client.initialize().await {
                errors.push(format!("proxy initialize: {error}"));
            } else {
                for round in 0..rounds {
                    tokio::time::sleep(mcp_session_manager::manager::supervisor::STABLE_AFTER)
                        .await;
                    let Some(pid) = run.daemon_pid("http").await else {
                        errors.push("no pid for the http daemon".into());
                        break;
                    };
                    let killed = Instant::now();
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    // A read: sent again on the new session if the kill cut
                    // it (a call cut mid-way would get an error instead).
                    let answered = match client.request("ping", json!({})).await {
                        Ok(answer) if answer.get("result").is_some() => Ok(killed.elapsed()),
                        Ok(answer) => {
                            Err(format!("ping answered {}", shorten(&answer.to_string())))
                        }
                        Err(error) => Err(error),
                    };
                    match answered {
                        Ok(elapsed) => proxy_recoveries.push(elapsed),
                        Err(error) => errors.push(format!("proxy round {round}: {error}")),
                    }
                    if let Err(error) = client.echo().await {
                        errors.push(format!("proxy round {round}, the call after: {error}"));
                    }
                }
            }
            client.close().await;
        }
        Err(error) => errors.push(error),
    }
    let peak_rss = manager_pid.and_then(vm_hwm_kib);
    run.stop().await;
    let proxy_recovery = median(&proxy_recoveries);
    let proxy_overhead = match (proxy_recovery, median(&own_starts)) {
        (Some(r), Some(o)) => Some(r.saturating_sub(o)),
        _ => None,
    };

    let recovery = median(&recoveries);
    let own = median(&own_starts);
    let overhead = match (recovery, own) {
        (Some(r), Some(o)) => Some(r.saturating_sub(o)),
        _ => None,
    };
    let status_p50 = median(&status_latencies);
    println!();
    println!(
        "## mcp-manager benchmark — three server-everything daemons (streamableHttp, sse, stdio hosted){}",
        if plan.quick { " (BENCH_QUICK)" } else { "" }
    );
    println!();
    println!("| metric | value | target | met |");
    println!("|---|---:|---:|---:|");
    let met = |ok: Option<bool>| match ok {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "—",
    };
    let row = |metric: String, value: String, target: &str, ok: Option<bool>| {
        let met = if target.is_empty() { "" } else { met(ok) };
        println!("| {metric} | {value} | {target} | {met} |");
    };
    row(
        "manager RSS, idle with three daemons (VmRSS)".into(),
        show(idle_rss.map(|k| k as f64), Unit::KiB),
        "≤ 10 MiB",
        idle_rss.map(|k| k <= TARGET_MANAGER_RSS_KIB),
    );
    row(
        "manager peak RSS (VmHWM)".into(),
        show(peak_rss.map(|k| k as f64), Unit::KiB),
        "",
        None,
    );
    row(
        format!("kill -9 → serving again, median of {}", recoveries.len()),
        show(secs(recovery), Unit::Time),
        "",
        None,
    );
    row(
        format!(
            "the daemon's own start (spawn → serving), median of {}",
            own_starts.len()
        ),
        show(secs(own), Unit::Time),
        "",
        None,
    );
    row(
        "recovery minus own start".into(),
        show(secs(overhead), Unit::Time),
        "≤ 300 ms",
        overhead.map(|o| o <= TARGET_RECOVERY_OVERHEAD),
    );
    row(
        format!(
            "kill -9 → a proxy session's next request (`ping`) answered, median of {}",
            proxy_recoveries.len()
        ),
        show(secs(proxy_recovery), Unit::Time),
        "",
        None,
    );
    row(
        "that, minus the daemon's own start".into(),
        show(secs(proxy_overhead), Unit::Time),
        "≤ 300 ms",
        proxy_overhead.map(|o| o <= TARGET_RECOVERY_OVERHEAD),
    );
    row(
        format!(
            "`GET /status` p50 / p99 ({} calls, keep-alive)",
            status_latencies.len()
        ),
        format!(
            "{} / {}",
            show(secs(status_p50), Unit::Time),
            show(secs(percentile(&status_latencies, 99.0)), Unit::Time)
        ),
        "",
        None,
    );
    for error in &errors {
        println!("- {error}");
    }
    println!();
    println!(
        "manager bench took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// The failures under a table.
fn print_errors<'a>(notes: impl Iterator<Item = &'a String>) {
    let notes: Vec<&String> = notes.collect();
    if !notes.is_empty() {
        println!();
        println!("Errors:");
        for note in notes {
            println!("- {note}");
        }
    }
}

/// ✓, ✗, or ? when it could not be measured.
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`); `None` off Linux.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// The fan-out table: what many sessions cost, each with its own children or
// all through the tool
// ---------------------------------------------------------------------------

/// Claude Code sessions in the fan-out table.
const FANOUT_SESSIONS: usize = 8;
/// Through the tool, total RSS at `FANOUT_SESSIONS` ≤ this × direct.
const TARGET_FANOUT_RSS_RATIO: f64 = 0.25;
/// The daemons' `idleTimeout` (s) in the fan-out config: the idle row waits
/// for it.
const FANOUT_IDLE_TIMEOUT: u64 = 3;
/// The fan-out table stops opening sessions (and says so) after this long.
const FANOUT_BUDGET: Duration = Duration::from_secs(90);
/// Time for fresh processes to finish starting before their RSS is read.
const FANOUT_SETTLE: Duration = Duration::from_millis(1500);

/// One of the three stdio servers every session uses.
struct FanServer {
    /// Its name in the tool's config (`mcp-proxy --target NAME`).
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl FanServer {
    /// server-memory, server-everything and the FastMCP fixture, all over
    /// stdio from the local fixtures (offline).
    fn all(memory_file: &Path) -> Result<Vec<FanServer>, String> {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let memory =
            fixtures.join("node_modules/@modelcontextprotocol/server-memory/dist/index.js");
        let everything = everything_js();
        let python = if cfg!(windows) {
            fixtures.join(".venv/Scripts/python.exe")
        } else {
            fixtures.join(".venv/bin/python")
        };
        let fastmcp = fixtures.join("fastmcp_server.py");
        for path in [&memory, &everything, &python, &fastmcp] {
            if !path.exists() {
                return Err(format!(
                    "{} is missing; run `bash scripts/install-test-fixtures.sh`",
                    path.display()
                ));
            }
        }
        let text = |p: &Path| p.to_string_lossy().into_owned();
        Ok(vec![
            FanServer {
                name: "memory",
                program: PathBuf::from("node"),
                args: vec![text(&memory)],
                env: vec![("MEMORY_FILE_PATH", text(memory_file))],
            },
            FanServer {
                name: "everything",
                program: PathBuf::from("node"),
                args: vec![text(&everything), "stdio".to_owned()],
                env: Vec::new(),
            },
            FanServer {
                name: "fastmcp",
                program: python,
                args: vec![text(&fastmcp), "--transport".to_owned(), "stdio".to_owned()],
                env: Vec::new(),
            },
        ])
    }

    /// The server itself, as Claude Code starts it: a child on stdio.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stderr(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Its `config.json` entry: hosted on `port`.
    fn entry(&self, port: u16) -> Value {
        let env: serde_json::Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        json!({
            "command": self.program.to_string_lossy(),
            "args": self.args,
            "env": env,
            "port": port,
            "startTimeout": 30,
        })
    }
}

/// Every process in the trees under `roots`, roots included (`/proc`:
/// Linux only, `None` elsewhere).
fn process_tree(roots: &[u32]) -> Option<Vec<u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name (field 2) may hold spaces: the ppid is the second
        // field after its ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    Some(seen.into_iter().collect())
}

/// The live processes whose environment sets `MCP_SESSION_MANAGER_HOME` to
/// `home`: whatever was started for the tool's home, wherever it was
/// re-parented (Linux only; empty elsewhere).
fn processes_of_home(home: &Path) -> Vec<u32> {
    let mut needle = b"MCP_SESSION_MANAGER_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_slice()))
        })
        .collect()
}

/// What the processes under `roots` use: VmRSS summed (KiB) and how many
/// there are (zombies and exited ones not counted). `None` off Linux.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Usage {
    rss_kib: u64,
    processes: usize,
}

fn usage(roots: &[u32]) -> Option<Usage> {
    let mut total = Usage::default();
    for pid in process_tree(roots)? {
        if let Some(rss) = proc_status_kib(pid, "VmRSS:") {
            total.rss_kib += rss;
            total.processes += 1;
        }
    }
    Some(total)
}

/// `usage` once fresh processes have settled: the median of three reads.
async fn settled_usage(roots: &[u32]) -> Option<Usage> {
    tokio::time::sleep(FANOUT_SETTLE).await;
    let mut samples = Vec::new();
    for _ in 0..3 {
        samples.extend(usage(roots));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

/// One Claude Code session: its three stdio children, initialized (the
/// three at once, as Claude Code does).
async fn open_fan_session(
    commands: Vec<(&'static str, Command)>,
) -> Result<Vec<StdioClient>, String> {
    let mut clients = Vec::new();
    for (name, command) in commands {
        clients.push(StdioClient::spawn(name, command)?);
    }
    let results = futures_util::future::join_all(clients.iter_mut().map(|c| c.initialize())).await;
    for (client, result) in clients.iter().zip(results) {
        result.map_err(|e| format!("{}: {e}", client.name))?;
    }
    Ok(clients)
}

/// What one side of the fan-out table measured.
#[derive(Debug, Default)]
struct FanSide {
    /// Opening each session (spawn → every child initialized).
    opens: Vec<Duration>,
    at_seven: Option<Usage>,
    at_eight: Option<Usage>,
    /// The last session's own processes (its three children, or its three
    /// proxies), VmRSS summed.
    last_session_kib: Option<u64>,
    /// Through the tool: proxies closed and the daemons stopped for idleness.
    idle: Option<Usage>,
    /// Proxies closed → every daemon `idle`.
    idle_after: Option<Duration>,
    errors: Vec<String>,
}

impl FanSide {
    fn error(&mut self, side: &str, error: impl std::fmt::Display) {
        let text = format!("{side}: {error}");
        eprintln!("bench: {text}");
        self.errors.push(text);
    }

    /// RSS at 8 sessions minus at 7.
    fn growth_kib(&self) -> Option<i64> {
        let (seven, eight) = (self.at_seven?, self.at_eight?);
        Some(i64::try_from(eight.rss_kib).ok()? - i64::try_from(seven.rss_kib).ok()?)
    }
}

/// Opens `FANOUT_SESSIONS` sessions one after the other with `open`,
/// measuring the process trees (the sessions' processes plus `extra()`) at
/// 7 and at 8; returns the sessions (to be closed by the caller).
async fn fan_out<F, Fut>(
    side: &mut FanSide,
    label: &str,
    deadline: Instant,
    mut open: F,
    extra: impl Fn() -> Vec<u32>,
) -> Vec<Vec<StdioClient>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<StdioClient>, String>>,
{
    let mut sessions: Vec<Vec<StdioClient>> = Vec::new();
    let roots = |sessions: &[Vec<StdioClient>]| {
        let mut pids: Vec<u32> = sessions.iter().flatten().map(|c| c.pid).collect();
        pids.extend(extra());
        pids
    };
    for n in 1..=FANOUT_SESSIONS {
        if Instant::now() > deadline {
            side.error(
                label,
                format!(
                    "the {} s budget was spent after {} sessions",
                    FANOUT_BUDGET.as_secs(),
                    sessions.len()
                ),
            );
            break;
        }
        let opened = Instant::now();
        match open().await {
            Ok(session) => {
                side.opens.push(opened.elapsed());
                sessions.push(session);
            }
            Err(error) => {
                side.error(label, format!("session {n}: {error}"));
                break;
            }
        }
        if n == FANOUT_SESSIONS - 1 {
            side.at_seven = settled_usage(&roots(&sessions)).await;
        }
        if n == FANOUT_SESSIONS {
            side.at_eight = settled_usage(&roots(&sessions)).await;
            side.last_session_kib = sessions.last().and_then(|last| {
                last.iter()
                    .map(|c| proc_status_kib(c.pid, "VmRSS:"))
                    .sum::<Option<u64>>()
            });
        }
    }
    sessions
}

/// Closes every session's processes at once (stdin EOF, as when Claude
/// Code exits).
async fn close_fan_sessions(sessions: Vec<Vec<StdioClient>>) {
    futures_util::future::join_all(sessions.into_iter().flatten().map(StdioClient::close)).await;
}

/// The fourth table: 8 sessions × 3 stdio servers, each session with its own
/// children (as Claude Code runs them) against the same through
/// `mcp-proxy --target` and one manager hosting the three.
async fn run_fanout(plan: Plan) {
    let started = Instant::now();
    let load_before = load_average();
    let deadline = started + FANOUT_BUDGET;
    let mut direct = FanSide::default();
    let mut tool = FanSide::default();
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            println!("cannot run the fan-out benchmark: no temp dir: {error}");
            return;
        }
    };
    let servers = match FanServer::all(&scratch.path().join("memory.jsonl")) {
        Ok(servers) => servers,
        Err(error) => {
            println!("cannot run the fan-out benchmark: {error}");
            return;
        }
    };

    // Direct: each session starts its own three children.
    let sessions = fan_out(
        &mut direct,
        "direct",
        deadline,
        || open_fan_session(servers.iter().map(|s| (s.name, s.command())).collect()),
        Vec::new,
    )
    .await;
    close_fan_sessions(sessions).await;

    // Through the tool: one manager hosting the three, a proxy per server
    // and session.
    match FanManager::start(&servers).await {
        Ok(manager) => {
            let home = manager.home.path().to_owned();
            let manager_pid = manager.pid;
            let sessions = fan_out(
                &mut tool,
                "mcp-proxy",
                deadline,
                || {
                    open_fan_session(
                        servers
                            .iter()
                            .map(|s| ("mcp-proxy", manager.proxy(s.name)))
                            .collect(),
                    )
                },
                || {
                    let mut pids = processes_of_home(&home);
                    pids.push(manager_pid);
                    pids
                },
            )
            .await;
            close_fan_sessions(sessions).await;
            // Idle: every daemon stopped after its idleTimeout.
            let closed = Instant::now();
            match manager.wait_all_idle(servers.len()).await {
                Ok(()) => {
                    tool.idle_after = Some(closed.elapsed());
                    let mut roots = processes_of_home(&home);
                    roots.push(manager_pid);
                    tool.idle = settled_usage(&roots).await;
                }
                Err(error) => tool.error("idle", error),
            }
            if let Err(error) = manager.stop().await {
                tool.error("mcp-manager", error);
            }
        }
        Err(error) => tool.error("mcp-manager", error),
    }
    print_fanout_report(
        plan,
        &direct,
        &tool,
        started.elapsed(),
        (load_before, load_average()),
    );
}

/// `mcp-manager` hosting the fan-out servers (not started: the first
/// session's proxies ask for them), killed when dropped.
struct FanManager {
    child: Child,
    pid: u32,
    port: u16,
    http: reqwest::Client,
    home: tempfile::TempDir,
}

impl FanManager {
    async fn start(servers: &[FanServer]) -> Result<FanManager, String> {
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let port = free_port()?;
        let mut entries = serde_json::Map::new();
        for server in servers {
            entries.insert(server.name.to_owned(), server.entry(free_port()?));
        }
        let config = json!({
            "managerPort": port,
            "healthCheckInterval": 0.5,
            "idleTimeout": FANOUT_IDLE_TIMEOUT,
            "mcpServers": entries,
        });
        let file = mcp_session_manager::paths::config_file(home.path());
        std::fs::write(&file, config.to_string())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let child = Command::new(manager_bin())
            .env("MCP_SESSION_MANAGER_HOME", home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start mcp-manager: {e}"))?;
        let pid = child.id().ok_or("mcp-manager exited at once")?;
        let http = mcp_session_manager::http::loopback_client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut manager = FanManager {
            child,
            pid,
            port,
            http,
            home,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = manager.child.try_wait() {
                return Err(format!("mcp-manager exited ({status}) before answering"));
            }
            if manager.status().await.is_some() {
                return Ok(manager);
            }
            if Instant::now() > deadline {
                return Err("mcp-manager did not answer /status within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self) -> Option<Value> {
        manager_status(&self.http, self.port).await
    }

    /// `mcp-proxy --target NAME`, as Claude Code would start it.
    fn proxy(&self, name: &str) -> Command {
        let mut command = Command::new(proxy_bin());
        command
            .args(["--target", name, "--manager-port", &self.port.to_string()])
            .env("MCP_SESSION_MANAGER_HOME", self.home.path())
            .env("MCP_PROXY_LOG", "error")
            .stderr(Stdio::null());
        command
    }

    /// Waits until all `count` daemons are `idle`.
    async fn wait_all_idle(&self, count: usize) -> Result<(), String> {
        let limit = Duration::from_secs(FANOUT_IDLE_TIMEOUT + 15);
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < limit {
            if let Some(status) = self.status().await {
                let daemons = status["daemons"].as_array().cloned().unwrap_or_default();
                if daemons.len() == count && daemons.iter().all(|d| d["state"] == "idle") {
                    return Ok(());
                }
                last = status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let states: Vec<String> = last["daemons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} {}", d["name"], d["state"]))
            .collect();
        Err(format!(
            "the daemons were not all idle {} s after the last session closed: {}",
            limit.as_secs(),
            states.join(", ")
        ))
    }

    /// SIGTERM: the manager stops its daemons and exits.
    async fn stop(mut self) -> Result<(), String> {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
            return Err("mcp-manager did not exit within 15 s of SIGTERM; killed".into());
        }
        Ok(())
    }
}

fn print_fanout_report(
    plan: Plan,
    direct: &FanSide,
    tool: &FanSide,
    elapsed: Duration,
    load: (Option<String>, Option<String>),
) {
    let kib = |k: Option<u64>| k.map(|k| k as f64);
    let rss = |u: Option<Usage>| kib(u.map(|u| u.rss_kib));
    let count = |u: Option<Usage>| u.map_or_else(|| "n/a".to_owned(), |u| u.processes.to_string());
    let signed = |k: Option<i64>| match k {
        Some(k) if k < 0 => format!("−{}", show(Some(k.unsigned_abs() as f64), Unit::KiB)),
        Some(k) => format!("+{}", show(Some(k as f64), Unit::KiB)),
        None => "n/a".to_owned(),
    };
    let rss_ratio = ratio(rss(tool.at_eight), rss(direct.at_eight));
    let rss_met = rss_ratio.map(|r| r <= TARGET_FANOUT_RSS_RATIO);
    let growth = tool.growth_kib();
    let growth_met = match (growth, tool.last_session_kib) {
        (Some(g), Some(p)) => i64::try_from(p).ok().map(|p| g <= p),
        _ => None,
    };
    let met = |m: Option<bool>, target: &str| match m {
        Some(true) => "✓",
        Some(false) => "✗",
        None if target.is_empty() => "",
        None => "?",
    };
    let n = FANOUT_SESSIONS;
    let proxies_target = format!(
        "≤ its three proxies ({})",
        show(kib(tool.last_session_kib), Unit::KiB)
    );
    let rows: Vec<(String, String, String, String, &str, &str)> = vec![
        (
            format!("total RSS at {n} sessions (VmRSS of every process, summed)"),
            show(rss(direct.at_eight), Unit::KiB),
            show(rss(tool.at_eight), Unit::KiB),
            show_ratio(rss_ratio),
            "≤ 0.25× direct",
            met(rss_met, "x"),
        ),
        (
            format!("processes at {n} sessions"),
            count(direct.at_eight),
            count(tool.at_eight),
            String::new(),
            "",
            "",
        ),
        (
            format!("total RSS at {} sessions", n - 1),
            show(rss(direct.at_seven), Unit::KiB),
            show(rss(tool.at_seven), Unit::KiB),
            show_ratio(ratio(rss(tool.at_seven), rss(direct.at_seven))),
            "",
            "",
        ),
        (
            format!("growth for session {n} (RSS at {n} − at {})", n - 1),
            signed(direct.growth_kib()),
            signed(growth),
            String::new(),
            &proxies_target,
            met(growth_met, "x"),
        ),
        (
            format!(
                "of which everything but session {n}'s own processes (tool: manager, hosts, servers)"
            ),
            signed(
                direct
                    .growth_kib()
                    .zip(direct.last_session_kib)
                    .and_then(|(g, own)| Some(g - i64::try_from(own).ok()?)),
            ),
            signed(
                growth
                    .zip(tool.last_session_kib)
                    .and_then(|(g, own)| Some(g - i64::try_from(own).ok()?)),
            ),
            String::new(),
            "",
            "",
        ),
        (
            format!("session {n}'s own three processes (children / proxies)"),
            show(kib(direct.last_session_kib), Unit::KiB),
            show(kib(tool.last_session_kib), Unit::KiB),
            show_ratio(ratio(
                kib(tool.last_session_kib),
                kib(direct.last_session_kib),
            )),
            "",
            "",
        ),
        (
            format!(
                "open a session (3 servers started and initialized), median of {}",
                direct.opens.len().max(tool.opens.len())
            ),
            show(secs(median(&direct.opens)), Unit::Time),
            show(secs(median(&tool.opens)), Unit::Time),
            show_ratio(ratio(
                secs(median(&tool.opens)),
                secs(median(&direct.opens)),
            )),
            "",
            "",
        ),
        (
            "the first session (through the tool: starts the three daemons)".to_owned(),
            show(secs(direct.opens.first().copied()), Unit::Time),
            show(secs(tool.opens.first().copied()), Unit::Time),
            String::new(),
            "",
            "",
        ),
        (
            format!(
                "idle: sessions closed, daemons stopped after idleTimeout {FANOUT_IDLE_TIMEOUT} s (RSS, processes)"
            ),
            "0 (no process left)".to_owned(),
            format!("{} ({})", show(rss(tool.idle), Unit::KiB), count(tool.idle)),
            String::new(),
            "",
            "",
        ),
        (
            "last session closed → every daemon `idle`".to_owned(),
            String::new(),
            show(secs(tool.idle_after), Unit::Time),
            String::new(),
            "",
            "",
        ),
    ];

    println!();
    println!(
        "## fan-out benchmark{} — {n} Claude Code sessions × 3 stdio servers (server-memory, server-everything, FastMCP), {} CPUs, load average {} → {}",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from),
        load.0.as_deref().unwrap_or("n/a"),
        load.1.as_deref().unwrap_or("n/a"),
    );
    println!();
    println!(
        "| metric | direct (own children per session) | mcp-proxy + mcp-manager | tool/direct | target (tool) | met |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (metric, d, t, r, target, m) in &rows {
        println!("| {metric} | {d} | {t} | {r} | {target} | {m} |");
    }
    println!();
    println!(
        "Direct: each session starts its own three children over stdio (as Claude Code does) and initializes them \
         at once. Through the tool: each session starts three `mcp-proxy --target NAME`, and one `mcp-manager` \
         hosts the three servers (`mcp-manager host`, scope shared, one child each), started by the first \
         session's proxies. RSS is VmRSS summed over every process of the trees (children, proxies, manager, \
         hosts and their children; shared pages counted in each process), read {:.1} s after the session opened \
         (median of three reads; Linux only, n/a elsewhere).",
        FANOUT_SETTLE.as_secs_f64()
    );
    print_errors(direct.errors.iter().chain(&tool.errors));
    println!();
    let checks = [
        (
            "total RSS",
            rss_met,
            format!("{} vs ≤ 0.25×", show_ratio(rss_ratio)),
        ),
        (
            "growth per session",
            growth_met,
            format!("{} vs {proxies_target}", signed(growth)),
        ),
    ];
    let met_count = checks.iter().filter(|c| c.1 == Some(true)).count();
    let details: Vec<String> = checks
        .iter()
        .map(|(name, m, detail)| format!("{name} {} ({detail})", verdict(*m)))
        .collect();
    println!(
        "**Targets met by the fan-out: {met_count}/{}** — {} — fan-out bench took {:.0} s",
        checks.len(),
        details.join("; "),
        elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Processes, ports, /proc
// ---------------------------------------------------------------------------

fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-proxy"))
}

fn manager_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-manager"))
}

/// `VmHWM` (peak RSS) of a process, in KiB; `None` off Linux.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

fn everything_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

async fn check_node() -> Result<(), String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("node is needed for server-everything: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`node --version` failed: {}", output.status))
    }
}

/// server-everything (streamableHttp) on `port`, killed when dropped.
struct Server {
    port: u16,
    pid: Option<u32>,
    _child: Child,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

async fn start_server(js: &Path, port: u16) -> Result<Server, String> {
    let mut child = Command::new("node")
        .arg(js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        // It logs every request on stdout.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "it exited ({status}) before listening on {address}"
            ));
        }
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listened on {address} within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still ours (not another process that took the port meanwhile)?
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!("it exited ({status}); is port {port} taken?"));
    }
    Ok(Server {
        port,
        pid: child.id(),
        _child: child,
    })
}

/// A Streamable HTTP server in this process that answers every request at
/// once with plain JSON: cold starts against it show the client's own cost.
struct Stub {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_stub() -> Result<Stub, String> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            connections.spawn(async move {
                let service = hyper::service::service_fn(stub_answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Ok(Stub { port, task })
}

async fn stub_answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::{BodyExt, Full};
    use hyper::{Method, Response, StatusCode};
    let method = request.method().clone();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").cloned());
    let response = match (method, id) {
        (Method::POST, Some(id)) => {
            let answer = json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bench-stub", "version": "0"}
                }
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", "bench-stub-session")
                .body(Full::new(bytes::Bytes::from(answer.to_string())))
        }
        (Method::POST, None) => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Full::default()),
        (Method::DELETE, _) => Response::builder().body(Full::default()),
        _ => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(Full::default()),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::default())))
}

/// `/proc/loadavg`'s first three fields, to show how busy the machine was.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The original connects to `localhost:3100`, so neither 127.0.0.1 nor ::1
/// may have a listener there already.
fn port_is_free(port: u16) -> Result<(), String> {
    let busy = |ip: std::net::IpAddr| {
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(300)).is_ok()
    };
    if busy(Ipv4Addr::LOCALHOST.into()) || busy(Ipv6Addr::LOCALHOST.into()) {
        return Err(format!(
            "port {port} is busy: something answers on localhost:{port}"
        ));
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map(drop)
        .map_err(|e| format!("port {port} is busy: {e}"))
}

/// `npm install`s the original into a cache dir under the temp dir (once);
/// the path of its `mcp-proxy` bin.
async fn install_original() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir()
        .join("mcp-session-manager-bench")
        .join(format!("original-{ORIGINAL_VERSION}"));
    let package = dir.join("node_modules/mcp-session-manager");
    let js = package.join("dist/proxy/index.js");
    let installed = |package: &Path| {
        std::fs::read_to_string(package.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|v| v["version"] == ORIGINAL_VERSION)
    };
    if installed(&package) && js.exists() {
        return Ok(js);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = dir.join("package.json");
    if !manifest.exists() {
        std::fs::write(&manifest, "{\"private\": true}\n")
            .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    }
    eprintln!(
        "bench: installing mcp-session-manager@{ORIGINAL_VERSION} into {}",
        dir.display()
    );
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .arg(format!("mcp-session-manager@{ORIGINAL_VERSION}"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(120), install).await {
        Err(_) => return Err("npm install took over 120 s".to_owned()),
        Ok(Err(error)) => return Err(format!("cannot run npm: {error}")),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The first error lines say why; the last one only where the log is.
        let why: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("error") && !l.contains("complete log"))
            .take(2)
            .collect();
        let last = if why.is_empty() {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned()
        } else {
            why.join(" / ")
        };
        return Err(format!("npm install failed ({}): {last}", output.status));
    }
    if installed(&package) && js.exists() {
        Ok(js)
    } else {
        Err(format!("npm install left no {}", js.display()))
    }
}

/// utime + stime of `/proc/<which>` (a pid or `self`); `None` off Linux.
fn cpu_time(which: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime).saturating_mul(1_000_000) / clock_ticks(),
    ))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

fn median(samples: &[Duration]) -> Option<Duration> {
    percentile(samples, 50.0)
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[derive(Clone, Copy)]
enum Unit {
    Time,
    Rate,
    KiB,
}

fn show(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "n/a".to_owned();
    };
    match unit {
        Unit::Time if v < 1e-3 => format!("{:.0} µs", v * 1e6),
        Unit::Time => format!("{:.2} ms", v * 1e3),
        Unit::Rate => format!("{v:.0} calls/s"),
        Unit::KiB => format!("{:.1} MiB", v / 1024.0),
    }
}

fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"))
}

struct Row {
    metric: String,
    unit: Unit,
    direct: Option<f64>,
    proxy: Option<f64>,
    original: Option<f64>,
    target: &'static str,
    met: Option<bool>,
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn print_report(
    plan: Plan,
    direct: &Column,
    proxy: &Column,
    original: Option<&Column>,
    breakdown: &Breakdown,
    elapsed: Duration,
    load: (Option<String>, Option<String>),
) {
    let max = |c: &Column| c.cold.iter().max().copied();
    let orig = |f: &dyn Fn(&Column) -> Option<f64>| original.and_then(f);

    let cold_median = |c: &Column| secs(median(&c.cold));
    let stub_median = |c: &Column| secs(median(&c.cold_stub));
    let p50 = |c: &Column| secs(percentile(&c.latencies, 50.0));
    let p99 = |c: &Column| secs(percentile(&c.latencies, 99.0));
    let tput = |c: &Column| c.throughput;
    let rss = |c: &Column| c.rss_kib.map(|k| k as f64);
    let cpu = |c: &Column| secs(c.cpu_per_call);
    let server_cpu = |c: &Column| secs(c.server_cpu_per_call);

    let cold_met = median(&proxy.cold).map(|m| m <= TARGET_COLD_START);
    let p50_ratio = ratio(p50(proxy), p50(direct));
    let tput_ratio = ratio(tput(proxy), tput(direct));
    let rows = [
        Row {
            metric: format!("cold start, median of {}", plan.cold_runs),
            unit: Unit::Time,
            direct: cold_median(direct),
            proxy: cold_median(proxy),
            original: orig(&cold_median),
            target: "≤ 10 ms",
            met: cold_met,
        },
        Row {
            metric: "cold start, max".to_owned(),
            unit: Unit::Time,
            direct: secs(max(direct)),
            proxy: secs(max(proxy)),
            original: orig(&|c| secs(max(c))),
            target: "",
            met: None,
        },
        Row {
            metric: "cold start vs. stub server², median".to_owned(),
            unit: Unit::Time,
            direct: stub_median(direct),
            proxy: stub_median(proxy),
            original: None,
            target: "",
            met: None,
        },
        Row {
            metric: format!("`tools/call echo` p50 ({} sequential)", plan.sequential),
            unit: Unit::Time,
            direct: p50(direct),
            proxy: p50(proxy),
            original: orig(&p50),
            target: "≤ 1.10× direct",
            met: p50_ratio.map(|r| r <= TARGET_P50_RATIO),
        },
        Row {
            metric: "`tools/call echo` p99".to_owned(),
            unit: Unit::Time,
            direct: p99(direct),
            proxy: p99(proxy),
            original: orig(&p99),
            target: "",
            met: None,
        },
        Row {
            metric: format!(
                "throughput, {} in flight ({} calls)",
                plan.in_flight, plan.burst
            ),
            unit: Unit::Rate,
            direct: tput(direct),
            proxy: tput(proxy),
            original: orig(&tput),
            target: "≥ 0.9× direct",
            met: tput_ratio.map(|r| r >= TARGET_THROUGHPUT_RATIO),
        },
        Row {
            metric: "peak RSS of the proxy (VmHWM)".to_owned(),
            unit: Unit::KiB,
            direct: rss(direct),
            proxy: rss(proxy),
            original: orig(&rss),
            target: "≤ 8 MiB",
            met: proxy.rss_kib.map(|k| k <= TARGET_RSS_KIB),
        },
        Row {
            metric: "CPU per call, client side¹".to_owned(),
            unit: Unit::Time,
            direct: cpu(direct),
            proxy: cpu(proxy),
            original: orig(&cpu),
            target: "",
            met: None,
        },
        Row {
            metric: "CPU per call, server-everything".to_owned(),
            unit: Unit::Time,
            direct: server_cpu(direct),
            proxy: server_cpu(proxy),
            original: orig(&server_cpu),
            target: "",
            met: None,
        },
    ];

    println!();
    println!(
        "## mcp-proxy benchmark{} — server-everything (streamableHttp) on 127.0.0.1, {} CPUs, load average {} → {}",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from),
        load.0.as_deref().unwrap_or("n/a"),
        load.1.as_deref().unwrap_or("n/a"),
    );
    println!();
    let mut header = vec!["metric", "direct", "mcp-proxy", "proxy/direct"];
    if original.is_some() {
        header.extend(["original (node)", "original/direct"]);
    }
    header.extend(["target (mcp-proxy)", "met"]);
    println!("| {} |", header.join(" | "));
    println!(
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in &rows {
        let mut cells = vec![
            row.metric.clone(),
            show(row.direct, row.unit),
            show(row.proxy, row.unit),
            show_ratio(ratio(row.proxy, row.direct)),
        ];
        if original.is_some() {
            cells.push(show(row.original, row.unit));
            cells.push(show_ratio(ratio(row.original, row.direct)));
        }
        cells.push(row.target.to_owned());
        cells.push(
            match row.met {
                Some(true) => "✓",
                Some(false) => "✗",
                None if row.target.is_empty() => "",
                None => "?",
            }
            .to_owned(),
        );
        println!("| {} |", cells.join(" | "));
    }
    println!();
    println!(
        "¹ utime+stime (clock ticks of {} µs) over the measured blocks ({} sequential + {} burst calls) ÷ calls; \
         for direct it is this benchmark process itself. Peak RSS is read just before stdin closes; direct runs in-process (n/a).",
        1_000_000 / clock_ticks(),
        plan.sequential,
        plan.burst
    );
    println!(
        "² an in-process HTTP server answering at once with JSON: the client's own start-up cost. \
         Sequential calls and bursts ran in {} alternating blocks per client after {} untimed warm-up calls.",
        plan.rounds, plan.warmup
    );
    let t = |samples: &[Duration]| show(secs(median(samples)), Unit::Time);
    println!();
    println!("Where mcp-proxy's cold start goes (medians):");
    println!(
        "- spawn → `mcp-proxy --version` exits: {}",
        t(&breakdown.version_spawn)
    );
    println!(
        "- building a `reqwest::Client` with the platform's root certificates (https URLs{}): {}; without them (plain http, as the proxy does for loopback): {}",
        std::env::var_os("SSL_CERT_DIR")
            .map(|d| format!(", SSL_CERT_DIR={}", d.to_string_lossy()))
            .unwrap_or_default(),
        t(&breakdown.client_build),
        t(&breakdown.client_build_no_roots)
    );
    println!(
        "- spawn → `initialize` answered by the stub: {} (direct, in-process: {}); by server-everything: {} (direct: {})",
        t(&proxy.cold_stub),
        t(&direct.cold_stub),
        t(&proxy.cold),
        t(&direct.cold)
    );
    let notes: Vec<&String> = [Some(direct), Some(proxy), original]
        .into_iter()
        .flatten()
        .flat_map(|c| &c.errors)
        .collect();
    if !notes.is_empty() {
        println!();
        println!("Errors:");
        for note in notes {
            println!("- {note}");
        }
    }
    println!();

    let checks = [
        (
            "cold start",
            cold_met,
            format!("{} vs ≤ 10 ms", show(secs(median(&proxy.cold)), Unit::Time)),
        ),
        (
            "p50",
            rows[3].met,
            format!("{} vs ≤ 1.10×", show_ratio(p50_ratio)),
        ),
        (
            "throughput",
            rows[5].met,
            format!("{} vs ≥ 0.90×", show_ratio(tput_ratio)),
        ),
        (
            "RSS",
            rows[6].met,
            format!("{} vs ≤ 8 MiB", show(rss(proxy), Unit::KiB)),
        ),
    ];
    let met = checks.iter().filter(|c| c.1 == Some(true)).count();
    let details: Vec<String> = checks
        .iter()
        .map(|(name, m, detail)| format!("{name} {} ({detail})", verdict(*m)))
        .collect();
    println!(
        "**Targets met by mcp-proxy: {met}/{}** — {} — bench took {:.0} s",
        checks.len(),
        details.join("; "),
        elapsed.as_secs_f64()
    );
}

struct HostRow {
    metric: String,
    unit: Unit,
    direct: Option<f64>,
    host: Option<f64>,
    target: &'static str,
    met: Option<bool>,
}

fn print_host_report(
    plan: Plan,
    stdio: &Side,
    host: &Side,
    elapsed: Duration,
    load: (Option<String>, Option<String>),
) {
    let p50 = |s: &[Duration]| secs(percentile(s, 50.0));
    let p99 = |s: &[Duration]| secs(percentile(s, 99.0));
    let kib = |k: Option<u64>| k.map(|k| k as f64);
    let [eight, thirty_two] = CONCURRENCY;

    let p50_ratio = ratio(p50(&host.sequential), p50(&stdio.sequential));
    let tput_ratio = ratio(host.levels[1].throughput(), stdio.levels[1].throughput());
    let rss_met = host.host_rss_kib.map(|k| k <= TARGET_HOST_RSS_KIB);
    let mut rows = vec![
        HostRow {
            metric: format!(
                "`tools/call echo` p50, 1 session ({} sequential)",
                host.sequential.len().max(stdio.sequential.len())
            ),
            unit: Unit::Time,
            direct: p50(&stdio.sequential),
            host: p50(&host.sequential),
            target: "≤ 1.15× direct",
            met: p50_ratio.map(|r| r <= TARGET_HOST_P50_RATIO),
        },
        HostRow {
            metric: "`tools/call echo` p99, 1 session".to_owned(),
            unit: Unit::Time,
            direct: p99(&stdio.sequential),
            host: p99(&host.sequential),
            target: "",
            met: None,
        },
    ];
    for (level, count) in CONCURRENCY.iter().enumerate() {
        let (h, d) = (&host.levels[level], &stdio.levels[level]);
        let last = level + 1 == CONCURRENCY.len();
        rows.push(HostRow {
            metric: format!(
                "throughput, {count} sessions / {count} in flight ({} calls)",
                h.calls.max(d.calls)
            ),
            unit: Unit::Rate,
            direct: d.throughput(),
            host: h.throughput(),
            target: if last { "≥ 0.8× direct" } else { "" },
            met: if last {
                tput_ratio.map(|r| r >= TARGET_HOST_THROUGHPUT_RATIO)
            } else {
                None
            },
        });
        rows.push(HostRow {
            metric: format!("`tools/call echo` p50, {count} sessions / {count} in flight"),
            unit: Unit::Time,
            direct: p50(&d.latencies),
            host: p50(&h.latencies),
            target: "",
            met: None,
        });
    }
    rows.extend([
        HostRow {
            metric: format!(
                "open a session (initialize + initialized), median of {}",
                host.opens.len()
            ),
            unit: Unit::Time,
            direct: None,
            host: secs(median(&host.opens)),
            target: "",
            met: None,
        },
        HostRow {
            metric: "peak RSS of mcp-manager itself (VmHWM)³".to_owned(),
            unit: Unit::KiB,
            direct: None,
            host: kib(host.host_rss_kib),
            target: "≤ 10 MiB",
            met: rss_met,
        },
        HostRow {
            metric: "peak RSS of the node child (VmHWM)".to_owned(),
            unit: Unit::KiB,
            direct: kib(stdio.child_rss_kib),
            host: kib(host.child_rss_kib),
            target: "",
            met: None,
        },
        HostRow {
            metric: "CPU per call, this process (client side)⁴".to_owned(),
            unit: Unit::Time,
            direct: secs(stdio.cpu_per_call(0)),
            host: secs(host.cpu_per_call(0)),
            target: "",
            met: None,
        },
        HostRow {
            metric: "CPU per call, mcp-manager".to_owned(),
            unit: Unit::Time,
            direct: None,
            host: secs(host.cpu_per_call(2)),
            target: "",
            met: None,
        },
        HostRow {
            metric: "CPU per call, server-everything (stdio)".to_owned(),
            unit: Unit::Time,
            direct: secs(stdio.cpu_per_call(1)),
            host: secs(host.cpu_per_call(1)),
            target: "",
            met: None,
        },
    ]);

    println!();
    println!(
        "## mcp-manager host benchmark{} — server-everything (stdio) through `mcp-manager host` on 127.0.0.1 vs. spoken to directly over stdio, {} CPUs, load average {} → {}",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from),
        load.0.as_deref().unwrap_or("n/a"),
        load.1.as_deref().unwrap_or("n/a"),
    );
    println!();
    println!("| metric | direct stdio | mcp-manager host | host/direct | target (host) | met |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        let met = match row.met {
            Some(true) => "✓",
            Some(false) => "✗",
            None if row.target.is_empty() => "",
            None => "?",
        };
        println!(
            "| {} | {} | {} | {} | {} | {met} |",
            row.metric,
            show(row.direct, row.unit),
            show(row.host, row.unit),
            show_ratio(ratio(row.host, row.direct)),
            row.target,
        );
    }
    println!();
    println!(
        "Host: one `mcp-manager host` (scope shared) with one server-everything child; each session is its own \
         Streamable HTTP client (own connection pool, `Mcp-Session-Id`), one call in flight per session, \
         {eight} and {thirty_two} sessions at once. Direct: one `node … stdio` child, requests pipelined on its \
         stdin ({eight} and {thirty_two} in flight). Latency is send → answer per call. Blocks alternate between \
         the sides ({} rounds) after {} sequential and {} concurrent untimed calls on each.",
        plan.rounds, plan.warmup, plan.server_warmup
    );
    println!(
        "³ the mcp-manager process alone, without its node child (Linux only; n/a elsewhere), read before it stops."
    );
    println!(
        "⁴ utime+stime (clock ticks of {} µs) over the measured blocks ÷ calls: the benchmark's HTTP client for the host, \
         its pipe reader/writer for direct stdio.",
        1_000_000 / clock_ticks()
    );
    print_errors(stdio.errors.iter().chain(&host.errors));
    println!();
    let verdict = |met: Option<bool>| match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    };
    let checks = [
        (
            "p50",
            p50_ratio.map(|r| r <= TARGET_HOST_P50_RATIO),
            format!("{} vs ≤ 1.15×", show_ratio(p50_ratio)),
        ),
        (
            "throughput",
            tput_ratio.map(|r| r >= TARGET_HOST_THROUGHPUT_RATIO),
            format!("{} vs ≥ 0.80× at {thirty_two}", show_ratio(tput_ratio)),
        ),
        (
            "RSS",
            rss_met,
            format!("{} vs ≤ 10 MiB", show(kib(host.host_rss_kib), Unit::KiB)),
        ),
    ];
    let met = checks.iter().filter(|c| c.1 == Some(true)).count();
    let details: Vec<String> = checks
        .iter()
        .map(|(name, m, detail)| format!("{name} {} ({detail})", verdict(*m)))
        .collect();
    println!(
        "**Targets met by mcp-manager host: {met}/{}** — {} — host bench took {:.0} s",
        checks.len(),
        details.join("; "),
        elapsed.as_secs_f64()
    );
}
