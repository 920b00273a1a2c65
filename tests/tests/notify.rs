//! Alert delivery and the events log end to end: real `sentry run`s (fallback mode, as
//! `nobody` when root: where the run is captured does not matter here) post to a real
//! Alertmanager and to receivers written here on plain TCP sockets that answer what each
//! test needs (500, 429 with `Retry-After`, 400, nothing at all), and write a real events log.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sentry_tests::{mode_command, run_dir, run_mode, RunResult, TestMode};
use serde_json::Value;

const MODE: TestMode = TestMode::Fallback;

/// sentry's status when it stopped the command.
const EXIT_STOPPED: i32 = 124;

/// A child that repeats one failing line forever: an output loop sentry stops in ~1-2 s.
const LOOP: &str =
    "while true; do echo 'error: upstream refused the connection, retrying'; sleep 0.02; done";

/// What a receiver was sent, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    answered: u16,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "the receiver got a body that is not JSON ({e}): {}",
                self.body
            )
        })
    }
}

/// An HTTP receiver on a loopback port: answers the n-th request (0-based) as `script` says.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

type Script = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>) + Send;

impl Receiver {
    fn start(script: Box<Script>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&got);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let (status, headers) = script(n);
                if let Some(body) = answer(stream, status, &headers) {
                    log.lock().expect("receiver log").push(Received {
                        at: Instant::now(),
                        answered: status,
                        body,
                    });
                }
            }
        });
        Receiver { port, got }
    }

    /// Answers every request with `status`.
    fn always(status: u16) -> Receiver {
        Receiver::start(Box::new(move |_| (status, Vec::new())))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("receiver log").clone()
    }
}

/// Reads one request, answers it, and returns its body.
fn answer(stream: TcpStream, status: u16, headers: &[(&str, String)]) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut head =
        format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    stream.write_all(head.as_bytes()).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A loopback port nobody listens on.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

#[derive(Debug, PartialEq)]
struct DeliveryRow {
    run_id: Option<i64>,
    sink: String,
    event: String,
    kind: String,
    result: String,
    attempts: i64,
    detail: String,
}

fn deliveries(dir: &Path) -> Vec<DeliveryRow> {
    let conn = Connection::open(dir.join("sentry.db")).expect("the store the run wrote");
    let mut stmt = conn
        .prepare(
            "SELECT run_id, sink, event, kind, result, attempts, coalesce(detail, '') \
             FROM deliveries ORDER BY id",
        )
        .expect("the deliveries table");
    stmt.query_map([], |r| {
        Ok(DeliveryRow {
            run_id: r.get(0)?,
            sink: r.get(1)?,
            event: r.get(2)?,
            kind: r.get(3)?,
            result: r.get(4)?,
            attempts: r.get(5)?,
            detail: r.get(6)?,
        })
    })
    .and_then(|rows| rows.collect())
    .expect("read the deliveries")
}

