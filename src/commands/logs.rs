//! `mcp-manager logs NAME`: a daemon's log, its last lines or followed.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::daemon::log;
use crate::paths;

/// Why a log cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no log for {name:?} at {}", path.display())]
    Missing { name: String, path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the last `lines` lines of `name`'s log to `out`; with `follow`,
/// goes on writing what is appended until `stop` resolves.
///
/// # Errors
/// [`LogsError`]: there is no log, or it cannot be read (or `out` written).
pub async fn show(
    home: &Path,
    name: &str,
    lines: usize,
    follow: bool,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> Result<(), LogsError> {
    let path = paths::log_file(home, name);
    if !path.exists() {
        return Err(LogsError::Missing {
            name: name.to_owned(),
            path,
        });
    }
    let read = |source| LogsError::Read {
        path: path.clone(),
        source,
    };
    if follow {
        return log::follow(&path, lines, out, stop).await.map_err(read);
    }
    for line in log::tail_whole(&path, lines).map_err(read)? {
        out.write_all(line.as_bytes()).await.map_err(read)?;
        out.write_all(b"\n").await.map_err(read)?;
    }
    out.flush().await.map_err(read)
}
