//! How `sentry run` writes to the store without ever slowing supervision down: the run's
//! row is inserted at start (so the dashboard sees it at once), then samples, decisions,
//! incidents and control events go through a bounded queue to a writer thread that commits
//! them in batches, each with its event-log entry for `/stream`.
//!
//! What is kept: a sample row per second for the first 10 minutes, then one per 5 s until the
//! first hour, then one per 30 s, each holding the peaks of its interval, so a day-long run
//! stays a few thousand rows and no spike is lost. Decisions are kept when the action changes,
//! and at most once a second while any finding shows a signal (score ≥ 0.25): near misses and
//! the "continue" that ends them are on record, a healthy run's thousands of identical
//! "continue"s are not.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::params;
use serde_json::{json, Value};

use super::query::hostname;
use super::{invoking_user, unix_now, Store, StoreError};
use crate::model::{Action, Decision, Finding, Incident, Sample};
use crate::redact;

/// Queue depth between the supervisor and the writer. Samples are dropped (and counted)
/// when it is full; decisions, incidents and control events wait for room briefly.
const QUEUE: usize = 4096;

/// A finding at or above this score is a signal worth recording even when nothing is done.
const SIGNAL_SCORE: f64 = 0.25;

/// How long the run's first insert waits for another process's lock.
const START_WAIT: Duration = Duration::from_secs(1);

/// How long `finish` waits for the writer to drain before giving up on it.
const FINISH_WAIT: Duration = Duration::from_secs(15);

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// `run` or `watch`.
    pub kind: String,
    /// The command and arguments (redacted here before storing).
    pub command: Vec<String>,
    /// Where the run takes control requests, if it does.
    pub control_socket: Option<PathBuf>,
    /// Delete runs that ended more than this many days ago first.
    pub retain_days: Option<u32>,
    /// Labels of a watched job (`ci`, `repository`, `workflow`, `job`, `runner`, …);
    /// redacted before storing.
    pub labels: std::collections::BTreeMap<String, String>,
    /// What groups this run with earlier runs of the same job (CI labels, or the command).
    pub job_key: Option<String>,
    /// Supervised in shadow mode: decisions recorded, nothing done to the command.
    pub shadow: bool,
}

enum Msg {
    Mode(String),
    Sample(Value),
    Decision { t_s: f64, attempt: u32, row: Value },
    Incident(Value),
    Status(String),
    Control(Value),
    Audit(super::AuditEntry),
    Cost(Box<crate::cost::RunCost>),
    End(Box<End>),
}

struct End {
    status: String,
    exit_code: Option<i32>,
    runaway: bool,
    restarts: u32,
    cpu_peak_pct: f64,
    mem_peak_bytes: Option<u64>,
    events_captured: u64,
    events_lost: u64,
    /// CPU time of the whole run, when known.
    cpu_seconds: Option<f64>,
    /// What the run cost, when measured.
    cost: Option<crate::cost::RunCost>,
    report: Value,
}

/// How a watched job ended, as [`Recorder::finish_watched`] records it.
#[derive(Debug, Clone)]
pub struct WatchedEnd {
    /// `exited` (its processes ended), `stopped` (sentry stopped it) or `detached` (sentry
    /// stopped watching while it ran on).
    pub status: String,
    /// Whether a runaway was detected.
    pub runaway: bool,
    /// Peak CPU, per-core percent.
    pub cpu_peak_pct: f64,
    /// Peak resident memory.
    pub mem_peak_bytes: Option<u64>,
    /// Writes captured.
    pub events_captured: u64,
    /// Writes lost.
    pub events_lost: u64,
    /// CPU time used while watched.
    pub cpu_seconds: f64,
    /// What the job cost while watched.
    pub cost: Option<crate::cost::RunCost>,
    /// The job's report (redacted here).
    pub report: Value,
}

/// A handle for recording control events from another thread.
#[derive(Clone)]
pub struct EventSink {
    tx: SyncSender<Msg>,
}

impl EventSink {
    /// Records a control request and what came of it.
    pub fn control(&self, actor: &str, action: &str, outcome: &str, status: &str) {
        let data = json!({"actor": actor, "action": action, "outcome": outcome, "status": status});
        send_patiently(&self.tx, Msg::Control(data));
    }

    /// Records in the audit log who asked the run to do what from the command line (a
    /// signal sent to sentry), and what came of it.
    pub fn audit(&self, actor: &str, action: &str, result: &str) {
        send_patiently(
            &self.tx,
            Msg::Audit(super::AuditEntry {
                actor: actor.to_string(),
                action: action.to_string(),
                target: String::new(),
                result: result.to_string(),
                client: None,
                detail: None,
            }),
        );
    }

