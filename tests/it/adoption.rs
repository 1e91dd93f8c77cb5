//! Adopting an existing Claude Code setup (issue 8), with the real parts: the
//! pinned Claude Code CLI (`claude mcp list` in a throwaway `HOME`), the real
//! `~/.claude.json`, server-memory and server-everything over stdio, and the
//! manager started on demand by the proxies Claude Code launches.
//!
//! - `mcp-manager import`: every server then shows `✔ Connected` in
//!   `claude mcp list`, through one daemon each; everything else in the file
//!   stays byte for byte; `--dry-run` writes nothing, a second run is a
//!   no-op, `--undo` gives the original back; bad input writes nothing.
//! - Two `claude mcp list` at once share one daemon per server.
//! - Idle hosted servers stop after `idleTimeout` (never while a session is
//!   open) and come back for the next `mcp-proxy --target`; `lazy` entries
//!   wait for their first session.
//! - `mcp-manager doctor` on a healthy setup and on each broken one.
//! - `mcp-manager generate-config --scope user|project DIR`.
//!
//! Unix only: `HOME` decides where `~/.claude.json` is on Unix (Windows asks
//! the shell for the profile folder, which a test cannot move), and the
//! manager helpers signal processes.

#![cfg(unix)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mcp_session_manager::process;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::util::{
    IMPORT_PORTS_IN_USE, ManagerProcess, Proxy, TestHome, claude_bin, everything_js, free_port,
    hosted_everything_entry, manager_bin, memory_js, port_answers, proxy_bin, tool_text,
};

/// Longest run of one `mcp-manager` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest run of one `claude mcp list` (it starts the manager and the daemons).
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(120);
/// The ports `import` hosts stdio servers on.
const IMPORT_PORTS: std::ops::RangeInclusive<u64> = 3110..=3189;

/// What a finished command printed.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    /// stdout and stderr together (where a message lands is not the point).
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to completion within `timeout`.
async fn finish(mut command: Command, timeout: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A throwaway user: `HOME` (with `~/.claude.json`), the tool's home
/// (`MCP_SESSION_MANAGER_HOME`, its `config.json` naming a free manager
/// port so nothing touches 3199), and an empty working directory (no
/// `.mcp.json` of the repository is seen).
struct User {
    home: TestHome,
    user: tempfile::TempDir,
    cwd: tempfile::TempDir,
    manager_port: u16,
}

impl User {
    fn new() -> User {
        let home = TestHome::new();
        let manager_port = free_port();
        home.write_raw_config(&format!(
            "{{\"managerPort\": {manager_port}, \"mcpServers\": {{}}}}\n"
        ));
        User {
            home,
            user: tempfile::tempdir().expect("HOME"),
            cwd: tempfile::tempdir().expect("working directory"),
            manager_port,
        }
    }

    fn claude_json(&self) -> PathBuf {
        self.user.path().join(".claude.json")
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join("config.json")
    }

    fn config_bytes(&self) -> Vec<u8> {
        std::fs::read(self.config_file()).expect("read config.json")
    }

    fn config(&self) -> Value {
        serde_json::from_slice(&self.config_bytes()).expect("config.json is JSON")
    }

    fn claude_bytes(&self) -> Vec<u8> {
        std::fs::read(self.claude_json()).expect("read ~/.claude.json")
    }

    /// The environment of a user whose `HOME` is ours.
    fn env(&self, command: &mut Command) {
        command
            .current_dir(self.cwd.path())
            .env("HOME", self.user.path())
            .env("MCP_SESSION_MANAGER_HOME", self.home.path())
            .env("MCP_MANAGER_LOG", "warn")
            .env("MCP_PROXY_LOG", "warn")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("XDG_CONFIG_HOME");
    }

    /// `mcp-manager ARGS`.
    async fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(manager_bin());
        command.args(args);
        self.env(&mut command);
        finish(command, CLI_TIMEOUT, &format!("mcp-manager {args:?}")).await
    }

    /// `mcp-manager ARGS`, which must exit 0.
    async fn cli_ok(&self, args: &[&str]) -> Output {
        let output = self.cli(args).await;
        assert_eq!(output.code, 0, "mcp-manager {args:?}: {output}");
        output
    }

    /// The real `claude mcp list`, offline, in our `HOME` (from `dir`).
    async fn claude_mcp_list_in(&self, dir: &Path) -> Output {
        let mut command = Command::new(claude_bin());
        command.args(["mcp", "list"]);
        self.env(&mut command);
        command
            .current_dir(dir)
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        finish(command, CLAUDE_TIMEOUT, "claude mcp list").await
    }

    async fn claude_mcp_list(&self) -> Output {
        self.claude_mcp_list_in(self.cwd.path()).await
    }

    /// `FILE.backup.<digits>` files next to `file`.
    fn backups_of(file: &Path) -> Vec<String> {
        let name = file
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let prefix = format!("{name}.backup.");
        let mut found: Vec<String> = std::fs::read_dir(file.parent().expect("dir"))
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        found.sort();
        found
    }

    /// Every file in the tool's home and in `HOME` (names and contents), to
    /// show that a command wrote nothing.
    fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        for root in [self.home.path(), self.user.path()] {
            let mut stack = vec![root.to_owned()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let bytes = std::fs::read(&path).unwrap_or_default();
                        files.push((path, bytes));
                    }
                }
            }
        }
        files.sort();
        files
    }

    /// The manager the proxies started (cleaned up when dropped).
    async fn attach_manager(&self) -> ManagerProcess {
        ManagerProcess::attach(&self.home, self.manager_port).await
    }
}

/// Asserts that nothing was written: same files, same bytes.
fn assert_unchanged(before: &[(PathBuf, Vec<u8>)], after: &[(PathBuf, Vec<u8>)], what: &str) {
    let names = |files: &[(PathBuf, Vec<u8>)]| -> Vec<PathBuf> {
        files.iter().map(|(p, _)| p.clone()).collect()
    };
    assert_eq!(
        names(before),
        names(after),
        "{what} created or removed files"
    );
    for ((path, old), (_, new)) in before.iter().zip(after) {
        assert!(
            old == new,
            "{what} changed {}:\n--- before ---\n{}\n--- after ---\n{}",
            path.display(),
            String::from_utf8_lossy(old),
            String::from_utf8_lossy(new)
        );
    }
}

