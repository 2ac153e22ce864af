//! The standalone callout following the sidecars' shared store (`--store nats`) instead of a
//! sidecar's HTTP feeds: what every sidecar of a fleet decided reaches it from JetStream within
//! a second, with no sidecar in the path and no master key.
//!
//! - Keys: a KV watch (with history) of the signing keys; the public half of each record is
//!   the JWK the sidecars' JWKS serves. A record without one (written by an older sidecar) is
//!   an error until a sidecar of this version has loaded the keys once and recorded it.
//! - Policy: a KV watch of the live version. The store holds only versions that passed the
//!   deploy gate (tests included) at the sidecar that deployed them, so each is compiled here,
//!   as the sidecars following the store do, not tested again; one that does not compile leaves
//!   the previous serving.
//! - Revocations: an ordered consumer of the revocation stream from the first entry, applied in
//!   order; an entry it cannot read stops it there (retried), never skipped.
//! - Freshness: every second the stream's last sequence is read; the callout counts as caught up
//!   when it has applied everything the stream held a second before. Without that for
//!   `--revocations-stale-after` seconds (JetStream down, the consumer stuck), every connect is
//!   refused (`revocations_stale`) until it is caught up again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use broker_auth::policy::PolicySet;
use broker_auth::policy::bundle::Bundle;
use broker_auth::shared_store::{
    self, POLICY_LIVE, PolicyVersionRecord, RevocationRecord, SIGNING_KEYS, SigningKeyRecord,
};
use broker_auth::token::{KeySet, Verifier};
use broker_auth_runtime::{LiveAuth, Runtime, SystemClock};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::config::StoreNatsArgs;
use crate::error::CalloutError;
use crate::service::Stats;

/// How long start-up waits for the store's keys and live policy.
const FIRST_READ: Duration = Duration::from_secs(10);
/// How long one freshness check may wait for the stream's info.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failed watch or consumer waits before it starts again.
const RETRY: Duration = Duration::from_secs(1);

/// The store's handles.
pub struct StoreFeed {
    url: String,
    client: async_nats::Client,
    state: kv::Store,
    revocations: stream::Stream,
}

impl std::fmt::Debug for StoreFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFeed")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What the feed put in force, and the tasks that keep it current.
pub struct Following {
    pub runtime: Runtime,
    pub tasks: Vec<JoinHandle<()>>,
}

fn store_error(url: &str, what: impl std::fmt::Display) -> CalloutError {
    CalloutError::Store {
        url: url.to_owned(),
        what: what.to_string(),
    }
}

impl StoreFeed {
    /// Connect and find the bucket and the stream a sidecar made. Unreachable, or no store
    /// under this prefix, is an error now (a callout that cannot follow must not start).
    pub async fn connect(args: &StoreNatsArgs) -> Result<StoreFeed, CalloutError> {
        let client = args.connect("broker-auth-callout-store").await?;
        let url = args.url.clone().unwrap_or_default();
        let js = jetstream::new(client.clone());
        let bucket = shared_store::state_bucket(&args.prefix);
        let state = js.get_key_value(&bucket).await.map_err(|e| {
            store_error(
                &url,
                format!("bucket {bucket} ({e}): start a sidecar with --store nats and the same --store-prefix first"),
            )
        })?;
        let stream_name = shared_store::revocation_stream(&args.prefix);
        let revocations = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| store_error(&url, format!("stream {stream_name}: {e}")))?;
        Ok(StoreFeed {
            url,
            client,
            state,
            revocations,
        })
    }

    /// Read the keys and the live policy, put them in force, and follow the store from now on.
    pub async fn start(
        self,
        verifier: Verifier,
        capacity: usize,
        stale_after: i64,
        stats: Arc<Stats>,
    ) -> Result<Following, CalloutError> {
        let keys = KeyWatch::first(&self).await?;
        let (policy_watch, policy) = first_policy(&self).await?;
        let live = LiveAuth::with_feed(
            keys.set().map_err(|e| store_error(&self.url, e))?,
            verifier,
            policy,
            capacity,
            stale_after,
        );
        let runtime = Runtime::new(live.clone(), Arc::new(SystemClock));
        let applied = Arc::new(AtomicU64::new(0));
        let tasks = vec![
            tokio::spawn(keys.follow(self.state.clone(), live.clone())),
            tokio::spawn(follow_policy(
                self.state.clone(),
                policy_watch,
                live.clone(),
            )),
            tokio::spawn(follow_revocations(
                self.client.clone(),
                self.revocations.clone(),
                live,
                applied.clone(),
            )),
            tokio::spawn(check_caught_up(
                self.revocations,
                runtime.clone(),
                applied,
                stats,
            )),
        ];
        Ok(Following { runtime, tasks })
    }
}

/// The signing-key records seen so far, by KV key.
struct KeyWatch {
    watch: kv::Watch,
    records: BTreeMap<String, SigningKeyRecord>,
}

