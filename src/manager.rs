//! `mcp-manager`: the supervisor of shared daemons.
//!
//! Theory of operation. [`run`] takes the single-instance guard of the home
//! (`manager.lock`, with its pid in `manager.pid`; see
//! [`crate::daemon::guard`]) and binds the control port (and on Unix
//! `sockets/manager.sock`), then spawns one
//! [`supervisor`] task per configured daemon: that task alone starts, stops
//! and restarts its daemon. The control API ([`control`]) only sends those
//! tasks commands and reads what they publish; [`Manager`] is what it
//! sees.
//!
//! The config is alive: a change to config.json ([`watch`]), SIGHUP,
//! `POST /reload` and an `/ensure` of a name it does not know make the
//! manager read it again ([`Manager::reload`]). A file that does not parse
//! or validate is not applied (the last good config keeps running and
//! `/status` says why); otherwise the [`reload::Plan`] is applied: a
//! supervisor for each added entry, a retired one (stopped for good, lock
//! removed) for each removed entry, and a retired then new one for each
//! changed entry. Unchanged entries are not touched. One reload at a time.
//!
//! One cancellation path: a root [`CancellationToken`] with a child token
//! for the control server and one shared by every supervisor, and a
//! [`TaskTracker`] holding every supervisor task (and `--start-all`). When
//! the `shutdown` future resolves, `POST /shutdown` cancels the root (or
//! the server ends), each supervisor stops the daemon it runs, and the
//! tracker is closed and waited on for at most `STOP_ALL_LIMIT`.

pub mod control;
mod reload;
pub mod supervisor;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use crate::control_api::{self as api, DaemonState};
use crate::daemon::guard::{self, InstanceError};
use crate::sync::lock;
use supervisor::{DaemonHandle, EnsureError, Supervision};

/// How long stopping every daemon may take before the manager exits anyway.
const STOP_ALL_LIMIT: Duration = Duration::from_secs(10);
/// How long the open sessions of a hosted server whose entry was removed
/// may go on before it is stopped.
pub const RETIRE_GRACE: Duration = Duration::from_secs(30);
/// Changes to config.json closer together than this are one reload (an
/// editor's save is several events; a truncate-then-write is briefly
/// empty).
const SETTLE: Duration = Duration::from_millis(250);

/// Why the manager cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Another manager runs for this home, or its guard file cannot be
    /// had.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// The control port cannot be bound (and who holds it, if known).
    #[error(
        "cannot listen on {addr}: {reason}. Another manager may be running (curl http://{addr}/ping), or {holder} holds the port; choose another with --port or \"managerPort\""
    )]
    PortTaken {
        addr: SocketAddr,
        reason: String,
        holder: String,
    },
}

/// What the manager runs with.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Where locks, logs and `manager.lock` live.
    pub home: PathBuf,
    pub config: Config,
    /// The control API's port on 127.0.0.1.
    pub port: u16,
    /// Start every daemon but the lazy ones at once (`--start-all`), and
    /// each one a reload adds.
    pub start_all: bool,
    /// This binary, which runs stdio entries as `mcp-manager host NAME`.
    pub manager_exe: PathBuf,
    /// Why config.json could not be used at start (then `config` has no
    /// entry, and the first good save of the file is applied).
    pub config_error: Option<String>,
    /// Wait while another manager runs for this home, and take over once it
    /// is gone (the user service at login, when a session's proxy started
    /// one first), instead of exiting.
    pub wait_for_other: bool,
}

/// How often a waiting manager tries the instance guard again.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// The running manager, as the control API sees it.
#[derive(Debug)]
pub struct Manager {
    /// The control API's port.
    pub port: u16,
    pub home: PathBuf,
    /// Every status change of every daemon (`/events` subscribes).
    pub events: broadcast::Sender<api::DaemonStatus>,
    /// The config in force, for `/status` and `/events`.
    pub config: tokio::sync::watch::Sender<api::ConfigStatus>,
    /// In config order (by name); replaced entry by entry by a reload.
    daemons: Mutex<BTreeMap<String, DaemonHandle>>,
    /// The config in force; held for a whole reload, so there is one at a
    /// time.
    applied: tokio::sync::Mutex<Config>,
    /// The config the manager started with (its port is the one it has).
    started_with: Config,
    health_interval: tokio::sync::watch::Sender<Duration>,
    supervision: Arc<Supervision>,
    tasks: TaskTracker,
    start_all: bool,
    /// The root of the one cancellation path (`POST /shutdown` cancels it).
    stop: CancellationToken,
}

impl Manager {
    /// The daemon configured as `name`.
    pub fn daemon(&self, name: &str) -> Option<DaemonHandle> {
        lock(&self.daemons).get(name).cloned()
    }

    /// Every daemon now, in config order.
    fn handles(&self) -> Vec<DaemonHandle> {
        lock(&self.daemons).values().cloned().collect()
    }

