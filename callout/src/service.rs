//! The NATS side: subscribe `$SYS.REQ.USER.AUTH` in a queue group (several responders share the
//! load; each request is answered once), answer with bounded concurrency, keep going across
//! nats-server restarts (async-nats reconnects and resubscribes), drain on shutdown, and cut the
//! live connections of revoked sessions with `$SYS.REQ.SERVER.<id>.KICK` (needs a system-account
//! connection; without one, revoked sessions only lose new connections and die at token expiry).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_auth::UnixTime;
use broker_auth::revocation::Revoked;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::error::CalloutError;
use crate::responder::{Outcome, Responder, Shared};

/// The subject nats-server sends authorization requests on.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub answered: AtomicU64,
    pub accepted: AtomicU64,
    pub denied: AtomicU64,
    pub unanswerable: AtomicU64,
    pub kicked: AtomicU64,
    /// Denials by reason code.
    pub denied_by_reason: broker_auth::decision::ReasonCounts,
}

impl Stats {
    fn deny(&self, reason: &'static str) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        self.denied_by_reason.add(reason);
    }

    /// Denials by reason code, sorted.
    pub fn denials(&self) -> Vec<(&'static str, u64)> {
        self.denied_by_reason.sorted()
    }
}

#[derive(Debug, Clone)]
struct Admitted {
    server_id: String,
    cid: u64,
    expires_at: UnixTime,
}

/// Connections we admitted, by session id and by principal, so a revocation can find them.
#[derive(Debug, Default)]
struct Tracker {
    by_session: HashMap<String, Vec<Admitted>>,
    by_subject: HashMap<String, Vec<Admitted>>,
}

impl Tracker {
    fn admit(&mut self, o: &Outcome) {
        let (Some(cid), Some(exp), Some(principal)) =
            (o.client_cid, o.expires_at, o.principal.as_ref())
        else {
            return;
        };
        let a = Admitted {
            server_id: o.server_id.clone(),
            cid,
            expires_at: exp,
        };
        if let Some(sid) = &o.session {
            self.by_session
                .entry(sid.clone())
                .or_default()
                .push(a.clone());
        }
        self.by_subject
            .entry(principal.clone())
            .or_default()
            .push(a);
    }

    fn take(&mut self, r: &Revoked) -> Vec<Admitted> {
        match r {
            Revoked::Session(sid) => self.by_session.remove(sid).unwrap_or_default(),
            Revoked::Subject(sub, _) => self.by_subject.remove(sub).unwrap_or_default(),
        }
    }

    fn prune(&mut self, now: UnixTime) {
        for m in [&mut self.by_session, &mut self.by_subject] {
            m.retain(|_, v| {
                v.retain(|a| a.expires_at > now);
                !v.is_empty()
            });
        }
    }
}

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    pub queue_group: String,
    pub max_in_flight: usize,
    /// How often the revocation log is checked for connections to cut.
    pub kick_interval: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            queue_group: "broker-auth-callout".into(),
            max_in_flight: 256,
            kick_interval: Duration::from_millis(250),
        }
    }
}

fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A responder whose subscription is registered at the server (flushed), ready to [`Service::run`].
pub struct Service {
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    shared: Shared,
    opts: ServiceOptions,
    stats: Arc<Stats>,
}

/// Subscribe in the queue group and make sure the server has the subscription before returning,
/// so a caller that starts clients next never races the responder.
pub async fn subscribe(
    client: async_nats::Client,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    shared: Shared,
    opts: ServiceOptions,
    stats: Arc<Stats>,
) -> Result<Service, CalloutError> {
    let sub = client
        .queue_subscribe(AUTH_SUBJECT, opts.queue_group.clone())
        .await
        .map_err(|e| CalloutError::Nats(e.to_string()))?;
    client
        .flush()
        .await
        .map_err(|e| CalloutError::Nats(e.to_string()))?;
    tracing::info!(queue_group = %opts.queue_group, issuer = %responder.issuer_public_key(), "callout responder subscribed");
    Ok(Service {
        client,
        sub,
        kicker,
        responder,
        shared,
        opts,
        stats,
    })
}

