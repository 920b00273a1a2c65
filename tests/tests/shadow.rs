//! `sentry run --shadow` and `--no-output-timeout` end to end, in kernel mode (root) and in
//! fallback mode (as `nobody`): a runaway under `--shadow --action kill` runs to its own end
//! while the report, the store and the metrics say what would have been done; the no-output
//! timeout stops an idle, silent job but leaves a silent job that works (compressing) and a
//! job that prints now and then alone.

use std::path::Path;
use std::process::Command;

use rusqlite::Connection;
use sentry_tests::{finish, mode_command, require_mode, run_dir, run_mode, TestMode};

/// sentry's status when it stopped the command.
const EXIT_STOPPED: i32 = 124;

/// sentry's status when its own arguments are wrong.
const EXIT_SENTRY_FAILED: i32 = 125;

/// An output loop that `sentry run --action kill` stops within two seconds, bounded here to
/// ~400 lines (a few seconds) before it exits 3 by itself.
const BOUNDED_LOOP: &str = r#"i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo "attempt $i: GET http://10.0.0.7:8080/health failed: 503 Service Unavailable, retrying in 10ms"; sleep 0.01; done; echo survived; exit 3"#;

fn incidents(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("report has no incidents array: {report}"))
}

fn query_i64(db: &Path, sql: &str) -> i64 {
    let conn =
        Connection::open(db).unwrap_or_else(|e| panic!("open the store {}: {e}", db.display()));
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn shadow_mode_records_a_kill_but_kills_nothing(mode: TestMode) {
    require_mode!(mode);
    let dir = run_dir(mode);
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).expect("a textfile directory");
    if mode == TestMode::Fallback && sentry_tests::is_root() {
        std::os::unix::fs::chown(&textfiles, Some(sentry_tests::NOBODY), None)
            .expect("chown the textfile directory");
    }
    let textfile_arg = textfiles.to_str().expect("a UTF-8 path").to_string();
    let out = mode_command(
        mode,
        &[
            "--shadow",
            "--action",
            "kill",
            "--textfile-dir",
            &textfile_arg,
        ],
        &["sh", "-c", BOUNDED_LOOP],
        dir.path(),
    )
    .output()
    .expect("sentry can be started");
    let run = finish(out.status, out.stdout, out.stderr, dir);
    assert_eq!(
        run.status.code(),
        Some(3),
        "the command's own status, never 124; stderr: {}",
        run.stderr
    );
    assert!(run.stdout.contains("survived"), "the loop ran to its end");
    assert_eq!(run.report["shadow"], true, "report: {}", run.report);
    assert_eq!(run.report["stopped_by_sentry"], false);
    let inc = incidents(&run.report);
    let kill = inc
        .iter()
        .find(|i| i["action"] == "kill")
        .unwrap_or_else(|| panic!("a would-be kill in the report: {}", run.report));
    assert_eq!(kill["kind"], "output_loop", "report: {}", run.report);
    assert_eq!(kill["shadow"], true, "report: {}", run.report);
    let outcome = kill["outcome"].as_str().unwrap_or_default();
    assert!(outcome.contains("would have"), "outcome: {outcome}");
    assert!(inc.iter().all(|i| i["shadow"] == true), "{}", run.report);
    let after = run.report["would_have_stopped_after_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("would_have_stopped_after_s: {}", run.report));
    assert!(after < 10.0, "would have stopped after {after} s");
    assert!(
        run.stderr
            .contains("sentry (shadow): would have killed the command after"),
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Shadow mode: would have stopped the command after")
            && run.stderr.contains("nothing was done"),
        "summary: {}",
        run.stderr
    );

    let db = run.dir.path().join("sentry.db");
    assert_eq!(query_i64(&db, "SELECT shadow FROM runs"), 1);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM incidents WHERE action = 'kill' AND shadow = 1"
        ),
        1
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM incidents WHERE shadow = 0"),
        0
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM runs WHERE status = 'exited'"),
        1
    );

    let text = std::fs::read_to_string(textfiles.join("sentry.prom"))
        .unwrap_or_else(|e| panic!("the textfile was written: {e}; stderr: {}", run.stderr));
    assert!(
        text.contains("sentry_shadow_actions_total{action=\"kill\",kind=\"output_loop\"} 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("sentry_actions_total{action=\"kill\"}")
            && !text.contains("sentry_incidents_total{kind=\"output_loop\",action=\"kill\"}"),
        "a would-be kill counted as a kill:\n{text}"
    );
}