/// A JSON string literal.
fn quoted(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("json string")
}

/// A `~/.claude.json` as Claude Code keeps it (two-space indent, its own key
/// order), in three parts: what comes before the `mcpServers` object, the
/// object, what comes after. Unrelated keys on both sides, nested objects,
/// non-ASCII text, and a number written as no serialiser would (`0.50`), so
/// a rewrite that re-serialises the file shows.
struct ClaudeJson {
    prefix: String,
    servers: String,
    suffix: String,
}

impl ClaudeJson {
    /// server-memory (`MEMORY_FILE_PATH` = `memory_file`) and
    /// server-everything, both stdio, both local installs (offline).
    fn two_servers(memory_file: &Path) -> ClaudeJson {
        let servers = format!(
            r#"{{
    "memory": {{
      "type": "stdio",
      "command": "node",
      "args": [
        {memory}
      ],
      "env": {{
        "MEMORY_FILE_PATH": {file}
      }}
    }},
    "everything": {{
      "command": "node",
      "args": [
        {everything},
        "stdio"
      ]
    }}
  }}"#,
            memory = quoted(&memory_js()),
            file = quoted(memory_file),
            everything = quoted(&everything_js()),
        );
        ClaudeJson::around(servers)
    }

    /// The unrelated keys around `servers` (the text of an `mcpServers` object).
    fn around(servers: String) -> ClaudeJson {
        let prefix = r#"{
  "numStartups": 17,
  "installMethod": "npm-global",
  "autoUpdates": false,
  "theme": "dark",
  "tipsHistory": {
    "new-user-warmup": 1,
    "memory-command": 4,
    "ide-hotkey": 2
  },
  "mcpServers": "#
            .to_owned();
        let suffix = r#",
  "projects": {
    "/home/someone/elsewhere": {
      "allowedTools": [],
      "history": [
        {
          "display": "fix the flaky test — ünïcode ✓",
          "pastedContents": {}
        }
      ],
      "mcpServers": {},
      "enabledMcpjsonServers": [],
      "hasTrustDialogAccepted": true
    }
  },
  "userID": "0c4e7f1bb1c2a1f5d7e0c4e7f1bb1c2a1f5d7e0c4e7f1bb1c2a1f5d7e0c4e7f",
  "lastCost": 0.50,
  "oauthAccount": null
}
"#
        .to_owned();
        ClaudeJson {
            prefix,
            servers,
            suffix,
        }
    }

    fn text(&self) -> String {
        format!("{}{}{}", self.prefix, self.servers, self.suffix)
    }

    fn parsed(&self) -> Value {
        serde_json::from_str(&self.text()).expect("the test's .claude.json is JSON")
    }
}

/// Everything but `mcpServers`.
fn without_servers(mut value: Value) -> Value {
    value
        .as_object_mut()
        .expect("an object")
        .remove("mcpServers");
    value
}

/// Is `command` the `mcp-proxy` under test, by an absolute path?
fn is_our_proxy(command: &str) -> bool {
    Path::new(command).is_absolute()
        && std::fs::canonicalize(command).ok()
            == Some(std::fs::canonicalize(proxy_bin()).expect("proxy path"))
}

/// The entry must now run `mcp-proxy --target NAME` (an absolute path), and
/// nothing of the server itself.
fn assert_through_proxy(entry: &Value, name: &str) {
    let command = entry["command"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no command in {entry}"));
    assert!(
        is_our_proxy(command),
        "{name}: {command} is not the absolute path of mcp-proxy ({})",
        proxy_bin().display()
    );
    assert_eq!(entry["args"], json!(["--target", name]), "{name}: {entry}");
    let keys: BTreeSet<&str> = entry
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.iter().all(|k| ["command", "args", "type"].contains(k)),
        "{name}: the rewritten entry keeps keys of the server: {entry}"
    );
    if let Some(kind) = entry.get("type") {
        assert_eq!(kind, "stdio", "{name}: {entry}");
    }
}

/// An entry `generate-config` wrote: the absolute `mcp-proxy` with
/// `--target NAME` (and, if it says so, the configured manager port).
fn assert_generated(entry: &Value, name: &str, manager_port: u16) {
    let command = entry["command"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no command in {entry}"));
    assert!(
        is_our_proxy(command),
        "{name}: {command} is not the absolute path of mcp-proxy"
    );
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no args in {entry}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--target", name]),
        "{name}: {args:?}"
    );
    if let Some(i) = args.iter().position(|a| *a == "--manager-port") {
        assert_eq!(
            args.get(i + 1).copied(),
            Some(manager_port.to_string().as_str()),
            "{name}: {args:?}"
        );
    }
}

/// After an import: the bytes before and after the `mcpServers` object are
/// the original ones, the rest of the JSON is equal, and each of `names`
/// runs through the proxy.
fn assert_imported(text: &str, original: &ClaudeJson, names: &[&str]) {
    assert!(
        text.starts_with(&original.prefix),
        "the bytes before mcpServers changed:\n{text}"
    );
    assert!(
        text.ends_with(&original.suffix),
        "the bytes after mcpServers changed:\n{text}"
    );
    let parsed: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("~/.claude.json is no longer JSON ({e}):\n{text}"));
    assert_eq!(
        without_servers(parsed.clone()),
        without_servers(original.parsed()),
        "keys other than mcpServers changed"
    );
    let middle = &text[original.prefix.len()..text.len() - original.suffix.len()];
    let servers: Value = serde_json::from_str(middle)
        .unwrap_or_else(|e| panic!("the mcpServers object is not where it was ({e}):\n{text}"));
    assert_eq!(servers, parsed["mcpServers"]);
    let found: BTreeSet<&str> = servers
        .as_object()
        .expect("mcpServers is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        found,
        names.iter().copied().collect(),
        "servers after the import"
    );
    for name in names {
        assert_through_proxy(&servers[*name], name);
    }
}

