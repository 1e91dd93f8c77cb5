//! `mcp-manager service install|uninstall|status`: the manager as a user
//! service, started at login by the user's service manager.
//!
//! Linux gets a systemd user unit ([`systemd`]: `$XDG_CONFIG_HOME/systemd/
//! user/mcp-manager.service`), macOS a launchd agent ([`launchd`]:
//! `~/Library/LaunchAgents/com.github.mcp-session-manager.mcp-manager.plist`);
//! elsewhere (Windows) the command says it has no service to offer. Both
//! files say the same ([`ServiceSpec`]): the absolute path of this binary
//! (with `--port` only when one was given: otherwise the manager reads the
//! config's `managerPort` at each start); the tool's home as the working
//! directory (the one directory the tool owns, 0700, so whatever a server
//! writes relative to its directory stays private and beside the tool's
//! other data, and the same whoever starts the manager: a proxy starts it
//! there too); a stated environment: the installing shell's `PATH` (a
//! service gets a minimal one, without npx, uvx or node), the tool's home
//! variable when it is set, and [`LaunchedBy::ENV`]`=service`; restart on
//! failure (not after `mcp-manager shutdown`, which exits 0); the
//! manager's own log, `manager.log`, for what it prints.
//!
//! `install` writes the file atomically (0600: the service manager reads it
//! as the user), then enables and starts it when the user's service manager
//! is reachable (`systemctl --user`, `launchctl` in `gui/UID`), else prints
//! the one command that does. A manager already running that the service
//! did not start is left alone: the service is enabled for the next login,
//! and the report says how to switch now (`mcp-manager shutdown`, then
//! start the service). `uninstall` stops and disables it and removes the
//! file; `status` says whether it is installed, where, and what the
//! service manager and the running manager say.
//!
//! [`NO_SERVICE_MANAGER_ENV`] set to anything but empty or `0` keeps every
//! command away from the service manager (the files are still written and
//! removed): tests use it, and must never start a real service.

mod launchd;
mod systemd;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::control_api::{ApiClient, LaunchedBy, Ping};
use crate::paths;

/// Set (not empty, not `0`): never run `systemctl` or `launchctl`.
pub const NO_SERVICE_MANAGER_ENV: &str = "MCP_MANAGER_NO_SERVICE_MANAGER";

/// How long one `systemctl`/`launchctl` call may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the running manager may take to answer `/ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Which service manager this platform has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent (macOS).
    Launchd,
}

impl ServiceKind {
    /// This platform's, if it has one this command knows.
    pub fn of_this_platform() -> Option<ServiceKind> {
        if cfg!(target_os = "macos") {
            Some(ServiceKind::Launchd)
        } else if cfg!(target_os = "linux") {
            Some(ServiceKind::Systemd)
        } else {
            None
        }
    }

    /// Where its file goes for a user whose home is `user_home`.
    pub fn file(self, user_home: &Path, xdg_config_home: Option<&Path>) -> PathBuf {
        match self {
            ServiceKind::Systemd => systemd::unit_path(user_home, xdg_config_home),
            ServiceKind::Launchd => launchd::plist_path(user_home),
        }
    }
}

/// What the service runs, and with what: the same for both platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The manager binary, absolute.
    pub exe: PathBuf,
    /// `--port`, when one was given.
    pub port: Option<u16>,
    /// Its working directory: the tool's home.
    pub working_dir: PathBuf,
    /// Where its stderr goes: `manager.log`.
    pub log_file: PathBuf,
    /// The installing shell's `PATH`.
    pub path_var: Option<String>,
    /// [`paths::HOME_ENV`], when the installing shell set it.
    pub tool_home_var: Option<PathBuf>,
}

impl ServiceSpec {
    /// The command line: the binary, then `--port P` if given.
    fn arguments(&self) -> Result<Vec<String>, RenderError> {
        let exe = self
            .exe
            .to_str()
            .ok_or_else(|| RenderError::NotUtf8(self.exe.clone()))?;
        let mut words = vec![exe.to_owned()];
        if let Some(port) = self.port {
            words.extend(["--port".to_owned(), port.to_string()]);
        }
        Ok(words)
    }

    /// The stated environment, in order.
    fn environment(&self) -> Result<Vec<(&'static str, String)>, RenderError> {
        let mut vars = Vec::new();
        if let Some(path) = &self.path_var {
            vars.push(("PATH", path.clone()));
        }
        if let Some(home) = &self.tool_home_var {
            let text = home
                .to_str()
                .ok_or_else(|| RenderError::NotUtf8(home.clone()))?;
            vars.push((paths::HOME_ENV, text.to_owned()));
        }
        vars.push((LaunchedBy::ENV, LaunchedBy::Service.as_str().to_owned()));
        Ok(vars)
    }

