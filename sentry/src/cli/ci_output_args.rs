//! The CI flags of `sentry run`: where the end-of-run verdict goes when sentry runs inside a
//! CI job (see docs/ci.md).

use std::path::PathBuf;

use clap::Args;

use crate::ci_output::{CiOptions, CiOutput};

/// `--ci-output`, `--ci-report`.
#[derive(Debug, Clone, Default, Args)]
pub struct CiOutputArgs {
    /// Write the verdict where CI shows it: auto (GitHub Actions, GitLab CI or Buildkite, as
    /// GITHUB_ACTIONS, GITLAB_CI or BUILDKITE say; nothing outside CI), off, github, gitlab or
    /// buildkite. Problems writing it never change the exit status.
    #[arg(long, value_enum, value_name = "PLATFORM", default_value = "auto")]
    pub ci_output: CiOutput,
    /// GitLab: write the JSON report to FILE (default $CI_PROJECT_DIR/sentry-report.json);
    /// the Code Quality report gl-code-quality-sentry.json goes next to it.
    #[arg(long, value_name = "FILE")]
    pub ci_report: Option<PathBuf>,
}

impl CiOutputArgs {
    /// The options `sentry run` passes on.
    pub fn options(&self) -> CiOptions {
        CiOptions {
            output: self.ci_output,
            report: self.ci_report.clone(),
        }
    }
}
