//! `mcp-manager generate-config`: `~/.claude/mcp.json` as the original
//! writes it, one entry per daemon, each running the installed `mcp-proxy`
//! with `--target NAME`. An existing file is first copied to
//! `mcp.json.backup.<ms>`; the file is then replaced atomically.
//!
//! A fresh start is green: without a config file (the built-in daemons),
//! a built-in whose runner (`npx`, `uvx`, …) is not on `PATH` is left out
//! and named with what to install ([`Entries`]), so the first
//! `claude mcp list` shows no server the user never asked for failing. An
//! entry of the user's own file is always written, with the same warning.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{NoUserHome, SetupError};
use crate::claude::files::{self, read_optional};
use crate::claude::{entries, write};
use crate::config::{Config, ServerConfig};
use crate::daemon::launch::missing_program;
use crate::process::find_program;

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub backup: Option<PathBuf>,
}

/// Why `generate-config` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    NoUserHome(#[from] NoUserHome),
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot back up {}", path.display())]
    Backup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The daemons of a config to write entries for, and those left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// The names to write, in the config's order.
    pub names: Vec<String>,
    /// Built-ins left out: their runner is not on `PATH`.
    pub skipped: Vec<MissingRunner>,
    /// Entries of the user's file written although their runner is not on
    /// `PATH` (they fail until it is installed).
    pub unrunnable: Vec<MissingRunner>,
}

/// A daemon whose runner is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRunner {
    pub name: String,
    /// What is missing and what installs it.
    pub problem: String,
}

impl Entries {
    /// The entries to write for `config`: every daemon, except built-ins
    /// whose runner `found` does not find (`process::find_program` in
    /// [`Entries::of`]).
    pub fn with(config: &Config, found: impl Fn(&str) -> bool) -> Entries {
        let mut entries = Entries::default();
        for (name, server) in &config.servers {
            let missing = runner(server).filter(|runner| !found(runner));
            match (missing, &config.source) {
                (None, _) => entries.names.push(name.clone()),
                (Some(runner), None) => entries.skipped.push(MissingRunner {
                    name: name.clone(),
                    problem: missing_program(runner),
                }),
                (Some(runner), Some(_)) => {
                    entries.names.push(name.clone());
                    entries.unrunnable.push(MissingRunner {
                        name: name.clone(),
                        problem: missing_program(runner),
                    });
                }
            }
        }
        entries
    }

    /// [`Entries::with`] the programs on this `PATH`.
    pub fn of(config: &Config) -> Entries {
        Entries::with(config, |runner| find_program(runner).is_some())
    }

    /// One line per daemon left out or written without its runner (none:
    /// the empty string).
    pub fn notes(&self) -> String {
        let skipped = self.skipped.iter().map(|m| {
            format!(
                "skipped {}: {} (then run generate-config again)",
                m.name, m.problem
            )
        });
        let unrunnable = self.unrunnable.iter().map(|m| {
            format!(
                "{} will fail until its runner is installed: {}",
                m.name, m.problem
            )
        });
        skipped.chain(unrunnable).collect::<Vec<_>>().join("\n")
    }

    /// Logs [`Entries::notes`] (for `--print`, whose stdout is the
    /// document alone).
    pub fn log(&self) {
        for missing in &self.skipped {
            tracing::warn!(daemon = %missing.name, "skipped: {}", missing.problem);
        }
        for missing in &self.unrunnable {
            tracing::warn!(daemon = %missing.name, "{}", missing.problem);
        }
    }
}

/// The program a daemon's entry runs (`None`: the manager starts nothing).
fn runner(server: &ServerConfig) -> Option<&str> {
    server.command.as_deref().filter(|_| server.url.is_none())
}

/// The `mcpServers` document for `names`, with `proxy` as the command.
pub fn render(names: &[String], proxy: &Path, manager_port: u16) -> Value {
    let servers: serde_json::Map<String, Value> = names
        .iter()
        .map(|name| {
            (
                name.clone(),
                json!({
                    "command": proxy.to_string_lossy(),
                    "args": entries::proxy_args(name, manager_port),
                }),
            )
        })
        .collect();
    json!({ "mcpServers": servers })
}

/// `~/.claude/mcp.json` under `user_home`.
pub fn target(user_home: &Path) -> PathBuf {
    files::original_config(user_home)
}

/// Writes `document` to `path`, keeping a copy of what was there
/// (`FILE.backup.<ms>`), atomically.
///
/// # Errors
/// The file system's error, with the path.
pub fn write(path: &Path, document: &Value) -> Result<Written, GenerateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| GenerateError::Create {
            path: dir.to_owned(),
            source,
        })?;
    }
    let backup_error = |source| GenerateError::Backup {
        path: path.to_owned(),
        source,
    };
    let backup = match read_optional(path).map_err(|e| backup_error(e.source))? {
        Some(old) => Some(
            write::write_beside(path, write::Tag::Backup, crate::paths::now_ms(), &old)
                .map_err(|e| backup_error(e.source))?,
        ),
        None => None,
    };
    let text = format!("{document:#}\n");
    write::write_atomic(path, text.as_bytes(), false).map_err(|e| GenerateError::Write {
        path: e.path,
        source: e.source,
    })?;
    Ok(Written {
        path: path.to_owned(),
        backup,
    })
}