    /// The file's text for `kind`.
    ///
    /// # Errors
    /// [`RenderError`]: a value the file cannot hold.
    pub fn render(&self, kind: ServiceKind) -> Result<String, RenderError> {
        match kind {
            ServiceKind::Systemd => systemd::render(self),
            ServiceKind::Launchd => launchd::render(self),
        }
    }
}

/// A value the service file cannot hold.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("{0:?} holds a control character, which a service file cannot hold; use another path")]
    Control(String),
    #[error(
        "{} begins or ends with whitespace, which systemd would cut off; use another path",
        .0.display()
    )]
    Whitespace(PathBuf),
    #[error("{} is not UTF-8, which a service file cannot hold; use another path", .0.display())]
    NotUtf8(PathBuf),
}

/// Why a service command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "this platform has no user service manager mcp-manager knows (systemd on Linux, launchd on macOS); run `mcp-manager` at login another way"
    )]
    Unsupported,
    #[error("cannot find your home directory")]
    NoUserHome,
    #[error(transparent)]
    NoHome(#[from] paths::NoHome),
    #[error("cannot find this program's path: {0}")]
    NoExe(std::io::Error),
    #[error("PATH is not UTF-8, which a service file cannot hold; fix PATH and install again")]
    PathNotUtf8,
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::claude::write::WriteError),
    #[error("cannot remove {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `systemctl` or `launchctl` failed: what it said, and what to run.
    #[error("`{command}` failed: {said}; {next}")]
    Manager {
        command: String,
        said: String,
        next: String,
    },
}

/// Everything a service command looks at; every location an input, so
/// tests point it at a throwaway home.
#[derive(Debug, Clone)]
pub struct ServiceInput {
    pub kind: ServiceKind,
    /// The user's home (`~/.config`, `~/Library`).
    pub user_home: PathBuf,
    /// `$XDG_CONFIG_HOME` (systemd).
    pub xdg_config_home: Option<PathBuf>,
    /// The tool's home ([`paths::home`]).
    pub home: PathBuf,
    /// The manager's control port (`--port`, else `managerPort`): where
    /// the running manager is asked how it was started.
    pub manager_port: u16,
    pub spec: ServiceSpec,
    /// `false`: never run `systemctl`/`launchctl` ([`NO_SERVICE_MANAGER_ENV`]).
    pub use_service_manager: bool,
    /// The user's id, for launchd's `gui/UID`.
    pub uid: Option<u32>,
}

impl ServiceInput {
    /// The input for the user running this: this binary, this shell's
    /// `PATH` and tool home variable, `--port` if given.
    ///
    /// # Errors
    /// [`ServiceError`]: no service manager on this platform, no home, no
    /// path of this program, a `PATH` that is not UTF-8.
    pub fn for_current_user(
        port: Option<u16>,
        manager_port: u16,
    ) -> Result<ServiceInput, ServiceError> {
        let kind = ServiceKind::of_this_platform().ok_or(ServiceError::Unsupported)?;
        let user_home = dirs::home_dir().ok_or(ServiceError::NoUserHome)?;
        let home = paths::home()?;
        let exe = std::env::current_exe().map_err(ServiceError::NoExe)?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let path_var = match std::env::var_os("PATH") {
            None => None,
            Some(path) => Some(path.into_string().map_err(|_| ServiceError::PathNotUtf8)?),
        };
        let tool_home_var = std::env::var_os(paths::HOME_ENV)
            .filter(|v| !v.is_empty())
            .map(|_| home.clone());
        let skip = std::env::var(NO_SERVICE_MANAGER_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        Ok(ServiceInput {
            kind,
            user_home,
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
            spec: ServiceSpec {
                exe,
                port,
                working_dir: home.clone(),
                log_file: paths::manager_log_file(&home),
                path_var,
                tool_home_var,
            },
            home,
            manager_port,
            use_service_manager: !skip,
            uid: crate::process::current_uid(),
        })
    }

    /// Where the service file goes.
    pub fn file(&self) -> PathBuf {
        self.kind
            .file(&self.user_home, self.xdg_config_home.as_deref())
    }

    /// The one command that enables and starts the service by hand.
    fn enable_command(&self) -> String {
        match self.kind {
            ServiceKind::Systemd => systemd::enable_command(),
            ServiceKind::Launchd => launchd::enable_command(self.uid.unwrap_or(0), &self.file()),
        }
    }

    /// The one command that stops and disables it by hand.
    fn disable_command(&self) -> String {
        match self.kind {
            ServiceKind::Systemd => format!("systemctl --user disable --now {}", systemd::UNIT),
            ServiceKind::Launchd => {
                format!(
                    "launchctl bootout {}",
                    launchd::target(self.uid.unwrap_or(0))
                )
            }
        }
    }

    /// The command that starts it now (after the file is in place).
    fn start_command(&self) -> String {
        match self.kind {
            ServiceKind::Systemd => format!("systemctl --user start {}", systemd::UNIT),
            ServiceKind::Launchd => self.enable_command(),
        }
    }
}

/// What a service command did or found: one line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceReport {
    pub lines: Vec<String>,
}

