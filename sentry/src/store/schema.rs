//! The store's schema and its migrations. The schema version lives in SQLite's
//! `PRAGMA user_version`; each migration moves it up by one inside a transaction, so a
//! database is always at a version this list knows. A database written by a newer sentry
//! (a version past the end of the list) is refused, never "migrated" down.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: runs, their samples, decisions (with the findings behind them), incidents, the audit
    // log, and the event log that `/stream` serves (one id space, so `Last-Event-ID` works
    // across kinds; AUTOINCREMENT so an id is never reused after retention deletes rows).
    r#"
    CREATE TABLE runs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        kind            TEXT    NOT NULL DEFAULT 'run',
        command         TEXT    NOT NULL,
        mode            TEXT,
        host            TEXT    NOT NULL,
        user            TEXT    NOT NULL,
        pid             INTEGER NOT NULL,
        started_at      REAL    NOT NULL,
        ended_at        REAL,
        status          TEXT    NOT NULL,
        exit_code       INTEGER,
        runaway         INTEGER NOT NULL DEFAULT 0,
        restarts        INTEGER NOT NULL DEFAULT 0,
        incidents       INTEGER NOT NULL DEFAULT 0,
        cpu_peak_pct    REAL,
        mem_peak_bytes  INTEGER,
        events_captured INTEGER NOT NULL DEFAULT 0,
        events_lost     INTEGER NOT NULL DEFAULT 0,
        control_socket  TEXT,
        labels          TEXT    NOT NULL DEFAULT '{}',
        report          TEXT
    );
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE INDEX runs_by_end ON runs(ended_at);

    CREATE TABLE samples (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        t_s             REAL    NOT NULL,
        cpu_pct         REAL    NOT NULL,
        mem_bytes       INTEGER,
        pids            INTEGER NOT NULL,
        io_read_bytes   INTEGER,
        io_write_bytes  INTEGER,
        writes          INTEGER NOT NULL,
        lines_per_s     REAL    NOT NULL,
        cpu_pressure    REAL
    );
    CREATE INDEX samples_by_run ON samples(run_id, id);

    CREATE TABLE decisions (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        at              REAL    NOT NULL,
        t_s             REAL    NOT NULL,
        attempt         INTEGER NOT NULL,
        action          TEXT    NOT NULL,
        confidence      REAL    NOT NULL,
        reasons         TEXT    NOT NULL
    );
    CREATE INDEX decisions_by_run ON decisions(run_id, id);
    CREATE INDEX decisions_by_action ON decisions(action);

    CREATE TABLE findings (
        id              INTEGER PRIMARY KEY,
        decision_id     INTEGER NOT NULL REFERENCES decisions(id) ON DELETE CASCADE,
        run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind            TEXT    NOT NULL,
        score           REAL    NOT NULL,
        summary         TEXT    NOT NULL,
        reasons         TEXT    NOT NULL,
        evidence        TEXT    NOT NULL
    );
    CREATE INDEX findings_by_decision ON findings(decision_id);
    CREATE INDEX findings_by_run ON findings(run_id, kind);

    CREATE TABLE incidents (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        at              REAL    NOT NULL,
        kind            TEXT    NOT NULL,
        action          TEXT    NOT NULL,
        detected_after_s REAL   NOT NULL,
        score           REAL    NOT NULL,
        confidence      REAL    NOT NULL,
        summary         TEXT    NOT NULL,
        outcome         TEXT    NOT NULL,
        attempt         INTEGER NOT NULL,
        reasons         TEXT    NOT NULL,
        evidence        TEXT    NOT NULL
    );
    CREATE INDEX incidents_by_run ON incidents(run_id, id);
    CREATE INDEX incidents_by_kind ON incidents(kind, id);
    CREATE INDEX incidents_by_action ON incidents(action, id);

    CREATE TABLE audit (
        id              INTEGER PRIMARY KEY,
        at              REAL    NOT NULL,
        actor           TEXT    NOT NULL,
        action          TEXT    NOT NULL,
        target          TEXT    NOT NULL,
        result          TEXT    NOT NULL,
        client          TEXT,
        detail          TEXT
    );
    CREATE INDEX audit_by_time ON audit(at);

    CREATE TABLE events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        at              REAL    NOT NULL,
        type            TEXT    NOT NULL,
        data            TEXT    NOT NULL
    );
    CREATE INDEX events_by_run ON events(run_id, type, id);
    "#,
    // 2: fleet mode. Live per-run figures (kept current while a run or watched job is live,
    // so `/metrics` can export CPU seconds and output lines without reading samples), the job
    // key that groups the runs of one CI job or command (baselines), and the delivery log of
    // alerts sent to Alertmanager, webhooks and Slack.
    r#"
    ALTER TABLE runs ADD COLUMN cpu_seconds  REAL;
    ALTER TABLE runs ADD COLUMN output_lines INTEGER;
    ALTER TABLE runs ADD COLUMN job_key      TEXT;
    CREATE INDEX runs_by_job_key ON runs(job_key, id);

    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        at              REAL    NOT NULL,
        sink            TEXT    NOT NULL,
        event           TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        result          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL,
        detail          TEXT
    );
    CREATE INDEX deliveries_by_result ON deliveries(sink, result);
    CREATE INDEX deliveries_by_run ON deliveries(run_id, id);
    "#,
    // 3: CI-native. What a run cost (memory GB-seconds, I/O, the idle fraction and, with a
    // price per CPU-hour, money), whether it ran in shadow mode, and shadow incidents (what
    // enforcement would have done). Baselines read a job key's recent healthy runs.
    r#"
    ALTER TABLE runs ADD COLUMN mem_gb_seconds REAL;
    ALTER TABLE runs ADD COLUMN io_read_bytes  INTEGER;
    ALTER TABLE runs ADD COLUMN io_write_bytes INTEGER;
    ALTER TABLE runs ADD COLUMN idle_fraction  REAL;
    ALTER TABLE runs ADD COLUMN cost           REAL;
    ALTER TABLE runs ADD COLUMN shadow         INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN shadow    INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_by_job_end ON runs(job_key, ended_at);
    "#,
    // 4: the wall time sentry measured for a run, which baselines compare (a store written
    // between 3 and 4 falls back to its recorded start and end).
    r#"
    ALTER TABLE runs ADD COLUMN wall_s REAL;
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings `conn` to [`SCHEMA_VERSION`], or refuses a database from a newer sentry.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    let found = version(conn).map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            db: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // IMMEDIATE: two sentry processes opening a new store at once must not both migrate;
        // the second waits (busy timeout), then sees the new version and skips.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let now: u32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if now > from as u32 {
            tx.commit().map_err(err)?;
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", from as u32 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

/// The schema version recorded in the file (0 for a new, empty database).
pub(super) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}
