//! `mcp-manager add NAME [--scope …] [--port P] [--env K=V]… [--cwd DIR]
//! -- COMMAND ARGS…` and `mcp-manager add NAME --url URL [--header 'K: V']…
//! [--transport …]`: one server in one command, as `claude mcp add` does
//! for Claude Code alone.
//!
//! # What it writes
//!
//! 1. The entry, into `config.json`'s `mcpServers`, inserted as text: every
//!    other byte (the user's formatting, key order, `${VAR}`s) stays. A
//!    command entry is hosted on `--port`, else on the first port of
//!    3110–3189 ([`crate::commands::import::PORTS`], the range `import`
//!    uses) that no entry uses and nothing listens on now.
//! 2. The proxy entry `mcp-proxy --target NAME`, where Claude Code reads
//!    it: the user scope of `~/.claude.json` (every project), or with
//!    `--project DIR` that project's local scope
//!    (`projects[DIR].mcpServers`), as `claude mcp add -s user|local`.
//!
//! Then a running manager is asked to reload ([`tell_manager`]); it also
//! watches the file.
//!
//! # What it refuses (writing nothing)
//!
//! A name `config.json` already has (or a built-in's, without a file); a
//! different server under that name in the Claude Code scope; and an entry
//! the config's own rules reject: the new file is parsed with
//! [`Config::parse`] before anything is written, and its message is the
//! refusal.
//!
//! # Without a config file
//!
//! Without `config.json` the built-in daemons are in force. A file holding
//! only the new entry would silently drop them (their daemons stopped at
//! the next reload, their proxies failing), so the file is created with
//! the built-ins written out as they run now ([`builtin_entries`]) and the
//! new entry after them; the report says so. Remove one with
//! `mcp-manager remove`.
//!
//! # Order and safety
//!
//! `config.json` is written before Claude's file, so a proxy entry never
//! names a daemon the config lacks. Each file is checked unchanged since it
//! was read, backed up beside itself (`FILE.backup.<ms>`, or an empty
//! `FILE.created.<ms>` for a new one) and replaced atomically;
//! `config.json` is 0600 on unix (its `env` and `headers` may hold
//! secrets). Neither `env` nor `headers` is ever printed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::import::{ImportError, free_port, scope_name};
use super::register::{self, Planned, Slot};
use crate::claude::files::{read_optional, strip_bom};
use crate::claude::json_text::{self, Node, indent_step};
use crate::claude::projects;
use crate::config::{Config, ConfigError, Scope, ServerConfig, TransportKind};
use crate::control_api::{ApiClient, ApiError, Ping, ReloadAnswer};

/// The server `add` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewServer {
    /// A program the manager runs (a hosted stdio server unless
    /// `transport` says it serves HTTP itself).
    Command {
        command: String,
        args: Vec<String>,
        /// `--env K=V`, in the order given.
        env: Vec<String>,
        cwd: Option<PathBuf>,
        port: Option<u16>,
        scope: Option<Scope>,
        transport: Option<TransportKind>,
    },
    /// A remote server, used as is.
    Remote {
        url: String,
        /// `--header 'K: V'`, in the order given.
        headers: Vec<String>,
        transport: Option<TransportKind>,
    },
}

/// What to add, and where.
#[derive(Debug, Clone)]
pub struct AddOptions {
    pub name: String,
    pub server: NewServer,
    /// The tool's home (`config.json`).
    pub home: PathBuf,
    /// The user's home (`~/.claude.json`).
    pub user_home: PathBuf,
    /// The `mcp-proxy` the Claude Code entry runs.
    pub proxy: PathBuf,
    /// `--project DIR`: that project's local scope instead of the user's.
    pub project: Option<PathBuf>,
    /// `--port` of `mcp-manager`: the manager's port the proxy is told.
    pub manager_port: Option<u16>,
}

