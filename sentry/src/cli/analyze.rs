//! `sentry analyze FILE… [--json]`: runs the output detectors and the decision engine over
//! recorded logs and gives one verdict per file.
//!
//! A file is treated as fast output: its bytes go through the same line assembly, normaliser
//! and loop detector as a live run, on a synthetic clock (one millisecond per 64 KiB read, so
//! cycle times come from timestamps in the text when it has them). The decision engine is
//! consulted on every line while a loop is repeating; a recorded log is already complete, so
//! the hysteresis that keeps a live run from flapping (a level must hold for several
//! evaluations and seconds) is not applied: the verdict is `runaway` from the first line at
//! which the policy's action is anything but `continue`.
//!
//! Exit status: 0 when every file is healthy, 1 when any is a runaway, 2 when a file could
//! not be read (the others are still analysed).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::decide::{DecisionEngine, Policy};
use crate::detect::OutputPipeline;
use crate::model::{Action, Decision, Evidence, Finding};

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Arguments of `sentry analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Log files to analyse; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file (JSON lines) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Decision policy (TOML); the built-in defaults when absent.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// The verdict on one file, as printed by `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileVerdict {
    /// The path as given (`-` for standard input).
    pub file: String,
    /// `runaway` or `healthy`.
    pub verdict: &'static str,
    /// Kind of the finding that led (`output_loop`), when runaway.
    pub kind: Option<String>,
    /// 1-based line at which the verdict became runaway.
    pub line: Option<u64>,
    /// Cycle length in lines.
    pub period: Option<usize>,
    /// Repeats of the cycle when it was judged.
    pub repeats: Option<usize>,
    /// First line of the loop.
    pub first_line: Option<u64>,
    /// The normalised templates of one cycle.
    pub pattern: Vec<String>,
    /// One raw occurrence of the cycle.
    pub example: Vec<String>,
    /// The loop finding's score (the highest seen when healthy).
    pub score: f64,
    /// The decision engine's confidence when it fired.
    pub confidence: Option<f64>,
    /// The action the policy would take.
    pub action: &'static str,
    /// Why: the decision's and the finding's reasons (for a healthy file, the nearest miss).
    pub reasons: Vec<String>,
    /// Logical lines read (up to the verdict).
    pub lines: u64,
    /// Lines that looked binary and were not analysed.
    pub binary_lines: u64,
}

/// Consults the decision engine on every scored loop finding until it acts.
struct Judge {
    engine: DecisionEngine,
    judged: Option<(u64, Finding, Decision)>,
    nearest: Option<Finding>,
    lines: u64,
}

impl Judge {
    fn line(&mut self, seq: u64, finding: Option<Finding>) {
        self.lines = seq;
        let Some(f) = finding else { return };
        if self.judged.is_some() {
            return;
        }
        if self.nearest.as_ref().is_none_or(|n| f.score > n.score) {
            self.nearest = Some(f.clone());
        }
        // An active loop yields a finding on every repeat; each is one evaluation, one
        // synthetic second after the previous line (only the cool-down reads the clock).
        let decision = self
            .engine
            .decide(Duration::from_secs(seq), std::slice::from_ref(&f));
        if decision.action != Action::Continue {
            self.judged = Some((seq, f, decision));
        }
    }
}

