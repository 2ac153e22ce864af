//! The sled backend: one database directory, one tree per record kind. This file opens it and
//! implements the small traits; devices, NATS, tenancy, sessions and OAuth have their own files.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::codec::{corrupt, decode, encode};
use super::records::*;
use super::{
    ApiKeyStore, BanStore, CodecError, Durable, IdentityStore, MaintenanceStore, RevocationStore,
    SigningKeyStore, StoreError, StoreFuture, StoreResult,
};

/// sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    flushes: GroupCommit,
    pub(super) identities: sled::Tree,
    pub(super) keys: sled::Tree,
    pub(super) challenges: sled::Tree,
    pub(super) signatures: sled::Tree,
    pub(super) announcements: sled::Tree,
    pub(super) current: sled::Tree,
    pub(super) revocations: sled::Tree,
    pub(super) bans: sled::Tree,
    pub(super) api_keys: sled::Tree,
    pub(super) signing_keys: sled::Tree,
    pub(super) nats_accounts: sled::Tree,
    pub(super) nats_account_keys: sled::Tree,
    pub(super) nats_users: sled::Tree,
    pub(super) tenancy: sled::Tree,
    pub(super) refresh: sled::Tree,
    pub(super) families: sled::Tree,
    pub(super) oauth_clients: sled::Tree,
    pub(super) pending: sled::Tree,
    pub(super) codes: sled::Tree,
    pub(super) policy_versions: sled::Tree,
    pub(super) policy_live: sled::Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

pub(super) fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

pub(super) fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

pub(super) fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl SledStore {
    /// Open (or create) the store in `dir`. Fails clearly when another process holds it.
    pub fn open(dir: &Path) -> StoreResult<SledStore> {
        let open_err = |source: super::BackendError| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            .open()
            .map_err(|e| open_err(Box::new(e)))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(Box::new(e)));
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
            policy_versions: tree("policy_versions")?,
            policy_live: tree("policy_live")?,
            db,
            flushes: GroupCommit::default(),
        })
    }

    pub(super) fn put_in<T: serde::Serialize>(
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
        rec: &T,
    ) -> StoreResult<()> {
        tree.insert(key, encode(name, rec)?).map_err(backend)?;
        Ok(())
    }

    pub(super) fn all_in<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
    ) -> StoreResult<Vec<T>> {
        tree.iter()
            .map(|kv| decode(name, &kv.map_err(backend)?.1))
            .collect()
    }

    /// Remove and return: of two callers racing for one key, exactly one gets the record.
    pub(super) fn take_from<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        tree.remove(key)
            .map_err(backend)?
            .map(|v| decode(name, &v))
            .transpose()
    }

    pub(super) fn get<T: serde::de::DeserializeOwned>(
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

/// One flush at a time, shared by every caller that asked before it started (group commit).
///
/// sled 0.34 can deadlock when `flush_async` runs concurrently with itself under writes
/// (spacejam/sled#1308): with 8 concurrent registrations the sidecar stopped answering within
/// a second. A caller takes a ticket after its write; the flush that runs covers every ticket
/// taken before it started, so a caller whose ticket is covered returns without flushing.
#[derive(Debug, Default)]
struct GroupCommit {
    tickets: std::sync::atomic::AtomicU64,
    /// The highest ticket a finished flush covered.
    flushed: tokio::sync::Mutex<u64>,
}

impl Durable for SledStore {
    fn flush(&self) -> StoreFuture<'_, ()> {
        use std::sync::atomic::Ordering;
        let ticket = self.flushes.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        Box::pin(async move {
            let mut flushed = self.flushes.flushed.lock().await;
            if *flushed >= ticket {
                return Ok(());
            }
            // Every ticket up to here was taken after its write: this flush covers them all.
            let covers = self.flushes.tickets.load(Ordering::Acquire);
            self.db.flush_async().await.map_err(backend)?;
            *flushed = covers;
            Ok(())
        })
    }
}

impl IdentityStore for SledStore {
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
        Self::put_in(&self.identities, "identities", rec.id.as_bytes(), rec)
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
}

impl RevocationStore for SledStore {
    fn append_revocation(&self, rec: &RevocationRecord) -> StoreResult<u64> {
        // generate_id is monotonic across restarts; +1 so that `since=0` returns everything.
        let seq = self.db.generate_id().map_err(backend)? + 1;
        Self::put_in(&self.revocations, "revocations", &seq.to_be_bytes(), rec)?;
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
                let seq = u64::from_be_bytes(
                    k.as_ref()
                        .try_into()
                        .map_err(|_| corrupt("revocations", CodecError::Key))?,
                );
                Ok((seq, decode("revocations", &v)?))
            })
            .collect()
    }
}

impl BanStore for SledStore {
    fn put_ban(&self, rec: &BanRecord) -> StoreResult<()> {
        Self::put_in(&self.bans, "bans", rec.ip.as_bytes(), rec)
    }

    fn remove_ban(&self, ip: &str) -> StoreResult<bool> {
        Ok(self.bans.remove(ip.as_bytes()).map_err(backend)?.is_some())
    }

    fn bans(&self) -> StoreResult<Vec<BanRecord>> {
        Self::all_in(&self.bans, "bans")
    }
}

impl ApiKeyStore for SledStore {
    fn put_api_key(&self, rec: &ApiKeyRecord) -> StoreResult<()> {
        Self::put_in(&self.api_keys, "api_keys", rec.id.as_bytes(), rec)
    }

    fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        Self::get(&self.api_keys, "api_keys", id.as_bytes())
    }

    fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        Self::all_in(&self.api_keys, "api_keys")
    }
}

impl SigningKeyStore for SledStore {
    fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        Self::all_in(&self.signing_keys, "signing_keys")
    }

    fn put_signing_key(&self, rec: &SigningKeyRecord) -> StoreResult<()> {
        Self::put_in(&self.signing_keys, "signing_keys", rec.kid.as_bytes(), rec)
    }

    fn remove_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.signing_keys.remove(kid.as_bytes()).map_err(backend)?;
        Ok(())
    }
}

impl MaintenanceStore for SledStore {
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
        Ok(removed + self.prune_oauth(now)?)
    }

    fn ping(&self) -> StoreResult<()> {
        self.db.get(b"__ping").map(|_| ()).map_err(backend)
    }

    fn size_on_disk(&self) -> StoreResult<u64> {
        self.db.size_on_disk().map_err(backend)
    }
}
