//! The MCP clients the tables speak with, each measuring the side it stands
//! for: [`Direct`] (Streamable HTTP from this process with reqwest, the
//! baseline), [`StdioClient`] (a child's stdin/stdout: `mcp-proxy`, the
//! original, or a server itself) and [`LeanSession`] (one host session on
//! an HTTP/1 connection driven by hand, so that the host table measures the
//! host rather than the client library). The [`Client`] trait is what a
//! session needs from any of them.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::procfs::vm_hwm_kib;
use crate::procs::cpu_time;
use crate::{ANSWER_TIMEOUT, EXIT_TIMEOUT, PROTOCOL_VERSION};

/// What the session needs from each kind of client.
pub(crate) trait Client {
    /// Sends a request and returns its response message.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String>;
    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String>;
    /// `total` echo calls with `in_flight` outstanding; how long they took.
    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String>;
    /// utime + stime of the process doing the client side's work.
    fn cpu_time(&self) -> Option<Duration>;
    /// `VmHWM` of that process, if it is not this one.
    fn peak_rss_kib(&self) -> Option<u64>;
    async fn close(self);

    async fn initialize(&mut self) -> Result<(), String> {
        let answer = self.request("initialize", init_params()).await?;
        if answer.get("result").is_none() {
            return Err(format!("initialize failed: {answer}"));
        }
        self.notify("notifications/initialized", json!({})).await
    }

    async fn echo(&mut self) -> Result<(), String> {
        let answer = self.request("tools/call", echo_params()).await?;
        check_echo(&answer)
    }
}

/// `initialize` params: no capabilities, the benchmark as client.
pub(crate) fn init_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcp-proxy-bench", "version": "0"}
    })
}

fn echo_params() -> Value {
    json!({"name": "echo", "arguments": {"message": "bench"}})
}

