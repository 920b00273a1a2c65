//! `GET /baselines`: what each job key usually takes, learned from its healthy runs, as the
//! regression detector and the dashboard's fleet view ("vs baseline") use it.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::{Problem, ProblemBody};
use super::AppState;
use crate::detect::regression::RegressionConfig;
use crate::store::BaselineRow;

/// Filters of `GET /baselines`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BaselineParams {
    /// Only this job key.
    pub job_key: Option<String>,
}

/// Every job key's baseline, most recently run first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineList {
    /// The job keys.
    pub items: Vec<BaselineRow>,
    /// Healthy runs a job needs before it is compared with its baseline.
    pub min_runs: u32,
    /// How many recent healthy runs a baseline is taken from.
    pub history: u32,
    /// A run past this multiple of its median raises a regression finding.
    pub factor: f64,
}

/// Baselines of every job key (the default `[regression]` policy's history and minimum).
#[utoipa::path(
    get,
    operation_id = "list_baselines",
    path = "/baselines",
    tag = "runs",
    params(BaselineParams),
    responses(
        (status = 200, description = "Baselines per job key", body = BaselineList),
        (status = 400, description = "Bad filter", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<BaselineParams>,
) -> Result<Json<BaselineList>, Problem> {
    let config = RegressionConfig::default();
    let (history, min_runs) = (config.history, config.min_runs);
    let mut items = state
        .db()
        .run(move |s| s.baselines(history, min_runs))
        .await?;
    if let Some(key) = &p.job_key {
        items.retain(|row| &row.job_key == key);
    }
    Ok(Json(BaselineList {
        items,
        min_runs,
        history,
        factor: config.factor,
    }))
}
