//! End-to-end tests of `sentry run` in kernel mode: real children, the real eBPF probe, real
//! cgroups. They need root; elsewhere they print why they skip, and under `CI=true` they fail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sentry_tests::{
    cgroup_from_stderr, event_text, finish, process_exists, require_kernel_mode, run_sentry,
    sentry_command,
};

/// The real python3 interpreter (not a version-manager shim, whose own shell plumbing would
/// add writes of its own to the run), or `None` when there is none.
fn python3() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

/// Asserts the exact accounting invariant of the capture.
fn assert_accounting(run: &sentry_tests::RunResult) {
    let total = run.field("writes_total");
    let parts =
        run.field("events_captured") + run.field("writes_counted_only") + run.field("events_lost");
    assert_eq!(
        total, parts,
        "captured + counted_only + lost must equal writes_total; report: {}",
        run.report
    );
}

#[test]
fn every_line_is_captured_in_order_with_its_pid_and_fd() {
    require_kernel_mode!();
    let Some(python) = python3() else {
        panic!("python3 is needed for this test");
    };
    let script = r#"
import os, sys
open(sys.argv[1], "w").write(str(os.getpid()))
for i in range(3000):
    os.write(1, b"out line %d\n" % i)
    if i % 4 == 0:
        os.write(2, b"err line %d\n" % i)
"#;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let pid_arg = pid_file.to_str().unwrap();
    let run = run_sentry(&["--mode", "kernel"], &[&python, "-c", script, pid_arg]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);

    let expected_out: String = (0..3000).map(|i| format!("out line {i}\n")).collect();
    let expected_err: String = (0..3000)
        .step_by(4)
        .map(|i| format!("err line {i}\n"))
        .collect();
    assert_eq!(
        run.stdout, expected_out,
        "the child's stdout must reach sentry's stdout unchanged"
    );
    assert!(
        run.output_on(1) == expected_out,
        "captured stdout differs from what was written"
    );
    assert!(
        run.output_on(2) == expected_err,
        "captured stderr differs from what was written"
    );

    let pid: u64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for event in &run.events {
        assert_eq!(
            event["pid"].as_u64(),
            Some(pid),
            "event from an unexpected pid: {event}"
        );
    }
    assert_eq!(run.field("events_lost"), 0, "report: {}", run.report);
    assert_eq!(
        run.field("writes_counted_only"),
        0,
        "report: {}",
        run.report
    );
    // 3000 stdout lines, 750 stderr lines and the write of the pid file.
    assert_eq!(
        run.field("events_captured"),
        3000 + 750 + 1,
        "report: {}",
        run.report
    );
    assert_eq!(
        run.field("writes_total"),
        3000 + 750 + 1,
        "report: {}",
        run.report
    );
    let pid_len = pid.to_string().len();
    assert_eq!(
        run.field("bytes_captured"),
        (expected_out.len() + expected_err.len() + pid_len) as u64
    );
    assert_eq!(run.report["mode"], "kernel");
    assert_eq!(run.report["command"][0], python.as_str());
    assert_accounting(&run);
}

#[test]
fn grandchildren_are_captured() {
    require_kernel_mode!();
    let run = run_sentry(
        &[],
        &[
            "sh",
            "-c",
            "sh -c 'sh -c \"echo grandchild-says-hi\"'; echo child-says-hi",
        ],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let texts: Vec<String> = run.events.iter().map(event_text).collect();
    let grandchild = run
        .events
        .iter()
        .find(|e| event_text(e) == "grandchild-says-hi\n")
        .unwrap_or_else(|| panic!("grandchild's line not captured; captured: {texts:?}"));
    let child = run
        .events
        .iter()
        .find(|e| event_text(e) == "child-says-hi\n")
        .unwrap_or_else(|| panic!("child's line not captured; captured: {texts:?}"));
    assert_ne!(
        grandchild["pid"], child["pid"],
        "the grandchild is a different process"
    );
}

/// Runs ten lines under sentry while a writer outside it writes as fast as it can, with the
/// probe finding cgroup ids the way `lookup` says (`SENTRY_PROBE_CGROUP_ID`): exactly the run's
/// lines are captured and counted.
fn only_the_runs_writes_are_captured(lookup: &str) {
    require_kernel_mode!();
    let mut outside = Command::new("sh")
        .args(["-c", "while :; do echo OUTSIDE-MARKER; done"])
        .stdout(Stdio::null())
        .spawn()
        .expect("sh can be started");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = sentry_command(
        &["--mode", "kernel"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo inside-$i; sleep 0.05; done",
        ],
        dir.path(),
    )
    .env("SENTRY_PROBE_CGROUP_ID", lookup)
    .output()
    .expect("sentry can be started");
    let run = finish(out.status, out.stdout, out.stderr, dir);
    let _ = outside.kill();
    let _ = outside.wait();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{lookup}: stderr: {}",
        run.stderr
    );
    let captured = run.output_on(1);
    assert!(
        !captured.contains("OUTSIDE"),
        "{lookup}: captured a write from outside the run: {captured:?}"
    );
    let expected: String = (1..=10).map(|i| format!("inside-{i}\n")).collect();
    assert_eq!(captured, expected, "{lookup}");
    assert_eq!(
        run.field("writes_total"),
        10,
        "{lookup}: only the run's own writes are counted: {}",
        run.report
    );
    assert_accounting(&run);
}

