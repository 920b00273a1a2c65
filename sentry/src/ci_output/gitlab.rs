//! GitLab CI: the summary in a collapsed log section on stderr, the run's JSON report for the
//! job's `artifacts:` (`sentry-report.json` in `$CI_PROJECT_DIR`, or `--ci-report FILE`), and
//! next to it a Code Quality report (`gl-code-quality-sentry.json`) with one entry per
//! incident, so that incidents show in merge requests.
//!
//! The job declares them:
//!
//! ```yaml
//! artifacts:
//!   when: always
//!   paths: [sentry-report.json]
//!   reports:
//!     codequality: gl-code-quality-sentry.json
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{clean_line, command_line, log_lines, stops, CiOutputError, Verdict};
use crate::model::{Action, Incident};
use crate::report::RunReport;

/// The report's file name in the project directory.
pub const REPORT_FILE: &str = "sentry-report.json";
/// The Code Quality report's file name, next to the report.
pub const CODE_QUALITY_FILE: &str = "gl-code-quality-sentry.json";
/// The log section's name (`section_start:…:sentry_summary`).
const SECTION: &str = "sentry_summary";

/// The summary wrapped in GitLab's collapsed log section markers, started and ended at `unix`
/// seconds.
pub fn log_section(report: &RunReport, unix: u64) -> String {
    let mut out = format!(
        "\x1b[0Ksection_start:{unix}:{SECTION}[collapsed=true]\r\x1b[0Ksentry: {}\n",
        Verdict::of(report).headline()
    );
    for line in log_lines(report) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("\x1b[0Ksection_end:{unix}:{SECTION}\r\x1b[0K\n"));
    out
}

/// Where the JSON report goes: `--ci-report`, else `$CI_PROJECT_DIR/sentry-report.json`, else
/// `sentry-report.json` in the current directory.
pub fn report_path(given: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match given {
        Some(path) => path.to_path_buf(),
        None => env("CI_PROJECT_DIR")
            .filter(|d| !d.trim().is_empty())
            .map_or_else(
                || PathBuf::from(REPORT_FILE),
                |d| Path::new(&d).join(REPORT_FILE),
            ),
    }
}

/// One entry of a GitLab Code Quality report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeQualityIssue {
    /// What happened, in one line.
    pub description: String,
    /// `sentry/<kind>`.
    pub check_name: String,
    /// Stable across runs of the same job, so GitLab can tell new incidents from old ones.
    pub fingerprint: String,
    /// `critical` for a stop, `major` for a pause, `minor` for an alert or a shadow incident.
    pub severity: &'static str,
    /// The pipeline file: an incident belongs to a job, not to a line of code.
    pub location: Location,
}

/// Where a Code Quality entry points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// The file (`.gitlab-ci.yml`).
    pub path: String,
    /// Its lines.
    pub lines: Lines,
}

/// The first line an entry points at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lines {
    /// 1-based.
    pub begin: u32,
}

/// The Code Quality entries of `report`: one per incident, none for a healthy run.
pub fn code_quality(report: &RunReport, job_name: &str) -> Vec<CodeQualityIssue> {
    let command = command_line(report, 300);
    let mut seen: Vec<(crate::model::FindingKind, usize)> = Vec::new();
    report
        .incidents
        .iter()
        .map(|incident| {
            // The n-th incident of a kind in this job: stable from run to run, unique within it.
            let nth = match seen.iter_mut().find(|(k, _)| *k == incident.kind) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((incident.kind, 1));
                    1
                }
            };
            let kind = serde_json::to_value(incident.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| incident.kind.label().to_string());
            CodeQualityIssue {
                description: describe(incident, &command),
                check_name: format!("sentry/{kind}"),
                fingerprint: fingerprint(&[job_name, &command, &kind, &nth.to_string()]),
                severity: severity(incident),
                location: Location {
                    path: ".gitlab-ci.yml".into(),
                    lines: Lines { begin: 1 },
                },
            }
        })
        .collect()
}

fn describe(incident: &Incident, command: &str) -> String {
    let what = if incident.shadow {
        format!(
            "shadow: would have {} after {:.1} s",
            super::past_tense(incident.action),
            incident.detected_after_s
        )
    } else {
        format!(
            "{} after {:.1} s ({})",
            incident.action.as_str(),
            incident.detected_after_s,
            clean_line(&incident.outcome, 200)
        )
    };
    format!(
        "sentry: {} in `{command}`: {what}: {}",
        incident.kind.label(),
        clean_line(&incident.summary, 500)
    )
}

fn severity(incident: &Incident) -> &'static str {
    match incident.action {
        _ if incident.shadow => "minor",
        a if stops(a) => "critical",
        Action::Pause => "major",
        _ => "minor",
    }
}

