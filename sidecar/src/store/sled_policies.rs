//! Policy versions on sled: tree `policy_versions` keyed by the big-endian version number, and
//! tree `policy_live` holding `live` (the version serving) and `next` (the number the next
//! version gets). A deploy changes all three in one transaction, so two editors deploying on
//! the same base cannot both win, and a number is never handed out twice.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::codec::{decode, encode};
use super::policy_records::PolicyVersionRecord;
use super::sled_store::{SledStore, abort, backend, tx_error};
use super::{PolicyStore, StoreError, StoreResult};

const TREE: &str = "policy_versions";

fn number(bytes: Option<sled::IVec>) -> Result<Option<u64>, StoreError> {
    bytes
        .map(|b| {
            <[u8; 8]>::try_from(b.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "policy_live",
                    source: super::CodecError::Key,
                })
        })
        .transpose()
}

impl PolicyStore for SledStore {
    fn deploy_policy(
        &self,
        rec: &PolicyVersionRecord,
        base: Option<u64>,
    ) -> StoreResult<PolicyVersionRecord> {
        let out = (&self.policy_versions, &self.policy_live)
            .transaction(|(versions, live)| {
                let current = number(live.get("live")?).map_err(abort)?;
                if current != base {
                    return Err(abort(StoreError::Conflict(format!(
                        "the live policy is version {}, not {}",
                        current.map_or("none".into(), |n| n.to_string()),
                        base.map_or("none".into(), |n| n.to_string()),
                    ))));
                }
                let n = number(live.get("next")?).map_err(abort)?.unwrap_or(1);
                let stored = PolicyVersionRecord {
                    version: n,
                    ..rec.clone()
                };
                let bytes = encode(TREE, &stored).map_err(abort)?;
                versions.insert(&n.to_be_bytes(), bytes)?;
                live.insert("live", &n.to_be_bytes())?;
                live.insert("next", &(n + 1).to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(stored)
            })
            .map_err(tx_error)?;
        Ok(out)
    }

    fn live_policy(&self) -> StoreResult<Option<PolicyVersionRecord>> {
        match number(self.policy_live.get("live").map_err(backend)?)? {
            Some(n) => self.policy_version(n),
            None => Ok(None),
        }
    }

    fn policy_version(&self, n: u64) -> StoreResult<Option<PolicyVersionRecord>> {
        self.policy_versions
            .get(n.to_be_bytes())
            .map_err(backend)?
            .map(|v| decode(TREE, &v))
            .transpose()
    }

    fn policy_versions(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<PolicyVersionRecord>> {
        let end = before.unwrap_or(u64::MAX).to_be_bytes();
        self.policy_versions
            .range(..end)
            .rev()
            .take(limit)
            .map(|kv| decode(TREE, &kv.map_err(backend)?.1))
            .collect()
    }
}
