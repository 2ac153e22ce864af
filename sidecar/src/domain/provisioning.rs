//! The NATS provisioner's flows (seed 004): tenants' accounts, sensors' users, the backend user
//! and revocation. Each write is stored and flushed first, then the re-signed account JWT is
//! pushed to running servers; a push that fails is reported (`propagated: false`), not fatal:
//! the resolver serves the stored JWT to any server that asks.

use std::sync::Arc;

use crate::error::SidecarError;
use crate::provision::{CONTROL, IssuedUser, Provisioner, SYS, consumer_name};
use crate::state::AppState;
use crate::store::{Durable, NatsAccountRecord, NatsStore};

fn provisioner(state: &AppState) -> Result<Arc<Provisioner>, SidecarError> {
    state.provisioner.clone().ok_or(SidecarError::NotFound(
        "the NATS provisioner (set OPERATOR_SEED_PATH)",
    ))
}

/// A tenant or sensor id as it appears in subjects: the core's safe-name rule.
pub fn check_name(what: &str, s: &str) -> Result<(), SidecarError> {
    if broker_auth::principal::is_safe_name(s) {
        Ok(())
    } else {
        Err(SidecarError::Validation(format!(
            "{what} must be 1-128 characters of A-Z a-z 0-9 _ -"
        )))
    }
}

/// nats-server keeps a consumer's name in its storage paths: at most 255 characters.
const MAX_CONSUMER_NAME: usize = 255;

/// The account JWT the resolver serves for `key` (none: the system account's).
pub fn resolve(state: &AppState, key: Option<&str>) -> Result<String, SidecarError> {
    provisioner(state)?;
    let store: &dyn NatsStore = state.store.as_ref();
    let rec = match key {
        None | Some("") => store.nats_account(SYS)?,
        Some(k) => store.nats_account_by_key(k)?,
    };
    rec.map(|a| a.jwt).ok_or(SidecarError::NotFound("account"))
}

/// Flush, then push an account's new JWT; true if a server took it.
async fn propagate(state: &AppState, account: &NatsAccountRecord) -> Result<bool, SidecarError> {
    let store: &dyn Durable = state.store.as_ref();
    store.flush().await?;
    Ok(
        match state
            .nats_side
            .push(&account.public_key, &account.jwt)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, account = %account.public_key, "account update not pushed");
                false
            }
        },
    )
}

/// A tenant's account, and whether this call created it and its JWT reached the servers.
pub struct TenantAccount {
    pub account: NatsAccountRecord,
    pub created: bool,
    pub propagated: bool,
}

/// Create-or-return the account of `tenant`; a new one is imported by CONTROL.
pub async fn create_account(
    state: &AppState,
    tenant: &str,
    name: Option<String>,
) -> Result<TenantAccount, SidecarError> {
    let p = provisioner(state)?;
    check_name("tenantId", tenant)?;
    if tenant == SYS || tenant == CONTROL {
        return Err(SidecarError::Validation("tenantId is reserved".into()));
    }
    let name = name.unwrap_or_else(|| tenant.to_owned());
    if name.len() > 128 {
        return Err(SidecarError::Validation(
            "name is over 128 characters".into(),
        ));
    }
    let (account, created) = p.ensure_account(tenant, &name, state.now())?;
    let mut propagated = true;
    if created {
        // CONTROL imports the new tenant's status subjects.
        let control = p.resign_control(state.now())?;
        propagated = propagate(state, &control).await?;
    }
    Ok(TenantAccount {
        account,
        created,
        propagated,
    })
}

/// A sensor's user, its tenant's account, its command consumer, and what reached nats-server.
pub struct SensorUser {
    pub user: IssuedUser,
    pub account: NatsAccountRecord,
    pub consumer: String,
    pub consumer_ready: bool,
    pub propagated: bool,
}

/// Create-or-return the user of `sensor` in `tenant`'s account, and its command consumer.
pub async fn create_user(
    state: &AppState,
    tenant: &str,
    sensor: &str,
) -> Result<SensorUser, SidecarError> {
    let p = provisioner(state)?;
    check_name("tenantId", tenant)?;
    check_name("sensorId", sensor)?;
    if consumer_name(tenant, sensor).len() > MAX_CONSUMER_NAME {
        return Err(SidecarError::Validation(format!(
            "tenantId and sensorId together are too long: the consumer name cmd-<tenantId>-<sensorId> \
             must be at most {MAX_CONSUMER_NAME} characters"
        )));
    }
    let store: &dyn NatsStore = state.store.as_ref();
    let account = store.nats_account(tenant)?.ok_or(SidecarError::NotFound(
        "tenant account (POST /accounts first)",
    ))?;
    let principal = Provisioner::principal(sensor, Some(tenant), "sensor");
    let id = format!("{tenant}/{sensor}");
    let user = p.ensure_user(&id, &account.id, &principal, state.now())?;
    let (account, propagated) = if user.created {
        // The tenant account imports this sensor's consumer from CONTROL.
        let account = p.resign_tenant(tenant, state.now())?;
        let propagated = propagate(state, &account).await?;
        (account, propagated)
    } else {
        (account, true)
    };
    let consumer = state
        .nats_side
        .ensure_consumer(&p.names.command_stream, tenant, sensor)
        .await;
    if let Err(e) = &consumer {
        tracing::warn!(error = %e, user = %id, "command consumer not ensured yet");
    }
    Ok(SensorUser {
        user,
        account,
        consumer: consumer_name(tenant, sensor),
        consumer_ready: consumer.is_ok(),
        propagated,
    })
}

/// Create-or-return the backend's user in CONTROL.
pub async fn backend_user(state: &AppState) -> Result<IssuedUser, SidecarError> {
    let p = provisioner(state)?;
    let principal = Provisioner::principal("backend", None, "backend");
    let user = p.ensure_user("backend", CONTROL, &principal, state.now())?;
    let store: &dyn Durable = state.store.as_ref();
    store.flush().await?;
    Ok(user)
}

/// Revoke a user of an account; returns the re-signed account and whether it reached a server.
pub async fn revoke(
    state: &AppState,
    account_id: &str,
    user_pub_key: &str,
) -> Result<(NatsAccountRecord, bool), SidecarError> {
    let p = provisioner(state)?;
    let account = p.revoke(account_id, user_pub_key, state.now())?;
    let propagated = propagate(state, &account).await?;
    Ok((account, propagated))
}