/// Why nothing was added (or, for [`AddError::Claude`] after the config
/// was written, what is left to do).
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Args(String),
    #[error(
        "{} already has a server named \"{name}\"; nothing was changed: choose another name, or `mcp-manager remove {name}` first",
        path.display()
    )]
    Exists { name: String, path: PathBuf },
    #[error(
        "\"{name}\" is a built-in daemon (there is no config.json, so the built-ins are in force); nothing was changed: choose another name"
    )]
    BuiltIn { name: String },
    #[error("{0}; fix config.json first (nothing was changed)")]
    Broken(Box<ConfigError>),
    #[error("the new entry is refused, nothing was changed: {0}")]
    Invalid(Box<ConfigError>),
    #[error(
        "no free port left in 3110–3189 for \"{name}\"; give one with --port (nothing was changed)"
    )]
    NoFreePort { name: String },
    #[error(transparent)]
    Files(Box<ImportError>),
    #[error(
        "{} now has \"{name}\", but Claude Code's file was not written: {cause}; register it with `mcp-manager add` after `mcp-manager remove {name}`",
        config.display()
    )]
    Claude {
        name: String,
        config: PathBuf,
        cause: Box<ImportError>,
    },
}

impl From<ImportError> for AddError {
    fn from(error: ImportError) -> AddError {
        AddError::Files(Box::new(error))
    }
}

/// How the port was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    Given,
    /// The first free one of 3110–3189.
    Picked,
}

/// What `add` did. `Display` is the report (without a final newline).
#[derive(Debug)]
pub struct Added {
    pub name: String,
    pub config: PathBuf,
    pub config_backup: Option<PathBuf>,
    /// The port of a local daemon, and how it was chosen.
    pub port: Option<(u16, PortChoice)>,
    /// The built-ins written out because there was no config file.
    pub built_ins: Vec<String>,
    /// The Claude Code scope, described.
    pub claude: String,
    /// It already ran `mcp-proxy --target NAME` there.
    pub claude_kept: bool,
    pub claude_backup: Option<PathBuf>,
}

/// `config.json` as read: its text (`None`: no file) and the entries as
/// written, not expanded.
struct ConfigText {
    path: PathBuf,
    text: Option<String>,
    bytes: Option<Vec<u8>>,
    /// The config in force: the file's, or the built-ins.
    config: Config,
}

impl ConfigText {
    fn read(home: &Path) -> Result<ConfigText, AddError> {
        let path = crate::paths::config_file(home);
        let bytes = read_optional(&path).map_err(ImportError::from)?;
        let (text, config) = match &bytes {
            None => (None, Config::builtin()),
            Some(bytes) => {
                let config =
                    Config::parse(&path, bytes).map_err(|e| AddError::Broken(Box::new(e)))?;
                let text = String::from_utf8(bytes.clone())
                    .map_err(|_| AddError::Args(format!("{} is not UTF-8 text", path.display())))?;
                (Some(text), config)
            }
        };
        Ok(ConfigText {
            path,
            text,
            bytes,
            config,
        })
    }

    /// The names in the file as written (the built-ins' without one).
    fn has(&self, name: &str) -> bool {
        match &self.text {
            None => self.config.servers.contains_key(name),
            Some(text) => serde_json::from_str::<Value>(strip_bom(text))
                .ok()
                .and_then(|v| v.get("mcpServers")?.get(name).map(|_| ()))
                .is_some(),
        }
    }
}

