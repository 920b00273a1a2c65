//! `sentry incidents [--json]`: the incidents recorded in the evidence store, newest first,
//! for terminals and scripts.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::model::{Action, Evidence, FindingKind};
use crate::store::{IncidentQuery, IncidentRow};

/// Arguments of `sentry incidents`.
#[derive(Debug, Args)]
pub struct IncidentsArgs {
    /// Evidence store to read (default: the invoking user's, as for `sentry run`).
    #[arg(long, value_name = "PATH", env = "SENTRY_DB")]
    pub db: Option<PathBuf>,
    /// Only this run's incidents.
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Only this kind (output_loop, cpu_burn, memory_growth, stall, fork_storm, no_output,
    /// regression).
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<FindingKind>,
    /// Only incidents where this was done (alert, pause, kill, restart).
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    pub action: Option<Action>,
    /// How many, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
    /// One JSON array on stdout (the API's incident objects).
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<FindingKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        "expected one of output_loop, cpu_burn, memory_growth, stall, fork_storm, no_output, regression".to_string()
    })
}

fn parse_action(s: &str) -> Result<Action, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "expected one of alert, pause, kill, restart".to_string())
}

/// Runs `sentry incidents`.
pub fn run(args: &IncidentsArgs) -> ExitCode {
    let store = match super::listing::open_for_listing(args.db.as_ref(), args.json, "incidents") {
        Ok(Some(store)) => store,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    let rows = store.incidents(&IncidentQuery {
        run_id: args.run,
        kind: args.kind,
        action: args.action,
        limit: args.limit.max(1),
        before_id: None,
    });
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("sentry: {err}");
            return ExitCode::FAILURE;
        }
    };
    super::listing::print_rows(&rows, args.json, write_table)
}

fn write_table(out: &mut impl Write, rows: &[IncidentRow]) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "No incidents recorded.");
    }
    writeln!(
        out,
        "{:>5}  {:>4}  {:<19}  {:<13}  {:<7}  {:>7}  summary",
        "id", "run", "when", "kind", "action", "after"
    )?;
    for r in rows {
        let when = format_time(r.at);
        let detail = match &r.evidence {
            Evidence::Loop(l) => format!(
                " [period {}, {} repeats: {}]",
                l.period,
                l.repeats,
                l.example.first().map_or("", String::as_str)
            ),
            Evidence::Resource(_) | Evidence::Regression(_) => String::new(),
        };
        let mut summary = format!("{}{detail} → {}", r.summary, r.outcome);
        if summary.chars().count() > 160 {
            summary = summary.chars().take(159).collect::<String>() + "…";
        }
        writeln!(
            out,
            "{:>5}  {:>4}  {:<19}  {:<13}  {:<7}  {:>6.1}s  {summary}",
            r.id,
            r.run_id,
            when,
            crate::store::enum_name(&r.kind),
            r.action.as_str(),
            r.detected_after_s,
        )?;
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, without a date-time dependency.
fn format_time(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(format_time(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_796_197_407.9), "2026-12-02 07:43:27");
    }
}
