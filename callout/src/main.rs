//! `callout`: the standalone responder (split deployments). Keys and revocations come from the
//! sidecar (`--sidecar-url`): its JWKS, refreshed every minute, and its revocation feed, polled
//! every second.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use broker_auth::policy::SharedPolicy;
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{KeySet, TokenConfig, Verifier};
use callout::config::CalloutArgs;
use callout::service::{ServiceOptions, Stats, serve};
use callout::{CalloutError, Shared};
use clap::Parser;

#[derive(Parser)]
#[command(name = "callout", version, about = "NATS auth-callout responder")]
struct Cli {
    #[command(flatten)]
    args: CalloutArgs,
}

async fn fetch_jwks(base: &str) -> Result<KeySet, CalloutError> {
    let doc: serde_json::Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| CalloutError::Config(format!("sidecar JWKS: {e}")))?
        .json()
        .await
        .map_err(|e| CalloutError::Config(format!("sidecar JWKS: {e}")))?;
    KeySet::from_jwks(&doc).map_err(|e| CalloutError::Config(e.to_string()))
}

async fn follow_sidecar(base: String, token: Option<String>, shared: Shared) {
    let client = reqwest::Client::new();
    let mut since = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        if n.is_multiple_of(60) {
            match fetch_jwks(&base).await {
                Ok(k) => shared.keys.store(Arc::new(k)),
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the current keys")
                }
            }
        }
        let Some(token) = &token else { continue };
        let res = client
            .get(format!("{base}/v1/revocations?since={since}"))
            .bearer_auth(token)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let Ok(res) = res else { continue };
        let Ok(feed) = res.json::<serde_json::Value>().await else {
            continue;
        };
        for e in feed["revocations"].as_array().into_iter().flatten() {
            let (Some(id), Some(at), Some(until)) =
                (e["id"].as_str(), e["at"].as_i64(), e["until"].as_i64())
            else {
                continue;
            };
            match e["kind"].as_str() {
                Some("session") => shared.revocations.revoke_session(id, until),
                Some("subject") => shared.revocations.revoke_subject(id, at, until),
                _ => {}
            }
        }
        since = feed["next"].as_u64().unwrap_or(since);
    }
}

async fn run(args: CalloutArgs) -> Result<(), CalloutError> {
    let responder = Arc::new(args.responder()?);
    let policy = broker_auth_runtime::policy_dir::load_dir(&args.policies)
        .map_err(|e| CalloutError::Policy(e.to_string()))?;
    let base = args.sidecar_url.clone().ok_or_else(|| {
        CalloutError::Config(
            "the standalone callout needs --sidecar-url (JWKS and revocations)".into(),
        )
    })?;
    let shared = Shared {
        token_cache: std::sync::Arc::new(broker_auth::token::VerifyCache::new(100_000)),
        keys: Arc::new(ArcSwap::from_pointee(fetch_jwks(&base).await?)),
        verifier: Arc::new(Verifier::new(TokenConfig::new(
            args.token_issuer.clone(),
            args.token_audience.clone(),
        ))),
        revocations: Arc::new(RevocationSet::new()),
        policy: Arc::new(SharedPolicy::new(policy)),
    };
    tokio::spawn(follow_sidecar(
        base,
        args.sidecar_token.as_ref().map(|s| s.expose().to_owned()),
        shared.clone(),
    ));
    let client = args.connect().await?;
    let kicker = args.connect_kicker().await?;
    let opts = ServiceOptions {
        queue_group: args.queue_group.clone(),
        max_in_flight: args.max_in_flight,
        ..Default::default()
    };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    serve(
        client,
        kicker,
        responder,
        shared,
        opts,
        Arc::new(Stats::default()),
        shutdown,
    )
    .await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
