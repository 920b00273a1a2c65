//! Line assembly: turns the raw [`OutputChunk`]s that capture delivers (many small writes, from
//! several processes and file descriptors, interleaved) into logical [`Line`]s, one stream per
//! `(pid, fd)`.
//!
//! What a terminal would show is what counts: partial writes are joined, a `\r`-rewritten
//! progress line becomes one logical line holding its final rendition (`\r\n` is a plain
//! newline), ANSI escape sequences (CSI, OSC and other string controls, charset selection,
//! single-character escapes) are removed, and invalid UTF-8 is replaced lossily. Lines longer
//! than [`Limits::max_line_bytes`] keep their first bytes and record that they were truncated
//! and how long they really were. Output that looks binary (NUL bytes or a high share of
//! control bytes) is flagged so the loop detector ignores it. Memory is bounded: each stream
//! buffers at most one capped line, and at most [`Limits::max_streams`] streams are kept (the
//! least recently written one is flushed and dropped when a new one arrives).
//!
//! This module does not interpret the text; the normaliser and the loop detector do.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::OutputChunk;

/// Default cap on the bytes kept of one logical line. 4 KiB keeps every realistic log line
/// whole (stack-trace lines, JSON records) while a megabyte-long minified blob costs no more.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4096;

/// Default cap on the number of `(pid, fd)` streams assembled at once.
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// Default idle time after which a stream with nothing buffered is forgotten.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(60);

/// Longest escape sequence (CSI parameters, OSC title) followed before giving up on it, so
/// an unterminated OSC cannot swallow the rest of the output.
const MAX_ESCAPE_BYTES: usize = 4096;

/// A line is binary if it has a NUL byte or if more than this share of its bytes are
/// control bytes other than tab (text logs have essentially none once escapes are removed).
const BINARY_CONTROL_RATIO: f64 = 0.10;

/// Limits that bound the assembler's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one logical line kept; the rest is counted in `original_len` only.
    pub max_line_bytes: usize,
    /// Streams assembled at once; beyond it the least recently written stream is flushed.
    pub max_streams: usize,
    /// A stream idle this long with nothing buffered is dropped.
    pub stream_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_streams: DEFAULT_MAX_STREAMS,
            stream_idle: DEFAULT_STREAM_IDLE,
        }
    }
}

/// One logical line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based position among all lines of all streams, in completion order.
    pub seq: u64,
    /// Process that wrote it.
    pub pid: u32,
    /// File descriptor it was written to.
    pub fd: u32,
    /// Time of the write that completed the line.
    pub at: Duration,
    /// The text shown (escapes removed, final `\r` rendition, lossy UTF-8, capped).
    pub text: String,
    /// True when `text` holds only the first [`Limits::max_line_bytes`] bytes.
    pub truncated: bool,
    /// Bytes the line had after escape removal, before the cap.
    pub original_len: usize,
    /// True when the line looks like binary data; `text` is then empty.
    pub binary: bool,
}

/// Counters describing what the assembler has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Logical lines emitted (text and binary).
    pub lines: u64,
    /// Lines flagged binary.
    pub binary_lines: u64,
    /// Bytes belonging to binary lines.
    pub binary_bytes: u64,
    /// Lines cut at the cap.
    pub truncated_lines: u64,
    /// `\r` rewrites folded into a later rendition.
    pub folded_rewrites: u64,
    /// Streams flushed and dropped to stay under `max_streams`.
    pub evicted_streams: u64,
    /// Bytes a capture reported as written but did not deliver (`written_len` > payload).
    pub uncaptured_bytes: u64,
}

/// Where the escape-sequence parser is, carried across writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Plain text.
    Ground,
    /// After ESC.
    Esc,
    /// After ESC and intermediate bytes (0x20..=0x2F), waiting for the final byte.
    EscIntermediate,
    /// Inside `ESC [` … final byte.
    Csi,
    /// Inside a string control (OSC, DCS, SOS, PM, APC) until BEL or `ESC \`.
    Str,
    /// ESC seen inside a string control.
    StrEsc,
}

