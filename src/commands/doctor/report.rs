//! The doctor's report: every finding in the order of the checks, as
//! text (one line per check with its mark, the fix below, a summary line)
//! or as JSON (`{"healthy", "checks"}`).

use std::fmt;

use serde::Serialize;

use super::{Check, Status};

/// Every finding, in the order of the checks. Serialised (`--json`) as
/// `{"healthy": bool, "checks": [...]}`; displayed as one line per check
/// with its mark (✓, ! or ✗), the fix indented below, and a summary line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    healthy: bool,
    checks: Vec<Check>,
}

impl Report {
    pub(super) fn new(checks: Vec<Check>) -> Report {
        Report {
            healthy: checks.iter().all(|c| c.status != Status::Problem),
            checks,
        }
    }

    /// No check found a problem (warnings are allowed): exit code 0.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                check.status.mark(),
                check.name,
                check.detail
            )?;
            if let Some(fix) = &check.fix {
                writeln!(f, "    fix: {fix}")?;
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        let (problems, warnings) = (count(Status::Problem), count(Status::Warning));
        match (problems, warnings) {
            (0, 0) => write!(f, "healthy"),
            (0, w) => write!(f, "healthy, {}", plural(w, "warning")),
            (p, w) => write!(
                f,
                "not healthy: {}, {}",
                plural(p, "problem"),
                plural(w, "warning")
            ),
        }
    }
}

pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
