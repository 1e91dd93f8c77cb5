//! `mcp-manager generate-config --scope user|project`: proxy entries
//! where Claude Code reads them, the `mcpServers` of `~/.claude.json` or of
//! a project's `.mcp.json`, every other byte of the file kept.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::generate::Entries;
use super::import::{ImportError, edit_error};
use super::{NoUserHome, SetupError};
use crate::claude::entries;
use crate::claude::files::{self, read_optional, strip_bom};
use crate::claude::json_text::{self, Node, indent_step};
use crate::claude::write::{Tag, write_atomic, write_beside};
use crate::config::strip_position;

/// Which Claude Code file the entries go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `~/.claude.json`: every project.
    User,
    /// `DIR/.mcp.json`: that project.
    Project(PathBuf),
}

/// Why nothing was registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    NoUserHome(#[from] NoUserHome),
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// What `generate-config --scope` did. `Display` is the text to print
/// (without a final newline).
#[derive(Debug)]
pub enum Registration {
    /// `--print`: the entries only, as `generate-config` renders them.
    Printed(Value),
    Registered {
        registered: Registered,
        /// When Claude Code picks the file up.
        reads: &'static str,
        /// What was left out (a built-in whose runner is missing).
        entries: Entries,
    },
}

/// `mcp-manager generate-config --scope …`: one proxy entry per daemon of
/// the config (and `--port`) in `destination`, or with `print_only` the
/// document only.
///
/// # Errors
/// A [`RegisterError`]: no home, a config that does not load, or what
/// [`register_proxies`] refuses.
pub fn register(
    port: Option<u16>,
    print_only: bool,
    destination: Destination,
) -> Result<Registration, RegisterError> {
    let (config, port) = super::load_config(port)?;
    let proxy = super::generate::proxy_path();
    let entries = Entries::of(&config);
    if print_only {
        entries.log();
        return Ok(Registration::Printed(super::generate::render(
            &entries.names,
            &proxy,
            port,
        )));
    }
    let (path, reads) = match destination {
        Destination::User => (
            files::user_config(&super::user_home()?),
            "Claude Code reads it in every project; restart running sessions to pick it up.",
        ),
        Destination::Project(dir) => (
            files::project_config(&dir),
            "Claude Code reads it in that project after you approve its servers (it asks at the next start, or `/mcp`).",
        ),
    };
    let registered = register_proxies(&path, &entries.names, &proxy, port)?;
    Ok(Registration::Registered {
        registered,
        reads,
        entries,
    })
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Registration::Printed(document) => write!(f, "{document:#}"),
            Registration::Registered {
                registered,
                reads,
                entries,
            } => {
                write!(
                    f,
                    "{registered}\n{reads}\nDaemons start on demand (the first proxy starts the manager); `claude mcp list` shows each as ✔ Connected."
                )?;
                let notes = entries.notes();
                if !notes.is_empty() {
                    write!(f, "\n{notes}")?;
                }
                Ok(())
            }
        }
    }
}

/// What [`register_proxies`] did.
#[derive(Debug, Default, Serialize)]
pub struct Registered {
    pub path: PathBuf,
    /// Entries added.
    pub added: Vec<String>,
    /// Entries that already ran mcp-proxy: left as they were.
    pub kept: Vec<String>,
    pub backup: Option<PathBuf>,
}

