//! A living config: a manager already running when config.json changes.
//! Entries are added, changed and removed by writing the file the way
//! editors do (a temporary renamed over it; truncate and write in place),
//! and checked with real proxies against real servers; a typo keeps the
//! last good config and is reported; SIGHUP and `mcp-manager reload`
//! reload; `mcp-manager shutdown` leaves no process or lock.

#![cfg(unix)]

use std::time::Duration;

use mcp_session_manager::process;
use reqwest::Method;
use serde_json::{Value, json};

use crate::util::{
    ManagerProcess, Mode, Proxy, TestHome, everything_daemon_entry, free_port,
    hosted_everything_entry, manager_config, port_answers, run_manager_cli, tool_text, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

/// Writes config.json as most editors save: a temporary file renamed over
/// it.
fn save_by_rename(home: &TestHome, config: &Value) {
    let temp = home.path().join(".config.json.swp");
    std::fs::write(&temp, serde_json::to_vec_pretty(config).expect("json")).expect("write temp");
    std::fs::rename(&temp, home.path().join("config.json")).expect("rename over config.json");
}

/// Writes config.json in place: truncated, then written (vi's
/// `backupcopy=yes`, `>` in a shell).
fn save_in_place(home: &TestHome, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(home.path().join("config.json"))
        .expect("open config.json");
    file.write_all(text.as_bytes()).expect("write config.json");
}

async fn echo(proxy: &mut Proxy, id: u64, message: &str) -> String {
    let answer = proxy
        .request(
            json!(id),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": message}}),
        )
        .await;
    tool_text(&answer)
}

fn proxy_for(home: &TestHome, name: &str, manager_port: u16) -> Proxy {
    Proxy::start(
        home,
        &[
            "--target",
            name,
            "--manager-port",
            &manager_port.to_string(),
        ],
    )
}

async fn config_of(manager: &ManagerProcess) -> Value {
    let (status, body) = manager.api(Method::GET, "/status", None).await;
    assert_eq!(status, 200, "{body}");
    body["config"].clone()
}

fn names(daemons: &[Value]) -> Vec<String> {
    daemons
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect()
}

fn lock_file(home: &TestHome, name: &str) -> std::path::PathBuf {
    home.path().join(format!("{name}.lock"))
}

/// An entry added while the manager runs is served at once: a proxy for it
/// initializes and calls a tool without any restart, whether the manager
/// has seen the file change yet or not.
#[tokio::test]
async fn an_entry_added_to_the_file_is_served_at_once() {
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    let mut servers = json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)});
    home.write_config(&manager_config(port, servers.clone()));
    let manager = ManagerProcess::start(&home, port, &[]).await;
    let before = manager.daemons().await;
    assert_eq!(names(&before), ["web"]);

    let added = free_port();
    servers["added"] = hosted_everything_entry(added);
    save_by_rename(&home, &manager_config(port, servers));
    // At once: no wait for the watcher.
    let mut proxy = proxy_for(&home, "added", port);
    proxy.initialize().await;
    assert!(
        echo(&mut proxy, 1, "hello added")
            .await
            .contains("hello added")
    );
    let status = manager.wait_running("added").await;
    assert_eq!(status["port"], json!(added), "{status}");
    assert_eq!(names(&manager.daemons().await), ["added", "web"]);
    let config = config_of(&manager).await;
    assert!(config["reloadedAt"].is_u64(), "{config}");
    assert!(config.get("error").is_none(), "{config}");
}

