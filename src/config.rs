//! The config file: `config.json` in the home directory (see [`crate::paths`]).
//!
//! Raw file shape first ([`RawConfig`], what the user typed, checked by serde
//! with the path of every bad key), then validated [`Config`] (what the rest of
//! the crate uses). Entries look like Claude Code's own `.mcp.json` entries
//! (`command`/`args`/`env`, or `type` + `url`) plus this project's fields
//! (`port`, `transport`, `cwd`, `headers`). With no file, the built-in daemons
//! of the original are used. This file format is an API boundary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// The manager's control API port when nothing else is configured.
pub const DEFAULT_MANAGER_PORT: u16 = 3199;

/// How a daemon speaks MCP over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// MCP 2025-03-26+: POST `/mcp`, answers as JSON or SSE, GET stream.
    StreamableHttp,
    /// MCP 2024-11-05: GET `/sse`, POST to the announced endpoint.
    Sse,
    /// Plain JSON over POST `/mcp` (the original's custom servers).
    Http,
    /// A stdio server run behind `mcp-manager host`; reached as streamable HTTP.
    Stdio,
}

/// Who shares a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One child for every session.
    Shared,
    /// One child per `Mcp-Project-Path`.
    Project,
    /// One child per session.
    Session,
}

impl TransportKind {
    /// The name used in config files and lock files.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::StreamableHttp => "streamable-http",
            TransportKind::Sse => "sse",
            TransportKind::Http => "http",
            TransportKind::Stdio => "stdio",
        }
    }

    /// The transport of a URL given without one: a path ending in `/sse` is
    /// legacy SSE, anything else Streamable HTTP.
    pub fn guess_from_url(url: &Url) -> TransportKind {
        if url.path().trim_end_matches('/').ends_with("/sse") {
            TransportKind::Sse
        } else {
            TransportKind::StreamableHttp
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every daemon the proxy and the manager know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    pub manager_port: u16,
    /// How often the manager checks that each daemon answers HTTP.
    pub health_check_interval: std::time::Duration,
    pub servers: BTreeMap<String, ServerConfig>,
    /// The `${VAR}`s it uses that were unset (without a default) in this
    /// process's environment when it was read: they expanded to nothing.
    pub unset_variables: Vec<String>,
}

/// One daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub name: String,
    /// How to start it (the manager's business); `None` for a server that
    /// is started by hand or lives elsewhere.
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// A remote server: used as is, nothing is started.
    pub url: Option<Url>,
    /// The loopback port a local daemon listens on.
    pub port: Option<u16>,
    pub transport: TransportKind,
    /// Extra headers sent with every request to the daemon.
    pub headers: BTreeMap<String, String>,
    /// For a hosted stdio server: who shares one child.
    pub scope: Scope,
    /// For a hosted stdio server: an idle session (no request, no stream)
    /// ends after this long.
    pub session_timeout: std::time::Duration,
    /// For a hosted stdio server: a child that does not answer `ping`
    /// within this while requests wait is started again.
    pub ping_timeout: std::time::Duration,
    /// For a hosted stdio server: how many children it runs at once (scope
    /// `project` or `session` start one per project or session).
    pub max_children: usize,
    /// How long a starting daemon may take to answer HTTP (the first `npx`
    /// or `uvx` run downloads the server).
    pub start_timeout: std::time::Duration,
    /// A hosted server with no session for this long is stopped (and
    /// started again on demand); `None`: never.
    pub idle_timeout: Option<std::time::Duration>,
    /// Not started by `--start-all`; only on demand.
    pub lazy: bool,
}

