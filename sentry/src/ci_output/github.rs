//! GitHub Actions: each incident as a workflow command on stdout (`::error` for a stop,
//! `::warning` for an alert, a pause or a shadow incident), at most ten of each, strongest
//! first; then the Markdown summary appended to `$GITHUB_STEP_SUMMARY`. A healthy run prints
//! no annotation and appends a short all-clear.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use super::{clean_line, markdown, past_tense, ranked, stops, CiOutputError};
use crate::model::{Evidence, Incident};
use crate::report::RunReport;

/// GitHub shows at most ten error and ten warning annotations per step.
pub const MAX_PER_LEVEL: usize = 10;
/// Characters of one loop line quoted in an annotation.
const MAX_ANNOTATION_LINE: usize = 200;
/// Loop lines quoted in an annotation.
const MAX_ANNOTATION_LINES: usize = 8;

/// The level of one annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `::error`: sentry stopped the command (kill, restart, a restart budget given up on).
    Error,
    /// `::warning`: an alert, a pause, or what shadow mode would have done.
    Warning,
}

impl Level {
    /// The level of `incident`.
    pub fn of(incident: &Incident) -> Level {
        if !incident.shadow && stops(incident.action) {
            Level::Error
        } else {
            Level::Warning
        }
    }

    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// Escapes a workflow command's message (GitHub's `escapeData`): `%`, `\r`, `\n`.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (GitHub's `escapeProperty`): as data, and `:`
/// and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// The workflow-command lines for `report`'s incidents (none for a healthy run): errors then
/// warnings, each strongest first and at most [`MAX_PER_LEVEL`], then a notice when some
/// were left out.
pub fn annotations(report: &RunReport) -> Vec<String> {
    let ranked = ranked(&report.incidents);
    let mut lines = Vec::new();
    let mut left_out = 0;
    for level in [Level::Error, Level::Warning] {
        let of_level: Vec<&Incident> = ranked
            .iter()
            .copied()
            .filter(|i| Level::of(i) == level)
            .collect();
        left_out += of_level.len().saturating_sub(MAX_PER_LEVEL);
        lines.extend(
            of_level
                .into_iter()
                .take(MAX_PER_LEVEL)
                .map(|i| annotation(level, i)),
        );
    }
    if left_out > 0 {
        let lookup = match report.run_id {
            Some(id) => format!(" and `sentry incidents --run {id}`"),
            None => String::new(),
        };
        lines.push(format!(
            "::notice title={}::{}",
            escape_property("sentry"),
            escape_data(&format!(
                "{left_out} more incident(s) not annotated (at most {MAX_PER_LEVEL} errors and {MAX_PER_LEVEL} warnings per run); the job summary{lookup} list them all"
            ))
        ));
    }
    lines
}

/// One incident as a workflow command.
fn annotation(level: Level, incident: &Incident) -> String {
    let kind = incident.kind.label();
    let at = incident.detected_after_s;
    let (title, mut message) = if incident.shadow {
        (
            format!("sentry (shadow): {kind}"),
            format!(
                "shadow: would have {} after {at:.1} s: {}",
                past_tense(incident.action),
                clean_line(&incident.summary, 500)
            ),
        )
    } else {
        let title = match level {
            Level::Error => format!("sentry stopped a runaway: {kind}"),
            Level::Warning => format!("sentry: {kind} suspected"),
        };
        (
            title,
            format!(
                "{} after {at:.1} s: {}; {}",
                incident.action.as_str(),
                clean_line(&incident.summary, 500),
                clean_line(&incident.outcome, 200)
            ),
        )
    };
    message.push_str(&format!(
        " (confidence {:.2}, attempt {})",
        incident.confidence, incident.attempt
    ));
    if let Evidence::Loop(l) = &incident.evidence {
        if !l.example.is_empty() {
            message.push_str(&format!(
                "\nRepeating block ({} line(s), {} repeats):",
                l.period, l.repeats
            ));
            for line in l.example.iter().take(MAX_ANNOTATION_LINES) {
                message.push_str("\n    ");
                message.push_str(&clean_line(line, MAX_ANNOTATION_LINE));
            }
            if l.example.len() > MAX_ANNOTATION_LINES {
                message.push_str("\n    …");
            }
        }
    }
    format!(
        "::{} title={}::{}",
        level.command(),
        escape_property(&title),
        escape_data(&message)
    )
}

/// Writes the annotations on stdout and appends the summary to `$GITHUB_STEP_SUMMARY`.
pub fn publish(report: &RunReport, env: &dyn Fn(&str) -> Option<String>) -> Vec<CiOutputError> {
    let mut problems = Vec::new();
    if let Some(path) = env("GITHUB_STEP_SUMMARY").filter(|p| !p.trim().is_empty()) {
        let path = PathBuf::from(path);
        if let Err(source) = append(&path, &markdown::summary(report)) {
            problems.push(CiOutputError::Summary { path, source });
        }
    }
    let lines = annotations(report);
    if !lines.is_empty() {
        // A workflow command counts only at the start of a line, and the command's last
        // output line may lack its newline (a runaway killed mid-line): start a fresh one.
        let mut text = String::from("\n");
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        let mut out = std::io::stdout().lock();
        if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            problems.push(CiOutputError::Print(err));
        }
    }
    problems
}