fn an_idle_silent_job_is_stopped_at_the_no_output_timeout(mode: TestMode) {
    require_mode!(mode);
    let started = std::time::Instant::now();
    let run = run_mode(
        mode,
        &["--no-output-timeout", "3s"],
        &["sh", "-c", "echo starting; sleep 30; echo woke"],
    );
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    assert!(!run.stdout.contains("woke"), "stdout: {}", run.stdout);
    let inc = incidents(&run.report);
    let stop = inc
        .iter()
        .find(|i| i["action"] == "kill")
        .unwrap_or_else(|| panic!("a kill: {}", run.report));
    assert_eq!(stop["kind"], "no_output", "report: {}", run.report);
    assert_eq!(stop["evidence"]["metric"], "silent_s");
    let at = stop["detected_after_s"].as_f64().unwrap_or(f64::MAX);
    assert!(
        (3.0..5.0).contains(&at),
        "stopped after {at} s (timeout 3 s); report: {}",
        run.report
    );
    assert!(took < 10.0, "sentry took {took:.1} s in all");
    let summary = stop["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("no output for") && summary.contains("no CPU or I/O progress"),
        "{summary}"
    );
}

fn a_silent_polling_loop_is_stopped_at_the_no_output_timeout(mode: TestMode) {
    require_mode!(mode);
    // Wakes twice a second to look for a file that never comes: processes start and read
    // syscalls are made, but nothing is written and no real work is done.
    let script = "echo waiting for the lock; while sleep 0.5; do test -e /nonexistent/lock && break; done; echo got it";
    let run = run_mode(mode, &["--no-output-timeout", "3s"], &["sh", "-c", script]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    let stop = incidents(&run.report)
        .into_iter()
        .find(|i| i["action"] == "kill")
        .unwrap_or_else(|| panic!("a kill: {}", run.report));
    assert_eq!(stop["kind"], "no_output", "report: {}", run.report);
    let at = stop["detected_after_s"].as_f64().unwrap_or(f64::MAX);
    // At the timeout, give or take the samples of a loaded machine.
    assert!(
        (3.0..7.0).contains(&at),
        "stopped after {at} s: {}",
        run.report
    );
}

fn a_silent_busy_compressor_is_not_stopped_by_the_no_output_timeout(mode: TestMode) {
    require_mode!(mode);
    // Silent, CPU-bound, about 8-10 s on a shared two-core host; exits 0.
    let script = "head -c 120000000 /dev/urandom | gzip -1 > /dev/null && echo compressed";
    let run = run_mode(mode, &["--no-output-timeout", "3s"], &["sh", "-c", script]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("compressed"), "stdout: {}", run.stdout);
    assert!(
        incidents(&run.report)
            .iter()
            .all(|i| i["kind"] != "no_output"),
        "a working job was taken for silent: {}",
        run.report
    );
}

fn a_job_printing_every_second_is_not_stopped_by_the_no_output_timeout(mode: TestMode) {
    require_mode!(mode);
    let script = r#"i=0; while [ $i -lt 8 ]; do i=$((i+1)); echo "step $i of 8"; sleep 1; done"#;
    let run = run_mode(mode, &["--no-output-timeout", "3s"], &["sh", "-c", script]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        incidents(&run.report)
            .iter()
            .all(|i| i["kind"] != "no_output"),
        "{}",
        run.report
    );
}

macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod kernel {
            $(#[test] fn $name() { super::$name(sentry_tests::TestMode::Kernel) })*
        }
        mod fallback {
            $(#[test] fn $name() { super::$name(sentry_tests::TestMode::Fallback) })*
        }
    };
}

in_both_modes!(
    shadow_mode_records_a_kill_but_kills_nothing,
    an_idle_silent_job_is_stopped_at_the_no_output_timeout,
    a_silent_polling_loop_is_stopped_at_the_no_output_timeout,
    a_silent_busy_compressor_is_not_stopped_by_the_no_output_timeout,
    a_job_printing_every_second_is_not_stopped_by_the_no_output_timeout,
);

#[test]
fn a_bad_no_output_timeout_is_refused_before_the_run() {
    for bad in ["0", "0s", "-3s", "soon", "5 parsecs"] {
        let out = Command::new(sentry_tests::sentry_bin())
            .args(["run", "--no-db", "--no-output-timeout", bad, "--", "true"])
            .output()
            .expect("sentry can be started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(EXIT_SENTRY_FAILED),
            "{bad:?}: {stderr}"
        );
        assert!(
            stderr.contains("--no-output-timeout") && stderr.contains("duration"),
            "{bad:?}: {stderr}"
        );
    }
}
