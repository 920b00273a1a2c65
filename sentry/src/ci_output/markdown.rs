//! The Markdown summary of a run, shared by GitHub's job summary and Buildkite's annotation:
//! a heading with the verdict, the repeating block of an output loop, the peaks, the decision
//! timeline, the cost, the baseline and how to look the run up. A healthy run gets a few
//! lines only.
//!
//! Whatever came from the command (loop lines, summaries, reasons) is redacted and escaped:
//! inline text has Markdown's punctuation backslash-escaped, loop lines go into a code fence
//! longer than any backtick run they contain, so that hostile output (backticks,
//! `</details>`, `[links](…)`, `$math$`) stays text. The whole summary is at most
//! [`MAX_SUMMARY_BYTES`]: the evidence and the timeline are cut to fit, with a note.

use std::fmt::Write as _;

use super::{clean_line, command_line, past_tense, ranked, Verdict};
use crate::model::{Evidence, Incident};
use crate::report::RunReport;

/// The most sentry appends to a summary: GitHub allows 1 MiB per step, and a summary several
/// runs append to must leave room for the others.
pub const MAX_SUMMARY_BYTES: usize = 64 * 1024;

/// Room kept for the note saying what was cut.
const NOTE_RESERVE: usize = 512;
/// Characters of one loop line kept in the repeating block.
const MAX_EXAMPLE_CHARS: usize = 300;
/// Characters of one table cell or list item taken from the run.
const MAX_CELL_CHARS: usize = 200;
/// Characters of the command line shown.
const MAX_COMMAND_CHARS: usize = 200;
/// Reasons listed for the leading incident.
const MAX_REASONS: usize = 5;

/// The Markdown summary of `report`, at most [`MAX_SUMMARY_BYTES`] long.
pub fn summary(report: &RunReport) -> String {
    let verdict = Verdict::of(report);
    let out = match verdict {
        Verdict::AllClear => all_clear(report),
        _ => runaway(report, verdict),
    };
    debug_assert!(out.len() <= MAX_SUMMARY_BYTES, "{} bytes", out.len());
    out
}

/// A healthy run: verdict, duration, peaks, cost.
fn all_clear(report: &RunReport) -> String {
    let mut out = heading(Verdict::AllClear);
    let _ = writeln!(
        out,
        "{} ran for {:.1} s and {}; no runaway detected.\n",
        code(&command_line(report, MAX_COMMAND_CHARS)),
        report.duration_s,
        ended(report)
    );
    let _ = writeln!(out, "- {}", peaks(report));
    let _ = writeln!(out, "- Cost: {}", text(&report.cost.summary(), 400));
    if let Some(b) = &report.baseline {
        let _ = writeln!(out, "- {}", text(&super::baseline_sentence(b), 400));
    }
    let _ = writeln!(out, "- {}", lookup(report));
    out.push('\n');
    out
}

/// A run with incidents: everything, cut to fit.
fn runaway(report: &RunReport, verdict: Verdict) -> String {
    let ranked = ranked(&report.incidents);
    let Some(lead) = ranked.first().copied() else {
        return all_clear(report);
    };
    let head = lead_section(report, verdict, lead);
    let resources = format!(
        "#### Resources\n\n- {}\n{}\n",
        peaks(report),
        restarts(report)
    );
    let cost = cost_section(report);
    let tail = format!("{}\n\n", lookup(report));
    let fixed = head.len() + resources.len() + cost.len() + tail.len();
    let mut room = MAX_SUMMARY_BYTES.saturating_sub(fixed + NOTE_RESERVE);
    let mut cut = Vec::new();
    // The evidence first (it says why), up to half of what is left; the timeline gets the rest.
    let loop_incident = ranked
        .iter()
        .copied()
        .find(|i| matches!(i.evidence, Evidence::Loop(_)));
    let evidence = match loop_incident {
        Some(i) => loop_section(i, room / 2, &mut cut),
        None => resource_section(lead),
    };
    let evidence = if evidence.len() <= room {
        evidence
    } else {
        cut.push("the evidence");
        String::new()
    };
    room -= evidence.len();
    let timeline = timeline_section(&report.incidents, room, &mut cut);
    let mut out = String::with_capacity(fixed + evidence.len() + timeline.len() + NOTE_RESERVE);
    out.push_str(&head);
    out.push_str(&evidence);
    out.push_str(&resources);
    out.push_str(&timeline);
    out.push_str(&cost);
    if !cut.is_empty() {
        let _ = writeln!(
            out,
            "_Shortened to keep this summary under {} KiB: {} cut._\n",
            MAX_SUMMARY_BYTES / 1024,
            cut.join(" and ")
        );
    }
    out.push_str(&tail);
    out
}

