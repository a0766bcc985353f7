//! Sign-in attempt counting: at most `max` attempts that were not given back within `window` seconds
//! under one key (a username, a client address). An attempt is reserved before the password or code is
//! checked and given back only when it succeeds, so concurrent guesses cannot all pass a check that runs
//! before any of them is counted (check-then-act): the reservation is the check.
//!
//! In memory and per process: each node counts on its own, so a cluster of N nodes lets up to N × max
//! failures through per window (behind a load balancer that spreads one client across nodes). The
//! failures are operational state, not facts anyone audits, so they are not in the ledger.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};

/// Keys held before a sweep drops those whose attempts are all older than the window.
const SWEEP_AT: usize = 4_096;

/// Recent attempts per key.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    attempts: HashMap<String, VecDeque<i64>>,
    /// Size at which the next sweep runs; doubles when a sweep frees little.
    sweep_at: usize,
}

impl Inner {
    fn recent(&self, key: &str, window: i64, now: i64) -> usize {
        self.attempts
            .get(key)
            .map_or(0, |times| times.iter().filter(|&&t| t > now - window).count())
    }

    fn sweep(&mut self, window: i64, now: i64) {
        let threshold = self.sweep_at.max(SWEEP_AT);
        if self.attempts.len() >= threshold {
            self.attempts
                .retain(|_, times| times.back().is_some_and(|&t| t > now - window));
            // Under a flood of distinct keys, do not sweep on every attempt.
            self.sweep_at = (self.attempts.len() * 2).max(SWEEP_AT);
        }
    }
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

    /// Whether `key` has `max` or more attempts counted in the `window` seconds up to `now`.
    #[cfg(test)]
    fn blocked(&self, key: &str, max: u32, window: i64, now: i64) -> bool {
        self.lock().recent(key, window, now) >= max as usize
    }

    /// Counts one attempt at `now` under every key of `keys`, atomically: when any key already has `max`
    /// attempts in the window, counts nothing and answers false.
    pub fn reserve(&self, keys: &[&str], max: u32, window: i64, now: i64) -> bool {
        let mut inner = self.lock();
        if keys.iter().any(|k| inner.recent(k, window, now) >= max as usize) {
            return false;
        }
        inner.sweep(window, now);
        for key in keys {
            let times = inner.attempts.entry((*key).to_owned()).or_default();
            while times.front().is_some_and(|&t| t <= now - window) {
                times.pop_front();
            }
            times.push_back(now);
        }
        true
    }

    /// Gives back one attempt counted under `key` at `at` (it succeeded, or was never checked).
    pub fn release(&self, key: &str, at: i64) {
        let mut inner = self.lock();
        if let Some(times) = inner.attempts.get_mut(key) {
            if let Some(i) = times.iter().rposition(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                inner.attempts.remove(key);
            }
        }
    }

    /// Forgets the attempts under `key` (after a successful sign-in, for the username).
    pub fn clear(&self, key: &str) {
        self.lock().attempts.remove(key);
    }

    /// Keys currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().attempts.len()
    }
}

/// This process's sign-in limiter.
pub fn sign_in() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(Limiter::new)
}

/// This process's count of authorization requests kept, per client address.
pub fn kept_requests() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(Limiter::new)
}

/// This process's count of user codes typed on the device verification page, per client address and
/// per session.
pub fn user_codes() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(Limiter::new)
}

/// The key a client address counts under: the TCP peer when the server records it (it is served with
/// connect info), else one shared key for every client. `issuer` separates servers sharing a process
/// (tests); in production there is one.
pub fn address_key(issuer: &str, peer: Option<SocketAddr>) -> String {
    let addr = match peer.map(|p| p.ip()) {
        // An IPv6 client usually holds a whole /64: count the /64.
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => "unknown".to_owned(),
    };
    format!("{issuer}\u{0}ip\u{0}{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_attempts_within_the_window_and_then_lets_go() {
        let l = Limiter::new();
        for t in 0..4 {
            assert!(l.reserve(&["alice"], 5, 300, 100 + t));
            assert!(!l.blocked("alice", 5, 300, 100 + t));
        }
        assert!(l.reserve(&["alice"], 5, 300, 104));
        assert!(l.blocked("alice", 5, 300, 104));
        assert!(!l.reserve(&["alice"], 5, 300, 104), "the sixth is refused");
        assert!(!l.blocked("bob", 5, 300, 104), "per key");
        assert!(l.blocked("alice", 5, 300, 399), "still inside the window");
        assert!(
            !l.blocked("alice", 5, 300, 400),
            "the first attempt left the window"
        );
        assert!(!l.blocked("alice", 5, 300, 405));
        assert!(l.reserve(&["alice"], 5, 300, 405));
        assert!(!l.blocked("alice", 5, 300, 405), "old attempts were dropped");
        l.clear("alice");
        assert!(!l.blocked("alice", 1, 300, 405));
    }

    #[test]
    fn a_reservation_counts_under_every_key_or_none_and_can_be_given_back() {
        let l = Limiter::new();
        assert!(l.reserve(&["alice", "ip"], 2, 300, 10));
        assert!(l.reserve(&["bob", "ip"], 2, 300, 11));
        assert!(!l.reserve(&["carol", "ip"], 2, 300, 12), "the address is full");
        assert!(!l.blocked("carol", 1, 300, 12), "nothing was counted for carol");
        l.release("ip", 11);
        l.release("bob", 11);
        assert!(!l.blocked("bob", 1, 300, 12));
        assert!(l.reserve(&["carol", "ip"], 2, 300, 12));
        assert!(l.blocked("ip", 2, 300, 12));
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let l = std::sync::Arc::new(Limiter::new());
        let handles: Vec<_> = (0..40)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || l.reserve(&["alice"], 5, 300, 100))
            })
            .collect();
        let passed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn keys_whose_attempts_expired_are_swept() {
        let l = Limiter::new();
        for i in 0..SWEEP_AT {
            assert!(l.reserve(&[&format!("user{i}")], 5, 300, 0));
        }
        assert_eq!(l.len(), SWEEP_AT);
        assert!(l.reserve(&["late"], 5, 300, 1_000));
        assert_eq!(l.len(), 1);
    }
}
