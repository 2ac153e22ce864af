//! Per-IP, per-route sliding-window rate limits with lockouts and persistent bans (Tronexus):
//! by default 20 requests per 60 s; every refused request is a violation; 10 violations lock the IP
//! out for 15 minutes; an IP locked out 3 times is banned for good (the ban is persisted by the
//! caller, so it survives restarts, and an admin can lift it).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Limits, from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub requests: u32,
    pub window_secs: u32,
    pub violations_before_lockout: u32,
    pub lockout_secs: u32,
    pub lockouts_before_ban: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests: 20,
            window_secs: 60,
            violations_before_lockout: 10,
            lockout_secs: 15 * 60,
            lockouts_before_ban: 3,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over the window; retry after this many seconds.
    RateLimited { retry_after: u64 },
    /// Locked out; retry after this many seconds.
    LockedOut { retry_after: u64 },
    /// Banned. `new` is true the first time, so the caller persists it once.
    Banned { new: bool },
}

#[derive(Default)]
struct IpState {
    violations: u32,
    lockouts: u32,
    locked_until_ms: i64,
}

#[derive(Default)]
struct Inner {
    windows: HashMap<(IpAddr, &'static str), VecDeque<i64>>,
    ips: HashMap<IpAddr, IpState>,
    bans: HashSet<IpAddr>,
    checks: u64,
}

/// The limiter. One mutex: each check is a few hash-map operations, far cheaper than the request.
pub struct RateLimiter {
    limits: Limits,
    inner: Mutex<Inner>,
}

impl RateLimiter {
    pub fn new(limits: Limits, bans: impl IntoIterator<Item = IpAddr>) -> Self {
        RateLimiter {
            limits,
            inner: Mutex::new(Inner {
                bans: bans.into_iter().collect(),
                ..Default::default()
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Count one request of `ip` on `route` at `now_ms`.
    pub fn check(&self, ip: IpAddr, route: &'static str, now_ms: i64) -> Result<(), Refusal> {
        let l = self.limits;
        let Ok(mut inner) = self.inner.lock() else {
            return Err(Refusal::RateLimited { retry_after: 1 });
        };
        if inner.bans.contains(&ip) {
            return Err(Refusal::Banned { new: false });
        }
        inner.checks += 1;
        if inner.checks % 4096 == 0 {
            let horizon = now_ms - i64::from(l.window_secs) * 1000;
            inner
                .windows
                .retain(|_, w| w.back().is_some_and(|t| *t > horizon));
        }
        let state = inner.ips.entry(ip).or_default();
        if state.locked_until_ms > now_ms {
            let retry_after = ((state.locked_until_ms - now_ms) as u64).div_ceil(1000);
            return Err(Refusal::LockedOut { retry_after });
        }
        let window_ms = i64::from(l.window_secs) * 1000;
        let w = inner.windows.entry((ip, route)).or_default();
        while w.front().is_some_and(|t| *t <= now_ms - window_ms) {
            w.pop_front();
        }
        if (w.len() as u32) < l.requests {
            w.push_back(now_ms);
            return Ok(());
        }
        let retry_after = w
            .front()
            .map(|t| ((t + window_ms - now_ms).max(1000) as u64).div_ceil(1000))
            .unwrap_or(1);
        let state = inner.ips.entry(ip).or_default();
        state.violations += 1;
        if state.violations >= l.violations_before_lockout {
            state.violations = 0;
            state.lockouts += 1;
            if state.lockouts >= l.lockouts_before_ban {
                inner.ips.remove(&ip);
                inner.bans.insert(ip);
                return Err(Refusal::Banned { new: true });
            }
            state.locked_until_ms = now_ms + i64::from(l.lockout_secs) * 1000;
            return Err(Refusal::LockedOut {
                retry_after: u64::from(l.lockout_secs),
            });
        }
        Err(Refusal::RateLimited { retry_after })
    }

    /// Whether `ip` is banned or locked out at `now_ms`, counting nothing.
    pub fn standing(&self, ip: IpAddr, now_ms: i64) -> Option<Refusal> {
        let Ok(inner) = self.inner.lock() else {
            return Some(Refusal::LockedOut { retry_after: 1 });
        };
        if inner.bans.contains(&ip) {
            return Some(Refusal::Banned { new: false });
        }
        let until = inner.ips.get(&ip)?.locked_until_ms;
        (until > now_ms).then(|| Refusal::LockedOut {
            retry_after: ((until - now_ms) as u64).div_ceil(1000),
        })
    }

    /// Lift a ban (admin).
    pub fn unban(&self, ip: IpAddr) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.bans.remove(&ip);
            inner.ips.remove(&ip);
        }
    }

    /// Replace the bans with the store's (another sidecar banned or lifted one). A lifted
    /// ban also forgets the address's lockout history, as [`RateLimiter::unban`] does.
    pub fn set_bans(&self, bans: impl IntoIterator<Item = IpAddr>) {
        let bans: HashSet<IpAddr> = bans.into_iter().collect();
        if let Ok(mut inner) = self.inner.lock() {
            let lifted: Vec<IpAddr> = inner.bans.difference(&bans).copied().collect();
            for ip in lifted {
                inner.ips.remove(&ip);
            }
            inner.bans = bans;
        }
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.inner
            .lock()
            .map(|i| i.bans.contains(&ip))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sliding_window_per_ip_and_route() {
        let r = RateLimiter::new(Limits::default(), []);
        for i in 0..20 {
            r.check(ip("10.0.0.1"), "a", i).unwrap();
        }
        assert!(matches!(
            r.check(ip("10.0.0.1"), "a", 30_000),
            Err(Refusal::RateLimited { retry_after: 30 })
        ));
        r.check(ip("10.0.0.1"), "b", 30_000).unwrap();
        r.check(ip("10.0.0.2"), "a", 30_000).unwrap();
        // The window slides: after 60 s the first requests have left it.
        r.check(ip("10.0.0.1"), "a", 60_001).unwrap();
    }

    #[test]
    fn violations_lock_out_and_repeated_lockouts_ban() {
        let r = RateLimiter::new(Limits::default(), []);
        let a = ip("192.0.2.7");
        let mut now = 0;
        for round in 1..=3 {
            for _ in 0..20 {
                let _ = r.check(a, "x", now);
            }
            let mut last = Ok(());
            for _ in 0..10 {
                last = r.check(a, "x", now);
            }
            if round < 3 {
                assert_eq!(last, Err(Refusal::LockedOut { retry_after: 900 }));
                assert!(
                    matches!(r.check(a, "y", now + 1000), Err(Refusal::LockedOut { .. })),
                    "all routes"
                );
                now += 901_000;
            } else {
                assert_eq!(last, Err(Refusal::Banned { new: true }));
            }
        }
        assert_eq!(
            r.check(a, "x", now + 10_000_000),
            Err(Refusal::Banned { new: false })
        );
        r.unban(a);
        // The store's set replaces this process's: a ban made elsewhere holds here, one lifted
        // elsewhere no longer does.
        let b = ip("192.0.2.8");
        r.set_bans([a, b]);
        assert!(r.is_banned(a) && r.is_banned(b));
        r.set_bans([b]);
        assert!(!r.is_banned(a) && r.is_banned(b));
        r.set_bans([]);
        r.check(a, "x", now + 10_000_000).unwrap();
        // Bans loaded at start are honoured.
        let r2 = RateLimiter::new(Limits::default(), [a]);
        assert!(r2.is_banned(a));
    }
}
