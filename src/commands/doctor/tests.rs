//! The doctor on temporary homes: a healthy setup, then each thing that
//! can be wrong, one at a time.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::config::mask_quoted;
use crate::daemon::launch;
#[cfg(unix)]
use crate::daemon::record;

/// A home, a user home and a project directory, all temporary, and a
/// fake `mcp-proxy` (on unix) that prints this crate's version.
struct Setup {
    _dir: tempfile::TempDir,
    home: PathBuf,
    user_home: PathBuf,
    cwd: PathBuf,
    proxy: PathBuf,
    manager_port: u16,
    daemon_port: u16,
}

/// A port nothing listens on (the OS gave it out and it was let go).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A program that surely exists: this test binary.
fn existing_program() -> String {
    std::env::current_exe()
        .expect("the test binary")
        .to_string_lossy()
        .into_owned()
}

impl Setup {
    /// Everything healthy: a valid config with one daemon (on a free
    /// port, its runner present), a free manager port, no locks, and
    /// `~/.claude.json` running it through the proxy.
    fn healthy() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let user_home = dir.path().join("user");
        let cwd = dir.path().join("project");
        for d in [&home, &user_home, &cwd] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let setup = Setup {
            proxy: dir.path().join("bin").join("mcp-proxy"),
            _dir: dir,
            home,
            user_home,
            cwd,
            manager_port: free_port(),
            daemon_port: free_port(),
        };
        setup.fake_proxy(&format!("mcp-proxy {VERSION}"));
        setup.config(&json!({
            "managerPort": setup.manager_port,
            "mcpServers": {
                "svc": { "command": existing_program(), "port": setup.daemon_port }
            }
        }));
        setup.claude_user(json!({
            "mcpServers": {
                "svc": {
                    "command": setup.proxy.to_string_lossy(),
                    "args": ["--target", "svc"]
                }
            }
        }));
        setup
    }

    /// On unix, a shell script that prints `line` for `--version`.
    fn fake_proxy(&self, line: &str) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = self.proxy.parent().expect("the proxy's directory");
            std::fs::create_dir_all(dir).expect("mkdir");
            std::fs::write(&self.proxy, format!("#!/bin/sh\necho '{line}'\n"))
                .expect("write the fake proxy");
            std::fs::set_permissions(&self.proxy, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        #[cfg(not(unix))]
        let _ = line;
    }

    fn config(&self, config: &Value) {
        self.write(&paths::config_file(&self.home), &config.to_string());
    }

    fn claude_user(&self, document: Value) {
        self.write(&self.user_home.join(".claude.json"), &document.to_string());
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    fn input(&self) -> DoctorInput {
        DoctorInput {
            home: self.home.clone(),
            user_home: Some(self.user_home.clone()),
            cwd: self.cwd.clone(),
            manager_port: None,
            proxy_exe: Some(self.proxy.clone()),
            service_file: None,
        }
    }

    async fn diagnose(&self) -> Report {
        diagnose(&self.input()).await
    }
}

/// The one check called `name`.
fn check<'a>(report: &'a Report, name: &str) -> &'a Check {
    report
        .checks()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in\n{report}"))
}

/// A problem, with a fix, that makes the report unhealthy.
fn assert_problem(report: &Report, name: &str) -> Check {
    let found = check(report, name).clone();
    assert_eq!(found.status, Status::Problem, "{report}");
    assert!(found.fix.is_some(), "a problem says how to fix it");
    assert!(!report.healthy(), "{report}");
    found
}

/// A healthy setup is healthy: every check is ok but "manager" (not
/// running is a warning), and both outputs have their promised shape.
#[cfg(unix)]
#[tokio::test]
async fn a_healthy_setup_is_healthy() {
    let setup = Setup::healthy();
    let report = setup.diagnose().await;
    assert!(report.healthy(), "{report}");
    for check in report.checks() {
        if check.name != "manager" {
            assert_eq!(check.status, Status::Ok, "{check:?}\n{report}");
            assert_eq!(check.fix, None);
        }
    }
    let port = format!("port {} (svc)", setup.daemon_port);
    assert_eq!(check(&report, &port).detail, "free");
    assert_eq!(check(&report, "manager").status, Status::Warning);
    assert!(
        check(&report, "claude user config")
            .detail
            .ends_with("1 server through mcp-proxy")
    );
    assert!(check(&report, "mcp-proxy version").detail.contains(VERSION));

    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["healthy"], true);
    let first = &json["checks"][0];
    assert_eq!(first["name"], "config");
    assert_eq!(first["status"], "ok");
    assert!(first["detail"].is_string());
    assert!(first.get("fix").is_none(), "an ok check has no fix");
    let text = report.to_string();
    assert!(text.starts_with("✓ config: "), "{text}");
    assert!(text.contains("! manager: not running"), "{text}");
    assert!(text.contains("\n    fix: "), "{text}");
    assert!(text.ends_with("healthy, 1 warning"), "{text}");
}

