//! Who owns a TCP socket on this machine: the user behind a listening port
//! (is this daemon ours?) and behind a connection's other end (may this
//! client in?). Only this user may reach its servers, and a proxy sends a
//! session's first byte only to a listener this user owns.
//!
//! What each platform gets:
//! - Linux reads the `uid` column of `/proc/net/tcp` and `/proc/net/tcp6`
//!   (both ends of a loopback connection are in the same table): listeners
//!   and connections.
//! - macOS looks through the processes with `libproc` (`proc_listallpids`,
//!   `proc_pidinfo(PROC_PIDLISTFDS)`, `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`)
//!   for a TCP socket listening on the port; the owner is that process's
//!   uid. An unprivileged process sees only its own user's processes, so a
//!   port that answers a connect but is found in none of them is another
//!   user's, whose name and uid stay hidden ([`ListenerOwner::Hidden`]);
//!   root sees every process, so there the found process's uid decides,
//!   never the mere fact of seeing it. Connections: not told (`None`).
//! - Other platforms (the other BSDs, Windows) answer "cannot tell";
//!   callers decide what that means.

use std::net::SocketAddr;

/// The effective user id of this process (`None` where there is none).
pub fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        Some(sys::geteuid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Who owns the socket listening on a port, as far as the platform tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerOwner {
    /// Nothing listens there.
    Nobody,
    /// A listener of `uid`, held by `pid` where the platform names it
    /// (macOS; Linux reads the uid from a table that names no process).
    Owned { uid: u32, pid: Option<u32> },
    /// Something listens there, but in none of the processes this one may
    /// look into (macOS: another user's, unnamed).
    Hidden,
    /// The platform cannot tell.
    CannotTell,
}

/// The owner of the socket listening on `port` on a loopback or wildcard
/// address.
pub fn listener_owner(port: u16) -> ListenerOwner {
    #[cfg(target_os = "linux")]
    {
        match listener_uid(port) {
            Some(uid) => ListenerOwner::Owned { uid, pid: None },
            None => ListenerOwner::Nobody,
        }
    }
    #[cfg(target_os = "macos")]
    {
        decide(&macos::listeners(port), current_uid(), || answers(port))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = port;
        ListenerOwner::CannotTell
    }
}

/// The owner of the socket listening on `port` on a loopback or wildcard
/// address; `None` if nothing listens there or the platform cannot tell
/// (or, on macOS, hides it).
pub fn listener_uid(port: u16) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        linux::tables()
            .iter()
            .find_map(|table| linux::listener_uid(table, port))
    }
    #[cfg(not(target_os = "linux"))]
    {
        match listener_owner(port) {
            ListenerOwner::Owned { uid, .. } => Some(uid),
            _ => None,
        }
    }
}

/// The owner of the socket at the other end of a connection accepted on
/// `local` from `peer`: the entry whose local address is `peer` and whose
/// remote address is `local`. `None` if it is not on this machine (or has
/// gone) or the platform cannot tell (all but Linux).
pub fn peer_uid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        linux::table_for(peer).and_then(|table| linux::connection_uid(&table, peer, local))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (local, peer);
        None
    }
}

/// The owner, from the processes found holding a socket listening on the
/// port (`(pid, its uid)`, the uid `None` once it cannot be read: the
/// process exited meanwhile) and whether the port `answers` a connect
/// (asked only when none was found). Another user's listener among them
/// wins over this user's (a more specific address gets the connection).
#[cfg_attr(
    not(any(target_os = "macos", test)),
    expect(dead_code, reason = "only macOS finds listeners by process")
)]
fn decide(
    holders: &[(u32, Option<u32>)],
    me: Option<u32>,
    answers: impl FnOnce() -> bool,
) -> ListenerOwner {
    let seen = || holders.iter().filter_map(|&(pid, uid)| Some((pid, uid?)));
    let found = seen()
        .find(|&(_, uid)| Some(uid) != me)
        .or_else(|| seen().next());
    match found {
        Some((pid, uid)) => ListenerOwner::Owned {
            uid,
            pid: Some(pid),
        },
        None if answers() => ListenerOwner::Hidden,
        None => ListenerOwner::Nobody,
    }
}

/// Does 127.0.0.1:`port` accept a connection? The connection is closed at
/// once: nothing is sent on it. Bounded: a listener whose backlog is full
/// lets a connect hang, and counts as answering.
#[cfg(target_os = "macos")]
fn answers(port: u16) -> bool {
    let address = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::TimedOut,
    }
}

