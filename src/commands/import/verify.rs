//! Import's check of what it wrote: each server connected to as `claude mcp
//! list` would, before (the source entry as Claude Code runs it) and after
//! (`mcp-proxy --target NAME`), each answer a [`Health`].
//!
//! [`run`] takes the [`Probe`]s, runs at most [`PARALLEL`] at once on a
//! thread with its own runtime (import is synchronous, maybe inside a
//! runtime), each bounded by the timeout given, and returns the answers in
//! order.
//!
//! - A stdio probe (an entry with a `command`, or the proxy) is spawned in a
//!   process group of its own with its stdio piped, sent one `initialize`
//!   line and read until the answer with that id (at most [`MAX_LINES`]
//!   lines of at most [`MAX_LINE`] bytes); then its stdin is closed, it gets
//!   [`EXIT_GRACE`] to exit and its whole group is killed. A guard kills the
//!   group on every other way out, so no child is ever left behind. Only
//!   the last line of its stderr is kept, cut at [`STDERR_CUT`] characters.
//!   On Windows there are no process groups: the child alone is killed.
//! - A remote probe (an entry with a `url`) is [`super::remote`]'s: a POST
//!   `initialize` with the entry's headers (a GET for `sse`), only where
//!   [`crate::config::check_remote_url`] allows, no redirect followed.
//!
//! A cause never holds a secret: no `env`, no `args`, no header, no URL
//! query.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) use super::plan::shown_url;
use super::remote::exchange;
pub(crate) use super::remote::{Answer, Request, probe};
use crate::config::{check_remote_url, expand_vars};
use crate::process::group::{self, GroupSignal};

/// How many probes run at once.
pub(crate) const PARALLEL: usize = 8;

/// The longest stdout line read (an `initialize` answer is far shorter).
const MAX_LINE: usize = 1 << 20;

/// How many stdout lines are read before giving up on the answer.
const MAX_LINES: usize = 1000;

/// How long a stdio server gets to exit once its stdin is closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How many characters of the last stderr line a cause shows.
const STDERR_CUT: usize = 200;

/// How much of a remote answer's body is read.
const BODY_LIMIT: usize = 1 << 20;

/// The id of the `initialize` request.
const ID: u64 = 1;

/// One thing to connect to, as `claude mcp list` would.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// A source entry as Claude Code runs it: the entry's JSON
    /// (`command`/`args`/`env`/`cwd`, or `type`/`url`/`headers`), `${VAR}`
    /// and `${VAR:-default}` expanded from this process's environment (see
    /// [`expand_vars`]), run in `cwd` (the entry's `cwd`, else `dir`: the
    /// project directory for project entries, else the user's home).
    Entry { value: Value, dir: PathBuf },
    /// `PROXY --target TARGET` with `MCP_SESSION_MANAGER_HOME=home` (the
    /// proxy finds or starts the manager and the daemon, exactly as a
    /// Claude session would).
    Proxy {
        proxy: PathBuf,
        target: String,
        home: PathBuf,
    },
}

/// How it answered, as `claude mcp list` would show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "cause", rename_all = "camelCase")]
pub enum Health {
    /// An `initialize` result came back.
    Connected,
    /// A remote server answered 401 with `WWW-Authenticate` (Claude shows
    /// "! Needs authentication").
    NeedsLogin,
    /// Why not, in one short line without a secret.
    Failed(String),
}

impl Health {
    /// ✔ connected, ! needs a login, ✘ failed.
    pub fn mark(&self) -> &'static str {
        match self {
            Health::Connected => "✔",
            Health::NeedsLogin => "!",
            Health::Failed(_) => "✘",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Connected => write!(f, "✔ connected"),
            Health::NeedsLogin => write!(f, "! needs login"),
            Health::Failed(cause) => write!(f, "✘ {cause}"),
        }
    }
}

/// Runs every probe, at most [`PARALLEL`] at once, each bounded by
/// `timeout`, and returns their answers in order. It runs on a thread of
/// its own with its own runtime, so it may be called from inside one.
pub(crate) fn run(probes: &[Probe], timeout: Duration) -> Vec<Health> {
    let count = probes.len();
    if count == 0 {
        return Vec::new();
    }
    let failed = |why: String| vec![Health::Failed(why); count];
    let probes = probes.to_vec();
    let worker = std::thread::Builder::new()
        .name("import-verify".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(runtime.block_on(run_all(probes, timeout)))
        });
    match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(Ok(answers))) => answers,
        Ok(Ok(Err(why))) => failed(format!("not checked: cannot start a runtime: {why}")),
        Ok(Err(_)) | Err(_) => failed("not checked: the check could not run".to_owned()),
    }
}

