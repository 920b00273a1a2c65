//! What learned baselines cost: the store lookup a run (or watched job) makes once, before
//! its command starts, with 10,000 runs of history, and the per-decision comparison after it.
//! The target (issue 9) is under 1 ms added to a decision with 10,000 runs of history.
//!
//! Two stores of 10,000 ended runs each: every run of one job key (the deepest history one
//! key can have), and the same number spread over 500 keys (a busy CI host). One run in ten is
//! unhealthy (stopped, failed or a runaway), as the lookup must skip those.
//!
//! Run with `cargo bench -p sentry --bench baseline_lookup` (optionally `-- ROUNDS`). Prints
//! median and p99 per lookup and PASS/FAIL on the medians (the lookup is made once per run,
//! not per decision; p99 on a shared two-core machine measures the neighbours) and on the
//! per-decision comparison; exits non-zero on FAIL.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use sentry::detect::regression::{RegressionConfig, RegressionDetector};
use sentry::model::Sample;
use sentry::store::Store;

const RUNS: usize = 10_000;
const TARGET: Duration = Duration::from_millis(1);

fn seed(path: &Path, keys: usize) {
    drop(Store::open(path).expect("a new store"));
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO runs (kind, command, host, user, pid, started_at, ended_at, status, \
                 exit_code, runaway, labels, job_key, wall_s, cpu_seconds) \
                 VALUES ('run', '[\"make\",\"test\"]', 'host', 'ci', 1, ?1, ?2, ?3, ?4, ?5, '{}', \
                 ?6, ?7, ?8)",
            )
            .expect("prepare");
        for i in 0..RUNS {
            let start = 1.7e9 + i as f64 * 60.0;
            let wall = 100.0 + (i % 17) as f64;
            let (status, code, runaway) = match i % 10 {
                3 => ("stopped", 124, true),
                7 => ("exited", 2, false),
                _ => ("exited", 0, false),
            };
            insert
                .execute(rusqlite::params![
                    start,
                    start + wall,
                    status,
                    code,
                    runaway,
                    format!("ci:acme/repo-{}:ci:build", i % keys),
                    wall,
                    wall * 0.8
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn percentile(times: &mut [Duration], q: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * q).round() as usize]
}

fn measure(label: &str, rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..rounds / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let (median, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    println!(
        "{label:<62} median {:>8.1} µs   p99 {:>8.1} µs",
        median.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (median, p99)
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RegressionConfig::default();
    let mut worst = Duration::ZERO;
    println!("baseline lookup with {RUNS} runs of history ({rounds} rounds each)");
    for keys in [1usize, 500] {
        let path = dir.path().join(format!("keys-{keys}.db"));
        seed(&path, keys);
        let key = "ci:acme/repo-0:ci:build";
        let store = Store::open(&path).expect("open");
        let found = store
            .baseline(key, config.history)
            .expect("lookup")
            .expect("a baseline");
        assert_eq!(found.runs, config.history.min(found.runs));
        let (median, _) = measure(
            &format!("{keys} key(s): Store::baseline (open store)"),
            rounds,
            || {
                black_box(store.baseline(black_box(key), config.history).ok());
            },
        );
        worst = worst.max(median);
        let (median, _) = measure(
            &format!("{keys} key(s): baseline::lookup (opens the store first)"),
            rounds / 10,
            || {
                black_box(sentry::baseline::lookup(&path, black_box(key), &config));
            },
        );
        worst = worst.max(median);
    }
    // The per-decision part: one comparison per sample once the baseline is known.
    let baseline = sentry::baseline::Baseline {
        job_key: "k".into(),
        runs: 20,
        median_wall_s: 100.0,
        median_cpu_seconds: Some(80.0),
        p90_wall_s: 110.0,
    };
    let mut detector = RegressionDetector::new(config, Some(baseline));
    let sample = Sample {
        at: Duration::from_secs(50),
        cpu_usage_us: 40_000_000,
        pids: 1,
        ..Sample::default()
    };
    let mut i = 0u64;
    let start = Instant::now();
    let n = 1_000_000u64;
    for _ in 0..n {
        i += 1;
        black_box(detector.observe(black_box(&sample), Duration::from_millis(50_000 + i % 7)));
    }
    let per = start.elapsed() / n as u32;
    println!(
        "{:<62} {:>8.1} ns",
        "per decision: RegressionDetector::observe",
        per.as_secs_f64() * 1e9
    );
    let ok = worst < TARGET && per < TARGET;
    println!(
        "{}: slowest lookup median {:.1} µs (once per run), {:.1} ns per decision, against the 1 ms target",
        if ok { "PASS" } else { "FAIL" },
        worst.as_secs_f64() * 1e6,
        per.as_secs_f64() * 1e9
    );
    if !ok {
        std::process::exit(1);
    }
}