/// A config that is not JSON is a problem naming the line and column,
/// and the other checks fall back to the built-in daemons.
#[tokio::test]
async fn bad_config_json_is_a_problem() {
    let setup = Setup::healthy();
    setup.write(
        &paths::config_file(&setup.home),
        "{\n  \"mcpServers\": {,\n}",
    );
    let report = setup.diagnose().await;
    let config = assert_problem(&report, "config");
    assert!(config.detail.contains("line 2"), "{}", config.detail);
    assert!(config.detail.contains("built-in daemons"));
    assert!(
        config
            .fix
            .is_some_and(|f| f.contains("line 2, column") && f.contains("config.json"))
    );
    // The built-in daemons stand in for the broken file.
    check(&report, "port 3100 (memory)");
}

/// A key of the wrong type names the key in the detail and the fix; a
/// bad value under `env` is never printed.
#[tokio::test]
async fn an_invalid_key_is_named_and_secrets_are_masked() {
    let setup = Setup::healthy();
    setup.config(&json!({
        "mcpServers": { "svc": { "command": "x", "port": 3999, "env": { "TOKEN": 987654321 } } }
    }));
    let report = setup.diagnose().await;
    let config = assert_problem(&report, "config");
    assert!(
        config.detail.contains("mcpServers.svc.env.TOKEN"),
        "{}",
        config.detail
    );
    assert_eq!(
        config.fix.as_deref(),
        Some(
            format!(
                "edit `mcpServers.svc.env.TOKEN` in {}",
                paths::config_file(&setup.home).display()
            )
            .as_str()
        )
    );
    let everything = format!("{report}{}", serde_json::to_string(&report).expect("json"));
    assert!(!everything.contains("987654321"), "{everything}");

    setup.config(&json!({ "mcpServers": { "svc": { "port": "3100" } } }));
    let report = setup.diagnose().await;
    let config = assert_problem(&report, "config");
    assert!(config.detail.contains("`mcpServers.svc.port`"));
    assert!(config.detail.contains("\"3100\""), "not a secret: shown");
}

/// A runner that is not on PATH is a problem whose fix says what to
/// install.
#[tokio::test]
async fn a_missing_runner_is_a_problem() {
    let setup = Setup::healthy();
    setup.config(&json!({
        "managerPort": setup.manager_port,
        "mcpServers": {
            "svc": { "command": existing_program(), "port": setup.daemon_port },
            "gone": { "command": "surely-not-installed-xyz", "port": free_port() }
        }
    }));
    let report = setup.diagnose().await;
    let runner = assert_problem(&report, "runner `surely-not-installed-xyz`");
    assert!(runner.detail.contains("gone"));
    assert_eq!(
        runner.fix,
        Some(launch::missing_program("surely-not-installed-xyz"))
    );
    let svc = format!("runner `{}`", existing_program());
    assert_eq!(check(&report, &svc).status, Status::Ok);
}

/// A daemon's port held by a program that is not its daemon is a
/// problem naming the holder (here: this test process).
#[tokio::test]
async fn a_port_held_by_a_stranger_is_a_problem() {
    let setup = Setup::healthy();
    let stranger = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = stranger.local_addr().expect("addr").port();
    setup.config(&json!({
        "managerPort": setup.manager_port,
        "mcpServers": { "svc": { "command": existing_program(), "port": port } }
    }));
    let report = setup.diagnose().await;
    let held = assert_problem(&report, &format!("port {port} (svc)"));
    #[cfg(target_os = "linux")]
    assert!(
        held.detail.contains(&format!("pid {}", std::process::id())),
        "{}",
        held.detail
    );
    assert!(held.fix.is_some_and(|f| f.contains("\"port\"")));
    drop(stranger);
}

/// The manager's port held by something that does not answer `/ping`
/// as the manager is a problem; "manager" itself stays a warning.
#[tokio::test]
async fn a_manager_port_held_by_a_stranger_is_a_problem() {
    let setup = Setup::healthy();
    // Accepts connections (the kernel's backlog) and never answers.
    let stranger = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = stranger.local_addr().expect("addr").port();
    let input = DoctorInput {
        manager_port: Some(port),
        ..setup.input()
    };
    let report = diagnose(&input).await;
    let held = assert_problem(&report, &format!("manager port {port}"));
    assert!(held.fix.is_some_and(|f| f.contains("--port")));
    assert_eq!(check(&report, "manager").status, Status::Warning);
    drop(stranger);
}

