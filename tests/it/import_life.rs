//! Issue 16 end to end: "import never makes a working setup worse", with
//! the real Claude Code (pinned, offline) in a throwaway `HOME`, the real
//! binaries and real servers (server-memory and server-everything over
//! stdio), plus two remote servers simulated on loopback by this test: an
//! OAuth one (401 + `WWW-Authenticate` + protected-resource metadata) and
//! one that takes a static `Authorization` header.
//!
//! The fixture `~/.claude.json` has every kind (stdio npx-style entries, a
//! stdio entry whose `env` uses `${SOME_VAR}`, the two remotes, a
//! playwright-like entry, a project's local entry) and the project has a
//! committed `.mcp.json` (one server approved, one not). Checked with the
//! real `claude mcp list` from the home and from inside the project,
//! before and after `import`, `import --project DIR`, `claude mcp add`,
//! and `import --undo --all`: no server goes from ✔ or "Needs
//! authentication" to ✘; `.mcp.json` stays byte-identical and nothing new
//! appears in the project from our commands; remote entries are not
//! touched; the project's server is overridden in its local scope;
//! `--undo --dry-run` writes nothing; `--undo --all` puts every original
//! entry back and keeps the later addition and Claude Code's own keys.
//!
//! Unix only: `HOME` decides where `~/.claude.json` is.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::util::{IMPORT_PORTS_IN_USE, TestHome, claude_bin, fixtures, free_port, manager_bin};

/// Longest run of one `claude` command.
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest run of one `mcp-manager` command (`import` verifies through
/// mcp-proxy, which starts the manager and the daemons).
const CLI_TIMEOUT: Duration = Duration::from_secs(90);
/// The static header the static-header remote wants.
const STATIC_TOKEN: &str = "Bearer static-token";

/// The user's servers of the fixture, by kind.
const USER_STDIO: [&str; 4] = ["memory", "everything", "memory-var", "playwright"];
const OAUTH: &str = "oauth-remote";
const STATIC: &str = "static-remote";
/// The project's local entry, and the `.mcp.json` ones.
const PROJECT_LOCAL: &str = "proj-memory";
const TEAM_APPROVED: &str = "team-everything";
const TEAM_PENDING: &str = "team-pending";
const LATER: &str = "later-added";

/// What a finished command printed.
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

/// A fixture binary of `tests/fixtures/node_modules/.bin`, checked.
fn node_bin(name: &str) -> PathBuf {
    let path = fixtures().join("node_modules/.bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-test-fixtures.sh`",
        path.display()
    );
    path
}

/// The throwaway user: `HOME`, the tool's home (config.json on a free
/// manager port), the project `DIR`, and `SOME_VAR`'s value.
struct Life {
    home: TestHome,
    user: tempfile::TempDir,
    project: tempfile::TempDir,
    some_var: String,
}

impl Life {
    fn new() -> Life {
        let home = TestHome::new();
        home.write_raw_config(&format!(
            "{{\"managerPort\": {}, \"mcpServers\": {{}}}}\n",
            free_port()
        ));
        let user = tempfile::tempdir().expect("HOME");
        let some_var = user
            .path()
            .join("memory-var.jsonl")
            .to_string_lossy()
            .into_owned();
        Life {
            home,
            user,
            project: tempfile::tempdir().expect("project"),
            some_var,
        }
    }

    fn claude_json(&self) -> PathBuf {
        self.user.path().join(".claude.json")
    }

    fn mcp_json(&self) -> PathBuf {
        self.project.path().join(".mcp.json")
    }

    /// The project's key in `projects` (the path Claude Code sees as its
    /// working directory).
    fn project_key(&self) -> String {
        self.project
            .path()
            .canonicalize()
            .expect("project path")
            .to_string_lossy()
            .into_owned()
    }

    fn claude_text(&self) -> String {
        std::fs::read_to_string(self.claude_json()).expect("read ~/.claude.json")
    }

    fn claude_value(&self) -> Value {
        serde_json::from_str(&self.claude_text()).expect("~/.claude.json is JSON")
    }

    /// `program ARGS` from `dir`, in this user's environment (`SOME_VAR`
    /// set, so the original `${SOME_VAR}` entry works).
    async fn run(&self, program: &Path, args: &[&str], dir: &Path, timeout: Duration) -> Run {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(dir)
            .env("HOME", self.user.path())
            .env("MCP_SESSION_MANAGER_HOME", self.home.path())
            .env("SOME_VAR", &self.some_var)
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
        let started = Instant::now();
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} {args:?} did not finish in {timeout:?}",
                    program.display()
                )
            })
            .expect("run");
        eprintln!(
            "[import_life] {} {args:?}: {:.1} s",
            program.file_name().unwrap_or_default().to_string_lossy(),
            started.elapsed().as_secs_f64()
        );
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `mcp-manager ARGS` from the home.
    async fn manager(&self, args: &[&str]) -> Run {
        self.run(&manager_bin(), args, self.user.path(), CLI_TIMEOUT)
            .await
    }

    /// `mcp-manager ARGS` from the home; must exit 0.
    async fn manager_ok(&self, args: &[&str]) -> Run {
        let run = self.manager(args).await;
        assert_eq!(run.code, 0, "mcp-manager {args:?}: {run}");
        run
    }

    /// `claude ARGS` from `dir`.
    async fn claude(&self, args: &[&str], dir: &Path) -> Run {
        self.run(&claude_bin(), args, dir, CLAUDE_TIMEOUT).await
    }

    /// `claude mcp list` from `dir`, as name → status line.
    async fn list(&self, dir: &Path, what: &str) -> BTreeMap<String, String> {
        let run = self.claude(&["mcp", "list"], dir).await;
        eprintln!("[import_life] claude mcp list {what}:\n{}", run.stdout);
        parse_list(&run.stdout)
    }
}

