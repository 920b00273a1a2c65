//! A time-bounded window of recent observations, shared by the resource detectors.
//!
//! Detectors judge "sustained" behaviour over a span of wall time (not a lifetime average, not
//! a fixed count of samples, since sampling intervals vary between backends). The window keeps
//! every entry whose timestamp lies within `span` of the newest one, plus a hard cap on the
//! number of entries so memory stays bounded even when a backend samples very fast.

use std::collections::VecDeque;
use std::time::Duration;

/// Upper bound on retained entries; at a 100 ms sampling interval this still covers 400 s.
pub const MAX_ENTRIES: usize = 4096;

/// Observations of type `T` stamped with their time since the run started.
#[derive(Debug, Clone)]
pub struct TimeWindow<T> {
    span: Duration,
    entries: VecDeque<(Duration, T)>,
}

impl<T> TimeWindow<T> {
    /// An empty window covering `span` of time.
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            entries: VecDeque::new(),
        }
    }

    /// Adds an observation and drops those that fell out of the window.
    ///
    /// An entry older than the newest one (a clock step backwards, or a restarted run) clears
    /// the window first: mixing two timelines would produce nonsense rates.
    pub fn push(&mut self, at: Duration, value: T) {
        if self.entries.back().is_some_and(|(last, _)| at < *last) {
            self.entries.clear();
        }
        self.entries.push_back((at, value));
        while let Some((first, _)) = self.entries.front() {
            if *first + self.span < at || self.entries.len() > MAX_ENTRIES {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The configured span.
    pub fn span(&self) -> Duration {
        self.span
    }

    /// Time between the oldest and the newest retained entry.
    pub fn covered(&self) -> Duration {
        match (self.entries.front(), self.entries.back()) {
            (Some((first, _)), Some((last, _))) => last.saturating_sub(*first),
            _ => Duration::ZERO,
        }
    }

    /// True once the retained entries cover (nearly) the whole span, so a judgement about
    /// "sustained" behaviour is not made on the first few seconds of a run. One sampling
    /// interval of slack is allowed because the oldest entry is evicted exactly at `span`.
    pub fn is_full(&self) -> bool {
        let n = self.entries.len();
        if n < 2 {
            return false;
        }
        // A tenth of the span, or one (mean) sampling interval when that is longer: with
        // samples every 514 ms, a 3 s window retains at most 2.57 s, and a tenth (0.3 s) of
        // slack would never call it full.
        let covered = self.covered();
        let interval = covered / u32::try_from(n - 1).unwrap_or(u32::MAX);
        let slack = (self.span / 10).max(interval);
        covered + slack >= self.span
    }

    /// Number of retained entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The oldest retained entry.
    pub fn first(&self) -> Option<&(Duration, T)> {
        self.entries.front()
    }

    /// The newest retained entry.
    pub fn last(&self) -> Option<&(Duration, T)> {
        self.entries.back()
    }

    /// Entries from oldest to newest.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &(Duration, T)> + DoubleEndedIterator {
        self.entries.iter()
    }

    /// Forgets everything (used when the supervised command is restarted).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Growth of a cumulative counter between two readings; `None` when either reading is
/// unavailable. A counter that went backwards (a restarted process tree) counts as no growth
/// rather than a huge wrapped value.
pub fn counter_delta(older: Option<u64>, newer: Option<u64>) -> Option<u64> {
    Some(newer?.saturating_sub(older?))
}

/// Seconds as `f64`, for rates and human messages.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A configured number of seconds as a `Duration`; negative, NaN or absurdly large values
/// (which the policy loader rejects, but a hand-built config may still carry) become zero or
/// the maximum instead of panicking.
pub fn duration_from_secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(if s > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// Splits the window into `parts` equal slices of time and returns, for each non-empty slice,
/// its midpoint and the smallest value in it.
///
/// Minima per slice are what make growth detection robust to sawtooth patterns: a garbage
/// collector or a parallel build spikes up and falls back, so its troughs stay level, while a
/// leak or a fork storm raises even the troughs.
pub fn slice_minima<T>(
    window: &TimeWindow<T>,
    parts: usize,
    value: impl Fn(&T) -> Option<f64>,
) -> Vec<(Duration, f64)> {
    let (Some((start, _)), Some((end, _))) = (window.first(), window.last()) else {
        return Vec::new();
    };
    let parts = parts.max(1);
    let total = end.saturating_sub(*start);
    let mut minima: Vec<Option<f64>> = vec![None; parts];
    for (at, v) in window.iter() {
        let Some(x) = value(v) else { continue };
        let offset = at.saturating_sub(*start);
        let idx = if total.is_zero() {
            0
        } else {
            ((secs(offset) / secs(total)) * parts as f64) as usize
        }
        .min(parts - 1);
        minima[idx] = Some(minima[idx].map_or(x, |m: f64| m.min(x)));
    }
    minima
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let mid = *start + total.mul_f64((i as f64 + 0.5) / parts as f64);
            m.map(|m| (mid, m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_sampled_at_an_interval_that_does_not_divide_it_still_fills() {
        // 3 s window, samples every 514 ms: at most 2.57 s are ever retained.
        let mut w = TimeWindow::new(Duration::from_secs(3));
        let mut full_at = None;
        for k in 0..20u64 {
            w.push(Duration::from_millis(389 + 514 * k), ());
            if w.is_full() && full_at.is_none() {
                full_at = Some(k);
            }
        }
        assert_eq!(
            full_at,
            Some(5),
            "full once five intervals (2.57 s) are covered"
        );
        assert!(w.is_full(), "and stays full");
        let mut short = TimeWindow::new(Duration::from_secs(3));
        short.push(Duration::ZERO, ());
        short.push(Duration::from_millis(500), ());
        assert!(!short.is_full(), "half a second does not cover three");
    }

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn keeps_only_entries_within_the_span() {
        let mut w = TimeWindow::new(s(10));
        for t in 0..=30 {
            w.push(s(t), t);
        }
        let kept: Vec<u64> = w.iter().map(|(_, v)| *v).collect();
        assert_eq!(kept, (20..=30).collect::<Vec<_>>());
        assert!(w.is_full());
        assert_eq!(w.covered(), s(10));
    }

    #[test]
    fn is_not_full_until_the_span_is_covered() {
        let mut w = TimeWindow::new(s(10));
        for t in 0..5 {
            w.push(s(t), ());
        }
        assert!(!w.is_full(), "4 s of data must not count as a 10 s window");
    }

    #[test]
    fn time_going_backwards_restarts_the_window() {
        let mut w = TimeWindow::new(s(10));
        w.push(s(50), 1);
        w.push(s(51), 2);
        w.push(s(3), 3);
        assert_eq!(w.len(), 1);
        assert_eq!(w.first().map(|e| e.1), Some(3));
    }

    #[test]
    fn entry_count_is_bounded() {
        let mut w = TimeWindow::new(s(1_000_000));
        for t in 0..(MAX_ENTRIES as u64 * 2) {
            w.push(Duration::from_millis(t), ());
        }
        assert!(w.len() <= MAX_ENTRIES + 1);
    }

    #[test]
    fn slice_minima_see_through_a_sawtooth() {
        let mut w = TimeWindow::new(s(40));
        for t in 0..=40u64 {
            // Climbs by 10 per second, falls back every 5 s: troughs stay at 100.
            w.push(s(t), 100.0 + (t % 5) as f64 * 10.0);
        }
        let m = slice_minima(&w, 4, |v| Some(*v));
        assert_eq!(m.len(), 4);
        assert!(
            m.iter().all(|(_, v)| *v == 100.0),
            "troughs should be level: {m:?}"
        );
    }

    #[test]
    fn duration_from_secs_never_panics() {
        assert_eq!(duration_from_secs(-1.0), Duration::ZERO);
        assert_eq!(duration_from_secs(f64::NAN), Duration::ZERO);
        assert_eq!(duration_from_secs(f64::INFINITY), Duration::MAX);
        assert_eq!(duration_from_secs(1.5), Duration::from_millis(1500));
    }

    #[test]
    fn counter_delta_treats_missing_as_unknown_and_resets_as_zero() {
        assert_eq!(counter_delta(Some(5), Some(9)), Some(4));
        assert_eq!(counter_delta(None, Some(9)), None);
        assert_eq!(counter_delta(Some(9), Some(2)), Some(0));
    }
}