/// The config.json entry `import` made for a stdio server: the same
/// command, args and env, hosted on a port in 3110–3189.
fn assert_hosted(config: &Value, name: &str, args: &[String], env: &Value) -> u16 {
    let entry = &config["mcpServers"][name];
    assert_eq!(entry["command"], "node", "{name}: {config}");
    assert_eq!(entry["args"], json!(args), "{name}: {config}");
    if env.as_object().is_some_and(|e| !e.is_empty()) {
        assert_eq!(&entry["env"], env, "{name}: {config}");
    }
    assert!(entry.get("url").is_none(), "{name}: {config}");
    if let Some(transport) = entry.get("transport") {
        assert_eq!(transport, "stdio", "{name}: {config}");
    }
    let port = entry["port"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has no port: {config}"));
    assert!(
        IMPORT_PORTS.contains(&port),
        "{name}: port {port} not in 3110–3189"
    );
    u16::try_from(port).expect("port")
}

/// Every line `claude mcp list` prints for `names` says `✔ Connected`.
fn assert_connected(output: &Output, names: &[&str]) {
    assert_eq!(output.code, 0, "claude mcp list: {output}");
    for name in names {
        let prefix = format!("{name}: ");
        let line = output
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("claude mcp list shows no {name}: {output}"));
        assert!(
            line.ends_with("- ✔ Connected"),
            "{name} is not connected: {line}\n{output}"
        );
        assert!(
            line.contains("--target"),
            "{name} does not run through mcp-proxy: {line}"
        );
    }
}

/// The daemons' pids from `/status`: each of `names` running, one pid each.
async fn running_daemons(manager: &ManagerProcess, home: &Path, names: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    for name in names {
        let status = manager.wait_running(name).await;
        let pid = status["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no pid: {status}"));
        let lock: Value = serde_json::from_slice(
            &std::fs::read(home.join(format!("{name}.lock")))
                .unwrap_or_else(|e| panic!("{name}.lock: {e}")),
        )
        .expect("the lock is JSON");
        assert_eq!(lock["pid"], json!(pid), "{name}.lock names another pid");
        pids.push(pid);
    }
    let unique: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "daemons share a pid: {pids:?}");
    pids
}

/// The processes started for this home, Linux only: (managers, hosts by
/// name). Proxies and the servers' own processes are not counted.
#[cfg(target_os = "linux")]
fn home_processes(home: &Path) -> (Vec<u32>, std::collections::BTreeMap<String, Vec<u32>>) {
    use crate::util::{process_cmdline, processes_of_home};
    let manager_name = manager_bin()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut managers = Vec::new();
    let mut hosts: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for pid in processes_of_home(home) {
        let cmdline = process_cmdline(pid);
        if !cmdline
            .first()
            .is_some_and(|exe| exe.ends_with(&manager_name))
        {
            continue;
        }
        if cmdline.get(1).map(String::as_str) == Some("host") {
            let name = cmdline.get(2).cloned().unwrap_or_default();
            hosts.entry(name).or_default().push(pid);
        } else {
            managers.push(pid);
        }
    }
    (managers, hosts)
}

/// Exactly one manager and one host per daemon (by /proc), Linux only.
#[cfg(target_os = "linux")]
async fn assert_one_process_each(home: &Path, manager_pid: u32, daemons: &[(&str, u32)]) {
    let home = home.to_owned();
    // Losing managers and hosts exit on their own: give them a moment.
    let (managers, hosts) = crate::util::wait_until(
        Duration::from_secs(10),
        "one manager and one host per daemon",
        || {
            let found = home_processes(&home);
            let settled = found.0.len() == 1 && found.1.values().all(|pids| pids.len() == 1);
            async move { settled.then_some(found) }
        },
    )
    .await;
    assert_eq!(managers, [manager_pid], "manager processes");
    let expected: std::collections::BTreeMap<String, Vec<u32>> = daemons
        .iter()
        .map(|(name, pid)| ((*name).to_owned(), vec![*pid]))
        .collect();
    assert_eq!(hosts, expected, "host processes by daemon");
}

/// A `tools/call` through `mcp-proxy --target NAME`.
async fn call_through_proxy(home: &TestHome, name: &str, tool: &str, arguments: Value) -> Value {
    let mut proxy = Proxy::start(home, &["--target", name]);
    proxy.initialize().await;
    let answer = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await;
    proxy.close_stdin();
    proxy.wait(Duration::from_secs(10)).await;
    answer
}

// ---------------------------------------------------------------------------
// import
// ---------------------------------------------------------------------------

