//! Per-job cost and learned baselines, end to end: real `sentry run`s of real commands into
//! one real store, a `regression` finding once a job has enough history and runs far past it
//! (and none without that history), `sentry baselines`, and the cost and baseline figures
//! served over HTTP by the real API.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sentry_tests::http::Dashboard;
use sentry_tests::sentry_bin;
use serde_json::Value;

/// Variables that would make a run part of a CI job (and key it by that job instead of by
/// its command line); the tests key by command line.
const CI_VARS: [&str; 6] = [
    "GITHUB_ACTIONS",
    "RUNNER_TRACKING_ID",
    "CI_JOB_ID",
    "GITLAB_CI",
    "BUILDKITE_JOB_ID",
    "BUILD_TAG",
];

/// `sentry run --db DB --report REPORT <extra> -- sh -c 'sleep $DUR'` with `DUR` set: the same
/// command line (so the same job key) whatever the duration.
fn run_sleep(db: &Path, report: &Path, dur: &str, extra: &[&str]) -> (Output, Value) {
    let mut cmd = Command::new(sentry_bin());
    cmd.arg("run")
        .arg("--db")
        .arg(db)
        .arg("--report")
        .arg(report)
        .args(extra)
        .args(["--", "sh", "-c", "sleep \"$DUR\""])
        .env("DUR", dur)
        .stdin(Stdio::null());
    for var in CI_VARS {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("sentry can be started");
    let report: Value = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn regression_incidents(report: &Value) -> Vec<Value> {
    report["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("no incidents array in {report}"))
        .iter()
        .filter(|i| i["kind"] == "regression")
        .cloned()
        .collect()
}

/// Records `n` healthy runs of about 2 s (the history).
fn history(db: &Path, dir: &Path, n: usize, tag: &str) {
    for i in 0..n {
        let (out, report) = run_sleep(
            db,
            &dir.join(format!("h{i}.json")),
            "2",
            &["--job-key", tag],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "history run {i}: {}",
            stderr(&out)
        );
        assert!(
            regression_incidents(&report).is_empty(),
            "a run within its history is no regression: {report}"
        );
    }
}

#[test]
fn a_job_with_five_runs_of_2s_that_now_takes_20s_is_a_regression() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sentry.db");
    history(&db, dir.path(), 5, "ci:acme/web:ci:build");

    let (out, report) = run_sleep(
        &db,
        &dir.path().join("slow.json"),
        "20",
        &["--job-key", "ci:acme/web:ci:build"],
    );
    let err = stderr(&out);
    // A regression alone is alert-level: the job is left to finish.
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("baseline of this job: median "), "{err}");
    assert!(err.contains(", 5 healthy runs"), "{err}");
    let found = regression_incidents(&report);
    assert_eq!(found.len(), 1, "one regression incident: {report}");
    let inc = &found[0];
    assert_eq!(inc["action"], "alert", "{inc}");
    // A run's wall time includes sentry's own start (the probe's load in kernel mode), so the
    // median of `sleep 2` is 2 to 3 s here; 3x it and at least 5 s past it is 7 to 9 s.
    let after = inc["detected_after_s"].as_f64().unwrap_or(0.0);
    assert!(
        (6.5..14.0).contains(&after),
        "detected after {after} s: {inc}"
    );
    let ev = &inc["evidence"];
    assert_eq!(ev["type"], "regression", "{inc}");
    assert_eq!(ev["metric"], "wall_s", "{inc}");
    assert_eq!(ev["runs"], 5, "{inc}");
    assert_eq!(ev["job_key"], "ci:acme/web:ci:build", "{inc}");
    let median = ev["median"].as_f64().unwrap_or(0.0);
    assert!((1.9..3.5).contains(&median), "median {median}");
    // The report compares the whole run with the baseline.
    let ratio = report["baseline"]["wall_ratio"].as_f64().unwrap_or(0.0);
    assert!((5.0..11.0).contains(&ratio), "wall ratio {ratio}: {report}");
    assert_eq!(report["baseline"]["baseline"]["runs"], 5);
    assert!(err.contains("Against its baseline:"), "{err}");

    // The slow run was a runaway, so it does not join the history it was measured against.
    let out = Command::new(sentry_bin())
        .args(["baselines", "--json", "--db"])
        .arg(&db)
        .output()
        .expect("sentry baselines");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["job_key"] == "ci:acme/web:ci:build"))
        .unwrap_or_else(|| panic!("key listed: {rows}"));
    assert_eq!(row["runs_total"], 6, "{row}");
    assert_eq!(row["baseline"]["runs"], 5, "{row}");
    assert_eq!(row["active"], true, "{row}");
    assert_eq!(row["last_status"], "exited", "{row}");

    // The table for people says the same.
    let out = Command::new(sentry_bin())
        .args(["baselines", "--db"])
        .arg(&db)
        .output()
        .expect("sentry baselines");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ci:acme/web:ci:build"), "{table}");
    assert!(table.contains("healthy"), "{table}");
}