/// How long a hosted server may go without sessions by default.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// How long a daemon may take to start by default.
pub const DEFAULT_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the manager checks each daemon by default (the original's).
pub const DEFAULT_HEALTH_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an idle hosted session lives by default.
pub const DEFAULT_SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// How long a hosted child may take to answer `ping` by default.
pub const DEFAULT_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How many children a hosted server runs at once by default: what a
/// workstation carries without noticing.
pub const DEFAULT_MAX_CHILDREN: usize = 16;
/// The most `maxChildren` may say.
pub const MAX_MAX_CHILDREN: u64 = 4096;

impl ServerConfig {
    /// The URL the proxy connects to: `url`, or the local daemon's endpoint
    /// on `port` (`/sse` for legacy SSE, `/mcp` otherwise).
    pub fn endpoint_url(&self) -> Option<Url> {
        if let Some(url) = &self.url {
            return Some(url.clone());
        }
        self.port.map(|port| local_endpoint(port, self.transport))
    }
}

/// `http://127.0.0.1:PORT/mcp`, or `/sse` for legacy SSE.
pub fn local_endpoint(port: u16, transport: TransportKind) -> Url {
    let path = match transport {
        TransportKind::Sse => "sse",
        _ => "mcp",
    };
    // A literal address and a number: this always parses.
    Url::parse(&format!("http://127.0.0.1:{port}/{path}"))
        .unwrap_or_else(|_| unreachable!("a loopback URL with a port always parses"))
}

/// What is wrong with the config, always naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {} is not valid JSON: {message} (line {line}, column {column})", path.display())]
    Syntax {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("config {}: key `{key}`{at}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
        /// " (line L, column C)" where the key is in the file, or empty.
        at: String,
    },
}

impl ConfigError {
    /// The message, its cause included, with the quoted values masked when
    /// the key is under `env` or `headers` (serde quotes the value it
    /// rejects: "invalid type: integer `1234`, expected a string"): what
    /// may be shown in `/status`, a log or a client's error.
    pub fn masked(&self) -> String {
        match self {
            ConfigError::Invalid {
                path,
                key,
                problem,
                at,
            } => format!(
                "config {}: key `{key}`{at}: {}",
                path.display(),
                shown_problem(key, problem)
            ),
            other => crate::http::error_chain(other),
        }
    }
}

/// `problem` as it may be shown: with the quoted values masked when `key`
/// is under `env` or `headers` (they may hold secrets).
pub fn shown_problem(key: &str, problem: &str) -> String {
    if key
        .split('.')
        .any(|part| part == "env" || part == "headers")
    {
        mask_quoted(problem)
    } else {
        problem.to_owned()
    }
}

/// `text` with everything between quotes (`"` or a backtick) replaced by
/// `…`.
pub fn mask_quoted(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(quote) if c == quote => {
                masked.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                masked.push(c);
                if c == '"' || c == '`' {
                    masked.push('…');
                    open = Some(c);
                }
            }
        }
    }
    masked
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    #[serde(rename = "$schema", default)]
    _schema: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub manager_port: Option<u16>,
    /// Seconds between the manager's HTTP checks of each daemon (default 30).
    pub health_check_interval: Option<f64>,
    /// Seconds without sessions before a hosted server is stopped (default
    /// 600; 0: never), for every entry that sets none.
    pub idle_timeout: Option<f64>,
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, RawServer>,
}

/// One entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawServer {
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Claude Code's field: `stdio`, `http` (= streamable HTTP), `sse`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub port: Option<u16>,
    pub transport: Option<TransportKind>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Allow a plain-`http` URL to a host that is not this machine.
    #[serde(default)]
    pub allow_http: bool,
    /// `shared` (default), `project` or `session`: who shares a hosted child.
    pub scope: Option<Scope>,
    /// Seconds before an idle hosted session ends (default 1800).
    pub session_timeout: Option<u64>,
    /// Seconds a hosted child may take to answer `ping` (default 30).
    pub ping_timeout: Option<u64>,
    /// Children a hosted server runs at once (default 16).
    pub max_children: Option<u64>,
    /// Seconds a daemon may take to start answering HTTP (default 60).
    pub start_timeout: Option<f64>,
    /// Seconds without sessions before a hosted server is stopped; 0: never.
    pub idle_timeout: Option<f64>,
    /// Started only on demand, never by `--start-all`.
    #[serde(default)]
    pub lazy: bool,
}

