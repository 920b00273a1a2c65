//! The evidence store end to end: real `sentry run`s (kernel mode as root, fallback as
//! `nobody`) write a real SQLite file, read back with SQLite and through `sentry incidents`.
//! Secrets a child prints never reach the file; a damaged or locked store costs the record,
//! never the supervision.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rusqlite::Connection;
use sentry_tests::{mode_command, require_mode, run_dir, run_mode, sentry_bin, TestMode};
use serde_json::Value;

const EXIT_STOPPED: i32 = 124;

/// A child that repeats one failing line forever: an output loop sentry stops in ~1-2 s.
const LOOP: &str =
    "while true; do echo 'error: upstream refused the connection, retrying'; sleep 0.02; done";

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("sentry.db")).expect("the store the run wrote can be opened")
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn incidents_json(db: &Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(sentry_bin())
        .args(["incidents", "--json", "--db"])
        .arg(db)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("sentry incidents runs");
    assert!(
        out.status.success(),
        "sentry incidents failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sentry incidents --json printed no JSON array ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn a_stopped_runaway_is_recorded_with_its_evidence(mode: TestMode) {
    require_mode!(mode);
    let run = run_mode(mode, &[], &["sh", "-c", LOOP]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    let run_id = run.report["run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the report names no store run: {}", run.report));
    let conn = db(run.dir.path());
    let (status, exit, runaway, mode_name, socket): (String, i32, bool, String, Option<String>) =
        conn.query_row(
            "SELECT status, exit_code, runaway, mode, control_socket FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("the run's row");
    assert_eq!(
        (status.as_str(), exit, runaway),
        ("stopped", EXIT_STOPPED, true)
    );
    assert_eq!(mode_name, mode.flag());
    assert_eq!(
        socket, None,
        "an ended run still advertises a control socket"
    );
    assert!(
        count(&conn, "SELECT count(*) FROM samples") >= 1,
        "no samples stored"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM decisions WHERE action = 'kill'"
        ),
        1,
        "the kill decision is not on record"
    );
    assert!(
        count(
            &conn,
            "SELECT count(*) FROM findings WHERE kind = 'output_loop'"
        ) >= 1,
        "the decision's findings are not on record"
    );
    let types: Vec<String> = conn
        .prepare("SELECT type FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        types.first().map(String::as_str),
        Some("run_started"),
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("run_ended"),
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "incident"), "{types:?}");

    // Confidence may build up through an alert before the kill.
    let listed = incidents_json(&run.dir.path().join("sentry.db"), &["--action", "kill"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let inc = &listed[0];
    assert_eq!(inc["run_id"], run_id);
    assert_eq!(inc["kind"], "output_loop");
    assert_eq!(inc["action"], "kill");
    assert_eq!(inc["evidence"]["period"], 1);
    assert!(
        inc["evidence"]["example"][0]
            .as_str()
            .is_some_and(|l| l.contains("upstream refused the connection")),
        "the repeating line is not in the evidence: {inc}"
    );
    assert!(
        inc["evidence"]["repeats"].as_u64().unwrap_or(0) >= 5,
        "{inc}"
    );
}

#[test]
fn a_stopped_runaway_is_recorded_with_its_evidence_kernel() {
    a_stopped_runaway_is_recorded_with_its_evidence(TestMode::Kernel);
}

#[test]
fn a_stopped_runaway_is_recorded_with_its_evidence_fallback() {
    a_stopped_runaway_is_recorded_with_its_evidence(TestMode::Fallback);
}

/// Fake credentials of real shapes; the distinctive part of each must never be stored.
const SECRETS: &[(&str, &str)] = &[
    ("AKIAZ7QX4PLM2NB8VCDE", "AKIAZ7QX4PLM2NB8VCDE"),
    (
        "ghp_Fq8sLk2Jd9Wm4Xz7Rt1Yv6Bn3Hc5Pa0Qe2Ug",
        "Fq8sLk2Jd9Wm4Xz7Rt1Yv6Bn3Hc5Pa0Qe2Ug",
    ),
    ("password=Tr0ub4dor-and-3-horses", "Tr0ub4dor-and-3-horses"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZW50cnktdGVzdCJ9.c2lnbmF0dXJlLWZha2UtZm9yLXRlc3Rz",
        "c2lnbmF0dXJlLWZha2UtZm9yLXRlc3Rz",
    ),
    ("https://deploy:S3cr3tPassw0rdXyz@git.example.test/repo.git", "S3cr3tPassw0rdXyz"),
];

fn secrets_printed_by_a_child_never_reach_the_store(mode: TestMode) {
    require_mode!(mode);
    let line = SECRETS
        .iter()
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join(" ");
    // The secrets are in the output (the loop's evidence) and on the command line.
    let script = format!(
        "while true; do echo 'login failed with {line}, retrying'; sleep 0.02; done # {}",
        SECRETS[1].0
    );
    let run = run_mode(mode, &[], &["sh", "-c", &script]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    // The run must have recorded evidence for this test to mean anything.
    let listed = incidents_json(&run.dir.path().join("sentry.db"), &[]);
    let example = listed[0]["evidence"]["example"][0].as_str().unwrap_or("");
    assert!(
        example.contains("login failed with") && example.contains("REDACTED"),
        "the evidence line is missing or unredacted: {example:?}"
    );
    // Byte-wise over the database and its WAL: nothing secret, anywhere.
    let mut bytes = Vec::new();
    for name in ["sentry.db", "sentry.db-wal"] {
        if let Ok(b) = std::fs::read(run.dir.path().join(name)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 4096, "the store is empty");
    for (_, core) in SECRETS {
        assert!(
            !bytes.windows(core.len()).any(|w| w == core.as_bytes()),
            "{core:?} is in the SQLite file"
        );
    }
    // Nor in the report or on stderr.
    let report = run.report.to_string();
    for (_, core) in SECRETS {
        assert!(!report.contains(core), "{core:?} is in the report");
        assert!(!run.stderr.contains(core), "{core:?} is in sentry's stderr");
    }
}

#[test]
fn secrets_printed_by_a_child_never_reach_the_store_kernel() {
    secrets_printed_by_a_child_never_reach_the_store(TestMode::Kernel);
}

#[test]
fn secrets_printed_by_a_child_never_reach_the_store_fallback() {
    secrets_printed_by_a_child_never_reach_the_store(TestMode::Fallback);
}

#[test]
fn two_runs_and_a_reader_at_once_lose_no_rows() {
    require_mode!(TestMode::Kernel);
    let dir = run_dir(TestMode::Kernel);
    let store = dir.path().join("sentry.db");
    let start = |n: u32| {
        let sub = dir.path().join(format!("run{n}"));
        std::fs::create_dir_all(&sub).unwrap();
        let mut cmd = mode_command(TestMode::Kernel, &[], &["sh", "-c", LOOP], &sub);
        cmd.env("SENTRY_DB", &store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().expect("sentry starts")
    };
    let a = start(1);
    let b = start(2);
    // A reader hammering the store meanwhile, as a dashboard would.
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            for _ in 0..40 {
                if store.exists() {
                    incidents_json(&store, &[]);
                    reads += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            reads
        })
    };
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    assert!(reader.join().unwrap() > 0, "the reader never read");
    for out in &outs {
        assert_eq!(
            out.status.code(),
            Some(EXIT_STOPPED),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("store"),
            "a run complained about the store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn = Connection::open(&store).unwrap();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM runs WHERE status = 'stopped'"),
        2
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(DISTINCT run_id) FROM incidents WHERE action = 'kill'"
        ),
        2
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM events WHERE type = 'run_ended'"
        ),
        2
    );
}

#[test]
fn a_damaged_store_costs_the_record_not_the_run() {
    require_mode!(TestMode::Kernel);
    let dir = run_dir(TestMode::Kernel);
    let junk = b"not a database at all\n".repeat(100);
    std::fs::write(dir.path().join("sentry.db"), &junk).unwrap();
    let out = mode_command(
        TestMode::Kernel,
        &[],
        &["sh", "-c", "echo done; exit 3"],
        dir.path(),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the child's own status: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    assert!(
        stderr.contains("not recording this run") && stderr.contains("not a sentry database"),
        "no clear word about the store: {stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("sentry.db")).unwrap(),
        junk,
        "the file was changed"
    );
    // And the reader says the same, without a panic.
    let out = Command::new(sentry_bin())
        .args(["incidents", "--db"])
        .arg(dir.path().join("sentry.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mv "));
}

#[test]
fn a_locked_store_costs_the_record_not_the_run() {
    require_mode!(TestMode::Kernel);
    let dir = run_dir(TestMode::Kernel);
    let path = dir.path().join("sentry.db");
    // A first run creates the store; then someone holds its write lock.
    let first = mode_command(TestMode::Kernel, &[], &["true"], dir.path())
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = mode_command(
        TestMode::Kernel,
        &[],
        &["sh", "-c", "echo still ran"],
        dir.path(),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still ran\n");
    assert!(
        stderr.contains("locked by another process"),
        "no clear word about the lock: {stderr}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
}
