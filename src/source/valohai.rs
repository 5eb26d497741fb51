//! The Valohai REST client. The local control plane serves the same API,
//! so this one client is exercised end to end by every test.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::credentials::{Credentials, Token};
use super::model::{
    CreateExecution, EventsPage, Execution, LogEvent, LogEventRef, Page, Project, StatusEvents,
    User,
};
use super::pagelines::{LineItem, PageLines};
use super::pagestream::{PageSplitter, Piece};

/// What [`ApiClient::events_each`] hands over, in order.
#[derive(Debug)]
pub enum PageItem<'a> {
    /// The log's total count of events (first).
    Total(u64),
    /// The next event of the page, borrowed from the bytes read.
    Event(LogEventRef<'a>),
}

/// Per-request limit: polls must not hang the console.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The page size used when listing.
const PAGE_SIZE: u32 = 100;
/// Pages followed at most when listing (100 x 100 executions).
const MAX_PAGES: usize = 100;

/// Why an API call failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401/403.
    #[error("{host} rejected the API token (HTTP {status}); check VALOHAI_TOKEN or run `vh login` again")]
    Unauthorized {
        /// The installation.
        host: String,
        /// 401 or 403.
        status: u16,
    },
    /// 404.
    #[error("{what} was not found (HTTP 404); it may have been deleted")]
    NotFound {
        /// What was asked for.
        what: String,
    },
    /// 429 or 5xx: worth retrying later.
    #[error("{host} is busy or failing (HTTP {status}{detail}); retrying")]
    Retryable {
        /// The installation.
        host: String,
        /// The status.
        status: u16,
        /// The server's words, if it said any (`: ...`), so that the
        /// real cause shows.
        detail: String,
    },
    /// 507: the server's disk is full; retrying will not help until
    /// someone makes room.
    #[error("{what}: the server is out of storage (HTTP 507): {detail}")]
    Storage {
        /// What was asked for.
        what: String,
        /// The server's words.
        detail: String,
    },
    /// Any other HTTP error.
    #[error("{what}: HTTP {status}: {detail}")]
    Http {
        /// What was asked for.
        what: String,
        /// The status.
        status: u16,
        /// The server's words (shortened).
        detail: String,
    },
    /// No answer in time.
    #[error("{host} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The installation.
        host: String,
    },
    /// Could not reach the server.
    #[error("cannot reach {host}: {reason}")]
    Network {
        /// The installation.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The body was not what the API promises.
    #[error("{what}: the server's answer is not valid JSON of the expected shape ({reason})")]
    InvalidJson {
        /// What was asked for.
        what: String,
        /// The parse error.
        reason: String,
    },
    /// A URL that cannot be used.
    #[error("invalid API address {0}")]
    BadUrl(String),
}

impl ApiError {
    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::Retryable { .. } | ApiError::Timeout { .. } | ApiError::Network { .. }
        )
    }
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Project id.
    pub project: Option<String>,
    /// Statuses (`incomplete` is a pseudo-status meaning "not finished").
    pub statuses: Vec<String>,
    /// Stop after this many (newest first).
    pub limit: Option<usize>,
}

/// A client for one installation and token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Token,
    /// The project to use when none is given.
    pub project: Option<String>,
}

