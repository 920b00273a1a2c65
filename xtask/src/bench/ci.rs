//! `cargo xtask bench ci`: how soon after a CI job's command ends its verdict is where CI shows
//! it. The issue asks for the job summary and the annotations within 1 s of the job's end.
//!
//! Each run is `sentry run --ci-output github --no-db` (release) with `GITHUB_ACTIONS=true` and
//! a fresh `$GITHUB_STEP_SUMMARY`, as a GitHub Actions step would run it, over one of three
//! commands: a healthy one (prints a few lines and exits), a loop that prints the same error
//! line for about two seconds (long enough to be detected on a busy host) and exits by itself
//! (under `--action alert`: warnings and a full summary), and a loop that runs until sentry stops it (an `::error` and a full summary). The
//! command writes `date +%s.%N` to a file as its very last act (the killed loop from its TERM
//! trap). Measured against that moment:
//! - the summary: the file's modification time once sentry has exited (sentry appends the
//!   whole summary in one write, so its last write is the complete summary);
//! - the annotations: when the first `::` line reaches the harness on sentry's stdout;
//! - sentry's own exit.
//!
//! All three are wall-clock (CLOCK_REALTIME) times on this host; file times come from the
//! kernel's coarse clock (a few ms of granularity), so a figure may read a few ms short.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::stats::{percentile, spread};

/// The issue's target: summary and annotations within 1 s of the job's end.
const TARGET_S: f64 = 1.0;
/// A run that has not ended after this long is a failure of the bench.
const GIVE_UP: Duration = Duration::from_secs(60);

/// Arguments of `cargo xtask bench ci`.
#[derive(Debug, Args)]
pub struct CiArgs {
    /// Runs of each scenario.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// sentry's capture mode (`fallback` needs no root; `kernel` needs it).
    #[arg(long, default_value = "fallback")]
    mode: String,
    /// Use this sentry binary instead of building target/release/sentry.
    #[arg(long)]
    sentry: Option<PathBuf>,
    /// Do not build sentry first.
    #[arg(long)]
    no_build: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Healthy,
    LoopExits,
    LoopStopped,
}

impl Scenario {
    const ALL: [Scenario; 3] = [
        Scenario::Healthy,
        Scenario::LoopExits,
        Scenario::LoopStopped,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy (exits at once)",
            Scenario::LoopExits => "loop for ~2 s, exits (alert)",
            Scenario::LoopStopped => "loop until stopped (kill)",
        }
    }

    /// The command's shell script; `$1` is the file its end time goes to.
    fn script(self) -> &'static str {
        match self {
            Scenario::Healthy => {
                r#"echo "compiling"; echo "running 12 tests"; echo "test result: ok"; date +%s.%N > "$1""#
            }
            Scenario::LoopExits => {
                r#"i=0; while [ $i -lt 200 ]; do echo "error: connection refused (db:5432), retrying"; sleep 0.01; i=$((i+1)); done; date +%s.%N > "$1""#
            }
            Scenario::LoopStopped => {
                r#"trap 'date +%s.%N > "$1"; exit 143' TERM; while :; do echo "error: connection refused (db:5432), retrying"; sleep 0.01; done"#
            }
        }
    }

    fn extra(self) -> &'static [&'static str] {
        match self {
            Scenario::LoopExits => &["--action", "alert"],
            _ => &[],
        }
    }

    /// Whether the scenario must print annotations.
    fn annotates(self) -> bool {
        self != Scenario::Healthy
    }
}

/// The delays of one run, seconds after the command's end.
#[derive(Debug, Default, Clone, Copy)]
struct Delays {
    summary: f64,
    annotation: Option<f64>,
    exit: f64,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn mtime_s(path: &Path) -> Result<f64> {
    let modified = fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("no summary at {}", path.display()))?;
    Ok(modified
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64()))
}

