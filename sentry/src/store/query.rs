//! What the API, `sentry incidents` and the dashboard read from the store, and the audit
//! records they write. Lists page by key, newest first: `before_id` is the last id of the
//! previous page, so a page costs one indexed range scan however deep it is.

use std::path::PathBuf;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Row};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{unix_now, Store, StoreError};
use crate::model::{Action, Evidence, FindingKind};

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Page size.
    pub limit: u32,
    /// Only runs with an id below this (the previous page's last id).
    pub before_id: Option<i64>,
    /// Only runs in this state (`running`, `paused`, `exited`, `stopped`, `failed`).
    pub status: Option<String>,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Only this run's.
    pub run_id: Option<i64>,
    /// Only this kind.
    pub kind: Option<FindingKind>,
    /// Only those where this was done.
    pub action: Option<Action>,
    /// Page size.
    pub limit: u32,
    /// Only incidents with an id below this.
    pub before_id: Option<i64>,
}

/// One run's event log, samples left out.
#[derive(Debug, Clone, Default)]
pub struct TimelineQuery {
    /// The run.
    pub run_id: i64,
    /// Only events after this id.
    pub after_id: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// One run's samples, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SampleQuery {
    /// The run.
    pub run_id: i64,
    /// Only samples after this id.
    pub after_id: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Page size.
    pub limit: u32,
    /// Only records with an id below this.
    pub before_id: Option<i64>,
}

/// A supervised run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunRow {
    /// Store id.
    pub id: i64,
    /// `run` (started by `sentry run`) or `watch` (a watched job).
    pub kind: String,
    /// The command, secrets redacted.
    pub command: Vec<String>,
    /// Capture backend, once known.
    pub mode: Option<String>,
    /// Host sentry ran on.
    pub host: String,
    /// User who invoked sentry.
    pub user: String,
    /// The supervising sentry's process id.
    pub pid: u32,
    /// Start, Unix seconds.
    pub started_at: f64,
    /// End, Unix seconds; `null` while live.
    pub ended_at: Option<f64>,
    /// `running`, `paused`, `exited` (ended by itself), `stopped` (by sentry), `failed`
    /// (sentry could not run it), or `lost` (its sentry died without recording an end).
    pub status: String,
    /// sentry's exit status, once ended.
    pub exit_code: Option<i32>,
    /// Whether a runaway was detected.
    pub runaway: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Incidents recorded.
    pub incidents: u32,
    /// Peak CPU, per-core percent.
    pub cpu_peak_pct: Option<f64>,
    /// Peak resident memory, bytes.
    pub mem_peak_bytes: Option<u64>,
    /// Writes captured with payload.
    pub events_captured: u64,
    /// Writes the kernel could not record.
    pub events_lost: u64,
    /// Where the live run takes control requests (internal; never sent to clients).
    #[serde(skip)]
    pub control_socket: Option<PathBuf>,
    /// Labels of a watched job (`ci`, `repository`, `workflow`, `job`, `runner`); empty for
    /// a local run.
    pub labels: std::collections::BTreeMap<String, String>,
    /// CPU time used so far (kept current while live), seconds.
    pub cpu_seconds: Option<f64>,
    /// Logical output lines so far (kept current while live).
    pub output_lines: Option<u64>,
    /// What groups this run with earlier runs of the same job.
    pub job_key: Option<String>,
}

impl RunRow {
    /// True while its sentry is supervising it.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "running" | "paused")
    }
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentRow {
    /// Store id.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: i64,
    /// When it was recorded, Unix seconds.
    pub at: f64,
    /// The leading finding's kind.
    pub kind: FindingKind,
    /// Seconds from the run's start to detection.
    pub detected_after_s: f64,
    /// What was done.
    pub action: Action,
    /// The leading finding's score.
    pub score: f64,
    /// The decision's confidence.
    pub confidence: f64,
    /// One-line summary (redacted).
    pub summary: String,
    /// What came of the action.
    pub outcome: String,
    /// Attempt of the command (1 = first start).
    pub attempt: u32,
    /// Reasons, strongest first (redacted).
    pub reasons: Vec<String>,
    /// The evidence (redacted excerpt).
    pub evidence: Evidence,
}