/// Assembly state of one `(pid, fd)` stream.
#[derive(Debug)]
struct Stream {
    /// Bytes of the current rendition (capped).
    buf: Vec<u8>,
    /// Bytes of the current rendition before the cap.
    len: usize,
    /// Control bytes seen in the whole logical line (all renditions).
    controls: usize,
    /// Bytes seen in the whole logical line (all renditions).
    total: usize,
    /// A NUL byte was seen in the logical line.
    nul: bool,
    /// A bare `\r` was seen: the next visible byte starts a new rendition.
    cr_pending: bool,
    escape: Escape,
    escape_len: usize,
    /// Time of the latest write.
    last_at: Duration,
}

impl Stream {
    fn new(at: Duration, cap: usize) -> Self {
        Stream {
            buf: Vec::with_capacity(cap.min(256)),
            len: 0,
            controls: 0,
            total: 0,
            nul: false,
            cr_pending: false,
            escape: Escape::Ground,
            escape_len: 0,
            last_at: at,
        }
    }

    fn is_empty(&self) -> bool {
        self.total == 0 && !self.cr_pending
    }
}

/// Turns chunks into logical lines; see the module documentation.
#[derive(Debug)]
pub struct LineAssembler {
    limits: Limits,
    streams: HashMap<(u32, u32), Stream>,
    out: Emitter,
    chunks_since_sweep: u32,
}

/// Who wrote a piece of output, and when.
#[derive(Debug, Clone, Copy)]
struct Origin {
    pid: u32,
    fd: u32,
    at: Duration,
}

/// Numbers and lends the completed lines; kept apart from the streams so that a stream can
/// be fed in place (no removal and reinsertion per write).
#[derive(Debug)]
struct Emitter {
    seq: u64,
    stats: AssemblyStats,
    /// The line lent to `emit`; its text buffer is reused from one line to the next, so
    /// emitting a line allocates nothing once the buffer has grown to the longest line.
    line: Line,
}

impl Default for LineAssembler {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl LineAssembler {
    /// An assembler with the given limits (a zero limit is raised to 1).
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_line_bytes: limits.max_line_bytes.max(1),
            max_streams: limits.max_streams.max(1),
            stream_idle: limits.stream_idle,
        };
        LineAssembler {
            limits,
            streams: HashMap::new(),
            out: Emitter {
                seq: 0,
                stats: AssemblyStats::default(),
                line: Line {
                    seq: 0,
                    pid: 0,
                    fd: 0,
                    at: Duration::ZERO,
                    text: String::new(),
                    truncated: false,
                    original_len: 0,
                    binary: false,
                },
            },
            chunks_since_sweep: 0,
        }
    }

    /// What has been seen so far.
    pub fn stats(&self) -> AssemblyStats {
        self.out.stats
    }

    /// Number of streams currently held.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Feeds one chunk; every line it completes is lent to `emit` in order (clone it to
    /// keep it: the assembler reuses its buffer for the next line).
    pub fn push(&mut self, chunk: &OutputChunk, mut emit: impl FnMut(&Line)) {
        self.push_bytes(chunk.pid, chunk.fd, chunk.at, &chunk.bytes, &mut emit);
        let missing = chunk.written_len.saturating_sub(chunk.bytes.len() as u64);
        self.out.stats.uncaptured_bytes += missing;
    }

    /// Feeds raw bytes written by `pid` to `fd` at `at`; like [`push`](Self::push) without
    /// building an [`OutputChunk`].
    pub fn push_bytes(
        &mut self,
        pid: u32,
        fd: u32,
        at: Duration,
        bytes: &[u8],
        mut emit: impl FnMut(&Line),
    ) {
        self.chunks_since_sweep += 1;
        if self.chunks_since_sweep >= 4096 {
            self.chunks_since_sweep = 0;
            self.sweep_idle(at);
        }
        let key = (pid, fd);
        if !self.streams.contains_key(&key) && self.streams.len() >= self.limits.max_streams {
            self.evict_oldest(&mut emit);
        }
        let cap = self.limits.max_line_bytes;
        let stream = self
            .streams
            .entry(key)
            .or_insert_with(|| Stream::new(at, cap));
        stream.last_at = at;
        self.out
            .feed(stream, cap, Origin { pid, fd, at }, bytes, &mut emit);
    }

    /// Emits the partial line of every stream (end of input) and forgets all streams.
    pub fn flush(&mut self, mut emit: impl FnMut(&Line)) {
        let mut keys: Vec<(u32, u32)> = self.streams.keys().copied().collect();
        // Deterministic order: oldest write first, then by key.
        keys.sort_by_key(|k| (self.streams.get(k).map(|s| s.last_at), *k));
        for key in keys {
            if let Some(mut stream) = self.streams.remove(&key) {
                if stream.total > 0 {
                    let origin = Origin {
                        pid: key.0,
                        fd: key.1,
                        at: stream.last_at,
                    };
                    self.out.finish_line(&mut stream, origin, &mut emit);
                }
            }
        }
    }

    fn sweep_idle(&mut self, now: Duration) {
        let idle = self.limits.stream_idle;
        self.streams
            .retain(|_, s| !(s.is_empty() && now.saturating_sub(s.last_at) >= idle));
    }

    fn evict_oldest(&mut self, emit: &mut impl FnMut(&Line)) {
        let oldest = self
            .streams
            .iter()
            .min_by_key(|(k, s)| (s.last_at, **k))
            .map(|(k, _)| *k);
        if let Some(key) = oldest {
            if let Some(mut stream) = self.streams.remove(&key) {
                if stream.total > 0 {
                    let origin = Origin {
                        pid: key.0,
                        fd: key.1,
                        at: stream.last_at,
                    };
                    self.out.finish_line(&mut stream, origin, emit);
                }
                self.out.stats.evicted_streams += 1;
            }
        }
    }
}

