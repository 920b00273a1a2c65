//! `cargo xtask bench detect-live`: how fast the real `sentry run` (release) notices and stops
//! live runaways, and what it costs while it watches a quiet command. Three kinds of scenario,
//! each repeated `--reps` times, interleaved round-robin:
//!
//! - output loops (`fixtures/programs/output_loop.c`) at 20 to 10,000 lines/s, periods 1 and 3:
//!   time from the loop's start to sentry's first incident (any action, alert included), and to
//!   sentry's exit;
//! - a silent spin (`fixtures/programs/silent_spin.c`) under `--max-cpu 50 --window W`: time
//!   from the spin's start to sentry's exit;
//! - a quiet command (`sleep`, and a shell printing one line every 2 s): sentry's own CPU (of
//!   one core) and resident memory over a fixed interval.
//!
//! Figures are judged against the issue's targets; a target passes only when every repetition
//! meets it. `--mode fallback` runs sentry as the unprivileged user nobody. Needs root.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{chown, Gid, Pid, Uid};
use serde_json::Value;

use super::stats::{spread, Spread};

/// An output loop must give rise to an incident within this many seconds of its start.
const MAX_DETECT_S: f64 = 2.0;
/// A silent spin must be stopped within its CPU window plus this many seconds.
const SPIN_SLACK_S: f64 = 1.0;
/// sentry's own CPU while it supervises a quiet command, in percent of one core.
const MAX_OVERHEAD_CPU_PCT: f64 = 2.0;
/// sentry's own resident memory while it supervises a quiet command.
const MAX_OVERHEAD_RSS_MIB: f64 = 30.0;
/// Output-loop rates (lines/s) and periods (lines per cycle) from the issue.
const LOOP_RATES: [u32; 4] = [20, 100, 1_000, 10_000];
const LOOP_PERIODS: [u32; 2] = [1, 3];
/// CPU windows (seconds) of the spin scenarios, and the `--max-cpu` they run under.
const SPIN_WINDOWS: [u32; 2] = [3, 10];
const SPIN_MAX_CPU: &str = "50";
/// The spin gives up by itself after this long, as the issue's program does.
const SPIN_SECONDS: u64 = 120;
/// An output loop sentry has not stopped after this long is stopped by the harness.
const LOOP_GIVE_UP: Duration = Duration::from_secs(30);
/// The unprivileged user (and group) fallback mode runs as.
const NOBODY: u32 = 65534;

/// Arguments of `cargo xtask bench detect-live`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Round-robin repetitions of every scenario.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Capture backend to measure: kernel (as root) or fallback (as the user nobody).
    #[arg(long, value_enum, default_value_t = Mode::Kernel)]
    mode: Mode,
    /// Warm-up before sentry's overhead is sampled, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Interval over which sentry's overhead is sampled, in seconds.
    #[arg(long, default_value_t = 15.0)]
    interval: f64,
    /// Use this sentry binary instead of building target/release/sentry.
    #[arg(long)]
    sentry: Option<PathBuf>,
    /// Do not rebuild sentry.
    #[arg(long)]
    no_build: bool,
    /// Extra argument passed to every `sentry run` (repeatable).
    #[arg(long = "sentry-arg", allow_hyphen_values = true)]
    sentry_args: Vec<String>,
}

/// The capture backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Kernel,
    Fallback,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Fallback => "fallback",
        }
    }
}

/// The quiet commands sentry's overhead is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// `sleep`: no output, no CPU.
    Sleep,
    /// A shell printing one line every 2 s (a `sleep` child each time).
    Ticker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Loop { rate: u32, period: u32 },
    Spin { window: u32 },
    Overhead(Quiet),
}

impl Scenario {
    fn all() -> Vec<Scenario> {
        let mut v = Vec::new();
        for rate in LOOP_RATES {
            for period in LOOP_PERIODS {
                v.push(Scenario::Loop { rate, period });
            }
        }
        v.extend(SPIN_WINDOWS.map(|window| Scenario::Spin { window }));
        v.push(Scenario::Overhead(Quiet::Sleep));
        v.push(Scenario::Overhead(Quiet::Ticker));
        v
    }

    fn name(self) -> String {
        match self {
            Scenario::Loop { rate, period } => {
                format!("output loop {} lines/s, period {period}", thousands(rate))
            }
            Scenario::Spin { window } => {
                format!("silent spin, --max-cpu {SPIN_MAX_CPU} --window {window}")
            }
            Scenario::Overhead(Quiet::Sleep) => "quiet: sleep".into(),
            Scenario::Overhead(Quiet::Ticker) => "quiet: one line every 2 s".into(),
        }
    }
}