/// One entry of the event log that `/stream` serves. Its OpenAPI schema, with a typed payload
/// per event type, is in `store/events.rs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    /// Event id, increasing; `Last-Event-ID`.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: i64,
    /// Unix seconds.
    pub at: f64,
    /// `run_started`, `sample`, `decision`, `incident`, `status`, `control`, `run_ended`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload (already redacted).
    pub data: serde_json::Value,
}

/// One stored sample (downsampled for long runs: peaks are kept, see `Recorder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SampleRow {
    /// Store id.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// Seconds since the run started.
    pub t_s: f64,
    /// Peak CPU over the interval, per-core percent.
    pub cpu_pct: f64,
    /// Peak resident memory over the interval.
    pub mem_bytes: Option<u64>,
    /// Peak process count over the interval.
    pub pids: u32,
    /// Cumulative bytes read.
    pub io_read_bytes: Option<u64>,
    /// Cumulative bytes written.
    pub io_write_bytes: Option<u64>,
    /// Output lines per second over the interval.
    pub lines_per_s: f64,
    /// Cumulative write() calls seen.
    pub writes: u64,
    /// CPU pressure (`some avg10`), where measured.
    pub cpu_pressure: Option<f64>,
}

/// Who did what through the API or the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// `api`, `cli`, `signal`…
    pub actor: String,
    /// What was asked (`kill`, `pause`…).
    pub action: String,
    /// On what (`run 12`).
    pub target: String,
    /// What came of it.
    pub result: String,
    /// Client address, for API requests.
    pub client: Option<String>,
    /// Anything else worth keeping.
    pub detail: Option<String>,
}

/// An audit record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRow {
    /// Store id.
    pub id: i64,
    /// Unix seconds.
    pub at: f64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Totals for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreMetrics {
    /// Runs per status.
    pub runs_by_status: Vec<(String, u64)>,
    /// Incidents per (kind, action).
    pub incidents_by_kind_action: Vec<(String, String, u64)>,
    /// Recorded decisions per action.
    pub decisions_by_action: Vec<(String, u64)>,
    /// Sum of captured writes over all runs.
    pub events_captured_total: u64,
    /// Sum of lost writes over all runs.
    pub events_lost_total: u64,
    /// Sum of restarts over all runs.
    pub restarts_total: u64,
}

const RUN_COLUMNS: &str =
    "id, kind, command, mode, host, user, pid, started_at, ended_at, status, \
     exit_code, runaway, restarts, cpu_peak_pct, mem_peak_bytes, events_captured, events_lost, \
     control_socket, incidents, labels, cpu_seconds, output_lines, job_key";

const INCIDENT_COLUMNS: &str = "id, run_id, at, kind, detected_after_s, action, score, \
     confidence, summary, outcome, attempt, reasons, evidence";

fn json_col<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn enum_col<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn run_row(row: &Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        command: json_col(row, 2)?,
        mode: row.get(3)?,
        host: row.get(4)?,
        user: row.get(5)?,
        pid: row.get(6)?,
        started_at: row.get(7)?,
        ended_at: row.get(8)?,
        status: row.get(9)?,
        exit_code: row.get(10)?,
        runaway: row.get(11)?,
        restarts: row.get(12)?,
        cpu_peak_pct: row.get(13)?,
        mem_peak_bytes: row.get(14)?,
        events_captured: row.get(15)?,
        events_lost: row.get(16)?,
        control_socket: row.get::<_, Option<String>>(17)?.map(PathBuf::from),
        incidents: row.get(18)?,
        labels: json_col(row, 19)?,
        cpu_seconds: row.get(20)?,
        output_lines: row.get(21)?,
        job_key: row.get(22)?,
    })
}

/// An [`IncidentRow`] as the API sends it: the same fields, in the same order, with the
/// stored JSON of `reasons` and `evidence` passed through instead of parsed into Rust values
/// and written out again, which was four fifths of the cost of a page of incidents.
#[derive(Debug, Serialize)]
pub struct IncidentJson {
    id: i64,
    run_id: i64,
    at: f64,
    kind: String,
    detected_after_s: f64,
    action: String,
    score: f64,
    confidence: f64,
    summary: String,
    outcome: String,
    attempt: u32,
    reasons: Box<serde_json::value::RawValue>,
    evidence: Box<serde_json::value::RawValue>,
}

impl IncidentJson {
    /// The incident's id.
    pub fn id(&self) -> i64 {
        self.id
    }
}

