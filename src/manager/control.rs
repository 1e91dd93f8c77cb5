//! The control API on 127.0.0.1:PORT (and, on Unix, on
//! `sockets/manager.sock`, where this user's CLI and proxies reach it): the
//! original's routes and JSON shapes, plus `/restart`, `/status/NAME` and
//! `/events`.
//!
//! It starts and kills processes, so only this machine's own tools may call
//! it: the socket is bound to 127.0.0.1, the Host header must name it (no
//! DNS rebinding) and any `Origin` (a browser page) is refused; no CORS
//! header is ever sent; it takes connections of this user only, and bounds
//! what each client holds ([`Limits::CONTROL_API`]: 256 connections, 10 s
//! to send a head or a body, idle keep-alive connections closed after 10 s;
//! see [`crate::http::server`]). Bodies are JSON whatever their content type
//! (curl's `-d` sends a form type), capped at [`MAX_BODY`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::header::ALLOW;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Manager;
use crate::control_api::{DaemonList, EnsureAnswer, PingAnswer, ShutdownAnswer};
use crate::http::server::socket::UnixSocket;
use crate::http::server::{Body, BodyError, Limits, PageOrigin};

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Lines of the log shown by `/status/NAME`.
const LOG_TAIL: usize = 20;

/// Serves the API on `listener`, and on `unix` when there is one
/// (`sockets/manager.sock`, the same routes), until `stop` is cancelled.
pub async fn serve(
    manager: Arc<Manager>,
    listener: TcpListener,
    unix: Option<UnixSocket>,
    stop: CancellationToken,
) {
    let stopping = stop.clone();
    crate::http::server::serve(
        listener,
        unix,
        Limits::CONTROL_API,
        move |request| handle(Arc::clone(&manager), request, stopping.clone()),
        stop.cancelled_owned(),
    )
    .await;
}

async fn handle(
    manager: Arc<Manager>,
    request: Request<Incoming>,
    stop: CancellationToken,
) -> Response<Body> {
    if !crate::http::server::is_own_host(request.headers(), manager.port) {
        return error(
            StatusCode::FORBIDDEN,
            "the Host header must be 127.0.0.1, localhost or [::1] with this port",
        );
    }
    if crate::http::server::page_origin(request.headers()) != PageOrigin::None {
        return error(
            StatusCode::FORBIDDEN,
            "requests from web pages are refused: this API starts and stops processes",
        );
    }
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let method = request.method().clone();
    let post = |route: &str| -> Option<Response<Body>> {
        (method != Method::POST).then(|| wrong_method(route, "POST"))
    };
    match path.as_str() {
        "/ping" | "/status" | "/events" if method != Method::GET => wrong_method(&path, "GET"),
        "/ping" => ok(&PingAnswer::of_this_manager()),
        "/status" => ok(&DaemonList {
            daemons: manager.statuses(),
            config: Some(manager.config_status()),
        }),
        "/reload" | "/shutdown" if method != Method::POST => wrong_method(&path, "POST"),
        "/reload" => ok(&manager.reload("asked (POST /reload)").await),
        "/shutdown" => {
            // Answered first: the daemons are stopped after this returns.
            manager.shut_down();
            ok(&ShutdownAnswer {
                status: "stopping".into(),
                pid: std::process::id(),
            })
        }
        "/events" => events(&manager, stop),
        "/start-all" | "/stop-all" => {
            if let Some(refusal) = post(&path) {
                return refusal;
            }
            let daemons = if path == "/start-all" {
                manager.start_all().await
            } else {
                manager.stop_all().await
            };
            ok(&DaemonList {
                daemons,
                config: None,
            })
        }
        "/start" | "/stop" | "/restart" | "/ensure" => {
            if let Some(refusal) = post(&path) {
                return refusal;
            }
            let name = match daemon_name(request).await {
                Ok(name) => name,
                Err(refusal) => return refusal,
            };
            if path == "/ensure" {
                return match manager.ensure(&name).await {
                    None => unknown(&name),
                    Some(Ok(lock)) => ok(&EnsureAnswer {
                        running: true,
                        port: Some(lock.port),
                        transport: Some(lock.transport),
                        error: None,
                    }),
                    Some(Err(reason)) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &EnsureAnswer {
                            running: false,
                            port: None,
                            transport: None,
                            error: Some(reason.to_string()),
                        },
                    ),
                };
            }
            let Some(daemon) = manager.daemon(&name) else {
                return unknown(&name);
            };
            match path.as_str() {
                "/start" => ok(&daemon.start().await),
                "/stop" => ok(&daemon.stop().await),
                _ => ok(&daemon.restart().await),
            }
        }
        _ => match path.strip_prefix("/status/") {
            Some(_) if method != Method::GET => wrong_method(&path, "GET"),
            Some(name) => match manager.daemon(name) {
                Some(daemon) => {
                    let mut status = daemon.status();
                    let log = crate::paths::log_file(&manager.home, name);
                    status.log_tail =
                        Some(crate::daemon::log::tail(&log, LOG_TAIL).unwrap_or_default());
                    ok(&status)
                }
                None => unknown(name),
            },
            None => error(StatusCode::NOT_FOUND, "Not found"),
        },
    }
}

