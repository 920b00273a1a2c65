//! `cargo xtask bench detect`: runs `sentry analyze --json` over the labelled corpus and scores
//! it (recall on runaways, false-positive rate on healthy logs, cycles seen before detection),
//! one row per set of the manifest (main, validation, holdout, ...) and overall, then runs the
//! throughput bench. Exits non-zero when a file of any set misses a quality target, naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

use super::manifest::{set_names, Corpus, Entry, Label, MAIN_SET};
use super::stats::spread;

/// Loops must be detected within this many repetitions of their cycle (issue 3).
const MAX_REPEATS: u64 = 5;
/// Throughput target for assembly + normalisation + loop detection on one core (issue 3).
const MIN_LINES_PER_S: f64 = 1_000_000.0;

/// Arguments of `cargo xtask bench detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Quality only (no throughput bench): the quick gate for CI.
    #[arg(long)]
    check: bool,
    /// Use this sentry binary instead of building target/release/sentry.
    #[arg(long)]
    sentry: Option<PathBuf>,
    /// Do not rebuild sentry; use the existing target/release/sentry.
    #[arg(long)]
    no_build: bool,
    /// Corpus directory (default: fixtures/corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
}

/// What the detector did with one file, judged against its label.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A runaway flagged after its loop began.
    Detected {
        line: u64,
        lines_after_start: u64,
        repeats: u64,
    },
    /// A runaway flagged, but more than MAX_REPEATS cycles after its loop began.
    Late { line: u64, repeats: u64 },
    /// A runaway flagged on a line before its loop began: it fired on the healthy prefix.
    BeforeLoop { line: u64 },
    /// A runaway judged healthy.
    Missed,
    /// A healthy file judged runaway.
    FalsePositive { line: Option<u64> },
    /// A healthy file judged healthy.
    Clean,
}

impl Outcome {
    /// Whether this outcome meets the quality targets.
    pub fn passes(&self) -> bool {
        matches!(self, Outcome::Detected { .. } | Outcome::Clean)
    }
}

/// Judges one verdict (`runaway` and the line it fired on) against the file's label.
pub fn judge(e: &Entry, runaway: bool, line: Option<u64>) -> Outcome {
    match (e.label, runaway) {
        (Label::Healthy, false) => Outcome::Clean,
        (Label::Healthy, true) => Outcome::FalsePositive { line },
        (Label::Runaway, false) => Outcome::Missed,
        (Label::Runaway, true) => {
            let (start, period) = (e.loop_start.unwrap_or(1), e.period.unwrap_or(1).max(1));
            let Some(line) = line else {
                // A runaway verdict without a line cannot be timed; count it as late.
                return Outcome::Late {
                    line: 0,
                    repeats: u64::MAX,
                };
            };
            if line < start {
                return Outcome::BeforeLoop { line };
            }
            let lines_after_start = line - start + 1;
            let repeats = lines_after_start.div_ceil(period);
            if repeats > MAX_REPEATS {
                Outcome::Late { line, repeats }
            } else {
                Outcome::Detected {
                    line,
                    lines_after_start,
                    repeats,
                }
            }
        }
    }
}

/// One parsed line of `sentry analyze --json`.
#[derive(Debug)]
struct Verdict {
    runaway: bool,
    line: Option<u64>,
    summary: String,
}

fn parse_verdicts(stdout: &str) -> Result<HashMap<String, Verdict>> {
    let mut out = HashMap::new();
    for (i, l) in stdout
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(l).with_context(|| {
            format!("line {} of `sentry analyze --json` is not JSON: {l}", i + 1)
        })?;
        let file = v["file"]
            .as_str()
            .with_context(|| format!("analyze output line {} has no \"file\": {l}", i + 1))?
            .to_owned();
        let runaway = match v["verdict"].as_str() {
            Some("runaway") => true,
            Some("healthy") => false,
            other => {
                bail!("{file}: unexpected verdict {other:?} (want \"runaway\" or \"healthy\")")
            }
        };
        let reasons = match &v["reasons"] {
            Value::Array(a) => a
                .iter()
                .map(|r| {
                    r.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| r.to_string())
                })
                .collect::<Vec<_>>()
                .join("; "),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let summary = format!(
            "score {}, period {}, repeats {}{}{}",
            v["score"],
            v["period"],
            v["repeats"],
            if reasons.is_empty() { "" } else { ": " },
            reasons
        );
        out.insert(
            file,
            Verdict {
                runaway,
                line: v["line"].as_u64(),
                summary,
            },
        );
    }
    Ok(out)
}

