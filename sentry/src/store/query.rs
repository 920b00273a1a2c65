//! What the API, `sentry incidents` and the dashboard read from the store, and the audit
//! records they write. Lists page by key, newest first: `before_id` is the last id of the
//! previous page, so a page costs one indexed range scan however deep it is.

use std::collections::BTreeMap;
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
    /// Only runs of this kind (`run` or `watch`).
    pub kind: Option<String>,
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
    /// Resident memory integrated over time, GB-seconds (kept current while live).
    pub mem_gb_seconds: Option<f64>,
    /// Bytes read from storage by the tree.
    pub io_read_bytes: Option<u64>,
    /// Bytes written to storage by the tree.
    pub io_write_bytes: Option<u64>,
    /// Fraction of the time with no output, no I/O and next to no CPU (0..1).
    pub idle_fraction: Option<f64>,
    /// What it cost at the price per CPU-hour it was run with (`null` without a price).
    pub cost: Option<f64>,
    /// Run in shadow mode: its incidents say what enforcement would have done.
    pub shadow: bool,
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
    /// Taken in shadow mode: `action` is what enforcement would have done; nothing was done.
    pub shadow: bool,
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
    /// Runs per (kind, state); `lost` is a state here (a live-looking run whose sentry is
    /// gone), taken out of `running`/`paused`.
    pub runs_by_kind_state: Vec<(String, String, u64)>,
    /// Incidents per (kind, action) that were enforced (shadow incidents are not counted).
    pub incidents_by_kind_action: Vec<(String, String, u64)>,
    /// Shadow-mode incidents per (kind, action that would have been taken).
    pub shadow_incidents_by_kind_action: Vec<(String, String, u64)>,
    /// Recorded decisions per action.
    pub decisions_by_action: Vec<(String, u64)>,
    /// Sum of captured writes over all runs.
    pub events_captured_total: u64,
    /// Sum of lost writes over all runs.
    pub events_lost_total: u64,
    /// Sum of restarts over all runs.
    pub restarts_total: u64,
    /// Figures per job (runs grouped by their [`JobLabels`]), sorted by labels.
    pub jobs: Vec<JobMetrics>,
    /// Runs being supervised now (running or paused, not lost), oldest first.
    pub live_runs: Vec<LiveRun>,
    /// Alert deliveries per (sink, result).
    pub deliveries_by_sink_result: Vec<(String, String, u64)>,
}

/// The bounded labels a run is grouped by in metrics: its CI job's, or for a run outside CI
/// `ci = "local"` and `job` = its program's file name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct JobLabels {
    /// `github`, `gitlab`, `buildkite`, `jenkins`, or `local`.
    pub ci: String,
    /// Repository (empty when unknown).
    pub repository: String,
    /// Workflow or pipeline (empty when unknown).
    pub workflow: String,
    /// Job name, or the program's file name for a local run.
    pub job: String,
}

impl JobLabels {
    /// The labels of a run with stored `labels` and command `program` (its first word).
    pub fn of(labels: &BTreeMap<String, String>, program: Option<&str>) -> JobLabels {
        let get = |k: &str| labels.get(k).cloned();
        JobLabels::from_parts(
            [get("ci"), get("repository"), get("workflow"), get("job")],
            program,
        )
    }

    /// From the stored `ci`, `repository`, `workflow` and `job` labels, when present.
    fn from_parts(
        [ci, repository, workflow, job]: [Option<String>; 4],
        program: Option<&str>,
    ) -> JobLabels {
        match ci {
            Some(ci) if !ci.is_empty() => JobLabels {
                ci,
                repository: repository.unwrap_or_default(),
                workflow: workflow.unwrap_or_default(),
                job: job.unwrap_or_default(),
            },
            _ => JobLabels {
                ci: "local".to_string(),
                repository: String::new(),
                workflow: String::new(),
                job: program_name(program.unwrap_or_default()),
            },
        }
    }
}

/// A program's file name: `/usr/bin/python3` → `python3`.
fn program_name(program: &str) -> String {
    let name = program.rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        "unknown".to_string()
    } else {
        name.to_string()
    }
}

/// One job's figures over every run of it in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobMetrics {
    /// Which job.
    pub labels: JobLabels,
    /// Runs per state (`lost` included), sorted.
    pub runs_by_state: Vec<(String, u64)>,
    /// CPU time, seconds (live runs count what they used so far).
    pub cpu_seconds: f64,
    /// Largest peak resident memory of any run, bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Logical output lines.
    pub output_lines: u64,
    /// Writes captured with payload.
    pub events_captured: u64,
    /// Writes the capture could not record.
    pub events_lost: u64,
    /// Resident memory integrated over time, GB-seconds (live runs so far).
    pub memory_gb_seconds: f64,
    /// Money at the runs' price per CPU-hour; `None` when no run of the job was priced.
    pub cost: Option<f64>,
}

