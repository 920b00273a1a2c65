//! The fallback (PTY) capture backend through its library API, against real child processes:
//! output, the terminal, exit statuses, start errors, leftovers, kill, pause and samples.
//! Nothing here needs privileges; the suite is meant to pass as an unprivileged user too.
#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use sentry::capture::pty::{Echo, Input, PtyOptions};
use sentry::capture::{CaptureRun, FallbackError, FallbackRun, Observation, RunEnd, RunSpec};
use sentry::model::{OutputChunk, Sample};

/// Environment variable that turns this test binary into a helper child (see `helper`).
const HELPER_VAR: &str = "SENTRY_FALLBACK_TEST_HELPER";

/// Runs as a child of the tests when `HELPER_VAR` is set; otherwise does nothing.
#[test]
fn helper() {
    let Ok(role) = std::env::var(HELPER_VAR) else {
        return;
    };
    match role.as_str() {
        "allocate-200mb" => {
            // Filled, so every page is resident.
            let block = vec![1u8; 200 << 20];
            println!("allocated {} bytes", block.len());
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(60));
            drop(block);
        }
        "print-child-environment" => {
            let run = sh("echo \"key=<${SENTRY_API_KEY:-}> marker=<${SENTRY_RUN_MARKER:-}>\"");
            let mut seen = Seen::default();
            finish(&run, &mut seen, Duration::from_secs(30));
            println!("{}", String::from_utf8_lossy(&seen.output()));
        }
        "default-options" => {
            // Echo to stdout and stdin forwarding as `sentry run` uses them.
            let run = FallbackRun::start(&spec(&["sh", "-c", "echo default-ok"]))
                .unwrap_or_else(|err| panic!("starts: {err}"));
            let end = finish(&run, &mut Seen::default(), Duration::from_secs(30));
            println!("ended with {:?}", end.status.code());
        }
        other => panic!("unknown helper role {other}"),
    }
    std::process::exit(0);
}

fn spec(argv: &[&str]) -> RunSpec {
    RunSpec {
        command: argv.iter().map(OsString::from).collect(),
        capture_budget_per_s: 0,
        sample_interval: Duration::from_millis(100),
        floor_probe: false,
        deliver_all: true,
    }
}

/// Quiet terminal plumbing: tests must not print the child's output or read their stdin.
fn quiet() -> PtyOptions {
    PtyOptions {
        echo: Echo::Discard,
        input: Input::None,
        follow_window_size: false,
    }
}

fn start(argv: &[&str]) -> FallbackRun {
    FallbackRun::start_with(&spec(argv), quiet())
        .unwrap_or_else(|err| panic!("{argv:?} should start: {err}"))
}

fn sh(script: &str) -> FallbackRun {
    start(&["sh", "-c", script])
}

/// Everything a run reported.
#[derive(Debug, Default)]
struct Seen {
    chunks: Vec<OutputChunk>,
    samples: Vec<Sample>,
}

impl Seen {
    fn output(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.bytes.clone()).collect()
    }
}

/// Reads observations until the end, failing after `limit`.
fn finish(run: &FallbackRun, seen: &mut Seen, limit: Duration) -> RunEnd {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.observations().recv_timeout(left) {
            Ok(Observation::Output(chunk)) => seen.chunks.push(chunk),
            Ok(Observation::Sample(sample)) => seen.samples.push(sample),
            Ok(Observation::Ended(end)) => return end,
            Err(RecvTimeoutError::Timeout) => panic!(
                "the run did not end within {limit:?}; output so far: {:?}",
                String::from_utf8_lossy(&seen.output())
            ),
            Err(RecvTimeoutError::Disconnected) => panic!("the stream ended without Ended"),
        }
    }
}

/// Reads observations until `want` accepts a sample, failing after `limit`.
fn wait_for_sample(
    run: &FallbackRun,
    seen: &mut Seen,
    limit: Duration,
    what: &str,
    want: impl Fn(&Sample) -> bool,
) -> Sample {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.observations().recv_timeout(left) {
            Ok(Observation::Output(chunk)) => seen.chunks.push(chunk),
            Ok(Observation::Sample(sample)) => {
                seen.samples.push(sample.clone());
                if want(&sample) {
                    return sample;
                }
            }
            Ok(Observation::Ended(end)) => panic!("the run ended before {what}: {end:?}"),
            Err(_) => panic!(
                "no sample showed {what} within {limit:?}; last samples: {:?}",
                seen.samples.iter().rev().take(5).collect::<Vec<_>>()
            ),
        }
    }
}

