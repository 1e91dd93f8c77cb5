//! The fan-out table, about memory: 8 Claude Code sessions × 3 stdio servers
//! (server-memory, server-everything, the FastMCP fixture), each session
//! with its own three children as Claude Code starts them, against the same
//! through `mcp-proxy --target` and one manager hosting the three: total RSS
//! and process count of every process tree, the growth for one more session,
//! and what is left once the daemons have stopped for idleness (Linux:
//! `/proc`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::Plan;
use crate::bins::{everything_js, fastmcp_server, manager_bin, memory_js, proxy_bin, venv_python};
use crate::manager::manager_status;
use crate::mcp_clients::{Client, StdioClient};
use crate::ports::free_port;
use crate::procfs::{processes_of_home, vm_rss_kib};
use crate::procs::{load_average, process_tree};
use crate::report::{Unit, median, print_errors, ratio, secs, show, show_ratio, verdict};

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
        let memory = memory_js();
        let everything = everything_js();
        let python = venv_python();
        let fastmcp = fastmcp_server();
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
        if let Some(rss) = vm_rss_kib(pid) {
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
            side.last_session_kib = sessions
                .last()
                .and_then(|last| last.iter().map(|c| vm_rss_kib(c.pid)).sum::<Option<u64>>());
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
pub(crate) async fn run_fanout(plan: Plan) {
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