/// A run being supervised now, for the metrics' info series (the only place run ids go).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveRun {
    /// Store id.
    pub id: i64,
    /// `run` or `watch`.
    pub kind: String,
    /// Its job.
    pub labels: JobLabels,
    /// The CI platform's job id (stored label `job_id`), empty when unknown.
    pub job_id: String,
    /// The CI runner's name (stored label `runner`), empty when unknown.
    pub runner: String,
    /// Host its sentry runs on.
    pub host: String,
}

const RUN_COLUMNS: &str =
    "id, kind, command, mode, host, user, pid, started_at, ended_at, status, \
     exit_code, runaway, restarts, cpu_peak_pct, mem_peak_bytes, events_captured, events_lost, \
     control_socket, incidents, labels, cpu_seconds, output_lines, job_key, mem_gb_seconds, \
     io_read_bytes, io_write_bytes, idle_fraction, cost, shadow";

const INCIDENT_COLUMNS: &str = "id, run_id, at, kind, detected_after_s, action, score, \
     confidence, summary, outcome, attempt, reasons, evidence, shadow";

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
        mem_gb_seconds: row.get(23)?,
        io_read_bytes: row.get(24)?,
        io_write_bytes: row.get(25)?,
        idle_fraction: row.get(26)?,
        cost: row.get(27)?,
        shadow: row.get(28)?,
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
    shadow: bool,
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
        shadow: row.get(13)?,
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
        shadow: row.get(13)?,
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

/// Moves one run of `kind` from `running` (else `paused`) to `lost`.
fn move_to_lost(runs: &mut BTreeMap<(String, String), u64>, kind: &str) {
    for state in ["running", "paused"] {
        let key = (kind.to_string(), state.to_string());
        if let Some(n) = runs.get_mut(&key).filter(|n| **n > 0) {
            *n -= 1;
            *runs
                .entry((kind.to_string(), "lost".to_string()))
                .or_default() += 1;
            return;
        }
    }
}