    /// Starts every daemon at once (but the lazy ones); each one's status
    /// (a failure stops no other).
    pub async fn start_all(&self) -> Vec<api::DaemonStatus> {
        futures_util::future::join_all(self.handles().into_iter().map(|d| async move {
            if d.lazy || d.status().state == DaemonState::Remote {
                d.status()
            } else {
                d.start().await
            }
        }))
        .await
    }

    /// Stops every daemon at once; each one's status.
    pub async fn stop_all(&self) -> Vec<api::DaemonStatus> {
        let handles = self.handles();
        futures_util::future::join_all(handles.iter().map(DaemonHandle::stop)).await
    }

    /// Every daemon's status now, in config order.
    pub fn statuses(&self) -> Vec<api::DaemonStatus> {
        self.handles().iter().map(DaemonHandle::status).collect()
    }

    /// The config in force and the last reload.
    pub fn config_status(&self) -> api::ConfigStatus {
        self.config.borrow().clone()
    }

    /// Stops the manager: every daemon, then the process (`POST
    /// /shutdown`).
    pub fn shut_down(&self) {
        tracing::info!("asked to shut down");
        self.stop.cancel();
    }

    /// Makes sure `name` runs. A name it does not know makes it read the
    /// config first (an entry just added is served at once), and a daemon
    /// whose entry a reload replaced meanwhile is asked again under its new
    /// entry.
    ///
    /// # Errors
    /// `None`: no such entry, even after a reload; else as
    /// [`DaemonHandle::ensure`].
    pub async fn ensure(
        &self,
        name: &str,
    ) -> Option<Result<crate::daemon::record::DaemonRecord, EnsureError>> {
        for _ in 0..2 {
            let daemon = match self.daemon(name) {
                Some(daemon) => daemon,
                None => {
                    self.reload("a session asked for a name it did not know")
                        .await;
                    self.daemon(name)?
                }
            };
            match daemon.ensure().await {
                // Its task ended: a reload retired it; its successor is in
                // place once that reload is over.
                Err(EnsureError::ManagerStopping) if !self.stop.is_cancelled() => {
                    drop(self.applied.lock().await);
                }
                other => return Some(other),
            }
        }
        Some(Err(EnsureError::ManagerStopping))
    }

    /// Reads config.json again and applies it (see the module's doc);
    /// what changed, or why nothing did.
    pub async fn reload(&self, why: &str) -> api::ReloadAnswer {
        let mut applied = self.applied.lock().await;
        let now = epoch_ms();
        let next = match Config::load(&self.home) {
            Ok(next) => next,
            Err(error) => {
                let message = format!(
                    "{}; the last good config keeps running: fix the file and save it (it is read again at once), or run `mcp-manager doctor`",
                    error.masked()
                );
                tracing::warn!(why, "config not applied: {message}");
                self.config.send_modify(|status| {
                    status.reloaded_at = Some(now);
                    status.error = Some(message.clone());
                });
                return api::ReloadAnswer {
                    error: Some(message),
                    ..api::ReloadAnswer::default()
                };
            }
        };
        let plan = reload::Plan::between(&applied, &next);
        let needs_restart = reload::needs_restart(&self.started_with, &next);
        if next.health_check_interval != applied.health_check_interval {
            self.health_interval
                .send_replace(next.health_check_interval);
        }
        let answer = api::ReloadAnswer {
            applied: true,
            added: plan.added.iter().map(|s| s.name.clone()).collect(),
            removed: plan.removed.clone(),
            changed: plan.changed.iter().map(|s| s.name.clone()).collect(),
            error: None,
            needs_restart: needs_restart.clone(),
        };
        if plan.is_empty() {
            tracing::debug!(why, "config read again: no entry changed");
        } else {
            tracing::info!(
                why,
                added = ?answer.added,
                removed = ?answer.removed,
                changed = ?answer.changed,
                "config reloaded"
            );
        }
        self.apply(plan).await;
        self.config.send_replace(api::ConfigStatus {
            path: next.source.clone(),
            loaded_at: now,
            reloaded_at: Some(now),
            error: None,
            needs_restart,
            unset_variables: next.unset_variables.clone(),
        });
        *applied = next;
        answer
    }

    /// Applies a reload's plan: removed entries retire in the background
    /// (a hosted one's sessions get [`RETIRE_GRACE`]); changed ones retire
    /// at once and start again under their new entry if they ran; added
    /// ones get a supervisor (started at once under `--start-all`).
    async fn apply(&self, plan: reload::Plan) {
        for name in &plan.removed {
            let Some(old) = lock(&self.daemons).remove(name) else {
                continue;
            };
            self.tasks
                .spawn(async move { old.retire(Some(RETIRE_GRACE)).await });
        }
        let replacing = plan.changed.into_iter().map(|server| async move {
            // Shown (as stopping) until its successor takes its place.
            let old = self.daemon(&server.name);
            let was_up = old.as_ref().is_some_and(|old| {
                let state = old.status().state;
                state == DaemonState::Running || state == DaemonState::Starting
            });
            if let Some(old) = old {
                old.retire(None).await;
            }
            self.add(server, was_up);
        });
        futures_util::future::join_all(replacing).await;
        for server in plan.added {
            let eager = self.start_all && !server.lazy;
            self.add(server, eager);
        }
    }

