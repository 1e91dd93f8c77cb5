//! What a hosted server's host says of its children (`GET /health`), read
//! into the [`ChildStatus`] a status shows ([`summarise`]).
//!
//! `/health` is an API boundary read here, never required to grow: the
//! fields of every host version (`name`, `state`, `scope`, `sessions`,
//! `children: [{state, pid, restarts, lastRestartReason, scopeKey,
//! sessions}]`) are enough; newer hosts' `crashLoop`, `nextTryAt` and
//! `lastStderr` are used when present. A host that does not say
//! `crashLoop` is judged by what the supervisor saw: a child started again
//! [`CRASH_LOOP_AFTER`] times since it was last seen serving keeps ending.
//! Everything kept is bounded: reasons and stderr lines cut to
//! [`TEXT_LIMIT`] characters, at most [`STDERR_LINES`] lines, at most
//! [`MAX_CHILDREN`] children looked at.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::control_api::{ChildState, ChildStatus};

/// Restarts since it last served after which a child is in a crash loop
/// (for a host that does not say `crashLoop`).
pub const CRASH_LOOP_AFTER: u64 = 3;
/// The longest reason or stderr line kept, in characters.
pub const TEXT_LIMIT: usize = 1_000;
/// The most stderr lines kept.
pub const STDERR_LINES: usize = 20;
/// The most children looked at (a host runs at most `maxChildren`).
pub const MAX_CHILDREN: usize = 1_024;

/// A host's `/health`, as far as the supervisor reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostHealth {
    pub scope: Option<String>,
    /// Sessions the host serves (`sessions`); else the children's sum.
    pub sessions: Option<u64>,
    pub children: Vec<ChildReport>,
}

/// One child of a host, as `/health` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildReport {
    pub scope_key: String,
    /// `starting`, `running`, `restarting`, `stopped` (or a newer word).
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub reason: Option<String>,
    pub sessions: u64,
    /// The host's own verdict, if it gives one.
    pub crash_loop: Option<bool>,
    pub next_try_at: Option<u64>,
    pub last_stderr: Vec<String>,
}

impl HostHealth {
    /// Reads `/health`'s JSON; `None` if it is not a host's (no
    /// `children` list).
    pub fn parse(json: &Value) -> Option<HostHealth> {
        let children = json.get("children")?.as_array()?;
        Some(HostHealth {
            scope: json.get("scope").and_then(Value::as_str).map(cut),
            sessions: json.get("sessions").and_then(Value::as_u64),
            children: children
                .iter()
                .take(MAX_CHILDREN)
                .map(ChildReport::parse)
                .collect(),
        })
    }
}

impl ChildReport {
    fn parse(json: &Value) -> ChildReport {
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(cut);
        ChildReport {
            scope_key: text("scopeKey").unwrap_or_default(),
            state: text("state").unwrap_or_default(),
            pid: json
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            restarts: json.get("restarts").and_then(Value::as_u64).unwrap_or(0),
            // A newer host words a failed start itself (cause, status, stderr).
            reason: text("startError")
                .or_else(|| text("lastRestartReason"))
                .or_else(|| text("lastReason")),
            sessions: json.get("sessions").and_then(Value::as_u64).unwrap_or(0),
            crash_loop: json.get("crashLoop").and_then(Value::as_bool),
            next_try_at: json.get("nextTryAt").and_then(Value::as_u64),
            last_stderr: stderr_lines(json.get("lastStderr")),
        }
    }

    /// Its state, given the restarts it had when it was last seen serving.
    fn state(&self, restarts_when_serving: u64) -> ChildState {
        match self.state.as_str() {
            "running" => ChildState::Running,
            "stopped" => ChildState::Stopped,
            "starting" if self.restarts == 0 => ChildState::Starting,
            "crash-loop" | "crashloop" | "crash_loop" => ChildState::CrashLoop,
            // Starting again, restarting, or a word this version does not
            // know: it is not serving.
            _ => {
                let looping = self.crash_loop.unwrap_or_else(|| {
                    self.restarts.saturating_sub(restarts_when_serving) >= CRASH_LOOP_AFTER
                });
                if looping {
                    ChildState::CrashLoop
                } else {
                    ChildState::Restarting
                }
            }
        }
    }
}