/// `12345` as `12,345`.
fn thousands(n: u32) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Figures gathered for one scenario over every repetition.
#[derive(Default)]
struct Cell {
    /// Output loops: seconds from the loop's start to sentry's first incident.
    detect_s: Vec<f64>,
    /// Loops and spins: seconds from the loop's or spin's start to sentry's exit (status 124).
    stop_s: Vec<f64>,
    /// Seconds from the harness starting sentry to the child's main(): sentry's start-up.
    spawn_s: Vec<f64>,
    /// Output loops: seconds from the loop's start to sentry's last (strongest) incident.
    act_s: Vec<f64>,
    /// Repetitions that missed their target, with sentry's own account of them.
    late: Vec<String>,
    /// Repetitions where no incident was recorded.
    undetected: usize,
    /// Repetitions where sentry did not stop the command (why, one note per repetition).
    not_stopped: Vec<String>,
    /// The first incident's action and kind, and the last incident's action, per repetition.
    actions: Vec<String>,
    /// Overhead: sentry's CPU in percent of one core, VmHWM and VmRSS in MiB.
    cpu_pct: Vec<f64>,
    hwm_mib: Vec<f64>,
    rss_mib: Vec<f64>,
    /// Why the scenario could not be measured.
    error: Option<String>,
}

/// What the child wrote to its times file: CLOCK_MONOTONIC ns of main() and of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChildTimes {
    start_ns: u64,
    loop_ns: u64,
}

/// Parses `start_ns=S loop_ns=L`.
fn parse_times(text: &str) -> Result<ChildTimes> {
    let field = |k: &str| -> Result<u64> {
        text.split_whitespace()
            .find_map(|t| t.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in the child's times file: {text:?}"))
    };
    let t = ChildTimes {
        start_ns: field("start_ns=")?,
        loop_ns: field("loop_ns=")?,
    };
    if t.loop_ns < t.start_ns {
        bail!("the child's loop started before its main(): {text:?}");
    }
    Ok(t)
}

/// utime + stime, in clock ticks, from the text of `/proc/PID/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no `)` closing the command name in /proc/PID/stat")?;
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut f = rest.split_whitespace().skip(11);
    let mut next = |what: &str| -> Result<u64> {
        f.next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {what} in /proc/PID/stat: {stat:?}"))
    };
    Ok(next("utime")? + next("stime")?)
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in KiB.
fn parse_status_kib(status: &str, key: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/PID/status"))
}

/// One incident of a `sentry run --report` file.
#[derive(Debug, Clone, PartialEq)]
struct Incident {
    detected_after_s: f64,
    action: String,
    kind: String,
    summary: String,
}

/// The incidents of a `sentry run --report` file, in the order sentry recorded them.
fn parse_incidents(report: &str) -> Result<Vec<Incident>> {
    let v: Value = serde_json::from_str(report).context("sentry's report is not JSON")?;
    let list = v["incidents"]
        .as_array()
        .context("sentry's report has no incidents array")?;
    list.iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("?").to_owned();
            Ok(Incident {
                detected_after_s: i["detected_after_s"]
                    .as_f64()
                    .with_context(|| format!("an incident has no detected_after_s: {i}"))?,
                action: s("action"),
                kind: s("kind"),
                summary: s("summary"),
            })
        })
        .collect()
}

/// "alert (output_loop) then kill": the first incident's action and kind, and the last one's
/// action when sentry escalated.
fn outcome(incidents: &[Incident]) -> String {
    match (incidents.first(), incidents.last()) {
        (Some(f), Some(l)) if incidents.len() > 1 => {
            format!("{} ({}) then {}", f.action, f.kind, l.action)
        }
        (Some(f), _) => format!("{} ({})", f.action, f.kind),
        _ => "no incident".into(),
    }
}

/// Seconds from the loop's start to an incident sentry timed `detected_after_s` after its own
/// start of the run. sentry starts that clock just before it spawns the command, so it runs
/// ahead of the child's main() by the spawn-and-exec time; leaving that out makes the figure
/// late by that much, never early (the harness measures a bare spawn to show how much).
fn time_to_detect(detected_after_s: f64, t: ChildTimes) -> f64 {
    detected_after_s - (t.loop_ns - t.start_ns) as f64 / 1e9
}

fn monotonic_ns() -> Result<u64> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).context("clock_gettime")?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