#[test]
fn writes_outside_the_runs_cgroup_are_not_captured() {
    // The default: the probe reads cgroup ids along the task's pointers where it can.
    only_the_runs_writes_are_captured("auto");
}

#[test]
fn cgroup_ids_read_along_the_tasks_pointers_select_the_runs_writes() {
    // `btf` fails the run rather than fall back, so this proves the loads pass the verifier.
    only_the_runs_writes_are_captured("btf");
}

#[test]
fn cgroup_ids_from_the_helper_select_the_runs_writes() {
    only_the_runs_writes_are_captured("helper");
}

#[test]
fn an_unknown_cgroup_id_lookup_is_refused_with_the_choices() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = sentry_command(&["--mode", "kernel"], &["true"], dir.path())
        .env("SENTRY_PROBE_CGROUP_ID", "fast")
        .output()
        .expect("sentry can be started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("SENTRY_PROBE_CGROUP_ID=\"fast\" is not one of auto, btf, helper"),
        "stderr: {stderr}"
    );
}

#[test]
fn concurrent_runs_each_capture_only_their_own_writes() {
    require_kernel_mode!();
    // Two runs overlapping in time, each with its own probe instance and slot: neither may see
    // the other's writes, and each counts exactly its own.
    let script = |tag: &str| {
        format!("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo {tag}-$i; sleep 0.03; done")
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run_sentry(&[], &["sh", "-c", &script("run-a")]));
        let b = scope.spawn(|| run_sentry(&[], &["sh", "-c", &script("run-b")]));
        (a.join(), b.join())
    });
    let (a, b) = (a.expect("run a finished"), b.expect("run b finished"));
    for (run, tag) in [(&a, "run-a"), (&b, "run-b")] {
        assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
        let expected: String = (1..=12).map(|i| format!("{tag}-{i}\n")).collect();
        assert_eq!(
            run.output_on(1),
            expected,
            "{tag} captured exactly its own lines"
        );
        assert_eq!(run.field("writes_total"), 12, "{tag}: {}", run.report);
        assert_accounting(run);
    }
}

