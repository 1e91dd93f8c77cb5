//! The failures table (`BENCH_ONLY=failures`): how long a Claude Code
//! session waits to learn that its server exits at start. A server that
//! prints `fatal: DATABASE_URL is not set` and exits 3 after 0.3 s, as a
//! daemon the manager starts directly (Streamable HTTP) and as a hosted
//! stdio server (`mcp-manager host`): the time from a fresh `mcp-proxy
//! --target` to the JSON-RPC error answering its `initialize` (median over
//! a few runs, each with a fresh home and manager), beside the server's own
//! time to exit. Before issue 15: Claude's 30 s request timeout (direct)
//! and the host's 120 s (hosted).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::Plan;
use crate::bins::{manager_bin, proxy_bin};
use crate::ports::free_port;
use crate::report::{median, print_errors, secs, verdict};

/// What the crasher runs: a fatal line on stderr and exit 3, 0.3 s in.
const CRASH: &str =
    "sleep 0.3; echo starting up; echo 'fatal: DATABASE_URL is not set' >&2; exit 3";
/// The target: the error within this long of the server's own exit.
const TARGET_BEYOND_EXIT: Duration = Duration::from_secs(3);
/// One run's limit (a hosted crasher used to wait 120 s).
const RUN_LIMIT: Duration = Duration::from_secs(40);

/// Which crasher a row measures.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Direct,
    Hosted,
}

impl Kind {
    fn entry(self, port: u16) -> Value {
        let mut entry =
            json!({"command": "sh", "args": ["-c", CRASH], "port": port, "startTimeout": 60});
        if let Kind::Direct = self {
            entry["transport"] = json!("streamable-http");
        }
        entry
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct daemon (started by the manager)",
            Kind::Hosted => "hosted stdio server (`mcp-manager host`)",
        }
    }

    fn before(self) -> &'static str {
        match self {
            Kind::Direct => "30 s (Claude's timeout)",
            Kind::Hosted => "120 s",
        }
    }
}

/// Prints the table.
pub(crate) async fn run_failures(plan: Plan) {
    let runs = if plan.quick { 2 } else { 5 };
    let mut errors = Vec::new();
    let mut own = Vec::new();
    for _ in 0..runs {
        match own_exit().await {
            Ok(took) => own.push(took),
            Err(error) => errors.push(format!("the crasher alone: {error}")),
        }
    }
    let own_median = median(&own);
    println!();
    println!("### Server exits at start → initialize error (median of {runs} runs)");
    println!();
    println!(
        "| crasher | server's own exit | initialize error | beyond its exit | before issue 15 | target ≤ {} s beyond |",
        TARGET_BEYOND_EXIT.as_secs()
    );
    println!("|---|---|---|---|---|---|");
    for kind in [Kind::Direct, Kind::Hosted] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            match initialize_error(kind).await {
                Ok(took) => samples.push(took),
                Err(error) => {
                    errors.push(format!("{}: {error}", kind.label()));
                    // A run that hit the limit says enough; no more of them.
                    break;
                }
            }
        }
        let took = median(&samples);
        let beyond = took.zip(own_median).map(|(t, o)| t.saturating_sub(o));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            kind.label(),
            seconds(own_median),
            took.map_or_else(
                || format!("> {} s", RUN_LIMIT.as_secs()),
                |t| seconds(Some(t))
            ),
            seconds(beyond),
            kind.before(),
            verdict(beyond.map(|b| b <= TARGET_BEYOND_EXIT)),
        );
    }
    print_errors(errors.iter());
}

fn seconds(d: Option<Duration>) -> String {
    secs(d).map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2} s"))
}

/// The crasher on its own: spawn to exit.
async fn own_exit() -> Result<Duration, String> {
    let started = Instant::now();
    let status = Command::new("sh")
        .args(["-c", CRASH])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if status.code() != Some(3) {
        return Err(format!("it exited with {status}"));
    }
    Ok(started.elapsed())
}

/// A fresh home and manager with one crasher; a fresh proxy's
/// `initialize`, timed until its answer, which must be the error naming
/// the exit.
async fn initialize_error(kind: Kind) -> Result<Duration, String> {
    let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    let (manager_port, port) = (free_port()?, free_port()?);
    let config = json!({"managerPort": manager_port, "mcpServers": {"crasher": kind.entry(port)}});
    let file = mcp_session_manager::paths::config_file(home.path());
    std::fs::write(&file, config.to_string())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let mut manager = Command::new(manager_bin())
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start mcp-manager: {e}"))?;
    let answered = async {
        wait_ping(manager_port).await?;
        tokio::time::timeout(RUN_LIMIT, proxy_initialize(home.path()))
            .await
            .map_err(|_| format!("no answer to initialize within {RUN_LIMIT:?}"))?
    }
    .await;
    stop(&mut manager).await;
    answered
}

/// `mcp-proxy --target crasher`: the time from its spawn to the answer to
/// its `initialize`, which must be an error that names the exit status.
async fn proxy_initialize(home: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut proxy: Child = Command::new(proxy_bin())
        .args(["--target", "crasher"])
        .env("MCP_SESSION_MANAGER_HOME", home)
        .env("MCP_PROXY_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start mcp-proxy: {e}"))?;
    let mut stdin = proxy.stdin.take().ok_or("no stdin")?;
    let stdout = proxy.stdout.take().ok_or("no stdout")?;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": crate::PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"}}});
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .map_err(|e| format!("cannot write to mcp-proxy: {e}"))?;
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| format!("cannot read mcp-proxy: {e}"))?
        .ok_or("mcp-proxy closed stdout without an answer")?;
    let took = started.elapsed();
    drop(stdin);
    let _ = proxy.kill().await;
    let answer: Value =
        serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    if !message.contains("exit status: 3") && !message.contains("exited") {
        return Err(format!("the answer does not name the exit: {line}"));
    }
    Ok(took)
}

async fn wait_ping(port: u16) -> Result<(), String> {
    let client = mcp_session_manager::http::loopback_client_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ping = client
            .get(format!("http://127.0.0.1:{port}/ping"))
            .send()
            .await;
        if ping.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the manager did not answer /ping within 20 s".to_owned())
}

/// SIGTERM (it stops its daemons and hosts), SIGKILL after 10 s.
async fn stop(manager: &mut Child) {
    if let Some(pid) = manager.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    if tokio::time::timeout(Duration::from_secs(10), manager.wait())
        .await
        .is_err()
    {
        let _ = manager.kill().await;
    }
}
