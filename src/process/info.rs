//! Facts about other processes, for a supervisor that must never kill a
//! process it did not start.
//!
//! A pid alone is a weak identity: once a process dies the kernel hands its
//! number to the next one. [`start_time`] reads an opaque value that tells
//! one incarnation of a pid from the next, so a pid recorded in a lock file
//! can be checked ([`is_same_process`]) before anything trusts or signals it.
//! [`port_holder`] and [`describe`] name whoever holds a port, so an error
//! can say which program is in the way instead of killing it;
//! [`owner_uid`] and [`process_group`] say whose a process is and which
//! group it is in (is the port holder the recorded daemon, or its child?).
//!
//! This module only observes and sends signals; it never decides whom to
//! signal. Linux reads `/proc`; macOS asks `libproc`, `lsof` and `ps`; other
//! platforms answer "unknown" (`None`, `false`, or a bare "pid N").

/// An opaque value identifying this pid's incarnation: two processes that
/// share a pid one after the other get different values. `None` if the
/// process does not exist or the platform cannot tell.
///
/// Linux: `starttime` (clock ticks since boot) from `/proc/PID/stat`.
/// macOS: the start time in microseconds since the epoch.
pub fn start_time(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", to_pid(pid)?)).ok()?;
        linux::start_time_from_stat(&stat)
    }
    #[cfg(target_os = "macos")]
    {
        let info = macos::bsd_info(to_pid(pid)?)?;
        Some(
            info.pbi_start_tvsec
                .saturating_mul(1_000_000)
                .saturating_add(info.pbi_start_tvusec),
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// Whether a process with this pid exists and is not a zombie. A process of
/// another user counts as alive. Pid 0 and pids beyond `i32::MAX` never do.
pub fn is_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(pid) = to_pid(pid) else {
            return false;
        };
        let exists = match sys::kill(pid, 0) {
            Ok(()) => true,
            Err(error) => error.raw_os_error() == Some(libc::EPERM),
        };
        exists && !is_zombie(pid)
    }
    #[cfg(windows)]
    {
        // No libc here; `tasklist` ships with every Windows.
        let filter = format!("PID eq {pid}");
        std::process::Command::new("tasklist")
            .args(["/FI", &filter, "/NH", "/FO", "CSV"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&format!("\"{pid}\"")))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        false
    }
}