/// A `sentry run` being waited for on a thread, so that its exit is timed to the moment.
struct Running {
    pid: Pid,
    started_ns: u64,
    exit: mpsc::Receiver<(std::io::Result<ExitStatus>, u64)>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Waits for sentry to end; after `give_up` it is sent SIGTERM (which it forwards to the
    /// command), then SIGKILL 15 s later. Returns the status, when it ended (CLOCK_MONOTONIC
    /// ns), whether the harness had to stop it, and sentry's stderr.
    fn wait(self, give_up: Duration) -> Result<(ExitStatus, u64, bool, String)> {
        let mut stopped = false;
        let got = match self.exit.recv_timeout(give_up) {
            Ok(x) => x,
            Err(_) => {
                stopped = true;
                let _ = kill(self.pid, Signal::SIGTERM);
                match self.exit.recv_timeout(Duration::from_secs(15)) {
                    Ok(x) => x,
                    Err(_) => {
                        let _ = kill(self.pid, Signal::SIGKILL);
                        self.exit
                            .recv()
                            .context("the thread waiting for sentry is gone")?
                    }
                }
            }
        };
        let status = got.0.context("waiting for sentry")?;
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        Ok((status, got.1, stopped, stderr))
    }
}

struct Env {
    mode: Mode,
    sentry: PathBuf,
    sentry_args: Vec<String>,
    /// Scratch directory (the programs, times files and reports); owned by nobody in fallback.
    dir: PathBuf,
    output_loop: PathBuf,
    silent_spin: PathBuf,
    /// Run sentry as nobody (fallback mode as root).
    as_nobody: bool,
}

impl Env {
    /// Starts `sentry run --mode M [ARGS] --report REPORT -- CMD…` with its stdout on /dev/null
    /// (the command inherits it, as it would a CI log) and its stderr read on a thread.
    fn start(&self, extra: &[&str], report: &Path, cmd: &[&str]) -> Result<Running> {
        let mut c = Command::new(&self.sentry);
        c.args(["run", "--mode", self.mode.name()])
            .args(extra)
            .args(&self.sentry_args)
            .arg("--report")
            .arg(report)
            .arg("--")
            .args(cmd)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if self.as_nobody {
            // std drops supplementary groups (setgroups(0)) when root sets a uid.
            c.uid(NOBODY).gid(NOBODY);
        }
        let started_ns = monotonic_ns()?;
        let mut child: Child = c
            .spawn()
            .with_context(|| format!("cannot start {}", self.sentry.display()))?;
        let pid = Pid::from_raw(child.id() as i32);
        let mut err = child.stderr.take().context("sentry's stderr")?;
        let (etx, erx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = etx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let st = child.wait();
            let at = monotonic_ns().unwrap_or(0);
            let _ = tx.send((st, at));
        });
        Ok(Running {
            pid,
            started_ns,
            exit: rx,
            stderr: erx,
        })
    }

