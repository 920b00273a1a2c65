//! `GET /runs`, `GET /runs/{id}` and `GET /runs/{id}/samples`: the runs the store knows
//! (live or ended, started before or after this server) and a run's samples for charts.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::paging::{self, LIST, SAMPLES};
use super::problem::{Problem, ProblemBody};
use super::AppState;
use crate::store::{RunQuery, RunRow, SampleQuery, SampleRow};

/// A run's state, as `GET /runs?status=` filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Being supervised.
    Running,
    /// Frozen.
    Paused,
    /// Ended by itself.
    Exited,
    /// Stopped by sentry.
    Stopped,
    /// sentry could not run it.
    Failed,
    /// Recorded as live, but its sentry is gone.
    Lost,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Exited => "exited",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Lost => "lost",
        }
    }

    /// The state recorded in the store: a lost run is one recorded as running.
    fn stored(self) -> &'static str {
        match self {
            RunStatus::Lost => "running",
            other => other.as_str(),
        }
    }
}

/// What started a run, as `GET /runs?kind=` filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Started by `sentry run`.
    Run,
    /// A job `sentry watch` follows (the fleet view).
    Watch,
}

/// Filters and paging of `GET /runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// Only runs in this state.
    #[param(inline)]
    pub status: Option<RunStatus>,
    /// Only runs of this kind.
    #[param(inline)]
    pub kind: Option<RunKind>,
    /// Page size: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only runs older than this id (the previous page's `next_before`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// The runs.
    pub items: Vec<RunRow>,
    /// `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// Runs, newest first.
#[utoipa::path(
    get,
    operation_id = "list_runs",
    path = "/runs",
    tag = "runs",
    params(RunParams),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "Bad filter or paging value", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<RunParams>,
) -> Result<Json<RunPage>, Problem> {
    let q = RunQuery {
        limit: paging::limit(p.limit, LIST)?,
        before_id: paging::id("before", p.before)?,
        status: p.status.map(|s| s.stored().to_string()),
        kind: p.kind.map(|k| match k {
            RunKind::Run => "run".to_string(),
            RunKind::Watch => "watch".to_string(),
        }),
    };
    let limit = q.limit;
    let mut items = state.db().run(move |s| s.runs(&q)).await?;
    let next_before = paging::next(&items, limit, |r| r.id);
    if let Some(status) = p.status {
        // The store settles whether a recorded-live run is still live (or lost) as it reads.
        items.retain(|r| r.status == status.as_str());
    }
    Ok(Json(RunPage { items, next_before }))
}

/// One run.
#[utoipa::path(
    get,
    operation_id = "get_run",
    path = "/runs/{id}",
    tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunRow),
        (status = 400, description = "The id is not a number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RunRow>, Problem> {
    state
        .db()
        .run(move |s| s.run(id))
        .await?
        .map(Json)
        .ok_or_else(|| run_not_found(id))
}

/// The problem for an unknown run id.
pub fn run_not_found(id: i64) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "run-not-found",
        format!("there is no run {id} in this store; GET /runs lists them"),
    )
}

/// Paging of `GET /runs/{id}/samples`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SampleParams {
    /// Only samples after this id (the previous page's `next_after`); 0 or absent = from the start.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size: 1 to 5000, default 1000.
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

/// A page of one run's samples, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SamplePage {
    /// The samples.
    pub items: Vec<SampleRow>,
    /// `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// A run's samples (CPU, memory, processes, I/O, output rate), oldest first, for charts.
#[utoipa::path(
    get,
    operation_id = "run_samples",
    path = "/runs/{id}/samples",
    tag = "runs",
    params(("id" = i64, Path, description = "Run id"), SampleParams),
    responses(
        (status = 200, description = "A page of samples", body = SamplePage),
        (status = 400, description = "Bad paging value", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn samples(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(p): Query<SampleParams>,
) -> Result<Json<SamplePage>, Problem> {
    let q = SampleQuery {
        run_id: id,
        after_id: paging::after(p.after)?,
        limit: paging::limit(p.limit, SAMPLES)?,
    };
    let limit = q.limit;
    let items = state
        .db()
        .run(move |s| {
            let items = s.samples(&q)?;
            // An empty page of an unknown run is a 404, not an empty chart.
            if items.is_empty() && s.run(q.run_id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(items))
        })
        .await?
        .ok_or_else(|| run_not_found(id))?;
    let next_after = paging::next(&items, limit, |s| s.id);
    Ok(Json(SamplePage { items, next_after }))
}
