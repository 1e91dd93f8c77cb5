//! The first table: `mcp-proxy` against a direct Streamable HTTP client (the
//! baseline) and the Node.js original, all on server-everything over
//! loopback. Cold starts are interleaved between the clients; the long
//! sessions are all open at once and measured in alternating blocks, so that
//! load from other processes hits every column alike. A stub server isolates
//! the clients' own start-up cost, and a breakdown says where `mcp-proxy`'s
//! cold start goes.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::Plan;
use crate::bins::proxy_bin;
use crate::mcp_clients::{AnyClient, Client, Direct, StdioClient, init_params};
use crate::ports::free_port;
use crate::procs::{clock_ticks, cpu_time, load_average};
use crate::report::{Unit, median, percentile, ratio, secs, show, show_ratio, verdict};
use crate::servers::{ORIGINAL_PORT, install_original, port_is_free, start_server, start_stub};

// Targets for mcp-proxy.
const TARGET_COLD_START: Duration = Duration::from_millis(10);
const TARGET_P50_RATIO: f64 = 1.10;
const TARGET_THROUGHPUT_RATIO: f64 = 0.9;
const TARGET_RSS_KIB: u64 = 8 * 1024;

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

/// The first table: mcp-proxy against direct HTTP and the original.
pub(crate) async fn run_proxy(plan: Plan, everything: &Path) {
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

struct Row {
    metric: String,
    unit: Unit,
    direct: Option<f64>,
    proxy: Option<f64>,
    original: Option<f64>,
    target: &'static str,
    met: Option<bool>,
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
