//! Daemon log files: `NAME.log`, rotated to `NAME.log.1`, read back by
//! `mcp-manager logs` and the status API.
//!
//! Daemons write their log themselves, through `O_APPEND` descriptors they
//! inherited when they were spawned; they outlive the manager, which never
//! owns those descriptors. So rotation is copy-truncate: the content moves to
//! `NAME.log.1` and the file shrinks to zero, and every writer's next append
//! lands at the new end. Lines written between the copy and the truncation
//! are lost; that is the price of not owning the writers.
//!
//! Reading never loads a whole file: [`tail`] reads blocks backwards from the
//! end, and [`follow`] reads only what was appended since its last look.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The size above which a log is rotated (10 MiB).
pub const LOG_CAP: u64 = 10 * 1024 * 1024;

/// How much [`tail`] reads at a time, backwards from the end.
const BLOCK: u64 = 8 * 1024;

/// How often [`follow`] looks for new bytes.
const POLL: Duration = Duration::from_millis(250);

/// The most [`follow`] reads (and writes) in one step.
const FOLLOW_CHUNK: u64 = 64 * 1024;

/// The most [`tail`] reads back from the end: what a status shows stays
/// small whatever a daemon wrote (one line of 8 MiB, say).
const TAIL_READ_LIMIT: u64 = 256 * 1024;

/// The most of one line [`tail`] keeps, in characters; the cut is said.
pub const LINE_SHOWN: usize = 1000;

/// Opens a log for a daemon to write to: creates the parent directory,
/// rotates the log if it is over [`LOG_CAP`], and opens it for appending
/// (created if missing). A failed rotation is logged and the log kept: a
/// daemon should not fail to start over its log's size.
///
/// # Errors
///
/// The directory cannot be created or the file cannot be opened.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        crate::paths::create_private_dir(dir)?;
    }
    if let Err(error) = rotate_if_large(path, LOG_CAP) {
        tracing::warn!(path = %path.display(), %error, "could not rotate the log");
    }
    crate::paths::private_file()
        .create(true)
        .append(true)
        .open(path)
}

/// Rotates `path` if it is larger than `cap` bytes: copies its last `cap`
/// bytes (from the first line that starts within them, when one does) to
/// `NAME.log.1` (replacing an older one), then truncates it to zero, so the
/// writers' `O_APPEND` descriptors keep working and neither file holds more
/// than `cap`. `Ok(false)` if the file is missing or not larger than `cap`.
///
/// # Errors
///
/// The file cannot be read, the copy cannot be written, or the file cannot
/// be truncated (the copy is then already in place).
pub fn rotate_if_large(path: &Path, cap: u64) -> io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if len <= cap {
        return Ok(false);
    }
    let mut from = File::open(path)?;
    let mut start = len - cap;
    if start > 0 {
        // Start at a line: after the first line break in the window's first
        // block (unless it ends the window, or there is none).
        let head = read_at(&mut from, start - 1, BLOCK.min(cap) + 1)?;
        if let Some(i) = head.iter().position(|&b| b == b'\n') {
            if start + (i as u64) < len - 1 {
                start += i as u64;
            }
        }
    }
    from.seek(SeekFrom::Start(start))?;
    let mut to = crate::paths::private_file()
        .create(true)
        .truncate(true)
        .write(true)
        .open(crate::paths::rotated_log(path))?;
    io::copy(&mut from.take(len - start), &mut to)?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// A log this process writes itself (`manager.log`), rotated as it grows:
/// past `cap` bytes the file is renamed to `NAME.log.1` and a new one is
/// opened, so the manager's own log never outgrows two caps however long
/// it runs.
#[derive(Debug)]
pub struct RotatingLog {
    path: std::path::PathBuf,
    file: File,
    written: u64,
    cap: u64,
}

