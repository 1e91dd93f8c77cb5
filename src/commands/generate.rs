//! `mcp-manager generate-config`: `~/.claude/mcp.json` as the original
//! writes it, one entry per daemon, each running the installed `mcp-proxy`
//! with `--target NAME`. An existing file is first copied to
//! `mcp.json.backup.<ms>`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::{Config, DEFAULT_MANAGER_PORT};

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub backup: Option<PathBuf>,
}

/// The `mcpServers` document for `config`, with `proxy` as the command.
pub fn render(config: &Config, proxy: &Path, manager_port: u16) -> Value {
    let servers: serde_json::Map<String, Value> = config
        .servers
        .keys()
        .map(|name| {
            let mut args = vec![json!("--target"), json!(name)];
            if manager_port != DEFAULT_MANAGER_PORT {
                args.extend([json!("--manager-port"), json!(manager_port.to_string())]);
            }
            (
                name.clone(),
                json!({ "command": proxy.to_string_lossy(), "args": args }),
            )
        })
        .collect();
    json!({ "mcpServers": servers })
}

/// `~/.claude/mcp.json` under `user_home`.
pub fn target(user_home: &Path) -> PathBuf {
    user_home.join(".claude").join("mcp.json")
}

/// Writes `document` to `path`, keeping a copy of what was there.
///
/// # Errors
/// The file system's error, with the path.
pub fn write(path: &Path, document: &Value) -> Result<Written, String> {
    let io =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    let backup = if path.exists() {
        let ms = crate::paths::now_ms();
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".backup.{ms}"));
        let backup = PathBuf::from(name);
        std::fs::copy(path, &backup).map_err(|e| io("back up", path, e))?;
        Some(backup)
    } else {
        None
    };
    let mut text = serde_json::to_string_pretty(document).map_err(|e| e.to_string())?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| io("write", path, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_runs_the_proxy_with_its_target() {
        let config = Config::builtin();
        let proxy = Path::new("/opt/bin/mcp-proxy");
        let document = render(&config, proxy, DEFAULT_MANAGER_PORT);
        let memory = &document["mcpServers"]["memory"];
        assert_eq!(memory["command"], "/opt/bin/mcp-proxy");
        assert_eq!(memory["args"], json!(["--target", "memory"]));
        assert_eq!(document["mcpServers"].as_object().map(|m| m.len()), Some(3));
        let other_port = render(&config, proxy, 4000);
        assert_eq!(
            other_port["mcpServers"]["memory"]["args"],
            json!(["--target", "memory", "--manager-port", "4000"])
        );
    }

    #[test]
    fn an_existing_file_is_backed_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = target(dir.path());
        let first = write(&path, &json!({"a": 1})).expect("first");
        assert!(first.backup.is_none());
        let second = write(&path, &json!({"b": 2})).expect("second");
        let backup = second.backup.expect("a backup");
        let kept: Value =
            serde_json::from_slice(&std::fs::read(backup).expect("read")).expect("json");
        assert_eq!(kept, json!({"a": 1}));
    }
}
