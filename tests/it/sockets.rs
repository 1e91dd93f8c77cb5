//! The Unix domain sockets of the hosts and the manager (`HOME/sockets/`,
//! Unix only): a session through `mcp-proxy --target` to a hosted
//! server-memory goes over `NAME.sock`, not TCP; the directory is 0700 and
//! the sockets 0600; another user cannot connect to them; a socket left by
//! a killed host does not keep a new one out; `mcp-manager status` goes
//! over `manager.sock`.

#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::util::{
    HostProcess, Proxy, TestHome, free_port, manager_bin, manager_config, memory_js,
    run_manager_cli, tool_text, wait_until,
};

fn memory_entry(home: &TestHome, port: u16) -> Value {
    json!({
        "command": "node",
        "args": [memory_js().to_string_lossy()],
        "env": {"MEMORY_FILE_PATH": home.path().join("memory.jsonl").to_string_lossy()},
        "port": port,
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn socket_of(home: &TestHome, name: &str) -> PathBuf {
    home.path().join("sockets").join(format!("{name}.sock"))
}

async fn wait_for_socket(path: &Path) {
    wait_until(Duration::from_secs(20), "the socket file", || async {
        path.exists().then_some(())
    })
    .await;
}

/// `GET /health` over the Unix socket `path`, the Host naming `port`.
async fn health_over(path: &Path, port: u16) -> Option<Value> {
    let client = mcp_session_manager::http::loopback_client_builder()
        .unix_socket(path)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let response = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?;
    serde_json::from_slice(&response.bytes().await.ok()?).ok()
}

/// Connected sockets (state 03) bound to `path` in `/proc/net/unix`: the
/// server's end of each connection accepted on it.
#[cfg(target_os = "linux")]
fn unix_connections(path: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let path = path.to_string_lossy();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8 && fields[5] == "03" && fields[7] == path
        })
        .count()
}

/// Established TCP connections to or from 127.0.0.1:`port`.
#[cfg(target_os = "linux")]
fn tcp_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 4
                && fields[3] == "01"
                && (fields[1].ends_with(&port) || fields[2].ends_with(&port))
        })
        .count()
}

/// A session through `mcp-proxy --target memory` to a hosted server-memory
/// works and goes over `sockets/memory.sock`: while it is open (its GET
/// stream held), the kernel shows connections on the socket and none on
/// the host's TCP port. The directory is 0700, the socket 0600.
#[tokio::test]
async fn a_hosted_server_is_reached_over_its_socket() {
    let home = TestHome::new();
    let port = free_port();
    let host = HostProcess::start(&home, "memory", memory_entry(&home, port)).await;
    let socket = socket_of(&home, "memory");
    wait_for_socket(&socket).await;
    assert_eq!(mode(&home.path().join("sockets")), 0o700);
    assert_eq!(mode(&socket), 0o600);

    let mut proxy = Proxy::start(&home, &["--target", "memory"]);
    proxy.initialize().await;
    let created = proxy
        .request(
            json!(1),
            "tools/call",
            json!({"name": "create_entities", "arguments": {"entities": [
                {"name": "over-the-socket", "entityType": "note", "observations": ["hi"]}]}}),
        )
        .await;
    assert!(created.get("result").is_some(), "{created}");
    let graph = proxy
        .request(
            json!(2),
            "tools/call",
            json!({"name": "read_graph", "arguments": {}}),
        )
        .await;
    assert!(tool_text(&graph).contains("over-the-socket"), "{graph}");

    #[cfg(target_os = "linux")]
    wait_until(
        Duration::from_secs(10),
        "the session on the socket and nothing on TCP",
        || async {
            let (unix, tcp) = (unix_connections(&socket), tcp_connections(host.port));
            (unix >= 1 && tcp == 0).then_some(())
        },
    )
    .await;
    drop(proxy);
    drop(host);
}

