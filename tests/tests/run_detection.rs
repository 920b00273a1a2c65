//! `sentry run` feeds what it captures to the detectors and the decision engine: a looping
//! child is reported as a runaway with its evidence (and left running: this release alerts
//! only), a child making progress is not.

use sentry_tests::{require_kernel_mode, run_sentry};

#[test]
fn a_retry_loop_is_reported_as_a_runaway_with_its_evidence() {
    require_kernel_mode!();
    let script = r#"i=0; while [ $i -lt 4000 ]; do i=$((i+1)); echo "attempt $i: connect to 127.0.0.1:5432 failed: connection refused, retrying" >&2; sleep 0.001; done; echo finished"#;
    let run = run_sentry(
        &["--mode", "kernel", "--action", "alert"],
        &["sh", "-c", script],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "alert-only: the child runs to its end; stderr: {}",
        run.stderr
    );
    assert!(run.stdout.contains("finished"), "stdout: {}", run.stdout);
    assert_eq!(run.report["runaway"], true, "report: {}", run.report);
    let incident = &run.report["incidents"][0];
    assert_eq!(incident["kind"], "output_loop", "report: {}", run.report);
    assert_eq!(incident["action"], "alert", "report: {}", run.report);
    assert_eq!(incident["evidence"]["period"], 1, "report: {}", run.report);
    let pattern = incident["evidence"]["pattern"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        pattern.contains("attempt <int>: connect to <ip> failed"),
        "the pattern is the normalised line, got {pattern:?}"
    );
    assert!(
        incident["detected_after_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "report: {}",
        run.report
    );
    assert!(
        run.stderr.contains("sentry: alert after"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn a_job_making_progress_is_not_a_runaway() {
    require_kernel_mode!();
    let script = r#"i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo "step $i/3000: wrote shard-$i.parquet"; sleep 0.001; done"#;
    let run = run_sentry(
        &["--mode", "kernel", "--action", "alert"],
        &["sh", "-c", script],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.report["runaway"], false, "report: {}", run.report);
    assert_eq!(
        run.report["incidents"].as_array().map(Vec::len),
        Some(0),
        "report: {}",
        run.report
    );
}

#[test]
fn a_bad_policy_file_is_refused_before_the_command_starts() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[cpu]\nno_such_key = 3\n").unwrap();
    let marker = dir.path().join("started");
    let out = std::process::Command::new(sentry_tests::sentry_bin())
        .args(["run", "--policy"])
        .arg(&policy)
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(
        stderr.contains("no_such_key"),
        "stderr names the key: {stderr}"
    );
    assert!(!marker.exists(), "the command must not have run");
}
