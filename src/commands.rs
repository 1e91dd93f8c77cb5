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
//! - [`status`]: `status`, `start`, `stop`, `restart`: the manager's table;
//! - [`logs`]: a daemon's log, tailed or followed;
//! - [`host`]: `host NAME`, a config entry's stdio server served to many
//!   sessions;
//! - [`service`]: `service install|uninstall|status`, the manager as a
//!   user service (systemd, launchd).
//!
//! Claude's files themselves (where they are, their entries, editing them
//! byte for byte) are [`crate::claude`]'s.

pub mod add;
pub mod doctor;
pub mod generate;
pub mod host;
pub mod import;
pub mod lifecycle;
pub mod logs;
pub mod register;
pub mod remove;
pub mod service;
pub mod status;

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

/// The manager's control port for a command that only talks to it:
/// `--port`, else the config's `managerPort`, and the config's problem if
/// it does not load. A broken config does not stop `status`, `reload` or
/// `shutdown` (the manager keeps its last good one): its `managerPort` is
/// read if the file is JSON at all, else the default port is used.
///
/// # Errors
/// [`NoHome`].
pub fn control_port(port: Option<u16>) -> Result<(u16, Option<ConfigError>), NoHome> {
    let home = crate::paths::home()?;
    match Config::load(&home) {
        Ok(config) => Ok((port.unwrap_or(config.manager_port), None)),
        Err(error) => {
            let written = std::fs::read(crate::paths::config_file(&home))
                .ok()
                .and_then(|bytes| written_manager_port(&bytes));
            let port = port
                .or(written)
                .unwrap_or(crate::config::DEFAULT_MANAGER_PORT);
            Ok((port, Some(error)))
        }
    }
}

/// `"managerPort": N` as written in a file that may not parse (a trailing
/// comma elsewhere must not hide the port).
fn written_manager_port(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let (_, after) = text.split_once("\"managerPort\"")?;
    let digits: String = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_port_is_read_from_a_file_that_does_not_parse() {
        let text = b"{\n  \"managerPort\" :  4199,\n  \"mcpServers\": {},\n}\n";
        assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
        assert_eq!(written_manager_port(text), Some(4199));
        assert_eq!(written_manager_port(b"{\"mcpServers\": {}"), None);
        assert_eq!(written_manager_port(b"{\"managerPort\": 99999}"), None);
    }
}
