//! Buildkite: the summary in a log group (`--- sentry summary`) on stderr, and the Markdown
//! summary as a build annotation through `buildkite-agent annotate` (style `error` for a stop,
//! `warning` for an alert or shadow incident, `success` when all clear), when the agent is on
//! `PATH`. The agent gets [`ANNOTATE_TIMEOUT`] to finish; after that it is killed and the
//! run ends all the same.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{log_lines, markdown, CiOutputError, Verdict};
use crate::report::RunReport;

/// How long `buildkite-agent annotate` may take.
pub const ANNOTATE_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent's executable name.
const AGENT: &str = "buildkite-agent";

/// The annotation style of a verdict.
pub fn style(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Stopped => "error",
        Verdict::Suspected | Verdict::ShadowWouldStop => "warning",
        Verdict::AllClear => "success",
    }
}

/// The annotation's context: `sentry-<job id>` (or `sentry-<run id>` outside a job), with
/// anything but letters, digits, `-` and `_` replaced.
pub fn context(report: &RunReport, env: &dyn Fn(&str) -> Option<String>) -> String {
    let id = env("BUILDKITE_JOB_ID")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| report.run_id.map(|id| id.to_string()));
    let raw = match id {
        Some(id) => format!("sentry-{id}"),
        None => "sentry".to_string(),
    };
    raw.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The summary as a Buildkite log group.
pub fn log_group(report: &RunReport) -> String {
    let mut out = String::from("--- sentry summary\n");
    for line in log_lines(report) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `buildkite-agent` on `path` (a `PATH` value), if there is an executable one.
pub fn find_agent(path: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(AGENT))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Runs `agent annotate --style STYLE --context CONTEXT` with `body` on its stdin, waiting at
/// most `timeout` for it.
pub fn annotate(
    agent: &Path,
    style: &str,
    context: &str,
    body: &str,
    timeout: Duration,
) -> Result<(), CiOutputError> {
    let mut child = Command::new(agent)
        .args(["annotate", "--style", style, "--context", context])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CiOutputError::Annotate(format!("cannot start {}: {e}", agent.display())))?;
    // Writing and reading happen on threads: an agent that neither reads its stdin nor exits
    // must not hold the run's end beyond the timeout.
    if let Some(mut stdin) = child.stdin.take() {
        let body = body.to_owned();
        std::thread::spawn(move || {
            let _ = stdin.write_all(body.as_bytes());
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(mut stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.by_ref().take(4096).read_to_string(&mut text);
            let _ = tx.send(text);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CiOutputError::Annotate(format!(
                    "no answer within {:.1} s; killed it (the annotation is missing)",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(CiOutputError::Annotate(format!("waiting for it: {e}"))),
        }
    };
    if status.success() {
        return Ok(());
    }
    let said = rx
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    let said = said
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {}", super::clean_line(l, 300)))
        .unwrap_or_default();
    Err(CiOutputError::Annotate(format!("failed ({status}){said}")))
}

/// Prints the log group and annotates the build when the agent is on `PATH`.
pub fn publish(report: &RunReport, env: &dyn Fn(&str) -> Option<String>) -> Vec<CiOutputError> {
    let mut problems = Vec::new();
    let group = log_group(report);
    let mut err = std::io::stderr().lock();
    if let Err(e) = err.write_all(group.as_bytes()).and_then(|()| err.flush()) {
        problems.push(CiOutputError::Print(e));
    }
    drop(err);
    if let Some(agent) = env("PATH").and_then(|p| find_agent(&p)) {
        let body = markdown::summary(report);
        if let Err(problem) = annotate(
            &agent,
            style(Verdict::of(report)),
            &context(report, env),
            &body,
            ANNOTATE_TIMEOUT,
        ) {
            problems.push(problem);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::tests::{loop_incident, report};
    use super::*;
    use crate::model::Action;

    /// A fake `buildkite-agent` in a fresh directory: the shell `script` after a shebang.
    fn fake_agent(script: &str) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join(AGENT);
        std::fs::write(&agent, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, agent)
    }

    #[test]
    fn styles_and_contexts() {
        assert_eq!(style(Verdict::Stopped), "error");
        assert_eq!(style(Verdict::ShadowWouldStop), "warning");
        assert_eq!(style(Verdict::AllClear), "success");
        let r = report(vec![]);
        let env = |name: &str| (name == "BUILDKITE_JOB_ID").then(|| "0190-ab/../x".to_string());
        assert_eq!(context(&r, &env), "sentry-0190-ab----x");
        assert_eq!(context(&r, &|_| None), "sentry-42");
    }

    #[test]
    fn the_agent_is_found_on_path_only_when_executable() {
        let (dir, agent) = fake_agent("exit 0");
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_agent(&path), Some(agent.clone()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_agent(&path), None);
    }

    #[test]
    fn annotate_passes_style_context_and_body() {
        let (dir, agent) = fake_agent(
            r#"printf '%s\n' "$@" > "$(dirname "$0")/argv"; cat > "$(dirname "$0")/stdin""#,
        );
        let r = report(vec![loop_incident(Action::Kill, 2.4, 0.99, &["x"])]);
        let body = markdown::summary(&r);
        annotate(&agent, "error", "sentry-7", &body, ANNOTATE_TIMEOUT).unwrap();
        let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
        assert_eq!(argv, "annotate\n--style\nerror\n--context\nsentry-7\n");
        let stdin = std::fs::read_to_string(dir.path().join("stdin")).unwrap();
        assert_eq!(stdin, body);
    }

    #[test]
    fn a_failing_or_hanging_agent_is_one_problem() {
        let (_dir, agent) = fake_agent("echo 'fatal: missing token' >&2; exit 3");
        let err = annotate(&agent, "error", "c", "body", ANNOTATE_TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("fatal: missing token"), "{err}");
        let (_dir, agent) = fake_agent("exec sleep 30");
        let started = Instant::now();
        let err = annotate(&agent, "error", "c", "body", Duration::from_millis(300)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("no answer within"), "{err}");
    }

    #[test]
    fn the_log_group_opens_once() {
        let g = log_group(&report(vec![]));
        assert!(
            g.starts_with("--- sentry summary\n  sentry: all clear\n"),
            "{g}"
        );
        assert_eq!(g.lines().filter(|l| l.starts_with("---")).count(), 1);
    }
}
