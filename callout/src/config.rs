//! The typed configuration of the `callout` binary (flags and environment), and the helpers that
//! turn it into NATS connections and a responder. Seed files must not be group/other-readable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use broker_auth::secret::SecretString;
use clap::{Args, ValueEnum};

use crate::error::CalloutError;
use crate::responder::{AccountMap, Responder};

#[derive(Args, Clone, Debug)]
pub struct CalloutArgs {
    /// nats-server URL; a cluster's servers comma-separated.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: String,
    /// `auth_users` user the responder connects as.
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<SecretString>,
    /// `.creds` file instead of user/password.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Account seed (SA…) that signs responses and config-mode user JWTs.
    #[arg(long, env = "CALLOUT_ISSUER_SEED_FILE")]
    pub issuer_seed_file: PathBuf,
    /// Curve seed (SX…); its public key is the server config's `xkey`.
    #[arg(long, env = "CALLOUT_XKEY_SEED_FILE")]
    pub xkey_seed_file: Option<PathBuf>,
    /// Operator mode: the target account's seed (SA…, mode 0600); user JWTs are issued by it, and
    /// it must be in the callout account's `allowed_accounts`. Absent: config mode.
    #[arg(long, env = "CALLOUT_TARGET_ACCOUNT_SEED_FILE")]
    pub target_account_seed_file: Option<PathBuf>,
    /// Config mode: account for principals without a tenant mapping.
    #[arg(long, env = "CALLOUT_ACCOUNT", default_value = "APP")]
    pub account: String,
    /// Config mode: `tenant=ACCOUNT` pairs, comma-separated.
    #[arg(long, env = "CALLOUT_ACCOUNT_MAP", value_delimiter = ',')]
    pub account_map: Vec<String>,
    /// Queue group shared by all responders.
    #[arg(
        long,
        env = "CALLOUT_QUEUE_GROUP",
        default_value = "broker-auth-callout"
    )]
    pub queue_group: String,
    /// Requests answered concurrently.
    #[arg(long, env = "CALLOUT_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// System-account user for kicking revoked connections (optional).
    #[arg(long, env = "CALLOUT_KICK_USER")]
    pub kick_user: Option<String>,
    #[arg(long, env = "CALLOUT_KICK_PASSWORD", hide_env_values = true)]
    pub kick_password: Option<SecretString>,
    /// Sidecar base URL (split mode: JWKS and revocation feed).
    #[arg(long, env = "SIDECAR_URL")]
    pub sidecar_url: Option<String>,
    /// Admin API key for the sidecar's revocation feed (required by the standalone callout).
    #[arg(long, env = "SIDECAR_TOKEN", hide_env_values = true)]
    pub sidecar_token: Option<SecretString>,
    /// The same key read from a file (mode 0600), e.g. the sidecar's first-start `admin.key`.
    #[arg(long, env = "SIDECAR_TOKEN_FILE", conflicts_with = "sidecar_token")]
    pub sidecar_token_file: Option<PathBuf>,
    /// Seconds without a successful revocation-feed poll after which connects are refused
    /// (`revocations_stale`) until the feed answers again.
    #[arg(long, env = "REVOCATIONS_STALE_AFTER", default_value_t = 30, value_parser = clap::value_parser!(i64).range(2..=86_400))]
    pub revocations_stale_after: i64,
    /// Rego policy directory (`--store sidecar`; with `--store nats` the policy is the store's
    /// live version).
    #[arg(long, env = "POLICY_DIR", default_value = "./policies")]
    pub policies: PathBuf,
    /// Where keys, revocations and the policy come from: `sidecar` (its HTTP feeds, polled) or
    /// `nats` (the sidecars' shared JetStream store, followed directly).
    #[arg(long, env = "STORE", value_enum, default_value_t = Source::Sidecar)]
    pub store: Source,
    #[command(flatten)]
    pub store_nats: StoreNatsArgs,
    /// `iss` of accepted tokens (the sidecar's PUBLIC_URL, or `broker-auth`).
    #[arg(long, env = "TOKEN_ISSUER", default_value = "broker-auth")]
    pub token_issuer: String,
    /// `aud` of accepted tokens.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = "broker-auth")]
    pub token_audience: String,
}

/// Where a standalone callout learns what the sidecars decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The sidecar's JWKS and revocation feed over HTTP (`--sidecar-url`, `--sidecar-token`)
    /// and the `--policies` directory.
    Sidecar,
    /// The shared store (`sidecar serve --store nats`): signing keys' public halves, the live
    /// policy version and the revocation stream, watched. No sidecar URL, no master key.
    Nats,
}