/// Another user cannot connect to a host's socket, even with the home
/// opened to them (0711): `sockets/` is 0700. (As root: the test makes a
/// throwaway user; it skips elsewhere.)
#[tokio::test]
async fn another_user_cannot_connect_to_the_socket() {
    let user = match crate::util::ThrowawayUser::create("uds") {
        Ok(user) => user,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let home = TestHome::new();
    let port = free_port();
    let _host = HostProcess::start(&home, "memory", memory_entry(&home, port)).await;
    let socket = socket_of(&home, "memory");
    wait_for_socket(&socket).await;
    // Only the sockets directory stands in the way.
    let mut dir = home.path().to_owned();
    while dir.parent().is_some() {
        if std::fs::metadata(&dir).is_ok_and(|m| m.mode() & 0o001 == 0) {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        }
        if !dir.pop() {
            break;
        }
    }
    let url = format!("http://127.0.0.1:{port}/health");
    let socket_arg = socket.to_string_lossy().into_owned();
    let theirs = user.run(
        "curl",
        &["-sS", "-m", "5", "--unix-socket", &socket_arg, &url],
    );
    let out = String::from_utf8_lossy(&theirs.stdout);
    let err = String::from_utf8_lossy(&theirs.stderr);
    assert!(
        !theirs.status.success() && !out.contains("memory"),
        "another user reached the socket: {out} / {err}"
    );
    assert!(
        err.contains("ermission denied") || err.contains("Couldn't connect"),
        "{err}"
    );
    // This user does.
    let mine = health_over(&socket, port)
        .await
        .expect("health over the socket");
    assert_eq!(mine["name"], "memory", "{mine}");
}

/// A host killed with SIGKILL leaves its socket file; a new host of the
/// same name replaces it (nothing answered there) and serves on it, and
/// removes it when it stops.
#[tokio::test]
async fn a_stale_socket_does_not_block_a_new_host() {
    let home = TestHome::new();
    let port = free_port();
    let mut first = HostProcess::start(&home, "memory", memory_entry(&home, port)).await;
    let socket = socket_of(&home, "memory");
    wait_for_socket(&socket).await;
    first.child.kill().await.expect("kill the host");
    let _ = first.child.wait().await;
    assert!(socket.exists(), "a killed host cannot remove its socket");
    assert!(
        health_over(&socket, port).await.is_none(),
        "nothing answers"
    );
    drop(first);

    let mut second = HostProcess::start(&home, "memory", memory_entry(&home, port)).await;
    let health = wait_until(
        Duration::from_secs(20),
        "the new host on the socket",
        || {
            let socket = socket.clone();
            async move { health_over(&socket, port).await }
        },
    )
    .await;
    assert_eq!(health["name"], "memory", "{health}");
    // (Not compared by inode: a file system may hand the freed inode number
    // straight to the new socket. The new host answering on the path is the
    // proof that the stale one was replaced.)

    // A clean stop removes it.
    let pid = second.child.id().expect("running");
    assert!(crate::util::send_signal(pid, 15));
    let _ = tokio::time::timeout(Duration::from_secs(20), second.child.wait()).await;
    assert!(!socket.exists(), "the host removed its socket at exit");
}

/// `mcp-manager status` is answered over `sockets/manager.sock` (the
/// manager, logging at debug, accepted it there and accepted nothing on
/// TCP); the socket is 0600, and it is gone when the manager stops.
#[tokio::test]
async fn the_cli_talks_to_the_manager_over_its_socket() {
    let home = TestHome::new();
    let port = free_port();
    home.write_config(&manager_config(port, json!({})));
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut manager: Child = Command::new(manager_bin())
        .arg("--port")
        .arg(port.to_string())
        .env("MCP_SESSION_MANAGER_HOME", home.path())
        .env("MCP_MANAGER_LOG", "mcp_session_manager=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen().expect("reopen")))
        .kill_on_drop(true)
        .spawn()
        .expect("start mcp-manager");
    let socket = home.path().join("sockets").join("manager.sock");
    wait_for_socket(&socket).await;
    assert_eq!(mode(&home.path().join("sockets")), 0o700);
    assert_eq!(mode(&socket), 0o600);

    let (code, out, err) = run_manager_cli(&home, &["status", "--json"], &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let list: Value = serde_json::from_str(&out).expect("status JSON");
    assert!(list["daemons"].is_array(), "{list}");

    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        text.contains(r#"listener="unix socket""#),
        "not accepted on the socket:\n{text}"
    );
    assert!(
        !text.contains(r#"listener="tcp""#),
        "a TCP connection was accepted:\n{text}"
    );

    let pid = manager.id().expect("running");
    assert!(crate::util::send_signal(pid, 15));
    let _ = tokio::time::timeout(Duration::from_secs(20), manager.wait()).await;
    assert!(!socket.exists(), "the manager removed its socket at exit");
}
