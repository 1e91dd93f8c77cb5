//! The supervisor's logic under paused time, with a fake process: the
//! fake launcher records when each start happened, and the test crashes,
//! sickens or idles its processes at will.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use super::*;
use crate::config::{self, Scope};
use crate::control_api::DaemonState;
use crate::daemon::probe::ProbeError;

/// A daemon "world" shared by the fake launcher, its processes and the test.
#[derive(Debug, Default)]
struct World {
    last_pid: u32,
    /// When each start was asked for.
    starts: Vec<Instant>,
    /// The pids stopped, in order.
    stops: Vec<u32>,
    /// Errors of the next starts (a start succeeds when none is left).
    failures: VecDeque<LaunchError>,
    /// How to end each live process.
    exits: HashMap<u32, oneshot::Sender<String>>,
    /// Processes that no longer answer their health probe.
    sick: HashSet<u32>,
    /// What every host says of its sessions.
    sessions: Option<u64>,
    /// A daemon left running by an earlier manager, for `adopt`.
    left_running: Option<u32>,
    /// A record `adopt` does not believe: why.
    refused: Option<String>,
    /// How long each start takes (spawn to answering).
    start_takes: Duration,
    /// What every host's `/health` says (`None`: no answer).
    health: Option<serde_json::Value>,
    /// How often a `/health` was asked for.
    health_asked: u32,
    /// Who holds the port, if not its daemon (why it cannot start).
    stranger: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct FakeLauncher(Arc<Mutex<World>>);

impl FakeLauncher {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().expect("the world")
    }

    fn process(&self, pid: u32) -> FakeProcess {
        let (tx, rx) = oneshot::channel();
        self.world().exits.insert(pid, tx);
        FakeProcess {
            record: DaemonRecord {
                pid,
                port: 3100,
                started_at: 0,
                transport: TransportKind::StreamableHttp,
                process_start: None,
            },
            adopted: false,
            exit: rx,
            world: self.clone(),
        }
    }

    /// Kills the newest process.
    fn crash(&self) -> u32 {
        let pid = self.world().last_pid;
        let exit = self.world().exits.remove(&pid).expect("a live process");
        exit.send("exited (signal: 9 (SIGKILL))".into())
            .expect("its supervisor waits");
        pid
    }

    /// The time between each start and the event before it.
    fn starts_after(&self, events: &[Instant]) -> Vec<Duration> {
        let starts = self.world().starts.clone();
        starts[1..]
            .iter()
            .zip(events)
            .map(|(start, event)| *start - *event)
            .collect()
    }
}

impl Launcher for FakeLauncher {
    type Process = FakeProcess;

    fn adopt(&self) -> Adoption<FakeProcess> {
        if let Some(why) = self.world().refused.take() {
            return Adoption::Refused(why);
        }
        let Some(pid) = self.world().left_running.take() else {
            return Adoption::Nothing;
        };
        self.world().last_pid = pid;
        let mut process = self.process(pid);
        process.adopted = true;
        Adoption::Adopted(process)
    }

    async fn start(&self) -> Result<FakeProcess, LaunchError> {
        let delay = self.world().start_takes;
        tokio::time::sleep(delay).await;
        let pid = {
            let mut world = self.world();
            world.starts.push(Instant::now());
            if let Some(error) = world.failures.pop_front() {
                return Err(error);
            }
            world.last_pid += 1;
            world.last_pid
        };
        Ok(self.process(pid))
    }

    fn rotate_log(&self) {}

    async fn stranger_on_port(&self) -> Option<String> {
        self.world().stranger.clone()
    }
}

#[derive(Debug)]
struct FakeProcess {
    record: DaemonRecord,
    adopted: bool,
    exit: oneshot::Receiver<String>,
    world: FakeLauncher,
}

impl DaemonProcess for FakeProcess {
    fn record(&self) -> &DaemonRecord {
        &self.record
    }

    fn adopted(&self) -> bool {
        self.adopted
    }

