//! `sentry baselines [--json]`: what each job usually takes, learned from the store's history
//! of its healthy runs, and whether the regression detector has enough history to use it.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::decide::Policy;
use crate::store::BaselineRow;

/// Arguments of `sentry baselines`.
#[derive(Debug, Args)]
pub struct BaselinesArgs {
    /// Evidence store to read (default: the invoking user's, as for `sentry run`).
    #[arg(long, value_name = "PATH", env = "SENTRY_DB")]
    pub db: Option<PathBuf>,
    /// Policy file whose `[regression]` history and minimum apply (default: the defaults).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Only job keys containing this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sentry baselines`.
pub fn run(args: &BaselinesArgs) -> ExitCode {
    let policy = match &args.policy {
        Some(path) => match Policy::from_toml_file(path) {
            Ok(p) => p,
            Err(err) => {
                eprintln!("sentry: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => Policy::default(),
    };
    let store = match super::listing::open_for_listing(args.db.as_ref(), args.json, "baselines") {
        Ok(Some(store)) => store,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    let r = &policy.regression;
    let rows = match store.baselines(r.history, r.min_runs) {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("sentry: {err}");
            return ExitCode::FAILURE;
        }
    };
    let rows: Vec<BaselineRow> = rows
        .into_iter()
        .filter(|row| {
            args.filter
                .as_deref()
                .is_none_or(|f| row.job_key.contains(f))
        })
        .collect();
    super::listing::print_rows(&rows, args.json, |out, rows| {
        write_table(out, rows, r.min_runs, r.factor)
    })
}

fn write_table(
    out: &mut impl Write,
    rows: &[BaselineRow],
    min_runs: u32,
    factor: f64,
) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "No job has recorded runs yet.");
    }
    writeln!(
        out,
        "{:>7}  {:>6}  {:>9}  {:>9}  {:>9}  {:<24}  job key",
        "healthy", "runs", "median", "p90", "CPU", "last run"
    )?;
    for row in rows {
        let (healthy, median, p90, cpu) = match &row.baseline {
            Some(b) => (
                b.runs.to_string(),
                format!("{:.1}s", b.median_wall_s),
                format!("{:.1}s", b.p90_wall_s),
                b.median_cpu_seconds
                    .map_or("-".to_string(), |c| format!("{c:.1}s")),
            ),
            None => ("0".into(), "-".into(), "-".into(), "-".into()),
        };
        let ratio = match (&row.baseline, row.last_wall_s) {
            (Some(b), Some(w)) if b.median_wall_s > 0.0 => {
                format!(" {:.1}x", w / b.median_wall_s)
            }
            _ => String::new(),
        };
        let last = format!("#{} {}{}", row.last_run_id, row.last_status, ratio);
        let mut key = crate::redact::redact(&row.job_key).into_owned();
        if key.chars().count() > 100 {
            key = key.chars().take(99).collect::<String>() + "…";
        }
        writeln!(
            out,
            "{healthy:>7}  {:>6}  {median:>9}  {p90:>9}  {cpu:>9}  {last:<24}  {key}",
            row.runs_total
        )?;
    }
    writeln!(
        out,
        "A job is compared with its baseline once it has {min_runs} healthy runs; \
         a run past {factor}x its median wall time or CPU raises a regression finding."
    )
}
