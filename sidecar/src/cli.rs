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
    /// Signing key management (the store must not be open by a running server; a running server
    /// rotates with `POST /admin/keys/rotate`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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
}

pub fn run(cli: Cli) -> Result<ExitCode, SidecarError> {
    match cli.command {
        Command::Policy { command } => crate::policy_cmd::run(command),
        Command::Serve(args) => crate::admin_cmd::serve(*args),
        Command::Bootstrap {
            store,
            expires_in_days,
        } => crate::admin_cmd::bootstrap(&store, expires_in_days),
        Command::Keys {
            command: KeysCommand::Rotate { store, alg },
        } => crate::admin_cmd::rotate(&store, &alg),
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
