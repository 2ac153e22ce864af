//! The NATS JetStream backend (`--store nats`): the same records as sled, in JetStream
//! key-value buckets that every sidecar and callout of a fleet shares. Nothing here replicates,
//! elects or orders anything: JetStream does (Raft inside nats-server); this file only maps the
//! store's operations onto KV `create` (uniqueness, single use), `update` with the expected
//! revision (compare-and-swap), bucket `max_age` (short-lived records) and stream sequences (the
//! revocation feed).
//!
//! Layout, with `P` the `--store-prefix`:
//! - bucket `P_state`: every long-lived record, keyed `<kind>.<id>` (`id.<identity>`,
//!   `idkey.<public key>`, `refresh.<token id>`, `policy.live`, ...);
//! - bucket `P_ephemeral` (`max_age` 15 min): login challenges, announce signatures, pending
//!   browser steps; each lives at most 10 minutes, so JetStream drops them and `prune` has nothing
//!   to do;
//! - bucket `P_codes` (`max_age` 2 days): authorization codes, kept a day past their expiry so a
//!   late replay still finds the code and revokes what it issued;
//! - stream `P_revocations` (subject `P.revocations`): the revocation feed; its sequence numbers
//!   are the feed's.
//!
//! The store API is synchronous (sled answers from memory). This backend runs its NATS client on
//! a runtime of its own and each call waits for JetStream's answer (inside `block_in_place` on a
//! multi-threaded runtime, so the caller's other tasks move on), with a deadline: a JetStream
//! that does not answer in `--store-timeout-ms` is [`StoreError::Unavailable`] (503), never an
//! acknowledgement. Every write is acknowledged by JetStream before the call returns (with R3, a
//! majority of nodes has it), so [`Durable::flush`] has nothing left to do.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use broker_auth::shared_store;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{Durable, StoreError, StoreFuture, StoreResult};
use crate::config::NatsStoreArgs;

/// Records that live at most 10 minutes (challenges 5, pending steps 10, announce signatures 3).
const EPHEMERAL_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Authorization codes: 60 s of use, then a day in which a replay still finds them.
const CODES_MAX_AGE: Duration = Duration::from_secs(2 * 86_400);

/// Which bucket a record lives in.
#[derive(Clone, Copy, Debug)]
pub(super) enum Bucket {
    State,
    Ephemeral,
    Codes,
}

/// The handles every operation uses; cheap to clone into a task.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) client: async_nats::Client,
    js: jetstream::Context,
    state: kv::Store,
    ephemeral: kv::Store,
    codes: kv::Store,
    revocations: stream::Stream,
    revocations_subject: String,
}

/// [`super::Store`] on NATS JetStream.
pub struct NatsKvStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pub(super) conn: Conn,
    timeout: Duration,
}

impl std::fmt::Debug for NatsKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKvStore").finish_non_exhaustive()
    }
}

