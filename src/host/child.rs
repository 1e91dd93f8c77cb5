//! Process-level care of a hosted child: its own process group, death with
//! the host, and stopping the whole tree (`npx` → `node` …).

use tokio::process::{Child, Command};

/// How long a child gets between SIGTERM and SIGKILL.
#[cfg(unix)]
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Puts the child in a process group of its own (a terminal's SIGINT never
/// reaches it; the host can signal the whole tree), and on Linux has the
/// kernel kill it when the host dies, even by SIGKILL.
pub fn isolate(command: &mut Command) {
    #[cfg(unix)]
    command.process_group(0);
    #[cfg(target_os = "linux")]
    die_with_parent(command);
    #[cfg(not(unix))]
    let _ = command;
}

#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "prctl(2) must run in the child between fork and exec"
)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure only calls prctl, which is async-signal-safe, and
    // touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Stops the child and everything it started: SIGTERM to its group, then
/// SIGKILL after a grace period; reaps it.
pub async fn terminate_group(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        signal_group(pid, libc::SIGTERM);
        let exited = tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok();
        // Members that ignored SIGTERM (or outlived the leader) get SIGKILL.
        // The kernel keeps a group id reserved while any member lives, so
        // this reaches only our own processes; with none left it finds nothing.
        signal_group(pid, libc::SIGKILL);
        if exited {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(unix)]
#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; the group is the child's own
    // (created by `isolate`), never one the host did not start.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
