//! The manager's way of being started: `mcp-manager service install|
//! uninstall|status` in a throwaway HOME (never a real service: every run
//! sets `MCP_MANAGER_NO_SERVICE_MANAGER`), the unit checked by the real
//! `systemd-analyze verify`; and a manager started by a proxy, which runs
//! in the tool's home with none of the session's variables, says so on
//! `/ping`, and is what `doctor` warns about.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

#[cfg(target_os = "linux")]
use serde_json::Value;
use serde_json::json;
use tokio::process::Command;

use crate::util::{TestHome, free_port, manager_bin};

/// A user's HOME (with a space and a `%` in its path, which the unit must
/// quote and escape), the tool's home inside it, and a project directory.
struct Throwaway {
    _dir: tempfile::TempDir,
    user_home: PathBuf,
    tool_home: PathBuf,
    project: PathBuf,
}

impl Throwaway {
    fn new() -> Throwaway {
        // Beside the binaries (same file system), so the binary can be hard
        // linked into a directory whose name needs quoting.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let user_home = dir.path().join("user home 100%");
        let tool_home = user_home.join(".mcp session manager");
        let project = dir.path().join("project");
        for d in [&user_home, &project] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Throwaway {
            _dir: dir,
            user_home,
            tool_home,
            project,
        }
    }

    /// `mcp-manager ARGS` as this user, never reaching a service manager.
    async fn manager(&self, exe: &Path, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(exe);
        command
            .args(args)
            .env("HOME", &self.user_home)
            .env_remove("XDG_CONFIG_HOME")
            .env("MCP_SESSION_MANAGER_HOME", &self.tool_home)
            .env("MCP_MANAGER_NO_SERVICE_MANAGER", "1")
            .env("MCP_MANAGER_LOG", "warn")
            .current_dir(&self.project)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("mcp-manager finishes within 20 s")
            .expect("run mcp-manager");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// `systemd-analyze verify --user UNIT` in `user_home` (its own runtime
/// directory): (success, what it printed). `None` where it is missing.
#[cfg(target_os = "linux")]
fn systemd_verify(user_home: &Path, unit: &Path) -> Option<(bool, String)> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        return None;
    }
    let runtime = user_home.join("runtime");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let output = std::process::Command::new(analyze)
        .args(["verify", "--user"])
        .arg(unit)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", user_home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), said))
}

