//! The NATS side: subscribe `$SYS.REQ.USER.AUTH` in a queue group (several responders share the
//! load; each request is answered once), answer with bounded concurrency, keep going across
//! nats-server restarts (async-nats reconnects and resubscribes), and drain on shutdown.
//!
//! Admitted connections join the process's enforcement runtime, which ends them by the one rule
//! (expiry, revocation, narrowed grants); ending a NATS connection is a
//! `$SYS.REQ.SERVER.<id>.KICK` on a system-account connection. That connection also follows
//! `$SYS.ACCOUNT.*.DISCONNECT`, so connections that went away by themselves leave the registry.
//! Without it (no `--kick-user`), live NATS connections cannot be cut: they lose only new
//! connects, and die when their user JWT expires; the start-up log says so.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_auth::enforce::{ConnId, EndReason, LiveConn};
use broker_auth_runtime::{Ender, Runtime};
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc};

use crate::error::CalloutError;
use crate::responder::{Outcome, Responder};

/// The subject nats-server sends authorization requests on.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";

/// Where servers announce that a client went away (system account).
const DISCONNECT_EVENTS: &str = "$SYS.ACCOUNT.*.DISCONNECT";

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub answered: AtomicU64,
    pub accepted: AtomicU64,
    pub denied: AtomicU64,
    pub unanswerable: AtomicU64,
    pub kicked: AtomicU64,
    pub kick_failed: AtomicU64,
    /// Failed polls of the revocation feed (standalone).
    pub feed_failures: AtomicU64,
    /// Denials by reason code.
    pub denied_by_reason: broker_auth::decision::ReasonCounts,
    /// Live connections ended, by reason.
    pub ended_by_reason: broker_auth::decision::ReasonCounts,
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

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    pub queue_group: String,
    pub max_in_flight: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            queue_group: "broker-auth-callout".into(),
            max_in_flight: 256,
        }
    }
}

/// A server's client, as kicks and disconnect events name it.
type ClientKey = (String, u64);

/// The NATS connections this responder admitted, by server and client id.
#[derive(Default)]
struct Admitted(Mutex<HashMap<ClientKey, ConnId>>);

impl Admitted {
    fn insert(&self, k: ClientKey, id: ConnId) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(k, id);
        }
    }
    fn remove(&self, k: &ClientKey) -> Option<ConnId> {
        self.0.lock().ok()?.remove(k)
    }
}

/// Ends one admitted NATS connection: queues its kick.
struct Kick {
    client: ClientKey,
    admitted: Arc<Admitted>,
    kicks: mpsc::UnboundedSender<(ClientKey, EndReason)>,
}

impl Ender for Kick {
    fn end(&self, _conn: &LiveConn, reason: EndReason) {
        self.admitted.remove(&self.client);
        let _ = self.kicks.send((self.client.clone(), reason));
    }
}

/// A responder whose subscription is registered at the server (flushed), ready to [`Service::run`].
pub struct Service {
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    runtime: Runtime,
    opts: ServiceOptions,
    stats: Arc<Stats>,
}

/// Subscribe in the queue group and make sure the server has the subscription before returning,
/// so a caller that starts clients next never races the responder.
pub async fn subscribe(
    client: async_nats::Client,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    runtime: Runtime,
    opts: ServiceOptions,
    stats: Arc<Stats>,
) -> Result<Service, CalloutError> {
    let sub = client
        .queue_subscribe(AUTH_SUBJECT, opts.queue_group.clone())
        .await
        .map_err(CalloutError::nats("subscribe to authorization requests"))?;
    client
        .flush()
        .await
        .map_err(CalloutError::nats("flush the subscription"))?;
    tracing::info!(queue_group = %opts.queue_group, issuer = %responder.issuer_public_key(), "callout responder subscribed");
    if kicker.is_none() {
        tracing::warn!(
            "no system-account connection (--kick-user): live NATS connections are not cut on \
             revocation or policy change, only refused at their next connect"
        );
    }
    Ok(Service {
        client,
        sub,
        kicker,
        responder,
        runtime,
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
        Ok(Err(e)) => Err(CalloutError::nats("probe the server")(e)),
        Err(_) => Err(CalloutError::NoAnswer),
    }
}

/// [`subscribe`] then [`Service::run`].
pub async fn serve(
    client: async_nats::Client,
    kicker: Option<async_nats::Client>,
    responder: Arc<Responder>,
    runtime: Runtime,
    opts: ServiceOptions,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CalloutError> {
    subscribe(client, kicker, responder, runtime, opts, stats)
        .await?
        .run(shutdown)
        .await
}

/// What a request handler needs.
struct Ctx {
    client: async_nats::Client,
    responder: Arc<Responder>,
    runtime: Runtime,
    stats: Arc<Stats>,
    admitted: Arc<Admitted>,
    /// Where enders queue kicks; `None` when there is no system-account connection.
    kicks: Option<mpsc::UnboundedSender<(ClientKey, EndReason)>>,
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
            runtime,
            opts,
            stats,
        } = self;
        let admitted = Arc::new(Admitted::default());
        let mut helpers = Vec::new();
        let kicks = match kicker {
            Some(k) => {
                let (tx, rx) = mpsc::unbounded_channel();
                helpers.push(tokio::spawn(kick(k.clone(), rx, stats.clone())));
                helpers.push(tokio::spawn(follow_disconnects(
                    k,
                    admitted.clone(),
                    runtime.clone(),
                )));
                Some(tx)
            }
            None => None,
        };
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            responder,
            runtime,
            stats,
            admitted,
            kicks,
        });
        let limit = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
        tokio::pin!(shutdown);
        loop {
            let msg = tokio::select! {
                m = sub.next() => match m { Some(m) => m, None => break },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                handle(&ctx, msg).await;
                drop(permit);
            });
        }
        tracing::info!("callout draining");
        let _ = sub.unsubscribe().await;
        // Every permit back means every request in flight has been answered.
        let _ = limit.acquire_many(opts.max_in_flight.max(1) as u32).await;
        let _ = client.flush().await;
        for h in helpers {
            h.abort();
        }
        Ok(())
    }
}