fn analyze(sentry: &Path, corpus: &Corpus) -> Result<HashMap<String, Verdict>> {
    let out = Command::new(sentry)
        .arg("analyze")
        .arg("--json")
        .args(corpus.entries.iter().map(|e| &e.path))
        .current_dir(&corpus.dir)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} analyze", sentry.display()))?;
    // analyze exits 0 (all healthy) or 1 (some runaway); anything else is a failure to analyse.
    match out.status.code() {
        Some(0) | Some(1) => {}
        _ => bail!(
            "`sentry analyze --json` failed ({}); see its message above",
            out.status
        ),
    }
    parse_verdicts(&String::from_utf8_lossy(&out.stdout))
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / d as f64)
    }
}

/// Prints the quality report; returns the failing files with why.
fn report(corpus: &Corpus, verdicts: &HashMap<String, Verdict>) -> Result<Vec<String>> {
    let mut judged: Vec<(&Entry, Outcome, &Verdict)> = Vec::new();
    for e in &corpus.entries {
        let v = verdicts
            .get(&e.path)
            .with_context(|| format!("`sentry analyze` printed no verdict for {}", e.path))?;
        judged.push((e, judge(e, v.runaway, v.line), v));
    }
    println!(
        "detection quality on {} ({} files)",
        corpus.dir.display(),
        judged.len()
    );
    println!(
        "  {:<11} {:>16} {:>22} {:>20}",
        "set", "recall", "false positives", "within 5 repeats"
    );
    let row = |name: &str, pick: &dyn Fn(&Entry) -> bool| {
        let run: Vec<_> = judged
            .iter()
            .filter(|(e, ..)| pick(e) && e.label == Label::Runaway)
            .collect();
        let hea: Vec<_> = judged
            .iter()
            .filter(|(e, ..)| pick(e) && e.label == Label::Healthy)
            .collect();
        let found = run
            .iter()
            .filter(|(_, o, _)| !matches!(o, Outcome::Missed))
            .count();
        let fp = hea
            .iter()
            .filter(|(_, o, _)| matches!(o, Outcome::FalsePositive { .. }))
            .count();
        let timely = run
            .iter()
            .filter(|(_, o, _)| matches!(o, Outcome::Detected { .. }))
            .count();
        println!(
            "  {:<11} {:>16} {:>22} {:>20}",
            name,
            format!("{found}/{} {}", run.len(), pct(found, run.len())),
            format!("{fp}/{} {}", hea.len(), pct(fp, hea.len())),
            format!("{timely}/{} {}", run.len(), pct(timely, run.len())),
        );
    };
    // One row per set (main, validation, holdout, ...); every set counts towards the targets.
    for name in set_names(&corpus.entries) {
        row(name, &|e| e.set == name);
    }
    row("overall", &|_| true);

    let mut lines = Vec::new();
    let mut repeats = Vec::new();
    for (_, o, _) in &judged {
        match o {
            Outcome::Detected {
                lines_after_start,
                repeats: r,
                ..
            } => {
                lines.push(*lines_after_start as f64);
                repeats.push(*r as f64);
            }
            Outcome::Late { repeats: r, line } if *line > 0 => repeats.push(*r as f64),
            _ => {}
        }
    }
    match (spread(&lines), spread(&repeats)) {
        (Some(l), Some(r)) => println!(
            "  latency (lines from loop start to detection): median {:.0}, max {:.0}; \
             cycle repeats: median {:.1}, max {:.0} (target <= {MAX_REPEATS})",
            l.median, l.max, r.median, r.max
        ),
        _ => println!("  latency: no runaway was detected after its loop began"),
    }

    let mut failures = Vec::new();
    for (e, o, v) in &judged {
        if o.passes() {
            continue;
        }
        let set = if e.set == MAIN_SET {
            String::new()
        } else {
            format!(" [{}]", e.set)
        };
        let why = match o {
            Outcome::Detected { .. } | Outcome::Clean => continue,
            Outcome::Missed => format!(
                "MISSED runaway (loop at line {}, period {}): {}",
                e.loop_start.unwrap_or(0),
                e.period.unwrap_or(0),
                v.summary
            ),
            Outcome::Late { line, repeats } => format!(
                "LATE: fired at line {line}, after {repeats} cycles \
                (loop at line {}, period {}): {}",
                e.loop_start.unwrap_or(0),
                e.period.unwrap_or(0),
                v.summary
            ),
            Outcome::BeforeLoop { line } => format!(
                "EARLY: fired at line {line}, before the loop began at line {}: {}",
                e.loop_start.unwrap_or(0),
                v.summary
            ),
            Outcome::FalsePositive { line } => format!(
                "FALSE POSITIVE at line {}: {}",
                line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                v.summary
            ),
        };
        failures.push(format!("{}{set}: {why}\n      ({})", e.path, e.description));
    }
    Ok(failures)
}

