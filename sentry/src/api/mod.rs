//! The HTTP API that `sentry dashboard` serves: runs, incidents, timelines, samples, audit
//! records and metrics read from the store, a live event stream, and control of live runs.
//! The router is assembled in one place, [`router`], from small handlers (one file per
//! resource); the cross-cutting rules are tower layers around every route:
//!
//! - request counting for `/metrics` ([`metrics::count_requests`]),
//! - `Cache-Control: no-store` (unless a handler set its own, as the dashboard's hashed
//!   assets do), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` on every
//!   answer,
//! - every error as an RFC 7807 problem ([`problem::as_problem`]),
//! - the `Host` allowlist ([`origins::require_known_host`]) and exact-origin CORS,
//! - the bearer key with rate-limited failures ([`auth::require_key`]),
//! - a request body limit ([`BODY_LIMIT`]) and, except on `/stream`, a response timeout.
//!
//! The web UI is served by the same router (`ui`: `/` and the built assets).
//!
//! Not here: binding, printing the URL and shutting down (that is `cli/dashboard.rs`), and
//! what the store holds (that is `store`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::header::{CACHE_CONTROL, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod audit;
pub mod auth;
pub mod baselines;
pub mod db;
pub mod health;
pub mod incidents;
pub mod key;
pub mod metrics;
pub mod openapi;
pub mod origins;
pub mod paging;
pub mod problem;
pub mod process;
pub mod ratelimit;
pub mod runs;
pub mod stream;
pub mod timeline;
pub mod ui;

use db::Db;
use key::ApiKey;
use metrics::{LiveSlot, RequestMetrics};
use origins::Origins;
use ratelimit::FailureLimiter;

/// Largest request body accepted (the control requests are a few bytes).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Tunables of a server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Idle time after which `/stream` sends a heartbeat comment.
    pub heartbeat: Duration,
    /// How long a control request waits for the run's answer.
    pub control_timeout: Duration,
    /// How long any other request may take before a 503 (longer than `control_timeout`).
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            heartbeat: Duration::from_secs(15),
            control_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler and layer shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    key: ApiKey,
    origins: Origins,
    config: ApiConfig,
    limiter: FailureLimiter,
    metrics: RequestMetrics,
    live: LiveSlot,
    hub: stream::Hub,
    openapi: OnceLock<String>,
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// State for a server on `db`, accepting `key`, answering to `origins`.
    pub fn new(db: Db, key: ApiKey, origins: Origins, config: ApiConfig) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                db,
                key,
                origins,
                config,
                limiter: FailureLimiter::default(),
                metrics: RequestMetrics::default(),
                live: LiveSlot::default(),
                hub: stream::Hub::default(),
                openapi: OnceLock::new(),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The API key.
    pub fn key(&self) -> &ApiKey {
        &self.inner.key
    }

    /// Accepted hosts and origins.
    pub fn origins(&self) -> &Origins {
        &self.inner.origins
    }

    /// Tunables.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Failed-authentication budgets.
    pub fn limiter(&self) -> &FailureLimiter {
        &self.inner.limiter
    }

    /// Request counters.
    pub fn request_metrics(&self) -> &RequestMetrics {
        &self.inner.metrics
    }

    /// Attaches figures only the serving process knows, appended to `GET /metrics`
    /// (once; false when some already were).
    pub fn set_live_metrics(&self, live: Arc<dyn crate::metrics::LiveMetrics>) -> bool {
        self.inner.live.set(live)
    }

    /// The figures attached with [`AppState::set_live_metrics`].
    pub fn live_metrics(&self) -> Option<&dyn crate::metrics::LiveMetrics> {
        self.inner.live.get()
    }

    /// The live event broadcast.
    pub fn hub(&self) -> &stream::Hub {
        &self.inner.hub
    }

    /// Clients connected to `/stream`.
    pub fn stream_clients(&self) -> usize {
        self.inner.hub.clients()
    }

    /// The OpenAPI document, as JSON.
    pub fn openapi_json(&self) -> String {
        self.inner.openapi.get().cloned().unwrap_or_default()
    }

    /// Ends every event stream and the poller: call before a graceful shutdown, which
    /// otherwise waits for streams that never end.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves when [`AppState::shutdown`] is called.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

/// The routes and their OpenAPI document, before layers: every route is registered through
/// its handler's `#[utoipa::path]`, so a route cannot be missing from the document.
fn routes(config: &ApiConfig) -> OpenApiRouter<AppState> {
    let timed = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(runs::list))
        .routes(routes!(runs::one))
        .routes(routes!(runs::samples))
        .routes(routes!(incidents::list))
        .routes(routes!(baselines::list))
        .routes(routes!(timeline::timeline))
        .routes(routes!(audit::list))
        .routes(routes!(metrics::metrics))
        .routes(routes!(process::kill))
        .routes(routes!(process::restart))
        .routes(routes!(process::pause))
        .routes(routes!(process::resume))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::index))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ));
    // The stream is endless by design: no timeout.
    timed.merge(OpenApiRouter::new().routes(routes!(stream::stream)))
}

/// The whole API with its layers, ready to serve (with `into_make_service_with_connect_info`
/// so that rate limiting and the audit log see client addresses).
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes(state.config()).split_for_parts();
    state
        .request_metrics()
        .set_routes(doc.paths.paths.keys().map(String::as_str));
    let _ = state.inner.openapi.set(doc.to_json().unwrap_or_default());
    router
        // The dashboard's assets, else the API's 404 problem.
        .fallback(ui::fallback)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), metrics::count_requests))
                .layer(SetResponseHeaderLayer::if_not_present(
                    CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(from_fn(problem::as_problem))
                .layer(from_fn_with_state(
                    state.clone(),
                    origins::require_known_host,
                ))
                .layer(state.origins().cors())
                .layer(from_fn_with_state(state.clone(), auth::require_key))
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT)),
        )
        .with_state(state)
}

/// The OpenAPI document of [`router`], without a server (for tests and tools).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes(&ApiConfig::default()).into_openapi()
}

#[cfg(test)]
mod tests {
    use super::paging::{Limits, LIST, SAMPLES, TIMELINE};
    use super::*;

    #[test]
    fn documented_page_limits_are_the_enforced_ones() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let cases: [(&str, Limits); 5] = [
            ("/runs", LIST),
            ("/incidents", LIST),
            ("/audit", LIST),
            ("/timeline", TIMELINE),
            ("/runs/{id}/samples", SAMPLES),
        ];
        for (path, limits) in cases {
            let params = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{path} has no parameters"));
            let limit = params
                .iter()
                .find(|p| p["name"] == "limit")
                .unwrap_or_else(|| panic!("{path} has no limit"));
            assert_eq!(limit["schema"]["minimum"], 1, "{path}: {limit}");
            assert_eq!(limit["schema"]["maximum"], limits.max, "{path}: {limit}");
        }
    }

    #[test]
    fn only_the_probes_and_the_page_are_documented_as_public() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = op.get("security") == Some(&serde_json::json!([{}]));
                assert_eq!(
                    public,
                    auth::PUBLIC_PATHS.contains(&path.as_str()),
                    "{method} {path}: documented public = {public}"
                );
            }
        }
    }
}
