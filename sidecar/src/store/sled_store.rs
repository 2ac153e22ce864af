//! The sled backend: one database directory, one tree per record kind.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::codec::{decode, encode};
use super::oauth_records::*;
use super::records::*;
use super::{Store, StoreError, StoreFuture, StoreResult};

/// sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    identities: sled::Tree,
    keys: sled::Tree,
    challenges: sled::Tree,
    signatures: sled::Tree,
    announcements: sled::Tree,
    current: sled::Tree,
    revocations: sled::Tree,
    bans: sled::Tree,
    api_keys: sled::Tree,
    signing_keys: sled::Tree,
    nats_accounts: sled::Tree,
    nats_account_keys: sled::Tree,
    nats_users: sled::Tree,
    pub(super) tenancy: sled::Tree,
    pub(super) refresh: sled::Tree,
    pub(super) families: sled::Tree,
    pub(super) oauth_clients: sled::Tree,
    pub(super) pending: sled::Tree,
    pub(super) codes: sled::Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

pub(super) fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl SledStore {
    /// Open (or create) the store in `dir`. Fails clearly when another process holds it.
    pub fn open(dir: &Path) -> StoreResult<SledStore> {
        let open_err = |cause: String| StoreError::Open {
            path: dir.display().to_string(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            .open()
            .map_err(|e| open_err(e.to_string()))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(e.to_string()));
        Ok(SledStore {
            identities: tree("identities")?,
            keys: tree("identity_keys")?,
            challenges: tree("challenges")?,
            signatures: tree("announce_signatures")?,
            announcements: tree("announcements")?,
            current: tree("current_announcement")?,
            revocations: tree("revocations")?,
            bans: tree("bans")?,
            api_keys: tree("api_keys")?,
            signing_keys: tree("signing_keys")?,
            nats_accounts: tree("nats_accounts")?,
            nats_account_keys: tree("nats_account_keys")?,
            nats_users: tree("nats_users")?,
            tenancy: tree("tenancy")?,
            refresh: tree("refresh_tokens")?,
            families: tree("session_families")?,
            oauth_clients: tree("oauth_clients")?,
            pending: tree("oauth_pending")?,
            codes: tree("oauth_codes")?,
            db,
        })
    }

    fn get<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        tree.get(key)
            .map_err(backend)?
            .map(|v| decode(name, &v))
            .transpose()
    }
}

impl Store for SledStore {
    fn insert_identity(&self, rec: &IdentityRecord) -> StoreResult<()> {
        let value = encode("identities", rec)?;
        (&self.identities, &self.keys)
            .transaction(|(ids, keys)| {
                let index = rec.sign_in_key();
                if let Some(k) = &index
                    && keys.get(k.as_bytes())?.is_some()
                {
                    return Err(abort(StoreError::Conflict(
                        "public key or upstream account already registered".into(),
                    )));
                }
                if ids.get(rec.id.as_bytes())?.is_some() {
                    return Err(abort(StoreError::Conflict(
                        "identity id already exists".into(),
                    )));
                }
                if let Some(k) = &index {
                    keys.insert(k.as_bytes(), rec.id.as_bytes())?;
                }
                ids.insert(rec.id.as_bytes(), value.clone())?;
                Ok(())
            })
            .map_err(tx_error)
    }

