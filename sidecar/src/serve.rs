//! `sidecar serve`: open the store, load keys, revocations, bans and policies into memory, and
//! serve the REST API until the shutdown signal; then finish in-flight requests and flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker_auth::revocation::RevocationSet;
use broker_auth::token::{TokenConfig, Verifier};

use crate::clock::{Clock, SystemClock};
use crate::config::ServeArgs;
use crate::error::SidecarError;
use crate::keystore::{self, MasterKey};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, State};
use crate::store::{RevocationKind, RevocationStore, Store};

/// The master key from configuration, or the data directory's key file.
pub fn master_key(store_args: &crate::config::StoreArgs) -> Result<MasterKey, SidecarError> {
    match (&store_args.key_encryption_key, store_args.kind) {
        (Some(k), _) => MasterKey::from_base64(k.expose()),
        // A key file in one sidecar's directory cannot be shared with the others.
        (None, crate::config::StoreKind::Nats) => Err(SidecarError::config(
            "--store nats needs KEY_ENCRYPTION_KEY (the same on every sidecar sharing the store)",
        )),
        (None, crate::config::StoreKind::Sled) => MasterKey::load_or_create(&store_args.data_dir),
    }
}

/// The revocations still in force at `now`, from the whole feed, and the feed's last sequence.
fn load_revocations(
    store: &dyn RevocationStore,
    now: i64,
) -> Result<(RevocationSet, u64), SidecarError> {
    let revocations = RevocationSet::new();
    let mut since = 0;
    loop {
        let batch = store.revocations_since(since, 10_000)?;
        let Some((last, _)) = batch.last() else { break };
        since = *last;
        for (_, r) in batch.into_iter().filter(|(_, r)| r.until > now) {
            match (r.kind, r.attrs) {
                (RevocationKind::Session, _) => revocations.revoke_session(&r.id, r.until),
                (RevocationKind::Subject, _) => revocations.revoke_subject(&r.id, r.at, r.until),
                (RevocationKind::Identity, Some(a)) => {
                    revocations.update_identity(&r.id, r.at, a, r.until)
                }
                (RevocationKind::Identity, None) => {
                    tracing::warn!(identity = %r.id, "identity change without attributes ignored")
                }
            }
        }
    }
    Ok((revocations, since))
}

/// The NATS provisioner, when an operator seed is configured; its seed key is checked now.
fn provisioner(
    config: &ServeArgs,
    store: &Arc<dyn Store>,
    auth: &broker_auth_runtime::LiveAuth,
) -> Result<Option<Arc<crate::provision::Provisioner>>, SidecarError> {
    Ok(match &config.provision.operator_seed_path {
        None => None,
        Some(path) => {
            let operator = crate::provision::operator::load_operator(path)?;
            let p = crate::provision::Provisioner::new(
                operator,
                config.provision.seed_key()?,
                store.clone(),
                Some(auth.clone()),
                config.provision.names(),
            );
            // An empty or short secret (an unset compose variable becomes "") would let a
            // guess through the provisioner's write routes: refuse to start instead.
            match &config.provision.backend_shared_secret {
                None => {
                    return Err(SidecarError::config(
                        "BACKEND_SHARED_SECRET is required with the provisioner",
                    ));
                }
                Some(s) if s.expose().len() < 16 => {
                    return Err(SidecarError::config(
                        "BACKEND_SHARED_SECRET must be at least 16 characters",
                    ));
                }
                Some(_) => {}
            }
            // A wrong key must stop us now, not at the first provisioning request.
            p.check_key()?;
            Some(Arc::new(p))
        }
    })
}

/// Build the whole state from configuration (also used by in-process tests with their own clock).
pub fn build_state(
    config: ServeArgs,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<State, SidecarError> {
    config.validate()?;
    let now = clock.now();
    let master = master_key(&config.store)?;
    let keys = keystore::load_key_set(
        store.as_ref(),
        &master,
        config.signing_alg()?,
        now,
        config.max_token_lifetime(),
    )?;
    let keys = keystore::with_app_keys(keys, &config.app_hs256_secrets)?;
    let (revocations, revocations_loaded) = load_revocations(store.as_ref(), now)?;
    let bans = store.bans()?.into_iter().filter_map(|b| b.ip.parse().ok());
    let policy = crate::domain::policies::startup(store.as_ref(), &config.policies, now)?;
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy");
    }
    let token_config = TokenConfig::new(config.issuer(), config.audience.clone());
    let metrics = Metrics::default();
    metrics.identities.set(store.identity_count()? as i64);
    metrics
        .policy_version
        .set(policy.version().unwrap_or_default() as i64);
    let auth = broker_auth_runtime::LiveAuth::new(
        keys,
        Verifier::new(token_config.clone()),
        revocations,
        policy,
        100_000,
    );
    let provisioner = provisioner(&config, &store, &auth)?;
    Ok(Arc::new(AppState {
        enforcer: Default::default(),
        provisioner,
        nats_side: Default::default(),
        limiter: RateLimiter::new(config.limits(), bans),
        token_config,
        auth,
        store,
        clock,
        metrics,
        master,
        upstream: crate::oauth::upstream::Upstreams::new(&config.upstream_oidc)?,
        policy_lock: Default::default(),
        callout_status: Default::default(),
        revocations_loaded,
        config,
    }))
}

