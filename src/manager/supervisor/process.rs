//! What a supervisor does to the outside world, behind two traits: a
//! [`Launcher`] finds (adopts) or starts its daemon, and the
//! [`DaemonProcess`] it gives back is waited on, probed and stopped. The
//! supervisor's logic (when to start, restart, back off, stop) never
//! touches a process, a file or a socket itself, so it is tested with a fake
//! under paused time; [`OsLauncher`] is what the manager runs.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::Supervision;
use super::child::HostHealth;
use crate::config::{ServerConfig, TransportKind};
use crate::daemon::identity::{self, Verdict};
use crate::daemon::launch::{self, Launch, LaunchError, Running};
use crate::daemon::probe::{self, ProbeError};
use crate::daemon::record::{self, DaemonRecord};
use crate::daemon::{guard, log};
use crate::paths;

/// How often an adopted daemon's pid is checked.
const PID_POLL: Duration = Duration::from_millis(250);
/// SIGTERM to SIGKILL, for a daemon known only by its pid.
pub use launch::STOP_GRACE;

/// Finds or starts one daemon.
pub trait Launcher: Send + Sync + 'static {
    type Process: DaemonProcess;

    /// The daemon an earlier manager (or a proxy) left running, if its
    /// record is proven ([`identity::verdict`]) and names the configured
    /// port.
    fn adopt(&self) -> Adoption<Self::Process>;

    /// Makes sure the daemon runs and answers: started now, or found
    /// serving. It runs to its end: when the manager stops meanwhile it
    /// undoes what it started and says [`LaunchError::Stopping`], so the
    /// supervisor never drops it half-way.
    fn start(&self) -> impl Future<Output = Result<Self::Process, LaunchError>> + Send;

    /// Housekeeping on every health tick (the log is kept under its cap).
    fn rotate_log(&self);

    /// While it is not running: a program that is not its daemon holds its
    /// port? Then why it cannot start, in the words of
    /// [`LaunchError::PortTaken`] (naming the holder). Nothing is sent to
    /// that program (who listens is read from the system where it can
    /// tell; elsewhere a bare connect).
    fn stranger_on_port(&self) -> impl Future<Output = Option<String>> + Send;
}

/// What a supervisor finds at startup.
#[derive(Debug)]
pub enum Adoption<P> {
    /// A daemon left running, proven ours: supervised from now on.
    Adopted(P),
    /// No record, or one the next start deals with.
    Nothing,
    /// A record that is not believed: why, for `lastError` (its process is
    /// left alone).
    Refused(String),
}

/// One daemon process that answers (or did).
pub trait DaemonProcess: Send + Sync + 'static {
    /// Its lock: pid, port, transport.
    fn record(&self) -> &DaemonRecord;

    /// Started by someone else and taken over (not our child).
    fn adopted(&self) -> bool;

    /// Resolves once it has exited (its lock removed): why, in words.
    /// Cancel-safe: it sits in the supervisor's `select!`.
    fn exited(&mut self) -> impl Future<Output = String> + Send;

    /// One health probe: does it answer HTTP?
    fn check(&self) -> impl Future<Output = Result<(), ProbeError>> + Send;

    /// How many sessions its host serves; `None` if it does not say.
    fn sessions(&self) -> impl Future<Output = Option<u64>> + Send;

    /// What its host's `/health` says of its children; `None` if it is no
    /// host or does not answer.
    fn health(&self) -> impl Future<Output = Option<HostHealth>> + Send;

    /// [`DaemonProcess::sessions`] under the start guard, so that no proxy
    /// is half-way through starting (and about to use) it.
    fn sessions_under_guard(&self) -> impl Future<Output = Option<u64>> + Send;

    /// Stops it (under the start guard, so no proxy starts it again
    /// half-way) and removes its lock.
    fn stop(self) -> impl Future<Output = ()> + Send;
}

/// The real thing: `daemon::launch`, `daemon::probe`, signals.
#[derive(Debug)]
pub struct OsLauncher {
    home: PathBuf,
    manager_exe: PathBuf,
    server: ServerConfig,
    /// The manager's shutdown: a start in flight undoes itself.
    shutdown: CancellationToken,
}

impl OsLauncher {
    /// The launcher of `server`, under `supervision`'s home.
    pub fn new(supervision: &Supervision, server: &ServerConfig) -> OsLauncher {
        OsLauncher {
            home: supervision.home.clone(),
            manager_exe: supervision.manager_exe.clone(),
            server: server.clone(),
            shutdown: supervision.shutdown.clone(),
        }
    }

    fn process(&self, child: Option<Box<Child>>, record: DaemonRecord) -> OsProcess {
        // A hosted server answers its own `/health`, whatever its lock says.
        let probe_transport = if self.server.transport == TransportKind::Stdio {
            TransportKind::Stdio
        } else {
            record.transport
        };
        OsProcess {
            child,
            record,
            home: self.home.clone(),
            name: self.server.name.clone(),
            probe_transport,
        }
    }
}

impl Launcher for OsLauncher {
    type Process = OsProcess;