fn count(dir: &Path, sql: &str) -> i64 {
    let conn = Connection::open(dir.join("sentry.db")).expect("the store the run wrote");
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn incidents(run: &RunResult) -> Vec<Value> {
    run.report["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("report has no incidents array: {}", run.report))
}

fn run_id(run: &RunResult) -> i64 {
    run.report["run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the report names no store run: {}", run.report))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

/// A stopped runaway under `extra`, checked to have been stopped.
fn stopped_runaway(extra: &[&str], script: &str) -> RunResult {
    let run = run_mode(MODE, extra, &["sh", "-c", script]);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    assert!(!incidents(&run).is_empty(), "report: {}", run.report);
    run
}

#[test]
fn a_webhook_gets_the_incident_once_after_a_500_and_a_429_with_retry_after() {
    let receiver = Receiver::start(Box::new(|n| match n {
        0 => (500, Vec::new()),
        1 => (429, vec![("Retry-After", "1".to_string())]),
        _ => (200, Vec::new()),
    }));
    let run = stopped_runaway(&["--webhook", &receiver.url()], LOOP);
    let got = receiver.received();
    let id = run_id(&run);
    // The first incident was tried three times with the same body, and taken the third time.
    assert!(got.len() >= 3, "received: {got:?}");
    assert_eq!(
        got[..3].iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 429, 200]
    );
    assert!(
        got[..3].iter().all(|r| r.body == got[0].body),
        "retries sent different bodies: {got:?}"
    );
    let waited = got[2].at - got[1].at;
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured: retried after {waited:?}"
    );
    let first = got[0].json();
    assert_eq!(first["schema"], "sentry.alert/v1");
    assert_eq!(first["type"], "incident");
    assert_eq!(first["run_id"], id);
    assert_eq!(
        first["run_url"],
        format!("http://localhost:3001/#/runs/{id}")
    );
    assert_eq!(first["incident"]["kind"], "output_loop");
    // Every event was delivered exactly once: one incident event per incident, then resolved.
    let delivered: Vec<Value> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(Received::json)
        .collect();
    let types: Vec<&str> = delivered
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    let mut expected = vec!["incident"; incidents(&run).len()];
    expected.push("resolved");
    assert_eq!(types, expected, "delivered: {delivered:?}");
    let rows = deliveries(run.dir.path());
    assert_eq!(
        rows[0],
        DeliveryRow {
            run_id: Some(id),
            sink: "webhook".into(),
            event: "firing".into(),
            kind: "output_loop".into(),
            result: "delivered".into(),
            attempts: 3,
            detail: "HTTP 500; HTTP 429; HTTP 200".into(),
        }
    );
    assert_eq!(rows.len(), expected.len(), "rows: {rows:?}");
    assert!(
        rows.iter().all(|r| r.result == "delivered"),
        "rows: {rows:?}"
    );
}

#[test]
fn a_receiver_that_is_down_does_not_hold_the_run_or_its_record() {
    let url = format!("http://127.0.0.1:{}/hook", dead_port());
    // Built (or found up to date) before the clock starts.
    sentry_tests::sentry_bin();
    let started = Instant::now();
    let run = stopped_runaway(&["--webhook", &url], LOOP);
    let took = started.elapsed().as_secs_f64();
    // The run waits at most 5 s for its deliveries after the command ended; the rest of the
    // margin is for starting and recording on a loaded machine.
    let duration = run.report["duration_s"]
        .as_f64()
        .expect("the run's duration");
    assert!(
        took - duration < 10.0,
        "sentry took {took:.1} s for a {duration:.1} s run with a dead receiver"
    );
    let dir = run.dir.path();
    let id = run_id(&run);
    assert_eq!(
        count(
            dir,
            &format!("SELECT count(*) FROM incidents WHERE run_id = {id}")
        ),
        incidents(&run).len() as i64
    );
    assert!(
        count(
            dir,
            &format!("SELECT count(*) FROM findings WHERE run_id = {id}")
        ) >= 1
    );
    let rows = deliveries(dir);
    let failed: Vec<&DeliveryRow> = rows
        .iter()
        .filter(|r| r.sink == "webhook" && r.event == "firing" && r.result == "failed")
        .collect();
    assert!(!failed.is_empty(), "no failed delivery recorded: {rows:?}");
    assert!(failed[0].attempts >= 1, "rows: {rows:?}");
    assert!(
        rows.iter().all(|r| r.result != "delivered"),
        "a delivery to nowhere counted as delivered: {rows:?}"
    );
}

#[test]
fn a_receiver_answering_400_is_not_retried() {
    let receiver = Receiver::always(400);
    let run = stopped_runaway(&["--webhook", &receiver.url()], LOOP);
    let got = receiver.received();
    let rows = deliveries(run.dir.path());
    // One incident event per incident and the resolved event, each sent once.
    assert_eq!(got.len(), incidents(&run).len() + 1, "received: {got:?}");
    let bodies: BTreeSet<&str> = got.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies.len(), got.len(), "an event was sent twice: {got:?}");
    assert_eq!(rows.len(), got.len(), "rows: {rows:?}");
    for row in &rows {
        assert_eq!(
            (row.result.as_str(), row.attempts),
            ("failed", 1),
            "{row:?}"
        );
        assert!(row.detail.starts_with("HTTP 400"), "{row:?}");
    }
}