impl Emitter {
    fn feed(
        &mut self,
        s: &mut Stream,
        cap: usize,
        origin: Origin,
        bytes: &[u8],
        emit: &mut impl FnMut(&Line),
    ) {
        let mut i = 0;
        while i < bytes.len() {
            if s.escape == Escape::Ground {
                // Fast path: copy a run of printable bytes (including UTF-8) in one go.
                let start = i;
                i += plain_run(&bytes[i..]);
                if i > start {
                    let run = &bytes[start..i];
                    if s.total == 0 && !s.cr_pending && bytes.get(i) == Some(&b'\n') {
                        // A whole line in this write and nothing before it (the usual
                        // case): lent straight from the write, not copied through the
                        // stream's buffer. Plain bytes only, so not binary.
                        let kept = &run[..run.len().min(cap)];
                        self.emit_line(kept, run.len(), run.len(), false, origin, emit);
                        i += 1;
                        continue;
                    }
                    if s.cr_pending {
                        self.start_rendition(s);
                    }
                    let room = cap.saturating_sub(s.buf.len());
                    s.buf.extend_from_slice(&run[..run.len().min(room)]);
                    s.len += run.len();
                    s.total += run.len();
                }
                if i >= bytes.len() {
                    break;
                }
            }
            let b = bytes[i];
            i += 1;
            match s.escape {
                Escape::Ground => match b {
                    b'\n' => {
                        // `\r\n` is a plain newline: the pending rewrite is dropped.
                        s.cr_pending = false;
                        self.finish_line(s, origin, emit);
                    }
                    b'\r' => s.cr_pending = true,
                    0x1b => {
                        s.escape = Escape::Esc;
                        s.escape_len = 0;
                    }
                    b'\t' => {
                        if s.cr_pending {
                            self.start_rendition(s);
                        }
                        if s.buf.len() < cap {
                            s.buf.push(b'\t');
                        }
                        s.len += 1;
                        s.total += 1;
                    }
                    // Backspace, bell and other C0 controls are not shown; they count
                    // towards the binary test.
                    _ => {
                        s.total += 1;
                        s.controls += 1;
                        if b == 0 {
                            s.nul = true;
                        }
                    }
                },
                Escape::Esc => {
                    s.escape = match b {
                        b'[' => Escape::Csi,
                        b']' | b'P' | b'X' | b'^' | b'_' => Escape::Str,
                        0x20..=0x2f => Escape::EscIntermediate,
                        // A newline aborts a broken sequence rather than vanishing in it.
                        b'\n' => {
                            s.cr_pending = false;
                            self.finish_line(s, origin, emit);
                            Escape::Ground
                        }
                        // Any other byte completes a single-character escape (ESC 7, ESC M…).
                        _ => Escape::Ground,
                    };
                }
                Escape::EscIntermediate => {
                    s.escape_len += 1;
                    match b {
                        0x20..=0x2f if s.escape_len < 8 => {}
                        b'\n' => {
                            s.escape = Escape::Ground;
                            s.cr_pending = false;
                            self.finish_line(s, origin, emit);
                        }
                        _ => s.escape = Escape::Ground,
                    }
                }
                Escape::Csi => {
                    s.escape_len += 1;
                    match b {
                        0x40..=0x7e => s.escape = Escape::Ground,
                        b'\n' => {
                            s.escape = Escape::Ground;
                            s.cr_pending = false;
                            self.finish_line(s, origin, emit);
                        }
                        _ if s.escape_len > MAX_ESCAPE_BYTES => s.escape = Escape::Ground,
                        _ => {}
                    }
                }
                Escape::Str | Escape::StrEsc => {
                    s.escape_len += 1;
                    match (s.escape, b) {
                        (_, 0x07) => s.escape = Escape::Ground,
                        (Escape::StrEsc, b'\\') => s.escape = Escape::Ground,
                        (_, 0x1b) => s.escape = Escape::StrEsc,
                        // Terminals would keep swallowing, but a log must not lose its lines
                        // to an unterminated title.
                        (_, b'\n') => {
                            s.escape = Escape::Ground;
                            s.cr_pending = false;
                            self.finish_line(s, origin, emit);
                        }
                        _ if s.escape_len > MAX_ESCAPE_BYTES => s.escape = Escape::Ground,
                        _ => s.escape = Escape::Str,
                    }
                }
            }
        }
    }

