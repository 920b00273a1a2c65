//! Keyset paging shared by the list endpoints: `limit` (bounded per endpoint) and a cursor
//! id (`before` for newest-first lists, `after` for oldest-first ones). An answer carries the
//! cursor of its next page, or `null` when it was the last.

use super::problem::Problem;

/// Page size bounds of one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// When `limit` is absent.
    pub default: u32,
    /// The largest `limit` accepted.
    pub max: u32,
}

/// Runs, incidents and audit records: 50 by default, 500 at most.
pub const LIST: Limits = Limits {
    default: 50,
    max: 500,
};

/// A run's timeline.
pub const TIMELINE: Limits = Limits {
    default: 200,
    max: 1000,
};

/// A run's samples (a chart wants many).
pub const SAMPLES: Limits = Limits {
    default: 1000,
    max: 5000,
};

/// Checks `limit` against `limits`.
pub fn limit(limit: Option<u32>, limits: Limits) -> Result<u32, Problem> {
    match limit {
        None => Ok(limits.default),
        Some(n) if (1..=limits.max).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!(
            "limit={n}: give 1 to {} (default {})",
            limits.max, limits.default
        ))),
    }
}

/// Checks an id parameter (`before`, `run`): ids start at 1.
pub fn id(name: &str, value: Option<i64>) -> Result<Option<i64>, Problem> {
    match value {
        Some(v) if v < 1 => Err(Problem::bad_request(format!("{name}={v}: ids start at 1"))),
        other => Ok(other),
    }
}

/// Checks an `after` cursor: 0 (from the start) or an id.
pub fn after(value: Option<i64>) -> Result<Option<i64>, Problem> {
    match value {
        Some(v) if v < 0 => Err(Problem::bad_request(format!(
            "after={v}: give 0 (from the start) or an id"
        ))),
        other => Ok(other),
    }
}

/// The cursor of the next page: the last item's id when the page was full.
pub fn next<T>(items: &[T], limit: u32, id: impl Fn(&T) -> i64) -> Option<i64> {
    if items.len() >= limit as usize {
        items.last().map(id)
    } else {
        None
    }
}
