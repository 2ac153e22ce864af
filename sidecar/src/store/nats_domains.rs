//! The store's domain traits on JetStream KV (`nats_kv` has the layout and the primitives).
//!
//! sled changes several trees in one transaction; KV changes one key at a time. Each
//! multi-key operation below is ordered so that a crash (or a lost race) between its steps
//! leaves a state that is safe to read and that the next caller repairs or refuses:
//! - a unique index is claimed (`create`) before the record it points to is written, and a
//!   lookup through an index checks that the record names the same key back;
//! - a device's previous announcement is ended before the "current" pointer moves, so a crash
//!   between them closes a session rather than leaving two open;
//! - a policy deploy is one compare-and-swap of `policy.live`, which holds the whole live
//!   version; its copy in the history is written after and repaired by the next deploy.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{decode, encode};
use super::nats_kv::{Bucket, NatsKvStore, token};
use super::oauth_records::{AuthCodeRecord, OAuthClientRecord, PendingRecord};
use super::records::*;
use super::*;

/// An index entry that names a record which still does not exist after this long was left by
/// a writer that crashed between its two steps: the next claimant may take it over.
const ORPHAN_AFTER_SECS: i64 = 30;
/// Retries of a read-modify-write that lost its compare-and-swap to a concurrent writer.
const CAS_ATTEMPTS: u32 = 32;