/// The installed `mcp-proxy`: beside this binary, absolute.
pub fn proxy_path() -> PathBuf {
    crate::paths::beside_this_program("mcp-proxy")
        .unwrap_or_else(|| PathBuf::from(format!("mcp-proxy{}", std::env::consts::EXE_SUFFIX)))
}

/// What `generate-config` did: printed the document, or wrote it too.
/// `Display` is the text to print (without a final newline).
#[derive(Debug)]
pub enum Generated {
    /// `--print`: the document only (what was left out is logged).
    Printed(Value),
    Written {
        document: Value,
        written: Written,
        entries: Entries,
    },
}

/// `mcp-manager generate-config [--print]`: the document for the config
/// (and `--port`), written to `~/.claude/mcp.json` unless `print_only`.
///
/// # Errors
/// A [`GenerateError`]: no home, a config that does not load, or the file
/// system's error.
pub fn generate(port: Option<u16>, print_only: bool) -> Result<Generated, GenerateError> {
    let (config, port) = super::load_config(port)?;
    let entries = Entries::of(&config);
    let document = render(&entries.names, &proxy_path(), port);
    if print_only {
        entries.log();
        return Ok(Generated::Printed(document));
    }
    let written = write(&target(&super::user_home()?), &document)?;
    Ok(Generated::Written {
        document,
        written,
        entries,
    })
}

impl fmt::Display for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (document, written, entries) = match self {
            Generated::Printed(document) => return write!(f, "{document:#}"),
            Generated::Written {
                document,
                written,
                entries,
            } => (document, written, entries),
        };
        writeln!(f, "{document:#}")?;
        writeln!(f)?;
        writeln!(f, "Wrote {}", written.path.display())?;
        let notes = entries.notes();
        if !notes.is_empty() {
            writeln!(f, "{notes}")?;
        }
        if let Some(backup) = &written.backup {
            writeln!(f, "The previous file is kept as {}", backup.display())?;
        }
        write!(
            f,
            "Next: start the manager (`mcp-manager --start-all`), or let the proxies start it on demand. \
             Claude Code reads MCP servers from ~/.claude.json and a project's .mcp.json: \
             copy these entries there (or `claude mcp add-json NAME '<entry>'`), then restart Claude Code."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MANAGER_PORT;

    #[test]
    fn every_daemon_runs_the_proxy_with_its_target() {
        let config = Config::builtin();
        let proxy = Path::new("/opt/bin/mcp-proxy");
        let names: Vec<String> = config.servers.keys().cloned().collect();
        let document = render(&names, proxy, DEFAULT_MANAGER_PORT);
        let memory = &document["mcpServers"]["memory"];
        assert_eq!(memory["command"], "/opt/bin/mcp-proxy");
        assert_eq!(memory["args"], json!(["--target", "memory"]));
        assert_eq!(document["mcpServers"].as_object().map(|m| m.len()), Some(3));
        let other_port = render(&names, proxy, 4000);
        assert_eq!(
            other_port["mcpServers"]["memory"]["args"],
            json!(["--target", "memory", "--manager-port", "4000"])
        );
    }

    /// Without a config file, a built-in whose runner is missing is left
    /// out and named with what installs it; an entry of the user's file is
    /// kept, with the same warning.
    #[test]
    fn built_ins_without_their_runner_are_skipped() {
        let config = Config::builtin();
        let no_uvx = Entries::with(&config, |runner| runner != "uvx");
        assert_eq!(no_uvx.names, ["ast-grep", "memory"]);
        assert_eq!(no_uvx.skipped.len(), 1);
        assert_eq!(no_uvx.skipped[0].name, "code-index");
        assert!(no_uvx.notes().contains("install uv"), "{}", no_uvx.notes());
        let everything = Entries::with(&config, |_| true);
        assert_eq!(everything.names.len(), 3);
        assert!(everything.notes().is_empty());
        let file = Config::parse(
            Path::new("/h/config.json"),
            br#"{"mcpServers": {"mine": {"command": "uvx", "args": ["x"], "port": 3300},
                "remote": {"url": "https://example.com/mcp"}}}"#,
        )
        .expect("valid");
        let kept = Entries::with(&file, |runner| runner != "uvx");
        assert_eq!(kept.names, ["mine", "remote"]);
        assert!(kept.skipped.is_empty());
        assert_eq!(kept.unrunnable[0].name, "mine");
    }

    #[test]
    fn an_existing_file_is_backed_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = target(dir.path());
        let first = write(&path, &json!({"a": 1})).expect("first");
        assert!(first.backup.is_none());
        let second = write(&path, &json!({"b": 2})).expect("second");
        let backup = second.backup.expect("a backup");
        let name = backup.file_name().expect("a name").to_string_lossy();
        assert!(name.starts_with("mcp.json.backup."), "{name}");
        let kept: Value =
            serde_json::from_slice(&std::fs::read(backup).expect("read")).expect("json");
        assert_eq!(kept, json!({"a": 1}));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\n  \"b\": 2\n}\n"
        );
    }

    /// The file is replaced by a rename: a reader holding the old one
    /// still sees it whole, and no temporary file is left behind.
    #[cfg(unix)]
    #[test]
    fn the_file_is_replaced_atomically() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = target(dir.path());
        write(&path, &json!({"a": 1})).expect("first");
        let before = std::fs::metadata(&path).expect("meta").ino();
        write(&path, &json!({"b": 2})).expect("second");
        assert_ne!(std::fs::metadata(&path).expect("meta").ino(), before);
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