/// `mcp-manager add` (see the module doc).
///
/// # Errors
/// An [`AddError`]; nothing is written, except that for
/// [`AddError::Claude`] `config.json` was.
pub fn add(options: &AddOptions) -> Result<Added, AddError> {
    let name = options.name.as_str();
    let current = ConfigText::read(&options.home)?;
    if current.has(name) {
        return Err(match current.text {
            None => AddError::BuiltIn { name: name.into() },
            Some(_) => AddError::Exists {
                name: name.into(),
                path: current.path,
            },
        });
    }
    let used: BTreeSet<u16> = current
        .config
        .servers
        .values()
        .filter_map(|s| s.port)
        .collect();
    let (entry, port) = entry_for(name, &options.server, &used)?;
    let mut members: Vec<(String, Node<'_>)> = Vec::new();
    let built_ins = match &current.text {
        None => {
            let built_ins = builtin_entries(&current.config);
            let names = built_ins.iter().map(|(n, _)| n.clone()).collect();
            members.extend(built_ins);
            names
        }
        Some(_) => Vec::new(),
    };
    members.push((name.to_owned(), entry));
    let step = current
        .text
        .as_deref()
        .map_or_else(|| "  ".to_owned(), indent_step);
    let new_text =
        json_text::insert_members(current.text.as_deref(), "mcpServers", &members, &step)
            .map_err(|e| ImportError::Internal(format!("{e} in {}", current.path.display())))?;
    let new_config = Config::parse(&current.path, new_text.as_bytes())
        .map_err(|e| AddError::Invalid(Box::new(e)))?;

    // Claude Code's side, planned before the first write.
    let manager_port = options.manager_port.unwrap_or(new_config.manager_port);
    let slot = match &options.project {
        None => Slot::user(&options.user_home),
        Some(dir) => Slot::local(&options.user_home, dir)?,
    };
    let planned = register::plan_proxy(&slot, name, &options.proxy, manager_port)?;

    if let Some(dir) = current.path.parent() {
        crate::paths::create_private_dir(dir).map_err(|source| ImportError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    let config_backup = register::apply(&current.path, current.bytes.as_deref(), &new_text, true)?;
    let claude_failed = |source| AddError::Claude {
        name: name.to_owned(),
        config: current.path.clone(),
        cause: Box::new(source),
    };
    let (claude_kept, claude_backup) = match planned {
        Planned::Kept => (true, None),
        Planned::Write { old, new } => {
            let mut written = register::apply(&slot.path, old.as_deref(), &new, false);
            // Claude Code writes its file often: plan again on a change.
            for _ in 0..3 {
                match written {
                    Err(ImportError::Changed { .. }) => {}
                    _ => break,
                }
                written = match register::plan_proxy(&slot, name, &options.proxy, manager_port) {
                    Ok(Planned::Write { old, new }) => {
                        register::apply(&slot.path, old.as_deref(), &new, false)
                    }
                    Ok(Planned::Kept) => Ok(None),
                    Err(error) => Err(error),
                };
            }
            (false, written.map_err(claude_failed)?)
        }
    };
    Ok(Added {
        name: name.to_owned(),
        config: current.path,
        config_backup,
        port,
        built_ins,
        claude: slot.describe(),
        claude_kept,
        claude_backup,
    })
}

/// The config entry for `server`, and its port with how it was chosen.
fn entry_for<'a>(
    name: &str,
    server: &'a NewServer,
    used: &BTreeSet<u16>,
) -> Result<(Node<'a>, Option<(u16, PortChoice)>), AddError> {
    let mut members = Vec::new();
    match server {
        NewServer::Command {
            command,
            args,
            env,
            cwd,
            port,
            scope,
            transport,
        } => {
            members.push(("command".to_owned(), Node::string(&program(command))));
            if !args.is_empty() {
                members.push(("args".to_owned(), Node::strings(args)));
            }
            if !env.is_empty() {
                let mut pairs = Vec::new();
                for pair in env {
                    let (key, value) = pair
                        .split_once('=')
                        .filter(|(key, _)| !key.is_empty())
                        .ok_or_else(|| {
                            AddError::Args(format!(
                                "--env takes KEY=VALUE, not {:?}",
                                pair.split_once('=').map_or(pair.as_str(), |(k, _)| k)
                            ))
                        })?;
                    pairs.push((key.to_owned(), Node::string(value)));
                }
                members.push(("env".to_owned(), Node::Object(pairs)));
            }
            if let Some(cwd) = cwd {
                let cwd = projects::absolute(cwd);
                members.push(("cwd".to_owned(), Node::string(&cwd.to_string_lossy())));
            }
            let port = match port {
                Some(port) => (*port, PortChoice::Given),
                None => (
                    free_port(used).ok_or_else(|| AddError::NoFreePort { name: name.into() })?,
                    PortChoice::Picked,
                ),
            };
            members.push(("port".to_owned(), Node::Text(port.0.to_string().into())));
            if let Some(transport) = transport {
                members.push(("transport".to_owned(), Node::string(transport.as_str())));
            }
            if let Some(scope) = scope {
                members.push(("scope".to_owned(), Node::string(scope_name(*scope))));
            }
            Ok((Node::Object(members), Some(port)))
        }
        NewServer::Remote {
            url,
            headers,
            transport,
        } => {
            members.push(("url".to_owned(), Node::string(url)));
            if let Some(transport) = transport {
                members.push(("transport".to_owned(), Node::string(transport.as_str())));
            }
            if !headers.is_empty() {
                let mut pairs = Vec::new();
                for header in headers {
                    crate::http::parse_header(header)
                        .map_err(|problem| AddError::Args(format!("bad --header: {problem}")))?;
                    let (key, value) = header.split_once(':').unwrap_or((header, ""));
                    pairs.push((key.trim().to_owned(), Node::string(value.trim())));
                }
                members.push(("headers".to_owned(), Node::Object(pairs)));
            }
            Ok((Node::Object(members), None))
        }
    }
}

/// The command as the manager will run it: a relative path with a
/// directory (`./server.js`) made absolute (the manager runs elsewhere); a
/// bare name (`npx`) is found on `PATH`.
fn program(command: &str) -> String {
    let path = Path::new(command);
    if path.is_relative() && path.components().count() > 1 {
        projects::absolute(path).to_string_lossy().into_owned()
    } else {
        command.to_owned()
    }
}

/// The built-in daemons as config entries, as they run now.
pub fn builtin_entries(builtin: &Config) -> Vec<(String, Node<'static>)> {
    builtin
        .servers
        .values()
        .map(|server| (server.name.clone(), builtin_entry(server)))
        .collect()
}

fn builtin_entry(server: &ServerConfig) -> Node<'static> {
    let mut members = Vec::new();
    if let Some(command) = &server.command {
        members.push(("command".to_owned(), Node::string(command)));
    }
    if !server.args.is_empty() {
        members.push(("args".to_owned(), Node::strings(&server.args)));
    }
    if !server.env.is_empty() {
        let env = server
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Node::string(v)))
            .collect();
        members.push(("env".to_owned(), Node::Object(env)));
    }
    if let Some(port) = server.port {
        members.push(("port".to_owned(), Node::Text(port.to_string().into())));
    }
    if server.scope != Scope::Shared {
        members.push(("scope".to_owned(), Node::string(scope_name(server.scope))));
    }
    Node::Object(members)
}