/// `claude mcp list`'s lines `NAME: … - STATUS`, by name.
fn parse_list(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, _) = line.split_once(": ")?;
            (!name.is_empty() && !name.contains(char::is_whitespace))
                .then(|| (name.to_owned(), line.to_owned()))
        })
        .collect()
}

/// What a status line says, in the terms of the promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Connected,
    NeedsAuth,
    Failed,
    Other,
}

fn status(line: &str) -> Status {
    if line.contains("✔") {
        Status::Connected
    } else if line.contains("Needs authentication") {
        Status::NeedsAuth
    } else if line.contains("✘") {
        Status::Failed
    } else {
        Status::Other
    }
}

/// Where a server that was ✔ or "Needs authentication" in `before` is
/// missing or ✘ (or unknown) in `after`: one finding each.
fn worse(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    for (name, line) in before {
        if !matches!(status(line), Status::Connected | Status::NeedsAuth) {
            continue;
        }
        match after.get(name) {
            None => found.push(format!(
                "{what}: {name} is gone from claude mcp list (it was: {line})"
            )),
            Some(now) if matches!(status(now), Status::Failed | Status::Other) => found.push(
                format!("{what}: {name} got worse:\n    before: {line}\n    after:  {now}"),
            ),
            Some(_) => {}
        }
    }
    found
}

/// Every file under `roots`, path → bytes.
fn snapshot(roots: &[&Path]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for root in roots {
        let mut stack = vec![root.to_path_buf()];
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
                    files.insert(path, bytes);
                }
            }
        }
    }
    files
}

/// What changed between two snapshots (files created, removed or
/// rewritten), as one finding, or none.
fn file_changes(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) -> Vec<String> {
    let mut changes = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => changes.push(format!("removed {}", path.display())),
            Some(new) if new != old => changes.push(format!(
                "changed {}:\n--- before ---\n{}\n--- after ---\n{}",
                path.display(),
                String::from_utf8_lossy(old),
                String::from_utf8_lossy(new)
            )),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        changes.push(format!("created {}", path.display()));
    }
    if changes.is_empty() {
        Vec::new()
    } else {
        vec![format!("{what}: {}", changes.join("; "))]
    }
}

/// The promises found broken, collected so that one run names every one
/// (the test fails at its end, listing them).
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let message = message();
            eprintln!("[import_life] BROKEN: {message}");
            self.0.push(message);
        }
    }

    fn extend(&mut self, found: Vec<String>) {
        for message in found {
            self.check(false, || message);
        }
    }
}

/// The exact text of the value of key `name` in `text` (the first
/// `"name": ` followed by an object), braces matched outside strings.
fn entry_span<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\": {{");
    let start = text.find(&key)? + key.len() - 1;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..=start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Is `command` our mcp-proxy, by its absolute path?
