//! What the tool leaves on disk, and how big what it shows can grow: the
//! home and everything in it is this user's alone (0700 / 0600, whoever
//! created the home), and a daemon that writes a line of megabytes cannot
//! blow up `/status`. See: issue 13, items 5 and 7.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::util::{ManagerProcess, TestHome, free_port, manager_config};

const WAIT: Duration = Duration::from_secs(30);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A home left 0755 (by an older version, or made by hand) is tightened to
/// 0700 by the manager, and every file it and its daemons' starts create
/// (`manager.pid`, `manager.lock`, `NAME.log`, `NAME.start`) is 0600.
#[tokio::test]
async fn the_home_and_its_files_are_readable_by_this_user_only() {
    let home = TestHome::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    home.write_config(&manager_config(
        port,
        json!({"boom": {
            "command": "sh",
            "args": ["-c", "echo boom >&2; exit 3"],
            "port": free_port(),
            "transport": "streamable-http",
            "startTimeout": 2,
        }}),
    ));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    manager
        .wait_status("boom", WAIT, "its start tried", |s| {
            s["restarts"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(mode(home.path()), 0o700, "the home");
    for file in ["manager.pid", "manager.lock", "boom.log", "boom.start"] {
        assert_eq!(mode(&home.path().join(file)), 0o600, "{file}");
    }
}

/// A daemon that writes 8 MiB without a line break and exits: its status
/// says why, briefly — `lastError` and the log tail of `/status/NAME` are
/// cut (and say so), so `/status` stays small.
#[tokio::test]
async fn a_line_of_megabytes_does_not_blow_up_the_status() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(
        port,
        json!({"spew": {
            "command": "python3",
            "args": ["-c", "import sys; sys.stdout.write('x' * (8 << 20)); sys.stdout.flush(); sys.exit(3)"],
            "port": free_port(),
            "transport": "streamable-http",
            "startTimeout": 5,
        }}),
    ));
    let manager = ManagerProcess::start(&home, port, &["--start-all"]).await;
    let status = manager
        .wait_status("spew", WAIT, "exited with its output", |s| {
            s["lastError"].as_str().is_some_and(|e| e.contains("xxx"))
        })
        .await;
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(error.len() < 4096, "lastError is {} bytes", error.len());
    assert!(
        error.contains("more bytes"),
        "the cut is not said: {}",
        &error[..200.min(error.len())]
    );

    let (code, _, body) = manager.send(manager.request(Method::GET, "/status")).await;
    assert_eq!(code, 200);
    assert!(body.len() < 16 * 1024, "/status is {} bytes", body.len());
    let (code, _, body) = manager
        .send(manager.request(Method::GET, "/status/spew"))
        .await;
    assert_eq!(code, 200);
    assert!(
        body.len() < 128 * 1024,
        "/status/spew is {} bytes",
        body.len()
    );
}
