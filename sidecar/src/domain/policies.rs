//! Policy authoring: versions in the store, the deploy gate, dry runs and access diffs.
//!
//! Every new version, whatever its source (the `--policies` directory, `POST /policies`, a
//! rollback), goes through [`commit`]: the gate ([`gate`]), then the store's compare-and-swap
//! on the live version (two editors on one base: one wins, the other gets 409), then the whole
//! compiled set swapped in at once. One deploy at a time per process, so the order sets are
//! served in is the order the store numbered them.

use std::collections::{BTreeMap, HashSet};

use broker_auth::Principal;
use broker_auth::Protocol;
use broker_auth::policy::bundle::{Bundle, Refusal, gate};
use broker_auth::policy::diff::{PrincipalDiff, access_diff};
use broker_auth::policy::{ALLOW_ENTRYPOINT, GRANTS_ENTRYPOINT, PolicySet, TestReport};
use broker_auth::token::TokenUse;
use serde_json::{Value, json};

use super::callers::{self, Caller};
use crate::error::SidecarError;
use crate::metrics::PolicyChangeLabels;
use crate::state::AppState;
use crate::store::{IdentityStore, PolicyOrigin, PolicyStore, PolicyVersionRecord};

/// Most principals an access diff examines unless asked for fewer.
pub const DIFF_LIMIT: usize = 10_000;

fn refused(r: Refusal) -> SidecarError {
    SidecarError::PolicyInvalid(Box::new(r))
}

/// Files as a bundle, or a 400 saying why they cannot be one.
pub fn bundle_of(files: BTreeMap<String, String>) -> Result<Bundle, SidecarError> {
    Bundle::new(files).map_err(|e| SidecarError::Validation(e.to_string()))
}

fn author_of(caller: &Caller) -> String {
    match caller {
        Caller::ApiKey(k) => k.id.clone(),
        Caller::Identity { identity, .. } => identity.id.clone(),
    }
}

fn count(state: &AppState, origin: PolicyOrigin, result: &'static str) {
    state
        .metrics
        .policy_changes
        .get_or_create(&PolicyChangeLabels {
            source: origin.as_str(),
            result,
        })
        .inc();
}

/// The gate off the async threads (compiling and testing a bundle takes tens of milliseconds).
async fn gated(bundle: Bundle) -> Result<broker_auth::policy::bundle::Gated, SidecarError> {
    tokio::task::spawn_blocking(move || gate(&bundle))
        .await
        .map_err(|e| SidecarError::internal_from("policy gate", e))?
        .map_err(refused)
}

/// What a version needs besides its files.
pub struct Change {
    pub author: String,
    pub origin: PolicyOrigin,
    pub message: String,
    /// The live version the change was made on; `None`: whatever is live now.
    pub base: Option<u64>,
}

impl Change {
    /// The record of `bundle` as this change (the store numbers it).
    fn record(self, bundle: &Bundle, now: i64) -> PolicyVersionRecord {
        PolicyVersionRecord {
            version: 0,
            hash: bundle.hash(),
            created_at: now,
            author: self.author,
            source: self.origin,
            message: self.message,
            files: bundle.files().clone(),
        }
    }
}

