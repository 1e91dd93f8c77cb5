//! `mcp-manager`: runs and supervises shared MCP daemons (in the
//! foreground), and talks to a running one (`status`, `start`, `stop`,
//! `restart`, `logs`); `generate-config` writes Claude's MCP config;
//! `add`/`remove` put one server into config.json and Claude Code and take
//! it out; `reload` and `shutdown` act on the running manager; `host NAME`
//! serves one stdio server to many sessions; `service` runs the manager at
//! login.

// The CLI subcommands print their results through `outln!` (a closed
// stdout ends quietly); logs go through tracing. No `println!`: it panics
// on a closed pipe (the package denies it by lint).

#[macro_use]
#[path = "mcp-manager/output.rs"]
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use mcp_session_manager::commands::generate as generate_config;
use mcp_session_manager::commands::{self, status};
use mcp_session_manager::control_api::{
    ApiClient, DaemonAction, DaemonList, DaemonStatus, LaunchedBy,
};
use mcp_session_manager::daemon::log as logfile;
use mcp_session_manager::manager::{self, ManagerOptions};
use mcp_session_manager::{paths, signals};

/// Run shared MCP daemons for many Claude Code sessions.
#[derive(Debug, Parser)]
#[command(name = "mcp-manager", version, about, after_help = AFTER_HELP)]
struct Args {
    /// The control API's port [default: the config's managerPort, else 3199]; for `add`, the daemon's port
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Start every configured daemon at once
    #[arg(long)]
    start_all: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where `generate-config --scope` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClaudeScope {
    User,
    Project,
}

/// Who shares a hosted server (`add --scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ShareScope {
    Shared,
    Project,
    Session,
}

