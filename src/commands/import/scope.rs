//! Which scope an imported stdio server gets, and why: `--scope NAME=…`
//! when asked; `session` for a browser-automation server (it keeps one
//! browser, its tabs and its logins, per session, so two sessions sharing
//! one would drive each other's pages); `project` for a project's server;
//! `shared` for a user's.
//!
//! A browser server is recognised by the package it runs, from a small
//! table ([`BROWSERS`]) matched against the command and each argument, so
//! the rule stays conservative: a name that merely mentions a browser
//! (`./playwright-report.js`) is not one.

use std::collections::BTreeMap;

use serde::Serialize;

use super::source::Site;
use crate::config::Scope;

/// Why an imported server got its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScopeReason {
    /// `--scope NAME=…` said so.
    Asked,
    /// A browser-automation server: `session`.
    Browser,
    /// A project's server (`projects[DIR]` or `DIR/.mcp.json`): `project`.
    Project,
    /// A user-level server: `shared`.
    User,
}

impl ScopeReason {
    /// The reason, as the report says it after the scope's name.
    pub fn text(self) -> &'static str {
        match self {
            ScopeReason::Asked => "as asked with --scope",
            ScopeReason::Browser => "a browser automation server keeps one browser per session",
            ScopeReason::Project => "a project's server",
            ScopeReason::User => "a user server",
        }
    }
}

/// The scope of the server `name` found at `site`, and why.
pub(super) fn choose(
    name: &str,
    site: &Site<'_>,
    overrides: &BTreeMap<String, Scope>,
) -> (Scope, ScopeReason) {
    if let Some(&scope) = overrides.get(name) {
        return (scope, ScopeReason::Asked);
    }
    let shape = &site.entry.shape;
    let args = shape.args.as_deref().unwrap_or_default();
    if browser_family(shape.command.as_deref(), args).is_some() {
        (Scope::Session, ScopeReason::Browser)
    } else if site.project.is_some() {
        (Scope::Project, ScopeReason::Project)
    } else {
        (Scope::Shared, ScopeReason::User)
    }
}

/// A browser-automation MCP server's package (npm, PyPI, or a container
/// image), its family, and an argument it needs to be the MCP server (a
/// package that is also a plain CLI).
struct Browser {
    family: &'static str,
    package: &'static str,
    needs: Option<&'static str>,
}

const fn browser(family: &'static str, package: &'static str) -> Browser {
    Browser {
        family,
        package,
        needs: None,
    }
}

/// The browser-automation servers known (package names, lowercase, `_`
/// written `-`; their installed command names too).
const BROWSERS: &[Browser] = &[
    browser("playwright", "@playwright/mcp"),
    browser("playwright", "mcp-server-playwright"),
    browser("playwright", "mcp-playwright"),
    browser("playwright", "@executeautomation/playwright-mcp-server"),
    browser("playwright", "@cloudflare/playwright-mcp"),
    browser("playwright", "mcr.microsoft.com/playwright/mcp"),
    browser("puppeteer", "@modelcontextprotocol/server-puppeteer"),
    browser("puppeteer", "mcp-server-puppeteer"),
    browser("puppeteer", "puppeteer-mcp-server"),
    browser("puppeteer", "mcp/puppeteer"),
    browser("chrome-devtools", "chrome-devtools-mcp"),
    Browser {
        family: "browser-use",
        package: "browser-use",
        needs: Some("--mcp"),
    },
    browser("browser-use", "mcp-browser-use"),
    browser("browser-use", "mcp-server-browser-use"),
    browser("browser-use", "browser-use-mcp-server"),
    browser("browserbase", "@browserbasehq/mcp"),
    browser("browserbase", "@browserbasehq/mcp-server-browserbase"),
    browser("browserbase", "mcp-server-browserbase"),
    browser("browserbase", "@browserbasehq/mcp-stagehand"),
];

/// The family (`playwright`, `puppeteer`…) of the browser-automation
/// server that `command` with `args` runs, if it clearly is one.
pub(super) fn browser_family(command: Option<&str>, args: &[String]) -> Option<&'static str> {
    let mut tokens: Vec<String> = Vec::with_capacity(args.len() + 1);
    if let Some(command) = command {
        tokens.push(package_of(program_name(command)));
    }
    tokens.extend(args.iter().map(|arg| package_of(arg)));
    BROWSERS
        .iter()
        .find(|b| {
            tokens.iter().any(|t| t == b.package)
                && b.needs
                    .is_none_or(|flag| args.iter().any(|a| a.eq_ignore_ascii_case(flag)))
        })
        .map(|b| b.family)
}

/// A command's file name without its directory or a Windows extension.
fn program_name(command: &str) -> &str {
    let name = command.rsplit(['/', '\\']).next().unwrap_or(command);
    let lower = name.to_ascii_lowercase();
    [".exe", ".cmd", ".bat", ".ps1"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(name, |ext| &name[..name.len() - ext.len()])
}

/// The package an argument names, lowercase with `_` as `-`: without a
/// version (`@1.2`, `==1.2`, `:tag`) or extras (`[cli]`), the value of an
/// `--option=VALUE`, and the package of a path into `node_modules`.
fn package_of(arg: &str) -> String {
    let mut text = arg.trim().to_ascii_lowercase().replace('\\', "/");
    if text.starts_with('-') {
        match text.split_once('=') {
            Some((_, value)) => text = value.to_owned(),
            None => return text,
        }
    }
    if let Some(at) = text.rfind("node_modules/") {
        let rest = &text[at + "node_modules/".len()..];
        let segments = if rest.starts_with('@') { 2 } else { 1 };
        text = rest.split('/').take(segments).collect::<Vec<_>>().join("/");
    }
    // `@scope/name@version` or `name@version`.
    let version_at = text
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '@')
        .map(|(i, _)| i);
    if let Some(at) = version_at {
        text.truncate(at);
    }
    if let Some(at) = text.find(['=', '<', '>', '~', '!', '[']) {
        text.truncate(at);
    }
    // An image's `:tag` (after its last `/`).
    let last_slash = text.rfind('/').map_or(0, |i| i + 1);
    if let Some(colon) = text[last_slash..].find(':') {
        text.truncate(last_slash + colon);
    }
    text.replace('_', "-")
}