fn heading(verdict: Verdict) -> String {
    format!("### sentry: {}\n\n", verdict.headline())
}

/// The heading, the leading incident in one sentence, and its reasons.
fn lead_section(report: &RunReport, verdict: Verdict, lead: &Incident) -> String {
    let mut out = heading(verdict);
    let command = code(&command_line(report, MAX_COMMAND_CHARS));
    let what = format!("**{}**", text(lead.kind.label(), 40));
    if lead.shadow {
        let _ = writeln!(
            out,
            "{command}: {what} after {:.1} s (confidence {:.2}). shadow: would have {} after {:.1} s; \
             nothing touched the command, which {} after {:.1} s.\n",
            lead.detected_after_s,
            lead.confidence,
            past_tense(lead.action),
            lead.detected_after_s,
            ended(report),
            report.duration_s
        );
    } else {
        let _ = writeln!(
            out,
            "{command}: {what} after {:.1} s (confidence {:.2}): {}. sentry exited with {}; the command {}.\n",
            lead.detected_after_s,
            lead.confidence,
            text(&lead.outcome, MAX_CELL_CHARS),
            report.exit_code,
            ended(report)
        );
    }
    let _ = writeln!(out, "> {}\n", text(&lead.summary, 500));
    if !lead.reasons.is_empty() {
        out.push_str("Why:\n\n");
        for reason in lead.reasons.iter().take(MAX_REASONS) {
            let _ = writeln!(out, "- {}", text(reason, MAX_CELL_CHARS));
        }
        out.push('\n');
    }
    out
}

/// The repeating block of an output loop, in a fence, within `budget` bytes.
fn loop_section(incident: &Incident, budget: usize, cut: &mut Vec<&'static str>) -> String {
    let Evidence::Loop(l) = &incident.evidence else {
        return String::new();
    };
    let mut out = format!(
        "#### Repeating output\n\nA block of {} line(s) repeated {} times (output lines {} to {}){}:\n\n",
        l.period,
        l.repeats,
        l.first_line,
        l.last_line,
        if l.example.is_empty() {
            ", as templates"
        } else {
            ""
        }
    );
    let source = if l.example.is_empty() {
        &l.pattern
    } else {
        &l.example
    };
    let lines: Vec<String> = source
        .iter()
        .map(|line| clean_line(line, MAX_EXAMPLE_CHARS))
        .collect();
    // The fence and the note take at most this much beyond the lines.
    let overhead = out.len() + 2 * (longest_backtick_run(&lines) + 8) + 80;
    let mut kept = 0;
    let mut size = overhead;
    for line in &lines {
        if size + line.len() + 1 > budget {
            break;
        }
        size += line.len() + 1;
        kept += 1;
    }
    if kept == 0 {
        cut.push("the repeating block");
        return String::new();
    }
    out.push_str(&fenced(&lines[..kept]));
    if kept < lines.len() {
        cut.push("the repeating block");
        let _ = writeln!(
            out,
            "\n_{} more line(s) of the block left out._",
            lines.len() - kept
        );
    }
    out.push('\n');
    out
}

/// The measurement behind a resource finding.
fn resource_section(incident: &Incident) -> String {
    match &incident.evidence {
        Evidence::Resource(r) => format!(
            "#### Evidence\n\n- {}: {:.1} against a threshold of {:.1}, over {:.1} s\n\n",
            text(&r.metric, 40),
            r.value,
            r.threshold,
            r.window_s
        ),
        Evidence::Regression(r) => format!(
            "#### Evidence\n\n- {} {:.1} s is {:.1}x the median {:.1} s of the last {} healthy runs \
             of {} (flagged past {:.1} s; p90 wall time {:.1} s)\n\n",
            if r.metric == "cpu_s" { "CPU time" } else { "wall time" },
            r.value,
            r.ratio,
            r.median,
            r.runs,
            text(&r.job_key, 200),
            r.threshold,
            r.p90_wall_s
        ),
        Evidence::Loop(_) => String::new(),
    }
}

