//! `cargo xtask demo`: builds sentry (with its eBPF probe) in release mode and shows it at work
//! on this machine: `sentry demo` (a retry loop stopped, a CPU-heavy job with progress left
//! alone, a stuck import recovered by a restart; kernel mode, through sudo when not root), then
//! `sentry analyze` over a runaway and a healthy log from the corpus.

use std::process::Command;

use anyhow::{Context, Result};

use crate::setup::{setup, workspace_root};
use crate::{is_root, run};

/// Builds the release binary and runs the demonstration.
pub fn demo() -> Result<()> {
    setup()?;
    let root = workspace_root();
    // The binary embeds the UI, so it is built first.
    crate::dashboard::build(&root)?;
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .env("SENTRY_REQUIRE_EBPF", "1")
            .args(["build", "--release", "-p", "sentry"]),
    )?;
    let sentry = root.join("target/release/sentry");
    let mut cmd = if is_root() {
        Command::new(&sentry)
    } else {
        eprintln!("demo: kernel mode needs root; running sentry through sudo");
        let mut c = Command::new("sudo");
        c.arg(&sentry);
        c
    };
    let status = cmd.arg("demo").status().context("starting sentry demo")?;
    if !status.success() {
        anyhow::bail!("sentry demo did not go as expected ({status}); see its output above");
    }
    eprintln!("demo: the same detectors over recorded logs (`sentry analyze`):");
    // analyze exits 1 when a file is a runaway, which is the point here.
    let status = Command::new(&sentry)
        .arg("analyze")
        .arg(root.join("fixtures/corpus/runaway/agent_edit_ping_pong.log"))
        .arg(root.join("fixtures/corpus/healthy/training_loop_steps.log"))
        .status()
        .context("starting sentry analyze")?;
    if status.code() == Some(2) {
        anyhow::bail!("sentry analyze failed");
    }
    Ok(())
}