    async fn exited(&mut self) -> String {
        match (&mut self.exit).await {
            Ok(why) => why,
            Err(_) => std::future::pending().await,
        }
    }

    async fn check(&self) -> Result<(), ProbeError> {
        if self.world.world().sick.contains(&self.record.pid) {
            Err(ProbeError::NothingListens { port: 3100 })
        } else {
            Ok(())
        }
    }

    async fn sessions(&self) -> Option<u64> {
        self.world.world().sessions
    }

    async fn sessions_under_guard(&self) -> Option<u64> {
        self.world.world().sessions
    }

    async fn health(&self) -> Option<child::HostHealth> {
        let mut world = self.world.world();
        world.health_asked += 1;
        child::HostHealth::parse(world.health.as_ref()?)
    }

    async fn stop(self) {
        let mut world = self.world.world();
        world.stops.push(self.record.pid);
        world.exits.remove(&self.record.pid);
    }
}

fn server(name: &str, transport: TransportKind) -> ServerConfig {
    ServerConfig {
        name: name.into(),
        command: Some("fake-daemon".into()),
        args: Vec::new(),
        env: BTreeMap::new(),
        cwd: None,
        url: None,
        port: Some(3100),
        transport,
        headers: BTreeMap::new(),
        scope: Scope::Shared,
        session_timeout: config::DEFAULT_SESSION_TIMEOUT,
        ping_timeout: config::DEFAULT_PING_TIMEOUT,
        max_children: config::DEFAULT_MAX_CHILDREN,
        start_timeout: config::DEFAULT_START_TIMEOUT,
        idle_timeout: None,
        lazy: false,
    }
}

/// One supervisor of a fake daemon.
struct Harness {
    handle: DaemonHandle,
    events: broadcast::Sender<DaemonStatus>,
    world: FakeLauncher,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Harness {
    fn new(server: ServerConfig, health_check_interval: Duration) -> Harness {
        Harness::with(server, health_check_interval, FakeLauncher::default())
    }

    fn with(server: ServerConfig, health_check_interval: Duration, world: FakeLauncher) -> Harness {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let supervision = Arc::new(Supervision {
            home: PathBuf::new(),
            manager_exe: PathBuf::new(),
            health_check_interval: watch::channel(health_check_interval).1,
            events: broadcast::channel(256).0,
            shutdown: shutdown.clone(),
        });
        let events = supervision.events.clone();
        let handle = spawn_with(server, supervision, world.clone(), &tasks);
        Harness {
            handle,
            events,
            world,
            shutdown,
            tasks,
        }
    }

    /// Waits (in paused time: at most a virtual day) for a status.
    async fn until(
        &self,
        what: &str,
        mut wanted: impl FnMut(&DaemonStatus) -> bool,
    ) -> DaemonStatus {
        let mut shown = self.handle.shown.clone();
        let waited = tokio::time::timeout(
            24 * HOUR,
            shown.wait_for(|shown| wanted(&shown.status(Instant::now()))),
        )
        .await;
        match waited {
            Ok(Ok(_)) => self.handle.status(),
            _ => panic!("never {what}: {:?}", self.handle.status()),
        }
    }

    /// Every status change from now on.
    fn handle_events(&self) -> broadcast::Receiver<DaemonStatus> {
        self.events.subscribe()
    }

    /// Waits for a running process other than `old`.
    async fn running_other_than(&self, old: u32) -> DaemonStatus {
        self.until("running again", |s| {
            s.state == DaemonState::Running && s.pid != Some(old)
        })
        .await
    }
}

#[test]
fn back_off_is_immediate_then_doubles_to_a_minute() {
    let mut backoff = restart_backoff();
    let secs: Vec<u64> = (0..10).map(|_| backoff.next_delay().as_secs()).collect();
    assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

/// A daemon that was up and crashed is started again in the same instant,
/// and the crash is its `lastError`.
#[tokio::test(start_paused = true)]
async fn a_crash_of_a_daemon_that_was_up_is_restarted_at_once() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    let up = h.handle.start().await;
    assert_eq!(up.state, DaemonState::Running, "{up:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let crashed_at = Instant::now();
    let pid = h.world.crash();
    let back = h.running_other_than(pid).await;
    assert_eq!(h.world.starts_after(&[crashed_at]), [Duration::ZERO]);
    assert_eq!(back.restarts, 1, "{back:?}");
    assert_eq!(
        back.last_error.as_deref(),
        Some("exited (signal: 9 (SIGKILL))")
    );
}

/// Crash after crash, each restart waits twice as long as the one before:
/// at once, then 1 s, 2 s, 4 s … never more than 60 s.
#[tokio::test(start_paused = true)]
async fn repeated_crashes_back_off_one_two_four_seconds_up_to_a_minute() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.handle.start().await;
    let mut crashes = Vec::new();
    for _ in 0..9 {
        crashes.push(Instant::now());
        let pid = h.world.crash();
        h.running_other_than(pid).await;
    }
    let secs: Vec<u64> = h
        .world
        .starts_after(&crashes)
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(h.handle.status().restarts, 9);
}

/// Once it has run [`STABLE_AFTER`], a crash is restarted at once again,
/// and the next one after 1 s.
#[tokio::test(start_paused = true)]
async fn the_back_off_starts_over_once_the_daemon_ran_stable_after() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.handle.start().await;
    let mut crashes = Vec::new();
    for ran in [
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        STABLE_AFTER,
        Duration::ZERO,
    ] {
        tokio::time::sleep(ran).await;
        crashes.push(Instant::now());
        let pid = h.world.crash();
        h.running_other_than(pid).await;
    }
    let secs: Vec<u64> = h
        .world
        .starts_after(&crashes)
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [0, 1, 2, 0, 1]);
}

