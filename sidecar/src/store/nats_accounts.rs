//! The NATS provisioner's accounts and users on JetStream KV. Creates are insert-unless-present
//! (KV `create`): of two concurrent creates the first writer's record is returned to both. The
//! public-key index of an account is written before the account and a lookup through it checks
//! the account names that key back, so a create that lost its race leaves nothing that resolves.

use super::nats_domains::key;
use super::nats_kv::{Bucket, NatsKvStore};
use super::records::{NatsAccountRecord, NatsUserRecord};
use super::{NatsStore, StoreError, StoreResult};

impl NatsKvStore {
    /// Create `k` from `rec` unless it exists; the stored record either way.
    fn create_or_get<T>(&self, tree: &'static str, k: String, rec: &T) -> StoreResult<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + 'static,
    {
        if self.create_raw(Bucket::State, k.clone(), super::codec::encode(tree, rec)?)? {
            return Ok(rec.clone());
        }
        self.get_rec(Bucket::State, tree, k)?.ok_or_else(|| {
            StoreError::Backend(format!("{tree} record vanished during create").into())
        })
    }
}

impl NatsStore for NatsKvStore {
    fn create_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<NatsAccountRecord> {
        let index = key("nacctkey", &[&rec.public_key]);
        let id = rec.id.clone().into_bytes();
        self.run(move |c| async move { c.put(Bucket::State, &index, id).await.map(|_| ()) })?;
        self.create_or_get("nats_accounts", key("nacct", &[&rec.id]), rec)
    }

    fn update_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<()> {
        self.put_rec(
            Bucket::State,
            "nats_accounts",
            key("nacct", &[&rec.id]),
            rec,
        )
    }

    fn nats_account(&self, id: &str) -> StoreResult<Option<NatsAccountRecord>> {
        self.get_rec(Bucket::State, "nats_accounts", key("nacct", &[id]))
    }

    fn nats_accounts(&self) -> StoreResult<Vec<NatsAccountRecord>> {
        self.scan_recs(Bucket::State, "nats_accounts", "nacct.*".into())
    }

    fn nats_account_by_key(&self, public_key: &str) -> StoreResult<Option<NatsAccountRecord>> {
        let id = self.run({
            let index = key("nacctkey", &[public_key]);
            move |c| async move { Ok(c.get(Bucket::State, &index).await?.map(|(_, v)| v)) }
        })?;
        let Some(id) = id else { return Ok(None) };
        let account = self.nats_account(&String::from_utf8_lossy(&id))?;
        Ok(account.filter(|a| a.public_key == public_key))
    }

    fn create_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<NatsUserRecord> {
        self.create_or_get("nats_users", key("nuser", &[&rec.id]), rec)
    }

    fn update_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<()> {
        self.put_rec(Bucket::State, "nats_users", key("nuser", &[&rec.id]), rec)
    }

    fn nats_user(&self, id: &str) -> StoreResult<Option<NatsUserRecord>> {
        self.get_rec(Bucket::State, "nats_users", key("nuser", &[id]))
    }

    fn nats_users(&self) -> StoreResult<Vec<NatsUserRecord>> {
        self.scan_recs(Bucket::State, "nats_users", "nuser.*".into())
    }
}
