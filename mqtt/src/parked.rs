//! Authentications waiting for their session.
//!
//! rmqtt's authentication hook runs before the session exists, so its decision is parked under
//! the connection's `Id` until `ClientConnected` moves it into the session. A handshake can still
//! fail after the hook said yes; such leftovers are dropped after [`PENDING_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmqtt::types::Id;

use crate::SessionAuth;

/// How long an authenticated CONNECT may wait for its session.
const PENDING_TTL: Duration = Duration::from_secs(60);

/// Leftovers are swept when this many decisions are parked (a sweep is a scan).
const SWEEP_AT: usize = 1024;

/// Decisions parked by connection id.
#[derive(Default)]
pub(crate) struct Parked {
    pending: Mutex<HashMap<Id, (Instant, Arc<SessionAuth>)>>,
}

impl Parked {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id, (Instant, Arc<SessionAuth>)>> {
        // A panic while holding the lock leaves a plain map behind; keep serving with it.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn park(&self, id: Id, auth: Arc<SessionAuth>) {
        let mut g = self.lock();
        if g.len() >= SWEEP_AT {
            g.retain(|_, (at, _)| at.elapsed() < PENDING_TTL);
        }
        g.insert(id, (Instant::now(), auth));
    }

    pub(crate) fn unpark(&self, id: &Id) -> Option<Arc<SessionAuth>> {
        self.lock().remove(id).map(|(_, a)| a)
    }

    /// The authentication parked for connection `id`, left parked.
    pub(crate) fn parked(&self, id: &Id) -> Option<Arc<SessionAuth>> {
        self.lock().get(id).map(|(_, a)| a.clone())
    }
}