impl Drop for NatsKvStore {
    fn drop(&mut self) {
        // Dropped from async code (the end of `serve`), where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A NATS or JetStream failure: JetStream did not do (or did not confirm) the operation.
pub(super) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// One subject token from any string: `[A-Za-z0-9_-]` as is, every other byte `=XX`, the empty
/// string `=`. Injective, so two ids never share a key, and never a `.`, `*` or `>`.
pub(super) fn token(s: &str) -> String {
    if s.is_empty() {
        return "=".into();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

impl NatsKvStore {
    /// Connect, make sure the buckets and the stream exist, and check JetStream answers. A
    /// server that cannot be reached is an error now, never a fallback to another backend.
    pub fn connect(args: &NatsStoreArgs) -> StoreResult<NatsKvStore> {
        let url = args.conn.url.clone().ok_or_else(|| StoreError::Open {
            path: "--store-nats-url".into(),
            source: "--store nats needs --store-nats-url (STORE_NATS_URL)".into(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-nats")
            .enable_all()
            .build()
            .map_err(|e| open_error(&url, e))?;
        let handle = runtime.handle().clone();
        let timeout = Duration::from_millis(args.timeout_ms.max(100));
        let args = args.clone();
        let u = url.clone();
        let opened = run_on(&handle, timeout * 4, async move { open(&args, &u).await });
        let conn = match opened.and_then(|r| r) {
            Ok(conn) => conn,
            Err(e) => {
                // Possibly inside async code (`serve`), where a blocking runtime drop panics.
                runtime.shutdown_background();
                return Err(match e {
                    e @ StoreError::Open { .. } => e,
                    e => open_error(&url, e),
                });
            }
        };
        Ok(NatsKvStore {
            runtime: Some(runtime),
            handle,
            conn,
            timeout,
        })
    }

    /// Run `f` on the store's runtime and wait for it, at most the store timeout.
    pub(super) fn run<T, F>(&self, f: impl FnOnce(Conn) -> F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Future<Output = StoreResult<T>> + Send + 'static,
    {
        run_on(&self.handle, self.timeout, f(self.conn.clone()))?
    }

    /// Run `fut` in the background on the store's runtime (its change feeds).
    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(fut);
    }
}

fn open_error(url: &str, e: impl Into<super::BackendError>) -> StoreError {
    StoreError::Open {
        path: format!("nats store at {url}"),
        source: e.into(),
    }
}

/// Spawn `fut` on `handle` and block this thread until it ends or `timeout` passes.
fn run_on<T, F>(handle: &tokio::runtime::Handle, timeout: Duration, fut: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(tokio::time::timeout(timeout, fut).await);
    });
    let wait = move || rx.recv();
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let got = if on_worker {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    };
    match got {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_elapsed)) => Err(StoreError::Unavailable(
            format!("JetStream did not answer within {} ms", timeout.as_millis()).into(),
        )),
        Err(_) => Err(StoreError::Unavailable(
            "the store's runtime stopped".into(),
        )),
    }
}

async fn connect_client(args: &NatsStoreArgs, url: &str) -> StoreResult<async_nats::Client> {
    args.conn
        .connect("broker-auth store")
        .await
        .map_err(|e| open_error(url, e))
}

async fn open(args: &NatsStoreArgs, url: &str) -> StoreResult<Conn> {
    let client = connect_client(args, url).await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_millis(args.timeout_ms.max(100)));
    let p = &args.conn.prefix;
    let replicas = usize::from(args.replicas);
    let bucket = |name: String, max_age: Duration, history: i64| kv::Config {
        bucket: name,
        history,
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let state = ensure_bucket(
        &js,
        bucket(shared_store::state_bucket(p), Duration::ZERO, 5),
    )
    .await?;
    let ephemeral = ensure_bucket(&js, bucket(format!("{p}_ephemeral"), EPHEMERAL_MAX_AGE, 1));
    let codes = ensure_bucket(&js, bucket(format!("{p}_codes"), CODES_MAX_AGE, 1));
    let (ephemeral, codes) = (ephemeral.await?, codes.await?);
    let revocations_subject = shared_store::revocation_subject(p);
    let revocations = js
        .get_or_create_stream(stream::Config {
            name: shared_store::revocation_stream(p),
            subjects: vec![revocations_subject.clone()],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| open_error(url, e))?;
    Ok(Conn {
        client,
        js,
        state,
        ephemeral,
        codes,
        revocations,
        revocations_subject,
    })
}

/// The bucket, created with `config` when it does not exist yet (two sidecars starting at once
/// both succeed: creating an identical bucket is idempotent).
async fn ensure_bucket(js: &jetstream::Context, config: kv::Config) -> StoreResult<kv::Store> {
    let kv = match js.get_key_value(config.bucket.clone()).await {
        Ok(kv) => kv,
        Err(_) => match js.create_key_value(config.clone()).await {
            Ok(kv) => kv,
            // Another process may have created it between our two calls.
            Err(create) => js
                .get_key_value(config.bucket.clone())
                .await
                .map_err(|_| open_error(&config.bucket, create))?,
        },
    };
    read_your_writes(js, kv).await
}

/// The bucket with direct gets off. A direct get may be answered by a replica that has not
/// applied the newest write yet, so on R3 a challenge just created was sometimes not found
/// when it was answered (and a refresh token just rotated read as reused, which revokes its
/// family): about 10 % of key logins in the store benchmark. Without direct gets, reads go to
/// the stream leader, which answers with every acknowledged write.
async fn read_your_writes(js: &jetstream::Context, kv: kv::Store) -> StoreResult<kv::Store> {
    let mut cfg = kv.stream.cached_info().config.clone();
    if !cfg.allow_direct {
        return Ok(kv);
    }
    cfg.allow_direct = false;
    js.update_stream(&cfg)
        .await
        .map_err(|e| open_error(&kv.name, e))?;
    js.get_key_value(kv.name.clone())
        .await
        .map_err(|e| open_error(&kv.name, e))
}

impl Conn {
    pub(super) fn state(&self) -> &kv::Store {
        &self.state
    }

    pub(super) fn revocation_stream(&self) -> &stream::Stream {
        &self.revocations
    }

    fn kv(&self, b: Bucket) -> &kv::Store {
        match b {
            Bucket::State => &self.state,
            Bucket::Ephemeral => &self.ephemeral,
            Bucket::Codes => &self.codes,
        }
    }

    /// The live value of `key` and its revision; a deleted key is absent.
    pub(super) async fn get(&self, b: Bucket, key: &str) -> StoreResult<Option<(u64, Bytes)>> {
        let entry = self.kv(b).entry(key).await.map_err(unavailable)?;
        Ok(entry.and_then(|e| match e.operation {
            kv::Operation::Put => Some((e.revision, e.value)),
            kv::Operation::Delete | kv::Operation::Purge => None,
        }))
    }

    /// The live value of `key`, its revision and when it was written (Unix seconds).
    pub(super) async fn get_dated(
        &self,
        b: Bucket,
        key: &str,
    ) -> StoreResult<Option<(u64, Bytes, i64)>> {
        let entry = self.kv(b).entry(key).await.map_err(unavailable)?;
        Ok(entry.and_then(|e| match e.operation {
            kv::Operation::Put => Some((e.revision, e.value, e.created.unix_timestamp())),
            kv::Operation::Delete | kv::Operation::Purge => None,
        }))
    }

    pub(super) async fn put(&self, b: Bucket, key: &str, value: Vec<u8>) -> StoreResult<u64> {
        self.kv(b).put(key, value.into()).await.map_err(unavailable)
    }

    /// Write `key` only if it has no live value: `false` when it has one.
    pub(super) async fn create(&self, b: Bucket, key: &str, value: Vec<u8>) -> StoreResult<bool> {
        match self.kv(b).create(key, value.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Write `key` only if its revision is still `revision`: `false` when someone wrote first.
    pub(super) async fn update(
        &self,
        b: Bucket,
        key: &str,
        value: Vec<u8>,
        revision: u64,
    ) -> StoreResult<bool> {
        match self.kv(b).update(key, value.into(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Delete `key` if its revision is still `revision`: `false` when someone wrote first.
    pub(super) async fn delete(&self, b: Bucket, key: &str, revision: u64) -> StoreResult<bool> {
        match self.kv(b).delete_expect_revision(key, Some(revision)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Every live value under `filter` (`kind.*`, `kind.a.*`): an ordered consumer delivering the
    /// last message of each key, read until none is pending.
    pub(super) async fn scan(&self, b: Bucket, filter: &str) -> StoreResult<Vec<(String, Bytes)>> {
        let kv = self.kv(b);
        let subject = format!("{}{filter}", kv.prefix);
        let consumer = kv
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(unavailable)?;
            let pending = m
                .info()
                .map_err(|e| unavailable(std::io::Error::other(e.to_string())))?
                .pending;
            let deleted = m
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() != "PUT");
            if !deleted {
                let key = m
                    .subject
                    .as_str()
                    .strip_prefix(kv.prefix.as_str())
                    .unwrap_or("");
                out.push((key.to_owned(), m.payload.clone()));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Append to the revocation feed; the stream's sequence number is the entry's.
    pub(super) async fn append_revocation(&self, value: Vec<u8>) -> StoreResult<u64> {
        let ack = self
            .js
            .publish(self.revocations_subject.clone(), value.into())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(ack.sequence)
    }

    /// Up to `limit` feed entries after `since`, in order.
    pub(super) async fn revocations_since(
        &self,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>> {
        let consumer = self
            .revocations
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: since.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 || limit == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(unavailable)?;
            let info = m
                .info()
                .map_err(|e| unavailable(std::io::Error::other(e.to_string())))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            out.push((seq, m.payload.clone()));
            if pending == 0 || out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl Durable for NatsKvStore {
    fn flush(&self) -> StoreFuture<'_, ()> {
        // Every write was acknowledged by JetStream before its call returned.
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn a_key_token_is_one_subject_token_and_never_shared_by_two_ids() {
        // Ids as an API caller may send them: subject syntax, the escape itself, empty, unicode.
        let ids = [
            "a.b", "a=2Eb", "a=b", "*", ">", "a b", "", "=", "é", "\u{0}", "a_b-C9", "a..b",
        ];
        let tokens: Vec<String> = ids.iter().map(|i| token(i)).collect();
        for (id, t) in ids.iter().zip(&tokens) {
            assert!(!t.is_empty(), "{id:?}");
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='),
                "{id:?} → {t:?} is not one plain subject token"
            );
        }
        let distinct: std::collections::BTreeSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{tokens:?}");
        assert_eq!(token("a_b-C9"), "a_b-C9", "plain ids stay readable");
    }
}
