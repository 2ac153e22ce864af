//! Refresh tokens and their families. A token is marked used with a compare-and-swap on its
//! stored bytes, so of two concurrent exchanges of one token exactly one wins; families are keyed
//! `<user>/<family>` so logout finds all of a user's sessions with a prefix scan.

use super::codec::{decode, encode};
use super::records::{FamilyRecord, RefreshRecord};
use super::sled_store::{SledStore, backend};
use super::{SessionStore, StoreResult};

impl SessionStore for SledStore {
    fn put_refresh(&self, rec: &RefreshRecord) -> StoreResult<()> {
        Self::put_in(&self.refresh, "refresh", rec.id.as_bytes(), rec)
    }

    fn refresh_token(&self, id: &str) -> StoreResult<Option<RefreshRecord>> {
        Self::get(&self.refresh, "refresh", id.as_bytes())
    }

    fn use_refresh(&self, rec: &RefreshRecord, at: i64) -> StoreResult<bool> {
        let current = encode("refresh", rec)?;
        let mut used = rec.clone();
        used.used_at = Some(at);
        let swapped = self
            .refresh
            .compare_and_swap(
                rec.id.as_bytes(),
                Some(current),
                Some(encode("refresh", &used)?),
            )
            .map_err(backend)?;
        Ok(swapped.is_ok())
    }

    fn put_family(&self, rec: &FamilyRecord) -> StoreResult<()> {
        Self::put_in(
            &self.families,
            "families",
            format!("{}/{}", rec.user_id, rec.id).as_bytes(),
            rec,
        )
    }

    fn family(&self, user: &str, id: &str) -> StoreResult<Option<FamilyRecord>> {
        Self::get(
            &self.families,
            "families",
            format!("{user}/{id}").as_bytes(),
        )
    }

    fn families_of(&self, user: &str) -> StoreResult<Vec<FamilyRecord>> {
        self.families
            .scan_prefix(format!("{user}/").as_bytes())
            .map(|kv| decode("families", &kv.map_err(backend)?.1))
            .collect()
    }
}
