//! The command line (architecture.md, "Command line"): one typed config per subcommand, every
//! flag with its environment variable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ServeArgs, StoreArgs};
use crate::error::SidecarError;

/// broker-auth sidecar: identities, tokens, policies and broker authorization.
#[derive(Debug, Parser)]
#[command(name = "sidecar", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST service.
    Serve(Box<ServeArgs>),
    /// Create an admin API key; prints it once as the last line of stdout (only its hash is stored).
    Bootstrap {
        #[command(flatten)]
        store: StoreArgs,
        /// Days until the key expires (1-365).
        #[arg(long, default_value_t = 365)]
        expires_in_days: i64,
    },
    /// NATS operator bootstrap: operator key pair (seed 0600, JWT beside it), SYS and CONTROL
    /// accounts, made unless they exist (safe to run at every start); prints the nats-server
    /// configuration block for our resolver, or writes it to `--config-out`.
    InitOperator {
        #[command(flatten)]
        store: StoreArgs,
        /// Where to write the operator seed (default DATA_DIR/operator.seed).
        #[arg(long, env = "OPERATOR_SEED_PATH")]
        operator_seed_path: Option<PathBuf>,
        /// The resolver URL nats-server will call (this sidecar's `/jwt/v1/accounts/`).
        #[arg(long, default_value = "http://127.0.0.1:8080/jwt/v1/accounts/")]
        resolver_url: String,
        /// Base64 of 32 bytes: AES-256-GCM key of the stored account seeds.
        #[arg(long, env = "ACCOUNT_SEED_ENCRYPTION_KEY", hide_env_values = true)]
        account_seed_encryption_key: Option<broker_auth::secret::SecretString>,
        #[arg(long, env = "CONTROL_ACCOUNT_NAME", default_value = "CONTROL")]
        control_account_name: String,
        /// Write the nats-server block to this file (whole, by rename) instead of stdout.
        #[arg(long)]
        config_out: Option<PathBuf>,
    },
    /// The config-mode NATS callout's key pairs: makes `issuer.seed` and `xkey.seed` (0600) in DIR
    /// unless they exist, writes `callout-keys.conf` (their public keys, for nats-server to
    /// include in its `auth_callout` block) and prints the two public keys. Safe to run again.
    CalloutKeys {
        /// Where the seeds and `callout-keys.conf` live.
        #[arg(long, env = "CALLOUT_KEYS_DIR")]
        dir: PathBuf,
    },
    /// Signing key management (the store must not be open by a running server; a running server
    /// rotates with `POST /admin/keys/rotate`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Exit 0 when the server on LISTEN_ADDR answers `/healthz` (its store answers), 1 otherwise:
    /// a container HEALTHCHECK that needs no curl in the image.
    Healthcheck {
        /// The server's address (`0.0.0.0` and `::` mean this host's loopback).
        #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Author, test and dry-run Rego policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key; older keys keep verifying until their tokens expire.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Algorithm of the new key.
        #[arg(long, env = "SIGNING_ALG", default_value = "EdDSA", value_parser = ["EdDSA", "ES256"])]
        alg: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load, compile and evaluate a policy directory once; report errors with file:line:col.
    Check {
        /// Policy directory.
        #[arg(env = "POLICY_DIR", default_value = "./policies")]
        dir: PathBuf,
    },
    /// Run the `test_*` rules of every `*_test.rego` file.
    Test {
        /// Policy directory.
        #[arg(env = "POLICY_DIR", default_value = "./policies")]
        dir: PathBuf,
    },
    /// Evaluate one input and print the decision (and, with --explain, the rules that fired).
    Eval {
        /// JSON input: `{"principal": …}` for grants, or `{"principal", "topic", "action", …}` for allow.
        #[arg(long)]
        input: PathBuf,
        /// Policy directory.
        #[arg(long, env = "POLICY_DIR", default_value = "./policies")]
        policies: PathBuf,
        /// Rule to evaluate (default: chosen from the input's shape).
        #[arg(long)]
        query: Option<String>,
        /// Also print the rules that fired and the policy lines evaluated.
        #[arg(long)]
        explain: bool,
    },
    /// The access diff of two policy directories: who gains and who loses which grants (JSON).
    /// Both go through the deploy gate first.
    Diff {
        /// The policy as it is.
        old: PathBuf,
        /// The policy as it would be.
        new: PathBuf,
        /// Principals to examine, one JSON object per line (`{"id", "type", "tenant", "roles",
        /// …}`); default: one of every identity type with each shipped role.
        #[arg(long)]
        principals: Option<PathBuf>,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode, SidecarError> {
    match cli.command {
        Command::Policy { command } => crate::policy_cmd::run(command),
        Command::CalloutKeys { dir } => {
            let keys = crate::callout_keys::ensure(&dir)?;
            println!("issuer {}\nxkey {}", keys.issuer, keys.xkey);
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { listen } => Ok(crate::admin_cmd::healthcheck(listen)),
        Command::Serve(args) => crate::admin_cmd::serve(*args),
        Command::Bootstrap {
            store,
            expires_in_days,
        } => crate::admin_cmd::bootstrap(&store, expires_in_days),
        Command::Keys {
            command: KeysCommand::Rotate { store, alg },
        } => crate::admin_cmd::rotate(&store, &alg),
        Command::InitOperator {
            store,
            operator_seed_path,
            resolver_url,
            account_seed_encryption_key,
            control_account_name,
            config_out,
        } => crate::admin_cmd::init_operator(
            &store,
            operator_seed_path,
            &resolver_url,
            account_seed_encryption_key,
            control_account_name,
            config_out.as_deref(),
        ),
    }
}

/// `serve` arguments from an argument list (tests and embedding; the environment still applies).
pub fn serve_args_from<I, T>(args: I) -> Result<ServeArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        serve: ServeArgs,
    }
    Only::try_parse_from(args).map(|o| o.serve)
}
