//! Persistence, grouped by domain: one small trait per kind of record ([`IdentityStore`],
//! [`DeviceStore`], [`SessionStore`], ...), each a supertrait of [`Durable`] (every backend can
//! make its writes durable), and [`Store`], their union, which `Arc<dyn Store>` carries. A domain
//! function takes the narrowest trait it needs; trait upcasting turns a `&dyn Store` into it.
//!
//! The `sled_*` modules are the only ones in the workspace that import sled; `nats_kv` and
//! `nats_domains` are the JetStream backend for several sidecars (`--store nats`), the same
//! traits on KV buckets. Every record is
//! serialized one way: a version byte followed by JSON (`codec`), so a record written by a newer
//! version is refused, never misread.

mod codec;
mod nats_accounts;
mod nats_domains;
mod nats_kv;
mod nats_policies;
mod nats_watch;
mod oauth_records;
mod policy_records;
mod records;
mod sled_check;
mod sled_devices;
mod sled_nats;
mod sled_oauth;
mod sled_policies;
mod sled_sessions;
mod sled_store;
mod sled_tenancy;
#[cfg(test)]
mod sled_tests;

use std::future::Future;
use std::pin::Pin;

pub use nats_kv::NatsKvStore;
pub use oauth_records::{
    AuthCodeRecord, AuthorizeRequest, OAuthClientRecord, PendingRecord, PendingStep,
    UpstreamPending,
};
pub use policy_records::{PolicyOrigin, PolicyVersionRecord};
pub use records::{
    AnnouncementRecord, ApiKeyRecord, AppRecord, BanRecord, ChallengeRecord, FamilyRecord,
    IdentityRecord, NatsAccountRecord, NatsUserRecord, RefreshRecord, RevocationKind,
    RevocationRecord, RoleRecord, SealedSeed, SigningKeyRecord, UpstreamAccount, UserRolesRecord,
    upstream_index,
};
pub use sled_check::CheckReport;
pub use sled_store::SledStore;

/// Open the store the configuration names. A backend that cannot be opened is an error, never a
/// silent fallback to the other.
pub fn open(args: &crate::config::StoreArgs) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(match args.kind {
        crate::config::StoreKind::Sled => std::sync::Arc::new(SledStore::open(&args.data_dir)?),
        crate::config::StoreKind::Nats => std::sync::Arc::new(NatsKvStore::connect(&args.nats)?),
    })
}

/// What a backend reported when it failed (sled's error, an I/O error, a NATS KV error, ...).
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in the store. Callers map `Conflict` to 409 and the rest to a generic 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened (locked by another process, corrupt, unreadable).
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: BackendError,
    },
    /// A uniqueness constraint failed (e.g. the public key is already registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A record could not be encoded or decoded (unknown version byte or bad JSON).
    #[error("corrupt record in {tree}: {source}")]
    Corrupt {
        tree: &'static str,
        #[source]
        source: CodecError,
    },
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(#[source] BackendError),
    /// A shared backend (NATS JetStream) did not do or did not confirm the operation in time:
    /// nothing was acknowledged, and a retry may succeed (503).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BackendError),
}

