//! sentry's metrics against the real Prometheus tools on loopback: a Prometheus server
//! scraping a real `sentry dashboard` with the store's key (and evaluating every expression
//! of the deployed rules and Grafana dashboard), `promtool` checking the textfile and the
//! deployed configuration, and a real Pushgateway receiving `sentry run --pushgateway`.
//!
//! The binaries come from Debian's `prometheus` and `prometheus-pushgateway` packages. When
//! one is missing the test skips with the reason, or fails under `CI=true`.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sentry_tests::http::{request, Dashboard};
use sentry_tests::sentry_bin;
use serde_json::Value;

/// The CI job a run pretends to be in (GitHub Actions' variables).
const CI_ENV: &[(&str, &str)] = &[
    ("RUNNER_TRACKING_ID", "github_5f1c0a"),
    ("GITHUB_REPOSITORY", "acme/api"),
    ("GITHUB_WORKFLOW", "CI"),
    ("GITHUB_JOB", "unit"),
    ("RUNNER_NAME", "runner-7"),
];

/// Markers of other CI platforms, removed so that the host's own CI cannot win.
const OTHER_CI: &[&str] = &["CI_JOB_ID", "BUILDKITE_JOB_ID", "BUILD_TAG"];

/// A short command that uses a little CPU and writes a little output.
const WORK: &str = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of `/usr/bin/<name>`, or why it cannot be used.
fn find_bin(name: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from("/usr/bin").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: apt-get install -y prometheus prometheus-pushgateway",
            path.display()
        ))
    }
}