    fn update_identity(&self, rec: &IdentityRecord) -> StoreResult<()> {
        self.identities
            .insert(rec.id.as_bytes(), encode("identities", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn identity(&self, id: &str) -> StoreResult<Option<IdentityRecord>> {
        Self::get(&self.identities, "identities", id.as_bytes())
    }

    fn identity_by_key(&self, canonical_key: &str) -> StoreResult<Option<IdentityRecord>> {
        match self.keys.get(canonical_key.as_bytes()).map_err(backend)? {
            Some(id) => Self::get(&self.identities, "identities", &id),
            None => Ok(None),
        }
    }

    fn list_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<IdentityRecord>> {
        let iter = match after {
            Some(a) => self.identities.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.identities.iter(),
        };
        iter.take(limit)
            .map(|kv| {
                let (_, v) = kv.map_err(backend)?;
                decode("identities", &v)
            })
            .collect()
    }

    fn identity_count(&self) -> StoreResult<usize> {
        Ok(self.identities.len())
    }

    fn put_challenge(&self, challenge: &str, rec: &ChallengeRecord) -> StoreResult<()> {
        self.challenges
            .insert(challenge.as_bytes(), encode("challenges", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn take_challenge(&self, challenge: &str) -> StoreResult<Option<ChallengeRecord>> {
        self.challenges
            .remove(challenge.as_bytes())
            .map_err(backend)?
            .map(|v| decode("challenges", &v))
            .transpose()
    }

    fn remember_signature(&self, digest: &[u8], until: i64) -> StoreResult<bool> {
        let fresh = self
            .signatures
            .compare_and_swap(
                digest,
                None as Option<&[u8]>,
                Some(&until.to_be_bytes()[..]),
            )
            .map_err(backend)?;
        Ok(fresh.is_ok())
    }

    fn open_announcement(
        &self,
        rec: &AnnouncementRecord,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        (&self.announcements, &self.current)
            .transaction(|(anns, current)| {
                let previous = match current.get(rec.device.as_bytes())? {
                    Some(prev_id) => match anns.get(&prev_id)? {
                        Some(v) => {
                            let mut prev: AnnouncementRecord =
                                decode("announcements", &v).map_err(abort)?;
                            let unchanged = prev.clone();
                            prev.ended_at.get_or_insert(rec.created_at);
                            anns.insert(
                                prev.id.as_bytes(),
                                encode("announcements", &prev).map_err(abort)?,
                            )?;
                            Some(unchanged)
                        }
                        None => None,
                    },
                    None => None,
                };
                anns.insert(
                    rec.id.as_bytes(),
                    encode("announcements", rec).map_err(abort)?,
                )?;
                current.insert(rec.device.as_bytes(), rec.id.as_bytes())?;
                Ok(previous)
            })
            .map_err(tx_error)
    }

    fn announcement(&self, id: &str) -> StoreResult<Option<AnnouncementRecord>> {
        Self::get(&self.announcements, "announcements", id.as_bytes())
    }

    fn end_announcement(
        &self,
        device: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        (&self.announcements, &self.current)
            .transaction(|(anns, current)| {
                if current.get(device.as_bytes())?.as_deref() != Some(id.as_bytes()) {
                    return Ok(None);
                }
                current.remove(device.as_bytes())?;
                let Some(v) = anns.get(id.as_bytes())? else {
                    return Ok(None);
                };
                let mut ann: AnnouncementRecord = decode("announcements", &v).map_err(abort)?;
                ann.ended_at.get_or_insert(now);
                anns.insert(id.as_bytes(), encode("announcements", &ann).map_err(abort)?)?;
                Ok(Some(ann))
            })
            .map_err(tx_error)
    }

    fn append_revocation(&self, rec: &RevocationRecord) -> StoreResult<u64> {
        // generate_id is monotonic across restarts; +1 so that `since=0` returns everything.
        let seq = self.db.generate_id().map_err(backend)? + 1;
        self.revocations
            .insert(seq.to_be_bytes(), encode("revocations", rec)?)
            .map_err(backend)?;
        Ok(seq)
    }

    fn revocations_since(
        &self,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, RevocationRecord)>> {
        let start = since.saturating_add(1).to_be_bytes();
        self.revocations
            .range(start..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                let seq =
                    u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        tree: "revocations",
                        cause: "bad key".into(),
                    })?);
                Ok((seq, decode("revocations", &v)?))
            })
            .collect()
    }

    fn put_ban(&self, rec: &BanRecord) -> StoreResult<()> {
        self.bans
            .insert(rec.ip.as_bytes(), encode("bans", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_ban(&self, ip: &str) -> StoreResult<bool> {
        Ok(self.bans.remove(ip.as_bytes()).map_err(backend)?.is_some())
    }

    fn bans(&self) -> StoreResult<Vec<BanRecord>> {
        self.bans
            .iter()
            .map(|kv| decode("bans", &kv.map_err(backend)?.1))
            .collect()
    }

    fn put_api_key(&self, rec: &ApiKeyRecord) -> StoreResult<()> {
        self.api_keys
            .insert(rec.id.as_bytes(), encode("api_keys", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        Self::get(&self.api_keys, "api_keys", id.as_bytes())
    }

    fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.signing_keys
            .iter()
            .map(|kv| decode("signing_keys", &kv.map_err(backend)?.1))
            .collect()
    }

    fn put_signing_key(&self, rec: &SigningKeyRecord) -> StoreResult<()> {
        self.signing_keys
            .insert(rec.kid.as_bytes(), encode("signing_keys", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.signing_keys.remove(kid.as_bytes()).map_err(backend)?;
        Ok(())
    }

    fn create_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<NatsAccountRecord> {
        let value = encode("nats_accounts", rec)?;
        let stored = (&self.nats_accounts, &self.nats_account_keys)
            .transaction(|(accounts, keys)| {
                if let Some(existing) = accounts.get(rec.id.as_bytes())? {
                    return Ok(Some(existing));
                }
                keys.insert(rec.public_key.as_bytes(), rec.id.as_bytes())?;
                accounts.insert(rec.id.as_bytes(), value.clone())?;
                Ok(None)
            })
            .map_err(tx_error)?;
        match stored {
            Some(bytes) => decode("nats_accounts", &bytes),
            None => Ok(rec.clone()),
        }
    }

    fn update_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<()> {
        self.nats_accounts
            .insert(rec.id.as_bytes(), encode("nats_accounts", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn nats_account(&self, id: &str) -> StoreResult<Option<NatsAccountRecord>> {
        Self::get(&self.nats_accounts, "nats_accounts", id.as_bytes())
    }

    fn nats_accounts(&self) -> StoreResult<Vec<NatsAccountRecord>> {
        self.nats_accounts
            .iter()
            .map(|kv| decode("nats_accounts", &kv.map_err(backend)?.1))
            .collect()
    }

    fn nats_account_by_key(&self, public_key: &str) -> StoreResult<Option<NatsAccountRecord>> {
        match self
            .nats_account_keys
            .get(public_key.as_bytes())
            .map_err(backend)?
        {
            Some(id) => Self::get(&self.nats_accounts, "nats_accounts", &id),
            None => Ok(None),
        }
    }

    fn create_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<NatsUserRecord> {
        let value = encode("nats_users", rec)?;
        let previous = self
            .nats_users
            .compare_and_swap(rec.id.as_bytes(), None as Option<&[u8]>, Some(value))
            .map_err(backend)?;
        match previous {
            Ok(()) => Ok(rec.clone()),
            Err(e) => match e.current {
                Some(bytes) => decode("nats_users", &bytes),
                None => Err(StoreError::Backend("user vanished during create".into())),
            },
        }
    }

    fn update_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<()> {
        self.nats_users
            .insert(rec.id.as_bytes(), encode("nats_users", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn nats_user(&self, id: &str) -> StoreResult<Option<NatsUserRecord>> {
        Self::get(&self.nats_users, "nats_users", id.as_bytes())
    }

    fn nats_users(&self) -> StoreResult<Vec<NatsUserRecord>> {
        self.nats_users
            .iter()
            .map(|kv| decode("nats_users", &kv.map_err(backend)?.1))
            .collect()
    }

    fn put_app(&self, rec: &AppRecord) -> StoreResult<()> {
        self.t_put_app(rec)
    }
    fn app(&self, id: &str) -> StoreResult<Option<AppRecord>> {
        self.t_app(id)
    }
    fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.t_apps()
    }
    fn create_role(&self, rec: &RoleRecord) -> StoreResult<()> {
        self.t_create_role(rec)
    }
    fn roles(&self, app_id: &str) -> StoreResult<Vec<RoleRecord>> {
        self.t_roles(app_id)
    }
    fn put_user_roles(&self, rec: &UserRolesRecord) -> StoreResult<()> {
        self.t_put_user_roles(rec)
    }
    fn user_roles(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRolesRecord>> {
        self.t_user_roles(app_id, user_id)
    }

    fn put_refresh(&self, rec: &RefreshRecord) -> StoreResult<()> {
        self.s_put_refresh(rec)
    }
    fn refresh_token(&self, id: &str) -> StoreResult<Option<RefreshRecord>> {
        self.s_refresh(id)
    }
    fn use_refresh(&self, rec: &RefreshRecord, at: i64) -> StoreResult<bool> {
        self.s_use_refresh(rec, at)
    }
    fn put_family(&self, rec: &FamilyRecord) -> StoreResult<()> {
        self.s_put_family(rec)
    }
    fn family(&self, user: &str, id: &str) -> StoreResult<Option<FamilyRecord>> {
        self.s_family(user, id)
    }
    fn families_of(&self, user: &str) -> StoreResult<Vec<FamilyRecord>> {
        self.s_families_of(user)
    }

    fn put_oauth_client(&self, rec: &OAuthClientRecord) -> StoreResult<()> {
        self.s_put_oauth_client(rec)
    }

    fn oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        self.s_oauth_client(id)
    }

    fn oauth_clients(&self) -> StoreResult<Vec<OAuthClientRecord>> {
        self.s_oauth_clients()
    }

    fn delete_oauth_client(&self, id: &str) -> StoreResult<bool> {
        self.s_delete_oauth_client(id)
    }

    fn put_pending(&self, id: &str, rec: &PendingRecord) -> StoreResult<()> {
        self.s_put_pending(id, rec)
    }

    fn take_pending(&self, id: &str) -> StoreResult<Option<PendingRecord>> {
        self.s_take_pending(id)
    }

    fn put_code(&self, digest: &str, rec: &AuthCodeRecord) -> StoreResult<()> {
        self.s_put_code(digest, rec)
    }

    fn code(&self, digest: &str) -> StoreResult<Option<AuthCodeRecord>> {
        self.s_code(digest)
    }

    fn use_code(
        &self,
        digest: &str,
        rec: &AuthCodeRecord,
        used: &AuthCodeRecord,
    ) -> StoreResult<bool> {
        self.s_use_code(digest, rec, used)
    }

    fn prune(&self, now: i64) -> StoreResult<usize> {
        let mut removed = 0;
        for kv in self.challenges.iter() {
            let (k, v) = kv.map_err(backend)?;
            let expired =
                decode::<ChallengeRecord>("challenges", &v).map_or(true, |c| c.expires_at < now);
            if expired && self.challenges.remove(k).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        for kv in self.signatures.iter() {
            let (k, v) = kv.map_err(backend)?;
            let until = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            if until < now && self.signatures.remove(k).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed + self.s_prune_oauth(now)?)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.db.flush_async().await.map_err(backend)?;
            Ok(())
        })
    }

    fn ping(&self) -> StoreResult<()> {
        self.db.get(b"__ping").map(|_| ()).map_err(backend)
    }

    fn size_on_disk(&self) -> StoreResult<u64> {
        self.db.size_on_disk().map_err(backend)
    }
}
