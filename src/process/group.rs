//! Process groups: a child in a group of its own, death with its parent,
//! and the one `killpg` that stops a whole tree (`npx` → `node` …).
//!
//! Only groups this program created are signalled: a group id stays
//! reserved by the kernel while any member lives, so a group we made can
//! never name someone else's processes.

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

/// A new session and process group: no terminal signal reaches the daemon,
/// it outlives whoever started it, and its group can be stopped as one.
pub fn detach(command: &mut Command) {
    #[cfg(unix)]
    new_session(command);
    #[cfg(windows)]
    {
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = command;
}

#[cfg(unix)]
#[expect(
    unsafe_code,
    reason = "setsid(2) must run in the child between fork and exec"
)]
fn new_session(command: &mut Command) {
    // SAFETY: setsid is async-signal-safe and touches no parent memory.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
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
    if let Some(pid) = child.id() {
        signal_group(pid, GroupSignal::Terminate);
        let exited = tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok();
        // Members that ignored SIGTERM (or outlived the leader) get SIGKILL.
        // The kernel keeps a group id reserved while any member lives, so
        // this reaches only our own processes; with none left it finds nothing.
        signal_group(pid, GroupSignal::Kill);
        if exited {
            return;
        }
    }
    let _ = child.kill().await;
}

/// A signal sent to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    /// SIGTERM: asks the processes to exit.
    Terminate,
    /// SIGKILL: ends them at once.
    Kill,
}

#[cfg(unix)]
impl GroupSignal {
    fn number(self) -> libc::c_int {
        match self {
            GroupSignal::Terminate => libc::SIGTERM,
            GroupSignal::Kill => libc::SIGKILL,
        }
    }
}

/// Sends `signal` to every process in the group `pgid` (killpg(2)). Group 0
/// (which would mean our own group) and ids beyond `i32::MAX` are ignored,
/// as is every call on platforms without process groups.
pub fn signal_group(pgid: u32, signal: GroupSignal) {
    #[cfg(unix)]
    {
        let Some(pgid) = super::info::to_pid(pgid) else {
            return;
        };
        if let Err(error) = killpg(pgid, signal.number()) {
            tracing::debug!(pgid, ?signal, %error, "killpg failed");
        }
    }
    #[cfg(not(unix))]
    let _ = (pgid, signal);
}

/// killpg(2). Callers pass a group > 0, never our own group by accident.
#[cfg(unix)]
#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
fn killpg(pgid: libc::pid_t, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: killpg only sends a signal; it reads and writes no memory of
    // ours.
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// signal_group reaches a child in its own group.
    #[test]
    fn signal_group_reaches_a_child_in_its_own_group() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut grouped = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        signal_group(grouped.id(), GroupSignal::Terminate);
        let status = grouped.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