impl Config {
    /// Loads `config.json` from `home`, or the built-in daemons if there is none.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the key and what is wrong.
    pub fn load(home: &Path) -> Result<Config, ConfigError> {
        let path = crate::paths::config_file(home);
        match std::fs::read(&path) {
            Ok(bytes) => Config::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::builtin()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// The original's three daemons, used when there is no config file.
    /// `memory` is `@modelcontextprotocol/server-memory`, hosted per project
    /// with its file under `HOME/memory/{projectHash}.jsonl`.
    pub fn builtin() -> Config {
        let daemon = |name: &str, port, transport| ServerConfig {
            name: name.to_owned(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            port: Some(port),
            transport,
            headers: BTreeMap::new(),
            scope: Scope::Shared,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            max_children: DEFAULT_MAX_CHILDREN,
            start_timeout: DEFAULT_START_TIMEOUT,
            idle_timeout: (transport == TransportKind::Stdio).then_some(DEFAULT_IDLE_TIMEOUT),
            lazy: false,
        };
        let memory_file = crate::paths::home()
            .map(|home| home.join("memory").join("{projectHash}.jsonl"))
            .unwrap_or_else(|_| "memory-{projectHash}.jsonl".into());
        let memory = ServerConfig {
            command: Some("npx".into()),
            args: vec!["-y".into(), "@modelcontextprotocol/server-memory".into()],
            env: BTreeMap::from([(
                "MEMORY_FILE_PATH".to_owned(),
                memory_file.to_string_lossy().into_owned(),
            )]),
            scope: Scope::Project,
            ..daemon("memory", 3100, TransportKind::Stdio)
        };
        // PyPI's code-index-mcp, one index per project.
        let code_index = ServerConfig {
            command: Some("uvx".into()),
            args: vec![
                "code-index-mcp".into(),
                "--project-path".into(),
                "{project}".into(),
            ],
            scope: Scope::Project,
            ..daemon("code-index", 3101, TransportKind::Stdio)
        };
        // npm's ast-grep MCP server; it runs the `ast-grep` CLI, which npm's
        // `@ast-grep/cli` ships (see the README).
        let ast_grep = ServerConfig {
            command: Some("npx".into()),
            args: vec!["-y".into(), "@notprolands/ast-grep-mcp".into()],
            ..daemon("ast-grep", 3102, TransportKind::Stdio)
        };
        let servers = [memory, code_index, ast_grep];
        Config {
            source: None,
            manager_port: DEFAULT_MANAGER_PORT,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            servers: servers.into_iter().map(|s| (s.name.clone(), s)).collect(),
            unset_variables: Vec::new(),
        }
    }

    /// Parses and validates the text of a config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `path`, the key and what is wrong.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(raw) => raw,
            Err(error) => {
                let key = error.path().to_string();
                let inner = error.into_inner();
                if inner.is_data() && key != "." {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        key,
                        problem: strip_position(&inner.to_string()),
                        at: format!(" (line {}, column {})", inner.line(), inner.column()),
                    });
                }
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    message: strip_position(&inner.to_string()),
                    line: inner.line(),
                    column: inner.column(),
                });
            }
        };
        Config::validate(path, raw).map_err(|error| match error {
            ConfigError::Invalid {
                path,
                key,
                problem,
                at,
            } if at.is_empty() => {
                let at = locate_key(bytes, &key)
                    .map(|(line, column)| format!(" (line {line}, column {column})"))
                    .unwrap_or_default();
                ConfigError::Invalid {
                    path,
                    key,
                    problem,
                    at,
                }
            }
            other => other,
        })
    }

    fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
            at: String::new(),
        };
        let mut servers = BTreeMap::new();
        let mut ports: BTreeMap<u16, String> = BTreeMap::new();
        let mut unset = std::collections::BTreeSet::new();
        let global_idle = idle(raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)
            .map_err(|p| invalid("idleTimeout".into(), p))?;
        for (name, mut entry) in raw.mcp_servers {
            // `${VAR}` and `${VAR:-default}`, as Claude Code expands them:
            // kept as references in the file, filled in here.
            let mut expand = |text: &str| expand_into(text, &mut unset);
            entry.command = entry.command.as_deref().map(&mut expand);
            entry.args = entry.args.iter().map(|a| expand(a)).collect();
            entry.env = entry
                .env
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .collect();
            entry.headers = entry
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .collect();
            entry.url = entry.url.as_deref().map(&mut expand);
            entry.cwd = entry
                .cwd
                .as_ref()
                .map(|c| PathBuf::from(expand(&c.to_string_lossy())));
            let key = |field: &str| format!("mcpServers.{name}.{field}");
            if !is_valid_name(&name) {
                return Err(invalid(
                    format!("mcpServers.{name}"),
                    "a server name may only hold letters, digits, '-', '_' and '.' (it names the lock and log files); rename it".into(),
                ));
            }
            let url = match &entry.url {
                None => None,
                Some(text) => {
                    let url = Url::parse(text)
                        .map_err(|e| invalid(key("url"), format!("{text:?} is not a URL ({e})")))?;
                    check_remote_url(&url, entry.allow_http).map_err(|p| invalid(key("url"), p))?;
                    Some(url)
                }
            };
            let kind_transport = match entry.kind.as_deref() {
                None => None,
                Some("stdio") => Some(TransportKind::Stdio),
                Some("http" | "streamable-http" | "streamableHttp") => {
                    Some(TransportKind::StreamableHttp)
                }
                Some("sse") => Some(TransportKind::Sse),
                Some(other) => {
                    return Err(invalid(
                        key("type"),
                        format!("unknown type {other:?}; use \"stdio\", \"http\" or \"sse\""),
                    ));
                }
            };
            let transport = match (entry.transport.or(kind_transport), &url, &entry.command) {
                (Some(t), _, _) => t,
                (None, Some(url), _) => TransportKind::guess_from_url(url),
                (None, None, Some(_)) => TransportKind::Stdio,
                (None, None, None) => TransportKind::StreamableHttp,
            };
            if url.is_none() && entry.command.is_none() && entry.port.is_none() {
                return Err(invalid(
                    format!("mcpServers.{name}"),
                    "an entry needs a \"command\" (a server to run), a \"url\" (a remote server) or a \"port\" (a local server started by hand)".into(),
                ));
            }
            if url.is_some() && transport == TransportKind::Stdio {
                return Err(invalid(
                    key("transport"),
                    "a \"url\" entry cannot use the stdio transport; use \"streamable-http\" or \"sse\"".into(),
                ));
            }
            if url.is_none() && entry.port.is_none() {
                return Err(invalid(
                    key("port"),
                    "missing: a local daemon needs the loopback port it listens on (for example \"port\": 3110)".into(),
                ));
            }
            if entry.port == Some(0) {
                return Err(invalid(
                    key("port"),
                    "0 is not a port; use 1 to 65535".into(),
                ));
            }
            if let Some(port) = entry.port {
                if let Some(other) = ports.insert(port, name.clone()) {
                    return Err(invalid(
                        key("port"),
                        format!(
                            "port {port} is also used by \"{other}\"; give each daemon its own port"
                        ),
                    ));
                }
            }
            for header in entry.headers.iter() {
                crate::http::parse_header(&format!("{}: {}", header.0, header.1))
                    .map_err(|p| invalid(format!("{}.{}", key("headers"), header.0), p))?;
            }
            let max_children = match entry.max_children {
                None => DEFAULT_MAX_CHILDREN,
                Some(n @ 1..=MAX_MAX_CHILDREN) => {
                    usize::try_from(n).unwrap_or(DEFAULT_MAX_CHILDREN)
                }
                Some(n) => {
                    return Err(invalid(
                        key("maxChildren"),
                        format!("{n} is not a number of children; give 1 to {MAX_MAX_CHILDREN}"),
                    ));
                }
            };
            let start_timeout = seconds(entry.start_timeout, DEFAULT_START_TIMEOUT)
                .map_err(|p| invalid(key("startTimeout"), p))?;
            let idle_timeout = match entry.idle_timeout {
                _ if transport != TransportKind::Stdio
                    && entry.idle_timeout.is_some_and(|t| t > 0.0) =>
                {
                    return Err(invalid(
                        key("idleTimeout"),
                        "only a hosted stdio server can be stopped when idle (its host counts the sessions; an HTTP daemon cannot tell the manager it is unused); remove the key".into(),
                    ));
                }
                _ if transport != TransportKind::Stdio => None,
                Some(own) => idle(Some(own), DEFAULT_IDLE_TIMEOUT)
                    .map_err(|p| invalid(key("idleTimeout"), p))?,
                None => global_idle,
            };
            servers.insert(
                name.clone(),
                ServerConfig {
                    name,
                    command: entry.command,
                    args: entry.args,
                    env: entry.env,
                    cwd: entry.cwd,
                    url,
                    port: entry.port,
                    transport,
                    headers: entry.headers,
                    scope: entry.scope.unwrap_or(Scope::Shared),
                    session_timeout: entry
                        .session_timeout
                        .map_or(DEFAULT_SESSION_TIMEOUT, std::time::Duration::from_secs),
                    ping_timeout: entry
                        .ping_timeout
                        .map_or(DEFAULT_PING_TIMEOUT, std::time::Duration::from_secs),
                    max_children,
                    start_timeout,
                    idle_timeout,
                    lazy: entry.lazy,
                },
            );
        }
        Ok(Config {
            source: Some(path.to_owned()),
            manager_port: raw.manager_port.unwrap_or(DEFAULT_MANAGER_PORT),
            health_check_interval: seconds(
                raw.health_check_interval,
                DEFAULT_HEALTH_CHECK_INTERVAL,
            )
            .map_err(|p| invalid("healthCheckInterval".into(), p))?,
            servers,
            unset_variables: unset.into_iter().collect(),
        })
    }

    /// The configured names, for "valid names are …" messages.
    pub fn names(&self) -> Vec<&str> {
        self.servers.keys().map(String::as_str).collect()
    }
}

