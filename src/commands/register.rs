//! `mcp-manager generate-config --scope user|project`: proxy entries
//! where Claude Code reads them, the `mcpServers` of `~/.claude.json` or of
//! a project's `.mcp.json`, every other byte of the file kept.
//!
//! `add` and `remove` go through [`Slot`]: one proxy entry in the user
//! scope (`mcpServers` of `~/.claude.json`) or a project's local scope
//! (`projects[DIR].mcpServers` of the same file), planned first
//! ([`plan_proxy`], [`plan_unregister`]) so that nothing is written when
//! anything is refused, then written with a backup ([`apply`]).

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
use crate::claude::projects::ProjectKeys;
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
            let value = json_object(path, text)?;
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

/// `path` read as a JSON object (`None`: no file): its bytes, text and
/// value.
type ClaudeFile = Option<(Vec<u8>, String, Value)>;

fn read_object(path: &Path) -> Result<ClaudeFile, ImportError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes.clone()).map_err(|_| ImportError::Config {
        message: format!("{} is not UTF-8 text", path.display()),
    })?;
    let value = json_object(path, &text)?;
    Ok(Some((bytes, text, value)))
}

/// One `mcpServers` object of `~/.claude.json`: the user scope or a
/// project's local scope, as `claude mcp add -s user|local` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `~/.claude.json`.
    pub path: PathBuf,
    /// `None`: the user scope; else the project's key in `projects`.
    pub project: Option<String>,
}

impl Slot {
    /// The user scope of `~/.claude.json` under `user_home`.
    pub fn user(user_home: &Path) -> Slot {
        Slot {
            path: files::user_config(user_home),
            project: None,
        }
    }

    /// The local scope of the project at `dir`: the key Claude Code
    /// already has for it, else the absolute path it would write.
    ///
    /// # Errors
    /// `~/.claude.json` cannot be read or is not a JSON object.
    pub fn local(user_home: &Path, dir: &Path) -> Result<Slot, ImportError> {
        let path = files::user_config(user_home);
        let keys = ProjectKeys::of(dir);
        let projects = read_object(&path)?.and_then(|(_, _, value)| value.get("projects").cloned());
        let key = keys
            .find(|key| projects.as_ref().and_then(|p| p.get(key)).map(|_| ()))
            .map(|(key, ())| key.to_owned())
            .or_else(|| keys.all().first().cloned())
            .unwrap_or_else(|| dir.to_string_lossy().into_owned());
        Ok(Slot {
            path,
            project: Some(key),
        })
    }

    /// The keys from the top of the file to the `mcpServers` object.
    fn keys(&self) -> Vec<&str> {
        match &self.project {
            None => vec!["mcpServers"],
            Some(key) => vec!["projects", key.as_str(), "mcpServers"],
        }
    }

    /// `user` or `local (DIR)`, as `claude mcp get` calls the scope.
    pub fn describe(&self) -> String {
        match &self.project {
            None => format!("the user scope of {}", self.path.display()),
            Some(key) => format!("the local scope of {key} in {}", self.path.display()),
        }
    }

    /// The entry under `name` in `value` (the whole file), if any.
    fn entry<'v>(&self, value: &'v Value, name: &str) -> Option<&'v Value> {
        let mut at = value;
        for key in self.keys() {
            at = at.get(key)?;
        }
        at.get(name)
    }
}

/// What registering one proxy entry will do.
#[derive(Debug)]
pub enum Planned {
    /// The slot already runs `mcp-proxy --target NAME`: nothing to write.
    Kept,
    /// The file as read (`None`: it does not exist) and as it will be.
    Write { old: Option<Vec<u8>>, new: String },
}