impl KeyWatch {
    /// Every current record (the watch's history), then the watch goes on.
    async fn first(feed: &StoreFeed) -> Result<KeyWatch, CalloutError> {
        let mut kw = KeyWatch::open(&feed.state)
            .await
            .map_err(|e| store_error(&feed.url, e))?;
        let caught_up = tokio::time::timeout(FIRST_READ, kw.until_current()).await;
        match caught_up {
            Ok(Ok(())) => Ok(kw),
            Ok(Err(e)) => Err(store_error(&feed.url, e)),
            Err(_) => Err(store_error(
                &feed.url,
                "no signing keys in the store: start a sidecar with --store nats first",
            )),
        }
    }

    async fn open(state: &kv::Store) -> Result<KeyWatch, String> {
        let watch = state
            .watch_with_history(SIGNING_KEYS)
            .await
            .map_err(|e| format!("watch of the signing keys: {e}"))?;
        Ok(KeyWatch {
            watch,
            records: BTreeMap::new(),
        })
    }

    /// Apply entries up to the newest one the store had.
    async fn until_current(&mut self) -> Result<(), String> {
        while let Some(entry) = self.watch.next().await {
            let entry = entry.map_err(|e| format!("watch of the signing keys: {e}"))?;
            let current = entry.delta == 0;
            self.apply(entry)?;
            if current {
                return Ok(());
            }
        }
        Err("watch of the signing keys ended".into())
    }

    fn apply(&mut self, entry: kv::Entry) -> Result<(), String> {
        match entry.operation {
            kv::Operation::Put => {
                let rec: SigningKeyRecord = shared_store::decode(&entry.value)
                    .map_err(|e| format!("signing key {}: {e}", entry.key))?;
                self.records.insert(entry.key, rec);
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.records.remove(&entry.key);
            }
        }
        Ok(())
    }

    fn set(&self) -> Result<KeySet, String> {
        key_set(self.records.values())
    }

    /// Put every change in force once the watch is current; restart the watch when it fails.
    async fn follow(mut self, state: kv::Store, live: LiveAuth) {
        loop {
            match self.until_current().await {
                Ok(()) => match self.set() {
                    Ok(keys) => {
                        tracing::info!(keys = self.records.len(), "signing keys from the store");
                        live.set_keys(keys);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "signing keys not usable; keeping the current ones")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "signing-key watch restarting");
                    tokio::time::sleep(RETRY).await;
                    match KeyWatch::open(&state).await {
                        Ok(kw) => self = kw,
                        Err(e) => tracing::warn!(error = %e, "signing-key watch not restarted"),
                    }
                }
            }
        }
    }
}

/// The verify-only key set of `records`: each one's public JWK, which must name its own kid.
pub fn key_set<'a>(records: impl Iterator<Item = &'a SigningKeyRecord>) -> Result<KeySet, String> {
    let mut jwks = Vec::new();
    for r in records {
        let jwk = r.public_jwk.as_ref().ok_or_else(|| {
            format!(
                "signing key {} has no public half in the store (written by an older sidecar; \
                 starting a sidecar of this version records it)",
                r.kid
            )
        })?;
        if jwk.get("kid").and_then(|k| k.as_str()) != Some(r.kid.as_str()) {
            return Err(format!(
                "signing key {}: its public JWK names another kid",
                r.kid
            ));
        }
        jwks.push(jwk.clone());
    }
    KeySet::from_jwks(&serde_json::json!({ "keys": jwks })).map_err(|e| e.to_string())
}

/// The live policy version, compiled; the watch that follows it.
async fn first_policy(feed: &StoreFeed) -> Result<(kv::Watch, PolicySet), CalloutError> {
    let mut watch = feed
        .state
        .watch_with_history(POLICY_LIVE)
        .await
        .map_err(|e| store_error(&feed.url, format!("watch of the live policy: {e}")))?;
    let first = tokio::time::timeout(FIRST_READ, watch.next()).await;
    let entry = match first {
        Ok(Some(Ok(e))) if e.operation == kv::Operation::Put => e,
        Ok(Some(Err(e))) => return Err(store_error(&feed.url, e)),
        _ => {
            return Err(store_error(
                &feed.url,
                "no live policy in the store: start a sidecar with --store nats first",
            ));
        }
    };
    let set = compiled(&entry.value).map_err(|e| store_error(&feed.url, e))?;
    Ok((watch, set))
}

/// A stored live-policy record as a served set: decoded, rebuilt as a bundle and compiled.
fn compiled(bytes: &[u8]) -> Result<PolicySet, String> {
    let rec: PolicyVersionRecord =
        shared_store::decode(bytes).map_err(|e| format!("live policy record: {e}"))?;
    let bundle =
        Bundle::new(rec.files).map_err(|e| format!("policy version {}: {e}", rec.version))?;
    let set = PolicySet::from_bundle(&bundle)
        .map_err(|e| format!("policy version {}: {e}", rec.version))?;
    for w in set.warnings() {
        tracing::warn!(warning = %w, version = rec.version, "policy");
    }
    Ok(set.with_version(rec.version))
}

