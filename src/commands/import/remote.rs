//! Which remote servers an import leaves with Claude Code, and why.
//!
//! By default every remote entry (`type` `"http"`/`"sse"`, or a `url`)
//! stays as it is: Claude Code keeps its login (OAuth), its reconnects and
//! its "(HTTP)" label, none of which `mcp-proxy` has. With `--remote`
//! ([`super::ImportOptions::remote`]) a remote entry with static `headers`
//! is moved, once a probe ([`probe`]: a POST `initialize` with its headers,
//! or for `sse` a GET, bounded by [`PROBE_TIMEOUT`]) has shown it does not
//! ask for a login: a 401 with `WWW-Authenticate` is refused. The probe
//! goes only where the config's rule allows it ([`check_remote_url`]:
//! https, or plain http to loopback), so headers never cross the network in
//! clear; redirects are not followed.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};

use super::source::{Kind, Site};
use crate::config::{check_remote_url, expand_vars};
use crate::http;

/// One probe's limit: connect, request and the answer's headers.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a remote entry is left alone by default.
pub(super) const KEPT_BY_DEFAULT: &str = "a remote server: Claude Code keeps its login (OAuth), reconnects and HTTP label; `--remote` moves one with static headers";

/// Under `--remote`, why one without headers is left alone.
const NO_HEADERS: &str = "a remote server without static headers: its login, if any, is Claude Code's (OAuth), so it stays there";

/// Under `--remote`, why one that asks for a login is left alone.
const NEEDS_LOGIN: &str = "it answered 401 with WWW-Authenticate: it needs a login (OAuth), which only Claude Code does, so it stays there (headers with a valid token would let `--remote` move it)";

/// What the probe found out about a remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 401 with `WWW-Authenticate`: it asks for a login.
    NeedsLogin,
    /// Any other HTTP status.
    Status(u16),
    /// Not probed, or no answer: why.
    Unknown(String),
}

/// The sites (by index) an import leaves alone, each with its reason;
/// and notes for the remote ones it moves. Probes (under `remote` only)
/// run on a thread of their own, one after another.
pub(super) fn left_alone(
    sites: &[Site<'_>],
    remote: bool,
    notes: &mut Vec<String>,
) -> BTreeMap<usize, String> {
    let mut left = BTreeMap::new();
    let mut to_probe = Vec::new();
    for (index, site) in sites.iter().enumerate() {
        if !matches!(site.entry.kind, Kind::Remote) {
            continue;
        }
        let has_headers = site
            .entry
            .value
            .get("headers")
            .and_then(serde_json::Value::as_object)
            .is_some_and(|h| !h.is_empty());
        match (remote, has_headers) {
            (false, _) => {
                left.insert(index, KEPT_BY_DEFAULT.to_owned());
            }
            (true, false) => {
                left.insert(index, NO_HEADERS.to_owned());
            }
            (true, true) => to_probe.push(index),
        }
    }
    if to_probe.is_empty() {
        return left;
    }
    let requests: Vec<Request> = to_probe
        .iter()
        .map(|&index| Request::of(&sites[index]))
        .collect();
    let answers = probe_all(requests);
    for (index, answer) in to_probe.into_iter().zip(answers) {
        let name = &sites[index].name;
        match answer {
            Answer::NeedsLogin => {
                left.insert(index, NEEDS_LOGIN.to_owned());
            }
            Answer::Status(401 | 403) => notes.push(format!(
                "{name}: its headers were refused (HTTP 401/403 without a login to offer); moved as asked, but check them"
            )),
            Answer::Status(_) => {}
            Answer::Unknown(why) => notes.push(format!(
                "{name}: not checked before moving it ({why})"
            )),
        }
    }
    left
}

/// What a probe sends: the URL and headers expanded as the manager would.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    url: String,
    sse: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    /// A request to `url` (a GET for `sse`, else a POST `initialize`) with
    /// these headers, already expanded.
    pub(crate) fn new(url: String, sse: bool, headers: Vec<(String, String)>) -> Request {
        Request { url, sse, headers }
    }

    /// The request for a Claude Code entry's JSON (`type`/`url`/`headers`),
    /// its `${VAR}`s expanded as Claude Code does.
    pub(crate) fn of_entry(value: &serde_json::Value) -> Request {
        let headers = value
            .get("headers")
            .and_then(serde_json::Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.clone(), expand_vars(v.as_str()?))))
                    .collect()
            })
            .unwrap_or_default();
        let url = expand_vars(
            value
                .get("url")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
        );
        let sse = match value.get("type").and_then(serde_json::Value::as_str) {
            Some("sse") => true,
            Some(_) => false,
            None => url.trim_end_matches('/').ends_with("/sse"),
        };
        Request { url, sse, headers }
    }

    /// The URL, expanded (it may hold a secret in its query: show it only
    /// through a form that drops that).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether it is an SSE server (probed with a GET).
    pub(crate) fn sse(&self) -> bool {
        self.sse
    }

    fn of(site: &Site<'_>) -> Request {
        Request::of_entry(&site.entry.value)
    }
}