/// A removed entry's daemon is stopped, its lock removed, and its name
/// unknown from then on; the other entries are untouched.
#[tokio::test]
async fn a_removed_entry_is_stopped_and_its_lock_removed() {
    let home = TestHome::new();
    let port = free_port();
    let (web, kept) = (free_port(), free_port());
    let servers = json!({
        "web": everything_daemon_entry(web, Mode::StreamableHttp),
        "kept": everything_daemon_entry(kept, Mode::StreamableHttp),
    });
    home.write_config(&manager_config(port, servers.clone()));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let web_pid = manager.wait_running("web").await["pid"]
        .as_u64()
        .expect("pid");
    let kept_pid = manager.wait_running("kept").await["pid"]
        .as_u64()
        .expect("pid");
    assert!(lock_file(&home, "web").exists());

    let mut fewer = servers.clone();
    fewer.as_object_mut().expect("object").remove("web");
    save_in_place(
        &home,
        &serde_json::to_string_pretty(&manager_config(port, fewer)).expect("json"),
    );
    wait_until(WAIT, "web is gone", || async {
        let gone = !names(&manager.daemons().await).contains(&"web".to_owned())
            && !lock_file(&home, "web").exists()
            && !process::is_alive(u32::try_from(web_pid).ok()?)
            && !port_answers(web).await;
        gone.then_some(())
    })
    .await;
    let (status, answer) = manager.post("/ensure", "web").await;
    assert_eq!(status, 404, "{answer}");
    let kept_now = manager.status_of("kept").await;
    assert_eq!(
        kept_now["pid"],
        json!(kept_pid),
        "kept was touched: {kept_now}"
    );
}

/// A changed entry is restarted under its new entry, an unchanged one is
/// not, and a proxy session open on the changed one goes on as after a
/// crash: its next call is answered by the new daemon.
#[tokio::test]
async fn a_changed_entry_is_restarted_and_its_open_session_recovers() {
    let home = TestHome::new();
    let port = free_port();
    let (hosted, web) = (free_port(), free_port());
    let mut servers = json!({
        "hosted": hosted_everything_entry(hosted),
        "web": everything_daemon_entry(web, Mode::StreamableHttp),
    });
    home.write_config(&manager_config(port, servers.clone()));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let web_pid = manager.wait_running("web").await["pid"].clone();
    let mut proxy = proxy_for(&home, "hosted", port);
    proxy.initialize().await;
    assert!(echo(&mut proxy, 1, "before").await.contains("before"));
    let old_pid = manager.wait_running("hosted").await["pid"].clone();

    servers["hosted"]["env"] = json!({"MCP_TEST_CHANGED": "1"});
    save_by_rename(&home, &manager_config(port, servers));
    wait_until(WAIT, "hosted restarted", || async {
        let status = manager.status_of("hosted").await;
        (status["state"] == "running" && status["pid"] != old_pid).then_some(())
    })
    .await;
    assert!(echo(&mut proxy, 2, "after").await.contains("after"));
    let web_now = manager.status_of("web").await;
    assert_eq!(
        web_now["pid"], web_pid,
        "an unchanged entry was restarted: {web_now}"
    );
}

