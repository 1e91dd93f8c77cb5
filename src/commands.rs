//! `mcp-manager`'s one-shot commands: each takes its inputs, does its work
//! and returns what to print (a report with `Display`, and for some
//! `Serialize`) or a typed error; none prints.
//!
//! - [`add`], [`remove`]: one server into `config.json` and Claude Code
//!   at once, and out of both; then the manager reloads;
//! - [`doctor`]: checks the whole setup and says what to fix;
//! - [`generate`]: `generate-config`, the original's `~/.claude/mcp.json`;
//! - [`register`]: `generate-config --scope`, proxy entries where Claude
//!   Code reads them;
//! - [`import`]: moves Claude's servers onto the shared daemons;
//! - [`undo`]: `import --undo`, puts those files back;
//! - [`status`]: `status`, `start`, `stop`, `restart`: the manager's table;
//! - [`logs`]: a daemon's log, tailed or followed;
//! - [`host`]: `host NAME`, a config entry's stdio server served to many
//!   sessions.
//!
//! Claude's files themselves (where they are, their entries, editing them
//! byte for byte) are [`crate::claude`]'s.

pub mod add;
pub mod doctor;
pub mod generate;
pub mod host;
pub mod import;
pub mod logs;
pub mod register;
pub mod remove;
pub mod status;
pub mod undo;

use std::path::PathBuf;

use crate::config::{Config, ConfigError};
use crate::paths::NoHome;

/// The user's home directory could not be found (Claude's files live
/// there).
#[derive(Debug, thiserror::Error)]
#[error("cannot find your home directory")]
pub struct NoUserHome;

/// The user's home directory.
///
/// # Errors
/// [`NoUserHome`].
pub fn user_home() -> Result<PathBuf, NoUserHome> {
    dirs::home_dir().ok_or(NoUserHome)
}

/// Why a command that needs the config could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    NoHome(#[from] NoHome),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The config, and the manager's control port: `--port`, else the
/// config's `managerPort`.
///
/// # Errors
/// [`SetupError`]: no home, or a config that does not load.
pub fn load_config(port: Option<u16>) -> Result<(Config, u16), SetupError> {
    let home = crate::paths::home()?;
    let config = Config::load(&home)?;
    let port = port.unwrap_or(config.manager_port);
    Ok((config, port))
}