/// Check the responder's configuration (seed files, account map) before serving anything.
fn prepare_callout(
    state: &State,
    url: &str,
) -> Result<(callout::config::CalloutArgs, Arc<callout::Responder>), SidecarError> {
    let c = &state.config;
    let args = c
        .callout
        .to_callout(url, &c.policies, &c.issuer(), &c.audience)?;
    let responder = args
        .responder()
        .map_err(|e| SidecarError::config_from("", e))?;
    Ok((args, Arc::new(responder)))
}

/// The embedded MQTT broker on this process's keys, revocations, policy and clock.
async fn start_mqtt(
    state: &State,
) -> Result<Option<broker_auth_mqtt::EmbeddedBroker>, SidecarError> {
    let Some(config) = state.config.mqtt.to_config(&state.config.store.data_dir)? else {
        return Ok(None);
    };
    let broker = broker_auth_mqtt::EmbeddedBroker::start_with(
        &config,
        state.runtime(),
        state.metrics.mqtt_stats.clone(),
        Arc::new(crate::door::SidecarDoor::new(state.clone())),
    )
    .await
    .map_err(|e| SidecarError::config_from("", e))?;
    let a = broker.addrs();
    tracing::info!(tcp = ?a.tcp, ws = ?a.ws, tls = ?a.tls, "embedded MQTT broker listening");
    Ok(Some(broker))
}

/// The in-process NATS auth-callout responder, sharing this process's keys, revocations and
/// policy. nats-server may come up after us (operator mode needs our resolver first), so the
/// connection is retried in the background and nothing here blocks the REST service.
async fn run_callout(
    state: State,
    (args, responder): (callout::config::CalloutArgs, Arc<callout::Responder>),
    shutdown: impl Future<Output = ()>,
) {
    let runtime = state.runtime();
    tokio::pin!(shutdown);
    state
        .callout_status
        .set(crate::state::CalloutStatus::CONNECTING);
    let service = loop {
        let attempt = async {
            let client = args.connect().await?;
            let kicker = args.connect_kicker().await?;
            callout::service::subscribe(
                client,
                kicker,
                responder.clone(),
                runtime.clone(),
                callout::service::ServiceOptions {
                    queue_group: args.queue_group.clone(),
                    max_in_flight: args.max_in_flight,
                },
                state.metrics.callout.clone(),
            )
            .await
        };
        tokio::select! {
            r = attempt => match r {
                Ok(s) => break s,
                Err(e) => tracing::warn!(error = %e, "NATS callout not ready; retrying"),
            },
            _ = &mut shutdown => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut shutdown => return,
        }
    };
    state
        .callout_status
        .set(crate::state::CalloutStatus::SUBSCRIBED);
    if let Err(e) = service.run(shutdown).await {
        tracing::error!(error = %e, "NATS callout stopped");
    }
    state
        .callout_status
        .set(crate::state::CalloutStatus::STOPPED);
}

/// Housekeeping: expired challenges, announce signatures and revocations leave memory and disk.
async fn janitor(state: State) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = state.now();
        state.auth.prune_revocations(now);
        if let Err(e) = crate::store::MaintenanceStore::prune(state.store.as_ref(), now) {
            tracing::warn!(error = %e, "store prune failed");
        }
    }
}

/// The provisioner's connections to nats-server (claims pushes, the command stream), kept in
/// the background: nats-server may need our resolver before it can start.
fn start_provisioner_nats(state: &State) -> Result<(), SidecarError> {
    let Some(p) = &state.provisioner else {
        return Ok(());
    };
    let url = state
        .config
        .nats_url
        .clone()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let control_creds = match &state.config.provision.control_creds_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| SidecarError::config_from(path.display().to_string(), e))?,
        ),
        None => None,
    };
    let clock = state.clock.clone();
    tokio::spawn(crate::provision::nats::run(
        state.nats_side.clone(),
        p.clone(),
        url,
        control_creds,
        state.config.provision.startup_ensure_command_stream,
        move || clock.now(),
    ));
    Ok(())
}

