//! Safe by construction (issue 13): the manager harms nothing it did not
//! start (a record is believed only when its process, start time and port
//! agree), leaves nothing behind when stopped mid-start, and the proxy sends
//! nothing to a listener of another user. Real binaries, real servers; the
//! other user is a throwaway one (root only, else skipped).

#![cfg(unix)]

use std::time::Duration;

use mcp_session_manager::process;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::util::{
    ManagerProcess, Mode, Proxy, TestHome, everything_daemon_entry, free_port,
    hosted_everything_entry, manager_config, port_answers, wait_for_port,
};

/// A process unrelated to the tool, killed when dropped.
fn sleeper() -> Child {
    Command::new("sleep")
        .arg("1000")
        .kill_on_drop(true)
        .spawn()
        .expect("start sleep")
}

/// `python3 -m http.server` of this user on `port`: a program that is not
/// a daemon of ours.
async fn http_server(port: u16) -> Child {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 -m http.server");
    wait_for_port(port, Duration::from_secs(20)).await;
    child
}

fn write_record(home: &TestHome, name: &str, record: &Value) {
    std::fs::write(
        home.path().join(format!("{name}.lock")),
        serde_json::to_vec_pretty(record).expect("json"),
    )
    .expect("write the record");
}

fn read_record(home: &TestHome, name: &str) -> Option<Value> {
    let bytes = std::fs::read(home.path().join(format!("{name}.lock"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// The original npm format (no `processStart`) naming unrelated live
/// processes: a foreign `http.server` on the configured port, and a `sleep`.
/// Neither is adopted or signalled; the status says what is in the way; a
/// daemon whose port is free starts anyway. See: issue 13, item 1.
#[tokio::test]
async fn an_original_format_record_naming_unrelated_processes_is_never_adopted_or_signalled() {
    let home = TestHome::new();
    let (port, web, other) = (free_port(), free_port(), free_port());
    let mut foreign = http_server(web).await;
    let mut sleep = sleeper();
    let foreign_pid = foreign.id().expect("running");
    let sleep_pid = sleep.id().expect("running");
    home.write_config(&manager_config(
        port,
        json!({
            "web": everything_daemon_entry(web, Mode::StreamableHttp),
            "other": everything_daemon_entry(other, Mode::StreamableHttp),
        }),
    ));
    let original = |pid: u32, port: u16| json!({"pid": pid, "port": port, "startedAt": 1_700_000_000_000_u64, "transport": "streamable-http"});
    write_record(&home, "web", &original(foreign_pid, web));
    write_record(&home, "other", &original(sleep_pid, other));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let failed = manager
        .wait_status("web", Duration::from_secs(20), "failed", |s| {
            s["state"] == "failed"
        })
        .await;
    let error = failed["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("port {web}")) && error.contains("http.server"),
        "the status names the port and its holder: {failed}"
    );
    assert_eq!(failed["adopted"], false, "{failed}");
    let up = manager.wait_running("other").await;
    assert_eq!(up["adopted"], false, "{up}");
    assert_ne!(up["pid"], json!(sleep_pid), "{up}");
    assert_eq!(
        read_record(&home, "other").expect("other.lock")["port"],
        json!(other)
    );
    // Several health checks (every 0.5 s) later, both are still alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alive(&mut foreign), "the foreign http.server was signalled");
    assert!(
        alive(&mut sleep),
        "the sleep named by a stale record was signalled"
    );
    let still = manager.status_of("web").await;
    assert_eq!(still["running"], false, "{still}");
}

/// A record naming pid 1, even with pid 1's true start time: nothing is
/// signalled, the daemon is started anyway, and the status says why the
/// record was not believed.
#[tokio::test]
async fn a_record_naming_pid_1_signals_nothing() {
    let home = TestHome::new();
    let (port, web) = (free_port(), free_port());
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
    ));
    write_record(
        &home,
        "web",
        &json!({"pid": 1, "port": web, "startedAt": 1, "transport": "streamable-http",
                "processStart": process::start_time(1)}),
    );
    let init_start = process::start_time(1);
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let up = manager.wait_running("web").await;
    assert_eq!(up["adopted"], false, "{up}");
    assert_ne!(up["pid"], json!(1), "{up}");
    assert!(
        up["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("pid 1")),
        "{up}"
    );
    assert_eq!(process::start_time(1), init_start, "pid 1 is the same");
}

/// A record of a live process of ours (with its true start time) on a port
/// the config no longer names: it blocks nothing; the daemon starts on the
/// configured port, and the process is left alone (it never held a port).
#[tokio::test]
async fn a_stale_record_on_another_port_does_not_block_the_daemon() {
    let home = TestHome::new();
    let (port, web, old) = (free_port(), free_port(), free_port());
    let mut sleep = sleeper();
    let pid = sleep.id().expect("running");
    home.write_config(&manager_config(
        port,
        json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
    ));
    write_record(
        &home,
        "web",
        &json!({"pid": pid, "port": old, "startedAt": 1, "transport": "streamable-http",
                "processStart": process::start_time(pid)}),
    );
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let up = manager.wait_running("web").await;
    assert_ne!(up["pid"], json!(pid), "{up}");
    assert!(port_answers(web).await);
    assert_eq!(
        read_record(&home, "web").expect("web.lock")["port"],
        json!(web)
    );
    assert!(
        alive(&mut sleep),
        "the process of the stale record was signalled"
    );
}

/// Waits (≤ 10 s) until nothing started for `home` runs and no daemon
/// record is left; what is left otherwise.
#[cfg(target_os = "linux")]
async fn nothing_left(home: &TestHome, names: &[&str]) {
    let path = home.path().to_owned();
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let running = crate::util::processes_of_home(&path);
            if running.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let running: Vec<(u32, Vec<String>)> = crate::util::processes_of_home(home.path())
        .into_iter()
        .map(|pid| (pid, crate::util::process_cmdline(pid)))
        .collect();
    for (pid, _) in &running {
        crate::util::send_signal(*pid, libc::SIGKILL);
    }
    assert!(left.is_ok(), "left running: {running:?}");
    for name in names {
        assert!(read_record(home, name).is_none(), "{name}.lock was left");
    }
}

/// SIGTERM to the manager while it starts a daemon (at several points of
/// the start): no daemon process and no record are left. See: issue 13,
/// item 2.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sigterm_during_a_start_leaves_no_daemon_and_no_record() {
    for delay_ms in [50, 200, 400] {
        let home = TestHome::new();
        let (port, web) = (free_port(), free_port());
        home.write_config(&manager_config(
            port,
            json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)}),
        ));
        let mut manager = ManagerProcess::start(&home, port, &[]).await;
        let start = manager
            .request(reqwest::Method::POST, "/start")
            .header("content-type", "application/json")
            .body(json!({"name": "web"}).to_string())
            .send();
        let asked = tokio::spawn(start);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        manager.stop().await;
        let _ = asked.await;
        nothing_left(&home, &["web"]).await;
    }
}