    /// Lends one logical line: `kept` the bytes kept of its final rendition, `len` that
    /// rendition's length before the cap, `total` the bytes of all its renditions.
    fn emit_line(
        &mut self,
        kept: &[u8],
        len: usize,
        total: usize,
        binary: bool,
        origin: Origin,
        emit: &mut impl FnMut(&Line),
    ) {
        let truncated = len > kept.len();
        self.seq += 1;
        self.stats.lines += 1;
        let line = &mut self.line;
        line.text.clear();
        if binary {
            self.stats.binary_lines += 1;
            self.stats.binary_bytes += total as u64;
        } else {
            if truncated {
                self.stats.truncated_lines += 1;
            }
            push_lossy(&mut line.text, kept);
        }
        line.seq = self.seq;
        line.pid = origin.pid;
        line.fd = origin.fd;
        line.at = origin.at;
        line.truncated = truncated;
        line.original_len = len;
        line.binary = binary;
        emit(line);
    }

    /// A bare `\r` followed by visible text: the new rendition replaces the old one.
    fn start_rendition(&mut self, s: &mut Stream) {
        s.cr_pending = false;
        if s.len > 0 {
            self.stats.folded_rewrites += 1;
        }
        s.buf.clear();
        s.len = 0;
    }

    fn finish_line(&mut self, s: &mut Stream, origin: Origin, emit: &mut impl FnMut(&Line)) {
        let binary = s.nul || (s.controls as f64) > (s.total as f64) * BINARY_CONTROL_RATIO;
        self.emit_line(&s.buf, s.len, s.total, binary, origin, emit);
        s.buf.clear();
        s.len = 0;
        s.controls = 0;
        s.total = 0;
        s.nul = false;
        s.cr_pending = false;
    }
}

/// Bytes copied as they are: printable ASCII and every byte ≥ 0x80 (UTF-8, validated later).
#[inline]
fn is_plain(b: u8) -> bool {
    b >= 0x20 && b != 0x7f
}

/// Length of the run of [plain](is_plain) bytes at the start of `bytes`. Looks at eight
/// bytes at a time: a line is mostly one such run, and this scan is the assembler's main cost.
#[inline]
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut n = 0;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        // Some byte below 0x20, or some byte equal to 0x7f (a zero byte of `x ^ 0x7f…`):
        // the classic "has less than" / "has zero" word tests.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let del = x ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del & HIGH;
        if control | del != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|&&b| is_plain(b)).count()
}