/// How an added server speaks HTTP (`add --transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    StreamableHttp,
    Sse,
    Http,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add a server to config.json and register it in Claude Code (through
    /// mcp-proxy), like `claude mcp add`; --port is the daemon's port here
    #[command(after_help = ADD_HELP)]
    Add(AddArgs),
    /// Remove a server from config.json and its mcp-proxy entries from
    /// Claude Code (the undo of `add`)
    Remove { name: String },
    /// Write ~/.claude/mcp.json: every daemon through mcp-proxy
    GenerateConfig {
        /// Print it only; write nothing
        #[arg(long)]
        print: bool,
        /// Write where Claude Code reads it: `user` (the mcpServers of
        /// ~/.claude.json) or `project` (DIR/.mcp.json) [default: the
        /// original's ~/.claude/mcp.json]
        #[arg(long, value_enum)]
        scope: Option<ClaudeScope>,
        /// The project directory for --scope project [default: .]
        #[arg(requires = "scope")]
        dir: Option<PathBuf>,
    },
    /// Show every daemon of the running manager
    Status {
        /// The manager's JSON, as is
        #[arg(long)]
        json: bool,
    },
    /// Start a daemon (through the running manager)
    Start { name: String },
    /// Stop a daemon (through the running manager)
    Stop { name: String },
    /// Stop and start a daemon again (through the running manager)
    Restart { name: String },
    /// Make the running manager read config.json again and apply it (it
    /// also does on every save of the file and on SIGHUP)
    Reload,
    /// Stop the running manager and every daemon it runs (the next session
    /// starts it again)
    Shutdown,
    /// Move Claude Code's (or Claude Desktop's) MCP servers onto shared
    /// daemons: copy them into config.json, point them at mcp-proxy
    Import {
        /// claude-code (~/.claude.json), claude-desktop, or a file with
        /// "mcpServers" [default: claude-code]
        #[arg(long, value_name = "SOURCE")]
        from: Option<String>,
        /// Also a project's servers: projects[DIR] of ~/.claude.json and
        /// DIR/.mcp.json
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        /// Who shares a hosted server, per name (shared, project or session)
        #[arg(long, value_name = "NAME=SCOPE")]
        scope: Vec<String>,
        /// Say what would change; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also move remote servers with static headers (each is probed
        /// first; one that asks for a login stays with Claude Code)
        #[arg(long, conflicts_with = "undo")]
        remote: bool,
        /// Revert the newest import, entry by entry (what changed since
        /// stays); with --dry-run, only say what it would do
        #[arg(long, conflicts_with_all = ["from", "project", "scope", "remote", "rewrite_mcp_json", "no_verify"])]
        undo: bool,
        /// With --undo: revert every import, back to before the first
        #[arg(long, requires = "undo")]
        all: bool,
        /// Rewrite a project's .mcp.json itself (portable: a bare
        /// mcp-proxy), instead of local entries in ~/.claude.json that
        /// override it
        #[arg(long)]
        rewrite_mcp_json: bool,
        /// Do not connect to each server before and after
        #[arg(long)]
        no_verify: bool,
    },
    /// Check the whole setup and say what to fix (exit 1 if something is broken)
    Doctor {
        /// The report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a daemon's log (NAME.log)
    Logs {
        name: String,
        /// How many lines from the end
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing what is appended
        #[arg(short, long)]
        follow: bool,
    },
    /// Serve a stdio MCP server from config.json to many sessions over
    /// Streamable HTTP on 127.0.0.1:PORT (in the foreground)
    Host {
        /// The entry in config.json (built in without one: memory)
        name: String,
    },
    /// Run the manager at login as a user service (systemd on Linux,
    /// launchd on macOS)
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum ServiceAction {
    /// Write the service file, then enable and start it
    Install,
    /// Stop and disable the service, and remove its file
    Uninstall,
    /// Is it installed, where, and is it running
    Status,
}

const AFTER_HELP: &str = "\
Without a command, runs the manager in the foreground: it supervises every
configured daemon and serves the control API (curl localhost:3199/status).

Environment:
  MCP_SESSION_MANAGER_HOME  directory of config.json, locks and logs [default: ~/.mcp-session-manager]
  MCP_MANAGER_LOG           log filter [default: info]";

/// `mcp-manager add`'s arguments.
#[derive(Debug, clap::Args)]
struct AddArgs {
    name: String,
    /// Who shares a hosted server [default: shared]
    #[arg(long, value_enum, conflicts_with = "url")]
    scope: Option<ShareScope>,
    /// Environment of the server, KEY=VALUE (repeatable; `${VAR}` is
    /// kept as written and expanded by the manager)
    #[arg(
        long = "env",
        short = 'e',
        value_name = "KEY=VALUE",
        conflicts_with = "url"
    )]
    env: Vec<String>,
    /// The server's working directory
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    cwd: Option<PathBuf>,
    /// A remote server instead of a command
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    url: Option<String>,
    /// An HTTP header for a --url server, 'Name: value' (repeatable)
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        requires = "url"
    )]
    headers: Vec<String>,
    /// How the server speaks HTTP [default: a command is a stdio
    /// server the manager hosts; a URL is guessed from its path]
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// Register it in this project's local scope of ~/.claude.json
    /// instead of the user scope
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// The server to run, after `--`
    #[arg(
        last = true,
        value_name = "COMMAND ARGS",
        required_unless_present = "url"
    )]
    command: Vec<String>,
}

const ADD_HELP: &str = "\
Examples:
  mcp-manager add fs -- npx -y @modelcontextprotocol/server-filesystem /srv
  mcp-manager add github --url https://api.example.com/mcp --header 'Authorization: Bearer ${TOKEN}'

--port P is the daemon's port here (the manager is reached on config.json's
managerPort). Without it a command is hosted on the first port of 3110-3189
that no entry uses and nothing listens on. Without config.json the built-in daemons are written into it too (they
were in force). A running manager is asked to reload.";