/// `{"name": "..."}` from the body.
async fn daemon_name(request: Request<Incoming>) -> Result<String, Response<Body>> {
    let read = crate::http::server::read_body(
        request.into_body(),
        MAX_BODY,
        Limits::CONTROL_API.body_timeout,
    );
    let body = match read.await {
        Ok(body) => body,
        Err(error @ (BodyError::TimedOut { .. } | BodyError::Unreadable(_))) => {
            return Err(body_not_whole(&error));
        }
        Err(BodyError::TooLarge { .. }) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {MAX_BODY} bytes; send {{\"name\": \"...\"}}"),
            ));
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(StatusCode::BAD_REQUEST, "Missing daemon name"));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON ({e}); send {{\"name\": \"...\"}}"),
        )
    })?;
    match value.get("name") {
        None | Some(serde_json::Value::Null) => {
            Err(error(StatusCode::BAD_REQUEST, "Missing daemon name"))
        }
        Some(serde_json::Value::String(name)) if name.is_empty() => {
            Err(error(StatusCode::BAD_REQUEST, "Missing daemon name"))
        }
        Some(serde_json::Value::String(name)) => Ok(name.clone()),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("\"name\" must be a string, not {other}"),
        )),
    }
}

/// The answer to a body that did not arrive whole.
fn body_not_whole(why: &BodyError) -> Response<Body> {
    error(
        StatusCode::REQUEST_TIMEOUT,
        &format!("{why}; send {{\"name\": \"...\"}} at once"),
    )
}

/// `GET /events`: the config in force (`event: config`) and the current
/// status of every daemon (`event: state`), then each change of either.
fn events(manager: &Manager, stop: CancellationToken) -> Response<Body> {
    let receiver = manager.events.subscribe();
    let mut config = manager.config.subscribe();
    let mut first: Vec<Bytes> = vec![sse_event("config", &*config.borrow_and_update())];
    first.extend(manager.statuses().iter().map(|s| sse_event("state", s)));
    let state = (receiver, config, stop);
    let changes =
        futures_util::stream::unfold(state, |(mut receiver, mut config, stop)| async move {
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return None,
                    next = receiver.recv() => match next {
                        Ok(status) => sse_event("state", &status),
                        // A slow reader missed some: it still gets the latest.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = config.changed() => match changed {
                        Ok(()) => sse_event("config", &*config.borrow_and_update()),
                        Err(_) => return None,
                    },
                };
                return Some((event, (receiver, config, stop)));
            }
        });
    crate::http::server::sse_response(futures_util::stream::iter(first).chain(changes))
}

fn sse_event(kind: &str, value: &impl Serialize) -> Bytes {
    let data = serde_json::to_vec(value).unwrap_or_default();
    crate::http::server::sse_event(kind, &data)
}

fn ok(value: &impl Serialize) -> Response<Body> {
    reply(StatusCode::OK, value)
}

fn reply(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    crate::http::server::json_response(status, value)
}

/// `{"error": message}`, the original's error shape.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    reply(status, &json!({ "error": message }))
}

fn unknown(name: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, &format!("Unknown daemon: {name}"))
}

fn wrong_method(route: &str, allowed: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("use {allowed} for {route}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static(allowed));
    response
}
