//! The output-loop detector: finds *periodic* sequences of line templates (a cycle of 1 to
//! [`MAX_PERIOD`] lines repeated back to back) and weighs whether the repetition is a runaway
//! or legitimate work.
//!
//! Periodicity is found cheaply: for every period `p` a run of consecutive lines whose
//! template equals the template `p` lines earlier is kept, and a line finds the earlier lines
//! with its template in one lookup, so it touches only the periods at which it repeats. A run
//! of `(k - 1) * p` lines means a `p`-line cycle has been seen `k` times. This runs on the merged sequence of all streams (so a loop that restarts
//! under new pids, or interleaves stdout and stderr in a fixed order, is one sequence) and,
//! once several streams write, also per `(pid, fd)` (so a loop next to a noisy healthy
//! neighbour is still seen).
//!
//! A detected cycle is then scored from its last repeats: repetitions, error and retry words,
//! and byte-identical repeats weigh towards runaway; counters that advance in otherwise
//! healthy lines (`step 120`, `45%`, `3/10`) and values that are new on every repeat (file
//! names, URLs, quoted names) weigh towards progress; a slow cycle without errors (from
//! timestamps in the text, else from arrival times) is a program waiting, not a runaway.
//! Volatile values (timestamps, UUIDs, hex ids, pids, durations, names carrying a hash or a
//! pid) are ignored for progress: they change on every line of a real loop. In a cycle that
//! fails (error or retry lines), numbers that merely change are ignored too, a number
//! stepping by one per repeat is read as a restart counter, i.e. evidence of a runaway, and
//! one rising by a few per repeat as an id handed out per attempt (a pid), not progress.
//!
//! Memory is bounded whatever the input length: a ring of the last [`HISTORY`] lines per
//! tracked sequence, a bounded number of per-stream sequences, and bounded novelty sets.

use std::collections::HashMap;
use std::time::Duration;

use crate::detect::lines::Line;
use crate::detect::normalize::{
    embeds_clock_time, is_id_like, normalize_into, Normalized, Placeholder, Role,
};
use crate::model::{Evidence, Finding, FindingKind, LoopEvidence};

/// Longest cycle looked for, in lines.
pub const MAX_PERIOD: usize = 64;

/// Lines kept per tracked sequence; enough for [`MAX_REPEATS_SCORED`] repeats of the longest
/// period.
pub const HISTORY: usize = 512;

/// Repeats of a cycle inspected when scoring it.
pub const MAX_REPEATS_SCORED: usize = 8;

/// An active cycle is scored again on every repeat up to this many repeats (the score's
/// repeat term saturates at about 24), and after that only when its repeats grew by an
/// eighth or [`RESCORE_AFTER`] of output time passed since it was last scored. Scoring
/// formats a finding; a one-line cycle repeating on every line of a million-line-a-second
/// write storm was most of sentry's CPU (`cargo xtask bench capture`), for a finding that
/// only the repeat count changed in. The finding's repeat count and latest lines may so lag
/// by at most an eighth or 50 ms of output.
const RESCORED_EVERY_REPEAT_UP_TO: usize = 32;

/// See [`RESCORED_EVERY_REPEAT_UP_TO`].
const RESCORE_AFTER: Duration = Duration::from_millis(50);

/// Per-stream sequences tracked at once (least recently written dropped first).
const MAX_STREAM_TRACKS: usize = 16;

/// Entries per novelty generation; two generations are kept (about 1 MiB each at most).
const NOVELTY_GENERATION: usize = 1 << 16;

/// Characters of each pattern/example line kept in evidence.
const EVIDENCE_LINE_CHARS: usize = 300;

/// Integers this large are clocks (epoch seconds or milliseconds), not progress counters.
const CLOCK_LIKE: f64 = 1e9;

/// Tunables of the loop detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopConfig {
    /// Longest period looked for (capped at [`MAX_PERIOD`]).
    pub max_period: usize,
    /// Repeats before a cycle is scored at all (a finding exists from then on).
    pub min_repeats: usize,
    /// A cycle slower than this without errors is waiting (polling), not looping.
    pub waiting_cycle: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_period: MAX_PERIOD,
            // Three repeats give a finding (scored low); the score crosses 0.5 at four
            // repeats with error lines and at five without, per the detection target.
            min_repeats: 3,
            waiting_cycle: Duration::from_secs(1),
        }
    }
}

/// Cumulative output-progress signals, for detectors that need "is it still doing new
/// things?" (the CPU-burn detector vetoes on these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressCounters {
    /// Text lines seen (binary and blank lines excluded).
    pub lines: u64,
    /// Lines with a template never seen before or a new non-volatile value.
    pub novel_lines: u64,
    /// Binary lines seen (not analysed).
    pub binary_lines: u64,
}

/// A set of line hashes: open addressing with linear probing in a plain array, grown by
/// doubling so that it is at most half full. The novelty sets are the detector's largest
/// structures (about 1 MiB per generation), beyond the core's own cache, so each probe is
/// one cache line here where a general hash set touched a control byte and a bucket.
#[derive(Default)]
struct HashSlots {
    /// The hashes, 0 marking an empty slot; a length of zero or a power of two.
    slots: Vec<u64>,
    /// Hashes in `slots`.
    len: usize,
    /// Whether the hash 0 (which cannot be stored in `slots`) is in the set.
    zero: bool,
}

impl HashSlots {
    fn len(&self) -> usize {
        self.len + usize::from(self.zero)
    }