#[test]
fn a_job_with_only_four_runs_has_no_baseline_yet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sentry.db");
    history(&db, dir.path(), 4, "short-history");
    let (out, report) = run_sleep(
        &db,
        &dir.path().join("slow.json"),
        "12",
        &["--job-key", "short-history"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        regression_incidents(&report).is_empty(),
        "four runs are not enough history: {report}"
    );
    assert_eq!(report["baseline"], Value::Null, "{report}");
    assert!(!stderr(&out).contains("baseline of this job"));
}

#[test]
fn runs_are_keyed_by_command_line_by_default_and_cost_is_recorded_and_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sentry.db");
    // About a second of CPU, priced at 0.36 per CPU-hour.
    let report_path = dir.path().join("busy.json");
    let mut cmd = Command::new(sentry_bin());
    cmd.arg("run")
        .arg("--db")
        .arg(&db)
        .arg("--report")
        .arg(&report_path)
        .args(["--price-per-cpu-hour", "0.36", "--", "sh", "-c"])
        .arg("i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo done")
        .stdin(Stdio::null());
    for var in CI_VARS {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("sentry");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("JSON");
    let cost = &report["cost"];
    let cpu = cost["cpu_seconds"].as_f64().unwrap_or(0.0);
    assert!(cpu > 0.2, "the loop used CPU: {cost}");
    let money = cost["cost"].as_f64().unwrap_or(-1.0);
    assert!(
        (money - cpu / 3600.0 * 0.36).abs() < 1e-9,
        "money is CPU-hours times the price: {cost}"
    );
    assert!(cost["wall_s"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    let idle = cost["idle_fraction"].as_f64().unwrap_or(-1.0);
    assert!(
        (0.0..0.5).contains(&idle),
        "a busy loop is not idle: {cost}"
    );
    assert!(
        cost["mem_gb_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "memory was measured: {cost}"
    );
    assert!(
        stderr(&out).contains("Cost: ") && stderr(&out).contains("per CPU-hour"),
        "{}",
        stderr(&out)
    );

    // Served over HTTP: the run's cost and its key, and the baselines list.
    let dash = Dashboard::start(&db, &[], &[]);
    let runs = dash.get_json("/runs?kind=run");
    let run = &runs["items"][0];
    assert_eq!(
        run["job_key"], "cmd:sh -c i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo done",
        "{run}"
    );
    assert!(
        (run["cost"].as_f64().unwrap_or(-1.0) - money).abs() < 1e-9,
        "{run}"
    );
    assert!(run["mem_gb_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{run}");
    assert_eq!(run["shadow"], false);
    let watched = dash.get_json("/runs?kind=watch");
    assert_eq!(
        watched["items"],
        Value::Array(vec![]),
        "no watched jobs here"
    );
    let baselines = dash.get_json("/baselines");
    assert_eq!(baselines["min_runs"], 5);
    let item = &baselines["items"][0];
    assert_eq!(item["runs_total"], 1, "{baselines}");
    assert_eq!(
        item["active"], false,
        "one run is not a baseline yet: {baselines}"
    );
    assert_eq!(item["baseline"]["runs"], 1, "{baselines}");
    let bad = dash.get("/baselines?jobkey=x");
    assert_eq!(bad.status, 400, "unknown parameters are refused");
    let bad = dash.get("/runs?kind=cron");
    assert_eq!(bad.status, 400, "unknown kinds are refused");
    dash.stop();
}

#[test]
fn bad_prices_and_a_missing_store_get_clear_answers() {
    let out = Command::new(sentry_bin())
        .args(["run", "--no-db", "--price-per-cpu-hour=-1", "--", "true"])
        .output()
        .expect("sentry");
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(stderr(&out).contains("is not a price"), "{}", stderr(&out));
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("none.db");
    let out = Command::new(sentry_bin())
        .args(["baselines", "--db"])
        .arg(&missing)
        .output()
        .expect("sentry");
    assert!(out.status.success());
    assert!(stderr(&out).contains("no baselines"), "{}", stderr(&out));
    assert!(!missing.exists(), "reading must not create a store");
}
