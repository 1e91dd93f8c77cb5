//! The control API's shapes, and a client for it (the CLI subcommands and
//! the proxy's `/ensure`). The JSON is an API boundary: the original's
//! fields (`name`, `running`, `pid`, `port`, `uptime`, `lastError`) keep
//! their names and meaning; the rest is added.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::TransportKind;
use crate::daemon::identity::{self, Listener};
use crate::http::server::socket;

/// Where a daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    /// Not running, and not wanted.
    Stopped,
    /// Spawned (or being spawned), not answering HTTP yet.
    Starting,
    /// Answering HTTP.
    Running,
    /// Waiting out a back-off before the next start.
    Backoff,
    /// Being stopped.
    Stopping,
    /// Stopped after `idleTimeout` without sessions; started on demand.
    Idle,
    /// Cannot start (a foreign program holds the port, the runner is
    /// missing); tried again after a back-off.
    Failed,
    /// A `url` entry: lives elsewhere, never started here.
    Remote,
    /// A hosted server whose host runs but whose child is being started
    /// again (it exited or stopped answering); see `child`.
    Restarting,
    /// A hosted server whose child keeps ending (it exits at start, say):
    /// its host starts it again after a back-off, and `lastError` is the
    /// child's last reason; see `child`.
    #[serde(rename = "crash-loop")]
    CrashLoop,
    /// A hosted server with several children (scope `project` or
    /// `session`) some of which run and some not; see `child`.
    Degraded,
}

impl DaemonState {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonState::Stopped => "stopped",
            DaemonState::Starting => "starting",
            DaemonState::Running => "running",
            DaemonState::Backoff => "backoff",
            DaemonState::Stopping => "stopping",
            DaemonState::Idle => "idle",
            DaemonState::Failed => "failed",
            DaemonState::Remote => "remote",
            DaemonState::Restarting => "restarting",
            DaemonState::CrashLoop => "crash-loop",
            DaemonState::Degraded => "degraded",
        }
    }
}

/// One daemon, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub name: String,
    /// Its process runs (a hosted server's host, whatever its child does:
    /// `state` says that).
    pub running: bool,
    pub state: DaemonState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub transport: TransportKind,
    /// Milliseconds since it started answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// Starts after the first one (crashes, failed checks, restarts
    /// asked), plus, for a hosted server, every start of its child after
    /// the first (`child.restarts` is the running host's share).
    #[serde(default)]
    pub restarts: u32,
    /// The last failure; for a running hosted server whose child has
    /// ended, the child's last reason (its host's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Started by an earlier manager and taken over from its lock.
    #[serde(default)]
    pub adopted: bool,
    /// The log's last lines (`GET /status/NAME` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<Vec<String>>,
    /// A running hosted server: its child as its host's `/health` says
    /// (absent before the first look, for other transports, and when the
    /// host does not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildStatus>,
}

/// Where a hosted server's child is, as its host says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    /// Initialized and serving.
    Running,
    /// Its first start, not answering `initialize` yet.
    Starting,
    /// Stopped (its host is stopping).
    Stopped,
    /// It ended and is being started again.
    Restarting,
    /// It keeps ending without serving: started again after a back-off.
    #[serde(rename = "crash-loop")]
    CrashLoop,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Running => "running",
            ChildState::Starting => "starting",
            ChildState::Stopped => "stopped",
            ChildState::Restarting => "restarting",
            ChildState::CrashLoop => "crash-loop",
        }
    }
}

/// A hosted server's child (`child` in a [`DaemonStatus`]). With scope
/// `project` or `session` a host runs one child per key: then `pid`,
/// `state`, `lastReason`, `nextTryAt` and `lastStderr` are the worst
/// one's, `restarts` and `sessions` the sum, and `states` counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildStatus {
    pub state: ChildState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How many times its host started a child again.
    #[serde(default)]
    pub restarts: u64,
    /// Why it was last started again (the host's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// Sessions its host serves.
    #[serde(default)]
    pub sessions: u64,
    /// When its host tries it again (ms since the Unix epoch), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<u64>,
    /// Its last lines on stderr, if its host says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_stderr: Vec<String>,
    /// The host's scope: `shared`, `project` or `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How many children the host runs.
    #[serde(default)]
    pub children: u32,
    /// Children per state, when there is more than one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub states: std::collections::BTreeMap<ChildState, u32>,
}