fn is_proxy(command: &Value) -> bool {
    command.as_str().is_some_and(|c| {
        let path = Path::new(c);
        path.is_absolute() && path.file_name().is_some_and(|n| n == "mcp-proxy")
    })
}

/// The `--target` of a proxy entry.
fn target_of(entry: &Value) -> Option<String> {
    let args = entry["args"].as_array()?;
    let at = args.iter().position(|a| a == "--target")?;
    Some(args.get(at + 1)?.as_str()?.to_owned())
}

// ---------------------------------------------------------------------------
// The remote servers, simulated on loopback
// ---------------------------------------------------------------------------

/// Which remote a listener simulates.
#[derive(Clone, Copy)]
enum Remote {
    /// Every POST to the endpoint 401 with `WWW-Authenticate` naming its
    /// protected-resource metadata; the authorization server's metadata and
    /// a registration endpoint that registers anyone (so Claude Code gets
    /// as far as the login it cannot do offline); anything else 404.
    OAuth,
    /// MCP over plain JSON answers, only with `Authorization: Bearer static-token`.
    Static,
}

/// A loopback listener serving one [`Remote`]; stopped when dropped.
struct RemoteServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RemoteServer {
    async fn start(kind: Remote) -> RemoteServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        serve_one(stream, kind, port),
                    )
                    .await;
                });
            }
        });
        RemoteServer { port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// One request on `stream` (at most 64 KiB of head, 1 MiB of body), one
/// answer, then the connection closes.
async fn serve_one(mut stream: TcpStream, kind: Remote, port: u16) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (code, extra, answer) = match kind {
        Remote::OAuth => oauth_answer(&method, &path, port),
        Remote::Static => static_answer(&method, header("authorization").as_deref(), &body),
    };
    let reason = match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.len()
    );
    for (k, v) in extra {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&answer);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

type Answer = (u16, Vec<(&'static str, String)>, String);

fn oauth_answer(method: &str, path: &str, port: u16) -> Answer {
    let base = format!("http://127.0.0.1:{port}");
    if method == "POST" && path == "/register" {
        // Dynamic client registration succeeds, so Claude Code gets as far
        // as needing the user's login.
        let client = json!({
            "client_id": "test-client",
            "client_id_issued_at": 1,
            "redirect_uris": ["http://localhost/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        });
        return (201, Vec::new(), client.to_string());
    }
    if method == "GET" && path.starts_with("/.well-known/oauth-authorization-server") {
        let metadata = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "registration_endpoint": format!("{base}/register"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
        });
        return (200, Vec::new(), metadata.to_string());
    }
    if method == "POST" {
        let challenge = format!(
            "Bearer resource_metadata=\"http://127.0.0.1:{port}/.well-known/oauth-protected-resource\""
        );
        return (
            401,
            vec![("WWW-Authenticate", challenge)],
            r#"{"error":"invalid_token"}"#.to_owned(),
        );
    }
    if method == "GET" && path.starts_with("/.well-known/oauth-protected-resource") {
        let metadata = json!({
            "resource": format!("http://127.0.0.1:{port}/mcp"),
            "authorization_servers": [format!("http://127.0.0.1:{port}")],
        });
        return (200, Vec::new(), metadata.to_string());
    }
    (404, Vec::new(), "{}".to_owned())
}

fn static_answer(method: &str, authorization: Option<&str>, body: &[u8]) -> Answer {
    if authorization != Some(STATIC_TOKEN) {
        return (403, Vec::new(), r#"{"error":"forbidden"}"#.to_owned());
    }
    if method != "POST" {
        return (405, Vec::new(), "{}".to_owned());
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return (400, Vec::new(), "{}".to_owned());
    };
    let Some(id) = message.get("id").cloned() else {
        return (202, Vec::new(), String::new());
    };
    let result = match message["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "static-remote", "version": "1"},
        }),
        "tools/list" => json!({"tools": []}),
        "prompts/list" => json!({"prompts": []}),
        "resources/list" => json!({"resources": []}),
        _ => {
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}});
            return (200, Vec::new(), error.to_string());
        }
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
    (200, Vec::new(), answer.to_string())
}

// ---------------------------------------------------------------------------
// Cleanup
// ---------------------------------------------------------------------------

/// Runs `mcp-manager shutdown` in the tool's home when dropped (bounded:
/// 30 s, then the command is killed).
struct Shutdown<'a>(&'a Life);