/// The whole adoption with the real Claude Code: `--dry-run` writes
/// nothing; `import` rewrites only the two entries (every other byte kept,
/// a backup of the original next to it) and hosts both servers; a second
/// run is a no-op; `claude mcp list` then shows both `✔ Connected`, through
/// one daemon each (the manager started on demand), server-memory with its
/// env; `--undo` gives the original file back, byte for byte.
#[tokio::test]
async fn import_then_claude_connects_through_one_daemon_each() {
    let _ports = IMPORT_PORTS_IN_USE.lock().await;
    let user = User::new();
    let memory_file = user.user.path().join("memory.jsonl");
    let original = ClaudeJson::two_servers(&memory_file);
    std::fs::write(user.claude_json(), original.text()).expect("write ~/.claude.json");
    let names = ["everything", "memory"];

    // --dry-run: says what it would do, writes nothing.
    let before = user.snapshot();
    let dry = user.cli_ok(&["import", "--dry-run"]).await;
    for name in names {
        assert!(
            dry.text().contains(name),
            "--dry-run does not name {name}: {dry}"
        );
    }
    assert_unchanged(&before, &user.snapshot(), "import --dry-run");

    // import
    let config_before = user.config_bytes();
    let imported = user.cli_ok(&["import"]).await;
    let text = String::from_utf8(user.claude_bytes()).expect("UTF-8");
    assert_imported(&text, &original, &names);
    // Inside mcpServers too, only the two entries' values changed.
    let middle = &text[original.prefix.len()..text.len() - original.suffix.len()];
    let skeleton = middle
        .strip_prefix("{\n    \"memory\": ")
        .and_then(|rest| rest.split_once("},\n    \"everything\": "))
        .is_some_and(|(_, rest)| rest.ends_with("}\n  }"));
    assert!(skeleton, "the bytes between the entries changed:\n{middle}");
    // Nothing beside the file: the copy of the original is in the journal.
    let backups = User::backups_of(&user.claude_json());
    assert!(backups.is_empty(), "backups: {backups:?}\n{imported}");
    let copy = imported
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wrote {} (backup: ", user.claude_json().display())))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no backup named:\n{imported}"));
    assert!(
        copy.starts_with(&user.home.path().display().to_string()),
        "{copy}"
    );
    assert_eq!(
        std::fs::read(copy).expect("copy"),
        original.text().as_bytes(),
        "the copy is not the original"
    );
    let config = user.config();
    assert_ne!(
        user.config_bytes(),
        config_before,
        "config.json not written"
    );
    assert_eq!(config["managerPort"], json!(user.manager_port), "{config}");
    let memory_port = assert_hosted(
        &config,
        "memory",
        &[memory_js().to_string_lossy().into_owned()],
        &json!({"MEMORY_FILE_PATH": memory_file.to_string_lossy()}),
    );
    let everything_port = assert_hosted(
        &config,
        "everything",
        &[
            everything_js().to_string_lossy().into_owned(),
            "stdio".to_owned(),
        ],
        &json!({}),
    );
    assert_ne!(memory_port, everything_port, "{config}");

    // A second run changes nothing.
    let before = user.snapshot();
    user.cli_ok(&["import"]).await;
    assert_unchanged(&before, &user.snapshot(), "a second import");

    // The real Claude Code connects to both, through mcp-proxy.
    let listed = user.claude_mcp_list().await;
    let manager = user.attach_manager().await;
    assert_connected(&listed, &names);
    let pids = running_daemons(&manager, user.home.path(), &names).await;
    #[cfg(target_os = "linux")]
    assert_one_process_each(
        user.home.path(),
        manager.pid,
        &[(names[0], pids[0]), (names[1], pids[1])],
    )
    .await;
    for (name, port) in [("memory", memory_port), ("everything", everything_port)] {
        let status = manager.status_of(name).await;
        assert_eq!(status["port"], json!(port), "{status}");
    }

    // server-memory got its env: it writes the file the entry named.
    let created = call_through_proxy(
        &user.home,
        "memory",
        "create_entities",
        json!({"entities": [{"name": "adoption-test", "entityType": "test", "observations": ["imported"]}]}),
    )
    .await;
    assert!(created.get("result").is_some(), "{created}");
    let stored = std::fs::read_to_string(&memory_file).unwrap_or_default();
    assert!(
        stored.contains("adoption-test"),
        "server-memory did not write {}: {stored:?}",
        memory_file.display()
    );
    // Still the same daemons (the proxy found the running ones).
    assert_eq!(
        running_daemons(&manager, user.home.path(), &names).await,
        pids
    );

    // --undo: the original entries (Claude Code has rewritten the file
    // meanwhile: it adds keys of its own on its first run, which stay).
    let written_by_claude: Value =
        serde_json::from_slice(&user.claude_bytes()).expect("claude.json");
    let undone = user.cli_ok(&["import", "--undo"]).await;
    let now: Value = serde_json::from_slice(&user.claude_bytes()).expect("claude.json");
    let was: Value = serde_json::from_str(&original.text()).expect("original");
    assert_eq!(
        now["mcpServers"], was["mcpServers"],
        "--undo did not put the entries back:\n{undone}"
    );
    for (key, value) in written_by_claude.as_object().expect("object") {
        if key != "mcpServers" {
            assert_eq!(&now[key], value, "--undo changed Claude's {key}");
        }
    }
    assert!(
        user.config_bytes() == config_before,
        "--undo did not restore config.json:\n{}\n{undone}",
        String::from_utf8_lossy(&user.config_bytes())
    );

    let mut manager = manager;
    manager.stop().await;
    for pid in pids {
        assert!(!process::is_alive(pid), "daemon {pid} outlived the manager");
    }
}

/// Two `claude mcp list` at once, right after the import: both connect,
/// and they share one daemon per server (one lock, one pid, no restart).
#[tokio::test]
async fn two_claude_sessions_at_once_share_one_daemon_per_server() {
    let _ports = IMPORT_PORTS_IN_USE.lock().await;
    let user = User::new();
    let memory_file = user.user.path().join("memory.jsonl");
    let original = ClaudeJson::two_servers(&memory_file);
    std::fs::write(user.claude_json(), original.text()).expect("write ~/.claude.json");
    user.cli_ok(&["import"]).await;
    let names = ["everything", "memory"];

    let (first, second) = tokio::join!(user.claude_mcp_list(), user.claude_mcp_list());
    let manager = user.attach_manager().await;
    assert_connected(&first, &names);
    assert_connected(&second, &names);

    let pids = running_daemons(&manager, user.home.path(), &names).await;
    for name in names {
        let status = manager.status_of(name).await;
        assert_eq!(status["restarts"], 0, "{status}");
    }
    let mut locks: Vec<String> = std::fs::read_dir(user.home.path())
        .expect("read home")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".lock") && !n.starts_with("manager"))
        .collect();
    locks.sort();
    assert_eq!(locks, ["everything.lock", "memory.lock"]);
    #[cfg(target_os = "linux")]
    assert_one_process_each(
        user.home.path(),
        manager.pid,
        &[(names[0], pids[0]), (names[1], pids[1])],
    )
    .await;
    for name in names {
        let log = std::fs::read_to_string(user.home.path().join(format!("{name}.log")))
            .unwrap_or_default();
        assert!(
            !log.contains("cannot listen"),
            "a second {name} host was started:\n{log}"
        );
    }
    let mut manager = manager;
    manager.stop().await;
    for pid in pids {
        assert!(!process::is_alive(pid), "daemon {pid} outlived the manager");
    }
}