#[test]
fn secrets_the_child_prints_reach_no_receiver_and_no_events_log() {
    // Assembled by the shell, so that the keys are in the output but not on the command line.
    let script = "a=AKIA; b=Z7Q3XK2M4N5P6R8T; g=ghp_; h=Zk3vQ9mX2pL7wR4tY8uB1nC6dF0gH5jK2sA9; \
                  while true; do echo \"error: key $a$b refused, token $g$h\"; sleep 0.02; done";
    let secrets = [
        "AKIAZ7Q3XK2M4N5P6R8T",
        "ghp_Zk3vQ9mX2pL7wR4tY8uB1nC6dF0gH5jK2sA9",
    ];
    let webhook = Receiver::always(200);
    let slack = Receiver::always(200);
    let dir_probe = run_dir(MODE);
    let log = dir_probe.path().join("notify-events.jsonl");
    let run = {
        let out = mode_command(
            MODE,
            &[
                "--webhook",
                &webhook.url(),
                "--slack-webhook",
                &slack.url(),
                "--events-log",
                &log.to_string_lossy(),
            ],
            &["sh", "-c", script],
            dir_probe.path(),
        )
        .output()
        .expect("sentry can be started");
        sentry_tests::finish(out.status, out.stdout, out.stderr, dir_probe)
    };
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    // The child really printed them (so redaction had something to do).
    assert!(run.stdout.contains(secrets[0]), "stdout: {}", run.stdout);
    let mut seen = Vec::new();
    for received in webhook.received().iter().chain(slack.received().iter()) {
        seen.push(received.body.clone());
    }
    assert!(seen.len() >= 4, "receivers got too little: {seen:?}");
    seen.push(std::fs::read_to_string(&log).expect("the events log"));
    for text in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    }
    assert!(
        seen.iter()
            .any(|t| t.contains("[REDACTED:aws-access-key-id]")),
        "the evidence lost its redaction marker: {seen:?}"
    );
}

fn events_log_files(log: &Path) -> Vec<PathBuf> {
    let mut files = vec![log.to_path_buf()];
    for n in 1.. {
        let rotated = PathBuf::from(format!("{}.{n}", log.display()));
        if !rotated.exists() {
            break;
        }
        files.push(rotated);
    }
    files
}

#[test]
fn the_events_log_has_every_event_type_and_rotates_by_size() {
    let dir = run_dir(MODE);
    let log = dir.path().join("notify-events.jsonl");
    let max = 1500u64;
    let out = mode_command(
        MODE,
        &[
            "--events-log",
            &log.to_string_lossy(),
            "--events-log-max-bytes",
            &max.to_string(),
            "--events-log-keep",
            "100",
        ],
        &["sh", "-c", LOOP],
        dir.path(),
    )
    .output()
    .expect("sentry can be started");
    let run = sentry_tests::finish(out.status, out.stdout, out.stderr, dir);
    assert_eq!(
        run.status.code(),
        Some(EXIT_STOPPED),
        "stderr: {}",
        run.stderr
    );
    let files = events_log_files(&log);
    assert!(
        files.len() >= 2,
        "the log was not rotated at {max} bytes: {files:?}"
    );
    let mut types = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a log file");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            text.len() as u64 <= max || lines.len() == 1,
            "{} holds {} bytes in {} lines",
            file.display(),
            text.len(),
            lines.len()
        );
        for line in lines {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert_eq!(event["schema"], "sentry.event/v1", "{event}");
            assert!(
                event["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{event}"
            );
            assert_eq!(event["host"], hostname(), "{event}");
            assert_eq!(event["run_id"], run_id(&run), "{event}");
            assert!(event["labels"].is_object(), "{event}");
            let kind = event["type"].as_str().unwrap_or_default().to_string();
            assert!(
                event[kind.as_str()].is_object() || kind == "run_ended",
                "{event}"
            );
            types.insert(kind);
        }
    }
    assert_eq!(
        types,
        BTreeSet::from(["decision", "finding", "incident", "run_ended"].map(String::from))
    );
    let newest = std::fs::read_to_string(&log).expect("the current log");
    let last: Value =
        serde_json::from_str(newest.lines().last().expect("a last line")).expect("a JSON line");
    assert_eq!(last["type"], "run_ended");
    assert_eq!(last["run"]["status"], "stopped");
    assert_eq!(last["run"]["exit_code"], EXIT_STOPPED);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log)
        .expect("the log")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & !0o640, 0, "the log is {mode:o}, want at most 0640");
}

