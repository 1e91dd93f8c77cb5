//! Finding the daemon that serves `--target NAME`.
//!
//! In the original's order: something answering on the configured port, then
//! the port in `NAME.lock`, then `POST /ensure` to the manager. With no
//! manager running, the proxy starts one (detached, so it outlives the
//! proxy; in the tool's home and without the session's own variables, so
//! it is the same manager whichever session started it) and asks again; if even that fails it starts the daemon itself,
//! under the same start guard as the manager ([`crate::daemon::launch`]), so exactly
//! one daemon runs either way. A remote (`url`) entry needs no search. When
//! nothing serves the name, [`NotFound::message`] says the cause and its fix
//! in its first ~150 characters (at most [`MESSAGE_CHARS`], never the
//! server's name, which Claude Code redacts): a port held by another
//! program; the manager's trouble (it could not be asked); why the start
//! failed (the manager's own reason, relayed as it is, or the start's here:
//! a missing runner and what installs it, a missing command, the server's
//! exit status and last output lines, `startTimeout`). What was tried, in
//! order, goes to the error's `data` and to stderr.
//!
//! Identity before trust: "something answers" is not enough. Before a
//! session's first byte, the listener must be this user's
//! ([`identity::listener`]; Linux and macOS tell, elsewhere it is assumed), or it
//! gets nothing, not even a connect, and the client's `initialize` is
//! answered with [`Attempt::ForeignListener`]. A daemon the config starts
//! (an entry with a `command`) is proven by its believed record: a port
//! that answers without one gets no session, and the manager's `/ensure`
//! (or the start here) names its holder. An entry without a command is
//! started by hand, so what answers on its port is it. A hosted server must also
//! prove it is the host: its record is believed ([`identity::verdict`]:
//! the recorded process holds the port) or its `/health` names the entry
//! (a host started by hand has no record). A record on another port is
//! followed only when it is believed. The manager's port is checked the
//! same way before `/ping` or `/ensure` is sent, so a stranger there cannot
//! redirect a name. What remains: a listener could change between this
//! check and the transport's connect (microseconds, and only after the
//! daemon died); the transport's reconnects are not checked again until a
//! recovery runs discovery again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::config::{self, ServerConfig, TransportKind};
use crate::control_api::{self, ApiClient, ApiError, LaunchedBy};
use crate::daemon::identity::{self, Listener, Verdict};
use crate::daemon::probe::{self, answers};
use crate::daemon::{launch, record};
use crate::http::server::socket;
use crate::{paths, process};

/// Beyond the daemon's own start timeout, for the manager's work.
const ENSURE_MARGIN: Duration = Duration::from_secs(15);
/// `/ping` answers at once from a manager.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a manager the proxy started may take to answer `/ping`.
const MANAGER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon ready to be connected to.
#[derive(Debug, Clone)]
pub struct Found {
    pub url: Url,
    pub transport: TransportKind,
    /// The daemon's Unix socket, when it has one of ours that answers as
    /// this server on this port: the session goes there, not over TCP.
    pub socket: Option<PathBuf>,
    /// How it was found, for the log.
    pub via: &'static str,
}