/// Samples taken over `span`, ignoring output.
fn samples_for(run: &FallbackRun, seen: &mut Seen, span: Duration) -> Vec<Sample> {
    let deadline = Instant::now() + span;
    let mut samples = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match run.observations().recv_timeout(left) {
            Ok(Observation::Output(chunk)) => seen.chunks.push(chunk),
            Ok(Observation::Sample(sample)) => samples.push(sample),
            Ok(Observation::Ended(end)) => panic!("the run ended early: {end:?}"),
            Err(_) => break,
        }
    }
    samples
}

fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn output_arrives_byte_exact_and_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let echo_path = dir.path().join("echo");
    let echo = File::create(&echo_path).expect("echo file");
    let options = PtyOptions {
        echo: Echo::File(echo),
        ..quiet()
    };
    let run = FallbackRun::start_with(
        &spec(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 3000 ]; do printf 'line %d \\033[1mbold\\033[0m\\n' $i; \
             i=$((i+1)); done",
        ]),
        options,
    )
    .expect("starts");
    assert_eq!(run.mode(), "fallback");
    let pid = run.control().pid();
    let mut seen = Seen::default();
    let end = finish(&run, &mut seen, Duration::from_secs(60));
    assert!(end.status.success(), "{end:?}");

    // The terminal turns \n into \r\n (as it does for any program on a terminal); everything
    // else, escape sequences included, arrives as written.
    let expected: Vec<u8> = (0..3000)
        .flat_map(|i| format!("line {i} \x1b[1mbold\x1b[0m\r\n").into_bytes())
        .collect();
    let output = seen.output();
    assert!(
        output == expected,
        "output differs: {} bytes, expected {}; first difference at byte {:?}",
        output.len(),
        expected.len(),
        output.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert!(
        seen.chunks
            .iter()
            .all(|c| c.fd == 1 && c.pid == pid as u32 && c.written_len == c.bytes.len() as u64),
        "chunks carry the child's pid and fd 1"
    );
    assert!(
        seen.chunks.windows(2).all(|w| w[0].at <= w[1].at),
        "chunks are in time order"
    );
    assert_eq!(end.totals.events_captured, seen.chunks.len() as u64);
    assert_eq!(end.totals.writes_total, end.totals.events_captured);
    assert_eq!(end.totals.bytes_captured, expected.len() as u64);
    assert_eq!(end.totals.events_lost, 0);
    drop(run);
    let echoed = fs::read(&echo_path).expect("echo file");
    assert!(
        echoed == expected,
        "the copy of the output is the same bytes"
    );
}

#[test]
fn binary_output_passes_through_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("random");
    let mut bytes = vec![0u8; 256 * 1024];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("random bytes");
    fs::write(&file, &bytes).expect("write");
    // A raw terminal does no output processing, so the bytes arrive exactly as cat wrote them.
    let run = sh(&format!("stty raw -echo; cat '{}'", file.display()));
    let mut seen = Seen::default();
    let end = finish(&run, &mut seen, Duration::from_secs(60));
    assert!(end.status.success(), "{end:?}");
    let output = seen.output();
    assert!(
        output == bytes,
        "{} bytes came back for {} sent; first difference at {:?}",
        output.len(),
        bytes.len(),
        output.iter().zip(&bytes).position(|(a, b)| a != b)
    );
}

#[test]
fn the_command_sees_a_terminal() {
    let run = sh("test -t 0 && test -t 1 && test -t 2 && echo terminal; tty");
    let mut seen = Seen::default();
    let end = finish(&run, &mut seen, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&seen.output()).into_owned();
    assert!(end.status.success(), "{end:?} {text}");
    assert!(text.starts_with("terminal\r\n/dev/pts/"), "{text:?}");
}

#[test]
fn the_exit_status_is_the_commands() {
    let run = sh("exit 42");
    let end = finish(&run, &mut Seen::default(), Duration::from_secs(30));
    assert_eq!(end.status.code(), Some(42), "{end:?}");
    assert_eq!(end.leftover_pids, 0);

    let run = sh("kill -TERM $$");
    let end = finish(&run, &mut Seen::default(), Duration::from_secs(30));
    assert_eq!(end.status.signal(), Some(libc::SIGTERM), "{end:?}");
}

