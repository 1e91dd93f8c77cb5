//! Can a session be served by the child now, must it wait, or is it told
//! at once why not? The crash-loop rule, pure.
//!
//! A child is in a **crash loop** when its last start failed before it was
//! ready (it exited, closed its stdout, refused or did not answer
//! `initialize`, or could not be started at all). Until a start succeeds,
//! every session's `initialize` (and every request) is refused at once with
//! the failure and when the next try is; only while a try is under way do
//! sessions wait for its outcome. A child that was ready and then ended is
//! not in a crash loop: it is restarting, and sessions wait for the restart
//! (bounded by the initialize timeout), as they would for a first start.

use std::time::Instant;

use bytes::Bytes;

use super::failure::StartFailure;

/// Where the child is, as the sessions see it.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// A child is being started (the first, or a try after a failed
    /// start): sessions wait for it.
    Starting,
    /// Initialized: its `initialize` result (raw JSON).
    Ready(Bytes),
    /// A child that was ready ended for this reason; another is started
    /// after a short back-off: sessions wait for it.
    Restarting(String),
    /// The last start failed (a crash loop): sessions are told at once,
    /// until a start succeeds.
    Failed {
        failure: StartFailure,
        /// When the next try starts.
        next_try: Instant,
    },
}

/// How one child's run ended (when the backend was not stopped).
#[derive(Debug, Clone)]
pub enum End {
    /// It was ready, then ended for this reason.
    Ran(String),
    /// It failed before it was ready.
    FailedStart(StartFailure),
}

/// What a session gets now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Wait: a child is starting (or restarting after it ran).
    Wait,
    /// The child is ready: its `initialize` result.
    Serve(Bytes),
    /// Refused at once, with why and when the next try is.
    Refuse(String),
}

impl Readiness {
    /// What a session arriving at `now` gets.
    pub fn verdict(&self, now: Instant) -> Verdict {
        match self {
            Readiness::Starting | Readiness::Restarting(_) => Verdict::Wait,
            Readiness::Ready(result) => Verdict::Serve(result.clone()),
            Readiness::Failed { failure, next_try } => Verdict::Refuse(
                failure.message_with_next_try(Some(next_try.saturating_duration_since(now))),
            ),
        }
    }

    /// Why no child is ready, for a session that waited in vain.
    pub fn waited_in_vain(&self) -> String {
        match self {
            Readiness::Restarting(reason) => reason.clone(),
            Readiness::Failed { failure, .. } => failure.message(),
            Readiness::Starting | Readiness::Ready(_) => "it is still starting".to_owned(),
        }
    }

    /// A child is being started: after a failed start, the sessions that
    /// come now wait for this try; a restart stays a restart.
    pub fn trying(&mut self) {
        if matches!(self, Readiness::Failed { .. }) {
            *self = Readiness::Starting;
        }
    }

    /// The child's run ended; the next try starts at `next_try`.
    pub fn ended(&mut self, end: &End, next_try: Instant) {
        *self = match end {
            End::Ran(reason) => Readiness::Restarting(reason.clone()),
            End::FailedStart(failure) => Readiness::Failed {
                failure: failure.clone(),
                next_try,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::failure::Cause;
    use super::*;

    fn exited() -> StartFailure {
        StartFailure {
            cause: Cause::Exited("exit status: 3".into()),
            stderr: vec!["fatal: DATABASE_URL is not set".into()],
        }
    }

    /// A failed start refuses at once, saying when the next try is; the
    /// try itself is waited for; a success serves again.
    #[test]
    fn a_crash_loop_refuses_at_once_until_a_start_succeeds() {
        let now = Instant::now();
        let mut r = Readiness::Starting;
        assert_eq!(r.verdict(now), Verdict::Wait);
        r.ended(&End::FailedStart(exited()), now + Duration::from_secs(4));
        assert_eq!(
            r.verdict(now),
            Verdict::Refuse(
                "the server exited at start (exit status: 3): fatal: DATABASE_URL is not set; next try in 4 s".into()
            )
        );
        assert_eq!(
            r.verdict(now + Duration::from_secs(5)),
            Verdict::Refuse(
                "the server exited at start (exit status: 3): fatal: DATABASE_URL is not set; trying again now".into()
            )
        );
        r.trying();
        assert_eq!(r.verdict(now), Verdict::Wait);
        r.ended(&End::FailedStart(exited()), now + Duration::from_secs(8));
        assert!(matches!(r.verdict(now), Verdict::Refuse(m) if m.ends_with("next try in 8 s")));
        r.trying();
        r = Readiness::Ready(Bytes::from_static(b"{}"));
        assert_eq!(r.verdict(now), Verdict::Serve(Bytes::from_static(b"{}")));
    }

    /// A child that ran and then crashed is no crash loop: sessions wait
    /// for the restart, through its try; if that try fails at start, they
    /// are told.
    #[test]
    fn a_crash_after_running_is_waited_for() {
        let now = Instant::now();
        let mut r = Readiness::Ready(Bytes::from_static(b"{}"));
        r.ended(
            &End::Ran("it exited (signal: 9 (SIGKILL))".into()),
            now + Duration::from_secs(1),
        );
        assert_eq!(r.verdict(now), Verdict::Wait);
        r.trying();
        assert_eq!(r.verdict(now), Verdict::Wait);
        assert_eq!(r.waited_in_vain(), "it exited (signal: 9 (SIGKILL))");
        r.ended(&End::FailedStart(exited()), now + Duration::from_secs(2));
        assert!(
            matches!(r.verdict(now), Verdict::Refuse(m) if m.starts_with("the server exited at start"))
        );
    }
}
