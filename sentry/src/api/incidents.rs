//! `GET /incidents`: what sentry did about runaways, newest first, filterable by run, kind
//! and action. One indexed range scan per page.

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::db::store_problem;
use super::paging::{self, LIST};
use super::problem::{Problem, ProblemBody};
use super::AppState;
use crate::model::{Action, FindingKind};
use crate::store::{IncidentJson, IncidentQuery, IncidentRow};

/// Filters and paging of `GET /incidents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentParams {
    /// Only this run's incidents.
    #[param(minimum = 1)]
    pub run: Option<i64>,
    /// Only this kind.
    pub kind: Option<FindingKind>,
    /// Only those where this was done.
    pub action: Option<Action>,
    /// Page size: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only incidents older than this id (the previous page's `next_before`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// A page of incidents, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    /// The incidents.
    pub items: Vec<IncidentRow>,
    /// `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// [`IncidentPage`] as sent.
#[derive(Debug, Serialize)]
struct IncidentPageJson {
    items: Vec<IncidentJson>,
    next_before: Option<i64>,
}

/// Incidents, newest first.
#[utoipa::path(
    get,
    operation_id = "list_incidents",
    path = "/incidents",
    tag = "incidents",
    params(IncidentParams),
    responses(
        (status = 200, description = "A page of incidents", body = IncidentPage),
        (status = 400, description = "Bad filter or paging value", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<IncidentParams>,
) -> Result<Response, Problem> {
    let q = IncidentQuery {
        run_id: paging::id("run", p.run)?,
        kind: p.kind,
        action: p.action,
        limit: paging::limit(p.limit, LIST)?,
        before_id: paging::id("before", p.before)?,
    };
    // The hot path of the dashboard (polled by every open page): the serialised page is
    // reused until the store changes.
    let key = format!(
        "incidents {:?} {:?} {:?} {} {:?}",
        q.run_id, q.kind, q.action, q.limit, q.before_id
    );
    let body = state
        .db()
        .cached(key, move |s| {
            // The document's `IncidentPage`, with the stored JSON passed through.
            let items = s.incidents_json(&q).map_err(|e| store_problem(&e))?;
            let next_before = paging::next(&items, q.limit, IncidentJson::id);
            serde_json::to_vec(&IncidentPageJson { items, next_before })
                .map(Into::into)
                .map_err(|e| Problem::internal(format!("cannot serialise incidents: {e}")))
        })
        .await?;
    let mut res = body.into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}