/// A real Alertmanager on a loopback port, killed when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one, or says why it cannot (a failure under `CI=true`, a skip elsewhere).
    fn start() -> Option<Alertmanager> {
        let bin = [
            "/usr/bin/prometheus-alertmanager",
            "/usr/local/bin/alertmanager",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
        let Some(bin) = bin else {
            let reason = "prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{reason}; CI=true, so this fails instead of skipping");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
        )
        .expect("write the config");
        let port = dead_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("a log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
                && sentry_tests::http::request(port, "GET", "/-/ready", &[], b"").status == 200;
            if ready {
                return Some(am);
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager did not become ready on port {port}: {}",
                std::fs::read_to_string(am._dir.path().join("alertmanager.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The sentry alerts it lists.
    fn alerts(&self) -> Vec<Value> {
        let response = sentry_tests::http::request(self.port, "GET", "/api/v2/alerts", &[], b"");
        assert_eq!(response.status, 200, "GET /api/v2/alerts: {response}");
        response
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "SentryRunaway")
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_runaway_fires_in_alertmanager_and_is_resolved_when_the_run_ends() {
    let Some(am) = Alertmanager::start() else {
        return;
    };
    // An alert-only run that loops for about 8 s, then ends by itself.
    let script = "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo 'error: upstream refused the connection, retrying'; sleep 0.02; done";
    let dir = run_dir(MODE);
    let stderr = std::fs::File::create(dir.path().join("stderr.txt")).expect("a stderr file");
    let mut sentry = mode_command(
        MODE,
        &["--action", "alert", "--alertmanager", &am.url()],
        &["sh", "-c", script],
        dir.path(),
    )
    .stdout(Stdio::null())
    .stderr(stderr)
    .spawn()
    .expect("sentry can be started");
    let deadline = Instant::now() + Duration::from_secs(30);
    let firing = loop {
        if let Some(alert) = am.alerts().into_iter().next() {
            break alert;
        }
        if Instant::now() > deadline || sentry.try_wait().ok().flatten().is_some() {
            let _ = sentry.kill();
            panic!(
                "no SentryRunaway alert reached Alertmanager while the run was live; stderr: {}",
                std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = sentry.wait().expect("sentry ends");
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "an alert-only run exits as its command: {stderr}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report.json")).expect("the report"),
    )
    .expect("a JSON report");
    let id = report["run_id"].as_i64().expect("the report names its run");
    let run_url = format!("http://localhost:3001/#/runs/{id}");
    assert_eq!(
        firing["labels"],
        serde_json::json!({
            "alertname": "SentryRunaway",
            "kind": "output_loop",
            "severity": "warning",
            "job": "sh",
            "host": hostname(),
            "run_id": id.to_string(),
        }),
        "alert: {firing}"
    );
    assert_eq!(firing["status"]["state"], "active", "alert: {firing}");
    assert_eq!(firing["generatorURL"], run_url.as_str());
    assert_eq!(firing["annotations"]["run_url"], run_url.as_str());
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("output loop") && s.contains("upstream refused")),
        "alert: {firing}"
    );
    // Firing: Alertmanager set its end to startsAt + resolve_timeout, in the future.
    assert!(
        firing["endsAt"].as_str() > firing["startsAt"].as_str(),
        "alert: {firing}"
    );
    // Resolved: sentry posted the same label set with endsAt = the run's end, and
    // Alertmanager (0.25) lists only alerts whose endsAt is still ahead: it is gone.
    let left = am.alerts();
    let label = id.to_string();
    assert!(
        left.iter()
            .all(|a| a["labels"]["run_id"].as_str() != Some(label.as_str())),
        "the run's alert is still listed after the run ended: {left:?}"
    );
    let rows = deliveries(dir.path());
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.sink.as_str(), r.event.as_str(), r.result.as_str()))
        .collect();
    assert!(
        summary.contains(&("alertmanager", "firing", "delivered"))
            && summary.last() == Some(&("alertmanager", "resolved", "delivered")),
        "rows: {rows:?}"
    );
}