/// Gate `bundle`, store it as the next version if `change.base` is still live, and serve it.
pub async fn commit(
    state: &AppState,
    bundle: Bundle,
    change: Change,
) -> Result<PolicyVersionRecord, SidecarError> {
    let _one_at_a_time = state.policy_lock.lock().await;
    let hash = bundle.hash();
    let g = match gated(bundle.clone()).await {
        Ok(g) => g,
        Err(e) => {
            count(state, change.origin, "refused");
            tracing::warn!(source = change.origin.as_str(), author = %change.author, %hash,
                error = %e, "policy change refused; the live version keeps serving");
            return Err(e);
        }
    };
    let store: &dyn PolicyStore = state.store.as_ref();
    let base = match change.base {
        Some(b) => Some(b),
        None => store.live_policy()?.map(|r| r.version),
    };
    let origin = change.origin;
    let rec = change.record(&bundle, state.now());
    let stored = match store.deploy_policy(&rec, base) {
        Ok(s) => s,
        Err(crate::store::StoreError::Conflict(why)) => {
            count(state, origin, "conflict");
            return Err(SidecarError::Conflict(format!(
                "{why}: reload, merge your edit onto it and deploy again"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    store.flush().await?;
    serve_version(state, g.set, &stored);
    count(state, origin, "deployed");
    tracing::info!(version = stored.version, source = stored.source.as_str(), author = %stored.author,
        hash = %stored.hash, "policy deployed");
    Ok(without_files(stored))
}

/// Serve `set` as stored version `rec` (every enforcement point reads it from `auth`).
pub(crate) fn serve_version(state: &AppState, set: PolicySet, rec: &PolicyVersionRecord) {
    for w in set.warnings() {
        tracing::warn!(warning = %w, version = rec.version, "policy");
    }
    state.auth.set_policy(set.with_version(rec.version));
    state.metrics.policy_version.set(rec.version as i64);
}

/// A record's metadata (files left out of lists and deploy answers).
pub fn without_files(mut rec: PolicyVersionRecord) -> PolicyVersionRecord {
    rec.files.clear();
    rec
}

/// `POST /policies`: deploy `files` on `base_version`.
pub async fn deploy(
    state: &AppState,
    bearer: Option<&str>,
    files: BTreeMap<String, String>,
    message: String,
    base_version: u64,
) -> Result<PolicyVersionRecord, SidecarError> {
    let caller = callers::require_admin(state, bearer)?;
    let change = Change {
        author: author_of(&caller),
        origin: PolicyOrigin::Api,
        message,
        base: Some(base_version),
    };
    commit(state, bundle_of(files)?, change).await
}

/// `POST /policies/rollback`: a new version with version `n`'s files.
pub async fn rollback(
    state: &AppState,
    bearer: Option<&str>,
    n: u64,
    message: Option<String>,
) -> Result<PolicyVersionRecord, SidecarError> {
    let caller = callers::require_admin(state, bearer)?;
    let old = stored_version(state, n)?;
    let change = Change {
        author: author_of(&caller),
        origin: PolicyOrigin::Rollback,
        message: message.unwrap_or_else(|| format!("rollback to version {n}")),
        base: None,
    };
    commit(state, bundle_of(old.files)?, change).await
}

fn stored_version(state: &AppState, n: u64) -> Result<PolicyVersionRecord, SidecarError> {
    let store: &dyn PolicyStore = state.store.as_ref();
    store
        .policy_version(n)?
        .ok_or(SidecarError::NotFound("policy version"))
}

/// The live version's record (with its files) and the set serving it.
pub fn live(
    state: &AppState,
) -> Result<(PolicyVersionRecord, std::sync::Arc<PolicySet>), SidecarError> {
    let set = state.auth.policy();
    let n = set
        .version()
        .ok_or_else(|| SidecarError::internal("the serving policy has no version"))?;
    Ok((stored_version(state, n)?, set))
}

/// `GET /policies` (admins).
pub fn get_live(
    state: &AppState,
    bearer: Option<&str>,
) -> Result<(PolicyVersionRecord, std::sync::Arc<PolicySet>), SidecarError> {
    callers::require_admin(state, bearer)?;
    live(state)
}

/// `GET /policies/versions` (admins): newest first, older than `before`.
pub fn versions(
    state: &AppState,
    bearer: Option<&str>,
    limit: Option<usize>,
    before: Option<u64>,
) -> Result<Vec<PolicyVersionRecord>, SidecarError> {
    callers::require_admin(state, bearer)?;
    let limit = limit.unwrap_or(50).clamp(1, 500);
    let store: &dyn PolicyStore = state.store.as_ref();
    Ok(store
        .policy_versions(before, limit)?
        .into_iter()
        .map(without_files)
        .collect())
}

/// `GET /policies/versions/{n}` (admins).
pub fn version(
    state: &AppState,
    bearer: Option<&str>,
    n: u64,
) -> Result<PolicyVersionRecord, SidecarError> {
    callers::require_admin(state, bearer)?;
    stored_version(state, n)
}

/// `POST /policies/validate` (admins): the gate, changing nothing.
pub async fn validate(
    state: &AppState,
    bearer: Option<&str>,
    files: BTreeMap<String, String>,
) -> Result<(PolicySet, TestReport), SidecarError> {
    callers::require_admin(state, bearer)?;
    let g = gated(bundle_of(files)?).await?;
    Ok((g.set, g.tests))
}

/// `POST /policies/eval` (admins): one input on the live set or on a candidate bundle.
pub async fn eval(
    state: &AppState,
    bearer: Option<&str>,
    input: Value,
    files: Option<BTreeMap<String, String>>,
    query: Option<String>,
    explain: bool,
) -> Result<Value, SidecarError> {
    callers::require_admin(state, bearer)?;
    if !input.is_object() {
        return Err(SidecarError::Validation(
            "input must be a JSON object".into(),
        ));
    }
    let set = match files {
        Some(f) => std::sync::Arc::new(gated(bundle_of(f)?).await?.set),
        None => state.auth.policy(),
    };
    let entry = query.unwrap_or_else(|| {
        let per_request = input.get("topic").is_some();
        (if per_request {
            ALLOW_ENTRYPOINT
        } else {
            GRANTS_ENTRYPOINT
        })
        .to_owned()
    });
    if !entry.starts_with("data.") || entry.len() > 200 {
        return Err(SidecarError::Validation(
            "query must be a rule path: data.<package>.<rule>".into(),
        ));
    }
    tokio::task::spawn_blocking(move || eval_on(&set, &entry, &input, explain))
        .await
        .map_err(|e| SidecarError::internal_from("policy eval", e))?
}

fn eval_on(
    set: &PolicySet,
    entry: &str,
    input: &Value,
    explain: bool,
) -> Result<Value, SidecarError> {
    // An evaluation error is the input's or the query's (the set passed the gate): a 400.
    let bad = |e: broker_auth::Error| SidecarError::Validation(e.to_string());
    if explain {
        let x = set.explain(entry, input).map_err(bad)?;
        return Ok(
            json!({"entrypoint": x.entrypoint, "result": x.value, "fired": x.fired, "lines": x.lines_evaluated}),
        );
    }
    Ok(json!({"entrypoint": entry, "result": set.eval_json(entry, input).map_err(bad)?}))
}

/// What `POST /policies/diff` compares the live (or `from`) version with.
pub enum DiffTarget {
    Version(u64),
    Files(BTreeMap<String, String>),
}

/// The answer of an access diff.
#[derive(Debug, serde::Serialize)]
pub struct DiffReport {
    pub from: u64,
    /// The version compared with, or null for a candidate bundle.
    pub to: Option<u64>,
    pub principals_examined: usize,
    pub truncated: bool,
    pub changed: Vec<PrincipalDiff>,
}

/// The set of a stored version (it passed the gate when it was made; tests are not rerun).
fn set_of(state: &AppState, n: u64) -> Result<std::sync::Arc<PolicySet>, SidecarError> {
    let live = state.auth.policy();
    if live.version() == Some(n) {
        return Ok(live);
    }
    let bundle = bundle_of(stored_version(state, n)?.files)?;
    PolicySet::from_bundle(&bundle)
        .map(std::sync::Arc::new)
        .map_err(|e| SidecarError::policy_from(format!("stored policy version {n}"), e))
}

/// `POST /policies/diff` (admins).
pub async fn diff(
    state: &AppState,
    bearer: Option<&str>,
    from: Option<u64>,
    to: DiffTarget,
    limit: Option<usize>,
) -> Result<DiffReport, SidecarError> {
    callers::require_admin(state, bearer)?;
    let from_set = match from {
        Some(n) => set_of(state, n)?,
        None => state.auth.policy(),
    };
    let (to_n, to_set) = match to {
        DiffTarget::Version(n) => (Some(n), set_of(state, n)?),
        DiffTarget::Files(f) => (None, std::sync::Arc::new(gated(bundle_of(f)?).await?.set)),
    };
    let limit = limit.unwrap_or(DIFF_LIMIT).clamp(1, DIFF_LIMIT);
    let (principals, truncated) = principals(state, limit, [&from_set, &to_set])?;
    let from_n = from_set.version().unwrap_or_default();
    let examined = principals.len();
    let changed = tokio::task::spawn_blocking(move || access_diff(&from_set, &to_set, &principals))
        .await
        .map_err(|e| SidecarError::internal_from("access diff", e))?;
    Ok(DiffReport {
        from: from_n,
        to: to_n,
        principals_examined: examined,
        truncated,
        changed,
    })
}

/// The principals an access diff examines: every active identity in the store, then every
/// principal of a live MQTT or NATS connection (each distinct one once), at most `limit`.
/// A live principal differs from its identity's by client id and protocol; those count only
/// where one of the two policies reads them (the grants cache knows which).
fn principals(
    state: &AppState,
    limit: usize,
    sets: [&PolicySet; 2],
) -> Result<(Vec<Principal>, bool), SidecarError> {
    let (by_client_id, by_protocol) = sets.iter().fold((false, false), |(c, p), s| {
        let (sc, sp) = s.cache_keys_on();
        (c || sc, p || sp)
    });
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |mut p: Principal, out: &mut Vec<Principal>| {
        if !by_client_id {
            p.client_id = None;
        }
        if !by_protocol {
            p.protocol = Protocol::Mqtt;
        }
        let key = serde_json::to_string(&p).unwrap_or_default();
        if seen.insert(key) {
            out.push(p);
        }
    };
    let store: &dyn IdentityStore = state.store.as_ref();
    let mut after: Option<String> = None;
    'pages: loop {
        let page = store.list_identities(after.as_deref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for rec in page.into_iter().filter(|r| !r.is_disabled()) {
            let claims = super::tokens::claims_for(state, &rec, 60, TokenUse::Access, "diff");
            if let Ok(p) = Principal::from_claims(&claims, Protocol::Mqtt, None) {
                push(p, &mut out);
            }
            if out.len() > limit {
                break 'pages;
            }
        }
    }
    for p in state.enforcer.principals() {
        if out.len() > limit {
            break;
        }
        push(p, &mut out);
    }
    let truncated = out.len() > limit;
    out.truncate(limit);
    Ok((out, truncated))
}

/// The set to serve at start-up, labelled with its version. A store without versions is seeded
/// with the `--policies` directory as version 1 (through the gate; a refusal stops the start).
/// Otherwise the store's live version serves — unless the directory was edited while the
/// process was stopped (its hash is neither the live version's nor the last `dir` version's),
/// in which case the edit becomes a new version like any edit of the watched directory.
pub fn startup(
    store: &dyn PolicyStore,
    dir: &std::path::Path,
    now: i64,
) -> Result<PolicySet, SidecarError> {
    let from_dir = broker_auth_runtime::policy_dir::read_bundle(dir);
    let dir_change = |message: String| Change {
        author: "dir".into(),
        origin: PolicyOrigin::Dir,
        message,
        base: None,
    };
    let Some(live) = store.live_policy()? else {
        let bundle = from_dir.map_err(|e| SidecarError::policy_from("", e))?;
        let change = dir_change(format!("seeded from {}", dir.display()));
        return store_gated(store, bundle, change, now);
    };
    if let Ok(bundle) = from_dir {
        let hash = bundle.hash();
        let last_dir = store
            .policy_versions(None, 200)?
            .into_iter()
            .find(|v| v.source == PolicyOrigin::Dir)
            .map(|v| v.hash);
        if hash != live.hash && last_dir.as_deref() != Some(hash.as_str()) {
            let change = Change {
                base: Some(live.version),
                ..dir_change(format!("{} edited while stopped", dir.display()))
            };
            match store_gated(store, bundle, change, now) {
                Ok(set) => return Ok(set),
                Err(e) => tracing::warn!(error = %e, version = live.version,
                    "the policy directory's edit is refused; the stored live version serves"),
            }
        }
    }
    let bundle = bundle_of(live.files)?;
    PolicySet::from_bundle(&bundle)
        .map(|s| s.with_version(live.version))
        .map_err(|e| {
            SidecarError::policy_from(format!("stored policy version {}", live.version), e)
        })
}

/// [`commit`]'s gate and store steps, synchronously, for start-up (nothing serves yet).
fn store_gated(
    store: &dyn PolicyStore,
    bundle: Bundle,
    change: Change,
    now: i64,
) -> Result<PolicySet, SidecarError> {
    let g = gate(&bundle).map_err(refused)?;
    let base = change.base;
    let stored = store.deploy_policy(&change.record(&bundle, now), base)?;
    tracing::info!(version = stored.version, source = "dir", hash = %stored.hash, "policy version stored");
    Ok(g.set.with_version(stored.version))
}

/// The `--policies` directory changed: its bundle becomes a new version through the gate, or is
/// refused (logged with file:line:col, counted) and the live version keeps serving.
pub async fn directory_changed(
    state: &AppState,
    bundle: Result<Bundle, broker_auth_runtime::policy_dir::PolicyDirError>,
) {
    let dir = state.config.policies.display().to_string();
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => {
            count(state, PolicyOrigin::Dir, "refused");
            tracing::warn!(error = %e, "policy directory unreadable; the live version keeps serving");
            return;
        }
    };
    if state.auth.policy().version().is_some_and(|n| {
        let store: &dyn PolicyStore = state.store.as_ref();
        store
            .policy_version(n)
            .ok()
            .flatten()
            .is_some_and(|r| r.hash == bundle.hash())
    }) {
        return; // the directory now holds what already serves
    }
    let change = Change {
        author: "dir".into(),
        origin: PolicyOrigin::Dir,
        message: format!("{dir} edited"),
        base: None,
    };
    // `commit` logs and counts both outcomes.
    let _ = commit(state, bundle, change).await;
}