    /// One run of an output loop or a spin: fills detect_s/stop_s/spawn_s of `cell`.
    fn runaway_once(&self, sc: Scenario, cell: &mut Cell) -> Result<()> {
        let times = self.dir.join("times.txt");
        let report = self.dir.join("report.json");
        let _ = fs::remove_file(&times);
        let _ = fs::remove_file(&report);
        let times_s = times.display().to_string();
        let (extra, cmd, give_up): (Vec<String>, Vec<String>, Duration) = match sc {
            Scenario::Loop { rate, period } => (
                vec![],
                vec![
                    self.output_loop.display().to_string(),
                    rate.to_string(),
                    period.to_string(),
                    times_s,
                ],
                LOOP_GIVE_UP,
            ),
            Scenario::Spin { window } => (
                vec![
                    "--max-cpu".into(),
                    SPIN_MAX_CPU.into(),
                    "--window".into(),
                    window.to_string(),
                ],
                vec![
                    self.silent_spin.display().to_string(),
                    SPIN_SECONDS.to_string(),
                    times_s,
                ],
                Duration::from_secs(SPIN_SECONDS + 30),
            ),
            Scenario::Overhead(_) => bail!("not a runaway scenario"),
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let run = self.start(&extra, &report, &cmd)?;
        let started_ns = run.started_ns;
        let (status, ended_ns, harness_stopped, stderr) = run.wait(give_up)?;
        if status.code() == Some(125) {
            bail!("sentry failed (125): {}", stderr.trim());
        }
        let t = parse_times(&fs::read_to_string(&times).with_context(|| {
            format!(
                "the child wrote no {}; sentry said: {}",
                times.display(),
                stderr.trim()
            )
        })?)?;
        cell.spawn_s
            .push(t.start_ns.saturating_sub(started_ns) as f64 / 1e9);
        let report_text = fs::read_to_string(&report).with_context(|| {
            format!(
                "sentry wrote no report ({status}); it said: {}",
                stderr.trim()
            )
        })?;
        let incidents = parse_incidents(&report_text)?;
        let rep = cell.actions.len() + 1;
        if let Scenario::Loop { .. } = sc {
            match (incidents.first(), incidents.last()) {
                (Some(first), Some(last)) => {
                    let d = time_to_detect(first.detected_after_s, t);
                    cell.detect_s.push(d);
                    cell.act_s.push(time_to_detect(last.detected_after_s, t));
                    if d > MAX_DETECT_S {
                        cell.late.push(format!(
                            "repetition {rep}: first incident {d:.2} s after the loop started: {}",
                            first.summary
                        ));
                    }
                }
                _ => cell.undetected += 1,
            }
        }
        cell.actions.push(outcome(&incidents));
        if let Scenario::Spin { window } = sc {
            let stop = ended_ns.saturating_sub(t.loop_ns) as f64 / 1e9;
            if stop > f64::from(window) + SPIN_SLACK_S {
                let what = incidents
                    .last()
                    .map(|i| format!("{} at {:.2} s: {}", i.action, i.detected_after_s, i.summary))
                    .unwrap_or_else(|| "no incident".into());
                cell.late.push(format!(
                    "repetition {rep}: sentry exited {stop:.2} s after the spin started; {what}"
                ));
            }
        }
        if status.code() == Some(124) && !harness_stopped {
            cell.stop_s
                .push(ended_ns.saturating_sub(t.loop_ns) as f64 / 1e9);
        } else if harness_stopped {
            cell.not_stopped
                .push(format!("still running after {} s", give_up.as_secs()));
        } else {
            cell.not_stopped.push(format!(
                "sentry exited with {} after {:.1} s",
                describe(status),
                ended_ns.saturating_sub(t.loop_ns) as f64 / 1e9
            ));
        }
        Ok(())
    }

    /// Seconds from spawning a program to its main(), without sentry: about how far sentry's
    /// run clock (started just before its spawn) runs ahead of the child's.
    fn bare_spawn(&self) -> Result<f64> {
        let times = self.dir.join("spawn-times.txt");
        let _ = fs::remove_file(&times);
        let mut c = Command::new(&self.silent_spin);
        c.arg("0").arg(&times);
        if self.as_nobody {
            c.uid(NOBODY).gid(NOBODY);
        }
        let t0 = monotonic_ns()?;
        let st = c.status().context("cannot run silent_spin")?;
        if !st.success() {
            bail!("silent_spin 0 exited with {st}");
        }
        let t = parse_times(&fs::read_to_string(&times).context("silent_spin wrote no times")?)?;
        Ok(t.start_ns.saturating_sub(t0) as f64 / 1e9)
    }

    /// sentry's own CPU and memory over `interval` after `warmup`, supervising a quiet command.
    fn overhead_once(&self, q: Quiet, warmup: f64, interval: f64, cell: &mut Cell) -> Result<()> {
        let report = self.dir.join("report.json");
        let _ = fs::remove_file(&report);
        let life = (warmup + interval + 10.0).ceil() as u64;
        let script = format!(
            "i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo \"batch $i: waiting for new jobs (queue empty)\"; sleep 2; done",
            n = life / 2 + 1
        );
        let life_s = life.to_string();
        let cmd: Vec<&str> = match q {
            Quiet::Sleep => vec!["sleep", &life_s],
            Quiet::Ticker => vec!["sh", "-c", &script],
        };
        let run = self.start(&[], &report, &cmd)?;
        let pid = run.pid;
        let measured = (|| -> Result<(f64, f64, f64)> {
            let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .filter(|t| *t > 0)
                .unwrap_or(100) as f64;
            let stat = format!("/proc/{pid}/stat");
            let read_stat = || -> Result<(u64, u64)> {
                let text = fs::read_to_string(&stat)
                    .with_context(|| format!("sentry ended early: cannot read {stat}"))?;
                Ok((parse_stat_cpu_ticks(&text)?, monotonic_ns()?))
            };
            thread::sleep(Duration::from_secs_f64(warmup));
            let (c0, t0) = read_stat()?;
            thread::sleep(Duration::from_secs_f64(interval));
            let (c1, t1) = read_stat()?;
            let status = fs::read_to_string(format!("/proc/{pid}/status"))
                .context("sentry ended early: cannot read its /proc status")?;
            let cpu = (c1 - c0) as f64 / tick / ((t1 - t0) as f64 / 1e9) * 100.0;
            let hwm = parse_status_kib(&status, "VmHWM")? as f64 / 1024.0;
            let rss = parse_status_kib(&status, "VmRSS")? as f64 / 1024.0;
            Ok((cpu, hwm, rss))
        })();
        // Done measuring (or failed): end the run; sentry forwards the signal to the command.
        let _ = kill(pid, Signal::SIGTERM);
        let (status, _, _, stderr) = run.wait(Duration::from_secs(15))?;
        if status.code() == Some(125) {
            bail!("sentry failed (125): {}", stderr.trim());
        }
        let (cpu, hwm, rss) =
            measured.with_context(|| format!("sentry said: {}", stderr.trim()))?;
        cell.cpu_pct.push(cpu);
        cell.hwm_mib.push(hwm);
        cell.rss_mib.push(rss);
        let incidents = fs::read_to_string(&report)
            .ok()
            .and_then(|t| parse_incidents(&t).ok())
            .unwrap_or_default();
        cell.actions.push(outcome(&incidents));
        Ok(())
    }
}

fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{st}"),
    }
}