#[test]
fn event_times_follow_the_writes_to_within_a_tick() {
    require_kernel_mode!();
    // The probe reads the clock once per scheduler tick and CPU (1-10 ms): a record's time may
    // be early by up to one tick, never late, and times of writes 100 ms apart stay 100 ms
    // apart give or take that.
    let run = run_sentry(
        &["--mode", "kernel"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.1; done",
        ],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let times: Vec<u64> = run
        .events
        .iter()
        .filter(|e| event_text(e).starts_with("tick-"))
        .map(|e| e["at_ns"].as_u64().expect("every event has at_ns"))
        .collect();
    assert_eq!(times.len(), 6, "events: {:?}", run.events);
    for pair in times.windows(2) {
        let gap_ms = (pair[1] as f64 - pair[0] as f64) / 1e6;
        assert!(
            (85.0..=140.0).contains(&gap_ms),
            "writes 100 ms apart were stamped {gap_ms:.1} ms apart: {times:?}"
        );
    }
    let duration_ns = run.report["duration_s"].as_f64().expect("duration_s") * 1e9;
    assert!(
        (*times.last().unwrap() as f64) < duration_ns,
        "the last write is stamped within the run: {times:?}, duration {duration_ns} ns"
    );
}

#[test]
fn writev_is_captured() {
    require_kernel_mode!();
    let Some(python) = python3() else {
        panic!("python3 is needed for this test");
    };
    let run = run_sentry(
        &[],
        &[
            &python,
            "-c",
            "import os; os.writev(1, [b'first-iovec ', b'second-iovec\\n'])",
        ],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let event = run
        .events
        .iter()
        .find(|e| event_text(e).starts_with("first-iovec"))
        .unwrap_or_else(|| panic!("writev not captured; events: {:?}", run.events));
    assert_eq!(
        event_text(event),
        "first-iovec ",
        "the first iovec is captured"
    );
    assert_eq!(
        event["written_len"].as_u64(),
        Some(25),
        "written_len sums every iovec"
    );
    assert_eq!(event["fd"].as_u64(), Some(1));
}

#[test]
fn the_cgroup_is_removed_after_the_run() {
    require_kernel_mode!();
    let run = run_sentry(&[], &["echo", "done"]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let cgroup = run.cgroup();
    assert!(
        !cgroup.exists(),
        "{} still exists after the run",
        cgroup.display()
    );
}

#[test]
fn the_cgroup_is_removed_after_the_child_is_killed() {
    require_kernel_mode!();
    let run = run_sentry(&[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(run.status.code(), Some(128 + 9), "stderr: {}", run.stderr);
    assert_eq!(run.report["signal"].as_i64(), Some(9));
    assert_eq!(run.report["exit_code"].as_i64(), Some(137));
    let cgroup = run.cgroup();
    assert!(
        !cgroup.exists(),
        "{} still exists after the run",
        cgroup.display()
    );
}

#[test]
fn background_processes_left_behind_are_killed_with_the_cgroup() {
    require_kernel_mode!();
    let run = run_sentry(
        &[],
        &["sh", "-c", "sleep 300 & echo $! > bg.pid; echo started"],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let bg: i32 = std::fs::read_to_string(run.dir.path().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !process_exists(bg),
        "the background sleep {bg} survived the run"
    );
    assert_eq!(
        run.field("leftover_processes_killed"),
        1,
        "report: {}",
        run.report
    );
    assert!(!run.cgroup().exists());
}

#[test]
fn sigterm_to_sentry_is_forwarded_and_the_cgroup_removed() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sentry_command(
        &[],
        &["sh", "-c", "echo $$ > child.pid; exec sleep 300"],
        dir.path(),
    );
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let cgroup = cgroup_from_stderr(&first).unwrap_or_else(|| panic!("no start line: {first:?}"));
    assert!(
        cgroup.exists(),
        "the run's cgroup {} exists while it runs",
        cgroup.display()
    );
    let pid_file = dir.path().join("child.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists()
        || std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the child never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let run = finish(
        status,
        Vec::new(),
        format!("{first}{rest}").into_bytes(),
        dir,
    );
    assert_eq!(
        run.status.code(),
        Some(128 + 15),
        "sentry exits like its child did; stderr: {}",
        run.stderr
    );
    assert!(
        !process_exists(sleeper),
        "the child {sleeper} survived SIGTERM to sentry"
    );
    assert!(
        !cgroup.exists(),
        "{} still exists after SIGTERM",
        cgroup.display()
    );
}

#[test]
fn the_exit_status_is_propagated() {
    require_kernel_mode!();
    let run = run_sentry(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(run.status.code(), Some(7), "stderr: {}", run.stderr);
    assert_eq!(run.report["exit_code"].as_i64(), Some(7));
    let run = run_sentry(&[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(run.status.code(), Some(128 + 15), "stderr: {}", run.stderr);
}

#[test]
fn a_missing_command_exits_127_with_a_message() {
    require_kernel_mode!();
    let run = run_sentry(&[], &["sentry-test-no-such-command"]);
    assert_eq!(run.status.code(), Some(127), "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .contains("sentry-test-no-such-command: command not found"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn a_non_executable_file_exits_126_with_a_message() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "echo never\n").unwrap();
    let run = run_sentry(&[], &[script.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(126), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("cannot execute"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn writes_beyond_the_budget_are_counted_exactly() {
    require_kernel_mode!();
    let Some(python) = python3() else {
        panic!("python3 is needed for this test");
    };
    // A tiny budget (1000/s for the run, burst 20k) still captures the burst, then counts.
    let run = run_sentry(
        &["--capture-budget", "1000"],
        &[
            &python,
            "-c",
            "import os\nfor i in range(200000): os.write(1, b'x\\n')",
        ],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.field("writes_total") >= 200_000,
        "report: {}",
        run.report
    );
    assert!(
        run.field("writes_counted_only") > 0,
        "the budget must have run out: {}",
        run.report
    );
    assert_eq!(run.report["capture_budget_exceeded"], true);
    // Every captured output chunk is in the events file (with --events nothing is shed);
    // captured writes to files or pipes inside the tree are counted apart.
    assert_eq!(run.field("chunks_shed"), 0, "report: {}", run.report);
    assert_eq!(
        run.field("events_captured") - run.field("writes_not_output"),
        run.events.len() as u64,
        "report: {}",
        run.report
    );
    assert_accounting(&run);
}

#[test]
fn one_budget_is_shared_by_writers_on_every_cpu() {
    require_kernel_mode!();
    let Some(python) = python3() else {
        panic!("python3 is needed for this test");
    };
    // Two writers, each pinned to its own CPU, each writing 60,000 lines at full speed under a
    // budget of 1 capture/s: the run's one bucket holds the burst of 20,000 captures, and
    // every write beyond it is counted only, whichever CPU it came from. (Buckets per CPU
    // would capture 40,000.) Racing CPUs may admit a few captures on one token.
    let script = r#"
import os, sys
n = os.cpu_count() or 1
pids = []
for cpu in range(2):
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {cpu % n})
        for i in range(60000):
            os.write(1, b"line %d from cpu %d\n" % (i, cpu))
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
"#;
    let run = run_sentry(
        &["--mode", "kernel", "--capture-budget", "1"],
        &[&python, "-c", script],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.field("writes_total") >= 120_000,
        "report: {}",
        run.report
    );
    let captured = run.field("events_captured");
    assert!(
        (20_000..=20_500).contains(&captured),
        "one burst of 20,000 for the whole run, got {captured}: {}",
        run.report
    );
    assert_accounting(&run);
}

#[test]
fn the_child_keeps_a_terminal() {
    require_kernel_mode!();
    // `script` gives sentry a pseudo-terminal; the child must see it as its stdout.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = sentry_tests::sentry_bin();
    let inner = format!(
        "{} run --report {} -- sh -c '[ -t 1 ] && echo child-has-a-tty'",
        bin.display(),
        dir.path().join("r.json").display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("child-has-a-tty"), "output: {text}");
    assert!(Path::new(&dir.path().join("r.json")).exists());
}

#[test]
fn large_writes_are_captured_as_a_prefix_with_their_full_length() {
    require_kernel_mode!();
    let Some(python) = python3() else {
        panic!("python3 is needed for this test");
    };
    let run = run_sentry(
        &[],
        &[&python, "-c", "import os; os.write(1, b'y' * 10000)"],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let event = run
        .events
        .iter()
        .find(|e| e["written_len"].as_u64() == Some(10000))
        .unwrap_or_else(|| panic!("the 10000-byte write was not captured: {:?}", run.events));
    assert_eq!(
        event_text(event),
        "y".repeat(4096),
        "payloads are capped at 4096 bytes"
    );
}

#[test]
fn stale_cgroups_of_dead_sentry_processes_are_removed_on_start() {
    require_kernel_mode!();
    // Learn the cgroup parent from a real run, then plant a run directory whose owner is dead.
    let first = run_sentry(&[], &["true"]);
    let parent = first
        .cgroup()
        .parent()
        .expect("run cgroups have a parent")
        .to_path_buf();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = parent.join(format!("run-{dead_pid}-0"));
    std::fs::create_dir(&stale).expect("creating a cgroup directory as root");
    let run = run_sentry(&[], &["true"]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let still_there = stale.exists();
    if still_there {
        let _ = std::fs::remove_dir(&stale);
    }
    assert!(
        !still_there,
        "the stale cgroup {} was not removed",
        stale.display()
    );
}

#[test]
fn memory_and_pids_are_sampled_while_the_tree_runs() {
    require_kernel_mode!();
    let run = run_sentry(&[], &["sh", "-c", "sleep 0.4 & sleep 0.4; wait"]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(run.field("pids_peak") >= 2, "report: {}", run.report);
    assert!(run.field("mem_peak_bytes") > 0, "report: {}", run.report);
}
