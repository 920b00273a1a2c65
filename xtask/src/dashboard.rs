//! `cargo xtask dashboard`: builds the web UI (`dashboard/`) into `dashboard/dist`, which the
//! `sentry` build embeds. Installs the pinned npm packages (`npm ci`) only when
//! `node_modules` is missing or was installed from another `package-lock.json`. Also runs the
//! UI's component tests and its end-to-end tests in headless Chromium for `cargo xtask test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::run;

/// The oldest Node.js the UI's toolchain (Vite 7) runs on.
const NODE_MIN: (u32, u32) = (20, 19);

/// Where `npm ci` leaves a copy of the lock it installed from.
const STAMP: &str = "node_modules/.sentry-installed-lock.json";

fn dir(root: &Path) -> PathBuf {
    root.join("dashboard")
}

fn npm(root: &Path) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir(root))
        .stdin(Stdio::null())
        // Never let a package download a browser of its own: the tests use Debian's.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("PUPPETEER_SKIP_DOWNLOAD", "1");
    cmd
}

/// Checks that Node.js and npm are there and new enough, with what to do when not.
fn check_node() -> Result<()> {
    let out = Command::new("node").arg("--version").output().context(
        "the dashboard is built with Node.js (20.19 or newer) and npm, and `node` is not on \
         PATH; install them (https://nodejs.org, or your distribution's nodejs and npm \
         packages if they are new enough)",
    )?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < NODE_MIN {
        bail!(
            "the dashboard's build tools need Node.js {}.{} or newer; `node --version` says {version}",
            NODE_MIN.0,
            NODE_MIN.1
        );
    }
    Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .context("`npm` is not on PATH (it comes with Node.js)")?;
    Ok(())
}

/// `npm ci` when `node_modules` is missing or stale.
pub fn install(root: &Path) -> Result<()> {
    check_node()?;
    let dash = dir(root);
    let lock = std::fs::read(dash.join("package-lock.json"))
        .context("dashboard/package-lock.json is missing")?;
    let stamp = dash.join(STAMP);
    if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
        return Ok(());
    }
    eprintln!("dashboard: installing the pinned npm packages (npm ci)");
    run(npm(root).args(["ci", "--no-audit", "--no-fund"]))
        .context("npm ci failed (the npm registry must be reachable the first time)")?;
    std::fs::write(&stamp, &lock).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// What `dist` is built from.
const INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "openapi.json",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
];

/// The newest modification time under `path` (a file, or a directory walked whole), leaving
/// out the generated API types (rewritten by every `npm test`; `openapi.json` stands for them).
fn newest(path: &Path) -> Option<SystemTime> {
    if path.ends_with("src/api/schema.d.ts") {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// True when `dist` was built after every input last changed (then rebuilding it would only
/// touch its files and make cargo rebuild sentry for nothing).
fn up_to_date(root: &Path) -> bool {
    let dash = dir(root);
    let Some(built) = std::fs::metadata(dash.join("dist/index.html"))
        .and_then(|m| m.modified())
        .ok()
    else {
        return false;
    };
    INPUTS
        .iter()
        .filter_map(|i| newest(&dash.join(i)))
        .all(|t| t <= built)
}

/// Installs when needed, then type-checks (against types generated from
/// `dashboard/openapi.json`) and builds `dashboard/dist`, unless it is newer than its inputs.
pub fn build(root: &Path) -> Result<()> {
    install(root)?;
    if up_to_date(root) {
        eprintln!("dashboard: dashboard/dist is up to date");
        return Ok(());
    }
    eprintln!("dashboard: building dashboard/dist (npm run build)");
    run(npm(root).args(["run", "build"])).context(
        "the dashboard build failed; if a type error names an API type, the API changed: \
         fix the UI to match",
    )
}

/// The component tests (Vitest).
pub fn unit_tests(root: &Path) -> Result<()> {
    install(root)?;
    run(npm(root).args(["test"])).context("the dashboard's component tests failed")
}

/// The end-to-end tests: `sentry` at `sentry`, Chromium required (a missing Chromium fails
/// instead of skipping).
pub fn e2e_tests(root: &Path, sentry: &Path) -> Result<()> {
    install(root)?;
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        bail!(
            "the dashboard's end-to-end tests need Chromium at {} (Debian: apt-get install \
             chromium; or set CHROMIUM to its path)",
            chromium.display()
        );
    }
    run(npm(root)
        .args(["run", "test:e2e"])
        .env("SENTRY_BIN", sentry)
        .env("CHROMIUM", &chromium)
        .env("SENTRY_E2E_REQUIRED", "1"))
    .context(
        "the dashboard's end-to-end tests failed (screenshots in target/dashboard-screenshots)",
    )
}