/// Moves one run from `running` (else `paused`) to `lost` in a job's per-state counts.
fn move_state_to_lost(states: &mut BTreeMap<String, u64>) {
    for state in ["running", "paused"] {
        if let Some(n) = states.get_mut(state).filter(|n| **n > 0) {
            *n -= 1;
            *states.entry("lost".to_string()).or_default() += 1;
            return;
        }
    }
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
        if let Some(kind) = &q.kind {
            sql.push_str(" AND kind = ?");
            args.push(kind.clone().into());
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

    /// Totals for `/metrics`: a handful of GROUP BY scans (the runs table is bounded by
    /// retention; incidents, decisions and deliveries are read through their indexes) plus
    /// the live runs, whose sentry is checked for liveness.
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
        let triples = |sql: &str| -> Result<Vec<(String, String, u64)>, StoreError> {
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(err);
            rows
        };
        let decisions_by_action =
            pairs("SELECT action, count(*) FROM decisions GROUP BY action ORDER BY 1")?;
        // Shadow incidents (what enforcement would have done) are counted apart, so that a
        // would-be kill never shows as a kill. One scan of the kind index gives both.
        let mut incidents_by_kind_action = Vec::new();
        let mut shadow_incidents_by_kind_action = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT kind, action, shadow, count(*) FROM incidents \
                     GROUP BY kind, action, shadow ORDER BY 1, 2",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, u64>(3)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(err)?;
            for (kind, action, shadow, n) in rows {
                if shadow {
                    shadow_incidents_by_kind_action.push((kind, action, n));
                } else {
                    incidents_by_kind_action.push((kind, action, n));
                }
            }
        }
        let deliveries_by_sink_result = triples(
            "SELECT sink, result, count(*) FROM deliveries GROUP BY sink, result ORDER BY 1, 2",
        )?;

        // Everything about runs in one scan, grouped by job, kind and state. The job is the
        // label values (one JSON parse per row: a multi-path json_extract gives them as one
        // array, a third of the cost of four extracts) or, outside CI, the program path, whose
        // file name is taken below; groups are then merged by the labels they map to.
        let mut stmt = conn
            .prepare_cached(
                "SELECT json_extract(labels, '$.ci', '$.repository', '$.workflow', '$.job') AS k, \
                 CASE WHEN json_extract(labels, '$.ci') IS NULL \
                      THEN json_extract(command, '$[0]') END AS p, \
                 kind, status, count(*), coalesce(sum(cpu_seconds), 0), max(mem_peak_bytes), \
                 coalesce(sum(output_lines), 0), sum(events_captured), sum(events_lost), \
                 sum(restarts), coalesce(sum(mem_gb_seconds), 0), sum(cost) \
                 FROM runs GROUP BY k, p, kind, status",
            )
            .map_err(err)?;
        let groups = stmt
            .query_map([], |r| {
                let parts: [Option<String>; 4] = json_col(r, 0)?;
                let program: Option<String> = r.get(1)?;
                Ok((
                    JobLabels::from_parts(parts, program.as_deref()),
                    (r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    r.get::<_, u64>(4)?,
                    JobMetrics {
                        cpu_seconds: r.get(5)?,
                        memory_peak_bytes: r.get(6)?,
                        output_lines: r.get(7)?,
                        events_captured: r.get(8)?,
                        events_lost: r.get(9)?,
                        memory_gb_seconds: r.get(11)?,
                        cost: r.get(12)?,
                        ..JobMetrics::default()
                    },
                    r.get::<_, u64>(10)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        let mut runs: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut jobs: BTreeMap<JobLabels, (BTreeMap<String, u64>, JobMetrics)> = BTreeMap::new();
        let (mut events_captured_total, mut events_lost_total, mut restarts_total) = (0, 0, 0);
        for (labels, (kind, state), n, figures, restarts) in groups {
            events_captured_total += figures.events_captured;
            events_lost_total += figures.events_lost;
            restarts_total += restarts;
            let (states, job) = jobs.entry(labels).or_default();
            *states.entry(state.clone()).or_default() += n;
            *runs.entry((kind, state)).or_default() += n;
            job.cpu_seconds += figures.cpu_seconds;
            job.memory_peak_bytes = job.memory_peak_bytes.max(figures.memory_peak_bytes);
            job.output_lines += figures.output_lines;
            job.events_captured += figures.events_captured;
            job.events_lost += figures.events_lost;
            job.memory_gb_seconds += figures.memory_gb_seconds;
            if let Some(c) = figures.cost {
                *job.cost.get_or_insert(0.0) += c;
            }
        }

        // Live runs, one by one (few): `lost` is not a stored status but a live-looking run
        // of this host whose sentry is gone.
        let host = hostname();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, kind, pid, host, labels, json_extract(command, '$[0]') FROM runs \
                 WHERE status IN ('running', 'paused') ORDER BY id",
            )
            .map_err(err)?;
        let live = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    json_col::<BTreeMap<String, String>>(r, 4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        let mut live_runs = Vec::new();
        for (id, kind, pid, run_host, labels, program) in live {
            let job = JobLabels::of(&labels, program.as_deref());
            if run_host == host && !process_alive(pid) {
                // Which of running/paused it was does not matter: take from running first.
                move_to_lost(&mut runs, &kind);
                if let Some((states, _)) = jobs.get_mut(&job) {
                    move_state_to_lost(states);
                }
                continue;
            }
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            live_runs.push(LiveRun {
                id,
                kind,
                job_id: label("job_id"),
                runner: label("runner"),
                labels: job,
                host: run_host,
            });
        }
        let jobs = jobs
            .into_iter()
            .map(|(labels, (states, figures))| JobMetrics {
                labels,
                runs_by_state: states.into_iter().filter(|(_, n)| *n > 0).collect(),
                ..figures
            })
            .collect();
        let runs_by_kind_state = runs
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((kind, state), n)| (kind, state, n))
            .collect();
        Ok(StoreMetrics {
            runs_by_kind_state,
            incidents_by_kind_action,
            shadow_incidents_by_kind_action,
            decisions_by_action,
            events_captured_total,
            events_lost_total,
            restarts_total,
            jobs,
            live_runs,
            deliveries_by_sink_result,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(store: &Store, command: &str, labels: &str, status: &str, pid: u32, cpu: f64) {
        store
            .conn()
            .execute(
                "INSERT INTO runs (command, host, user, pid, started_at, status, labels, \
                 cpu_seconds, output_lines, mem_peak_bytes, events_captured, events_lost) \
                 VALUES (?1, ?2, 'u', ?3, 0, ?4, ?5, ?6, 10, ?7, 3, 1)",
                params![
                    command,
                    hostname(),
                    pid,
                    status,
                    labels,
                    cpu,
                    (cpu * 1000.0) as i64
                ],
            )
            .unwrap();
    }

    #[test]
    fn metrics_group_runs_by_job_and_settle_lost_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sentry.db")).unwrap();
        let gh = r#"{"ci":"github","repository":"acme/api","workflow":"CI","job":"test","runner":"r7","job_id":"github_1"}"#;
        let me = std::process::id();
        // Far beyond pid_max: no such process, so its run is lost.
        let gone = 99_999_999;
        insert(&store, r#"["/usr/bin/make","test"]"#, gh, "exited", me, 1.0);
        insert(&store, r#"["make"]"#, gh, "running", me, 2.0);
        insert(&store, r#"["/bin/sh","-c","x"]"#, "{}", "stopped", me, 0.5);
        insert(&store, r#"["sh"]"#, "{}", "running", gone, 0.25);
        store
            .conn()
            .execute_batch(
                "INSERT INTO deliveries (run_id, at, sink, event, kind, result, attempts) \
                 VALUES (1, 0, 'slack', 'incident', 'output_loop', 'delivered', 1), \
                        (1, 0, 'slack', 'incident', 'output_loop', 'failed', 3), \
                        (2, 0, 'slack', 'incident', 'output_loop', 'failed', 3);",
            )
            .unwrap();
        let m = store.metrics().unwrap();
        assert_eq!(
            m.runs_by_kind_state,
            [
                ("run".to_string(), "lost".to_string(), 1),
                ("run".to_string(), "running".to_string(), 1),
                ("run".to_string(), "stopped".to_string(), 1),
                ("run".to_string(), "exited".to_string(), 1),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(m.jobs.len(), 2, "{:#?}", m.jobs);
        let ci = &m.jobs[0];
        assert_eq!(
            ci.labels,
            JobLabels {
                ci: "github".into(),
                repository: "acme/api".into(),
                workflow: "CI".into(),
                job: "test".into(),
            }
        );
        assert_eq!(ci.cpu_seconds, 3.0);
        assert_eq!(ci.memory_peak_bytes, Some(2000));
        assert_eq!(ci.output_lines, 20);
        assert_eq!(
            ci.runs_by_state,
            [("exited".to_string(), 1), ("running".to_string(), 1)]
        );
        // Local runs: grouped by the program's file name, whatever its path.
        let local = &m.jobs[1];
        assert_eq!(
            (local.labels.ci.as_str(), local.labels.job.as_str()),
            ("local", "sh")
        );
        assert_eq!(local.cpu_seconds, 0.75);
        assert_eq!(
            local.runs_by_state,
            [("lost".to_string(), 1), ("stopped".to_string(), 1)]
        );
        // Only the live CI run is in the info list, with its ids.
        assert_eq!(m.live_runs.len(), 1, "{:#?}", m.live_runs);
        assert_eq!(m.live_runs[0].id, 2);
        assert_eq!(m.live_runs[0].job_id, "github_1");
        assert_eq!(m.live_runs[0].runner, "r7");
        assert_eq!(
            m.deliveries_by_sink_result,
            [
                ("slack".to_string(), "delivered".to_string(), 1),
                ("slack".to_string(), "failed".to_string(), 2),
            ]
        );
        assert_eq!(m.events_captured_total, 12);
    }

    /// `cargo test -p sentry --release --lib -- --ignored metrics_over_many_runs --nocapture`
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn metrics_over_many_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sentry.db")).unwrap();
        let tx = store.conn().unchecked_transaction().unwrap();
        for i in 0..50_000u32 {
            let labels = if i % 2 == 1 {
                format!(
                    r#"{{"ci":"github","repository":"acme/r{}","workflow":"CI","job":"j{}","runner":"r{}"}}"#,
                    i % 40,
                    i % 25,
                    i % 100
                )
            } else {
                "{}".to_string()
            };
            let command = format!(r#"["/usr/bin/p{}","--seed","{i}"]"#, i % 30);
            insert(&store, &command, &labels, "exited", 1, 1.5);
        }
        tx.commit().unwrap();
        let started = std::time::Instant::now();
        let m = store.metrics().unwrap();
        let took = started.elapsed();
        eprintln!(
            "metrics() over 50,000 runs: {took:?}, {} jobs",
            m.jobs.len()
        );
        // 100 (repository, job) pairs among the odd runs, 15 programs among the even ones.
        assert_eq!(m.jobs.len(), 115);
    }

    #[test]
    fn the_metrics_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sentry.db")).unwrap();
        for sql in [
            "SELECT sink, result, count(*) FROM deliveries GROUP BY sink, result",
            "SELECT kind, action, shadow, count(*) FROM incidents GROUP BY kind, action, shadow",
            "SELECT id FROM runs WHERE status IN ('running', 'paused') ORDER BY id",
        ] {
            let plan: Vec<String> = store
                .conn()
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().any(|step| step.contains("INDEX")),
                "{sql}: {plan:?}"
            );
        }
    }
}
