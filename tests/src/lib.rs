//! Harness for the end-to-end tests in `tests/tests/`: locating the built `sentry` binary,
//! running it in a temporary directory, and reading back its report and events file.
//!
//! The binary is `$SENTRY_BIN` when set, otherwise `sentry` in the cargo target directory
//! of the profile these tests were built with; the harness builds it with `cargo build -p
//! sentry` first so a test never runs a stale binary.

pub mod http;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

/// The `sentry` binary under test.
pub fn sentry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = env::var_os("SENTRY_BIN") {
            return PathBuf::from(bin);
        }
        // current_exe is <target>/<profile>/deps/<test>-<hash>.
        let exe = env::current_exe().expect("the test binary knows its own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in <target>/<profile>/deps")
            .to_path_buf();
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new(cargo);
        build
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", "sentry", "--bin", "sentry"]);
        if release {
            build.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        let status = build
            .status()
            .expect("cargo can be started to build sentry");
        assert!(status.success(), "building sentry failed: {status}");
        let bin = profile_dir.join("sentry");
        assert!(
            bin.exists(),
            "expected the sentry binary at {}",
            bin.display()
        );
        bin
    })
    .clone()
}

/// Checks that kernel mode can run here (root, probe built in, kernel features). Under
/// `CI=true` a missing capability is a failure; elsewhere the caller skips with the reason.
pub fn kernel_mode_unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            let out = Command::new(sentry_bin())
                .args(["run", "--mode", "kernel", "--", "true"])
                .stdin(Stdio::null())
                .output()
                .expect("sentry can be started");
            if out.status.code() == Some(0) {
                None
            } else {
                Some(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        })
        .clone()
}

/// Skips the calling test (returns early) when kernel mode is unavailable, or fails it under
/// `CI=true`, always printing the reason.
#[macro_export]
macro_rules! require_kernel_mode {
    () => {
        if let Some(reason) = $crate::kernel_mode_unavailable() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("kernel mode cannot run here (CI=true, so this fails instead of skipping): {reason}");
            }
            eprintln!("SKIPPED: kernel mode cannot run here: {reason}");
            return;
        }
    };
}

/// What one `sentry run` produced.
#[derive(Debug)]
pub struct RunResult {
    /// sentry's exit status.
    pub status: ExitStatus,
    /// sentry's stdout (the child's, since it inherits it).
    pub stdout: String,
    /// sentry's stderr (its own lines and the child's).
    pub stderr: String,
    /// The parsed `--report` file.
    pub report: Value,
    /// The parsed `--events` file, one value per captured chunk.
    pub events: Vec<Value>,
    /// Keeps the directory holding the report and events alive.
    pub dir: tempfile::TempDir,
}

impl RunResult {
    /// A numeric report field (fails the test with the report when missing).
    pub fn field(&self, name: &str) -> u64 {
        self.report[name].as_u64().unwrap_or_else(|| {
            panic!(
                "report field {name} missing or not a number: {}",
                self.report
            )
        })
    }

    /// The cgroup directory sentry announced on stderr.
    pub fn cgroup(&self) -> PathBuf {
        cgroup_from_stderr(&self.stderr).unwrap_or_else(|| {
            panic!(
                "sentry did not announce its cgroup; stderr:\n{}",
                self.stderr
            )
        })
    }

    /// Concatenated payload of every captured chunk on `fd`, in capture order.
    pub fn output_on(&self, fd: u64) -> String {
        self.events
            .iter()
            .filter(|e| e["fd"].as_u64() == Some(fd))
            .map(event_text)
            .collect()
    }
}

/// The payload of one events-file line as text.
pub fn event_text(event: &Value) -> String {
    let data = event["data"].as_str().unwrap_or_default();
    match event["encoding"].as_str() {
        Some("base64") => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => data.to_string(),
    }
}

/// Parses "cgroup <path>" out of sentry's start line.
pub fn cgroup_from_stderr(stderr: &str) -> Option<PathBuf> {
    let line = stderr.lines().find(|l| l.starts_with("sentry: mode "))?;
    let rest = &line[line.find("cgroup ")? + "cgroup ".len()..];
    let end = rest.find(')')?;
    Some(PathBuf::from(&rest[..end]))
}

/// Runs `sentry run <extra> --report R --events E -- <command>` to its end.
pub fn run_sentry(extra: &[&str], command: &[&str]) -> RunResult {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut cmd = sentry_command(extra, command, dir.path());
    let out: Output = cmd.output().expect("sentry can be started");
    finish(out.status, out.stdout, out.stderr, dir)
}

/// The `sentry run` command line used by [`run_sentry`], for tests that drive it themselves.
pub fn sentry_command(extra: &[&str], command: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(sentry_bin());
    cmd.current_dir(dir)
        .arg("run")
        .args(extra)
        .arg("--report")
        .arg(dir.join("report.json"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--")
        .args(command)
        // Each run records into a store of its own, never the user's.
        .env("SENTRY_DB", dir.join("sentry.db"))
        .stdin(Stdio::null());
    cmd
}

/// Reads back the report and events of a finished run in `dir`.
pub fn finish(
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dir: tempfile::TempDir,
) -> RunResult {
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let report = std::fs::read_to_string(dir.path().join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let events = std::fs::read_to_string(dir.path().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad events line {line:?}: {e}"))
        })
        .collect();
    RunResult {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        report,
        events,
        dir,
    }
}

/// Whether a live (not zombie) process with this pid exists. A killed orphan can linger as a
/// zombie until init reaps it; it no longer runs, so it does not count.
pub fn process_exists(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The uid fallback-mode runs use when the tests run as root: `nobody`, so that the fallback
/// is exercised without privileges, as a user without sudo would run it.
pub const NOBODY: u32 = 65534;

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A capture mode under test: `kernel` (as root) or `fallback` (as `nobody` when the tests run
/// as root, otherwise as the current user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMode {
    /// eBPF capture in a cgroup; needs root.
    Kernel,
    /// PTY capture and /proc sampling; runs unprivileged.
    Fallback,
}

impl TestMode {
    /// The `--mode` value.
    pub fn flag(self) -> &'static str {
        match self {
            TestMode::Kernel => "kernel",
            TestMode::Fallback => "fallback",
        }
    }
}

/// A temporary directory the run's user can write to.
pub fn run_dir(mode: TestMode) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    if mode == TestMode::Fallback && is_root() {
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY))
            .expect("chown the run directory to nobody");
    }
    dir
}

/// `sentry run --mode <mode> <extra> --report R --events E -- <command>` in `dir`, as the
/// mode's user. The command is not started yet.
pub fn mode_command(mode: TestMode, extra: &[&str], command: &[&str], dir: &Path) -> Command {
    let mut cmd = sentry_command(&[&["--mode", mode.flag()], extra].concat(), command, dir);
    cmd.env("HOME", dir);
    if mode == TestMode::Fallback && is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// Runs `sentry run` in `mode` to its end (see [`mode_command`]).
pub fn run_mode(mode: TestMode, extra: &[&str], command: &[&str]) -> RunResult {
    let dir = run_dir(mode);
    let out = mode_command(mode, extra, command, dir.path())
        .output()
        .expect("sentry can be started");
    finish(out.status, out.stdout, out.stderr, dir)
}

/// Skips (or, under `CI=true`, fails) a test whose mode cannot run here.
#[macro_export]
macro_rules! require_mode {
    ($mode:expr) => {
        if $mode == $crate::TestMode::Kernel {
            $crate::require_kernel_mode!();
        }
    };
}
