//! Following a shared store: what other sidecars wrote (revocations, signing keys, policy
//! deploys, bans) is put into force here, within the watch's latency (tens of milliseconds on a
//! LAN), and cuts this process's live MQTT and NATS connections as a local change would. With
//! sled nothing else writes the store and there is nothing to follow.

use crate::error::SidecarError;
use crate::state::{AppState, State};
use crate::store::{PolicyStore, StoreChange};

/// Apply every change the store reports until it stops reporting.
pub async fn run(state: State, mut changes: tokio::sync::mpsc::UnboundedReceiver<StoreChange>) {
    while let Some(change) = changes.recv().await {
        let what = match &change {
            StoreChange::Revocation(..) => "revocation",
            StoreChange::SigningKeys => "signing keys",
            StoreChange::Policy => "policy",
            StoreChange::Bans => "bans",
        };
        if let Err(e) = apply(&state, change).await {
            tracing::error!(error = %e, change = what, "a change made through another sidecar is not applied here");
        }
    }
}

async fn apply(state: &AppState, change: StoreChange) -> Result<(), SidecarError> {
    match change {
        StoreChange::Revocation(_, rec) if rec.until > state.now() => {
            super::revocations::apply(&state.auth, &rec)
        }
        StoreChange::Revocation(..) => Ok(()),
        StoreChange::SigningKeys => reload_keys(state),
        StoreChange::Policy => reload_policy(state).await,
        StoreChange::Bans => {
            let bans = state.store.bans()?;
            state
                .limiter
                .set_bans(bans.into_iter().filter_map(|b| b.ip.parse().ok()));
            Ok(())
        }
    }
}

/// Load the store's signing keys and serve them (after a rotation here or anywhere).
pub(crate) fn reload_keys(state: &AppState) -> Result<(), SidecarError> {
    let keys = crate::keystore::load_key_set(
        state.store.as_ref(),
        &state.master,
        state.config.signing_alg()?,
        state.now(),
        state.config.max_token_lifetime(),
    )?;
    state.auth.set_keys(crate::keystore::with_app_keys(
        keys,
        &state.config.app_hs256_secrets,
    )?);
    Ok(())
}

/// Serve the store's live version if it is not the one serving here.
async fn reload_policy(state: &AppState) -> Result<(), SidecarError> {
    let _one_at_a_time = state.policy_lock.lock().await;
    let store: &dyn PolicyStore = state.store.as_ref();
    let Some(live) = store.live_policy()? else {
        return Ok(());
    };
    if state.auth.policy().version() == Some(live.version) {
        return Ok(());
    }
    let version = live.version;
    let bundle = super::policies::bundle_of(live.files.clone())?;
    // Compiling takes tens of milliseconds: off the async threads. The version passed the
    // gate where it was deployed; here it only has to compile.
    let set =
        tokio::task::spawn_blocking(move || broker_auth::policy::PolicySet::from_bundle(&bundle))
            .await
            .map_err(|e| SidecarError::internal_from("policy compile", e))?
            .map_err(|e| {
                SidecarError::policy_from(format!("stored policy version {version}"), e)
            })?;
    super::policies::serve_version(state, set, &live);
    tracing::info!(version, "policy version deployed elsewhere now serves here");
    Ok(())
}
