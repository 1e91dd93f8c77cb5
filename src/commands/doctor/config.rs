//! Check 1: the config file loads. When it does not, the built-in daemons
//! stand in for it so the other checks can still run, and the finding
//! says so; a config error under `env` or `headers` has its quoted values
//! masked (they may be secrets).

use std::path::Path;

use super::Check;
use super::report::plural;
use crate::config::{Config, ConfigError};
use crate::paths;

/// The config check, the config the other checks use, and whether it is
/// the user's (`false`: the built-in daemons stand in for a broken file).
pub(super) fn check_config(home: &Path) -> (Check, Config, bool) {
    match Config::load(home) {
        Ok(config) => {
            let names = config.names().join(", ");
            let detail = match &config.source {
                Some(file) => format!(
                    "{} is valid: {} ({names})",
                    file.display(),
                    plural(config.servers.len(), "daemon")
                ),
                None => format!(
                    "no {}; the built-in daemons are used ({names})",
                    paths::config_file(home).display()
                ),
            };
            (Check::ok("config", detail), config, true)
        }
        Err(error) => {
            let fix = match &error {
                ConfigError::Read { path, .. } => format!(
                    "make {} readable, or remove it to use the built-in daemons",
                    path.display()
                ),
                ConfigError::Syntax {
                    path, line, column, ..
                } => format!(
                    "repair the JSON of {} at line {line}, column {column}",
                    path.display()
                ),
                ConfigError::Invalid { path, key, .. } => {
                    format!("edit `{key}` in {}", path.display())
                }
            };
            let detail = format!(
                "{}; the checks below use the built-in daemons instead",
                config_error_text(&error)
            );
            (
                Check::problem("config", detail, fix),
                Config::builtin(),
                false,
            )
        }
    }
}

/// The error's message with secret-looking values masked
/// ([`ConfigError::masked`]).
fn config_error_text(error: &ConfigError) -> String {
    error.masked()
}
