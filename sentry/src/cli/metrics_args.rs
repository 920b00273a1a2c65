//! The metrics flags of `sentry run` (and, flattened the same way, of `sentry watch`):
//! node_exporter's textfile collector and the Prometheus Pushgateway, for runs that end
//! before any scrape could see them.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::metrics::{self, push};
use crate::report::RunReport;
use crate::store::Store;

/// `--textfile-dir`, `--pushgateway`.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArgs {
    /// Write the store's metrics to DIR/sentry.prom (atomically, 0644) for node_exporter's
    /// textfile collector: at the end of the run, when it was recorded.
    #[arg(long, value_name = "DIR")]
    pub textfile_dir: Option<PathBuf>,
    /// Push the run's final figures to the Prometheus Pushgateway at URL (e.g.
    /// http://pushgateway:9091), grouped by job="sentry", instance=<host> and, in a CI job,
    /// ci, repository, workflow and ci_job. A failed push is reported, never fatal.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

impl MetricsArgs {
    /// Checks the flags before anything runs: a typo is better found now than after an
    /// hour-long job.
    pub fn check(&self) -> Result<(), String> {
        if let Some(dir) = &self.textfile_dir {
            if !dir.is_dir() {
                return Err(format!(
                    "--textfile-dir {}: not a directory (give node_exporter's \
                     --collector.textfile.directory)",
                    dir.display()
                ));
            }
        }
        if let Some(url) = &self.pushgateway {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--pushgateway {url}: give the Pushgateway's base URL, e.g. \
                     http://pushgateway:9091"
                ));
            }
        }
        Ok(())
    }

    /// Publishes a finished run: the textfile from `store` (when the run was recorded there),
    /// then the push. Failures are one line on stderr each; the run's status stands.
    pub fn after_run(&self, report: &RunReport, store: Option<&Path>) {
        if let (Some(dir), Some(store), Some(_)) = (&self.textfile_dir, store, report.run_id) {
            if let Err(err) = write_textfile(dir, store) {
                eprintln!("sentry: could not write the metrics textfile: {err}");
            }
        }
        if let Some(url) = &self.pushgateway {
            let ci = crate::fleet::ci::from_own_env();
            if let Err(err) = push::push(url, &push::RunFigures::from(report), ci.as_ref()) {
                eprintln!("sentry: {err}");
            }
        }
    }
}

fn write_textfile(dir: &Path, store: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let figures = Store::open(store)?.metrics()?;
    metrics::write_textfile(dir, &metrics::render(&figures, None))
        .with_context(|| format!("{}", dir.join(metrics::textfile::FILE_NAME).display()))
}
