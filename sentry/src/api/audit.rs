//! `GET /audit`: who did what to which run through the API or the CLI, newest first.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::paging::{self, LIST};
use super::problem::{Problem, ProblemBody};
use super::AppState;
use crate::store::{AuditQuery, AuditRow};

/// Paging of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Page size: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only records older than this id (the previous page's `next_before`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The records.
    pub items: Vec<AuditRow>,
    /// `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// Audit records, newest first.
#[utoipa::path(
    get,
    operation_id = "list_audit",
    path = "/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit records", body = AuditPage),
        (status = 400, description = "Bad paging value", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, Problem> {
    let q = AuditQuery {
        limit: paging::limit(p.limit, LIST)?,
        before_id: paging::id("before", p.before)?,
    };
    let limit = q.limit;
    let items = state.db().run(move |s| s.audit(&q)).await?;
    let next_before = paging::next(&items, limit, |a| a.id);
    Ok(Json(AuditPage { items, next_before }))
}
