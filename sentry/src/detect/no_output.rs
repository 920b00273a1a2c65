//! The no-output timeout (`--no-output-timeout`, `[no_output] timeout_s`): the user's own
//! limit on silence, like CI services' "no output for 10 minutes", but one that understands
//! progress. It fires only when the job has written nothing **and** made no CPU or I/O
//! progress for the whole timeout, so a compressor, a linker or a test binary working
//! silently is never stopped for being quiet.
//!
//! Unlike the stall detector (an alert after five idle minutes, since a job waiting on a slow
//! service looks the same), this finding scores 1.0: the user set the limit, so it leads to
//! the policy's high action (kill by default).
//!
//! What counts:
//! - output: a new logical line, or any captured write (`Sample::writes`, `write_bytes`). In
//!   kernel mode `writes` counts every `write()` of the tree, files included: that is I/O
//!   progress anyway.
//! - progress: output, or CPU at or above the stall floor (`stall.cpu_pct`, 2% of a core by
//!   default) or I/O at 32 KiB/s or more, each on average since the last sign of progress
//!   (over at least a second). The
//!   count of read and write syscalls is not progress, and neither is a trickle of reads: a
//!   polling loop (`while sleep 1; do check; done`) reads a few KiB each time it starts a
//!   program while doing nothing, and it is exactly what a silence timeout is for.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::cpu::io_total;
use crate::detect::progress::ProgressSignals;
use crate::detect::window::{duration_from_secs, secs};
use crate::model::{Evidence, Finding, FindingKind, ResourceEvidence, Sample};

/// The no-output timeout (`[no_output]` in the policy file). Off unless `timeout_s` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoOutputConfig {
    /// Seconds without output and without CPU or I/O progress before the job is stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
}

/// Output counters at one sample: any change is new output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutputMark {
    lines: u64,
    writes: u64,
    write_bytes: u64,
}

/// I/O (bytes read and written, `Sample::io_read_bytes + io_write_bytes`) counts as progress
/// at this average rate or more since the last sign of progress, measured over at least
/// [`IO_MIN_SPAN`].
pub const IO_PROGRESS_BYTES_PER_S: f64 = 32.0 * 1024.0;

/// The shortest span the I/O rate is taken over, so one program start's reads (a few KiB
/// within one sample) do not look like a stream.
const IO_MIN_SPAN: Duration = Duration::from_secs(1);

/// Times silence and idleness against the user's timeout.
#[derive(Debug, Clone)]
pub struct NoOutputDetector {
    timeout: Option<Duration>,
    cpu_floor_pct: f64,
    last: Option<OutputMark>,
    last_output: Duration,
    last_progress: Duration,
    /// I/O total at the last sign of progress.
    io_mark: Option<u64>,
    /// The tree's cumulative CPU at the last sign of progress, microseconds.
    cpu_mark: u64,
}

impl NoOutputDetector {
    /// A detector for `config`; CPU at or above `cpu_floor_pct` (per-core percent of the
    /// tree) counts as progress.
    pub fn new(config: &NoOutputConfig, cpu_floor_pct: f64) -> Self {
        Self {
            timeout: config
                .timeout_s
                .map(duration_from_secs)
                .filter(|t| !t.is_zero()),
            cpu_floor_pct,
            last: None,
            last_output: Duration::ZERO,
            last_progress: Duration::ZERO,
            io_mark: None,
            cpu_mark: 0,
        }
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.last = None;
        self.last_output = Duration::ZERO;
        self.last_progress = Duration::ZERO;
        self.io_mark = None;
        self.cpu_mark = 0;
    }

