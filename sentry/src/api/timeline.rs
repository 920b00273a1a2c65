//! `GET /timeline?run=ID`: one run's story, oldest first: its start, every decision (with
//! the scores and reasons behind it), incidents, control actions and its end. Samples are
//! left out (they are at `GET /runs/{id}/samples`).

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::paging::{self, TIMELINE};
use super::problem::{Problem, ProblemBody};
use super::runs::run_not_found;
use super::AppState;
use crate::store::{EventRow, TimelineQuery};

/// The run and paging of `GET /timeline`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// The run.
    #[param(minimum = 1)]
    pub run: i64,
    /// Only events after this id (the previous page's `next_after`); 0 or absent = from the start.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size: 1 to 1000, default 200.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of one run's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelinePage {
    /// The events.
    pub items: Vec<EventRow>,
    /// `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// A run's events except samples, oldest first.
#[utoipa::path(
    get,
    path = "/timeline",
    tag = "runs",
    params(TimelineParams),
    responses(
        (status = 200, description = "A page of the run's events", body = TimelinePage),
        (status = 400, description = "Missing run, or a bad paging value", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn timeline(
    State(state): State<AppState>,
    Query(p): Query<TimelineParams>,
) -> Result<Json<TimelinePage>, Problem> {
    let run = paging::id("run", Some(p.run))?.unwrap_or(p.run);
    let q = TimelineQuery {
        run_id: run,
        after_id: paging::after(p.after)?,
        limit: paging::limit(p.limit, TIMELINE)?,
    };
    let limit = q.limit;
    let items = state
        .db()
        .run(move |s| {
            let items = s.timeline(&q)?;
            if items.is_empty() && s.run(q.run_id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(items))
        })
        .await?
        .ok_or_else(|| run_not_found(run))?;
    let next_after = paging::next(&items, limit, |e| e.id);
    Ok(Json(TimelinePage { items, next_after }))
}