#[test]
fn a_missing_command_is_a_127_error() {
    let err = FallbackRun::start_with(&spec(&["sentry-no-such-command-xyz"]), quiet())
        .err()
        .expect("must not start");
    match &err {
        FallbackError::Spawn(spawn) => assert_eq!(spawn.exit_code(), 127, "{err}"),
        other => panic!("expected a spawn error, got {other}"),
    }
    assert!(err.to_string().contains("command not found"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("not-executable.sh");
    fs::write(&script, "echo hi\n").expect("write");
    let argv = [script.to_str().expect("utf-8 path")];
    match FallbackRun::start_with(&spec(&argv), quiet()).err() {
        Some(FallbackError::Spawn(spawn)) => assert_eq!(spawn.exit_code(), 126, "{spawn}"),
        other => panic!("expected a 126 spawn error, got {other:?}"),
    }
}

#[test]
fn a_daemonized_grandchild_is_killed_and_reaped_when_the_command_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("daemon.pid");
    // setsid(1) puts the inner sh in a new session; it backgrounds a sleep and exits, so the
    // sleep is orphaned outside the command's process group (the classic double fork). It
    // keeps the terminal open, so the output can only end once it is gone.
    let script = format!(
        "setsid sh -c 'sleep 300 & echo $! > \"{}\"'; echo parent done",
        pid_file.display()
    );
    let run = sh(&script);
    let control = run.control();
    let mut seen = Seen::default();
    let end = finish(&run, &mut seen, Duration::from_secs(30));
    assert!(end.status.success(), "{end:?}");
    let daemon: i32 = wait_for_file(&pid_file)
        .trim()
        .parse()
        .expect("a pid in the file");
    assert!(
        end.leftover_pids >= 1,
        "the daemon was found in the tree: {end:?}"
    );
    assert!(
        !process_exists(daemon),
        "the daemon {daemon} is gone, not even a zombie"
    );
    assert!(control.has_ended());
    assert!(String::from_utf8_lossy(&seen.output()).contains("parent done"));
}

#[test]
fn a_daemon_that_outlives_the_command_is_found_while_it_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("daemon.pid");
    let script = format!(
        "setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! > \"{}\"'; sleep 300",
        pid_file.display()
    );
    let run = sh(&script);
    let mut seen = Seen::default();
    let daemon: i32 = wait_for_file(&pid_file)
        .trim()
        .parse()
        .expect("a pid in the file");
    // sh + its sleep + the daemon.
    wait_for_sample(&run, &mut seen, Duration::from_secs(10), "3 pids", |s| {
        s.pids == 3
    });
    let control = run.control();
    control.kill_tree().expect("kill");
    let end = finish(&run, &mut seen, Duration::from_secs(30));
    assert_eq!(end.status.signal(), Some(libc::SIGKILL), "{end:?}");
    assert!(!process_exists(daemon), "the daemon {daemon} is gone");
}

#[test]
fn kill_tree_stops_a_busy_tree() {
    let run = sh("while :; do :; done & while :; do :; done");
    let control = run.control();
    let mut seen = Seen::default();
    wait_for_sample(&run, &mut seen, Duration::from_secs(10), "2 pids", |s| {
        s.pids == 2
    });
    let leader = control.pid();
    let asked = Instant::now();
    control.kill_tree().expect("kill");
    let end = finish(&run, &mut seen, Duration::from_secs(10));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(end.status.signal(), Some(libc::SIGKILL), "{end:?}");
    assert!(control.has_ended());
    assert!(!process_exists(leader));
    assert_eq!(control.describe(), format!("process group {leader}"));
    let last = seen.samples.last().expect("samples");
    assert_eq!(last.pids, 0, "nothing is left: {last:?}");
}

#[test]
fn pause_stops_the_cpu_and_resume_restarts_it() {
    let run = sh("while :; do :; done");
    let control = run.control();
    let mut seen = Seen::default();
    wait_for_sample(&run, &mut seen, Duration::from_secs(10), "CPU use", |s| {
        s.cpu_pct > 20.0
    });
    control.set_paused(true).expect("pause");
    // The sample in flight may cover time before the pause.
    samples_for(&run, &mut seen, Duration::from_millis(250));
    let paused = samples_for(&run, &mut seen, Duration::from_secs(1));
    assert!(paused.len() >= 5, "samples keep coming: {paused:?}");
    assert!(
        paused.iter().all(|s| s.cpu_pct < 3.0),
        "no CPU while paused: {:?}",
        paused.iter().map(|s| s.cpu_pct).collect::<Vec<_>>()
    );
    control.set_paused(false).expect("resume");
    wait_for_sample(&run, &mut seen, Duration::from_secs(10), "CPU again", |s| {
        s.cpu_pct > 20.0
    });
    control.kill_tree().expect("kill");
    finish(&run, &mut seen, Duration::from_secs(10));
}