impl Drop for Shutdown<'_> {
    fn drop(&mut self) {
        let life = self.0;
        let Ok(mut child) = std::process::Command::new(manager_bin())
            .arg("shutdown")
            .current_dir(life.user.path())
            .env("HOME", life.user.path())
            .env("MCP_SESSION_MANAGER_HOME", life.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// The life of a setup through import and undo, as `claude mcp list` sees
/// it (see the module's documentation for the promises checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_undo_never_make_a_working_setup_worse() {
    let started = Instant::now();
    let _ports = IMPORT_PORTS_IN_USE.lock().await;
    let oauth = RemoteServer::start(Remote::OAuth).await;
    let fixed = RemoteServer::start(Remote::Static).await;
    let life = Life::new();
    let _shutdown = Shutdown(&life);
    let memory = node_bin("mcp-server-memory").to_string_lossy().into_owned();
    let everything = node_bin("mcp-server-everything")
        .to_string_lossy()
        .into_owned();
    let memory_file = |name: &str| {
        life.user
            .path()
            .join(format!("{name}.jsonl"))
            .to_string_lossy()
            .into_owned()
    };
    let project_key = life.project_key();

    // 1. The fixture.
    let user_servers = json!({
        "memory": {"type": "stdio", "command": memory, "args": [], "env": {"MEMORY_FILE_PATH": memory_file("memory")}},
        "everything": {"type": "stdio", "command": everything, "args": ["stdio"], "env": {}},
        "memory-var": {"command": memory, "args": [], "env": {"MEMORY_FILE_PATH": "${SOME_VAR}"}},
        OAUTH: {"type": "http", "url": oauth.url()},
        STATIC: {"type": "http", "url": fixed.url(), "headers": {"Authorization": STATIC_TOKEN}},
        "playwright": {"type": "stdio", "command": memory, "args": ["@playwright/mcp@latest"], "env": {"MEMORY_FILE_PATH": memory_file("playwright")}},
    });
    let project_servers = json!({
        PROJECT_LOCAL: {"type": "stdio", "command": memory, "args": [], "env": {"MEMORY_FILE_PATH": memory_file("proj")}},
    });
    let original = json!({
        "numStartups": 3,
        "installMethod": "npm",
        "autoUpdates": false,
        "hasCompletedOnboarding": true,
        "mcpServers": user_servers,
        "projects": {
            project_key.clone(): {
                "allowedTools": [],
                "mcpServers": project_servers,
                "enabledMcpjsonServers": [TEAM_APPROVED],
                "disabledMcpjsonServers": [],
                "hasTrustDialogAccepted": true,
                "projectOnboardingSeenCount": 1,
            }
        },
    });
    let original_text = serde_json::to_string_pretty(&original).expect("json") + "\n";
    std::fs::write(life.claude_json(), &original_text).expect("write ~/.claude.json");
    let mcp_json = serde_json::to_string_pretty(&json!({
        "mcpServers": {
            TEAM_APPROVED: {"command": everything, "args": ["stdio"]},
            TEAM_PENDING: {"command": memory, "args": [], "env": {"MEMORY_FILE_PATH": memory_file("pending")}},
        }
    }))
    .expect("json")
        + "\n";
    std::fs::write(life.mcp_json(), &mcp_json).expect("write .mcp.json");
    let (user_dir, project_dir) = (life.user.path(), life.project.path());

    // 2. Before: the fixture itself is right.
    // Where Claude Code keeps the approval (it moves it from ~/.claude.json
    // to DIR/.claude/settings.local.json when it runs in DIR).
    let approval = |when: &str| {
        let settings = std::fs::read_to_string(project_dir.join(".claude/settings.local.json"))
            .unwrap_or_else(|_| "(none)".to_owned());
        eprintln!(
            "[import_life] approval {when}: DIR/.claude/settings.local.json {}; projects[DIR].enabledMcpjsonServers {}",
            settings.split_whitespace().collect::<String>(),
            life.claude_value()["projects"][&project_key]["enabledMcpjsonServers"]
        );
    };
    let home_before = life.list(user_dir, "from the home, before").await;
    approval("after the first run in the home");
    let dir_before = life.list(project_dir, "from DIR, before").await;
    approval("after the first run in DIR");
    for name in USER_STDIO.iter().chain([&STATIC]) {
        let line = home_before
            .get(*name)
            .unwrap_or_else(|| panic!("fixture: no line for {name}: {home_before:#?}"));
        assert_eq!(status(line), Status::Connected, "fixture: {line}");
    }
    let line = home_before
        .get(OAUTH)
        .unwrap_or_else(|| panic!("fixture: no line for {OAUTH}: {home_before:#?}"));
    assert_eq!(status(line), Status::NeedsAuth, "fixture: {line}");
    for name in [PROJECT_LOCAL, TEAM_APPROVED] {
        let line = dir_before
            .get(name)
            .unwrap_or_else(|| panic!("fixture: no line for {name} from DIR: {dir_before:#?}"));
        assert_eq!(status(line), Status::Connected, "fixture from DIR: {line}");
    }
    // Claude Code may have rewritten ~/.claude.json (its own keys) and
    // written DIR/.claude/: the state our commands start from.
    let claude_before_import = life.claude_text();
    let remote_spans: Vec<(&str, String)> = [OAUTH, STATIC]
        .into_iter()
        .map(|name| {
            let span = entry_span(&claude_before_import, name)
                .unwrap_or_else(|| panic!("no {name} entry in ~/.claude.json"))
                .to_owned();
            (name, span)
        })
        .collect();

    // 3. import (verification on), import --project DIR, claude mcp add.
    let mut broken = Findings::default();
    let dir_files = snapshot(&[project_dir]);
    let imported = life.manager_ok(&["import"]).await;
    eprintln!("[import_life] mcp-manager import:\n{imported}");
    broken.extend(file_changes(
        &dir_files,
        &snapshot(&[project_dir]),
        "mcp-manager import wrote inside DIR",
    ));
    // Verification is on by default: a mark for each imported server.
    for name in USER_STDIO {
        broken.check(
            imported
                .stdout
                .lines()
                .any(|l| l.contains(name) && l.contains('✔')),
            || {
                format!(
                    "mcp-manager import printed no ✔ (its verification) for {name}:\n{imported}"
                )
            },
        );
    }
    let dir_files = snapshot(&[project_dir]);
    let project_arg = project_dir.to_string_lossy().into_owned();
    let imported_project = life
        .manager_ok(&["import", "--project", &project_arg])
        .await;
    eprintln!("[import_life] mcp-manager import --project DIR:\n{imported_project}");
    broken.extend(file_changes(
        &dir_files,
        &snapshot(&[project_dir]),
        "mcp-manager import --project DIR wrote inside DIR (it must create or change nothing there)",
    ));
    let add = life
        .claude(
            &["mcp", "add", "-s", "user", LATER, "--", &memory],
            user_dir,
        )
        .await;
    assert_eq!(add.code, 0, "claude mcp add: {add}");

    // After: the files.
    broken.check(
        std::fs::read(life.mcp_json()).expect(".mcp.json") == mcp_json.as_bytes(),
        || ".mcp.json is not byte-identical after the imports".to_owned(),
    );
    let claude_after = life.claude_text();
    for (name, span) in &remote_spans {
        broken.check(
            entry_span(&claude_after, name) == Some(span.as_str()),
            || format!("the remote entry {name} changed in ~/.claude.json"),
        );
    }
    let after = life.claude_value();
    for name in USER_STDIO {
        let entry = &after["mcpServers"][name];
        broken.check(
            is_proxy(&entry["command"]) && target_of(entry).as_deref() == Some(name),
            || format!("{name} does not run mcp-proxy --target {name}: {entry}"),
        );
        broken.check(entry.get("type") == user_servers[name].get("type"), || {
            format!("{name}'s type was not kept: {entry}")
        });
        let keys: Vec<&String> = entry
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        broken.check(
            keys.iter()
                .all(|k| ["command", "args", "type"].contains(&k.as_str())),
            || format!("{name}'s proxy entry has more than command, args (and type): {entry}"),
        );
    }
    let config: Value = serde_json::from_slice(
        &std::fs::read(life.home.path().join("config.json")).expect("config.json"),
    )
    .expect("config.json is JSON");
    broken.check(
        config["mcpServers"]["playwright"]["scope"] == json!("session"),
        || {
            format!(
                "playwright is not scope session: {}",
                config["mcpServers"]["playwright"]
            )
        },
    );
    let overrides = &after["projects"][&project_key]["mcpServers"];
    let team = &overrides[TEAM_APPROVED];
    broken.check(is_proxy(&team["command"]), || {
        format!(
            "no local-scope override running mcp-proxy for the approved .mcp.json server {TEAM_APPROVED} at projects[DIR].mcpServers: {overrides:#}"
        )
    });
    if is_proxy(&team["command"]) {
        match target_of(team) {
            None => broken.check(false, || {
                format!("the override of {TEAM_APPROVED} has no --target: {team}")
            }),
            Some(target) => {
                eprintln!("[import_life] {TEAM_APPROVED} is {target:?} in config.json");
                broken.check(target != TEAM_APPROVED, || {
                    format!(
                        "the config.json name of a project's server is not per project: {target}"
                    )
                });
                broken.check(config["mcpServers"].get(&target).is_some(), || {
                    format!("config.json has no {target}: {:#}", config["mcpServers"])
                });
            }
        }
    }
    broken.check(overrides.get(TEAM_PENDING).is_none(), || {
        format!("the unapproved {TEAM_PENDING} got an override: {overrides:#}")
    });

    // After: what Claude Code shows.
    let home_after = life.list(user_dir, "from the home, after import").await;
    let dir_after = life.list(project_dir, "from DIR, after import").await;
    broken.extend(worse(
        &home_before,
        &home_after,
        "from the home after import",
    ));
    broken.extend(worse(&dir_before, &dir_after, "from DIR after import"));
    let later = home_after.get(LATER).map(String::as_str);
    broken.check(
        later.is_some_and(|l| status(l) == Status::Connected),
        || format!("{LATER} is not ✔ after claude mcp add: {later:?}"),
    );
    let get = life
        .claude(&["mcp", "get", TEAM_APPROVED], project_dir)
        .await;
    eprintln!("[import_life] claude mcp get {TEAM_APPROVED} from DIR:\n{get}");
    broken.check(
        get.code == 0
            && get.stdout.contains("Scope: Local")
            && get.stdout.contains("mcp-proxy"),
        || {
            format!(
                "claude mcp get {TEAM_APPROVED} from DIR does not show the local scope and mcp-proxy: {get}"
            )
        },
    );

    // 4. --undo --dry-run writes nothing.
    let roots = [life.home.path(), user_dir, project_dir];
    let all_files = snapshot(&roots);
    let dry = life.manager(&["import", "--undo", "--dry-run"]).await;
    eprintln!("[import_life] mcp-manager import --undo --dry-run:\n{dry}");
    broken.check(dry.code == 0, || {
        format!("import --undo --dry-run failed: {dry}")
    });
    broken.extend(file_changes(
        &all_files,
        &snapshot(&roots),
        "import --undo --dry-run wrote",
    ));

    // --undo --all: every original entry back, the later addition and
    // Claude Code's own keys kept.
    let before_undo = life.claude_value();
    let dir_files = snapshot(&[project_dir]);
    let undone = life.manager(&["import", "--undo", "--all"]).await;
    eprintln!("[import_life] mcp-manager import --undo --all:\n{undone}");
    broken.check(undone.code == 0, || {
        format!("import --undo --all failed: {undone}")
    });
    broken.extend(file_changes(
        &dir_files,
        &snapshot(&[project_dir]),
        "import --undo --all wrote inside DIR",
    ));
    broken.check(
        std::fs::read(life.mcp_json()).expect(".mcp.json") == mcp_json.as_bytes(),
        || ".mcp.json is not byte-identical after the undo".to_owned(),
    );
    let restored = life.claude_value();
    for (name, entry) in user_servers.as_object().expect("servers") {
        let now = &restored["mcpServers"][name];
        broken.check(now == entry, || {
            format!("--undo --all did not put {name} back as it was: {now}, was {entry}")
        });
    }
    broken.check(restored["mcpServers"].get(LATER).is_some(), || {
        format!("--undo --all removed {LATER}, added after the import")
    });
    let local = &restored["projects"][&project_key]["mcpServers"];
    broken.check(*local == project_servers, || {
        format!("--undo --all did not put projects[DIR].mcpServers back as it was: {local:#}")
    });
    let original_keys = original.as_object().expect("object");
    let added: Vec<&String> = before_undo
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| !original_keys.contains_key(*k))
        .collect();
    eprintln!("[import_life] Claude Code's own top-level keys added since the fixture: {added:?}");
    for (key, value) in before_undo.as_object().expect("object") {
        if !original_keys.contains_key(key) {
            broken.check(restored.get(key) == Some(value), || {
                format!("--undo --all dropped or changed Claude Code's own key {key}")
            });
        }
    }
    let home_undone = life.list(user_dir, "from the home, after undo").await;
    let dir_undone = life.list(project_dir, "from DIR, after undo").await;
    for (before, now, what) in [
        (&home_before, &home_undone, "from the home after undo"),
        (&dir_before, &dir_undone, "from DIR after undo"),
    ] {
        for (name, line) in before {
            let now = now.get(name);
            broken.check(now.is_some_and(|n| status(n) == status(line)), || {
                format!("{what}: {name} was {line}, now {now:?}")
            });
        }
    }
    eprintln!(
        "[import_life] the whole test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        broken.0.is_empty(),
        "{} promise(s) of issue 16 broken:\n- {}",
        broken.0.len(),
        broken.0.join("\n- ")
    );
}