/// An idle timeout in seconds: `0` is never (`None`).
fn idle(
    value: Option<f64>,
    default: std::time::Duration,
) -> Result<Option<std::time::Duration>, String> {
    match value {
        Some(0.0) => Ok(None),
        other => seconds(other, default).map(Some),
    }
}

/// Where the key `a.b.c` is written in `bytes`: the line and column
/// (1-based) of `"c"` as an object key, found after `"a"` and `"b"`, each
/// a quoted name followed by `:`. `None` when it cannot be found (a
/// key path with an index, a file that is not plain UTF-8).
fn locate_key(bytes: &[u8], key: &str) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut from = 0;
    for segment in key.split('.') {
        let quoted = format!("\"{segment}\"");
        let mut search = from;
        loop {
            let found = search + text.get(search..)?.find(&quoted)?;
            let after = found + quoted.len();
            if text.get(after..)?.trim_start().starts_with(':') {
                from = found;
                break;
            }
            search = after;
        }
    }
    let before = text.get(..from)?;
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
    Some((line, column))
}

/// Fills in `${VAR}` and `${VAR:-default}` from the environment; an unset
/// variable without a default becomes empty (and is logged, by name only).
pub fn expand_vars(text: &str) -> String {
    expand_into(text, &mut std::collections::BTreeSet::new())
}