fn request_line(id: u64, method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn is_response_to(message: &Value, id: u64) -> bool {
    message.get("method").is_none() && message.get("id").and_then(Value::as_u64) == Some(id)
}

fn check_echo(answer: &Value) -> Result<(), String> {
    match answer
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
    {
        Some(text) if text.starts_with("Echo:") => Ok(()),
        _ => Err(format!(
            "unexpected answer: {}",
            shorten(&answer.to_string())
        )),
    }
}

/// `text`, cut after 200 characters (with an ellipsis), for messages.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Either client, for the alternating blocks.
pub(crate) enum AnyClient {
    Direct(Direct),
    Stdio(Box<StdioClient>),
}

impl Client for AnyClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        match self {
            AnyClient::Direct(c) => c.request(method, params).await,
            AnyClient::Stdio(c) => c.request(method, params).await,
        }
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        match self {
            AnyClient::Direct(c) => c.notify(method, params).await,
            AnyClient::Stdio(c) => c.notify(method, params).await,
        }
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        match self {
            AnyClient::Direct(c) => c.burst(total, in_flight, limit).await,
            AnyClient::Stdio(c) => c.burst(total, in_flight, limit).await,
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        match self {
            AnyClient::Direct(c) => c.cpu_time(),
            AnyClient::Stdio(c) => c.cpu_time(),
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        match self {
            AnyClient::Direct(c) => c.peak_rss_kib(),
            AnyClient::Stdio(c) => c.peak_rss_kib(),
        }
    }

    async fn close(self) {
        match self {
            AnyClient::Direct(c) => c.close().await,
            AnyClient::Stdio(c) => (*c).close().await,
        }
    }
}

/// The baseline: Streamable HTTP from this process.
#[derive(Clone)]
pub(crate) struct Direct {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    version: Option<String>,
    ids: Arc<AtomicU64>,
}

impl Direct {
    pub(crate) fn new(url: &str) -> Result<Direct, String> {
        // The same client set-up as the proxy's for a loopback http URL.
        let http = mcp_session_manager::http::loopback_client_builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Direct {
            http,
            url: url.to_owned(),
            session: None,
            version: None,
            ids: Arc::new(AtomicU64::new(1)),
        })
    }

    fn post(&self) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .timeout(ANSWER_TIMEOUT);
        self.session_headers(request)
    }

    /// One POST; the response to `id` and the session id header, if any.
    async fn call(
        &self,
        id: u64,
        method: &str,
        params: &Value,
    ) -> Result<(Value, Option<String>), String> {
        let mut response = self
            .post()
            .body(request_line(id, method, params))
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            let answer: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the answer is not JSON: {e}"))?;
            return Ok((answer, session));
        }
        // Minimal SSE: events end with a blank line; `data:` lines carry JSON.
        // Read to the end of the stream (the server ends it right after the
        // response) so that the connection goes back to the pool.
        let mut buffer = Vec::new();
        let mut answer = None;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read the event stream: {e}"))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                if answer.is_none() {
                    answer = sse_data(&event)
                        .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
                        .filter(|message| is_response_to(message, id));
                }
            }
        }
        answer
            .map(|answer| (answer, session))
            .ok_or_else(|| "the event stream ended without the response".to_owned())
    }

    /// A client for a new session over the same HTTP client (its pool).
    pub(crate) fn fresh(&self) -> Direct {
        Direct {
            http: self.http.clone(),
            url: self.url.clone(),
            session: None,
            version: None,
            ids: Arc::new(AtomicU64::new(1)),
        }
    }

    /// One request with `Accept: application/json` only: the host answers
    /// it as JSON however long it takes and sends it nothing else.
    pub(crate) async fn request_json_only(
        &self,
        method: &str,
        params: &Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .timeout(limit);
        let response = self
            .session_headers(request)
            .body(request_line(id, method, params))
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        let answer: Value =
            serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        if is_response_to(&answer, id) {
            Ok(answer)
        } else {
            Err(format!(
                "not the answer to {id}: {}",
                shorten(&answer.to_string())
            ))
        }
    }

    /// A request whose answer may come as an event stream, returned once
    /// the headers are in (the body is the caller's to read, with no time
    /// limit: the caller drops it).
    pub(crate) async fn request_streaming(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<reqwest::Response, String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let request = self.session_headers(
            self.http
                .post(&self.url)
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json, text/event-stream"),
        );
        let response = tokio::time::timeout(
            ANSWER_TIMEOUT,
            request.body(request_line(id, method, params)).send(),
        )
        .await
        .map_err(|_| format!("no headers within {ANSWER_TIMEOUT:?}"))?
        .map_err(|e| format!("POST failed: {e}"))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }

    /// The session's GET stream, once its headers are in (the body is the
    /// caller's to read, with no time limit: the caller drops it).
    pub(crate) async fn get_stream(&self) -> Result<reqwest::Response, String> {
        let request = self
            .session_headers(self.http.get(&self.url))
            .header(ACCEPT, "text/event-stream");
        let response = tokio::time::timeout(ANSWER_TIMEOUT, request.send())
            .await
            .map_err(|_| format!("no GET stream headers within {ANSWER_TIMEOUT:?}"))?
            .map_err(|e| format!("GET failed: {e}"))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(format!("GET stream: HTTP {}", response.status()))
        }
    }

    fn session_headers(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version);
        }
        request
    }

    pub(crate) async fn one_echo(&self) -> Result<(), String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (answer, _) = self.call(id, "tools/call", &echo_params()).await?;
        check_echo(&answer)
    }
}

/// The `data:` lines of one SSE event, joined; `None` if there are none or
/// they are empty (the priming event).
fn sse_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    (!data.iter().all(u8::is_ascii_whitespace)).then_some(data)
}

impl Client for Direct {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (answer, session) = self.call(id, method, &params).await?;
        if method == "initialize" {
            self.session = session;
            self.version = answer
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(answer)
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string();
        let response = self
            .post()
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        let status = response.status();
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("notification answered HTTP {status}"))
        }
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..in_flight {
            let client = self.clone();
            let next = Arc::clone(&next);
            workers.spawn(async move {
                let mut failures = (0usize, None);
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    if let Err(error) = client.one_echo().await {
                        failures.0 += 1;
                        failures.1.get_or_insert(error);
                    }
                }
                failures
            });
        }
        let mut failed = 0;
        let mut first_error = None;
        let joined = tokio::time::timeout(limit, async {
            while let Some(worker) = workers.join_next().await {
                match worker {
                    Ok((n, error)) => {
                        failed += n;
                        if first_error.is_none() {
                            first_error = error;
                        }
                    }
                    Err(error) => {
                        failed += 1;
                        first_error.get_or_insert(format!("worker failed: {error}"));
                    }
                }
            }
        })
        .await;
        let elapsed = start.elapsed();
        if joined.is_err() {
            return Err(format!("not done within {limit:?}"));
        }
        match first_error {
            Some(error) => Err(format!("{failed} of {total} calls failed; first: {error}")),
            None => Ok(elapsed),
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        cpu_time("self")
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        None // in-process
    }

    async fn close(self) {
        let Some(session) = &self.session else { return };
        let _ = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
    }
}

