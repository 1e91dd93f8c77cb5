//! `mcp-manager remove NAME`: undoes `add`. The entry leaves `config.json`
//! (cut out as text: every other byte stays) and every Claude Code entry
//! under that name that is our proxy for it (`mcp-proxy --target NAME`, in
//! the user scope or any project's local scope of `~/.claude.json`) leaves
//! Claude's file. Another server under that name is left alone and named.
//!
//! Without `config.json` a built-in's name writes the file with the other
//! built-ins (as [`super::add`] does: the rest stay in force). The new
//! config is parsed with [`Config::parse`] before anything is written (so
//! removing the entry that made the file invalid is allowed, and a result
//! the parser rejects is refused with its message). Claude's file is
//! written first, so no proxy entry is left naming a daemon the config
//! lacks; each file is checked unchanged, backed up and replaced
//! atomically ([`register::apply`]). Then a running manager is asked to
//! reload ([`super::add::tell_manager`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::add::builtin_entries;
use super::import::ImportError;
use super::register;
use crate::claude::files::{read_optional, strip_bom};
use crate::claude::json_text;
use crate::config::{Config, ConfigError};

/// Why nothing was removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("{}", not_found(name, configured, left))]
    NotFound {
        name: String,
        configured: Vec<String>,
        /// Claude Code entries under that name that are not our proxy.
        left: Vec<String>,
    },
    #[error("{} is not valid JSON: {message}; fix it first (nothing was changed)", path.display())]
    NotJson { path: PathBuf, message: String },
    #[error("without \"{name}\" the config is refused, nothing was changed: {problem}")]
    Invalid {
        name: String,
        problem: Box<ConfigError>,
    },
    #[error(transparent)]
    Files(Box<ImportError>),
    #[error(
        "Claude Code's entries for \"{name}\" are removed, but {} was not written: {cause}; run `mcp-manager remove {name}` again",
        config.display()
    )]
    Config {
        name: String,
        config: PathBuf,
        cause: Box<ImportError>,
    },
}

impl From<ImportError> for RemoveError {
    fn from(error: ImportError) -> RemoveError {
        RemoveError::Files(Box::new(error))
    }
}

fn not_found(name: &str, configured: &[String], left: &[String]) -> String {
    let mut text = format!(
        "no server \"{name}\" in config.json nor a proxy for it in Claude Code; configured: {}",
        if configured.is_empty() {
            "none".to_owned()
        } else {
            configured.join(", ")
        }
    );
    if !left.is_empty() {
        text.push_str(&format!(
            "; a different server under that name is in {} (remove it with `claude mcp remove {name}`)",
            left.join(" and ")
        ));
    }
    text
}

/// What `remove` did. `Display` is the report (without a final newline).
#[derive(Debug)]
pub struct Removed {
    pub name: String,
    pub config: PathBuf,
    /// It was in `config.json` (or a built-in) and is not any more.
    pub from_config: bool,
    pub config_backup: Option<PathBuf>,
    /// The built-ins written out because there was no config file.
    pub built_ins: Vec<String>,
    /// The Claude Code scopes its proxy entry left.
    pub claude_removed: Vec<String>,
    pub claude_backup: Option<PathBuf>,
    /// Claude Code entries under the name that are not our proxy: left.
    pub claude_left: Vec<String>,
}