/// Bad input writes nothing: a `~/.claude.json` that is not JSON, an entry
/// with neither `command` nor `url`, and a name that is already in
/// config.json for another server each exit 1 with a message naming the
/// problem; no file changes and no backup appears.
#[tokio::test]
async fn import_refuses_bad_input_and_writes_nothing() {
    let memory_entry = |args: &[&Path]| json!({"command": "node", "args": args.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>()});

    // Not JSON.
    let user = User::new();
    std::fs::write(
        user.claude_json(),
        "{\n  \"numStartups\": 3,\n  \"mcpServers\": {\n    \"memory\": {\"command\": \"node\",}\n  }\n}\n",
    )
    .expect("write");
    let before = user.snapshot();
    let output = user.cli(&["import"]).await;
    assert_eq!(output.code, 1, "not JSON: {output}");
    assert!(
        output.text().contains(".claude.json"),
        "the message does not name the file: {output}"
    );
    assert!(
        output.text().to_lowercase().contains("json") && output.text().contains("line 4"),
        "the message does not say where the file is not JSON: {output}"
    );
    assert_unchanged(
        &before,
        &user.snapshot(),
        "import of a file that is not JSON",
    );

    // An entry with neither command nor url (next to a good one, which is
    // not imported either).
    let user = User::new();
    let servers = json!({
        "memory": memory_entry(&[&memory_js()]),
        "broken": {"args": ["--flag"], "env": {"A": "1"}},
    });
    let original = ClaudeJson::around(serde_json::to_string_pretty(&servers).expect("json"));
    std::fs::write(user.claude_json(), original.text()).expect("write");
    let before = user.snapshot();
    let output = user.cli(&["import"]).await;
    assert_eq!(output.code, 1, "an entry without command or url: {output}");
    assert!(
        output.text().contains("broken"),
        "the entry is not named: {output}"
    );
    assert!(
        output.text().contains("command") || output.text().contains("url"),
        "the message does not say what is missing: {output}"
    );
    assert_unchanged(
        &before,
        &user.snapshot(),
        "import of an entry without command",
    );

    // A name clash with a different config.json entry.
    let user = User::new();
    let other = json!({
        "managerPort": user.manager_port,
        "mcpServers": {"memory": {"command": "node", "args": ["/somewhere/else/server.js"], "port": 3150}},
    });
    user.home.write_config(&other);
    let servers = json!({"memory": memory_entry(&[&memory_js()])});
    let original = ClaudeJson::around(serde_json::to_string_pretty(&servers).expect("json"));
    std::fs::write(user.claude_json(), original.text()).expect("write");
    let before = user.snapshot();
    let output = user.cli(&["import"]).await;
    assert_eq!(output.code, 1, "a clashing name: {output}");
    assert!(
        output.text().contains("memory") && output.text().contains("config.json"),
        "the clashing name (or config.json) is not named: {output}"
    );
    assert_unchanged(&before, &user.snapshot(), "import of a clashing name");
}

