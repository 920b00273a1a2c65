//! `sentry run` end to end: real children that loop, spin, balloon, make progress, fork and
//! exit, under the real binary, in kernel mode (root, eBPF + cgroup) and in fallback mode (as
//! `nobody`, PTY + /proc). Each behaviour is one function run in both modes.
//!
//! CPU thresholds are set low (`--max-cpu 25` for a spin, 40 for busy jobs) so that a spinning child counts as busy even
//! when other tests share the two CPUs; what these tests check is the decision (stopped or
//! left alone), never a speed. Time-to-detect is measured by `cargo xtask bench detect-live`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sentry_tests::{
    finish, mode_command, process_exists, require_mode, run_dir, run_mode, TestMode,
};

/// sentry's status when it stopped the command.
const EXIT_STOPPED: i32 = 124;

fn incidents(run: &sentry_tests::RunResult) -> Vec<serde_json::Value> {
    run.report["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("report has no incidents array: {}", run.report))
}

fn python3() -> &'static str {
    "python3"
}

/// The incidents where sentry acted (an alert may precede them while confidence builds up).
fn actions_taken(run: &sentry_tests::RunResult) -> Vec<serde_json::Value> {
    incidents(run)
        .into_iter()
        .filter(|i| i["action"] != "alert")
        .collect()
}

fn spin_loop_with_no_output_is_stopped(mode: TestMode) {
    require_mode!(mode);
    // Counts to 300 million (a minute or more), starting no process and writing nothing, then
    // exits 0: if sentry does not stop it, the status says so.
    let script = "i=0; while [ $i -lt 300000000 ]; do i=$((i+1)); done";
    let run = run_mode(
        mode,
        &["--max-cpu", "25", "--window", "3"],
        &["sh", "-c", script],
    );
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    let inc = incidents(&run);
    assert_eq!(inc[0]["kind"], "cpu_burn", "report: {}", run.report);
    assert_eq!(inc[0]["action"], "kill", "report: {}", run.report);
    assert_eq!(run.report["stopped_by_sentry"], true);
    assert_eq!(run.report["mode"], mode.flag());
    assert!(
        run.stderr.contains("Process stopped by sentry"),
        "summary on stderr: {}",
        run.stderr
    );
}

