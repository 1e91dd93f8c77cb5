//! Claude Code's and Claude Desktop's files, as this tool reads and edits
//! them.
//!
//! - [`files`]: where they are (`~/.claude.json`, a project's `.mcp.json`,
//!   the original's `~/.claude/mcp.json`, Claude Desktop's config on each
//!   platform) and reading them;
//! - [`projects`]: the one rule matching a project directory to its key in
//!   the `projects` map of `~/.claude.json`;
//! - [`entries`]: whether a server entry runs `mcp-proxy`, and its target;
//! - [`json_text`]: edits of a JSON file's text that keep every other byte;
//! - [`write`](mod@write): backups beside a file and atomic replacement.
//!
//! The commands (`doctor`, `generate-config`, `import`) use these; nothing
//! here prints, and nothing here knows about the daemons.

pub mod entries;
pub mod files;
pub mod json_text;
pub mod projects;
pub mod write;
