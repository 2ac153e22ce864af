//! The NATS provisioner (the RavenXcope surface): operator → accounts → users, `.creds`, the
//! account resolver's data, and revocation by re-signing an account.
//!
//! Design of the accounts (the seed's scenario, across tenants):
//! - **CONTROL** holds the backend, the control admin and the JetStream command stream `RXC_CMD`
//!   (`rxc.*.*.cmd`, work queue, file storage) with one durable pull consumer per sensor.
//! - **One account per tenant** holds that tenant's sensors. It *exports* the stream
//!   `rxc.<tenant>.*.status` (CONTROL imports it, so the backend sees every sensor's status) and
//!   *imports* from CONTROL, per sensor, the services `$JS.API.CONSUMER.{MSG.NEXT,INFO}.RXC_CMD.
//!   cmd-<tenant>-<sensor>` (under the local prefix `JS.CONTROL.API`, since a tenant account has
//!   no JetStream of its own) and `$JS.ACK.RXC_CMD.cmd-<tenant>-<sensor>.>`: a tenant reaches only
//!   its own sensors' consumers, and each sensor's user JWT narrows that to its own.
//! - Every permission in a user JWT comes from the policy's grants for that user's principal
//!   (sensor, backend, control admin), through the same translation as the callout: nothing is
//!   minted that the policy does not grant, and a user the policy grants nothing is refused.
//!
//! Seeds (accounts' and users') are AES-256-GCM encrypted with `ACCOUNT_SEED_ENCRYPTION_KEY`
//! before they reach the store. All of this is synchronous and I/O-free apart from the store; the
//! NATS side (claims pushes, the command stream) is in [`nats`].

pub mod nats;
pub mod operator;

use std::sync::Arc;

use broker_auth::identity::IdentityType;
use broker_auth::nats_jwt::creds::format_user_creds;
use broker_auth::nats_jwt::{self, Account, AccountLimits, NatsClaims, User};
use broker_auth::secret::SecretString;
use broker_auth::{Principal, Protocol};
use serde_json::json;

use crate::error::SidecarError;
use crate::keystore::MasterKey;
use crate::store::{NatsAccountRecord, NatsStore, NatsUserRecord, SealedSeed};

/// Ids of the two fixed accounts.
pub const SYS: &str = "SYS";
pub const CONTROL: &str = "CONTROL";

/// The API prefix under which a tenant account reaches CONTROL's JetStream (a tenant account has
/// no JetStream of its own, and nats-server answers its `$JS.API.>` with "not enabled"; the
/// policy's `control_js_prefix` grants the same subjects).
pub const JS_PREFIX: &str = "JS.CONTROL.API";

/// Names the provisioner uses (from the seed's environment variables).
#[derive(Clone, Debug)]
pub struct Names {
    /// JetStream command stream (`COMMAND_STREAM_NAME`, default `RXC_CMD`).
    pub command_stream: String,
    /// Display name of the control account (`CONTROL_ACCOUNT_NAME`, default `CONTROL`).
    pub control_account: String,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            command_stream: "RXC_CMD".into(),
            control_account: CONTROL.into(),
        }
    }
}

/// Issues accounts and users; see the module docs for the account design.
pub struct Provisioner {
    operator: nkeys::KeyPair,
    seeds: MasterKey,
    store: Arc<dyn NatsStore>,
    /// Users' permissions come from it; `init-operator` (accounts only) has none.
    policy: Option<broker_auth_runtime::LiveAuth>,
    pub names: Names,
}

fn internal(e: impl Into<crate::error::Cause>) -> SidecarError {
    SidecarError::internal_from("", e)
}

/// The durable pull consumer of one sensor on the command stream (`cmd-<tenant>-<sensor>`):
/// the name the tenant's imports, the JetStream side and the provisioning answer all use.
pub fn consumer_name(tenant: &str, sensor: &str) -> String {
    format!("cmd-{tenant}-{sensor}")
}

/// A user as the provisioner returns it.
pub struct IssuedUser {
    pub record: NatsUserRecord,
    pub creds: String,
    /// False when an existing user was returned (create-or-return).
    pub created: bool,
}

impl Provisioner {
    pub fn new(
        operator: nkeys::KeyPair,
        seeds: MasterKey,
        store: Arc<dyn NatsStore>,
        policy: Option<broker_auth_runtime::LiveAuth>,
        names: Names,
    ) -> Self {
        Self {
            operator,
            seeds,
            store,
            policy,
            names,
        }
    }

