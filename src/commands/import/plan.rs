//! What an import changes: the `config.json` entry for each server found
//! (a hosted entry on a free port, or a remote one), the source entries
//! pointed at `mcp-proxy`, and the rules deciding when two entries are the
//! same server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use serde_json::Value;

use super::source::{Kind, Loaded, Site};
use super::{ImportError, PORTS};
use crate::claude::entries;
use crate::claude::files::{read_optional, strip_bom};
use crate::claude::json_text::Node;
use crate::config::{Config, DEFAULT_MANAGER_PORT, Scope};

/// The sites to import grouped by their config.json name (`names`, one
/// per site; `None`: not imported), in file order; sites of one name must
/// be the same server.
pub(super) fn group_by_name(
    sites: &[Site<'_>],
    names: &[Option<String>],
    files: &[Loaded],
) -> Result<Vec<(String, Vec<usize>)>, ImportError> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, site) in sites.iter().enumerate() {
        let Some(name) = &names[index] else { continue };
        match groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, members)) => {
                let first = &sites[members[0]];
                if first.entry.value != site.entry.value {
                    return Err(ImportError::SourceClash {
                        name: site.name.clone(),
                        first: first.describe(files),
                        second: site.describe(files),
                    });
                }
                members.push(index);
            }
            None => groups.push((name.clone(), vec![index])),
        }
    }
    Ok(groups)
}

/// A source entry pointed at the proxy: `command` (an absolute path, or
/// bare `mcp-proxy` for a file shared with others), `--target TARGET`.
pub(super) fn proxy_node(with_type: bool, command: &str, target: &str) -> Node<'static> {
    let mut members = Vec::new();
    if with_type {
        members.push(("type".to_owned(), Node::string("stdio")));
    }
    members.push(("command".to_owned(), Node::string(command).to_owned_node()));
    members.push((
        "args".to_owned(),
        Node::strings(&entries::proxy_args(target, DEFAULT_MANAGER_PORT)).to_owned_node(),
    ));
    Node::Object(members)
}

/// The config.json name of a project's server: `PROJECT.NAME` (the
/// directory's name, cut to the characters names allow), `PROJECT-N.NAME`
/// for the `n`th other project of the same directory name.
pub(super) fn project_name(dir: &Path, name: &str, n: usize) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "project" } else { base };
    if n <= 1 {
        format!("{base}.{name}")
    } else {
        format!("{base}-{n}.{name}")
    }
}

/// The config.json entry for a source entry (`port` only for stdio ones).
pub(super) fn config_entry<'t>(site: &Site<'t>, port: u16, scope: Scope) -> Node<'t> {
    let entry = &site.entry;
    let mut members = Vec::new();
    let mut copy = |key: &str| {
        if let Some(raw) = entry.raw(key) {
            members.push((key.to_owned(), Node::from_raw(raw)));
            true
        } else {
            false
        }
    };
    match entry.kind {
        Kind::Stdio => {
            copy("command");
            copy("args");
            copy("env");
            let has_cwd = copy("cwd");
            if let (false, Some(dir)) = (has_cwd, &site.project) {
                members.push(("cwd".to_owned(), Node::string(&dir.to_string_lossy())));
            }
            members.push(("port".to_owned(), Node::Text(port.to_string().into())));
            members.push(("scope".to_owned(), Node::string(scope_name(scope))));
        }
        _ => {
            copy("type");
            copy("url");
            copy("headers");
            let plain_http_elsewhere = entry
                .shape
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .is_some_and(|u| u.scheme() == "http" && !crate::http::is_loopback(&u));
            if plain_http_elsewhere {
                members.push(("allowHttp".to_owned(), Node::Text("true".into())));
            }
        }
    }
    Node::Object(members)
}

pub(crate) fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Shared => "shared",
        Scope::Project => "project",
        Scope::Session => "session",
    }
}

/// What makes two entries the same server (ports, scopes and timeouts
/// aside).
#[derive(Debug, PartialEq)]
pub(super) enum Definition {
    Hosted {
        command: Value,
        args: Value,
        env: Value,
        cwd: Value,
    },
    Remote {
        url: Value,
        headers: Value,
        transport: String,
    },
    Other(Value),
}

pub(super) fn definition(entry: &Value) -> Definition {
    let field = |key: &str, default: Value| {
        entry
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    if let Some(url) = text("url") {
        let transport = match text("transport").or(text("type")) {
            Some("sse") => "sse",
            Some("http") if text("transport").is_some() => "http",
            Some(_) => "streamable-http",
            None if url.trim_end_matches('/').ends_with("/sse") => "sse",
            None => "streamable-http",
        };
        return Definition::Remote {
            url: field("url", Value::Null),
            headers: field("headers", Value::Object(serde_json::Map::new())),
            transport: transport.to_owned(),
        };
    }
    if entry.get("command").is_some_and(|c| !c.is_null()) {
        return Definition::Hosted {
            command: field("command", Value::Null),
            args: field("args", Value::Array(Vec::new())),
            env: field("env", Value::Object(serde_json::Map::new())),
            cwd: field("cwd", Value::Null),
        };
    }
    Definition::Other(entry.clone())
}

/// A URL fit to show: no user, password, query or fragment.
pub(crate) fn shown_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let hidden = url.query().is_some() || !url.username().is_empty();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            if hidden {
                format!("{url}?…")
            } else {
                url.to_string()
            }
        }
        Err(_) => "(a URL with variables)".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// config.json.

pub(super) struct ConfigState {
    /// `None`: there is no config file.
    pub(super) text: Option<String>,
    /// Its entries as written (not expanded), by name.
    pub(super) servers: BTreeMap<String, Value>,
    /// Ports its entries use (the built-ins' when there is no file).
    pub(super) ports: BTreeSet<u16>,
}

impl ConfigState {
    pub(super) fn load(path: &Path) -> Result<ConfigState, ImportError> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(ConfigState {
                text: None,
                servers: BTreeMap::new(),
                ports: Config::builtin()
                    .servers
                    .values()
                    .filter_map(|s| s.port)
                    .collect(),
            });
        };
        let config = Config::parse(path, &bytes).map_err(|e| ImportError::Config {
            message: format!("{e}; fix it first, then import"),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ImportError::Config {
            message: format!("config {} is not UTF-8 text", path.display()),
        })?;
        let value: Value = serde_json::from_str(strip_bom(&text))
            .map_err(|e| ImportError::Internal(e.to_string()))?;
        let servers = value
            .get("mcpServers")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(ConfigState {
            text: Some(text),
            servers,
            ports: config.servers.values().filter_map(|s| s.port).collect(),
        })
    }
}

/// The first port of [`PORTS`] that no entry uses and nothing listens on now.
pub(crate) fn free_port(used: &BTreeSet<u16>) -> Option<u16> {
    PORTS
        .filter(|port| !used.contains(port))
        .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_per_project() {
        assert_eq!(project_name(Path::new("/w/web app"), "db", 1), "web-app.db");
        assert_eq!(project_name(Path::new("/w/api"), "db", 2), "api-2.db");
        assert_eq!(project_name(Path::new("/"), "db", 1), "project.db");
        assert!(crate::config::is_valid_name(&project_name(
            Path::new("/w/ünï"),
            "db",
            1
        )));
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://u:p@example.com/mcp?key=1"),
            "https://example.com/mcp?…"
        );
        assert_eq!(
            shown_url("https://example.com/sse"),
            "https://example.com/sse"
        );
        assert!(!shown_url("https://${HOST}/x").contains("HOST"));
    }
}
