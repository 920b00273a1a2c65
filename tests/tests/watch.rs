//! `sentry watch` against real processes in real cgroups: fake CI jobs (shells carrying
//! `RUNNER_TRACKING_ID`, started by a "runner" process in a cgroup the test makes) are found
//! by `--discover ci`, their output is captured by the eBPF probe, a looping one is alerted on
//! (default) or stopped (`--action kill`) — it and only it — and every job is a `watch` run in
//! the store with its labels. Needs root (kernel capture, other processes' environments).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sentry_tests::{process_exists, require_kernel_mode, sentry_bin};

/// `--discover ci` sees every CI job on the host, so two tests' watches would see (and act
/// on) each other's jobs: those tests take turns.
static DISCOVERY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_discovery_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    DISCOVERY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cgroup2 mount (pure v2 or hybrid).
fn cgroup2_root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo is readable");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .expect("a cgroup2 hierarchy is mounted")
}

/// A cgroup made by the test, removed (after killing what is left) on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let path = cgroup2_root().join(format!("sentry-test-{name}-{}", std::process::id()));
        let _ = fs::create_dir(&path);
        TestCgroup(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// A "runner": a shell in `cgroup` that starts each job (a shell with the job's variables)
/// in the background and waits. Returns it with the pids file of its jobs.
fn start_runner(cgroup: &Path, jobs: &[(&str, &str, &str)], dir: &Path) -> Child {
    let mut script = format!("echo $$ > {}/cgroup.procs\n", cgroup.display());
    for (id, name, body) in jobs {
        script.push_str(&format!(
            "env RUNNER_TRACKING_ID={id} GITHUB_REPOSITORY=acme/app GITHUB_WORKFLOW=CI \
             GITHUB_JOB={name} RUNNER_NAME=runner-1 sh -c '{body}' > /dev/null 2>&1 &\n"
        ));
    }
    // The runner lives on whatever happens to its jobs, like a runner agent.
    script.push_str("exec sleep 600\n");
    let path = dir.join("runner.sh");
    fs::write(&path, script).unwrap();
    Command::new("sh")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .expect("the runner starts")
}

const LOOP_JOB: &str =
    "while true; do echo \"ERROR: connection refused to db:5432, retrying\"; sleep 0.01; done";
const HEALTHY_JOB: &str =
    "i=0; while true; do i=$((i+1)); echo \"compiled module $i of 100000\"; sleep 0.2; done";

/// Pids carrying `RUNNER_TRACKING_ID=id`.
fn job_pids(id: &str) -> Vec<i32> {
    let entry = format!("RUNNER_TRACKING_ID={id}");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            process_exists(pid)
                && fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

/// A running `sentry watch`, killed if the test fails before stopping it (a leaked watch with
/// `--action kill` would act on the next tests' jobs).
struct Watching(Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_watch(db: &Path, extra: &[&str]) -> Watching {
    let child = Command::new(sentry_bin())
        .args(["watch", "--discover", "ci", "--port", "0", "--db"])
        .arg(db)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sentry watch starts");
    Watching(child)
}

/// Stops a watch with SIGTERM (as systemd does) and returns its stderr; it must exit 0.
fn stop_watch(mut watch: Watching) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &watch.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "sentry watch did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = watch.0.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = watch.0.wait().unwrap();
    assert!(status.success(), "sentry watch failed ({status}): {stderr}");
    stderr
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn incidents_of(db: &Path, job: &str) -> Vec<(String, String)> {
    let Ok(conn) = Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT i.kind, i.action FROM incidents i JOIN runs r ON r.id = i.run_id \
         WHERE r.kind = 'watch' AND json_extract(r.labels, '$.job') = ?1",
    ) else {
        return Vec::new();
    };
    stmt.query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_default()
}

fn run_of(db: &Path, job: &str) -> (String, serde_json::Value) {
    let conn = Connection::open(db).unwrap();
    conn.query_row(
        "SELECT status, labels FROM runs WHERE kind = 'watch' AND json_extract(labels, '$.job') = ?1",
        [job],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                serde_json::from_str(&r.get::<_, String>(1)?).unwrap(),
            ))
        },
    )
    .unwrap()
}

