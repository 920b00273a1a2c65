//! The end-of-run verdict of `sentry run`, written where CI users look: GitHub Actions
//! annotations and job summary, a collapsed GitLab log section with a JSON report and a Code
//! Quality report for merge requests, a Buildkite annotation and log group.
//!
//! It runs once, after the report is built. Everything it writes is redacted again (the
//! incidents already are) and escaped for the format it lands in, so that a runaway's output
//! can neither leak a secret nor forge a workflow command, a log section or Markdown structure.
//! A problem writing CI output is one `sentry: …` line on stderr and never changes the exit
//! status. This module is not the JSON report of `--report` (that is [`crate::report`]) nor
//! the detection of which CI job a process belongs to (that is [`crate::fleet::ci`]).

pub mod buildkite;
pub mod github;
pub mod gitlab;
pub mod markdown;

use std::path::PathBuf;

use crate::model::{Action, Incident};
use crate::report::RunReport;

/// Where `sentry run` writes its verdict for CI (`--ci-output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CiOutput {
    /// The platform the environment names (`GITHUB_ACTIONS`, `GITLAB_CI` or `BUILDKITE` set
    /// to `true`), or nothing outside CI.
    #[default]
    Auto,
    /// Nothing.
    Off,
    /// GitHub Actions: annotations on stdout and the job summary.
    Github,
    /// GitLab CI: a collapsed log section, the JSON report and a Code Quality report.
    Gitlab,
    /// Buildkite: an annotation through `buildkite-agent` and a log group.
    Buildkite,
}

/// A CI platform sentry writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// GitHub Actions.
    Github,
    /// GitLab CI.
    Gitlab,
    /// Buildkite.
    Buildkite,
}

impl CiOutput {
    /// The platform to write for, given the environment (`env("NAME")` is its value).
    pub fn platform(self, env: &dyn Fn(&str) -> Option<String>) -> Option<Platform> {
        let set = |name: &str| env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        match self {
            CiOutput::Off => None,
            CiOutput::Github => Some(Platform::Github),
            CiOutput::Gitlab => Some(Platform::Gitlab),
            CiOutput::Buildkite => Some(Platform::Buildkite),
            CiOutput::Auto if set("GITHUB_ACTIONS") => Some(Platform::Github),
            CiOutput::Auto if set("GITLAB_CI") => Some(Platform::Gitlab),
            CiOutput::Auto if set("BUILDKITE") => Some(Platform::Buildkite),
            CiOutput::Auto => None,
        }
    }
}

/// What `sentry run` was asked to write for CI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiOptions {
    /// The platform, or how to find it.
    pub output: CiOutput,
    /// GitLab: where the JSON report goes (default `sentry-report.json` in `$CI_PROJECT_DIR`,
    /// or the current directory); the Code Quality report is written next to it.
    pub report: Option<PathBuf>,
}

/// Why some CI output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CiOutputError {
    /// Appending to `$GITHUB_STEP_SUMMARY`.
    #[error("cannot append the job summary to {path} ($GITHUB_STEP_SUMMARY): {source}")]
    Summary {
        /// The summary file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing one of GitLab's report files.
    #[error("cannot write {path} (give another place with --ci-report FILE): {source}")]
    Report {
        /// The report file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Printing annotations or a log section.
    #[error("cannot print the CI verdict: {0}")]
    Print(std::io::Error),
    /// `buildkite-agent annotate` failed or timed out.
    #[error("buildkite-agent annotate: {0}")]
    Annotate(String),
}

/// Writes the verdict of a finished run for the CI platform `options` picks. Each problem is
/// printed as one `sentry: …` line on stderr; none changes the run's exit status.
pub fn publish(options: &CiOptions, report: &RunReport) {
    let env = |name: &str| std::env::var(name).ok();
    let Some(platform) = options.output.platform(&env) else {
        return;
    };
    let problems = match platform {
        Platform::Github => github::publish(report, &env),
        Platform::Gitlab => gitlab::publish(report, options.report.as_deref(), &env),
        Platform::Buildkite => buildkite::publish(report, &env),
    };
    for problem in problems {
        crate::supervise::say_line(&format!("sentry: {problem}"));
    }
}

/// The run as a whole, as the heading of every summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// sentry stopped (or restarted) a runaway.
    Stopped,
    /// sentry only alerted or paused: something looked like a runaway.
    Suspected,
    /// Shadow mode, and enforcement would have stopped the command.
    ShadowWouldStop,
    /// Nothing was detected.
    AllClear,
}

