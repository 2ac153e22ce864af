//! `sidecar`: the broker-auth service and its command line. `main` only parses and reports;
//! every subcommand lives in its own module.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod error;
mod policy_cmd;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
