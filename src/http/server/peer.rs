//! Who may connect: only this user. Each connection's other end is looked
//! up ([`crate::process::socket::peer_uid`]) when its first request head
//! arrives, and another user's requests are refused (`403`, never handled).
//!
//! What each platform gets:
//! - Linux: the uid of the connecting socket, from `/proc/net/tcp{,6}`. A
//!   connection of another uid is closed; so is one whose socket cannot be
//!   found there (its end already went away: it cannot be told apart from
//!   a stranger's). Without a readable `/proc/net/tcp`, nothing can be told
//!   and every local connection is let in, as before.
//! - macOS, other Unixes and Windows: the platform cannot tell (no
//!   `peer_uid` yet), so every local connection is let in; the listeners
//!   still bind 127.0.0.1 only.
//!
//! On the Unix domain socket a server also listens on (every Unix, macOS
//! included; see [`super::socket`]) the kernel names the peer itself
//! ([`check_unix`]: `peer_cred`), and the socket's 0700 directory keeps
//! other users from connecting at all.

use std::net::SocketAddr;

use crate::process::socket;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its socket belongs to another user.
    #[error("the connection is uid {peer}'s; only uid {me} may connect")]
    OtherUser { peer: u32, me: u32 },
    /// Its socket is not in the platform's table (it went away).
    #[error("the connection's owner cannot be found; only uid {me} may connect")]
    Unknown { me: u32 },
    /// The look-up itself failed (the runtime is stopping).
    #[error("the connection's owner could not be checked")]
    Unchecked,
}

/// May the client that connected from `peer` to `local` in?
///
/// # Errors
/// A [`Refusal`] for a connection of another user (or, where the platform
/// can tell owners, one whose owner cannot be found).
pub fn check(local: SocketAddr, peer: SocketAddr) -> Result<(), Refusal> {
    let Some(me) = socket::current_uid() else {
        return Ok(());
    };
    match socket::peer_uid(local, peer) {
        Some(uid) if uid == me => Ok(()),
        Some(peer) => Err(Refusal::OtherUser { peer, me }),
        None if can_tell() => Err(Refusal::Unknown { me }),
        None => Ok(()),
    }
}

/// May the client connected to our Unix socket by `stream` in? Its uid,
/// as the kernel gives it (`SO_PEERCRED`, `getpeereid`), must be ours.
///
/// # Errors
/// [`Refusal::OtherUser`] for another uid; [`Refusal::Unknown`] when the
/// kernel does not say.
#[cfg(unix)]
pub fn check_unix(stream: &tokio::net::UnixStream) -> Result<(), Refusal> {
    let Some(me) = socket::current_uid() else {
        return Err(Refusal::Unchecked);
    };
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => Ok(()),
        Ok(cred) => Err(Refusal::OtherUser {
            peer: cred.uid(),
            me,
        }),
        Err(error) => {
            tracing::debug!(%error, "cannot read the socket peer's credentials");
            Err(Refusal::Unknown { me })
        }
    }
}

/// Can this platform tell who owns a connection?
fn can_tell() -> bool {
    cfg!(target_os = "linux") && std::path::Path::new("/proc/net/tcp").exists()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A connection of this process is let in.
    #[test]
    fn this_users_connection_is_let_in() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(local).expect("connect");
        let (_accepted, peer) = listener.accept().expect("accept");
        assert_eq!(check(local, peer), Ok(()));
    }

    /// This process's own end of a socket pair is let in.
    #[tokio::test]
    async fn this_users_unix_peer_is_let_in() {
        let (a, _b) = tokio::net::UnixStream::pair().expect("pair");
        assert_eq!(check_unix(&a), Ok(()));
    }

    /// A peer that is in no table (nothing ever connected from there) is
    /// refused where the platform can tell owners.
    #[test]
    fn a_peer_that_cannot_be_found_is_refused() {
        let local: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let peer: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        assert!(matches!(check(local, peer), Err(Refusal::Unknown { .. })));
    }
}