fn raw_col(row: &Row, idx: usize) -> rusqlite::Result<Box<serde_json::value::RawValue>> {
    let text: String = row.get(idx)?;
    serde_json::value::RawValue::from_string(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn incident_json(row: &Row) -> rusqlite::Result<IncidentJson> {
    Ok(IncidentJson {
        id: row.get(0)?,
        run_id: row.get(1)?,
        at: row.get(2)?,
        kind: row.get(3)?,
        detected_after_s: row.get(4)?,
        action: row.get(5)?,
        score: row.get(6)?,
        confidence: row.get(7)?,
        summary: row.get(8)?,
        outcome: row.get(9)?,
        attempt: row.get(10)?,
        reasons: raw_col(row, 11)?,
        evidence: raw_col(row, 12)?,
    })
}

fn incident_row(row: &Row) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        id: row.get(0)?,
        run_id: row.get(1)?,
        at: row.get(2)?,
        kind: enum_col(row, 3)?,
        detected_after_s: row.get(4)?,
        action: enum_col(row, 5)?,
        score: row.get(6)?,
        confidence: row.get(7)?,
        summary: row.get(8)?,
        outcome: row.get(9)?,
        attempt: row.get(10)?,
        reasons: json_col(row, 11)?,
        evidence: json_col(row, 12)?,
    })
}

fn event_row(row: &Row) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: row.get(0)?,
        run_id: row.get(1)?,
        at: row.get(2)?,
        kind: row.get(3)?,
        data: json_col(row, 4)?,
    })
}

/// The name a model enum has in the store and the API (`output_loop`, `kill`).
pub fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A run whose sentry died without recording its end is `lost`, not `running` forever.
/// Only decidable for runs of this host.
fn settle_liveness(mut run: RunRow, host: &str) -> RunRow {
    if run.is_live() && run.host == host && !process_alive(run.pid) {
        run.status = "lost".to_string();
    }
    run
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // It exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it when
    // the name fits, and the last byte stays 0 otherwise.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn page(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 10_000))
}