/// Whether `pid` is still the process that was recorded: it is alive and, if
/// a start time was recorded and one can be read now, the two are equal.
pub fn is_same_process(pid: u32, recorded_start: Option<u64>) -> bool {
    if !is_alive(pid) {
        return false;
    }
    match (recorded_start, start_time(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// The pid of the process listening on TCP `port` (IPv4 or IPv6) on this
/// machine. `None` if nothing listens, or if the holder cannot be seen (on
/// Linux, a process of another user whose `/proc/PID/fd` is unreadable).
pub fn port_holder(port: u16) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        linux::port_holder(port)
    }
    #[cfg(target_os = "macos")]
    {
        macos::port_holder(port)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = port;
        None
    }
}

/// The effective user id of `pid`; `None` if it does not exist or the
/// platform cannot tell. A process of another user is never signalled.
///
/// Linux: the `Uid:` line of `/proc/PID/status`; macOS: `proc_pidinfo`.
pub fn owner_uid(pid: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", to_pid(pid)?)).ok()?;
        linux::effective_uid_from_status(&status)
    }
    #[cfg(target_os = "macos")]
    {
        Some(macos::bsd_info(to_pid(pid)?)?.pbi_uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// The process group of `pid`; `None` if it does not exist or the platform
/// cannot tell. A daemon started here leads a group of its own, so whoever
/// holds its port (the daemon, or a child such as `npx`'s `node`) is in the
/// group named by the daemon's pid.
///
/// Linux: field 5 of `/proc/PID/stat`; macOS: `proc_pidinfo`.
pub fn process_group(pid: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", to_pid(pid)?)).ok()?;
        linux::group_from_stat(&stat)
    }
    #[cfg(target_os = "macos")]
    {
        Some(macos::bsd_info(to_pid(pid)?)?.pbi_pgid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// How a process is named in messages: `pid 1234 (python3 -m http.server
/// 8000)`, or just `pid 1234` when its command line cannot be read.
pub fn describe(pid: u32) -> String {
    match command_line(pid) {
        Some(command) => format!("pid {pid} ({command})"),
        None => format!("pid {pid}"),
    }
}

/// Characters of a command line kept by [`describe`].
const COMMAND_CHARS: usize = 100;

/// The command line of `pid`, one line, at most [`COMMAND_CHARS`] characters
/// (then an ellipsis); `None` when unreadable or empty.
#[cfg(target_os = "linux")]
fn command_line(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{}/cmdline", to_pid(pid)?)).ok()?;
    shorten(&linux::join_cmdline(&bytes))
}

/// The command line of `pid`, one line, at most [`COMMAND_CHARS`] characters
/// (then an ellipsis); `None` when unreadable or empty.
#[cfg(target_os = "macos")]
fn command_line(pid: u32) -> Option<String> {
    shorten(&macos::ps_command(to_pid(pid)?)?)
}

/// No command lines to read on this platform.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn command_line(_pid: u32) -> Option<String> {
    None
}

/// One trimmed line of at most [`COMMAND_CHARS`] characters; `None` if empty.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos", test)),
    expect(dead_code, reason = "no command line to read on this platform")
)]
fn shorten(raw: &str) -> Option<String> {
    let one_line: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_empty() {
        return None;
    }
    if one_line.chars().count() <= COMMAND_CHARS {
        return Some(one_line);
    }
    let mut short: String = one_line.chars().take(COMMAND_CHARS).collect();
    short.push('…');
    Some(short)
}

/// A pid as the kernel takes it: 1 ..= `i32::MAX`. Zero and larger values
/// would name process groups (or every process) in kill(2).
#[cfg(unix)]
pub(super) fn to_pid(pid: u32) -> Option<libc::pid_t> {
    if pid == 0 {
        return None;
    }
    libc::pid_t::try_from(pid).ok()
}

/// Whether an existing process has exited and waits to be reaped.
#[cfg(unix)]
fn is_zombie(pid: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| linux::state_from_stat(&stat))
            .is_some_and(|state| state == 'Z' || state == 'X')
    }
    #[cfg(target_os = "macos")]
    {
        macos::bsd_info(pid).is_some_and(|info| info.pbi_status == libc::SZOMB)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        false
    }
}

/// The system calls, each the smallest safe wrapper around one libc call.
#[cfg(unix)]
mod sys {
    use std::io;

    /// kill(2). Callers pass a pid > 0, so it reaches exactly one process.
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    pub(super) fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: kill only sends a signal (or, with 0, checks the pid); it
        // reads and writes no memory of ours.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashSet;
    use std::path::Path;

    /// TCP state `LISTEN` in `/proc/net/tcp`.
    const LISTEN: &str = "0A";

    /// The fields of `/proc/PID/stat` from field 3 (`state`) on. The command
    /// name (field 2) may hold spaces and parentheses, so the split happens
    /// after the last `)`.
    fn fields_after_comm(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
        let close = stat.rfind(')')?;
        Some(stat.get(close + 1..)?.split_whitespace())
    }

    /// Field 3, `state`: `R`, `S`, `Z` …
    pub(super) fn state_from_stat(stat: &str) -> Option<char> {
        fields_after_comm(stat)?.next()?.chars().next()
    }

    /// Field 22, `starttime`: clock ticks after boot.
    pub(super) fn start_time_from_stat(stat: &str) -> Option<u64> {
        // Field 3 is the first after the command name, so field 22 is the 20th.
        fields_after_comm(stat)?.nth(22 - 3)?.parse().ok()
    }

    /// Field 5, `pgrp`: the process group.
    pub(super) fn group_from_stat(stat: &str) -> Option<u32> {
        fields_after_comm(stat)?.nth(5 - 3)?.parse().ok()
    }