    /// Where `h` (not 0) is, or else the empty slot where it would go. Hashes are well
    /// mixed, so their top bits choose the first slot.
    fn probe(&self, h: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = (h >> (64 - self.slots.len().trailing_zeros())) as usize;
        loop {
            match self.slots[i] {
                k if k == h => return Ok(i),
                0 => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn contains(&self, h: u64) -> bool {
        if h == 0 {
            return self.zero;
        }
        !self.slots.is_empty() && self.probe(h).is_ok()
    }

    /// Inserts `h`; true when it was not there.
    fn insert(&mut self, h: u64) -> bool {
        if h == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.probe(h) {
            Ok(_) => false,
            Err(i) => {
                self.slots[i] = h;
                self.len += 1;
                true
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for h in old.into_iter().filter(|&h| h != 0) {
            if let Err(i) = self.probe(h) {
                self.slots[i] = h;
            }
        }
    }
}

/// A set of hashes with bounded memory: when the current generation fills, it becomes the
/// previous one and the oldest generation is forgotten.
#[derive(Default)]
struct NoveltySet {
    current: HashSlots,
    previous: HashSlots,
}

impl NoveltySet {
    /// Inserts `h`; true when it was not known.
    fn insert(&mut self, h: u64) -> bool {
        if self.current.contains(h) || self.previous.contains(h) {
            return false;
        }
        if self.current.len() >= NOVELTY_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(h);
        true
    }
}

/// One value of a remembered line.
#[derive(Debug, Clone, Copy)]
struct EntryValue {
    kind: Placeholder,
    /// Changes by itself (a clock, an id, a pid, a hash): never a sign of progress.
    volatile: bool,
    /// Named as a progress counter (`step 3`, `offset 250`, `3/10`, `45%`).
    counter: bool,
    /// Hash of the value's text.
    hash: u64,
    /// Byte range of the value in the line's raw text.
    start: u32,
    end: u32,
    num: Option<f64>,
    /// Never seen before in this template slot (a sign of new work).
    novel: bool,
}

/// Per-line value information computed once and shared by every track.
#[derive(Debug, Default)]
struct ValueInfo {
    /// The line's values as every track remembers them.
    values: Vec<EntryValue>,
    exact: u64,
}

/// A remembered line.
#[derive(Debug, Default, Clone)]
struct Entry {
    seq: u64,
    at: Duration,
    error: bool,
    retry: bool,
    /// A wait word (`waiting`, `sleeping`): a retry line with one announces a wait.
    sleep: bool,
    /// A word reporting finished work (`done`, `completed`, `processed`).
    progress: bool,
    /// Seconds the line says the program pauses (`sleeping 1s`, `retrying in 5s`).
    pause_s: f64,
    template: String,
    raw: String,
    values: Vec<EntryValue>,
}

/// A cycle currently repeating in one sequence.
#[derive(Debug, Clone)]
struct Active {
    period: usize,
    first_line: u64,
    repeats: usize,
    finding: Finding,
}

/// Whether an active cycle that now has `repeats` repeats is to be scored again (see
/// [`RESCORED_EVERY_REPEAT_UP_TO`]).
fn rescore_due(active: &Active, repeats: usize, at: Duration) -> bool {
    repeats <= RESCORED_EVERY_REPEAT_UP_TO
        || repeats >= active.repeats + active.repeats / 8
        || at.saturating_sub(active.finding.at) >= RESCORE_AFTER
}

/// For one kind of line hash, which lines equal the line `p` earlier, for every period `p`
/// at once.
///
/// The obvious way, comparing each new line with each of the last [`MAX_PERIOD`] lines,
/// costs `MAX_PERIOD` comparisons per line and was most of the detector's time. Here each
/// hash among the last `MAX_PERIOD` lines maps to the ring slots holding it, so a line finds
/// its earlier equals with one lookup and touches only the periods at which it repeats. A
/// run is kept as the line at which it began rather than as a count, so the periods at which
/// the line does not repeat need no update either.
struct Repeats {
    /// Hash of the line in each ring slot (line `m` is in slot `m % MAX_PERIOD`).
    slots: [u64; MAX_PERIOD],
    /// For each hash among the last `MAX_PERIOD` lines, the slots holding it (one bit each).
    holders: Holders,
    /// Bit `p - 1`: the latest line equals the line `p` earlier (for tracked periods).
    matched: u64,
    /// `since[p - 1]`: the line at which the current run of equal lines at period `p` began.
    since: [usize; MAX_PERIOD],
}

// Periods are bits of a u64.
const _: () = assert!(MAX_PERIOD <= 64);

impl Repeats {
    fn new() -> Self {
        Repeats {
            slots: [0; MAX_PERIOD],
            holders: Holders::new(),
            matched: 0,
            since: [0; MAX_PERIOD],
        }
    }

    /// Records line `n` with hash `h`, for the periods up to `maxp` (the others never
    /// match: a period beyond the configured maximum or beyond the lines seen is not
    /// tracked).
    fn push(&mut self, n: usize, h: u64, maxp: usize) {
        let slot = n % MAX_PERIOD;
        // The slot now holds line `n`.
        let mut holders = self.holders.add(h, 1 << slot);
        let mut matched = 0u64;
        while holders != 0 {
            // Slot `s` holds the line `p` earlier, `p` in 1..=MAX_PERIOD (the slot about to
            // be reused holds the line MAX_PERIOD earlier).
            let s = holders.trailing_zeros() as usize;
            holders &= holders - 1;
            let p = (n + MAX_PERIOD - 1 - s) % MAX_PERIOD + 1;
            if p <= maxp {
                matched |= 1 << (p - 1);
            }
        }
        let mut begun = matched & !self.matched;
        while begun != 0 {
            self.since[begun.trailing_zeros() as usize] = n;
            begun &= begun - 1;
        }
        self.matched = matched;
        // ...and no longer the line MAX_PERIOD earlier, unless that one had the same hash.
        let old = self.slots[slot];
        if n >= MAX_PERIOD && old != h {
            self.holders.remove(old, 1 << slot);
        }
        self.slots[slot] = h;
    }

    /// The periods at which the latest line repeats, in increasing order.
    fn matched_periods(&self) -> impl Iterator<Item = usize> {
        let mut bits = self.matched;
        std::iter::from_fn(move || {
            let p = bits.trailing_zeros() as usize + 1;
            bits &= bits.checked_sub(1)?;
            Some(p)
        })
    }

    /// Consecutive lines up to line `last` (the latest pushed) equal to the line `p`
    /// earlier (`1 <= p <= MAX_PERIOD`). Counted in a `u32` like the per-period counters
    /// this replaces.
    fn run(&self, last: usize, p: usize) -> u32 {
        if self.matched >> (p - 1) & 1 == 0 {
            return 0;
        }
        (last + 1 - self.since[p - 1]) as u32
    }
}

/// Slots of [`Holders`]: a power of two, twice the most keys it holds (one per ring slot).
const HOLDER_SLOTS: usize = 2 * MAX_PERIOD;
const _: () = assert!(HOLDER_SLOTS.is_power_of_two());

/// A map from line hash to ring-slot bits, for at most [`MAX_PERIOD`] hashes: open
/// addressing with linear probing in a fixed table, an entry being empty when it holds no
/// slot. Small enough to stay in cache; a general hash map cost several times more per line.
struct Holders {
    keys: [u64; HOLDER_SLOTS],
    bits: [u64; HOLDER_SLOTS],
}

impl Holders {
    fn new() -> Self {
        Holders {
            keys: [0; HOLDER_SLOTS],
            bits: [0; HOLDER_SLOTS],
        }
    }

    /// Where the probe for `h` starts (line hashes are well mixed: their top bits will do).
    fn home(h: u64) -> usize {
        (h >> (64 - HOLDER_SLOTS.trailing_zeros())) as usize
    }

    /// Adds `bit` to the slots of `h`; returns the slots it had before.
    fn add(&mut self, h: u64, bit: u64) -> u64 {
        let mut i = Self::home(h);
        loop {
            if self.bits[i] == 0 {
                self.keys[i] = h;
                self.bits[i] = bit;
                return 0;
            }
            if self.keys[i] == h {
                let before = self.bits[i];
                self.bits[i] |= bit;
                return before;
            }
            i = (i + 1) % HOLDER_SLOTS;
        }
    }

    /// Takes `bit` from the slots of `h`, forgetting `h` when it has none left.
    fn remove(&mut self, h: u64, bit: u64) {
        let mut i = Self::home(h);
        while self.keys[i] != h || self.bits[i] == 0 {
            if self.bits[i] == 0 {
                return;
            }
            i = (i + 1) % HOLDER_SLOTS;
        }
        self.bits[i] &= !bit;
        if self.bits[i] != 0 {
            return;
        }
        // Backward-shift deletion: move later entries of the probe run into the hole when
        // their probe started at or before it, so that every lookup still finds its key.
        let mut hole = i;
        let mut j = (i + 1) % HOLDER_SLOTS;
        while self.bits[j] != 0 {
            let home = Self::home(self.keys[j]);
            let from_home = j.wrapping_sub(home) % HOLDER_SLOTS;
            let from_hole = j.wrapping_sub(hole) % HOLDER_SLOTS;
            if from_home >= from_hole {
                self.keys[hole] = self.keys[j];
                self.bits[hole] = self.bits[j];
                self.bits[j] = 0;
                hole = j;
            }
            j = (j + 1) % HOLDER_SLOTS;
        }
    }
}

/// Periodicity tracking over one sequence of lines.
struct Track {
    /// Repeats of the template hash.
    repeats: Repeats,
    /// Repeats of the template hash combined with the line's non-volatile values: equal
    /// only when the line really repeats (same file, same name), not merely has the same
    /// shape.
    exact_repeats: Repeats,
    entries: Vec<Entry>,
    /// Lines pushed so far.
    n: usize,
    active: Option<Active>,
    last_write: u64,
}

impl Track {
    fn new() -> Self {
        Track {
            repeats: Repeats::new(),
            exact_repeats: Repeats::new(),
            entries: vec![Entry::default(); HISTORY],
            n: 0,
            active: None,
            last_write: 0,
        }
    }

    fn entry(&self, pos: usize) -> &Entry {
        &self.entries[pos % HISTORY]
    }

    /// Consecutive lines up to the latest equal to the line `p` earlier (`1 <= p <=
    /// MAX_PERIOD`).
    fn run(&self, p: usize) -> u32 {
        self.repeats.run(self.n - 1, p)
    }

    /// Like [`run`](Self::run), over the exact hashes.
    fn exact_run(&self, p: usize) -> u32 {
        self.exact_repeats.run(self.n - 1, p)
    }

    /// Adds a line; returns true when the active cycle gained a repeat and was scored again
    /// (its finding is then [`scored`](Self::scored)). A finding is a large value and most
    /// lines score nothing, so it stays here until the caller picks one to copy out.
    fn push(&mut self, cfg: &LoopConfig, norm: &Normalized, line: &Line, vals: &ValueInfo) -> bool {
        let h = norm.hash;
        let x = vals.exact;
        let maxp = cfg.max_period.clamp(1, MAX_PERIOD).min(self.n);
        let need = cfg.min_repeats.max(2) - 1;
        // The cycle that explains the most lines: a long cycle (a 64-line crash dump) can
        // contain a short repeating stretch (`init stage 1/8`…), which must not hide it.
        // Among equally long runs the shortest period wins (a 2-line loop is also a
        // 4-line one).
        self.repeats.push(self.n, h, maxp);
        self.exact_repeats.push(self.n, x, maxp);
        let idx = self.n % HISTORY;
        let e = &mut self.entries[idx];
        e.seq = line.seq;
        e.at = line.at;
        e.error = norm.signals.error;
        e.retry = norm.signals.retry;
        e.sleep = norm.signals.sleep;
        e.progress = norm.signals.progress;
        e.pause_s = if norm.signals.sleep || norm.signals.retry {
            norm.values
                .iter()
                .filter(|v| v.kind == Placeholder::Duration)
                .filter_map(|v| v.num)
                .fold(0.0, f64::max)
        } else {
            0.0
        };
        e.template.clone_from(&norm.template);
        e.raw.clone_from(&line.text);
        e.values.clone_from(&vals.values);
        self.n += 1;

        // Only the periods at which the line repeats can qualify, in increasing order.
        let mut best: Option<usize> = None;
        for p in self.repeats.matched_periods() {
            let run = self.run(p);
            if run as usize >= need * p && best.is_none_or(|b| run > self.run(b)) {
                best = Some(p);
            }
        }

        if let Some(active) = &self.active {
            let p = active.period;
            let longer = best.is_some_and(|q| q != p && self.run(q) > self.run(p));
            if self.run(p) > 0 && !longer {
                let repeats = self.run(p) as usize / p + 1;
                if repeats > active.repeats && rescore_due(active, repeats, line.at) {
                    let first = active.first_line;
                    self.evaluate(cfg, p, repeats, first, line);
                    return true;
                }
                return false;
            }
            self.active = None;
        }
        let Some(found) = best else {
            return false;
        };
        let repeats = self.run(found) as usize / found + 1;
        let start = self.n - (self.run(found) as usize + found);
        let first = self.entry(start).seq;
        self.evaluate(cfg, found, repeats, first, line);
        true
    }

    /// The finding of the cycle scored by the latest [`push`](Self::push) that returned true.
    fn scored(&self) -> Option<&Finding> {
        self.active.as_ref().map(|a| &a.finding)
    }

    /// Scores the cycle of `period` lines that just completed `repeats` repeats; the finding
    /// becomes the active one.
    fn evaluate(
        &mut self,
        cfg: &LoopConfig,
        period: usize,
        repeats: usize,
        first_line: u64,
        line: &Line,
    ) {
        let r = repeats.min(MAX_REPEATS_SCORED).min(HISTORY / period);
        let last = self.n - 1;
        // Position of line `j` of the cycle `k` repeats back (k = 0 is the latest).
        let pos = |j: usize, k: usize| last + 1 - period + j - k * period;

        let mut error_lines = 0usize;
        // Retry lines that do not announce a wait (`Retrying request in 1000 ms`): the
        // previous attempt failed even when no error word says so.
        let mut failing_retries = 0usize;
        let mut retry_lines = 0usize;
        // At most four progress notes are shown (strong ones first), and one of each other
        // kind; the rest are only counted.
        let mut strong = Notes::new(4);
        let mut weak = Notes::new(4);
        let mut restart_counters = Notes::new(1);
        let mut budgets = Notes::new(1);
        let mut allocated_ids = Notes::new(1);
        let mut nums_buf = [0.0; MAX_REPEATS_SCORED];
        let mut ids_noted: Vec<usize> = Vec::new();
        let mut identical = true;
        // Counters only speak for progress in a cycle without errors: a retry loop numbers
        // its attempts too.
        let erring_cycle =
            (0..period).any(|j| self.entry(pos(j, 0)).error || self.entry(pos(j, 0)).retry);
        for j in 0..period {
            let latest = self.entry(pos(j, 0));
            error_lines += usize::from(latest.error);
            retry_lines += usize::from(latest.retry);
            failing_retries += usize::from(latest.retry && !latest.sleep && !latest.error);
            let healthy_line = !latest.error && !latest.retry;
            if (1..r).any(|k| self.entry(pos(j, k)).raw != latest.raw) {
                identical = false;
            }
            let nvals = (0..r)
                .map(|k| self.entry(pos(j, k)).values.len())
                .min()
                .unwrap_or(0);
            for s in 0..nvals {
                let v0 = latest.values[s];
                if erring_cycle && r >= 3 && v0.kind == Placeholder::Int {
                    // Before the volatile test: the count sits next to a retry word, which
                    // marks numbers as volatile (`retrying (29 left)`).
                    let nums = collect_nums(
                        &mut nums_buf,
                        (0..r).rev().map(|k| self.entry(pos(j, k)).values[s].num),
                    );
                    if let Some(nums) = nums.filter(|n| countdown(n)) {
                        // A whole number falling by one on every repeat of a failing
                        // cycle (`29 retries left`, `remaining attempts: 3`) is a retry
                        // budget: the program bounds its own retries and stops at zero,
                        // and a budget that is being spent usually means a check that
                        // is expected to come good (a service starting up). Counting up
                        // has no such end, so it stays a restart counter.
                        budgets.push(|| {
                            format!(
                                "{} in line {} of the cycle counts down by one per repeat \
                                 ({} → {}): a bounded retry budget",
                                v0.kind,
                                j + 1,
                                fmt_num(nums[0]),
                                fmt_num(nums[nums.len() - 1]),
                            )
                        });
                        continue;
                    }
                }
                if (0..r).any(|k| self.entry(pos(j, k)).values[s].volatile) {
                    // A line reporting finished work (`job done`, `processed`) with a
                    // different id on every repeat is finishing different items: a worker
                    // draining a queue, not a loop. Not so in a failing cycle (a retry
                    // loop mints a new request id per attempt).
                    if !erring_cycle
                        && latest.progress
                        && r >= 2
                        && (1..r).all(|k| {
                            self.entry(pos(j, k)).values[s].hash
                                != self.entry(pos(j, k - 1)).values[s].hash
                        })
                        && !ids_noted.contains(&j)
                    {
                        ids_noted.push(j);
                        weak.push(|| {
                            format!(
                                "line {} of the cycle reports finished work with a new {} \
                                 each time",
                                j + 1,
                                v0.kind
                            )
                        });
                    }
                    continue;
                }
                // Chronological order: oldest repeat first.
                let mut series_buf = [v0; MAX_REPEATS_SCORED];
                for (slot, k) in series_buf.iter_mut().zip((0..r).rev()) {
                    *slot = self.entry(pos(j, k)).values[s];
                }
                let series = &series_buf[..r];
                match v0.kind {
                    Placeholder::Int | Placeholder::Float => {
                        if r < 3 {
                            continue;
                        }
                        let Some(nums) = collect_nums(&mut nums_buf, series.iter().map(|v| v.num))
                        else {
                            continue;
                        };
                        if nums.iter().any(|x| x.abs() >= CLOCK_LIKE) {
                            continue;
                        }
                        if !healthy_line {
                            continue;
                        }
                        // Non-strict: a rollout reports `1 out of 10` a few times before `2`.
                        let up = nums.windows(2).all(|w| w[1] >= w[0]) && nums[r - 1] > nums[0];
                        let down = nums.windows(2).all(|w| w[1] <= w[0]) && nums[r - 1] < nums[0];
                        let novel = if up || down {
                            series.iter().any(|v| v.novel)
                        } else {
                            series.iter().all(|v| v.novel)
                        };
                        if erring_cycle && !(up || down) {
                            // In a cycle that fails, numbers that merely change are process
                            // ids, transaction ids, byte counts: nothing says work advanced.
                            continue;
                        }
                        if erring_cycle && !series.iter().any(|v| v.counter) && unit_step(nums) {
                            // A number stepping by one on every repeat of a failing cycle
                            // counts the failures (restart counter, generation id): runaway
                            // evidence, not progress. A named progress counter (`offset`,
                            // `page`, `n/m`) or a larger step (a page size) is a position
                            // that advances, so it still weighs towards progress.
                            restart_counters.push(|| {
                                format!(
                                    "{} in line {} of the cycle steps by one per repeat \
                                     ({} → {}) while the cycle fails: a restart or retry counter",
                                    v0.kind,
                                    j + 1,
                                    fmt_num(nums[0]),
                                    fmt_num(nums[nums.len() - 1]),
                                )
                            });
                            continue;
                        }
                        if erring_cycle && !series.iter().any(|v| v.counter) && allocated_id(nums) {
                            // A number rising by a few on every repeat of a failing cycle
                            // (`worker 4102 started` after `worker 4100 exited on SIGSEGV`,
                            // then 4107 after 4105…) is an identifier handed out per attempt:
                            // a pid, a connection or generation number, the gaps taken by
                            // whatever else ran meanwhile. Work moves by its own stride (a page, a
                            // batch, bytes) or names its counter; a fresh id for each crashed
                            // child is no more progress than the crash itself. Checked after
                            // the unit step, which says more (it counts the failures).
                            allocated_ids.push(|| {
                                format!(
                                    "{} in line {} of the cycle rises by a few per repeat \
                                     ({} → {}) while the cycle fails: an id handed out per \
                                     attempt (a pid, a generation), not progress",
                                    v0.kind,
                                    j + 1,
                                    fmt_num(nums[0]),
                                    fmt_num(nums[nums.len() - 1]),
                                )
                            });
                            continue;
                        }
                        let kind = if up || down { "counter" } else { "value" };
                        let what = || {
                            format!(
                                "{kind} {} in line {} of the cycle {} ({} → {})",
                                v0.kind,
                                j + 1,
                                match (up, down, novel) {
                                    (true, _, true) => "advances to new values",
                                    (true, _, false) => "advances",
                                    (_, true, _) => "counts down",
                                    _ => "takes new values",
                                },
                                fmt_num(nums[0]),
                                fmt_num(nums[nums.len() - 1]),
                            )
                        };
                        // A counter reaching values never seen before is new work; one that
                        // climbs the same steps again (a retry loop restarting at step 1),
                        // or a value that is merely new, is a hint only.
                        if (up || down) && novel && !erring_cycle {
                            strong.push(what);
                        } else if up || down || novel {
                            weak.push(what);
                        }
                    }
                    _ => {
                        if r >= 2
                            && series.iter().all(|v| v.novel)
                            && !self.embeds_volatile_number(period, &pos, j, s)
                            && !(erring_cycle && self.embeds_clock_time(&pos, j, s))
                        {
                            strong.push(|| {
                                format!(
                                    "a new {} on every repeat in line {} of the cycle",
                                    v0.kind,
                                    j + 1
                                )
                            });
                        }
                    }
                }
            }
        }

        let declared: f64 = (0..period).map(|j| self.entry(pos(j, 0)).pause_s).sum();
        let cycle_s = self
            .cycle_seconds(period, r, &pos)
            .map(|c| c.max(declared))
            .or((declared > 0.0).then_some(declared));
        let slow = cycle_s.is_some_and(|c| c >= cfg.waiting_cycle.as_secs_f64());
        let waiting = error_lines == 0 && failing_retries == 0 && slow;

        let strong_n = strong.count.min(2);
        let weak_n = weak.count.min(2);
        // When every repeat does new work, more repeats are more work, not more evidence.
        let rep_cap = if strong_n > 0 {
            0.0
        } else if weak_n > 0 {
            1.0
        } else {
            3.0
        };
        let rep_term = (1.8 * (repeats as f64 / 5.0).ln() + 0.2).clamp(-3.0, rep_cap);
        let mut logit = rep_term;
        let mut reasons = vec![format!(
            "cycle of {period} line(s) repeated {repeats} times"
        )];
        if error_lines + retry_lines > 0 {
            logit += 1.5;
            reasons.push(format!(
                "{error_lines} error and {retry_lines} retry line(s) per cycle"
            ));
        }
        if identical && r >= 2 {
            logit += 0.5;
            reasons.push("repeats are byte-identical".to_owned());
        }
        if let Some(c) = restart_counters.shown.first() {
            logit += 0.3;
            reasons.push(c.clone());
        }
        logit -= 2.5 * strong_n as f64 + 1.5 * weak_n as f64;
        for s in strong.shown.iter().chain(weak.shown.iter()).take(4) {
            reasons.push(format!("progress: {s}"));
        }
        if let Some(c) = cycle_s {
            if waiting {
                logit -= 4.0;
                reasons.push(format!(
                    "slow cycle ({c:.1} s per repeat) without errors: waiting or polling"
                ));
            } else if slow {
                reasons.push(format!("slow retry ({c:.1} s per repeat) despite errors"));
            } else {
                reasons.push(format!("{c:.3} s per repeat"));
            }
        }
        if let Some(b) = budgets.shown.first() {
            reasons.push(b.clone());
        }
        if let Some(i) = allocated_ids.shown.first() {
            reasons.push(i.clone());
        }
        if !waiting && (slow || budgets.count > 0) {
            // A slow retry of a failing step, or one spending a bounded retry budget, may
            // still come good (a service that comes up after a few attempts): it gets the
            // benefit of the doubt for four repeats, and still crosses the alert level at
            // the fifth, per the detection target; the decision engine chooses the action.
            // Given once: both signs say the same thing, and stacking them would hide a
            // retry that never succeeds past the fifth repeat.
            logit -= 1.5;
        }
        let score = 1.0 / (1.0 + (-logit).exp());

        // Same-shaped lines may cycle through a fixed set of values (an agent re-reading the
        // same 40 files): report the cycle of exact repeats once one full cycle is seen.
        let (ev_period, ev_repeats) = if strong_n == 0 {
            // Only periods at which the latest line repeats exactly have a run at all.
            self.exact_repeats
                .matched_periods()
                .filter(|&q| q >= period && q <= self.n / 2 && q % period == 0)
                .find(|&q| self.exact_run(q) as usize >= q)
                .map(|q| (q, self.exact_run(q) as usize / q + 1))
                .filter(|&(q, _)| q > period && self.exact_run(period) == 0)
                .unwrap_or((period, repeats))
        } else {
            (period, repeats)
        };
        if ev_period != period {
            reasons.push(format!(
                "the same {ev_period}-line block of values repeats {ev_repeats} times"
            ));
        }
        let period_ev = ev_period;
        let first_of = last + 1 - period_ev;
        let pattern: Vec<String> = (0..period_ev)
            .map(|j| clip(&self.entry(first_of + j).template))
            .collect();
        let example: Vec<String> = (0..period_ev)
            .map(|j| clip(&self.entry(first_of + j).raw))
            .collect();
        let mut summary = format!("period {period_ev}, {repeats} repeats");
        if error_lines > 0 {
            summary.push_str(&format!(", {error_lines} error line(s) per cycle"));
        }
        if strong_n + weak_n > 0 {
            summary.push_str(", with progress");
        }
        if waiting {
            summary.push_str(", slow (waiting)");
        }
        let finding = Finding {
            kind: FindingKind::OutputLoop,
            score,
            at: line.at,
            summary,
            reasons,
            evidence: Evidence::Loop(LoopEvidence {
                period: period_ev,
                repeats: if period_ev == period {
                    repeats
                } else {
                    ev_repeats
                },
                pattern,
                example,
                first_line,
                last_line: line.seq,
            }),
        };
        self.active = Some(Active {
            period,
            first_line,
            repeats,
            finding,
        });
    }

    /// True when value `s` of line `j` (in the latest repeat) contains the digits of a
    /// volatile number of the same repeat, like `crash-36816.txt` next to `pid 36816`: a
    /// name built from a pid or an id is as volatile as the number itself.
    fn embeds_volatile_number(
        &self,
        period: usize,
        pos: &dyn Fn(usize, usize) -> usize,
        j: usize,
        s: usize,
    ) -> bool {
        fn text_of<'e>(e: &'e Entry, v: &EntryValue) -> &'e str {
            e.raw.get(v.start as usize..v.end as usize).unwrap_or("")
        }
        let line = self.entry(pos(j, 0));
        let Some(value) = line.values.get(s) else {
            return false;
        };
        let text = text_of(line, value);
        (0..period).any(|jj| {
            let e = self.entry(pos(jj, 0));
            e.values.iter().any(|v| {
                if !(v.volatile && v.kind == Placeholder::Int) {
                    return false;
                }
                let n = text_of(e, v);
                // Short numbers (`2`, `42`) occur in names by chance.
                n.len() >= 3 && text.contains(n)
            })
        })
    }

    /// True when value `s` of line `j` (in the latest repeat) is a name stamped with a date
    /// and a time of day (`…/_logs/2025-11-20T09_15_23Z-debug.log`). In a failing cycle
    /// such a name is the record of the attempt (a debug log, a crash dump), written anew
    /// on every repeat of a real loop; in a healthy cycle it may be new output (a
    /// checkpoint, a snapshot), so there it still counts as progress.
    fn embeds_clock_time(&self, pos: &dyn Fn(usize, usize) -> usize, j: usize, s: usize) -> bool {
        let line = self.entry(pos(j, 0));
        line.values
            .get(s)
            .and_then(|v| line.raw.get(v.start as usize..v.end as usize))
            .is_some_and(embeds_clock_time)
    }

    /// Seconds per repeat: from the first timestamp value of the cycle's first line when the
    /// text has one, else from arrival times.
    fn cycle_seconds(
        &self,
        period: usize,
        r: usize,
        pos: &dyn Fn(usize, usize) -> usize,
    ) -> Option<f64> {
        if r < 2 {
            return None;
        }
        let clock = |e: &Entry| {
            e.values
                .iter()
                .find(|v| matches!(v.kind, Placeholder::Timestamp | Placeholder::Time))
                .and_then(|v| v.num)
        };
        for j in 0..period {
            let newest = self.entry(pos(j, 0));
            let oldest = self.entry(pos(j, r - 1));
            if let (Some(a), Some(b)) = (clock(oldest), clock(newest)) {
                if b >= a {
                    return Some((b - a) / (r - 1) as f64);
                }
            }
        }
        let newest = self.entry(pos(0, 0)).at;
        let oldest = self.entry(pos(0, r - 1)).at;
        let arrival = newest.saturating_sub(oldest).as_secs_f64() / (r - 1) as f64;
        // Without a clock in the text, a duration that grows on every repeat (`[20s
        // elapsed]`, a pod's age) is one: its step is the time per repeat. Three repeats
        // at least, strictly growing, so that a random `took 12ms` is not read as a clock.
        let mut elapsed: Option<f64> = None;
        if r >= 3 {
            for j in 0..period {
                let nvals = (0..r)
                    .map(|k| self.entry(pos(j, k)).values.len())
                    .min()
                    .unwrap_or(0);
                for s in 0..nvals {
                    let mut buf = [0.0; MAX_REPEATS_SCORED];
                    let series = collect_nums(
                        &mut buf,
                        (0..r).rev().map(|k| {
                            let v = self.entry(pos(j, k)).values[s];
                            (v.kind == Placeholder::Duration).then_some(v.num).flatten()
                        }),
                    );
                    let Some(series) = series else { continue };
                    if series.windows(2).all(|w| w[1] > w[0]) {
                        let step = (series[r - 1] - series[0]) / (r - 1) as f64;
                        elapsed = Some(elapsed.map_or(step, |e: f64| e.max(step)));
                    }
                }
            }
        }
        Some(elapsed.map_or(arrival, |e| e.max(arrival)))
    }
}

/// Notes of one kind found while scoring a cycle: how many, and the text of the first few.
/// Only those few can reach the finding, so the others are never formatted (scoring runs on
/// every repeat of a loop, i.e. on every line of a one-line loop).
struct Notes {
    count: usize,
    shown: Vec<String>,
    keep: usize,
}

impl Notes {
    fn new(keep: usize) -> Self {
        Notes {
            count: 0,
            shown: Vec::new(),
            keep,
        }
    }

    fn push(&mut self, text: impl FnOnce() -> String) {
        if self.shown.len() < self.keep {
            self.shown.push(text());
        }
        self.count += 1;
    }
}

/// The numbers of a series of at most [`MAX_REPEATS_SCORED`] values, in `buf`; `None` when
/// one of them has none.
fn collect_nums(
    buf: &mut [f64; MAX_REPEATS_SCORED],
    nums: impl Iterator<Item = Option<f64>>,
) -> Option<&[f64]> {
    let mut n = 0;
    for x in nums {
        buf[n] = x?;
        n += 1;
    }
    Some(&buf[..n])
}

/// True when the values are whole numbers falling by exactly one from each to the next.
fn countdown(nums: &[f64]) -> bool {
    nums.len() >= 2
        && nums.iter().all(|x| x.fract() == 0.0 && *x >= 0.0)
        && nums.windows(2).all(|w| w[1] - w[0] == -1.0)
}

/// True when the values step by exactly one (up or down) from each to the next.
fn unit_step(nums: &[f64]) -> bool {
    let Some(step) = nums.windows(2).map(|w| w[1] - w[0]).next() else {
        return false;
    };
    step.abs() == 1.0 && nums.windows(2).all(|w| w[1] - w[0] == step)
}

/// Largest step per repeat of a number still read as an allocated id (see
/// [`allocated_id`]). Between two respawns of a crashing child a host hands out a few pids
/// to other processes (cron, shells, probes), and a shared store bumps a version number a
/// few times; a stride through work (a page of rows, a batch, bytes) is larger and usually
/// named (`offset`, `page`, `n/m`), which exempts it anyway.
const ALLOCATED_ID_STEP: f64 = 16.0;

/// True when the values are whole numbers rising by 1 to [`ALLOCATED_ID_STEP`] at every
/// step.
fn allocated_id(nums: &[f64]) -> bool {
    nums.len() >= 3
        && nums.iter().all(|x| x.fract() == 0.0)
        && nums
            .windows(2)
            .all(|w| (1.0..=ALLOCATED_ID_STEP).contains(&(w[1] - w[0])))
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.4}")
    }
}

fn clip(s: &str) -> String {
    // No more bytes than the limit, so no more characters either.
    if s.len() <= EVIDENCE_LINE_CHARS {
        return s.to_owned();
    }
    match s.char_indices().nth(EVIDENCE_LINE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Finds output loops in a stream of [`Line`]s; see the module documentation.
pub struct LoopDetector {
    cfg: LoopConfig,
    norm: Normalized,
    vals: ValueInfo,
    global: Track,
    streams: HashMap<(u32, u32), Track>,
    first_stream: Option<(u32, u32)>,
    multi_stream: bool,
    templates: NoveltySet,
    values: NoveltySet,
    counters: ProgressCounters,
    writes: u64,
}

impl Default for LoopDetector {
    fn default() -> Self {
        Self::new(LoopConfig::default())
    }
}

impl LoopDetector {
    /// A detector with the given configuration.
    pub fn new(cfg: LoopConfig) -> Self {
        LoopDetector {
            cfg,
            norm: Normalized::default(),
            vals: ValueInfo::default(),
            global: Track::new(),
            streams: HashMap::new(),
            first_stream: None,
            multi_stream: false,
            templates: NoveltySet::default(),
            values: NoveltySet::default(),
            counters: ProgressCounters::default(),
            writes: 0,
        }
    }

    /// Cumulative line and novel-line counts (a progress signal for other detectors).
    pub fn progress_counters(&self) -> ProgressCounters {
        self.counters
    }

    /// The normalised form of the line last observed.
    pub fn last_normalized(&self) -> &Normalized {
        &self.norm
    }

    /// The finding of the strongest loop still repeating, if any.
    pub fn current(&self) -> Option<&Finding> {
        std::iter::once(&self.global)
            .chain(self.streams.values())
            .filter_map(|t| t.active.as_ref())
            .map(|a| &a.finding)
            .max_by(|a, b| a.score.total_cmp(&b.score))
    }

    /// Feeds one line. Returns a finding when a loop was scored on this line (a new loop, or
    /// an active loop completing another repeat); the strongest one when several sequences
    /// scored.
    pub fn observe(&mut self, line: &Line) -> Option<Finding> {
        if line.binary {
            self.counters.binary_lines += 1;
            return None;
        }
        // Blank lines and rulers (`-----`) carry nothing; skipping them keeps a cycle that
        // contains them periodic.
        if !line.text.bytes().any(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        self.counters.lines += 1;
        normalize_into(&line.text, &mut self.norm);

        self.vals.values.clear();
        self.vals.exact = self.norm.hash;
        let mut novel = self.templates.insert(self.norm.hash);
        for v in &self.norm.values {
            let text = v.text(&line.text);
            let th = crate::detect::normalize::template_hash(text.as_bytes());
            // Novelty comes from word-like values only: a path or quoted value carrying a
            // hash or random token (`main.87b5988a.js`, `/tmp/tmpa8f3k2x9`) is new on every
            // repeat of a real loop.
            let volatile = v.kind.is_volatile()
                || v.role == Role::Volatile
                || (matches!(
                    v.kind,
                    Placeholder::Quoted | Placeholder::Path | Placeholder::Url
                ) && is_id_like(text));
            let mut new = false;
            if !volatile {
                self.vals.exact =
                    (self.vals.exact.rotate_left(7) ^ th).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                // Keyed by template and slot so that `3` in one line is not `3` in another.
                let key = th ^ self.norm.hash.rotate_left(17) ^ u64::from(v.slot);
                new = self.values.insert(key);
                // A new number only counts as a novel line when it is a named counter:
                // measurements (`temp 23.4`) change in loops too.
                if v.role == Role::Counter
                    || !matches!(v.kind, Placeholder::Int | Placeholder::Float)
                {
                    novel |= new;
                }
            }
            self.vals.values.push(EntryValue {
                kind: v.kind,
                volatile,
                counter: v.role == Role::Counter,
                hash: th,
                start: v.start,
                end: v.end,
                num: v.num,
                novel: new,
            });
        }
        if novel {
            self.counters.novel_lines += 1;
        }

        // Which sequence scored the strongest finding on this line; copied out at the end.
        let global_scored = self.global.push(&self.cfg, &self.norm, line, &self.vals);
        let mut best_score = global_scored
            .then(|| self.global.scored().map(|f| f.score))
            .flatten();
        let mut best_stream = None;

        let key = (line.pid, line.fd);
        match self.first_stream {
            None => self.first_stream = Some(key),
            Some(k) if k != key => self.multi_stream = true,
            _ => {}
        }
        if self.multi_stream {
            self.writes += 1;
            if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAM_TRACKS {
                if let Some(old) = self
                    .streams
                    .iter()
                    .min_by_key(|(_, t)| t.last_write)
                    .map(|(k, _)| *k)
                {
                    self.streams.remove(&old);
                }
            }
            let track = self.streams.entry(key).or_insert_with(Track::new);
            track.last_write = self.writes;
            if track.push(&self.cfg, &self.norm, line, &self.vals) {
                if let Some(score) = track.scored().map(|f| f.score) {
                    if best_score.is_none_or(|b| score > b) {
                        best_score = Some(score);
                        best_stream = Some(track);
                    }
                }
            }
        }
        match best_stream {
            Some(track) => track.scored().cloned(),
            None if best_score.is_some() => self.global.scored().cloned(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn line(seq: u64, pid: u32, fd: u32, text: &str) -> Line {
        Line {
            seq,
            pid,
            fd,
            at: Duration::from_millis(seq),
            text: text.to_owned(),
            truncated: false,
            original_len: text.len(),
            binary: false,
        }
    }

    /// Runs `texts` through a detector; returns (seq where score first reached 0.5, max score,
    /// last finding).
    fn run(texts: &[String]) -> (Option<u64>, f64, Option<Finding>) {
        let mut d = LoopDetector::default();
        let mut fired = None;
        let mut max: f64 = 0.0;
        let mut last = None;
        for (i, t) in texts.iter().enumerate() {
            let l = line(i as u64 + 1, 1, 1, t);
            if let Some(f) = d.observe(&l) {
                max = max.max(f.score);
                if f.score >= 0.5 && fired.is_none() {
                    fired = Some(l.seq);
                }
                last = Some(f);
            }
        }
        (fired, max, last)
    }

    fn loop_evidence(f: &Finding) -> &LoopEvidence {
        match &f.evidence {
            Evidence::Loop(l) => l,
            other => panic!("expected loop evidence, got {other:?}"),
        }
    }

    #[test]
    fn retry_loop_with_changing_timestamps_and_ids_fires_within_four_repeats() {
        let mut texts: Vec<String> = (0..5)
            .map(|i| format!("Compiling crate{i} v0.1.{i}"))
            .collect();
        for i in 0..20 {
            texts.push(format!(
                "2024-05-01T10:00:{:02}.{:03}Z ERROR request {} failed: connection refused (pid {})",
                i * 37 / 1000,
                i * 37 % 1000,
                uuid_like(i),
                1000 + i
            ));
            texts.push(format!(
                "2024-05-01T10:00:{:02}.{:03}Z INFO retrying in 10ms",
                (i * 37 + 20) / 1000,
                (i * 37 + 20) % 1000
            ));
        }
        let (fired, max, last) = run(&texts);
        let fired = fired.expect("retry loop not detected");
        // Prefix is 5 lines; period 2; 4 repeats end at line 5 + 8.
        assert!(
            fired <= 5 + 8,
            "fired at line {fired}, later than 4 repeats"
        );
        assert!(max > 0.9, "final score {max}");
        let f = last.expect("finding");
        let ev = loop_evidence(&f);
        assert_eq!(ev.period, 2);
        assert_eq!(ev.first_line, 6);
        assert_eq!(ev.pattern.len(), 2);
        assert!(ev.pattern[0].contains("<uuid>"), "{:?}", ev.pattern);
        assert!(ev.example[1].contains("retrying"));
    }

    fn uuid_like(i: u64) -> String {
        format!("{:08x}-{:04x}-4abc-8def-{:012x}", i * 7919, i, i * 104_729)
    }

    #[test]
    fn identical_line_spam_fires_within_five_repeats() {
        let texts: Vec<String> =
            std::iter::repeat_n("Waiting for lock on build directory".to_owned(), 30).collect();
        let (fired, _, last) = run(&texts);
        let fired = fired.expect("spam not detected");
        assert!(fired <= 5, "fired at line {fired}");
        assert_eq!(last.map(|f| loop_evidence(&f).period), Some(1));
    }

    #[test]
    fn a_fast_cycle_is_rescored_by_growth_or_time_not_on_every_repeat() {
        let mut d = LoopDetector::default();
        let spam = |seq: u64, at_ms: u64| Line {
            at: Duration::from_millis(at_ms),
            ..line(seq, 1, 1, "Waiting for lock on build directory")
        };
        // 10,000 repeats within one millisecond of output: every repeat up to 32 is scored,
        // then only growth by an eighth is.
        let scored = (1..=10_000u64)
            .filter(|&seq| d.observe(&spam(seq, 0)).is_some())
            .count();
        let repeats = |d: &LoopDetector| loop_evidence(d.current().expect("active loop")).repeats;
        assert!(
            (4..=120).contains(&scored),
            "scored {scored} times over 10,000 repeats"
        );
        let lagging = repeats(&d);
        assert!(
            lagging < 10_000 && lagging * 9 >= 10_000 * 8,
            "the finding says {lagging} repeats of 10,000"
        );
        // Output time moving on by 50 ms brings the finding up to date at the next repeat.
        assert!(d.observe(&spam(10_001, 50)).is_some());
        assert_eq!(repeats(&d), 10_001);
    }

    #[test]
    fn long_period_cycle_is_found() {
        let cycle: Vec<String> = (0..40)
            .map(|i| format!("agent step: tool call read_file path=src/mod_{i}.rs"))
            .collect();
        let texts: Vec<String> = cycle.iter().cycle().take(40 * 7).cloned().collect();
        let (fired, _, last) = run(&texts);
        let fired = fired.expect("long cycle not detected");
        assert!(fired <= 40 * 5, "fired at line {fired}");
        assert_eq!(last.map(|f| loop_evidence(&f).period), Some(40));
    }

    #[test]
    fn training_loop_with_step_counter_is_progress() {
        let texts: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "epoch 1 step {} loss {:.4} lr 0.001",
                    i * 10,
                    2.0 / (i as f64 + 1.0)
                )
            })
            .collect();
        let (fired, max, _) = run(&texts);
        assert_eq!(
            fired, None,
            "healthy training loop flagged (max score {max})"
        );
    }

    #[test]
    fn listing_of_new_files_is_progress() {
        let texts: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "copying ./data/part-{:05}.parquet to s3 bucket",
                    i * 37 % 1000
                )
            })
            .collect();
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "file listing flagged (max score {max}): {last:#?}"
        );
    }

