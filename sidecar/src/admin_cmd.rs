//! `serve`, `bootstrap` and `keys rotate`: the subcommands that open the store.

use std::process::ExitCode;

use broker_auth::token::TokenAlg;

use crate::apikeys;
use crate::clock::{Clock, SystemClock};
use crate::config::{ServeArgs, StoreArgs};
use crate::error::SidecarError;
use crate::store::{Durable, Store};

fn init_logging(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // rmqtt's debug logs print whole CONNECT packets, passwords (our tokens) included, and its
    // info lines name each connection by an id that carries the MQTT username, which clients
    // fill with their token as often as with a name: its targets stay at warn (the listener's
    // start-up line at info) whatever RUST_LOG says. Our own connect and refusal lines say who
    // and why without either.
    for directive in ["rmqtt=warn", "rmqtt_codec=warn", "rmqtt_net=info"] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    // Colour only for a person at a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

pub fn serve(args: ServeArgs) -> Result<ExitCode, SidecarError> {
    init_logging(args.log_format == "json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SidecarError::internal_from("tokio runtime", e))?;
    let served = rt.block_on(crate::serve::run(args, shutdown_signal(), None));
    // rmqtt's retainer keeps its sled database behind a command loop on the blocking pool that
    // ends only when the plugin is dropped, which rmqtt never does: dropping the runtime would
    // wait for it forever. So the pool gets a bounded grace instead, longer than sled's 500 ms
    // flush interval, so the retained store's last writes reach the disk (our own store was
    // flushed by `run`).
    rt.shutdown_timeout(BLOCKING_GRACE);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// How long a stopping server waits for blocking tasks (see [`serve`]).
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn flush(store: &dyn Durable) -> Result<(), SidecarError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| SidecarError::internal_from("tokio runtime", e))?
        .block_on(store.flush())?;
    Ok(())
}

pub fn bootstrap(args: &StoreArgs, expires_in_days: i64) -> Result<ExitCode, SidecarError> {
    if !(1..=365).contains(&expires_in_days) {
        return Err(SidecarError::config(
            "--expires-in-days must be between 1 and 365",
        ));
    }
    // Create the master key and first signing key now, so `serve` finds them.
    let master = crate::serve::master_key(args)?;
    let store = crate::store::open(args)?;
    let store = store.as_ref();
    let now = SystemClock.now();
    crate::keystore::load_key_set(store, &master, TokenAlg::EdDSA, now, 366 * 86_400)?;
    let new = apikeys::generate(
        "bootstrap admin",
        vec!["admin".into()],
        vec![],
        None,
        expires_in_days,
        now,
    );
    store.put_api_key(&new.record)?;
    flush(store)?;
    println!(
        "Admin API key (shown once; only its hash is stored), id {}:",
        new.record.id
    );
    println!("{}", new.key);
    Ok(ExitCode::SUCCESS)
}

pub fn rotate(args: &StoreArgs, alg: &str) -> Result<ExitCode, SidecarError> {
    let master = crate::serve::master_key(args)?;
    let store = crate::store::open(args)?;
    let alg = crate::config::signing_alg_named(alg)?;
    let kid = crate::keystore::rotate(store.as_ref(), &master, alg, SystemClock.now())?;
    flush(store.as_ref())?;
    println!("new signing key {kid}");
    Ok(ExitCode::SUCCESS)
}

pub fn init_operator(
    args: &StoreArgs,
    seed_path: Option<std::path::PathBuf>,
    resolver_url: &str,
    seed_key: Option<broker_auth::secret::SecretString>,
    control_account_name: String,
    config_out: Option<&std::path::Path>,
) -> Result<ExitCode, SidecarError> {
    let provision = crate::config::ProvisionArgs {
        operator_seed_path: None,
        account_seed_encryption_key: seed_key,
        backend_shared_secret: None,
        control_creds_path: None,
        command_stream_name: "RXC_CMD".into(),
        control_account_name,
        startup_ensure_command_stream: false,
    };
    let seeds = provision.seed_key()?;
    let seed_path = seed_path.unwrap_or_else(|| args.data_dir.join("operator.seed"));
    let store: std::sync::Arc<dyn Store> = crate::store::open(args)?;
    // Accounts need no policy; users are minted by `serve`, which loads the real one.
    let names = provision.names();
    let done =
        crate::provision::operator::init(&seed_path, resolver_url, SystemClock.now(), |op| {
            crate::provision::Provisioner::new(op, seeds, store.clone(), None, names)
        })?;
    flush(store.as_ref())?;
    let seed = if done.created {
        "written to"
    } else {
        "already at (kept)"
    };
    eprintln!(
        "operator seed {seed} {} (0600), operator JWT to {}",
        done.seed_path.display(),
        done.jwt_path.display()
    );
    match config_out {
        Some(path) => {
            crate::callout_keys::write_whole(path, &done.config_block)?;
            eprintln!("nats-server block written to {}", path.display());
        }
        None => print!("{}", done.config_block),
    }
    Ok(ExitCode::SUCCESS)
}

/// `sidecar healthcheck`: one `GET /healthz` over plain HTTP/1.0, 3 s at most.
pub fn healthcheck(mut addr: std::net::SocketAddr) -> ExitCode {
    use std::io::{Read, Write};
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = std::time::Duration::from_secs(3);
    let answer = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head)
    });
    match answer {
        // "HTTP/1.x 204" or "HTTP/1.x 200"
        Ok(head) if head.starts_with(b"HTTP/1.") && matches!(&head[9..12], b"204" | b"200") => {
            ExitCode::SUCCESS
        }
        Ok(head) => {
            eprintln!(
                "unhealthy: {addr}/healthz answered {}",
                String::from_utf8_lossy(&head)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: no answer from {addr}/healthz: {e}");
            ExitCode::FAILURE
        }
    }
}
