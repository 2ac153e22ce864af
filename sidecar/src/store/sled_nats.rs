//! NATS accounts (with a public-key index for the resolver) and users. Creates are
//! insert-unless-present, so of two concurrent creates the first writer's record is returned to
//! both.

use sled::Transactional;

use super::codec::{decode, encode};
use super::records::{NatsAccountRecord, NatsUserRecord};
use super::sled_store::{SledStore, backend, tx_error};
use super::{NatsStore, StoreError, StoreResult};

impl NatsStore for SledStore {
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
        Self::put_in(&self.nats_accounts, "nats_accounts", rec.id.as_bytes(), rec)
    }

    fn nats_account(&self, id: &str) -> StoreResult<Option<NatsAccountRecord>> {
        Self::get(&self.nats_accounts, "nats_accounts", id.as_bytes())
    }

    fn nats_accounts(&self) -> StoreResult<Vec<NatsAccountRecord>> {
        Self::all_in(&self.nats_accounts, "nats_accounts")
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
        Self::put_in(&self.nats_users, "nats_users", rec.id.as_bytes(), rec)
    }

    fn nats_user(&self, id: &str) -> StoreResult<Option<NatsUserRecord>> {
        Self::get(&self.nats_users, "nats_users", id.as_bytes())
    }

    fn nats_users(&self) -> StoreResult<Vec<NatsUserRecord>> {
        Self::all_in(&self.nats_users, "nats_users")
    }
}
