//! What every listener of a process does at the socket, before any protocol: count open
//! connections per client address against a cap, and ask the process's [`Doorman`] whether the
//! address is locked out or banned. The HTTP server and the embedded MQTT broker's listeners share
//! one [`Doorman`] (the sidecar's rate limiter with its persisted ban list), so an address banned
//! for brute-forcing one of them is refused by both.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a connection is closed at the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shut {
    /// The address holds as many connections as one address may.
    TooManyConnections,
    /// The address is locked out for a while (too many failed attempts).
    LockedOut,
    /// The address is banned until an operator lifts the ban.
    Banned,
}

impl Shut {
    /// Stable reason code (metrics label, log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Shut::TooManyConnections => "too_many_connections",
            Shut::LockedOut => "locked_out",
            Shut::Banned => "banned",
        }
    }
}

/// The process's view of an address's standing, and where failed attempts are counted.
pub trait Doorman: Send + Sync + 'static {
    /// `Some` when connections from `ip` are to be closed at the socket now. Counts nothing.
    fn standing(&self, ip: IpAddr) -> Option<Shut>;
    /// One failed authentication from `ip` (a bad token on a broker CONNECT). Returns how long
    /// the refusal is held before it is answered: zero within the allowance, more once `ip` is
    /// over it, so a client guessing tokens is slowed before it is locked out.
    fn failed(&self, ip: IpAddr) -> Duration;
}

/// A doorman that refuses nobody and counts nothing (tests, benchmarks, the library default).
#[derive(Debug, Default)]
pub struct OpenDoor;

impl Doorman for OpenDoor {
    fn standing(&self, _ip: IpAddr) -> Option<Shut> {
        None
    }
    fn failed(&self, _ip: IpAddr) -> Duration {
        Duration::ZERO
    }
}

/// Open connections per client address, capped. `cap == 0` means no cap.
#[derive(Debug)]
pub struct PerAddress {
    cap: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
    refused: AtomicU64,
}

impl PerAddress {
    /// A counter allowing `cap` open connections per address (0 = unlimited).
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(PerAddress {
            cap,
            open: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// A slot for one more connection from `ip`, released when dropped; `None` at the cap.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let Ok(mut open) = self.open.lock() else {
            // A poisoned map cannot count; refusing is the side that cannot be abused.
            return None;
        };
        let n = open.entry(ip).or_insert(0);
        if self.cap != 0 && *n >= self.cap {
            drop(open);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(Slot {
            of: self.clone(),
            ip,
        })
    }

    /// Open connections from `ip`.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open
            .lock()
            .map(|o| o.get(&ip).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Connections refused at the cap since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    of: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.of.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// At most one log line per `every` for a kind of event anyone can cause (a malformed request,
/// a client that never finished its handshake): the first event of a period is logged with how
/// many were swallowed since the last line, so a flood costs one line per period.
#[derive(Debug)]
pub struct Throttle {
    every_ms: u64,
    next_ms: AtomicU64,
    swallowed: AtomicU64,
    start: std::time::Instant,
}

impl Throttle {
    /// A throttle letting one line through per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle {
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            swallowed: AtomicU64::new(0),
            start: std::time::Instant::now(),
        }
    }

    /// `Some(swallowed since the last line)` when this event may be logged, else `None`.
    pub fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.every_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.swallowed.swap(0, Ordering::Relaxed));
        }
        self.swallowed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_cap_counts_per_address_and_slots_come_back() {
        let p = PerAddress::new(2);
        let a = p.enter(ip("192.0.2.1"));
        let b = p.enter(ip("192.0.2.1"));
        assert!(a.is_some() && b.is_some());
        assert!(p.enter(ip("192.0.2.1")).is_none(), "third from one address");
        assert!(p.enter(ip("192.0.2.2")).is_some(), "another address");
        assert_eq!(p.refused(), 1);
        drop(a);
        assert_eq!(p.open(ip("192.0.2.1")), 1);
        assert!(p.enter(ip("192.0.2.1")).is_some(), "a slot given back");
    }

    #[test]
    fn no_cap_when_zero() {
        let p = PerAddress::new(0);
        let slots: Vec<_> = (0..1000).filter_map(|_| p.enter(ip("::1"))).collect();
        assert_eq!(slots.len(), 1000);
        drop(slots);
        assert_eq!(
            p.open(ip("::1")),
            0,
            "the map forgets an address with no connection"
        );
    }

    #[test]
    fn the_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.admit(), Some(0));
        for _ in 0..99 {
            assert_eq!(t.admit(), None);
        }
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.admit(), Some(0));
        assert!(t.admit().is_some(), "a zero period lets every line through");
    }
}
