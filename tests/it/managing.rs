//! Managing servers in one command (issue 14, parts 4 and 5), with the
//! real binaries and the pinned Claude Code CLI in a throwaway `HOME`:
//!
//! - `mcp-manager add NAME -- COMMAND…` writes the entry into config.json
//!   (every other byte kept) and the proxy into Claude Code: `claude mcp
//!   get NAME` shows it connected, through mcp-proxy, in the user scope
//!   (or with `--project DIR` that project's local scope);
//! - a name config.json has, or a different Claude Code server under it,
//!   or an entry the config rejects is refused and nothing changes;
//! - `mcp-manager remove NAME` undoes both (another server under the name
//!   is left and named);
//! - `generate-config` without a config file leaves out a built-in whose
//!   runner is not on `PATH` and says what to install.
//!
//! Unix only: `HOME` decides where `~/.claude.json` is.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::util::{ManagerProcess, TestHome, claude_bin, everything_js, free_port, manager_bin};

/// Longest run of one command (`claude mcp get` starts the manager and
/// the daemon).
const TIMEOUT: Duration = Duration::from_secs(120);

/// A throwaway user: `HOME`, the tool's home with an empty config on a
/// free manager port, a working directory.
struct User {
    home: TestHome,
    user: tempfile::TempDir,
    cwd: tempfile::TempDir,
    manager_port: u16,
}

/// Exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl User {
    fn new() -> User {
        let home = TestHome::new();
        let manager_port = free_port();
        home.write_raw_config(&format!(
            "{{\n    \"managerPort\": {manager_port},\n    \"mcpServers\": {{\n        \"kept\": {{\"port\": {}}}\n    }}\n}}\n",
            free_port()
        ));
        User {
            home,
            user: tempfile::tempdir().expect("HOME"),
            cwd: tempfile::tempdir().expect("cwd"),
            manager_port,
        }
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(self.home.path().join("config.json")).expect("config.json")
    }

    fn claude_json(&self) -> PathBuf {
        self.user.path().join(".claude.json")
    }

    fn claude_text(&self) -> String {
        std::fs::read_to_string(self.claude_json()).unwrap_or_default()
    }

    async fn run(&self, program: &Path, args: &[&str], dir: &Path, path: Option<&str>) -> Run {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(dir)
            .env("HOME", self.user.path())
            .env("MCP_SESSION_MANAGER_HOME", self.home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .env("MCP_PROXY_LOG", "warn")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let output = tokio::time::timeout(TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not finish", program.display()))
            .expect("run");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn manager(&self, args: &[&str]) -> Run {
        self.run(&manager_bin(), args, self.cwd.path(), None).await
    }

    async fn claude_get(&self, name: &str, dir: &Path) -> Run {
        self.run(&claude_bin(), &["mcp", "get", name], dir, None)
            .await
    }
}

/// `add` → `claude mcp get` connected through mcp-proxy, config.json kept
/// byte for byte around the new entry; refusals change nothing; `remove`
/// → `claude mcp get` knows no such server, the other entry stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_registers_a_server_claude_code_connects_to_and_remove_undoes_it() {
    // `add` picks the first free port of 3110–3189, as import does: two
    // tests picking at once would pick the same one.
    let _ports = crate::util::IMPORT_PORTS_IN_USE.lock().await;
    let user = User::new();
    let before = user.config_text();
    let everything = everything_js().to_string_lossy().into_owned();
    let added = user
        .manager(&["add", "everything", "--", "node", &everything, "stdio"])
        .await;
    assert_eq!(added.code, 0, "add: {added}");
    assert!(
        added.stdout.contains("on port 31") && added.stdout.contains("first free one"),
        "add does not say which port it picked: {added}"
    );
    assert!(added.stdout.contains("no manager runs"), "{added}");
    let config = user.config_text();
    let head = &before[..before.rfind("\n    }").expect("the end of mcpServers")];
    assert!(
        config.starts_with(&format!("{head},\n        \"everything\": {{"))
            && config.ends_with("\n    }\n}\n"),
        "config.json around the entry changed:\n{before}\n---\n{config}"
    );
    let value: Value = serde_json::from_str(&config).expect("json");
    assert_eq!(value["mcpServers"]["everything"]["command"], "node");
    assert!(value["mcpServers"]["kept"].is_object());

    let got = user.claude_get("everything", user.cwd.path()).await;
    assert_eq!(got.code, 0, "claude mcp get: {got}");
    assert!(got.stdout.contains("✔ Connected"), "{got}");
    let manager = ManagerProcess::attach(&user.home, user.manager_port).await;
    assert!(got.stdout.contains("User config"), "{got}");
    assert!(got.stdout.contains("✔ Connected"), "{got}");
    assert!(got.stdout.contains("mcp-proxy"), "{got}");
    assert!(got.stdout.contains("--target everything"), "{got}");

    // Refused, nothing changed: the same name; a different Claude Code
    // server under a new name; an entry config.json's rules reject.
    let (config_before, claude_before) = (user.config_text(), user.claude_text());
    let again = user.manager(&["add", "everything", "--", "node"]).await;
    assert_eq!(again.code, 1, "{again}");
    assert!(
        again
            .stderr
            .contains("already has a server named \"everything\""),
        "{again}"
    );
    let mut claude: Value = serde_json::from_str(&claude_before).expect("json");
    claude["mcpServers"]["theirs"] = serde_json::json!({"command": "node", "args": ["x.js"]});
    std::fs::write(user.claude_json(), claude.to_string()).expect("write");
    let claude_before = user.claude_text();
    let clash = user.manager(&["add", "theirs", "--", "node"]).await;
    assert_eq!(clash.code, 1, "{clash}");
    assert!(clash.stderr.contains("different server"), "{clash}");
    let bad = user
        .manager(&["add", "remote", "--url", "http://example.com/mcp"])
        .await;
    assert_eq!(bad.code, 1, "{bad}");
    assert!(
        bad.stderr.contains("mcpServers.remote.url") && bad.stderr.contains("--allow-http"),
        "{bad}"
    );
    assert_eq!(user.config_text(), config_before);
    assert_eq!(user.claude_text(), claude_before);

    // With the manager running: it is asked to reload.
    let project = tempfile::tempdir().expect("project");
    let local = user
        .manager(&[
            "add",
            "local-one",
            "--project",
            &project.path().to_string_lossy(),
            "--",
            "node",
            &everything,
            "stdio",
        ])
        .await;
    assert_eq!(local.code, 0, "add --project: {local}");
    assert!(
        // The manager's own watch may have been first.
        local
            .stdout
            .contains("the manager reloaded config.json: added local-one")
            || local
                .stdout
                .contains("the manager reloaded config.json: nothing to change"),
        "add does not say what the manager did: {local}"
    );
    let known: Vec<String> = manager
        .daemons()
        .await
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect();
    assert!(known.contains(&"local-one".to_owned()), "{known:?}");
    let claude: Value = serde_json::from_str(&user.claude_text()).expect("json");
    let projects = claude["projects"].as_object().expect("projects");
    assert!(
        projects
            .values()
            .any(|p| p["mcpServers"]["local-one"]["args"][1] == "local-one"),
        "{claude:#}"
    );

    let removed = user.manager(&["remove", "everything"]).await;
    assert_eq!(removed.code, 0, "remove: {removed}");
    let gone = user.claude_get("everything", user.cwd.path()).await;
    assert_eq!(gone.code, 1, "claude mcp get after remove: {gone}");
    assert!(gone.stderr.contains("No MCP server named"), "{gone}");
    let value: Value = serde_json::from_str(&user.config_text()).expect("json");
    assert!(value["mcpServers"].get("everything").is_none());
    assert!(value["mcpServers"]["kept"].is_object());
    // Claude's own server under another name is untouched; one under the
    // removed name that is not our proxy is left and named.
    let mut claude: Value = serde_json::from_str(&user.claude_text()).expect("json");
    assert_eq!(claude["mcpServers"]["theirs"]["args"][0], "x.js");
    claude["mcpServers"]["kept"] = serde_json::json!({"command": "node"});
    std::fs::write(user.claude_json(), claude.to_string()).expect("write");
    let left = user.manager(&["remove", "kept"]).await;
    assert_eq!(left.code, 0, "{left}");
    assert!(left.stdout.contains("left as it is"), "{left}");
    let claude: Value = serde_json::from_str(&user.claude_text()).expect("json");
    assert_eq!(claude["mcpServers"]["kept"]["command"], "node");
}

/// Without a config file, `generate-config --scope user` on a `PATH`
/// with `npx` but no `uvx` registers memory and ast-grep, leaves out
/// code-index and says to install uv.
#[tokio::test]
async fn generate_config_registers_only_builtins_whose_runner_exists() {
    let user = User::new();
    std::fs::remove_file(user.home.path().join("config.json")).expect("no config");
    let bin = tempfile::tempdir().expect("bin");
    let npx = bin.path().join("npx");
    std::fs::write(&npx, "#!/bin/sh\nexit 1\n").expect("npx");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&npx, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = bin.path().to_string_lossy().into_owned();
    let run = user
        .run(
            &manager_bin(),
            &["generate-config", "--scope", "user"],
            user.cwd.path(),
            Some(&path),
        )
        .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("skipped code-index") && run.stdout.contains("install uv"),
        "{run}"
    );
    let claude: Value = serde_json::from_str(&user.claude_text()).expect("json");
    let servers = claude["mcpServers"].as_object().expect("servers");
    let mut names: Vec<&str> = servers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["ast-grep", "memory"], "{claude:#}");
}
