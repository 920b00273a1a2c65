//! The evidence store: one SQLite file that `sentry run` writes (runs, their samples,
//! decisions with the findings behind them, incidents, an event log) and that `sentry
//! dashboard` and `sentry incidents` read, several processes at once (WAL mode and a busy
//! timeout). Everything written here has been through [`crate::redact`] first.
//!
//! The file lives at `$XDG_DATA_HOME/sentry/sentry.db` (default `~/.local/share/sentry/`);
//! under `sudo`, in the invoking user's home and owned by that user, so the user's own
//! dashboard can read what a root `sentry run` recorded. Files are created 0600, the directory
//! 0700. Not here: what a run decides (that is `decide`), or how the API pages (that is `api`).

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode};

mod baselines;
mod events;
mod query;
mod recorder;
mod schema;

pub use baselines::BaselineRow;
pub use events::{
    ControlEvent, DecisionEvent, DecisionFinding, EventData, RunEndedEvent, RunStartedEvent,
    StatusEvent,
};
pub use query::{enum_name, hostname};
pub use query::{
    AuditEntry, AuditQuery, AuditRow, EventRow, IncidentJson, IncidentQuery, IncidentRow,
    JobLabels, JobMetrics, LiveRun, RunQuery, RunRow, SampleQuery, SampleRow, StoreMetrics,
    TimelineQuery,
};
pub use recorder::{is_signal, DecisionKeep, EventSink, NewRun, Recorder, WatchedEnd};
pub use schema::SCHEMA_VERSION;

/// The job key of a local run: its command line, arguments joined by spaces (redacted when
/// stored), so that runs of the same command share a history.
pub fn command_job_key(command: &[std::ffi::OsString]) -> String {
    let args: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("cmd:{}", args.join(" "))
}

/// How long a statement waits for another process's write lock before giving up. Writers
/// hold it for one short batch, so a longer wait means something is holding the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of the store file each connection maps for reading.
const MMAP_BYTES: i64 = 256 << 20;

/// Default retention of ended runs, days.
pub const DEFAULT_RETAIN_DAYS: u32 = 30;

/// Why the store cannot be used, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No place for the default store.
    #[error(
        "cannot find a data directory for the store: set XDG_DATA_HOME or HOME, or pass --db PATH"
    )]
    NoDataDir,
    /// Creating or opening the file or its directory failed.
    #[error("cannot open the store at {path}: {source}{hint}", hint = io_hint(source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process holds the database lock for longer than [`BUSY_TIMEOUT`].
    #[error("the store {db} is locked by another process (waited {} s); close whatever holds it (an open `sqlite3` shell in a transaction?) or pass another --db", BUSY_TIMEOUT.as_secs())]
    Locked {
        /// The store.
        db: String,
    },
    /// The file is not an SQLite database, or it is damaged.
    #[error("the store {db} is not a sentry database or is damaged ({detail}); nothing was written to it. Move it aside (`mv {db} {db}.bad`) and sentry starts a new one, or pass another --db")]
    Corrupt {
        /// The store.
        db: String,
        /// SQLite's words.
        detail: String,
    },
    /// Written by a newer sentry.
    #[error("the store {db} was written by a newer sentry (schema version {found}; this sentry knows up to {supported}); upgrade sentry or pass another --db")]
    NewerSchema {
        /// The store.
        db: String,
        /// Version in the file.
        found: u32,
        /// Newest version this binary knows.
        supported: u32,
    },
    /// The file or its directory is read-only for this process.
    #[error("the store {db} is read-only for this user; fix its permissions or pass another --db")]
    ReadOnly {
        /// The store.
        db: String,
    },
    /// Any other SQLite failure.
    #[error("store error in {db}: {source}")]
    Sqlite {
        /// The store.
        db: String,
        /// The error.
        source: rusqlite::Error,
    },
}

fn io_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::PermissionDenied => {
            " (permission denied: pass --db PATH in a directory you can write)"
        }
        io::ErrorKind::ReadOnlyFilesystem => " (read-only file system: pass --db PATH elsewhere)",
        _ => "",
    }
}

impl StoreError {
    /// Classifies an SQLite error for the store at `db`.
    pub fn from_sqlite(db: &Path, err: rusqlite::Error) -> StoreError {
        let db = db.display().to_string();
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { db },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                db,
                detail: err.to_string(),
            },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { db },
            _ => StoreError::Sqlite { db, source: err },
        }
    }

    /// True when the store is busy rather than broken: retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }
}

