//! `mcp-manager`: runs and supervises shared MCP daemons. This first part
//! has one subcommand, `host NAME`: serve a stdio MCP server from the config
//! to many sessions over Streamable HTTP, in the foreground.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use mcp_session_manager::config::{Config, TransportKind};
use mcp_session_manager::host::{self, HostOptions, backend::Timing};
use mcp_session_manager::paths;

/// Run shared MCP daemons for many Claude Code sessions.
#[derive(Debug, Parser)]
#[command(name = "mcp-manager", version, about, after_help = AFTER_HELP)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a stdio MCP server from config.json to many sessions over
    /// Streamable HTTP on 127.0.0.1:PORT (in the foreground)
    Host {
        /// The entry in config.json (built in without one: memory)
        name: String,
    },
}

const AFTER_HELP: &str = "\
Environment:
  MCP_SESSION_MANAGER_HOME  directory of config.json, locks and logs [default: ~/.mcp-session-manager]
  MCP_MANAGER_LOG           log filter for stderr [default: info]";

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    // One thread: the host is I/O-bound, and this keeps it small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mcp-manager: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Host { name } => run_host(&name).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-manager: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_host(name: &str) -> anyhow::Result<()> {
    let home = paths::home()?;
    let config = Config::load(&home)?;
    let Some(server) = config.servers.get(name) else {
        bail!(
            "unknown daemon {name:?}; configured: {}",
            config.names().join(", ")
        );
    };
    let source = config.source.as_ref().map_or_else(
        || "the built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    if server.transport != TransportKind::Stdio {
        bail!(
            "{name} is a {} server, not a stdio one: it serves HTTP itself and needs no host (see {source})",
            server.transport
        );
    }
    let (Some(command), Some(port)) = (server.command.clone(), server.port) else {
        bail!("{name} needs a \"command\" and a \"port\" to be hosted (see {source})");
    };
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}: is {name} already hosted (curl http://{addr}/health), \
             or does another program hold the port? Change \"port\" in {source} if so"
        )
    })?;
    let options = HostOptions {
        name: name.to_owned(),
        port,
        scope: server.scope,
        command,
        args: server.args.clone(),
        env: server.env.clone(),
        cwd: server.cwd.clone(),
        log: paths::log_file(&home, name),
        timing: Timing {
            ping_timeout: server.ping_timeout,
            ping_every: (server.ping_timeout / 3)
                .clamp(Duration::from_millis(200), Duration::from_secs(10)),
            ..Timing::default()
        },
        session_timeout: server.session_timeout,
    };
    tracing::info!(name, %addr, scope = ?server.scope, "hosting");
    host::run(options, listener, stop_signal()).await;
    Ok(())
}

/// SIGINT, SIGTERM or SIGHUP stop the host (and its children).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            () = mcp_session_manager::signals::terminated() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("MCP_MANAGER_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .init();
}