/// Where a listener on this machine can be reached from loopback.
#[cfg(any(target_os = "linux", target_os = "macos", test))]
fn reachable_from_loopback(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    ip.is_loopback()
        || ip.is_unspecified()
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()))
}

#[cfg(unix)]
mod sys {
    /// geteuid(2).
    #[expect(unsafe_code, reason = "geteuid(2) has no safe wrapper in std")]
    pub(super) fn geteuid() -> u32 {
        // SAFETY: geteuid takes no arguments, cannot fail and touches no
        // memory of ours.
        unsafe { libc::geteuid() }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// TCP state `LISTEN`.
    const LISTEN: &str = "0A";
    /// TCP state `ESTABLISHED`: the only state whose uid is the owner's (a
    /// socket closed by its process lingers in other states, shown as uid
    /// 0, and must not pass for root's).
    const ESTABLISHED: &str = "01";

    /// The text of `/proc/net/tcp` and `/proc/net/tcp6` (those readable).
    pub(super) fn tables() -> Vec<String> {
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect()
    }

    /// The one table a connection from `peer` is in: `tcp` for IPv4
    /// (including an IPv4-mapped peer of a dual-stack socket, whose own
    /// socket is IPv4), `tcp6` for IPv6.
    pub(super) fn table_for(peer: SocketAddr) -> Option<String> {
        let v4 = match peer.ip() {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
        };
        std::fs::read_to_string(if v4 {
            "/proc/net/tcp"
        } else {
            "/proc/net/tcp6"
        })
        .ok()
    }

    /// One row: local address, remote address, state, uid.
    struct Row {
        local: SocketAddr,
        remote: SocketAddr,
        state: String,
        uid: u32,
    }

    fn rows(table: &str) -> impl Iterator<Item = Row> + '_ {
        table.lines().skip(1).filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(Row {
                local: address(fields.get(1)?)?,
                remote: address(fields.get(2)?)?,
                state: (*fields.get(3)?).to_owned(),
                uid: fields.get(7)?.parse().ok()?,
            })
        })
    }

    /// `0100007F:0C80` or a 32-digit IPv6 form: each 32-bit word is printed
    /// as a native-endian number.
    fn address(text: &str) -> Option<SocketAddr> {
        let (ip, port) = text.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let word = |i: usize| -> Option<[u8; 4]> {
            let digits = ip.get(i * 8..i * 8 + 8)?;
            Some(u32::from_str_radix(digits, 16).ok()?.to_ne_bytes())
        };
        let ip = match ip.len() {
            8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
            32 => {
                let mut bytes = [0u8; 16];
                for i in 0..4 {
                    bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }

    pub(super) fn listener_uid(table: &str, port: u16) -> Option<u32> {
        rows(table)
            .find(|row| {
                row.state == LISTEN
                    && row.local.port() == port
                    && super::reachable_from_loopback(row.local.ip())
            })
            .map(|row| row.uid)
    }

    pub(super) fn connection_uid(
        table: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<u32> {
        let same = |a: SocketAddr, b: SocketAddr| {
            a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
        };
        rows(table)
            .find(|row| {
                row.state == ESTABLISHED && same(row.local, local) && same(row.remote, remote)
            })
            .map(|row| row.uid)
    }

    /// An IPv4-mapped IPv6 address as the IPv4 address it is.
    fn canonical(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        // Two rows as a little-endian machine prints them.
        const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0C7F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 0100007F:9C40 0100007F:0C7F 01 00000000:00000000 00:00000000 00000000  1001        0 222 1 0 20 4 30 10 -1
";

        #[cfg(target_endian = "little")]
        #[test]
        fn rows_give_the_listener_and_the_peer_their_owners() {
            assert_eq!(listener_uid(TABLE, 3199), Some(1000));
            assert_eq!(listener_uid(TABLE, 3198), None);
            let server: SocketAddr = "127.0.0.1:3199".parse().expect("addr");
            let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
            assert_eq!(connection_uid(TABLE, client, server), Some(1001));
            assert_eq!(connection_uid(TABLE, server, client), None);
        }

        #[cfg(target_endian = "little")]
        #[test]
        fn ipv6_words_are_read_as_printed() {
            let loopback = "00000000000000000000000001000000:0C7F";
            assert_eq!(address(loopback), Some("[::1]:3199".parse().expect("addr")));
            assert_eq!(address("nonsense"), None);
            assert_eq!(address("0100007F:ZZZZ"), None);
        }
    }
}

/// The structures `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)` fills, which the
/// `libc` crate does not define: copied field for field from the macOS
/// SDK's `<sys/proc_info.h>` (xnu `bsd/sys/proc_info.h`), with the sizes
/// and offsets checked at compile time against the header's layout
/// (`socket_fdinfo` is 792 bytes on every 64-bit macOS). Only the TCP
/// member of `soi_proto`'s union is spelled out; the rest of the union is
/// padding of its size. Compiled in tests everywhere, so the decoding is
/// tested on Linux too.
#[cfg(any(target_os = "macos", test))]
#[cfg_attr(
    not(target_os = "macos"),
    expect(dead_code, reason = "the calls that use these are macOS only")
)]
mod darwin {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// `proc_pidfdinfo` flavor: `struct socket_fdinfo`.
    pub(super) const PROC_PIDFDSOCKETINFO: i32 = 3;
    /// `proc_fdinfo.proc_fdtype` of a socket.
    pub(super) const PROX_FDTYPE_SOCKET: u32 = 2;
    /// `socket_info.soi_kind` whose `soi_proto` is a `tcp_sockinfo`.
    pub(super) const SOCKINFO_TCP: i32 = 2;
    /// `tcp_sockinfo.tcpsi_state`: listening.
    pub(super) const TSI_S_LISTEN: i32 = 1;
    /// `in_sockinfo.insi_vflag` bits.
    const INI_IPV4: u8 = 0x1;
    const INI_IPV6: u8 = 0x2;

    /// `struct proc_fdinfo`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub(super) struct ProcFdInfo {
        pub proc_fd: i32,
        pub proc_fdtype: u32,
    }

    /// `struct proc_fileinfo`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct ProcFileInfo {
        pub fi_openflags: u32,
        pub fi_status: u32,
        pub fi_offset: i64,
        pub fi_type: i32,
        pub fi_guardflags: u32,
    }

    /// `struct vinfo_stat`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct VinfoStat {
        pub vst_dev: u32,
        pub vst_mode: u16,
        pub vst_nlink: u16,
        pub vst_ino: u64,
        pub vst_uid: u32,
        pub vst_gid: u32,
        pub vst_atime: i64,
        pub vst_atimensec: i64,
        pub vst_mtime: i64,
        pub vst_mtimensec: i64,
        pub vst_ctime: i64,
        pub vst_ctimensec: i64,
        pub vst_birthtime: i64,
        pub vst_birthtimensec: i64,
        pub vst_size: i64,
        pub vst_blocks: i64,
        pub vst_blksize: i32,
        pub vst_flags: u32,
        pub vst_gen: u32,
        pub vst_rdev: u32,
        pub vst_qspare: [i64; 2],
    }

    /// `struct sockbuf_info`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct SockbufInfo {
        pub sbi_cc: u32,
        pub sbi_hiwat: u32,
        pub sbi_mbcnt: u32,
        pub sbi_mbmax: u32,
        pub sbi_lowat: u32,
        pub sbi_flags: i16,
        pub sbi_timeo: i16,
    }

    /// `insi_v4`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct InsiV4 {
        pub in4_tos: u8,
    }

    /// `insi_v6`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct InsiV6 {
        pub in6_hlim: u8,
        pub in6_cksum: i32,
        pub in6_ifindex: u16,
        pub in6_hops: i16,
    }

    /// `struct in_sockinfo`. An address is the union of `struct
    /// in4in6_addr` (12 bytes of padding, then the IPv4 address) and
    /// `struct in6_addr`: 16 bytes, 4-aligned. Ports are in network order.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct InSockInfo {
        pub insi_fport: i32,
        pub insi_lport: i32,
        pub insi_gencnt: u64,
        pub insi_flags: u32,
        pub insi_flow: u32,
        pub insi_vflag: u8,
        pub insi_ip_ttl: u8,
        pub rfu_1: u32,
        pub insi_faddr: [u32; 4],
        pub insi_laddr: [u32; 4],
        pub insi_v4: InsiV4,
        pub insi_v6: InsiV6,
    }

    /// `struct tcp_sockinfo`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct TcpSockInfo {
        pub tcpsi_ini: InSockInfo,
        pub tcpsi_state: i32,
        pub tcpsi_timer: [i32; 4],
        pub tcpsi_mss: i32,
        pub tcpsi_flags: u32,
        pub rfu_1: u32,
        pub tcpsi_tp: u64,
    }

    /// The size of `soi_proto`'s union: its largest member, `struct
    /// un_sockinfo` (two `uint64_t` and two 255-byte address unions),
    /// rounded up to its 8-byte alignment.
    const SOI_PROTO_SIZE: usize = 528;

    /// `struct socket_info`, `soi_proto` read as its TCP member.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct SocketInfo {
        pub soi_stat: VinfoStat,
        pub soi_so: u64,
        pub soi_pcb: u64,
        pub soi_type: i32,
        pub soi_protocol: i32,
        pub soi_family: i32,
        pub soi_options: i16,
        pub soi_linger: i16,
        pub soi_state: i16,
        pub soi_qlen: i16,
        pub soi_incqlen: i16,
        pub soi_qlimit: i16,
        pub soi_timeo: i16,
        pub soi_error: u16,
        pub soi_oobmark: u32,
        pub soi_rcv: SockbufInfo,
        pub soi_snd: SockbufInfo,
        pub soi_kind: i32,
        pub rfu_1: u32,
        pub soi_proto_tcp: TcpSockInfo,
        pub soi_proto_rest: [u8; SOI_PROTO_SIZE - std::mem::size_of::<TcpSockInfo>()],
    }

    /// `struct socket_fdinfo`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(super) struct SocketFdInfo {
        pub pfi: ProcFileInfo,
        pub psi: SocketInfo,
    }

    // The header's layout (LP64: macOS on x86_64 and arm64).
    const _: () = {
        use std::mem::{offset_of, size_of};
        assert!(size_of::<ProcFileInfo>() == 24);
        assert!(size_of::<VinfoStat>() == 136);
        assert!(size_of::<SockbufInfo>() == 24);
        assert!(offset_of!(InSockInfo, insi_vflag) == 24);
        assert!(offset_of!(InSockInfo, insi_faddr) == 32);
        assert!(offset_of!(InSockInfo, insi_laddr) == 48);
        assert!(offset_of!(InSockInfo, insi_v6) == 68);
        assert!(size_of::<InSockInfo>() == 80);
        assert!(offset_of!(TcpSockInfo, tcpsi_state) == 80);
        assert!(size_of::<TcpSockInfo>() == 120);
        assert!(offset_of!(SocketInfo, soi_kind) == 232);
        assert!(offset_of!(SocketInfo, soi_proto_tcp) == 240);
        assert!(size_of::<SocketInfo>() == 768);
        assert!(size_of::<SocketFdInfo>() == 792);
    };

    impl SocketFdInfo {
        /// The local address of a TCP socket in state `LISTEN`; `None` for
        /// any other socket.
        pub(super) fn tcp_listening_on(&self) -> Option<SocketAddr> {
            if self.psi.soi_kind != SOCKINFO_TCP
                || self.psi.soi_proto_tcp.tcpsi_state != TSI_S_LISTEN
            {
                return None;
            }
            let ini = &self.psi.soi_proto_tcp.tcpsi_ini;
            // Network order in the low 16 bits of an int.
            let port = u16::from_be(u16::try_from(ini.insi_lport & 0xffff).ok()?);
            let bytes = words_to_bytes(ini.insi_laddr);
            let ip = if ini.insi_vflag & INI_IPV6 != 0 {
                IpAddr::V6(Ipv6Addr::from(bytes))
            } else if ini.insi_vflag & INI_IPV4 != 0 {
                IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]))
            } else {
                return None;
            };
            Some(SocketAddr::new(ip, port))
        }
    }

    /// An address as the kernel laid it out in memory.
    fn words_to_bytes(words: [u32; 4]) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        for (i, word) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        bytes
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[expect(unsafe_code, reason = "a test value of a plain C structure")]
        fn zeroed() -> SocketFdInfo {
            // SAFETY: every field is an integer or an array of integers,
            // for which all-zero bytes are a valid value.
            unsafe { std::mem::zeroed() }
        }

        /// As the kernel fills it: ports in network order, addresses in
        /// memory order.
        fn tcp(state: i32, vflag: u8, laddr: [u8; 16], port: u16) -> SocketFdInfo {
            let mut info = zeroed();
            info.psi.soi_kind = SOCKINFO_TCP;
            info.psi.soi_proto_tcp.tcpsi_state = state;
            let ini = &mut info.psi.soi_proto_tcp.tcpsi_ini;
            ini.insi_vflag = vflag;
            ini.insi_lport = i32::from(port.to_be());
            for i in 0..4 {
                let mut word = [0u8; 4];
                word.copy_from_slice(&laddr[i * 4..i * 4 + 4]);
                ini.insi_laddr[i] = u32::from_ne_bytes(word);
            }
            info
        }

        #[test]
        fn listening_tcp_sockets_give_their_address() {
            let mut v4 = [0u8; 16];
            v4[12..].copy_from_slice(&[127, 0, 0, 1]);
            let listening = tcp(TSI_S_LISTEN, INI_IPV4, v4, 3100);
            assert_eq!(
                listening.tcp_listening_on(),
                Some("127.0.0.1:3100".parse().expect("addr"))
            );
            let v6 = Ipv6Addr::LOCALHOST.octets();
            assert_eq!(
                tcp(TSI_S_LISTEN, INI_IPV6, v6, 443).tcp_listening_on(),
                Some("[::1]:443".parse().expect("addr"))
            );
            // A dual-stack wildcard socket.
            assert_eq!(
                tcp(TSI_S_LISTEN, INI_IPV4 | INI_IPV6, [0; 16], 8080).tcp_listening_on(),
                Some("[::]:8080".parse().expect("addr"))
            );
            let established = tcp(4, INI_IPV4, v4, 3100);
            assert_eq!(established.tcp_listening_on(), None);
            let mut not_tcp = listening;
            not_tcp.psi.soi_kind = 1;
            assert_eq!(not_tcp.tcp_listening_on(), None);
        }
    }
}