/// Every incident in order, as a table, within `budget` bytes.
fn timeline_section(incidents: &[Incident], budget: usize, cut: &mut Vec<&'static str>) -> String {
    let mut out = String::from(
        "#### Decision timeline\n\n| time | kind | action | confidence | outcome |\n|---:|---|---|---:|---|\n",
    );
    let overhead = out.len() + 100;
    if overhead > budget {
        cut.push("the decision timeline");
        return String::new();
    }
    let mut kept = 0;
    for incident in incidents {
        let action = if incident.shadow {
            format!("{} (shadow)", incident.action.as_str())
        } else {
            incident.action.as_str().to_string()
        };
        let row = format!(
            "| {:.1} s | {} | {} | {:.2} | {} |\n",
            incident.detected_after_s,
            text(incident.kind.label(), 40),
            action,
            incident.confidence,
            text(&incident.outcome, MAX_CELL_CHARS)
        );
        if out.len() + row.len() + 100 > budget {
            break;
        }
        out.push_str(&row);
        kept += 1;
    }
    if kept < incidents.len() {
        cut.push("the decision timeline");
        let _ = writeln!(
            out,
            "\n_{} more incident(s) left out; `sentry incidents --run N` lists them all._",
            incidents.len() - kept
        );
    }
    out.push('\n');
    out
}

fn cost_section(report: &RunReport) -> String {
    let c = &report.cost;
    let mut out = String::from("#### Cost\n\n");
    let _ = writeln!(out, "- CPU: {:.1} CPU-s", c.cpu_seconds);
    if let Some(gbs) = c.mem_gb_seconds {
        let _ = writeln!(out, "- Memory: {gbs:.2} GB-s");
    }
    if c.io_read_bytes.is_some() || c.io_write_bytes.is_some() {
        let _ = writeln!(
            out,
            "- I/O: {} read, {} written",
            bytes(c.io_read_bytes.unwrap_or(0)),
            bytes(c.io_write_bytes.unwrap_or(0))
        );
    }
    let _ = writeln!(out, "- Idle: {:.0}% of the time", c.idle_fraction * 100.0);
    let _ = writeln!(out, "- Wall: {:.1} s", c.wall_s);
    if let (Some(cost), Some(price)) = (c.cost, c.price_per_cpu_hour) {
        let _ = writeln!(out, "- Cost: {cost:.4} (at {price} per CPU-hour)");
    }
    if let Some(b) = &report.baseline {
        let _ = writeln!(
            out,
            "\n#### Baseline\n\n{}",
            text(&super::baseline_sentence(b), 400)
        );
    }
    out.push('\n');
    out
}

fn peaks(report: &RunReport) -> String {
    let mem = report.mem_peak_bytes.map_or("not measured".into(), bytes);
    format!(
        "CPU: peak {:.0}%, average {:.0}% (per-core percent); memory: peak {mem}; processes: peak {}",
        report.cpu_peak_pct, report.cpu_avg_pct, report.pids_peak
    )
}

fn restarts(report: &RunReport) -> String {
    if report.restarts > 0 {
        format!("- Restarts: {}\n", report.restarts)
    } else {
        String::new()
    }
}

/// How the command ended ("exited with 0", "was killed by signal 15").
fn ended(report: &RunReport) -> String {
    match report.signal {
        Some(sig) => format!("was killed by signal {sig}"),
        None => format!("exited with {}", report.child_exit_code),
    }
}

fn lookup(report: &RunReport) -> String {
    match report.run_id {
        Some(id) => format!(
            "Run {id} in the evidence store: `sentry incidents --run {id}` lists its incidents, `sentry dashboard` shows it."
        ),
        None => "This run was not recorded in the evidence store (`--no-db`).".into(),
    }
}

fn bytes(b: u64) -> String {
    crate::detect::cpu::human_bytes(b)
}

/// Characters Markdown (CommonMark, GitHub's and GitLab's extensions: tables, strikethrough,
/// math, mentions, emoji and URL autolinks, HTML) could read as structure; escaping any ASCII
/// punctuation is allowed. Parentheses are left alone: with `[` and `]` escaped they cannot
/// make a link.
const MARKDOWN_SPECIAL: &[char] = &[
    '\\', '`', '*', '_', '[', ']', '<', '>', '#', '|', '~', '&', '!', '$', '{', '}', '@', ':',
];