/// Two remote servers on loopback, answered by a python3 `http.server`:
/// `/oauth` as an OAuth-protected one (401, `WWW-Authenticate` naming its
/// protected-resource metadata, which it serves), `/static` as one that
/// takes a static header (200 with it, 403 without).
const REMOTE_SERVERS_PY: &str = r#"
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, code, body, extra=()):
        self.send_response(code)
        for k, v in extra: self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/.well-known/oauth-protected-resource"):
            port = self.server.server_address[1]
            self.answer(200, json.dumps({"resource": f"http://127.0.0.1:{port}/oauth", "authorization_servers": [f"http://127.0.0.1:{port}"]}).encode())
        else:
            self.answer(405, b"{}")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        port = self.server.server_address[1]
        if self.path == "/oauth":
            self.answer(401, b'{"error":"invalid_token"}', [("WWW-Authenticate", f'Bearer resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource"')])
        elif self.headers.get("X-Api-Key") == "st4tic-key":
            self.answer(200, json.dumps({"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "static", "version": "1"}}}).encode())
        else:
            self.answer(403, b"{}")
server = http.server.HTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// `import` leaves remote servers with Claude Code: an OAuth one (401 +
/// `WWW-Authenticate`) and a static-header one keep their entries byte for
/// byte, and the report says why. With `--remote` the static-header one
/// is moved (config.json gets it, Claude's entry runs mcp-proxy) and the
/// OAuth one is refused with its reason, its entry still unchanged.
#[tokio::test]
async fn import_leaves_remote_servers_with_claude_code() {
    use tokio::io::AsyncBufReadExt;
    let mut python = Command::new("python3");
    python
        .args(["-c", REMOTE_SERVERS_PY])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let Ok(mut python) = python.spawn() else {
        eprintln!("skipped: no python3 to serve the remote servers");
        return;
    };
    let stdout = python.stdout.take().expect("python's stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("python3 printed its port in time")
    .expect("read python's port");
    let port: u16 = line.trim().parse().expect("a port");

    let user = User::new();
    let oauth = format!(
        "{{\n      \"type\": \"http\",\n      \"url\": \"http://127.0.0.1:{port}/oauth\"\n    }}"
    );
    let oauth_keyed = format!(
        "{{\n      \"type\": \"http\",\n      \"url\": \"http://127.0.0.1:{port}/oauth\",\n      \"headers\": {{\n        \"X-Api-Key\": \"wrong\"\n      }}\n    }}"
    );
    let fixed = format!(
        "{{\n      \"type\": \"http\",\n      \"url\": \"http://127.0.0.1:{port}/static\",\n      \"headers\": {{\n        \"X-Api-Key\": \"st4tic-key\"\n      }}\n    }}"
    );
    let original = ClaudeJson::around(format!(
        "{{\n    \"oauth\": {oauth},\n    \"oauth-keyed\": {oauth_keyed},\n    \"fixed\": {fixed}\n  }}"
    ));
    std::fs::write(user.claude_json(), original.text()).expect("write");

    // By default: nothing changes for either, and the report says why.
    let before = user.snapshot();
    let output = user.cli_ok(&["import"]).await;
    assert_unchanged(&before, &user.snapshot(), "import of remote servers only");
    for name in ["oauth", "oauth-keyed", "fixed"] {
        assert!(
            output.stdout.lines().any(|l| l.contains(name)
                && l.contains("left as it is")
                && l.contains("OAuth")
                && l.contains("--remote")),
            "{name} is not reported as left with Claude Code: {output}"
        );
    }
    assert!(
        !output.text().contains("st4tic-key"),
        "a header shown: {output}"
    );

    // --remote --dry-run: says what --remote would do, writes nothing.
    let output = user.cli_ok(&["import", "--remote", "--dry-run"]).await;
    assert_unchanged(&before, &user.snapshot(), "import --remote --dry-run");
    let refused = |output: &Output| {
        assert!(
            output.stdout.lines().any(|l| l.contains("oauth-keyed")
                && l.contains("401")
                && l.contains("WWW-Authenticate")
                && l.contains("only Claude Code")),
            "the OAuth server is not refused with its reason: {output}"
        );
        assert!(
            output
                .stdout
                .lines()
                .any(|l| l.contains("fixed") && l.contains("/static") && !l.contains("left")),
            "the static-header server is not moved: {output}"
        );
    };
    refused(&output);

    // --remote: the static-header one moves, the OAuth ones stay.
    let output = user.cli_ok(&["import", "--remote"]).await;
    refused(&output);
    let text = String::from_utf8(user.claude_bytes()).expect("utf-8");
    assert!(
        text.contains(&format!("\"oauth\": {oauth}"))
            && text.contains(&format!("\"oauth-keyed\": {oauth_keyed}")),
        "an OAuth entry changed: {text}"
    );
    let claude: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        without_servers(claude.clone()),
        without_servers(original.parsed())
    );
    assert_through_proxy(&claude["mcpServers"]["fixed"], "fixed");
    let config = user.config();
    assert_eq!(
        config["mcpServers"]["fixed"],
        json!({"type": "http", "url": format!("http://127.0.0.1:{port}/static"), "headers": {"X-Api-Key": "st4tic-key"}})
    );
    assert!(config["mcpServers"].get("oauth").is_none(), "{config}");
    assert!(
        config["mcpServers"].get("oauth-keyed").is_none(),
        "{config}"
    );
    drop(python);
}

// ---------------------------------------------------------------------------
// idleTimeout and lazy
// ---------------------------------------------------------------------------

/// A hosted server with `idleTimeout: 2` stays up while a proxy session is
/// open (twice the timeout), stops within seconds of the last session's end
/// (state `idle` in /status and `mcp-manager status`), and the next
/// `mcp-proxy --target` brings it back and is answered. A `lazy` entry is
/// not started by `--start-all`.
#[tokio::test]
async fn idle_daemons_stop_and_come_back_on_demand() {
    let home = TestHome::new();
    let manager_port = free_port();
    let (port, lazy_port) = (free_port(), free_port());
    let mut hosted = hosted_everything_entry(port);
    hosted["idleTimeout"] = json!(2);
    let mut lazy = hosted_everything_entry(lazy_port);
    lazy["lazy"] = json!(true);
    home.write_config(&json!({
        "managerPort": manager_port,
        "healthCheckInterval": 0.5,
        "mcpServers": {"hosted": hosted, "sleepy": lazy},
    }));
    let manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    let first = manager.wait_running("hosted").await;
    let first_pid = first["pid"].as_u64().expect("pid");

    // lazy: not started by --start-all.
    let sleepy = manager.status_of("sleepy").await;
    assert_eq!(sleepy["state"], "stopped", "{sleepy}");
    assert_eq!(sleepy["running"], false, "{sleepy}");
    assert!(
        !port_answers(lazy_port).await,
        "the lazy daemon was started"
    );

    // An open session keeps it: twice the idleTimeout, still the same one.
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "hosted",
            "--manager-port",
            &manager_port.to_string(),
        ],
    );
    proxy.initialize().await;
    let echo = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "kept"}}),
        )
        .await;
    assert!(tool_text(&echo).contains("kept"), "{echo}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept = manager.status_of("hosted").await;
    assert_eq!(
        kept["state"], "running",
        "stopped under an open session: {kept}"
    );
    assert_eq!(kept["pid"], json!(first_pid), "{kept}");
    let pong = proxy.request(json!(2), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    // The session ends (stdin EOF → DELETE): idle within ~5 s.
    proxy.close_stdin();
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "mcp-proxy exited with {status}");
    let closed = Instant::now();
    let idle = manager
        .wait_status("hosted", Duration::from_secs(6), "idle", |s| {
            s["state"] == "idle"
        })
        .await;
    eprintln!("idle {:?} after the session ended", closed.elapsed());
    assert_eq!(idle["running"], false, "{idle}");
    assert!(
        !process::is_alive(u32::try_from(first_pid).expect("pid")),
        "the idle daemon's process lives on"
    );
    assert!(!port_answers(port).await, "the idle daemon still listens");
    let table = finish(
        {
            let mut c = Command::new(manager_bin());
            c.args(["status", "--port", &manager_port.to_string()])
                .env("MCP_SESSION_MANAGER_HOME", home.path());
            c
        },
        CLI_TIMEOUT,
        "mcp-manager status",
    )
    .await;
    assert_eq!(table.code, 0, "{table}");
    let row = table
        .stdout
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "hosted"))
        .unwrap_or_else(|| panic!("no row for hosted: {table}"));
    assert!(row.contains("idle"), "{row}");

    // The next session starts it again and is answered.
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "hosted",
            "--manager-port",
            &manager_port.to_string(),
        ],
    );
    proxy.initialize().await;
    let echo = proxy
        .request(
            json!(3),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "back again"}}),
        )
        .await;
    assert!(tool_text(&echo).contains("back again"), "{echo}");
    let back = manager.wait_running("hosted").await;
    assert_ne!(back["pid"], json!(first_pid), "{back}");
    assert!(port_answers(port).await);
    // The lazy one is still untouched.
    assert_eq!(manager.status_of("sleepy").await["state"], "stopped");
    proxy.close_stdin();
    proxy.wait(Duration::from_secs(10)).await;
}