/// Plans the proxy entry `{"type": "stdio", "command": proxy, "args":
/// ["--target", NAME, …], "env": {}}` (what `claude mcp add` writes) in
/// `slot`, writing nothing.
///
/// # Errors
/// [`ImportError`]: the file cannot be read or is not a JSON object, or a
/// different server has this name there (it is named, and left alone).
pub fn plan_proxy(
    slot: &Slot,
    name: &str,
    proxy: &Path,
    manager_port: u16,
) -> Result<Planned, ImportError> {
    let file = read_object(&slot.path)?;
    if let Some((_, _, value)) = &file {
        match slot.entry(value, name) {
            None => {}
            Some(entry)
                if matches!(
                    entries::classify(entry),
                    entries::Entry::Proxy { target: Some(target), .. } if target == name
                ) =>
            {
                return Ok(Planned::Kept);
            }
            Some(_) => {
                return Err(ImportError::BadEntry {
                    path: slot.path.clone(),
                    name: name.to_owned(),
                    problem: format!(
                        "{} already has a different server under this name; nothing was changed: choose another name, or move that server with `mcp-manager import` (or `claude mcp remove {name}`) first",
                        slot.describe()
                    ),
                });
            }
        }
    }
    let entry = Node::Object(vec![
        ("type".to_owned(), Node::string("stdio")),
        ("command".to_owned(), Node::string(&proxy.to_string_lossy())),
        (
            "args".to_owned(),
            Node::strings(&entries::proxy_args(name, manager_port)),
        ),
        ("env".to_owned(), Node::Object(Vec::new())),
    ]);
    let text = file.as_ref().map(|(_, text, _)| text.as_str());
    let step = text.map_or_else(|| "  ".to_owned(), indent_step);
    let new = json_text::insert_members_at(text, &slot.keys(), &[(name.to_owned(), entry)], &step)
        .map_err(|e| edit_error(e, &slot.path))?;
    Ok(Planned::Write {
        old: file.map(|(bytes, _, _)| bytes),
        new,
    })
}

/// What unregistering `NAME` will do in `~/.claude.json`.
#[derive(Debug, Default)]
pub struct Unregister {
    /// The file as read, and as it will be (`None`: nothing to write).
    pub old: Option<Vec<u8>>,
    pub new: Option<String>,
    /// The scopes whose proxy entry for `NAME` goes.
    pub removed: Vec<String>,
    /// Entries under `NAME` that are not our proxy for it: left, named.
    pub left: Vec<String>,
}

/// Plans removing every proxy entry for `name` under that name from
/// `~/.claude.json` (the user scope and every project's local scope),
/// writing nothing. Any other server under that name is left and named.
///
/// # Errors
/// [`ImportError`]: the file cannot be read or is not a JSON object.
pub fn plan_unregister(user_home: &Path, name: &str) -> Result<Unregister, ImportError> {
    let path = files::user_config(user_home);
    let Some((bytes, text, value)) = read_object(&path)? else {
        return Ok(Unregister::default());
    };
    let mut slots = vec![Slot::user(user_home)];
    if let Some(projects) = value.get("projects").and_then(Value::as_object) {
        slots.extend(projects.keys().map(|key| Slot {
            path: path.clone(),
            project: Some(key.clone()),
        }));
    }
    let mut plan = Unregister::default();
    let mut edited = text;
    for slot in &slots {
        let Some(entry) = slot.entry(&value, name) else {
            continue;
        };
        let ours = matches!(
            entries::classify(entry),
            entries::Entry::Proxy { target: Some(target), .. } if target == name
        );
        if !ours {
            plan.left.push(slot.describe());
            continue;
        }
        if let Some(out) = json_text::remove_member_at(&edited, &slot.keys(), name)
            .map_err(|e| edit_error(e, &path))?
        {
            edited = out;
            plan.removed.push(slot.describe());
        }
    }
    if !plan.removed.is_empty() {
        plan.old = Some(bytes);
        plan.new = Some(edited);
    }
    Ok(plan)
}

/// Writes a planned file: checked unchanged since it was read, the old
/// content kept as `FILE.backup.<ms>` (a new file: an empty
/// `FILE.created.<ms>` beside it), then replaced atomically; `private`:
/// 0600 on unix. The backup's path.
///
/// # Errors
/// [`ImportError::Changed`]: the file changed meanwhile (Claude Code
/// writes it often); nothing written. Else the file system's error.
pub fn apply(
    path: &Path,
    old: Option<&[u8]>,
    new: &str,
    private: bool,
) -> Result<Option<PathBuf>, ImportError> {
    if read_optional(path)?.as_deref() != old {
        return Err(ImportError::Changed {
            path: path.to_owned(),
        });
    }
    let stamp = crate::paths::now_ms();
    let backup = match old {
        Some(bytes) => Some(write_beside(path, Tag::Backup, stamp, bytes)?),
        None => {
            write_beside(path, Tag::Created, stamp, b"")?;
            None
        }
    };
    write_atomic(path, new.as_bytes(), private)?;
    Ok(backup)
}

/// `text` (of the file at `path`) as a JSON object.
///
/// # Errors
/// [`ImportError::NotJson`] with the line and column, or
/// [`ImportError::NotAnObject`].
fn json_object(path: &Path, text: &str) -> Result<Value, ImportError> {
    let value: Value = serde_json::from_str(strip_bom(text)).map_err(|e| ImportError::NotJson {
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
    Ok(value)
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
