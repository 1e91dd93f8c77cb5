//! The supervisor's logic under paused time, with a fake process.

use super::*;

#[test]
fn back_off_is_immediate_then_doubles_to_a_minute() {
    let mut backoff = restart_backoff();
    let secs: Vec<u64> = (0..10).map(|_| backoff.next_delay().as_secs()).collect();
    assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
}
