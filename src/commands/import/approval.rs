//! Whether Claude Code runs a server of a project's `.mcp.json`: it asks
//! the user first, and keeps the answer in `enabledMcpjsonServers` /
//! `disabledMcpjsonServers` (or `enableAllProjectMcpServers`), in
//! `projects["DIR"]` of `~/.claude.json` or (Claude Code 2.1 moves them
//! there) `DIR/.claude/settings.local.json`, `DIR/.claude/settings.json`
//! and `~/.claude/settings.json`.
//!
//! A local-scope override runs without that question, so an import gives
//! one only to a server the user approved: one they disabled, or never
//! answered for, stays as it is (a committed `.mcp.json` is anybody's
//! text).

use std::path::Path;

use serde_json::Value;

use crate::claude::files::{read_optional, strip_bom};

/// What the user answered for one `.mcp.json` server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Approval {
    Approved,
    /// Disabled, in this file.
    Disabled(String),
    /// Never answered.
    Pending,
}

/// The settings that hold answers for the project at `dir`: the project's
/// entry of `~/.claude.json` (already read: `project`) and the settings
/// files.
pub(super) struct Answers {
    sources: Vec<(String, Value)>,
}

impl Answers {
    /// Reads the settings files (unreadable or missing ones count as no
    /// answer).
    pub(super) fn read(user_home: &Path, dir: &Path, project: Option<&Value>) -> Answers {
        let mut sources = Vec::new();
        if let Some(project) = project {
            sources.push(("~/.claude.json".to_owned(), project.clone()));
        }
        for (label, path) in [
            (
                ".claude/settings.local.json",
                dir.join(".claude").join("settings.local.json"),
            ),
            (
                ".claude/settings.json",
                dir.join(".claude").join("settings.json"),
            ),
            (
                "~/.claude/settings.json",
                user_home.join(".claude").join("settings.json"),
            ),
        ] {
            let value = read_optional(&path)
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| serde_json::from_str::<Value>(strip_bom(&text)).ok());
            if let Some(value) = value {
                sources.push((label.to_owned(), value));
            }
        }
        Answers { sources }
    }

    /// The answer for `name`: disabled anywhere wins, then enabled (or all
    /// enabled) anywhere.
    pub(super) fn of(&self, name: &str) -> Approval {
        let lists = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|n| n.as_str() == Some(name)))
        };
        if let Some((label, _)) = self
            .sources
            .iter()
            .find(|(_, v)| lists(v, "disabledMcpjsonServers"))
        {
            return Approval::Disabled(label.clone());
        }
        let approved = self.sources.iter().any(|(_, v)| {
            lists(v, "enabledMcpjsonServers")
                || v.get("enableAllProjectMcpServers").and_then(Value::as_bool) == Some(true)
        });
        if approved {
            Approval::Approved
        } else {
            Approval::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_wins_then_enabled_then_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = serde_json::json!({"enabledMcpjsonServers": ["a", "b"]});
        std::fs::create_dir_all(dir.path().join(".claude")).expect("dir");
        std::fs::write(
            dir.path().join(".claude/settings.local.json"),
            r#"{"disabledMcpjsonServers": ["b"]}"#,
        )
        .expect("write");
        let answers = Answers::read(dir.path(), dir.path(), Some(&project));
        assert_eq!(answers.of("a"), Approval::Approved);
        assert_eq!(
            answers.of("b"),
            Approval::Disabled(".claude/settings.local.json".into())
        );
        assert_eq!(answers.of("c"), Approval::Pending);
        let all = serde_json::json!({"enableAllProjectMcpServers": true});
        assert_eq!(
            Answers::read(dir.path(), dir.path(), Some(&all)).of("c"),
            Approval::Approved
        );
    }
}
