//! What every table prints with: percentiles, units, ratios, verdicts
//! (✓, ✗, ?) and the list of errors under a table. Each table module builds
//! and prints its own rows with these.

use std::time::Duration;

/// The failures under a table.
pub(crate) fn print_errors<'a>(notes: impl Iterator<Item = &'a String>) {
    let notes: Vec<&String> = notes.collect();
    if !notes.is_empty() {
        println!();
        println!("Errors:");
        for note in notes {
            println!("- {note}");
        }
    }
}

/// ✓, ✗, or ? when it could not be measured.
pub(crate) fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

/// The median (nearest rank); `None` without samples.
pub(crate) fn median(samples: &[Duration]) -> Option<Duration> {
    percentile(samples, 50.0)
}

/// Nearest-rank percentile.
pub(crate) fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// What a cell measures: a duration (seconds), a rate (calls/s) or memory
/// (KiB).
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Time,
    Rate,
    KiB,
}

/// A cell: `value` in `unit` (seconds, calls/s or KiB), or `n/a`.
pub(crate) fn show(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "n/a".to_owned();
    };
    match unit {
        Unit::Time if v < 1e-3 => format!("{:.0} µs", v * 1e6),
        Unit::Time => format!("{:.2} ms", v * 1e3),
        Unit::Rate => format!("{v:.0} calls/s"),
        Unit::KiB => format!("{:.1} MiB", v / 1024.0),
    }
}

/// `value / base`, when both were measured and `base` is positive.
pub(crate) fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

/// A ratio cell: `1.23×`, or `—`.
pub(crate) fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"))
}

/// A duration in seconds, for [`show`].
pub(crate) fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}