/// The process scan behind [`listener_owner`] on macOS.
#[cfg(target_os = "macos")]
mod macos {
    use super::darwin::{PROC_PIDFDSOCKETINFO, PROX_FDTYPE_SOCKET, ProcFdInfo, SocketFdInfo};

    /// More processes than any machine runs: the scan stays bounded.
    const MAX_PIDS: usize = 1 << 17;
    /// More descriptors than a process is let open by default (`ulimit -n`
    /// of launchd's children is 256; servers raise it): bounded.
    const MAX_FDS: usize = 1 << 16;

    /// The processes holding a TCP socket that listens on `port` at an
    /// address loopback reaches, each with its owner's uid (`None` if it
    /// exited meanwhile). Processes this one may not look into are
    /// skipped: as another user, that is all of theirs.
    pub(super) fn listeners(port: u16) -> Vec<(u32, Option<u32>)> {
        let mut found = Vec::new();
        for pid in all_pids() {
            let holds = descriptors(pid).iter().any(|fd| {
                fd.proc_fdtype == PROX_FDTYPE_SOCKET
                    && socket(pid, fd.proc_fd)
                        .and_then(|info| info.tcp_listening_on())
                        .is_some_and(|local| {
                            local.port() == port && super::reachable_from_loopback(local.ip())
                        })
            });
            if let Some(pid) = holds.then(|| u32::try_from(pid).ok()).flatten() {
                found.push((pid, crate::process::info::owner_uid(pid)));
            }
        }
        found
    }