impl ApiClient {
    /// A client for `creds`.
    pub fn new(creds: &Credentials) -> Result<Self, ApiError> {
        let base = Url::parse(&creds.host)
            .and_then(|u| u.join("api/v0/"))
            .map_err(|_| ApiError::BadUrl(creds.host.clone()))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("porthole/", env!("CARGO_PKG_VERSION")))
            // Redirects could carry the token elsewhere; the API needs none.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Network {
                host: creds.host.clone(),
                reason: e.to_string(),
            })?;
        Ok(ApiClient {
            http,
            base,
            token: creds.token.clone(),
            project: creds.project.clone(),
        })
    }

    fn host(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        self.base
            .join(path)
            .map_err(|_| ApiError::BadUrl(path.to_string()))
    }

    /// Sends a request to a URL on the configured host only: the token is
    /// never sent anywhere else (a `next` link pointing elsewhere is refused).
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        what: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        if url.origin() != self.base.origin() {
            return Err(ApiError::BadUrl(format!("{url} is not on {}", self.host())));
        }
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", format!("Token {}", self.token.expose()))
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(self.http_error(status, what, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    fn transport(&self, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout { host: self.host() }
        } else {
            // Without the URL: a query string may hold ids, never the token,
            // but the message stays short either way.
            ApiError::Network {
                host: self.host(),
                reason: e.without_url().to_string(),
            }
        }
    }

    fn http_error(&self, status: StatusCode, what: &str, body: &[u8]) -> ApiError {
        match status.as_u16() {
            401 | 403 => ApiError::Unauthorized {
                host: self.host(),
                status: status.as_u16(),
            },
            404 => ApiError::NotFound {
                what: what.to_string(),
            },
            507 => ApiError::Storage {
                what: what.to_string(),
                detail: server_detail(body),
            },
            429 | 500..=599 => {
                let detail = server_detail(body);
                ApiError::Retryable {
                    host: self.host(),
                    status: status.as_u16(),
                    detail: if detail.is_empty() {
                        detail
                    } else {
                        format!(": {detail}")
                    },
                }
            }
            s => ApiError::Http {
                what: what.to_string(),
                status: s,
                detail: server_detail(body),
            },
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, ApiError> {
        self.send(Method::GET, self.url(path)?, what, None).await
    }

    /// Checks the token: `users/me`.
    pub async fn me(&self) -> Result<User, ApiError> {
        self.get("users/me/", "the current user").await
    }

    /// Every project the token can see.
    pub async fn projects(&self) -> Result<Vec<Project>, ApiError> {
        let page: Page<Project> = self.get("projects/?limit=9000", "projects").await?;
        Ok(page.results)
    }

    /// Executions, newest first, following every page (bounded).
    pub async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, ApiError> {
        let mut url = self.url("executions/")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &PAGE_SIZE.to_string());
            q.append_pair("ordering", "-counter");
            q.append_pair("deleted", "false");
            if let Some(p) = filter.project.as_ref().or(self.project.as_ref()) {
                q.append_pair("project", p);
            }
            for s in &filter.statuses {
                q.append_pair("status", s);
            }
        }
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<Execution> = self
                .send(Method::GET, url.clone(), "executions", None)
                .await?;
            out.extend(page.results);
            if filter.limit.is_some_and(|l| out.len() >= l) {
                out.truncate(filter.limit.unwrap_or(usize::MAX));
                break;
            }
            match page.next.as_deref().map(Url::parse) {
                Some(Ok(next)) => url = next,
                Some(Err(_)) => return Err(ApiError::BadUrl("next page".into())),
                None => break,
            }
        }
        Ok(out)
    }

    /// One execution by id, or by `project:counter`.
    pub async fn execution(&self, id: &str) -> Result<Execution, ApiError> {
        self.get(
            &format!("executions/{}/?exclude=metadata,events", encode(id)),
            &format!("execution {id}"),
        )
        .await
    }

    /// The last `limit` log events (`0` = all of them).
    pub async fn events(&self, id: &str, limit: u64) -> Result<EventsPage, ApiError> {
        self.get(
            &format!("executions/{}/events/?limit={limit}", encode(id)),
            &format!("the log of execution {id}"),
        )
        .await
    }

    /// The last `limit` log events (`0` = all of them), read as they
    /// arrive: `each` gets the page's total first ([`PageItem::Total`]),
    /// then its events one by one, and may stop the reading by returning
    /// `false`. Memory stays at one event whatever the page's size.
    pub async fn events_each(
        &self,
        id: &str,
        limit: u64,
        mut each: impl FnMut(PageItem<'_>) -> bool,
    ) -> Result<(), ApiError> {
        let what = format!("the log of execution {id}");
        let url = self.url(&format!("executions/{}/events/?limit={limit}", encode(id)))?;
        let mut resp = self
            .http
            .get(url)
            .header("Authorization", format!("Token {}", self.token.expose()))
            // The local control plane sends lines, which are read faster;
            // Valohai sends its JSON page.
            .header("Accept", "application/x-ndjson, application/json;q=0.9")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
            return Err(self.http_error(status, &what, &bytes));
        }
        let invalid = |reason: String| ApiError::InvalidJson {
            what: what.clone(),
            reason,
        };
        let ndjson = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-ndjson"));
        if ndjson {
            let mut lines = PageLines::new();
            let mut out = |item: LineItem<'_>| match item {
                LineItem::Total(n) => each(PageItem::Total(n)),
                LineItem::Event(e) => each(PageItem::Event(e)),
            };
            // The body is read on its own task while a batch is parsed,
            // a few chunks ahead at most.
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let reader = tokio::spawn(async move {
                loop {
                    let chunk = resp.chunk().await;
                    let more = matches!(chunk, Ok(Some(_)));
                    if tx.send(chunk).await.is_err() || !more {
                        break;
                    }
                }
            });
            let _reader = AbortOnDrop(reader);
            loop {
                let chunk = match rx.recv().await {
                    Some(chunk) => chunk.map_err(|e| self.transport(e))?,
                    None => return Err(invalid("the page's reader stopped".into())),
                };
                let last = chunk.is_none();
                if let Some(chunk) = chunk {
                    lines.push(&chunk).map_err(|e| invalid(e.to_string()))?;
                    if !lines.has_batch() {
                        continue;
                    }
                }
                let go_on = lines
                    .drain(last, &mut out)
                    .map_err(|e| invalid(e.to_string()))?;
                if !go_on {
                    return Ok(());
                }
                if last {
                    return lines.finish().map_err(|e| invalid(e.to_string()));
                }
            }
        }
        let mut splitter = PageSplitter::new();
        // Events that come before the total (a server that orders the
        // members differently) wait for it.
        let mut early: Vec<LogEvent> = Vec::new();
        let mut total_sent = false;
        let mut failed: Option<ApiError> = None;
        let mut stopped = false;
        let mut on_piece = |piece: Piece<'_>| -> bool {
            match piece {
                Piece::Member(key, value) if key == "total" && !total_sent => {
                    let Some(total) = value.as_u64() else {
                        failed = Some(invalid(format!("total: {value} is not a count")));
                        return false;
                    };
                    total_sent = true;
                    if !each(PageItem::Total(total)) {
                        stopped = true;
                        return false;
                    }
                    for e in early.drain(..) {
                        if !each(PageItem::Event(LogEventRef {
                            time: e.time.into(),
                            stream: e.stream,
                            message: e.message.into(),
                        })) {
                            stopped = true;
                            return false;
                        }
                    }
                    true
                }
                Piece::Member(..) => true,
                Piece::Event(event) if !total_sent => {
                    early.push(event.to_owned_event());
                    true
                }
                Piece::Event(event) => {
                    let go_on = each(PageItem::Event(event));
                    stopped = !go_on;
                    go_on
                }
            }
        };
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            let go_on = splitter
                .feed(&chunk, &mut on_piece)
                .map_err(|e| invalid(e.to_string()))?;
            if !go_on {
                break;
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if stopped {
            return Ok(());
        }
        splitter.finish().map_err(|e| invalid(e.to_string()))?;
        if !total_sent {
            // No total at all: the page is the whole log.
            if !each(PageItem::Total(early.len() as u64)) {
                return Ok(());
            }
            for e in early {
                let event = LogEventRef {
                    time: e.time.into(),
                    stream: e.stream,
                    message: e.message.into(),
                };
                if !each(PageItem::Event(event)) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Status events (where the SSH announcement appears).
    pub async fn status_events(&self, id: &str) -> Result<StatusEvents, ApiError> {
        self.get(
            &format!("executions/{}/status-events/?limit=100", encode(id)),
            &format!("the status events of execution {id}"),
        )
        .await
    }

    /// Asks the platform to stop an execution.
    pub async fn stop(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        let url = self.url(&format!("executions/{}/stop/", encode(id)))?;
        self.send(
            Method::POST,
            url,
            &format!("stopping execution {id}"),
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Creates an execution (the local control plane's form).
    pub async fn create(&self, body: &CreateExecution) -> Result<Execution, ApiError> {
        let body = serde_json::to_value(body).map_err(|e| ApiError::InvalidJson {
            what: "the new execution".into(),
            reason: e.to_string(),
        })?;
        self.send(
            Method::POST,
            self.url("executions/")?,
            "creating an execution",
            Some(&body),
        )
        .await
    }
}

/// The server's explanation: Django REST's `{"detail": ...}` when it is
/// that, else the body's start; one line, at most 200 characters.
fn server_detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// Path segments come from users (`12`, `proj:latest`): keep them one segment.
fn encode(id: &str) -> String {
    id.chars()
        .flat_map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | ':' => vec![c],
            other => format!("%{:02X}", other as u32 & 0xff).chars().collect(),
        })
        .collect()
}

/// Stops a task when the reading it serves is given up.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Stream;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(encode("proj-1:latest"), "proj-1:latest");
        assert_eq!(encode("../x"), "..%2Fx");
    }

    #[test]
    fn the_token_goes_to_the_configured_host_only() {
        let creds = Credentials {
            host: "http://127.0.0.1:9/".into(),
            token: Token::new("t"),
            project: None,
            origin: "test".into(),
        };
        let client = ApiClient::new(&creds).expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let err = rt
            .block_on(client.send::<serde_json::Value>(
                Method::GET,
                Url::parse("http://evil.example/api/v0/").expect("url"),
                "x",
                None,
            ))
            .expect_err("refused");
        assert!(matches!(err, ApiError::BadUrl(_)), "{err}");
    }

    /// Valohai's JSON page and the local control plane's NDJSON lines
    /// read the same, whole or stopped early.
    #[tokio::test]
    async fn both_page_forms_read_the_same() {
        use axum::http::header::CONTENT_TYPE;
        let events: Vec<LogEvent> = (0..30_000usize)
            .map(|n| LogEvent {
                time: format!("2026-12-02T00:00:00.{n:06}"),
                stream: if n.is_multiple_of(5) {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                message: format!("line {n} \"q\" {}", "x".repeat(n % 50)),
            })
            .collect();
        let json = serde_json::to_vec(&serde_json::json!({
            "total": events.len(), "truncated": false, "events": events,
        }))
        .expect("json");
        let mut lines =
            format!("{{\"total\":{},\"truncated\":false}}\n", events.len()).into_bytes();
        for e in &events {
            serde_json::to_writer(&mut lines, e).expect("line");
            lines.push(b'\n');
        }
        let app = axum::Router::new()
            .route(
                "/api/v0/executions/json/events/",
                axum::routing::get(
                    move || async move { ([(CONTENT_TYPE, "application/json")], json) },
                ),
            )
            .route(
                "/api/v0/executions/lines/events/",
                axum::routing::get(move || async move {
                    ([(CONTENT_TYPE, "application/x-ndjson")], lines)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let creds = Credentials {
            host: format!("http://{addr}/"),
            token: Token::new("t"),
            project: None,
            origin: "test".into(),
        };
        let client = ApiClient::new(&creds).expect("client");
        for id in ["json", "lines"] {
            let mut total = None;
            let mut got = Vec::new();
            client
                .events_each(id, 0, |item| {
                    match item {
                        PageItem::Total(n) => total = Some(n),
                        PageItem::Event(e) => got.push(e.to_owned_event()),
                    }
                    true
                })
                .await
                .expect("reads");
            assert_eq!(total, Some(events.len() as u64), "{id}");
            assert!(got == events, "{id}: the events differ");
            let mut seen = 0;
            client
                .events_each(id, 0, |item| {
                    if let PageItem::Event(_) = item {
                        seen += 1;
                    }
                    seen < 10
                })
                .await
                .expect("stops cleanly");
            assert_eq!(seen, 10, "{id}");
        }
        server.abort();
    }
}