/// A start that fails (it never served) waits 1 s, then 2 s: no immediate
/// retry. A daemon that cannot start is `failed`, one that died starting
/// `backoff`; both are tried again.
#[tokio::test(start_paused = true)]
async fn a_start_that_fails_is_never_retried_at_once() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.world.world().failures.extend([
        LaunchError::Exited {
            name: "web".into(),
            status: "exit status: 1".into(),
            last_line: ": boom".into(),
        },
        LaunchError::PortTaken {
            name: "web".into(),
            port: 3100,
            holder: "nginx".into(),
        },
    ]);
    let asked_at = Instant::now();
    let first = h.handle.start().await;
    assert_eq!(first.state, DaemonState::Backoff, "{first:?}");
    assert!(!first.running, "{first:?}");
    assert!(
        first
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("the server exited at start (exit status: 1): boom")),
        "{first:?}"
    );
    let failed = h.until("failed", |s| s.state == DaemonState::Failed).await;
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("is held by nginx")),
        "{failed:?}"
    );
    let up = h
        .until("running", |s| s.state == DaemonState::Running)
        .await;
    assert_eq!(up.restarts, 2, "{up:?}");
    let starts = h.world.world().starts.clone();
    let since_asked: Vec<Duration> = starts.iter().map(|s| *s - asked_at).collect();
    assert_eq!(
        since_asked,
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
}

/// `stop` while a restart is pending: it is `stopped`, and stays so.
#[tokio::test(start_paused = true)]
async fn stop_during_a_back_off_stops_it_and_no_start_happens_afterwards() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.world.world().failures.push_back(LaunchError::NotReady {
        name: "web".into(),
        port: 3100,
        timeout: Duration::from_secs(60),
        log: "web.log".into(),
    });
    let first = h.handle.start().await;
    assert_eq!(first.state, DaemonState::Backoff, "{first:?}");
    let stopped = h.handle.stop().await;
    assert_eq!(stopped.state, DaemonState::Stopped, "{stopped:?}");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.world.world().starts.len(), 1, "started after a stop");
    assert_eq!(h.handle.status().state, DaemonState::Stopped);
}

