//! The standalone responder (split deployments): everything the in-process one gets from the
//! sidecar's memory comes from outside instead, and it refuses to run blind. Two sources
//! (`--store`):
//!
//! `sidecar` (default), the sidecar's HTTP feeds:
//! - Keys: the sidecar's JWKS at start-up (no JWKS, no start) and every minute after.
//! - Revocations and identity changes: the sidecar's feed, polled every second with an admin
//!   API key. Without the key it does not start: a callout that cannot hear revocations would
//!   admit a deregistered device for as long as its token lives. A poll that fails is logged and
//!   counted; after `--revocations-stale-after` seconds without a good one, every connect is
//!   refused (`revocations_stale`) until the feed answers again.
//! - Policy: `--policies`, followed on disk as the sidecar follows its own.
//!
//! `nats`, the sidecars' shared store followed directly ([`crate::store_feed`]): keys,
//! revocations and the live policy version, each within a second of a sidecar writing it.

use std::sync::Arc;
use std::time::Duration;

use broker_auth::token::{KeySet, TokenConfig, Verifier};
use broker_auth_runtime::{LiveAuth, Runtime, SystemClock};

use crate::config::{CalloutArgs, Source};
use crate::error::CalloutError;
use crate::feed::{FeedClient, apply};
use crate::service::{ServiceOptions, Stats, serve};
use crate::store_feed::{Following, StoreFeed};

/// Verification cache size of a standalone responder.
const TOKEN_CACHE: usize = 100_000;

/// Everything the standalone responder needs from its flags, checked before anything connects.
struct Plan {
    feed: FeedClient,
    verifier: Verifier,
}

fn plan(args: &CalloutArgs) -> Result<Plan, CalloutError> {
    let base = args.sidecar_url.clone().ok_or_else(|| {
        CalloutError::Config(
            "the standalone callout needs --sidecar-url (JWKS and revocations)".into(),
        )
    })?;
    let token = args.sidecar_token()?.ok_or_else(|| {
        CalloutError::Config(
            "the standalone callout needs --sidecar-token or --sidecar-token-file (an admin API \
             key) to follow \
             revocations; without it a revoked device would keep connecting"
                .into(),
        )
    })?;
    Ok(Plan {
        feed: FeedClient::new(base, token.expose().to_owned()),
        verifier: Verifier::new(TokenConfig::new(
            args.token_issuer.clone(),
            args.token_audience.clone(),
        )),
    })
}

/// Run until SIGTERM or Ctrl-C.
pub async fn run(args: CalloutArgs) -> Result<(), CalloutError> {
    let responder = Arc::new(args.responder()?);
    let stats = Arc::new(Stats::default());
    let Following { runtime, mut tasks } = match args.store {
        Source::Sidecar => from_sidecar(&args, stats.clone()).await?,
        Source::Nats => {
            let verifier = Verifier::new(TokenConfig::new(
                args.token_issuer.clone(),
                args.token_audience.clone(),
            ));
            StoreFeed::connect(&args.store_nats)
                .await?
                .start(
                    verifier,
                    TOKEN_CACHE,
                    args.revocations_stale_after,
                    stats.clone(),
                )
                .await?
        }
    };
    tasks.push(runtime.spawn_enforcement());
    let client = args.connect().await?;
    let kicker = args.connect_kicker().await?;
    let opts = ServiceOptions {
        queue_group: args.queue_group.clone(),
        max_in_flight: args.max_in_flight,
    };
    let result = serve(
        client,
        kicker,
        responder,
        runtime,
        opts,
        stats,
        terminated(),
    )
    .await;
    for t in tasks {
        t.abort();
    }
    result
}

/// The sidecar's feeds: its JWKS now, its revocation feed polled, `--policies` followed.
async fn from_sidecar(args: &CalloutArgs, stats: Arc<Stats>) -> Result<Following, CalloutError> {
    let Plan { feed, verifier } = plan(args)?;
    // Through the deploy gate, as every later edit of the directory: a bundle whose tests fail
    // is not served.
    let policy = broker_auth_runtime::policy_dir::load_gated(&args.policies)?.set;
    let keys: KeySet = feed.jwks().await?;
    let live = LiveAuth::with_feed(
        keys,
        verifier,
        policy,
        TOKEN_CACHE,
        args.revocations_stale_after,
    );
    let runtime = Runtime::new(live.clone(), Arc::new(SystemClock));
    // The first poll before the first connect: a sidecar that is down now refuses them now.
    let mut cursor = 0;
    match feed.revocations(cursor).await {
        Ok(page) => cursor = apply(&live, page, runtime.now()),
        Err(e) => {
            tracing::error!(error = %e, "revocation feed unreachable; connects are refused until it answers")
        }
    }
    let tasks = vec![
        tokio::spawn(follow(feed, runtime.clone(), cursor, stats)),
        tokio::spawn(broker_auth_runtime::policy_dir::follow(
            args.policies.clone(),
            Duration::from_millis(500),
            move |bundle| broker_auth_runtime::policy_dir::serve_if_valid(&live, bundle),
        )),
    ];
    Ok(Following { runtime, tasks })
}

/// Poll the feed every second and the JWKS every minute; say when the feed fails and recovers.
async fn follow(feed: FeedClient, runtime: Runtime, mut cursor: u64, stats: Arc<Stats>) {
    let live = &runtime.live;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut failing, mut blind) = (false, false);
    for n in 1u64.. {
        tick.tick().await;
        if n.is_multiple_of(60) {
            match feed.jwks().await {
                Ok(k) => live.set_keys(k),
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the current keys")
                }
            }
        }
        match feed.revocations(cursor).await {
            Ok(page) => {
                cursor = apply(live, page, runtime.now());
                if std::mem::take(&mut failing) {
                    tracing::info!("revocation feed answering again; connects are decided again");
                }
                blind = false;
            }
            Err(e) => {
                stats
                    .feed_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!(error = %e, "revocation feed poll failed");
                } else {
                    tracing::debug!(error = %e, "revocation feed poll failed again");
                }
                if live.is_blind(runtime.now()) && !std::mem::replace(&mut blind, true) {
                    tracing::error!(
                        "revocations stale: refusing every connect until the feed answers"
                    );
                }
            }
        }
    }
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
