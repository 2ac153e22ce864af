//! Time as a dependency. Every part of a process — REST handlers, the MQTT hooks, the callout,
//! the enforcement task — asks one injected clock, so a test moves time for all of them at once
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use broker_auth::UnixTime;
use tokio::sync::watch;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        self.now_millis().div_euclid(1000)
    }
    /// For a clock that jumps (a test's): told each time it moves, so a task waiting for a
    /// deadline wakes. The wall clock returns `None` (it is waited on with timers).
    fn ticks(&self) -> Option<watch::Receiver<i64>> {
        None
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

/// A clock tests set and advance; whoever waits on it is told when it moves.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
    moved: watch::Sender<i64>,
}

impl ManualClock {
    /// A clock standing at `seconds`.
    pub fn at(seconds: UnixTime) -> Self {
        let ms = seconds.saturating_mul(1000);
        ManualClock {
            millis: AtomicI64::new(ms),
            moved: watch::channel(ms).0,
        }
    }

    /// Move forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        let ms = self
            .millis
            .fetch_add(seconds.saturating_mul(1000), Ordering::SeqCst)
            .saturating_add(seconds.saturating_mul(1000));
        self.moved.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
    fn ticks(&self) -> Option<watch::Receiver<i64>> {
        Some(self.moved.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(100);
        assert_eq!(c.now(), 100);
        let mut ticks = c.ticks().unwrap();
        assert!(!ticks.has_changed().unwrap());
        c.advance(5);
        assert!(ticks.has_changed().unwrap());
        assert_eq!(*ticks.borrow_and_update(), 105_000);
        assert_eq!((c.now(), c.now_millis()), (105, 105_000));
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
