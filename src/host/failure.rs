//! Why a child failed to start, as a session and `/health` are told.
//!
//! A [`StartFailure`] is what went wrong before the child was ready (it
//! exited, closed its stdout, refused or did not answer `initialize`, or
//! could not be started at all) and the last lines it wrote to stderr. Its
//! [`message`](StartFailure::message) is what a client's `initialize` gets:
//! short (about 300 characters at most), the cause first, then the child's
//! own words, then when the next try is; never built around the server's
//! name (Claude Code shows it redacted).

use std::time::Duration;

/// The most of the child's stderr a message quotes, in characters.
const STDERR_SHOWN: usize = 200;

/// The most of a refused `initialize` answer a message quotes, in bytes.
const REFUSAL_SHOWN: usize = 150;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It could not be started (the command is missing, with what to
    /// install); the text is for people.
    Unstartable(String),
    /// It started without the pipes it was given.
    NoStdio,
    /// It exited before it was ready; its exit status as the OS says it
    /// (`exit status: 3`, `signal: 9 (SIGKILL)`).
    Exited(String),
    /// Waiting for it failed.
    Unwaitable(String),
    /// It closed its stdout before it was ready.
    ClosedStdout,
    /// It answered `initialize` with an error (its answer, cut).
    Refused(String),
    /// It did not answer `initialize` within this.
    NoAnswer(Duration),
    /// Its answer to `initialize` was lost (the host's request was dropped).
    Unanswered,
}

/// A start that failed, with the child's last stderr lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub cause: Cause,
    /// The last lines the child wrote to stderr, oldest first.
    pub stderr: Vec<String>,
}

impl StartFailure {
    /// A failure with no stderr to quote.
    pub fn new(cause: Cause) -> StartFailure {
        StartFailure {
            cause,
            stderr: Vec::new(),
        }
    }

    /// Why it was started again, as `/health`'s `lastRestartReason` says
    /// (the texts it always had).
    pub fn reason(&self) -> String {
        match &self.cause {
            Cause::Unstartable(reason) => reason.clone(),
            Cause::NoStdio => "the server process has no stdio".to_owned(),
            Cause::Exited(status) => format!("it exited during start-up ({status})"),
            Cause::Unwaitable(error) => format!("cannot wait for it: {error}"),
            Cause::ClosedStdout => "it closed its stdout during start-up".to_owned(),
            Cause::Refused(answer) => format!("it refused initialize: {answer}"),
            Cause::NoAnswer(within) => {
                format!("it did not answer initialize within {}", seconds(*within))
            }
            Cause::Unanswered => "it did not answer initialize".to_owned(),
        }
    }

    /// What a session is told: the cause, then the child's last stderr
    /// lines (as many of the last as fit in [`STDERR_SHOWN`] characters,
    /// saying so when some are left out).
    pub fn message(&self) -> String {
        let cause = match &self.cause {
            Cause::Unstartable(reason) => reason.clone(),
            Cause::NoStdio => "the server started without stdio".to_owned(),
            Cause::Exited(status) => format!("the server exited at start ({status})"),
            Cause::Unwaitable(error) => {
                format!("the server could not be watched at start: {error}")
            }
            Cause::ClosedStdout => "the server closed its stdout at start".to_owned(),
            Cause::Refused(answer) => format!("the server refused initialize: {answer}"),
            Cause::NoAnswer(within) => format!(
                "the server did not answer initialize within {}",
                seconds(*within)
            ),
            Cause::Unanswered => "the server did not answer initialize".to_owned(),
        };
        match quote(&self.stderr) {
            Some(quoted) => format!("{cause}: {quoted}"),
            None => cause,
        }
    }

    /// [`message`](Self::message) and when the next try is (`None`: a try
    /// is under way, or due now).
    pub fn message_with_next_try(&self, next_try_in: Option<Duration>) -> String {
        let next = match next_try_in {
            Some(wait) if !wait.is_zero() => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                format!("next try in {secs} s")
            }
            _ => "trying again now".to_owned(),
        };
        format!("{}; {next}", self.message())
    }
}

/// A refused `initialize` answer, cut to [`REFUSAL_SHOWN`] bytes (on a
/// character boundary), for [`Cause::Refused`].
pub fn refusal_excerpt(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    cut(&text, REFUSAL_SHOWN)
}