    /// Records a change of state (`paused`, `running`).
    pub fn status(&self, status: &str) {
        send_patiently(&self.tx, Msg::Status(status.to_string()));
    }
}

#[derive(Default)]
struct SampleWindow {
    start_s: f64,
    cpu_pct: f64,
    mem_bytes: Option<u64>,
    pids: u32,
    lines_at_start: u64,
    open: bool,
}

/// Writes one run to the store.
pub struct Recorder {
    run_id: i64,
    path: PathBuf,
    started: Instant,
    tx: SyncSender<Msg>,
    writer: Option<JoinHandle<WriterEnd>>,
    window: SampleWindow,
    decisions: DecisionKeep,
    dropped: Arc<AtomicU64>,
    /// Samples are stored at most this often (seconds), whatever the run's age.
    min_sample_interval: f64,
}

/// Which decisions are worth keeping (see the module docs): those that change the action or
/// the presence of a signal, and at most one a second while a signal lasts. Shared with the
/// events log, so that both keep the same decisions.
#[derive(Debug, Default)]
pub struct DecisionKeep {
    last: Option<(Action, bool)>,
    last_at: Option<Instant>,
}

impl DecisionKeep {
    /// True when `decision` is to be kept.
    pub fn keep(&mut self, decision: &Decision) -> bool {
        let signal = decision.findings.iter().any(is_signal);
        let key = (decision.action, signal);
        let changed = self.last != Some(key);
        let due = signal
            && self
                .last_at
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        // Nothing to keep from a healthy run's first quiet decisions.
        let first_quiet = self.last.is_none() && !signal && decision.action == Action::Continue;
        if !(changed || due) || first_quiet {
            if first_quiet {
                self.last = Some(key);
            }
            return false;
        }
        self.last = Some(key);
        self.last_at = Some(Instant::now());
        true
    }
}

/// True for a finding that shows a signal worth recording even when nothing is done.
pub fn is_signal(finding: &Finding) -> bool {
    finding.score >= SIGNAL_SCORE
}

struct WriterEnd {
    failed: u64,
    error: Option<String>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("run_id", &self.run_id)
            .field("path", &self.path)
            .finish()
    }
}

