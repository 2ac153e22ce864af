//! `sidecar policy check|test|eval`: the policy author's loop, run against the same `PolicySet`
//! the services serve from.

use std::path::Path;
use std::process::ExitCode;

use broker_auth::policy::{ALLOW_ENTRYPOINT, GRANTS_ENTRYPOINT, PolicySet};
use serde_json::{Value, json};

use crate::cli::PolicyCommand;
use crate::error::SidecarError;

pub fn run(cmd: PolicyCommand) -> Result<ExitCode, SidecarError> {
    match cmd {
        PolicyCommand::Check { dir } => check(&dir),
        PolicyCommand::Test { dir } => test(&dir),
        PolicyCommand::Eval {
            input,
            policies,
            query,
            explain,
        } => eval(&input, &policies, query.as_deref(), explain),
    }
}

fn load(dir: &Path) -> Result<PolicySet, SidecarError> {
    broker_auth_runtime::policy_dir::load_dir(dir).map_err(|e| SidecarError::policy_from("", e))
}

fn check(dir: &Path) -> Result<ExitCode, SidecarError> {
    let set = load(dir)?;
    for w in set.warnings() {
        println!("warning: {w}");
    }
    println!(
        "ok: {} policy file(s), packages {}, serving from the {:?}",
        set.policy_count(),
        set.packages().join(", "),
        set.evaluator()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(dir: &Path) -> Result<ExitCode, SidecarError> {
    let set = load(dir)?;
    let report = set.run_tests()?;
    for o in &report.outcomes {
        match &o.error {
            None => println!("PASS {} ({})", o.rule, o.location),
            Some(e) => println!("FAIL {} ({}): {e}", o.rule, o.location),
        }
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
    if report.outcomes.is_empty() {
        return Err(SidecarError::policy(format!(
            "no test_* rules in {}",
            dir.display()
        )));
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn eval(
    input: &Path,
    dir: &Path,
    query: Option<&str>,
    explain: bool,
) -> Result<ExitCode, SidecarError> {
    let text = std::fs::read_to_string(input)
        .map_err(|e| SidecarError::config_from(input.display().to_string(), e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| SidecarError::config_from(format!("{}: not JSON", input.display()), e))?;
    if !value.is_object() {
        return Err(SidecarError::config("the input must be a JSON object"));
    }
    let entry = query.unwrap_or(if value.get("topic").is_some() {
        ALLOW_ENTRYPOINT
    } else {
        GRANTS_ENTRYPOINT
    });
    let set = load(dir)?;
    let out = if explain {
        serde_json::to_value(set.explain(entry, &value)?)
            .map_err(|e| SidecarError::config_from("", e))?
    } else {
        json!({ "entrypoint": entry, "value": set.eval_json(entry, &value)? })
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