/// 64-bit FNV-1a of the parts (with separators), in hex: stable across builds and platforms,
/// which `std`'s hasher does not promise.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The report as JSON, every string redacted again.
fn report_json(report: &RunReport) -> serde_json::Result<Vec<u8>> {
    let mut value = serde_json::to_value(report)?;
    crate::redact::redact_json(&mut value);
    let mut bytes = serde_json::to_vec_pretty(&value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CiOutputError> {
    std::fs::write(path, bytes).map_err(|source| CiOutputError::Report {
        path: path.to_path_buf(),
        source,
    })
}

/// Prints the log section and writes the two report files.
pub fn publish(
    report: &RunReport,
    given: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<CiOutputError> {
    let mut problems = Vec::new();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let section = log_section(report, unix);
    let mut err = std::io::stderr().lock();
    if let Err(e) = err.write_all(section.as_bytes()).and_then(|()| err.flush()) {
        problems.push(CiOutputError::Print(e));
    }
    drop(err);

    let path = report_path(given, env);
    let json = report_json(report).map_err(|e| CiOutputError::Report {
        path: path.clone(),
        source: e.into(),
    });
    if let Err(problem) = json.and_then(|bytes| write_file(&path, &bytes)) {
        problems.push(problem);
    }
    let quality_path = path.parent().map_or_else(
        || PathBuf::from(CODE_QUALITY_FILE),
        |d| d.join(CODE_QUALITY_FILE),
    );
    let job_name = env("CI_JOB_NAME").unwrap_or_default();
    let issues = code_quality(report, &job_name);
    let quality = serde_json::to_vec_pretty(&issues).map_err(|e| CiOutputError::Report {
        path: quality_path.clone(),
        source: e.into(),
    });
    if let Err(problem) = quality.and_then(|bytes| write_file(&quality_path, &bytes)) {
        problems.push(problem);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cpu_incident, loop_incident, report};
    use super::*;

    #[test]
    fn the_section_is_collapsed_and_closed() {
        let s = log_section(&report(vec![]), 1_700_000_000);
        assert!(
            s.starts_with("\x1b[0Ksection_start:1700000000:sentry_summary[collapsed=true]\r\x1b[0Ksentry: all clear\n"),
            "{s:?}"
        );
        assert!(
            s.ends_with("\x1b[0Ksection_end:1700000000:sentry_summary\r\x1b[0K\n"),
            "{s:?}"
        );
        assert_eq!(s.matches("section_").count(), 2, "{s:?}");
    }

    #[test]
    fn the_report_lands_in_the_project_directory_unless_given() {
        let env = |name: &str| (name == "CI_PROJECT_DIR").then(|| "/builds/acme/api".to_string());
        assert_eq!(
            report_path(None, &env),
            PathBuf::from("/builds/acme/api/sentry-report.json")
        );
        assert_eq!(
            report_path(Some(Path::new("out/r.json")), &env),
            PathBuf::from("out/r.json")
        );
        assert_eq!(
            report_path(None, &|_| None),
            PathBuf::from("sentry-report.json")
        );
    }

    #[test]
    fn one_code_quality_entry_per_incident_with_stable_unique_fingerprints() {
        let r = report(vec![
            cpu_incident(Action::Alert, 1.0, 0.6),
            loop_incident(Action::Alert, 1.5, 0.7, &["password=hunter2"]),
            loop_incident(Action::Kill, 2.4, 0.99, &["password=hunter2"]),
        ]);
        let issues = code_quality(&r, "test");
        assert_eq!(issues.len(), 3);
        assert_eq!(issues[0].check_name, "sentry/cpu_burn");
        assert_eq!(issues[2].check_name, "sentry/output_loop");
        assert_eq!(
            (issues[0].severity, issues[1].severity, issues[2].severity),
            ("minor", "minor", "critical")
        );
        assert!(
            issues[2]
                .description
                .starts_with("sentry: output loop in `make test`: kill after 2.4 s (stopped)"),
            "{}",
            issues[2].description
        );
        let again = code_quality(&r, "test");
        assert_eq!(issues, again, "fingerprints are stable");
        assert_ne!(issues[1].fingerprint, issues[2].fingerprint, "and unique");
        assert_ne!(
            issues[0].fingerprint,
            code_quality(&r, "lint")[0].fingerprint
        );
        let json = serde_json::to_value(&issues).unwrap();
        assert_eq!(json[0]["location"]["path"], ".gitlab-ci.yml");
        assert_eq!(json[0]["location"]["lines"]["begin"], 1);
        assert!(code_quality(&report(vec![]), "test").is_empty());
    }

    #[test]
    fn report_files_are_written_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = report(vec![loop_incident(
            Action::Kill,
            2.4,
            0.99,
            &["password=hunter2"],
        )]);
        r.command = vec![
            "deploy".into(),
            "--token=ghp_FAKE0123456789abcdefghijABCDEFGHIJ01".into(),
        ];
        let given = dir.path().join("sentry-report.json");
        let problems = publish(&r, Some(&given), &|_| None);
        assert!(problems.is_empty(), "{problems:?}");
        let text = std::fs::read_to_string(&given).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("ghp_FAKE"),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["incidents"].as_array().map(Vec::len), Some(1));
        let quality = std::fs::read_to_string(dir.path().join(CODE_QUALITY_FILE)).unwrap();
        assert!(
            !quality.contains("hunter2") && !quality.contains("ghp_FAKE"),
            "{quality}"
        );
        let quality: serde_json::Value = serde_json::from_str(&quality).unwrap();
        assert_eq!(quality.as_array().map(Vec::len), Some(1));
    }
}
