//! `GET /healthz` (the process serves) and `GET /readyz` (and the store answers). Neither
//! needs the key: they say nothing about what was captured.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemBody};
use super::AppState;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness: 200 whenever the process serves. Deliberately does nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn healthz() -> Response {
    let mut res = r#"{"status":"ok"}"#.into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Readiness: 200 when the store answers a query, 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "The store is unreachable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.db().run(|s| s.ping())).await;
    let unavailable =
        |detail: String| Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", detail);
    match ping {
        Ok(Ok(())) => Ok(healthz().await),
        Ok(Err(problem)) => Err(unavailable(problem.detail().to_string())),
        Err(_) => Err(unavailable(format!(
            "the store {} did not answer within {} s",
            state.db().path().display(),
            READY_TIMEOUT.as_secs()
        ))),
    }
}