impl ServiceReport {
    fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}

impl fmt::Display for ServiceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// `service install`: writes the file, then enables and starts it (see the
/// module docs).
///
/// # Errors
/// [`ServiceError`]: the file cannot be rendered or written, or the
/// service manager refused (the file is written then).
pub async fn install(input: &ServiceInput) -> Result<ServiceReport, ServiceError> {
    let mut report = ServiceReport::default();
    let text = input.spec.render(input.kind)?;
    let file = input.file();
    // The working directory must exist before the service starts, and
    // manager.log must be 0600 before the service manager creates it.
    paths::create_private_dir(&input.home).map_err(|source| ServiceError::Create {
        path: input.home.clone(),
        source,
    })?;
    paths::private_file()
        .create(true)
        .append(true)
        .open(&input.spec.log_file)
        .map_err(|source| ServiceError::Create {
            path: input.spec.log_file.clone(),
            source,
        })?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServiceError::Create {
            path: dir.to_owned(),
            source,
        })?;
    }
    crate::claude::write::write_atomic(&file, text.as_bytes(), true)?;
    report.say(format!("wrote {}", file.display()));
    report.say(format!(
        "it runs {} in {}, with PATH as in this shell",
        shell_quoted(&input.spec.exe.to_string_lossy()),
        input.spec.working_dir.display()
    ));
    let Some(manager) = reachable(input).await else {
        report.say(unreachable_line(input, "enable and start it with"));
        return Ok(report);
    };
    let unserviced = match running_manager(input).await {
        Some((pid, launched_by)) if launched_by != Some(LaunchedBy::Service) => Some(pid),
        _ => None,
    };
    match (manager, unserviced) {
        (ServiceKind::Systemd, unserviced) => {
            manager_step(input, &["daemon-reload"]).await?;
            manager_step(input, &["enable", systemd::UNIT]).await?;
            if unserviced.is_none() {
                // A restart applies a changed unit to a running service.
                manager_step(input, &["restart", systemd::UNIT]).await?;
                report.say(format!("enabled and started {}", systemd::UNIT));
            } else {
                report.say(format!(
                    "enabled {}: it starts at your next login",
                    systemd::UNIT
                ));
            }
        }
        (ServiceKind::Launchd, None) => {
            let uid = input.uid.unwrap_or(0);
            // Not loaded is fine: a first install.
            let _ = run(input, "launchctl", &["bootout", &launchd::target(uid)]).await;
            let file_text = file.to_string_lossy().into_owned();
            manager_step(input, &["enable", &launchd::target(uid)]).await?;
            manager_step(input, &["bootstrap", &launchd::domain(uid), &file_text]).await?;
            report.say(format!("loaded and started {}", launchd::LABEL));
        }
        (ServiceKind::Launchd, Some(_)) => {
            report.say(format!("{} loads at your next login", launchd::LABEL));
        }
    }
    if let Some(pid) = unserviced {
        let pid = pid.map_or_else(String::new, |pid| format!(" (pid {pid})"));
        report.say(format!(
            "a manager the service did not start is running{pid}; it keeps running, and the service's manager could not take its place. Switch now: `mcp-manager shutdown && {}`",
            input.start_command()
        ));
    }
    Ok(report)
}

