//! What `/proc` says about processes beyond memory (which is in
//! `tests/support/procfs.rs`, shared with the tests): the process tree
//! under some roots, CPU time (utime + stime) and the clock tick it is
//! counted in, CPU time per thread to the nanosecond (schedstat), and the
//! load average shown in the table headers. Linux only; elsewhere every
//! reading is `None`.

use std::time::Duration;

/// Every process in the trees under `roots`, roots included (`/proc`:
/// Linux only, `None` elsewhere).
pub(crate) fn process_tree(roots: &[u32]) -> Option<Vec<u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name (field 2) may hold spaces: the ppid is the second
        // field after its ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    Some(seen.into_iter().collect())
}

/// `/proc/loadavg`'s first three fields, to show how busy the machine was.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// utime + stime of `/proc/<which>` (a pid or `self`); `None` off Linux.
pub(crate) fn cpu_time(which: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime).saturating_mul(1_000_000) / clock_ticks(),
    ))
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100), read once.
pub(crate) fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// CPU time of each live thread of `pid` (`/proc/<pid>/task/*/schedstat`,
/// nanoseconds, user + system); `None` off Linux or without schedstat.
/// Finer than [`cpu_time`], which counts clock ticks (10 ms at 100 Hz).
pub(crate) fn thread_cpu_times(pid: u32) -> Option<std::collections::HashMap<u32, Duration>> {
    let mut times = std::collections::HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue; // the thread has just exited
        };
        let nanos = text.split_whitespace().next()?.parse::<u64>().ok()?;
        times.insert(tid, Duration::from_nanos(nanos));
    }
    (!times.is_empty()).then_some(times)
}

/// The CPU time `pid`'s threads spent since `before` ([`thread_cpu_times`]);
/// a thread that exited in between loses what it spent since.
pub(crate) fn thread_cpu_since(
    pid: u32,
    before: &std::collections::HashMap<u32, Duration>,
) -> Option<Duration> {
    let after = thread_cpu_times(pid)?;
    Some(
        after
            .iter()
            .map(|(tid, &now)| now.saturating_sub(before.get(tid).copied().unwrap_or_default()))
            .sum(),
    )
}