/// A lock whose process is gone is a warning naming the file to
/// remove; warnings alone keep the report healthy. `manager.lock` is
/// the manager's own and is never reported.
#[cfg(unix)]
#[tokio::test]
async fn a_stale_lock_is_a_warning() {
    let setup = Setup::healthy();
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("reap");
    let lock_path = paths::lock_file(&setup.home, "svc");
    let lock = record::DaemonRecord {
        pid,
        port: setup.daemon_port,
        started_at: 1,
        transport: crate::config::TransportKind::Stdio,
        process_start: None,
    };
    record::write(&lock_path, &lock).expect("write the lock");
    setup.write(&setup.home.join("manager.lock"), "");
    let report = setup.diagnose().await;
    let stale = check(&report, "lock svc.lock");
    assert_eq!(stale.status, Status::Warning);
    assert!(stale.detail.contains(&format!("pid {pid}")));
    assert_eq!(
        stale.fix.as_deref(),
        Some(
            format!(
                "remove {} (the manager also removes it on its next start)",
                lock_path.display()
            )
            .as_str()
        )
    );
    assert!(
        report
            .checks()
            .iter()
            .all(|c| c.name != "lock manager.lock")
    );
    assert!(report.healthy(), "{report}");
}

/// The project's entry in `~/.claude.json` is found by the rule `import
/// --project` uses: from a directory reached through a symlink, under its
/// real path too.
#[cfg(unix)]
#[tokio::test]
async fn the_project_entry_is_found_as_import_finds_it() {
    let setup = Setup::healthy();
    let real = setup.cwd.canonicalize().expect("canonical");
    let link = setup.home.join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let key = real.to_string_lossy().into_owned();
    setup.claude_user(json!({
        "mcpServers": {
            "svc": { "command": setup.proxy.to_string_lossy(), "args": ["--target", "svc"] }
        },
        "projects": { key.clone(): { "mcpServers": { "local": { "command": "uvx" } } } }
    }));
    let input = DoctorInput {
        cwd: link,
        ..setup.input()
    };
    let report = diagnose(&input).await;
    let local = check(&report, "claude local config");
    assert_eq!(local.status, Status::Warning, "{report}");
    assert!(
        local.detail.contains(&format!("projects[{key}]")),
        "{}",
        local.detail
    );
}

/// Claude Code entries that run their server directly are warnings
/// (fix: import them), per file and scope; `~/.claude/mcp.json` is
/// noted as unread. Nothing of an entry's env or args is printed.
#[cfg(unix)]
#[tokio::test]
async fn claude_entries_not_through_the_proxy_are_warnings() {
    let setup = Setup::healthy();
    let cwd = setup.cwd.to_string_lossy().into_owned();
    setup.claude_user(json!({
        "mcpServers": {
            "svc": { "command": setup.proxy.to_string_lossy(), "args": ["--target", "svc"] },
            "memory": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-memory"],
                "env": { "API_KEY": "sk-very-secret" }
            },
            "remote": { "type": "http", "url": "https://example.com/mcp",
                        "headers": { "Authorization": "Bearer hidden-token" } }
        },
        "projects": { cwd.clone(): { "mcpServers": { "local": { "command": "uvx", "args": ["x"] } } } }
    }));
    setup.write(
        &setup.cwd.join(".mcp.json"),
        &json!({ "mcpServers": { "shared": { "command": "node", "args": ["s.js"] } } }).to_string(),
    );
    let legacy = generate::target(&setup.user_home);
    std::fs::create_dir_all(legacy.parent().expect("dir")).expect("mkdir");
    setup.write(&legacy, r#"{"mcpServers": {}}"#);

    let report = setup.diagnose().await;
    assert!(report.healthy(), "warnings only: {report}");
    let user = check(&report, "claude user config");
    assert_eq!(user.status, Status::Warning);
    assert!(user.detail.contains("1 of 3 not through mcp-proxy"));
    assert!(user.detail.ends_with(": memory"), "{}", user.detail);
    assert_eq!(user.fix.as_deref(), Some("`mcp-manager import`"));
    let project_fix = format!("`mcp-manager import --project {cwd}`");
    for name in ["claude local config", "claude project config"] {
        let found = check(&report, name);
        assert_eq!(found.status, Status::Warning, "{name}");
        assert_eq!(found.fix.as_deref(), Some(project_fix.as_str()), "{name}");
    }
    let unread = check(&report, "claude mcp.json");
    assert_eq!(unread.status, Status::Warning);
    assert!(
        unread
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("generate-config --scope user"))
    );
    let everything = format!("{report}{}", serde_json::to_string(&report).expect("json"));
    for secret in ["sk-very-secret", "hidden-token", "server-memory"] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }
}

