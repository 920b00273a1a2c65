//! Baselines from the store: what the recent healthy runs of a job key took. A run is healthy
//! when it ended by itself with status 0 (a watched job has no status; ending by itself is
//! enough) and no runaway was detected in it.

use rusqlite::params;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};
use crate::baseline::Baseline;

/// The SQL condition of a healthy run, on the `runs` table. A run's wall time is the one its
/// sentry measured (`wall_s`), or its recorded start to end for runs stored without it.
const HEALTHY: &str = "status = 'exited' AND runaway = 0 AND coalesce(exit_code, 0) = 0 \
                       AND ended_at IS NOT NULL";

/// One job key's baseline with what the store holds of it (`sentry baselines`, `/baselines`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BaselineRow {
    /// The job key (`ci:…` or `cmd:…`).
    pub job_key: String,
    /// Runs of this key in the store, healthy or not.
    pub runs_total: u64,
    /// The baseline from its recent healthy runs (`null` when it has none).
    pub baseline: Option<Baseline>,
    /// True when the history is long enough for the regression detector to use it.
    pub active: bool,
    /// The newest run of this key.
    pub last_run_id: i64,
    /// Its status.
    pub last_status: String,
    /// Its wall time so far (or in all), seconds.
    pub last_wall_s: Option<f64>,
}

/// The median of `values` (sorted here); `None` when empty.
fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = pos - lo as f64;
    Some(values[lo] + (values[hi] - values[lo]) * frac)
}

/// The baseline of `job_key` from `(wall_s, cpu_seconds)` of its recent healthy runs.
fn baseline_of(job_key: &str, runs: &[(f64, Option<f64>)]) -> Option<Baseline> {
    let mut walls: Vec<f64> = runs.iter().map(|r| r.0).filter(|w| w.is_finite()).collect();
    let mut cpus: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
    let median_wall_s = percentile(&mut walls, 0.5)?;
    Some(Baseline {
        job_key: job_key.to_string(),
        runs: u32::try_from(walls.len()).unwrap_or(u32::MAX),
        median_wall_s,
        median_cpu_seconds: percentile(&mut cpus, 0.5),
        p90_wall_s: percentile(&mut walls, 0.9).unwrap_or(median_wall_s),
    })
}

impl Store {
    /// The baseline of `job_key` from its `history` most recent healthy runs, or `None` when
    /// it has none. One indexed range read of at most `history` rows.
    pub fn baseline(&self, job_key: &str, history: u32) -> Result<Option<Baseline>, StoreError> {
        let sql = format!(
            "SELECT coalesce(wall_s, ended_at - started_at), cpu_seconds FROM runs \
             INDEXED BY runs_by_job_end \
             WHERE job_key = ?1 AND {HEALTHY} ORDER BY ended_at DESC LIMIT ?2"
        );
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(|e| self.error(e))?;
        let runs = stmt
            .query_map(params![job_key, history.max(1)], |r| {
                Ok((r.get::<_, f64>(0)?, r.get::<_, Option<f64>>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.error(e))?;
        Ok(baseline_of(job_key, &runs))
    }

    /// Every job key's baseline, most recently run first; `min_runs` decides `active`.
    pub fn baselines(&self, history: u32, min_runs: u32) -> Result<Vec<BaselineRow>, StoreError> {
        let conn = self.conn();
        let mut keys = conn
            .prepare(
                "SELECT job_key, count(*), max(id) FROM runs WHERE job_key IS NOT NULL \
                 GROUP BY job_key ORDER BY max(id) DESC",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(keys.len());
        let now = super::unix_now();
        for (job_key, runs_total, last_run_id) in keys.drain(..) {
            let baseline = self.baseline(&job_key, history)?;
            // The last run as the API shows it: a live-looking run whose sentry is gone is
            // `lost`, and has no wall time to compare.
            let last = self.run(last_run_id)?;
            let (last_status, last_wall_s) = match last {
                Some(run) if run.status == "lost" => (run.status, None),
                Some(run) => {
                    let wall: Option<f64> = conn
                        .query_row(
                            "SELECT coalesce(wall_s, coalesce(ended_at, ?2) - started_at) \
                             FROM runs WHERE id = ?1",
                            params![last_run_id, now],
                            |r| r.get(0),
                        )
                        .map_err(|e| self.error(e))?;
                    (run.status, wall)
                }
                None => ("deleted".to_string(), None),
            };
            out.push(BaselineRow {
                active: baseline.as_ref().is_some_and(|b| b.runs >= min_runs),
                job_key,
                runs_total,
                baseline,
                last_run_id,
                last_status,
                last_wall_s,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 0.5), Some(2.5));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut v, 1.0), Some(4.0));
        assert_eq!(percentile(&mut [], 0.5), None);
        let b = baseline_of("k", &[(2.0, Some(1.0)), (2.2, None), (1.8, Some(3.0))]);
        let b = b.unwrap();
        assert_eq!(b.runs, 3);
        assert!((b.median_wall_s - 2.0).abs() < 1e-9);
        assert_eq!(b.median_cpu_seconds, Some(2.0));
    }
}