/// `raw` from the run as inline Markdown text: redacted, on one line, at most `max_chars`
/// characters, with every special character backslash-escaped.
pub fn text(raw: &str, max_chars: usize) -> String {
    let clean = clean_line(raw, max_chars);
    let mut out = String::with_capacity(clean.len() + 8);
    for c in clean.chars() {
        if MARKDOWN_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A code span holding `clean` (already one cleaned line): its backtick fence is longer than
/// any run of backticks inside.
pub fn code(clean: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(&[clean]) + 1);
    let pad = if clean.starts_with('`') || clean.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{clean}{pad}{fence}")
}

/// A fenced code block of cleaned lines, its fence longer than any backtick run inside, so no
/// line can close it.
pub fn fenced(lines: &[String]) -> String {
    let fence = "`".repeat((longest_backtick_run(lines) + 1).max(3));
    let mut out = format!("{fence}text\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

fn longest_backtick_run<S: AsRef<str>>(lines: &[S]) -> usize {
    lines
        .iter()
        .flat_map(|l| l.as_ref().split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cpu_incident, loop_incident, report};
    use super::*;
    use crate::model::Action;

    #[test]
    fn a_healthy_run_gets_a_short_all_clear() {
        let s = summary(&report(vec![]));
        assert!(s.starts_with("### sentry: all clear\n"), "{s}");
        assert!(s.len() < 1024, "{} bytes:\n{s}", s.len());
        assert!(
            s.contains("`make test` ran for 3.8 s and exited with 0"),
            "{s}"
        );
        assert!(s.contains("1.9 CPU-s"), "{s}");
        assert!(s.contains("sentry incidents --run 42"), "{s}");
        assert!(!s.contains("timeline"), "{s}");
    }

    #[test]
    fn a_stopped_loop_shows_its_block_timeline_and_cost() {
        let mut r = report(vec![
            loop_incident(Action::Alert, 1.1, 0.7, &["GET /health: 503", "retrying"]),
            loop_incident(Action::Kill, 2.4, 0.99, &["GET /health: 503", "retrying"]),
        ]);
        r.cost = r.cost.clone().priced(Some(0.36));
        r.baseline = Some(crate::baseline::BaselineComparison::of(
            crate::baseline::Baseline {
                job_key: "github:acme/api:CI:test".into(),
                runs: 20,
                median_wall_s: 1.2,
                median_cpu_seconds: Some(0.5),
                p90_wall_s: 1.5,
            },
            3.84,
            1.9,
        ));
        let s = summary(&r);
        assert!(s.starts_with("### sentry: runaway stopped\n"), "{s}");
        assert!(
            s.contains("```text\nGET /health: 503\nretrying\n```"),
            "{s}"
        );
        assert!(s.contains("A block of 2 line(s) repeated 57 times"), "{s}");
        assert!(
            s.contains("| 2.4 s | output loop | kill | 0.99 | stopped |"),
            "{s}"
        );
        assert!(s.contains("| 1.1 s | output loop | alert | 0.70 |"), "{s}");
        assert!(s.contains("CPU: peak 98%"), "{s}");
        assert!(s.contains("Cost: 0.0002 (at 0.36 per CPU-hour)"), "{s}");
        assert!(s.contains("usually takes 1.2 s (median of 20 runs"), "{s}");
        assert!(s.contains("3.2x that"), "{s}");
        assert!(s.contains("`sentry incidents --run 42`"), "{s}");
        assert!(!s.contains("Shortened"), "{s}");
    }

    #[test]
    fn shadow_runs_say_what_would_have_happened() {
        let mut kill = loop_incident(Action::Kill, 2.4, 0.99, &["x"]);
        kill.shadow = true;
        kill.outcome = "shadow: not enforced".into();
        let mut r = report(vec![kill]);
        r.shadow = true;
        let s = summary(&r);
        assert!(
            s.starts_with("### sentry: shadow: would have stopped a runaway"),
            "{s}"
        );
        assert!(s.contains("would have killed after 2.4 s"), "{s}");
        assert!(s.contains("| kill (shadow) |"), "{s}");
    }

    #[test]
    fn a_cpu_burn_shows_its_measurement() {
        let s = summary(&report(vec![cpu_incident(Action::Alert, 31.0, 0.6)]));
        assert!(s.starts_with("### sentry: runaway suspected"), "{s}");
        assert!(
            s.contains("cpu\\_pct: 199.0 against a threshold of 90.0, over 30.0 s"),
            "{s}"
        );
    }

    #[test]
    fn a_regression_shows_the_baseline_it_was_measured_against() {
        let mut inc = cpu_incident(Action::Alert, 7.1, 0.5);
        inc.kind = crate::model::FindingKind::Regression;
        inc.evidence = Evidence::Regression(crate::model::RegressionEvidence {
            metric: "wall_s".into(),
            value: 7.1,
            median: 2.0,
            ratio: 3.55,
            threshold: 6.0,
            runs: 5,
            p90_wall_s: 2.2,
            job_key: "ci:acme/web:ci:build".into(),
        });
        let s = summary(&report(vec![inc]));
        assert!(
            s.contains("wall time 7.1 s is 3.5x the median 2.0 s of the last 5 healthy runs of ci\\:acme/web\\:ci\\:build"),
            "{s}"
        );
    }

    #[test]
    fn hostile_loop_lines_stay_inside_their_fence() {
        let hostile = [
            "```",
            "````</details><script>alert(1)</script>",
            "::error title=pwned::owned",
            "[click](https://evil.example) $x$ **bold** | cell |",
            "token ghp_FAKE0123456789abcdefghijABCDEFGHIJ01 and password=hunter2",
        ];
        let mut inc = loop_incident(Action::Kill, 2.0, 0.9, &hostile);
        inc.summary = hostile.join(" ");
        inc.reasons = hostile.iter().map(|s| s.to_string()).collect();
        inc.outcome = "stopped </details> | x".into();
        let s = summary(&report(vec![inc]));
        assert!(!s.contains("hunter2") && !s.contains("ghp_FAKE"), "{s}");
        // The fence is five backticks (one more than the longest run) and closes only once.
        let fence_lines: Vec<&str> = s.lines().filter(|l| l.starts_with("`````")).collect();
        assert_eq!(fence_lines, vec!["`````text", "`````"], "{s}");
        let (before, rest) = s.split_once("`````text\n").expect("a fence opens");
        let (block, after) = rest.split_once("\n`````\n").expect("the fence closes");
        assert!(
            block.contains("</details><script>"),
            "lines are kept verbatim in the block"
        );
        // Outside the block nothing is live HTML, a link or a table break.
        for outside in [before, after] {
            // sentry's own code spans are the only live backticks.
            let rest = outside
                .replace("`make test`", "")
                .replace("`sentry incidents --run 42`", "")
                .replace("`sentry dashboard`", "");
            for (at, c) in rest.char_indices() {
                if matches!(c, '<' | '>' | '[' | ']' | '$' | '`') {
                    let escaped = rest[..at].ends_with('\\');
                    let quote = c == '>' && rest[..at].ends_with('\n');
                    assert!(
                        escaped || quote,
                        "unescaped {c:?}: {:?}",
                        &rest[at.saturating_sub(40)..]
                    );
                }
            }
            assert!(outside.contains("\\</details\\>"), "{outside}");
        }
        assert!(
            after.contains("| stopped \\</details\\> \\| x |"),
            "{after}"
        );
    }

    #[test]
    fn the_summary_never_exceeds_64_kib() {
        let long = "x".repeat(20_000);
        let example: Vec<&str> = (0..64).map(|_| long.as_str()).collect();
        let mut first = loop_incident(Action::Restart, 0.0, 0.99, &example);
        first.summary = long.clone();
        first.reasons = vec![long.clone(); 50];
        let mut incidents = vec![first];
        for n in 1..2000 {
            let mut i = loop_incident(Action::Restart, n as f64, 0.9, &["x"]);
            i.outcome = "o".repeat(1000);
            incidents.push(i);
        }
        let s = summary(&report(incidents));
        assert!(s.len() <= MAX_SUMMARY_BYTES, "{} bytes", s.len());
        assert!(
            s.len() > MAX_SUMMARY_BYTES / 2,
            "budget used: {} bytes",
            s.len()
        );
        assert!(
            s.contains("Shortened to keep this summary under 64 KiB"),
            "{s}"
        );
        assert!(s.contains("more incident(s) left out"), "{s}");
        assert!(s.contains("#### Cost"), "the cost is never cut");
        assert!(
            s.contains("sentry incidents --run 42"),
            "the lookup is never cut"
        );
        let fences = s.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences % 2, 0, "every fence is closed");
    }

    #[test]
    fn escaping_and_code_spans() {
        assert_eq!(
            text("a*b_c [d](e) <f> $g$ #1 | @h https://x", 100),
            "a\\*b\\_c \\[d\\](e) \\<f\\> \\$g\\$ \\#1 \\| \\@h https\\://x"
        );
        assert_eq!(code("ls `pwd`"), "`` ls `pwd` ``");
        assert_eq!(code("a``b"), "```a``b```");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(fenced(&["a".into()]), "```text\na\n```\n");
    }
}