/// The probes, [`PARALLEL`] at a time, answers in order.
async fn run_all(probes: Vec<Probe>, timeout: Duration) -> Vec<Health> {
    use futures_util::StreamExt;
    futures_util::stream::iter(probes)
        .map(|probe| async move { check(&probe, timeout).await })
        .buffered(PARALLEL)
        .collect()
        .await
}

/// One probe.
async fn check(probe: &Probe, timeout: Duration) -> Health {
    match probe {
        Probe::Proxy {
            proxy,
            target,
            home,
        } => {
            let mut command = Command::new(proxy);
            command
                .arg("--target")
                .arg(target)
                .env("MCP_SESSION_MANAGER_HOME", home);
            let shown = proxy.display().to_string();
            stdio(command, &shown, timeout).await
        }
        Probe::Entry { value, dir } => {
            if let Some(command) = value.get("command") {
                let Some(command) = command.as_str() else {
                    return Health::Failed("its \"command\" is not a string".into());
                };
                match entry_command(command, value, dir) {
                    Ok((command, shown)) => stdio(command, &shown, timeout).await,
                    Err(why) => Health::Failed(why),
                }
            } else if value.get("url").is_some_and(Value::is_string) {
                remote(&Request::of_entry(value), timeout).await
            } else {
                Health::Failed("neither a \"command\" nor a \"url\"".into())
            }
        }
    }
}

/// The command a stdio entry runs, as Claude Code runs it, and the name a
/// cause shows (the program, never its arguments).
fn entry_command(command: &str, value: &Value, dir: &Path) -> Result<(Command, String), String> {
    let program = expand_vars(command);
    let mut built = Command::new(&program);
    if let Some(args) = value.get("args") {
        let Some(args) = args.as_array() else {
            return Err("its \"args\" is not a list".into());
        };
        for arg in args {
            let Some(arg) = arg.as_str() else {
                return Err("its \"args\" holds a value that is not a string".into());
            };
            built.arg(expand_vars(arg));
        }
    }
    if let Some(env) = value.get("env") {
        let Some(env) = env.as_object() else {
            return Err("its \"env\" is not an object".into());
        };
        for (name, text) in env {
            let Some(text) = text.as_str() else {
                return Err(format!("its env {name} is not a string"));
            };
            built.env(name, expand_vars(text));
        }
    }
    let cwd = match value.get("cwd").and_then(Value::as_str) {
        Some(cwd) => dir.join(expand_vars(cwd)),
        None => dir.to_owned(),
    };
    built.current_dir(cwd);
    Ok((built, program))
}

/// A remote entry, probed by [`super::remote`].
async fn remote(request: &Request, timeout: Duration) -> Health {
    let limit = if request.sse() { 0 } else { BODY_LIMIT };
    let allowed =
        reqwest::Url::parse(request.url()).map(|url| check_remote_url(&url, false).is_ok());
    if allowed == Ok(false) {
        return Health::Failed("not checked: plain http to another host".into());
    }
    let reply = exchange(request, timeout, limit).await;
    let url = shown_url(request.url());
    match reply.answer {
        Answer::NeedsLogin => Health::NeedsLogin,
        Answer::Unknown(why) => Health::Failed(one_line(&why, 300)),
        Answer::Status(status) if !(200..300).contains(&status) => {
            Health::Failed(format!("HTTP {status} from {url}"))
        }
        Answer::Status(_) if request.sse() => Health::Connected,
        Answer::Status(status) => match rpc_answer(&reply.body) {
            Some(Ok(())) => Health::Connected,
            Some(Err(message)) => Health::Failed(message),
            None => Health::Failed(format!(
                "HTTP {status} from {url} without an initialize result"
            )),
        },
    }
}

/// The JSON-RPC answer in a body: a JSON one, or the first `data:` of an
/// event stream. `Ok` for a result, `Err` with an error's message.
fn rpc_answer(body: &[u8]) -> Option<Result<(), String>> {
    let text = String::from_utf8_lossy(body);
    let json = match serde_json::from_str::<Value>(text.trim()) {
        Ok(value) => value,
        Err(_) => text
            .lines()
            .find_map(|line| line.strip_prefix("data:"))
            .and_then(|data| serde_json::from_str(data.trim()).ok())?,
    };
    outcome(&json)
}

