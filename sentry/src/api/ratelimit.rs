//! Rate limiting of failed authentications, per client IP: a token bucket of
//! [`FAILURE_BURST`] failures refilled at [`FAILURES_PER_MINUTE`] a minute. Only requests
//! without the valid key ever look at it, so a holder of the key is never slowed down by
//! anyone's failures, its own included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Wrong keys a client may present back to back before it is limited.
pub const FAILURE_BURST: f64 = 10.0;

/// Sustained wrong keys per minute a client may present.
pub const FAILURES_PER_MINUTE: f64 = 10.0;

/// Clients tracked at most; beyond it idle ones are forgotten, and if none is idle a new
/// client is limited at once (memory stays bounded under a spray of source addresses).
const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-client failure budgets.
#[derive(Debug)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    burst: f64,
    per_sec: f64,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter::new(FAILURE_BURST, FAILURES_PER_MINUTE / 60.0)
    }
}

impl FailureLimiter {
    /// A limiter allowing `burst` failures at once, refilled at `per_sec`.
    pub fn new(burst: f64, per_sec: f64) -> Self {
        FailureLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst,
            per_sec,
        }
    }

    /// Records a failed authentication from `ip`: `Ok` while the client is within its
    /// budget (the failure is counted when `counts` is true), `Err(wait)` once it is spent,
    /// with how long until the next attempt is allowed.
    pub fn fail(&self, ip: IpAddr, counts: bool) -> Result<(), Duration> {
        self.fail_at(ip, counts, Instant::now())
    }

    fn fail_at(&self, ip: IpAddr, counts: bool, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&ip) && buckets.len() >= MAX_CLIENTS {
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, b| refill(b, now, burst, per_sec) < burst);
            if buckets.len() >= MAX_CLIENTS {
                return Err(Duration::from_secs_f64(1.0 / self.per_sec));
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let tokens = refill(bucket, now, self.burst, self.per_sec);
        if tokens >= 1.0 {
            if counts {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_sec))
        }
    }
}

fn refill(bucket: &mut Bucket, now: Instant, burst: f64, per_sec: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
    bucket.updated = now;
    bucket.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_limited_then_refilled() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(limiter.fail_at(ip, true, t0).is_ok(), "failure {i} refused");
        }
        let wait = limiter.fail_at(ip, true, t0).unwrap_err();
        assert!(
            (5.9..=6.1).contains(&wait.as_secs_f64()),
            "expected a 6 s wait, got {wait:?}"
        );
        // Another client is unaffected.
        assert!(limiter.fail_at([127, 0, 0, 2].into(), true, t0).is_ok());
        // One refill period later one more failure is allowed, and only one.
        let t1 = t0 + Duration::from_secs(6);
        assert!(limiter.fail_at(ip, true, t1).is_ok());
        assert!(limiter.fail_at(ip, true, t1).is_err());
    }

    #[test]
    fn requests_without_a_key_do_not_spend_the_budget() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(limiter.fail_at(ip, false, t0).is_ok());
        }
        for _ in 0..10 {
            limiter.fail_at(ip, true, t0).unwrap();
        }
        assert!(limiter.fail_at(ip, false, t0).is_err(), "a limited client");
    }
}