/// Make sure the server has processed everything sent so far. async-nats' `flush` only empties
/// the client's buffer; a request that nobody answers comes back as "no responders" only after the
/// server has read every earlier command on this connection, the subscription included.
pub async fn round_trip(client: &async_nats::Client) -> Result<(), CalloutError> {
    let probe = format!(
        "_BROKER_AUTH.probe.{}",
        client.new_inbox().replace('.', "_")
    );
    match tokio::time::timeout(Duration::from_secs(10), client.request(probe, "".into())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(CalloutError::Nats(e.to_string())),
        Err(_) => Err(CalloutError::Nats("no answer from the server".into())),
    }
}

/// [`subscribe`] then [`Service::run`].
pub async fn serve(
    client: async_nats::Client,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    shared: Shared,
    opts: ServiceOptions,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CalloutError> {
    subscribe(client, kicker, responder, shared, opts, stats)
        .await?
        .run(shutdown)
        .await
}

impl Service {
    /// Answer requests until `shutdown` resolves; then stop taking requests, finish the ones in
    /// flight, and flush.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), CalloutError> {
        let Service {
            client,
            mut sub,
            kicker,
            responder,
            shared,
            opts,
            stats,
        } = self;
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let limit = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
        let cutter = kicker.map(|k| {
            tokio::spawn(cut_revoked(
                k,
                shared.clone(),
                tracker.clone(),
                stats.clone(),
                opts.kick_interval,
            ))
        });
        tokio::pin!(shutdown);
        loop {
            let msg = tokio::select! {
                m = sub.next() => match m { Some(m) => m, None => break },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let (client, responder, shared, tracker, stats) = (
                client.clone(),
                responder.clone(),
                shared.clone(),
                tracker.clone(),
                stats.clone(),
            );
            tokio::spawn(async move {
                handle(&client, &responder, &shared, &tracker, &stats, msg).await;
                drop(permit);
            });
        }
        tracing::info!("callout draining");
        let _ = sub.unsubscribe().await;
        // Every permit back means every request in flight has been answered.
        let _ = limit.acquire_many(opts.max_in_flight.max(1) as u32).await;
        let _ = client.flush().await;
        if let Some(c) = cutter {
            c.abort();
        }
        Ok(())
    }
}

async fn handle(
    client: &async_nats::Client,
    responder: &Responder,
    shared: &Shared,
    tracker: &Mutex<Tracker>,
    stats: &Stats,
    msg: async_nats::Message,
) {
    let server_xkey = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Server-Xkey"))
        .map(|v| v.as_str().to_owned());
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    match responder.respond(shared, &msg.payload, server_xkey.as_deref(), now()) {
        Ok((body, outcome)) => {
            match outcome.result {
                Ok(reason) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(server = %outcome.server_id, cid = ?outcome.client_cid,
                        principal = ?outcome.principal, reason, "nats connect allowed");
                    if let Ok(mut t) = tracker.lock() {
                        t.admit(&outcome);
                    }
                }
                Err(code) => {
                    stats.deny(code.as_str());
                    tracing::info!(server = %outcome.server_id, cid = ?outcome.client_cid,
                        principal = ?outcome.principal, reason = code.as_str(), "nats connect denied");
                }
            }
            if let Err(e) = client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "could not publish the callout response");
            }
            stats.answered.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // No response at all: the server times out and refuses the client (fail closed).
            stats.unanswerable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "authorization request not answerable");
        }
    }
}

async fn cut_revoked(
    kicker: async_nats::Client,
    shared: Shared,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<Stats>,
    every: Duration,
) {
    let (_, mut seen) = shared.revocations.changes_since(u64::MAX);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let (changes, next) = shared.revocations.changes_since(seen);
        seen = next;
        let victims: Vec<Admitted> = match tracker.lock() {
            Ok(mut t) => {
                t.prune(now());
                changes.iter().flat_map(|r| t.take(r)).collect()
            }
            Err(_) => vec![],
        };
        for v in victims {
            let subject = format!("$SYS.REQ.SERVER.{}.KICK", v.server_id);
            let body = serde_json::json!({ "cid": v.cid }).to_string();
            match tokio::time::timeout(Duration::from_secs(2), kicker.request(subject, body.into()))
                .await
            {
                Ok(Ok(_)) => {
                    stats.kicked.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(server = %v.server_id, cid = v.cid, "revoked connection kicked");
                }
                other => {
                    tracing::warn!(server = %v.server_id, cid = v.cid, result = ?other.map(|r| r.map(|_| ())), "kick failed")
                }
            }
        }
    }
}