/// `--start-all` and SIGTERM at once, a hosted server among the daemons:
/// no host, no child of a host, no daemon and no record is left.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn start_all_then_sigterm_at_once_leaves_nothing() {
    for _ in 0..2 {
        let home = TestHome::new();
        let (port, web, hosted) = (free_port(), free_port(), free_port());
        home.write_config(&manager_config(
            port,
            json!({
                "web": everything_daemon_entry(web, Mode::StreamableHttp),
                "hosted": hosted_everything_entry(hosted),
            }),
        ));
        let mut manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
        manager.stop().await;
        nothing_left(&home, &["web", "hosted"]).await;
    }
}

/// The client's `initialize`, answered.
async fn initialize(proxy: &mut Proxy) -> Value {
    proxy
        .request(
            json!(0),
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "safety", "version": "0"}}),
        )
        .await
}

/// Another user listens on a lazy daemon's port: the proxy sends it
/// nothing (not even a connect), and the client's `initialize` gets an error
/// naming the port and that it is another user's. See: issue 13, item 4.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_stranger_on_a_daemons_port_is_sent_nothing() {
    use crate::util::{ForeignUser, StrangerListener};
    let Some(user) = ForeignUser::create("port") else {
        return;
    };
    let web = free_port();
    let Some(stranger) = StrangerListener::start(&user, web).await else {
        return;
    };
    let home = TestHome::new();
    let mut entry = everything_daemon_entry(web, Mode::StreamableHttp);
    entry["lazy"] = json!(true);
    entry["headers"] = json!({"Authorization": "Bearer secret-of-the-victim"});
    home.write_config(&json!({"mcpServers": {"web": entry}}));
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "web",
            "--manager-port",
            &free_port().to_string(),
        ],
    );
    let answer = initialize(&mut proxy).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("127.0.0.1:{web}")) && message.contains("another user"),
        "{answer}"
    );
    let received = stranger.received().await;
    assert!(
        received.iter().all(|&n| n == 0),
        "the stranger was sent bytes: {received:?}"
    );
    assert!(
        received.is_empty(),
        "the stranger was connected to: {received:?}"
    );
    drop(proxy);
}