fn compile(root: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let src = root.join("fixtures/programs").join(format!("{name}.c"));
    let out = dir.join(name);
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("cannot run cc (install gcc)")?;
    if !st.success() {
        bail!("cc failed to compile {} ({st})", src.display());
    }
    Ok(out)
}

/// Checks that sentry can run a trivial command in the mode; the reason when it cannot.
fn mode_available(env: &Env) -> Option<String> {
    let report = env.dir.join("probe-report.json");
    let run = match env.start(&[], &report, &["true"]) {
        Ok(r) => r,
        Err(e) => return Some(format!("{e:#}")),
    };
    match run.wait(Duration::from_secs(30)) {
        Ok((st, _, _, _)) if st.success() => None,
        Ok((st, _, _, stderr)) => Some(format!(
            "`sentry run --mode {} -- true` exited with {}: {}",
            env.mode.name(),
            describe(st),
            stderr.trim().lines().last().unwrap_or("")
        )),
        Err(e) => Some(format!("{e:#}")),
    }
}

fn fmt_spread(s: Option<Spread>, unit: &str, digits: usize) -> String {
    match s {
        Some(s) => format!(
            "{:.d$}{unit} [{:.d$}–{:.d$}]",
            s.median,
            s.min,
            s.max,
            d = digits
        ),
        None => "-".into(),
    }
}

/// Whether every repetition meets `ok`: `None` (not measured) without any figure.
fn every(xs: &[f64], misses: usize, ok: impl Fn(f64) -> bool) -> Option<bool> {
    if xs.is_empty() && misses == 0 {
        return None;
    }
    Some(misses == 0 && xs.iter().all(|&x| ok(x)))
}

