//! `cargo xtask test`: the whole suite that CI runs: toolchain set-up, formatting, lints and
//! every test, with the eBPF probe required (a build without it fails instead of quietly
//! testing less).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::{setup, workspace_root};
use crate::{cmd_output, is_root, run};

/// Runs set-up, the UI build, `cargo fmt --check`, clippy with warnings denied (also for
/// macOS), the workspace tests, the API fuzz, and the UI's component and browser tests.
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
    // Every sentry build below embeds the UI: build it first (this also type-checks it
    // against the types generated from dashboard/openapi.json).
    eprintln!("test: == dashboard build ==");
    crate::dashboard::build(&root)?;
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
    // There is no Mac in CI: the macOS backend must at least type-check, lint-clean.
    ensure_target(&root, MACOS_TARGET)?;
    step(
        "macOS type-check and lints",
        cargo(&root).args([
            "clippy",
            "-p",
            "sentry",
            "--all-targets",
            "--target",
            MACOS_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The UI was built above, so the binary under test must embed it.
    step(
        "tests",
        cargo(&root)
            .env("SENTRY_EXPECT_UI", "1")
            .args(["test", "--workspace"]),
    )?;
    eprintln!("test: == API fuzz (Schemathesis) ==");
    crate::apifuzz::api_fuzz(&root)?;
    eprintln!("test: == dashboard component tests (Vitest) ==");
    crate::dashboard::unit_tests(&root)?;
    eprintln!("test: == dashboard end-to-end tests (headless Chromium) ==");
    let sentry = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("debug/sentry");
    crate::dashboard::e2e_tests(&root, &sentry)?;
    eprintln!("test: all steps passed");
    Ok(())
}

/// The macOS target the PTY backend is checked for.
const MACOS_TARGET: &str = "aarch64-apple-darwin";

/// Adds a rustup target to the workspace's toolchain unless it is installed.
fn ensure_target(root: &std::path::Path, target: &str) -> Result<()> {
    let installed = cmd_output(Command::new("rustup").current_dir(root).args([
        "target",
        "list",
        "--installed",
    ]))
    .context("rustup is needed to add the macOS target that sentry is type-checked for")?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    eprintln!("test: adding the {target} target (for the macOS type-check)");
    run(Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", target]))
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
