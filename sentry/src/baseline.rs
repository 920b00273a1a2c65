//! Learned baselines: what a job usually takes, from the store's history of its healthy runs
//! (same job key: the CI job's labels, or the command), and the `regression` finding raised
//! when a run goes far past it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a job key's recent healthy runs took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Baseline {
    /// The job key (`ci:…` or `cmd:…`).
    pub job_key: String,
    /// How many runs the figures come from.
    pub runs: u32,
    /// Median wall time, seconds.
    pub median_wall_s: f64,
    /// Median CPU-seconds (`null` when no run in the history recorded CPU).
    pub median_cpu_seconds: Option<f64>,
    /// 90th percentile of wall time, seconds.
    pub p90_wall_s: f64,
}

/// A run measured against its job's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BaselineComparison {
    /// The baseline.
    pub baseline: Baseline,
    /// This run's wall time over the median.
    pub wall_ratio: f64,
    /// This run's CPU-seconds over the median (`null` when either is unknown or zero).
    pub cpu_ratio: Option<f64>,
}

impl BaselineComparison {
    /// Compares a run of `wall_s` seconds and `cpu_seconds` with `baseline`.
    pub fn of(baseline: Baseline, wall_s: f64, cpu_seconds: f64) -> Self {
        let wall_ratio = if baseline.median_wall_s > 0.0 {
            wall_s / baseline.median_wall_s
        } else {
            0.0
        };
        let cpu_ratio = baseline
            .median_cpu_seconds
            .filter(|m| *m > 0.0)
            .map(|m| cpu_seconds / m);
        Self {
            baseline,
            wall_ratio,
            cpu_ratio,
        }
    }
}

/// The baseline of `job_key` in the store at `path`, as the regression detector would use it
/// (`None` when the detector is off, the store cannot be read, or there is no history). The
/// key is redacted first, as the store keeps it.
pub fn lookup(
    path: &std::path::Path,
    job_key: &str,
    config: &crate::detect::regression::RegressionConfig,
) -> Option<Baseline> {
    if !config.enabled {
        return None;
    }
    let key = crate::redact::redact(job_key);
    let store = match crate::store::Store::open(path) {
        Ok(store) => store,
        Err(err) => {
            tracing::debug!("no baseline: {err}");
            return None;
        }
    };
    match store.baseline(&key, config.history) {
        Ok(b) => b,
        Err(err) => {
            tracing::debug!("no baseline: {err}");
            None
        }
    }
}
