//! The HTTP API: the subset of Valohai's REST API that porthole's client
//! uses, in Valohai's shapes, so that the same client code talks to both.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;

use super::runner::{Control, Invalid, PROJECT_ID};
use crate::source::model::{
    CreateExecution, Execution, ExecutionUrls, Page, Project, Status, StatusEvents, User,
};

/// Default page size of lists and event windows, as on Valohai.
const DEFAULT_LIMIT: usize = 100;

/// How long `stop/` waits for the execution to be gone before answering
/// with `stopping` (the stop itself goes on).
const STOP_ANSWER_WAIT: Duration = Duration::from_secs(8);

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The executions.
    pub control: Arc<Control>,
    /// The API token.
    pub token: Arc<str>,
    /// `http://ADDR` of this server, for links when a request has no Host.
    pub base: Arc<str>,
    /// When this control plane started (the project's `ctime`).
    pub started: Arc<str>,
}

/// An error answer: status and `{"detail": ...}`, as Django REST does.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}

fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "Not found.".into())
}

fn bad_request(detail: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, detail.into())
}

/// The router for `state`, everything under `/api/v0/`.
pub fn router(state: ApiState) -> Router {
    // Valohai's paths end in a slash; accept them without one too rather
    // than answer a bare 404.
    let routes: [(&str, axum::routing::MethodRouter<ApiState>); 8] = [
        ("/api/v0/users/me", get(me)),
        ("/api/v0/projects", get(projects)),
        ("/api/v0/projects/{id}", get(project)),
        (
            "/api/v0/executions",
            get(list_executions).post(create_execution),
        ),
        ("/api/v0/executions/{id}", get(execution)),
        ("/api/v0/executions/{id}/events", get(events)),
        ("/api/v0/executions/{id}/status-events", get(status_events)),
        ("/api/v0/executions/{id}/stop", post(stop)),
    ];
    let mut app = Router::new();
    for (path, handler) in routes {
        app = app
            .route(&format!("{path}/"), handler.clone())
            .route(path, handler);
    }
    app.fallback(|| async { not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Lets a request through only with `Authorization: Token <token>`.
async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .map(str::trim);
    match given {
        Some(t) if same(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        _ => ApiError(StatusCode::UNAUTHORIZED, "Invalid token.".into()).into_response(),
    }
}

/// Compares without stopping at the first difference, so the answer time
/// does not tell how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `http://host` as the client addressed us, for absolute links.
fn base(state: &ApiState, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| state.base.to_string(), |h| format!("http://{h}"))
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(q: Params) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<usize>, ApiError> {
    match params.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("{name}: {v:?} is not a non-negative integer"))),
    }
}

/// An execution as served: links point at this server as addressed.
fn present(mut e: Execution, base: &str) -> Execution {
    let url = format!("{base}/api/v0/executions/{}/", e.id);
    e.urls = Some(ExecutionUrls {
        display: Some(url.clone()),
        stop: Some(format!("{url}stop/")),
    });
    e.url = Some(url);
    e
}

async fn me() -> Json<User> {
    let username = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into());
    Json(User {
        id: json!(1),
        username,
    })
}

fn the_project(state: &ApiState, base: &str) -> Project {
    Project {
        id: PROJECT_ID.into(),
        name: PROJECT_ID.into(),
        description: Some("executions on this machine".into()),
        ctime: Some(state.started.to_string()),
        url: Some(format!("{base}/api/v0/projects/{PROJECT_ID}/")),
    }
}

async fn projects(State(state): State<ApiState>, headers: HeaderMap) -> Json<Page<Project>> {
    let base = base(&state, &headers);
    Json(Page {
        count: 1,
        next: None,
        previous: None,
        results: vec![the_project(&state, &base)],
    })
}

async fn project(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Project>, ApiError> {
    if id != PROJECT_ID {
        return Err(not_found());
    }
    Ok(Json(the_project(&state, &base(&state, &headers))))
}

async fn list_executions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Json<Page<Execution>>, ApiError> {
    let params = params(q)?;
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    let offset = number(&params, "offset")?.unwrap_or(0);
    let values = |name: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let statuses = values("status");
    let counters: Vec<u64> = values("counter")
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|_| bad_request(format!("counter: {c:?} is not a number")))
        })
        .collect::<Result<_, _>>()?;
    let projects = values("project");
    let ascending = matches!(
        params
            .iter()
            .rev()
            .find(|(k, _)| k == "ordering")
            .map(|(_, v)| v.as_str()),
        Some("counter" | "ctime")
    );

    let mut all = state.control.store.list();
    all.retain(|e| {
        let status_ok = statuses.is_empty()
            || statuses.iter().any(|s| match *s {
                "incomplete" => !e.status().is_finished(),
                s => Status::parse(s).as_str() == e.status().as_str(),
            });
        let counter_ok = counters.is_empty() || counters.contains(&e.counter);
        let project_ok = projects.iter().all(|p| p.is_empty() || *p == PROJECT_ID);
        status_ok && counter_ok && project_ok
    });
    if !ascending {
        all.reverse();
    }
    let count = all.len();
    let base = base(&state, &headers);
    // limit=0 is not a page size; treat it as "the default" like a
    // paginator with a maximum would, rather than return nothing forever.
    let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
    let link = |offset: usize| -> Option<String> {
        let mut url = reqwest::Url::parse(&format!("{base}/api/v0/executions/")).ok()?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params.iter().filter(|(k, _)| k != "offset" && k != "limit") {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("limit", &limit.to_string());
            pairs.append_pair("offset", &offset.to_string());
        }
        Some(url.to_string())
    };
    let next = (offset.saturating_add(limit) < count)
        .then(|| link(offset + limit))
        .flatten();
    let previous = (offset > 0)
        .then(|| link(offset.saturating_sub(limit)))
        .flatten();
    let results = all
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|e| present(e, &base))
        .collect();
    Ok(Json(Page {
        count: count as u64,
        next,
        previous,
        results,
    }))
}