// ---------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------

/// `doctor --json`: (exit code, report).
async fn doctor(user: &User) -> (i32, Value, Output) {
    let output = user.cli(&["doctor", "--json"]).await;
    let report: Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {output}"));
    assert_eq!(
        report["healthy"].as_bool(),
        Some(output.code == 0),
        "healthy disagrees with the exit code: {output}"
    );
    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {report}"));
    for check in checks {
        assert!(check["name"].is_string(), "{check}");
        assert!(check["detail"].is_string(), "{check}");
        let status = check["status"].as_str().unwrap_or_default();
        assert!(
            ["ok", "warning", "problem"].contains(&status),
            "status {status:?}: {check}"
        );
        if status != "ok" {
            assert!(check["fix"].is_string(), "no fix for {check}");
        }
    }
    (output.code, report, output)
}

/// The check called `name` (exactly).
fn find_check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

/// The names of the checks with `status`.
fn checks_with(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == status)
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// A user whose config hosts server-everything as `svc` on a free port,
/// and whose `~/.claude.json` runs it through mcp-proxy.
fn healthy_user() -> (User, u16) {
    let user = User::new();
    let port = free_port();
    user.home.write_config(&json!({
        "managerPort": user.manager_port,
        "healthCheckInterval": 0.5,
        "mcpServers": {"svc": hosted_everything_entry(port)},
    }));
    let proxy = std::fs::canonicalize(proxy_bin()).expect("proxy path");
    std::fs::write(
        user.claude_json(),
        serde_json::to_vec_pretty(&json!({
            "numStartups": 1,
            "mcpServers": {"svc": {"type": "stdio", "command": proxy.to_string_lossy(), "args": ["--target", "svc"]}},
        }))
        .expect("json"),
    )
    .expect("write ~/.claude.json");
    (user, port)
}