/// [`expand_vars`], adding to `unset` the name of each variable that was
/// unset and had no default.
fn expand_into(text: &str, unset: &mut std::collections::BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            match (std::env::var(name), default) {
                (Ok(value), _) if !value.is_empty() || default.is_none() => out.push_str(&value),
                (_, Some(default)) => out.push_str(default),
                (Err(_), None) => {
                    unset.insert(name.to_owned());
                    tracing::warn!(
                        variable = name,
                        "a ${{VAR}} in the config is not set; using an empty value"
                    );
                }
                (Ok(value), None) => out.push_str(&value),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A duration given in (possibly fractional) seconds.
fn seconds(
    value: Option<f64>,
    default: std::time::Duration,
) -> Result<std::time::Duration, String> {
    match value {
        None => Ok(default),
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            Ok(std::time::Duration::from_secs_f64(secs))
        }
        Some(secs) => Err(format!(
            "{secs} is not a duration; give seconds between 0 and 86400 (for example 30 or 0.5)"
        )),
    }
}

/// Refuses plain `http` to another machine unless explicitly allowed: the
/// traffic (and any token in the headers) would cross the network in clear.
///
/// # Errors
/// A message that names the fix.
pub fn check_remote_url(url: &Url, allow_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || crate::http::is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{url} is plain http to another host; use https, or allow it with --allow-http (\"allowHttp\": true in the config)"
        )),
        other => Err(format!(
            "{url}: the scheme {other:?} is not supported; use http or https"
        )),
    }
}