/// A server that worked before and fails through mcp-proxy is put back at
/// once, with the cause, and the others stay moved: here the manager was
/// started (by another session) without a variable the user's shell has,
/// which one server needs. `--no-verify` moves it regardless; `--undo`
/// then reverts what that import did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_broken_by_the_move_is_put_back() {
    let _ports = IMPORT_PORTS_IN_USE.lock().await;
    let life = Life::new();
    let _shutdown = Shutdown(&life);
    let memory = node_bin("mcp-server-memory").to_string_lossy().into_owned();
    let script =
        format!("test -n \"$SOME_VAR\" && exec {memory}; echo SOME_VAR is not set >&2; exit 1");
    let original = json!({"mcpServers": {
        "memory": {"command": memory, "env": {"MEMORY_FILE_PATH": life.user.path().join("m.jsonl")}},
        "needs-var": {"command": "sh", "args": ["-c", script]}
    }});
    std::fs::write(
        life.claude_json(),
        serde_json::to_string_pretty(&original).expect("json"),
    )
    .expect("write ~/.claude.json");
    // The manager, started without SOME_VAR (as a login service would be).
    let mut manager = Command::new(manager_bin());
    manager
        .current_dir(life.user.path())
        .env("HOME", life.user.path())
        .env("MCP_SESSION_MANAGER_HOME", life.home.path())
        .env("MCP_MANAGER_NO_SERVICE_MANAGER", "1")
        .env_remove("SOME_VAR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut manager = manager.spawn().expect("start the manager");
    let ready = Instant::now() + Duration::from_secs(20);
    while life.manager(&["status"]).await.code != 0 {
        assert!(Instant::now() < ready, "the manager did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let imported = life.manager_ok(&["import"]).await;
    let line = |name: &str| {
        imported
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name) && l.contains("  →  "))
            .unwrap_or_else(|| panic!("no check line for {name}: {imported}"))
            .to_owned()
    };
    let memory_line = line("memory");
    assert!(
        memory_line.matches('✔').count() == 2 && !memory_line.contains("put back"),
        "{imported}"
    );
    let needs_var = line("needs-var");
    assert!(
        needs_var.contains("✔") && needs_var.contains("✘") && needs_var.contains("put back"),
        "{imported}"
    );
    assert!(
        needs_var.contains("SOME_VAR is not set"),
        "the cause: {imported}"
    );
    let now = life.claude_value();
    assert_eq!(
        now["mcpServers"]["needs-var"], original["mcpServers"]["needs-var"],
        "put back as it was: {imported}"
    );
    assert!(is_proxy(&now["mcpServers"]["memory"]["command"]), "{now}");
    let config: Value = serde_json::from_slice(
        &std::fs::read(life.home.path().join("config.json")).expect("config.json"),
    )
    .expect("config.json is JSON");
    assert!(config["mcpServers"].get("needs-var").is_none(), "{config}");
    assert!(config["mcpServers"].get("memory").is_some(), "{config}");

    // --undo reverts the rest of that import.
    life.manager_ok(&["import", "--undo"]).await;
    assert_eq!(life.claude_value(), original);

    // --no-verify connects to nothing and moves both.
    let unchecked = life.manager_ok(&["import", "--no-verify"]).await;
    assert!(!unchecked.stdout.contains("  →  "), "{unchecked}");
    let now = life.claude_value();
    assert!(
        is_proxy(&now["mcpServers"]["needs-var"]["command"]),
        "{now}"
    );
    life.manager_ok(&["shutdown"]).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), manager.wait()).await;
}