async fn follow_policy(state: kv::Store, mut watch: kv::Watch, live: LiveAuth) {
    loop {
        while let Some(entry) = watch.next().await {
            let entry = match entry {
                Ok(e) if e.operation == kv::Operation::Put => e,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "live-policy watch failed; restarting it");
                    break;
                }
            };
            let t0 = std::time::Instant::now();
            let set = tokio::task::spawn_blocking(move || compiled(&entry.value)).await;
            match set {
                Ok(Ok(set)) if set.version() != live.policy().version() => {
                    tracing::info!(
                        version = set.version().unwrap_or(0),
                        compile_ms = t0.elapsed().as_millis(),
                        "policy version from the store"
                    );
                    live.set_policy(set);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the previous policy keeps serving"),
                Err(e) => tracing::error!(error = %e, "policy compilation did not finish"),
            }
        }
        tokio::time::sleep(RETRY).await;
        match state.watch_with_history(POLICY_LIVE).await {
            Ok(w) => watch = w,
            Err(e) => tracing::warn!(error = %e, "live-policy watch not restarted"),
        }
    }
}

/// Apply the stream in order from the entry after `applied`, forever; on any failure start
/// again from there.
async fn follow_revocations(
    client: async_nats::Client,
    stream: stream::Stream,
    live: LiveAuth,
    applied: Arc<AtomicU64>,
) {
    let mut stuck_at = None;
    loop {
        let from = applied.load(Ordering::Acquire) + 1;
        let consumer = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "revocation stream not followed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(Ok(m)) = messages.next().await {
            let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
                break;
            };
            let done = shared_store::decode::<RevocationRecord>(&m.payload)
                .map_err(|e| e.to_string())
                .and_then(|r| live.apply_revocation(&r).map_err(|e| e.to_string()));
            match done {
                Ok(()) => applied.store(seq, Ordering::Release),
                Err(e) => {
                    // Skipping it could admit a revoked device: stay here (and go stale).
                    if stuck_at.replace(seq) != Some(seq) {
                        tracing::error!(error = %e, seq, "revocation entry unreadable; not applying later ones until it is");
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether the consumer has applied everything the stream held one check ago.
pub fn caught_up(applied: u64, last_before: Option<u64>, last_now: u64) -> bool {
    applied >= last_before.unwrap_or(last_now).min(last_now)
}

/// Every second: is the callout caught up with the stream? Say when that changes.
async fn check_caught_up(
    mut stream: stream::Stream,
    runtime: Runtime,
    applied: Arc<AtomicU64>,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut before, mut failing) = (None, false);
    loop {
        tick.tick().await;
        // Bounded: a JetStream that does not answer is a failed check, not a stalled loop.
        let info = tokio::time::timeout(CHECK_TIMEOUT, stream.info()).await;
        let last = match info
            .map_err(|_| "no answer".to_owned())
            .and_then(|r| r.map(|i| i.state.last_sequence).map_err(|e| e.to_string()))
        {
            Ok(last) => last,
            Err(e) => {
                stats.feed_failures.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!(error = %e, "revocation stream unreadable; connects are refused once it has been for --revocations-stale-after");
                }
                continue;
            }
        };
        if caught_up(applied.load(Ordering::Acquire), before, last) {
            runtime.live.feed_ok(runtime.now());
            if std::mem::take(&mut failing) {
                tracing::info!("revocation stream followed again; connects are decided again");
            }
        } else {
            failing = true;
        }
        before = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_means_everything_the_stream_held_a_check_ago() {
        assert!(caught_up(0, None, 0), "an empty stream");
        assert!(!caught_up(3, None, 5), "the first check wants all of it");
        assert!(caught_up(5, None, 5));
        assert!(
            caught_up(5, Some(5), 9),
            "new entries since the last check are not late yet"
        );
        assert!(
            !caught_up(4, Some(5), 9),
            "one the stream held a check ago is missing"
        );
        assert!(caught_up(2, Some(5), 2), "a stream that shrank (recreated)");
    }

    #[test]
    fn a_key_record_without_its_public_half_or_with_another_kid_is_refused() {
        let rec = |kid: &str, jwk: Option<serde_json::Value>| SigningKeyRecord {
            kid: kid.into(),
            alg: broker_auth::token::TokenAlg::EdDSA,
            created_at: 1,
            retired_at: None,
            nonce: String::new(),
            ciphertext: String::new(),
            public_jwk: jwk,
        };
        let key = broker_auth::token::TokenKey::generate(
            broker_auth::token::TokenAlg::EdDSA,
            &mut rand_core::OsRng,
        )
        .unwrap();
        let jwk = key.public_jwk().cloned();
        let good = rec(key.kid(), jwk.clone());
        assert!(key_set([&good].into_iter()).is_ok());
        let old = rec(key.kid(), None);
        assert!(
            key_set([&old].into_iter())
                .unwrap_err()
                .contains("no public half")
        );
        let other = rec("another", jwk);
        assert!(
            key_set([&other].into_iter())
                .unwrap_err()
                .contains("another kid")
        );
    }
}