/// `{"daemons": [...]}`; `/status` adds `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonList {
    pub daemons: Vec<DaemonStatus>,
    /// The config in force and the last reload (`/status` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigStatus>,
}

/// Which config the manager runs, since when, and why the file on disk is
/// not in force when it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// The file in force; `None`: the built-in defaults (no file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// When the config in force was read (ms since the Unix epoch).
    pub loaded_at: u64,
    /// When a reload was last tried, applied or not (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded_at: Option<u64>,
    /// Why the file on disk is not in force: file, line, column, key and
    /// the fix. The last good config keeps running meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Changes read but not applied until the manager restarts
    /// (`managerPort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
    /// `${VAR}`s the config uses that are unset in the manager's own
    /// environment (they expand to nothing in every daemon).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset_variables: Vec<String>,
}

/// The answer to `POST /reload`: what changed, or why nothing did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadAnswer {
    /// The file was read and is now in force.
    pub applied: bool,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// Restarted with their new entry.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Why the file was not applied (the last good config keeps running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Read but waiting for a manager restart (`managerPort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// The answer to `POST /shutdown`: the manager that is stopping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownAnswer {
    pub status: String,
    pub pid: u32,
}

/// The answer to `/ensure` (the original's, plus `transport`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsureAnswer {
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to `/ping`: how a manager tells itself apart from whatever
/// else may listen on its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingAnswer {
    pub status: String,
    /// [`PingAnswer::MESSAGE`] from a manager (the original's text).
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How this manager was started (`None` from an older manager, and
    /// for a value this version does not know: never a reason to call the
    /// answer a stranger's).
    #[serde(
        rename = "launchedBy",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_launcher"
    )]
    pub launched_by: Option<LaunchedBy>,
}

/// `launchedBy`, or `None` for a value this version does not know.
fn known_launcher<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<LaunchedBy>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// Who started a manager, from [`LaunchedBy::ENV`] in its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchedBy {
    /// The user service (`mcp-manager service install`).
    Service,
    /// A proxy that found no manager running.
    Proxy,
    /// Anything else: a shell, a script (the variable unset).
    Command,
}

impl LaunchedBy {
    /// The variable the service unit and the proxy set for the manager
    /// they start (`service`, `proxy`).
    pub const ENV: &'static str = "MCP_MANAGER_LAUNCHED_BY";

    /// Its value in the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchedBy::Service => "service",
            LaunchedBy::Proxy => "proxy",
            LaunchedBy::Command => "command",
        }
    }

    /// How this process was started: [`LaunchedBy::ENV`], else (unset or
    /// unknown) [`LaunchedBy::Command`].
    pub fn of_this_process() -> LaunchedBy {
        match std::env::var(LaunchedBy::ENV).as_deref() {
            Ok("service") => LaunchedBy::Service,
            Ok("proxy") => LaunchedBy::Proxy,
            _ => LaunchedBy::Command,
        }
    }
}

impl PingAnswer {
    /// What a manager says (the original's words, which its tools look for).
    pub const MESSAGE: &'static str = "Manager is running";

    /// This process's answer.
    pub fn of_this_manager() -> PingAnswer {
        PingAnswer {
            status: "ok".into(),
            message: PingAnswer::MESSAGE.into(),
            pid: Some(std::process::id()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            launched_by: Some(LaunchedBy::of_this_process()),
        }
    }
}

/// Who answered `/ping` on the manager's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// An mcp-manager.
    Manager {
        pid: Option<u32>,
        version: Option<String>,
        /// `None` from a manager older than the field.
        launched_by: Option<LaunchedBy>,
    },
    /// Nothing listens there.
    Nothing,
    /// Something that is not a manager, or a manager that does not answer:
    /// what went wrong (never the stranger's own words, which are not ours
    /// to repeat).
    Stranger(String),
}

/// A route that acts on one daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonAction {
    Start,
    Stop,
    Restart,
}

impl DaemonAction {
    /// Its route.
    pub fn path(self) -> &'static str {
        match self {
            DaemonAction::Start => "/start",
            DaemonAction::Stop => "/stop",
            DaemonAction::Restart => "/restart",
        }
    }
}