    /// A supervisor for `server`, started at once if `start`.
    fn add(&self, server: ServerConfig, start: bool) {
        let name = server.name.clone();
        let remote = server.url.is_some();
        let handle = supervisor::spawn(server, Arc::clone(&self.supervision), &self.tasks);
        lock(&self.daemons).insert(name, handle.clone());
        if start && !remote {
            self.tasks.spawn(async move { handle.start().await });
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Runs the manager until `shutdown` resolves (or `POST /shutdown`), then
/// stops every daemon it runs (bounded in time) and returns.
///
/// # Errors
/// [`ManagerError`]: another manager runs (or its guard cannot be had), or
/// the port is taken.
pub async fn run(
    options: ManagerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ManagerError> {
    tokio::pin!(shutdown);
    let mut told = false;
    let _instance = loop {
        match guard::instance(&options.home) {
            Err(InstanceError::AlreadyRunning { pid, .. }) if options.wait_for_other => {
                if !std::mem::replace(&mut told, true) {
                    tracing::info!(%pid, "another manager runs for this home; taking over once it stops");
                }
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(WAIT_POLL) => {}
                }
            }
            other => break other?,
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ManagerError::PortTaken {
                addr,
                reason: e.to_string(),
                holder: crate::process::port_holder(options.port)
                    .map_or_else(|| "another program".to_owned(), crate::process::describe),
            })?;
    // Under the instance guard and after the port: the socket, if any, is
    // this manager's (a stale one of a killed manager is replaced).
    let unix = crate::http::server::socket::bind(&crate::paths::manager_socket(&options.home));
    // From here on SIGHUP reloads instead of ending the manager.
    let hangups = crate::signals::Hangups::new();
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (events, _) = broadcast::channel(256);
    let (health_interval, health_check_interval) =
        tokio::sync::watch::channel(options.config.health_check_interval);
    let supervision = Arc::new(Supervision {
        home: options.home.clone(),
        manager_exe: options.manager_exe.clone(),
        health_check_interval,
        events: events.clone(),
        shutdown: cancel.child_token(),
    });
    let daemons = options
        .config
        .servers
        .values()
        .map(|server| {
            let handle = supervisor::spawn(server.clone(), Arc::clone(&supervision), &tasks);
            (server.name.clone(), handle)
        })
        .collect();
    let (config, _) = tokio::sync::watch::channel(api::ConfigStatus {
        path: options.config.source.clone(),
        loaded_at: epoch_ms(),
        reloaded_at: None,
        error: options.config_error.clone(),
        needs_restart: Vec::new(),
        unset_variables: options.config.unset_variables.clone(),
    });
    let manager = Arc::new(Manager {
        port: options.port,
        home: options.home.clone(),
        events,
        config,
        daemons: Mutex::new(daemons),
        applied: tokio::sync::Mutex::new(options.config.clone()),
        started_with: options.config.clone(),
        health_interval,
        supervision,
        tasks: tasks.clone(),
        start_all: options.start_all,
        stop: cancel.clone(),
    });
    tracing::info!(%addr, home = %options.home.display(), "manager listening");
    if options.start_all {
        let starting = Arc::clone(&manager);
        tasks.spawn(async move {
            for status in starting.start_all().await {
                match &status.last_error {
                    Some(error) if !status.running => {
                        tracing::warn!(daemon = %status.name, state = status.state.as_str(), %error, "not running");
                    }
                    _ => tracing::info!(daemon = %status.name, state = status.state.as_str(), "started"),
                }
            }
        });
    }
    tasks.spawn(follow_config(
        Arc::clone(&manager),
        hangups,
        cancel.child_token(),
    ));
    let serving = control::serve(Arc::clone(&manager), listener, unix, cancel.child_token());
    tokio::select! {
        () = serving => {}
        () = &mut shutdown => tracing::info!("stopping every daemon"),
    }
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(STOP_ALL_LIMIT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some daemons did not stop within {STOP_ALL_LIMIT:?}");
    }
    Ok(())
}

/// Reloads on each change of config.json (settled for [`SETTLE`]) and each
/// SIGHUP, until `stop`.
async fn follow_config(
    manager: Arc<Manager>,
    mut hangups: crate::signals::Hangups,
    stop: CancellationToken,
) {
    let file = crate::paths::config_file(&manager.home);
    let (changed_tx, mut changed) = mpsc::channel(1);
    let _watch = match watch::config_file(&file, changed_tx) {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(
                %error,
                "cannot watch {} for changes; reload with `mcp-manager reload` (or SIGHUP)",
                file.display()
            );
            None
        }
    };
    loop {
        let why = tokio::select! {
            () = stop.cancelled() => return,
            () = hangups.recv() => "SIGHUP",
            Some(()) = changed.recv() => {
                // Let the writer finish: one reload for one save.
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(SETTLE) => break,
                        Some(()) = changed.recv() => {}
                    }
                }
                "config.json changed"
            }
        };
        manager.reload(why).await;
    }
}
