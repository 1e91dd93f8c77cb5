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
//! One cancellation path: a root [`CancellationToken`] with a child token
//! for the control server and one shared by every supervisor, and a
//! [`TaskTracker`] holding every supervisor task (and `--start-all`). When
//! the `shutdown` future resolves (or the server ends), the root is
//! cancelled, each supervisor stops the daemon it runs, and the tracker is
//! closed and waited on for at most `STOP_ALL_LIMIT`.

pub mod control;
pub mod supervisor;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::control_api::{self as api, DaemonState};
use crate::daemon::guard::{self, InstanceError};
use supervisor::{DaemonHandle, Supervision};

/// How long stopping every daemon may take before the manager exits anyway.
const STOP_ALL_LIMIT: Duration = Duration::from_secs(10);

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
    /// Start every daemon but the lazy ones at once (`--start-all`).
    pub start_all: bool,
    /// This binary, which runs stdio entries as `mcp-manager host NAME`.
    pub manager_exe: PathBuf,
}

/// The running manager, as the control API sees it.
#[derive(Debug)]
pub struct Manager {
    /// The control API's port.
    pub port: u16,
    pub home: PathBuf,
    /// In config order (by name).
    pub daemons: BTreeMap<String, DaemonHandle>,
    /// Every status change of every daemon (`/events` subscribes).
    pub events: broadcast::Sender<api::DaemonStatus>,
}

impl Manager {
    /// The daemon configured as `name`.
    pub fn daemon(&self, name: &str) -> Option<&DaemonHandle> {
        self.daemons.get(name)
    }

    /// Starts every daemon at once (but the lazy ones); each one's status
    /// (a failure stops no other).
    pub async fn start_all(&self) -> Vec<api::DaemonStatus> {
        futures_util::future::join_all(self.daemons.values().map(|d| async move {
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
        futures_util::future::join_all(self.daemons.values().map(DaemonHandle::stop)).await
    }

    /// Every daemon's status now, in config order.
    pub fn statuses(&self) -> Vec<api::DaemonStatus> {
        self.daemons.values().map(DaemonHandle::status).collect()
    }
}

/// Runs the manager until `shutdown` resolves, then stops every daemon it
/// runs (bounded in time) and returns.
///
/// # Errors
/// [`ManagerError`]: another manager runs (or its guard cannot be had), or
/// the port is taken.
pub async fn run(
    options: ManagerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ManagerError> {
    let _instance = guard::instance(&options.home)?;
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
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (events, _) = broadcast::channel(256);
    let supervision = Arc::new(Supervision {
        home: options.home.clone(),
        manager_exe: options.manager_exe.clone(),
        health_check_interval: options.config.health_check_interval,
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
    let manager = Arc::new(Manager {
        port: options.port,
        home: options.home.clone(),
        daemons,
        events,
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
    let serving = control::serve(Arc::clone(&manager), listener, unix, cancel.child_token());
    tokio::select! {
        () = serving => {}
        () = shutdown => tracing::info!("stopping every daemon"),
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