/// Runs `sentry analyze`; returns the exit status.
pub fn run(args: &AnalyzeArgs) -> ExitCode {
    let policy = match load_policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sentry analyze: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut any_runaway = false;
    let mut any_error = false;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for path in &args.files {
        match analyze_path(path, &policy) {
            Ok(v) => {
                any_runaway |= v.verdict == "runaway";
                let printed = if args.json {
                    print_json(&mut out, &v)
                } else {
                    print_human(&mut out, &v)
                };
                if let Err(e) = printed {
                    // Output closed (e.g. piped into `head`): nothing more can be reported.
                    eprintln!("sentry analyze: cannot write the verdict: {e}");
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                any_error = true;
                eprintln!("sentry analyze: {e:#}");
            }
        }
    }
    if any_error {
        ExitCode::from(2)
    } else if any_runaway {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn load_policy(path: Option<&Path>) -> Result<Policy> {
    let mut policy = match path {
        Some(p) => Policy::from_toml_file(p)
            .with_context(|| format!("cannot use the policy file {}", p.display()))?,
        None => Policy::default(),
    };
    // A recorded log is complete: judge each line, without the live-run hysteresis.
    policy.hysteresis.persist_evaluations = 1;
    policy.hysteresis.persist_s = 0.0;
    Ok(policy)
}

/// Analyses one path (`-` is standard input).
pub fn analyze_path(path: &Path, policy: &Policy) -> Result<FileVerdict> {
    let name = path.display().to_string();
    if name == "-" {
        let stdin = io::stdin();
        let lock = stdin.lock();
        return analyze_reader(&name, lock, policy).context("cannot read standard input");
    }
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {name}"))?;
    if meta.is_dir() {
        anyhow::bail!("cannot read {name}: it is a directory; pass the log files inside it");
    }
    let file = File::open(path).with_context(|| format!("cannot read {name}"))?;
    analyze_reader(&name, file, policy).with_context(|| format!("cannot read {name}"))
}

/// Analyses everything `reader` yields as one log named `name`.
pub fn analyze_reader(name: &str, mut reader: impl Read, policy: &Policy) -> Result<FileVerdict> {
    let mut pipeline = OutputPipeline::default();
    let mut judge = Judge {
        engine: DecisionEngine::new(policy.clone()),
        judged: None,
        nearest: None,
        lines: 0,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut chunk_no = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let at = Duration::from_millis(chunk_no);
        chunk_no += 1;
        pipeline.push_bytes(0, 1, at, &buf[..n], |l, f| judge.line(l.seq, f));
        if judge.judged.is_some() {
            break;
        }
    }
    if judge.judged.is_none() {
        pipeline.flush(|l, f| judge.line(l.seq, f));
    }
    let Judge {
        judged,
        nearest,
        lines,
        ..
    } = judge;
    let binary_lines = pipeline.assembly_stats().binary_lines;

    Ok(match judged {
        Some((line, f, decision)) => {
            let mut reasons = decision.reasons.clone();
            reasons.extend(f.reasons.iter().cloned());
            let mut v = FileVerdict {
                file: name.to_owned(),
                verdict: "runaway",
                kind: Some(kind_name(&f)),
                line: Some(line),
                period: None,
                repeats: None,
                first_line: None,
                pattern: Vec::new(),
                example: Vec::new(),
                score: f.score,
                confidence: Some(decision.confidence),
                action: decision.action.as_str(),
                reasons,
                lines,
                binary_lines,
            };
            if let Evidence::Loop(l) = &f.evidence {
                v.period = Some(l.period);
                v.repeats = Some(l.repeats);
                v.first_line = Some(l.first_line);
                v.pattern = l.pattern.clone();
                v.example = l.example.clone();
            }
            v
        }
        None => {
            let mut reasons = Vec::new();
            let mut score = 0.0;
            if let Some(n) = &nearest {
                score = n.score;
                reasons.push(format!(
                    "nearest miss: {} (score {:.2})",
                    n.summary, n.score
                ));
                reasons.extend(n.reasons.iter().cloned());
            }
            if binary_lines > 0 {
                reasons.push(format!("{binary_lines} binary line(s) not analysed"));
            }
            FileVerdict {
                file: name.to_owned(),
                verdict: "healthy",
                kind: None,
                line: None,
                period: None,
                repeats: None,
                first_line: None,
                pattern: Vec::new(),
                example: Vec::new(),
                score,
                confidence: None,
                action: Action::Continue.as_str(),
                reasons,
                lines,
                binary_lines,
            }
        }
    })
}

fn kind_name(f: &Finding) -> String {
    serde_json::to_value(f.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| f.kind.label().to_owned())
}

fn print_json(out: &mut impl Write, v: &FileVerdict) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v).map_err(io::Error::other)?;
    writeln!(out)
}

fn print_human(out: &mut impl Write, v: &FileVerdict) -> io::Result<()> {
    match (v.verdict, v.line, v.period, v.repeats) {
        ("runaway", Some(line), Some(period), Some(repeats)) => {
            writeln!(
                out,
                "{}: runaway (output loop at line {line}: period {period}, {repeats} repeats; {} → {})",
                v.file,
                v.confidence.map_or(String::new(), |c| format!("confidence {c:.2}")),
                v.action
            )?;
            for p in &v.pattern {
                writeln!(out, "    | {p}")?;
            }
        }
        ("runaway", line, _, _) => {
            writeln!(
                out,
                "{}: runaway ({} at line {})",
                v.file,
                v.kind.as_deref().unwrap_or("unknown"),
                line.map_or("?".to_owned(), |l| l.to_string())
            )?;
        }
        _ => writeln!(out, "{}: healthy", v.file)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> FileVerdict {
        let policy = load_policy(None).unwrap_or_default();
        match analyze_reader("mem", text.as_bytes(), &policy) {
            Ok(v) => v,
            Err(e) => panic!("analysis failed: {e:#}"),
        }
    }

    #[test]
    fn loop_after_healthy_prefix_is_runaway_at_its_line() {
        let mut log = String::new();
        for i in 0..20 {
            log.push_str(&format!("   Compiling dep{i} v0.{i}.1\n"));
        }
        for i in 0..30 {
            log.push_str(&format!(
                "[{i:04}] GET /api/status -> 503 Service Unavailable\n"
            ));
            log.push_str("retrying after error in 100ms\n");
            log.push_str("Traceback (most recent call last):\n");
        }
        let v = verdict(&log);
        assert_eq!(v.verdict, "runaway", "{v:#?}");
        assert_eq!(v.period, Some(3));
        assert_eq!(v.first_line, Some(21));
        let line = v.line.unwrap_or(0);
        assert!(line > 20 && line <= 20 + 5 * 3, "fired at line {line}");
        assert_eq!(v.pattern.len(), 3);
    }

    #[test]
    fn compiler_output_is_healthy() {
        let mut log = String::new();
        for i in 0..200 {
            log.push_str(&format!("   Compiling crate-{i} v1.{}.{}\n", i % 7, i % 3));
        }
        log.push_str("    Finished `release` profile [optimized] target(s) in 42.1s\n");
        let v = verdict(&log);
        assert_eq!(v.verdict, "healthy", "{v:#?}");
        assert_eq!(v.lines, 201);
    }

    #[test]
    fn binary_input_is_healthy_and_counted() {
        let bytes: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let policy = load_policy(None).unwrap_or_default();
        let v = analyze_reader("bin", &bytes[..], &policy).map_err(|e| format!("{e:#}"));
        let v = v.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.verdict, "healthy");
        assert!(v.binary_lines > 0, "{v:#?}");
    }
}