fn main() -> ExitCode {
    let args = Args::parse();
    let log_file = match &args.command {
        None => paths::home()
            .ok()
            .map(|home| paths::manager_log_file(&home)),
        Some(_) => None,
    };
    // Under the service, stderr is appended to manager.log: log there once.
    let to_stderr = LaunchedBy::of_this_process() != LaunchedBy::Service || log_file.is_none();
    init_logging(log_file, to_stderr);
    // One thread: the manager and the host are I/O-bound, and this keeps
    // them small.
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
    let port = args.port;
    let result = runtime.block_on(async {
        match args.command {
            None => run_manager(port, args.start_all).await,
            Some(Command::Host { name }) => {
                let home = paths::home()?;
                Ok(commands::host::host(&home, &name, signals::stop_requested()).await?)
            }
            Some(Command::GenerateConfig { print, scope, dir }) => match scope {
                None => {
                    outln!("{}", generate_config::generate(port, print)?);
                    Ok(())
                }
                Some(scope) => register(port, print, scope, dir),
            },
            Some(Command::Add(add_args)) => add(port, add_args).await,
            Some(Command::Remove { name }) => remove(&name).await,
            Some(Command::Status { json }) => status(port, json).await,
            Some(Command::Start { name }) => daemon_command(port, DaemonAction::Start, &name).await,
            Some(Command::Stop { name }) => daemon_command(port, DaemonAction::Stop, &name).await,
            Some(Command::Restart { name }) => {
                daemon_command(port, DaemonAction::Restart, &name).await
            }
            Some(Command::Reload) => reload(port).await,
            Some(Command::Shutdown) => shutdown(port).await,
            Some(Command::Doctor { json }) => doctor(port, json).await,
            Some(Command::Import {
                from,
                project,
                scope,
                dry_run,
                remote,
                undo,
                all,
                rewrite_mcp_json,
                no_verify,
            }) => {
                if undo {
                    import_undo(all, dry_run)
                } else {
                    import(ImportArgs {
                        from: from.as_deref(),
                        project,
                        scopes: &scope,
                        dry_run,
                        remote,
                        rewrite_mcp_json,
                        verify: !no_verify,
                    })
                }
            }
            Some(Command::Logs {
                name,
                lines,
                follow,
            }) => logs(&name, lines, follow).await,
            Some(Command::Service { action }) => service(port, action).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted it has.
        Err(error) if error.is::<output::StdoutClosed>() => ExitCode::SUCCESS,
        Err(error) if error.is::<AlreadyReported>() => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("mcp-manager: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_manager(port: Option<u16>, start_all: bool) -> anyhow::Result<()> {
    let home = paths::home()?;
    // A config that does not load does not keep the manager down: it runs
    // nothing, says why in /status, and applies the file once it is fixed.
    let (config, port, config_error) = match mcp_session_manager::config::Config::load(&home) {
        Ok(config) => {
            let port = port.unwrap_or(config.manager_port);
            (config, port, None)
        }
        Err(error) => {
            // Its managerPort, read as text.
            let (port, _) = commands::control_port(port)?;
            let error = error.masked();
            tracing::error!("{error}; running no daemon until the file is fixed");
            let empty = mcp_session_manager::config::Config {
                source: Some(paths::config_file(&home)),
                manager_port: port,
                servers: std::collections::BTreeMap::new(),
                ..mcp_session_manager::config::Config::builtin()
            };
            (
                empty,
                port,
                Some(format!(
                    "{error}; no daemon runs until the file is fixed and saved"
                )),
            )
        }
    };
    let manager_exe = std::env::current_exe().context("cannot find this program's path")?;
    let options = ManagerOptions {
        home,
        config,
        port,
        start_all,
        manager_exe,
        config_error,
        wait_for_other: LaunchedBy::of_this_process() == LaunchedBy::Service,
    };
    manager::run(options, signals::interrupted_or_terminated()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// `generate-config --scope`: proxy entries where Claude Code reads them.
fn register(
    port: Option<u16>,
    print_only: bool,
    scope: ClaudeScope,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use mcp_session_manager::commands::register::{self, Destination};
    let destination = match scope {
        ClaudeScope::User => Destination::User,
        ClaudeScope::Project => Destination::Project(dir.unwrap_or_else(|| PathBuf::from("."))),
    };
    outln!("{}", register::register(port, print_only, destination)?);
    Ok(())
}

/// `add`: the entry, the proxy, then the manager's reload. `port` (the
/// global `--port`) is the daemon's port here.
async fn add(port: Option<u16>, args: AddArgs) -> anyhow::Result<()> {
    use mcp_session_manager::commands::add::{self, AddOptions, NewServer};
    use mcp_session_manager::config::{Scope, TransportKind};
    let transport = args.transport.map(|t| match t {
        TransportArg::StreamableHttp => TransportKind::StreamableHttp,
        TransportArg::Sse => TransportKind::Sse,
        TransportArg::Http => TransportKind::Http,
    });
    let server = match args.url {
        Some(url) => NewServer::Remote {
            url,
            headers: args.headers,
            transport,
        },
        None => {
            let mut command = args.command.into_iter();
            NewServer::Command {
                command: command
                    .next()
                    .context("give the server's command after --")?,
                args: command.collect(),
                env: args.env,
                cwd: args.cwd,
                port,
                scope: args.scope.map(|s| match s {
                    ShareScope::Shared => Scope::Shared,
                    ShareScope::Project => Scope::Project,
                    ShareScope::Session => Scope::Session,
                }),
                transport,
            }
        }
    };
    if port.is_some() && matches!(server, NewServer::Remote { .. }) {
        bail!("--port is for a command the manager runs; a --url server has its own");
    }
    let home = paths::home()?;
    let options = AddOptions {
        name: args.name,
        server,
        home: home.clone(),
        user_home: commands::user_home()?,
        proxy: generate_config::proxy_path(),
        project: args.project,
        manager_port: None,
    };
    outln!("{}", add::add(&options)?);
    let (_, manager_port) = commands::load_config(None)?;
    outln!("{}", add::tell_manager(&home, manager_port).await);
    Ok(())
}

/// `remove`: out of Claude Code and config.json, then the manager's reload.
async fn remove(name: &str) -> anyhow::Result<()> {
    use mcp_session_manager::commands::{add, remove};
    let home = paths::home()?;
    outln!("{}", remove::remove(name, &home, &commands::user_home()?)?);
    let (_, manager_port) = commands::load_config(None)?;
    outln!("{}", add::tell_manager(&home, manager_port).await);
    Ok(())
}

fn api(port: u16) -> anyhow::Result<ApiClient> {
    // /start waits for the daemon, which may be downloading on first run.
    // Over the manager's socket of this home when it has one.
    let home = paths::home()?;
    Ok(ApiClient::for_home(port, Duration::from_secs(180), &home)?)
}

/// The control port; a config that does not load is said on stderr (the
/// running manager keeps its last good one).
fn control_port(port: Option<u16>) -> anyhow::Result<u16> {
    let (port, problem) = commands::control_port(port)?;
    if let Some(problem) = problem {
        eprintln!("mcp-manager: warning: {}", problem.masked());
    }
    Ok(port)
}

async fn status(port: Option<u16>, as_json: bool) -> anyhow::Result<()> {
    let port = control_port(port)?;
    let list: DaemonList = api(port)?.status().await?;
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        if let Some(config) = &list.config {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            outln!("{}\n", status::config_lines(config, now));
        }
        outln!("{}", status::table(&list.daemons));
    }
    Ok(())
}

async fn reload(port: Option<u16>) -> anyhow::Result<()> {
    let answer = api(control_port(port)?)?.reload().await?;
    outln!("{}", commands::lifecycle::reload_report(&answer));
    if answer.applied {
        Ok(())
    } else {
        Err(AlreadyReported.into())
    }
}

async fn shutdown(port: Option<u16>) -> anyhow::Result<()> {
    let api = api(control_port(port)?)?;
    outln!("{}", commands::lifecycle::shutdown(&api).await?);
    Ok(())
}

async fn daemon_command(port: Option<u16>, action: DaemonAction, name: &str) -> anyhow::Result<()> {
    let port = control_port(port)?;
    let status: DaemonStatus = api(port)?.act(action, name).await?;
    outln!("{}", status::table(std::slice::from_ref(&status)));
    match status::unmet(action, &status) {
        Some(unmet) => bail!(unmet),
        None => Ok(()),
    }
}

/// `import`'s arguments.
struct ImportArgs<'a> {
    from: Option<&'a str>,
    project: Option<PathBuf>,
    scopes: &'a [String],
    dry_run: bool,
    remote: bool,
    rewrite_mcp_json: bool,
    verify: bool,
}

fn import(args: ImportArgs<'_>) -> anyhow::Result<()> {
    use mcp_session_manager::commands::import;
    let options = import::ImportOptions::for_current_user(
        args.from,
        args.project,
        args.scopes,
        args.dry_run,
        args.remote,
        args.rewrite_mcp_json,
        args.verify,
    )?;
    outln!("{}", import::import(&options)?);
    Ok(())
}

fn import_undo(all: bool, dry_run: bool) -> anyhow::Result<()> {
    use mcp_session_manager::commands::import::undo;
    let options = undo::UndoOptions::for_current_user(all, dry_run)?;
    outln!("{}", undo::undo(&options)?);
    Ok(())
}

async fn doctor(port: Option<u16>, as_json: bool) -> anyhow::Result<()> {
    use mcp_session_manager::commands::doctor::{self, DoctorInput};
    let report = doctor::diagnose(&DoctorInput::for_current_user(paths::home()?, port)).await;
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!("{report}");
    }
    if report.healthy() {
        Ok(())
    } else {
        Err(AlreadyReported.into())
    }
}

/// A failure the output has already described: exit 1, print nothing more.
#[derive(Debug, thiserror::Error)]
#[error("see above")]
struct AlreadyReported;

async fn service(port: Option<u16>, action: ServiceAction) -> anyhow::Result<()> {
    use mcp_session_manager::commands::service::{self, ServiceInput};
    let manager_port = match commands::load_config(port) {
        Ok((_, manager_port)) => manager_port,
        // A broken config does not stop (un)installing: the manager says
        // what is wrong when it starts.
        Err(_) => port.unwrap_or(mcp_session_manager::config::DEFAULT_MANAGER_PORT),
    };
    let input = ServiceInput::for_current_user(port, manager_port)?;
    let report = match action {
        ServiceAction::Install => service::install(&input).await?,
        ServiceAction::Uninstall => service::uninstall(&input).await?,
        ServiceAction::Status => service::status(&input).await,
    };
    outln!("{report}");
    Ok(())
}

async fn logs(name: &str, lines: usize, follow: bool) -> anyhow::Result<()> {
    let (home, mut stdout) = (paths::home()?, tokio::io::stdout());
    let stop = signals::stop_requested();
    match commands::logs::show(&home, name, lines, follow, &mut stdout, stop).await {
        Err(error) if output::has_broken_pipe(&error) => Err(output::StdoutClosed.into()),
        shown => Ok(shown?),
    }
}

/// Logs to stderr and, for the manager, to `manager.log` as well (only
/// there when not `to_stderr`).
fn init_logging(file: Option<PathBuf>, to_stderr: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = std::env::var("MCP_MANAGER_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let file = file.and_then(|path| logfile::RotatingLog::open(&path, logfile::LOG_CAP).ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(file) if !to_stderr => builder.with_writer(std::sync::Mutex::new(file)).init(),
        Some(file) => builder
            .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
