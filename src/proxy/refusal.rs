//! The proxy's error mode: when it cannot serve at all, it still speaks
//! JSON-RPC, so the cause reaches the Claude Code user instead of
//! "Connection closed".
//!
//! A [`Refusal`] is why: `config.json` does not load ([`Refusal::config`]:
//! file, line, column, key and the fix) or the target is not configured
//! ([`Refusal::unknown_target`]: the configured names and the closest
//! one). [`serve`] then answers every request on stdin (`initialize`,
//! `server/discover`, anything) with a JSON-RPC error, code -32603 (the
//! proxy's "cannot serve this", as when no daemon is found), its `message`
//! the refusal (short, the cause and the fix first: Claude Code shows it
//! with the server's name redacted) and its `data` the same facts as
//! fields. Notifications and responses are ignored; input that is not
//! JSON-RPC gets the usual -32700/-32600. It ends when stdin closes (or on
//! `shutdown`, or when stdout closes).
//!
//! A daemon that cannot be found or started ([`super::discovery`]'s
//! `NotFound`, [`Refusal::no_daemon`]) is refused the same way, by the
//! session itself once discovery has failed: the answers are the same.

use std::future::Future;
use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_util::sync::CancellationToken;

use super::discovery::NotFound;
use crate::config::{Config, ConfigError};
use crate::jsonrpc::{self, Incoming, Kind, Message};
use crate::stdio::{self, LineReader};

/// Why this proxy cannot serve, as the client will be told.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The error's `message`: the cause, then the fix.
    message: String,
    /// The error's `data`: the same facts as fields.
    data: Value,
}

impl Refusal {
    /// `config.json` does not load: the file, line and column or key, and
    /// the fix (then `/mcp` to reconnect).
    pub fn config(error: &ConfigError) -> Refusal {
        let fix = "fix it, then reconnect (/mcp)";
        let (message, data) = match error {
            ConfigError::Read { path, source } => (
                format!("cannot read {} ({source}); {fix}", shown(path)),
                json!({ "cause": "config", "file": path }),
            ),
            ConfigError::Syntax {
                path,
                message,
                line,
                column,
            } => (
                format!(
                    "{} is not valid JSON: {message} (line {line}, column {column}); {fix}",
                    shown(path)
                ),
                json!({ "cause": "config", "file": path, "line": line, "column": column }),
            ),
            ConfigError::Invalid {
                path,
                key,
                problem,
                at,
            } => (
                format!(
                    "{}: key `{key}`{at}: {}; {fix}",
                    shown(path),
                    crate::config::shown_problem(key, problem)
                ),
                json!({ "cause": "config", "file": path, "key": key }),
            ),
        };
        Refusal { message, data }
    }