/// After a lost compare-and-swap: wait a little, more each time, at random, so contenders
/// spread out instead of colliding again.
async fn backoff(attempt: u32) {
    use rand_core::RngCore;
    let jitter = u64::from(rand_core::OsRng.next_u32() % 1000);
    let micros = (jitter + 1) * u64::from(attempt.min(8) + 1);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// `kind.<token>.<token>...`
pub(super) fn key(kind: &str, parts: &[&str]) -> String {
    let mut k = kind.to_owned();
    for p in parts {
        k.push('.');
        k.push_str(&token(p));
    }
    k
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

impl NatsKvStore {
    pub(super) fn get_rec<T: DeserializeOwned + Send + 'static>(
        &self,
        b: Bucket,
        tree: &'static str,
        k: String,
    ) -> StoreResult<Option<T>> {
        self.run(move |c| async move {
            c.get(b, &k)
                .await?
                .map(|(_, v)| decode(tree, &v))
                .transpose()
        })
    }

    pub(super) fn put_rec<T: Serialize>(
        &self,
        b: Bucket,
        tree: &'static str,
        k: String,
        rec: &T,
    ) -> StoreResult<()> {
        let v = encode(tree, rec)?;
        self.run(move |c| async move { c.put(b, &k, v).await.map(|_| ()) })
    }

    pub(super) fn scan_recs<T: DeserializeOwned + Send + 'static>(
        &self,
        b: Bucket,
        tree: &'static str,
        filter: String,
    ) -> StoreResult<Vec<T>> {
        self.run(move |c| async move {
            c.scan(b, &filter)
                .await?
                .iter()
                .map(|(_, v)| decode(tree, v))
                .collect()
        })
    }

    pub(super) fn create_raw(&self, b: Bucket, k: String, v: Vec<u8>) -> StoreResult<bool> {
        self.run(move |c| async move { c.create(b, &k, v).await })
    }

    /// Remove and return: of two callers racing for one key, exactly one gets the record (the
    /// delete is conditional on the revision read).
    fn take_rec<T: DeserializeOwned + Send + 'static>(
        &self,
        b: Bucket,
        tree: &'static str,
        k: String,
    ) -> StoreResult<Option<T>> {
        self.run(move |c| async move {
            let Some((rev, v)) = c.get(b, &k).await? else {
                return Ok(None);
            };
            if !c.delete(b, &k, rev).await? {
                return Ok(None);
            }
            decode(tree, &v).map(Some)
        })
    }

    /// Replace `k`'s value by `new` if it is still exactly `old` (compare-and-swap on bytes, as
    /// sled's, then on the revision).
    fn swap_bytes(&self, b: Bucket, k: String, old: Vec<u8>, new: Vec<u8>) -> StoreResult<bool> {
        self.run(move |c| async move {
            match c.get(b, &k).await? {
                Some((rev, v)) if v.as_ref() == old.as_slice() => c.update(b, &k, new, rev).await,
                _ => Ok(false),
            }
        })
    }

    /// Claim unique index `k` for `id`: true if it is ours now. An index naming a record that
    /// `exists` says is missing, older than [`ORPHAN_AFTER_SECS`], is taken over.
    fn claim_index(
        &self,
        k: String,
        id: String,
        record_kind: &'static str,
        now: i64,
    ) -> StoreResult<bool> {
        self.run(move |c| async move {
            if c.create(Bucket::State, &k, id.clone().into_bytes()).await? {
                return Ok(true);
            }
            let Some((rev, owner, written)) = c.get_dated(Bucket::State, &k).await? else {
                return c.create(Bucket::State, &k, id.into_bytes()).await;
            };
            let owner = String::from_utf8_lossy(&owner).into_owned();
            let record = c.get(Bucket::State, &key(record_kind, &[&owner])).await?;
            if record.is_some() || now - written < ORPHAN_AFTER_SECS {
                return Ok(false);
            }
            c.update(Bucket::State, &k, id.into_bytes(), rev).await
        })
    }

    /// Follow index `k` to the record it names.
    fn through_index<T: DeserializeOwned + Send + 'static>(
        &self,
        k: String,
        record_kind: &'static str,
        tree: &'static str,
    ) -> StoreResult<Option<T>> {
        self.run(move |c| async move {
            let Some((_, id)) = c.get(Bucket::State, &k).await? else {
                return Ok(None);
            };
            let id = String::from_utf8_lossy(&id).into_owned();
            c.get(Bucket::State, &key(record_kind, &[&id]))
                .await?
                .map(|(_, v)| decode(tree, &v))
                .transpose()
        })
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl IdentityStore for NatsKvStore {
    fn insert_identity(&self, rec: &IdentityRecord) -> StoreResult<()> {
        let index = rec.sign_in_key().map(|k| key("idkey", &[&k]));
        if let Some(ik) = &index
            && !self.claim_index(ik.clone(), rec.id.clone(), "id", now_secs())?
        {
            return Err(StoreError::Conflict(
                "public key or upstream account already registered".into(),
            ));
        }
        if !self.create_raw(
            Bucket::State,
            key("id", &[&rec.id]),
            encode("identities", rec)?,
        )? {
            if let Some(ik) = index {
                // Give the key back: the id was taken, so this identity does not exist.
                let id = rec.id.clone();
                self.run(move |c| async move {
                    if let Some((rev, owner)) = c.get(Bucket::State, &ik).await?
                        && owner.as_ref() == id.as_bytes()
                    {
                        c.delete(Bucket::State, &ik, rev).await?;
                    }
                    Ok(())
                })?;
            }
            return Err(StoreError::Conflict("identity id already exists".into()));
        }
        Ok(())
    }

    fn update_identity(&self, rec: &IdentityRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "identities", key("id", &[&rec.id]), rec)
    }

    fn identity(&self, id: &str) -> StoreResult<Option<IdentityRecord>> {
        self.get_rec(Bucket::State, "identities", key("id", &[id]))
    }

    fn identity_by_key(&self, canonical_key: &str) -> StoreResult<Option<IdentityRecord>> {
        let found: Option<IdentityRecord> =
            self.through_index(key("idkey", &[canonical_key]), "id", "identities")?;
        // An index taken over from a crashed writer names a record with another key.
        Ok(found.filter(|r| r.sign_in_key().as_deref() == Some(canonical_key)))
    }

    fn list_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<IdentityRecord>> {
        // KV keeps no order: every identity is read and sorted (paging costs O(n) a page).
        let mut all: Vec<IdentityRecord> =
            self.scan_recs(Bucket::State, "identities", "id.*".into())?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all
            .into_iter()
            .filter(|r| after.is_none_or(|a| r.id.as_str() > a))
            .take(limit)
            .collect())
    }

    fn identity_count(&self) -> StoreResult<usize> {
        self.run(|c| async move { Ok(c.scan(Bucket::State, "id.*").await?.len()) })
    }
}