impl fmt::Display for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "added \"{}\" to {}", self.name, self.config.display())?;
        match self.port {
            Some((port, PortChoice::Given)) => write!(f, " on port {port}")?,
            Some((port, PortChoice::Picked)) => write!(
                f,
                " on port {port} (the first free one of 3110–3189; choose with --port)"
            )?,
            None => {}
        }
        if !self.built_ins.is_empty() {
            write!(
                f,
                "\nthere was no config.json: it now also holds the built-in daemons that were in force ({}), so they keep running; `mcp-manager remove NAME` drops one",
                self.built_ins.join(", ")
            )?;
        }
        if let Some(backup) = &self.config_backup {
            write!(f, "\nthe previous config is kept as {}", backup.display())?;
        }
        if self.claude_kept {
            write!(
                f,
                "\nClaude Code: {} already runs mcp-proxy --target {}",
                self.claude, self.name
            )?;
        } else {
            write!(
                f,
                "\nClaude Code: registered mcp-proxy --target {} in {}",
                self.name, self.claude
            )?;
        }
        if let Some(backup) = &self.claude_backup {
            write!(f, " (the previous file is kept as {})", backup.display())?;
        }
        write!(
            f,
            "\nnew Claude Code sessions have it (`claude mcp get {}`); running ones after a restart",
            self.name
        )
    }
}

