//! Processes the tests look at or signal, without `unsafe`: what the library
//! offers (`mcp_session_manager::process`: liveness, start times, process
//! groups) is used as is; a signal to one pid goes through the `kill`
//! command, and a pid's group and argv are read from `/proc` (Linux). The
//! memory and environment readings come from `tests/support/procfs.rs`,
//! shared with the benchmark.

#[cfg(target_os = "linux")]
pub use super::procfs::{processes_of_home, vm_rss_kib};

/// Sends signal number `signal` to `pid` (never to a group: `pid` must be
/// > 1) with the `kill` command; whether it was delivered.
#[cfg(unix)]
pub fn send_signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    assert!(pid > 1, "refusing to signal pid {pid}");
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The fields of `/proc/PID/stat` from field 3 (`state`) on.
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The process group of `pid`.
#[cfg(target_os = "linux")]
pub fn process_group(pid: u32) -> Option<u32> {
    proc_stat(pid)?.get(2)?.parse().ok()
}

/// The command line of `pid`, one string per argument.
#[cfg(target_os = "linux")]
pub fn process_cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