/// The shared store, as the sidecars' `--store nats` flags name it (same env names).
#[derive(Args, Clone, Debug)]
pub struct StoreNatsArgs {
    /// Seeds of the store's NATS cluster, comma-separated.
    #[arg(long = "store-nats-url", env = "STORE_NATS_URL")]
    pub url: Option<String>,
    /// `.creds` file of the store's NATS user.
    #[arg(long = "store-nats-creds", env = "STORE_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// User and password of the store's NATS user (instead of `--store-nats-creds`).
    #[arg(long = "store-nats-user", env = "STORE_NATS_USER")]
    pub user: Option<String>,
    #[arg(
        long = "store-nats-password",
        env = "STORE_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<SecretString>,
    /// Bucket and stream names start with this (the sidecars' `--store-prefix`).
    #[arg(
        long = "store-prefix",
        env = "STORE_PREFIX",
        default_value = "broker_auth"
    )]
    pub prefix: String,
}

impl StoreNatsArgs {
    /// Connect to the store's NATS as `name`, following every seed of `--store-nats-url`, and
    /// reconnecting for ever once connected (the store comes back when JetStream does). A
    /// server that cannot be reached now is an error now.
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, CalloutError> {
        let url = self.url.as_deref().ok_or_else(|| {
            CalloutError::Config("--store nats needs --store-nats-url (STORE_NATS_URL)".into())
        })?;
        let failed = |what: String| CalloutError::Store {
            url: url.to_owned(),
            what,
        };
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(std::time::Duration::from_secs(5))
            .max_reconnects(None);
        if let Some(path) = &self.creds {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => opts = opts.user_and_password(u.clone(), p.expose().to_owned()),
            (None, None) => {}
            _ => {
                return Err(CalloutError::Config(
                    "--store-nats-user and --store-nats-password go together".into(),
                ));
            }
        }
        let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
        opts.connect(seeds.as_slice())
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// Read a seed file, refusing one that group or others can read.
pub fn read_seed(path: &Path) -> Result<String, CalloutError> {
    Ok(broker_auth_runtime::secret_file::read_private(path)?)
}

impl CalloutArgs {
    /// The sidecar API key, from `--sidecar-token` or `--sidecar-token-file`.
    pub fn sidecar_token(&self) -> Result<Option<SecretString>, CalloutError> {
        match (&self.sidecar_token, &self.sidecar_token_file) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(path)) => Ok(Some(SecretString::new(read_seed(path)?))),
            (None, None) => Ok(None),
        }
    }

    pub fn accounts(&self) -> Result<AccountMap, CalloutError> {
        let mut tenants = HashMap::new();
        for pair in &self.account_map {
            let (t, a) = pair.split_once('=').ok_or_else(|| {
                CalloutError::Config(format!("account map entry {pair:?} is not tenant=ACCOUNT"))
            })?;
            tenants.insert(t.trim().to_owned(), a.trim().to_owned());
        }
        Ok(AccountMap {
            default: self.account.clone(),
            tenants,
        })
    }

    pub fn responder(&self) -> Result<Responder, CalloutError> {
        let issuer = read_seed(&self.issuer_seed_file)?;
        let xkey = self.xkey_seed_file.as_deref().map(read_seed).transpose()?;
        match &self.target_account_seed_file {
            Some(target) => {
                let seed = read_seed(target)?;
                let default = nkeys::KeyPair::from_seed(&seed).map_err(|_| {
                    CalloutError::Config(format!("{}: not an nkey seed", target.display()))
                })?;
                Responder::operator(&issuer, xkey.as_deref(), default)
            }
            None => Responder::new(&issuer, xkey.as_deref(), self.accounts()?),
        }
    }

    /// `--nats-url` split into its seeds (a cluster's servers, comma-separated).
    fn seeds(&self) -> Vec<&str> {
        self.nats_url.split(',').map(str::trim).collect()
    }

    /// The responder's own connection: reconnects forever, resubscribes on its own.
    pub async fn connect(&self) -> Result<async_nats::Client, CalloutError> {
        let opts = match (&self.nats_creds, &self.nats_user, &self.nats_password) {
            (Some(creds), _, _) => async_nats::ConnectOptions::with_credentials_file(creds)
                .await
                .map_err(|source| {
                    CalloutError::SecretFile(
                        broker_auth_runtime::secret_file::SecretFileError::Io {
                            path: creds.clone(),
                            source,
                        },
                    )
                })?,
            (None, Some(u), Some(p)) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.expose().to_owned())
            }
            _ => {
                return Err(CalloutError::Config(
                    "give --nats-creds or --nats-user and --nats-password".into(),
                ));
            }
        };
        opts.name("broker-auth-callout")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(self.seeds().as_slice())
            .await
            .map_err(CalloutError::nats("connect"))
    }

    pub async fn connect_kicker(&self) -> Result<Option<async_nats::Client>, CalloutError> {
        match (&self.kick_user, &self.kick_password) {
            (Some(u), Some(p)) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.expose().to_owned())
                    .name("broker-auth-callout-kicker")
                    .retry_on_initial_connect()
                    .max_reconnects(None)
                    .connect(self.seeds().as_slice())
                    .await
                    .map(Some)
                    .map_err(CalloutError::nats("connect the system-account user"))
            }
            _ => Ok(None),
        }
    }
}
