//! The one clock: the system clock in production, a manual one in tests. A request reads it once, at its
//! entry, and passes the instant down; the store's writer stamps `recorded_at` from the same clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use projections::event::UnixSeconds;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Microseconds since the Unix epoch (negative before 1970).
    fn now_micros(&self) -> i64;

    /// Whole seconds since the Unix epoch, the unit every decision takes.
    fn now(&self) -> UnixSeconds {
        self.now_micros().div_euclid(MICROS_PER_SECOND)
    }
}

/// Shared handle to a [`Clock`]: the server and its store hold the same one.
pub type ClockRef = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        // The one sanctioned read of the wall clock. `OffsetDateTime` spans ±9999 years, so its
        // microseconds always fit an i64.
        #[allow(clippy::disallowed_methods)] // the clock source
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        i64::try_from(nanos / 1_000).unwrap_or(i64::MAX)
    }
}

/// The system clock as a shared handle.
pub fn system() -> ClockRef {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to; clones share one instant, so a test holds a handle to the clock
/// the server reads.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `seconds` since the epoch.
    pub fn at(seconds: UnixSeconds) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(
            seconds.saturating_mul(MICROS_PER_SECOND),
        )))
    }

    /// A clock stopped at the system clock's current second.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(SystemClock.now())
    }

    /// Moves the clock to `seconds` since the epoch.
    pub fn set(&self, seconds: UnixSeconds) {
        self.0
            .store(seconds.saturating_mul(MICROS_PER_SECOND), Ordering::SeqCst);
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.advance_micros(seconds.saturating_mul(MICROS_PER_SECOND));
    }

    /// Moves the clock forward by `micros` microseconds.
    pub fn advance_micros(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// This clock as a shared handle.
    pub fn handle(&self) -> ClockRef {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_the_instant() {
        let clock = ManualClock::at(1_000);
        let shared = clock.handle();
        assert_eq!(shared.now(), 1_000);
        clock.advance(61);
        assert_eq!(shared.now(), 1_061);
        clock.advance_micros(500_000);
        assert_eq!((shared.now(), shared.now_micros()), (1_061, 1_061_500_000));
        clock.set(5);
        assert_eq!(shared.now(), 5);
    }

    #[test]
    fn seconds_round_down_before_the_epoch_too() {
        let clock = ManualClock::at(0);
        clock.advance_micros(-1);
        assert_eq!(clock.now(), -1);
    }
}