    #[test]
    fn slow_polling_without_errors_is_waiting() {
        let texts: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    "2024-05-01 10:{:02}:{:02} Waiting for job 42 to finish (status: running)",
                    i / 12,
                    (i % 12) * 5
                )
            })
            .collect();
        let (fired, max, _) = run(&texts);
        assert_eq!(fired, None, "slow poll flagged (max score {max})");
    }

    #[test]
    fn restarts_under_new_pids_are_one_loop() {
        let mut d = LoopDetector::default();
        let mut seq = 0;
        let mut fired = None;
        for restart in 0..10u32 {
            for t in [
                "starting server on port 8080",
                "panic: config file missing",
                "exit status 2",
            ] {
                seq += 1;
                if let Some(f) = d.observe(&line(seq, 100 + restart, 2, t)) {
                    if f.score >= 0.5 && fired.is_none() {
                        fired = Some(seq);
                    }
                }
            }
        }
        assert!(
            fired.is_some_and(|s| s <= 15),
            "crash loop across pids: {fired:?}"
        );
    }

    #[test]
    fn loop_next_to_noisy_neighbour_is_found_per_stream() {
        let mut d = LoopDetector::default();
        let mut seq = 0;
        let mut fired = None;
        for i in 0..40u64 {
            seq += 1;
            d.observe(&line(
                seq,
                1,
                1,
                &format!("healthy worker processed batch {i} of {}", i * i),
            ));
            if i % 3 == 0 {
                seq += 1;
                d.observe(&line(
                    seq,
                    1,
                    1,
                    &format!("another unique line about {i}x{}", i * 31),
                ));
            }
            seq += 1;
            if let Some(f) = d.observe(&line(seq, 2, 2, "ERROR upstream unavailable, retrying")) {
                if f.score >= 0.5 && fired.is_none() {
                    fired = Some(i);
                }
            }
        }
        assert!(
            fired.is_some_and(|i| i < 5),
            "interleaved loop fired at repeat {fired:?}"
        );
    }

    #[test]
    fn progress_counters_count_novel_lines() {
        let mut d = LoopDetector::default();
        for i in 0..10 {
            d.observe(&line(i, 1, 1, "same line again"));
        }
        for i in 10..20 {
            d.observe(&line(i, 1, 1, &format!("wrote /tmp/out/file{i}.txt")));
        }
        let c = d.progress_counters();
        assert_eq!(c.lines, 20);
        assert_eq!(c.novel_lines, 1 + 10);
    }

    #[test]
    fn blank_and_binary_lines_are_skipped() {
        let mut d = LoopDetector::default();
        let mut b = line(1, 1, 1, "");
        b.binary = true;
        for i in 0..20 {
            assert!(d.observe(&line(i, 1, 1, "")).is_none());
            assert!(d.observe(&line(i, 1, 1, "------")).is_none());
            assert!(d.observe(&b).is_none());
        }
        assert_eq!(d.progress_counters().lines, 0);
        assert_eq!(d.progress_counters().binary_lines, 20);
    }

    #[test]
    fn crash_loop_with_restart_counter_and_errors_is_detected_within_five_repeats() {
        // systemd-style: the restart counter and pids advance, the unit fails every 6 s.
        let mut texts = vec!["Nov 20 09:14:03 web systemd[1]: Started api.service.".to_owned()];
        for i in 0..10u32 {
            let t = 10 + i * 6;
            let ts = |d: u32| format!("Nov 20 09:{:02}:{:02}", 14 + (t + d) / 60, (t + d) % 60);
            texts.push(format!(
                "{} web api[{}]: fatal: open /run/secrets/db: permission denied",
                ts(0),
                1700 + (i * 37) % 90
            ));
            texts.push(format!(
                "{} web systemd[1]: api.service: Main process exited, status=1/FAILURE",
                ts(0)
            ));
            texts.push(format!(
                "{} web systemd[1]: api.service: Scheduled restart job, restart counter is at {}.",
                ts(5),
                i + 1
            ));
        }
        let (fired, _, last) = run(&texts);
        let fired = fired.expect("crash loop with a restart counter not detected");
        // One prefix line; period 3; five repeats end at line 1 + 15.
        assert!(
            fired <= 1 + 15,
            "fired at line {fired}, later than 5 repeats"
        );
        let f = last.expect("finding");
        assert_eq!(loop_evidence(&f).period, 3);
        assert!(
            f.reasons
                .iter()
                .any(|r| r.contains("restart or retry counter")),
            "restart counter not named: {:?}",
            f.reasons
        );
        assert!(
            !f.reasons.iter().any(|r| r.starts_with("progress:")),
            "restart counter read as progress: {:?}",
            f.reasons
        );
    }

    #[test]
    fn json_log_retry_with_changing_ids_is_detected() {
        let texts: Vec<String> = (0..12u64)
            .map(|i| {
                format!(
                    r#"{{"ts": "2025-11-20T09:14:{:02}.{:03}Z", "level": "error", "msg": "publish failed, will retry", "event_id": "{}", "trace_id": "{:032x}", "attempt": {}}}"#,
                    4 + i / 4,
                    (i % 4) * 250,
                    uuid_like(i + 3),
                    u128::from(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_3c6e_f372_a54f_f53a),
                    i + 1
                )
            })
            .collect();
        let (fired, _, last) = run(&texts);
        let fired = fired.expect("JSON retry loop with changing ids not detected");
        assert!(fired <= 5, "fired at line {fired}");
        let f = last.expect("finding");
        assert!(
            !f.reasons.iter().any(|r| r.starts_with("progress:")),
            "ids read as progress: {:?}",
            f.reasons
        );
    }

    #[test]
    fn new_content_hash_in_file_names_is_not_progress() {
        let mut texts = Vec::new();
        for i in 0..10u64 {
            texts.push("change detected: /home/dev/site/build/manifest.json".to_owned());
            texts.push(format!(
                "asset main.{:08x}.js 1.21 MiB [emitted]",
                (i + 7).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32
            ));
            texts.push(format!(
                "compiled successfully in {} ms",
                150 + (i * 73) % 200
            ));
        }
        let (fired, _, _) = run(&texts);
        let fired = fired.expect("self-triggering rebuild loop not detected");
        assert!(fired <= 15, "fired at line {fired}, later than 5 repeats");
    }

    #[test]
    fn elapsed_time_wait_without_errors_is_not_a_loop() {
        // No clock in the text and lines arrive 1 ms apart (a replayed log): the growing
        // elapsed time is the clock, and it says the program checks every 5 s.
        let texts: Vec<String> = (0..40)
            .map(|i| format!("job 42 still running [{}s elapsed]", 20 + 5 * i))
            .collect();
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "elapsed-time wait flagged (max score {max}): {last:#?}"
        );
    }

    #[test]
    fn worker_finishing_jobs_with_new_ids_is_progress() {
        let texts: Vec<String> = (0..30u64)
            .map(|i| format!("job done id={} in 45 ms", uuid_like(i + 1)))
            .collect();
        let (fired, max, _) = run(&texts);
        assert_eq!(fired, None, "job queue drain flagged (max score {max})");
    }

    #[test]
    fn slow_error_retry_is_reported_at_the_fifth_repeat_not_before() {
        let texts: Vec<String> = (0..12u32)
            .map(|i| {
                format!(
                    "2025-11-20T09:14:{:02}Z WARN attempt {}: connect: connection refused; retrying in 2s",
                    i * 2,
                    i + 1
                )
            })
            .collect();
        let (fired, _, _) = run(&texts);
        assert_eq!(
            fired,
            Some(5),
            "slow retry should alert at exactly 5 repeats"
        );
    }

    #[test]
    fn paginated_read_in_a_cycle_with_error_words_is_progress() {
        // The offset is a named counter stepping by a page: a position, not a retry count.
        let mut texts = Vec::new();
        for i in 0..17u64 {
            texts.push(format!(
                "read_file(path=\"logs/worker.log\", offset={}, limit=250)",
                i * 250
            ));
            texts.push(format!(
                "Read 250 lines ({}-{} of 4217)",
                i * 250 + 1,
                i * 250 + 250
            ));
            texts.push(format!(
                "Lines {}-{}: {} ERROR entries so far",
                i * 250 + 1,
                i * 250 + 250,
                (i * 7) % 5
            ));
        }
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "paginated read flagged (max score {max}): {last:#?}"
        );
    }

    #[test]
    fn crash_report_named_after_the_pid_is_not_progress() {
        let mut texts = Vec::new();
        for i in 0..10u32 {
            let pid = 20_000 + (i * 7919) % 9000;
            texts.push(format!("launcher: starting worker (pid {pid})"));
            texts.push("worker: panic: nil pointer dereference".to_owned());
            texts.push(format!(
                "launcher: crash report in /var/log/etl/crash-{pid}.txt"
            ));
        }
        let (fired, max, last) = run(&texts);
        let fired = fired.unwrap_or_else(|| panic!("crash loop missed ({max}): {last:#?}"));
        assert!(fired <= 15, "fired at line {fired}");
    }

    #[test]
    fn long_cycle_containing_a_short_repeating_stretch_is_found() {
        let mut cycle: Vec<String> = vec!["launcher: starting worker".to_owned()];
        cycle.extend((1..=8).map(|k| format!("worker: init stage {k}/8 done")));
        cycle.extend((0..20).map(|k| format!("worker: config key_{k} = value")));
        cycle.push("worker: panic: nil pointer dereference".to_owned());
        cycle.push("launcher: worker exited with status 2".to_owned());
        let p = cycle.len();
        let texts: Vec<String> = cycle.iter().cycle().take(p * 6).cloned().collect();
        let (fired, _, last) = run(&texts);
        let fired = fired.expect("long crash cycle not detected");
        assert!(fired <= 5 * p as u64, "fired at line {fired}");
        assert_eq!(last.map(|f| loop_evidence(&f).period), Some(p));
    }

    fn countdown_probe(left: u32) -> String {
        format!("probe cache-3: readiness check failed, retrying ({left} tries remaining)")
    }

    #[test]
    fn bounded_retries_that_succeed_are_not_a_loop() {
        let mut texts = vec!["rollout: restarting cache-3".to_owned()];
        texts.extend((0..3).map(|k| countdown_probe(20 - k)));
        texts.push("probe cache-3: ready".to_owned());
        texts.push("rollout: restarting cache-4".to_owned());
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "three budgeted retries flagged (max score {max}): {last:#?}"
        );
        let f = last.expect("the retries are still scored");
        assert!(
            f.reasons.iter().any(|r| r.contains("bounded retry budget")),
            "countdown not named: {:?}",
            f.reasons
        );
    }

    #[test]
    fn bounded_retries_that_keep_failing_alert_at_the_fifth_repeat() {
        let texts: Vec<String> = (0..12).map(|k| countdown_probe(20 - k)).collect();
        let (fired, _, _) = run(&texts);
        assert_eq!(fired, Some(5), "budgeted retry should alert at 5 repeats");
        // Counting up is not a budget: the same retry numbering its attempts alerts sooner.
        let texts: Vec<String> = (0..12)
            .map(|k| format!("probe cache-3: readiness check failed, retrying (round {k})"))
            .collect();
        let (fired, _, _) = run(&texts);
        assert!(
            fired.is_some_and(|f| f < 5),
            "unbounded retry fired at {fired:?}"
        );
    }

    #[test]
    fn slow_bounded_retry_still_alerts_at_the_fifth_repeat() {
        // Both benefits of the doubt apply; they must not add up past the detection target.
        let texts: Vec<String> = (0..12u32)
            .map(|k| format!("2031-04-07T22:05:{:02}Z {}", k * 3, countdown_probe(20 - k)))
            .collect();
        let (fired, _, _) = run(&texts);
        assert_eq!(
            fired,
            Some(5),
            "slow budgeted retry should alert at 5 repeats"
        );
    }

    #[test]
    fn clock_stamped_file_names_in_a_failing_cycle_are_not_progress() {
        let mut texts = Vec::new();
        for k in 0..8u32 {
            texts.push("deploy: applying manifest to staging".to_owned());
            texts.push("deploy: error: admission webhook denied the request".to_owned());
            texts.push(format!(
                "deploy: full trace saved to /srv/tool/traces/2031-04-07T22_{:02}_{:02}Z-trace.txt",
                10 + k,
                (k * 17) % 60
            ));
        }
        let (fired, max, last) = run(&texts);
        let fired = fired.unwrap_or_else(|| panic!("failing cycle missed ({max}): {last:#?}"));
        assert!(fired <= 15, "fired at line {fired}, later than 5 repeats");
        let f = last.expect("finding");
        assert!(
            !f.reasons.iter().any(|r| r.starts_with("progress:")),
            "clock-stamped name read as progress: {:?}",
            f.reasons
        );
    }

    #[test]
    fn clock_stamped_outputs_of_a_healthy_cycle_are_still_progress() {
        let texts: Vec<String> = (0..30u32)
            .map(|k| {
                format!(
                    "snapshot written to /backups/db-2031-04-{:02}T{:02}_00.sql.gz",
                    1 + k / 24,
                    k % 24
                )
            })
            .collect();
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "snapshot series flagged (max score {max}): {last:#?}"
        );
    }

    #[test]
    fn summary_table_with_zero_failures_is_not_an_error_loop() {
        let texts: Vec<String> = (1..=12u32)
            .map(|k| format!("db-{k:02}.internal : ok=9 changed=2 unreachable=0 failed=0"))
            .collect();
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "summary table flagged (max score {max}): {last:#?}"
        );
        assert!(
            last.is_none_or(|f| !f.reasons.iter().any(|r| r.contains("error and"))),
            "zero tallies read as errors"
        );
    }

    fn pool_line(k: u32, item: &str) -> String {
        format!("pool: worker-{}: {item}", 1 + (k * 7) % 4)
    }

    #[test]
    fn worker_pool_writing_new_files_is_progress() {
        // The worker id before the files must not make the files volatile: each line is a
        // different photo, on its first attempt.
        let texts: Vec<String> = (0..40u32)
            .map(|k| {
                let (city, n) = (["oslo", "rome", "kyiv"][(k / 14) as usize], k % 14 + 1);
                pool_line(
                    k,
                    &format!(
                        "photos/{city}/{n:03}.png -> previews/{city}/{n:03}_320.jpg ({} bytes, attempt 1/2)",
                        4000 + (k * 7919) % 5000
                    ),
                )
            })
            .collect();
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "pool writing new files flagged (max score {max}): {last:#?}"
        );
    }

    #[test]
    fn worker_pool_retrying_one_file_forever_is_a_loop() {
        // Different workers pick the same poisoned item up: the worker id changes, the
        // file does not.
        let texts: Vec<String> = (0..12u32)
            .map(|k| {
                pool_line(
                    k,
                    "photos/oslo/017.png failed (upload timed out after 5.0s), retrying",
                )
            })
            .collect();
        let (fired, max, last) = run(&texts);
        let fired = fired.unwrap_or_else(|| panic!("stuck pool missed ({max}): {last:#?}"));
        assert!(fired <= 5, "fired at line {fired}, later than 5 repeats");
    }

    /// A crash/respawn cycle: the dead child's pid and the new one's rise by a few per repeat
    /// (other processes take the pids in between).
    fn crash_respawn_log(repeats: u32) -> Vec<String> {
        let mut texts = vec!["supervisor: pool started, 4 children".to_owned()];
        let mut pid = 4100;
        for k in 0..repeats {
            texts.push(format!(
                "supervisor: child {pid} exited on signal 11 (SIGSEGV) after 0.{}s",
                100 + (k * 37) % 800
            ));
            pid += 1 + (k * 5) % 3;
            texts.push(format!("supervisor: child {pid} started"));
            pid += 2 + (k * 3) % 4;
        }
        texts
    }

    #[test]
    fn crash_respawn_loop_with_advancing_pids_is_detected() {
        let (fired, max, last) = run(&crash_respawn_log(10));
        let fired = fired.unwrap_or_else(|| panic!("crash loop missed ({max}): {last:#?}"));
        // One prefix line, period 2: three repeats end at line 1 + 6.
        assert!(
            fired <= 1 + 6,
            "fired at line {fired}, later than 3 repeats"
        );
        let f = last.expect("finding");
        assert!(
            !f.reasons.iter().any(|r| r.starts_with("progress:")),
            "pids read as progress: {:?}",
            f.reasons
        );
        assert!(
            f.reasons
                .iter()
                .any(|r| r.contains("an id handed out per attempt")),
            "pid not named: {:?}",
            f.reasons
        );
    }

    #[test]
    fn download_resumed_after_transient_errors_is_progress() {
        // The offset rises unevenly too, but by what was transferred: a position, not an id.
        let mut texts = vec!["fetch: dataset.tar (2.1 GB)".to_owned()];
        let mut offset = 0u64;
        for k in 0..4u64 {
            offset += 180_000_000 + (k * 7_919_993) % 90_000_000;
            texts.push("fetch: error: connection reset by peer".to_owned());
            texts.push(format!("fetch: resuming dataset.tar at byte {offset}"));
        }
        texts.push("fetch: dataset.tar complete, sha256 ok".to_owned());
        let (fired, max, last) = run(&texts);
        assert_eq!(
            fired, None,
            "resumed download flagged (max score {max}): {last:#?}"
        );
        let f = last.expect("the resumes are still scored");
        assert!(
            f.reasons.iter().any(|r| r.starts_with("progress: counter")),
            "offset not read as progress: {:?}",
            f.reasons
        );
    }

    #[test]
    fn allocated_ids_rise_by_a_few() {
        assert!(allocated_id(&[30.0, 34.0, 38.0, 42.0]));
        assert!(allocated_id(&[88.0, 89.0, 93.0]));
        assert!(!allocated_id(&[30.0, 34.0]), "two values are no series");
        assert!(!allocated_id(&[0.0, 250.0, 500.0]), "a page stride");
        assert!(!allocated_id(&[40.0, 38.0, 36.0]), "falling");
        assert!(!allocated_id(&[5.0, 5.0, 6.0]), "not rising at every step");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_cycle_repeated_five_times_is_detected(
            words in proptest::collection::vec("[a-z]{3,10}( [a-z]{2,8}){1,4}", 1..=12),
            prefix in proptest::collection::vec("[a-z]{4,12} [a-z]{4,12}", 0..5),
        ) {
            // Distinct lines within the cycle so that its true period is its length.
            let mut cycle: Vec<String> = Vec::new();
            for (i, w) in words.iter().enumerate() {
                cycle.push(format!("{w} e{}x", "q".repeat(i + 1)));
            }
            let p = cycle.len();
            let mut texts: Vec<String> = prefix.iter().map(|s| format!("prefix {s}")).collect();
            let pre = texts.len() as u64;
            for _ in 0..5 {
                texts.extend(cycle.iter().cloned());
            }
            let (fired, max, last) = run(&texts);
            prop_assert!(fired.is_some(), "not detected, max score {}", max);
            let f = last.expect("finding");
            prop_assert_eq!(loop_evidence(&f).period, p);
            prop_assert!(fired.unwrap_or(u64::MAX) <= pre + 5 * p as u64);
        }

        #[test]
        fn novel_lines_never_fire(lines in proptest::collection::vec("[a-z]{2,9}( [a-z]{2,9}){0,6}", 0..300)) {
            let mut seen = HashSet::new();
            let texts: Vec<String> = lines.into_iter().filter(|l| seen.insert(l.clone())).collect();
            let (fired, max, _) = run(&texts);
            prop_assert!(fired.is_none(), "random distinct lines fired (score {})", max);
        }
    }

    proptest! {
        /// The fixed slot table agrees with a hash map under adds and removals, with hashes
        /// drawn so that many share a home slot (top bits) and probe runs wrap around.
        #[test]
        fn holders_agree_with_a_map(
            ops in proptest::collection::vec((0u64..24, 0usize..MAX_PERIOD, any::<bool>()), 0..600),
        ) {
            // Few home slots, two of them at the end of the table so that runs wrap.
            let hash = |k: u64| {
                let home = if k < 12 { (126 + k % 3) % 128 } else { 60 + k % 2 };
                home << 57 | k
            };
            let mut holders = Holders::new();
            let mut reference: HashMap<u64, u64> = HashMap::new();
            for (k, slot, add) in ops {
                let h = hash(k);
                let bit = 1u64 << slot;
                if add {
                    let before = reference.get(&h).copied().unwrap_or(0);
                    prop_assert_eq!(holders.add(h, bit), before);
                    *reference.entry(h).or_insert(0) |= bit;
                } else {
                    holders.remove(h, bit);
                    if let Some(bits) = reference.get_mut(&h) {
                        *bits &= !bit;
                        if *bits == 0 {
                            reference.remove(&h);
                        }
                    }
                }
                for k in 0..24 {
                    let h = hash(k);
                    // Adding no bit is a lookup (an absent key stays absent: no bits).
                    prop_assert_eq!(holders.add(h, 0), reference.get(&h).copied().unwrap_or(0));
                }
            }
        }

        /// The array set agrees with a hash set, zero and growth included.
        #[test]
        fn hash_slots_agree_with_a_set(keys in proptest::collection::vec(any::<u64>().prop_map(|k| (k % 5000).wrapping_mul(0x9e37_79b9_7f4a_7c15)), 0..3000)) {
            let mut slots = HashSlots::default();
            let mut reference = HashSet::new();
            for k in keys {
                prop_assert_eq!(slots.contains(k), reference.contains(&k));
                prop_assert_eq!(slots.insert(k), reference.insert(k));
                prop_assert_eq!(slots.len(), reference.len());
            }
        }
    }
}
