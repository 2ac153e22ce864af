//! Apps, roles and role assignments in one sled tree, keyed so that an app's roles and a
//! user's assignments are prefix scans: `app/<id>`, `role/<app>/<id>`, `rolename/<app>/<name>`
//! (the uniqueness index) and `assign/<app>/<user>`.

use super::codec::{decode, encode};
use super::records::{AppRecord, RoleRecord, UserRolesRecord};
use super::sled_store::{SledStore, backend};
use super::{StoreError, StoreResult, TenancyStore};

const TREE: &str = "tenancy";

impl SledStore {
    fn put<T: serde::Serialize>(&self, key: String, rec: &T) -> StoreResult<()> {
        self.tenancy
            .insert(key.as_bytes(), encode(TREE, rec)?)
            .map_err(backend)?;
        Ok(())
    }

    fn one<T: serde::de::DeserializeOwned>(&self, key: String) -> StoreResult<Option<T>> {
        self.tenancy
            .get(key.as_bytes())
            .map_err(backend)?
            .map(|v| decode(TREE, &v))
            .transpose()
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: String) -> StoreResult<Vec<T>> {
        self.tenancy
            .scan_prefix(prefix.as_bytes())
            .map(|kv| decode(TREE, &kv.map_err(backend)?.1))
            .collect()
    }
}

impl TenancyStore for SledStore {
    fn put_app(&self, rec: &AppRecord) -> StoreResult<()> {
        self.put(format!("app/{}", rec.id), rec)
    }

    fn app(&self, id: &str) -> StoreResult<Option<AppRecord>> {
        self.one(format!("app/{id}"))
    }

    fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.scan("app/".into())
    }

    fn create_role(&self, rec: &RoleRecord) -> StoreResult<()> {
        // The name index is claimed atomically: of two concurrent creates, one gets a conflict.
        let name_key = format!("rolename/{}/{}", rec.app_id, rec.name);
        let claimed = self
            .tenancy
            .compare_and_swap(
                name_key.as_bytes(),
                None as Option<&[u8]>,
                Some(rec.id.as_bytes()),
            )
            .map_err(backend)?;
        if claimed.is_err() {
            return Err(StoreError::Conflict(format!(
                "app already has a role named {:?}",
                rec.name
            )));
        }
        self.put(format!("role/{}/{}", rec.app_id, rec.id), rec)
    }

    fn roles(&self, app_id: &str) -> StoreResult<Vec<RoleRecord>> {
        self.scan(format!("role/{app_id}/"))
    }

    fn put_user_roles(&self, rec: &UserRolesRecord) -> StoreResult<()> {
        self.put(format!("assign/{}/{}", rec.app_id, rec.user_id), rec)
    }

    fn user_roles(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRolesRecord>> {
        self.one(format!("assign/{app_id}/{user_id}"))
    }
}
