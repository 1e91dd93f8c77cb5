//! Every place on disk the tool uses, in one module.
//!
//! The home directory is `$MCP_SESSION_MANAGER_HOME`, else
//! `~/.mcp-session-manager` (the original's). It holds `config.json`; for
//! every daemon `NAME.lock` (its record), `NAME.log` (rotated to
//! `NAME.log.1`) and `NAME.start` (its start guard); for the manager
//! `manager.lock`, `manager.pid` and `manager.log`; on Unix, in `sockets/`
//! (0700), `NAME.sock` for a host and `manager.sock` for the manager: the
//! Unix domain sockets this user's clients reach them by. No other module builds
//! one of these names, and only [`home`] reads where the home is: every
//! other function takes it from its caller.
//!
//! Everything in the home is this user's alone: directories are made 0700
//! ([`create_private_dir`]) and files 0600 ([`private_file`]), whoever
//! creates them (the manager, a proxy, a host), so logs, records and a
//! hosted server's data under the home are never readable by another user.

use std::path::{Path, PathBuf};

/// The variable that moves the home directory (tests, several installs).
pub const HOME_ENV: &str = "MCP_SESSION_MANAGER_HOME";

/// No home directory could be found.
#[derive(Debug, thiserror::Error)]
#[error("cannot find the home directory; set {HOME_ENV} to the directory to use")]
pub struct NoHome;

/// The home directory (not created here).
///
/// # Errors
/// [`NoHome`] when neither the variable nor a user home directory is set.
pub fn home() -> Result<PathBuf, NoHome> {
    match std::env::var_os(HOME_ENV) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => dirs::home_dir()
            .map(|h| h.join(".mcp-session-manager"))
            .ok_or(NoHome),
    }
}

/// Creates `dir` and its missing parents, and makes `dir` itself 0700
/// (also when it already existed with a wider mode, and it is ours): the
/// home and the directories in it hold logs and data of this user alone.
///
/// # Errors
/// The directory cannot be created or its mode set.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        let ours = crate::process::current_uid().is_none_or(|uid| uid == meta.uid());
        if ours && meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Options that create a file readable and writable by this user only
/// (0600 on Unix; the mode of a file that already exists is left alone).
pub fn private_file() -> std::fs::OpenOptions {
    #[cfg_attr(not(unix), expect(unused_mut, reason = "the mode is Unix only"))]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// `config.json`: the user's servers.
pub fn config_file(home: &Path) -> PathBuf {
    home.join("config.json")
}

/// `NAME.lock`: which process serves the daemon, on which port.
pub fn lock_file(home: &Path, name: &str) -> PathBuf {
    home.join(format!("{name}.lock"))
}

/// `NAME.log`: the daemon's stdout and stderr.
pub fn log_file(home: &Path, name: &str) -> PathBuf {
    home.join(format!("{name}.log"))
}

/// `NAME.start`: the file whose `fs4` lock is the daemon's start guard
/// (never deleted, so every starter locks the same inode).
pub fn start_file(home: &Path, name: &str) -> PathBuf {
    home.join(format!("{name}.start"))
}

/// `manager.lock`: held by the one manager of this home.
pub fn manager_lock_file(home: &Path) -> PathBuf {
    home.join("manager.lock")
}

/// `manager.pid`: the running manager's pid, for messages.
pub fn manager_pid_file(home: &Path) -> PathBuf {
    home.join("manager.pid")
}

/// `manager.log`: the manager's own log.
pub fn manager_log_file(home: &Path) -> PathBuf {
    home.join("manager.log")
}

/// `sockets/`: the directory of the Unix domain sockets (0700: only this
/// user may connect to what is in it).
pub fn sockets_dir(home: &Path) -> PathBuf {
    home.join("sockets")
}

/// `sockets/NAME.sock`: where `mcp-manager host NAME` also listens.
pub fn host_socket(home: &Path, name: &str) -> PathBuf {
    sockets_dir(home).join(format!("{name}.sock"))
}

/// `sockets/manager.sock`: where the manager's control API also listens.
pub fn manager_socket(home: &Path) -> PathBuf {
    sockets_dir(home).join("manager.sock")
}

/// The longest Unix socket path the platform takes (`sun_path` holds 108
/// bytes on Linux, 104 on macOS and the BSDs, with its closing NUL).
pub const MAX_SOCKET_PATH: usize = if cfg!(any(target_os = "linux", target_os = "android")) {
    107
} else {
    103
};

/// Does `path` fit in a Unix socket address? A longer one is not used: the
/// server listens on TCP only, and clients use TCP.
pub fn fits_socket_address(path: &Path) -> bool {
    let len = path.as_os_str().len();
    len > 0 && len <= MAX_SOCKET_PATH
}

/// A log's previous generation: `NAME.log` → `NAME.log.1`.
pub fn rotated_log(log: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(log.as_os_str());
    name.push(".1");
    PathBuf::from(name)
}

/// `program` in the directory of the running binary (the two binaries are
/// installed together), absolute; `None` if this binary's path is unknown.
pub fn beside_this_program(program: &str) -> Option<PathBuf> {
    let file = format!("{program}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    Some(exe.parent()?.join(file))
}

/// Milliseconds since the Unix epoch (`startedAt`, backup names).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn socket_names_live_in_their_directory() {
        let home = Path::new("/h");
        assert_eq!(
            host_socket(home, "memory"),
            Path::new("/h/sockets/memory.sock")
        );
        assert_eq!(manager_socket(home), Path::new("/h/sockets/manager.sock"));
        assert!(fits_socket_address(&manager_socket(home)));
        let deep = Path::new("/").join("d".repeat(MAX_SOCKET_PATH));
        assert!(!fits_socket_address(&deep));
    }

    #[test]
    fn the_home_and_its_files_are_this_users_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let home = root.path().join("home").join("nested");
        create_private_dir(&home).expect("create");
        assert_eq!(mode(&home), 0o700);
        // A home made 0755 by an older version is tightened.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&home).expect("again");
        assert_eq!(mode(&home), 0o700);
        let file = home.join("x.log");
        private_file()
            .create(true)
            .append(true)
            .open(&file)
            .expect("open");
        assert_eq!(mode(&file), 0o600);
    }
}