/// Adds `{"command": proxy, "args": ["--target", NAME, …]}` for each
/// name to the `mcpServers` of a Claude Code file (`~/.claude.json`, a
/// project's `.mcp.json`), creating it if need be and keeping every other
/// byte. An entry that already runs mcp-proxy is left alone; a different
/// server of the same name is refused (move it with `import` first). A
/// backup is kept beside the file; the write is atomic. The arguments
/// carry `--manager-port` when `manager_port` is not the default.
///
/// # Errors
/// [`ImportError`]: unreadable or invalid file, a clash; nothing written.
pub fn register_proxies(
    path: &Path,
    names: &[String],
    proxy: &Path,
    manager_port: u16,
) -> Result<Registered, ImportError> {
    let bytes = read_optional(path)?;
    let text = match &bytes {
        Some(bytes) => Some(
            String::from_utf8(bytes.clone()).map_err(|_| ImportError::Config {
                message: format!("{} is not UTF-8 text", path.display()),
            })?,
        ),
        None => None,
    };
    let existing: serde_json::Map<String, Value> = match &text {
        Some(text) => {
            let value: Value =
                serde_json::from_str(strip_bom(text)).map_err(|e| ImportError::NotJson {
                    path: path.to_owned(),
                    message: strip_position(&e.to_string()),
                    line: e.line(),
                    column: e.column(),
                })?;
            if !value.is_object() {
                return Err(ImportError::NotAnObject {
                    path: path.to_owned(),
                    key: "(the file)".into(),
                });
            }
            match value.get("mcpServers") {
                None => serde_json::Map::new(),
                Some(Value::Object(servers)) => servers.clone(),
                Some(_) => {
                    return Err(ImportError::NotAnObject {
                        path: path.to_owned(),
                        key: "mcpServers".into(),
                    });
                }
            }
        }
        None => serde_json::Map::new(),
    };
    let mut report = Registered {
        path: path.to_owned(),
        ..Registered::default()
    };
    let mut new = Vec::new();
    for name in names {
        match existing.get(name) {
            Some(entry) if matches!(entries::classify(entry), entries::Entry::Proxy { .. }) => {
                report.kept.push(name.clone());
            }
            Some(_) => {
                return Err(ImportError::BadEntry {
                    path: path.to_owned(),
                    name: name.clone(),
                    problem: "a different server has this name; move it onto the shared daemons with `mcp-manager import` first (or rename it)".into(),
                });
            }
            None => {
                let entry = Node::Object(vec![
                    ("command".to_owned(), Node::string(&proxy.to_string_lossy())),
                    (
                        "args".to_owned(),
                        Node::strings(&entries::proxy_args(name, manager_port)),
                    ),
                ]);
                new.push((name.clone(), entry));
                report.added.push(name.clone());
            }
        }
    }
    if new.is_empty() {
        return Ok(report);
    }
    let step = text.as_deref().map_or_else(|| "  ".to_owned(), indent_step);
    let out = json_text::insert_members(text.as_deref(), "mcpServers", &new, &step)
        .map_err(|e| edit_error(e, path))?;
    if let Some(bytes) = &bytes {
        report.backup = Some(write_beside(
            path,
            Tag::Backup,
            crate::paths::now_ms(),
            bytes,
        )?);
    }
    write_atomic(path, out.as_bytes(), false)?;
    Ok(report)
}

impl fmt::Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.added.is_empty() {
            write!(
                f,
                "{}: every entry already runs mcp-proxy; nothing to write",
                self.path.display()
            )?;
        } else {
            write!(
                f,
                "wrote {}: added {}",
                self.path.display(),
                self.added.join(", ")
            )?;
        }
        if !self.kept.is_empty() {
            write!(
                f,
                "\nalready through mcp-proxy, left as they were: {}",
                self.kept.join(", ")
            )?;
        }
        if let Some(backup) = &self.backup {
            write!(f, "\nthe previous file is kept as {}", backup.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MANAGER_PORT;

    #[test]
    fn proxies_are_registered_keeping_every_other_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".claude.json");
        let before = "{\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"mine\": {\"command\": \"/bin/mcp-proxy\", \"args\": [\"--target\", \"mine\"]}\n  },\n  \"tail\": [1, 2]\n}\n";
        std::fs::write(&path, before).expect("write");
        let names = vec!["mine".to_owned(), "new".to_owned()];
        let done = register_proxies(
            &path,
            &names,
            Path::new("/bin/mcp-proxy"),
            DEFAULT_MANAGER_PORT,
        )
        .expect("registered");
        assert_eq!(done.added, ["new"]);
        assert_eq!(done.kept, ["mine"]);
        let after = std::fs::read_to_string(&path).expect("read");
        let value: Value = serde_json::from_str(&after).expect("json");
        assert_eq!(
            value["mcpServers"]["new"]["args"],
            serde_json::json!(["--target", "new"])
        );
        assert!(after.starts_with("{\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"mine\": {\"command\": \"/bin/mcp-proxy\""));
        assert!(after.ends_with("  },\n  \"tail\": [1, 2]\n}\n"), "{after}");
        let backup = done.backup.expect("backup");
        assert_eq!(std::fs::read_to_string(backup).expect("backup"), before);
        // A different server of the same name is refused; nothing written.
        std::fs::write(&path, r#"{"mcpServers": {"new": {"command": "node"}}}"#).expect("write");
        let refused = register_proxies(
            &path,
            &names,
            Path::new("/bin/mcp-proxy"),
            DEFAULT_MANAGER_PORT,
        );
        assert!(refused.is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            r#"{"mcpServers": {"new": {"command": "node"}}}"#
        );
    }
}
