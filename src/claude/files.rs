//! Where Claude Code and Claude Desktop keep their MCP servers, and reading
//! those files.
//!
//! Claude Code reads `~/.claude.json` (its `mcpServers`, and per project
//! `projects[DIR].mcpServers`) and a project's `DIR/.mcp.json`. The
//! original tool wrote `~/.claude/mcp.json`, which Claude Code does not
//! read. Claude Desktop reads `claude_desktop_config.json` in its
//! platform's configuration directory.

use std::path::{Path, PathBuf};

/// The file name of a project's servers (`DIR/.mcp.json`).
pub const PROJECT_FILE: &str = ".mcp.json";

/// `~/.claude.json` under `user_home`: Claude Code's user config.
pub fn user_config(user_home: &Path) -> PathBuf {
    user_home.join(".claude.json")
}

/// `DIR/.mcp.json`: a project's servers.
pub fn project_config(dir: &Path) -> PathBuf {
    dir.join(PROJECT_FILE)
}

/// Whether `path` names a project's `.mcp.json` (its directory is the
/// project).
pub fn is_project_config(path: &Path) -> bool {
    path.file_name() == Some(PROJECT_FILE.as_ref())
}

/// `~/.claude/mcp.json` under `user_home`, as the original writes it
/// (Claude Code does not read it).
pub fn original_config(user_home: &Path) -> PathBuf {
    user_home.join(".claude").join("mcp.json")
}

/// Claude Desktop's config file under `user_home`, for this platform.
pub fn desktop_config(user_home: &Path) -> PathBuf {
    let dir = if cfg!(target_os = "macos") {
        user_home.join("Library").join("Application Support")
    } else if cfg!(windows) {
        user_home.join("AppData").join("Roaming")
    } else {
        user_home.join(".config")
    };
    dir.join("Claude").join("claude_desktop_config.json")
}

/// A file that exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The bytes of `path`; `None` when it does not exist.
///
/// # Errors
/// [`ReadError`]: it exists but cannot be read.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReadError {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `text` without a leading byte order mark (some editors write one).
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_where_claude_reads_them() {
        let home = Path::new("/u");
        assert_eq!(user_config(home), Path::new("/u/.claude.json"));
        assert_eq!(original_config(home), Path::new("/u/.claude/mcp.json"));
        assert_eq!(project_config(home), Path::new("/u/.mcp.json"));
        assert!(is_project_config(&project_config(Path::new("/p"))));
        assert!(!is_project_config(Path::new("/p/mcp.json")));
        assert!(desktop_config(home).ends_with("Claude/claude_desktop_config.json"));
    }

    #[test]
    fn a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nothing.json");
        assert!(read_optional(&path).expect("no error").is_none());
        std::fs::write(&path, "{}").expect("write");
        assert_eq!(read_optional(&path).expect("read"), Some(b"{}".to_vec()));
        assert_eq!(strip_bom("\u{feff}{}"), "{}");
    }
}
