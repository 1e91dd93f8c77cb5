//! The two `fs4` guards: a daemon's start guard (`NAME.start`), held by
//! whoever starts or stops it, and the manager's single-instance guard
//! (`manager.lock`), held for the manager's whole life. Both are released
//! by dropping them (the kernel also releases them when the holder dies).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::paths;

/// Why a start guard could not be taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuardError {
    #[error("cannot lock {}: {error}", path.display())]
    Lock {
        path: PathBuf,
        error: std::sync::Arc<std::io::Error>,
    },
    /// The blocking task that waits for the lock died (the runtime is
    /// shutting down).
    #[error("the start lock task failed: {0}")]
    Task(String),
}

/// The exclusive right to start (or stop) one daemon; released on drop.
#[derive(Debug)]
pub struct StartGuard {
    _file: File,
}

/// Waits for, and takes, the start guard of `name`.
///
/// # Errors
/// The file cannot be created or locked.
pub async fn start(home: &Path, name: &str) -> Result<StartGuard, GuardError> {
    let path = paths::start_file(home, name);
    let shown = path.clone();
    let locked = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        paths::create_private_dir(path.parent().unwrap_or(Path::new(".")))?;
        let file = paths::private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        fs4::fs_std::FileExt::lock_exclusive(&file)?;
        Ok(file)
    })
    .await
    .map_err(|e| GuardError::Task(e.to_string()))?;
    locked
        .map(|file| StartGuard { _file: file })
        .map_err(|e| GuardError::Lock {
            path: shown,
            error: std::sync::Arc::new(e),
        })
}

/// Why the manager's single-instance guard cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another manager (pid {pid}) already runs for {home}; stop it first, or use it: `mcp-manager status`"
    )]
    AlreadyRunning { pid: String, home: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The manager's single-instance guard, held for its life; `manager.pid`
/// is removed when it is dropped.
#[derive(Debug)]
pub struct InstanceGuard {
    _file: File,
    pid_file: PathBuf,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Takes the single-instance guard of `home` without waiting, and writes
/// this process's pid beside it.
///
/// # Errors
/// [`InstanceError::AlreadyRunning`] when another manager holds it (its
/// pid as `manager.pid` says); [`InstanceError::Io`] naming the file.
pub fn instance(home: &Path) -> Result<InstanceGuard, InstanceError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| InstanceError::Io {
            action,
            path,
            source,
        }
    };
    paths::create_private_dir(home).map_err(io("create", home))?;
    let lock_path = paths::manager_lock_file(home);
    let pid_file = paths::manager_pid_file(home);
    let file = paths::private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let pid = std::fs::read_to_string(&pid_file)
                .map(|p| p.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into());
            return Err(InstanceError::AlreadyRunning {
                pid,
                home: home.display().to_string(),
            });
        }
    }
    paths::private_file()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&pid_file)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())
        })
        .map_err(io("write", &pid_file))?;
    Ok(InstanceGuard {
        _file: file,
        pid_file,
    })
}