/// Entry point of `cargo xtask bench detect-live`.
pub fn run(root: &Path, a: LiveArgs) -> Result<()> {
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let is_root = nix::unistd::geteuid().is_root();
    if a.mode == Mode::Kernel && !is_root {
        eprintln!("note: not root: kernel mode needs root (sudo); expect NOT MEASURED");
    }
    let sentry = super::sentry_binary(root, a.sentry.clone(), !a.no_build)?;
    let sentry = fs::canonicalize(&sentry)
        .with_context(|| format!("cannot resolve {}", sentry.display()))?;
    let tmp = std::env::temp_dir().join(format!("sentry-bench-live-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let _cleanup = RemoveOnDrop(tmp.clone());
    let as_nobody = a.mode == Mode::Fallback && is_root;
    if as_nobody {
        chown(
            &tmp,
            Some(Uid::from_raw(NOBODY)),
            Some(Gid::from_raw(NOBODY)),
        )
        .with_context(|| format!("cannot give {} to nobody", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    }
    let env = Env {
        mode: a.mode,
        sentry,
        sentry_args: a.sentry_args.clone(),
        output_loop: compile(root, &tmp, "output_loop")?,
        silent_spin: compile(root, &tmp, "silent_spin")?,
        dir: tmp.clone(),
        as_nobody,
    };
    let user = if as_nobody {
        "run as nobody (uid 65534)"
    } else if is_root {
        "run as root"
    } else {
        "run as this user"
    };
    let unavailable = mode_available(&env);

    let scenarios = Scenario::all();
    let mut cells: Vec<(Scenario, Cell)> =
        scenarios.iter().map(|&s| (s, Cell::default())).collect();
    if let Some(why) = &unavailable {
        eprintln!("mode {} unavailable: {why}", a.mode.name());
        for (_, c) in cells.iter_mut() {
            c.error = Some(why.clone());
        }
    }
    let mut bare_spawn = Vec::new();
    for rep in 0..a.reps {
        if unavailable.is_some() {
            break;
        }
        eprintln!("round {}/{} …", rep + 1, a.reps);
        match env.bare_spawn() {
            Ok(s) => bare_spawn.push(s),
            Err(e) => eprintln!("  spawn time without sentry: not measured: {e:#}"),
        }
        for (sc, cell) in cells.iter_mut() {
            if cell.error.is_some() {
                continue;
            }
            let r = match *sc {
                Scenario::Overhead(q) => env.overhead_once(q, a.warmup, a.interval, cell),
                _ => env.runaway_once(*sc, cell),
            };
            if let Err(e) = r {
                eprintln!("  {}: not measured: {e:#}", sc.name());
                cell.error = Some(format!("{e:#}"));
            }
        }
    }

    println!(
        "live detection under `sentry run --mode {}`, {user}, {} round-robin rounds; median [min–max]",
        a.mode.name(),
        a.reps
    );
    match &unavailable {
        Some(why) => println!("\n  NOT MEASURED: {why}"),
        None => print_tables(&cells, &bare_spawn, a.interval),
    }

    let mut verdicts: Vec<(String, Option<bool>, String)> = Vec::new();
    for (sc, c) in &cells {
        let worst = |xs: &[f64]| spread(xs).map(|s| s.max);
        let measured = c.error.is_none();
        match *sc {
            Scenario::Loop { .. } => verdicts.push((
                format!(
                    "{}: first incident ≤ {MAX_DETECT_S} s after the loop starts",
                    sc.name()
                ),
                every(&c.detect_s, c.undetected, |x| x <= MAX_DETECT_S).filter(|_| measured),
                worst_note(worst(&c.detect_s), c.undetected, "undetected"),
            )),
            Scenario::Spin { window } => {
                let limit = f64::from(window) + SPIN_SLACK_S;
                verdicts.push((
                    format!(
                        "{}: stopped ≤ {limit:.0} s after the spin starts",
                        sc.name()
                    ),
                    every(&c.stop_s, c.not_stopped.len(), |x| x <= limit).filter(|_| measured),
                    worst_note(worst(&c.stop_s), c.not_stopped.len(), "not stopped"),
                ))
            }
            Scenario::Overhead(_) => {
                verdicts.push((
                    format!(
                        "{}: sentry CPU < {MAX_OVERHEAD_CPU_PCT}% of a core",
                        sc.name()
                    ),
                    every(&c.cpu_pct, 0, |x| x < MAX_OVERHEAD_CPU_PCT).filter(|_| measured),
                    worst(&c.cpu_pct)
                        .map(|w| format!("worst {w:.2}%"))
                        .unwrap_or_default(),
                ));
                verdicts.push((
                    format!(
                        "{}: sentry RSS while supervising (VmRSS) < {MAX_OVERHEAD_RSS_MIB} MiB",
                        sc.name()
                    ),
                    // The target is about supervising a quiet command for hours: the resident
                    // memory then. VmHWM (printed beside it) also holds the brief peak of
                    // loading the probe, before the command starts.
                    every(&c.rss_mib, 0, |x| x < MAX_OVERHEAD_RSS_MIB).filter(|_| measured),
                    worst(&c.rss_mib)
                        .map(|w| format!("worst {w:.1} MiB"))
                        .unwrap_or_default(),
                ));
            }
        }
    }
    println!("\ntargets (every repetition must meet them):");
    let mut bad = 0;
    for (what, v, note) in &verdicts {
        let tag = match v {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "NOT MEASURED",
        };
        if *v != Some(true) {
            bad += 1;
        }
        if note.is_empty() {
            println!("  {tag:<13} {what}");
        } else {
            println!("  {tag:<13} {what} ({note})");
        }
    }
    if let Some(why) = &unavailable {
        println!("  (mode {} unavailable: {why})", a.mode.name());
    }
    if bad > 0 {
        bail!("{bad} live detection target(s) failed or could not be measured (listed above)");
    }
    Ok(())
}

/// The three tables of figures, with the notes on timing and on runs sentry did not stop.
fn print_tables(cells: &[(Scenario, Cell)], bare_spawn: &[f64], interval: f64) {
    let na = |c: &Cell| {
        c.error
            .as_ref()
            .map(|e| format!("NOT MEASURED ({})", e.lines().next().unwrap_or("")))
    };
    println!(
        "\n  {:<38} {:>22} {:>22} {:>22}  first incident → last",
        "output loop (times from its start)",
        "→ first incident",
        "→ last incident",
        "→ sentry exit"
    );
    for (sc, c) in cells {
        if let Scenario::Loop { .. } = sc {
            if let Some(m) = na(c) {
                println!("  {:<38} {m}", sc.name());
                continue;
            }
            let mut det = fmt_spread(spread(&c.detect_s), " s", 2);
            if c.undetected > 0 {
                det = format!("{det} +{} undetected", c.undetected);
            }
            let mut stop = fmt_spread(spread(&c.stop_s), " s", 2);
            if !c.not_stopped.is_empty() {
                stop = format!("{stop} +{} not stopped", c.not_stopped.len());
            }
            println!(
                "  {:<38} {:>22} {:>22} {:>22}  {}",
                sc.name(),
                det,
                fmt_spread(spread(&c.act_s), " s", 2),
                stop,
                summarize(&c.actions)
            );
        }
    }
    println!(
        "\n  {:<38} {:>26} {:>26}  incidents",
        "silent spin", "spin start → sentry exit", "target"
    );
    for (sc, c) in cells {
        if let Scenario::Spin { window } = *sc {
            if let Some(m) = na(c) {
                println!("  {:<38} {m}", sc.name());
                continue;
            }
            let mut stop = fmt_spread(spread(&c.stop_s), " s", 2);
            if !c.not_stopped.is_empty() {
                stop = format!("{stop} +{} not stopped", c.not_stopped.len());
            }
            println!(
                "  {:<38} {:>26} {:>26}  {}",
                sc.name(),
                stop,
                format!("≤ {:.0} s", f64::from(window) + SPIN_SLACK_S),
                summarize(&c.actions)
            );
        }
    }
    println!(
        "\n  {:<38} {:>20} {:>22} {:>22}",
        "sentry's own cost",
        format!("CPU (% of a core, {:.0} s)", interval),
        "VmHWM (MiB)",
        "VmRSS (MiB)"
    );
    for (sc, c) in cells {
        if let Scenario::Overhead(_) = sc {
            if let Some(m) = na(c) {
                println!("  {:<38} {m}", sc.name());
                continue;
            }
            println!(
                "  {:<38} {:>20} {:>22} {:>22}",
                sc.name(),
                fmt_spread(spread(&c.cpu_pct), "%", 2),
                fmt_spread(spread(&c.hwm_mib), "", 1),
                fmt_spread(spread(&c.rss_mib), "", 1)
            );
        }
    }
    let ms = |s: Spread| {
        format!(
            "{:.1} ms [{:.1}–{:.1}]",
            s.median * 1e3,
            s.min * 1e3,
            s.max * 1e3
        )
    };
    let spawn: Vec<f64> = cells.iter().flat_map(|(_, c)| c.spawn_s.clone()).collect();
    if let Some(s) = spread(&spawn) {
        println!(
            "\n  harness starts sentry → the child's main(): {} (sentry's start-up and probe\n  load; not part of any figure above)",
            ms(s)
        );
    }
    if let Some(s) = spread(bare_spawn) {
        println!(
            "  spawn → main() of a program without sentry: {} (sentry's run clock starts just\n  before it spawns the command, so the detection times are late by about this much, never early)",
            ms(s)
        );
    }
    for (sc, c) in cells {
        for n in c.late.iter().chain(&c.not_stopped) {
            println!("  note: {}: {n}", sc.name());
        }
    }
}

fn worst_note(worst: Option<f64>, misses: usize, what: &str) -> String {
    let mut parts = Vec::new();
    if let Some(w) = worst {
        parts.push(format!("worst {w:.2} s"));
    }
    if misses > 0 {
        parts.push(format!("{misses} {what}"));
    }
    parts.join(", ")
}

/// "kill (output_loop) ×4, alert (output_loop) then kill ×1": the distinct outcomes, counted.
fn summarize(actions: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for a in actions {
        match counts.iter_mut().find(|(x, _)| *x == a.as_str()) {
            Some((_, n)) => *n += 1,
            None => counts.push((a, 1)),
        }
    }
    counts
        .iter()
        .map(|(a, n)| format!("{a} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes the scratch directory when the bench ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_file_is_parsed_and_a_loop_before_main_rejected() {
        let t = parse_times("start_ns=1000 loop_ns=5000\n").expect("parses");
        assert_eq!(
            t,
            ChildTimes {
                start_ns: 1000,
                loop_ns: 5000
            }
        );
        assert!(parse_times("start_ns=1000\n").is_err());
        assert!(parse_times("start_ns=9 loop_ns=1").is_err());
    }

    #[test]
    fn detection_is_timed_from_the_loop_not_from_the_run() {
        let t = ChildTimes {
            start_ns: 10_000_000_000,
            loop_ns: 10_250_000_000,
        };
        assert!((time_to_detect(1.75, t) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parens() {
        // Fields 14 (utime) = 17 and 15 (stime) = 4, after a name that contains ") (".
        let stat =
            "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 3 0 500 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat).expect("parses"), 21);
        assert!(parse_stat_cpu_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no name here").is_err());
    }

    #[test]
    fn this_process_stat_and_status_parse() {
        let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        parse_stat_cpu_ticks(&stat).expect("our own stat parses");
        let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let hwm = parse_status_kib(&status, "VmHWM").expect("VmHWM");
        let rss = parse_status_kib(&status, "VmRSS").expect("VmRSS");
        assert!(hwm >= rss && rss > 0, "VmHWM {hwm} kB, VmRSS {rss} kB");
    }

    #[test]
    fn status_lines_are_matched_by_whole_key() {
        let status = "Name:\tsentry\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM").expect("VmHWM"), 20480);
        assert_eq!(parse_status_kib(status, "VmRSS").expect("VmRSS"), 10240);
        assert!(parse_status_kib(status, "VmRS").is_err());
    }

    #[test]
    fn incidents_are_read_from_the_report() {
        let r = r#"{"incidents":[{"kind":"output_loop","detected_after_s":1.25,"action":"alert"},
                    {"kind":"output_loop","detected_after_s":2.5,"action":"kill"}]}"#;
        let i = parse_incidents(r).expect("parses");
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].detected_after_s, 1.25);
        assert_eq!(
            (i[0].action.as_str(), i[0].kind.as_str()),
            ("alert", "output_loop")
        );
        assert_eq!(outcome(&i), "alert (output_loop) then kill");
        assert_eq!(outcome(&i[1..]), "kill (output_loop)");
        assert_eq!(outcome(&[]), "no incident");
        assert!(parse_incidents(r#"{"incidents":[]}"#)
            .expect("empty")
            .is_empty());
        assert!(parse_incidents(r#"{"mode":"kernel"}"#).is_err());
    }

    #[test]
    fn a_target_passes_only_when_every_repetition_meets_it() {
        assert_eq!(every(&[1.0, 1.9], 0, |x| x <= 2.0), Some(true));
        assert_eq!(every(&[1.0, 2.1], 0, |x| x <= 2.0), Some(false));
        assert_eq!(every(&[1.0], 1, |x| x <= 2.0), Some(false));
        assert_eq!(every(&[], 0, |x| x <= 2.0), None);
    }

    #[test]
    fn outcomes_are_counted_in_first_seen_order() {
        let a = ["kill".to_string(), "alert then kill".into(), "kill".into()];
        assert_eq!(summarize(&a), "kill ×2, alert then kill ×1");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(100), "100");
    }

    #[test]
    fn the_live_programs_compile_and_write_their_times() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = tempfile::tempdir().expect("temp dir");
        let spin = compile(&root, dir.path(), "silent_spin").expect("cc compiles silent_spin.c");
        let times = dir.path().join("t");
        let out = Command::new(&spin)
            .arg("0")
            .arg(&times)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.is_empty(), "the spin is silent");
        parse_times(&fs::read_to_string(&times).expect("times written")).expect("parses");

        let looping = compile(&root, dir.path(), "output_loop").expect("cc compiles output_loop.c");
        let mut child = Command::new(&looping)
            .args(["1000", "3"])
            .arg(&times)
            .stdout(Stdio::piped())
            .spawn()
            .expect("runs");
        thread::sleep(Duration::from_millis(300));
        child.kill().expect("kill");
        let out = child.wait_with_output().expect("output");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("deploy 4.2.1: loading"),
            "prefix first: {text:.200}"
        );
        assert!(
            text.contains("ERROR attempt 2: connection refused"),
            "{text:.500}"
        );
        parse_times(&fs::read_to_string(&times).expect("times written")).expect("parses");
        let bad = Command::new(&looping)
            .args(["0", "1", "x"])
            .output()
            .expect("runs");
        assert_eq!(bad.status.code(), Some(2), "a zero rate is a usage error");
    }
}
