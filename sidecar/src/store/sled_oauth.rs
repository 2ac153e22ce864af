//! OAuth2 clients, pending browser-flow steps and authorization codes. Pending steps are taken
//! with `remove`, so of two callbacks racing on one `state` exactly one gets it; a code is
//! marked used with a compare-and-swap for the same reason.

use super::codec::{decode, encode};
use super::oauth_records::{AuthCodeRecord, OAuthClientRecord, PendingRecord};
use super::sled_store::{SledStore, backend};
use super::{OAuthStore, StoreResult};

impl OAuthStore for SledStore {
    fn put_oauth_client(&self, rec: &OAuthClientRecord) -> StoreResult<()> {
        Self::put_in(&self.oauth_clients, "oauth_clients", rec.id.as_bytes(), rec)
    }

    fn oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        Self::get(&self.oauth_clients, "oauth_clients", id.as_bytes())
    }

    fn oauth_clients(&self) -> StoreResult<Vec<OAuthClientRecord>> {
        Self::all_in(&self.oauth_clients, "oauth_clients")
    }

    fn delete_oauth_client(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .oauth_clients
            .remove(id.as_bytes())
            .map_err(backend)?
            .is_some())
    }

    fn put_pending(&self, id: &str, rec: &PendingRecord) -> StoreResult<()> {
        Self::put_in(&self.pending, "oauth_pending", id.as_bytes(), rec)
    }

    fn take_pending(&self, id: &str) -> StoreResult<Option<PendingRecord>> {
        Self::take_from(&self.pending, "oauth_pending", id.as_bytes())
    }

    fn put_code(&self, digest: &str, rec: &AuthCodeRecord) -> StoreResult<()> {
        Self::put_in(&self.codes, "oauth_codes", digest.as_bytes(), rec)
    }

    fn code(&self, digest: &str) -> StoreResult<Option<AuthCodeRecord>> {
        Self::get(&self.codes, "oauth_codes", digest.as_bytes())
    }

    fn use_code(
        &self,
        digest: &str,
        rec: &AuthCodeRecord,
        used: &AuthCodeRecord,
    ) -> StoreResult<bool> {
        let swapped = self
            .codes
            .compare_and_swap(
                digest.as_bytes(),
                Some(encode("oauth_codes", rec)?),
                Some(encode("oauth_codes", used)?),
            )
            .map_err(backend)?;
        Ok(swapped.is_ok())
    }
}

impl SledStore {
    /// Expired pending steps, and codes well past their use (kept a day after expiry so a late
    /// replay still finds the code and revokes what it issued).
    pub(super) fn prune_oauth(&self, now: i64) -> StoreResult<usize> {
        let mut removed = 0;
        for kv in self.pending.iter() {
            let (k, v) = kv.map_err(backend)?;
            let expired =
                decode::<PendingRecord>("oauth_pending", &v).map_or(true, |p| p.expires_at < now);
            if expired && self.pending.remove(k).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        for kv in self.codes.iter() {
            let (k, v) = kv.map_err(backend)?;
            let stale = decode::<AuthCodeRecord>("oauth_codes", &v)
                .map_or(true, |c| c.expires_at + 86_400 < now);
            if stale && self.codes.remove(k).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
