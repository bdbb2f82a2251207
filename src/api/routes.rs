//! The routes (docs/api.md, docs/api.yaml): JSON in and out, errors as
//! `{"error": "…"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::BODY_LIMIT;
use super::auth::{self, Tokens, Transport};
use super::cache::Cache;
use crate::control;
use crate::status::{Report, Row};
use crate::systemd::{ActiveState, JobResult, Verb};

/// What every handler shares.
pub struct Api {
    pub cache: Arc<Cache>,
    pub tokens: Tokens,
    pub requests: super::metrics::Requests,
    pub containers_body: ContainersBody,
}

type Shared = Arc<Api>;

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn systemd_error(e: impl std::fmt::Display) -> Response {
    let msg = e.to_string();
    let msg = if msg.starts_with("systemd: ") {
        msg
    } else {
        format!("systemd: {msg}")
    };
    error(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// The router for one listener (a route added here goes into docs/api.yaml
/// and the test's list below).
pub fn router(api: Shared, transport: Transport) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/containers", get(containers))
        .route("/container/{name}/status", get(container_status))
        .route("/container/{name}/start", post(start))
        .route("/container/{name}/stop", post(stop))
        .route("/container/{name}/restart", post(restart))
        .route("/container/{name}/logs", get(super::logs::logs))
        .route("/containers/{verb}", post(batch))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(api.clone(), count))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            (api.clone(), transport),
            auth::check,
        ))
        .layer(middleware::from_fn(body_limit))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .with_state(api)
}

/// Every error is `{"error": …}`, as docs/api.yaml says: axum's own
/// rejections (a query string, a path segment or a body it cannot read,
/// e.g. `?timeout=1&timeout=2`) answer plain text, which becomes the
/// message here; their status and other headers stay.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut out = error(status, message);
    out.headers_mut().extend(parts.headers);
    out
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

/// Refuse a body over [`BODY_LIMIT`] by its Content-Length before anything
/// reads it (a body without one is cut off by `DefaultBodyLimit` where a
/// route reads it).
async fn body_limit(req: Request, next: Next) -> Response {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if len.is_some_and(|n| n > BODY_LIMIT as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body over {} KiB", BODY_LIMIT / 1024),
        );
    }
    next.run(req).await
}

/// The dashboard: one page, no external assets; it asks for the token
/// itself and reads the JSON routes.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

async fn health() -> &'static str {
    "ok"
}

/// One container as the API shows it: the `status --json` row plus the
/// container-controller fields.
#[derive(Serialize)]
pub(super) struct Container<'a> {
    container: &'a str,
    status: &'static str,
    running: bool,
    restarts: u32,
    #[serde(flatten)]
    row: &'a Row,
}

fn status_word(s: &ActiveState) -> &'static str {
    match s {
        ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing => "running",
        ActiveState::Inactive => "stopped",
        ActiveState::Failed => "failed",
        ActiveState::Activating => "starting",
        ActiveState::Deactivating => "stopping",
        ActiveState::Maintenance => "maintenance",
        ActiveState::Other(_) => "unknown",
    }
}

pub(super) fn container(row: &Row) -> Container<'_> {
    Container {
        container: &row.service,
        status: status_word(&row.state.active_state),
        running: matches!(row.state.active_state, ActiveState::Active),
        restarts: row.state.n_restarts.unwrap_or(0),
        row,
    }
}

fn not_found_container(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Container not found: {name}"),
    )
}

async fn containers(State(api): State<Shared>) -> Response {
    match api.cache.report().await {
        Err(e) => systemd_error(e),
        Ok(report) => match api.containers_body.of(&report) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the containers: {e}"),
            ),
        },
    }
}

/// `GET /containers`'s body, encoded once per report rather than once per
/// request: the cache swaps in a new `Arc<Report>` when it refreshes, so
/// the same `Arc` means the same rows. Encoding 50 rows on every request
/// (through a `serde_json::Value` tree) took most of serve's CPU under
/// load and its allocations most of its memory (benches/README.md, API
/// benchmark).
#[derive(Default)]
pub struct ContainersBody(std::sync::Mutex<Option<(Arc<Report>, Bytes)>>);

#[derive(Serialize)]
struct Containers<'a> {
    containers: Vec<Container<'a>>,
}

impl ContainersBody {
    fn of(&self, report: &Arc<Report>) -> serde_json::Result<Bytes> {
        if let Ok(last) = self.0.lock()
            && let Some((r, body)) = &*last
            && Arc::ptr_eq(r, report)
        {
            return Ok(body.clone());
        }
        let containers = report.services.iter().map(container).collect();
        let body = Bytes::from(serde_json::to_vec(&Containers { containers })?);
        if let Ok(mut last) = self.0.lock() {
            *last = Some((report.clone(), body.clone()));
        }
        Ok(body)
    }
}