/// One place the daemon was looked for, and why it was not there. The
/// `Display` is the chain for the log and the error's `data`;
/// [`Attempt::headline`] is what the client is told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Attempt {
    #[error("nothing answers on 127.0.0.1:{port}")]
    NothingOnPort { port: u16 },
    /// Something of this user answers on the port of an entry with a
    /// `command`, and no believed record says it is the daemon: it gets no
    /// session; the starter (the manager's `/ensure`) says who it is.
    #[error("127.0.0.1:{port} answers, but no believed record says it is the daemon ({holder})")]
    Unproven { port: u16, holder: String },
    #[error("the lock file {} names port {port}, where nothing answers", path.display())]
    StaleRecord { path: PathBuf, port: u16 },
    #[error("no lock file at {}", path.display())]
    NoRecord { path: PathBuf },
    /// The control API client could not even be built.
    #[error("{0}")]
    NoClient(ApiError),
    #[error("no manager answers on 127.0.0.1:{port}, and {} cannot be started: {reason}", manager.display())]
    ManagerNotStarted {
        port: u16,
        manager: PathBuf,
        reason: String,
    },
    #[error("the manager started on 127.0.0.1:{port} does not answer: {what}")]
    ManagerSilent { port: u16, what: String },
    #[error("127.0.0.1:{port} is held by {holder}, which is not mcp-manager ({what})")]
    StrangerOnManagerPort {
        port: u16,
        holder: String,
        what: String,
    },
    #[error("the manager could not start it: {0}")]
    ManagerRefused(ApiError),
    /// Another user's program listens where the daemon should: it was sent
    /// nothing.
    #[error(
        "127.0.0.1:{port} is held by {holder}, a process of another user; nothing was sent to it"
    )]
    ForeignListener { port: u16, holder: String },
    /// A program of this user on a hosted server's port that is not its
    /// host.
    #[error(
        "127.0.0.1:{port} is held by {holder}, which is not this server's host (no believed record names it, and its /health does not name the server); nothing was sent to it"
    )]
    NotTheHost { port: u16, holder: String },
    #[error("the lock file {} is not believed: it {why}", path.display())]
    RecordNotBelieved { path: PathBuf, why: String },
    #[error("starting it here failed: {0}")]
    LaunchFailed(launch::LaunchError),
}

/// What part an attempt plays in the message the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    /// A step of the search that found nothing (the normal way to the
    /// manager).
    Step,
    /// Why the start (by the manager, or here) failed.
    Start,
    /// The manager could not be asked: every server is then started
    /// unsupervised, by the proxies; said first.
    Manager,
    /// The port is someone else's: nothing more was tried.
    Port,
}

impl Attempt {
    fn weight(&self) -> Weight {
        match self {
            Attempt::NothingOnPort { .. }
            | Attempt::Unproven { .. }
            | Attempt::StaleRecord { .. }
            | Attempt::NoRecord { .. }
            | Attempt::RecordNotBelieved { .. } => Weight::Step,
            Attempt::NoClient(_)
            | Attempt::ManagerNotStarted { .. }
            | Attempt::ManagerSilent { .. }
            | Attempt::StrangerOnManagerPort { .. } => Weight::Manager,
            Attempt::ManagerRefused(_) | Attempt::LaunchFailed(_) => Weight::Start,
            Attempt::ForeignListener { .. } | Attempt::NotTheHost { .. } => Weight::Port,
        }
    }

    /// What the client is told when this is the cause: what is wrong and
    /// the one fix first, the detail after, without the server's name.
    fn headline(&self) -> String {
        match self {
            Attempt::ForeignListener { port, holder } => format!(
                "127.0.0.1:{port} is taken by another user's program: stop it, or give this server another \"port\" in config.json; it is held by {holder} and was sent nothing"
            ),
            Attempt::NotTheHost { port, holder } => format!(
                "127.0.0.1:{port} is taken by a program that is not this server's host: stop it, or give this server another \"port\" in config.json; it is held by {holder} and was sent nothing"
            ),
            Attempt::LaunchFailed(error) => error.to_string(),
            Attempt::ManagerRefused(error) => manager_refused(error),
            Attempt::StrangerOnManagerPort { port, holder, .. } => format!(
                "the manager's port {port} is taken by a program that is not mcp-manager: stop it, or set another \"managerPort\" in config.json; it is held by {holder}"
            ),
            Attempt::ManagerNotStarted {
                manager, reason, ..
            } => format!(
                "no manager runs and it cannot be started ({}: {reason}): install mcp-manager beside mcp-proxy",
                manager.display()
            ),
            Attempt::ManagerSilent { port, what } => format!(
                "the manager started on 127.0.0.1:{port} did not answer within {}s: `mcp-manager doctor` says why ({what})",
                MANAGER_START_TIMEOUT.as_secs()
            ),
            Attempt::NoClient(error) => error.to_string(),
            Attempt::NothingOnPort { .. }
            | Attempt::Unproven { .. }
            | Attempt::StaleRecord { .. }
            | Attempt::NoRecord { .. }
            | Attempt::RecordNotBelieved { .. } => {
                "nothing serves this server and nothing could start it: `mcp-manager status` and `mcp-manager doctor` say why".to_owned()
            }
        }
    }
}