impl DeviceStore for NatsKvStore {
    fn put_challenge(&self, challenge: &str, rec: &ChallengeRecord) -> StoreResult<()> {
        self.put_rec(
            Bucket::Ephemeral,
            "challenges",
            key("chal", &[challenge]),
            rec,
        )
    }

    fn take_challenge(&self, challenge: &str) -> StoreResult<Option<ChallengeRecord>> {
        self.take_rec(Bucket::Ephemeral, "challenges", key("chal", &[challenge]))
    }

    fn remember_signature(&self, digest: &[u8], until: i64) -> StoreResult<bool> {
        // The bucket keeps it 15 minutes, past `until` (at most 3 minutes away).
        self.create_raw(
            Bucket::Ephemeral,
            format!("sig.{}", hex(digest)),
            until.to_be_bytes().to_vec(),
        )
    }

    fn open_announcement(
        &self,
        rec: &AnnouncementRecord,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        let new = encode("announcements", rec)?;
        let (device, id, at) = (rec.device.clone(), rec.id.clone(), rec.created_at);
        self.run(move |c| async move {
            let ptr = key("cur", &[&device]);
            let mut ended = None;
            for attempt in 0..CAS_ATTEMPTS {
                if attempt > 0 {
                    backoff(attempt).await;
                }
                let current = c.get(Bucket::State, &ptr).await?;
                if let Some((_, prev_id)) = &current {
                    let prev_key = key("ann", &[&String::from_utf8_lossy(prev_id)]);
                    if let Some((rev, v)) = c.get(Bucket::State, &prev_key).await? {
                        let mut prev: AnnouncementRecord = decode("announcements", &v)?;
                        if prev.ended_at.is_none() {
                            let unchanged = prev.clone();
                            prev.ended_at = Some(at);
                            let bytes = encode("announcements", &prev)?;
                            if !c.update(Bucket::State, &prev_key, bytes, rev).await? {
                                continue;
                            }
                            ended.get_or_insert(unchanged);
                        }
                    }
                }
                c.put(Bucket::State, &key("ann", &[&id]), new.clone())
                    .await?;
                let moved = match current {
                    Some((rev, _)) => {
                        c.update(Bucket::State, &ptr, id.clone().into_bytes(), rev)
                            .await?
                    }
                    None => {
                        c.create(Bucket::State, &ptr, id.clone().into_bytes())
                            .await?
                    }
                };
                if moved {
                    return Ok(ended);
                }
            }
            Err(StoreError::Unavailable(
                "too many concurrent announcements of one device".into(),
            ))
        })
    }

    fn announcement(&self, id: &str) -> StoreResult<Option<AnnouncementRecord>> {
        self.get_rec(Bucket::State, "announcements", key("ann", &[id]))
    }

    fn end_announcement(
        &self,
        device: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        let (device, id) = (device.to_owned(), id.to_owned());
        self.run(move |c| async move {
            let ptr = key("cur", &[&device]);
            match c.get(Bucket::State, &ptr).await? {
                Some((rev, cur)) if cur.as_ref() == id.as_bytes() => {
                    if !c.delete(Bucket::State, &ptr, rev).await? {
                        return Ok(None);
                    }
                }
                _ => return Ok(None),
            }
            let ann_key = key("ann", &[&id]);
            let Some((_, v)) = c.get(Bucket::State, &ann_key).await? else {
                return Ok(None);
            };
            let mut ann: AnnouncementRecord = decode("announcements", &v)?;
            ann.ended_at.get_or_insert(now);
            c.put(Bucket::State, &ann_key, encode("announcements", &ann)?)
                .await?;
            Ok(Some(ann))
        })
    }
}