/// A daemon that stops answering is stopped after [`HEALTH_FAILURES`]
/// probes in a row and started again.
#[tokio::test(start_paused = true)]
async fn a_daemon_that_fails_its_health_checks_is_restarted() {
    let every = Duration::from_secs(5);
    let h = Harness::new(server("web", TransportKind::StreamableHttp), every);
    let up = h.handle.start().await;
    let pid = up.pid.expect("a pid");
    let sick_at = Instant::now();
    h.world.world().sick.insert(pid);
    let back = h.running_other_than(pid).await;
    assert_eq!(h.world.world().stops, [pid], "the sick one was stopped");
    let restarted_after = *h.world.world().starts.last().expect("a start") - sick_at;
    assert!(
        restarted_after > every * (HEALTH_FAILURES - 1)
            && restarted_after <= every * HEALTH_FAILURES,
        "restarted after {restarted_after:?}"
    );
    assert_eq!(back.restarts, 1, "{back:?}");
    assert_eq!(
        back.last_error.as_deref(),
        Some("did not answer 3 health checks in a row: nothing listens on 127.0.0.1:3100")
    );
}

/// A hosted server with no session is stopped (`idle`) once its
/// `idleTimeout` has passed, and `ensure` starts it again.
#[tokio::test(start_paused = true)]
async fn an_idle_hosted_daemon_is_stopped_after_its_idle_timeout_and_started_again_on_demand() {
    let idle_timeout = Duration::from_secs(60);
    let every = Duration::from_secs(10);
    let mut hosted = server("memory", TransportKind::Stdio);
    hosted.idle_timeout = Some(idle_timeout);
    let h = Harness::new(hosted, every);
    h.world.world().sessions = Some(0);
    let started_at = Instant::now();
    let pid = h.handle.start().await.pid.expect("a pid");
    let idle = h.until("idle", |s| s.state == DaemonState::Idle).await;
    let after = Instant::now() - started_at;
    assert!(
        after >= idle_timeout && after <= idle_timeout + 2 * every,
        "stopped after {after:?}"
    );
    assert!(!idle.running && idle.pid.is_none(), "{idle:?}");
    assert_eq!(h.world.world().stops, [pid]);
    tokio::time::sleep(HOUR).await;
    assert_eq!(
        h.world.world().starts.len(),
        1,
        "an idle daemon is not restarted"
    );
    let record = h.handle.ensure().await.expect("started again");
    assert_ne!(record.pid, pid);
    assert_eq!(h.handle.status().state, DaemonState::Running);
    assert_eq!(h.world.world().starts.len(), 2);
}

/// A host that serves a session is never stopped for idleness.
#[tokio::test(start_paused = true)]
async fn a_hosted_daemon_with_a_session_is_never_stopped_for_idleness() {
    let mut hosted = server("memory", TransportKind::Stdio);
    hosted.idle_timeout = Some(Duration::from_secs(60));
    let h = Harness::new(hosted, Duration::from_secs(10));
    h.world.world().sessions = Some(1);
    h.handle.start().await;
    tokio::time::sleep(HOUR).await;
    assert_eq!(h.handle.status().state, DaemonState::Running);
    assert!(h.world.world().stops.is_empty());
}

/// A daemon left running by an earlier manager is taken over at startup:
/// running, adopted, no restart counted; supervised like any other.
#[tokio::test(start_paused = true)]
async fn a_daemon_left_running_is_adopted_and_supervised() {
    let world = FakeLauncher::default();
    world.world().left_running = Some(77);
    let h = Harness::with(server("web", TransportKind::StreamableHttp), HOUR, world);
    let adopted = h
        .until("adopted", |s| s.state == DaemonState::Running)
        .await;
    assert_eq!(
        (adopted.pid, adopted.adopted, adopted.restarts),
        (Some(77), true, 0)
    );
    assert!(
        h.world.world().starts.is_empty(),
        "started instead of adopted"
    );
    let pid = h.world.crash();
    let back = h.running_other_than(pid).await;
    assert!(!back.adopted, "{back:?}");
}

