//! Everything `mcp-manager` prints on stdout goes through here, as
//! ripgrep does it: written and flushed through a fallible writer, so that
//! a reader that goes away (`mcp-manager doctor | head -1`) is an error
//! the caller sees, not a panic. [`StdoutClosed`] is that error; `main`
//! ends quietly with status 0 on it.
//!
//! SIGPIPE stays ignored (Rust's default): the manager writes to its
//! children's pipes and to sockets, where a closed reader must be an
//! error, never the end of the process.

use std::fmt;
use std::io::{self, Write as _};

/// Writes `args` and a newline to stdout, flushed. `outln!` is the
/// `println!` of this binary: it returns from the calling function with
/// the error.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}

/// Whoever read stdout has gone (a closed pipe): nothing more to say.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes `args` and a newline to stdout, flushed.
///
/// # Errors
/// [`StdoutClosed`] when the reader has gone; any other write error with
/// what was being written to.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    written.map_err(written_error)
}

/// A write error of stdout as the error to return: [`StdoutClosed`] for a
/// closed pipe.
pub fn written_error(error: io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to stdout")
    }
}

/// Whether `error` or one of its causes is a closed pipe (for a command
/// that writes to stdout itself, as `logs` does: its only pipe is stdout).
pub fn has_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = error.source();
    }
    false
}