/// Talking to the control API failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(
        "no manager is running on 127.0.0.1:{port}; start one with `mcp-manager --port {port}`"
    )]
    NotRunning { port: u16 },
    #[error("the manager on 127.0.0.1:{port} did not answer: {reason}")]
    Failed { port: u16, reason: String },
    /// The manager answered with an error (`{"error": ...}`).
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// Another user's program listens on the manager's port: nothing was
    /// sent to it.
    #[error(
        "127.0.0.1:{port} is held by {holder}, not by your mcp-manager; nothing was sent to it: stop that program or choose another port with --port or \"managerPort\""
    )]
    Stranger { port: u16, holder: String },
}

/// A client of one manager's control API.
///
/// Built with [`ApiClient::for_home`], it talks over the manager's Unix
/// socket (`sockets/manager.sock`) whenever that is ours
/// ([`socket::is_ours`]) and answers, and over TCP otherwise (nothing
/// listening there, a path too long, Windows): the URL names the port
/// either way, which the manager's Host check wants.
#[derive(Debug, Clone)]
pub struct ApiClient {
    port: u16,
    http: reqwest::Client,
    /// The manager's socket and a client bound to it.
    unix: Option<(PathBuf, reqwest::Client)>,
}

/// A request to send, made from the client that will carry it.
type MakeRequest<'a> = &'a (dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync);

impl ApiClient {
    /// A client whose every call may take up to `timeout` (`/start` waits for
    /// the daemon to answer), over TCP only.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(port: u16, timeout: Duration) -> Result<ApiClient, ApiError> {
        let http = crate::http::loopback_client_builder()
            .timeout(timeout)
            .build()
            .map_err(|e| cannot_build(port, &e))?;
        Ok(ApiClient {
            port,
            http,
            unix: None,
        })
    }

    /// As [`ApiClient::new`], over the socket of `home`'s manager when it
    /// is there (Unix), else TCP.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn for_home(port: u16, timeout: Duration, home: &Path) -> Result<ApiClient, ApiError> {
        #[cfg_attr(not(unix), expect(unused_mut, reason = "the socket is Unix only"))]
        let mut client = ApiClient::new(port, timeout)?;
        #[cfg(unix)]
        {
            let path = crate::paths::manager_socket(home);
            if crate::paths::fits_socket_address(&path) {
                let unix = crate::http::loopback_client_builder()
                    .timeout(timeout)
                    .unix_socket(path.as_path())
                    .build()
                    .map_err(|e| cannot_build(port, &e))?;
                client.unix = Some((path, unix));
            }
        }
        #[cfg(not(unix))]
        let _ = home;
        Ok(client)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `/ping`: is a manager there, and which?
    pub async fn ping(&self) -> Ping {
        let url = self.url("/ping");
        match self.send::<PingAnswer>(&|c| c.get(&url), "/ping").await {
            Ok(answer) if answer.message == PingAnswer::MESSAGE => Ping::Manager {
                pid: answer.pid,
                version: answer.version,
                launched_by: answer.launched_by,
            },
            Ok(_) => Ping::Stranger("its /ping answer is not the manager's".into()),
            Err(ApiError::NotRunning { .. }) => Ping::Nothing,
            Err(error) => Ping::Stranger(error.to_string()),
        }
    }

    /// `/status`: every daemon.
    ///
    /// # Errors
    /// [`ApiError`]: none running, no answer, or the manager's own error.
    pub async fn status(&self) -> Result<DaemonList, ApiError> {
        let url = self.url("/status");
        self.send(&|c| c.get(&url), "/status").await
    }

    /// `/start`, `/stop` or `/restart` of `name`; its status afterwards.
    ///
    /// # Errors
    /// As [`ApiClient::status`].
    pub async fn act(&self, action: DaemonAction, name: &str) -> Result<DaemonStatus, ApiError> {
        self.post_name(action.path(), name).await
    }

    /// `POST /reload`: reads config.json again and applies it.
    ///
    /// # Errors
    /// As [`ApiClient::status`].
    pub async fn reload(&self) -> Result<ReloadAnswer, ApiError> {
        let url = self.url("/reload");
        self.send(&|c| c.post(&url), "/reload").await
    }

    /// `POST /shutdown`: the manager stops every daemon and exits; it
    /// answers first (wait for its pid to go).
    ///
    /// # Errors
    /// As [`ApiClient::status`].
    pub async fn shutdown(&self) -> Result<ShutdownAnswer, ApiError> {
        let url = self.url("/shutdown");
        self.send(&|c| c.post(&url), "/shutdown").await
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `POST path` with `{"name": ...}`.
    async fn post_name<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        name: &str,
    ) -> Result<T, ApiError> {
        let url = self.url(path);
        let body = serde_json::json!({ "name": name }).to_string();
        let request = |client: &reqwest::Client| {
            client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        };
        self.send(&request, path).await
    }

    /// Sends one request; the JSON answer. Over the manager's socket when
    /// it is ours; over TCP when it is not, when nothing answers on it, or
    /// when the manager there refuses it unread (`403`: the Host names
    /// another port than its own, so it is not the manager of this port).
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: MakeRequest<'_>,
        path: &str,
    ) -> Result<T, ApiError> {
        if let Some((socket_path, unix)) = &self.unix {
            if socket::is_ours(socket_path) {
                match self.exchange(request(unix), path).await {
                    Err(ApiError::NotRunning { .. } | ApiError::Refused { status: 403, .. }) => {
                        tracing::debug!(
                            path,
                            "the manager's socket does not serve this port; trying TCP"
                        );
                    }
                    other => return other,
                }
            }
        }
        // Never a byte to another user's listener (a fake control API
        // could redirect every daemon, or read what is asked of it).
        let port = self.port;
        if let Listener::Stranger { holder, .. } = identity::listener(port) {
            return Err(ApiError::Stranger { port, holder });
        }
        self.exchange(request(&self.http), path).await
    }

    /// One request and its JSON answer.
    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ApiError> {
        let port = self.port;
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                ApiError::NotRunning { port }
            } else {
                ApiError::Failed {
                    port,
                    reason: e.to_string(),
                }
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| ApiError::Failed {
            port,
            reason: format!("cannot read the answer: {e}"),
        })?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct Refusal {
                error: Option<String>,
            }
            let message = serde_json::from_slice::<Refusal>(&body)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(ApiError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Failed {
            port,
            reason: format!("the answer to {path} is not understood: {e}"),
        })
    }

    /// Asks the manager to make sure `name` runs.
    ///
    /// # Errors
    /// As [`ApiClient::status`]; a daemon that cannot start is
    /// [`ApiError::Refused`] with the manager's reason.
    pub async fn ensure(&self, name: &str) -> Result<(u16, Option<TransportKind>), ApiError> {
        let answer: EnsureAnswer = match self.post_name("/ensure", name).await {
            Ok(answer) => answer,
            Err(ApiError::Refused { status, message }) => {
                return Err(ApiError::Refused { status, message });
            }
            Err(other) => return Err(other),
        };
        match answer {
            EnsureAnswer {
                running: true,
                port: Some(port),
                transport,
                ..
            } => Ok((port, transport)),
            EnsureAnswer { error, .. } => Err(ApiError::Refused {
                status: 500,
                message: error.unwrap_or_else(|| "the daemon is not running".into()),
            }),
        }
    }
}