/// The last stderr lines that fit in [`STDERR_SHOWN`] characters, joined
/// with ` | `; the last line alone cut to fit. `None` if there are none.
fn quote(lines: &[String]) -> Option<String> {
    let last = lines.last()?;
    let mut used = last.chars().count();
    if used > STDERR_SHOWN {
        let omitted = if lines.len() > 1 { "… | " } else { "" };
        return Some(format!("{omitted}{}", cut(last, STDERR_SHOWN)));
    }
    let mut taken = 1;
    for line in lines.iter().rev().skip(1) {
        let more = line.chars().count() + 3;
        if used + more > STDERR_SHOWN {
            break;
        }
        used += more;
        taken += 1;
    }
    let shown = lines[lines.len() - taken..].join(" | ");
    Some(if taken < lines.len() {
        format!("… | {shown}")
    } else {
        shown
    })
}

/// `text` cut to `max` characters, saying so.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}… (cut)", &text[..at]),
        None => text.to_owned(),
    }
}

/// A duration in whole seconds (`120 s`), or milliseconds under one.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(cause: Cause, stderr: &[&str]) -> StartFailure {
        StartFailure {
            cause,
            stderr: stderr.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The issue's case, word for word: the cause, the status, its own line,
    /// then the next try.
    #[test]
    fn an_exit_at_start_says_the_status_and_its_own_words() {
        let f = failure(
            Cause::Exited("exit status: 3".into()),
            &["fatal: DATABASE_URL is not set"],
        );
        assert_eq!(
            f.message_with_next_try(Some(Duration::from_millis(3_200))),
            "the server exited at start (exit status: 3): fatal: DATABASE_URL is not set; next try in 4 s"
        );
        assert_eq!(f.reason(), "it exited during start-up (exit status: 3)");
        assert_eq!(
            f.message_with_next_try(None),
            "the server exited at start (exit status: 3): fatal: DATABASE_URL is not set; trying again now"
        );
    }

    /// As many of the last lines as fit; the rest is said to be left out.
    #[test]
    fn the_last_lines_that_fit_are_quoted() {
        let long = "x".repeat(120);
        let f = failure(
            Cause::Exited("exit status: 1".into()),
            &[
                "Traceback (most recent call last):",
                &long,
                "  File \"s.py\", line 3",
                "KeyError: 'DATABASE_URL'",
            ],
        );
        assert_eq!(
            f.message(),
            format!(
                "the server exited at start (exit status: 1): … | {long} |   File \"s.py\", line 3 | KeyError: 'DATABASE_URL'"
            )
        );
    }

    /// A huge last line is cut, saying so, and the message stays short.
    #[test]
    fn a_huge_line_is_cut_in_the_message() {
        let huge = format!("{}… (8387608 more bytes)", "y".repeat(1000));
        let f = failure(Cause::Exited("exit status: 3".into()), &["first", &huge]);
        let message = f.message_with_next_try(Some(Duration::from_secs(60)));
        assert!(
            message.chars().count() < 320,
            "{} chars: {message}",
            message.len()
        );
        assert!(message.contains("… (cut)"), "{message}");
        assert!(
            message.starts_with("the server exited at start (exit status: 3): … | yyy"),
            "{message}"
        );
    }

    /// Without stderr the cause stands alone; each cause says what it is.
    #[test]
    fn each_cause_says_what_went_wrong() {
        let cases = [
            (Cause::ClosedStdout, "the server closed its stdout at start"),
            (
                Cause::NoAnswer(Duration::from_secs(120)),
                "the server did not answer initialize within 120 s",
            ),
            (
                Cause::Refused(r#"{"error":{"message":"no"}}"#.into()),
                r#"the server refused initialize: {"error":{"message":"no"}}"#,
            ),
            (
                Cause::Unstartable("`npx` was not found on PATH".into()),
                "`npx` was not found on PATH",
            ),
        ];
        for (cause, expected) in cases {
            assert_eq!(StartFailure::new(cause).message(), expected);
        }
        assert_eq!(
            refusal_excerpt(&[b'a'; 400]),
            format!("{}… (cut)", "a".repeat(150))
        );
    }
}