/// A stdio MCP client of a child process (mcp-proxy or the original).
pub(crate) struct StdioClient {
    pub(crate) name: &'static str,
    child: Child,
    pub(crate) pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    next_id: u64,
}

impl StdioClient {
    pub(crate) fn spawn(name: &'static str, mut command: Command) -> Result<StdioClient, String> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .map(|out| BufReader::with_capacity(64 * 1024, out));
        Ok(StdioClient {
            name,
            child,
            pid,
            stdin,
            stdout,
            next_id: 1,
        })
    }

    async fn send_line(&mut self, mut line: String) -> Result<(), String> {
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}'s stdin is closed", self.name))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, stdin.write_all(line.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("cannot write to {}: {error}", self.name)),
            Err(_) => Err(format!("{} does not read its stdin", self.name)),
        }
    }

    async fn read_response(&mut self, id: u64) -> Result<Value, String> {
        let name = self.name;
        let stdout = self
            .stdout
            .as_mut()
            .ok_or_else(|| format!("{name}'s stdout is gone"))?;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, stdout.read_line(&mut line)).await {
                Err(_) => return Err(format!("no answer from {name} within {ANSWER_TIMEOUT:?}")),
                Ok(Err(error)) => return Err(format!("cannot read {name}'s stdout: {error}")),
                Ok(Ok(0)) => return Err(format!("{name} closed its stdout")),
                Ok(Ok(_)) => {}
            }
            if let Ok(message) = serde_json::from_str::<Value>(&line) {
                if is_response_to(&message, id) {
                    return Ok(message);
                }
            }
        }
    }

    /// `total` echo calls with `in_flight` outstanding on stdin/stdout; how
    /// long they took and, if `timed`, each call's latency (write → answer).
    pub(crate) async fn pipelined(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
        timed: bool,
    ) -> Result<(Duration, Vec<Duration>), String> {
        let name = self.name;
        let (Some(mut stdin), Some(mut stdout)) = (self.stdin.take(), self.stdout.take()) else {
            return Err(format!("{name}'s stdio is gone"));
        };
        let first = self.next_id;
        let count = u64::try_from(total).map_err(|e| e.to_string())?;
        self.next_id += count;
        let permits = Arc::new(Semaphore::new(in_flight));
        let start = Instant::now();
        // Nanoseconds from `start` to each request's write, if timed.
        let sent: Arc<Vec<AtomicU64>> = Arc::new(
            (0..if timed { total } else { 0 })
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        let since = |start: Instant| u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);

        let writer_permits = Arc::clone(&permits);
        let writer_sent = Arc::clone(&sent);
        let mut writer = tokio::spawn(async move {
            let params = echo_params();
            for id in first..first + count {
                let permit = writer_permits
                    .acquire()
                    .await
                    .map_err(|e| format!("semaphore closed: {e}"))?;
                permit.forget();
                let mut line = request_line(id, "tools/call", &params);
                line.push('\n');
                if let Some(slot) = usize::try_from(id - first)
                    .ok()
                    .and_then(|i| writer_sent.get(i))
                {
                    slot.store(since(start), Ordering::Relaxed);
                }
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("cannot write to {name}: {e}"))?;
            }
            Ok::<_, String>(stdin)
        });
        let mut reader = tokio::spawn(async move {
            let mut line = String::new();
            let (mut done, mut failed, mut first_error) = (0usize, 0usize, None);
            let mut latencies = Vec::with_capacity(sent.len());
            while done < total {
                line.clear();
                match stdout.read_line(&mut line).await {
                    Ok(0) => return Err(format!("{name} closed its stdout")),
                    Ok(_) => {}
                    Err(error) => return Err(format!("cannot read {name}'s stdout: {error}")),
                }
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if message.get("method").is_some() {
                    continue;
                }
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if !(first..first + count).contains(&id) {
                    continue;
                }
                done += 1;
                if let Some(slot) = usize::try_from(id - first).ok().and_then(|i| sent.get(i)) {
                    let at = slot.load(Ordering::Relaxed);
                    latencies.push(Duration::from_nanos(since(start).saturating_sub(at)));
                }
                if let Err(error) = check_echo(&message) {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
                permits.add_permits(1);
            }
            Ok::<_, String>((stdout, failed, first_error, latencies))
        });

        let joined = tokio::time::timeout(limit, async {
            let read = (&mut reader).await;
            let written = (&mut writer).await;
            (written, read)
        })
        .await;
        let elapsed = start.elapsed();
        let Ok((written, read)) = joined else {
            writer.abort();
            reader.abort();
            return Err(format!("not done within {limit:?}"));
        };
        let stdin = written.map_err(|e| format!("writer task: {e}"))??;
        let (stdout, failed, first_error, latencies) =
            read.map_err(|e| format!("reader task: {e}"))??;
        self.stdin = Some(stdin);
        self.stdout = Some(stdout);
        match first_error {
            Some(error) => Err(format!("{failed} of {total} calls failed; first: {error}")),
            None => Ok((elapsed, latencies)),
        }
    }
}

