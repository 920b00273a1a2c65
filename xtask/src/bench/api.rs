//! `cargo xtask bench api`: what the HTTP API of `sentry dashboard` (release) sustains on
//! loopback, measured with `wrk` (Debian package `wrk`):
//!
//! - `GET /healthz`, unauthenticated;
//! - `GET /incidents?limit=50`, authenticated, over a store holding 100,000 incidents (one real
//!   incident recorded by `sentry run`, copied with SQL so the rows have the real shape);
//! - 100 concurrent `/stream` (SSE) clients: the server's resident memory before and after
//!   they connect.
//!
//! Targets (issue 5): at least 20,000 and 5,000 requests/s, p99 under 10 ms, and under 50 MiB
//! of extra memory for the SSE clients. The client (wrk) shares the two cores with the server,
//! as it would on a laptop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::served::{record_runaway, Dashboard};

const MIN_HEALTHZ_RPS: f64 = 20_000.0;
const MIN_INCIDENTS_RPS: f64 = 5_000.0;
const MAX_P99_MS: f64 = 10.0;
const MAX_SSE_EXTRA_MIB: f64 = 50.0;
const SSE_CLIENTS: usize = 100;
const INCIDENTS: u64 = 100_000;
const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

/// Arguments of `cargo xtask bench api`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Seconds each wrk run lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections of each wrk run.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Use this sentry binary instead of building target/release/sentry.
    #[arg(long)]
    sentry: Option<PathBuf>,
    /// Do not rebuild sentry.
    #[arg(long)]
    no_build: bool,
}

/// Runs the benchmark; fails when a target is missed.
pub fn run(root: &Path, args: ApiArgs) -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: `apt-get install wrk`");
    }
    let sentry = super::sentry_binary(root, args.sentry.clone(), !args.no_build)?;
    let dir = std::env::temp_dir().join(format!("sentry-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("sentry.db");
    seed(&sentry, &db)?;
    let server = Dashboard::start(&sentry, &db, KEY)?;
    let base = format!("http://127.0.0.1:{}", server.port);

    let healthz = wrk(&args, &format!("{base}/healthz"), false, None)?;
    let incidents = wrk(&args, &format!("{base}/incidents?limit=50"), true, None)?;
    // The server may reuse an answer while the store is unchanged; pages at random depths
    // measure the queries themselves.
    let script = dir.join("random-pages.lua");
    std::fs::write(
        &script,
        format!(
            "math.randomseed(42)\nrequest = function()\n  \
             return wrk.format(\"GET\", \"/incidents?limit=50&before=\" .. math.random(51, {INCIDENTS}))\nend\n"
        ),
    )?;
    let deep = wrk(&args, &format!("{base}/incidents"), true, Some(&script))?;
    let (rss_before, rss_after) = sse_memory(&server)?;
    let extra = (rss_after - rss_before) / 1024.0;

    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!(
        "API on loopback, {} s per run, {} connections (wrk -t2), store of {INCIDENTS} incidents",
        args.duration, args.connections
    );
    println!("| endpoint | requests/s | p50 ms | p99 ms | target | verdict |");
    println!("|---|---|---|---|---|---|");
    let mut failed = Vec::new();
    for (name, r, min) in [
        ("GET /healthz", &healthz, MIN_HEALTHZ_RPS),
        (
            "GET /incidents?limit=50&before=<random> (auth, no reuse)",
            &deep,
            MIN_INCIDENTS_RPS,
        ),
        (
            "GET /incidents?limit=50 (auth)",
            &incidents,
            MIN_INCIDENTS_RPS,
        ),
    ] {
        let ok = r.rps >= min && r.p99_ms < MAX_P99_MS && r.errors == 0;
        if !ok {
            failed.push(name);
        }
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | ≥ {min:.0}/s, p99 < {MAX_P99_MS} ms{} | {} |",
            r.rps,
            r.p50_ms,
            r.p99_ms,
            if r.errors > 0 {
                format!(", {} non-2xx/errors", r.errors)
            } else {
                String::new()
            },
            if ok { "PASS" } else { "FAIL" }
        );
    }
    let sse_ok = extra < MAX_SSE_EXTRA_MIB;
    if !sse_ok {
        failed.push("SSE memory");
    }
    println!(
        "| {SSE_CLIENTS} SSE clients on /stream | RSS {:.1} → {:.1} MiB | | | extra < {MAX_SSE_EXTRA_MIB} MiB | {} ({extra:.1} MiB) |",
        rss_before / 1024.0,
        rss_after / 1024.0,
        if sse_ok { "PASS" } else { "FAIL" }
    );
    if !failed.is_empty() {
        bail!("targets missed: {}", failed.join(", "));
    }
    Ok(())
}

