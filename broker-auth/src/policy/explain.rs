//! `policy eval --explain`: which rules produced a decision. For every non-function rule of the
//! set's packages we evaluate it on the same input and report those that are defined and not
//! false, with their file and line; coverage adds which policy lines were evaluated at all.

use serde::Serialize;
use serde_json::Value as Json;

use super::{PolicySet, policy_err, to_json, to_rego};
use crate::error::Result;

/// A rule that produced a value for the input.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FiredRule {
    /// `data.pkg.rule`.
    pub rule: String,
    /// `file:line` of its first definition.
    pub location: String,
    /// Its value.
    pub value: Json,
}

/// The decision and how it came about.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Explanation {
    /// The evaluated entry point.
    pub entrypoint: String,
    /// Its value (null when undefined).
    pub value: Json,
    /// Rules that fired.
    pub fired: Vec<FiredRule>,
    /// `file:line` of every evaluated policy line.
    pub lines_evaluated: Vec<String>,
}

fn rule_heads(text: &str) -> Vec<(String, String, usize)> {
    let mut package = String::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("package ") {
            package = rest.trim().to_owned();
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        if matches!(name.as_str(), "import" | "default" | "package") {
            continue;
        }
        let rest = line[name.len()..].trim_start();
        // Functions need arguments and partial rules are reported through their parent object.
        if rest.starts_with('(') || rest.starts_with('[') {
            continue;
        }
        if !out
            .iter()
            .any(|(p, n, _): &(String, String, usize)| *p == package && *n == name)
        {
            out.push((package.clone(), name, i + 1));
        }
    }
    out
}

impl PolicySet {
    /// Evaluate `entrypoint` on `input` and explain it.
    pub fn explain(&self, entrypoint: &str, input: &Json) -> Result<Explanation> {
        let mut engine = self.engine.clone();
        engine.set_input(to_rego(input)?);
        engine.set_enable_coverage(true);
        let value = engine
            .eval_rule(entrypoint.to_owned())
            .map_err(policy_err)?;
        let mut lines_evaluated = Vec::new();
        if let Ok(report) = engine.get_coverage_report() {
            for f in report.files {
                lines_evaluated.extend(f.covered.iter().map(|l| format!("{}:{l}", f.path)));
            }
        }
        let mut fired = Vec::new();
        for s in self.sources.iter().filter(|s| !s.is_test()) {
            for (pkg, name, line) in rule_heads(&s.text) {
                let rule = format!("data.{pkg}.{name}");
                let mut e = self.engine.clone();
                e.set_input(to_rego(input)?);
                match e.eval_rule(rule.clone()) {
                    Ok(regorus::Value::Undefined) | Ok(regorus::Value::Bool(false)) | Err(_) => {}
                    Ok(v) => fired.push(FiredRule {
                        rule,
                        location: format!("{}:{line}", s.path),
                        value: to_json(&v)?,
                    }),
                }
            }
        }
        Ok(Explanation {
            entrypoint: entrypoint.to_owned(),
            value: if value == regorus::Value::Undefined {
                Json::Null
            } else {
                to_json(&value)?
            },
            fired,
            lines_evaluated,
        })
    }
}