fn cannot_build(port: u16, error: &reqwest::Error) -> ApiError {
    ApiError::Failed {
        port,
        reason: format!("cannot build an HTTP client: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `launchedBy` is optional both ways: an older manager's answer (no
    /// field) and a newer one's (a value this version does not know) are
    /// still a manager's.
    #[test]
    fn ping_answers_say_how_the_manager_was_started() {
        let ours = serde_json::to_value(PingAnswer {
            launched_by: Some(LaunchedBy::Service),
            ..PingAnswer::of_this_manager()
        })
        .expect("serialisable");
        assert_eq!(ours["launchedBy"], "service");
        let old: PingAnswer =
            serde_json::from_str(r#"{"status":"ok","message":"Manager is running","pid":7}"#)
                .expect("an older manager's answer");
        assert_eq!(old.launched_by, None);
        let newer: PingAnswer = serde_json::from_str(
            r#"{"status":"ok","message":"Manager is running","launchedBy":"launchd"}"#,
        )
        .expect("a newer manager's answer");
        assert_eq!(newer.launched_by, None);
        let proxy: PingAnswer = serde_json::from_str(
            r#"{"status":"ok","message":"Manager is running","launchedBy":"proxy"}"#,
        )
        .expect("a proxy-started manager's answer");
        assert_eq!(proxy.launched_by, Some(LaunchedBy::Proxy));
    }
}
