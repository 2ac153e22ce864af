//! Operations: bans (a new one persisted before the refusal is answered, admins list and lift
//! them), signing-key rotation, and readiness.

use std::net::IpAddr;

use super::callers;
use crate::error::SidecarError;
use crate::state::AppState;
use crate::store::{BanRecord, BanStore, MaintenanceStore};

/// Persist the ban the rate limiter just decided on `ip`.
pub async fn record_ban(state: &AppState, ip: IpAddr) -> Result<(), SidecarError> {
    tracing::warn!(%ip, "banning client after repeated lockouts");
    let rec = BanRecord {
        ip: ip.to_string(),
        since: state.now(),
        reason: "repeated rate-limit lockouts".into(),
    };
    let store: &dyn BanStore = state.store.as_ref();
    store.put_ban(&rec)?;
    store.flush().await?;
    Ok(())
}

pub fn bans(state: &AppState, bearer: Option<&str>) -> Result<Vec<BanRecord>, SidecarError> {
    callers::require_admin(state, bearer)?;
    Ok(state.store.bans()?)
}

/// Lift the ban of `ip` (admins), in the store and in the limiter.
pub async fn lift_ban(
    state: &AppState,
    bearer: Option<&str>,
    ip: &str,
) -> Result<(), SidecarError> {
    callers::require_admin(state, bearer)?;
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| SidecarError::Validation("not an IP address".into()))?;
    let store: &dyn BanStore = state.store.as_ref();
    let existed = store.remove_ban(&addr.to_string())?;
    store.flush().await?;
    state.limiter.unban(addr);
    if !existed {
        return Err(SidecarError::NotFound("ban"));
    }
    Ok(())
}

/// Add a signing key (admins) and make it the active one here; returns its id.
pub async fn rotate_keys(state: &AppState, bearer: Option<&str>) -> Result<String, SidecarError> {
    callers::require_admin(state, bearer)?;
    let now = state.now();
    let alg = state.config.signing_alg()?;
    let store = state.store.as_ref();
    let kid = crate::keystore::rotate(store, &state.master, alg, now)?;
    crate::store::Durable::flush(store).await?;
    super::follow::reload_keys(state)?;
    Ok(kid)
}

/// Whether the store answers (`/healthz`).
pub fn ready(state: &AppState) -> bool {
    let store: &dyn MaintenanceStore = state.store.as_ref();
    store.ping().is_ok()
}
