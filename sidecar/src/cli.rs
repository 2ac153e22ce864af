//! The command line (architecture.md, "Command line"): one typed config per subcommand, every
//! flag with its environment variable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Author, test and dry-run Rego policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
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
    }
}
