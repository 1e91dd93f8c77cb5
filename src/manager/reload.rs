//! What a reload changes: the entries added, removed and changed between
//! the config in force and the one just read ([`Plan`]), and what only a
//! manager restart applies. Pure, so the rules are unit-tested; the
//! manager applies the plan.

use crate::config::{Config, ServerConfig};

/// The difference between two configs, entry by entry (by name).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New names: a supervisor is started for each.
    pub added: Vec<ServerConfig>,
    /// Names that are gone: their daemons are stopped for good.
    pub removed: Vec<String>,
    /// Names whose entry differs in any field (command, args, env, cwd,
    /// port, transport, scope, headers, timeouts...): stopped and started
    /// again with the new entry. A hosted server reads its whole entry at
    /// start, so no field is applied to a running one in place.
    pub changed: Vec<ServerConfig>,
}

impl Plan {
    /// What turns `old` into `new`.
    pub fn between(old: &Config, new: &Config) -> Plan {
        let mut plan = Plan::default();
        for (name, server) in &new.servers {
            match old.servers.get(name) {
                None => plan.added.push(server.clone()),
                Some(before) if before != server => plan.changed.push(server.clone()),
                Some(_) => {}
            }
        }
        plan.removed = old
            .servers
            .keys()
            .filter(|name| !new.servers.contains_key(*name))
            .cloned()
            .collect();
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What the new config asks that only a manager restart applies: a
/// `managerPort` other than the one the manager was started with.
pub fn needs_restart(started_with: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if new.manager_port != started_with.manager_port {
        notes.push(format!(
            "managerPort {} -> {}: the manager keeps {} until it restarts (`mcp-manager shutdown`; the next session starts it again)",
            started_with.manager_port, new.manager_port, started_with.manager_port
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/home/u/config.json"), text.as_bytes()).expect("valid")
    }

    const BASE: &str = r#"{"mcpServers": {
        "web": {"command": "node", "args": ["web.js"], "port": 3100, "transport": "streamable-http"},
        "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"], "port": 3101, "transport": "stdio"},
        "remote": {"url": "https://example.com/mcp"}
    }}"#;

    #[test]
    fn the_same_config_changes_nothing() {
        let plan = Plan::between(&config(BASE), &config(BASE));
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn added_removed_and_changed_entries_are_told_apart() {
        let new = r#"{"mcpServers": {
            "web": {"command": "node", "args": ["web.js", "--verbose"], "port": 3100, "transport": "streamable-http"},
            "remote": {"url": "https://example.com/mcp"},
            "fs": {"command": "npx", "args": ["fs"], "port": 3105, "transport": "stdio"}
        }}"#;
        let plan = Plan::between(&config(BASE), &config(new));
        let names = |servers: &[ServerConfig]| -> Vec<String> {
            servers.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&plan.added), ["fs"]);
        assert_eq!(plan.removed, ["memory"]);
        assert_eq!(names(&plan.changed), ["web"]);
    }

    #[test]
    fn a_change_of_any_field_restarts_the_entry() {
        for changed in [
            r#""env": {"A": "1"}"#,
            r#""cwd": "/tmp""#,
            r#""scope": "project""#,
            r#""headers": {"Authorization": "Bearer x"}"#,
            r#""sessionTimeout": 60"#,
        ] {
            let new = BASE.replace(r#""port": 3101,"#, &format!(r#""port": 3101, {changed},"#));
            let plan = Plan::between(&config(BASE), &config(&new));
            assert_eq!(plan.changed.len(), 1, "{changed}: {plan:?}");
            assert_eq!(plan.changed[0].name, "memory");
            assert!(plan.added.is_empty() && plan.removed.is_empty());
        }
        let moved = BASE.replace("3101", "3111");
        assert_eq!(
            Plan::between(&config(BASE), &config(&moved)).changed[0].name,
            "memory"
        );
    }

    #[test]
    fn only_a_new_manager_port_needs_a_restart() {
        assert!(needs_restart(&config(BASE), &config(BASE)).is_empty());
        let moved = BASE.replacen('{', r#"{"managerPort": 4199, "healthCheckInterval": 5,"#, 1);
        let notes = needs_restart(&config(BASE), &config(&moved));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("managerPort 3199 -> 4199"),
            "{notes:?}"
        );
    }
}
