//! The manager table: what supervision costs. `mcp-manager` over three
//! server-everything daemons (streamableHttp, sse, stdio hosted): its idle
//! and peak RSS, `GET /status` latency (also under 1,000 slow connections),
//! and how fast a daemon killed with
//! `kill -9` serves again (by itself, and as a proxy session's next answer)
//! compared with the daemon's own start.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::bins::{manager_bin, proxy_bin};
use crate::mcp_clients::{Client, StdioClient, shorten};
use crate::ports::free_port;
use crate::procfs::{vm_hwm_kib, vm_rss_kib};
use crate::report::{Unit, median, percentile, secs, show};
use crate::{ANSWER_TIMEOUT, Plan};

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
pub(crate) async fn manager_status(http: &reqwest::Client, port: u16) -> Option<Value> {
    let url = format!("http://127.0.0.1:{port}/status");
    let body = http.get(url).send().await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// `count` connections to `port` that never finish a request head (every
/// other one sends half of one); held until dropped.
async fn slow_connections(port: u16, count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        if i % 2 == 0 {
            let half = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAcc");
            let _ = stream.write_all(half.as_bytes()).await;
        }
        held.push(stream);
    }
    held
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
pub(crate) async fn run_manager(plan: Plan, everything: &Path) {
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
    let idle_rss = manager_pid.and_then(vm_rss_kib);
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
    // /status on a new connection each, while 1,000 slow clients hold
    // connections that send nothing or half a request head.
    let slow = slow_connections(run.port, 1_000).await;
    let mut slow_latencies = Vec::new();
    for _ in 0..if plan.quick { 20 } else { 200 } {
        let call = Instant::now();
        if manager_status(&http, run.port).await.is_none() {
            errors.push("a /status call under slow connections failed".to_owned());
            break;
        }
        slow_latencies.push(call.elapsed());
    }
    let slow_opened = slow.len();
    drop(slow);
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
    row(
        format!(
            "`GET /status` p50 / p99 ({} calls, a new connection each) under {slow_opened} slow connections",
            slow_latencies.len()
        ),
        format!(
            "{} / {}",
            show(secs(median(&slow_latencies)), Unit::Time),
            show(secs(percentile(&slow_latencies, 99.0)), Unit::Time)
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