/// `service uninstall`: stops and disables the service, removes the file.
///
/// # Errors
/// [`ServiceError`]: the service manager refused, or the file cannot be
/// removed.
pub async fn uninstall(input: &ServiceInput) -> Result<ServiceReport, ServiceError> {
    let mut report = ServiceReport::default();
    let file = input.file();
    let installed = file.exists();
    match reachable(input).await {
        Some(ServiceKind::Systemd) if installed => {
            manager_step(input, &["disable", "--now", systemd::UNIT]).await?;
            report.say(format!("stopped and disabled {}", systemd::UNIT));
        }
        Some(ServiceKind::Launchd) => {
            let target = launchd::target(input.uid.unwrap_or(0));
            if run(input, "launchctl", &["bootout", &target])
                .await
                .is_ok_and(|out| out.success)
            {
                report.say(format!("stopped and unloaded {}", launchd::LABEL));
            }
        }
        Some(ServiceKind::Systemd) => {}
        None if installed => report.say(unreachable_line(
            input,
            "a running service is not stopped; stop it with",
        )),
        None => {}
    }
    if !installed {
        report.say(format!("not installed (no {})", file.display()));
        return Ok(report);
    }
    std::fs::remove_file(&file).map_err(|source| ServiceError::Remove {
        path: file.clone(),
        source,
    })?;
    report.say(format!("removed {}", file.display()));
    if input.kind == ServiceKind::Systemd && input.use_service_manager {
        // Forget the removed unit; failing here changes nothing.
        let _ = run(input, "systemctl", &["--user", "daemon-reload"]).await;
    }
    Ok(report)
}

/// `service status`: installed or not, where, and what the service
/// manager and the running manager say.
pub async fn status(input: &ServiceInput) -> ServiceReport {
    let mut report = ServiceReport::default();
    let file = input.file();
    if file.exists() {
        report.say(format!("installed: {}", file.display()));
    } else {
        report.say(format!(
            "not installed (`mcp-manager service install` writes {})",
            file.display()
        ));
    }
    match reachable(input).await {
        Some(ServiceKind::Systemd) => {
            let ask = |what: &'static str| async move {
                run(input, "systemctl", &["--user", what, systemd::UNIT])
                    .await
                    .map_or_else(|e| e, |out| out.stdout.trim().to_owned())
            };
            report.say(format!(
                "systemd: {} and {}",
                ask("is-enabled").await,
                ask("is-active").await
            ));
        }
        Some(ServiceKind::Launchd) => {
            let target = launchd::target(input.uid.unwrap_or(0));
            match run(input, "launchctl", &["print", &target]).await {
                Ok(out) if out.success => {
                    let field = |key: &str| {
                        out.stdout.lines().find_map(|line| {
                            line.trim()
                                .strip_prefix(key)
                                .and_then(|rest| rest.trim_start().strip_prefix('='))
                                .map(|v| v.trim().to_owned())
                        })
                    };
                    let state = field("state").unwrap_or_else(|| "loaded".into());
                    let pid = field("pid").map_or_else(String::new, |p| format!(", pid {p}"));
                    report.say(format!("launchd: {state}{pid}"));
                }
                _ => report.say(format!("launchd: {} is not loaded", launchd::LABEL)),
            }
        }
        None => report.say(unreachable_line(input, "enable it with")),
    }
    match running_manager(input).await {
        Some((pid, launched_by)) => {
            let pid = pid.map_or_else(String::new, |pid| format!(" (pid {pid})"));
            let how = match launched_by {
                Some(LaunchedBy::Service) => "started by the service",
                Some(LaunchedBy::Proxy) => "started by a proxy, not by the service",
                Some(LaunchedBy::Command) => "started by a command, not by the service",
                None => "an older manager, which does not say how it was started",
            };
            report.say(format!(
                "manager: running on port {}{pid}, {how}",
                input.manager_port
            ));
        }
        None => report.say(format!(
            "manager: not running on port {}",
            input.manager_port
        )),
    }
    report
}

/// What to say when the service manager is not asked: why, and `then`
/// the one command.
fn unreachable_line(input: &ServiceInput, then: &str) -> String {
    let why = if input.use_service_manager {
        match input.kind {
            ServiceKind::Systemd => "the systemd user manager is not reachable (no login session?)",
            ServiceKind::Launchd => {
                "launchd's gui domain is not reachable (not logged in at the console?)"
            }
        }
    } else {
        "the service manager was not asked (MCP_MANAGER_NO_SERVICE_MANAGER is set)"
    };
    let command = if then.contains("stop") {
        input.disable_command()
    } else {
        input.enable_command()
    };
    format!("{why}; {then} `{command}`")
}

/// The running manager of this port, if one answers: its pid and how it
/// was started.
async fn running_manager(input: &ServiceInput) -> Option<(Option<u32>, Option<LaunchedBy>)> {
    let client = ApiClient::for_home(input.manager_port, PING_TIMEOUT, &input.home).ok()?;
    match client.ping().await {
        Ping::Manager {
            pid, launched_by, ..
        } => Some((pid, launched_by)),
        Ping::Nothing | Ping::Stranger(_) => None,
    }
}

