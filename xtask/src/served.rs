//! A real store with a real runaway recorded in it, and a real `sentry dashboard` serving it on
//! an ephemeral loopback port: what the API fuzz step and the API benchmark run against.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A command that repeats one failing line until sentry stops it (within ~2 s, status 124).
const RUNAWAY: &str =
    "while true; do echo 'error: upstream refused the connection, retrying'; sleep 0.01; done";

/// Records one real runaway (`sentry run` of an output loop, stopped with 124) into `db`, so
/// that runs, incidents, samples and the timeline have rows.
pub fn record_runaway(sentry: &Path, db: &Path) -> Result<()> {
    let out = Command::new(sentry)
        .args(["run", "--quiet", "--db"])
        .arg(db)
        .args(["--", "sh", "-c", RUNAWAY])
        .stdin(Stdio::null())
        .output()
        .context("running sentry run to fill the store")?;
    if out.status.code() != Some(124) {
        bail!(
            "the run that fills the store was not stopped as a runaway ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running `sentry dashboard`, killed when dropped.
pub struct Dashboard {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Dashboard {
    /// Starts `sentry dashboard --port 0` on `db` with the API key `key`, and waits until it
    /// says where it listens.
    pub fn start(sentry: &Path, db: &Path, key: &str) -> Result<Dashboard> {
        let mut child = Command::new(sentry)
            .args(["dashboard", "--port", "0", "--db"])
            .arg(db)
            .env("SENTRY_API_KEY", key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting sentry dashboard")?;
        let stdout = child.stdout.take().context("dashboard stdout")?;
        // Owned before the wait, so that it is killed on every way out.
        let mut server = Dashboard { child, port: 0 };
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.port == 0 && Instant::now() < deadline {
            let Some(line) = lines.next() else { break };
            let line = line?;
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                server.port = rest
                    .trim()
                    .trim_end_matches('/')
                    .parse()
                    .with_context(|| format!("no port in {line:?}"))?;
            }
        }
        if server.port == 0 {
            bail!("sentry dashboard did not say where it listens");
        }
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
