//! Another user on this machine, for the multi-user tests: a throwaway
//! unprivileged system user (`useradd --system`, removed with `userdel`
//! when dropped, even when the test fails), and a listener run as that user
//! that reports how many bytes each connection brought it. Only root can
//! make one; elsewhere [`ForeignUser::create`] says why on stderr and the
//! test skips.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A throwaway user; deleted on drop.
pub struct ForeignUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The Python this user can run (a shim under /root is not readable).
const SYSTEM_PYTHONS: [&str; 2] = ["/usr/bin/python3", "/usr/local/bin/python3"];

impl ForeignUser {
    /// A new user `mcp-test-TAG-PID-N`; `None`, with the reason on stderr,
    /// where the test cannot make one (not root, no `useradd`).
    pub fn create(tag: &str) -> Option<ForeignUser> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if mcp_session_manager::process::current_uid() != Some(0) {
            eprintln!("skipped: making another user needs root");
            return None;
        }
        let name = format!(
            "mcp-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // useradd caps names at 32 characters.
        let name: String = name.chars().take(32).collect();
        let made = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: useradd {name} failed");
            return None;
        }
        let id = |flag: &str| -> Option<u32> {
            let out = std::process::Command::new("id")
                .arg(flag)
                .arg(&name)
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let user = ForeignUser {
            uid: id("-u").unwrap_or(u32::MAX),
            gid: id("-g").unwrap_or(u32::MAX),
            name,
        };
        if user.uid == u32::MAX || user.gid == u32::MAX {
            eprintln!("skipped: cannot read the ids of {}", user.name);
            return None;
        }
        Some(user)
    }

    /// `program` to be run as this user (`setpriv`), from `/`.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(program)
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .kill_on_drop(true);
        command
    }
}

impl Drop for ForeignUser {
    fn drop(&mut self) {
        // userdel refuses a user who still runs a process: the tests' own
        // (killed on drop) may take a moment to go.
        for _ in 0..50 {
            let gone = std::process::Command::new("userdel")
                .arg(&self.name)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if gone {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the test user {}", self.name);
    }
}

/// A listener of another user on 127.0.0.1:`port`: it accepts, reads each
/// connection until it ends (or is silent for a second), never answers, and
/// prints the byte count of each.
pub struct StrangerListener {
    pub port: u16,
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

const LISTENER: &str = r"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(64)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(1.0)
    n = 0
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
    except Exception:
        pass
    print(n, flush=True)
    c.close()
";

impl StrangerListener {
    /// Starts it as `user`; `None` (with the reason) if no system Python
    /// runs for that user.
    pub async fn start(user: &ForeignUser, port: u16) -> Option<StrangerListener> {
        let Some(python) = SYSTEM_PYTHONS
            .iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("skipped: no system python3 for the other user");
            return None;
        };
        let mut child = user
            .command(python)
            .args(["-c", LISTENER, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the stranger's listener");
        let stdout = child.stdout.take().expect("piped");
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.recv()).await;
        if !matches!(ready, Ok(Some(ref l)) if l == "listening") {
            eprintln!("skipped: the other user's listener did not start ({ready:?})");
            return None;
        }
        Some(StrangerListener { port, child, lines })
    }

    /// Stops it: the byte count of every connection it was given (a
    /// connection still open is counted once it has been silent a second).
    pub async fn received(mut self) -> Vec<usize> {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let _ = self.child.kill().await;
        let mut counts = Vec::new();
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            counts.push(line.trim().parse().expect("a byte count"));
        }
        counts
    }
}
