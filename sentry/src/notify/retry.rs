//! When to try a delivery again: exponential backoff with full jitter on server errors and
//! connection failures, the receiver's own `Retry-After` on `429`, never on other client
//! errors (the same request would be refused again).

use std::time::{Duration, SystemTime};

/// How a failed delivery is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The backoff cap before the second try; it doubles with every further try.
    pub base_delay: Duration,
    /// The longest wait between two tries, a receiver's `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five tries over up to about 15 s (0.5, 1, 2, 4 s caps, fully jittered): long enough to
    /// ride out a receiver's restart, short enough that an ending run does not wait on it.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The most the wait after try `attempt` (1-based) may be: `base · 2^(attempt-1)`,
    /// capped at `max_delay`.
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait after try `attempt`: uniform in `[0, backoff_cap]` ("full jitter"), so that
    /// many senders that failed together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        full_jitter(self.backoff_cap(attempt), random_u64())
    }
}

/// A point in `[0, cap]` chosen by `random`.
pub fn full_jitter(cap: Duration, random: u64) -> Duration {
    let nanos = cap.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random % (nanos + 1))
}

fn random_u64() -> u64 {
    // Jitter needs no cryptographic quality; the clock is a fallback good enough for it.
    getrandom::u64().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into())
    })
}

/// The wait a `Retry-After` header value asks for (delay seconds, or an HTTP date), measured
/// from `now`, at most `cap`. `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            // A date in the past means "now".
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(cap))
}

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken.
    Delivered,
    /// Try again after the backoff.
    Retry,
    /// Try again when the receiver says (`429`).
    RetryAfter,
    /// Refused for good: the same request would be refused again.
    Refused,
}

/// Classifies a response status.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 => Verdict::RetryAfter,
        // 408: the receiver timed out waiting for the request; worth another try.
        408 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let caps: Vec<u128> = (1..=6).map(|a| policy.backoff_cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff_cap(u32::MAX), Duration::from_secs(1));
        for attempt in 1..=6 {
            assert!(policy.backoff(attempt) <= policy.backoff_cap(attempt));
        }
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_cap() {
        let cap = Duration::from_millis(800);
        assert_eq!(full_jitter(cap, 0), Duration::ZERO);
        assert_eq!(full_jitter(cap, 800_000_000), cap);
        assert!(full_jitter(cap, u64::MAX) <= cap);
        assert_eq!(full_jitter(Duration::ZERO, 12345), Duration::ZERO);
        // Not always the cap: the spread is what keeps senders apart.
        let waits: std::collections::BTreeSet<_> =
            (0..50).map(|_| RetryPolicy::default().backoff(4)).collect();
        assert!(waits.len() > 1, "jitter gave one value: {waits:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 11:00:00 GMT").unwrap();
        let cap = Duration::from_secs(30);
        assert_eq!(
            parse_retry_after("1", now, cap),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(" 7 ", now, cap),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("3600", now, cap), Some(cap));
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 11:00:12 GMT", now, cap),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:59:00 GMT", now, cap),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 11:00:00 GMT", now, cap),
            Some(cap)
        );
        assert_eq!(parse_retry_after("soon", now, cap), None);
        assert_eq!(parse_retry_after("-1", now, cap), None);
    }

    #[test]
    fn only_server_errors_timeouts_and_429_are_retried() {
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(204), Verdict::Delivered);
        assert_eq!(verdict(500), Verdict::Retry);
        assert_eq!(verdict(503), Verdict::Retry);
        assert_eq!(verdict(408), Verdict::Retry);
        assert_eq!(verdict(429), Verdict::RetryAfter);
        assert_eq!(verdict(400), Verdict::Refused);
        assert_eq!(verdict(404), Verdict::Refused);
        assert_eq!(verdict(301), Verdict::Refused);
    }
}