/// One connection to the store. Cheap to open; `Send` but not `Sync`: a server keeps one
/// per worker.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating it (0600, its directory 0700) and bringing its
    /// schema up to date. Refuses a damaged file or one written by a newer sentry, without
    /// writing to it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_file(path)?;
        // Switching a new file to WAL needs it to itself for a moment, and SQLite answers
        // "busy" at once rather than waiting when another process is opening it too.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Store::open_once(path) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Store, StoreError> {
        let err = |e| StoreError::from_sqlite(path, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // The first statement reads the header: a file that is not a database fails here.
        let version = schema::version(&conn).map_err(err)?;
        if version == 0 {
            // Only takes effect before the first table exists: lets retention give space back
            // with `incremental_vacuum` instead of a full VACUUM that locks every reader out.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(err)?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("store {}: journal mode is {mode}, not WAL", path.display());
        }
        // Reads map the file instead of copying each page through a syscall: a page of 50
        // incidents touches a dozen pages, and the dashboard reads pages all day.
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the store answers (for `/readyz`): the file is there and readable.
    pub fn ping(&self) -> Result<(), StoreError> {
        if !self.path.exists() {
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "the file was removed"),
            });
        }
        self.conn
            .query_row("SELECT count(*) FROM runs WHERE id = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Deletes runs that ended more than `days` days ago (with everything recorded about
    /// them) and audit records as old, then gives the space back. Returns the runs deleted.
    pub fn retain(&self, days: u32) -> Result<usize, StoreError> {
        let cutoff = unix_now() - f64::from(days) * 86_400.0;
        let deleted = self
            .conn
            .execute(
                "DELETE FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?1",
                [cutoff],
            )
            .map_err(|e| self.error(e))?;
        self.conn
            .execute("DELETE FROM audit WHERE at < ?1", [cutoff])
            .map_err(|e| self.error(e))?;
        if deleted > 0 {
            self.conn
                .execute_batch("PRAGMA incremental_vacuum")
                .map_err(|e| self.error(e))?;
        }
        Ok(deleted)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn error(&self, err: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.path, err)
    }
}

/// Seconds since the Unix epoch, as stored in `*_at` columns.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The user who asked for this process: under `sudo`, the one who ran sudo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokingUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Login name.
    pub name: String,
    /// Home directory.
    pub home: Option<PathBuf>,
    /// True when this process runs as root on that user's behalf (`sudo`).
    pub via_sudo: bool,
}

/// Who invoked sentry (see [`InvokingUser`]).
pub fn invoking_user() -> InvokingUser {
    use nix::unistd::{Gid, Uid, User};
    let euid = Uid::effective();
    if euid.is_root() {
        let sudo_uid = std::env::var("SUDO_UID")
            .ok()
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(uid) = sudo_uid.filter(|&u| u != 0) {
            if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) {
                return InvokingUser {
                    uid,
                    gid: user.gid.as_raw(),
                    name: user.name,
                    home: Some(user.dir),
                    via_sudo: true,
                };
            }
        }
    }
    let uid = Uid::current();
    let user = User::from_uid(uid).ok().flatten();
    InvokingUser {
        uid: uid.as_raw(),
        gid: user
            .as_ref()
            .map_or(Gid::current().as_raw(), |u| u.gid.as_raw()),
        name: user
            .as_ref()
            .map_or_else(|| uid.to_string(), |u| u.name.clone()),
        home: std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| user.map(|u| u.dir)),
        via_sudo: false,
    }
}

/// `$XDG_DATA_HOME/sentry/sentry.db`, or `~/.local/share/sentry/sentry.db`; under `sudo`,
/// in the invoking user's home.
pub fn default_path() -> Result<PathBuf, StoreError> {
    Ok(data_dir()?.join("sentry.db"))
}

/// The directory sentry keeps its files in (store, API key, control sockets).
pub fn data_dir() -> Result<PathBuf, StoreError> {
    let user = invoking_user();
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from);
    // Under sudo an inherited XDG_DATA_HOME (sudo -E) names the user's own directory; root's
    // would only be set if sudo kept root's environment, which it does not by default.
    let base = match (xdg, &user.home) {
        (Some(xdg), _) => xdg,
        (None, Some(home)) => home.join(".local").join("share"),
        (None, None) => return Err(StoreError::NoDataDir),
    };
    Ok(base.join("sentry"))
}

/// Under `sudo`, gives `path` to the invoking user when it lies in that user's home, so
/// their own (unprivileged) sentry can read and write it. Elsewhere it does nothing.
pub fn give_to_invoking_user(path: &Path) -> io::Result<()> {
    let user = invoking_user();
    let Some(home) = user.home.as_ref().filter(|_| user.via_sudo) else {
        return Ok(());
    };
    if !path.starts_with(home) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
}

