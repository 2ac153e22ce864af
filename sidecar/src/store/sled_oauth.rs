//! OAuth2 clients, pending browser-flow steps and authorization codes. Pending steps are taken
//! with `remove`, so of two callbacks racing on one `state` exactly one gets it; a code is
//! marked used with a compare-and-swap for the same reason.

use super::codec::{decode, encode};
use super::oauth_records::{AuthCodeRecord, OAuthClientRecord, PendingRecord};
use super::sled_store::{SledStore, backend};
use super::{OAuthStore, StoreResult};

impl OAuthStore for SledStore {
    fn put_oauth_client(&self, rec: &OAuthClientRecord) -> StoreResult<()> {
        self.oauth_clients
            .insert(rec.id.as_bytes(), encode("oauth_clients", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        self.oauth_clients
            .get(id.as_bytes())
            .map_err(backend)?
            .map(|v| decode("oauth_clients", &v))
            .transpose()
    }

    fn oauth_clients(&self) -> StoreResult<Vec<OAuthClientRecord>> {
        self.oauth_clients
            .iter()
            .map(|kv| decode("oauth_clients", &kv.map_err(backend)?.1))
            .collect()
    }

    fn delete_oauth_client(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .oauth_clients
            .remove(id.as_bytes())
            .map_err(backend)?
            .is_some())
    }

    fn put_pending(&self, id: &str, rec: &PendingRecord) -> StoreResult<()> {
        self.pending
            .insert(id.as_bytes(), encode("oauth_pending", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn take_pending(&self, id: &str) -> StoreResult<Option<PendingRecord>> {
        self.pending
            .remove(id.as_bytes())
            .map_err(backend)?
            .map(|v| decode("oauth_pending", &v))
            .transpose()
    }

    fn put_code(&self, digest: &str, rec: &AuthCodeRecord) -> StoreResult<()> {
        self.codes
            .insert(digest.as_bytes(), encode("oauth_codes", rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn code(&self, digest: &str) -> StoreResult<Option<AuthCodeRecord>> {
        self.codes
            .get(digest.as_bytes())
            .map_err(backend)?
            .map(|v| decode("oauth_codes", &v))
            .transpose()
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