    /// The effective uid: the second number of the `Uid:` line of
    /// `/proc/PID/status` (real, effective, saved, file system).
    pub(super) fn effective_uid_from_status(status: &str) -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// `/proc/PID/cmdline`: arguments separated (and ended) by NUL.
    pub(super) fn join_cmdline(bytes: &[u8]) -> String {
        let args: Vec<_> = bytes
            .split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        args.join(" ")
    }

    pub(super) fn port_holder(port: u16) -> Option<u32> {
        let mut inodes = HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                inodes.extend(listening_inodes(&text, port));
            }
        }
        if inodes.is_empty() {
            return None;
        }
        let wanted: HashSet<String> = inodes
            .into_iter()
            .map(|inode| format!("socket:[{inode}]"))
            .collect();
        owner_of_socket(Path::new("/proc"), &wanted)
    }

    /// The socket inodes in a `/proc/net/tcp{,6}` table that listen on `port`.
    pub(super) fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local = fields.get(1)?;
                let state = fields.get(3)?;
                let inode: u64 = fields.get(9)?.parse().ok()?;
                let (_, hex_port) = local.rsplit_once(':')?;
                let listens = *state == LISTEN
                    && u16::from_str_radix(hex_port, 16).ok()? == port
                    && inode != 0;
                listens.then_some(inode)
            })
            .collect()
    }

    /// The first pid with an open descriptor whose link reads as one of
    /// `wanted` (`socket:[INODE]`). Unreadable entries are skipped.
    fn owner_of_socket(proc_root: &Path, wanted: &HashSet<String>) -> Option<u32> {
        for entry in std::fs::read_dir(proc_root).ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if target.to_str().is_some_and(|t| wanted.contains(t)) {
                    return Some(pid);
                }
            }
        }
        None
    }
}

#[cfg(target_os = "macos")]
mod macos {
    use std::process::{Command, Stdio};

    /// `proc_pidinfo(PROC_PIDTBSDINFO)`: status and start time of a process.
    #[expect(unsafe_code, reason = "proc_pidinfo has no safe wrapper")]
    pub(super) fn bsd_info(pid: libc::pid_t) -> Option<libc::proc_bsdinfo> {
        let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
        let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
        // SAFETY: the buffer is one `proc_bsdinfo` of exactly `size` bytes,
        // and the kernel writes at most `size` bytes into it.
        let written = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDTBSDINFO,
                0,
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if written != size {
            return None;
        }
        // SAFETY: the struct holds only integers, so any bytes (here zeroes
        // overwritten by the kernel) form a valid value.
        Some(unsafe { info.assume_init() })
    }