/// The service manager, if it may be asked and answers.
async fn reachable(input: &ServiceInput) -> Option<ServiceKind> {
    if !input.use_service_manager {
        return None;
    }
    let answered = match input.kind {
        ServiceKind::Systemd => run(input, "systemctl", &["--user", "show-environment"]).await,
        ServiceKind::Launchd => {
            let domain = launchd::domain(input.uid?);
            run(input, "launchctl", &["print", &domain]).await
        }
    };
    answered.is_ok_and(|out| out.success).then_some(input.kind)
}

/// One step that must work: `systemctl --user ARGS` or `launchctl ARGS`.
async fn manager_step(input: &ServiceInput, args: &[&str]) -> Result<(), ServiceError> {
    let (program, args) = match input.kind {
        ServiceKind::Systemd => systemd::systemctl(args),
        ServiceKind::Launchd => (
            "launchctl".to_owned(),
            args.iter().map(|a| (*a).to_owned()).collect(),
        ),
    };
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = format!("{program} {}", refs.join(" "));
    let failed = |said: String| ServiceError::Manager {
        command: command.clone(),
        said,
        next: format!(
            "the file is written; fix what it says, then run `{}`",
            input.enable_command()
        ),
    };
    match run(input, &program, &refs).await {
        Ok(out) if out.success => Ok(()),
        Ok(out) => Err(failed(first_line(&out.stderr))),
        Err(said) => Err(failed(said)),
    }
}

/// What a command said.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program ARGS` (never when the service manager may not be asked),
/// bounded by [`COMMAND_TIMEOUT`].
async fn run(input: &ServiceInput, program: &str, args: &[&str]) -> Result<Output, String> {
    if !input.use_service_manager {
        return Err("not asked".into());
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("{program} did not answer within {COMMAND_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    line.chars().take(300).collect()
}

/// `text` as one shell word: as is when it is plain, else single-quoted.
pub(crate) fn shell_quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@=+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(root: &Path, kind: ServiceKind) -> ServiceInput {
        let home = root.join("tool home");
        ServiceInput {
            kind,
            user_home: root.to_owned(),
            xdg_config_home: None,
            manager_port: free_port(),
            spec: ServiceSpec {
                exe: std::env::current_exe().expect("the test binary"),
                port: None,
                working_dir: home.clone(),
                log_file: paths::manager_log_file(&home),
                path_var: Some("/usr/bin:/bin".into()),
                tool_home_var: Some(home.clone()),
            },
            home,
            use_service_manager: false,
            uid: Some(501),
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// Without the service manager: the file is written (0600), the tool's
    /// home and its log made, the one command printed; uninstall removes
    /// it, and a second uninstall says there is nothing.
    #[tokio::test]
    async fn install_writes_the_file_and_says_the_one_command() {
        for kind in [ServiceKind::Systemd, ServiceKind::Launchd] {
            let root = tempfile::tempdir().expect("tempdir");
            let input = input(root.path(), kind);
            let report = install(&input).await.expect("installs").to_string();
            let file = input.file();
            assert!(file.is_file(), "{report}");
            assert!(report.contains(&input.enable_command()), "{report}");
            assert!(
                report.contains("MCP_MANAGER_NO_SERVICE_MANAGER"),
                "{report}"
            );
            assert!(input.spec.log_file.is_file());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode =
                    |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
                assert_eq!(mode(&file), 0o600);
                assert_eq!(mode(&input.spec.log_file), 0o600);
                assert_eq!(mode(&input.home), 0o700);
            }
            let text = std::fs::read_to_string(&file).expect("read");
            assert_eq!(text, input.spec.render(kind).expect("renders"));
            let status = status(&input).await.to_string();
            assert!(status.starts_with("installed: "), "{status}");
            assert!(status.contains("manager: not running"), "{status}");
            let removed = uninstall(&input).await.expect("uninstalls").to_string();
            assert!(removed.contains("removed"), "{removed}");
            assert!(!file.exists());
            let again = uninstall(&input).await.expect("nothing to do").to_string();
            assert!(again.contains("not installed"), "{again}");
        }
    }

    #[test]
    fn shell_words_are_quoted_when_they_need_it() {
        assert_eq!(shell_quoted("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(shell_quoted("/a b/x"), "'/a b/x'");
        assert_eq!(shell_quoted("it's"), "'it'\\''s'");
    }
}
