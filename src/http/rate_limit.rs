//! Failed sign-in counting: after `max` failures within `window` seconds under one key (a username, a
//! client address), further attempts under that key are refused without checking the password.
//!
//! In memory and per process: each node counts on its own, so a cluster of N nodes lets up to N × max
//! failures through per window (behind a load balancer that spreads one client across nodes). The
//! failures are operational state, not facts anyone audits, so they are not in the ledger.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

/// Keys held before a sweep drops those whose failures are all older than the window.
const SWEEP_AT: usize = 4_096;

/// Recent failures per key.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    failures: HashMap<String, VecDeque<i64>>,
    /// Size at which the next sweep runs; doubles when a sweep frees little.
    sweep_at: usize,
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that matters here.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `key` has had `max` or more failures in the `window` seconds up to `now`.
    pub fn blocked(&self, key: &str, max: u32, window: i64, now: i64) -> bool {
        let inner = self.lock();
        inner
            .failures
            .get(key)
            .is_some_and(|times| times.iter().filter(|&&t| t > now - window).count() >= max as usize)
    }

    /// Records a failure under `key` at `now`, keeping at most `max` recent ones.
    pub fn record_failure(&self, key: &str, max: u32, window: i64, now: i64) {
        let mut inner = self.lock();
        let threshold = inner.sweep_at.max(SWEEP_AT);
        if inner.failures.len() >= threshold {
            inner
                .failures
                .retain(|_, times| times.back().is_some_and(|&t| t > now - window));
            // Under a flood of distinct keys, do not sweep on every failure.
            inner.sweep_at = (inner.failures.len() * 2).max(SWEEP_AT);
        }
        let times = inner.failures.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|&t| t <= now - window) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > (max as usize).max(1) {
            times.pop_front();
        }
    }

    /// Forgets the failures under `key` (after a successful sign-in, for the username).
    pub fn clear(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// Keys currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().failures.len()
    }
}

/// This process's sign-in limiter.
pub fn sign_in() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(Limiter::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_within_the_window_and_then_lets_go() {
        let l = Limiter::new();
        for t in 0..4 {
            l.record_failure("alice", 5, 300, 100 + t);
            assert!(!l.blocked("alice", 5, 300, 100 + t));
        }
        l.record_failure("alice", 5, 300, 104);
        assert!(l.blocked("alice", 5, 300, 104));
        assert!(!l.blocked("bob", 5, 300, 104), "per key");
        assert!(l.blocked("alice", 5, 300, 399), "still inside the window");
        assert!(
            !l.blocked("alice", 5, 300, 400),
            "the first failure left the window"
        );
        assert!(!l.blocked("alice", 5, 300, 405));
        l.record_failure("alice", 5, 300, 405);
        assert!(!l.blocked("alice", 5, 300, 405), "old failures were dropped");
        l.clear("alice");
        assert!(!l.blocked("alice", 1, 300, 405));
    }

    #[test]
    fn keys_whose_failures_expired_are_swept() {
        let l = Limiter::new();
        for i in 0..SWEEP_AT {
            l.record_failure(&format!("user{i}"), 5, 300, 0);
        }
        assert_eq!(l.len(), SWEEP_AT);
        l.record_failure("late", 5, 300, 1_000);
        assert_eq!(l.len(), 1);
    }
}