    /// `lsof -nP -iTCP:PORT -sTCP:LISTEN -t`: the first pid it prints.
    pub(super) fn port_holder(port: u16) -> Option<u32> {
        let output = Command::new("lsof")
            .args(["-nP", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-t"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.trim().parse().ok())
    }

    /// `ps -o command= -p PID`: the command line.
    pub(super) fn ps_command(pid: libc::pid_t) -> Option<String> {
        let output = Command::new("ps")
            .args(["-o", "command=", "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test process is alive, and is the same process as the one whose
    /// start time it just read.
    #[cfg(unix)]
    #[test]
    fn own_process_is_alive_and_same() {
        let me = std::process::id();
        assert!(is_alive(me));
        let start = start_time(me);
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        assert!(start.is_some());
        assert_eq!(start, start_time(me), "the value is stable");
        assert!(is_same_process(me, start));
        assert!(is_same_process(me, None));
    }

    /// This process is this user's, and in the test runner's group.
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn own_owner_and_group_are_read() {
        let me = std::process::id();
        assert_eq!(owner_uid(me), crate::process::current_uid());
        let group = process_group(me).expect("a group");
        assert!(group > 0);
        assert_eq!(owner_uid(0), None);
        assert_eq!(process_group(0), None);
    }

    /// A recorded start time that differs means the pid was reused.
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn different_start_time_is_another_process() {
        let me = std::process::id();
        let start = start_time(me).expect("own start time");
        assert!(!is_same_process(me, Some(start.wrapping_add(1))));
    }

    /// Pid 0 and pids that kill(2) would read as groups are never alive.
    #[test]
    fn impossible_pids_are_not_alive() {
        for pid in [0, u32::MAX, 0x8000_0000] {
            assert!(!is_alive(pid), "{pid}");
            assert!(!is_same_process(pid, None), "{pid}");
            assert_eq!(start_time(pid), None, "{pid}");
        }
        assert_eq!(describe(0), "pid 0");
    }

    /// A child that exited and was reaped is gone.
    #[cfg(unix)]
    #[test]
    fn reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!is_alive(pid));
        assert!(!is_same_process(pid, None));
    }

    /// A child that exited but was not reaped yet (a zombie) counts as dead.
    #[cfg(target_os = "linux")]
    #[test]
    fn zombie_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert!(is_alive(pid));
        child.kill().expect("SIGKILL");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dead = !is_alive(pid);
        child.wait().expect("reap");
        assert!(dead, "a zombie is not alive");
    }

    /// The holder of a listening port is found; a free port has none.
    #[cfg(target_os = "linux")]
    #[test]
    fn port_holder_finds_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(port_holder(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(port_holder(port), None);

        // IPv6 where the machine has it.
        if let Ok(listener) = std::net::TcpListener::bind("[::1]:0") {
            let port = listener.local_addr().expect("addr").port();
            assert_eq!(port_holder(port), Some(std::process::id()));
        }
    }

    /// A connected (not listening) socket does not count as a holder.
    #[cfg(target_os = "linux")]
    #[test]
    fn port_holder_ignores_non_listening_sockets() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F92 0100007F:9C41 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";
        assert_eq!(linux::listening_inodes(table, 8080), vec![4242]);
        assert!(linux::listening_inodes(table, 8081).is_empty());
        assert!(linux::listening_inodes(table, 8082).is_empty());
        assert!(linux::listening_inodes("garbage\nmore garbage :\n", 8080).is_empty());
    }

    /// describe names the command line of the test binary.
    #[cfg(target_os = "linux")]
    #[test]
    fn describe_mentions_the_command() {
        let me = std::process::id();
        let cmdline = std::fs::read(format!("/proc/{me}/cmdline")).expect("own cmdline");
        let full = linux::join_cmdline(&cmdline);
        let exe = std::env::current_exe().expect("current exe");
        let name = exe.file_name().expect("file name").to_string_lossy();
        assert!(full.contains(&*name), "{full} should name {name}");
        let text = describe(me);
        assert_eq!(
            text,
            format!("pid {me} ({})", shorten(&full).expect("not empty"))
        );
        if full.chars().count() <= COMMAND_CHARS {
            assert!(text.contains(&*name), "{text} should name {name}");
        }
    }

    /// The command name in /proc/PID/stat may hold spaces and parentheses.
    #[cfg(target_os = "linux")]
    #[test]
    fn stat_parsing_skips_the_command_name() {
        let stat = "77 (a) b (c)) Z 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 \
                    1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        assert_eq!(linux::state_from_stat(stat), Some('Z'));
        assert_eq!(linux::start_time_from_stat(stat), Some(123_456));
        assert_eq!(linux::group_from_stat(stat), Some(77));
        assert_eq!(
            linux::effective_uid_from_status("Name:\tx\nUid:\t1000\t1001\t1000\t1000\n"),
            Some(1001)
        );
        assert_eq!(linux::effective_uid_from_status("Name:\tx\n"), None);

        assert_eq!(linux::start_time_from_stat("no parenthesis"), None);
        assert_eq!(linux::start_time_from_stat("1 (x) S 1"), None);
        assert_eq!(linux::state_from_stat("1 (x)"), None);
        assert_eq!(
            linux::join_cmdline(b"python3\0-m\0http.server\0"),
            "python3 -m http.server"
        );
    }

    /// Long command lines are cut at a character boundary; blank ones vanish.
    #[test]
    fn command_lines_are_shortened() {
        assert_eq!(shorten("  \n "), None);
        assert_eq!(shorten("a\tb\n").as_deref(), Some("a b"));
        let long = "é".repeat(COMMAND_CHARS + 5);
        let short = shorten(&long).expect("not empty");
        assert_eq!(short.chars().count(), COMMAND_CHARS + 1);
        assert!(short.ends_with('…'));
    }
}