/// Creates the store's directory (0700) and an empty file (0600) when they are missing, so
/// SQLite never creates them with the process umask.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_dirs(dir).map_err(io_err(dir))?;
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => give_to_invoking_user(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if path.is_dir() {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source: io::Error::other("it is a directory, not a file"),
                });
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// `mkdir -p` with 0700 for the directories it creates, each given to the invoking user
/// under `sudo` when in their home.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing: Vec<OsString> = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.as_os_str().to_owned());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    for created in missing.iter().rev() {
        give_to_invoking_user(Path::new(created))?;
    }
    let _ = fs::metadata(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_store_is_private_and_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("sentry.db");
        let store = Store::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "store file mode");
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700, "store directory mode");
        assert_eq!(schema::version(store.conn()).unwrap(), SCHEMA_VERSION);
        store.ping().unwrap();
        // Opening again migrates nothing and keeps working.
        drop(store);
        Store::open(&path).unwrap().ping().unwrap();
    }

    #[test]
    fn a_store_at_version_3_gains_the_measured_wall_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        // What a build between schema 3 and 4 left: version 3, no `wall_s`.
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .execute_batch("ALTER TABLE runs DROP COLUMN wall_s; PRAGMA user_version = 3;")
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(schema::version(store.conn()).unwrap(), SCHEMA_VERSION);
        store
            .conn()
            .execute_batch("SELECT wall_s FROM runs")
            .unwrap();
        assert!(store.baseline("cmd:true", 20).unwrap().is_none());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        let junk = b"this is not sqlite, it is someone's notes\n".repeat(200);
        fs::write(&path, &junk).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "expected Corrupt, got {err:?}"
        );
        assert!(err.to_string().contains("mv "), "{err}");
        assert_eq!(fs::read(&path).unwrap(), junk, "the file was modified");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "expected NewerSchema, got {err:?}"
        );
        assert!(err.to_string().contains("upgrade sentry"), "{err}");
    }

    #[test]
    fn a_locked_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        drop(Store::open(&path).unwrap());
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let mut store = Store::open(&path);
        // Opening may succeed (WAL readers are not blocked by journal-mode reads) or report
        // the lock; a write must report it.
        if let Ok(s) = store.as_mut() {
            s.conn_mut()
                .busy_timeout(Duration::from_millis(200))
                .unwrap();
            let err = s
                .record_audit(&AuditEntry {
                    actor: "test".into(),
                    action: "probe".into(),
                    target: "store".into(),
                    result: "ok".into(),
                    client: None,
                    detail: None,
                })
                .unwrap_err();
            assert!(matches!(err, StoreError::Locked { .. }), "got {err:?}");
            assert!(err.to_string().contains("locked by another process"));
        } else {
            let err = store.unwrap_err();
            assert!(matches!(err, StoreError::Locked { .. }), "got {err:?}");
        }
    }

    #[test]
    fn retention_deletes_old_ended_runs_with_everything_recorded_about_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        let store = Store::open(&path).unwrap();
        let old = unix_now() - 40.0 * 86_400.0;
        let c = store.conn();
        for (ended, status) in [
            (Some(old), "exited"),
            (None, "running"),
            (Some(unix_now()), "stopped"),
        ] {
            c.execute(
                "INSERT INTO runs (command, host, user, pid, started_at, ended_at, status) \
                 VALUES ('[\"x\"]', 'h', 'u', 1, ?1, ?2, ?3)",
                rusqlite::params![old, ended, status],
            )
            .unwrap();
            let id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO events (run_id, at, type, data) VALUES (?1, ?2, 'sample', '{}')",
                rusqlite::params![id, old],
            )
            .unwrap();
        }
        assert_eq!(store.retain(30).unwrap(), 1);
        let left: Vec<String> = c
            .prepare("SELECT status FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            left,
            ["running", "stopped"],
            "a live or recent run was deleted"
        );
        let events: i64 = c
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 2, "the deleted run's events were kept");
    }

    #[test]
    fn incidents_sent_as_stored_json_equal_the_typed_rows() {
        use crate::model::{Action, Evidence, FindingKind, Incident, LoopEvidence};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        let recorder = Recorder::start(
            &path,
            &NewRun {
                kind: "run".into(),
                command: vec!["sh".into()],
                control_socket: None,
                retain_days: None,
                labels: Default::default(),
                job_key: None,
                shadow: false,
            },
        )
        .unwrap();
        recorder.incident(&Incident {
            kind: FindingKind::OutputLoop,
            detected_after_s: 1.25,
            action: Action::Kill,
            score: 0.99,
            confidence: 0.98,
            summary: "output loop: period 2, 9 repeats".into(),
            outcome: "stopped".into(),
            attempt: 1,
            reasons: vec!["high confidence".into(), "é ünicode \"quoted\"".into()],
            evidence: Evidence::Loop(LoopEvidence {
                period: 2,
                repeats: 9,
                pattern: vec!["a <int>".into(), "b".into()],
                example: vec!["a 1".into(), "b".into()],
                first_line: 3,
                last_line: 20,
            }),
            shadow: false,
        });
        recorder.fail(0, "test").unwrap();
        let store = Store::open(&path).unwrap();
        let q = IncidentQuery {
            limit: 10,
            ..IncidentQuery::default()
        };
        let typed = serde_json::to_value(store.incidents(&q).unwrap()).unwrap();
        let raw = serde_json::to_value(store.incidents_json(&q).unwrap()).unwrap();
        assert_eq!(typed.as_array().map(Vec::len), Some(1));
        assert_eq!(typed, raw);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }
}