    fn adopt(&self) -> Adoption<OsProcess> {
        let path = paths::lock_file(&self.home, &self.server.name);
        let Some(lock) = record::read(&path) else {
            return Adoption::Nothing;
        };
        match identity::verdict(&lock) {
            Verdict::Ours if Some(lock.port) == self.server.port => {
                Adoption::Adopted(self.process(None, lock))
            }
            // Moved to the configured port, or waited for, by the next
            // start (under the guard).
            Verdict::Ours | Verdict::NotListening => Adoption::Nothing,
            Verdict::Stale(why) => {
                let file = path
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
                let left = if lock.pid > 1 && crate::process::is_alive(lock.pid) {
                    format!(", and {} is left alone", crate::process::describe(lock.pid))
                } else {
                    String::new()
                };
                Adoption::Refused(format!(
                    "{file} {why}: it is not adopted{left}; the record is replaced at the next start"
                ))
            }
        }
    }

    async fn start(&self) -> Result<OsProcess, LaunchError> {
        let launch = Launch {
            home: &self.home,
            server: &self.server,
            manager_exe: &self.manager_exe,
        };
        Ok(match launch.ensure_until(&self.shutdown).await? {
            Running::Existing(lock) => self.process(None, lock),
            Running::Spawned { lock, child } => self.process(Some(child), lock),
        })
    }

    fn rotate_log(&self) {
        let log = paths::log_file(&self.home, &self.server.name);
        if let Err(error) = log::rotate_if_large(&log, log::LOG_CAP) {
            tracing::warn!(daemon = self.server.name, %error, "cannot rotate the log");
        }
    }

    async fn stranger_on_port(&self) -> Option<String> {
        // Without a command it is started by hand: whoever holds the port
        // is meant to.
        self.server.command.as_ref()?;
        let port = self.server.port?;
        let home = self.home.clone();
        let name = self.server.name.clone();
        // `/proc` reads and process scans: off the runtime thread. `None`:
        // the platform cannot tell who listens.
        let seen = tokio::task::spawn_blocking(move || {
            let lock = record::read(&paths::lock_file(&home, &name));
            // Its own daemon (started by a proxy, say) is no stranger.
            if lock.is_some_and(|lock| {
                lock.port == port && matches!(identity::verdict(&lock), Verdict::Ours)
            }) {
                return Some(None);
            }
            match identity::listener(port) {
                identity::Listener::Nobody => Some(None),
                identity::Listener::Mine => Some(Some(identity::describe_holder(port))),
                identity::Listener::Stranger { holder, .. } => Some(Some(holder)),
                identity::Listener::Unknown => None,
            }
        })
        .await
        .ok()?;
        let holder = match seen {
            Some(holder) => holder?,
            // A bare connect: nothing is sent on it.
            None if probe::answers(port).await => "another program".to_owned(),
            None => return None,
        };
        Some(
            LaunchError::PortTaken {
                name: self.server.name.clone(),
                port,
                holder,
            }
            .to_string(),
        )
    }
}

/// A daemon process: our child (its exit is seen at once) or adopted (its
/// pid is polled).
#[derive(Debug)]
pub struct OsProcess {
    /// `None`: started by someone else.
    child: Option<Box<Child>>,
    record: DaemonRecord,
    home: PathBuf,
    name: String,
    probe_transport: TransportKind,
}

impl OsProcess {
    fn last_log_line(&self) -> String {
        log::tail(&paths::log_file(&self.home, &self.name), 1)
            .ok()
            .and_then(|mut lines| lines.pop())
            .map(|line| format!(": {}", line.trim()))
            .unwrap_or_default()
    }
}

impl DaemonProcess for OsProcess {
    fn record(&self) -> &DaemonRecord {
        &self.record
    }

    fn adopted(&self) -> bool {
        self.child.is_none()
    }

    async fn exited(&mut self) -> String {
        let why = match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("cannot wait for it: {error}"),
            },
            None => {
                while self.record.is_live() {
                    tokio::time::sleep(PID_POLL).await;
                }
                "exited".into()
            }
        };
        // Under the guard, and only if it still names this process: another
        // starter may already have written its own.
        let guard = guard::start(&self.home, &self.name).await;
        record::remove_if_names(&paths::lock_file(&self.home, &self.name), &self.record);
        drop(guard);
        format!("exited ({why}){}", self.last_log_line())
    }

    async fn check(&self) -> Result<(), ProbeError> {
        probe::probe(self.record.port, self.probe_transport).await
    }

    async fn sessions(&self) -> Option<u64> {
        probe::host_sessions(self.record.port).await
    }

    async fn health(&self) -> Option<HostHealth> {
        // Over the host's own socket when it is ours (no TCP at all).
        let socket = paths::host_socket(&self.home, &self.name);
        let socket = crate::http::server::socket::is_ours(&socket).then_some(socket);
        let json = probe::host_health_at(self.record.port, socket.as_deref()).await?;
        HostHealth::parse(&json)
    }

    async fn sessions_under_guard(&self) -> Option<u64> {
        let _guard = guard::start(&self.home, &self.name).await;
        probe::host_sessions(self.record.port).await
    }

    async fn stop(mut self) {
        let guard = guard::start(&self.home, &self.name).await;
        match &mut self.child {
            Some(child) => launch::stop_child(child).await,
            None => launch::stop_pid(&self.record, STOP_GRACE).await,
        }
        record::remove(&paths::lock_file(&self.home, &self.name));
        drop(guard);
    }
}
