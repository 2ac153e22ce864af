//! Policy versions on JetStream KV. `policy.live` holds the whole live version, so a deploy is
//! one compare-and-swap of that key on the revision read with the base: of two editors
//! deploying on one base exactly one wins, and no crash leaves a live number without its
//! bundle. The history (`policy.v.<n>`, zero-padded so it reads in order) is written after the
//! swap; a deploy first rewrites the live version's history entry, which repairs one lost to a
//! crash between the two writes.

use super::codec::{decode, encode};
use super::nats_kv::{Bucket, NatsKvStore};
use super::policy_records::PolicyVersionRecord;
use super::{PolicyStore, StoreError, StoreResult};

const TREE: &str = "policy_versions";
const LIVE: &str = broker_auth::shared_store::POLICY_LIVE;

fn version_key(n: u64) -> String {
    format!("policy.v.{n:020}")
}

fn describe(n: Option<u64>) -> String {
    n.map_or("none".into(), |n| n.to_string())
}

impl PolicyStore for NatsKvStore {
    fn deploy_policy(
        &self,
        rec: &PolicyVersionRecord,
        base: Option<u64>,
    ) -> StoreResult<PolicyVersionRecord> {
        let rec = rec.clone();
        self.run(move |c| async move {
            let live = c.get(Bucket::State, LIVE).await?;
            let current: Option<(u64, PolicyVersionRecord)> = live
                .map(|(rev, v)| decode(TREE, &v).map(|r| (rev, r)))
                .transpose()?;
            let number = current.as_ref().map(|(_, r)| r.version);
            if number != base {
                return Err(StoreError::Conflict(format!(
                    "the live policy is version {}, not {}",
                    describe(number),
                    describe(base)
                )));
            }
            if let Some((_, r)) = &current {
                c.put(Bucket::State, &version_key(r.version), encode(TREE, r)?)
                    .await?;
            }
            let stored = PolicyVersionRecord {
                version: number.map_or(1, |n| n + 1),
                ..rec
            };
            let bytes = encode(TREE, &stored)?;
            let swapped = match current {
                Some((rev, _)) => c.update(Bucket::State, LIVE, bytes.clone(), rev).await?,
                None => c.create(Bucket::State, LIVE, bytes.clone()).await?,
            };
            if !swapped {
                return Err(StoreError::Conflict(format!(
                    "another deploy on version {} won",
                    describe(base)
                )));
            }
            c.put(Bucket::State, &version_key(stored.version), bytes)
                .await?;
            Ok(stored)
        })
    }

    fn live_policy(&self) -> StoreResult<Option<PolicyVersionRecord>> {
        self.get_rec(Bucket::State, TREE, LIVE.into())
    }

    fn policy_version(&self, n: u64) -> StoreResult<Option<PolicyVersionRecord>> {
        match self.get_rec(Bucket::State, TREE, version_key(n))? {
            Some(r) => Ok(Some(r)),
            None => Ok(self.live_policy()?.filter(|r| r.version == n)),
        }
    }

    fn policy_versions(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<PolicyVersionRecord>> {
        let mut all: Vec<PolicyVersionRecord> =
            self.scan_recs(Bucket::State, TREE, "policy.v.*".into())?;
        if let Some(live) = self.live_policy()?
            && !all.iter().any(|r| r.version == live.version)
        {
            all.push(live);
        }
        all.sort_by_key(|r| std::cmp::Reverse(r.version));
        let end = before.unwrap_or(u64::MAX);
        Ok(all
            .into_iter()
            .filter(|r| r.version < end)
            .take(limit)
            .collect())
    }
}