/// A store with one real incident (from a real `sentry run` of an output loop), copied to
/// [`INCIDENTS`] rows across the five kinds.
fn seed(sentry: &Path, db: &Path) -> Result<()> {
    eprintln!("recording a real runaway into {}…", db.display());
    record_runaway(sentry, db)?;
    let script = format!(
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA busy_timeout = 5000")
c.execute('''WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {extra})
INSERT INTO incidents (run_id, at, kind, action, detected_after_s, score, confidence, summary,
  outcome, attempt, reasons, evidence)
SELECT run_id, at - i * 0.5,
  CASE i % 5 WHEN 0 THEN 'output_loop' WHEN 1 THEN 'cpu_burn' WHEN 2 THEN 'memory_growth'
             WHEN 3 THEN 'stall' ELSE 'fork_storm' END,
  CASE i % 3 WHEN 0 THEN 'kill' WHEN 1 THEN 'alert' ELSE 'restart' END,
  detected_after_s, score, confidence, summary, outcome, attempt, reasons, evidence
FROM n, (SELECT * FROM incidents ORDER BY id LIMIT 1)''')
c.commit()
print(c.execute("SELECT count(*) FROM incidents").fetchone()[0])
"#,
        extra = INCIDENTS
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .output()
        .context("python3 (with its sqlite3 module) is needed to seed the store")?;
    if !out.status.success() {
        bail!("seeding failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!(
        "store holds {} incidents",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(args: &ApiArgs, url: &str, auth: bool, script: Option<&Path>) -> Result<WrkResult> {
    eprintln!("wrk {url} …");
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "--latency"])
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration));
    if auth {
        cmd.args(["-H", &format!("Authorization: Bearer {KEY}")]);
    }
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    let p50_ms = field("50%").and_then(ms).context("no p50")?;
    let p99_ms = field("99%").and_then(ms).context("no p99")?;
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + text
            .lines()
            .find(|l| l.trim().starts_with("Socket errors:"))
            .map_or(0, |l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            });
    Ok(WrkResult {
        rps,
        p50_ms,
        p99_ms,
        errors,
    })
}

/// wrk's latency figures: `812.00us`, `1.20ms`, `2.01s`.
fn ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Resident memory of the server before and after [`SSE_CLIENTS`] stream clients connect
/// (each checked to get `200 text/event-stream`).
fn sse_memory(server: &Dashboard) -> Result<(f64, f64)> {
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(server.pid())?;
    let mut clients = Vec::new();
    for i in 0..SSE_CLIENTS {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .with_context(|| format!("SSE client {i} cannot connect"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {KEY}\r\nAccept: text/event-stream\r\n\r\n",
            server.port
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte)? == 0 {
                bail!("SSE client {i}: the server closed the connection");
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        if !head.starts_with("http/1.1 200") || !head.contains("text/event-stream") {
            bail!("SSE client {i} got no event stream: {head}");
        }
        clients.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(server.pid())?;
    drop(clients);
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_parse_in_milliseconds() {
        assert_eq!(ms("812.00us"), Some(0.812));
        assert_eq!(ms("1.20ms"), Some(1.2));
        // 2.01 * 1000 is 2009.9999999999998 in binary floating point.
        assert!(ms("2.01s").is_some_and(|v| (v - 2010.0).abs() < 1e-9));
        assert_eq!(ms("fast"), None);
    }
}
