//! The HTTP API end to end: a real `sentry dashboard` on an ephemeral loopback port over a
//! real SQLite store, filled by real `sentry run`s, spoken to over real HTTP. Covers every
//! endpoint's happy path and its auth failure, the security defaults of DESIGN.md section 5
//! (key, Host allowlist, CORS, rate limiting, body limit), RFC 7807 errors, the OpenAPI
//! document against the router, the event stream with resume, and control of a live run.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentry_tests::http::{request, Dashboard, SseClient, SseEvent};
use sentry_tests::sentry_bin;
use serde_json::json;

const EXIT_STOPPED: i32 = 124;

/// A child that repeats one failing line forever: an output loop sentry stops in ~1-2 s.
const LOOP: &str =
    "while true; do echo 'error: upstream refused the connection, retrying'; sleep 0.02; done";

/// Methods probed against every path (HEAD is implied by GET, OPTIONS belongs to CORS).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The endpoints the issue asks for, as (method, path template).
const EXPECTED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/audit"),
    ("GET", "/baselines"),
    ("GET", "/healthz"),
    ("GET", "/incidents"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/process/kill"),
    ("POST", "/process/pause"),
    ("POST", "/process/restart"),
    ("POST", "/process/resume"),
    ("GET", "/readyz"),
    ("GET", "/runs"),
    ("GET", "/runs/{id}"),
    ("GET", "/runs/{id}/samples"),
    ("GET", "/stream"),
    ("GET", "/timeline"),
];

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        Store {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("sentry.db")
    }

    fn dashboard(&self) -> Dashboard {
        Dashboard::start(&self.path(), &[], &[])
    }

    /// A `sentry run` of `command` recording into this store, not waited for.
    fn spawn_run(&self, command: &[&str]) -> Child {
        Command::new(sentry_bin())
            .args(["run", "--quiet", "--db"])
            .arg(self.path())
            .arg("--")
            .args(command)
            .env_remove("SENTRY_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sentry run can be started")
    }

    /// Records one runaway that sentry stops; returns its run id.
    fn record_runaway(&self) -> i64 {
        let out = self
            .spawn_run(&["sh", "-c", LOOP])
            .wait_with_output()
            .expect("sentry run finishes");
        assert_eq!(
            out.status.code(),
            Some(EXIT_STOPPED),
            "the runaway was not stopped; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conn = rusqlite::Connection::open(self.path()).expect("open the store");
        conn.query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
            .expect("the run was recorded")
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A live run of `sleep 60` in `store`, listed by the dashboard as running; returns it and
/// its id.
fn live_run(store: &Store, dash: &Dashboard) -> (Child, i64) {
    let child = store.spawn_run(&["sleep", "60"]);
    let pid = child.id();
    let id = wait_for(
        "the live run to be listed as running",
        Duration::from_secs(20),
        || {
            let runs = dash.get_json("/runs?status=running");
            runs["items"]
                .as_array()?
                .iter()
                .find(|r| r["pid"] == pid)
                .and_then(|r| r["id"].as_i64())
        },
    );
    // Listed from the start; controllable once its command runs, which its first sample shows.
    wait_for(
        "the live run's first sample",
        Duration::from_secs(20),
        || {
            let samples = dash.get_json(&format!("/runs/{id}/samples"));
            (!samples["items"].as_array()?.is_empty()).then_some(())
        },
    );
    (child, id)
}

/// Paths of the document, with `{id}` filled in, and the query a route needs.
fn concrete(path: &str, id: i64) -> String {
    let p = path.replace("{id}", &id.to_string());
    if p == "/timeline" {
        format!("/timeline?run={id}")
    } else {
        p
    }
}

fn document(dash: &Dashboard) -> BTreeSet<(String, String)> {
    let doc = dash.get_json("/openapi.json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn healthz_answers_without_a_key_with_the_security_headers() {
    let store = Store::new();
    let dash = store.dashboard();
    let res = request(dash.port, "GET", "/healthz", &[], b"");
    assert_eq!(res.status, 200, "{res}");
    assert_eq!(res.json(), json!({"status": "ok"}));
    assert_eq!(res.header("cache-control"), Some("no-store"), "{res}");
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{res}"
    );
    let ready = request(dash.port, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{ready}");
}

#[test]
fn readyz_is_503_when_the_store_is_gone_while_healthz_stays_200() {
    let store = Store::new();
    let dash = store.dashboard();
    std::fs::remove_file(store.path()).expect("remove the store file");
    let res = request(dash.port, "GET", "/readyz", &[], b"");
    let p = res.problem(503);
    assert!(
        p["detail"].as_str().unwrap_or("").contains("sentry.db"),
        "the detail should name the store: {p}"
    );
    let health = request(dash.port, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{health}");
}

#[test]
fn every_protected_route_refuses_a_missing_or_wrong_key() {
    let store = Store::new();
    let dash = store.dashboard();
    let routes = document(&dash);
    let public = ["/healthz", "/readyz", "/"];
    // Wrong keys count against this client's failure budget (10); past it the answer is 429.
    let mut wrong_keys = 0;
    for (method, path) in &routes {
        if public.contains(&path.as_str()) {
            continue;
        }
        let path = concrete(path, 1);
        let body = if method == "POST" {
            br#"{"run_id":1}"#.as_slice()
        } else {
            b""
        };
        for auth in [
            None,
            Some("Bearer not-the-key-at-all-0123456789"),
            Some("Basic Zm9vOmJhcg=="),
        ] {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            let limited = wrong_keys >= 10;
            let res = request(dash.port, method, &path, &headers, body);
            if limited {
                res.problem(429);
            } else {
                let p = res.problem(401);
                assert_eq!(
                    res.header("www-authenticate"),
                    Some("Bearer realm=\"sentry\""),
                    "{method} {path}: {res}"
                );
                assert!(
                    !p["detail"].as_str().unwrap_or("").contains("not-the-key"),
                    "the detail echoes the presented key: {p}"
                );
            }
            if auth.is_some() {
                wrong_keys += 1;
            }
        }
    }
    assert!(wrong_keys > 10, "the test should reach the limit");
    // Enough wrong keys to be limited did not lock the key holder out.
    let ok = dash.get("/runs");
    assert_eq!(ok.status, 200, "{ok}");
    assert!(
        !dash.stderr().contains(&dash.key),
        "the key appears in the dashboard's stderr"
    );
}

#[test]
fn brute_force_gets_429_while_the_valid_key_keeps_working() {
    let store = Store::new();
    let dash = store.dashboard();
    let wrong = [("Authorization", "Bearer wrong-key-0123456789abcdef")];
    for i in 0..10 {
        let res = request(dash.port, "GET", "/incidents", &wrong, b"");
        assert_eq!(res.status, 401, "failure {i} should still be a 401: {res}");
    }
    let limited = request(dash.port, "GET", "/incidents", &wrong, b"");
    limited.problem(429);
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {limited}"));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Without any key the limited client is still refused with 429.
    request(dash.port, "GET", "/incidents", &[], b"").problem(429);
    // The holder of the key, from the same address, is served.
    for _ in 0..3 {
        let ok = dash.get("/incidents");
        assert_eq!(ok.status, 200, "the valid key was locked out: {ok}");
    }
    let metrics = dash.get("/metrics").text();
    assert!(
        metrics.contains("sentry_api_auth_failures_total 12"),
        "expected 12 auth failures counted:\n{metrics}"
    );
}

#[test]
fn a_rebinding_host_is_refused_even_with_the_key() {
    let store = Store::new();
    let dash = store.dashboard();
    let auth = dash.auth();
    let evil = format!("evil.example:{}", dash.port);
    for path in ["/runs", "/healthz"] {
        let res = request(
            dash.port,
            "GET",
            path,
            &[("Host", &evil), ("Authorization", &auth)],
            b"",
        );
        res.problem(403);
    }
    for host in [
        format!("localhost:{}", dash.port),
        format!("[::1]:{}", dash.port),
    ] {
        let res = request(
            dash.port,
            "GET",
            "/runs",
            &[("Host", &host), ("Authorization", &auth)],
            b"",
        );
        assert_eq!(res.status, 200, "Host {host}: {res}");
    }
    let other_port = format!("127.0.0.1:{}", dash.port.wrapping_add(1));
    request(
        dash.port,
        "GET",
        "/runs",
        &[("Host", &other_port), ("Authorization", &auth)],
        b"",
    )
    .problem(403);
}

#[test]
fn allow_host_adds_a_name() {
    let store = Store::new();
    let dash = Dashboard::start(&store.path(), &["--allow-host", "sentry.internal"], &[]);
    let auth = dash.auth();
    let host = format!("sentry.internal:{}", dash.port);
    let res = request(
        dash.port,
        "GET",
        "/runs",
        &[("Host", &host), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(res.status, 200, "{res}");
}

#[test]
fn cors_grants_exact_allowed_origins_only() {
    let store = Store::new();
    let dash = Dashboard::start(
        &store.path(),
        &["--allow-origin", "https://dash.example:8443"],
        &[],
    );
    let own = format!("http://127.0.0.1:{}", dash.port);
    let preflight = |origin: &str| {
        request(
            dash.port,
            "OPTIONS",
            "/runs",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            b"",
        )
    };
    for origin in [own.as_str(), "https://dash.example:8443"] {
        let res = preflight(origin);
        assert!(res.status < 300, "preflight from {origin}: {res}");
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some(origin),
            "no grant for {origin}: {res}"
        );
        let allowed = res
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{res}");
    }
    for origin in [
        "http://evil.example",
        "https://dash.example",
        "http://127.0.0.1:1",
        "null",
    ] {
        let res = preflight(origin);
        assert_eq!(
            res.header("access-control-allow-origin"),
            None,
            "a foreign origin {origin} got a grant: {res}"
        );
        let auth = dash.auth();
        let res = request(
            dash.port,
            "GET",
            "/runs",
            &[("Origin", origin), ("Authorization", &auth)],
            b"",
        );
        assert_eq!(res.header("access-control-allow-origin"), None, "{res}");
    }
    let auth = dash.auth();
    let res = request(
        dash.port,
        "GET",
        "/runs",
        &[("Origin", &own), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some(own.as_str()),
        "{res}"
    );
    assert_ne!(res.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn errors_are_problem_details() {
    let store = Store::new();
    let dash = store.dashboard();
    let auth = dash.auth();
    let key = [("Authorization", auth.as_str())];
    let p = request(dash.port, "GET", "/no/such/path", &key, b"").problem(404);
    assert_eq!(p["type"], "urn:problem-type:sentry:not-found", "{p}");
    let res = request(dash.port, "DELETE", "/runs", &key, b"");
    res.problem(405);
    assert!(
        res.header("allow").is_some_and(|a| a.contains("GET")),
        "{res}"
    );
    for bad in [
        "/incidents?limit=0",
        "/incidents?limit=501",
        "/incidents?limit=ten",
        "/incidents?kind=bogus",
        "/incidents?action=explode",
        "/incidents?before=-3",
        "/incidents?typo=1",
        "/runs?status=zombie",
        "/timeline",
        "/timeline?run=x",
        "/runs/abc",
        "/runs/1/samples?limit=5001",
        "/stream?after=-1",
    ] {
        let p = request(dash.port, "GET", bad, &key, b"").problem(400);
        assert!(!p["detail"].as_str().unwrap_or("").is_empty(), "{bad}: {p}");
    }
    let with_json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    for body in [
        &b"{\"run_id\": "[..],
        b"[]",
        b"{\"run_id\": 1, \"extra\": 2}",
        b"{}",
    ] {
        let res = request(dash.port, "POST", "/process/kill", &with_json, body);
        assert!(
            matches!(res.status, 400 | 422),
            "body {:?}: expected 400/422, got {res}",
            String::from_utf8_lossy(body)
        );
        res.problem(res.status);
    }
    request(dash.port, "POST", "/process/kill", &key, br#"{"run_id":1}"#).problem(415);
    let big = vec![b' '; 64 * 1024];
    request(dash.port, "POST", "/process/kill", &with_json, &big).problem(413);
    // Unknown runs.
    request(dash.port, "GET", "/runs/424242", &key, b"").problem(404);
    request(dash.port, "GET", "/runs/424242/samples", &key, b"").problem(404);
    request(dash.port, "GET", "/timeline?run=424242", &key, b"").problem(404);
}

#[test]
fn the_openapi_document_matches_the_router() {
    let store = Store::new();
    let dash = store.dashboard();
    let documented = document(&dash);
    let expected: BTreeSet<(String, String)> = EXPECTED_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "the document's routes differ from the API's (left: document, right: expected)"
    );
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    let auth = dash.auth();
    for path in paths {
        let url = concrete(path, 1);
        for method in METHODS {
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            if is_documented && url == "/stream" {
                let sse = SseClient::open(dash.port, &url, &[("Authorization", &auth)]);
                assert_eq!(sse.status, 200, "GET /stream: {}", sse.response());
                continue;
            }
            let res = request(
                dash.port,
                method,
                &url,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                if *method == "GET" {
                    b""
                } else {
                    br#"{"run_id":1}"#
                },
            );
            if is_documented {
                assert_ne!(
                    res.status, 405,
                    "{method} {url} is documented but not routed: {res}"
                );
                if res.status == 404 {
                    assert_ne!(
                        res.json()["type"],
                        "urn:problem-type:sentry:not-found",
                        "{method} {url} is documented but not routed: {res}"
                    );
                }
            } else {
                assert_eq!(
                    res.status, 405,
                    "{method} {url} is routed but not documented (expected 405): {res}"
                );
            }
        }
    }
    // Paths next to the documented ones are not routed.
    for path in [
        "/process",
        "/runs/1/incidents",
        "/incident",
        "/stream/ticket",
        "/api/runs",
    ] {
        let res = dash.get(path);
        let p = res.problem(404);
        assert_eq!(
            p["type"], "urn:problem-type:sentry:not-found",
            "{path}: {p}"
        );
    }
}

#[test]
fn every_endpoint_serves_a_recorded_runaway() {
    let store = Store::new();
    let run_id = store.record_runaway();
    let second = store.record_runaway();
    let dash = store.dashboard();

    let runs = dash.get_json("/runs");
    let items = runs["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{runs}");
    assert_eq!(items[0]["id"], second, "runs are newest first: {runs}");
    let run = dash.get_json(&format!("/runs/{run_id}"));
    assert_eq!(run["status"], "stopped", "{run}");
    assert_eq!(run["runaway"], true, "{run}");
    assert_eq!(run["exit_code"], EXIT_STOPPED, "{run}");
    assert!(
        run["command"].as_array().is_some_and(|c| c[0] == "sh"),
        "{run}"
    );
    assert!(
        run.get("control_socket").is_none(),
        "internal field leaked: {run}"
    );
    let page = dash.get_json("/runs?limit=1");
    assert_eq!(page["next_before"], second, "{page}");
    let next = dash.get_json(&format!("/runs?limit=1&before={second}"));
    assert_eq!(next["items"][0]["id"], run_id, "{next}");
    let stopped = dash.get_json("/runs?status=stopped");
    assert_eq!(
        stopped["items"].as_array().map(Vec::len),
        Some(2),
        "{stopped}"
    );
    let running = dash.get_json("/runs?status=running");
    assert_eq!(
        running["items"].as_array().map(Vec::len),
        Some(0),
        "{running}"
    );

    let incidents = dash.get_json(&format!("/incidents?run={run_id}"));
    let list = incidents["items"].as_array().expect("items");
    assert!(!list.is_empty(), "no incident recorded: {incidents}");
    let inc = &list[0];
    assert_eq!(inc["run_id"], run_id, "{inc}");
    assert_eq!(inc["kind"], "output_loop", "{inc}");
    assert_eq!(inc["action"], "kill", "{inc}");
    assert!(inc["evidence"]["type"] == "loop", "{inc}");
    let all = dash.get_json("/incidents?kind=output_loop&action=kill&limit=1");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
    let after = all["next_before"]
        .as_i64()
        .expect("a next page with 2 runs' incidents");
    let older = dash.get_json(&format!("/incidents?limit=500&before={after}"));
    assert!(
        older["items"]
            .as_array()
            .is_some_and(|v| !v.is_empty() && v.iter().all(|i| i["id"].as_i64() < Some(after))),
        "{older}"
    );
    let none = dash.get_json("/incidents?kind=fork_storm");
    assert_eq!(none["items"], json!([]), "{none}");

    let timeline = dash.get_json(&format!("/timeline?run={run_id}&limit=1000"));
    let events = timeline["items"].as_array().expect("items");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for wanted in ["run_started", "decision", "incident", "run_ended"] {
        assert!(
            types.contains(&wanted),
            "no {wanted} in the timeline: {types:?}"
        );
    }
    assert!(
        !types.contains(&"sample"),
        "samples in the timeline: {types:?}"
    );
    assert!(events.iter().all(|e| e["run_id"] == run_id), "{timeline}");
    let first = dash.get_json(&format!("/timeline?run={run_id}&limit=1"));
    let cursor = first["next_after"]
        .as_i64()
        .expect("next_after on a full page");
    let rest = dash.get_json(&format!("/timeline?run={run_id}&after={cursor}&limit=1000"));
    assert_eq!(
        rest["items"].as_array().map(Vec::len),
        Some(events.len() - 1),
        "{rest}"
    );

    let samples = dash.get_json(&format!("/runs/{run_id}/samples"));
    let s = samples["items"].as_array().expect("items");
    assert!(!s.is_empty(), "no samples: {samples}");
    assert!(
        s.iter()
            .all(|x| x["run_id"] == run_id && x["t_s"].is_number()),
        "{samples}"
    );

    let metrics = dash.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{metrics}"
    );
    let text = metrics.text();
    for line in [
        "sentry_runs{kind=\"run\",state=\"stopped\"} 2",
        "# TYPE sentry_incidents_total counter",
        "# TYPE sentry_events_captured_total counter",
        "# TYPE sentry_api_requests_total counter",
        "sentry_api_requests_total{route=\"/runs/{id}\",code=\"200\"} 1",
        "sentry_restarts_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("sentry_incidents_total{kind=\"output_loop\",action=\"kill\"} ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sentry_decisions_total{action=\"kill\"} ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sentry_events_captured_total ") && !l.ends_with(" 0")),
        "no captured events counted:\n{text}"
    );

    let audit = dash.get_json("/audit");
    assert_eq!(audit["items"], json!([]), "{audit}");
    let index = request(dash.port, "GET", "/", &[], b"");
    assert_eq!(index.status, 200, "{index}");
    assert!(index.text().contains("/openapi.json"), "{index}");
}

#[test]
fn controlling_an_ended_or_unknown_run_is_refused_and_audited() {
    let store = Store::new();
    let run_id = store.record_runaway();
    let dash = store.dashboard();
    let p = dash
        .post_json("/process/kill", &json!({"run_id": run_id}))
        .problem(409);
    assert!(
        p["detail"].as_str().unwrap_or("").contains("not live"),
        "{p}"
    );
    dash.post_json("/process/pause", &json!({"run_id": 999_999}))
        .problem(404);
    let audit = dash.get_json("/audit");
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(items[0]["action"], "pause", "{audit}");
    assert_eq!(items[0]["target"], "run 999999", "{audit}");
    assert_eq!(items[0]["result"], "error 404", "{audit}");
    assert_eq!(items[1]["action"], "kill", "{audit}");
    assert_eq!(items[1]["target"], format!("run {run_id}"), "{audit}");
    assert_eq!(items[1]["result"], "error 409", "{audit}");
    assert_eq!(items[1]["actor"], "api", "{audit}");
    assert_eq!(items[1]["client"], "127.0.0.1", "{audit}");
}

#[test]
fn killing_a_live_run_through_the_api_stops_it_and_is_audited() {
    let store = Store::new();
    let dash = store.dashboard();
    let (mut child, run_id) = live_run(&store, &dash);

    let paused = dash.post_json("/process/pause", &json!({"run_id": run_id}));
    assert_eq!(paused.status, 200, "{paused}");
    let reply = paused.json();
    assert_eq!(
        (
            reply["ok"].as_bool(),
            reply["status"].as_str(),
            reply["action"].as_str()
        ),
        (Some(true), Some("paused"), Some("pause")),
        "{reply}"
    );
    let resumed = dash.post_json("/process/resume", &json!({"run_id": run_id}));
    assert_eq!(resumed.status, 200, "{resumed}");
    assert_eq!(resumed.json()["status"], "running", "{resumed}");

    let asked = Instant::now();
    let killed = dash.post_json("/process/kill", &json!({"run_id": run_id}));
    assert_eq!(killed.status, 200, "{killed}");
    let reply = killed.json();
    assert_eq!(reply["run_id"], run_id, "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["action"], "kill", "{reply}");
    assert!(
        reply["outcome"].as_str().is_some_and(|o| !o.is_empty()),
        "{reply}"
    );
    let status = wait_exit(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("sentry run was still running 10 s after the API killed it")
    });
    assert_eq!(
        status.code(),
        Some(EXIT_STOPPED),
        "sentry run should exit 124 when stopped; took {:?}",
        asked.elapsed()
    );
    // The server did not die with the run.
    assert_eq!(request(dash.port, "GET", "/healthz", &[], b"").status, 200);
    let run = dash.get_json(&format!("/runs/{run_id}"));
    assert_eq!(run["status"], "stopped", "{run}");
    let audit = dash.get_json("/audit");
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or(""),
                a["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("kill", "ok"), ("resume", "ok"), ("pause", "ok")],
        "{audit}"
    );
    let kill = &audit["items"][0];
    assert_eq!(kill["target"], format!("run {run_id}"), "{kill}");
    assert_eq!(kill["client"], "127.0.0.1", "{kill}");
    // Once ended, it is no longer live.
    dash.post_json("/process/kill", &json!({"run_id": run_id}))
        .problem(409);
}

fn events_until_end(sse: &mut SseClient, run_id: Option<i64>, timeout: Duration) -> Vec<SseEvent> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = sse.next_event(left).unwrap_or_else(|| {
            panic!(
                "the stream ended or went quiet before run_ended; got {:?}",
                got.iter()
                    .map(|e: &SseEvent| (e.id, e.kind.clone()))
                    .collect::<Vec<_>>()
            )
        });
        let end = ev.kind == "run_ended"
            && run_id.is_none_or(|r| ev.json()["run_id"].as_i64() == Some(r));
        got.push(ev);
        if end {
            return got;
        }
    }
}

fn store_event_ids(store: &Store, after: i64) -> Vec<i64> {
    let conn = rusqlite::Connection::open(store.path()).expect("open the store");
    let mut stmt = conn
        .prepare("SELECT id FROM events WHERE id > ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([after], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .expect("event ids")
}

#[test]
fn the_stream_delivers_a_live_runs_events_and_resumes_from_last_event_id() {
    let store = Store::new();
    let dash = store.dashboard();
    let auth = dash.auth();
    let mut live = SseClient::open(dash.port, "/stream", &[("Authorization", &auth)]);
    assert_eq!(live.status, 200, "{}", live.response());
    assert!(
        live.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")),
        "{:?}",
        live.headers
    );
    // Idle: heartbeat comments.
    let beat = live
        .next(Duration::from_secs(5))
        .expect("a heartbeat while idle");
    assert_eq!(beat.kind, "comment", "{beat:?}");

    let mut child = store.spawn_run(&["sh", "-c", LOOP]);
    // Read a few events, drop the connection mid-run, and resume from the last id.
    let mut first = Vec::new();
    while first.len() < 4 {
        let ev = live
            .next_event(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no live events; got {first:?}"));
        first.push(ev);
    }
    drop(live);
    let last = first.last().and_then(|e| e.id).expect("events carry ids");
    let resume = last.to_string();
    let mut resumed = SseClient::open(
        dash.port,
        "/stream",
        &[("Authorization", &auth), ("Last-Event-ID", &resume)],
    );
    assert_eq!(resumed.status, 200, "{}", resumed.response());
    let rest = events_until_end(&mut resumed, None, Duration::from_secs(30));
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("sentry run ended");
    assert_eq!(status.code(), Some(EXIT_STOPPED));

    let got: Vec<i64> = first.iter().chain(&rest).filter_map(|e| e.id).collect();
    let mut stored = store_event_ids(&store, 0);
    let end = rest.last().and_then(|e| e.id).expect("run_ended has an id");
    stored.retain(|id| *id <= end);
    assert_eq!(
        got, stored,
        "the stream (first connection, then resumed after {last}) must deliver every stored \
         event once, in order"
    );
    let kinds: BTreeSet<&str> = first.iter().chain(&rest).map(|e| e.kind.as_str()).collect();
    for wanted in ["run_started", "sample", "decision", "run_ended"] {
        assert!(kinds.contains(wanted), "no {wanted} event: {kinds:?}");
    }
    let started = first
        .iter()
        .chain(&rest)
        .find(|e| e.kind == "run_started")
        .expect("run_started");
    let data = started.json();
    assert_eq!(data["type"], "run_started", "{data}");
    assert_eq!(
        Some(data["id"].as_i64().unwrap_or(-1)),
        started.id,
        "{data}"
    );
    let run_id = data["run_id"].as_i64().expect("run_id");

    // A first connect with ?after=, filtered to the run, replays it from the store.
    let mut replay = SseClient::open(
        dash.port,
        &format!("/stream?after=0&run={run_id}"),
        &[("Authorization", &auth)],
    );
    let replayed: Vec<i64> = events_until_end(&mut replay, Some(run_id), Duration::from_secs(10))
        .iter()
        .filter_map(|e| e.id)
        .collect();
    assert_eq!(
        replayed, got,
        "?after=0&run= should replay the run's events"
    );
    let mut other = SseClient::open(
        dash.port,
        &format!("/stream?after=0&run={}", run_id + 1),
        &[("Authorization", &auth)],
    );
    assert_eq!(
        other.next_event(Duration::from_secs(1)),
        None,
        "events of another run were streamed"
    );
    let metrics = dash.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sentry_stream_clients ") && l != "sentry_stream_clients 0"),
        "{metrics}"
    );
    // Without the key, no stream.
    let refused = SseClient::open(dash.port, "/stream", &[]);
    refused.response().problem(401);
}

#[test]
fn the_key_file_is_created_private_reused_and_overridden_by_the_environment() {
    let store = Store::new();
    let key_file = store.dir.path().join("api-key");
    let first = store.dashboard();
    let first_key = first.key.clone();
    let mode = std::fs::metadata(&key_file)
        .expect("the key file was created beside the store")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {:o}", mode & 0o777);
    let on_disk = std::fs::read_to_string(&key_file).expect("read the key file");
    assert_eq!(on_disk.trim(), first.key);
    assert!(first.key.len() >= 43, "a short key: {}", first.key.len());
    assert!(
        first.stdout.iter().any(|l| l
            == &format!(
                "sentry dashboard: listening on http://127.0.0.1:{}",
                first.port
            )),
        "{:?}",
        first.stdout
    );
    assert!(!first.stderr().contains(&first.key), "the key is in stderr");
    assert_eq!(
        first.stop().code(),
        Some(0),
        "SIGTERM should end it cleanly"
    );

    let again = store.dashboard();
    assert_eq!(again.key, first_key, "the key changed between starts");
    drop(again);

    let env_key = "env-key-5b7c2e9a0d4f4c1e8a3b6d2f";
    let over = Dashboard::start(&store.path(), &[], &[("SENTRY_API_KEY", env_key)]);
    assert_eq!(over.key, env_key);
    assert_eq!(over.get("/runs").status, 200);
    let auth = format!("Bearer {}", first_key);
    request(over.port, "GET", "/runs", &[("Authorization", &auth)], b"").problem(401);
}

fn dashboard_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(sentry_bin());
    cmd.arg("dashboard").args(args).env_remove("SENTRY_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sentry dashboard starts")
        .wait_with_output()
        .expect("sentry dashboard ends");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "it panicked: {stderr}");
    stderr
}

#[test]
fn start_up_problems_are_clear_errors() {
    let store = Store::new();
    let db = store.path();
    let db = db.to_str().expect("utf-8 path");

    let err = dashboard_fails(&["--bind", "0.0.0.0", "--port", "0", "--db", db], &[]);
    assert!(err.contains("--allow-remote"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("addr").port().to_string();
    let err = dashboard_fails(&["--port", &port, "--db", db], &[]);
    assert!(err.contains("already in use"), "{err}");

    let junk = store.dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database, just notes\n".repeat(300)).expect("write junk");
    let err = dashboard_fails(&["--port", "0", "--db", junk.to_str().unwrap_or("")], &[]);
    assert!(err.contains("not a sentry database"), "{err}");

    let err = dashboard_fails(&["--port", "0", "--db", db], &[("SENTRY_API_KEY", "short")]);
    assert!(err.contains("SENTRY_API_KEY"), "{err}");

    let err = dashboard_fails(&["--port", "0", "--db", db, "--allow-origin", "*"], &[]);
    assert!(err.contains("wildcards"), "{err}");
}

/// Fake secrets as a child might print them, and the part that must never come out.
const SECRETS: &[(&str, &str)] = &[
    ("AKIAZ7QX4PLM2NB8VCDE", "AKIAZ7QX4PLM2NB8VCDE"),
    (
        "ghp_Fq8sLk2Jd9Wm4Xz7Rt1Yv6Bn3Hc5Pa0Qe2Ug",
        "Fq8sLk2Jd9Wm4Xz7Rt1Yv6Bn3Hc5Pa0Qe2Ug",
    ),
    ("password=Tr0ub4dor-and-3-horses", "Tr0ub4dor-and-3-horses"),
    (
        "https://deploy:S3cr3tPassw0rdXyz@git.example.test/repo.git",
        "S3cr3tPassw0rdXyz",
    ),
];

#[test]
fn secrets_printed_by_a_child_never_reach_the_api_or_the_stream() {
    let store = Store::new();
    let line = SECRETS
        .iter()
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "while true; do echo 'login failed with {line}, retrying'; sleep 0.02; done # {}",
        SECRETS[1].0
    );
    let out = store
        .spawn_run(&["sh", "-c", &script])
        .wait_with_output()
        .expect("sentry run finishes");
    assert_eq!(
        out.status.code(),
        Some(EXIT_STOPPED),
        "the runaway was not stopped"
    );
    let dash = store.dashboard();
    let runs = dash.get_json("/runs");
    let run_id = runs["items"][0]["id"].as_i64().expect("the run is listed");
    let mut seen = String::new();
    for path in [
        "/runs".to_string(),
        format!("/runs/{run_id}"),
        format!("/runs/{run_id}/samples"),
        "/incidents".to_string(),
        format!("/timeline?run={run_id}&limit=1000"),
        "/audit".to_string(),
        "/metrics".to_string(),
    ] {
        let res = dash.get(&path);
        assert_eq!(res.status, 200, "GET {path}: {res}");
        seen.push_str(&res.text());
    }
    let auth = dash.auth();
    let mut sse = SseClient::open(
        dash.port,
        &format!("/stream?after=0&run={run_id}"),
        &[("Authorization", &auth)],
    );
    for ev in events_until_end(&mut sse, Some(run_id), Duration::from_secs(10)) {
        seen.push_str(&ev.data);
    }
    // The evidence must be there, redacted, for this test to mean anything.
    assert!(
        seen.contains("login failed with") && seen.contains("REDACTED"),
        "no redacted evidence in the API's answers"
    );
    for (_, core) in SECRETS {
        assert!(
            !seen.contains(core),
            "{core:?} came out of the API or the stream"
        );
    }
}
