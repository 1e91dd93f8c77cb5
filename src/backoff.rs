//! The one retry policy: delays that double from a first to a cap, with an
//! optional immediate first retry, started over by [`Backoff::reset`] once
//! the thing retried has been up long enough.
//!
//! Used for reaching a lost daemon (50 ms → 1 s), the manager's restarts of
//! a daemon (now, then 1 s → 60 s) and the host's restarts of its child
//! (1 s → 60 s).

use std::time::Duration;

/// Doubling delays between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// The first retry comes at once; doubling starts with the second.
    immediate_first: bool,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// Delays of `first`, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            immediate_first: false,
            attempt: 0,
        }
    }

    /// The same, with an immediate first retry (a crash is often a one-off).
    pub const fn immediate_first(mut self) -> Backoff {
        self.immediate_first = true;
        self
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let n = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        let doublings = match (self.immediate_first, n) {
            (true, 0) => return Duration::ZERO,
            (true, n) => n - 1,
            (false, n) => n,
        };
        // 2^16 × any first delay used here is far past any cap.
        self.first
            .saturating_mul(1 << doublings.min(16))
            .min(self.max)
    }

    /// Gives up the immediate retry if it is still owed (what failed never
    /// ran, so trying again at once would only fail again).
    pub fn skip_immediate(&mut self) {
        if self.immediate_first {
            self.attempt = self.attempt.max(1);
        }
    }

    /// Starts over from the first delay (the thing retried was up long enough).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(mut backoff: Backoff, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| u64::try_from(backoff.next_delay().as_millis()).unwrap_or(u64::MAX))
            .collect()
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        assert_eq!(delays(backoff, 7), [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn an_immediate_first_retry_then_doubling() {
        let backoff =
            Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).immediate_first();
        let secs: Vec<u64> = delays(backoff, 10)
            .into_iter()
            .map(|ms| ms / 1000)
            .collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn reset_starts_over_and_many_attempts_never_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(60));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