/// Why a record's bytes could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not a record of this format (`broker_auth::shared_store::decode`).
    #[error(transparent)]
    Record(#[from] broker_auth::shared_store::RecordError),
    /// A key that is not what the tree keeps (a sequence number of the wrong length, ...).
    #[error("bad key")]
    Key,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A boxed future, so the store traits stay object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// Writes are visible at once; they are durable once [`Durable::flush`] resolves, so a handler
/// flushes before it acknowledges a write (group commit: concurrent flushes share one fsync).
/// Every domain trait has it, so a function holding one of them can finish its own writes.
pub trait Durable: Send + Sync {
    /// Make every write so far durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
}

/// Identities and their unique sign-in index (public key, or upstream account within an app).
pub trait IdentityStore: Durable {
    /// Insert a new identity and its key index atomically; `Conflict` if the key is taken.
    fn insert_identity(&self, rec: &IdentityRecord) -> StoreResult<()>;
    /// Replace an existing identity record (its key never changes).
    fn update_identity(&self, rec: &IdentityRecord) -> StoreResult<()>;
    /// One identity by id.
    fn identity(&self, id: &str) -> StoreResult<Option<IdentityRecord>>;
    /// One identity by canonical public key.
    fn identity_by_key(&self, canonical_key: &str) -> StoreResult<Option<IdentityRecord>>;
    /// Up to `limit` identities with ids after `after`, in id order.
    fn list_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<IdentityRecord>>;
    /// Number of identities.
    fn identity_count(&self) -> StoreResult<usize>;
}

/// One-time proofs and device sessions: login challenges, announce signatures, announcements.
pub trait DeviceStore: Durable {
    /// Store a challenge.
    fn put_challenge(&self, challenge: &str, rec: &ChallengeRecord) -> StoreResult<()>;
    /// Remove and return a challenge: exactly one caller can ever get it.
    fn take_challenge(&self, challenge: &str) -> StoreResult<Option<ChallengeRecord>>;
    /// Record an announce signature; `false` if it was already recorded (a replay).
    fn remember_signature(&self, digest: &[u8], until: i64) -> StoreResult<bool>;
    /// Store an announcement and make it the device's current one; returns the previous one.
    fn open_announcement(
        &self,
        rec: &AnnouncementRecord,
    ) -> StoreResult<Option<AnnouncementRecord>>;
    /// One announcement by id.
    fn announcement(&self, id: &str) -> StoreResult<Option<AnnouncementRecord>>;
    /// End the device's current announcement if it is `id`; returns it.
    fn end_announcement(
        &self,
        device: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<AnnouncementRecord>>;
}

/// The revocation feed: an append-only log with monotonic sequence numbers.
pub trait RevocationStore: Durable {
    /// Append a revocation; returns its sequence number (monotonic).
    fn append_revocation(&self, rec: &RevocationRecord) -> StoreResult<u64>;
    /// Revocations with sequence numbers greater than `since`, at most `limit`.
    fn revocations_since(
        &self,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, RevocationRecord)>>;
}

/// Permanent IP bans.
pub trait BanStore: Durable {
    /// Persist a ban.
    fn put_ban(&self, rec: &BanRecord) -> StoreResult<()>;
    /// Remove a ban; true if there was one.
    fn remove_ban(&self, ip: &str) -> StoreResult<bool>;
    /// All bans.
    fn bans(&self) -> StoreResult<Vec<BanRecord>>;
}

/// API keys (only their hashes).
pub trait ApiKeyStore: Durable {
    /// Store an API key record (only its hash).
    fn put_api_key(&self, rec: &ApiKeyRecord) -> StoreResult<()>;
    /// One API key record by key id.
    fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Every API key record (there are few: admins', apps', integrations').
    fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
}

/// Token signing keys (encrypted private halves).
pub trait SigningKeyStore: Durable {
    /// All signing keys (encrypted private halves).
    fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Store or replace a signing key.
    fn put_signing_key(&self, rec: &SigningKeyRecord) -> StoreResult<()>;
    /// Remove a signing key.
    fn remove_signing_key(&self, kid: &str) -> StoreResult<()>;
}

/// The NATS provisioner's accounts and users (encrypted seeds, signed JWTs).
pub trait NatsStore: Durable {
    /// Insert a NATS account unless its id exists; returns the stored one either way (the first
    /// writer wins a race, so two concurrent creates of a tenant return the same account).
    fn create_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<NatsAccountRecord>;
    /// Replace an existing account (new JWT after a revocation); its key never changes.
    fn update_nats_account(&self, rec: &NatsAccountRecord) -> StoreResult<()>;
    /// One account by id (tenant, `SYS`, `CONTROL`).
    fn nats_account(&self, id: &str) -> StoreResult<Option<NatsAccountRecord>>;
    /// Every account.
    fn nats_accounts(&self) -> StoreResult<Vec<NatsAccountRecord>>;
    /// One account by public key (the resolver's lookup).
    fn nats_account_by_key(&self, public_key: &str) -> StoreResult<Option<NatsAccountRecord>>;
    /// Insert a NATS user unless its id exists; returns the stored one either way.
    fn create_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<NatsUserRecord>;
    /// Replace a user record (revocation).
    fn update_nats_user(&self, rec: &NatsUserRecord) -> StoreResult<()>;
    /// One user by id.
    fn nats_user(&self, id: &str) -> StoreResult<Option<NatsUserRecord>>;
    /// Every user (for ensuring consumers at start-up).
    fn nats_users(&self) -> StoreResult<Vec<NatsUserRecord>>;
}

/// Apps (the product's tenants), their roles, and users' role assignments.
pub trait TenancyStore: Durable {
    /// Store or replace an app.
    fn put_app(&self, rec: &AppRecord) -> StoreResult<()>;
    /// One app.
    fn app(&self, id: &str) -> StoreResult<Option<AppRecord>>;
    /// Every app.
    fn apps(&self) -> StoreResult<Vec<AppRecord>>;
    /// Create a role; `Conflict` if the app has a role of that name.
    fn create_role(&self, rec: &RoleRecord) -> StoreResult<()>;
    /// The roles of an app.
    fn roles(&self, app_id: &str) -> StoreResult<Vec<RoleRecord>>;
    /// Store a user's roles in an app.
    fn put_user_roles(&self, rec: &UserRolesRecord) -> StoreResult<()>;
    /// A user's roles in an app.
    fn user_roles(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRolesRecord>>;
}

/// Login sessions: families and their rotating refresh tokens.
pub trait SessionStore: Durable {
    /// Store a refresh token record.
    fn put_refresh(&self, rec: &RefreshRecord) -> StoreResult<()>;
    /// One refresh token by id.
    fn refresh_token(&self, id: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Mark `rec` used if it is still exactly as read; false if someone else changed it first.
    fn use_refresh(&self, rec: &RefreshRecord, at: i64) -> StoreResult<bool>;
    /// Store or replace a session family.
    fn put_family(&self, rec: &FamilyRecord) -> StoreResult<()>;
    /// One family of a user.
    fn family(&self, user: &str, id: &str) -> StoreResult<Option<FamilyRecord>>;
    /// Every family of a user (logout).
    fn families_of(&self, user: &str) -> StoreResult<Vec<FamilyRecord>>;
}

/// The OAuth2 server's clients, pending browser steps and authorization codes.
pub trait OAuthStore: Durable {
    /// Register or replace an OAuth2 client.
    fn put_oauth_client(&self, rec: &OAuthClientRecord) -> StoreResult<()>;
    /// One OAuth2 client.
    fn oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRecord>>;
    /// Every OAuth2 client.
    fn oauth_clients(&self) -> StoreResult<Vec<OAuthClientRecord>>;
    /// Remove a client; false if there was none.
    fn delete_oauth_client(&self, id: &str) -> StoreResult<bool>;
    /// Store a pending browser-flow step under a random id.
    fn put_pending(&self, id: &str, rec: &PendingRecord) -> StoreResult<()>;
    /// Take (remove and return) a pending step: the first caller gets it, every later one None.
    fn take_pending(&self, id: &str) -> StoreResult<Option<PendingRecord>>;
    /// Store an authorization code under the digest of the code.
    fn put_code(&self, digest: &str, rec: &AuthCodeRecord) -> StoreResult<()>;
    /// One authorization code by digest.
    fn code(&self, digest: &str) -> StoreResult<Option<AuthCodeRecord>>;
    /// Replace `rec` by `used` if it is still exactly as read; false if another exchange won.
    fn use_code(
        &self,
        digest: &str,
        rec: &AuthCodeRecord,
        used: &AuthCodeRecord,
    ) -> StoreResult<bool>;
}

/// Policy versions: every accepted bundle, one of them live.
pub trait PolicyStore: Durable {
    /// Store `rec` as the next version and make it live, if the live version is still `base`
    /// (`None`: no version yet); `Conflict` otherwise. Returns the record with its number.
    fn deploy_policy(
        &self,
        rec: &PolicyVersionRecord,
        base: Option<u64>,
    ) -> StoreResult<PolicyVersionRecord>;
    /// The live version, if any.
    fn live_policy(&self) -> StoreResult<Option<PolicyVersionRecord>>;
    /// One version.
    fn policy_version(&self, n: u64) -> StoreResult<Option<PolicyVersionRecord>>;
    /// Versions older than `before` (every one when `None`), newest first, at most `limit`.
    fn policy_versions(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<PolicyVersionRecord>>;
}

/// What another process sharing the store changed, for this process's in-memory state.
#[derive(Debug)]
pub enum StoreChange {
    /// A revocation appended to the feed (by anyone, this process included), with its sequence.
    Revocation(u64, RevocationRecord),
    /// Signing keys were added, retired or removed: reload them.
    SigningKeys,
    /// Another version went live: serve it.
    Policy,
    /// Bans changed: reload them.
    Bans,
}

/// Housekeeping and probes of the backend as a whole.
pub trait MaintenanceStore: Durable {
    /// Changes made through other processes, from revocation sequence `after` on; `None` for a
    /// backend only this process writes (sled).
    fn follow(&self, after: u64) -> Option<tokio::sync::mpsc::UnboundedReceiver<StoreChange>> {
        let _ = after;
        None
    }
    /// Drop expired challenges, signatures, pending steps and stale codes.
    fn prune(&self, now: i64) -> StoreResult<usize>;
    /// A cheap liveness probe.
    fn ping(&self) -> StoreResult<()>;
    /// Bytes on disk.
    fn size_on_disk(&self) -> StoreResult<u64>;
}

/// `Store` and its blanket impl from one list of the domain traits.
macro_rules! union_of {
    ($($part:ident),+ $(,)?) => {
        /// The service's persistence: every domain's store in one object (`Arc<dyn Store>`). A
        /// backend implements the domain traits and gets this one for free.
        pub trait Store: $($part +)+ {}

        impl<T: $($part +)+ ?Sized> Store for T {}
    };
}

union_of!(
    IdentityStore,
    DeviceStore,
    RevocationStore,
    BanStore,
    ApiKeyStore,
    SigningKeyStore,
    NatsStore,
    TenancyStore,
    SessionStore,
    OAuthStore,
    PolicyStore,
    MaintenanceStore,
);