/// The manager's `/ensure` failed: its reason (the start's own error,
/// written for this window), or why it could not be asked.
fn manager_refused(error: &ApiError) -> String {
    match error {
        ApiError::Refused { status: 404, .. } => "the running manager does not know this server (its config.json is not this session's): run `mcp-manager reload`; `mcp-manager status` says why if that fails".to_owned(),
        ApiError::Refused { message, .. } => message.clone(),
        ApiError::NotRunning { port } => format!(
            "the manager on 127.0.0.1:{port} stopped before it answered: start it with `mcp-manager --port {port}` (its log: manager.log in its home)"
        ),
        ApiError::Failed { port, reason } => format!(
            "the manager on 127.0.0.1:{port} did not answer in time: `mcp-manager status` and `mcp-manager doctor` say why ({reason})"
        ),
        ApiError::Stranger { port, holder } => format!(
            "the manager's port {port} is taken by another user's program: stop it, or set another \"managerPort\" in config.json; it is held by {holder} and was sent nothing"
        ),
    }
}

/// The most a message for the client holds (Claude Code shows ~490
/// characters in `claude mcp list`, fewer elsewhere).
pub const MESSAGE_CHARS: usize = 400;

/// Nothing serves the name: what was tried, in order. Its `Display` is
/// [`NotFound::message`].
#[derive(Debug, Clone, thiserror::Error)]
pub struct NotFound {
    pub name: String,
    pub tried: Vec<Attempt>,
    pub port: Option<u16>,
    pub manager_port: u16,
}

impl NotFound {
    /// What the client is told, at most [`MESSAGE_CHARS`]: a port held by
    /// another program alone; else the manager's trouble (it could not be
    /// asked), then why the start failed (by the manager, or here instead).
    /// No `--start-all` advice, and nothing that needs the server's name.
    pub fn message(&self) -> String {
        let of = |weight| self.tried.iter().filter(move |a| a.weight() == weight);
        let message = if let Some(port) = of(Weight::Port).next() {
            port.headline()
        } else {
            match (of(Weight::Manager).next(), of(Weight::Start).next_back()) {
                (Some(manager), Some(start)) => format!(
                    "{}; started here instead, it failed: {}",
                    manager.headline(),
                    start.headline()
                ),
                (Some(only), None) | (None, Some(only)) => only.headline(),
                (None, None) => self.tried.last().map_or_else(
                    || "nothing serves this server: `mcp-manager status` says why".to_owned(),
                    Attempt::headline,
                ),
            }
        };
        launch::cut(&message, MESSAGE_CHARS)
    }

    /// Whether waiting would not change it: the port is someone else's, or
    /// the start was tried and failed (a recovery then ends at once; the
    /// next request tries again).
    pub fn is_final(&self) -> bool {
        self.tried
            .iter()
            .any(|a| matches!(a.weight(), Weight::Port | Weight::Start))
    }