    pub fn operator_public_key(&self) -> String {
        self.operator.public_key()
    }

    fn seal(&self, id: &str, kp: &nkeys::KeyPair) -> Result<SealedSeed, SidecarError> {
        let seed = kp.seed().map_err(internal)?;
        let (nonce, ciphertext) = self.seeds.seal(id.as_bytes(), seed.as_bytes())?;
        Ok(SealedSeed { nonce, ciphertext })
    }

    fn unseal(&self, id: &str, s: &SealedSeed) -> Result<nkeys::KeyPair, SidecarError> {
        let seed = self
            .seeds
            .open(id.as_bytes(), &s.nonce, &s.ciphertext)
            .map_err(|_| {
                SidecarError::config(format!(
                    "the seed of {id} cannot be decrypted: wrong ACCOUNT_SEED_ENCRYPTION_KEY?"
                ))
            })?;
        let text = std::str::from_utf8(seed.expose()).map_err(internal)?;
        nkeys::KeyPair::from_seed(text).map_err(internal)
    }

    /// The claims of an account as we want them now (imports/exports follow the design above).
    fn account_claims(&self, id: &str, name: &str, public_key: &str) -> NatsClaims<Account> {
        let mut c = NatsClaims::<Account>::new(public_key.to_owned());
        c.name = name.to_owned();
        let stream = &self.names.command_stream;
        match id {
            SYS => {}
            CONTROL => {
                c.nats.limits = AccountLimits::default().with_jetstream();
                c.nats.exports = vec![
                    json!({"name": "commands", "subject": format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"), "type": "service", "response_type": "Stream"}),
                    json!({"name": "consumer-info", "subject": format!("$JS.API.CONSUMER.INFO.{stream}.*"), "type": "service"}),
                    json!({"name": "acks", "subject": format!("$JS.ACK.{stream}.>"), "type": "service"}),
                ];
            }
            tenant => {
                c.nats.exports = vec![json!({
                    "name": "status",
                    "subject": format!("rxc.{tenant}.*.status"),
                    "type": "stream",
                })];
            }
        }
        c
    }

    fn sign_account(&self, mut c: NatsClaims<Account>, now: i64) -> Result<String, SidecarError> {
        nats_jwt::encode(&mut c, &self.operator, now).map_err(internal)
    }

    /// Create the account `id` unless it exists; returns the stored record (create-or-return).
    pub fn ensure_account(
        &self,
        id: &str,
        name: &str,
        now: i64,
    ) -> Result<(NatsAccountRecord, bool), SidecarError> {
        if let Some(existing) = self.store.nats_account(id)? {
            return Ok((existing, false));
        }
        let kp = nkeys::KeyPair::new_account();
        let claims = self.account_claims(id, name, &kp.public_key());
        let rec = NatsAccountRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            public_key: kp.public_key(),
            jwt: self.sign_account(claims, now)?,
            seed: self.seal(id, &kp)?,
            created_at: now,
        };
        let stored = self.store.create_nats_account(&rec)?;
        Ok((stored.clone(), stored.public_key == rec.public_key))
    }

    /// The service imports a tenant needs from CONTROL: for each of its sensors, that sensor's
    /// consumer's `MSG.NEXT` and `INFO`, and its acks. Per sensor, because a NATS wildcard is a
    /// whole token (`cmd-t1-*` would be a literal), so no single import can cover "this tenant's
    /// consumers" and nothing else.
    fn tenant_imports(&self, control: &str, consumers: &[String]) -> Vec<serde_json::Value> {
        let stream = &self.names.command_stream;
        consumers
            .iter()
            .flat_map(|c| {
                [
                    json!({"name": format!("next-{c}"), "account": control, "type": "service",
                           "subject": format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{c}"),
                           "local_subject": format!("{JS_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{c}")}),
                    json!({"name": format!("info-{c}"), "account": control, "type": "service",
                           "subject": format!("$JS.API.CONSUMER.INFO.{stream}.{c}"),
                           "local_subject": format!("{JS_PREFIX}.CONSUMER.INFO.{stream}.{c}")}),
                    json!({"name": format!("ack-{c}"), "account": control, "type": "service",
                           "subject": format!("$JS.ACK.{stream}.{c}.>")}),
                ]
            })
            .collect()
    }

    /// Re-sign a tenant's account with imports for every sensor provisioned in it.
    pub fn resign_tenant(&self, tenant: &str, now: i64) -> Result<NatsAccountRecord, SidecarError> {
        let mut account = self
            .store
            .nats_account(tenant)?
            .ok_or(SidecarError::NotFound("tenant account"))?;
        let control = self.store.nats_account(CONTROL)?.ok_or_else(|| {
            SidecarError::config("no CONTROL account: run `sidecar init-operator`")
        })?;
        let mut consumers: Vec<String> = self
            .store
            .nats_users()?
            .into_iter()
            .filter_map(|u| {
                let (t, s) = u.id.split_once('/')?;
                (t == tenant).then(|| consumer_name(t, s))
            })
            .collect();
        consumers.sort();
        let mut claims = self.claims_of(&account)?;
        claims.nats.imports = self.tenant_imports(&control.public_key, &consumers);
        account.jwt = self.sign_account(claims, now)?;
        self.store.update_nats_account(&account)?;
        Ok(account)
    }

    /// Re-sign CONTROL with a stream import of every tenant's status subjects.
    pub fn resign_control(&self, now: i64) -> Result<NatsAccountRecord, SidecarError> {
        let mut control = self
            .store
            .nats_account(CONTROL)?
            .ok_or_else(|| SidecarError::config("no CONTROL account"))?;
        let mut claims = self.claims_of(&control)?;
        let mut imports = Vec::new();
        for t in self.tenants()? {
            imports.push(
                json!({"name": format!("status-{}", t.id), "account": t.public_key,
                "type": "stream", "subject": format!("rxc.{}.*.status", t.id)}),
            );
        }
        claims.nats.imports = imports;
        control.jwt = self.sign_account(claims, now)?;
        self.store.update_nats_account(&control)?;
        Ok(control)
    }

    fn claims_of(&self, rec: &NatsAccountRecord) -> Result<NatsClaims<Account>, SidecarError> {
        nats_jwt::decode_at::<Account>(&rec.jwt, None).map_err(internal)
    }

    /// Tenant accounts (everything but SYS and CONTROL).
    pub fn tenants(&self) -> Result<Vec<NatsAccountRecord>, SidecarError> {
        Ok(self
            .store
            .nats_accounts()?
            .into_iter()
            .filter(|a| a.id != SYS && a.id != CONTROL)
            .collect())
    }

    /// The principal a provisioned user is, for the policy.
    pub fn principal(id: &str, tenant: Option<&str>, role: &str) -> Principal {
        Principal {
            id: id.to_owned(),
            // Not `device`: the policy would add the device topic scheme to a sensor's grants.
            kind: IdentityType::Internal,
            tenant: tenant.map(str::to_owned),
            roles: vec![role.to_owned()],
            scopes: vec![],
            groups: vec![],
            devices: vec![],
            client_id: None,
            protocol: Protocol::Nats,
        }
    }

    fn user_claims(
        &self,
        id: &str,
        principal: &Principal,
        public_key: &str,
    ) -> Result<NatsClaims<User>, SidecarError> {
        let policy = self
            .policy
            .as_ref()
            .ok_or_else(|| SidecarError::internal("no policy loaded"))?;
        let grants = policy
            .policy()
            .grants(principal)
            .map_err(|e| SidecarError::policy_from("", e))?;
        if grants.is_empty() {
            return Err(SidecarError::Forbidden(
                "the policy grants this user nothing; refusing to mint it",
            ));
        }
        let mut c = NatsClaims::<User>::new(public_key.to_owned());
        c.name = id.to_owned();
        c.nats.permissions = callout::permissions::permissions_for(&grants);
        Ok(c)
    }

    fn creds_of(&self, rec: &NatsUserRecord) -> Result<String, SidecarError> {
        let kp = self.unseal(&rec.id, &rec.seed)?;
        let seed = SecretString::new(kp.seed().map_err(internal)?);
        format_user_creds(&rec.jwt, &seed).map_err(internal)
    }

    /// Create-or-return the user `id` in `account_id` with the policy's grants for `principal`.
    /// A revoked user is replaced by a new key (re-provisioning after a revocation).
    pub fn ensure_user(
        &self,
        id: &str,
        account_id: &str,
        principal: &Principal,
        now: i64,
    ) -> Result<IssuedUser, SidecarError> {
        if let Some(existing) = self.store.nats_user(id)?
            && existing.revoked_at.is_none()
        {
            let creds = self.creds_of(&existing)?;
            return Ok(IssuedUser {
                record: existing,
                creds,
                created: false,
            });
        }
        let account = self
            .store
            .nats_account(account_id)?
            .ok_or(SidecarError::NotFound("no such account"))?;
        let signer = self.unseal(&account.id, &account.seed)?;
        let kp = nkeys::KeyPair::new_user();
        let mut claims = self.user_claims(id, principal, &kp.public_key())?;
        let jwt = nats_jwt::encode(&mut claims, &signer, now).map_err(internal)?;
        let rec = NatsUserRecord {
            id: id.to_owned(),
            account_id: account_id.to_owned(),
            public_key: kp.public_key(),
            jwt,
            seed: self.seal(id, &kp)?,
            created_at: now,
            revoked_at: None,
        };
        let minted = rec.public_key.clone();
        let stored = match self.store.nats_user(id)? {
            Some(old) if old.revoked_at.is_some() => {
                self.store.update_nats_user(&rec)?;
                rec
            }
            _ => self.store.create_nats_user(&rec)?,
        };
        let creds = self.creds_of(&stored)?;
        let created = stored.public_key == minted;
        Ok(IssuedUser {
            record: stored,
            creds,
            created,
        })
    }

    /// Credentials for a short-lived user of `account_id` that are never stored (our own
    /// connections: the SYS user that pushes claims, the control admin).
    pub fn ephemeral_user(
        &self,
        account_id: &str,
        principal: Option<&Principal>,
        ttl: i64,
        now: i64,
    ) -> Result<String, SidecarError> {
        let account = self
            .store
            .nats_account(account_id)?
            .ok_or_else(|| SidecarError::config(format!("no {account_id} account")))?;
        let signer = self.unseal(&account.id, &account.seed)?;
        let kp = nkeys::KeyPair::new_user();
        let mut claims = match principal {
            Some(p) => self.user_claims(&p.id, p, &kp.public_key())?,
            None => {
                let mut c = NatsClaims::<User>::new(kp.public_key());
                c.name = "broker-auth-sys".into();
                c
            }
        };
        claims.exp = now + ttl;
        let jwt = nats_jwt::encode(&mut claims, &signer, now).map_err(internal)?;
        let seed = SecretString::new(kp.seed().map_err(internal)?);
        format_user_creds(&jwt, &seed).map_err(internal)
    }

    /// Revoke `user_pub` in `account_id`: add it to the account JWT's `revocations`, re-sign the
    /// account and store it. The caller pushes the new JWT to running servers.
    pub fn revoke(
        &self,
        account_id: &str,
        user_pub: &str,
        now: i64,
    ) -> Result<NatsAccountRecord, SidecarError> {
        if !user_pub.starts_with('U') || nkeys::KeyPair::from_public_key(user_pub).is_err() {
            return Err(SidecarError::Validation(
                "userPubKey must be a NATS user public key (U...)".into(),
            ));
        }
        let mut account = self
            .store
            .nats_account(account_id)?
            .ok_or(SidecarError::NotFound("no such account"))?;
        let mut claims = self.claims_of(&account)?;
        // nats-server refuses users whose JWT was issued at or before this instant.
        claims.nats.revocations.insert(user_pub.to_owned(), now);
        account.jwt = self.sign_account(claims, now)?;
        self.store.update_nats_account(&account)?;
        for mut u in self.store.nats_users()? {
            if u.public_key == user_pub && u.revoked_at.is_none() {
                u.revoked_at = Some(now);
                self.store.update_nats_user(&u)?;
            }
        }
        Ok(account)
    }

    /// (tenant, sensor) of every live sensor user.
    pub fn sensors(&self) -> Result<Vec<(String, String)>, SidecarError> {
        Ok(self
            .store
            .nats_users()?
            .into_iter()
            .filter(|u| u.revoked_at.is_none())
            .filter_map(|u| {
                let (t, s) = u.id.split_once('/')?;
                Some((t.to_owned(), s.to_owned()))
            })
            .collect())
    }

    /// Decrypting every stored seed proves the encryption key is the one they were sealed with;
    /// `serve` refuses to start otherwise.
    pub fn check_key(&self) -> Result<(), SidecarError> {
        for a in self.store.nats_accounts()? {
            self.unseal(&a.id, &a.seed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
