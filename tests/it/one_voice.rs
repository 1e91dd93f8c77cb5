//! One voice: what the manager says of a hosted server is what its host
//! says of its child, in `/status`, `/events`, `mcp-manager status` and
//! `doctor --json`; and a daemon whose port a stranger holds shows that as
//! its state and error, nothing sent to the stranger. Real binaries: a
//! crasher written by the test (python3, exit 3), server-everything,
//! `python3 -m http.server`.

#![cfg(unix)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::util::{
    ManagerProcess, TestHome, free_port, hosted_everything_entry, manager_config, run_manager_cli,
    send_signal, wait_for_port,
};

/// How soon every view must show what the host knows.
const BOUND: Duration = Duration::from_secs(15);

/// `/events` as (event name, data) pairs, read on a task.
async fn events(manager: &ManagerProcess) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let response = manager
        .request(Method::GET, "/events")
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("/events answers");
    assert_eq!(response.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Ok(value) = serde_json::from_str::<Value>(&data)
                    && tx.send((name, value)).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits (≤ `bound`) for a `state` event of `name` that `wanted` accepts.
async fn event_where(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    name: &str,
    bound: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let next = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no such state event of {name} within {bound:?}"))
            .expect("the event stream stays open");
        if next.0 == "state" && next.1["name"] == name && wanted(&next.1) {
            return next.1;
        }
    }
}

/// A stdio server that cannot start: says why on stderr, exits 3.
fn crasher(home: &TestHome) -> String {
    let script = home.path().join("crasher.py");
    std::fs::write(
        &script,
        "import sys\nprint('fatal: DATABASE_URL is not set', file=sys.stderr)\nsys.exit(3)\n",
    )
    .expect("write the crasher");
    script.to_string_lossy().into_owned()
}

/// A hosted server whose child exits at start is `crash-loop` (never
/// `running`) within the bound, with the child's reason, in `/status`,
/// `/events`, `mcp-manager status` and `doctor --json` (a problem whose
/// fix is its log).
#[tokio::test]
async fn a_hosted_server_that_exits_at_start_is_a_crash_loop_in_every_view() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    let script = crasher(&home);
    home.write_config(&manager_config(
        manager_port,
        json!({"crasher": {"command": "python3", "args": [script], "port": port}}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let mut events = events(&manager).await;
    let started_at = tokio::time::Instant::now();
    let (status, body) = manager.post("/start", "crasher").await;
    assert_eq!(status, 200, "{body}");

    let looping = manager
        .wait_status("crasher", BOUND, "crash-loop", |s| {
            s["state"] == "crash-loop"
        })
        .await;
    eprintln!(
        "crash-loop shown {:?} after the start",
        started_at.elapsed()
    );
    let error = looping["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("exit status: 3"), "{looping}");
    // The host says it is a crash loop after the first failed start (an
    // older host: the manager counts three).
    assert!(looping["restarts"].as_u64() >= Some(1), "{looping}");
    assert_eq!(looping["child"]["state"], "crash-loop", "{looping}");
    assert!(looping["child"]["lastReason"].is_string(), "{looping}");
    // A host that says its child's stderr: the manager says it too.
    if let Some(stderr) = looping["child"]["lastStderr"].as_array() {
        assert!(
            stderr
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.contains("DATABASE_URL"))),
            "{looping}"
        );
        assert!(error.contains("DATABASE_URL"), "{looping}");
    }
    let heard = event_where(&mut events, "crasher", BOUND, |s| {
        s["state"] == "crash-loop"
    })
    .await;
    assert!(
        heard["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 3")),
        "{heard}"
    );
    let listed = manager.daemons().await;
    let listed = listed
        .iter()
        .find(|d| d["name"] == "crasher")
        .expect("listed");
    assert_eq!(listed["state"], "crash-loop", "{listed}");

    let port_arg = manager_port.to_string();
    let (code, out, err) = run_manager_cli(&home, &["--port", &port_arg, "status"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("crasher "))
        .unwrap_or_else(|| panic!("no row: {out}"));
    assert!(
        row.contains("crash-loop") && row.contains("exit status: 3"),
        "{out}"
    );
    assert!(out.contains("`mcp-manager logs crasher`"), "{out}");

    let user_home = home.path().join("user");
    std::fs::create_dir_all(&user_home).expect("a user home");
    let (_, out, err) = run_manager_cli(
        &home,
        &["--port", &port_arg, "doctor", "--json"],
        &[("HOME", user_home.as_path())],
    )
    .await;
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("doctor --json ({e}): {out}{err}"));
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let check = checks
        .iter()
        .find(|c| c["name"] == "daemon crasher")
        .unwrap_or_else(|| panic!("no check of crasher: {report}"));
    assert_eq!(check["status"], "problem", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains("crash-loop") && d.contains("exit status: 3")),
        "{check}"
    );
    assert!(
        check["fix"]
            .as_str()
            .is_some_and(|f| f.contains("mcp-manager logs crasher")),
        "{check}"
    );
}