/// With no server in any file Claude Code reads, a warning says how
/// to register one through the proxy.
#[tokio::test]
async fn no_claude_server_at_all_is_a_warning() {
    let setup = Setup::healthy();
    std::fs::remove_file(setup.user_home.join(".claude.json")).expect("remove");
    let report = setup.diagnose().await;
    assert_eq!(check(&report, "claude user config").status, Status::Ok);
    let none = check(&report, "claude code");
    assert_eq!(none.status, Status::Warning);
    assert!(
        none.fix
            .as_deref()
            .is_some_and(|f| f.contains("claude mcp add") && f.contains("--target svc")),
        "{none:?}"
    );
}

/// A proxy entry whose target is not configured is a problem, and so
/// is a `.claude.json` that is not JSON (with its line and column).
#[tokio::test]
async fn broken_claude_files_are_problems() {
    let setup = Setup::healthy();
    setup.claude_user(json!({
        "mcpServers": {
            "direct": { "command": existing_program(), "args": [] },
            "other": { "command": "/opt/x/mcp-proxy.exe", "args": ["--target=nope"] }
        }
    }));
    let report = setup.diagnose().await;
    let user = assert_problem(&report, "claude user config");
    assert!(user.detail.contains("--target nope"), "{}", user.detail);
    assert!(
        user.detail
            .contains("/opt/x/mcp-proxy.exe, which is not there")
    );

    setup.write(
        &setup.user_home.join(".claude.json"),
        "{\"a\": 1,\n\n  oops}",
    );
    let report = setup.diagnose().await;
    let user = assert_problem(&report, "claude user config");
    assert!(
        user.detail.contains("(line 3, column 3)"),
        "{}",
        user.detail
    );
    assert!(user.fix.is_some_and(|f| f.contains("line 3, column 3")));
}

/// An `mcp-proxy` of another version, or none at all, is a problem
/// whose fix is to install both again.
#[cfg(unix)]
#[tokio::test]
async fn a_version_mismatch_is_a_problem() {
    let setup = Setup::healthy();
    setup.fake_proxy("mcp-proxy 0.0.0-other");
    let report = setup.diagnose().await;
    let version = assert_problem(&report, "mcp-proxy version");
    assert!(version.detail.contains("0.0.0-other") && version.detail.contains(VERSION));
    assert!(
        version
            .fix
            .is_some_and(|f| f.contains("cargo install --path ."))
    );

    let input = DoctorInput {
        proxy_exe: Some(setup.home.join("no-such-mcp-proxy")),
        ..setup.input()
    };
    let report = diagnose(&input).await;
    let version = assert_problem(&report, "mcp-proxy version");
    assert!(version.detail.starts_with("no mcp-proxy at "));
}

#[test]
fn quoted_values_are_masked() {
    assert_eq!(
        mask_quoted("invalid type: integer `12`, expected a string \"x\""),
        "invalid type: integer `…`, expected a string \"…\""
    );
}

/// How the running manager was started: a proxy is a warning that names
/// `mcp-manager service install`; the service is fine; an installed
/// service beside another manager says how to switch; nothing running,
/// nothing to say.
#[test]
fn a_manager_started_by_a_proxy_is_a_warning() {
    use super::manager::{ManagerPing, check_launcher};
    use crate::control_api::LaunchedBy;
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("mcp-manager.service");
    let ping = |launched_by| ManagerPing::Ours {
        pid: Some(42),
        version: Some(VERSION.into()),
        launched_by,
        config: None,
        daemons: Vec::new(),
    };
    let by_proxy = check_launcher(&ping(Some(LaunchedBy::Proxy)), Some(&unit)).expect("a check");
    assert_eq!(by_proxy.status, Status::Warning);
    assert!(by_proxy.detail.contains("pid 42") && by_proxy.detail.contains("proxy"));
    assert_eq!(
        by_proxy.fix.as_deref(),
        Some("`mcp-manager service install` (a manager started at login, in a stated environment)")
    );
    let by_service =
        check_launcher(&ping(Some(LaunchedBy::Service)), Some(&unit)).expect("a check");
    assert_eq!(by_service.status, Status::Ok);
    std::fs::write(&unit, "").expect("write");
    let beside = check_launcher(&ping(Some(LaunchedBy::Proxy)), Some(&unit)).expect("a check");
    assert_eq!(beside.status, Status::Warning);
    assert!(
        beside
            .fix
            .is_some_and(|f| f.contains("mcp-manager shutdown"))
    );
    let older = check_launcher(&ping(None), None).expect("a check");
    assert_eq!(older.status, Status::Ok);
    assert!(check_launcher(&ManagerPing::Nothing, Some(&unit)).is_none());
}