#[test]
fn a_looping_ci_job_is_stopped_and_only_it() {
    let _turn = one_discovery_at_a_time();
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let cg = TestCgroup::new("kill");
    let tag = std::process::id();
    let (loop_id, ok_id) = (format!("loop_k{tag}"), format!("ok_k{tag}"));
    let events_log = dir.path().join("events.jsonl");
    let watch = start_watch(
        &db,
        &[
            "--action",
            "kill",
            "--events-log",
            events_log.to_str().unwrap(),
        ],
    );
    // Discovery runs before the jobs start: they are followed as they come.
    std::thread::sleep(Duration::from_millis(500));
    let mut runner = start_runner(
        &cg.0,
        &[
            (&loop_id, "loop-k", LOOP_JOB),
            (&ok_id, "healthy-k", HEALTHY_JOB),
        ],
        dir.path(),
    );
    wait_for("both jobs to start", Duration::from_secs(5), || {
        !job_pids(&loop_id).is_empty() && !job_pids(&ok_id).is_empty()
    });
    wait_for(
        "the looping job to be stopped",
        Duration::from_secs(15),
        || job_pids(&loop_id).is_empty(),
    );
    // The healthy job and the runner that launched the jobs are left alone.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!job_pids(&ok_id).is_empty(), "the healthy job was stopped");
    assert!(
        runner.try_wait().unwrap().is_none(),
        "the runner process was stopped"
    );
    let stderr = stop_watch(watch);
    assert_eq!(
        incidents_of(&db, "loop-k"),
        [("output_loop".to_string(), "kill".to_string())],
        "{stderr}"
    );
    assert!(incidents_of(&db, "healthy-k").is_empty(), "{stderr}");
    let (status, labels) = run_of(&db, "loop-k");
    assert_eq!(status, "stopped");
    assert_eq!(labels["repository"], "acme/app");
    assert_eq!(labels["workflow"], "CI");
    assert_eq!(labels["ci"], "github");
    assert_eq!(labels["runner"], "runner-1");
    assert_eq!(labels["job_id"], loop_id.as_str());
    let (status, _) = run_of(&db, "healthy-k");
    assert_eq!(status, "detached", "the watch ended while the job ran on");
    // The events log carries the incident and the job's end with its labels, for shipping.
    let lines: Vec<serde_json::Value> = fs::read_to_string(&events_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_loop = |t: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == t && l["labels"]["job"] == "loop-k")
            .count()
    };
    assert_eq!(of_loop("incident"), 1, "{lines:?}");
    assert_eq!(of_loop("run_ended"), 1, "{lines:?}");
    assert!(lines.iter().all(|l| l["schema"] == "sentry.event/v1"));
    let _ = runner.kill();
    let _ = runner.wait();
}

#[test]
fn without_action_kill_a_looping_job_is_alerted_on_and_left_running() {
    let _turn = one_discovery_at_a_time();
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let cg = TestCgroup::new("alert");
    let tag = std::process::id();
    let loop_id = format!("loop_a{tag}");
    let mut runner = start_runner(&cg.0, &[(&loop_id, "loop-a", LOOP_JOB)], dir.path());
    wait_for("the job to start", Duration::from_secs(5), || {
        !job_pids(&loop_id).is_empty()
    });
    // Started after the job: a job already running is found too.
    let textfiles = dir.path().join("textfile");
    fs::create_dir(&textfiles).unwrap();
    let watch = start_watch(&db, &["--textfile-dir", textfiles.to_str().unwrap()]);
    wait_for("an alert", Duration::from_secs(15), || {
        !incidents_of(&db, "loop-a").is_empty()
    });
    // The textfile for node_exporter: the live job's info series and the watcher's own
    // figures, rewritten every few seconds.
    let prom = textfiles.join("sentry.prom");
    wait_for(
        "the textfile to show the alert",
        Duration::from_secs(15),
        || {
            fs::read_to_string(&prom).is_ok_and(|t| {
                t.contains("sentry_incidents_total{kind=\"output_loop\",action=\"alert\"} 1")
            })
        },
    );
    let text = fs::read_to_string(&prom).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("sentry_job_info{")
            && l.contains("ci_job=\"loop-a\"")
            && l.contains(&format!("job_id=\"{loop_id}\""))),
        "{text}"
    );
    assert!(text.contains("\nsentry_watch_jobs 1\n"), "{text}");
    assert!(
        text.contains("\nsentry_watch_capture_enabled 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\nsentry_ring_buffer_lost_total 0\n"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !job_pids(&loop_id).is_empty(),
        "an alert must not stop the job"
    );
    let stderr = stop_watch(watch);
    let incidents = incidents_of(&db, "loop-a");
    assert_eq!(
        incidents[0],
        ("output_loop".into(), "alert".into()),
        "{stderr}"
    );
    assert!(stderr.contains("alert after"), "{stderr}");
    let (status, labels) = run_of(&db, "loop-a");
    assert_eq!(status, "detached");
    assert_eq!(labels["job"], "loop-a");
    assert!(!job_pids(&loop_id).is_empty());
    let _ = runner.kill();
    let _ = runner.wait();
}