/// The binary, or an early return from the test: skipped with the reason, or failed under
/// `CI=true`.
macro_rules! require_bin {
    ($name:expr) => {
        match find_bin($name) {
            Ok(path) => path,
            Err(reason) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{reason} (CI=true, so this fails instead of skipping)");
                }
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server process killed when dropped, with its output kept in a file for failures.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(cmd: &mut Command, log: PathBuf) -> Server {
        let file = std::fs::File::create(&log).expect("a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Server { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until GET `path` on `port` answers 200.
    fn wait_ready(&mut self, port: u16, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "server exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && request(port, "GET", path, &[], b"").status == 200;
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sentry run --quiet --db <db> <extra> -- sh -c WORK` in the CI job of [`CI_ENV`] (when
/// `ci`), to its end.
fn sentry_run(db: &Path, extra: &[&str], ci: bool) -> Output {
    let mut cmd = Command::new(sentry_bin());
    cmd.args(["run", "--quiet", "--db"])
        .arg(db)
        .args(extra)
        .args(["--", "sh", "-c", WORK])
        .env_remove("SENTRY_API_KEY")
        .env_remove("SENTRY_DB")
        .stdin(Stdio::null());
    for var in OTHER_CI {
        cmd.env_remove(var);
    }
    if ci {
        for (k, v) in CI_ENV {
            cmd.env(k, v);
        }
    } else {
        cmd.env_remove("RUNNER_TRACKING_ID");
    }
    cmd.output().expect("sentry run can be started")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PromQL instant query's answer (`status` success or error).
fn query(port: u16, expr: &str) -> Value {
    let res = request(
        port,
        "GET",
        &format!("/api/v1/query?query={}", encode(expr)),
        &[],
        b"",
    );
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("{expr}: not JSON ({e}): {res}"))
}

/// Every `expr:` of the rules file (each on one line, as the file promises).
fn rule_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("deploy/prometheus/rules.yml"))
        .expect("deploy/prometheus/rules.yml");
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    for e in &exprs {
        assert!(
            !e.is_empty() && !e.starts_with('|') && !e.starts_with('>'),
            "rules.yml: keep each expr on one line (the test reads them line by line): {e:?}"
        );
    }
    exprs
}

/// Every `expr` of the Grafana dashboard, its variables replaced by what Grafana would send.
fn dashboard_expressions() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(workspace().join("deploy/grafana/sentry-fleet.json"))
        .expect("deploy/grafana/sentry-fleet.json");
    let doc: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    walk(&doc, &mut exprs);
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_dashboard_with_its_key_and_every_deployed_expression_evaluates() {
    let prometheus = require_bin!("prometheus");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("sentry.db");
    let run = sentry_run(&db, &[], true);
    assert_eq!(run.status.code(), Some(0), "sentry run: {}", stderr(&run));

    let dash = Dashboard::start(&db, &[], &[]);
    // The key file sentry made beside the store, as the deployed config reads it.
    let key_file = dir.path().join("api-key");
    assert!(key_file.exists(), "no api-key beside the store");

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: sentry\n    authorization:\n      type: Bearer\n      \
             credentials_file: {key}\n    static_configs:\n      - targets: ['127.0.0.1:{dash}']\n",
            rules = workspace().join("deploy/prometheus/rules.yml").display(),
            key = key_file.display(),
            dash = dash.port,
        ),
    )
    .expect("write the Prometheus config");
    let mut server = Server::start(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        dir.path().join("prometheus.log"),
    );
    server.wait_ready(port, "/-/ready");

    let expr = r#"sentry_job_cpu_seconds_total{ci="github",repository="acme/api",workflow="CI",ci_job="unit"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let series = loop {
        let answer = query(port, expr);
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !result.is_empty() {
            break result;
        }
        let up = query(port, "up");
        assert!(
            Instant::now() < deadline,
            "Prometheus never got {expr}: {answer}; up: {up}\n{}\ndashboard stderr:\n{}",
            server.log(),
            dash.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(series.len(), 1, "{series:?}");
    let metric = &series[0]["metric"];
    assert_eq!(metric["job"], "sentry", "{metric}");
    assert_eq!(metric["instance"], format!("127.0.0.1:{}", dash.port));
    assert!(
        metric.get("run_id").is_none(),
        "an id outside the info series: {metric}"
    );
    let up = query(port, r#"up{job="sentry"}"#);
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    let mut exprs = rule_expressions();
    assert!(exprs.len() >= 5, "too few rules: {exprs:?}");
    let from_dashboard = dashboard_expressions();
    assert!(
        from_dashboard.len() >= 8,
        "too few panels: {from_dashboard:?}"
    );
    exprs.extend(from_dashboard);
    for expr in exprs {
        let answer = query(port, &expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    // Prometheus loaded the rules file too and evaluates its groups without error.
    let rules = request(port, "GET", "/api/v1/rules", &[], b"").json();
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!groups.is_empty(), "{rules}");
    drop(server);
    dash.stop();
}

#[test]
fn the_textfile_passes_promtool_check_metrics() {
    let promtool = require_bin!("promtool");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).expect("a textfile directory");
    let db = dir.path().join("sentry.db");
    let run = sentry_run(
        &db,
        &["--textfile-dir", textfiles.to_str().expect("a UTF-8 path")],
        false,
    );
    assert_eq!(run.status.code(), Some(0), "sentry run: {}", stderr(&run));
    let text = std::fs::read_to_string(textfiles.join("sentry.prom"))
        .unwrap_or_else(|e| panic!("no sentry.prom ({e}); stderr: {}", stderr(&run)));
    assert!(
        text.lines().any(|l| l
            == r#"sentry_job_runs_total{ci="local",repository="",workflow="",ci_job="sh",state="exited"} 1"#),
        "{text}"
    );
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool can be started");
    check
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_textfile_directory_that_does_not_exist_is_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = sentry_run(
        &dir.path().join("sentry.db"),
        &["--textfile-dir", "/nonexistent/textfile"],
        false,
    );
    assert_eq!(run.status.code(), Some(125), "{}", stderr(&run));
    assert!(stderr(&run).contains("--textfile-dir"), "{}", stderr(&run));
}

#[test]
fn promtool_accepts_the_deployed_config_and_rules() {
    let promtool = require_bin!("promtool");
    let deploy = workspace().join("deploy/prometheus");
    let check = |args: &[&str]| {
        let out = Command::new(&promtool)
            .args(args)
            .output()
            .expect("promtool can be started");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let rules = deploy.join("rules.yml");
    check(&["check", "rules", rules.to_str().expect("UTF-8")]);
    // The file as shipped: its key file exists only on a real Prometheus host.
    let config = deploy.join("prometheus.yml");
    check(&[
        "check",
        "config",
        "--syntax-only",
        config.to_str().expect("UTF-8"),
    ]);
    // And in full (rule files included), with the key file and rules where it expects them.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = dir.path().join("sentry-api-key");
    std::fs::write(&key, "k").expect("a key file");
    let text = std::fs::read_to_string(&config)
        .expect("prometheus.yml")
        .replace(
            "/etc/prometheus/sentry-api-key",
            key.to_str().expect("UTF-8"),
        );
    let copy = dir.path().join("prometheus.yml");
    std::fs::write(&copy, text).expect("write the copy");
    std::fs::copy(&rules, dir.path().join("rules.yml")).expect("copy the rules");
    check(&["check", "config", copy.to_str().expect("UTF-8")]);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

#[test]
fn a_run_pushes_its_figures_to_the_pushgateway_under_the_documented_grouping_key() {
    let pushgateway = require_bin!("prometheus-pushgateway");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let mut server = Server::start(
        Command::new(pushgateway).arg(format!("--web.listen-address=127.0.0.1:{port}")),
        dir.path().join("pushgateway.log"),
    );
    server.wait_ready(port, "/-/ready");
    let url = format!("http://127.0.0.1:{port}");
    let run = sentry_run(
        &dir.path().join("sentry.db"),
        &["--pushgateway", &url],
        true,
    );
    assert_eq!(run.status.code(), Some(0), "sentry run: {}", stderr(&run));
    assert!(!stderr(&run).contains("could not push"), "{}", stderr(&run));

    let text = request(port, "GET", "/metrics", &[], b"").text();
    let line = text
        .lines()
        .find(|l| l.starts_with("sentry_run_duration_seconds{"))
        .unwrap_or_else(|| panic!("no sentry_run_duration_seconds pushed:\n{text}"));
    for label in [
        "job=\"sentry\"".to_string(),
        format!("instance=\"{}\"", hostname()),
        "ci=\"github\"".to_string(),
        "repository=\"acme/api\"".to_string(),
        "workflow=\"CI\"".to_string(),
        "ci_job=\"unit\"".to_string(),
    ] {
        assert!(line.contains(&label), "{label} missing: {line}");
    }
    for name in [
        "sentry_run_exit_code{",
        "sentry_run_runaway{",
        "sentry_run_events_captured{",
        "sentry_run_last_completion_timestamp_seconds{",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    drop(server);
}

#[test]
fn a_pushgateway_that_is_down_costs_a_message_not_the_exit_status() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Port 1: privileged, and nothing listens there (a free port picked now could be taken
    // by another test's server before the push).
    let url = "http://127.0.0.1:1".to_string();
    let run = sentry_run(
        &dir.path().join("sentry.db"),
        &["--pushgateway", &url],
        false,
    );
    assert_eq!(run.status.code(), Some(0), "sentry run: {}", stderr(&run));
    let err = stderr(&run);
    assert_eq!(
        err.lines().filter(|l| l.contains("could not push")).count(),
        1,
        "expected one line about the push: {err}"
    );
}