/// Runs the throughput bench and returns its final JSON line.
fn throughput(root: &Path) -> Result<Value> {
    eprintln!("running cargo bench -p sentry --bench detect_throughput …");
    let out = Command::new(env!("CARGO"))
        .args([
            "bench",
            "--package",
            "sentry",
            "--bench",
            "detect_throughput",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the throughput bench failed ({}):\n{stdout}", out.status);
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("the throughput bench printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("the bench's last line is not JSON: {last}"))
}

/// Entry point of `cargo xtask bench detect`.
pub fn run(root: &Path, args: DetectArgs) -> Result<()> {
    let corpus = Corpus::load(
        &args
            .corpus
            .clone()
            .unwrap_or_else(|| root.join("fixtures/corpus")),
    )?;
    let sentry = super::sentry_binary(root, args.sentry.clone(), !args.no_build)?;
    let verdicts = analyze(&sentry, &corpus)?;
    let failures = report(&corpus, &verdicts)?;
    let mut missed_throughput = false;
    if !args.check {
        let t = throughput(root)?;
        let lps = t["lines_per_s"]
            .as_f64()
            .context("bench JSON has no lines_per_s")?;
        let ok = lps >= MIN_LINES_PER_S;
        missed_throughput = !ok;
        println!(
            "throughput (assembly + normalisation + loop detection, one core): {:.0} lines/s, {} MB/s, \
             peak RSS {} bytes: {}",
            lps, t["mb_per_s"], t["peak_rss_bytes"],
            if ok { "PASS (>= 1,000,000 lines/s)" } else { "FAIL (target >= 1,000,000 lines/s)" }
        );
    }
    if failures.is_empty() && !missed_throughput {
        println!("PASS: recall 100%, false positives 0%, every loop within {MAX_REPEATS} repeats");
        return Ok(());
    }
    for f in &failures {
        println!("  {f}");
    }
    if !failures.is_empty() {
        bail!(
            "{} corpus file(s) missed the quality targets (listed above)",
            failures.len()
        );
    }
    bail!("throughput below 1,000,000 lines/s");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runaway(start: u64, period: u64) -> Entry {
        Entry {
            path: "runaway/x.log".into(),
            set: MAIN_SET.into(),
            label: Label::Runaway,
            description: String::new(),
            kind: Some("output_loop".into()),
            loop_start: Some(start),
            period: Some(period),
        }
    }

    #[test]
    fn repeats_are_counted_in_whole_cycles_from_loop_start() {
        // Loop of period 3 from line 10: line 12 ends the 1st cycle, 13 is inside the 2nd.
        assert_eq!(
            judge(&runaway(10, 3), true, Some(12)),
            Outcome::Detected {
                line: 12,
                lines_after_start: 3,
                repeats: 1
            }
        );
        assert_eq!(
            judge(&runaway(10, 3), true, Some(13)),
            Outcome::Detected {
                line: 13,
                lines_after_start: 4,
                repeats: 2
            }
        );
        assert_eq!(
            judge(&runaway(10, 3), true, Some(24)),
            Outcome::Detected {
                line: 24,
                lines_after_start: 15,
                repeats: 5
            }
        );
        assert_eq!(
            judge(&runaway(10, 3), true, Some(25)),
            Outcome::Late {
                line: 25,
                repeats: 6
            }
        );
    }

    #[test]
    fn firing_on_the_prefix_or_not_at_all_fails() {
        assert_eq!(
            judge(&runaway(10, 3), true, Some(9)),
            Outcome::BeforeLoop { line: 9 }
        );
        assert_eq!(judge(&runaway(10, 3), false, None), Outcome::Missed);
        assert!(!judge(&runaway(10, 3), true, None).passes());
    }

    #[test]
    fn healthy_files_pass_only_when_left_alone() {
        let mut e = runaway(1, 1);
        e.label = Label::Healthy;
        assert_eq!(judge(&e, false, None), Outcome::Clean);
        assert_eq!(
            judge(&e, true, Some(4)),
            Outcome::FalsePositive { line: Some(4) }
        );
    }

    #[test]
    fn analyze_json_lines_are_parsed_and_bad_verdicts_rejected() {
        let ok = r#"{"file":"a.log","verdict":"runaway","kind":"output_loop","line":7,"period":1,"repeats":5,"pattern":"x","score":0.9,"reasons":["spam"]}
{"file":"b.log","verdict":"healthy","kind":null,"line":null,"period":null,"repeats":null,"pattern":null,"score":0.1,"reasons":[]}"#;
        let v = parse_verdicts(ok).expect("valid output parses");
        assert!(v["a.log"].runaway && v["a.log"].line == Some(7));
        assert!(!v["b.log"].runaway && v["b.log"].line.is_none());
        let err = parse_verdicts(r#"{"file":"a.log","verdict":"maybe"}"#).expect_err("bad verdict");
        assert!(err.to_string().contains("unexpected verdict"), "{err}");
    }
}
