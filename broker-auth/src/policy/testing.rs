//! The `*_test.rego` runner: regorus has none, so test rules are found by name (`test_*` at the
//! start of a line in a test file) and evaluated on the interpreter, which supports `with`.

use super::{PolicySet, policy_err};
use crate::error::Result;

/// The outcome of one test rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// `file:line` of the rule.
    pub location: String,
    /// `data.pkg.test_name`.
    pub rule: String,
    /// Passed?
    pub passed: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// All outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    /// One entry per test rule.
    pub outcomes: Vec<TestOutcome>,
}

impl TestReport {
    /// Number passed.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed).count()
    }
    /// Number failed.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }
}

/// Find `(package, rule, line)` of every `test_*` rule in a Rego text.
pub(super) fn discover(text: &str) -> Vec<(String, String, usize)> {
    let mut package = String::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("package ") {
            package = rest.trim().to_owned();
        } else if line.starts_with("test_") {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if seen.insert((package.clone(), name.clone())) {
                out.push((package.clone(), name, i + 1));
            }
        }
    }
    out
}

impl PolicySet {
    /// Run every `test_*` rule of the set's `*_test.rego` files against its policies.
    pub fn run_tests(&self) -> Result<TestReport> {
        let mut engine = self.engine.clone();
        for s in self.sources.iter().filter(|s| s.is_test()) {
            engine
                .add_policy(s.path.clone(), s.text.clone())
                .map_err(policy_err)?;
        }
        let mut report = TestReport::default();
        for s in self.sources.iter().filter(|s| s.is_test()) {
            for (pkg, name, line) in discover(&s.text) {
                let rule = format!("data.{pkg}.{name}");
                let mut e = engine.clone();
                let (passed, error) = match e.eval_rule(rule.clone()) {
                    Ok(regorus::Value::Bool(true)) => (true, None),
                    Ok(regorus::Value::Undefined) => {
                        (false, Some("undefined (a condition failed)".to_owned()))
                    }
                    Ok(other) => (false, Some(format!("evaluated to {other}"))),
                    Err(e) => (false, Some(e.to_string())),
                };
                report.outcomes.push(TestOutcome {
                    location: format!("{}:{line}", s.path),
                    rule,
                    passed,
                    error,
                });
            }
        }
        Ok(report)
    }
}
