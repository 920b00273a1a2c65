//! `cargo xtask bench dashboard`: the web UI's speed, measured in headless Chromium (Debian's
//! `chromium`) against a release `sentry dashboard` on loopback and a real store
//! (`dashboard/e2e/perf.bench.ts` takes the figures):
//!
//! - the built UI's size, gzipped (every file of `dashboard/dist`);
//! - first contentful paint of the page, cold cache, median of 6 loads (and when the runs
//!   table is on screen);
//! - a run of 10,000 samples: time until its three charts show them all, then 5 s of live
//!   samples (10/s, written to the store, through `/stream`) while the cursor sweeps the chart,
//!   recording every frame's interval (`requestAnimationFrame`) and each chart redraw's time
//!   (user timing around uPlot's draw).
//!
//! Targets (issue 6): under 300 KiB gzipped; first paint under 1 s; no frame over 16 ms.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

const MAX_GZIP_BYTES: f64 = 300.0 * 1024.0;
const MAX_FCP_MS: f64 = 1000.0;
const FRAME_MS: f64 = 16.7;
const MAX_DRAW_MS: f64 = 16.0;

/// Arguments of `cargo xtask bench dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Use this sentry binary instead of building target/release/sentry.
    #[arg(long, value_name = "PATH")]
    sentry: Option<PathBuf>,
    /// Do not build the UI and sentry first.
    #[arg(long)]
    no_build: bool,
}

/// Builds what is needed, measures, prints the figures against their targets.
pub fn run(root: &Path, args: DashboardArgs) -> Result<()> {
    if !args.no_build {
        crate::dashboard::build(root)?;
    }
    let sentry = super::sentry_binary(root, args.sentry, !args.no_build)?;
    let out = root.join("target/dashboard-bench.json");
    let _ = std::fs::remove_file(&out);
    crate::dashboard::install(root)?;
    crate::run(
        std::process::Command::new("npm")
            .current_dir(root.join("dashboard"))
            .args(["run", "test:e2e"])
            .env("SENTRY_UI_BENCH", "1")
            .env("SENTRY_UI_BENCH_OUT", &out)
            .env("SENTRY_BIN", &sentry)
            .env("SENTRY_E2E_REQUIRED", "1")
            .stdin(std::process::Stdio::null()),
    )
    .context("the dashboard measurements failed")?;
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("the measurements left no {}", out.display()))?;
    let f: Value = serde_json::from_str(&text).context("the figures are not JSON")?;
    let get = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);

    let checks = [
        (
            "built UI, gzipped",
            format!(
                "{:.1} KiB ({:.1} KiB raw)",
                get("ui_gzip_bytes") / 1024.0,
                get("ui_bytes") / 1024.0
            ),
            "< 300 KiB".to_string(),
            get("ui_gzip_bytes") < MAX_GZIP_BYTES,
        ),
        (
            "first contentful paint, loopback, cold cache",
            format!(
                "median {:.0} ms, max {:.0} ms (runs table shown: median {:.0} ms, max {:.0} ms)",
                get("fcp_ms_median"),
                get("fcp_ms_max"),
                get("runs_table_ms_median"),
                get("runs_table_ms_max")
            ),
            "< 1000 ms".to_string(),
            get("fcp_ms_median") < MAX_FCP_MS,
        ),
        (
            "10,000-sample run: charts shown",
            format!("{:.0} ms after navigating to it", get("run_10k_shown_ms")),
            "(figure)".to_string(),
            true,
        ),
        (
            "10,000-sample run, live + cursor: chart redraw",
            format!(
                "{} redraws: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
                get("chart_draws"),
                get("chart_draw_ms_p50"),
                get("chart_draw_ms_p95"),
                get("chart_draw_ms_max")
            ),
            format!("max < {MAX_DRAW_MS} ms"),
            get("chart_draw_ms_max") < MAX_DRAW_MS,
        ),
        (
            "10,000-sample run, live + cursor: frame intervals",
            format!(
                "{} frames: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms, {}% longer than 1.5 \
                 frames; {} main-thread tasks over 50 ms",
                get("frames"),
                get("frame_interval_ms_p50"),
                get("frame_interval_ms_p95"),
                get("frame_interval_ms_max"),
                get("frames_over_16_7ms_pct"),
                get("long_tasks")
            ),
            format!("p95 <= {FRAME_MS} ms + 1, no long task"),
            get("frame_interval_ms_p95") <= FRAME_MS + 1.0 && get("long_tasks") == 0.0,
        ),
    ];
    println!();
    println!("Dashboard speed ({}):", sentry.display());
    let mut failed = 0;
    for (what, measured, target, ok) in &checks {
        println!(
            "  {:<5} {what}: {measured} [target {target}]",
            if *ok { "PASS" } else { "FAIL" }
        );
        if !ok {
            failed += 1;
        }
    }
    println!("  (figures in {})", out.display());
    if failed > 0 {
        bail!("{failed} dashboard target(s) missed");
    }
    Ok(())
}