async fn container_status(State(api): State<Shared>, Path(name): Path<String>) -> Response {
    match api.cache.report().await {
        Err(e) => systemd_error(e),
        Ok(report) => match report.services.iter().find(|r| r.service == name) {
            Some(row) => Json(container(row)).into_response(),
            None => not_found_container(&name),
        },
    }
}

#[derive(Deserialize)]
struct JobQuery {
    timeout: Option<String>,
}

/// The longest a request may wait for its job.
const MAX_TIMEOUT: u64 = 3600;
const DEFAULT_TIMEOUT: u64 = 300;

fn timeout(q: &JobQuery) -> Result<Duration, String> {
    let Some(t) = &q.timeout else {
        return Ok(Duration::from_secs(DEFAULT_TIMEOUT));
    };
    t.parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_TIMEOUT).contains(n))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!("timeout: `{t}` is not a whole number of seconds from 1 to {MAX_TIMEOUT}")
        })
}

async fn start(api: State<Shared>, name: Path<String>, q: Query<JobQuery>) -> Response {
    job(api, name, q, Verb::Start).await
}

async fn stop(api: State<Shared>, name: Path<String>, q: Query<JobQuery>) -> Response {
    job(api, name, q, Verb::Stop).await
}

async fn restart(api: State<Shared>, name: Path<String>, q: Query<JobQuery>) -> Response {
    job(api, name, q, Verb::Restart).await
}

/// The unit of a service the manifests name: the only way a request
/// reaches a unit (no unit name, suffix or other prefix is accepted).
pub(super) fn unit_of(api: &Api, name: &str) -> Option<String> {
    api.cache
        .manifest
        .services()
        .find(|(_, n, _)| n.as_str() == name)
        .map(|(_, _, s)| s.unit.clone())
}

async fn job(
    State(api): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<JobQuery>,
    verb: Verb,
) -> Response {
    let Some(unit) = unit_of(&api, &name) else {
        return not_found_container(&name);
    };
    let timeout = match timeout(&q) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let sd = match api.cache.systemd().await {
        Ok(sd) => sd,
        Err(e) => return systemd_error(e),
    };
    let state = match sd.list_units(std::slice::from_ref(&unit)).await {
        Ok(mut m) => m.remove(&unit).map(|u| u.active_state),
        Err(e) => return systemd_error(format!("{e:#}")),
    };
    let state = state.unwrap_or(ActiveState::Inactive);
    match verb {
        Verb::Start if state == ActiveState::Active => {
            return error(StatusCode::CONFLICT, "Container already running");
        }
        Verb::Stop if matches!(state, ActiveState::Inactive | ActiveState::Failed) => {
            return error(StatusCode::CONFLICT, "Container already stopped");
        }
        _ => {}
    }
    let outcome = sd
        .run_jobs(verb, std::slice::from_ref(&unit), timeout)
        .await;
    api.cache
        .refresh_after_job(std::slice::from_ref(&unit))
        .await;
    let result = match outcome {
        Err(e) => return systemd_error(format!("{e:#}")),
        Ok(o) => o.into_iter().next().map(|o| o.result),
    };
    if result == Some(JobResult::Done) {
        let word = match verb {
            Verb::Start => "started",
            Verb::Stop => "stopped",
            Verb::Restart => "restarted",
        };
        return Json(json!({ "status": word, "container": name })).into_response();
    }
    let result = result.map_or_else(|| "unknown".to_owned(), |r| r.to_string());
    let (state, journal) = control::failure_detail(&sd, &unit, 20)
        .await
        .unwrap_or_default();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({
            "error": format!("{} of {name} failed: job {result}", verb.name()),
            "container": name,
            "jobResult": result,
            "unitResult": state.as_ref().and_then(|s| s.result.clone()),
            "activeState": state.as_ref().map(|s| s.active_state.to_string()),
            "journal": journal,
        })),
    )
        .into_response()
}

/// Count every answered request by its route (`/metrics`).
async fn count(State(api): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    api.requests.count(&method, &route, resp.status().as_u16());
    resp
}

async fn metrics(State(api): State<Shared>) -> Response {
    let report = match api.cache.report().await {
        Ok(r) => r,
        Err(e) => return systemd_error(e),
    };
    let probe = api.cache.probe_seconds.lock().map(|s| *s).unwrap_or(0.0);
    match super::metrics::render(&report, probe, &api.requests, &api.cache.refreshes) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics"),
    }
}