/// A hosted server-everything whose child is killed is `restarting`, then
/// `running` again with the restart counted, and its child's new pid.
#[tokio::test]
async fn a_killed_child_shows_restarting_then_running_with_its_restart() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    home.write_config(&manager_config(
        manager_port,
        json!({"everything": hosted_everything_entry(port)}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &["--start-all"]).await;
    manager.wait_running("everything").await;
    let up = manager
        .wait_status("everything", BOUND, "its child running", |s| {
            s["child"]["state"] == "running" && s["child"]["pid"].is_u64()
        })
        .await;
    let child = up["child"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("a pid");
    let restarts_before = up["restarts"].as_u64().unwrap_or(0);
    let mut events = events(&manager).await;
    assert!(send_signal(child, libc::SIGKILL), "kill the child {child}");
    let again = event_where(&mut events, "everything", BOUND, |s| {
        s["state"] == "restarting"
    })
    .await;
    assert!(
        again["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{again}"
    );
    assert_eq!(again["running"], true, "its host runs: {again}");
    let back = event_where(&mut events, "everything", BOUND, |s| {
        s["state"] == "running" && s["child"]["state"] == "running"
    })
    .await;
    assert!(
        back["restarts"].as_u64() >= Some(restarts_before + 1),
        "{back}"
    );
    assert_ne!(
        back["child"]["pid"].as_u64(),
        Some(u64::from(child)),
        "{back}"
    );
    assert_eq!(back["pid"], up["pid"], "the same host: {back}");
}

/// A program that is not the daemon on its port (`python3 -m http.server`,
/// this user's): the daemon is `failed` with the holder's pid and command
/// line, at the manager's start and after `/ensure`, and the stranger
/// received no request at all.
#[tokio::test]
async fn a_port_held_by_a_stranger_is_the_daemons_state_and_error() {
    let home = TestHome::new();
    let manager_port = free_port();
    let port = free_port();
    let log = home.path().join("stranger.log");
    let mut stranger = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("its log")))
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m http.server");
    let holder = stranger.id().expect("its pid");
    wait_for_port(port, Duration::from_secs(10)).await;
    home.write_config(&manager_config(
        manager_port,
        json!({"memory": hosted_everything_entry(port)}),
    ));
    let manager = ManagerProcess::start(&home, manager_port, &[]).await;
    let names_holder = |s: &Value| {
        s["state"] == "failed"
            && s["lastError"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("pid {holder}")) && e.contains("http.server"))
    };
    let failed = manager
        .wait_status("memory", BOUND, "failed, naming the holder", names_holder)
        .await;
    assert_eq!(failed["running"], false, "{failed}");
    let (status, body) = manager.post("/ensure", "memory").await;
    assert!(
        !status.is_success() || body["running"] == false,
        "{status} {body}"
    );
    let after = manager.status_of("memory").await;
    assert!(names_holder(&after), "{after}");
    let port_arg = manager_port.to_string();
    let (_, out, _) = run_manager_cli(&home, &["--port", &port_arg, "status"], &[]).await;
    assert!(
        out.contains("failed") && out.contains(&format!("pid {holder}")),
        "{out}"
    );
    // The stranger logs every request it gets: none came.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stranger.start_kill();
    let _ = stranger.wait().await;
    let received = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !received.contains("HTTP/1"),
        "the stranger received a request: {received}"
    );
    drop(manager);
    assert!(!Path::new(&home.path().join("memory.lock")).exists());
}