/// A JSON-RPC answer's outcome: `Ok` for a result, `Err(message)` for an
/// error; `None` when it is neither.
fn outcome(message: &Value) -> Option<Result<(), String>> {
    if message.get("result").is_some() {
        return Some(Ok(()));
    }
    let error = message.get("error")?;
    let text = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("an error without a message");
    Some(Err(one_line(text, 300)))
}

/// `text` on one line, at most `limit` characters (an ellipsis marks a cut).
fn one_line(text: &str, limit: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > limit {
        let cut: String = line.chars().take(limit).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// The `initialize` line a stdio probe writes.
fn initialize_line() -> String {
    let mut line = serde_json::json!({
        "jsonrpc": "2.0",
        "id": ID,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-manager-import-check", "version": env!("CARGO_PKG_VERSION")},
        },
    })
    .to_string();
    line.push('\n');
    line
}

/// Kills a child's whole group when dropped, unless it was reaped first.
struct GroupGuard {
    pid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            group::signal_group(pid, GroupSignal::Kill);
        }
    }
}

/// A stdio server: spawned, asked to `initialize`, stopped.
async fn stdio(mut command: Command, shown: &str, timeout: Duration) -> Health {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    group::isolate(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Health::Failed(format!("cannot run {shown}: {error}")),
    };
    let mut guard = GroupGuard { pid: child.id() };
    let last = Arc::new(Mutex::new(String::new()));
    let stderr = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(keep_last_line(stderr, Arc::clone(&last))));

    let talked = tokio::time::timeout(timeout, converse(&mut child)).await;
    // Its stdin closes here (taken in converse); then the whole group goes.
    let status = stop(&mut child, &mut guard).await;
    if let Some(task) = stderr {
        // The pipe closes once every member is gone: at once, after the kill.
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    let last_line = last.lock().map(|l| l.clone()).unwrap_or_default();
    match talked {
        Err(_) => Health::Failed(format!("no answer within {} s", timeout.as_secs())),
        Ok(Talk::Answered(Ok(()))) => Health::Connected,
        Ok(Talk::Answered(Err(message))) => Health::Failed(message),
        Ok(Talk::Closed) => {
            let how = match status {
                Some(status) => describe(status),
                None => "exited".to_owned(),
            };
            if last_line.is_empty() {
                Health::Failed(format!("{how} before answering initialize"))
            } else {
                Health::Failed(format!("{how}: {last_line}"))
            }
        }
        Ok(Talk::Broken(why)) => Health::Failed(why),
    }
}

/// How a conversation with a stdio server ended.
enum Talk {
    /// The answer to `initialize`: a result, or an error's message.
    Answered(Result<(), String>),
    /// Its stdout closed first.
    Closed,
    /// Writing failed or the output was not bounded.
    Broken(String),
}

/// Writes `initialize` and reads until its answer; closes stdin at the end.
async fn converse(child: &mut Child) -> Talk {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Talk::Broken("its stdio could not be piped".into());
    };
    if stdin.write_all(initialize_line().as_bytes()).await.is_err() || stdin.flush().await.is_err()
    {
        // It closed its stdin: it exited (or is exiting); read what is left.
    }
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    for _ in 0..MAX_LINES {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return Talk::Closed,
            Ok(_) if line.len() > MAX_LINE => {
                return Talk::Broken(format!(
                    "it wrote a line longer than {} MiB on stdout",
                    MAX_LINE >> 20
                ));
            }
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if message.get("id").and_then(Value::as_u64) != Some(ID) {
            continue;
        }
        if let Some(outcome) = outcome(&message) {
            drop(stdin);
            return Talk::Answered(outcome);
        }
    }
    Talk::Broken(format!("no answer to initialize in {MAX_LINES} lines"))
}