impl RotatingLog {
    /// Opens `path` for appending ([`open_append`]: rotated first if large).
    ///
    /// # Errors
    /// As [`open_append`].
    pub fn open(path: &Path, cap: u64) -> io::Result<RotatingLog> {
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_owned(),
            file,
            written,
            cap,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, crate::paths::rotated_log(&self.path))?;
        self.file = crate::paths::private_file()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl io::Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.cap {
            // A log that cannot be rotated is still written to.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The last `lines` lines of a log as a status shows them, oldest first: no
/// line break at their ends (`\n` or `\r\n`), invalid UTF-8 replaced, no
/// empty line for a final line break; at most [`TAIL_READ_LIMIT`] bytes read
/// (a line begun before that starts with `…`) and each line cut to
/// [`LINE_SHOWN`] characters, saying how much was cut.
///
/// # Errors
///
/// The file cannot be opened (for instance it does not exist) or read.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let (lines, _) = tail_of(&mut file, len, lines, BLOCK, TAIL_READ_LIMIT)?;
    Ok(lines.into_iter().map(cut_line).collect())
}

/// As [`tail`], with whole lines and no read limit (for `mcp-manager logs`,
/// where a person asked for the log itself; a log is rotated at
/// [`LOG_CAP`], which bounds this).
///
/// # Errors
///
/// As [`tail`].
pub fn tail_whole(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok(tail_of(&mut file, len, lines, BLOCK, u64::MAX)?.0)
}

/// `line` cut to [`LINE_SHOWN`] characters, saying how many bytes went.
fn cut_line(line: String) -> String {
    match line.char_indices().nth(LINE_SHOWN) {
        Some((cut, _)) => format!("{}… ({} more bytes)", &line[..cut], line.len() - cut),
        None => line,
    }
}

/// The last `lines` lines of the first `len` bytes of `file`, read
/// backwards `block` bytes at a time but no more than `limit` bytes in all,
/// and the offset where they end (`len`, or less if the file shrank
/// meanwhile). A first line cut by the limit starts with `…`.
fn tail_of(
    file: &mut File,
    len: u64,
    lines: usize,
    block: u64,
    limit: u64,
) -> io::Result<(Vec<String>, u64)> {
    if lines == 0 || len == 0 {
        return Ok((Vec::new(), len));
    }
    let block = block.max(1);
    // Blocks from the end backwards; `breaks` counts the `\n` in them that
    // end a line, ignoring a final one (it ends the last line, which is
    // complete anyway). `lines` such breaks mean the last `lines` lines are
    // all complete.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut pos = len;
    let mut breaks = 0usize;
    let mut end = len;
    while pos > 0 && breaks < lines && len - pos < limit {
        let step = block.min(pos).min(limit - (len - pos));
        pos -= step;
        let chunk = read_at(file, pos, step)?;
        let mut counted = chunk.iter().filter(|&&b| b == b'\n').count();
        if blocks.is_empty() {
            // The file may have shrunk since `len` was taken.
            end = pos + chunk.len() as u64;
            if chunk.last() == Some(&b'\n') {
                counted -= 1;
            }
        }
        breaks += counted;
        blocks.push(chunk);
    }
    let text: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let all: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let first = all.len().saturating_sub(lines);
    // Stopped by the limit inside a line: that line's start was not read.
    let partial = pos > 0 && first == 0 && breaks < lines;
    let result = all[first..]
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            if i == 0 && partial {
                format!("…{text}")
            } else {
                text.into_owned()
            }
        })
        .collect();
    Ok((result, end))
}

/// Up to `len` bytes of `file` from `pos`; fewer if the file ends sooner.
fn read_at(file: &mut File, pos: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(pos))?;
    let mut bytes = Vec::new();
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `tail -f`: writes the last `lines` lines of the log to `out`, then every
/// 250 ms writes whatever was appended, as raw bytes, until `stop` resolves.
/// A file that shrank (was rotated) is read again from its start; a missing
/// file counts as empty until it appears. Growth that outruns a rotation
/// within one poll goes unnoticed (copy-truncate keeps the same file).
///
/// # Errors
///
/// The log cannot be read (other than not existing), or `out` fails.
pub async fn follow(
    path: &Path,
    lines: usize,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let owned = path.to_path_buf();
    let (first, mut offset) = blocking(move || match File::open(&owned) {
        Ok(mut file) => {
            let len = file.metadata()?.len();
            tail_of(&mut file, len, lines, BLOCK, u64::MAX)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), 0)),
        Err(error) => Err(error),
    })
    .await?;
    for line in first {
        out.write_all(line.as_bytes()).await?;
        out.write_all(b"\n").await?;
    }
    out.flush().await?;

    let mut stop = std::pin::pin!(stop);
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Only waiting is raced against `stop`: reads and writes happen
        // outside the select, so a stop never cuts a write in half.
        tokio::select! {
            biased;
            () = &mut stop => return Ok(()),
            _ = ticks.tick() => {}
        }
        loop {
            let owned = path.to_path_buf();
            let (bytes, new_offset) = blocking(move || read_new(&owned, offset)).await?;
            offset = new_offset;
            if bytes.is_empty() {
                break;
            }
            out.write_all(&bytes).await?;
            out.flush().await?;
        }
    }
}