    /// `--target NAME` names no entry of `config`: the closest configured
    /// name first, then them all (`NAME` itself is in `data` only).
    pub fn unknown_target(name: &str, config: &Config) -> Refusal {
        let names = config.names();
        let closest = closest(name, &names);
        let source = match &config.source {
            Some(path) => shown(path),
            None => "the built-in daemons (there is no config.json)".to_owned(),
        };
        // Not the name itself, nor "--target": Claude Code redacts a
        // server's arguments in what it shows.
        let mut message = "unknown target".to_owned();
        match closest {
            Some(closest) => message.push_str(&format!(": did you mean `{closest}`?")),
            None => message.push('.'),
        }
        message.push_str(&format!(
            " Configured in {source}: {}. Fix the target in Claude Code's entry, or add the server with `mcp-manager add`",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
        let data = json!({
            "cause": "unknownTarget",
            "target": name,
            "configured": names,
            "closest": closest,
            "file": config.source,
        });
        Refusal { message, data }
    }

    /// Nothing serves the target ([`NotFound::message`]: the cause and
    /// the fix); `data` holds every attempt.
    pub fn no_daemon(not_found: &NotFound) -> Refusal {
        Refusal {
            message: not_found.message(),
            data: not_found.data(),
        }
    }

    /// The session could not be set up at all (`why`, with the fix).
    pub fn other(message: String) -> Refusal {
        Refusal {
            data: json!({ "cause": "setup", "message": message }),
            message,
        }
    }

    /// The error message the client gets (also what the proxy logs).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error's `data`.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The answers to one line of input (none for notifications and
    /// responses; a batch gets one array).
    pub(crate) fn answer(&self, line: bytes::Bytes) -> Option<bytes::Bytes> {
        let (items, is_batch) = match jsonrpc::parse_line(line) {
            Ok(Incoming::Single(message)) => (vec![Ok(message)], false),
            Ok(Incoming::Batch(items)) => (items, true),
            Err(error) => return Some(error.to_response()),
        };
        let answers: Vec<bytes::Bytes> = items
            .into_iter()
            .filter_map(|item| match item {
                Ok(Message {
                    kind: Kind::Request { id, .. },
                    ..
                }) => Some(jsonrpc::error_response_with_data(
                    Some(&id),
                    jsonrpc::code::INTERNAL_ERROR,
                    &self.message,
                    Some(&self.data),
                )),
                Ok(_) => None,
                Err(error) => Some(error.to_response()),
            })
            .collect();
        match answers.len() {
            0 => None,
            _ if is_batch => Some(jsonrpc::batch(&answers)),
            _ => answers.into_iter().next(),
        }
    }
}

/// A path for a message: under the user's home as `~/…` (shorter; Claude
/// Code shows the first ~150 characters).
fn shown(path: &Path) -> String {
    match dirs::home_dir().and_then(|home| path.strip_prefix(home).ok().map(Path::to_owned)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// The configured name nearest to `name` by edit distance, if it is near
/// enough to be a typo (at most a third of its length, at least 2).
fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    names
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters (case-insensitive).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Answers every request on `input` with `refusal` until `input` ends,
/// `shutdown` resolves or `output` closes.
pub async fn serve<R, W>(refusal: &Refusal, input: R, output: W, shutdown: impl Future<Output = ()>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let closed = CancellationToken::new();
    let (out, writer) = stdio::spawn_writer(output, closed.clone());
    let mut lines = LineReader::new(BufReader::new(input));
    tokio::pin!(shutdown);
    loop {
        // `next_line` is not cancel-safe, but the other branches end the
        // session: a half-read line is lost with it.
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = &mut shutdown => break,
            () = closed.cancelled() => break,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "cannot read stdin");
                break;
            }
        };
        if let Some(answer) = refusal.answer(line) {
            if out.send(answer).await.is_err() {
                break;
            }
        }
    }
    out.finish();
    drop(out);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn typos_find_the_closest_name() {
        let names = ["filesystem", "memory", "github"];
        assert_eq!(closest("filesystm", &names), Some("filesystem"));
        assert_eq!(closest("Memroy", &names), Some("memory"));
        assert_eq!(closest("zzz", &names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn refusals_say_the_cause_and_the_fix_first() {
        let config = Config::builtin();
        let refusal = Refusal::unknown_target("memroy", &config);
        assert!(
            refusal
                .message()
                .starts_with("unknown target: did you mean `memory`?"),
            "{}",
            refusal.message()
        );
        assert_eq!(refusal.data()["closest"], "memory");
        let error = Config::parse(Path::new("/h/config.json"), b"{\"mcpServers\": {},}")
            .expect_err("trailing comma");
        let refusal = Refusal::config(&error);
        assert!(
            refusal.message().contains("line 1, column 19") && refusal.message().contains("fix it"),
            "{}",
            refusal.message()
        );
        assert_eq!(refusal.data()["line"], 1);
    }

    /// Requests get the error with their id, a batch one array,
    /// notifications nothing; the end of input ends it.
    #[tokio::test]
    async fn every_request_is_answered_until_stdin_closes() {
        let refusal = Refusal::unknown_target("x", &Config::builtin());
        let input = concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":"d","method":"server/discover"}"#,
            "\n",
            r#"[{"jsonrpc":"2.0","id":7,"method":"tools/list"}]"#,
            "\n",
        );
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        serve(&refusal, input.as_bytes(), client, std::future::pending()).await;
        let mut written = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut written)
            .await
            .expect("read");
        let lines: Vec<Value> = written
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3, "{written}");
        assert_eq!(lines[0]["id"], 1);
        assert_eq!(lines[0]["error"]["code"], -32603);
        assert_eq!(lines[1]["id"], "d");
        assert_eq!(lines[2][0]["id"], 7);
    }
}
