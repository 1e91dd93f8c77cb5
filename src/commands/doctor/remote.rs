//! Check 10, remote servers behind `mcp-proxy` that need a login: for each
//! Claude Code entry (user, local and project scope) that runs `mcp-proxy
//! --target X` where the config's `X` is a remote server (a `url`), `X` is
//! probed as `mcp-manager import --remote` probes (a POST `initialize` with
//! its headers, a GET for `sse`, bounded by five seconds, only where the
//! config's rule allows: https, or plain http to loopback; no redirect
//! followed). A 401 with `WWW-Authenticate` is a problem: the server wants
//! a login (OAuth), which only Claude Code does. Any other answer is fine
//! here (the daemon checks cover the rest). Each target is probed once,
//! all of them side by side.

use std::collections::BTreeMap;

use serde_json::Value;

use super::claude::{project_servers, read_json};
use super::{Check, DoctorInput};
use crate::claude::entries::{Entry, classify};
use crate::claude::files;
use crate::commands::import::verify::{Answer, Request, probe, shown_url};
use crate::config::{Config, TransportKind};

/// The check's name in the report.
const NAME: &str = "remote login";

/// One finding per Claude Code entry whose remote target asks for a login;
/// one ok finding when targets were probed and none did; nothing when no
/// entry runs a remote target (or the config is not the user's).
pub(super) async fn check_logins(
    input: &DoctorInput,
    config: &Config,
    config_valid: bool,
) -> Vec<Check> {
    if !config_valid {
        return Vec::new();
    }
    // Claude Code's name for each entry, by the remote target it runs.
    let mut users: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for servers in claude_servers(input) {
        let Some(servers) = servers.as_object() else {
            continue;
        };
        for (name, entry) in servers {
            if let Entry::Proxy {
                target: Some(target),
                ..
            } = classify(entry)
            {
                if let Some((target, server)) = config.servers.get_key_value(target) {
                    if server.url.is_some() {
                        let names = users.entry(target.as_str()).or_default();
                        if !names.contains(name) {
                            names.push(name.clone());
                        }
                    }
                }
            }
        }
    }
    if users.is_empty() {
        return Vec::new();
    }
    let probes = users.keys().map(|target| {
        let server = &config.servers[*target];
        let url = server
            .url
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let sse = server.transport == TransportKind::Sse;
        let headers = server
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        async move { probe(&Request::new(url, sse, headers)).await }
    });
    let answers = futures_util::future::join_all(probes).await;
    let mut checks = Vec::new();
    for ((target, names), answer) in users.iter().zip(answers) {
        if answer != Answer::NeedsLogin {
            continue;
        }
        let server = &config.servers[*target];
        let url = server
            .url
            .as_ref()
            .map_or_else(String::new, |u| shown_url(u.as_str()));
        let transport = if server.transport == TransportKind::Sse {
            "sse"
        } else {
            "http"
        };
        for name in names {
            checks.push(Check::problem(
                NAME,
                format!(
                    "{name}: a remote server that needs a login (OAuth), which mcp-proxy cannot do (its target {target} answered 401 with WWW-Authenticate)"
                ),
                format!(
                    "give it back to Claude Code: `mcp-manager import --undo` (if an import moved it) or `claude mcp add --transport {transport} {name} {url}`"
                ),
            ));
        }
    }
    if checks.is_empty() {
        let count = users.len();
        checks.push(Check::ok(
            NAME,
            format!(
                "{} behind mcp-proxy asked for no login",
                super::report::plural(count, "remote target")
            ),
        ));
    }
    checks
}

/// The `mcpServers` objects Claude Code reads here: `~/.claude.json`'s (user
/// and this project's local scope) and the project's `.mcp.json`. Files
/// that cannot be read are check 6's finding, not this one's.
fn claude_servers(input: &DoctorInput) -> Vec<Value> {
    let mut found = Vec::new();
    if let Some(user_home) = &input.user_home {
        if let Ok(Some(document)) = read_json(&files::user_config(user_home)) {
            if let Some((_, servers)) = project_servers(&document, &input.cwd) {
                found.push(servers.clone());
            }
            if let Some(servers) = document.get("mcpServers") {
                found.push(servers.clone());
            }
        }
    }
    if let Ok(Some(mut document)) = read_json(&files::project_config(&input.cwd)) {
        if let Some(servers) = document.get_mut("mcpServers") {
            found.push(servers.take());
        }
    }
    found
}
