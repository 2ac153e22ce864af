//! The integrity check of a sled store: every record decodes and every index points at a record.
//! What a crash could leave behind if a write were not atomic: a half-written value (sled's
//! inserts are atomic, so none should exist), or one half of a transaction (an index entry
//! without its record, or a record without its index entry). The crash-loop test runs it after
//! every `kill -9`.

use super::codec::decode;
use super::sled_store::backend;
use super::{SledStore, StoreError, StoreResult};

/// What [`SledStore::check`] read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records decoded, over every tree.
    pub records: usize,
    /// Index entries whose target was found.
    pub index_entries: usize,
}

/// An index tree: each value is the key of a record in `target`.
struct Index<'a> {
    name: &'static str,
    tree: &'a sled::Tree,
    target: &'a sled::Tree,
}

impl SledStore {
    /// Decode every record of every record tree, and follow every index entry to its record.
    /// The first problem is the error: [`StoreError::Corrupt`] for a record that does not decode,
    /// [`StoreError::Conflict`] naming the index and key for a dangling entry.
    pub fn check(&self) -> StoreResult<CheckReport> {
        let mut report = CheckReport::default();
        for (name, tree) in self.record_trees() {
            for kv in tree.iter() {
                let (_, v) = kv.map_err(backend)?;
                decode::<serde_json::Value>(name, &v)?;
                report.records += 1;
            }
        }
        for ix in self.index_trees() {
            for kv in ix.tree.iter() {
                let (k, target) = kv.map_err(backend)?;
                if ix.target.get(&target).map_err(backend)?.is_none() {
                    return Err(StoreError::Conflict(format!(
                        "index {} entry {:?} points at a missing record {:?}",
                        ix.name,
                        String::from_utf8_lossy(&k),
                        String::from_utf8_lossy(&target)
                    )));
                }
                report.index_entries += 1;
            }
        }
        // Spent announce signatures: the digest, and until when it is remembered (i64).
        for kv in self.signatures.iter() {
            let (k, v) = kv.map_err(backend)?;
            if v.len() != 8 {
                return Err(StoreError::Conflict(format!(
                    "announce_signatures entry {} holds {} bytes, not an i64",
                    data_encoding::HEXLOWER.encode(&k),
                    v.len()
                )));
            }
            report.records += 1;
        }
        self.check_policy_pointer()?;
        Ok(report)
    }

    fn record_trees(&self) -> [(&'static str, &sled::Tree); 16] {
        [
            ("identities", &self.identities),
            ("challenges", &self.challenges),
            ("announcements", &self.announcements),
            ("revocations", &self.revocations),
            ("bans", &self.bans),
            ("api_keys", &self.api_keys),
            ("signing_keys", &self.signing_keys),
            ("nats_accounts", &self.nats_accounts),
            ("nats_users", &self.nats_users),
            ("tenancy", &self.tenancy),
            ("refresh_tokens", &self.refresh),
            ("session_families", &self.families),
            ("oauth_clients", &self.oauth_clients),
            ("oauth_pending", &self.pending),
            ("oauth_codes", &self.codes),
            ("policy_versions", &self.policy_versions),
        ]
    }

    fn index_trees(&self) -> [Index<'_>; 3] {
        [
            Index {
                name: "identity_keys",
                tree: &self.keys,
                target: &self.identities,
            },
            Index {
                name: "current_announcement",
                tree: &self.current,
                target: &self.announcements,
            },
            Index {
                name: "nats_account_keys",
                tree: &self.nats_account_keys,
                target: &self.nats_accounts,
            },
        ]
    }

    /// `policy_live`: the live version, if any, is a stored version below `next`.
    fn check_policy_pointer(&self) -> StoreResult<()> {
        let number = |k: &str| -> StoreResult<Option<u64>> {
            match self.policy_live.get(k).map_err(backend)? {
                None => Ok(None),
                Some(v) => <[u8; 8]>::try_from(v.as_ref())
                    .map(|b| Some(u64::from_be_bytes(b)))
                    .map_err(|_| StoreError::Conflict(format!("policy_live {k} is not a u64"))),
            }
        };
        let (live, next) = (number("live")?, number("next")?);
        if let Some(live) = live {
            let stored = self
                .policy_versions
                .get(live.to_be_bytes())
                .map_err(backend)?;
            if stored.is_none() || next.is_none_or(|n| n <= live) {
                return Err(StoreError::Conflict(format!(
                    "policy_live points at version {live}, next {next:?}, stored {}",
                    stored.is_some()
                )));
            }
        }
        Ok(())
    }
}