/// Appends `bytes` as UTF-8 text, with invalid sequences (including a multi-byte character
/// cut by the cap) replaced by U+FFFD.
fn push_lossy(text: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => text.push_str(s),
        Err(_) => text.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(pid: u32, fd: u32, ms: u64, bytes: &[u8]) -> OutputChunk {
        OutputChunk {
            pid,
            fd,
            at: Duration::from_millis(ms),
            bytes: bytes.to_vec(),
            written_len: bytes.len() as u64,
        }
    }

    fn assemble(limits: Limits, chunks: &[OutputChunk]) -> (Vec<Line>, AssemblyStats) {
        let mut a = LineAssembler::new(limits);
        let mut out = Vec::new();
        for c in chunks {
            a.push(c, |l| out.push(l.clone()));
        }
        a.flush(|l| out.push(l.clone()));
        (out, a.stats())
    }

    fn texts(chunks: &[OutputChunk]) -> Vec<String> {
        assemble(Limits::default(), chunks)
            .0
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn partial_writes_are_joined() {
        let got = texts(&[
            chunk(1, 1, 0, b"hel"),
            chunk(1, 1, 1, b"lo wor"),
            chunk(1, 1, 2, b"ld\nnext"),
        ]);
        assert_eq!(got, vec!["hello world", "next"]);
    }

    #[test]
    fn streams_are_assembled_separately_and_numbered_globally() {
        let (lines, _) = assemble(
            Limits::default(),
            &[
                chunk(1, 1, 0, b"out-a"),
                chunk(1, 2, 1, b"err-a\n"),
                chunk(2, 1, 2, b"other\n"),
                chunk(1, 1, 3, b"-rest\n"),
            ],
        );
        let got: Vec<(u64, u32, u32, &str)> = lines
            .iter()
            .map(|l| (l.seq, l.pid, l.fd, l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, 2, "err-a"),
                (2, 2, 1, "other"),
                (3, 1, 1, "out-a-rest")
            ]
        );
        assert_eq!(lines[2].at, Duration::from_millis(3));
    }

    #[test]
    fn carriage_return_rewrites_fold_into_final_rendition() {
        let (lines, stats) = assemble(
            Limits::default(),
            &[
                chunk(1, 1, 0, b"  10%\r  50%"),
                chunk(1, 1, 1, b"\r 100%\ndone\r\n"),
            ],
        );
        let got: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(got, vec![" 100%", "done"]);
        assert_eq!(stats.folded_rewrites, 2);
    }

    #[test]
    fn crlf_split_across_writes_is_a_plain_newline() {
        assert_eq!(
            texts(&[chunk(1, 1, 0, b"first\r"), chunk(1, 1, 1, b"\nsecond\n")]),
            vec!["first", "second"]
        );
    }

    #[test]
    fn trailing_carriage_return_keeps_last_rendition() {
        assert_eq!(
            texts(&[chunk(1, 1, 0, b"a\r\rb\r")]),
            vec!["b"],
            "a bare \\r without new text must not erase the line"
        );
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        let input = b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b(Bcs \x1b7saved\x1b[2K\n";
        assert_eq!(
            texts(&[chunk(1, 1, 0, input)]),
            vec!["red plain link cs saved"]
        );
    }

    #[test]
    fn escape_split_across_writes_is_stripped() {
        assert_eq!(
            texts(&[
                chunk(1, 1, 0, b"a\x1b"),
                chunk(1, 1, 1, b"[3"),
                chunk(1, 1, 2, b"2mb\n")
            ]),
            vec!["ab"]
        );
    }

    #[test]
    fn unterminated_osc_ends_at_newline() {
        assert_eq!(
            texts(&[chunk(1, 1, 0, b"x\x1b]0;never ends\nnext line\n")]),
            vec!["x", "next line"]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_lossily() {
        let got = texts(&[chunk(1, 1, 0, b"caf\xc3\xa9 \xff\xfe ok\n")]);
        assert_eq!(got, vec!["café \u{fffd}\u{fffd} ok"]);
    }

    #[test]
    fn long_lines_are_capped_with_original_length() {
        let limits = Limits {
            max_line_bytes: 16,
            ..Limits::default()
        };
        let mut long = vec![b'x'; 100];
        long.push(b'\n');
        long.extend_from_slice(b"short\n");
        let (lines, stats) = assemble(limits, &[chunk(1, 1, 0, &long)]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "x".repeat(16));
        assert!(lines[0].truncated);
        assert_eq!(lines[0].original_len, 100);
        assert!(!lines[1].truncated);
        assert_eq!(lines[1].original_len, 5);
        assert_eq!(stats.truncated_lines, 1);
    }

    #[test]
    fn binary_output_is_flagged_not_text() {
        let mut bin: Vec<u8> = (0u8..=255).cycle().take(2000).collect();
        bin.push(b'\n');
        bin.extend_from_slice(b"text again\n");
        let (lines, stats) = assemble(Limits::default(), &[chunk(1, 1, 0, &bin)]);
        assert!(lines.iter().any(|l| l.binary));
        assert!(lines.iter().filter(|l| l.binary).all(|l| l.text.is_empty()));
        assert_eq!(lines.last().map(|l| l.text.as_str()), Some("text again"));
        assert!(stats.binary_lines >= 1);
        assert!(stats.binary_bytes > 1000);
    }

    #[test]
    fn stream_count_is_bounded_by_evicting_oldest() {
        let limits = Limits {
            max_streams: 4,
            ..Limits::default()
        };
        let mut a = LineAssembler::new(limits);
        let mut out = Vec::new();
        for pid in 0..10u32 {
            a.push(&chunk(pid, 1, u64::from(pid), b"partial"), |l| {
                out.push(l.clone())
            });
            assert!(a.open_streams() <= 4);
        }
        assert_eq!(a.stats().evicted_streams, 6);
        // Evicted partial lines are not lost: they were emitted.
        assert_eq!(out.len(), 6);
        assert_eq!(out[0].pid, 0);
        a.flush(|l| out.push(l.clone()));
        assert_eq!(out.len(), 10);
        assert_eq!(a.open_streams(), 0);
    }

    #[test]
    fn uncaptured_bytes_are_counted() {
        let mut a = LineAssembler::default();
        let c = OutputChunk {
            pid: 1,
            fd: 1,
            at: Duration::ZERO,
            bytes: b"abc".to_vec(),
            written_len: 10,
        };
        a.push(&c, |_| {});
        assert_eq!(a.stats().uncaptured_bytes, 7);
    }

    #[test]
    fn plain_runs_stop_at_the_first_control_byte() {
        for b in (0u8..0x20).chain([0x7f]) {
            for at in 0..20 {
                let mut bytes = vec![b'x'; 24];
                bytes[at] = b;
                assert_eq!(plain_run(&bytes), at, "byte {b:#x} at {at}");
            }
        }
        assert_eq!(
            plain_run("héllo wörld, ok".as_bytes()),
            "héllo wörld, ok".len()
        );
        assert_eq!(plain_run(b""), 0);
    }

    proptest! {
        /// However the output is cut into writes, the same lines come out: a line that
        /// arrives whole in one write takes a shorter path than one assembled across writes.
        #[test]
        fn lines_do_not_depend_on_how_writes_are_cut(
            text in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(0x1b), Just(b'['), Just(b'm'), Just(0u8),
                    Just(b'\t'), Just(0xc3), Just(0xa9), 0x20u8..0x7f,
                ],
                0..300,
            ),
            cuts in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let limits = Limits { max_line_bytes: 16, ..Limits::default() };
            let whole = assemble(limits, &[chunk(1, 1, 0, &text)]);
            let mut chunks = Vec::new();
            let mut at = 0;
            for (k, cut) in cuts.iter().cycle().enumerate() {
                if at >= text.len() {
                    break;
                }
                let end = (at + cut).min(text.len());
                chunks.push(chunk(1, 1, k as u64, &text[at..end]));
                at = end;
            }
            let pieces = assemble(limits, &chunks);
            let strip = |lines: Vec<Line>| -> Vec<(String, bool, usize, bool)> {
                lines
                    .into_iter()
                    .map(|l| (l.text, l.truncated, l.original_len, l.binary))
                    .collect()
            };
            prop_assert_eq!(whole.1.lines, pieces.1.lines);
            prop_assert_eq!(whole.1.truncated_lines, pieces.1.truncated_lines);
            prop_assert_eq!(strip(whole.0), strip(pieces.0));
        }
    }

    #[test]
    fn blank_lines_are_lines() {
        assert_eq!(texts(&[chunk(1, 1, 0, b"a\n\nb\n")]), vec!["a", "", "b"]);
    }
}