    /// The error's `data`: the target and every attempt, in order.
    pub fn data(&self) -> serde_json::Value {
        let tried: Vec<String> = self.tried.iter().map(ToString::to_string).collect();
        serde_json::json!({ "cause": "noDaemon", "target": self.name, "tried": tried })
    }
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Finds the daemon for `server`, and its Unix socket if it has one
/// ([`own_socket`]).
///
/// # Errors
/// [`NotFound`], listing each place that was tried.
pub async fn find(
    server: &ServerConfig,
    home: &Path,
    manager_port: u16,
) -> Result<Found, NotFound> {
    if let Some(url) = &server.url {
        return Ok(Found {
            url: url.clone(),
            transport: server.transport,
            socket: None,
            via: "config url",
        });
    }
    // A host of ours that answers on its socket needs no search over TCP
    // (and no reading of who holds the port, which not every platform can).
    if let Some(port) = server
        .port
        .filter(|_| server.transport == TransportKind::Stdio)
    {
        if let Some(socket) = own_socket(server, home, port).await {
            let mut found = found(port, server.transport, "its socket");
            found.socket = Some(socket);
            return Ok(found);
        }
    }
    let mut found = find_local(server, home, manager_port).await?;
    if let Some(port) = found.url.port() {
        found.socket = own_socket(server, home, port).await;
    }
    Ok(found)
}

/// `sockets/NAME.sock` if it is ours ([`socket::is_ours`]: a socket of
/// this user in this user's 0700 directory, so no other user made it or
/// can listen there) and its `/health`, asked over it with this port in
/// the Host header, names `server`: then the session goes over it. Only
/// hosts make one; `None` (TCP, with the listener checks of [`find`])
/// otherwise, and off Unix.
async fn own_socket(server: &ServerConfig, home: &Path, port: u16) -> Option<PathBuf> {
    let path = paths::host_socket(home, &server.name);
    if !socket::is_ours(&path) {
        return None;
    }
    let named = probe::host_name_at(port, Some(&path)).await.as_deref() == Some(&server.name);
    tracing::debug!(path = %path.display(), named, "the daemon's socket answers");
    named.then_some(path)
}

/// [`find`] on TCP.
async fn find_local(
    server: &ServerConfig,
    home: &Path,
    manager_port: u16,
) -> Result<Found, NotFound> {
    let mut tried = Vec::new();
    let refused = |attempt| not_found(server, vec![attempt], manager_port);
    if let Some(port) = server.port {
        if let Listener::Stranger { holder, .. } = identity::listener(port) {
            return Err(refused(Attempt::ForeignListener { port, holder }));
        }
        if answers(port).await {
            // An entry without a command is started by hand: what answers
            // on its port is it. One the manager starts is proven by its
            // record; anything else gets no session (a hosted server's host
            // is checked by `vet`).
            let proven = server.command.is_none()
                || server.transport == TransportKind::Stdio
                || believed_on(server, home, port);
            if proven {
                vet(server, home, port).await.map_err(refused)?;
                return Ok(found(port, server.transport, "configured port"));
            }
            tried.push(Attempt::Unproven {
                port,
                holder: identity::describe_holder(port),
            });
        } else {
            tried.push(Attempt::NothingOnPort { port });
        }
    }
    let lock_path: PathBuf = paths::lock_file(home, &server.name);
    match record::read(&lock_path) {
        Some(lock) if Some(lock.port) != server.port && answers(lock.port).await => {
            match identity::verdict(&lock) {
                Verdict::Ours => {
                    vet(server, home, lock.port).await.map_err(refused)?;
                    return Ok(found(lock.port, lock.transport, "lock file"));
                }
                Verdict::NotListening => tried.push(Attempt::StaleRecord {
                    path: lock_path,
                    port: lock.port,
                }),
                Verdict::Stale(why) => tried.push(Attempt::RecordNotBelieved {
                    path: lock_path,
                    why: why.to_string(),
                }),
            }
        }
        Some(lock) => tried.push(Attempt::StaleRecord {
            path: lock_path,
            port: lock.port,
        }),
        None => tried.push(Attempt::NoRecord { path: lock_path }),
    }
    let api = ApiClient::for_home(manager_port, server.start_timeout + ENSURE_MARGIN, home)
        .map_err(|e| not_found(server, vec![Attempt::NoClient(e)], manager_port))?;
    match ensure(&api, server, home).await {
        Ok((port, transport, via)) => {
            // The manager (or this proxy) started it; a stranger could
            // still have taken the port since.
            vet(server, home, port).await.map_err(refused)?;
            return Ok(found(port, transport, via));
        }
        Err(mut reasons) => tried.append(&mut reasons),
    }
    Err(not_found(server, tried, manager_port))
}

/// Does a believed record ([`identity::verdict`]) say `server`'s daemon
/// holds `port`?
fn believed_on(server: &ServerConfig, home: &Path, port: u16) -> bool {
    record::read(&paths::lock_file(home, &server.name))
        .is_some_and(|lock| lock.port == port && identity::verdict(&lock) == Verdict::Ours)
}

/// May a session be sent to whoever listens on `port` for `server`? Its
/// listener is this user's (where the platform tells), and a hosted
/// server's listener is its host.
async fn vet(server: &ServerConfig, home: &Path, port: u16) -> Result<(), Attempt> {
    if let Listener::Stranger { holder, .. } = identity::listener(port) {
        return Err(Attempt::ForeignListener { port, holder });
    }
    if server.transport != TransportKind::Stdio {
        return Ok(());
    }
    if believed_on(server, home, port)
        || probe::host_name(port).await.as_deref() == Some(server.name.as_str())
    {
        Ok(())
    } else {
        Err(Attempt::NotTheHost {
            port,
            holder: identity::describe_holder(port),
        })
    }
}

/// `Some` when another user listens on the manager's port: what to say.
fn stranger_on_manager_port(port: u16) -> Option<Attempt> {
    match identity::listener(port) {
        Listener::Stranger { holder, .. } => Some(Attempt::StrangerOnManagerPort {
            port,
            holder,
            what: "a process of another user; nothing was sent to it".to_owned(),
        }),
        Listener::Nobody | Listener::Mine | Listener::Unknown => None,
    }
}

fn not_found(server: &ServerConfig, tried: Vec<Attempt>, manager_port: u16) -> NotFound {
    NotFound {
        name: server.name.clone(),
        tried,
        port: server.port,
        manager_port,
    }
}

/// The manager's `/ensure`; with no manager, one started now, else the
/// daemon started here.
async fn ensure(
    api: &ApiClient,
    server: &ServerConfig,
    home: &Path,
) -> Result<(u16, TransportKind, &'static str), Vec<Attempt>> {
    let name = &server.name;
    let with_default = |(port, transport): (u16, Option<TransportKind>)| {
        (port, transport.unwrap_or(server.transport), "manager")
    };
    let mut tried = Vec::new();
    let manager = sibling_program("mcp-manager");
    // Another user's "manager" gets nothing: not /ping, not /ensure.
    if let Some(stranger) = stranger_on_manager_port(api.port()) {
        tried.push(stranger);
        return launch_here(server, home, &manager, tried).await;
    }
    match ping(api.port(), home).await {
        Ping::Manager => {}
        Ping::Nothing => {
            if let Err(reason) = start_manager(&manager, api, home).await {
                tried.push(reason);
                return launch_here(server, home, &manager, tried).await;
            }
            if let Some(stranger) = stranger_on_manager_port(api.port()) {
                tried.push(stranger);
                return launch_here(server, home, &manager, tried).await;
            }
        }
        Ping::Stranger(what) => {
            tried.push(Attempt::StrangerOnManagerPort {
                port: api.port(),
                holder: identity::describe_holder(api.port()),
                what,
            });
            return launch_here(server, home, &manager, tried).await;
        }
    }
    match api.ensure(name).await {
        Ok(answer) => Ok(with_default(answer)),
        Err(error) => Err(vec![Attempt::ManagerRefused(error)]),
    }
}

/// Who answers on the manager's port.
enum Ping {
    Manager,
    Nothing,
    /// Something else: what it said.
    Stranger(String),
}

async fn ping(port: u16, home: &Path) -> Ping {
    let client = match ApiClient::for_home(port, PING_TIMEOUT, home) {
        Ok(client) => client,
        Err(error) => return Ping::Stranger(error.to_string()),
    };
    match client.ping().await {
        control_api::Ping::Manager { .. } => Ping::Manager,
        control_api::Ping::Nothing => Ping::Nothing,
        control_api::Ping::Stranger(what) => Ping::Stranger(what),
    }
}

/// No manager to ask: start the daemon here, under the same guard.
async fn launch_here(
    server: &ServerConfig,
    home: &Path,
    manager: &Path,
    mut tried: Vec<Attempt>,
) -> Result<(u16, TransportKind, &'static str), Vec<Attempt>> {
    let launched = launch::Launch {
        home,
        server,
        manager_exe: manager,
    }
    .ensure()
    .await;
    match launched {
        Ok(running) => {
            let lock = running.lock().clone();
            if let launch::Running::Spawned { mut child, .. } = running {
                // Reap it if it ends while this proxy lives; it is detached,
                // so it outlives the proxy.
                tokio::spawn(async move { child.wait().await });
            }
            Ok((lock.port, lock.transport, "started by the proxy"))
        }
        Err(error) => {
            tried.push(Attempt::LaunchFailed(error));
            Err(tried)
        }
    }
}

/// Starts `mcp-manager --port P` detached and waits for it to answer. Many
/// proxies may do this at once: one manager wins the instance lock, the
/// others exit, and everyone waits for the winner.
///
/// The manager is shared by every session, so nothing of this session
/// goes with it: it runs in the tool's home (`home`, made now if it is
/// not there yet), with `PWD` saying so, without the variables Claude
/// Code sets for this session ([`is_session_variable`]), and with
/// [`LaunchedBy::ENV`]`=proxy`. The rest of the environment (`PATH`, the
/// user's own variables, which `${VAR}` in the config reads) is kept.
async fn start_manager(manager: &Path, api: &ApiClient, home: &Path) -> Result<(), Attempt> {
    let port = api.port();
    let not_started = |reason: String| Attempt::ManagerNotStarted {
        port,
        manager: manager.to_owned(),
        reason,
    };
    paths::create_private_dir(home)
        .map_err(|e| not_started(format!("cannot create {}: {e}", home.display())))?;
    let mut command = tokio::process::Command::new(manager);
    command
        .arg("--port")
        .arg(port.to_string())
        .current_dir(home)
        .env("PWD", home)
        .env(paths::HOME_ENV, home)
        .env(LaunchedBy::ENV, LaunchedBy::Proxy.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_session_variable) {
            command.env_remove(&name);
        }
    }
    process::detach(&mut command);
    let mut child = command.spawn().map_err(|e| not_started(e.to_string()))?;
    tracing::info!(port, "started the manager");
    let deadline = tokio::time::Instant::now() + MANAGER_START_TIMEOUT;
    loop {
        if let Some(Attempt::StrangerOnManagerPort { what, .. }) = stranger_on_manager_port(port) {
            return Err(Attempt::ManagerSilent { port, what });
        }
        match api.ping().await {
            control_api::Ping::Manager { .. } => break,
            control_api::Ping::Nothing if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            control_api::Ping::Nothing => {
                let what = ApiError::NotRunning { port }.to_string();
                return Err(Attempt::ManagerSilent { port, what });
            }
            control_api::Ping::Stranger(what) => {
                return Err(Attempt::ManagerSilent { port, what });
            }
        }
    }
    // Reap it if it exits (a loser of the instance lock) while we live.
    tokio::spawn(async move { child.wait().await });
    Ok(())
}