fn output_loop_is_stopped_within_seconds(mode: TestMode) {
    require_mode!(mode);
    let script = r#"i=0; while [ $i -lt 6000 ]; do i=$((i+1)); echo "attempt $i: GET http://10.0.0.7:8080/health failed: 503 Service Unavailable, retrying in 10ms"; sleep 0.01; done; echo survived"#;
    let run = run_mode(mode, &[], &["sh", "-c", script]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    assert!(!run.stdout.contains("survived"), "the loop ran to its end");
    let inc = actions_taken(&run);
    assert_eq!(inc[0]["kind"], "output_loop", "report: {}", run.report);
    assert_eq!(inc[0]["action"], "kill", "report: {}", run.report);
    assert_eq!(inc[0]["evidence"]["period"], 1, "report: {}", run.report);
    let after = inc[0]["detected_after_s"].as_f64().unwrap_or(f64::MAX);
    assert!(
        after < 10.0,
        "detected after {after} s; report: {}",
        run.report
    );
    assert!(
        run.stderr.contains("Runaway detected in"),
        "summary on stderr: {}",
        run.stderr
    );
}

fn cpu_heavy_job_printing_progress_is_not_stopped(mode: TestMode) {
    require_mode!(mode);
    let script = r#"i=0; while [ $i -lt 40 ]; do j=0; while [ $j -lt 30000 ]; do j=$((j+1)); done; i=$((i+1)); echo "epoch $i/40: loss=0.$((9000 - i * 97)) acc=0.$((5000 + i * 111))"; done; echo done"#;
    let run = run_mode(
        mode,
        &["--max-cpu", "40", "--window", "2"],
        &["sh", "-c", script],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("done"), "stdout: {}", run.stdout);
    assert!(
        incidents(&run).iter().all(|i| i["action"] == "alert"),
        "never stopped: {}",
        run.report
    );
}

fn cpu_heavy_silent_job_with_file_io_is_not_stopped(mode: TestMode) {
    require_mode!(mode);
    // gzip over 150 MB of pseudo-random data: silent, CPU-bound, steady file I/O.
    let script = r#"head -c 150000000 /dev/urandom > input.bin && gzip -1 -c input.bin > output.gz && gzip -1 -c output.gz > output2.gz && echo compressed"#;
    let run = run_mode(
        mode,
        &["--max-cpu", "40", "--window", "2"],
        &["sh", "-c", script],
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("compressed"), "stdout: {}", run.stdout);
    assert!(
        incidents(&run).iter().all(|i| i["action"] == "alert"),
        "never stopped: {}",
        run.report
    );
}

fn slow_healthy_heartbeat_is_not_stopped(mode: TestMode) {
    require_mode!(mode);
    let script = r#"i=0; while [ $i -lt 8 ]; do i=$((i+1)); echo "heartbeat: worker alive, queue empty"; sleep 0.5; done"#;
    let run = run_mode(mode, &[], &["sh", "-c", script]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        incidents(&run).iter().all(|i| i["action"] == "alert"),
        "never stopped: {}",
        run.report
    );
}

fn memory_balloon_past_max_memory_is_stopped(mode: TestMode) {
    require_mode!(mode);
    let script = "import time\nheld = []\nfor _ in range(100):\n    held.append(bytearray(b'x' * (16 << 20)))\n    time.sleep(0.05)\nprint('allocated 1.6 GB')\n";
    let run = run_mode(mode, &["--max-memory", "200M"], &[python3(), "-c", script]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    let inc = actions_taken(&run);
    assert_eq!(inc[0]["kind"], "memory_growth", "report: {}", run.report);
    assert_eq!(inc[0]["action"], "kill", "report: {}", run.report);
    let peak = run.report["mem_peak_bytes"].as_u64().unwrap_or(0);
    assert!(peak >= 200 << 20, "peak {peak}; report: {}", run.report);
    assert!(!run.stdout.contains("allocated"), "ran to its end");
}

fn a_parent_that_exits_leaves_no_process_behind(mode: TestMode) {
    require_mode!(mode);
    let dir = run_dir(mode);
    let pidfile = dir.path().join("orphan.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {p}; exec sleep 300' </dev/null >/dev/null 2>&1 & sleep 0.5; echo parent done",
        p = pidfile.display()
    );
    let out = mode_command(mode, &[], &["sh", "-c", &script], dir.path())
        .output()
        .expect("sentry starts");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the orphan wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    let run = finish(out.status, out.stdout, out.stderr, dir);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process_exists(pid), "the orphaned sleep {pid} still runs");
    assert!(
        run.report["leftover_processes_killed"].as_u64() >= Some(1),
        "report: {}",
        run.report
    );
}

fn restart_restarts_up_to_the_budget_then_gives_up(mode: TestMode) {
    require_mode!(mode);
    let script = r#"while true; do echo "FATAL: cannot open /var/lib/app/state.db: database is locked, retrying"; sleep 0.01; done"#;
    let run = run_mode(
        mode,
        &["--action", "restart", "--max-restarts", "2"],
        &["sh", "-c", script],
    );
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    assert_eq!(run.report["restarts"], 2, "report: {}", run.report);
    let inc = actions_taken(&run);
    assert_eq!(inc.len(), 3, "one action per attempt: {}", run.report);
    assert_eq!(inc[0]["action"], "restart");
    assert_eq!(inc[1]["action"], "restart");
    assert_eq!(inc[2]["action"], "kill");
    assert!(
        inc[2]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("gave up after 2")),
        "report: {}",
        run.report
    );
}

fn restart_recovers_a_command_that_loops_once(mode: TestMode) {
    require_mode!(mode);
    let script = r#"if [ -e ./looped ]; then echo "recovered: all 12 records imported"; exit 0; fi; touch ./looped; while true; do echo "ERROR lock held by another importer, retrying"; sleep 0.01; done"#;
    let run = run_mode(mode, &["--action", "restart"], &["sh", "-c", script]);
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.report["restarts"], 1, "report: {}", run.report);
    assert!(run.stdout.contains("recovered"), "stdout: {}", run.stdout);
    assert!(
        run.stderr.contains("Process recovered after 1 restart"),
        "stderr: {}",
        run.stderr
    );
}