/// The manager's shutdown stops the daemon and ends the task.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_running_daemon_and_ends_its_task() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    let pid = h.handle.start().await.pid.expect("a pid");
    h.shutdown.cancel();
    h.tasks.close();
    h.tasks.wait().await;
    assert_eq!(h.world.world().stops, [pid]);
    let status = h.handle.status();
    assert_eq!(status.state, DaemonState::Stopped, "{status:?}");
    let error = h.handle.ensure().await.expect_err("no manager");
    assert_eq!(error.to_string(), "the manager is stopping");
}

/// A `url` entry is never started: `ensure` says to connect directly, and
/// start, stop and restart leave it `remote`.
#[tokio::test(start_paused = true)]
async fn a_remote_entry_is_never_started() {
    let mut remote = server("docs", TransportKind::StreamableHttp);
    remote.url = Some("https://example.com:8443/mcp".parse().expect("a url"));
    remote.port = None;
    let h = Harness::new(remote, HOUR);
    let error = h.handle.ensure().await.expect_err("remote");
    assert_eq!(
        error.to_string(),
        "docs is a remote server (\"url\"); connect to it directly"
    );
    for status in [
        h.handle.start().await,
        h.handle.stop().await,
        h.handle.restart().await,
    ] {
        assert_eq!(status.state, DaemonState::Remote, "{status:?}");
        assert_eq!(status.port, Some(8443));
    }
    assert!(h.world.world().starts.is_empty());
}

/// SIGTERM while a start is in flight: the start is not dropped half-way
/// (which left its daemon running with its record); it finishes and what
/// it started is stopped before the task ends. See: issue 13.
#[tokio::test(start_paused = true)]
async fn a_start_in_flight_at_shutdown_is_finished_and_then_stopped() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.world.world().start_takes = Duration::from_secs(5);
    let handle = h.handle.clone();
    let asked = tokio::spawn(async move { handle.start().await });
    h.until("starting", |s| s.state == DaemonState::Starting)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.shutdown.cancel();
    h.tasks.close();
    h.tasks.wait().await;
    {
        let world = h.world.world();
        assert_eq!(world.starts.len(), 1, "{:?}", world.starts);
        assert_eq!(world.stops, [world.last_pid], "what was started is stopped");
        assert!(world.exits.is_empty(), "nothing is left running");
    }
    assert_eq!(h.handle.status().state, DaemonState::Stopped);
    let _ = asked.await;
}

/// Once the manager is stopping, no start begins (a retry that is due, a
/// command still queued).
#[tokio::test(start_paused = true)]
async fn nothing_starts_once_the_manager_is_stopping() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.shutdown.cancel();
    let status = h.handle.start().await;
    h.tasks.close();
    h.tasks.wait().await;
    assert!(h.world.world().starts.is_empty(), "{status:?}");
}

/// A record that is not believed is not adopted, and says why in
/// `lastError`; nothing is started or stopped for it.
#[tokio::test(start_paused = true)]
async fn a_record_that_is_not_believed_is_shown_not_adopted() {
    let world = FakeLauncher::default();
    world.world().refused = Some("web.lock has no \"processStart\"".into());
    let h = Harness::with(server("web", TransportKind::StreamableHttp), HOUR, world);
    let shown = h.until("refused", |s| s.last_error.is_some()).await;
    assert_eq!(shown.state, DaemonState::Stopped, "{shown:?}");
    assert!(!shown.adopted && shown.pid.is_none(), "{shown:?}");
    let world = h.world.world();
    assert!(world.starts.is_empty() && world.stops.is_empty());
}