/// `doctor`: exit 0 on a healthy setup (stopped: only the manager is a
/// warning; running: every check ok), exit 1 naming the check on a config
/// that is not JSON, a runner that is not installed and a port held by a
/// stranger; a stale lock and Claude Code entries that bypass mcp-proxy
/// are warnings (exit 0).
#[tokio::test]
async fn doctor_finds_each_broken_setup() {
    // Healthy, nothing running.
    let (user, port) = healthy_user();
    let (code, report, output) = doctor(&user).await;
    assert_eq!(code, 0, "healthy setup: {output}");
    assert!(checks_with(&report, "problem").is_empty(), "{report:#}");
    assert_eq!(
        checks_with(&report, "warning"),
        ["manager"],
        "only the stopped manager is worth a warning: {report:#}"
    );
    assert_eq!(
        find_check(&report, &format!("port {port} (svc)"))["status"],
        "ok"
    );
    let text = user.cli(&["doctor"]).await;
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains("healthy"), "{text}");

    // Healthy and running: every check ok, the port served by its daemon.
    {
        let mut manager =
            ManagerProcess::start(&user.home, user.manager_port, &["--start-all"]).await;
        let status = manager.wait_running("svc").await;
        let (code, report, output) = doctor(&user).await;
        assert_eq!(code, 0, "healthy and running: {output}");
        assert_eq!(
            checks_with(&report, "ok").len(),
            report["checks"].as_array().expect("checks").len(),
            "not every check is ok: {report:#}"
        );
        let served = find_check(&report, &format!("port {port} (svc)"));
        assert!(
            served["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&status["pid"].to_string())),
            "the daemon's pid is not named: {served}"
        );
        manager.stop().await;
    }

    // config.json is not JSON.
    let (user, _) = healthy_user();
    user.home.write_raw_config("{\n  \"mcpServers\": {,\n}\n");
    let (code, report, output) = doctor(&user).await;
    assert_eq!(code, 1, "bad config: {output}");
    assert_eq!(
        find_check(&report, "config")["status"],
        "problem",
        "{report:#}"
    );

    // A runner that is not installed.
    let (user, port) = healthy_user();
    user.home.write_config(&json!({
        "managerPort": user.manager_port,
        "mcpServers": {
            "svc": hosted_everything_entry(port),
            "gone": {"command": "surely-not-installed-xyz", "args": [], "port": free_port()},
        },
    }));
    let (code, report, output) = doctor(&user).await;
    assert_eq!(code, 1, "missing runner: {output}");
    let runner = find_check(&report, "runner `surely-not-installed-xyz`");
    assert_eq!(runner["status"], "problem", "{report:#}");
    assert!(
        runner["detail"]
            .as_str()
            .is_some_and(|d| d.contains("gone")),
        "{runner}"
    );
    assert_eq!(
        checks_with(&report, "problem"),
        ["runner `surely-not-installed-xyz`"]
    );

    // The daemon's port held by a stranger (this test).
    let (user, _) = healthy_user();
    let stranger = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let held = stranger.local_addr().expect("addr").port();
    user.home.write_config(&json!({
        "managerPort": user.manager_port,
        "mcpServers": {"svc": hosted_everything_entry(held)},
    }));
    let (code, report, output) = doctor(&user).await;
    assert_eq!(code, 1, "held port: {output}");
    let name = format!("port {held} (svc)");
    assert_eq!(
        find_check(&report, &name)["status"],
        "problem",
        "{report:#}"
    );
    assert_eq!(checks_with(&report, "problem"), [name]);
    drop(stranger);

    // A stale lock (its pid is gone): a warning naming the pid and the file.
    let (user, port) = healthy_user();
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead = gone.id();
    gone.wait().expect("reap");
    std::fs::write(
        user.home.path().join("svc.lock"),
        serde_json::to_vec_pretty(&json!({
            "pid": dead, "port": port, "startedAt": 1_000,
            "transport": "stdio", "processStart": 1
        }))
        .expect("json"),
    )
    .expect("write lock");
    let (code, report, output) = doctor(&user).await;
    let stale = find_check(&report, "lock svc.lock");
    assert_eq!(stale["status"], "warning", "{report:#}");
    assert!(
        stale["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&dead.to_string())),
        "{stale}"
    );
    assert!(
        stale["fix"]
            .as_str()
            .is_some_and(|f| f.contains("svc.lock")),
        "{stale}"
    );
    assert_eq!(code, 0, "a stale lock alone is a warning: {output}");
    assert!(
        user.home.path().join("svc.lock").exists(),
        "the doctor removed the lock"
    );

    // Claude Code entries that bypass mcp-proxy: a warning pointing at import.
    let (user, _) = healthy_user();
    let servers = json!({
        "memory": {"command": "node", "args": [memory_js().to_string_lossy()]},
    });
    std::fs::write(
        user.claude_json(),
        ClaudeJson::around(serde_json::to_string_pretty(&servers).expect("json")).text(),
    )
    .expect("write");
    let (code, report, output) = doctor(&user).await;
    let claude = find_check(&report, "claude user config");
    assert_eq!(claude["status"], "warning", "{report:#}");
    assert!(
        claude["detail"]
            .as_str()
            .is_some_and(|d| d.contains("memory")),
        "{claude}"
    );
    assert!(
        claude["fix"].as_str().is_some_and(|f| f.contains("import")),
        "{claude}"
    );
    assert_eq!(
        code, 0,
        "entries that bypass mcp-proxy are a warning: {output}"
    );
}

// ---------------------------------------------------------------------------
// generate-config scopes
// ---------------------------------------------------------------------------

/// `generate-config --scope user` merges the daemons into
/// `~/.claude.json` (every other key and entry kept, the old file backed
/// up) and the real Claude Code connects to them; `--scope project DIR`
/// writes `DIR/.mcp.json`, which Claude Code lists in DIR. Each run says
/// which file Claude Code reads.
#[tokio::test]
async fn generate_config_scopes_write_what_claude_reads() {
    let user = User::new();
    user.home.write_config(&json!({
        "managerPort": user.manager_port,
        "healthCheckInterval": 0.5,
        "mcpServers": {
            "alpha": hosted_everything_entry(free_port()),
            "beta": hosted_everything_entry(free_port()),
        },
    }));
    let servers = json!({"mine": {"command": "node", "args": [memory_js().to_string_lossy()]}});
    let original = ClaudeJson::around(serde_json::to_string_pretty(&servers).expect("json"));
    std::fs::write(user.claude_json(), original.text()).expect("write");

    // --scope user
    let output = user.cli_ok(&["generate-config", "--scope", "user"]).await;
    let file = user.claude_json();
    assert!(
        output.text().contains(&*file.to_string_lossy())
            && output.text().contains("Claude Code reads"),
        "the output does not say that Claude Code reads {}: {output}",
        file.display()
    );
    assert!(
        output.text().contains(&file.to_string_lossy().into_owned()),
        "the output does not name {}: {output}",
        file.display()
    );
    let merged: Value = serde_json::from_slice(&user.claude_bytes()).expect("JSON");
    assert_eq!(
        without_servers(merged.clone()),
        without_servers(original.parsed()),
        "keys other than mcpServers changed"
    );
    assert_eq!(
        merged["mcpServers"]["mine"], servers["mine"],
        "an entry of the user's was changed"
    );
    for name in ["alpha", "beta"] {
        assert_generated(&merged["mcpServers"][name], name, user.manager_port);
    }
    let text = String::from_utf8(user.claude_bytes()).expect("UTF-8");
    assert!(
        text.starts_with(&original.prefix) && text.ends_with(&original.suffix),
        "the bytes outside mcpServers changed:\n{text}"
    );
    let backups = User::backups_of(&file);
    assert_eq!(backups.len(), 1, "backups: {backups:?}");
    assert_eq!(
        std::fs::read(user.user.path().join(&backups[0])).expect("backup"),
        original.text().as_bytes()
    );
    let listed = user.claude_mcp_list().await;
    let mut manager = user.attach_manager().await;
    assert_connected(&listed, &["alpha", "beta"]);
    manager.stop().await;

    // --scope project DIR (another user: no servers of the user scope, so
    // nothing is started)
    let user = User::new();
    user.home.write_config(&json!({
        "managerPort": user.manager_port,
        "mcpServers": {
            "alpha": hosted_everything_entry(free_port()),
            "beta": hosted_everything_entry(free_port()),
        },
    }));
    let project = tempfile::tempdir().expect("project");
    let dir = project.path().to_string_lossy().into_owned();
    let output = user
        .cli_ok(&["generate-config", "--scope", "project", &dir])
        .await;
    let mcp_json = project.path().join(".mcp.json");
    assert!(
        output.text().contains(&*mcp_json.to_string_lossy())
            && output.text().contains("Claude Code reads"),
        "the output does not say that Claude Code reads {}: {output}",
        mcp_json.display()
    );
    assert!(
        output
            .text()
            .contains(&mcp_json.to_string_lossy().into_owned()),
        "the output does not name {}: {output}",
        mcp_json.display()
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&mcp_json).expect(".mcp.json"))
        .expect(".mcp.json is JSON");
    for name in ["alpha", "beta"] {
        assert_generated(&written["mcpServers"][name], name, user.manager_port);
    }
    // Claude Code sees the project's servers there (not yet approved: listed,
    // not connected).
    let listed = user.claude_mcp_list_in(project.path()).await;
    assert_eq!(listed.code, 0, "{listed}");
    for name in ["alpha", "beta"] {
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name}: ")) && l.contains("--target")),
            "claude mcp list in the project does not show {name}: {listed}"
        );
    }
}