/// Closes in on the child: [`EXIT_GRACE`] to exit, then its whole group is
/// killed and it is reaped. Its exit status, if it exited by itself.
async fn stop(child: &mut Child, guard: &mut GroupGuard) -> Option<std::process::ExitStatus> {
    drop(child.stdin.take());
    let exited = tokio::time::timeout(EXIT_GRACE, child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    // Whatever it started goes too (the group id stays reserved while any
    // member lives, so this reaches only our own processes).
    if let Some(pid) = guard.pid.take() {
        group::signal_group(pid, GroupSignal::Kill);
    }
    if exited.is_none() {
        let _ = child.kill().await;
    }
    exited
}

/// "exited (status N)" or "killed by signal N".
fn describe(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited (status {code})");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    "exited".to_owned()
}

/// Reads `stderr` to its end, keeping its last non-empty line (cut at
/// [`STDERR_CUT`] characters) in `last`; lines are read in bounded pieces.
async fn keep_last_line(stderr: impl AsyncRead + Unpin, last: Arc<Mutex<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if !text.is_empty() {
            if let Ok(mut last) = last.lock() {
                *last = one_line(text, STDERR_CUT);
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Instant;

    use serde_json::json;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn entry(value: Value) -> Probe {
        Probe::Entry {
            value,
            dir: std::env::temp_dir(),
        }
    }

    fn one(probe: Probe, timeout: Duration) -> Health {
        let mut answers = run(&[probe], timeout);
        assert_eq!(answers.len(), 1);
        answers.remove(0)
    }

    fn memory_server() -> Option<PathBuf> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/node_modules/.bin/mcp-server-memory");
        if bin.exists() {
            Some(bin)
        } else {
            eprintln!(
                "skipped: {} is missing (install the fixtures)",
                bin.display()
            );
            None
        }
    }

    /// The real server-memory answers `initialize`: connected.
    #[test]
    fn server_memory_is_connected() {
        let Some(bin) = memory_server() else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let health = one(
            entry(json!({
                "command": bin,
                "env": {"MEMORY_FILE_PATH": dir.path().join("memory.jsonl")},
            })),
            TIMEOUT,
        );
        assert_eq!(health, Health::Connected);
        assert_eq!(health.to_string(), "✔ connected");
    }

    /// Several probes (more than run at once) come back in order.
    #[test]
    fn answers_come_back_in_order() {
        let probes: Vec<Probe> = (0..10)
            .map(|n| {
                entry(json!({"command": "sh", "args": ["-c", format!("echo n{n} >&2; exit {n}")]}))
            })
            .collect();
        let answers = run(&probes, TIMEOUT);
        for (n, answer) in answers.iter().enumerate() {
            assert_eq!(
                answer,
                &Health::Failed(format!("exited (status {n}): n{n}"))
            );
        }
    }

    /// A server that exits before answering: its status and last stderr
    /// line, with `${VAR:-default}` expanded in its env and args.
    #[test]
    fn an_exit_before_answering_shows_the_status_and_last_stderr_line() {
        let health = one(
            entry(
                json!({"command": "sh", "args": ["-c", "echo first >&2; echo boom >&2; exit 3"]}),
            ),
            TIMEOUT,
        );
        assert_eq!(health, Health::Failed("exited (status 3): boom".into()));
        assert_eq!(health.mark(), "✘");
        let health = one(
            entry(json!({
                "command": "sh",
                "args": ["-c", "echo \"$GREETING $ARG\" >&2; exit 1", "${MCP_VERIFY_TEST_UNSET:-sh}"],
                "env": {"GREETING": "${MCP_VERIFY_TEST_UNSET:-hello}", "ARG": "x"},
            })),
            TIMEOUT,
        );
        assert_eq!(health, Health::Failed("exited (status 1): hello x".into()));
        let long = "y".repeat(500);
        let health = one(
            entry(json!({"command": "sh", "args": ["-c", format!("echo {long} >&2; exit 2")]})),
            TIMEOUT,
        );
        let Health::Failed(cause) = health else {
            panic!("{health:?}")
        };
        assert!(cause.chars().count() < 240, "{cause}");
    }

    /// A program that is not there.
    #[test]
    fn a_missing_command_fails() {
        let health = one(
            entry(json!({"command": "mcp-verify-no-such-program"})),
            TIMEOUT,
        );
        let Health::Failed(cause) = health else {
            panic!("{health:?}")
        };
        assert!(
            cause.starts_with("cannot run mcp-verify-no-such-program"),
            "{cause}"
        );
    }

    /// A JSON-RPC error answer is the cause; notifications and other lines
    /// before it are skipped.
    #[test]
    fn an_error_answer_is_the_cause() {
        let script = r#"read line; echo 'not json'; echo '{"jsonrpc":"2.0","method":"notifications/message","params":{}}'; echo '{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"no such server: run `mcp-manager add x`"}}'; sleep 60"#;
        let started = Instant::now();
        let health = one(
            entry(json!({"command": "sh", "args": ["-c", script]})),
            TIMEOUT,
        );
        assert_eq!(
            health,
            Health::Failed("no such server: run `mcp-manager add x`".into())
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A server that never answers: the timeout, and nothing it started is
    /// left (neither it nor its child).
    #[test]
    fn a_silent_server_times_out_and_leaves_no_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let script = format!("sleep 60 & echo $$ $! > '{}'; wait", pids.display());
        let health = one(
            entry(json!({"command": "sh", "args": ["-c", script]})),
            Duration::from_secs(1),
        );
        assert_eq!(health, Health::Failed("no answer within 1 s".into()));
        let text = std::fs::read_to_string(&pids).expect("the script wrote its pids");
        let pids: Vec<u32> = text
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect();
        assert_eq!(pids.len(), 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|&pid| crate::process::is_alive(pid)) {
            assert!(Instant::now() < deadline, "left behind: {pids:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A loopback HTTP server answering every connection with `response`
    /// (at most `count` connections); its URL.
    fn serve(runtime: &tokio::runtime::Runtime, count: usize, response: String) -> String {
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        runtime.spawn(async move {
            for _ in 0..count {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let response = response.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    // The request's head and body (a small initialize).
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let _ = socket.write_all(response.as_bytes()).await;
                    // Keep it open a while, as an event stream would.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        format!("http://127.0.0.1:{port}/mcp")
    }

    fn http(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// 401 with `WWW-Authenticate`: needs a login.
    #[test]
    fn an_oauth_server_needs_login() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let url = serve(
            &runtime,
            1,
            http(
                "401 Unauthorized",
                "www-authenticate: Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource\"\r\n",
                "",
            ),
        );
        let health = one(entry(json!({"type": "http", "url": url})), TIMEOUT);
        assert_eq!(health, Health::NeedsLogin);
        assert_eq!(health.to_string(), "! needs login");
    }

    /// An initialize result, as JSON or as an event stream that stays open.
    #[test]
    fn a_remote_that_answers_initialize_is_connected() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let result = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}"#;
        let url = serve(
            &runtime,
            1,
            http("200 OK", "content-type: application/json\r\n", result),
        );
        let health = one(
            entry(
                json!({"type": "http", "url": url, "headers": {"Authorization": "Bearer ${MCP_VERIFY_TEST_UNSET:-x}"}}),
            ),
            TIMEOUT,
        );
        assert_eq!(health, Health::Connected);
        let stream = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: message\ndata: {result}\n\n"
        );
        let url = serve(&runtime, 1, stream);
        let started = Instant::now();
        let health = one(entry(json!({"type": "http", "url": url})), TIMEOUT);
        assert_eq!(health, Health::Connected);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "waited for the stream's end"
        );
    }

    /// Another status: the status and the URL without its query; a 200
    /// without a result is no connection either.
    #[test]
    fn another_answer_fails_without_the_query() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let url = serve(&runtime, 1, http("404 Not Found", "", ""));
        let health = one(
            entry(json!({"url": format!("{url}?token=secret")})),
            TIMEOUT,
        );
        let Health::Failed(cause) = &health else {
            panic!("{health:?}")
        };
        assert!(
            cause.starts_with("HTTP 404 from http://127.0.0.1:"),
            "{cause}"
        );
        assert!(!cause.contains("secret"), "{cause}");
        let url = serve(
            &runtime,
            1,
            http("200 OK", "content-type: text/html\r\n", "<html>"),
        );
        let health = one(entry(json!({"type": "http", "url": url})), TIMEOUT);
        assert!(
            matches!(&health, Health::Failed(c) if c.contains("without an initialize result")),
            "{health:?}"
        );
    }

    /// The built proxy with an unknown target: its refusal is the cause.
    #[test]
    fn the_proxy_refusal_is_the_cause() {
        let proxy = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/mcp-proxy");
        if !proxy.exists() {
            eprintln!("skipped: {} is not built", proxy.display());
            return;
        }
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            home.path().join("config.json"),
            r#"{"mcpServers": {"memory": {"command": "true", "port": 3999}}}"#,
        )
        .expect("config");
        let health = one(
            Probe::Proxy {
                proxy,
                target: "memroy".into(),
                home: home.path().to_owned(),
            },
            TIMEOUT,
        );
        let Health::Failed(cause) = &health else {
            panic!("{health:?}")
        };
        assert!(
            cause.contains("unknown target") && cause.contains("`memory`"),
            "{cause}"
        );
    }

    /// Plain http to another host is not probed (its headers would cross
    /// the network in clear).
    #[test]
    fn plain_http_elsewhere_is_not_checked() {
        let health = one(
            entry(json!({"type": "http", "url": "http://192.0.2.1/mcp"})),
            TIMEOUT,
        );
        assert_eq!(
            health,
            Health::Failed("not checked: plain http to another host".into())
        );
    }
}