/// Probes each request in turn on a thread with its own runtime (the
/// import is synchronous and may run inside one).
fn probe_all(requests: Vec<Request>) -> Vec<Answer> {
    let count = requests.len();
    let unknown = |why: &str| vec![Answer::Unknown(why.to_owned()); count];
    let worker = std::thread::Builder::new()
        .name("import-probe".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(runtime.block_on(async {
                let mut answers = Vec::with_capacity(requests.len());
                for request in &requests {
                    answers.push(probe(request).await);
                }
                answers
            }))
        });
    match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(Ok(answers))) => answers,
        Ok(Ok(Err(why))) => unknown(&format!("cannot start a runtime: {why}")),
        Ok(Err(_)) | Err(_) => unknown("the probe could not run"),
    }
}

/// One probe: a POST `initialize` (a GET for `sse`) with the entry's
/// headers, bounded by [`PROBE_TIMEOUT`]; a session it opens is closed
/// again (DELETE).
pub(crate) async fn probe(request: &Request) -> Answer {
    exchange(request, PROBE_TIMEOUT, 0).await.answer
}

/// What [`exchange`] saw: the answer and, for a 2xx POST, the start of
/// its body (at most the limit asked for).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) answer: Answer,
    /// The body of a 2xx POST: all of a JSON one, an SSE one up to the end
    /// of its first `data:` line; empty when not read.
    pub(crate) body: Vec<u8>,
}

/// [`probe`] bounded by `timeout` (connect, request and body), reading at
/// most `body_limit` bytes of a 2xx POST's body into [`Reply::body`].
pub(crate) async fn exchange(request: &Request, timeout: Duration, body_limit: usize) -> Reply {
    let mut body = Vec::new();
    let answer = send(request, timeout, body_limit, &mut body).await;
    Reply { answer, body }
}

async fn send(
    request: &Request,
    timeout: Duration,
    body_limit: usize,
    body: &mut Vec<u8>,
) -> Answer {
    let Ok(url) = reqwest::Url::parse(&request.url) else {
        return Answer::Unknown("its URL does not parse once its variables are filled in".into());
    };
    if check_remote_url(&url, false).is_err() {
        return Answer::Unknown(
            "plain http to another host: its headers are not sent in clear".into(),
        );
    }
    let builder = if http::is_loopback(&url) {
        http::loopback_client_builder()
    } else {
        http::client_builder()
    };
    let client = match builder
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
    {
        Ok(client) => client,
        Err(e) => return Answer::Unknown(format!("no HTTP client: {}", http::error_chain(&e))),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &request.headers {
        // Never echo a header's value: it may be a secret.
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => return Answer::Unknown(format!("its header {name:?} is not a valid header")),
        }
    }
    let builder = if request.sse {
        client.get(url.clone()).header(ACCEPT, "text/event-stream")
    } else {
        client
            .post(url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(INITIALIZE)
    };
    let mut response = match builder.headers(headers.clone()).send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            return Answer::Unknown(format!("no answer within {} s", timeout.as_secs()));
        }
        Err(e) => {
            return Answer::Unknown(format!(
                "no answer: {}",
                http::error_chain(&e).replace(url.as_str(), &http::redacted(&url))
            ));
        }
    };
    let status = response.status().as_u16();
    let asks_login = status == 401 && response.headers().contains_key(WWW_AUTHENTICATE);
    let session = response.headers().get("mcp-session-id").cloned();
    if body_limit > 0 && !request.sse && response.status().is_success() {
        if let Err(why) = read_body(&mut response, body_limit, body).await {
            return Answer::Unknown(why);
        }
    }
    drop(response);
    if let Some(session) = session {
        let _ = client
            .delete(url)
            .headers(headers)
            .header("mcp-session-id", session)
            .send()
            .await;
    }
    if asks_login {
        Answer::NeedsLogin
    } else {
        Answer::Status(status)
    }
}

/// Reads a 2xx body into `body`: to its end, or (an event stream) to the
/// end of its first `data:` line, at most `limit` bytes.
async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
    body: &mut Vec<u8>,
) -> Result<(), String> {
    let stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= limit || (stream && has_data_line(body)) {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) if e.is_timeout() => return Err("its answer did not end in time".into()),
            Err(e) => {
                return Err(format!(
                    "its answer broke off: {}",
                    http::error_chain(&e)
                        .replace(response.url().as_str(), &http::redacted(response.url()))
                ));
            }
        }
    }
}

/// Whether an event stream's text holds a whole `data:` line.
fn has_data_line(body: &[u8]) -> bool {
    body.split(|&b| b == b'\n')
        .rev()
        .skip(1)
        .any(|line| line.starts_with(b"data:"))
}

/// The `initialize` request a probe sends, as `claude mcp list` would.
const INITIALIZE: &str = concat!(
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","#,
    r#""capabilities":{},"clientInfo":{"name":"mcp-manager-import","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}}"#
);
