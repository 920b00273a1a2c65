//! The JSON report of one `sentry run` (`--report FILE`) and the JSON-lines capture file
//! (`--events FILE`). Field names here are a contract with scripts and with `sentry analyze`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use base64::Engine as _;
use serde::Serialize;

use crate::model::{Incident, OutputChunk};

/// Everything `sentry run --report` writes.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Capture backend used: "kernel", "fallback" or "macos".
    pub mode: String,
    /// The command as given.
    pub command: Vec<String>,
    /// sentry's exit status: the child's own (128+N when a signal N ended it), or 124 when
    /// sentry stopped the command.
    pub exit_code: i32,
    /// The command's own status at its end (128+N for a signal), even when sentry stopped it.
    pub child_exit_code: i32,
    /// The signal that ended the child, if one did.
    pub signal: Option<i32>,
    /// True when sentry stopped the command (kill, or a restart budget given up on).
    pub stopped_by_sentry: bool,
    /// Whether a runaway was detected.
    pub runaway: bool,
    /// Incidents (detections that led to an action).
    pub incidents: Vec<Incident>,
    /// How often the command was restarted.
    pub restarts: u32,
    /// Wall time from start to the end of the tree, seconds.
    pub duration_s: f64,
    /// Peak CPU of the tree over one sampling interval, per-core percent (may exceed 100).
    pub cpu_peak_pct: f64,
    /// Average CPU over the whole run, per-core percent.
    pub cpu_avg_pct: f64,
    /// Peak memory of the tree, bytes (`null` when it could not be measured).
    pub mem_peak_bytes: Option<u64>,
    /// Peak number of processes in the tree.
    pub pids_peak: u32,
    /// Write records captured with their payload.
    pub events_captured: u64,
    /// Writes the kernel could not record because the ring buffer was full.
    pub events_lost: u64,
    /// Payload bytes captured.
    pub bytes_captured: u64,
    /// Every write()/writev() of the tree.
    pub writes_total: u64,
    /// Bytes all those writes asked to write.
    pub write_bytes_total: u64,
    /// Writes beyond the capture budget: counted and summed, payload not captured.
    pub writes_counted_only: u64,
    /// Bytes of the counted-only writes.
    pub bytes_counted_only: u64,
    /// Captured writes whose buffer could not be read (recorded without payload).
    pub read_failures: u64,
    /// Captured writes to files or to pipes inside the tree (not the command's output).
    pub writes_not_output: u64,
    /// Captured output chunks the detectors skipped (beyond 100,000 a second, or because they
    /// could not keep up); they are captured and counted all the same.
    pub chunks_shed: u64,
    /// Full captures allowed per second, per CPU, before writes are only counted.
    pub capture_budget_per_s: u64,
    /// True when some writes were only counted because the budget ran out.
    pub capture_budget_exceeded: bool,
    /// Processes still running when the command itself ended (sentry killed them).
    pub leftover_processes_killed: usize,
    /// Which probe ran: "capture", or "floor" (the benchmark's no-op program).
    pub probe: String,
    /// Who asked, through the dashboard or API, to stop the run (`null` otherwise).
    pub stop_requested_by: Option<String>,
    /// The run's id in the evidence store (`null` when it was not recorded).
    pub run_id: Option<i64>,
    /// True when sentry ran in shadow mode (`--shadow`): incidents say what enforcement would
    /// have done, and nothing touched the command.
    pub shadow: bool,
    /// In shadow mode, seconds from the start to the first decision that would have stopped
    /// (killed or restarted) the command; `null` when none would have, or when not in shadow
    /// mode.
    #[serde(default)]
    pub would_have_stopped_after_s: Option<f64>,
    /// What the run cost.
    pub cost: crate::cost::RunCost,
    /// The run against its job's learned baseline (`null` without enough history).
    pub baseline: Option<crate::baseline::BaselineComparison>,
}

impl RunReport {
    /// Writes the report as pretty JSON.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        let file = File::create(path)?;
        let mut out = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// One line of the `--events` file.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    pid: u32,
    fd: u32,
    at_ns: u64,
    written_len: u64,
    /// "utf8" when `data` is the payload as text, "base64" otherwise (lossless either way).
    encoding: &'static str,
    data: std::borrow::Cow<'a, str>,
}

/// Writes captured chunks as JSON lines.
pub struct EventsWriter {
    out: BufWriter<File>,
}

impl EventsWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<EventsWriter> {
        Ok(EventsWriter {
            out: BufWriter::with_capacity(1 << 16, File::create(path)?),
        })
    }

    /// Appends one chunk.
    pub fn write(&mut self, chunk: &OutputChunk) -> io::Result<()> {
        let (encoding, data) = match std::str::from_utf8(&chunk.bytes) {
            Ok(text) => ("utf8", std::borrow::Cow::Borrowed(text)),
            Err(_) => (
                "base64",
                std::borrow::Cow::Owned(
                    base64::engine::general_purpose::STANDARD.encode(&chunk.bytes),
                ),
            ),
        };
        let line = EventLine {
            pid: chunk.pid,
            fd: chunk.fd,
            at_ns: u64::try_from(chunk.at.as_nanos()).unwrap_or(u64::MAX),
            written_len: chunk.written_len,
            encoding,
            data,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    /// Flushes buffered lines to the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_lines_are_lossless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut writer = EventsWriter::create(&path).unwrap();
        let text = OutputChunk {
            pid: 7,
            fd: 1,
            at: Duration::from_nanos(5),
            bytes: b"hi \"x\"\n".to_vec(),
            written_len: 7,
        };
        let binary = OutputChunk {
            pid: 7,
            fd: 2,
            at: Duration::from_nanos(9),
            bytes: vec![0xff, 0, 1],
            written_len: 3,
        };
        writer.write(&text).unwrap();
        writer.write(&binary).unwrap();
        writer.finish().unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["data"], "hi \"x\"\n");
        assert_eq!(lines[0]["encoding"], "utf8");
        assert_eq!(lines[1]["encoding"], "base64");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(lines[1]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, vec![0xff, 0, 1]);
        assert_eq!(lines[1]["at_ns"], 9);
    }
}
