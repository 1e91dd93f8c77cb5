//! A child's stderr: appended to its log, its last lines kept.
//!
//! The child's stderr is a pipe the host reads ([`pump`]): every byte is
//! appended to the log, as when the child wrote there itself (the log is
//! opened `O_APPEND`, so the manager's copy-truncate rotation keeps
//! working), and the last [`KEEP_LINES`] lines are kept in a [`StderrTail`],
//! so a child that fails at start can be told with its own words without
//! reading the log back (which also holds the host's own lines).
//!
//! Everything is bounded whatever the child writes: reads are of at most
//! [`READ_CHUNK`] bytes, one line keeps at most [`LINE_BYTES`] bytes (cut to
//! [`LINE_SHOWN`] characters, saying how much went), and the tail at most
//! [`KEEP_LINES`] lines; a line of 8 MiB without a newline costs no more.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;
use tokio::task::JoinHandle;

use crate::daemon::log::LINE_SHOWN;
use crate::sync::lock;

/// How many of the child's last stderr lines are kept.
pub const KEEP_LINES: usize = 10;

/// The most of one line kept before it is cut (UTF-8: [`LINE_SHOWN`]
/// characters take at most four bytes each).
const LINE_BYTES: usize = LINE_SHOWN * 4;

/// The most read from the pipe at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The last lines a child wrote to stderr, and the line being written.
#[derive(Debug, Default)]
pub struct StderrTail {
    /// Whole lines, oldest first, at most [`KEEP_LINES`]; blank lines are
    /// not kept.
    lines: VecDeque<String>,
    /// The start of the line not yet ended by a newline (≤ [`LINE_BYTES`]).
    current: Vec<u8>,
    /// Bytes of the current line beyond [`LINE_BYTES`], dropped.
    dropped: u64,
}

impl StderrTail {
    /// Takes in bytes as the child wrote them.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = LINE_BYTES.saturating_sub(self.current.len());
            let kept = part.len().min(room);
            self.current.extend_from_slice(&part[..kept]);
            self.dropped += (part.len() - kept) as u64;
            if ended {
                self.end_line();
            }
            bytes = rest;
        }
    }

    /// The stream ended: a last line without a newline counts as a line.
    pub fn finish(&mut self) {
        self.end_line();
    }

    /// The kept lines, oldest first, with the line being written (if any)
    /// as the last.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if let Some(partial) = shown(&self.current, self.dropped) {
            if lines.len() == KEEP_LINES {
                lines.remove(0);
            }
            lines.push(partial);
        }
        lines
    }

    fn end_line(&mut self) {
        if let Some(line) = shown(&self.current, self.dropped) {
            if self.lines.len() == KEEP_LINES {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
        self.current.clear();
        self.dropped = 0;
    }
}

/// A line as kept: no trailing whitespace (a `\r` included), invalid UTF-8
/// replaced, cut to [`LINE_SHOWN`] characters saying how many bytes went;
/// `None` for a blank line.
fn shown(bytes: &[u8], dropped: u64) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.trim_start().is_empty() {
        return None;
    }
    let (kept, cut) = match text.char_indices().nth(LINE_SHOWN) {
        Some((at, _)) => (&text[..at], (text.len() - at) as u64),
        None => (text, 0),
    };
    let cut = cut + dropped;
    Some(if cut == 0 {
        kept.to_owned()
    } else {
        format!("{kept}… ({cut} more bytes)")
    })
}

/// Reads `stderr` to its end: appends every byte to `log` and keeps the
/// last lines in `tail`. A log that cannot be written is said once (in the
/// host's own log) and the pipe still drained, so the child never blocks
/// on its stderr.
pub fn pump(
    mut stderr: ChildStderr,
    log: std::fs::File,
    tail: Arc<Mutex<StderrTail>>,
    label: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let log = Arc::new(log);
        let mut log_failed = false;
        let mut buffer = vec![0_u8; READ_CHUNK];
        loop {
            let n = match stderr.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = buffer[..n].to_vec();
            lock(&tail).push(&chunk);
            // The runtime may be a current-thread one: file writes go to
            // the blocking pool, one at a time (in order).
            let file = Arc::clone(&log);
            let written = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                (&*file).write_all(&chunk)
            })
            .await;
            let failed = !matches!(written, Ok(Ok(())));
            if failed && !log_failed {
                tracing::warn!(backend = %label, "cannot append the server's stderr to its log");
            }
            log_failed = failed;
        }
        lock(&tail).finish();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(chunks: &[&[u8]]) -> StderrTail {
        let mut tail = StderrTail::default();
        for chunk in chunks {
            tail.push(chunk);
        }
        tail
    }

    /// Lines split across chunks are joined; CRLF and blank lines are not
    /// kept; a last line without a newline counts once the stream ends.
    #[test]
    fn lines_are_whole_whatever_the_chunks() {
        let mut tail = tail_of(&[b"Trace", b"back:\r\n\n  ", b"  \nfatal: DATA", b"BASE_URL"]);
        assert_eq!(tail.lines(), ["Traceback:", "fatal: DATABASE_URL"]);
        tail.finish();
        assert_eq!(tail.lines(), ["Traceback:", "fatal: DATABASE_URL"]);
        tail.finish();
        assert_eq!(tail.lines().len(), 2);
    }

    /// Only the last [`KEEP_LINES`] lines are kept, the partial one among
    /// them.
    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut tail = StderrTail::default();
        for i in 0..25 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), KEEP_LINES);
        assert_eq!(lines[0], "line 15");
        assert_eq!(lines[KEEP_LINES - 1], "line 24");
        tail.push(b"partial");
        let lines = tail.lines();
        assert_eq!(lines.len(), KEEP_LINES);
        assert_eq!(lines[0], "line 16");
        assert_eq!(lines[KEEP_LINES - 1], "partial");
    }

    /// 8 MiB without a newline keeps no more than one cut line, which says
    /// how much was cut.
    #[test]
    fn a_huge_line_is_kept_cut() {
        let mut tail = StderrTail::default();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..128 {
            tail.push(&chunk);
        }
        assert!(tail.current.len() <= LINE_BYTES);
        tail.push(b"\nnext\n");
        let lines = tail.lines();
        assert_eq!(lines.len(), 2);
        let expected = format!(
            "{}… ({} more bytes)",
            "x".repeat(LINE_SHOWN),
            8 * 1024 * 1024 - LINE_SHOWN
        );
        assert_eq!(lines[0], expected);
        assert_eq!(lines[1], "next");
    }

    /// Multi-byte characters are cut on a character boundary, and invalid
    /// UTF-8 is replaced.
    #[test]
    fn lines_are_cut_on_characters() {
        let tail = tail_of(&["é".repeat(LINE_SHOWN + 5).as_bytes(), b"\n\xff ok\n"]);
        let lines = tail.lines();
        assert!(
            lines[0].starts_with(&"é".repeat(LINE_SHOWN)),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("… (10 more bytes)"), "{}", lines[0]);
        assert_eq!(lines[1], "\u{fffd} ok");
    }
}