/// What the manager said about a changed `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// No manager runs: the first proxy starts one with the new file.
    NoManager,
    /// Its answer to `POST /reload`.
    Answer(ReloadAnswer),
    /// A manager without `/reload` (404): it picks the change up when it
    /// reloads (it watches the file).
    NotYet,
    /// It could not be asked.
    Failed(String),
}

/// Asks the manager of `home` on `port`, if one runs, to reload
/// `config.json`.
pub async fn tell_manager(home: &Path, port: u16) -> Reloaded {
    let client = match ApiClient::for_home(port, std::time::Duration::from_secs(60), home) {
        Ok(client) => client,
        Err(error) => return Reloaded::Failed(error.to_string()),
    };
    match client.ping().await {
        Ping::Manager { .. } => {}
        Ping::Nothing => return Reloaded::NoManager,
        Ping::Stranger(why) => return Reloaded::Failed(why),
    }
    match client.reload().await {
        Ok(answer) => Reloaded::Answer(answer),
        Err(ApiError::Refused { status: 404, .. }) => Reloaded::NotYet,
        Err(error) => Reloaded::Failed(error.to_string()),
    }
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reloaded::NoManager => f.write_str(
                "no manager runs: the first session starts one, with the new config",
            ),
            Reloaded::NotYet => f.write_str(
                "the running manager has no /reload: it picks the change up when it reloads (it watches config.json)",
            ),
            Reloaded::Failed(why) => write!(
                f,
                "could not ask the manager to reload ({why}); it watches config.json, or run `mcp-manager reload`"
            ),
            Reloaded::Answer(answer) if answer.applied => {
                let mut parts = crate::commands::lifecycle::changes(answer);
                if parts.is_empty() {
                    parts.push("nothing to change".to_owned());
                }
                write!(f, "the manager reloaded config.json: {}", parts.join("; "))?;
                if !answer.needs_restart.is_empty() {
                    write!(
                        f,
                        " ({} takes a manager restart)",
                        answer.needs_restart.join(", ")
                    )?;
                }
                Ok(())
            }
            Reloaded::Answer(answer) => write!(
                f,
                "the manager did not apply config.json: {}",
                answer.error.as_deref().unwrap_or("no reason given")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(home: &Path, user: &Path, server: NewServer) -> AddOptions {
        AddOptions {
            name: "fs".into(),
            server,
            home: home.to_owned(),
            user_home: user.to_owned(),
            proxy: PathBuf::from("/bin/mcp-proxy"),
            project: None,
            manager_port: None,
        }
    }

    fn command(port: Option<u16>) -> NewServer {
        NewServer::Command {
            command: "npx".into(),
            args: vec!["-y".into(), "server-fs".into(), "${HOME}".into()],
            env: vec!["A=1=2".into()],
            cwd: None,
            port,
            scope: Some(Scope::Session),
            transport: None,
        }
    }

    /// The built-ins written out parse back to the built-ins.
    #[test]
    fn the_builtins_written_out_are_the_builtins() {
        let builtin = Config::builtin();
        let text = json_text::insert_members(None, "mcpServers", &builtin_entries(&builtin), "  ")
            .expect("text");
        let parsed = Config::parse(Path::new("/h/config.json"), text.as_bytes()).expect("valid");
        assert_eq!(parsed.servers, builtin.servers);
    }

    /// The entry goes in as text (every other byte kept), `${VAR}`s as
    /// written; a taken name, a taken port and a bad entry are refused
    /// with nothing written.
    #[test]
    fn an_entry_is_added_keeping_the_file_and_refusals_write_nothing() {
        let home = tempfile::tempdir().expect("home");
        let user = tempfile::tempdir().expect("user");
        let config = home.path().join("config.json");
        let before = "{\n    \"managerPort\": 3999,\n    \"mcpServers\": {\n        \"a\": {\"port\": 3300}\n    }\n}\n";
        std::fs::write(&config, before).expect("write");
        let added = add(&options(home.path(), user.path(), command(Some(3301)))).expect("added");
        assert_eq!(added.port, Some((3301, PortChoice::Given)));
        let after = std::fs::read_to_string(&config).expect("read");
        assert!(
            after.starts_with("{\n    \"managerPort\": 3999,\n    \"mcpServers\": {\n        \"a\": {\"port\": 3300},\n        \"fs\": {\n            \"command\": \"npx\""),
            "{after}"
        );
        assert!(after.contains("\"${HOME}\""), "{after}");
        let value: Value = serde_json::from_str(&after).expect("json");
        assert_eq!(value["mcpServers"]["fs"]["env"]["A"], "1=2");
        assert_eq!(value["mcpServers"]["fs"]["scope"], "session");
        let claude: Value = serde_json::from_slice(
            &std::fs::read(user.path().join(".claude.json")).expect("claude"),
        )
        .expect("json");
        assert_eq!(
            claude["mcpServers"]["fs"]["args"],
            serde_json::json!(["--target", "fs", "--manager-port", "3999"])
        );
        let snapshot = std::fs::read_to_string(&config).expect("read");
        let again = add(&options(home.path(), user.path(), command(None)));
        assert!(matches!(again, Err(AddError::Exists { .. })), "{again:?}");
        let mut other = options(home.path(), user.path(), command(Some(3300)));
        other.name = "b".into();
        let taken = add(&other).expect_err("port taken").to_string();
        assert!(taken.contains("3300") && taken.contains("\"a\""), "{taken}");
        other.server = NewServer::Remote {
            url: "http://example.com/mcp".into(),
            headers: Vec::new(),
            transport: None,
        };
        let plain = add(&other).expect_err("plain http").to_string();
        assert!(plain.contains("--allow-http"), "{plain}");
        other.name = "../x".into();
        let bad = add(&other).expect_err("bad name").to_string();
        assert!(bad.contains("rename"), "{bad}");
        assert_eq!(std::fs::read_to_string(&config).expect("read"), snapshot);
    }

    /// Without a config file the built-ins are written out too; a
    /// different Claude Code server under the name refuses everything.
    #[test]
    fn without_a_file_the_builtins_stay_and_a_claude_clash_writes_nothing() {
        let home = tempfile::tempdir().expect("home");
        let user = tempfile::tempdir().expect("user");
        let claude = user.path().join(".claude.json");
        std::fs::write(&claude, r#"{"mcpServers": {"fs": {"command": "node"}}}"#).expect("w");
        let refused = add(&options(home.path(), user.path(), command(None)));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("different server")),
            "{refused:?}"
        );
        assert!(!home.path().join("config.json").exists());
        std::fs::write(&claude, "{}").expect("w");
        let mut builtin = options(home.path(), user.path(), command(None));
        builtin.name = "memory".into();
        assert!(matches!(add(&builtin), Err(AddError::BuiltIn { .. })));
        let added = add(&options(home.path(), user.path(), command(None))).expect("added");
        assert_eq!(added.built_ins, ["ast-grep", "code-index", "memory"]);
        assert!(matches!(added.port, Some((_, PortChoice::Picked))));
        let config = Config::load(home.path()).expect("valid");
        assert_eq!(config.names(), ["ast-grep", "code-index", "fs", "memory"]);
    }
}