    /// Feeds one sample with the output counters at the same moment.
    pub fn observe(&mut self, sample: &Sample, progress: &ProgressSignals) -> Option<Finding> {
        let timeout = self.timeout?;
        let output = OutputMark {
            lines: progress.lines,
            writes: sample.writes,
            write_bytes: sample.write_bytes,
        };
        let io = io_total(sample);
        // Clocks start with the run (time zero); a restart (time going backwards) restarts
        // them. The first sample only sets the baseline of the counters.
        if sample.at < self.last_progress {
            self.reset();
        }
        let mut progress_now = false;
        if let Some(prev_output) = self.last {
            if prev_output != output {
                self.last_output = sample.at;
                progress_now = true;
            }
            if let (Some(now), Some(mark)) = (io, self.io_mark) {
                let span = sample
                    .at
                    .saturating_sub(self.last_progress)
                    .max(IO_MIN_SPAN);
                if now.saturating_sub(mark) as f64 >= IO_PROGRESS_BYTES_PER_S * secs(span) {
                    progress_now = true;
                }
            }
        }
        // CPU counts on average since the last sign of progress (over at least a second),
        // like I/O: one program start of a polling loop is a few milliseconds of CPU, which
        // within a quarter-second sample looks like 2% of a core.
        if self.last.is_some() {
            let span = sample
                .at
                .saturating_sub(self.last_progress)
                .max(IO_MIN_SPAN);
            let used_s = sample.cpu_usage_us.saturating_sub(self.cpu_mark) as f64 / 1e6;
            if used_s * 100.0 >= self.cpu_floor_pct * secs(span) {
                progress_now = true;
            }
        }
        if progress_now || self.last.is_none() {
            if progress_now {
                self.last_progress = sample.at;
            }
            self.io_mark = io;
            self.cpu_mark = sample.cpu_usage_us;
        }
        self.last = Some(output);

        let silent = sample.at.saturating_sub(self.last_output);
        let idle = sample.at.saturating_sub(self.last_progress);
        if idle < timeout {
            return None;
        }
        let limit = secs(timeout);
        let summary = if silent.saturating_sub(idle) < Duration::from_secs(1) {
            format!(
                "no output for {} and no CPU or I/O progress",
                human_secs(secs(silent))
            )
        } else {
            format!(
                "no output for {} and no CPU or I/O progress for the last {}",
                human_secs(secs(silent)),
                human_secs(secs(idle))
            )
        };
        Some(Finding {
            kind: FindingKind::NoOutput,
            score: 1.0,
            at: sample.at,
            reasons: vec![
                summary.clone(),
                format!(
                    "the no-output timeout is {}; CPU below {:.0}% of a core, I/O under 32 KiB/s",
                    human_secs(limit),
                    self.cpu_floor_pct
                ),
                format!(
                    "{} live processes, {} lines so far",
                    sample.pids, progress.lines
                ),
            ],
            summary,
            evidence: Evidence::Resource(ResourceEvidence {
                metric: "silent_s".to_string(),
                value: secs(silent),
                threshold: limit,
                window_s: secs(idle),
            }),
        })
    }
}

