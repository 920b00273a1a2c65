//! `cargo xtask test`: the whole suite that CI runs: toolchain set-up, formatting, lints and
//! every test, with the eBPF probe required (a build without it fails instead of quietly
//! testing less).

use std::process::Command;

use anyhow::{bail, Result};

use crate::setup::{setup, workspace_root};
use crate::{is_root, run};

/// Runs set-up, `cargo fmt --check`, clippy with warnings denied, and the workspace tests.
pub fn test() -> Result<()> {
    setup()?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !is_root() {
        if ci {
            bail!("CI=true but not running as root: the kernel tests cannot load the eBPF probe");
        }
        eprintln!(
            "test: not root: the kernel tests will report themselves skipped; \
             run `sudo -E \"$(command -v cargo)\" xtask test` to run them"
        );
    }
    let root = workspace_root();
    step(
        "format",
        cargo(&root).args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "lints",
        cargo(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("tests", cargo(&root).args(["test", "--workspace"]))?;
    eprintln!("test: all steps passed");
    Ok(())
}

fn cargo(root: &std::path::Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).env("SENTRY_REQUIRE_EBPF", "1");
    cmd
}

fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("test: == {name} ==");
    run(cmd)
}