/// Appends `text` to `path` in one write (created if missing, never truncated).
fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().append(true).create(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cpu_incident, loop_incident, report};
    use super::*;
    use crate::model::Action;

    #[test]
    fn data_and_properties_are_escaped_as_github_does() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a: b, c%\n"), "a%3A b%2C c%25%0A");
    }

    #[test]
    fn a_kill_is_an_error_and_an_alert_a_warning() {
        let r = report(vec![
            cpu_incident(Action::Alert, 1.0, 0.6),
            loop_incident(Action::Kill, 2.4, 0.99, &["retrying", "GET /health: 503"]),
        ]);
        let lines = annotations(&r);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("::error title=sentry stopped a runaway%3A output loop::kill after 2.4 s: output loop: period 2"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("%0A    retrying%0A    GET /health: 503"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("::warning title=sentry%3A CPU burn suspected::alert after 1.0 s"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn shadow_incidents_are_warnings_saying_what_would_have_happened() {
        let mut kill = loop_incident(Action::Kill, 2.4, 0.99, &["x"]);
        kill.shadow = true;
        let lines = annotations(&report(vec![kill]));
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("::warning title=sentry (shadow)%3A output loop::shadow: would have killed after 2.4 s: "),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn at_most_ten_of_each_level_strongest_first_then_a_notice() {
        let mut incidents = Vec::new();
        for n in 0..15 {
            incidents.push(loop_incident(
                Action::Restart,
                n as f64,
                0.5 + n as f64 / 100.0,
                &["x"],
            ));
            incidents.push(cpu_incident(Action::Alert, n as f64, 0.6));
        }
        incidents.push(loop_incident(Action::Kill, 99.0, 0.1, &["x"]));
        let lines = annotations(&report(incidents));
        assert_eq!(lines.len(), 21, "{lines:#?}");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::error ")).count(),
            10
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::warning ")).count(),
            10
        );
        // The kill outranks every restart; then restarts by confidence (the latest, most
        // confident ones).
        assert!(lines[0].contains("kill after 99.0 s"), "{}", lines[0]);
        assert!(lines[1].contains("restart after 14.0 s"), "{}", lines[1]);
        assert!(lines[9].contains("restart after 6.0 s"), "{}", lines[9]);
        // Alerts of equal confidence: the earliest first.
        assert!(lines[10].contains("alert after 0.0 s"), "{}", lines[10]);
        assert!(
            lines[20].starts_with("::notice title=sentry::11 more incident(s) not annotated"),
            "{}",
            lines[20]
        );
        assert!(
            lines[20].contains("sentry incidents --run 42"),
            "{}",
            lines[20]
        );
    }

    #[test]
    fn child_output_cannot_forge_a_workflow_command_or_leak_a_secret() {
        let hostile = [
            "ok\n::error title=forged::from the child",
            "::add-mask::x\r::set-output name=a::b",
            "password=hunter2 and ghp_FAKE0123456789abcdefghijABCDEFGHIJ01",
            "%0A::warning::encoded",
        ];
        let mut inc = loop_incident(Action::Kill, 1.0, 0.9, &hostile);
        inc.summary = "output loop: ::error::x\n::error::y".into();
        inc.outcome = "stopped\n::notice::z".into();
        let lines = annotations(&report(vec![inc]));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(
            !line.contains("hunter2") && !line.contains("ghp_FAKE"),
            "{line}"
        );
        // A literal `%0A` in the output is re-escaped, so the runner shows it as text.
        assert!(line.contains("%250A::warning::encoded"), "{line}");
        // The child's `::error` stays inside sentry's message, after an escaped newline.
        assert!(line.contains("ok\\n::error title=forged"), "{line}");
    }

    #[test]
    fn the_summary_is_appended_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        std::fs::write(&path, "# earlier step\n").unwrap();
        let path_text = path.to_string_lossy().into_owned();
        let env = move |name: &str| (name == "GITHUB_STEP_SUMMARY").then(|| path_text.clone());
        let problems = publish(&report(vec![]), &env);
        assert!(problems.is_empty(), "{problems:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# earlier step\n### sentry: all clear"),
            "{text}"
        );
    }

    #[test]
    fn an_unwritable_summary_is_a_problem_not_a_panic() {
        let env = |name: &str| {
            (name == "GITHUB_STEP_SUMMARY").then(|| "/nonexistent/dir/summary.md".to_string())
        };
        let problems = publish(&report(vec![]), &env);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("cannot append the job summary to /nonexistent/dir/summary.md"),
            "{}",
            problems[0]
        );
    }
}
