//! `mcp-proxy`: the stdio MCP server Claude Code launches, bridged to a
//! shared daemon. Argument parsing, logging and exit codes live here; the
//! session itself is `mcp_session_manager::proxy::run`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use mcp_session_manager::config::{self, Config, TransportKind};
use mcp_session_manager::proxy::refusal::{self, Refusal};
use mcp_session_manager::proxy::{self, Options, SessionEnd, Target};
use mcp_session_manager::transport::Endpoint;
use mcp_session_manager::transport::recovery::DEFAULT_RECONNECT_TIMEOUT;
use mcp_session_manager::{paths, signals};

/// Bridge Claude Code's stdio to a shared MCP daemon, immune to SIGINT.
#[derive(Debug, Parser)]
#[command(name = "mcp-proxy", version, about, after_help = AFTER_HELP)]
struct Args {
    /// A daemon from config.json (built in without one: memory, code-index, ast-grep)
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    target: Option<String>,

    /// The manager's control API port [default: managerPort in config.json, else 3199]
    #[arg(long, value_name = "PORT")]
    manager_port: Option<u16>,

    /// Connect to this MCP endpoint instead of a configured daemon
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// Transport for --url [default: sse if the path ends in /sse, else streamable-http]
    #[arg(long, value_enum, requires = "url")]
    transport: Option<TransportArg>,

    /// Extra HTTP header for every request, as 'Name: value' (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Allow --url to use plain http to a host other than this machine
    #[arg(long, requires = "url")]
    allow_http: bool,

    /// Time requests in flight get to finish when the session ends
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    shutdown_grace_ms: u64,

    /// How long requests wait for a lost daemon to come back (it is found
    /// again, or started, and a new session opened) before they get an error
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RECONNECT_TIMEOUT.as_secs_f64())]
    reconnect_timeout: f64,
}

const AFTER_HELP: &str = "\
Environment:
  MCP_SESSION_MANAGER_HOME  directory of config.json and the lock files [default: ~/.mcp-session-manager]
  MCP_PROXY_LOG             log filter for stderr, e.g. debug or mcp_session_manager=trace [default: warn]

SIGINT is ignored; SIGTERM, SIGHUP or the end of stdin end the session.";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    StreamableHttp,
    Sse,
    Http,
}

/// SIGINT is ignored before `main`: the dynamic loader runs this
/// constructor once the libraries are loaded and initialised, before Rust's
/// runtime and `main`. (Claude Code may send SIGINT to a proxy it has just
/// spawned.) Elsewhere only `main`'s first instruction does it.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
#[expect(
    unsafe_code,
    reason = "a load-time constructor is a static in a link section"
)]
static IGNORE_SIGINT_AT_LOAD: extern "C" fn() = signals::ignore_interrupt_at_load;

/// As above, in the Mach-O section of initialisers.
#[cfg(target_os = "macos")]
#[used]
#[unsafe(link_section = "__DATA,__mod_init_func")]
#[expect(
    unsafe_code,
    reason = "a load-time constructor is a static in a link section"
)]
static IGNORE_SIGINT_AT_LOAD: extern "C" fn() = signals::ignore_interrupt_at_load;

fn main() -> ExitCode {
    // First: a SIGINT meant for another session must never stop this one
    // (already done at load time on Linux and macOS; harmless again).
    signals::ignore_interrupt();
    let args = Args::parse();
    init_logging();
    let code = match run(args) {
        Ok(SessionEnd::Finished) => 0,
        Ok(SessionEnd::NoDaemon) => 1,
        Err(error) => {
            eprintln!("mcp-proxy: {error:#}");
            1
        }
    };
    // Exit without waiting for the thread blocked in a read of stdin.
    std::process::exit(code)
}

fn run(args: Args) -> anyhow::Result<SessionEnd> {
    let target = match target(&args)? {
        Ok(target) => target,
        Err(refusal) => return refuse(&refusal),
    };
    let options = Options {
        target,
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        reconnect_timeout: Duration::try_from_secs_f64(args.reconnect_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .context("--reconnect-timeout takes a positive number of seconds")?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        signals::log_ignored_interrupts();
        let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
        proxy::run(options, stdin, stdout, signals::terminated()).await
    });
    // A read of stdin may still block a runtime thread (after a signal, or
    // a closed stdout); dropping the runtime normally would wait for it.
    runtime.shutdown_background();
    Ok(outcome)
}

/// Serves the error mode: every request answered with `refusal` until
/// stdin closes (the same text on stderr).
fn refuse(refusal: &Refusal) -> anyhow::Result<SessionEnd> {
    tracing::error!(data = %refusal.data(), "{}", refusal.message());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
        refusal::serve(refusal, stdin, stdout, signals::terminated()).await;
    });
    runtime.shutdown_background();
    Ok(SessionEnd::NoDaemon)
}

/// Where to connect; a [`Refusal`] when the proxy cannot serve (the
/// config does not load, the target is not configured); an error for bad
/// arguments.
fn target(args: &Args) -> anyhow::Result<Result<Target, Refusal>> {
    let mut headers = proxy::headers_from_args(args.headers.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)
        .context("bad --header")?;
    if let Some(url) = &args.url {
        let url = url::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        config::check_remote_url(&url, args.allow_http).map_err(anyhow::Error::msg)?;
        let transport = match args.transport {
            Some(TransportArg::StreamableHttp) => TransportKind::StreamableHttp,
            Some(TransportArg::Sse) => TransportKind::Sse,
            Some(TransportArg::Http) => TransportKind::Http,
            None => TransportKind::guess_from_url(&url),
        };
        return Ok(Ok(Target::Url(Endpoint {
            url,
            transport,
            headers: std::mem::take(&mut headers),
            socket: None,
        })));
    }
    let Some(name) = &args.target else {
        bail!("give --target NAME or --url URL");
    };
    let home = paths::home()?;
    let config = match Config::load(&home) {
        Ok(config) => config,
        Err(error) => return Ok(Err(Refusal::config(&error))),
    };
    let Some(server) = config.servers.get(name) else {
        return Ok(Err(Refusal::unknown_target(name, &config)));
    };
    Ok(Ok(Target::Named {
        server: Box::new(server.clone()),
        home,
        manager_port: args.manager_port.unwrap_or(config.manager_port),
        headers,
    }))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("MCP_PROXY_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|error| {
            eprintln!("mcp-proxy: ignoring MCP_PROXY_LOG={spec:?}: {error}");
            EnvFilter::new("warn")
        }),
        Err(_) => EnvFilter::new("warn"),
    };
    // stdout is the protocol channel: logs go to stderr, always.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .init();
}