fn exit_statuses_propagate(mode: TestMode) {
    require_mode!(mode);
    let run = run_mode(mode, &[], &["sh", "-c", "echo bye; exit 7"]);
    assert_eq!(run.status.code(), Some(7), "stderr: {}", run.stderr);
    assert_eq!(run.report["stopped_by_sentry"], false);
    let run = run_mode(mode, &[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(run.status.code(), Some(137), "stderr: {}", run.stderr);
    assert_eq!(run.report["signal"], 9, "report: {}", run.report);
    let run = run_mode(mode, &[], &["sentry-no-such-command"]);
    assert_eq!(run.status.code(), Some(127), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("command not found"), "{}", run.stderr);
}

fn ctrl_c_is_forwarded(mode: TestMode) {
    require_mode!(mode);
    let dir = run_dir(mode);
    let script = r#"trap 'echo "got INT, cleaning up"; exit 130' INT; touch ./ready; while true; do sleep 0.1; done"#;
    let child = mode_command(mode, &[], &["sh", "-c", script], dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sentry starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("ready").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().expect("sentry ends");
    let run = finish(out.status, out.stdout, out.stderr, dir);
    assert_eq!(run.status.code(), Some(130), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("got INT"), "stdout: {}", run.stdout);
}

fn pause_freezes_the_tree_until_resumed(mode: TestMode) {
    require_mode!(mode);
    let dir = run_dir(mode);
    let ticks = dir.path().join("ticks");
    // The loop also writes a file (atomically, by rename: the tree may be frozen between any
    // two of its steps), so it is visible whether the tree runs while paused.
    let script = format!(
        r#"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo "retrying upload: HTTP 429 Too Many Requests"; echo $i > {t}.new; mv {t}.new {t}; sleep 0.01; done"#,
        t = ticks.display()
    );
    let child = mode_command(
        mode,
        &["--action", "pause"],
        &["sh", "-c", &script],
        dir.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sentry starts");
    let read_ticks = || {
        std::fs::read_to_string(&ticks)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Wait for the pause (detection takes about a second), then check nothing moves.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut paused_at = None;
    while Instant::now() < deadline {
        let a = read_ticks();
        std::thread::sleep(Duration::from_millis(600));
        let b = read_ticks();
        if a > 0 && a == b {
            paused_at = Some(b);
            break;
        }
    }
    let pid = child.id() as i32;
    let Some(frozen) = paused_at else {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the tree was never paused (ticks kept moving)");
    };
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(read_ticks(), frozen, "the tree ran while paused");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    // Resuming is immediate; the loop's next tick may take a moment on a loaded machine. A
    // read can also land between the shell's truncation and its write (an empty file).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resumed = read_ticks();
    while resumed <= frozen && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        resumed = read_ticks();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = child.wait_with_output().expect("sentry ends");
    let run = finish(out.status, Vec::new(), out.stderr, dir);
    assert!(
        resumed > frozen,
        "not resumed: {resumed} <= {frozen}; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("paused the command"),
        "stderr: {}",
        run.stderr
    );
    let inc = actions_taken(&run);
    assert_eq!(inc[0]["action"], "pause", "report: {}", run.report);
}

fn the_command_dies_with_sentry(mode: TestMode) {
    require_mode!(mode);
    let dir = run_dir(mode);
    let pidfile = dir.path().join("child.pid");
    let script = format!("echo $$ > {}; exec sleep 300", pidfile.display());
    let mut child = mode_command(mode, &[], &["sh", "-c", &script], dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sentry starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL to sentry");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_exists(pid),
        "the command {pid} runs on without sentry"
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
    spin_loop_with_no_output_is_stopped,
    output_loop_is_stopped_within_seconds,
    cpu_heavy_job_printing_progress_is_not_stopped,
    cpu_heavy_silent_job_with_file_io_is_not_stopped,
    slow_healthy_heartbeat_is_not_stopped,
    memory_balloon_past_max_memory_is_stopped,
    a_parent_that_exits_leaves_no_process_behind,
    restart_restarts_up_to_the_budget_then_gives_up,
    restart_recovers_a_command_that_loops_once,
    exit_statuses_propagate,
    ctrl_c_is_forwarded,
    pause_freezes_the_tree_until_resumed,
    the_command_dies_with_sentry,
);

#[test]
fn quiet_prints_only_actions() {
    require_mode!(TestMode::Kernel);
    let run = run_mode(
        TestMode::Kernel,
        &["--quiet"],
        &["sh", "-c", "echo hello; exit 3"],
    );
    assert_eq!(run.status.code(), Some(3), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "hello\n");
    assert_eq!(run.stderr, "", "nothing from sentry when all is well");
}

#[test]
fn a_terminal_gets_a_live_status_line_that_is_cleared_at_the_end() {
    require_mode!(TestMode::Kernel);
    // `script` gives sentry a pseudo-terminal as stdin/stdout/stderr (of no size until set).
    let sentry = sentry_tests::sentry_bin();
    let inner = format!(
        "stty rows 24 cols 100; {} run --mode kernel -- sh -c 'sleep 2.5; echo finished'",
        sentry.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "output: {text}");
    assert!(text.contains("finished"), "output: {text}");
    assert!(
        text.contains(" sentry · kernel · "),
        "a status line was drawn: {text:?}"
    );
    assert!(
        text.contains("\u{1b}[r"),
        "the scrolling region is restored at the end: {text:?}"
    );
    // Without a terminal there is no status line at all.
    let run = run_mode(
        TestMode::Kernel,
        &[],
        &["sh", "-c", "sleep 1.5; echo finished"],
    );
    assert!(!run.stderr.contains(" sentry · "), "stderr: {}", run.stderr);
}