/// Server-sent events: one `container` event (its row as JSON) per change
/// of a service's state or health.
async fn events(State(api): State<Shared>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = api.cache.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(json) => {
                    let ev = Event::default().event("container").data(json);
                    return Some((Ok::<_, std::convert::Infallible>(ev), rx));
                }
                // A slow client misses changes, not the stream.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The body of the batch routes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    #[serde(default)]
    containers: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /containers/start|stop|restart`: one transaction of jobs, which
/// systemd orders by the units' dependencies (After=/Requires=).
async fn batch(
    State(api): State<Shared>,
    Path(verb): Path<String>,
    Query(q): Query<JobQuery>,
    body: Result<Json<Batch>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let verb = match verb.as_str() {
        "start" => Verb::Start,
        "stop" => Verb::Stop,
        "restart" => Verb::Restart,
        _ => return not_found().await,
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let timeout = match timeout(&q) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let names: Vec<String> = match (body.all, body.containers.is_empty()) {
        (true, true) => api
            .cache
            .manifest
            .services()
            .map(|(_, n, _)| n.clone())
            .collect(),
        (false, false) => body.containers,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Send either {\"containers\": [names]} or {\"all\": true}",
            );
        }
    };
    let mut units = Vec::new();
    for n in &names {
        match unit_of(&api, n) {
            Some(u) => units.push(u),
            None => return not_found_container(n),
        }
    }
    let sd = match api.cache.systemd().await {
        Ok(sd) => sd,
        Err(e) => return systemd_error(e),
    };
    let outcomes = sd.run_jobs(verb, &units, timeout).await;
    api.cache.refresh_after_job(&units).await;
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => return systemd_error(format!("{e:#}")),
    };
    let failed = outcomes.iter().any(|o| o.result != JobResult::Done);
    let rows: Vec<_> = names
        .iter()
        .zip(&units)
        .map(|(n, u)| {
            let result = outcomes
                .iter()
                .find(|o| &o.unit == u)
                .map_or_else(|| "unknown".to_owned(), |o| o.result.to_string());
            json!({ "container": n, "jobResult": result })
        })
        .collect();
    let word = match verb {
        Verb::Start => "started",
        Verb::Stop => "stopped",
        Verb::Restart => "restarted",
    };
    if failed {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("{} failed for some containers", verb.name()), "containers": rows })),
        )
            .into_response();
    }
    Json(json!({ "status": word, "containers": rows })).into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::Query;
    use axum::middleware;
    use axum::routing::get;

    use super::{Container, ContainersBody, container};

    /// The body is encoded once per report: the same `Arc` gets the same
    /// bytes back, a new report (a refresh) is encoded anew; both as the
    /// rows' JSON.
    #[test]
    fn containers_body_once_per_report() {
        let body = ContainersBody::default();
        let report = Arc::new(crate::status::tests::report());
        let first = body.of(&report).expect("encode");
        let again = body.of(&report).expect("encode");
        assert_eq!(first.as_ptr(), again.as_ptr(), "not encoded again");
        let rows: Vec<Container> = report.services.iter().map(container).collect();
        let want = serde_json::json!({ "containers": rows });
        let got: serde_json::Value = serde_json::from_slice(&first).expect("JSON");
        assert_eq!(got, want);
        let refreshed = Arc::new(crate::status::tests::report());
        let next = body.of(&refreshed).expect("encode");
        assert_ne!(
            next.as_ptr(),
            first.as_ptr(),
            "a new report is encoded anew"
        );
        assert_eq!(next, first);
    }

    /// axum's rejection of a query string it cannot read (a duplicate
    /// field, found by schemathesis) answers JSON like every other error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn rejections_answer_json() {
        async fn handler(Query(_): Query<super::JobQuery>) -> &'static str {
            "ok"
        }
        let app = Router::new()
            .route("/q", get(handler))
            .layer(middleware::from_fn(super::json_errors));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /q?timeout=1&timeout=2 HTTP/1.0\r\n\r\n")
                .expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        })
        .await
        .expect("client");
        let (head, body) = answer.split_once("\r\n\r\n").expect("no end of headers");
        let head = head.to_lowercase();
        assert!(head.starts_with("http/1.0 400"), "{answer}");
        assert!(head.contains("content-type: application/json"), "{answer}");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("duplicate field `timeout`")),
            "{v}"
        );
    }

    /// Every route (path, method), as docs/api.yaml must list them.
    const ROUTES: &[(&str, &str)] = &[
        ("/", "get"),
        ("/health", "get"),
        ("/containers", "get"),
        ("/container/{name}/status", "get"),
        ("/container/{name}/start", "post"),
        ("/container/{name}/stop", "post"),
        ("/container/{name}/restart", "post"),
        ("/container/{name}/logs", "get"),
        ("/containers/{verb}", "post"),
        ("/events", "get"),
        ("/metrics", "get"),
    ];

    /// docs/api.yaml lists exactly the router's paths, each with its method.
    #[test]
    fn openapi_lists_every_route() {
        let doc = include_str!("../../docs/api.yaml");
        let mut documented = Vec::new();
        let mut path: Option<&str> = None;
        for line in doc.lines() {
            if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
                path = Some(&line[2..2 + p.len() + 1]);
            } else if let (Some(p), Some(m)) = (path, line.strip_prefix("    ")) {
                if let Some(m) = m.strip_suffix(':').filter(|m| ["get", "post"].contains(m)) {
                    documented.push((p.to_owned(), m.to_owned()));
                }
            } else if !line.starts_with(' ') {
                path = None;
            }
        }
        let mut want: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
            .collect();
        want.sort();
        documented.sort();
        assert_eq!(documented, want);
    }
}