impl RevocationStore for NatsKvStore {
    fn append_revocation(&self, rec: &RevocationRecord) -> StoreResult<u64> {
        let v = encode("revocations", rec)?;
        self.run(move |c| async move { c.append_revocation(v).await })
    }

    fn revocations_since(
        &self,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, RevocationRecord)>> {
        self.run(move |c| async move {
            c.revocations_since(since, limit)
                .await?
                .into_iter()
                .map(|(seq, v)| Ok((seq, decode("revocations", &v)?)))
                .collect()
        })
    }
}

impl BanStore for NatsKvStore {
    fn put_ban(&self, rec: &BanRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "bans", key("ban", &[&rec.ip]), rec)
    }

    fn remove_ban(&self, ip: &str) -> StoreResult<bool> {
        Ok(self
            .take_rec::<BanRecord>(Bucket::State, "bans", key("ban", &[ip]))?
            .is_some())
    }

    fn bans(&self) -> StoreResult<Vec<BanRecord>> {
        self.scan_recs(Bucket::State, "bans", "ban.*".into())
    }
}

impl ApiKeyStore for NatsKvStore {
    fn put_api_key(&self, rec: &ApiKeyRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "api_keys", key("apikey", &[&rec.id]), rec)
    }

    fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        self.get_rec(Bucket::State, "api_keys", key("apikey", &[id]))
    }

    fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.scan_recs(Bucket::State, "api_keys", "apikey.*".into())
    }
}

impl SigningKeyStore for NatsKvStore {
    fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.scan_recs(Bucket::State, "signing_keys", "sigkey.*".into())
    }

    fn put_signing_key(&self, rec: &SigningKeyRecord) -> StoreResult<()> {
        self.put_rec(
            Bucket::State,
            "signing_keys",
            key("sigkey", &[&rec.kid]),
            rec,
        )
    }

    fn remove_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.take_rec::<SigningKeyRecord>(Bucket::State, "signing_keys", key("sigkey", &[kid]))?;
        Ok(())
    }
}

impl TenancyStore for NatsKvStore {
    fn put_app(&self, rec: &AppRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "tenancy", key("app", &[&rec.id]), rec)
    }

    fn app(&self, id: &str) -> StoreResult<Option<AppRecord>> {
        self.get_rec(Bucket::State, "tenancy", key("app", &[id]))
    }

    fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.scan_recs(Bucket::State, "tenancy", "app.*".into())
    }

    fn create_role(&self, rec: &RoleRecord) -> StoreResult<()> {
        let name = key("rolename", &[&rec.app_id, &rec.name]);
        if !self.create_raw(Bucket::State, name, rec.id.clone().into_bytes())? {
            return Err(StoreError::Conflict(format!(
                "app already has a role named {:?}",
                rec.name
            )));
        }
        self.put_rec(
            Bucket::State,
            "tenancy",
            key("role", &[&rec.app_id, &rec.id]),
            rec,
        )
    }

    fn roles(&self, app_id: &str) -> StoreResult<Vec<RoleRecord>> {
        self.scan_recs(
            Bucket::State,
            "tenancy",
            format!("{}.*", key("role", &[app_id])),
        )
    }

    fn put_user_roles(&self, rec: &UserRolesRecord) -> StoreResult<()> {
        let k = key("assign", &[&rec.app_id, &rec.user_id]);
        self.put_rec(Bucket::State, "tenancy", k, rec)
    }

    fn user_roles(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRolesRecord>> {
        self.get_rec(Bucket::State, "tenancy", key("assign", &[app_id, user_id]))
    }
}