/// `mcp-manager remove NAME` for the tool's `home` and the user's
/// `user_home` (see the module doc).
///
/// # Errors
/// A [`RemoveError`]; nothing is written, except that for
/// [`RemoveError::Config`] Claude's file was.
pub fn remove(name: &str, home: &Path, user_home: &Path) -> Result<Removed, RemoveError> {
    let path = crate::paths::config_file(home);
    let bytes = read_optional(&path).map_err(ImportError::from)?;
    let mut built_ins = Vec::new();
    let (configured, new_config): (Vec<String>, Option<String>) = match &bytes {
        None => {
            let builtin = Config::builtin();
            let configured: Vec<String> = builtin.servers.keys().cloned().collect();
            let new = builtin.servers.contains_key(name).then(|| {
                let others: Vec<_> = builtin_entries(&builtin)
                    .into_iter()
                    .filter(|(n, _)| n != name)
                    .collect();
                built_ins = others.iter().map(|(n, _)| n.clone()).collect();
                json_text::insert_members(None, "mcpServers", &others, "  ")
            });
            let new = new
                .transpose()
                .map_err(|e| ImportError::Internal(e.to_string()))?;
            (configured, new)
        }
        Some(bytes) => {
            let text = String::from_utf8(bytes.clone()).map_err(|_| RemoveError::NotJson {
                path: path.clone(),
                message: "not UTF-8 text".into(),
            })?;
            let value: Value =
                serde_json::from_str(strip_bom(&text)).map_err(|e| RemoveError::NotJson {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let configured = value
                .get("mcpServers")
                .and_then(Value::as_object)
                .map(|servers| servers.keys().cloned().collect())
                .unwrap_or_default();
            let new = json_text::remove_member_at(&text, &["mcpServers"], name)
                .map_err(|e| ImportError::Internal(format!("{e} in {}", path.display())))?;
            (configured, new)
        }
    };
    if let Some(text) = &new_config {
        Config::parse(&path, text.as_bytes()).map_err(|problem| RemoveError::Invalid {
            name: name.to_owned(),
            problem: Box::new(problem),
        })?;
    }
    let claude = register::plan_unregister(user_home, name)?;
    if new_config.is_none() && claude.removed.is_empty() {
        return Err(RemoveError::NotFound {
            name: name.to_owned(),
            configured,
            left: claude.left,
        });
    }
    let claude_path = crate::claude::files::user_config(user_home);
    let claude_backup = match &claude.new {
        Some(new) => register::apply(&claude_path, claude.old.as_deref(), new, false)?,
        None => None,
    };
    let config_backup = match &new_config {
        Some(new) => register::apply(&path, bytes.as_deref(), new, true).map_err(|source| {
            RemoveError::Config {
                name: name.to_owned(),
                config: path.clone(),
                cause: Box::new(source),
            }
        })?,
        None => None,
    };
    Ok(Removed {
        name: name.to_owned(),
        config: path,
        from_config: new_config.is_some(),
        config_backup,
        built_ins,
        claude_removed: claude.removed,
        claude_backup,
        claude_left: claude.left,
    })
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        if self.from_config {
            write!(f, "removed \"{name}\" from {}", self.config.display())?;
        } else {
            write!(f, "{} has no \"{name}\"", self.config.display())?;
        }
        if !self.built_ins.is_empty() {
            write!(
                f,
                "\nthere was no config.json: it now holds the other built-in daemons ({}), which stay in force",
                self.built_ins.join(", ")
            )?;
        }
        if let Some(backup) = &self.config_backup {
            write!(f, "\nthe previous config is kept as {}", backup.display())?;
        }
        if self.claude_removed.is_empty() {
            write!(f, "\nClaude Code: no proxy entry for \"{name}\"")?;
        } else {
            write!(
                f,
                "\nClaude Code: removed mcp-proxy --target {name} from {}",
                self.claude_removed.join(" and ")
            )?;
        }
        if let Some(backup) = &self.claude_backup {
            write!(f, " (the previous file is kept as {})", backup.display())?;
        }
        if !self.claude_left.is_empty() {
            write!(
                f,
                "\nleft as it is: a different server named \"{name}\" in {} (not our proxy; `claude mcp remove {name}` removes it)",
                self.claude_left.join(" and ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry and our proxies leave; other bytes stay; a different
    /// server under the name is left and named; a missing name is refused.
    #[test]
    fn remove_undoes_add_and_leaves_what_is_not_ours() {
        let home = tempfile::tempdir().expect("home");
        let user = tempfile::tempdir().expect("user");
        let config = home.path().join("config.json");
        std::fs::write(
            &config,
            "{\n  \"mcpServers\": {\n    \"a\": {\"port\": 3300},\n    \"fs\": {\"port\": 3301}\n  }\n}\n",
        )
        .expect("write");
        let claude = user.path().join(".claude.json");
        std::fs::write(
            &claude,
            r#"{"theme": "x", "mcpServers": {"fs": {"command": "/b/mcp-proxy", "args": ["--target", "fs"]}},
"projects": {"/p": {"mcpServers": {"fs": {"command": "node"}}}, "/q": {"mcpServers": {"fs": {"command": "mcp-proxy", "args": ["--target", "fs"]}, "k": 1}}}}"#,
        )
        .expect("write");
        let removed = remove("fs", home.path(), user.path()).expect("removed");
        assert_eq!(removed.claude_removed.len(), 2, "{removed}");
        assert_eq!(removed.claude_left.len(), 1, "{removed}");
        assert!(removed.to_string().contains("/p"), "{removed}");
        assert_eq!(
            std::fs::read_to_string(&config).expect("read"),
            "{\n  \"mcpServers\": {\n    \"a\": {\"port\": 3300}\n  }\n}\n"
        );
        let after: Value =
            serde_json::from_slice(&std::fs::read(&claude).expect("read")).expect("json");
        assert_eq!(after["theme"], "x");
        assert!(after["mcpServers"].get("fs").is_none());
        assert_eq!(
            after["projects"]["/p"]["mcpServers"]["fs"]["command"],
            "node"
        );
        assert_eq!(after["projects"]["/q"]["mcpServers"]["k"], 1);
        let again = remove("fs", home.path(), user.path()).expect_err("gone");
        let text = again.to_string();
        assert!(
            text.contains("configured: a") && text.contains("/p"),
            "{text}"
        );
    }

    /// Without a file, a built-in's removal keeps the other built-ins.
    #[test]
    fn a_builtin_is_removed_by_writing_the_others() {
        let home = tempfile::tempdir().expect("home");
        let user = tempfile::tempdir().expect("user");
        let removed = remove("code-index", home.path(), user.path()).expect("removed");
        assert_eq!(removed.built_ins, ["ast-grep", "memory"]);
        let config = Config::load(home.path()).expect("valid");
        assert_eq!(config.names(), ["ast-grep", "memory"]);
    }
}
