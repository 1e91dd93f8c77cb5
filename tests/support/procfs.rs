//! What `/proc` says about a process's memory and environment, shared by
//! the integration tests and the benchmark (both include this file with
//! `#[path = "..."] mod procfs;`). Linux only: elsewhere there is no
//! `/proc`, so every reading is `None` or empty.

use std::path::Path;

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`); `None` off Linux
/// or once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The resident set size of `pid` (`VmRSS`), in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The peak resident set size of `pid` (`VmHWM`), in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Every live process (of ours) whose environment sets
/// `MCP_SESSION_MANAGER_HOME` to `home`: whatever was started for that home,
/// wherever it was re-parented. Sorted; empty off Linux.
pub fn processes_of_home(home: &Path) -> Vec<u32> {
    let mut needle = b"MCP_SESSION_MANAGER_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_slice()))
                && mcp_session_manager::process::is_alive(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}