impl Verdict {
    /// The verdict of `report`.
    pub fn of(report: &RunReport) -> Verdict {
        let incidents = &report.incidents;
        if report.stopped_by_sentry || incidents.iter().any(|i| !i.shadow && stops(i.action)) {
            Verdict::Stopped
        } else if incidents.iter().any(|i| i.shadow && stops(i.action)) {
            Verdict::ShadowWouldStop
        } else if incidents.is_empty() {
            Verdict::AllClear
        } else {
            Verdict::Suspected
        }
    }

    /// The words of the heading ("runaway stopped").
    pub fn headline(self) -> &'static str {
        match self {
            Verdict::Stopped => "runaway stopped",
            Verdict::Suspected => "runaway suspected",
            Verdict::ShadowWouldStop => "shadow: would have stopped a runaway",
            Verdict::AllClear => "all clear",
        }
    }
}

/// True for an action that ends the command (kill, restart; a restart budget given up on is
/// recorded as a kill).
pub fn stops(action: Action) -> bool {
    matches!(action, Action::Kill | Action::Restart)
}

/// How strong an action is, for ranking: a kill ended the run, a restart ended an attempt.
fn strength(action: Action) -> u8 {
    match action {
        Action::Continue => 0,
        Action::Alert => 1,
        Action::Pause => 2,
        Action::Restart => 3,
        Action::Kill => 4,
    }
}

/// The incidents strongest first: strongest action, then highest confidence, then earliest.
pub fn ranked(incidents: &[Incident]) -> Vec<&Incident> {
    let mut out: Vec<&Incident> = incidents.iter().collect();
    out.sort_by(|a, b| {
        strength(b.action)
            .cmp(&strength(a.action))
            .then(b.confidence.total_cmp(&a.confidence))
            .then(a.detected_after_s.total_cmp(&b.detected_after_s))
    });
    out
}

/// What the action did, in the past tense ("killed"), as shadow incidents say it would have.
pub fn past_tense(action: Action) -> &'static str {
    match action {
        Action::Continue => "continued",
        Action::Alert => "alerted",
        Action::Pause => "paused",
        Action::Kill => "killed",
        Action::Restart => "restarted",
    }
}