/// A server name may only hold letters, digits, '-', '_' and '.' (it names
/// the lock and log files).
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A serde_json error's message without the " at line L column C" it
/// appends, for errors that show the position themselves.
pub fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/home/u/.mcp-session-manager/config.json"),
            text.as_bytes(),
        )
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn a_key_that_fails_validation_is_located_in_the_file() {
        let text = "{\n  \"mcpServers\": {\n    \"web\": {\"args\": [\"port\"],\n      \"port\": 0}\n  }\n}\n";
        let error =
            Config::parse(Path::new("/h/config.json"), text.as_bytes()).expect_err("port 0");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "config /h/config.json: key `mcpServers.web.port` (line 4, column 7): "
            ),
            "{message}"
        );
        assert_eq!(locate_key(text.as_bytes(), "mcpServers.nothing"), None);
        let unknown = Config::parse(
            Path::new("/h/config.json"),
            b"{\"mcpServers\": {},\n \"extra\": 1}",
        )
        .expect_err("unknown key");
        assert!(
            unknown.to_string().contains("key `extra` (line 2"),
            "{unknown}"
        );
    }

    #[test]
    fn variables_are_expanded_as_claude_code_does() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand_vars("${HOME}/x"), format!("{home}/x"));
        assert_eq!(
            expand_vars("${MCP_SM_SURELY_UNSET_VAR:-fallback}"),
            "fallback"
        );
        assert_eq!(expand_vars("a${MCP_SM_SURELY_UNSET_VAR}b"), "ab");
        assert_eq!(expand_vars("${not valid}"), "${not valid}");
        assert_eq!(expand_vars("${UNCLOSED"), "${UNCLOSED");
        assert_eq!(expand_vars("{project}"), "{project}");
    }

    #[test]
    fn hosted_servers_stop_when_idle_http_daemons_cannot() {
        let config = parse(
            r#"{"idleTimeout": 5, "mcpServers": {
                "a": {"command": "x", "port": 4001},
                "b": {"command": "x", "port": 4002, "idleTimeout": 0, "lazy": true},
                "c": {"command": "x", "port": 4003, "transport": "streamable-http"}}}"#,
        )
        .expect("valid");
        assert_eq!(
            config.servers["a"].idle_timeout,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(config.servers["b"].idle_timeout, None);
        assert!(config.servers["b"].lazy);
        assert_eq!(config.servers["c"].idle_timeout, None);
        let error = error(
            r#"{"mcpServers": {"c": {"command": "x", "port": 4003, "transport": "sse", "idleTimeout": 9}}}"#,
        );
        assert!(error.contains("mcpServers.c.idleTimeout"), "{error}");
    }

    #[test]
    fn builtin_daemons_are_the_originals() {
        let config = Config::builtin();
        let memory = &config.servers["memory"];
        assert_eq!(
            (memory.port, memory.transport),
            (Some(3100), TransportKind::Stdio)
        );
        assert_eq!(memory.scope, Scope::Project);
        assert!(memory.env["MEMORY_FILE_PATH"].ends_with("{projectHash}.jsonl"));
        let code_index = &config.servers["code-index"];
        assert_eq!(
            (code_index.port, code_index.transport, code_index.scope),
            (Some(3101), TransportKind::Stdio, Scope::Project)
        );
        assert_eq!(code_index.command.as_deref(), Some("uvx"));
        let ast = &config.servers["ast-grep"];
        assert_eq!(
            (ast.port, ast.transport),
            (Some(3102), TransportKind::Stdio)
        );
        assert_eq!(
            ast.endpoint_url().expect("url").as_str(),
            "http://127.0.0.1:3102/mcp"
        );
        assert_eq!(config.health_check_interval, DEFAULT_HEALTH_CHECK_INTERVAL);
        assert_eq!(config.manager_port, 3199);
    }

    #[test]
    fn claude_code_style_entries_are_accepted() {
        let config = parse(
            r#"{"managerPort": 4000, "mcpServers": {
                "memory": {"command": "npx", "args": ["-y", "x"], "env": {"A": "1"}, "port": 3100},
                "everything": {"port": 3555, "transport": "sse"},
                "remote": {"type": "http", "url": "https://example.com/mcp", "headers": {"Authorization": "Bearer t"}},
                "legacy": {"url": "https://example.com/v1/sse"}
            }}"#,
        )
        .expect("valid");
        assert_eq!(config.manager_port, 4000);
        assert_eq!(config.servers["memory"].transport, TransportKind::Stdio);
        assert_eq!(config.servers["everything"].transport, TransportKind::Sse);
        assert_eq!(
            config.servers["remote"].transport,
            TransportKind::StreamableHttp
        );
        assert_eq!(config.servers["legacy"].transport, TransportKind::Sse);
    }

    /// `maxChildren` defaults to 16, takes 1 to 4096, and a bad value names
    /// the key and the range.
    #[test]
    fn max_children_has_a_default_and_a_range() {
        let config = parse(
            r#"{"mcpServers": {"a": {"command": "x", "port": 3100},
                "b": {"command": "x", "port": 3101, "scope": "project", "maxChildren": 3}}}"#,
        )
        .expect("valid");
        assert_eq!(config.servers["a"].max_children, DEFAULT_MAX_CHILDREN);
        assert_eq!(config.servers["b"].max_children, 3);
        for bad in ["0", "5000"] {
            let e = error(&format!(
                r#"{{"mcpServers": {{"m": {{"command": "x", "port": 3100, "maxChildren": {bad}}}}}}}"#
            ));
            assert!(
                e.contains("mcpServers.m.maxChildren") && e.contains("1 to 4096"),
                "{e}"
            );
        }
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_fix() {
        let e = error(r#"{"mcpServers": {"m": {"command": "x", "port": "3100"}}}"#);
        assert!(
            e.contains("config.json") && e.contains("mcpServers.m.port"),
            "{e}"
        );
        let e = error(r#"{"mcpServers": {"m": {"comand": "x", "port": 1}}}"#);
        assert!(
            e.contains("mcpServers.m") && e.contains("comand") && e.contains("command"),
            "{e}"
        );
        let e = error(r#"{"mcpServers": {"m": {"command": "x"}}}"#);
        assert!(
            e.contains("mcpServers.m.port") && e.contains("missing"),
            "{e}"
        );
        let e = error(r#"{"mcpServers": {"a": {"port": 1}, "b": {"port": 1}}}"#);
        assert!(
            e.contains("mcpServers.b.port") && e.contains("\"a\""),
            "{e}"
        );
        let e = error(r#"{"mcpServers": {"m": {"port": 1, "transport": "carrier-pigeon"}}}"#);
        assert!(
            e.contains("mcpServers.m.transport") && e.contains("streamable-http"),
            "{e}"
        );
        let e = error(r#"{"mcpServers": {"m": {"url": "http://example.com/mcp"}}}"#);
        assert!(e.contains("--allow-http"), "{e}");
        let e = error(r#"{"mcpServers": {"../x": {"port": 1}}}"#);
        assert!(e.contains("rename"), "{e}");
        let e = error(r#"{"mcpServers": {"m": {}}}"#);
        assert!(e.contains("\"command\""), "{e}");
        let e = error("{\"mcpServers\": {\n  \"m\": {\"port\": 1,}\n}}");
        assert!(e.contains("not valid JSON") && e.contains("line 2"), "{e}");
        let e = error(r#"{"mcpServers": [] }"#);
        assert!(e.contains("mcpServers"), "{e}");
    }

    #[test]
    fn transport_is_guessed_from_the_url() {
        let guess = |u: &str| TransportKind::guess_from_url(&Url::parse(u).expect("url"));
        assert_eq!(guess("http://127.0.0.1:1/sse"), TransportKind::Sse);
        assert_eq!(guess("http://127.0.0.1:1/sse/"), TransportKind::Sse);
        assert_eq!(
            guess("http://127.0.0.1:1/mcp"),
            TransportKind::StreamableHttp
        );
        assert_eq!(
            guess("http://127.0.0.1:1/sse-like"),
            TransportKind::StreamableHttp
        );
    }
}