#[test]
fn a_named_cgroup_is_watched_as_one_job_and_its_end_is_recorded() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let cg = TestCgroup::new("named");
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs; exec sh -c '{LOOP_JOB}' > /dev/null",
                cg.0.display()
            ),
        ])
        .spawn()
        .unwrap();
    wait_for(
        "the process to enter the cgroup",
        Duration::from_secs(5),
        || fs::read_to_string(cg.0.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()),
    );
    let rel =
        cg.0.strip_prefix(cgroup2_root())
            .unwrap()
            .display()
            .to_string();
    let watch = Watching(
        Command::new(sentry_bin())
            .args(["watch", "--cgroup", &rel, "--port", "0", "--db"])
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("an alert", Duration::from_secs(15), || {
        !incidents_of(&db, &rel).is_empty()
    });
    let _ = child.kill();
    let _ = child.wait();
    drop(cg);
    // The removed cgroup ends the job.
    let conn_check = || {
        Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT status FROM runs WHERE kind = 'watch'", [], |r| {
                    r.get::<_, String>(0)
                })
            })
            .is_ok_and(|s| s == "exited")
    };
    wait_for(
        "the job to end with its cgroup",
        Duration::from_secs(10),
        conn_check,
    );
    let stderr = stop_watch(watch);
    assert_eq!(incidents_of(&db, &rel)[0].0, "output_loop", "{stderr}");
}

#[test]
fn bad_targets_get_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["watch"], "nothing to watch"),
        (
            &["watch", "--cgroup", "no/such/cgroup"],
            "is not a cgroup v2 directory",
        ),
        (
            &["watch", "--cgroup", "a/../../etc"],
            "leaves the cgroup v2 hierarchy",
        ),
        (&["watch", "--pid", "2147483647"], "no such process"),
        (&["watch", "--cgroup", "/"], "every process on this host"),
        (
            &["watch", "--discover", "ci", "--sample-interval", "0"],
            "at least 0.05",
        ),
    ];
    let mut cases = cases.to_vec();
    if !Path::new("/run/systemd/system").exists() {
        cases.push((
            &["watch", "--unit", "runner.service"],
            "systemd is not running",
        ));
    }
    for (args, want) in &cases {
        let out = Command::new(sentry_bin())
            .args(*args)
            .args(["--no-api", "--db", "/nonexistent-dir/x.db"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
}

#[test]
fn the_dashboard_can_pause_resume_and_stop_a_watched_job() {
    let _turn = one_discovery_at_a_time();
    use std::io::BufRead;
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let cg = TestCgroup::new("control");
    let tag = std::process::id();
    let id = format!("ctl_{tag}");
    let mut runner = start_runner(&cg.0, &[(&id, "ctl", HEALTHY_JOB)], dir.path());
    let mut watch = start_watch(&db, &[]);
    // The port is on the first line that says where the server listens.
    let stdout = watch.0.stdout.take().unwrap();
    let port: u16 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on http://127.0.0.1:")
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .expect("sentry watch says where it listens");
    let key = fs::read_to_string(dir.path().join("api-key")).unwrap();
    let auth = format!("Bearer {}", key.trim());
    let run_id = || -> Option<i64> {
        Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT id FROM runs WHERE kind = 'watch' AND json_extract(labels, '$.job') = 'ctl'",
                    [],
                    |r| r.get(0),
                )
            })
            .ok()
    };
    wait_for("the job to be recorded", Duration::from_secs(10), || {
        run_id().is_some()
    });
    let run = run_id().unwrap();
    let post = |what: &str| {
        let body = format!("{{\"run_id\": {run}}}");
        sentry_tests::http::request(
            port,
            "POST",
            &format!("/process/{what}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    let state = |pid: i32| -> String {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()))
            .unwrap_or_default()
    };
    let res = post("pause");
    assert_eq!(res.status, 200, "{}", res.text());
    let pids = job_pids(&id);
    assert!(!pids.is_empty());
    assert!(
        pids.iter().all(|&p| state(p) == "T"),
        "every job process is stopped"
    );
    assert!(runner.try_wait().unwrap().is_none());
    assert_ne!(state(runner.id() as i32), "T", "the runner is not paused");
    let res = post("resume");
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(job_pids(&id).iter().all(|&p| state(p) != "T"));
    let res = post("restart");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["ok"], false, "a watched job cannot be restarted");
    assert!(res.text().contains("cannot restart a job it did not start"));
    let res = post("kill");
    assert_eq!(res.status, 200, "{}", res.text());
    wait_for(
        "the job's processes to end",
        Duration::from_secs(10),
        || job_pids(&id).is_empty(),
    );
    assert!(runner.try_wait().unwrap().is_none(), "the runner lives on");
    wait_for(
        "the job to be recorded as stopped",
        Duration::from_secs(10),
        || run_of(&db, "ctl").0 == "stopped",
    );
    let _ = stop_watch(watch);
    let _ = runner.kill();
    let _ = runner.wait();
}