/// `text` made safe for one line of any CI log or annotation: secrets redacted, control
/// characters (ANSI escapes, carriage returns, newlines) shown as `\x1b`, `\r`, `\n`, and at
/// most `max_chars` characters (an ellipsis marks a cut).
pub fn clean_line(text: &str, max_chars: usize) -> String {
    let redacted = crate::redact::redact(text);
    let mut out = String::with_capacity(redacted.len().min(max_chars * 4));
    for (count, c) in redacted.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        match c {
            '\t' => out.push(' '),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The command line as one redacted line of at most `max_chars` characters.
pub fn command_line(report: &RunReport, max_chars: usize) -> String {
    // The report's command is redacted already; again, because it is cheap and this is output.
    clean_line(
        &crate::redact::redact_args(&report.command).join(" "),
        max_chars,
    )
}

/// The run's verdict and figures as plain log lines (GitLab's log section, Buildkite's log
/// group): the headline, sentry's own summary, the cost, the baseline and the run's id. Every
/// line is cleaned by [`clean_line`] and starts with two spaces, so that no line of it can
/// open or close a log section or group.
pub fn log_lines(report: &RunReport) -> Vec<String> {
    let mut lines = vec![format!("sentry: {}", Verdict::of(report).headline())];
    lines.push(format!("command: {}", command_line(report, 300)));
    lines.extend(crate::supervise::summary_lines(report));
    lines.push(format!("cost: {}", report.cost.summary()));
    if let Some(b) = &report.baseline {
        lines.push(baseline_sentence(b));
    }
    lines.push(lookup_sentence(report));
    lines
        .iter()
        .map(|l| format!("  {}", clean_line(l, 2000)))
        .collect()
}

/// One sentence comparing the run with its job's baseline.
pub fn baseline_sentence(b: &crate::baseline::BaselineComparison) -> String {
    let mut s = format!(
        "baseline: this job usually takes {:.1} s (median of {} runs, p90 {:.1} s); this run took {:.1}x that",
        b.baseline.median_wall_s, b.baseline.runs, b.baseline.p90_wall_s, b.wall_ratio
    );
    if let (Some(ratio), Some(median)) = (b.cpu_ratio, b.baseline.median_cpu_seconds) {
        s.push_str(&format!(", and {ratio:.1}x the median {median:.1} CPU-s"));
    }
    s
}

/// How to look the run up afterwards.
pub fn lookup_sentence(report: &RunReport) -> String {
    match report.run_id {
        Some(id) => format!(
            "run {id} in the evidence store: `sentry incidents --run {id}` lists its incidents"
        ),
        None => "this run was not recorded in the evidence store (--no-db, or no store)".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Evidence, FindingKind, LoopEvidence, ResourceEvidence};

    /// A report with these incidents; stopped when one of them stops the command.
    pub fn report(incidents: Vec<Incident>) -> RunReport {
        let stopped = incidents.iter().any(|i| !i.shadow && stops(i.action));
        RunReport {
            mode: "fallback".into(),
            command: vec!["make".into(), "test".into()],
            exit_code: if stopped { 124 } else { 0 },
            child_exit_code: if stopped { 143 } else { 0 },
            signal: stopped.then_some(15),
            stopped_by_sentry: stopped,
            runaway: !incidents.is_empty(),
            incidents,
            restarts: 0,
            duration_s: 3.84,
            cpu_peak_pct: 98.2,
            cpu_avg_pct: 50.0,
            mem_peak_bytes: Some(12 << 20),
            pids_peak: 3,
            events_captured: 57,
            events_lost: 0,
            bytes_captured: 4266,
            writes_total: 57,
            write_bytes_total: 4266,
            writes_counted_only: 0,
            bytes_counted_only: 0,
            read_failures: 0,
            writes_not_output: 0,
            chunks_shed: 0,
            capture_budget_per_s: 200_000,
            capture_budget_exceeded: false,
            leftover_processes_killed: 0,
            probe: "capture".into(),
            stop_requested_by: None,
            run_id: Some(42),
            shadow: false,
            would_have_stopped_after_s: None,
            cost: crate::cost::RunCost {
                wall_s: 3.84,
                cpu_seconds: 1.9,
                mem_gb_seconds: Some(0.05),
                mem_peak_bytes: Some(12 << 20),
                io_read_bytes: Some(4096),
                io_write_bytes: Some(0),
                idle_fraction: 0.1,
                price_per_cpu_hour: None,
                cost: None,
            },
            baseline: None,
        }
    }

    /// An output-loop incident printing `example` over and over.
    pub fn loop_incident(action: Action, at: f64, confidence: f64, example: &[&str]) -> Incident {
        Incident {
            kind: FindingKind::OutputLoop,
            detected_after_s: at,
            action,
            score: confidence,
            confidence,
            summary: format!("output loop: period {}, 57 repeats", example.len()),
            outcome: match action {
                Action::Kill => "stopped".into(),
                _ => "alerted; the command was left running".into(),
            },
            attempt: 1,
            reasons: vec!["the same lines again and again".into()],
            evidence: Evidence::Loop(LoopEvidence {
                period: example.len(),
                repeats: 57,
                pattern: example.iter().map(|s| s.to_string()).collect(),
                example: example.iter().map(|s| s.to_string()).collect(),
                first_line: 3,
                last_line: 116,
            }),
            shadow: false,
        }
    }

    /// A CPU-burn incident.
    pub fn cpu_incident(action: Action, at: f64, confidence: f64) -> Incident {
        Incident {
            kind: FindingKind::CpuBurn,
            detected_after_s: at,
            action,
            score: confidence,
            confidence,
            summary: "CPU burn: 199% for 30 s without progress".into(),
            outcome: "alerted; the command was left running".into(),
            attempt: 1,
            reasons: vec![],
            evidence: Evidence::Resource(ResourceEvidence {
                metric: "cpu_pct".into(),
                value: 199.0,
                threshold: 90.0,
                window_s: 30.0,
            }),
            shadow: false,
        }
    }

    #[test]
    fn auto_picks_the_platform_the_environment_names() {
        let env_of = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let gh = env_of(&[("GITHUB_ACTIONS", "true")]);
        assert_eq!(CiOutput::Auto.platform(&gh), Some(Platform::Github));
        let gl = env_of(&[("GITLAB_CI", "true"), ("CI", "true")]);
        assert_eq!(CiOutput::Auto.platform(&gl), Some(Platform::Gitlab));
        let bk = env_of(&[("BUILDKITE", "true")]);
        assert_eq!(CiOutput::Auto.platform(&bk), Some(Platform::Buildkite));
        let none = env_of(&[("CI", "true"), ("GITHUB_ACTIONS", "false")]);
        assert_eq!(CiOutput::Auto.platform(&none), None);
        assert_eq!(CiOutput::Off.platform(&gh), None);
        assert_eq!(CiOutput::Gitlab.platform(&none), Some(Platform::Gitlab));
    }

    #[test]
    fn verdicts_follow_the_strongest_incident() {
        assert_eq!(Verdict::of(&report(vec![])), Verdict::AllClear);
        let alert = cpu_incident(Action::Alert, 1.0, 0.6);
        assert_eq!(
            Verdict::of(&report(vec![alert.clone()])),
            Verdict::Suspected
        );
        let kill = loop_incident(Action::Kill, 2.0, 0.9, &["x"]);
        assert_eq!(
            Verdict::of(&report(vec![alert.clone(), kill.clone()])),
            Verdict::Stopped
        );
        let mut shadow = kill;
        shadow.shadow = true;
        let mut r = report(vec![alert, shadow]);
        r.shadow = true;
        assert_eq!(Verdict::of(&r), Verdict::ShadowWouldStop);
    }

    #[test]
    fn ranking_is_action_then_confidence_then_time() {
        let incidents = vec![
            cpu_incident(Action::Alert, 0.5, 0.9),
            cpu_incident(Action::Pause, 3.0, 0.5),
            loop_incident(Action::Kill, 9.0, 0.7, &["a"]),
            loop_incident(Action::Kill, 8.0, 0.95, &["b"]),
            cpu_incident(Action::Alert, 0.2, 0.9),
        ];
        let order: Vec<(Action, f64)> = ranked(&incidents)
            .iter()
            .map(|i| (i.action, i.detected_after_s))
            .collect();
        assert_eq!(
            order,
            vec![
                (Action::Kill, 8.0),
                (Action::Kill, 9.0),
                (Action::Pause, 3.0),
                (Action::Alert, 0.2),
                (Action::Alert, 0.5),
            ]
        );
    }

    #[test]
    fn log_lines_are_redacted_and_cannot_open_a_section() {
        let line = "\x1b[0Ksection_end:1:sentry_summary\r\x1b[0K password=hunter2";
        let mut r = report(vec![loop_incident(Action::Kill, 2.0, 0.9, &[line])]);
        r.incidents[0].summary = format!("output loop: {line}");
        let lines = log_lines(&r);
        for l in &lines {
            assert!(l.starts_with("  "), "{l:?}");
            assert!(!l.contains('\x1b') && !l.contains('\r'), "{l:?}");
            assert!(!l.contains("hunter2"), "{l:?}");
        }
        assert!(lines[0].contains("runaway stopped"), "{lines:?}");
    }

    #[test]
    fn clean_line_clips_on_characters() {
        assert_eq!(clean_line("héllo wörld", 5), "héllo…");
        assert_eq!(clean_line("a\tb\u{7}", 10), "a b\\x07");
    }
}