fn once(sentry: &Path, mode: &str, dir: &Path, sc: Scenario) -> Result<Delays> {
    let summary = dir.join("summary.md");
    let ended = dir.join("ended");
    let _ = fs::remove_file(&summary);
    let _ = fs::remove_file(&ended);
    let mut child = Command::new(sentry)
        .args(["run", "--mode", mode, "--no-db", "--ci-output", "github"])
        .args(sc.extra())
        .args(["--", "sh", "-c", sc.script(), "sh"])
        .arg(&ended)
        .current_dir(dir)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("GITLAB_CI")
        .env_remove("BUILDKITE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", sentry.display()))?;
    let stdout = child.stdout.take().context("sentry's stdout")?;
    let mut stderr = child.stderr.take().context("sentry's stderr")?;
    let (atx, arx) = mpsc::channel();
    thread::spawn(move || {
        let mut first = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if first.is_none() && line.starts_with("::") {
                first = Some(now_s());
            }
        }
        let _ = atx.send(first);
    });
    let (etx, erx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = etx.send(text);
    });
    let (wtx, wrx) = mpsc::channel();
    let pid = child.id();
    thread::spawn(move || {
        let status = child.wait();
        let _ = wtx.send((status, now_s()));
    });
    let (status, exited) = match wrx.recv_timeout(GIVE_UP) {
        Ok(got) => got,
        Err(_) => {
            // SAFETY: kill has no memory preconditions; the pid is our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            bail!("{}: sentry did not end within {GIVE_UP:?}", sc.name());
        }
    };
    let status = status.context("waiting for sentry")?;
    let stderr_text = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let annotation = arx.recv_timeout(Duration::from_secs(5)).ok().flatten();
    let expected = if sc == Scenario::LoopStopped { 124 } else { 0 };
    if status.code() != Some(expected) {
        bail!(
            "{}: sentry exited with {status}, expected {expected}; stderr:\n{stderr_text}",
            sc.name()
        );
    }
    let end: f64 = fs::read_to_string(&ended)
        .with_context(|| format!("{}: the command wrote no end time", sc.name()))?
        .trim()
        .parse()
        .with_context(|| format!("{}: unreadable end time", sc.name()))?;
    let text = fs::read_to_string(&summary).context("reading the summary")?;
    if !text.contains("sentry incidents --run") && !text.contains("--no-db") {
        bail!("{}: the summary is incomplete:\n{text}", sc.name());
    }
    if sc.annotates() != annotation.is_some() {
        bail!(
            "{}: annotations expected: {}, seen: {}",
            sc.name(),
            sc.annotates(),
            annotation.is_some()
        );
    }
    Ok(Delays {
        summary: mtime_s(&summary)? - end,
        annotation: annotation.map(|a| a - end),
        exit: exited - end,
    })
}

fn ms(x: f64) -> String {
    format!("{:.0} ms", x * 1000.0)
}

fn figures(xs: &[f64]) -> String {
    match (spread(xs), percentile(xs, 95.0)) {
        (Some(s), Some(p95)) => format!("{} / {} / {}", ms(s.median), ms(p95), ms(s.max)),
        _ => "—".to_string(),
    }
}

/// Runs the bench; an error when a delay missed the target or a run went wrong.
pub fn run(root: &Path, a: CiArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let sentry = super::sentry_binary(root, a.sentry.clone(), !a.no_build)?;
    // The runs start in a scratch directory: a relative --sentry must still resolve.
    let sentry = fs::canonicalize(&sentry)
        .with_context(|| format!("cannot resolve {}", sentry.display()))?;
    let dir = tempfile::tempdir().context("a scratch directory")?;
    eprintln!(
        "{} runs of each of {} scenarios, `sentry run --mode {} --no-db --ci-output github`",
        a.runs,
        Scenario::ALL.len(),
        a.mode
    );
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for sc in Scenario::ALL {
        eprintln!("{} …", sc.name());
        let mut all = Vec::new();
        for _ in 0..a.runs {
            all.push(once(&sentry, &a.mode, dir.path(), sc)?);
        }
        let summary: Vec<f64> = all.iter().map(|d| d.summary).collect();
        let annotation: Vec<f64> = all.iter().filter_map(|d| d.annotation).collect();
        let exit: Vec<f64> = all.iter().map(|d| d.exit).collect();
        for x in summary.iter().chain(&annotation) {
            worst = worst.max(*x);
        }
        rows.push((sc, figures(&summary), figures(&annotation), figures(&exit)));
    }
    println!();
    println!(
        "Delay after the command's end (median / p95 / max of {} runs, `--mode {}`):",
        a.runs, a.mode
    );
    println!();
    println!("| command | job summary written | first annotation printed | sentry exited |");
    println!("|---|---:|---:|---:|");
    for (sc, s, an, ex) in &rows {
        println!("| {} | {s} | {an} | {ex} |", sc.name());
    }
    println!();
    let pass = worst < TARGET_S;
    println!(
        "- every summary and annotation within {TARGET_S:.0} s of the command's end (worst {}): **{}**",
        ms(worst),
        if pass { "PASS" } else { "FAIL" }
    );
    if !pass {
        bail!(
            "a summary or annotation came {} after the command's end (target {TARGET_S} s)",
            ms(worst)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_write_their_end_time_last() {
        let dir = tempfile::tempdir().unwrap();
        let ended = dir.path().join("ended");
        let status = Command::new("sh")
            .args(["-c", Scenario::Healthy.script(), "sh"])
            .arg(&ended)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let t: f64 = fs::read_to_string(&ended).unwrap().trim().parse().unwrap();
        assert!((now_s() - t).abs() < 60.0, "{t}");
    }
}