/// A config that does not parse is not applied: the daemons run on, and
/// `/status`, `mcp-manager status` (exit 0) and `mcp-manager reload` say
/// what is wrong (file, line, column); fixing the file applies it.
#[tokio::test]
async fn a_broken_config_keeps_the_last_good_one_and_says_why() {
    let home = TestHome::new();
    let port = free_port();
    let web = free_port();
    let servers = json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)});
    let good = serde_json::to_string_pretty(&manager_config(port, servers.clone())).expect("json");
    home.write_raw_config(&good);
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let pid = manager.wait_running("web").await["pid"].clone();

    // A trailing comma.
    let broken = good.trim_end().trim_end_matches('}').to_owned() + ",\n}\n";
    save_in_place(&home, &broken);
    let config = wait_until(WAIT, "the error shown", || async {
        let config = config_of(&manager).await;
        config["error"].is_string().then_some(config)
    })
    .await;
    let error = config["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("config.json") && error.contains("line") && error.contains("column"),
        "{error}"
    );
    assert!(error.contains("last good config keeps running"), "{error}");
    assert_eq!(
        manager.status_of("web").await["pid"],
        pid,
        "the daemon was touched"
    );

    let (code, out, err) = run_manager_cli(&home, &["status"], &[]).await;
    assert_eq!(code, 0, "status: {out}{err}");
    assert!(out.contains("config error, not applied"), "{out}");
    assert!(out.contains("web"), "{out}");
    let (code, out, _) = run_manager_cli(&home, &["reload"], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("not applied: "), "{out}");

    save_in_place(&home, &good);
    wait_until(WAIT, "the error cleared", || async {
        config_of(&manager)
            .await
            .get("error")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(manager.status_of("web").await["pid"], pid);
}

/// SIGHUP reloads (and does not end the manager); `mcp-manager reload`
/// says what changed.
#[tokio::test]
async fn sighup_and_the_reload_command_read_the_file_again() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(port, json!({})));
    let manager = ManagerProcess::start(&home, port, &[]).await;
    assert!(config_of(&manager).await.get("reloadedAt").is_none());
    manager.signal(libc::SIGHUP);
    wait_until(WAIT, "a reload", || async {
        config_of(&manager).await["reloadedAt"]
            .is_u64()
            .then_some(())
    })
    .await;
    let (status, ping) = manager.api(Method::GET, "/ping", None).await;
    assert_eq!(status, 200, "the manager ended on SIGHUP: {ping}");

    let web = free_port();
    let servers = json!({"web": everything_daemon_entry(web, Mode::StreamableHttp)});
    save_by_rename(&home, &manager_config(port, servers));
    let (code, out, err) = run_manager_cli(&home, &["reload"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    // The watcher may have been first: either way web is in force.
    assert!(
        out.contains("added web") || out.contains("no entry changed"),
        "{out}"
    );
    assert_eq!(names(&manager.daemons().await), ["web"]);
}

/// `mcp-manager shutdown` stops the manager and every daemon and removes
/// their locks; run again, it says no manager runs.
#[tokio::test]
async fn shutdown_leaves_no_process_or_lock() {
    let home = TestHome::new();
    let port = free_port();
    let (web, hosted) = (free_port(), free_port());
    let servers = json!({
        "web": everything_daemon_entry(web, Mode::StreamableHttp),
        "hosted": hosted_everything_entry(hosted),
    });
    home.write_config(&manager_config(port, servers));
    let mut manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let mut pids = Vec::new();
    for name in ["web", "hosted"] {
        let pid = manager.wait_running(name).await["pid"]
            .as_u64()
            .expect("pid");
        pids.push(u32::try_from(pid).expect("pid"));
    }
    let (code, out, err) = run_manager_cli(&home, &["shutdown"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stopped the manager"), "{out}");
    assert!(
        manager.wait_exit(WAIT).await.is_some(),
        "the manager still runs"
    );
    for pid in pids {
        assert!(
            !process::is_alive(pid),
            "daemon {pid} outlived the shutdown"
        );
    }
    let left: Vec<String> = std::fs::read_dir(home.path())
        .expect("home")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "lock" || e == "pid")
                && n != "manager.lock"
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!port_answers(port).await && !port_answers(web).await && !port_answers(hosted).await);
    let (code, out, _) = run_manager_cli(&home, &["shutdown"], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains("no manager runs"), "{out}");
}

/// A changed entry that no longer starts: the open session's next request
/// is told why at once (the host's own words: the exit status and the
/// server's last stderr), not after the reconnect bound (60 s).
#[tokio::test]
async fn a_changed_entry_that_no_longer_starts_fails_the_next_request_at_once() {
    let home = TestHome::new();
    let port = free_port();
    let hosted = free_port();
    let mut servers = json!({"hosted": hosted_everything_entry(hosted)});
    home.write_config(&manager_config(port, servers.clone()));
    let _manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let mut proxy = proxy_for(&home, "hosted", port);
    proxy.initialize().await;
    assert!(echo(&mut proxy, 1, "before").await.contains("before"));

    servers["hosted"]["command"] = json!("sh");
    servers["hosted"]["args"] = json!(["-c", "echo 'fatal: DATABASE_URL is not set' >&2; exit 3"]);
    save_by_rename(&home, &manager_config(port, servers));
    let (code, out, err) = run_manager_cli(&home, &["reload"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let asked = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(40),
        proxy.request(
            json!(2),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "after"}}),
        ),
    )
    .await
    .expect("an answer before the reconnect bound");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exit status: 3") && message.contains("DATABASE_URL"),
        "{answer}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(40),
        "{:?}",
        asked.elapsed()
    );
}