/// A variable of the Claude Code session that started this proxy, which a
/// manager shared by every session must not inherit. What Claude Code
/// 2.1.331 adds to its MCP servers' environment (read from a server's
/// environment): `CLAUDECODE`, `CLAUDE_CODE_*` (the entry point, the
/// session id, its notes directory, its SSE port in the IDE),
/// `CLAUDE_PROJECT_DIR`, `AI_AGENT`, `COREPACK_ENABLE_AUTO_PIN` and
/// `NoDefaultCurrentDirectoryInExePath`; also `CLAUDE_ENV_FILE` and the
/// shell's `OLDPWD`. `PWD` is set to the manager's directory instead.
pub(crate) fn is_session_variable(name: &str) -> bool {
    const NAMES: [&str; 7] = [
        "CLAUDECODE",
        "CLAUDE_PROJECT_DIR",
        "CLAUDE_ENV_FILE",
        "AI_AGENT",
        "COREPACK_ENABLE_AUTO_PIN",
        "NoDefaultCurrentDirectoryInExePath",
        "OLDPWD",
    ];
    name.starts_with("CLAUDE_CODE_") || NAMES.contains(&name)
}

/// `name` beside this program (the binaries are installed together), else
/// `name` on PATH.
fn sibling_program(name: &str) -> PathBuf {
    paths::beside_this_program(name)
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

fn found(port: u16, transport: TransportKind, via: &'static str) -> Found {
    Found {
        url: config::local_endpoint(port, transport),
        transport,
        socket: None,
        via,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(tried: Vec<Attempt>) -> NotFound {
        NotFound {
            name: "secret-name".into(),
            tried,
            port: Some(3100),
            manager_port: 3199,
        }
    }

    /// The client is told the cause and its fix first, not the search:
    /// the manager's own reason as it is; the manager's trouble before the
    /// start here that followed; a port held by another program alone.
    #[test]
    fn the_message_leads_with_the_cause_and_its_fix() {
        let search = || {
            vec![
                Attempt::NothingOnPort { port: 3100 },
                Attempt::NoRecord {
                    path: "/h/secret-name.lock".into(),
                },
            ]
        };
        let mut tried = search();
        tried.push(Attempt::ManagerRefused(ApiError::Refused {
            status: 500,
            message: "`uvx` was not found on PATH; install uv".into(),
        }));
        let refused = not_found(tried);
        assert_eq!(refused.message(), "`uvx` was not found on PATH; install uv");
        assert_eq!(refused.data()["tried"].as_array().map(Vec::len), Some(3));

        let mut tried = search();
        tried.push(Attempt::StrangerOnManagerPort {
            port: 3199,
            holder: "pid 7 (python3 -m http.server 3199)".into(),
            what: "HTTP 404".into(),
        });
        tried.push(Attempt::LaunchFailed(launch::LaunchError::Exited {
            name: "secret-name".into(),
            status: "exit status: 3".into(),
            last_line: ": fatal: DATABASE_URL is not set".into(),
        }));
        let message = not_found(tried).message();
        assert!(
            message.starts_with("the manager's port 3199 is taken by a program that is not mcp-manager: stop it, or set another \"managerPort\""),
            "{message}"
        );
        assert!(
            message.contains("fatal: DATABASE_URL is not set"),
            "{message}"
        );

        let held = not_found(vec![Attempt::NotTheHost {
            port: 3100,
            holder: "pid 8 (nginx)".into(),
        }]);
        for message in [message, held.message()] {
            assert!(!message.contains("secret-name"), "{message}");
            assert!(!message.contains("start-all"), "{message}");
            assert!(message.chars().count() <= MESSAGE_CHARS, "{message}");
        }
        let long = not_found(vec![Attempt::ManagerRefused(ApiError::Refused {
            status: 500,
            message: "x".repeat(2000),
        })]);
        assert_eq!(long.message().chars().count(), MESSAGE_CHARS + 1);
    }

    /// The session's own variables stay with the session; the user's
    /// (what `${VAR}` in the config reads) go with the manager.
    #[test]
    fn only_the_sessions_own_variables_are_dropped() {
        for name in [
            "CLAUDECODE",
            "CLAUDE_CODE_ENTRYPOINT",
            "CLAUDE_CODE_SESSION_ID",
            "CLAUDE_CODE_SSE_PORT",
            "CLAUDE_PROJECT_DIR",
            "AI_AGENT",
            "OLDPWD",
        ] {
            assert!(is_session_variable(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "GITHUB_TOKEN",
            "MCP_SESSION_MANAGER_HOME",
            "CLAUDE_CONFIG_DIR",
            "ANTHROPIC_API_KEY",
            "PWD",
        ] {
            assert!(!is_session_variable(name), "{name}");
        }
    }
}