    /// `proc_listallpids`: every pid now (some gone by the time they are
    /// looked at, which is harmless).
    #[expect(unsafe_code, reason = "proc_listallpids has no safe wrapper")]
    fn all_pids() -> Vec<libc::pid_t> {
        // SAFETY: a null buffer of size 0 only asks for the count.
        let count = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
        let Ok(count) = usize::try_from(count) else {
            return Vec::new();
        };
        // Room for processes started between the two calls.
        let mut pids: Vec<libc::pid_t> = vec![0; (count + 64).min(MAX_PIDS)];
        let Ok(bytes) = libc::c_int::try_from(std::mem::size_of_val(pids.as_slice())) else {
            return Vec::new();
        };
        // SAFETY: the buffer holds `bytes` bytes of `pid_t`s, and the call
        // writes at most that many.
        let filled = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
        let Ok(filled) = usize::try_from(filled) else {
            return Vec::new();
        };
        pids.truncate(filled.min(pids.len()));
        pids.retain(|&pid| pid > 0);
        pids
    }

    /// `proc_pidinfo(PROC_PIDLISTFDS)`: the open descriptors of `pid`;
    /// empty if it may not be looked into (another user's) or has gone.
    #[expect(unsafe_code, reason = "proc_pidinfo has no safe wrapper")]
    fn descriptors(pid: libc::pid_t) -> Vec<ProcFdInfo> {
        // SAFETY: a null buffer of size 0 only asks for the size needed.
        let needed =
            unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
        let Ok(needed) = usize::try_from(needed) else {
            return Vec::new();
        };
        let slots = (needed / std::mem::size_of::<ProcFdInfo>() + 16).min(MAX_FDS);
        let mut fds = vec![ProcFdInfo::default(); slots];
        let Ok(bytes) = libc::c_int::try_from(std::mem::size_of_val(fds.as_slice())) else {
            return Vec::new();
        };
        // SAFETY: the buffer holds `bytes` bytes of `proc_fdinfo`s, and
        // the kernel writes at most that many.
        let written = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDLISTFDS,
                0,
                fds.as_mut_ptr().cast(),
                bytes,
            )
        };
        let Ok(written) = usize::try_from(written) else {
            return Vec::new();
        };
        fds.truncate((written / std::mem::size_of::<ProcFdInfo>()).min(slots));
        fds
    }

    /// `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)` of one descriptor.
    #[expect(unsafe_code, reason = "proc_pidfdinfo has no safe wrapper")]
    fn socket(pid: libc::pid_t, fd: i32) -> Option<SocketFdInfo> {
        let size = libc::c_int::try_from(std::mem::size_of::<SocketFdInfo>()).ok()?;
        let mut info = std::mem::MaybeUninit::<SocketFdInfo>::zeroed();
        // SAFETY: the buffer is one `socket_fdinfo` of exactly `size`
        // bytes (its layout checked against the header at compile time),
        // and the kernel writes at most `size` bytes into it.
        let written = unsafe {
            libc::proc_pidfdinfo(
                pid,
                fd,
                PROC_PIDFDSOCKETINFO,
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if written != size {
            return None;
        }
        // SAFETY: the structure holds only integers, so any bytes (zeroes
        // overwritten by the kernel) form a valid value.
        Some(unsafe { info.assume_init() })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A listener of this process, and a connection to it from this
    /// process, are both this user's.
    #[test]
    fn this_users_sockets_are_found_as_this_users() {
        let me = current_uid().expect("a uid");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        assert_eq!(listener_uid(local.port()), Some(me));
        let client = std::net::TcpStream::connect(local).expect("connect");
        let (_accepted, peer) = listener.accept().expect("accept");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert_eq!(peer_uid(local, peer), Some(me));
        drop(listener);
        assert_eq!(listener_uid(local.port()), None);
    }
}

/// The rule for listeners found by process (macOS), on every platform.
#[cfg(test)]
mod decide_tests {
    use super::*;

    const ME: u32 = 501;

    #[test]
    fn a_listener_found_among_the_processes_has_their_owner() {
        let never = || panic!("no probe when a holder was found");
        assert_eq!(
            decide(&[(10, Some(ME))], Some(ME), never),
            ListenerOwner::Owned {
                uid: ME,
                pid: Some(10)
            }
        );
        // Root sees everyone's: the process's uid decides, not seeing it.
        assert_eq!(
            decide(&[(10, Some(ME))], Some(0), never),
            ListenerOwner::Owned {
                uid: ME,
                pid: Some(10)
            }
        );
        // Another user's listener among ours wins (it may get the connection).
        assert_eq!(
            decide(&[(10, Some(ME)), (11, Some(502))], Some(ME), never),
            ListenerOwner::Owned {
                uid: 502,
                pid: Some(11)
            }
        );
    }

    #[test]
    fn a_port_that_answers_without_a_holder_found_is_hidden() {
        assert_eq!(decide(&[], Some(ME), || true), ListenerOwner::Hidden);
        assert_eq!(decide(&[], Some(ME), || false), ListenerOwner::Nobody);
        // A holder that exited before its owner was read is no holder.
        assert_eq!(
            decide(&[(10, None)], Some(ME), || false),
            ListenerOwner::Nobody
        );
    }

    #[test]
    fn loopback_reaches_loopback_and_wildcard_listeners() {
        for ip in ["127.0.0.1", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"] {
            assert!(reachable_from_loopback(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["192.168.1.5", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(!reachable_from_loopback(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// A listener of this process is this user's; once closed, nobody's.
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn this_processs_listener_is_this_users() {
        let me = current_uid().expect("a uid");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        match listener_owner(port) {
            ListenerOwner::Owned { uid, pid } => {
                assert_eq!(uid, me);
                if cfg!(target_os = "macos") {
                    assert_eq!(pid, Some(std::process::id()));
                }
            }
            other => panic!("own listener seen as {other:?}"),
        }
        drop(listener);
        assert_eq!(listener_owner(port), ListenerOwner::Nobody);
    }
}