/// `${VAR}`s the running manager lacks are a warning naming each; an
/// older manager that does not say is "unknown", not a finding; a change
/// waiting for a restart is a warning of its own.
#[test]
fn unset_variables_of_the_running_manager_are_a_warning() {
    use super::manager::{ManagerPing, check_running_config};
    use crate::control_api::ConfigStatus;
    let file = Path::new("/h/config.json");
    let ping = |config| ManagerPing::Ours {
        pid: Some(42),
        version: None,
        launched_by: None,
        config,
        daemons: Vec::new(),
    };
    let unknown = check_running_config(&ping(None), file);
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].status, Status::Ok);
    assert!(unknown[0].detail.starts_with("unknown"));
    let status = ConfigStatus {
        path: Some(file.to_owned()),
        loaded_at: 1,
        reloaded_at: None,
        error: None,
        needs_restart: vec!["managerPort".into()],
        unset_variables: vec!["GITHUB_TOKEN".into(), "API_KEY".into()],
    };
    let checks = check_running_config(&ping(Some(status)), file);
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(checks[0].status, Status::Warning);
    assert!(checks[0].detail.contains("${GITHUB_TOKEN}, ${API_KEY}"));
    assert!(checks[0].detail.contains("/h/config.json"));
    assert!(
        checks[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("${NAME:-value}"))
    );
    assert_eq!(checks[1].name, "manager restart");
    assert!(checks[1].detail.contains("managerPort"));
    assert!(check_running_config(&ManagerPing::Nothing, file).is_empty());
}

/// A daemon the running manager shows failing is a finding of its own: a
/// crash-looping hosted server a problem with its reason and the fix (its
/// log), a port held by a stranger a problem naming the holder, one on its
/// way back a warning; all well, one ok.
#[test]
fn a_failing_daemon_of_the_running_manager_is_a_problem_with_its_fix() {
    use super::daemons::check_states;
    use super::manager::ManagerPing;
    use crate::config::TransportKind;
    use crate::control_api::{DaemonState, DaemonStatus};
    let file = Path::new("/h/config.json");
    let daemon = |name: &str, state, error: Option<&str>| DaemonStatus {
        name: name.into(),
        running: matches!(state, DaemonState::Running | DaemonState::CrashLoop),
        state,
        pid: None,
        port: Some(3100),
        transport: TransportKind::Stdio,
        uptime: None,
        restarts: 5,
        last_error: error.map(str::to_owned),
        adopted: false,
        log_tail: None,
        child: None,
    };
    let ping = |daemons| ManagerPing::Ours {
        pid: Some(42),
        version: None,
        launched_by: None,
        config: None,
        daemons,
    };
    let why = "it exited during start-up (exit status: 3)";
    let held =
        "port 3100 is held by pid 7 (python3 -m http.server 3100), which is not memory's daemon";
    let checks = check_states(
        &ping(vec![
            daemon("crasher", DaemonState::CrashLoop, Some(why)),
            daemon("memory", DaemonState::Failed, Some(held)),
            daemon("web", DaemonState::Restarting, Some("it exited")),
            daemon("fine", DaemonState::Running, None),
        ]),
        file,
    );
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert_eq!(checks[0].name, "daemon crasher");
    assert_eq!(checks[0].status, Status::Problem);
    assert!(checks[0].detail.contains(why), "{:?}", checks[0]);
    assert!(
        checks[0].detail.starts_with("crash-loop"),
        "{:?}",
        checks[0]
    );
    assert_eq!(
        checks[0].fix.as_deref(),
        Some("see why with `mcp-manager logs crasher`, fix it, then `mcp-manager restart crasher`")
    );
    assert_eq!(checks[1].status, Status::Problem);
    assert!(checks[1].detail.contains("python3 -m http.server"));
    assert!(
        checks[1]
            .fix
            .as_deref()
            .is_some_and(|f| f.starts_with("stop that program"))
    );
    assert_eq!(checks[2].status, Status::Warning);
    let well = check_states(
        &ping(vec![daemon("fine", DaemonState::Running, None)]),
        file,
    );
    assert_eq!(well.len(), 1);
    assert_eq!(well[0].status, Status::Ok);
    assert_eq!(well[0].detail, "none failing (1 running)");
    assert!(check_states(&ManagerPing::Nothing, file).is_empty());
}
