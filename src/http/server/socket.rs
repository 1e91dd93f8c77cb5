//! The Unix domain socket a server also listens on, beside its TCP port,
//! and the rule by which a client trusts one.
//!
//! A host listens on `sockets/NAME.sock`, the manager on
//! `sockets/manager.sock` ([`crate::paths`]), in a directory of the home
//! that is 0700 and this user's: no other user can even connect there, and
//! each connection is also checked with the kernel's peer credentials
//! ([`super::peer::check_unix`]). The socket file is 0600. A stale file (a
//! server killed before it could remove it: nothing answers on it) is
//! removed before binding; a live one (another instance) is left alone and
//! this server listens on TCP only. The file is removed when the
//! [`UnixSocket`] is dropped, if it is still the one bound.
//!
//! A path longer than the platform's socket address ([`paths::fits_socket_address`])
//! is not used: TCP only, logged at debug. Windows has no socket here:
//! [`UnixSocket`] cannot be made there, [`bind`] gives `None` and
//! [`is_ours`] is false, so every hop stays on TCP.

use std::path::Path;

#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
use crate::paths;

/// A bound Unix socket, removed when dropped.
#[cfg(unix)]
#[derive(Debug)]
pub struct UnixSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// Device and inode of the file bound, so that drop removes only it.
    file: (u64, u64),
}

/// No Unix sockets on this platform: this type has no value.
#[cfg(not(unix))]
#[derive(Debug)]
pub enum UnixSocket {}

#[cfg(unix)]
impl UnixSocket {
    /// The next connection and its stream.
    ///
    /// # Errors
    /// As [`tokio::net::UnixListener::accept`].
    pub async fn accept(&self) -> std::io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
impl Drop for UnixSocket {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file);
        if still_ours {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::debug!(path = %self.path.display(), %error, "cannot remove the socket");
            }
        }
    }
}

/// Binds `path` (its directory made 0700, the socket 0600), first removing
/// a stale socket there. `None`, and the server listens on TCP only, when
/// the path is too long, the directory is not this user's alone, another
/// instance answers on it, or binding fails (each said in the log).
/// Needs a Tokio runtime.
#[cfg(unix)]
pub fn bind(path: &Path) -> Option<UnixSocket> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let shown = path.display();
    if !paths::fits_socket_address(path) {
        tracing::debug!(path = %shown, "the socket path is too long for a socket address; TCP only");
        return None;
    }
    let dir = path.parent()?;
    if let Err(error) = paths::create_private_dir(dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot create the sockets directory; TCP only");
        return None;
    }
    if !is_private_dir(dir) {
        tracing::warn!(dir = %dir.display(), "the sockets directory is not this user's alone (0700); TCP only");
        return None;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            tracing::warn!(path = %shown, "something that is not a socket is in the way; TCP only");
            return None;
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            tracing::warn!(path = %shown, "another instance answers on the socket; leaving it alone, TCP only");
            return None;
        }
        // Nothing answers: a server that was killed left it behind.
        if let Err(error) = std::fs::remove_file(path) {
            tracing::warn!(path = %shown, %error, "cannot remove a stale socket; TCP only");
            return None;
        }
        tracing::debug!(path = %shown, "removed a stale socket");
    }
    let listener = match tokio::net::UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(path = %shown, %error, "cannot listen on the socket; TCP only");
            return None;
        }
    };
    let meta = std::fs::symlink_metadata(path).ok()?;
    let socket = UnixSocket {
        listener,
        path: path.to_owned(),
        file: (meta.dev(), meta.ino()),
    };
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %shown, %error, "cannot make the socket 0600; TCP only");
        return None;
    }
    tracing::debug!(path = %shown, "listening on the socket");
    Some(socket)
}

/// No Unix sockets on this platform: always `None`.
#[cfg(not(unix))]
pub fn bind(path: &Path) -> Option<UnixSocket> {
    let _ = path;
    None
}

/// May a client of this user send to the socket at `path`? It is a socket
/// owned by this user, in a directory that is this user's and 0700 (so
/// only this user, or root, could have made it). Whether anything answers
/// is the connect's business.
pub fn is_ours(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Some(me) = crate::process::current_uid() else {
            return false;
        };
        let Some(dir) = path.parent() else {
            return false;
        };
        is_private_dir(dir)
            && std::fs::symlink_metadata(path)
                .is_ok_and(|meta| meta.file_type().is_socket() && meta.uid() == me)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// A real directory (not a link) of this user's, 0700 or tighter.
#[cfg(unix)]
fn is_private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(me) = crate::process::current_uid() else {
        return false;
    };
    std::fs::symlink_metadata(dir)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == me && meta.mode() & 0o077 == 0)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn a_socket_is_private_replaces_a_stale_one_and_leaves_a_live_one() {
        let home = tempfile::tempdir().expect("tempdir");
        let path = paths::host_socket(home.path(), "memory");
        let first = bind(&path).expect("bound");
        assert_eq!(mode(&paths::sockets_dir(home.path())), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(is_ours(&path));
        assert!(bind(&path).is_none(), "a live socket is not taken");
        assert!(path.exists(), "nor removed");
        drop(first);
        assert!(!path.exists(), "removed when dropped");
        // A server killed before its drop: the file stays, nothing answers.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let second = bind(&path).expect("a stale socket is replaced");
        drop(second);
        assert!(!path.exists(), "removed when dropped");
        assert!(!is_ours(&path));
    }

    #[tokio::test]
    async fn a_path_too_long_is_not_used() {
        let home = tempfile::tempdir().expect("tempdir");
        let name = "n".repeat(paths::MAX_SOCKET_PATH);
        assert!(bind(&paths::host_socket(home.path(), &name)).is_none());
    }

    #[test]
    fn a_socket_in_a_shared_directory_is_not_trusted() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = paths::sockets_dir(home.path());
        paths::create_private_dir(&dir).expect("dir");
        let path = dir.join("x.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert!(is_ours(&path));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(!is_ours(&path), "a directory others may write to");
    }
}