/// The bytes appended since `offset` (at most [`FOLLOW_CHUNK`]) and the
/// offset after them. A file shorter than `offset` was rotated: it is read
/// from its start. A missing file is empty.
fn read_new(path: &Path, offset: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    let offset = if len < offset { 0 } else { offset };
    let bytes = read_at(&mut file, offset, (len - offset).min(FOLLOW_CHUNK))?;
    let next = offset + bytes.len() as u64;
    Ok((bytes, next))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write(path: &Path, content: &[u8]) {
        std::fs::write(path, content).expect("write log");
    }

    /// Rotation keeps the old content in `.1`, replacing an older copy, and
    /// a writer's existing append descriptor goes on writing at the start of
    /// the emptied file.
    #[test]
    fn rotation_copies_then_truncates_under_open_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        write(&dir.path().join("x.log.1"), b"much older\n");
        let mut writer = open_append(&path).expect("open");
        writer
            .write_all(b"old line 1\nold line 2\n")
            .expect("write");

        // The cap keeps the last whole lines that fit.
        assert!(rotate_if_large(&path, 15).expect("rotate"));
        assert_eq!(
            std::fs::read(dir.path().join("x.log.1")).expect("read .1"),
            b"old line 2\n"
        );
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);

        writer.write_all(b"new\n").expect("write after rotation");
        assert_eq!(std::fs::read(&path).expect("read"), b"new\n");
    }

    /// Small and missing files are left alone.
    #[test]
    fn rotation_skips_small_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        assert!(!rotate_if_large(&path, 0).expect("missing"));
        write(&path, b"0123456789");
        assert!(!rotate_if_large(&path, 10).expect("at cap"));
        assert!(!dir.path().join("x.log.1").exists());
        assert_eq!(std::fs::read(&path).expect("read"), b"0123456789");
    }

    /// open_append creates the directory, and rotates a log over the cap.
    #[test]
    fn open_append_creates_and_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs").join("x.log");
        open_append(&path)
            .expect("open")
            .write_all(b"a\n")
            .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"a\n");

        File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(LOG_CAP + 1)
            .expect("grow");
        open_append(&path)
            .expect("reopen")
            .write_all(b"b\n")
            .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"b\n");
        let rotated = dir.path().join("logs").join("x.log.1");
        // `.1` keeps what fits in the cap from the first line starting in it
        // (the one after "a\n").
        assert_eq!(std::fs::metadata(rotated).expect("meta").len(), LOG_CAP - 1);
    }

    /// 0, 1 and N lines; more lines than the file has.
    #[test]
    fn tail_counts_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        write(&path, b"one\ntwo\n\nfour\n");
        assert!(tail(&path, 0).expect("tail").is_empty());
        assert_eq!(tail(&path, 1).expect("tail"), ["four"]);
        assert_eq!(tail(&path, 3).expect("tail"), ["two", "", "four"]);
        assert_eq!(tail(&path, 10).expect("tail"), ["one", "two", "", "four"]);

        write(&path, b"");
        assert!(tail(&path, 5).expect("tail").is_empty());
        assert!(tail(&dir.path().join("missing.log"), 5).is_err());
    }

    /// CRLF endings are removed; a last line without a line break counts;
    /// invalid UTF-8 is replaced.
    #[test]
    fn tail_handles_crlf_missing_newline_and_bad_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        write(&path, b"a\r\nb\r\nc\r\n");
        assert_eq!(tail(&path, 2).expect("tail"), ["b", "c"]);
        write(&path, b"a\nb\nno newline");
        assert_eq!(tail(&path, 2).expect("tail"), ["b", "no newline"]);
        assert_eq!(tail(&path, 1).expect("tail"), ["no newline"]);
        write(&path, b"only");
        assert_eq!(tail(&path, 3).expect("tail"), ["only"]);
        write(&path, b"\xff\xfe\n");
        assert_eq!(tail(&path, 1).expect("tail"), ["\u{fffd}\u{fffd}"]);
    }

    /// A file of many blocks: only the end is needed, and lines that cross
    /// block boundaries come out whole.
    #[test]
    fn tail_of_a_file_bigger_than_a_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let content: String = (0..5000).map(|i| format!("line {i} é\n")).collect();
        assert!(content.len() as u64 > 4 * BLOCK);
        write(&path, content.as_bytes());
        assert_eq!(
            tail(&path, 2).expect("tail"),
            ["line 4998 é", "line 4999 é"]
        );
        let many = tail(&path, 2000).expect("tail");
        assert_eq!(many.len(), 2000);
        assert_eq!(many[0], "line 3000 é");
        assert_eq!(many[1999], "line 4999 é");
    }

    /// Every block size gives the same answer as splitting the whole file.
    #[test]
    fn tail_agrees_with_a_naive_split_for_any_block_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let samples: [&[u8]; 6] = [
            b"a\nbb\n\nccc\r\nd",
            b"a\nbb\n\nccc\r\nd\n",
            b"\n\n\n",
            b"x",
            b"\r\n",
            "é\nü\n".as_bytes(),
        ];
        for sample in samples {
            write(&path, sample);
            let text = String::from_utf8_lossy(sample);
            let naive: Vec<String> = text
                .strip_suffix('\n')
                .unwrap_or(&text)
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
                .collect();
            for lines in 0..6 {
                let want = &naive[naive.len().saturating_sub(lines)..];
                for block in 1..8 {
                    let mut file = File::open(&path).expect("open");
                    let (got, end) =
                        tail_of(&mut file, sample.len() as u64, lines, block, u64::MAX)
                            .expect("tail");
                    assert_eq!(got, want, "{sample:?} lines={lines} block={block}");
                    assert_eq!(end, sample.len() as u64);
                }
            }
        }
    }

    /// A line of megabytes shows as its first characters and the size cut;
    /// reading it back reads at most the read limit.
    #[test]
    fn a_huge_line_is_shown_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
        write(&path, &content);
        let shown = tail(&path, 2).expect("tail");
        assert_eq!(shown.len(), 1, "the start was beyond the read limit");
        assert!(shown[0].starts_with('…'), "{}", &shown[0][..20]);
        assert!(
            shown[0].ends_with("more bytes)"),
            "{}",
            &shown[0][shown[0].len() - 30..]
        );
        assert!(shown[0].len() < 2 * LINE_SHOWN, "{}", shown[0].len());
        let whole = tail_whole(&path, 1).expect("tail");
        assert_eq!(whole[0].len(), 8 * 1024 * 1024);
    }

    /// Neither the log nor its previous generation grows past the cap.
    #[test]
    fn rotation_keeps_the_last_cap_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        write(&path, b"0123456789");
        assert!(rotate_if_large(&path, 4).expect("rotate"));
        assert_eq!(
            std::fs::read(crate::paths::rotated_log(&path)).expect("read .1"),
            b"6789",
            "no line starts in the window: its last cap bytes"
        );
        write(&path, b"aaaa\nbb\ncc\n");
        assert!(rotate_if_large(&path, 7).expect("rotate"));
        assert_eq!(
            std::fs::read(crate::paths::rotated_log(&path)).expect("read .1"),
            b"bb\ncc\n",
            "from the first whole line within the cap"
        );
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);
    }

    /// The manager's own log is rotated while it is written.
    #[test]
    fn a_rotating_log_starts_a_new_file_past_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manager.log");
        let mut log = RotatingLog::open(&path, 10).expect("open");
        log.write_all(b"0123456789ab").expect("write");
        log.write_all(b"new\n").expect("write");
        assert_eq!(
            std::fs::read(crate::paths::rotated_log(&path)).expect("read .1"),
            b"0123456789ab"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"new\n");
    }

    /// follow writes the tail, then appended bytes, then the start of a
    /// rotated file, and returns when told to stop.
    #[tokio::test]
    async fn follow_sees_appends_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        write(&path, b"one\ntwo\nthree\n");
        let mut out = Vec::new();
        let appender = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let mut log = open_append(&path).expect("open");
            log.write_all(b"four\n").expect("append");
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(rotate_if_large(&path, 1).expect("rotate"));
            log.write_all(b"5\n").expect("append after rotation");
        };
        let stop = tokio::time::sleep(Duration::from_millis(1800));
        let (result, ()) = tokio::join!(follow(&path, 2, &mut out, stop), appender);
        result.expect("follow");
        assert_eq!(String::from_utf8_lossy(&out), "two\nthree\nfour\n5\n");
    }

    /// Following a log that does not exist yet waits for it.
    #[tokio::test]
    async fn follow_waits_for_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let mut out = Vec::new();
        let creator = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            write(&path, b"hello\n");
        };
        let stop = tokio::time::sleep(Duration::from_millis(900));
        let (result, ()) = tokio::join!(follow(&path, 10, &mut out, stop), creator);
        result.expect("follow");
        assert_eq!(out, b"hello\n");
    }
}
