//! Quiet pipes (issue 14, part 6): every `mcp-manager` command whose
//! output is piped into a reader that goes away (`| head -1`) ends with
//! status 0 and no panic text, as ripgrep does; it used to panic "failed
//! printing to stdout: Broken pipe" (exit 134).
//!
//! The reader closes its end before the command writes (the case that
//! always hits the closed pipe), and, for a command that prints several
//! lines, after the first line (what `head -1` does).
//!
//! Unix only: a closed pipe is EPIPE there (the manager runs under the
//! test's helpers, which signal processes).

#![cfg(unix)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::util::{ManagerProcess, TestHome, free_port, manager_bin, manager_config};

/// Longest run of one command.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the reader of stdout goes away.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// Closed before anything is written.
    ClosedAtOnce,
    /// Closed after the first line.
    OneLine,
}

/// Runs `mcp-manager ARGS` with its stdout read by `reader`; its exit code
/// and stderr.
async fn run_into(home: &TestHome, args: &[&str], reader: Reader) -> (Option<i32>, String) {
    let user = tempfile::tempdir().expect("HOME");
    let mut command = Command::new(manager_bin());
    command
        .args(args)
        .current_dir(user.path())
        .env("HOME", user.path())
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("run mcp-manager");
    let stdout = child.stdout.take().expect("stdout");
    match reader {
        Reader::ClosedAtOnce => drop(stdout),
        Reader::OneLine => {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            tokio::time::timeout(TIMEOUT, lines.read_line(&mut first))
                .await
                .unwrap_or_else(|_| panic!("mcp-manager {args:?} printed no line"))
                .expect("read a line");
            assert!(!first.is_empty(), "mcp-manager {args:?} printed nothing");
            drop(lines);
        }
    }
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("mcp-manager {args:?} did not end"))
        .expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `status`, `status --json`, `start`, `stop`, `restart`, `logs`, `doctor`,
/// `doctor --json`, `import --dry-run`, `generate-config --print` and
/// `--help`, each into a closed pipe and into a reader of one line: exit 0,
/// no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_piped_into_head_ends_quietly() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    // A daemon that is never started (a `port` only: started by hand).
    home.write_config(&manager_config(
        manager_port,
        serde_json::json!({ "byhand": { "port": port } }),
    ));
    std::fs::write(
        home.path().join("byhand.log"),
        "one\ntwo\nthree\nfour\n".repeat(2000),
    )
    .expect("write a log");
    let source = home.path().join("servers.json");
    std::fs::write(
        &source,
        r#"{"mcpServers": {"echo": {"command": "echo", "args": ["x"]}}}"#,
    )
    .expect("write an import source");
    let source = source.to_string_lossy().into_owned();
    let _manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let commands: [&[&str]; 12] = [
        &["status"],
        &["status", "--json"],
        &["stop", "byhand"],
        &["logs", "byhand", "-n", "8000"],
        &["doctor"],
        &["doctor", "--json"],
        &["import", "--from", &source, "--dry-run"],
        &["generate-config", "--print"],
        &["generate-config", "--print", "--scope", "user"],
        &["--help"],
        &["start", "--help"],
        &["--version"],
    ];
    for args in commands {
        for reader in [Reader::ClosedAtOnce, Reader::OneLine] {
            let (code, stderr) = run_into(&home, args, reader).await;
            assert!(
                !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "mcp-manager {args:?} ({reader:?}) complained: {stderr}"
            );
            if matches!(reader, Reader::ClosedAtOnce) {
                assert_eq!(
                    code,
                    Some(0),
                    "mcp-manager {args:?} into a closed pipe: {stderr}"
                );
            }
        }
    }
}