#[test]
fn samples_show_the_cpu_of_a_busy_child() {
    let run = sh("while :; do :; done");
    let mut seen = Seen::default();
    // A spinning shell takes a whole core; on a shared machine allow a few seconds for one
    // interval where it gets more than half of it.
    let busy = wait_for_sample(&run, &mut seen, Duration::from_secs(10), "> 50% CPU", |s| {
        s.cpu_pct > 50.0
    });
    assert!(busy.cpu_pct < 120.0, "one spinning process: {busy:?}");
    assert!(busy.cpu_usage_us > 0);
    assert_eq!(busy.pids, 1);
    assert!(busy.syscalls.is_none(), "syscalls are not counted here");
    assert!(busy.cpu_pressure_some_avg10.is_none());
    run.control().kill_tree().expect("kill");
    let end = finish(&run, &mut seen, Duration::from_secs(10));
    assert!(end.totals.cpu_usage_us >= busy.cpu_usage_us);
    let usage: Vec<u64> = seen.samples.iter().map(|s| s.cpu_usage_us).collect();
    assert!(
        usage.windows(2).all(|w| w[0] <= w[1]),
        "cumulative CPU never drops: {usage:?}"
    );
}

#[test]
fn samples_show_the_memory_of_a_child_that_allocates() {
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("utf-8 path");
    let command = format!("{HELPER_VAR}=allocate-200mb exec '{exe}' --exact helper --nocapture");
    let run = sh(&command);
    let mut seen = Seen::default();
    let sample = wait_for_sample(&run, &mut seen, Duration::from_secs(20), ">= 150 MB", |s| {
        s.mem_bytes.is_some_and(|m| m >= 150 << 20)
    });
    assert!(
        sample.mem_bytes.is_some_and(|m| m < 400 << 20),
        "about 200 MB: {sample:?}"
    );
    run.control().kill_tree().expect("kill");
    finish(&run, &mut seen, Duration::from_secs(10));
}

#[test]
fn io_and_write_counts_are_sampled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("out");
    let run = sh(&format!(
        "echo one; echo two; head -c 1048576 /dev/zero > '{}'; sleep 300",
        file.display()
    ));
    let mut seen = Seen::default();
    let sample = wait_for_sample(&run, &mut seen, Duration::from_secs(10), "output", |s| {
        s.writes >= 1 && s.write_bytes >= 10
    });
    assert!(
        sample.io_read_bytes.is_some() && sample.io_write_bytes.is_some(),
        "own processes' I/O is readable: {sample:?}"
    );
    run.control().kill_tree().expect("kill");
    let end = finish(&run, &mut seen, Duration::from_secs(10));
    assert_eq!(end.totals.events_captured, seen.chunks.len() as u64);
    let last = seen.samples.last().expect("samples");
    assert_eq!(last.writes, end.totals.events_captured);
    assert_eq!(last.write_bytes, end.totals.bytes_captured);
}

#[test]
fn the_child_does_not_inherit_sentrys_api_key() {
    // In a helper process started with the key set, so that this process's environment is
    // never changed under the other tests.
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args(["--exact", "helper", "--nocapture"])
        .env(HELPER_VAR, "print-child-environment")
        .env("SENTRY_API_KEY", "secret-value")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the helper runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("key=<>"), "{text:?}");
    assert!(
        !text.contains("marker=<>"),
        "the run marker is set: {text:?}"
    );
}

#[test]
fn dropping_the_run_early_kills_the_tree() {
    let run = sh("sleep 300");
    let leader = run.control().pid();
    let control = run.control();
    drop(run);
    assert!(control.has_ended());
    assert!(!process_exists(leader));
    // After the end nothing is signalled any more.
    control.signal_tree(nix::sys::signal::Signal::SIGKILL);
    control.kill_tree().expect("a no-op");
}

#[test]
fn default_options_copy_output_to_stdout_with_stdin_null_or_closed() {
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("utf-8 path");
    for redirect in ["</dev/null", "<&-"] {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("exec '{exe}' --exact helper --nocapture {redirect}"),
            ])
            .env(HELPER_VAR, "default-options")
            .output()
            .expect("the helper runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stdin {redirect}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("default-ok\r\n") && text.contains("ended with Some(0)"),
            "stdin {redirect}: the output was copied to stdout: {text:?}"
        );
    }
}