/// `lastStderr`: a list of lines or one text, bounded.
fn stderr_lines(value: Option<&Value>) -> Vec<String> {
    let lines: Vec<String> = match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(cut).collect(),
        Some(Value::String(text)) => text.lines().map(cut).collect(),
        _ => Vec::new(),
    };
    let skip = lines.len().saturating_sub(STDERR_LINES);
    lines.into_iter().skip(skip).collect()
}

/// `text` cut to [`TEXT_LIMIT`] characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(TEXT_LIMIT) {
        Some((at, _)) => format!("{}… (cut)", &text[..at]),
        None => text.to_owned(),
    }
}

/// The [`ChildStatus`] of `health`: with one child, its own; with several,
/// the worst one's (crash-loop, restarting, stopped, starting, running),
/// restarts and sessions summed, states counted; `None` with no child yet.
///
/// `serving` holds, per scope key, the restarts a child had when it was
/// last seen running: updated here (keys of children gone are dropped, so
/// it never outgrows the host's children).
pub fn summarise(health: &HostHealth, serving: &mut HashMap<String, u64>) -> Option<ChildStatus> {
    serving.retain(|key, _| health.children.iter().any(|c| &c.scope_key == key));
    let mut worst: Option<(ChildState, &ChildReport)> = None;
    let mut states: BTreeMap<ChildState, u32> = BTreeMap::new();
    let mut restarts = 0u64;
    let mut sessions = 0u64;
    for child in &health.children {
        let seen = *serving.get(&child.scope_key).unwrap_or(&0);
        let state = child.state(seen);
        if state == ChildState::Running {
            serving.insert(child.scope_key.clone(), child.restarts);
        }
        *states.entry(state).or_default() += 1;
        restarts = restarts.saturating_add(child.restarts);
        sessions = sessions.saturating_add(child.sessions);
        if worst.is_none_or(|(w, _)| state > w) {
            worst = Some((state, child));
        }
    }
    let (state, child) = worst?;
    let count = u32::try_from(health.children.len()).unwrap_or(u32::MAX);
    Some(ChildStatus {
        state,
        pid: child.pid,
        restarts,
        last_reason: child.reason.clone(),
        sessions: health.sessions.unwrap_or(sessions),
        next_try_at: child.next_try_at,
        last_stderr: child.last_stderr.clone(),
        scope: health.scope.clone(),
        children: count,
        states: if count > 1 { states } else { BTreeMap::new() },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(json: &Value, serving: &mut HashMap<String, u64>) -> Option<ChildStatus> {
        summarise(&HostHealth::parse(json).expect("a host's"), serving)
    }

    fn one(state: &str, restarts: u64, reason: Option<&str>) -> Value {
        json!({
            "name": "db", "state": "degraded", "scope": "shared", "pid": null,
            "sessions": 2, "uptimeMs": 9000,
            "children": [{
                "state": state, "pid": 77, "restarts": restarts,
                "lastRestartReason": reason, "startedAt": null,
                "scopeKey": "shared", "sessions": 2,
            }],
        })
    }

    /// An older host (no `crashLoop`): a child started again fewer than
    /// [`CRASH_LOOP_AFTER`] times since it served is restarting, then it is
    /// a crash loop; once it serves again, the count starts over.
    #[test]
    fn a_child_that_keeps_ending_is_a_crash_loop_for_an_older_host() {
        let mut serving = HashMap::new();
        let why = "it exited during start-up (exit status: 3)";
        let up = read(&one("running", 0, None), &mut serving).expect("a child");
        assert_eq!(up.state, ChildState::Running);
        assert_eq!((up.pid, up.sessions, up.children), (Some(77), 2, 1));
        let again = read(&one("restarting", 2, Some(why)), &mut serving).expect("a child");
        assert_eq!(again.state, ChildState::Restarting);
        assert_eq!(again.last_reason.as_deref(), Some(why));
        let looping = read(&one("starting", 3, Some(why)), &mut serving).expect("a child");
        assert_eq!(looping.state, ChildState::CrashLoop);
        assert_eq!(looping.restarts, 3);
        read(&one("running", 3, Some(why)), &mut serving);
        let once = read(&one("restarting", 4, Some(why)), &mut serving).expect("a child");
        assert_eq!(once.state, ChildState::Restarting, "served in between");
    }

    /// A host that says `crashLoop` is believed either way, and its newer
    /// fields are read.
    #[test]
    fn a_newer_hosts_own_verdict_and_fields_are_used() {
        let mut serving = HashMap::new();
        let mut health = one("restarting", 1, Some("it exited"));
        health["children"][0]["crashLoop"] = json!(true);
        health["children"][0]["nextTryAt"] = json!(1_700_000_004_000u64);
        health["children"][0]["lastStderr"] = json!(["fatal: DATABASE_URL is not set"]);
        let child = read(&health, &mut serving).expect("a child");
        assert_eq!(child.state, ChildState::CrashLoop);
        assert_eq!(child.next_try_at, Some(1_700_000_004_000));
        assert_eq!(child.last_stderr, ["fatal: DATABASE_URL is not set"]);
        health["children"][0]["crashLoop"] = json!(false);
        health["children"][0]["restarts"] = json!(9);
        let child = read(&health, &mut serving).expect("a child");
        assert_eq!(child.state, ChildState::Restarting);
    }

    /// Several children (scope `project`): the worst one speaks, the rest
    /// are counted; a host with no child yet has no child view.
    #[test]
    fn several_children_are_summarised_by_the_worst() {
        let mut serving = HashMap::new();
        let health = json!({
            "name": "fs", "state": "degraded", "scope": "project", "sessions": 3,
            "children": [
                {"state": "running", "pid": 1, "restarts": 0, "scopeKey": "/a", "sessions": 2},
                {"state": "restarting", "pid": null, "restarts": 4,
                 "lastRestartReason": "it exited (exit status: 1)", "scopeKey": "/b", "sessions": 1},
                {"state": "running", "pid": 3, "restarts": 1, "scopeKey": "/c", "sessions": 0},
            ],
        });
        let child = read(&health, &mut serving).expect("a child");
        assert_eq!(child.state, ChildState::CrashLoop);
        assert_eq!(child.pid, None);
        assert_eq!(child.restarts, 5);
        assert_eq!(child.sessions, 3);
        assert_eq!(child.children, 3);
        assert_eq!(child.scope.as_deref(), Some("project"));
        assert_eq!(
            child.states,
            BTreeMap::from([(ChildState::Running, 2), (ChildState::CrashLoop, 1)])
        );
        assert_eq!(
            child.last_reason.as_deref(),
            Some("it exited (exit status: 1)")
        );
        let none = json!({"name": "fs", "state": "ok", "sessions": 0, "children": []});
        assert_eq!(read(&none, &mut serving), None);
        assert!(serving.is_empty(), "children gone are forgotten");
        assert_eq!(HostHealth::parse(&json!({"status": "ok"})), None);
    }

    /// Whatever a host says, what is kept is bounded.
    #[test]
    fn what_is_kept_is_bounded() {
        let mut health = one("restarting", 1, Some(&"x".repeat(5_000)));
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        health["children"][0]["lastStderr"] = json!(lines);
        let child = read(&health, &mut HashMap::new()).expect("a child");
        let reason = child.last_reason.expect("a reason");
        assert!(reason.chars().count() < TEXT_LIMIT + 20, "{}", reason.len());
        assert_eq!(child.last_stderr.len(), STDERR_LINES);
        assert_eq!(
            child.last_stderr.last().map(String::as_str),
            Some("line 99")
        );
    }
}