async fn create_execution(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<CreateExecution>, JsonRejection>,
) -> Result<(StatusCode, Json<Execution>), ApiError> {
    let Json(req) = body.map_err(|e| bad_request(format!("invalid body: {}", e.body_text())))?;
    match state.control.create(req) {
        Ok(e) => Ok((
            StatusCode::CREATED,
            Json(present(e, &base(&state, &headers))),
        )),
        Err(e) => match e.downcast_ref::<Invalid>() {
            Some(invalid) => Err(bad_request(invalid.0.clone())),
            None => {
                let full = e
                    .chain()
                    .filter_map(|c| c.downcast_ref::<std::io::Error>())
                    .any(is_disk_full);
                let status = if full {
                    StatusCode::INSUFFICIENT_STORAGE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Err(ApiError(status, format!("{e:#}")))
            }
        },
    }
}

fn resolve(state: &ApiState, key: &str) -> Result<String, ApiError> {
    state.control.store.resolve(key).ok_or_else(not_found)
}

async fn execution(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    let id = resolve(&state, &key)?;
    let e = state.control.store.get(&id).ok_or_else(not_found)?;
    Ok(Json(present(e, &base(&state, &headers))))
}

/// Events are streamed from the log file: a window of any size costs
/// one chunk of memory, and nothing is held locked while it is sent.
///
/// A client that accepts NDJSON (`Accept: application/x-ndjson`, as
/// porthole's own does) gets the page as lines: first
/// `{"total": N, "truncated": b}`, then the events as stored, one per
/// line. Lines can be split without parsing (a raw newline cannot occur
/// inside JSON), so a long log is read on all cores; any other client
/// gets the events page of Valohai's API.
async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    let id = resolve(&state, &key)?;
    let window = state
        .control
        .store
        .window(&id, limit as u64)
        .ok_or_else(not_found)?
        .map_err(|e| io_error("cannot read the log", &e))?;
    if accepts_ndjson(&headers) {
        let head = format!(
            "{{\"total\":{},\"truncated\":{}}}\n",
            window.total,
            window.first > 0
        );
        let body =
            futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(window.lines());
        return Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response());
    }
    let head = format!(
        r#"{{"total":{},"truncated":{},"events":["#,
        window.total,
        window.first > 0
    );
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(window.json_elements())
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// NDJSON's media type.
const NDJSON: &str = "application/x-ndjson";

fn accepts_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let mut parts = t.split(';');
            let media = parts.next().unwrap_or("").trim();
            // `q=0` means "not this one".
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case(NDJSON) && !refused
        })
}

async fn status_events(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    q: Params,
) -> Result<Json<StatusEvents>, ApiError> {
    let params = params(q)?;
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    let id = resolve(&state, &key)?;
    let (total, status_events) = state
        .control
        .store
        .status_events(&id, limit as u64)
        .ok_or_else(not_found)?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(Json(StatusEvents {
        total,
        status_events,
    }))
}

/// An I/O failure as an answer: a full disk is 507 (Insufficient
/// Storage) with its real cause, not a retryable 500.
fn io_error(what: &str, e: &std::io::Error) -> ApiError {
    let status = if is_disk_full(e) {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError(status, format!("{what}: {e}"))
}

/// Whether `e` says the disk (or the quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

async fn stop(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    let id = resolve(&state, &key)?;
    // In a task of its own: the stop completes even if the client hangs up.
    let control = state.control.clone();
    let task_id = id.clone();
    let task = tokio::spawn(async move { control.stop(&task_id).await });
    let _ = tokio::time::timeout(STOP_ANSWER_WAIT, task).await;
    let e = state.control.store.get(&id).ok_or_else(not_found)?;
    Ok(Json(present(e, &base(&state, &headers))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn ndjson_only_when_asked_for() {
        let accepts = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().expect("header"));
            accepts_ndjson(&h)
        };
        assert!(accepts("application/x-ndjson, application/json;q=0.9"));
        assert!(accepts("application/json, Application/X-NDJSON"));
        assert!(!accepts("application/json"));
        assert!(!accepts("*/*"));
        assert!(!accepts("application/x-ndjson;q=0"));
        assert!(!accepts_ndjson(&HeaderMap::new()));
    }
}