/// A start that keeps failing is given up after [`GIVE_UP_AFTER`] tries
/// in a row (it says so, and how to try again); an `ensure` then tries
/// again at once.
#[tokio::test(start_paused = true)]
async fn a_daemon_that_keeps_failing_to_start_is_given_up_and_retried_when_asked() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    let exited = || LaunchError::Exited {
        name: "web".into(),
        status: "exit status: 3".into(),
        last_line: ": fatal: DATABASE_URL is not set".into(),
    };
    h.world
        .world()
        .failures
        .extend((0..GIVE_UP_AFTER).map(|_| exited()));
    let _ = h.handle.start().await;
    let given_up = h
        .until("given up", |s| {
            s.state == DaemonState::Failed
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("gave up"))
        })
        .await;
    assert!(
        given_up
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("DATABASE_URL") && e.contains("`mcp-manager start web`")),
        "{given_up:?}"
    );
    tokio::time::sleep(24 * HOUR).await;
    assert_eq!(
        h.world.world().starts.len(),
        GIVE_UP_AFTER as usize,
        "no start after giving up"
    );
    let record = h.handle.ensure().await.expect("asked: tried again");
    assert_eq!(h.handle.status().pid, Some(record.pid));
}

/// A daemon whose runner is missing is `failed` and not started again by
/// itself: nothing would change until a person installs it.
#[tokio::test(start_paused = true)]
async fn a_missing_runner_is_not_retried_by_itself() {
    let h = Harness::new(server("web", TransportKind::Stdio), HOUR);
    h.world.world().failures.push_back(LaunchError::Spawn {
        name: "web".into(),
        cause: crate::daemon::launch::SpawnCause::MissingProgram {
            program: "uvx".into(),
        },
    });
    let failed = h.handle.start().await;
    assert_eq!(failed.state, DaemonState::Failed, "{failed:?}");
    tokio::time::sleep(24 * HOUR).await;
    assert_eq!(h.world.world().starts.len(), 1);
    assert_eq!(h.handle.status().state, DaemonState::Failed);
}

/// Retiring (its entry changed or left the config) stops the daemon and
/// ends the task; a later command finds no task.
#[tokio::test(start_paused = true)]
async fn a_retired_daemon_is_stopped_and_its_task_ends() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    let pid = h.handle.start().await.pid.expect("a pid");
    h.handle.retire(None).await;
    assert_eq!(h.world.world().stops, [pid]);
    assert_eq!(h.handle.status().state, DaemonState::Stopped);
    h.tasks.close();
    tokio::time::timeout(Duration::from_secs(1), h.tasks.wait())
        .await
        .expect("the task ended");
    assert!(h.handle.ensure().await.is_err());
}

/// A hosted server whose entry was removed keeps serving its open
/// sessions for the grace period, and is stopped as soon as they are gone.
#[tokio::test(start_paused = true)]
async fn a_retired_hosted_server_waits_for_its_sessions_within_the_grace() {
    let h = Harness::new(server("memory", TransportKind::Stdio), HOUR);
    let pid = h.handle.start().await.pid.expect("a pid");
    h.world.world().sessions = Some(2);
    let asked = Instant::now();
    let handle = h.handle.clone();
    let retiring = tokio::spawn(async move { handle.retire(Some(Duration::from_secs(30))).await });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        h.world.world().stops.is_empty(),
        "stopped with sessions open"
    );
    h.world.world().sessions = Some(0);
    retiring.await.expect("retired");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    assert_eq!(h.world.world().stops, [pid]);

    // Sessions that never end: stopped when the grace is over.
    let h = Harness::new(server("memory", TransportKind::Stdio), HOUR);
    let pid = h.handle.start().await.pid.expect("a pid");
    h.world.world().sessions = Some(1);
    let asked = Instant::now();
    h.handle.retire(Some(Duration::from_secs(30))).await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "{took:?}"
    );
    assert_eq!(h.world.world().stops, [pid]);
}