impl SessionStore for NatsKvStore {
    fn put_refresh(&self, rec: &RefreshRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "refresh", key("refresh", &[&rec.id]), rec)
    }

    fn refresh_token(&self, id: &str) -> StoreResult<Option<RefreshRecord>> {
        self.get_rec(Bucket::State, "refresh", key("refresh", &[id]))
    }

    fn use_refresh(&self, rec: &RefreshRecord, at: i64) -> StoreResult<bool> {
        let mut used = rec.clone();
        used.used_at = Some(at);
        let (old, new) = (encode("refresh", rec)?, encode("refresh", &used)?);
        self.swap_bytes(Bucket::State, key("refresh", &[&rec.id]), old, new)
    }

    fn put_family(&self, rec: &FamilyRecord) -> StoreResult<()> {
        let k = key("family", &[&rec.user_id, &rec.id]);
        self.put_rec(Bucket::State, "families", k, rec)
    }

    fn family(&self, user: &str, id: &str) -> StoreResult<Option<FamilyRecord>> {
        self.get_rec(Bucket::State, "families", key("family", &[user, id]))
    }

    fn families_of(&self, user: &str) -> StoreResult<Vec<FamilyRecord>> {
        self.scan_recs(
            Bucket::State,
            "families",
            format!("{}.*", key("family", &[user])),
        )
    }
}

impl OAuthStore for NatsKvStore {
    fn put_oauth_client(&self, rec: &OAuthClientRecord) -> StoreResult<()> {
        self.put_rec(
            Bucket::State,
            "oauth_clients",
            key("oclient", &[&rec.id]),
            rec,
        )
    }

    fn oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        self.get_rec(Bucket::State, "oauth_clients", key("oclient", &[id]))
    }

    fn oauth_clients(&self) -> StoreResult<Vec<OAuthClientRecord>> {
        self.scan_recs(Bucket::State, "oauth_clients", "oclient.*".into())
    }

    fn delete_oauth_client(&self, id: &str) -> StoreResult<bool> {
        let k = key("oclient", &[id]);
        Ok(self
            .take_rec::<OAuthClientRecord>(Bucket::State, "oauth_clients", k)?
            .is_some())
    }

    fn put_pending(&self, id: &str, rec: &PendingRecord) -> StoreResult<()> {
        self.put_rec(
            Bucket::Ephemeral,
            "oauth_pending",
            key("pending", &[id]),
            rec,
        )
    }

    fn take_pending(&self, id: &str) -> StoreResult<Option<PendingRecord>> {
        self.take_rec(Bucket::Ephemeral, "oauth_pending", key("pending", &[id]))
    }

    fn put_code(&self, digest: &str, rec: &AuthCodeRecord) -> StoreResult<()> {
        self.put_rec(Bucket::Codes, "oauth_codes", key("code", &[digest]), rec)
    }

    fn code(&self, digest: &str) -> StoreResult<Option<AuthCodeRecord>> {
        self.get_rec(Bucket::Codes, "oauth_codes", key("code", &[digest]))
    }

    fn use_code(
        &self,
        digest: &str,
        rec: &AuthCodeRecord,
        used: &AuthCodeRecord,
    ) -> StoreResult<bool> {
        let (old, new) = (encode("oauth_codes", rec)?, encode("oauth_codes", used)?);
        self.swap_bytes(Bucket::Codes, key("code", &[digest]), old, new)
    }
}

impl MaintenanceStore for NatsKvStore {
    fn follow(&self, after: u64) -> Option<tokio::sync::mpsc::UnboundedReceiver<StoreChange>> {
        Some(NatsKvStore::follow(self, after))
    }

    fn prune(&self, _now: i64) -> StoreResult<usize> {
        // The short-lived buckets' max_age drops expired records inside JetStream.
        Ok(0)
    }

    fn ping(&self) -> StoreResult<()> {
        self.run(|c| async move { c.get(Bucket::State, "policy.live").await.map(|_| ()) })
    }

    fn size_on_disk(&self) -> StoreResult<u64> {
        // Kept by nats-server, on its nodes: not this process's disk.
        Ok(0)
    }
}
