//! The output pipeline in one piece: chunks in, lines and loop findings out. `sentry run`
//! feeds it captured writes, `sentry analyze` feeds it a recorded log, the throughput
//! benchmark feeds it generated output; all three therefore measure and judge the same code.

use std::time::Duration;

use crate::detect::lines::{AssemblyStats, Limits, Line, LineAssembler};
use crate::detect::output_loop::{LoopConfig, LoopDetector, ProgressCounters};
use crate::detect::progress::ProgressSignals;
use crate::model::{Finding, OutputChunk};

/// Line assembly followed by the loop detector (which normalises each line).
#[derive(Default)]
pub struct OutputPipeline {
    assembler: LineAssembler,
    detector: LoopDetector,
}

impl OutputPipeline {
    /// A pipeline with explicit limits and loop configuration.
    pub fn new(limits: Limits, cfg: LoopConfig) -> Self {
        OutputPipeline {
            assembler: LineAssembler::new(limits),
            detector: LoopDetector::new(cfg),
        }
    }

    /// Feeds one captured chunk; `on_line` sees every completed line and the loop finding
    /// scored on it, if any.
    pub fn push(&mut self, chunk: &OutputChunk, mut on_line: impl FnMut(&Line, Option<Finding>)) {
        let detector = &mut self.detector;
        self.assembler.push(chunk, |line| {
            let f = detector.observe(line);
            on_line(line, f);
        });
    }

    /// Like [`push`](Self::push) for bytes that are not in an [`OutputChunk`].
    pub fn push_bytes(
        &mut self,
        pid: u32,
        fd: u32,
        at: Duration,
        bytes: &[u8],
        mut on_line: impl FnMut(&Line, Option<Finding>),
    ) {
        let detector = &mut self.detector;
        self.assembler.push_bytes(pid, fd, at, bytes, |line| {
            let f = detector.observe(line);
            on_line(line, f);
        });
    }

    /// End of input: completes every partial line.
    pub fn flush(&mut self, mut on_line: impl FnMut(&Line, Option<Finding>)) {
        let detector = &mut self.detector;
        self.assembler.flush(|line| {
            let f = detector.observe(line);
            on_line(line, f);
        });
    }

    /// The strongest loop still repeating, if any.
    pub fn current_finding(&self) -> Option<&Finding> {
        self.detector.current()
    }

    /// Cumulative line counts from the loop detector.
    pub fn progress_counters(&self) -> ProgressCounters {
        self.detector.progress_counters()
    }

    /// The progress signal the resource detectors take.
    pub fn progress_signals(&self) -> ProgressSignals {
        let c = self.detector.progress_counters();
        ProgressSignals {
            lines: c.lines,
            novel_lines: c.novel_lines,
        }
    }

    /// What line assembly has seen (binary, truncated, evicted…).
    pub fn assembly_stats(&self) -> AssemblyStats {
        self.assembler.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_a_crash_loop_become_a_finding() {
        let mut p = OutputPipeline::default();
        let mut best: f64 = 0.0;
        let mut lines = 0;
        let cycle = b"Starting worker...\nError: cannot bind 0.0.0.0:8080: address in use\nworker exited with status 1, restarting\n";
        // Each restart is a new process writing the same cycle in small pieces.
        for restart in 0..8u32 {
            for (i, piece) in cycle.chunks(7).enumerate() {
                let chunk = OutputChunk {
                    pid: 10 + restart,
                    fd: 1,
                    at: Duration::from_millis(u64::from(restart) * 100 + i as u64),
                    bytes: piece.to_vec(),
                    written_len: piece.len() as u64,
                };
                p.push(&chunk, |_, f| {
                    lines += 1;
                    if let Some(f) = f {
                        best = best.max(f.score);
                    }
                });
            }
        }
        p.flush(|_, _| lines += 1);
        assert!(best > 0.8, "crash loop scored {best}");
        assert!(p.current_finding().is_some());
        let s = p.progress_signals();
        assert!(
            s.lines >= 20 && s.novel_lines <= 3,
            "{s:?} after {lines} lines"
        );
    }
}