/// A reload's new `healthCheckInterval` reaches a running supervisor.
#[tokio::test(start_paused = true)]
async fn a_new_health_check_interval_applies_without_a_restart() {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (every, health_check_interval) = watch::channel(HOUR);
    let supervision = Arc::new(Supervision {
        home: PathBuf::new(),
        manager_exe: PathBuf::new(),
        health_check_interval,
        events: broadcast::channel(256).0,
        shutdown: shutdown.clone(),
    });
    let world = FakeLauncher::default();
    let handle = spawn_with(
        server("web", TransportKind::StreamableHttp),
        supervision,
        world.clone(),
        &tasks,
    );
    let pid = handle.start().await.pid.expect("a pid");
    every.send_replace(Duration::from_secs(2));
    world.world().sick.insert(pid);
    let sick_at = Instant::now();
    let mut shown = handle.shown.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        shown.wait_for(|s| s.status(Instant::now()).pid.is_some_and(|p| p != pid)),
    )
    .await
    .expect("restarted under the new interval")
    .expect("shown");
    assert!(
        sick_at.elapsed() <= Duration::from_secs(8),
        "{:?}",
        sick_at.elapsed()
    );
    shutdown.cancel();
}

/// A host's `/health` with one child.
fn host_health(
    state: &str,
    pid: Option<u32>,
    restarts: u64,
    reason: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "name": "db", "state": if state == "running" { "ok" } else { "degraded" },
        "scope": "shared", "pid": pid, "sessions": 1, "uptimeMs": 1000,
        "children": [{
            "state": state, "pid": pid, "restarts": restarts, "lastRestartReason": reason,
            "startedAt": null, "scopeKey": "shared", "sessions": 1,
        }],
    })
}

/// One voice: a hosted server whose child keeps exiting at start is
/// `crash-loop` within [`HOST_POLL`], never `running`; its `lastError` is
/// the child's reason, its restarts count the child's, and `/events` hears
/// of it.
#[tokio::test(start_paused = true)]
async fn a_hosted_server_whose_child_keeps_exiting_is_a_crash_loop() {
    let h = Harness::new(server("db", TransportKind::Stdio), HOUR);
    let mut events = h.handle_events();
    let up = h.handle.start().await;
    assert_eq!(up.state, DaemonState::Running, "{up:?}");
    let why = "it exited during start-up (exit status: 3); see db.log";
    h.world.world().health = Some(host_health("restarting", None, 5, Some(why)));
    let seen_at = Instant::now();
    let looping = h
        .until("crash-loop", |s| s.state == DaemonState::CrashLoop)
        .await;
    assert!(Instant::now() - seen_at <= HOST_POLL, "seen within a poll");
    assert!(looping.running, "its host runs: {looping:?}");
    assert_eq!(looping.last_error.as_deref(), Some(why));
    assert_eq!(looping.restarts, 5, "the child's restarts count");
    let child = looping.child.expect("the child view");
    assert_eq!(child.state, crate::control_api::ChildState::CrashLoop);
    assert_eq!((child.restarts, child.sessions), (5, 1));
    let mut heard = None;
    while let Ok(status) = events.try_recv() {
        heard = Some(status);
    }
    assert_eq!(heard.map(|s| s.state), Some(DaemonState::CrashLoop));
    // It serves again: running, with its history.
    h.world.world().health = Some(host_health("running", Some(88), 5, Some(why)));
    let back = h
        .until("running", |s| s.state == DaemonState::Running)
        .await;
    assert_eq!(back.restarts, 5);
    assert_eq!(back.child.and_then(|c| c.pid), Some(88));
}