/// The file a first start writes its admin API key to.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// A store with no usable admin API key (none, or all expired or revoked) gets one, written to
/// `DATA_DIR/admin.key` (0600) once the store has it durably, so a first `serve` leads somewhere
/// without stopping for `bootstrap`. The log says where the key is, never the key.
async fn first_start_admin(
    store: &dyn Store,
    data_dir: &std::path::Path,
    now: i64,
) -> Result<(), SidecarError> {
    let usable = |k: &crate::store::ApiKeyRecord| {
        k.scopes.iter().any(|s| s == "admin") && k.revoked_at.is_none() && k.expires_at > now
    };
    if store.api_keys()?.iter().any(usable) {
        return Ok(());
    }
    let new = crate::apikeys::generate(
        "first start admin",
        vec!["admin".into()],
        vec![],
        None,
        90,
        now,
    );
    store.put_api_key(&new.record)?;
    store.flush().await?;
    let path = data_dir.join(ADMIN_KEY_FILE);
    // A file left from before holds a key the store no longer accepts.
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| {
            SidecarError::config_from(format!("cannot replace {}", path.display()), e)
        })?;
    }
    broker_auth_runtime::secret_file::write_private(&path, format!("{}\n", new.key).as_bytes())
        .map_err(|e| SidecarError::config_from("", e))?;
    tracing::warn!(path = %path.display(), key_id = %new.record.id, expires_in_days = 90,
        "no admin API key in the store: created one and wrote it to this file (mode 0600); \
         use it as the bearer token of the admin routes");
    Ok(())
}

/// Edits of the `--policies` directory become versions through the gate, one at a time.
async fn follow_policy_dir(state: State) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let dir = state.config.policies.clone();
    let watch =
        broker_auth_runtime::policy_dir::follow(dir, Duration::from_millis(500), move |b| {
            let _ = tx.send(b);
        });
    let apply = async {
        while let Some(bundle) = rx.recv().await {
            crate::domain::policies::directory_changed(&state, bundle).await;
        }
    };
    tokio::join!(watch, apply);
}

/// Serve until `shutdown` resolves. `ready` receives the bound address (port 0 picks one).
pub async fn run(
    config: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), SidecarError> {
    // Fail before opening anything: a missing shared master key is a configuration error.
    master_key(&config.store)?;
    let store = crate::store::open(&config.store)?;
    first_start_admin(store.as_ref(), &config.store.data_dir, SystemClock.now()).await?;
    let listen = config.listen;
    let state = build_state(config, store.clone(), Arc::new(SystemClock))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| SidecarError::config_from(format!("cannot listen on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SidecarError::config_from("", e))?;
    tracing::info!(%addr, identities = state.store.identity_count().unwrap_or(0), "sidecar listening");
    if state.config.metrics_token.is_none() {
        tracing::info!("/metrics answers anyone who reaches this listener (set METRICS_TOKEN)");
    }
    if state.config.broker_routes_secret.is_none() {
        tracing::info!(
            "/user, /acl and /superuser answer anyone who reaches this listener (set BROKER_ROUTES_SECRET)"
        );
    }

    let janitor = tokio::spawn(janitor(state.clone()));

    // One enforcement task for the MQTT broker's sessions and the callout's connections.
    let enforcement = state.runtime().spawn_enforcement();
    let watcher = tokio::spawn(follow_policy_dir(state.clone()));
    // A shared store: what the other sidecars write is put into force here too.
    let follower = crate::store::MaintenanceStore::follow(store.as_ref(), state.revocations_loaded)
        .map(|changes| tokio::spawn(crate::domain::follow::run(state.clone(), changes)));

    // One shutdown signal, several listeners: the REST server and the in-process responder.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let mqtt = start_mqtt(&state).await?;
    start_provisioner_nats(&state)?;
    // The callout runs when NATS_URL is set, unless the URL is only the provisioner's.
    let callout_wanted =
        state.provisioner.is_none() || state.config.callout.callout_issuer_seed_file.is_some();
    let responder = match state.config.nats_url.as_ref().filter(|_| callout_wanted) {
        Some(url) => Some(tokio::spawn(run_callout(
            state.clone(),
            prepare_callout(&state, url)?,
            stopped(stop_rx.clone()),
        ))),
        None => None,
    };

    if let Some(tx) = ready {
        let _ = tx.send(addr);
    }
    let c = &state.config;
    crate::http_server::serve(
        listener,
        crate::api::routes(state.clone()),
        c.connections.http_limits(),
        c.connections.http_door(&c.trusted_proxies),
        stopped(stop_rx),
    )
    .await;
    if let Some(r) = responder {
        let _ = r.await;
    }
    if let Some(m) = mqtt {
        m.shutdown();
    }
    janitor.abort();
    watcher.abort();
    if let Some(f) = follower {
        f.abort();
    }
    enforcement.abort();
    store.flush().await?;
    tracing::info!("sidecar stopped; store flushed");
    Ok(())
}
