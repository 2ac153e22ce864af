//! Time as a dependency. Every part of a process — REST handlers, the MQTT hooks, the callout,
//! the enforcement task — asks one injected clock, so a test moves time for all of them at once
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use broker_auth::UnixTime;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        self.now_millis().div_euclid(1000)
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock tests set and advance.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `seconds`.
    pub fn at(seconds: UnixTime) -> Self {
        ManualClock(AtomicI64::new(seconds.saturating_mul(1000)))
    }

    /// Move forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(100);
        assert_eq!(c.now(), 100);
        c.advance(5);
        assert_eq!((c.now(), c.now_millis()), (105, 105_000));
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