/// A child that ended once is `restarting` (not a crash loop), then
/// `running` with the restart counted.
#[tokio::test(start_paused = true)]
async fn a_hosted_server_whose_child_was_killed_is_restarting_then_running() {
    let h = Harness::new(server("db", TransportKind::Stdio), HOUR);
    h.handle.start().await;
    h.world.world().health = Some(host_health("running", Some(10), 0, None));
    h.until("child running", |s| s.child.is_some()).await;
    let why = "it exited (signal: 9 (SIGKILL))";
    h.world.world().health = Some(host_health("restarting", None, 1, Some(why)));
    let again = h
        .until("restarting", |s| s.state == DaemonState::Restarting)
        .await;
    assert_eq!(again.last_error.as_deref(), Some(why));
    h.world.world().health = Some(host_health("running", Some(11), 1, Some(why)));
    let back = h
        .until("running", |s| s.state == DaemonState::Running)
        .await;
    assert_eq!(back.restarts, 1, "{back:?}");
    // The host itself dies: its child's restarts and reason outlive it.
    let pid = h.world.crash();
    h.world.world().health = None;
    let later = h.running_other_than(pid).await;
    assert_eq!(
        later.restarts, 2,
        "the host's restart and its child's: {later:?}"
    );
    assert_eq!(later.child, None, "a new host, not asked yet");
}

/// Only hosted servers are asked about a child; a host that does not
/// answer keeps its last view.
#[tokio::test(start_paused = true)]
async fn only_a_running_hosted_server_is_asked_about_its_child() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.handle.start().await;
    tokio::time::sleep(HOST_POLL * 10).await;
    assert_eq!(h.world.world().health_asked, 0);
    let h = Harness::new(server("db", TransportKind::Stdio), HOUR);
    tokio::time::sleep(HOST_POLL * 10).await;
    assert_eq!(h.world.world().health_asked, 0, "not running: not asked");
    h.handle.start().await;
    tokio::time::sleep(HOST_POLL * 5 + Duration::from_millis(1)).await;
    assert_eq!(h.world.world().health_asked, 5);
    assert_eq!(h.handle.status().state, DaemonState::Running);
}

/// A port held by a program that is not its daemon is shown as the
/// daemon's state and error while it is not running: at startup, and on
/// the health ticks until the port is free.
#[tokio::test(start_paused = true)]
async fn a_port_held_by_a_stranger_is_shown_failed_until_it_is_free() {
    let world = FakeLauncher::default();
    let why = "port 3100 is held by pid 9 (python3 -m http.server 3100), which is not web's daemon";
    world.world().stranger = Some(why.into());
    let every = Duration::from_secs(5);
    let h = Harness::with(server("web", TransportKind::StreamableHttp), every, world);
    let failed = h.until("failed", |s| s.state == DaemonState::Failed).await;
    assert_eq!(failed.last_error.as_deref(), Some(why));
    assert!(!failed.running);
    tokio::time::sleep(every * 3).await;
    assert!(h.world.world().starts.is_empty(), "never started by itself");
    h.world.world().stranger = None;
    let free = h
        .until("stopped", |s| s.state == DaemonState::Stopped)
        .await;
    assert_eq!(
        free.last_error.as_deref(),
        Some(why),
        "the last failure stays"
    );
    let up = h.handle.start().await;
    assert_eq!(up.state, DaemonState::Running);
}

/// A session asking for a daemon whose start just failed is told why at
/// once, with the time of the next try, and starts nothing; a person's
/// `start` tries again now.
#[tokio::test(start_paused = true)]
async fn a_session_during_a_failed_starts_back_off_is_told_at_once() {
    let h = Harness::new(server("web", TransportKind::StreamableHttp), HOUR);
    h.world.world().failures.push_back(LaunchError::Exited {
        name: "web".into(),
        status: "exit status: 3".into(),
        last_line: ": fatal: DATABASE_URL is not set".into(),
    });
    let first = h.handle.start().await;
    assert_eq!(first.state, DaemonState::Backoff, "{first:?}");
    let asked = Instant::now();
    let error = h.handle.ensure().await.expect_err("failing");
    assert_eq!(asked.elapsed(), Duration::ZERO, "told at once");
    let text = error.to_string();
    assert!(
        text.contains("DATABASE_URL") && text.contains("tried again in 1 s"),
        "{text}"
    );
    assert_eq!(h.world.world().starts.len(), 1, "no start for the session");
    let up = h.handle.start().await;
    assert_eq!(up.state, DaemonState::Running, "{up:?}");
}
