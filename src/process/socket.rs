//! Who owns a TCP socket on this machine: the user behind a listening port
//! (is this daemon ours?) and behind a connection's other end (may this
//! client in?). Only this user may reach its servers, and a proxy sends a
//! session's first byte only to a listener this user owns.
//!
//! Linux reads the `uid` column of `/proc/net/tcp` and `/proc/net/tcp6`
//! (both ends of a loopback connection are in the same table). Other
//! platforms answer `None` ("cannot tell"); callers decide what that means.

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

/// The owner of the socket listening on `port` on a loopback or wildcard
/// address; `None` if nothing listens there or the platform cannot tell.
pub fn listener_uid(port: u16) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        linux::tables()
            .iter()
            .find_map(|table| linux::listener_uid(table, port))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        None
    }
}

/// The owner of the socket at the other end of a connection accepted on
/// `local` from `peer`: the entry whose local address is `peer` and whose
/// remote address is `local`. `None` if it is not on this machine (or has
/// gone) or the platform cannot tell.
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

    /// Where a listener on this machine can be reached from loopback.
    fn reachable_from_loopback(ip: IpAddr) -> bool {
        ip.is_loopback()
            || ip.is_unspecified()
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()))
    }

    pub(super) fn listener_uid(table: &str, port: u16) -> Option<u32> {
        rows(table)
            .find(|row| {
                row.state == LISTEN
                    && row.local.port() == port
                    && reachable_from_loopback(row.local.ip())
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