/// Another user listens on the manager's port: it gets no `/ping` and no
/// `/ensure` (it could redirect every name); the proxy starts the daemon
/// itself and the session works.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_stranger_on_the_manager_port_cannot_redirect_ensure() {
    use crate::util::{ForeignUser, StrangerListener};
    let Some(user) = ForeignUser::create("mgr") else {
        return;
    };
    let manager_port = free_port();
    let Some(stranger) = StrangerListener::start(&user, manager_port).await else {
        return;
    };
    let home = TestHome::new();
    let web = free_port();
    let mut entry = everything_daemon_entry(web, Mode::StreamableHttp);
    entry["lazy"] = json!(true);
    home.write_config(&json!({"mcpServers": {"web": entry}}));
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "web",
            "--manager-port",
            &manager_port.to_string(),
        ],
    );
    let answer = initialize(&mut proxy).await;
    let received = stranger.received().await;
    drop(proxy);
    // The daemon the proxy started (detached) goes with the test.
    let daemons = crate::util::processes_of_home(home.path());
    for pid in &daemons {
        crate::util::send_signal(*pid, libc::SIGKILL);
    }
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(
        received.iter().all(|&n| n == 0),
        "the stranger on the manager port was sent bytes: {received:?}"
    );
}

/// A program of this user on a hosted server's port is not its host: the
/// proxy sends it no MCP, and says so.
#[tokio::test]
async fn a_program_on_a_hosted_servers_port_that_is_not_its_host_gets_no_session() {
    let home = TestHome::new();
    let hosted = free_port();
    let _other = http_server(hosted).await;
    home.write_config(&json!({"mcpServers": {"hosted": hosted_everything_entry(hosted)}}));
    let mut proxy = Proxy::start(
        &home,
        &[
            "--target",
            "hosted",
            "--manager-port",
            &free_port().to_string(),
        ],
    );
    let answer = initialize(&mut proxy).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("127.0.0.1:{hosted}"))
            && message.contains("not this server's host"),
        "{answer}"
    );
}

/// `mcp-manager status`, `stop NAME` and friends never talk to another
/// user's program on the manager's port: it is sent nothing, and the error
/// names the holder and the fix.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_cli_sends_nothing_to_a_stranger_on_the_manager_port() {
    use crate::util::{ForeignUser, StrangerListener, run_manager_cli};
    let Some(user) = ForeignUser::create("cli") else {
        return;
    };
    let manager_port = free_port();
    let Some(stranger) = StrangerListener::start(&user, manager_port).await else {
        return;
    };
    let home = TestHome::new();
    home.write_config(&json!({"managerPort": manager_port, "mcpServers": {}}));
    let mut outputs = Vec::new();
    for args in [&["status"][..], &["stop", "web"][..]] {
        outputs.push(run_manager_cli(&home, args, &[]).await);
    }
    let received = stranger.received().await;
    assert!(
        received.iter().all(|&n| n == 0),
        "the stranger on the manager port was sent bytes: {received:?}"
    );
    for (code, _, stderr) in outputs {
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains("not by your mcp-manager") && stderr.contains("uid"),
            "the error does not name the holder: {stderr}"
        );
    }
}
