//! `sidecar policy check|test|eval`: the policy author's loop, run against the same `PolicySet`
//! the services serve from.

use std::path::Path;
use std::process::ExitCode;

use broker_auth::Principal;
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
        PolicyCommand::Diff {
            old,
            new,
            principals,
        } => diff(&old, &new, principals.as_deref()),
    }
}

fn gated(dir: &Path) -> Result<PolicySet, SidecarError> {
    broker_auth_runtime::policy_dir::load_gated(dir)
        .map(|g| g.set)
        .map_err(|e| SidecarError::policy_from(dir.display().to_string(), e))
}

/// Principals from a JSON-lines file (blank lines and `#` comments skipped).
fn read_principals(path: &Path) -> Result<Vec<Principal>, SidecarError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SidecarError::config_from(path.display().to_string(), e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p: Principal = serde_json::from_str(line)
            .map_err(|e| SidecarError::config_from(format!("{}:{}", path.display(), i + 1), e))?;
        out.push(p);
    }
    Ok(out)
}

fn diff(old: &Path, new: &Path, principals: Option<&Path>) -> Result<ExitCode, SidecarError> {
    let (from, to) = (gated(old)?, gated(new)?);
    let principals = match principals {
        Some(p) => read_principals(p)?,
        None => broker_auth::policy::diff::synthetic_principals(),
    };
    let changed = broker_auth::policy::diff::access_diff(&from, &to, &principals);
    let out = json!({
        "from": old.display().to_string(),
        "to": new.display().to_string(),
        "principals_examined": principals.len(),
        "truncated": false,
        "changed": changed,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
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