/// `service install` in a throwaway HOME writes a unit that the real
/// `systemd-analyze verify` accepts without a single warning (it checks
/// that ExecStart names an executable: here one in a directory whose name
/// has a space and a `%`), and that it rejects once ExecStart is broken
/// (so the verify does check); the output says the one command that
/// enables it; `status` sees it; `uninstall` removes it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn service_install_writes_a_unit_systemd_accepts() {
    let user = Throwaway::new();
    // This binary under a name that needs quoting and `%` escaping.
    let bin_dir = user.user_home.join("my bin 100%");
    std::fs::create_dir_all(&bin_dir).expect("mkdir");
    let exe = bin_dir.join("mcp-manager");
    if std::fs::hard_link(manager_bin(), &exe).is_err() {
        std::fs::copy(manager_bin(), &exe).expect("copy the manager binary");
    }
    let port = free_port().to_string();
    let (code, out, err) = user
        .manager(&exe, &["--port", &port, "service", "install"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let unit = user
        .user_home
        .join(".config/systemd/user/mcp-manager.service");
    assert!(out.contains(&format!("wrote {}", unit.display())), "{out}");
    assert!(
        out.contains("`systemctl --user enable --now mcp-manager.service`"),
        "{out}"
    );
    let text = std::fs::read_to_string(&unit).expect("the unit");
    assert!(
        text.contains(&format!(
            "ExecStart=\"{}\" \"--port\" \"{port}\"\n",
            exe.display().to_string().replace('%', "%%")
        )),
        "{text}"
    );
    assert!(text.contains("Environment=\"MCP_MANAGER_LAUNCHED_BY=service\"\n"));
    let path = std::env::var("PATH").expect("PATH");
    assert!(
        text.contains(&format!(
            "Environment=\"PATH={}\"\n",
            path.replace('%', "%%")
        )),
        "{text}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&unit).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(user.tool_home.join("manager.log").is_file());

    match systemd_verify(&user.user_home, &unit) {
        None => eprintln!("skipped the systemd check: no /usr/bin/systemd-analyze here"),
        Some((accepted, said)) => {
            assert!(
                accepted,
                "systemd-analyze verify refused the unit:\n{said}\n{text}"
            );
            assert!(
                said.trim().is_empty(),
                "systemd-analyze warned:\n{said}\n{text}"
            );
            // The same unit naming a program that is not there is refused:
            // the check above is a real one.
            let broken = user.user_home.join("broken.service");
            std::fs::write(
                &broken,
                text.replace("/mcp-manager\"", "/no-such-program\""),
            )
            .expect("write");
            let (accepted, said) = systemd_verify(&user.user_home, &broken).expect("verify");
            assert!(!accepted, "a missing ExecStart was accepted:\n{said}");
            assert!(said.contains("is not executable"), "{said}");
        }
    }

    let (code, out, err) = user
        .manager(&exe, &["--port", &port, "service", "status"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("installed: {}", unit.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("manager: not running on port {port}")),
        "{out}"
    );
    let (code, out, err) = user.manager(&exe, &["service", "uninstall"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("removed {}", unit.display())),
        "{out}"
    );
    assert!(!unit.exists());
}

/// A manager started by a proxy that runs in a project directory, from a
/// Claude Code session's environment: the manager and the hosted server it
/// starts run in the tool's home (`/proc/PID/cwd`), with `PWD` saying so,
/// without the session's variables (what Claude Code 2.1.331 sets for its
/// MCP servers) but with the user's own; `/ping` says `launchedBy: proxy`,
/// and `doctor` warns, naming `mcp-manager service install`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_manager_started_by_a_proxy_runs_in_the_home_without_the_session() {
    use crate::util::{ManagerProcess, Proxy, hosted_everything_entry, manager_config};
    let home = TestHome::new();
    let project = tempfile::tempdir().expect("project dir");
    let manager_port = free_port();
    let daemon_port = free_port();
    let mut entry = hosted_everything_entry(daemon_port);
    entry["env"] = json!({"FROM_CONFIG": "${MCP_TEST_SURELY_UNSET_VARIABLE}"});
    home.write_config(&manager_config(manager_port, json!({"everything": entry})));
    let session: [(&str, &str); 7] = [
        ("CLAUDECODE", "1"),
        ("CLAUDE_CODE_ENTRYPOINT", "cli"),
        ("CLAUDE_CODE_SSE_PORT", "23456"),
        (
            "CLAUDE_CODE_SESSION_ID",
            "64d109dc-a798-40a6-9865-4f2ddd3610fc",
        ),
        ("AI_AGENT", "claude-code_2-1-331_harness"),
        ("OLDPWD", "/somewhere/else"),
        ("MCP_TEST_USER_VARIABLE", "kept"),
    ];
    let port_arg = manager_port.to_string();
    let mut proxy = Proxy::start_with(
        &home,
        &["--target", "everything", "--manager-port", &port_arg],
        |command| {
            command
                .current_dir(project.path())
                .env("PWD", project.path())
                .env("CLAUDE_PROJECT_DIR", project.path());
            for (name, value) in session {
                command.env(name, value);
            }
        },
    );
    proxy.initialize().await;
    let manager = ManagerProcess::attach(&home, manager_port).await;
    let status = manager.wait_running("everything").await;
    let ping = manager.api(reqwest::Method::GET, "/ping", None).await.1;
    assert_eq!(ping["launchedBy"], "proxy", "{ping}");

    let home_dir = home.path().canonicalize().expect("home");
    let host = status["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("the host's pid");
    // The hosted server: the host's child, a process of this home.
    let child = crate::util::wait_until(Duration::from_secs(10), "the hosted child", || {
        let found = crate::util::processes_of_home(home.path())
            .into_iter()
            .find(|&pid| pid != manager.pid && pid != host && parent_of(pid) == Some(host));
        async move { found }
    })
    .await;
    for (what, pid) in [("manager", manager.pid), ("host", host), ("server", child)] {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
        assert_eq!(cwd, home_dir, "the {what}'s working directory");
        let env = environ(pid);
        for (name, _) in &session[..6] {
            assert!(!env.contains_key(*name), "the {what} has {name}: {env:?}");
        }
        assert!(
            !env.contains_key("CLAUDE_PROJECT_DIR"),
            "the {what}: {env:?}"
        );
        assert_eq!(
            env.get("MCP_TEST_USER_VARIABLE").map(String::as_str),
            Some("kept"),
            "the {what} keeps the user's variables"
        );
    }
    let manager_env = environ(manager.pid);
    assert_eq!(
        manager_env.get("PWD").map(PathBuf::from),
        Some(home.path().to_owned())
    );
    assert_eq!(
        manager_env
            .get("MCP_MANAGER_LAUNCHED_BY")
            .map(String::as_str),
        Some("proxy")
    );

    // The doctor says so, over the manager's socket, in a HOME without a
    // service installed.
    let user_home = tempfile::tempdir().expect("user home");
    let (_, out, err) =
        crate::util::run_manager_cli(&home, &["doctor", "--json"], &[("HOME", user_home.path())])
            .await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let find = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no check {name:?}: {report:#}"))
    };
    let service = find("manager service");
    assert_eq!(service["status"], "warning", "{service}");
    assert!(
        service["fix"]
            .as_str()
            .is_some_and(|f| f.contains("mcp-manager service install")),
        "{service}"
    );
    assert!(
        service["detail"].as_str().is_some_and(
            |d| d.contains("started by a proxy") && d.contains(&manager.pid.to_string())
        ),
        "{service}"
    );
    // The manager reports the ${VAR} this config uses and it lacks.
    let variables = find("manager environment");
    assert_eq!(variables["status"], "warning", "{variables}");
    assert!(
        variables["detail"]
            .as_str()
            .is_some_and(|d| d.contains("${MCP_TEST_SURELY_UNSET_VARIABLE}")),
        "{variables}"
    );
    drop(proxy);
    drop(manager);
}

/// On macOS, `service install` in a throwaway HOME writes an agent plist
/// that `plutil -lint` accepts, running this binary; `uninstall` removes it.
#[cfg(target_os = "macos")]
#[tokio::test]
async fn service_install_writes_a_plist_plutil_accepts() {
    let user = Throwaway::new();
    let (code, out, err) = user.manager(&manager_bin(), &["service", "install"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let plist = user
        .user_home
        .join("Library/LaunchAgents/com.github.mcp-session-manager.mcp-manager.plist");
    assert!(out.contains("launchctl bootstrap gui/"), "{out}");
    let lint = std::process::Command::new("plutil")
        .arg("-lint")
        .arg(&plist)
        .output()
        .expect("run plutil");
    assert!(lint.status.success(), "plutil -lint: {lint:?}");
    let text = std::fs::read_to_string(&plist).expect("the plist");
    assert!(text.contains("<string>service</string>"), "{text}");
    let (code, out, err) = user
        .manager(&manager_bin(), &["service", "uninstall"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!plist.exists());
}

/// The parent pid of `pid` (`/proc/PID/stat`).
#[cfg(target_os = "linux")]
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The environment of `pid` (`/proc/PID/environ`).
#[cfg(target_os = "linux")]
fn environ(pid: u32) -> std::collections::BTreeMap<String, String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    bytes
        .split(|&b| b == 0)
        .filter_map(|var| {
            let text = String::from_utf8_lossy(var);
            let (name, value) = text.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A manager started as the service starts it (`MCP_MANAGER_LAUNCHED_BY=
/// service`) says so on `/ping` and logs to `manager.log` only: its stderr,
/// which the service appends to that same file, carries no log line (so
/// none is written twice).
#[cfg(unix)]
#[tokio::test]
async fn a_manager_started_by_the_service_logs_once_and_says_so() {
    use crate::util::ManagerProcess;
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&json!({"managerPort": port, "mcpServers": {}}));
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let child = Command::new(manager_bin())
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LAUNCHED_BY", "service")
        .env("MCP_MANAGER_LOG", "info")
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr.reopen().expect("reopen")))
        .kill_on_drop(true)
        .spawn()
        .expect("start mcp-manager");
    let mut manager = ManagerProcess::attach(&home, port).await;
    manager.child = Some(child);
    let ping = manager.api(reqwest::Method::GET, "/ping", None).await.1;
    assert_eq!(ping["launchedBy"], "service", "{ping}");
    let log = std::fs::read_to_string(home.path().join("manager.log")).expect("manager.log");
    assert!(!log.trim().is_empty(), "manager.log is empty");
    manager.stop().await;
    let printed = std::fs::read_to_string(stderr.path()).expect("stderr");
    assert!(
        printed.trim().is_empty(),
        "logged to stderr too:\n{printed}"
    );
}

/// At login the user service may find a manager a session's proxy started
/// first: it waits (no exit, so no restart loop of the service) and takes
/// over once that one is shut down.
#[cfg(unix)]
#[tokio::test]
async fn the_service_manager_waits_for_a_running_one_and_takes_over() {
    use crate::util::{ManagerProcess, run_manager_cli, wait_until};
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&json!({"managerPort": port, "mcpServers": {}}));
    let first = ManagerProcess::start(&home, port, &[]).await;
    let mut service = Command::new(manager_bin())
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LAUNCHED_BY", "service")
        .env("MCP_MANAGER_LOG", "info")
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the service's manager");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        service.try_wait().expect("try_wait").is_none(),
        "the service's manager exited while another one ran"
    );
    let (code, out, err) = run_manager_cli(&home, &["shutdown"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    drop(first);
    let service_pid = service.id().expect("running");
    wait_until(
        Duration::from_secs(20),
        "the service's manager answers",
        || async {
            let client = reqwest::Client::new();
            let body = client
                .get(format!("http://127.0.0.1:{port}/ping"))
                .send()
                .await
                .ok()?
                .bytes()
                .await
                .ok()?;
            let ping: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (ping["pid"] == json!(service_pid) && ping["launchedBy"] == "service").then_some(())
        },
    )
    .await;
    let mut manager = ManagerProcess::attach(&home, port).await;
    manager.child = Some(service);
    manager.stop().await;
}