/// Starts `body` in a fresh test cgroup and `sentry watch --cgroup` on it with `extra`.
fn watch_named_cgroup(
    name: &str,
    body: &str,
    db: &Path,
    extra: &[&str],
) -> (TestCgroup, Child, String, Watching) {
    let cg = TestCgroup::new(name);
    let child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs; exec sh -c '{body}' > /dev/null",
                cg.0.display()
            ),
        ])
        .spawn()
        .unwrap();
    wait_for(
        "the process to enter the cgroup",
        Duration::from_secs(5),
        || fs::read_to_string(cg.0.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()),
    );
    let rel =
        cg.0.strip_prefix(cgroup2_root())
            .unwrap()
            .display()
            .to_string();
    let watch = Watching(
        Command::new(sentry_bin())
            .args(["watch", "--cgroup", &rel, "--port", "0", "--db"])
            .arg(db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    (cg, child, rel, watch)
}

#[test]
fn shadow_mode_records_what_kill_would_do_and_signals_nothing() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let (cg, mut child, rel, watch) =
        watch_named_cgroup("shadow", LOOP_JOB, &db, &["--shadow", "--action", "kill"]);
    wait_for("a shadow kill", Duration::from_secs(20), || {
        incidents_of(&db, &rel).iter().any(|(_, a)| a == "kill")
    });
    // Nothing was signalled: the loop runs on.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job was stopped in shadow mode"
    );
    let stderr = stop_watch(watch);
    assert!(
        stderr.contains("(shadow)") && stderr.contains("would have killed it"),
        "{stderr}"
    );
    let conn = Connection::open(&db).unwrap();
    let (kind, shadow, outcome): (String, bool, String) = conn
        .query_row(
            "SELECT kind, shadow, outcome FROM incidents WHERE action = 'kill'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), shadow), ("output_loop", true), "{stderr}");
    assert!(outcome.contains("would have stopped"), "{outcome}");
    let (run_shadow, status): (bool, String) = conn
        .query_row(
            "SELECT shadow, status FROM runs WHERE kind = 'watch'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(run_shadow, "runs.shadow");
    assert_ne!(status, "stopped", "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
    drop(cg);
}

#[test]
fn a_silent_idle_job_is_stopped_at_the_no_output_timeout() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    let (cg, mut child, rel, watch) = watch_named_cgroup(
        "silent",
        "sleep 600",
        &db,
        &["--action", "kill", "--no-output-timeout", "3s"],
    );
    wait_for(
        "the silent job to be stopped",
        Duration::from_secs(15),
        || child.try_wait().unwrap().is_some(),
    );
    let stderr = stop_watch(watch);
    assert_eq!(
        incidents_of(&db, &rel),
        [("no_output".to_string(), "kill".to_string())],
        "{stderr}"
    );
    drop(cg);
}

#[test]
fn a_stalled_job_is_alerted_on_and_left_running() {
    require_kernel_mode!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentry.db");
    // The built-in stall detector (alert level), with a short idle time for the test.
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, "[stall]\nidle_s = 3\n").unwrap();
    let (cg, mut child, rel, watch) = watch_named_cgroup(
        "stall",
        "sleep 600",
        &db,
        &["--action", "kill", "--policy", policy.to_str().unwrap()],
    );
    wait_for("a stall alert", Duration::from_secs(15), || {
        !incidents_of(&db, &rel).is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a stall is an alert, not a kill"
    );
    let stderr = stop_watch(watch);
    assert_eq!(
        incidents_of(&db, &rel),
        [("stall".to_string(), "alert".to_string())],
        "{stderr}"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(cg);
}
