//! `mcp-manager`: the supervisor of shared daemons.
//!
//! One task per configured daemon ([`daemon`]) owns its process; the
//! control API ([`control`]) asks those tasks and reads their published
//! status; one [`CancellationToken`] stops everything. Only one manager runs
//! per home directory: it holds the `fs4` lock on `manager.lock` (and writes
//! its pid to `manager.pid`) for its whole life.

pub mod control;
pub mod supervisor;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::control_api::{self as api, DaemonState};
use supervisor::{Context, DaemonHandle};

/// How long stopping every daemon may take before the manager exits anyway.
const STOP_ALL_LIMIT: Duration = Duration::from_secs(10);

/// Why the manager cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(
        "another manager (pid {pid}) already runs for {home}; stop it first, or use it: `mcp-manager status`"
    )]
    AlreadyRunning { pid: String, home: String },
    #[error(
        "cannot listen on {addr}: {reason}. Another manager may be running (curl http://{addr}/ping), or {holder} holds the port; choose another with --port or \"managerPort\""
    )]
    PortTaken {
        addr: SocketAddr,
        reason: String,
        holder: String,
    },
    #[error("{0}")]
    Io(String),
}

/// What the manager runs with.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub home: PathBuf,
    pub config: Config,
    pub port: u16,
    pub start_all: bool,
    /// This binary, which runs stdio entries as `mcp-manager host NAME`.
    pub manager_exe: PathBuf,
}

/// The running manager, as the control API sees it.
#[derive(Debug)]
pub struct Manager {
    pub port: u16,
    pub home: PathBuf,
    /// In config order (by name).
    pub daemons: BTreeMap<String, DaemonHandle>,
    pub events: broadcast::Sender<api::DaemonStatus>,
}

impl Manager {
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

    pub async fn stop_all(&self) -> Vec<api::DaemonStatus> {
        futures_util::future::join_all(self.daemons.values().map(DaemonHandle::stop)).await
    }

    pub fn statuses(&self) -> Vec<api::DaemonStatus> {
        self.daemons.values().map(DaemonHandle::status).collect()
    }
}

/// The single-instance lock, held for the manager's life.
struct InstanceLock {
    _file: File,
    pid_file: PathBuf,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

fn lock_instance(home: &Path) -> Result<InstanceLock, ManagerError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        ManagerError::Io(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(home).map_err(|e| io("create", home, e))?;
    let lock_path = home.join("manager.lock");
    let pid_file = home.join("manager.pid");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io("open", &lock_path, e))?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let pid = std::fs::read_to_string(&pid_file)
                .map(|p| p.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into());
            return Err(ManagerError::AlreadyRunning {
                pid,
                home: home.display().to_string(),
            });
        }
    }
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| io("write", &pid_file, e))?;
    Ok(InstanceLock {
        _file: file,
        pid_file,
    })
}

/// Runs the manager until `shutdown` resolves, then stops every daemon it
/// runs (bounded in time) and returns.
///
/// # Errors
/// [`ManagerError`]: another manager runs, or the port is taken.
pub async fn run(
    options: ManagerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ManagerError> {
    let _instance = lock_instance(&options.home)?;
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
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (events, _) = broadcast::channel(256);
    let context = Arc::new(Context {
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
            let handle = supervisor::spawn(server.clone(), Arc::clone(&context), &tasks);
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
    let serving = control::serve(Arc::clone(&manager), listener, cancel.child_token());
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
