//! The host table: `mcp-manager host` (server-everything over stdio behind
//! the host's Streamable HTTP endpoint) against the same server spoken to
//! directly over its stdin/stdout: `tools/call echo` with 1 session
//! (sequential), 8 and 32 sessions at once against 1, 8 and 32 requests
//! pipelined on stdio, plus the host's own peak RSS and CPU. A time budget
//! bounds the table on a loaded machine. [`Hosted`] (a host of any stdio
//! server, on a free port) and [`Budget`] serve `host_logs` too.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::bins::manager_bin;
use crate::mcp_clients::{Client, Direct, LeanSession, StdioClient, shorten};
use crate::ports::free_port;
use crate::procfs::vm_hwm_kib;
use crate::procs::{clock_ticks, cpu_time, load_average};
use crate::report::{Unit, median, percentile, print_errors, ratio, secs, show, show_ratio};
use crate::{EXIT_TIMEOUT, Plan};

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

/// A table's time limit.
pub(crate) struct Budget {
    total: Duration,
    deadline: Instant,
    /// The longest wait for one block.
    block: Duration,
}

impl Budget {
    fn new(plan: Plan) -> Budget {
        Budget::of(plan.host_budget, plan.burst_timeout)
    }

    /// `total` from now, at most `block` for one block.
    pub(crate) fn of(total: Duration, block: Duration) -> Budget {
        Budget {
            total,
            deadline: Instant::now() + total,
            block,
        }
    }

    pub(crate) fn spent(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// How long the next block may take.
    pub(crate) fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(self.block)
    }

    pub(crate) fn message(&self) -> String {
        format!(
            "the table's time budget ({:?}) ran out; the blocks left were skipped",
            self.total
        )
    }
}

/// `mcp-manager host NAME` with a config of its own, killed when dropped.
pub(crate) struct Hosted {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    /// The server process the host started.
    pub(crate) child_pid: Option<u32>,
    /// What the child's command line holds (to tell it outlived the host).
    marker: &'static str,
    _home: tempfile::TempDir,
}

impl Hosted {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// server-everything's stdio build, hosted.
    async fn start(everything: &Path) -> Result<Hosted, String> {
        let args = vec![
            everything.to_string_lossy().into_owned(),
            "stdio".to_owned(),
        ];
        Hosted::start_server(HOST_ENTRY, "node", args, "server-everything").await
    }

    /// `command args` hosted as `entry` (scope shared) on a free port, once
    /// its `/health` says ok; `marker` is a part of the child's command line.
    pub(crate) async fn start_server(
        entry: &str,
        command: &str,
        args: Vec<String>,
        marker: &'static str,
    ) -> Result<Hosted, String> {
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let port = free_port()?;
        let config = json!({"mcpServers": {entry: {
            "command": command,
            "args": args,
            "port": port,
        }}});
        let file = mcp_session_manager::paths::config_file(home.path());
        std::fs::write(&file, config.to_string())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let mut child = Command::new(manager_bin())
            .args(["host", entry])
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
                            marker,
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
    pub(crate) async fn stop(mut self) -> Result<(), String> {
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
        let marker = self.marker.as_bytes();
        let alive = || {
            std::fs::read(format!("/proc/{child_pid}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker))
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
pub(crate) async fn run_host(plan: Plan, everything: &Path) {
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
