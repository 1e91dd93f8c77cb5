//! Server entries of Claude's files: does one run `mcp-proxy`, and for
//! which daemon (`--target NAME`)? And the arguments a proxy entry gets.
//!
//! An entry is `{"command", "args", "env"?, "cwd"?}` (a program Claude
//! starts, one copy per session) or `{"type", "url", "headers"?}` (a remote
//! server Claude connects to). A proxy entry is a program entry whose
//! command's file name is `mcp-proxy` (`mcp-proxy.exe`), wherever it is.

use serde_json::Value;

use crate::config::DEFAULT_MANAGER_PORT;

/// Is the command's file name `mcp-proxy` (`mcp-proxy.exe`, any case)?
/// Either separator, whatever this platform's.
pub fn is_proxy(command: &str) -> bool {
    let file = command.rsplit(['/', '\\']).next().unwrap_or(command);
    file == "mcp-proxy" || file.eq_ignore_ascii_case("mcp-proxy.exe")
}

/// The value of `--target NAME` or `--target=NAME` in `args`.
pub fn target_of<'a>(args: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--target" {
            return args.next();
        }
        if let Some(name) = arg.strip_prefix("--target=") {
            return Some(name);
        }
    }
    None
}

/// The arguments of a proxy entry for daemon `name`: `--target NAME`, and
/// `--manager-port PORT` when the port is not the default.
pub fn proxy_args(name: &str, manager_port: u16) -> Vec<String> {
    let mut args = vec!["--target".to_owned(), name.to_owned()];
    if manager_port != DEFAULT_MANAGER_PORT {
        args.extend(["--manager-port".to_owned(), manager_port.to_string()]);
    }
    args
}

/// What one server entry runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `mcp-proxy`, with its `--target` if it has one.
    Proxy {
        command: &'a str,
        target: Option<&'a str>,
    },
    /// Another program: one copy per session.
    Direct,
    /// `type`/`url`: Claude connects itself; nothing runs per session.
    Remote,
    /// Not an object, a `command` that is not a string, or neither a
    /// `command` nor a `url`.
    Malformed,
}

/// What `entry` (a value of an `mcpServers` object) runs.
pub fn classify(entry: &Value) -> Entry<'_> {
    let Some(entry) = entry.as_object() else {
        return Entry::Malformed;
    };
    match entry.get("command") {
        Some(Value::String(command)) if is_proxy(command) => Entry::Proxy {
            command,
            target: entry
                .get("args")
                .and_then(Value::as_array)
                .and_then(|args| target_of(args.iter().filter_map(Value::as_str))),
        },
        Some(Value::String(_)) => Entry::Direct,
        Some(_) => Entry::Malformed,
        None if entry.get("url").is_some_and(Value::is_string) => Entry::Remote,
        None => Entry::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_classified_by_their_command() {
        let proxy = json!({"command": "C:\\bin\\MCP-PROXY.EXE", "args": ["--target", "a"]});
        assert_eq!(
            classify(&proxy),
            Entry::Proxy {
                command: "C:\\bin\\MCP-PROXY.EXE",
                target: Some("a")
            }
        );
        assert_eq!(
            classify(&json!({"command": "mcp-proxy-old"})),
            Entry::Direct
        );
        assert_eq!(classify(&json!({"url": "https://x"})), Entry::Remote);
        assert_eq!(classify(&json!({"command": 3})), Entry::Malformed);
        assert_eq!(classify(&json!("mcp-proxy")), Entry::Malformed);
    }

    #[test]
    fn the_target_is_found_in_either_spelling() {
        assert_eq!(target_of(["-v", "--target", "a"]), Some("a"));
        assert_eq!(target_of(["--target=b"]), Some("b"));
        assert_eq!(target_of(["--target"]), None);
        assert!(is_proxy("/usr/local/bin/mcp-proxy"));
        assert!(!is_proxy("mcp-proxy.sh"));
    }

    #[test]
    fn the_manager_port_is_passed_only_when_not_the_default() {
        assert_eq!(proxy_args("m", DEFAULT_MANAGER_PORT), ["--target", "m"]);
        assert_eq!(
            proxy_args("m", 4000),
            ["--target", "m", "--manager-port", "4000"]
        );
    }
}