/// `3 s`, `90 s`, `12.5 s`: whole seconds when the value is whole.
fn human_secs(s: f64) -> String {
    if (s - s.round()).abs() < 0.05 || s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Parses a duration: `3s`, `90s`, `10m`, `1h`, `1.5m`, or plain seconds (`45`). Zero,
/// negative and unparsable values are errors that say what is expected.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("`{text}` is not a duration: give a positive number with an optional unit, e.g. 90s, 10m or 1h")
    })?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        other => {
            return Err(format!(
                "`{text}`: unknown duration unit `{other}` (use s, m or h, e.g. 90s, 10m, 1h)"
            ))
        }
    };
    let secs = value * mult;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{text}`: the duration must be above zero"));
    }
    if secs > MAX_TIMEOUT_S {
        return Err(format!("`{text}`: at most 30 days"));
    }
    Ok(secs)
}

/// Longest timeout accepted (30 days), as for the stall detector.
pub const MAX_TIMEOUT_S: f64 = 30.0 * 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 250 ms for `ms` milliseconds; returns the first time (ms) it fired and
    /// the last finding.
    fn run(
        timeout_s: f64,
        ms: u64,
        f: impl Fn(u64) -> (Sample, ProgressSignals),
    ) -> (Option<u64>, Option<Finding>) {
        let mut d = NoOutputDetector::new(
            &NoOutputConfig {
                timeout_s: Some(timeout_s),
            },
            2.0,
        );
        let mut first = None;
        let mut last = None;
        // The tree's cumulative CPU, as a backend reports it with each sample.
        let mut cpu_us = 0u64;
        for t in (0..=ms).step_by(250) {
            let (mut s, p) = f(t);
            if t > 0 {
                cpu_us += (s.cpu_pct / 100.0 * 250_000.0) as u64;
            }
            s.cpu_usage_us = cpu_us;
            last = d.observe(&s, &p);
            if last.is_some() && first.is_none() {
                first = Some(t);
            }
        }
        (first, last)
    }

    fn idle(ms: u64) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            cpu_pct: 0.0,
            pids: 1,
            io_read_bytes: Some(4096),
            io_write_bytes: Some(0),
            syscalls: Some(40),
            writes: 2,
            write_bytes: 30,
            ..Sample::default()
        }
    }

    #[test]
    fn silence_and_idleness_fire_at_the_timeout() {
        let (first, f) = run(3.0, 6000, |t| (idle(t), ProgressSignals::default()));
        assert_eq!(first, Some(3000), "fires at the first sample past 3 s");
        let f = f.unwrap_or_else(|| panic!("a finding expected"));
        assert_eq!(f.kind, FindingKind::NoOutput);
        assert_eq!(f.score, 1.0);
        assert_eq!(
            f.summary, "no output for 6 s and no CPU or I/O progress",
            "{f:?}"
        );
        match &f.evidence {
            Evidence::Resource(r) => {
                assert_eq!(r.metric, "silent_s");
                assert_eq!(r.threshold, 3.0);
                assert!(r.value >= 6.0 && r.window_s >= 6.0, "{r:?}");
            }
            other => panic!("resource evidence expected, got {other:?}"),
        }
    }

    #[test]
    fn silent_cpu_work_does_not_fire() {
        let (first, _) = run(3.0, 20_000, |t| {
            let mut s = idle(t);
            s.cpu_pct = 100.0;
            (s, ProgressSignals::default())
        });
        assert_eq!(first, None, "a silent, busy job (a compressor) is working");
    }

    #[test]
    fn silent_io_does_not_fire() {
        let (first, _) = run(3.0, 20_000, |t| {
            let mut s = idle(t);
            // Reads 64 KiB a second, under the CPU floor (waiting on a slow disk).
            s.io_read_bytes = Some(t / 1000 * 65_536);
            (s, ProgressSignals::default())
        });
        assert_eq!(first, None);
        let (first, _) = run(3.0, 20_000, |t| {
            let mut s = idle(t);
            s.syscalls = Some(40 + t / 2000);
            (s, ProgressSignals::default())
        });
        assert!(
            first.is_some(),
            "a polling loop's syscalls every 2 s are not progress"
        );
    }

    #[test]
    fn output_resets_the_clock() {
        let (first, _) = run(3.0, 20_000, |t| {
            (
                idle(t),
                ProgressSignals {
                    lines: t / 1000,
                    novel_lines: 0,
                },
            )
        });
        assert_eq!(first, None, "a line every second");
        let (first, _) = run(3.0, 20_000, |t| {
            let mut s = idle(t);
            // A progress bar rewritten with `\r`: writes, no complete line.
            s.writes = 2 + t / 2000;
            (s, ProgressSignals::default())
        });
        assert_eq!(first, None, "a write every 2 s");
        // Output that stops: fires 3 s after the last line.
        let (first, _) = run(3.0, 20_000, |t| {
            (
                idle(t),
                ProgressSignals {
                    lines: t.min(5000) / 1000,
                    novel_lines: 0,
                },
            )
        });
        assert_eq!(first, Some(8000));
    }

    #[test]
    fn short_cpu_bursts_of_a_polling_loop_are_not_progress() {
        // One program start every second: 4% of a core within one quarter-second sample,
        // 1% on average.
        let (first, _) = run(3.0, 10_000, |t| {
            let mut s = idle(t);
            s.cpu_pct = if t % 1000 == 0 { 4.0 } else { 0.0 };
            (s, ProgressSignals::default())
        });
        assert_eq!(first, Some(3000), "a polling loop is silent and idle");
    }

    #[test]
    fn cpu_after_silence_counts_but_output_is_timed_apart() {
        // Output stops at 2 s, CPU work goes on until 10 s, then nothing.
        let (first, f) = run(3.0, 14_000, |t| {
            let mut s = idle(t);
            s.cpu_pct = if t <= 10_000 { 80.0 } else { 0.0 };
            (
                s,
                ProgressSignals {
                    lines: t.min(2000) / 500,
                    novel_lines: 0,
                },
            )
        });
        assert_eq!(first, Some(13_000));
        let f = f.unwrap_or_else(|| panic!("fires"));
        assert_eq!(
            f.summary,
            "no output for 12 s and no CPU or I/O progress for the last 4 s"
        );
    }

    #[test]
    fn off_without_a_timeout_and_restarts_reset() {
        let mut d = NoOutputDetector::new(&NoOutputConfig::default(), 2.0);
        assert!(d
            .observe(&idle(100_000), &ProgressSignals::default())
            .is_none());
        let mut d = NoOutputDetector::new(
            &NoOutputConfig {
                timeout_s: Some(3.0),
            },
            2.0,
        );
        assert!(d
            .observe(&idle(5000), &ProgressSignals::default())
            .is_some());
        // A new attempt starts its clock at zero again.
        assert!(d
            .observe(&idle(1000), &ProgressSignals::default())
            .is_none());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3s"), Ok(3.0));
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert_eq!(parse_duration("10m"), Ok(600.0));
        assert_eq!(parse_duration("1h"), Ok(3600.0));
        assert_eq!(parse_duration("1.5m"), Ok(90.0));
        for bad in ["0", "0s", "-3s", "soon", "3d", "", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("-3s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("0s").unwrap_err().contains("above zero"));
        assert!(parse_duration("3d")
            .unwrap_err()
            .contains("unknown duration unit"));
    }
}
