//! The API fuzz step of `cargo xtask test`: Schemathesis (PyPI), a property-based API tester,
//! reads the real `/openapi.json` of a real `sentry dashboard` over a real store (with a run
//! recorded by a real `sentry run`) and sends it generated valid and invalid requests. No 5xx
//! is allowed, and every response must match the document's schema for it.
//!
//! Schemathesis is installed, pinned, into a virtual environment under `target/tools/` the
//! first time (about 20 s); `/stream` is left out because an event stream never ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::run;
use crate::served::{record_runaway, Dashboard};

/// The Schemathesis release the suite is tested with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const KEY: &str = "fuzz-key-8f2c1e0b7a6d5c4b3a29180706f5e4d3";

/// Runs Schemathesis against a live `sentry dashboard` built from `root`.
pub fn api_fuzz(root: &Path) -> Result<()> {
    let schemathesis = ensure_schemathesis(root)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let sentry = target.join("debug").join("sentry");
    if !sentry.is_file() {
        bail!("{} is missing: the tests step builds it", sentry.display());
    }
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let db = dir.path().join("sentry.db");
    record_runaway(&sentry, &db)?;
    let server = Dashboard::start(&sentry, &db, KEY)?;
    let port = server.port;
    let report = target.join("schemathesis-report");
    let result = run(Command::new(&schemathesis)
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
        ])
        .args(["--exclude-path", "/stream"])
        .args(["--max-examples", "40", "--seed", "5"])
        .args(["--workers", "1", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .stdin(Stdio::null()));
    drop(server);
    result.with_context(|| {
        format!(
            "Schemathesis found API failures (reports in {})",
            report.display()
        )
    })
}

/// The `schemathesis` executable, installed into `target/tools/` when missing.
fn ensure_schemathesis(root: &Path) -> Result<PathBuf> {
    let venv = root
        .join("target")
        .join("tools")
        .join(SCHEMATHESIS.replace("==", "-"));
    let bin = venv.join("bin").join("schemathesis");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("test: installing {SCHEMATHESIS} into {}", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
        "python3 -m venv failed: install python3 with its venv module (Debian: python3-venv)",
    )?;
    run(Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ])
        .stdin(Stdio::null()))
    .context("pip could not install Schemathesis from PyPI")?;
    if !bin.is_file() {
        bail!("{} was not installed", bin.display());
    }
    Ok(bin)
}