impl Recorder {
    /// Opens the store at `path`, inserts the run (status `running`) and starts the writer.
    pub fn start(path: &Path, run: &NewRun) -> Result<Recorder, StoreError> {
        let store = Store::open(path)?;
        let conn = store.conn();
        let wait = |t| conn.busy_timeout(t).map_err(|e| store.error(e));
        if let Some(days) = run.retain_days {
            // Housekeeping must not delay the command: a busy store is tried next time.
            wait(Duration::ZERO)?;
            if let Err(err) = store.retain(days) {
                tracing::debug!("retention skipped: {err}");
            }
        }
        // The command waits for this insert: a store locked for longer than a second is
        // reported and the run goes unrecorded, rather than the command starting late.
        wait(START_WAIT)?;
        let user = invoking_user();
        let command = redact::redact_args(&run.command);
        let command_json = serde_json::to_string(&command).unwrap_or_else(|_| "[]".into());
        let started_at = unix_now();
        let host = hostname();
        let pid = std::process::id();
        let socket = run.control_socket.as_ref().map(|p| p.display().to_string());
        let labels: std::collections::BTreeMap<&str, std::borrow::Cow<'_, str>> = run
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), redact::redact(v)))
            .collect();
        let labels_json = serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into());
        let job_key = run.job_key.as_deref().map(redact::redact);
        let insert = |conn: &rusqlite::Connection| -> rusqlite::Result<i64> {
            conn.execute(
                "INSERT INTO runs (kind, command, host, user, pid, started_at, status, control_socket, \
                 labels, job_key, shadow) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, ?10)",
                params![
                    run.kind,
                    command_json,
                    host,
                    user.name,
                    pid,
                    started_at,
                    socket,
                    labels_json,
                    job_key,
                    run.shadow
                ],
            )?;
            let id = conn.last_insert_rowid();
            let data = json!({
                "run_id": id, "kind": run.kind, "command": command, "host": host,
                "user": user.name, "pid": pid, "started_at": started_at, "labels": labels,
                "shadow": run.shadow,
            });
            conn.execute(
                "INSERT INTO events (run_id, at, type, data) VALUES (?1, ?2, 'run_started', ?3)",
                params![id, started_at, data.to_string()],
            )?;
            Ok(id)
        };
        let run_id = {
            let conn = store.conn();
            // One IMMEDIATE transaction: the write lock is waited for up front (see write_batch).
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| store.error(e))?;
            match insert(conn).and_then(|id| conn.execute_batch("COMMIT").map(|()| id)) {
                Ok(id) => id,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(store.error(e));
                }
            }
        };
        wait(super::BUSY_TIMEOUT)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = thread::Builder::new()
            .name("sentry-store".into())
            .spawn(move || write_loop(store, run_id, rx))
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Recorder {
            run_id,
            path: path.to_path_buf(),
            started: Instant::now(),
            tx,
            writer: Some(writer),
            window: SampleWindow::default(),
            decisions: DecisionKeep::default(),
            dropped: Arc::new(AtomicU64::new(0)),
            min_sample_interval: 0.0,
        })
    }

    /// Stores samples at most every `secs` seconds (each stored row keeps its interval's
    /// peaks). `sentry watch` records many jobs at once and uses this to bound its writes.
    pub fn set_min_sample_interval(&mut self, secs: f64) {
        self.min_sample_interval = secs.max(0.0);
    }

    /// The run's id in the store.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for other threads.
    pub fn sink(&self) -> EventSink {
        EventSink {
            tx: self.tx.clone(),
        }
    }

    /// Records the capture backend once it is known.
    pub fn mode(&self, mode: &str) {
        send_patiently(&self.tx, Msg::Mode(mode.to_string()));
    }

    /// Offers one sample; stored downsampled (see the module docs). `lines` is the
    /// attempt's logical output lines so far.
    pub fn sample(&mut self, sample: &Sample, lines: u64) {
        let t_s = self.started.elapsed().as_secs_f64();
        let w = &mut self.window;
        if !w.open || lines < w.lines_at_start {
            // First sample, or a restart began counting lines again.
            *w = SampleWindow {
                start_s: t_s,
                lines_at_start: lines,
                open: true,
                ..SampleWindow::default()
            };
        }
        w.cpu_pct = w.cpu_pct.max(sample.cpu_pct);
        if let Some(mem) = sample.mem_bytes {
            w.mem_bytes = Some(w.mem_bytes.map_or(mem, |m| m.max(mem)));
        }
        w.pids = w.pids.max(sample.pids);
        let span = t_s - w.start_s;
        if span < store_interval(t_s).max(self.min_sample_interval) {
            return;
        }
        let row = json!({
            "t_s": round3(t_s),
            "cpu_pct": round3(w.cpu_pct),
            "mem_bytes": w.mem_bytes,
            "pids": w.pids,
            "io_read_bytes": sample.io_read_bytes,
            "io_write_bytes": sample.io_write_bytes,
            "lines_per_s": round3((lines - w.lines_at_start) as f64 / span.max(1e-3)),
            "writes": sample.writes,
            "cpu_pressure": sample.cpu_pressure_some_avg10,
            "cpu_seconds": round3(sample.cpu_usage_us as f64 / 1e6),
            "lines": lines,
        });
        *w = SampleWindow {
            start_s: t_s,
            lines_at_start: lines,
            open: true,
            ..SampleWindow::default()
        };
        match self.tx.try_send(Msg::Sample(row)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Offers one decision; stored when it changes or shows a signal (see the module docs).
    pub fn decision(&mut self, decision: &Decision, attempt: u32) {
        if !self.decisions.keep(decision) {
            return;
        }
        let mut row = json!({
            "action": decision.action,
            "confidence": round3(decision.confidence),
            "reasons": decision.reasons,
            "findings": decision.findings.iter().map(|f| json!({
                "kind": f.kind,
                "score": round3(f.score),
                "summary": f.summary,
                "reasons": f.reasons,
                "evidence": f.evidence,
            })).collect::<Vec<_>>(),
        });
        redact::redact_json(&mut row);
        let t_s = self.started.elapsed().as_secs_f64();
        send_patiently(&self.tx, Msg::Decision { t_s, attempt, row });
    }

    /// Records an incident (what was detected and what was done).
    pub fn incident(&self, incident: &Incident) {
        let mut row = serde_json::to_value(incident).unwrap_or(Value::Null);
        redact::redact_json(&mut row);
        send_patiently(&self.tx, Msg::Incident(row));
    }

    /// Records a run that could not start (status `failed`, with why).
    pub fn fail(self, exit_code: i32, message: &str) -> Result<(), String> {
        let mut report = json!({ "error": message, "exit_code": exit_code });
        redact::redact_json(&mut report);
        let end = End {
            status: "failed".into(),
            exit_code: Some(exit_code),
            runaway: false,
            restarts: 0,
            cpu_peak_pct: 0.0,
            mem_peak_bytes: None,
            events_captured: 0,
            events_lost: 0,
            cpu_seconds: None,
            cost: None,
            report,
        };
        self.end_with(end)
    }

    /// Records what the run has cost so far (the live figures of `/runs` and the fleet view).
    pub fn cost(&self, cost: &crate::cost::RunCost) {
        let _ = self.tx.try_send(Msg::Cost(Box::new(cost.clone())));
    }

    /// Records the end of the run from its report, waits for the writer to store
    /// everything, and says what could not be stored.
    pub fn finish(self, report: &crate::report::RunReport, status: &str) -> Result<(), String> {
        let mut report_json = serde_json::to_value(report).unwrap_or(Value::Null);
        redact::redact_json(&mut report_json);
        let end = End {
            status: status.to_string(),
            exit_code: Some(report.exit_code),
            runaway: report.runaway,
            restarts: report.restarts,
            cpu_peak_pct: report.cpu_peak_pct,
            mem_peak_bytes: report.mem_peak_bytes,
            events_captured: report.events_captured,
            events_lost: report.events_lost,
            cpu_seconds: Some(report.cost.cpu_seconds),
            cost: Some(report.cost.clone()),
            report: report_json,
        };
        self.end_with(end)
    }

    /// Records the end of a watched job: it has no exit status (sentry did not start it).
    pub fn finish_watched(self, end: WatchedEnd) -> Result<(), String> {
        let mut report = end.report;
        redact::redact_json(&mut report);
        self.end_with(End {
            status: end.status,
            exit_code: None,
            runaway: end.runaway,
            restarts: 0,
            cpu_peak_pct: end.cpu_peak_pct,
            mem_peak_bytes: end.mem_peak_bytes,
            events_captured: end.events_captured,
            events_lost: end.events_lost,
            cpu_seconds: Some(end.cpu_seconds),
            cost: end.cost,
            report,
        })
    }

    fn end_with(mut self, end: End) -> Result<(), String> {
        send_patiently(&self.tx, Msg::End(Box::new(end)));
        // Dropping our sender (the sinks' clones end with their threads) lets the writer end.
        let (tx, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + FINISH_WAIT;
        while !writer.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if !writer.is_finished() {
            return Err(format!(
                "the store {} did not take the run's last records within {} s",
                self.path.display(),
                FINISH_WAIT.as_secs()
            ));
        }
        let end = writer
            .join()
            .map_err(|_| "the store writer failed".to_string())?;
        let dropped = self.dropped.load(Ordering::Relaxed);
        match (end.failed, end.error) {
            (0, _) if dropped == 0 => Ok(()),
            (0, _) => Err(format!(
                "{dropped} samples were not stored (the store could not keep up)"
            )),
            (failed, error) => Err(format!(
                "{failed} records could not be stored in {}: {}",
                self.path.display(),
                error.unwrap_or_default()
            )),
        }
    }
}

/// Queues `msg`, waiting at most half a second for room: a stuck store must never block
/// supervision (or the signal and control threads), so past that the record is dropped.
fn send_patiently(tx: &SyncSender<Msg>, mut msg: Msg) {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return;
                }
                msg = back;
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn store_interval(t_s: f64) -> f64 {
    if t_s < 600.0 {
        1.0
    } else if t_s < 3600.0 {
        5.0
    } else {
        30.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Most records waiting at once that the writer keeps for a retry while the store is locked.
const RETRY_KEEP: usize = 20_000;

fn write_loop(mut store: Store, run_id: i64, rx: Receiver<Msg>) -> WriterEnd {
    let mut pending: Vec<Msg> = Vec::new();
    let mut failed = 0u64;
    let mut error: Option<String> = None;
    let mut warned = false;
    let mut open = true;
    while open || !pending.is_empty() {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(msg) => pending.push(msg),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        while let Ok(msg) = rx.try_recv() {
            pending.push(msg);
            if pending.len() >= 1024 {
                break;
            }
        }
        if pending.is_empty() {
            continue;
        }
        if pending.iter().any(|m| matches!(m, Msg::End(_))) {
            // The run's last record: nothing after it belongs to the run.
            open = false;
        }
        match write_batch(&mut store, run_id, &pending) {
            Ok(()) => pending.clear(),
            Err(err) => {
                if !warned {
                    crate::supervise::say!("sentry: cannot record to the store: {err}; retrying");
                    warned = true;
                }
                error = Some(err.to_string());
                if !open || !err.is_transient() {
                    // Ending, or a failure that waiting will not cure: store what can be
                    // stored one record at a time, so one bad record does not cost the rest
                    // (the run's end above all), and give up on the others.
                    for msg in pending.drain(..) {
                        if let Err(e) = write_batch(&mut store, run_id, std::slice::from_ref(&msg))
                        {
                            failed += 1;
                            error = Some(e.to_string());
                        }
                    }
                } else if pending.len() > RETRY_KEEP {
                    let excess = pending.len() - RETRY_KEEP;
                    failed += excess as u64;
                    pending.drain(..excess);
                }
            }
        }
    }
    WriterEnd { failed, error }
}

fn write_batch(store: &mut Store, run_id: i64, batch: &[Msg]) -> Result<(), StoreError> {
    let path = store.path().to_path_buf();
    let err = |e| StoreError::from_sqlite(&path, e);
    // IMMEDIATE: take the write lock (waiting for it) before reading anything; a deferred
    // transaction that reads first can fail at once with "busy" when another process wrote
    // in between.
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let at = unix_now();
    let event = |tx: &rusqlite::Transaction, kind: &str, data: &Value| {
        tx.prepare_cached("INSERT INTO events (run_id, at, type, data) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![run_id, at, kind, data.to_string()]))
    };
    for msg in batch {
        match msg {
            Msg::Mode(mode) => {
                tx.execute(
                    "UPDATE runs SET mode = ?1 WHERE id = ?2",
                    params![mode, run_id],
                )
                .map_err(err)?;
            }
            Msg::Sample(row) => {
                tx.prepare_cached(
                    "INSERT INTO samples (run_id, t_s, cpu_pct, mem_bytes, pids, io_read_bytes, \
                     io_write_bytes, writes, lines_per_s, cpu_pressure) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        run_id,
                        row["t_s"].as_f64(),
                        row["cpu_pct"].as_f64(),
                        row["mem_bytes"].as_u64(),
                        row["pids"].as_u64(),
                        row["io_read_bytes"].as_u64(),
                        row["io_write_bytes"].as_u64(),
                        row["writes"].as_u64(),
                        row["lines_per_s"].as_f64(),
                        row["cpu_pressure"].as_f64(),
                    ])
                })
                .map_err(err)?;
                let mut data = row.clone();
                data["id"] = tx.last_insert_rowid().into();
                data["run_id"] = run_id.into();
                // The live figures `/metrics` exports while the run goes on.
                tx.prepare_cached(
                    "UPDATE runs SET cpu_seconds = ?1, output_lines = ?2, \
                     mem_peak_bytes = max(coalesce(mem_peak_bytes, 0), coalesce(?3, 0)) \
                     WHERE id = ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row["cpu_seconds"].as_f64(),
                        row["lines"].as_u64(),
                        row["mem_bytes"].as_u64(),
                        run_id
                    ])
                })
                .map_err(err)?;
                event(&tx, "sample", &data).map_err(err)?;
            }
            Msg::Decision { t_s, attempt, row } => {
                let action = row["action"].as_str().unwrap_or("continue");
                tx.prepare_cached(
                    "INSERT INTO decisions (run_id, at, t_s, attempt, action, confidence, reasons) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        run_id,
                        at,
                        round3(*t_s),
                        attempt,
                        action,
                        row["confidence"].as_f64().unwrap_or(0.0),
                        row["reasons"].to_string(),
                    ])
                })
                .map_err(err)?;
                let decision_id = tx.last_insert_rowid();
                if let Some(findings) = row["findings"].as_array() {
                    for f in findings {
                        tx.prepare_cached(
                            "INSERT INTO findings (decision_id, run_id, kind, score, summary, reasons, evidence) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                decision_id,
                                run_id,
                                f["kind"].as_str().unwrap_or(""),
                                f["score"].as_f64().unwrap_or(0.0),
                                f["summary"].as_str().unwrap_or(""),
                                f["reasons"].to_string(),
                                f["evidence"].to_string(),
                            ])
                        })
                        .map_err(err)?;
                    }
                }
                let mut data = row.clone();
                data["id"] = decision_id.into();
                data["t_s"] = round3(*t_s).into();
                data["attempt"] = (*attempt).into();
                event(&tx, "decision", &data).map_err(err)?;
            }
            Msg::Incident(row) => {
                tx.prepare_cached(
                    "INSERT INTO incidents (run_id, at, kind, action, detected_after_s, score, \
                     confidence, summary, outcome, attempt, reasons, evidence, shadow) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        run_id,
                        at,
                        row["kind"].as_str().unwrap_or(""),
                        row["action"].as_str().unwrap_or(""),
                        row["detected_after_s"].as_f64().unwrap_or(0.0),
                        row["score"].as_f64().unwrap_or(0.0),
                        row["confidence"].as_f64().unwrap_or(0.0),
                        row["summary"].as_str().unwrap_or(""),
                        row["outcome"].as_str().unwrap_or(""),
                        row["attempt"].as_u64().unwrap_or(1),
                        row["reasons"].to_string(),
                        row["evidence"].to_string(),
                        row["shadow"].as_bool().unwrap_or(false),
                    ])
                })
                .map_err(err)?;
                let mut data = row.clone();
                data["id"] = tx.last_insert_rowid().into();
                data["run_id"] = run_id.into();
                data["at"] = at.into();
                tx.execute(
                    "UPDATE runs SET runaway = 1, incidents = incidents + 1 WHERE id = ?1",
                    params![run_id],
                )
                .map_err(err)?;
                event(&tx, "incident", &data).map_err(err)?;
            }
            Msg::Status(status) => {
                tx.execute(
                    "UPDATE runs SET status = ?1 WHERE id = ?2 AND ended_at IS NULL",
                    params![status, run_id],
                )
                .map_err(err)?;
                event(&tx, "status", &json!({"status": status})).map_err(err)?;
            }
            Msg::Control(data) => {
                event(&tx, "control", data).map_err(err)?;
            }
            Msg::Audit(entry) => {
                tx.execute(
                    "INSERT INTO audit (at, actor, action, target, result, client, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        at,
                        entry.actor,
                        entry.action,
                        format!("run {run_id}"),
                        entry.result,
                        entry.client,
                        entry.detail
                    ],
                )
                .map_err(err)?;
            }
            Msg::Cost(cost) => {
                tx.prepare_cached(
                    "UPDATE runs SET mem_gb_seconds = ?1, io_read_bytes = ?2, io_write_bytes = ?3, \
                     idle_fraction = ?4, cost = ?5, cpu_seconds = max(coalesce(cpu_seconds, 0), ?6) \
                     WHERE id = ?7",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        cost.mem_gb_seconds,
                        cost.io_read_bytes,
                        cost.io_write_bytes,
                        cost.idle_fraction,
                        cost.cost,
                        cost.cpu_seconds,
                        run_id
                    ])
                })
                .map_err(err)?;
            }
            Msg::End(end) => {
                if let Some(cost) = &end.cost {
                    tx.execute(
                        "UPDATE runs SET mem_gb_seconds = ?1, io_read_bytes = ?2, \
                         io_write_bytes = ?3, idle_fraction = ?4, cost = ?5, wall_s = ?7 \
                         WHERE id = ?6",
                        params![
                            cost.mem_gb_seconds,
                            cost.io_read_bytes,
                            cost.io_write_bytes,
                            cost.idle_fraction,
                            cost.cost,
                            run_id,
                            cost.wall_s
                        ],
                    )
                    .map_err(err)?;
                }
                tx.execute(
                    "UPDATE runs SET ended_at = ?1, status = ?2, exit_code = ?3, runaway = ?4, \
                     restarts = ?5, cpu_peak_pct = ?6, mem_peak_bytes = ?7, events_captured = ?8, \
                     events_lost = ?9, report = ?10, control_socket = NULL, \
                     cpu_seconds = coalesce(?12, cpu_seconds) WHERE id = ?11",
                    params![
                        at,
                        end.status,
                        end.exit_code,
                        end.runaway,
                        end.restarts,
                        end.cpu_peak_pct,
                        end.mem_peak_bytes,
                        end.events_captured,
                        end.events_lost,
                        end.report.to_string(),
                        run_id,
                        end.cpu_seconds
                    ],
                )
                .map_err(err)?;
                let data = json!({
                    "status": end.status, "exit_code": end.exit_code, "runaway": end.runaway,
                    "restarts": end.restarts, "duration_s": end.report["duration_s"],
                    "cpu_peak_pct": end.cpu_peak_pct, "mem_peak_bytes": end.mem_peak_bytes,
                });
                event(&tx, "run_ended", &data).map_err(err)?;
            }
        }
    }
    tx.commit().map_err(err)
}