async fn handle(ctx: &Ctx, msg: async_nats::Message) {
    let server_xkey = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Server-Xkey"))
        .map(|v| v.as_str().to_owned());
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let now = ctx.runtime.now();
    let live = &ctx.runtime.live;
    match ctx
        .responder
        .respond(live, &msg.payload, server_xkey.as_deref(), now)
    {
        Ok((body, outcome)) => {
            record(ctx, &outcome);
            if let Err(e) = ctx.client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "could not publish the callout response");
            }
            ctx.stats.answered.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // No response at all: the server times out and refuses the client (fail closed).
            ctx.stats.unanswerable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "authorization request not answerable");
        }
    }
}

/// Count and log one answer; admit an allowed connection to the runtime.
fn record(ctx: &Ctx, outcome: &Outcome) {
    match outcome.result {
        Ok(reason) => {
            ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(server = %outcome.server_id, cid = ?outcome.client_cid,
                principal = ?outcome.principal, reason, "nats connect allowed");
            if let (Some(conn), Some(cid), Some(kicks)) =
                (&outcome.conn, outcome.client_cid, &ctx.kicks)
            {
                let key = (outcome.server_id.clone(), cid);
                let ender = Arc::new(Kick {
                    client: key.clone(),
                    admitted: ctx.admitted.clone(),
                    kicks: kicks.clone(),
                });
                let id = ctx.runtime.enforcer.admit(conn.clone(), ender);
                ctx.admitted.insert(key, id);
            }
        }
        Err(code) => {
            ctx.stats.deny(code.as_str());
            tracing::info!(server = %outcome.server_id, cid = ?outcome.client_cid,
                principal = ?outcome.principal, reason = code.as_str(), "nats connect denied");
        }
    }
}

/// Perform queued kicks, each bounded by a timeout, without holding up the queue.
async fn kick(
    kicker: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<(ClientKey, EndReason)>,
    stats: Arc<Stats>,
) {
    while let Some(((server, cid), reason)) = queue.recv().await {
        stats.ended_by_reason.add(reason.as_str());
        let (kicker, stats) = (kicker.clone(), stats.clone());
        tokio::spawn(async move {
            let subject = format!("$SYS.REQ.SERVER.{server}.KICK");
            let body = serde_json::json!({ "cid": cid }).to_string();
            let res =
                tokio::time::timeout(Duration::from_secs(2), kicker.request(subject, body.into()))
                    .await;
            match res {
                Ok(Ok(_)) => {
                    stats.kicked.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        server,
                        cid,
                        reason = reason.as_str(),
                        "nats connection kicked"
                    );
                }
                other => {
                    stats.kick_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(server, cid, result = ?other.map(|r| r.map(|_| ())), "kick failed");
                }
            }
        });
    }
}

/// Forget admitted connections whose server reports them gone.
async fn follow_disconnects(kicker: async_nats::Client, admitted: Arc<Admitted>, runtime: Runtime) {
    let mut events = match kicker.subscribe(DISCONNECT_EVENTS).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow disconnect events; admitted NATS connections stay tracked until they expire");
            return;
        }
    };
    while let Some(m) = events.next().await {
        let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
            continue;
        };
        let (Some(server), Some(cid)) = (ev["server"]["id"].as_str(), ev["client"]["id"].as_u64())
        else {
            continue;
        };
        if let Some(id) = admitted.remove(&(server.to_owned(), cid)) {
            runtime.enforcer.forget(id);
        }
    }
}
