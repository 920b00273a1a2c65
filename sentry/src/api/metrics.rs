//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of the store, this process
//! and any live figures attached to the server (all rendered by [`crate::metrics::render`]),
//! then of this server (requests by route template and status, failed authentications,
//! stream clients). Labels are bounded: route templates, never raw paths or ids.
//!
//! Request counting is a fixed table of atomics (route × status code), so the layer that
//! counts takes no lock.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::AppState;
use crate::metrics::{escape, header, render, LiveMetrics};

/// The exposition format's media type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// Status codes 100..=599 get a slot each.
const CODES: usize = 500;

/// The live figures a server appends to the store's (set once, e.g. by `sentry watch`).
#[derive(Default)]
pub struct LiveSlot(OnceLock<Arc<dyn LiveMetrics>>);

impl LiveSlot {
    /// Attaches `live`; false when one already was.
    pub fn set(&self, live: Arc<dyn LiveMetrics>) -> bool {
        self.0.set(live).is_ok()
    }

    /// The attached figures, if any.
    pub fn get(&self) -> Option<&dyn LiveMetrics> {
        self.0.get().map(|live| &**live)
    }
}

impl std::fmt::Debug for LiveSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveSlot")
            .field(&self.0.get().map(|_| "attached"))
            .finish()
    }
}

/// Counters of this server's requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    routes: OnceLock<RouteTable>,
    auth_failures: AtomicU64,
}

#[derive(Debug)]
struct RouteTable {
    names: Vec<String>,
    index: HashMap<String, usize>,
    counts: Box<[AtomicU64]>,
}

impl RequestMetrics {
    /// Fixes the route templates counted (the router's, once it is built); later calls are
    /// ignored.
    pub fn set_routes<'a>(&self, templates: impl IntoIterator<Item = &'a str>) {
        let mut names: Vec<String> = templates.into_iter().map(str::to_string).collect();
        names.push(UNMATCHED.to_string());
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let counts = (0..names.len() * CODES)
            .map(|_| AtomicU64::new(0))
            .collect();
        let _ = self.routes.set(RouteTable {
            names,
            index,
            counts,
        });
    }

    /// Counts one answered request.
    pub fn count(&self, route: Option<&str>, status: StatusCode) {
        let Some(table) = self.routes.get() else {
            return;
        };
        let unmatched = table.names.len() - 1;
        let row = route
            .and_then(|r| table.index.get(r).copied())
            .unwrap_or(unmatched);
        let code = usize::from(status.as_u16()).clamp(100, 599) - 100;
        table.counts[row * CODES + code].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused for want of the key.
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String) {
        header(
            out,
            "sentry_api_requests_total",
            "counter",
            "HTTP requests answered, by matched route template and status code.",
        );
        if let Some(table) = self.routes.get() {
            for (row, name) in table.names.iter().enumerate() {
                for code in 0..CODES {
                    let n = table.counts[row * CODES + code].load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "sentry_api_requests_total{{route=\"{}\",code=\"{}\"}} {n}",
                            escape(name),
                            code + 100
                        );
                    }
                }
            }
        }
        header(
            out,
            "sentry_api_auth_failures_total",
            "counter",
            "Requests refused for a missing or wrong API key (401 and 429).",
        );
        let _ = writeln!(
            out,
            "sentry_api_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
    }
}

/// Counting layer (via `middleware::from_fn_with_state`).
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    state
        .request_metrics()
        .count(route.as_ref().map(MatchedPath::as_str), res.status());
    res
}

/// Prometheus metrics of the store and of this server.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid API key", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The store is unreachable", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, Problem> {
    let store = state.db().run(|s| s.metrics()).await?;
    let mut out = render(&store, state.live_metrics());
    header(
        &mut out,
        "sentry_stream_clients",
        "gauge",
        "Clients connected to GET /stream.",
    );
    let _ = writeln!(out, "sentry_stream_clients {}", state.stream_clients());
    state.request_metrics().write(&mut out);
    let mut res = out.into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_and_code() {
        let m = RequestMetrics::default();
        m.set_routes(["/runs", "/runs/{id}"]);
        m.count(Some("/runs/{id}"), StatusCode::OK);
        m.count(Some("/runs/{id}"), StatusCode::OK);
        m.count(Some("/runs"), StatusCode::UNAUTHORIZED);
        m.count(None, StatusCode::NOT_FOUND);
        m.auth_failure();
        let mut out = String::new();
        m.write(&mut out);
        for line in [
            "sentry_api_requests_total{route=\"/runs/{id}\",code=\"200\"} 2",
            "sentry_api_requests_total{route=\"/runs\",code=\"401\"} 1",
            "sentry_api_requests_total{route=\"unmatched\",code=\"404\"} 1",
            "sentry_api_auth_failures_total 1",
            "# TYPE sentry_api_requests_total counter",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
    }
}
