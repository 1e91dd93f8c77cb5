//! What the mux reads from a message to route session-bound state: the task
//! a message names or relates to, whether a request asks for a task, and an
//! elicitation's mode and id.
//!
//! Reading is partial and borrowed (everything else is skipped), and a
//! message whose fields have unexpected types reads as naming nothing: the
//! callers then fail closed (a task request naming no task of the session's
//! is refused; a task notification naming no known task goes nowhere).

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The `_meta` key that ties a message to a task (2025-11-25, SEP-1686).
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// What one message says about tasks and elicitations.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `method`, for a request or notification.
    pub method: Option<String>,
    /// `params.taskId` (`tasks/get|result|cancel`, `notifications/tasks/status`).
    pub task_id: Option<String>,
    /// `params._meta["io.modelcontextprotocol/related-task"].taskId`.
    pub related_task: Option<String>,
    /// The request asks to run as a task (`params.task` is present).
    pub task_augmented: bool,
    /// `params.mode` (`elicitation/create`: `form` or `url`).
    pub mode: Option<String>,
    /// `params.elicitationId` (URL-mode elicitation and its completion).
    pub elicitation_id: Option<String>,
    /// `params.cursor` (`tasks/list`).
    pub cursor: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(rename = "taskId")]
    task_id: Option<String>,
    #[serde(rename = "_meta")]
    meta: Option<MetaFields>,
    task: Option<IgnoredAny>,
    mode: Option<String>,
    #[serde(rename = "elicitationId")]
    elicitation_id: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct MetaFields {
    #[serde(rename = "io.modelcontextprotocol/related-task")]
    related: Option<Related>,
}

#[derive(Deserialize)]
struct Related {
    #[serde(rename = "taskId")]
    task_id: String,
}

/// Does `raw` contain `needle`? A cheap test before a parse: one pass,
/// comparing only where the needle's first byte occurs.
pub fn mentions(raw: &[u8], needle: &str) -> bool {
    let Some((&first, rest)) = needle.as_bytes().split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(found) = raw
        .get(at..)
        .and_then(|tail| tail.iter().position(|&b| b == first))
    {
        let start = at + found + 1;
        if raw.get(start..start + rest.len()) == Some(rest) {
            return true;
        }
        at = start;
    }
    false
}

/// What a request or notification says (all empty if it cannot be read).
pub fn of_message(raw: &[u8]) -> Facts {
    let Ok(message) = serde_json::from_slice::<Message>(raw) else {
        return Facts::default();
    };
    let mut facts = Facts {
        method: message.method,
        ..Facts::default()
    };
    if let Some(p) = message.params {
        facts.task_id = p.task_id;
        facts.related_task = p.meta.and_then(|m| m.related).map(|r| r.task_id);
        facts.task_augmented = p.task.is_some();
        facts.mode = p.mode;
        facts.elicitation_id = p.elicitation_id;
        facts.cursor = p.cursor;
    }
    facts
}

/// What an answer from the child says about tasks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AnswerFacts {
    /// It has a `result` (not an `error`).
    pub ok: bool,
    /// `result.task.taskId` of a `CreateTaskResult`, with its `ttl` (ms; none: unlimited).
    pub created: Option<(String, Option<u64>)>,
    /// `result._meta["io.modelcontextprotocol/related-task"].taskId`.
    pub related_task: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    result: Option<AnswerResult>,
}

#[derive(Deserialize)]
struct AnswerResult {
    task: Option<CreatedTask>,
    #[serde(rename = "_meta")]
    meta: Option<MetaFields>,
}

#[derive(Deserialize)]
struct CreatedTask {
    #[serde(rename = "taskId")]
    task_id: String,
    ttl: Option<u64>,
}

/// What an answer says (all empty if it cannot be read).
pub fn of_answer(raw: &[u8]) -> AnswerFacts {
    let Ok(answer) = serde_json::from_slice::<Answer>(raw) else {
        return AnswerFacts::default();
    };
    let Some(result) = answer.result else {
        return AnswerFacts::default();
    };
    AnswerFacts {
        ok: true,
        created: result.task.map(|t| (t.task_id, t.ttl)),
        related_task: result.meta.and_then(|m| m.related).map(|r| r.task_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_task_its_related_task_and_its_elicitation() {
        let raw = br#"{"jsonrpc":"2.0","id":4,"method":"elicitation/create","params":{"mode":"url","elicitationId":"e1","url":"https://x","message":"m","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t1"}}}}"#;
        let facts = of_message(raw);
        assert_eq!(facts.method.as_deref(), Some("elicitation/create"));
        assert_eq!(facts.related_task.as_deref(), Some("t1"));
        assert_eq!(facts.mode.as_deref(), Some("url"));
        assert_eq!(facts.elicitation_id.as_deref(), Some("e1"));
        assert!(!facts.task_augmented);
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","task":{"ttl":5}}}"#;
        assert!(of_message(call).task_augmented);
        let odd = br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":7}}"#;
        assert_eq!(
            of_message(odd),
            Facts::default(),
            "unreadable: names nothing"
        );
    }

    #[test]
    fn mentions_finds_a_needle_anywhere_and_only_there() {
        assert!(mentions(
            b"xx io.modelcontextprotocol/related-task",
            RELATED_TASK
        ));
        assert!(!mentions(
            b"io.modelcontextprotocol/related-tas",
            RELATED_TASK
        ));
        assert!(mentions(b"ttask", "task") && !mentions(b"tas", "task"));
    }

    #[test]
    fn an_answer_names_the_task_it_created() {
        let raw = br#"{"jsonrpc":"2.0","id":2,"result":{"task":{"taskId":"t","status":"working","ttl":300000}}}"#;
        let facts = of_answer(raw);
        assert!(facts.ok);
        assert_eq!(facts.created, Some(("t".to_owned(), Some(300_000))));
        let unlimited = br#"{"jsonrpc":"2.0","id":2,"result":{"task":{"taskId":"t","ttl":null}}}"#;
        assert_eq!(of_answer(unlimited).created, Some(("t".to_owned(), None)));
        let error = br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"no"}}"#;
        assert!(!of_answer(error).ok);
    }
}