impl Store {
    /// Runs, newest first.
    pub fn runs(&self, q: &RunQuery) -> Result<Vec<RunRow>, StoreError> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1=1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(before) = q.before_id {
            sql.push_str(" AND id < ?");
            args.push(before.into());
        }
        if let Some(status) = &q.status {
            sql.push_str(" AND status = ?");
            args.push(status.clone().into());
        }
        // A literal limit: with a bound one, SQLite (built with STAT4) prepares the statement
        // again on every execution, a third of the cost of a page. It is a clamped integer.
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", page(q.limit)));
        let host = hostname();
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params_from_iter(args), run_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| settle_liveness(r, &host))
            .collect())
    }

    /// One run.
    pub fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query_map([id], run_row).map_err(|e| self.error(e))?;
        match rows.next() {
            Some(row) => Ok(Some(settle_liveness(
                row.map_err(|e| self.error(e))?,
                &hostname(),
            ))),
            None => Ok(None),
        }
    }

    /// Incidents, newest first.
    pub fn incidents(&self, q: &IncidentQuery) -> Result<Vec<IncidentRow>, StoreError> {
        self.select_incidents(q, incident_row)
    }

    /// Incidents, newest first, as the API sends them (see [`IncidentJson`]).
    pub fn incidents_json(&self, q: &IncidentQuery) -> Result<Vec<IncidentJson>, StoreError> {
        self.select_incidents(q, incident_json)
    }

    fn select_incidents<T>(
        &self,
        q: &IncidentQuery,
        map: fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1=1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(run) = q.run_id {
            sql.push_str(" AND run_id = ?");
            args.push(run.into());
        }
        if let Some(kind) = q.kind {
            sql.push_str(" AND kind = ?");
            args.push(enum_name(&kind).into());
        }
        if let Some(action) = q.action {
            sql.push_str(" AND action = ?");
            args.push(enum_name(&action).into());
        }
        if let Some(before) = q.before_id {
            sql.push_str(" AND id < ?");
            args.push(before.into());
        }
        // A literal limit: with a bound one, SQLite (built with STAT4) prepares the statement
        // again on every execution, a third of the cost of a page. It is a clamped integer.
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", page(q.limit)));
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params_from_iter(args), map)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error(e));
        rows
    }

    /// A run's events (decisions, incidents, control, start and end), oldest first.
    pub fn timeline(&self, q: &TimelineQuery) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, at, type, data FROM events \
                 WHERE run_id = ?1 AND type != 'sample' AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(
                params![q.run_id, q.after_id.unwrap_or(0), page(q.limit)],
                event_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error(e));
        rows
    }

    /// A run's samples, oldest first.
    pub fn samples(&self, q: &SampleQuery) -> Result<Vec<SampleRow>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, t_s, cpu_pct, mem_bytes, pids, io_read_bytes, \
                 io_write_bytes, lines_per_s, writes, cpu_pressure FROM samples \
                 WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(
                params![q.run_id, q.after_id.unwrap_or(0), page(q.limit)],
                |row| {
                    Ok(SampleRow {
                        id: row.get(0)?,
                        run_id: row.get(1)?,
                        t_s: row.get(2)?,
                        cpu_pct: row.get(3)?,
                        mem_bytes: row.get(4)?,
                        pids: row.get(5)?,
                        io_read_bytes: row.get(6)?,
                        io_write_bytes: row.get(7)?,
                        lines_per_s: row.get(8)?,
                        writes: row.get(9)?,
                        cpu_pressure: row.get(10)?,
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error(e));
        rows
    }

    /// Events after `after_id`, oldest first (the `/stream` log).
    pub fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, at, type, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params![after_id, page(limit)], event_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error(e));
        rows
    }

    /// The newest event id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| self.error(e))
    }

    /// Totals for `/metrics`.
    pub fn metrics(&self) -> Result<StoreMetrics, StoreError> {
        let conn = self.conn();
        let err = |e| self.error(e);
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>, StoreError> {
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(err);
            rows
        };
        let mut runs_by_status =
            pairs("SELECT status, count(*) FROM runs GROUP BY status ORDER BY 1")?;
        // `lost` is not a stored status: a live-looking run whose sentry is gone.
        let lost = {
            let host = hostname();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT pid FROM runs WHERE status IN ('running', 'paused') AND host = ?1",
                )
                .map_err(err)?;
            let pids = stmt
                .query_map([&host], |r| r.get::<_, u32>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(err)?;
            pids.into_iter().filter(|&pid| !process_alive(pid)).count() as u64
        };
        if lost > 0 {
            // Taken from `running` first, then `paused`: which one a lost run was does not matter.
            let mut left = lost;
            for (status, n) in runs_by_status.iter_mut() {
                if status == "running" || status == "paused" {
                    let take = left.min(*n);
                    *n -= take;
                    left -= take;
                }
            }
            runs_by_status.retain(|(_, n)| *n > 0);
            runs_by_status.push(("lost".to_string(), lost));
            runs_by_status.sort();
        }
        let decisions_by_action =
            pairs("SELECT action, count(*) FROM decisions GROUP BY action ORDER BY 1")?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, action, count(*) FROM incidents GROUP BY kind, action ORDER BY 1, 2",
            )
            .map_err(err)?;
        let incidents_by_kind_action = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        let (events_captured_total, events_lost_total, restarts_total) = conn
            .query_row(
                "SELECT coalesce(sum(events_captured), 0), coalesce(sum(events_lost), 0), \
                 coalesce(sum(restarts), 0) FROM runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(err)?;
        Ok(StoreMetrics {
            runs_by_status,
            incidents_by_kind_action,
            decisions_by_action,
            events_captured_total,
            events_lost_total,
            restarts_total,
        })
    }

    /// A token that changes whenever what a query reads may have changed: after a commit by
    /// any other connection or process (`PRAGMA data_version`) or a change made through this
    /// connection. Equal tokens from the same connection mean a query would read the same
    /// rows, so its answer can be reused.
    pub fn version(&self) -> Result<(i64, u64), StoreError> {
        let data_version = self
            .conn()
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(|e| self.error(e))?;
        Ok((data_version, self.conn().total_changes()))
    }

    /// Records who did what; returns the record's id.
    pub fn record_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO audit (at, actor, action, target, result, client, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    unix_now(),
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.result,
                    entry.client,
                    entry.detail
                ])
            })
            .map_err(|e| self.error(e))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Audit records, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, at, actor, action, target, result, client, detail FROM audit \
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(
                params![q.before_id.unwrap_or(i64::MAX), page(q.limit)],
                |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        entry: AuditEntry {
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            target: r.get(4)?,
                            result: r.get(5)?,
                            client: r.get(6)?,
                            detail: r.get(7)?,
                        },
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error(e));
        rows
    }
}