impl Client for StdioClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(request_line(id, method, &params)).await?;
        self.read_response(id).await
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        let line = json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string();
        self.send_line(line).await
    }

    async fn burst(
        &mut self,
        total: usize,
        in_flight: usize,
        limit: Duration,
    ) -> Result<Duration, String> {
        self.pipelined(total, in_flight, limit, false)
            .await
            .map(|(elapsed, _)| elapsed)
    }

    fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid.to_string())
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(self.pid)
    }

    async fn close(mut self) {
        self.stdin = None;
        if tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "bench: {} did not exit within {EXIT_TIMEOUT:?} of stdin closing; killing it",
                self.name
            );
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        }
    }
}

/// One host session on a keep-alive HTTP/1 connection that the calling task
/// drives itself: no connection task, no pool, no channel between them. It
/// is the HTTP counterpart of the pipe client on the stdio side, so that
/// the table measures the host rather than the client library (reqwest
/// costs ~50 µs of CPU per call here, four times the pipe client).
pub(crate) struct LeanSession {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    connection: std::pin::Pin<Box<LeanConnection>>,
    host: String,
    session: String,
    version: String,
    next_id: u64,
}

type LeanConnection = hyper::client::conn::http1::Connection<
    hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    http_body_util::Full<bytes::Bytes>,
>;

impl LeanSession {
    /// A connection for a session `opened` (initialized) by a [`Direct`].
    pub(crate) async fn connect(port: u16, opened: &Direct) -> Result<LeanSession, String> {
        let (Some(session), Some(version)) = (&opened.session, &opened.version) else {
            return Err("the session has no id or protocol version".to_owned());
        };
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| format!("cannot connect to the host: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        Ok(LeanSession {
            sender,
            connection: Box::pin(connection),
            host: format!("127.0.0.1:{port}"),
            session: session.clone(),
            version: version.clone(),
            next_id: 1_000_000,
        })
    }

    /// `work`, with the connection driven while it runs.
    async fn drive<T>(
        connection: &mut std::pin::Pin<Box<LeanConnection>>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, String> {
        tokio::select! {
            biased;
            done = work => Ok(done),
            ended = connection.as_mut() => Err(format!("the connection ended: {ended:?}")),
        }
    }

    pub(crate) async fn one_echo(&mut self) -> Result<(), String> {
        use http_body_util::BodyExt;
        let id = self.next_id;
        self.next_id += 1;
        let request = hyper::Request::post("/mcp")
            .header(hyper::header::HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", &self.version)
            .body(http_body_util::Full::new(bytes::Bytes::from(request_line(
                id,
                "tools/call",
                &echo_params(),
            ))))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let Self {
            sender, connection, ..
        } = self;
        let answer = Self::drive(connection, async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("POST failed: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let is_sse = response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?
                .to_bytes();
            let json = if is_sse {
                body.split(|b| *b == b'\n')
                    .filter_map(|line| line.strip_prefix(b"data: "))
                    .find(|data| !data.is_empty())
                    .unwrap_or_default()
                    .to_vec()
            } else {
                body.to_vec()
            };
            serde_json::from_slice::<Value>(&json)
                .map_err(|e| format!("the answer is not JSON: {e}"))
        })
        .await??;
        if !is_response_to(&answer, id) {
            return Err(format!(
                "not the answer to {id}: {}",
                shorten(&answer.to_string())
            ));
        }
        check_echo(&answer)
    }
}
