//! Newline-delimited JSON-RPC over a byte stream: the proxy's stdin/stdout,
//! and a hosted child's stdout/stdin.
//!
//! [`LineReader`] turns a byte stream into lines of any length (CRLF
//! tolerated, blank lines skipped). [`spawn_line_writer`] starts the one task
//! that owns a writer (the proxy's stdout, or a child's stdin; [`spawn_writer`]
//! is the proxy's): every message becomes exactly one whole line, so lines
//! from concurrent senders never interleave; a burst of lines costs one
//! write (it flushes when its queue is empty); and the bounded queue in front
//! of it pushes back on whoever sends when the reader is slow.

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Reads newline-delimited messages. No length limit: a line is as long as
/// the message (several MiB is normal for a large tool result).
pub struct LineReader<R> {
    inner: R,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The next non-blank line without its `\n` or `\r\n`, or `None` at EOF.
    ///
    /// Not cancel-safe (a partly read line would be lost), so it is only ever
    /// awaited on its own, never inside `select!`.
    ///
    /// # Errors
    /// The underlying read error.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            let mut line = Vec::new();
            if self.inner.read_until(b'\n', &mut line).await? == 0 {
                return Ok(None);
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Bytes::from(line)));
        }
    }
}

/// A handle for writing whole protocol lines to a writer task.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Bytes>,
    finish: CancellationToken,
}

/// The reader has gone: the proxy's client closed stdout (or a child its
/// stdin), so the writer stopped.
#[derive(Debug, thiserror::Error)]
#[error("the client closed stdout")]
pub struct OutputClosed;

impl Output {
    /// Queues one message (a single line of JSON, no newline) for the client.
    /// Waits while the queue is full, which slows down whoever reads the daemon.
    ///
    /// # Errors
    /// [`OutputClosed`] once the writer has stopped.
    pub async fn send(&self, line: Bytes) -> Result<(), OutputClosed> {
        self.tx.send(line).await.map_err(|_| OutputClosed)
    }

    /// Queues one message without waiting; false if the queue is full or the
    /// writer has stopped (the message is then dropped).
    pub fn try_send(&self, line: Bytes) -> bool {
        self.tx.try_send(line).is_ok()
    }

    /// Ends the writer once everything queued so far is written, even while
    /// clones of this `Output` are still held (by tasks that never finish).
    pub fn finish(&self) {
        self.finish.cancel();
    }
}

/// Messages buffered between the daemon and a slow client. Each can be large,
/// so the bound is a count, kept small.
const OUTPUT_QUEUE: usize = 16;

/// Starts the task that owns stdout (any `writer`, in tests), with a queue
/// of `OUTPUT_QUEUE` (16) messages: [`spawn_line_writer`] for the proxy.
pub fn spawn_writer<W>(writer: W, closed: CancellationToken) -> (Output, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    spawn_line_writer(writer, OUTPUT_QUEUE, closed)
}

/// Starts the task that owns `writer`, with room for `queue` messages
/// before senders wait. It ends when every [`Output`] is dropped (after
/// writing everything queued), after [`Output::finish`], or when a write
/// fails, in which case it cancels `closed` so its owner can end quietly
/// (EPIPE is normal: the reader went away).
pub fn spawn_line_writer<W>(
    writer: W,
    queue: usize,
    closed: CancellationToken,
) -> (Output, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(queue);
    let finish = CancellationToken::new();
    let finishing = finish.clone();
    let task = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(64 * 1024, writer);
        loop {
            let line = tokio::select! {
                biased;
                line = rx.recv() => line,
                // No new lines from now on; the queued ones are still received.
                () = finishing.cancelled(), if !rx.is_closed() => {
                    rx.close();
                    continue;
                }
            };
            let Some(line) = line else { break };
            let mut result = write_line(&mut out, &line).await;
            // Flush once the queue is empty: whole lines reach the reader at
            // once, and a burst costs one write instead of one per message.
            if result.is_ok() && rx.is_empty() {
                result = out.flush().await;
            }
            if let Err(error) = result {
                tracing::debug!(%error, "the output closed; the line writer ends");
                closed.cancel();
                return;
            }
        }
        let _ = out.flush().await;
    });
    (Output { tx, finish }, task)
}

async fn write_line<W: AsyncWrite + Unpin>(out: &mut W, line: &[u8]) -> std::io::Result<()> {
    out.write_all(line).await?;
    out.write_all(b"\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_trimmed_and_blank_ones_skipped() {
        let input: &[u8] = b"a\r\n\n  \r\nbb\nlast-without-newline";
        let mut reader = LineReader::new(input);
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().await.expect("read") {
            got.push(String::from_utf8(line.to_vec()).expect("utf8"));
        }
        assert_eq!(got, ["a", "bb", "last-without-newline"]);
    }

    #[tokio::test]
    async fn writer_emits_whole_lines_in_order() {
        let (client, mut server) = tokio::io::duplex(16);
        let closed = CancellationToken::new();
        let (output, task) = spawn_writer(client, closed.clone());
        let big = Bytes::from(vec![b'x'; 100_000]);
        output.send(Bytes::from_static(b"{}")).await.expect("send");
        output.send(big.clone()).await.expect("send");
        drop(output);
        let mut all = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut all)
            .await
            .expect("read");
        task.await.expect("writer");
        assert_eq!(all.len(), 3 + big.len() + 1);
        assert!(all.starts_with(b"{}\nxxx"));
        assert!(!closed.is_cancelled());
    }

    #[tokio::test]
    async fn a_closed_reader_cancels_quietly() {
        let (client, server) = tokio::io::duplex(16);
        drop(server);
        let closed = CancellationToken::new();
        let (output, task) = spawn_writer(client, closed.clone());
        let _ = output.send(Bytes::from_static(b"{}")).await;
        task.await.expect("writer task does not panic");
        assert!(closed.is_cancelled());
    }
}
