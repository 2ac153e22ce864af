//! Rego policies: load a directory into an immutable compiled [`PolicySet`], evaluate the two
//! decision shapes (grants per principal; `allow` per request), run `*_test.rego` tests, explain a
//! decision, and swap whole sets atomically on reload ([`SharedPolicy`]).
//!
//! regorus's `add_policy` only parses; unsafe variables and unknown builtins surface at compile or
//! first evaluation. So a set is only built after both entry points compiled to the RVM and
//! evaluated once on a sample input: an invalid policy never becomes the serving one.

pub mod bundle;
pub mod cache;
pub mod diff;
mod explain;
mod testing;

use std::sync::Arc;

use arc_swap::ArcSwap;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::grants::{Action, CompiledGrants, grants_from_json};
use crate::principal::Principal;

pub use explain::{Explanation, FiredRule};
pub use testing::{TestOutcome, TestReport};

/// Entry point of the grants decision.
pub const GRANTS_ENTRYPOINT: &str = "data.broker.grants";
/// Entry point of the per-request decision (the celine shape).
pub const ALLOW_ENTRYPOINT: &str = "data.broker.mqtt.acl.allow";

/// One Rego file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySource {
    /// Path as shown in error messages.
    pub path: String,
    /// Rego text.
    pub text: String,
}

impl PolicySource {
    /// Is this a `*_test.rego` file?
    pub fn is_test(&self) -> bool {
        self.path.ends_with("_test.rego")
    }
}

/// Input of the `allow` decision: `{principal, clientid, topic, acc, action}`.
#[derive(Clone, Debug, Serialize)]
pub struct AclInput<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// MQTT client id.
    pub clientid: &'a str,
    /// Topic (publish/read) or filter (subscribe).
    pub topic: &'a str,
    /// mosquitto-go-auth access bits: 1 read, 2 publish, 4 subscribe.
    pub acc: u8,
    /// `read`, `publish` or `subscribe`.
    pub action: &'a str,
}

impl<'a> AclInput<'a> {
    /// Input for one action.
    pub fn new(
        principal: &'a Principal,
        clientid: &'a str,
        action: Action,
        topic: &'a str,
    ) -> Self {
        let acc = match action {
            Action::Read => 1,
            Action::Publish => 2,
            Action::Subscribe => 4,
        };
        AclInput {
            principal,
            clientid,
            topic,
            acc,
            action: action.as_str(),
        }
    }
}

/// Which evaluator to use (benchmarks compare them; serving uses the RVM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluator {
    /// The tree-walking interpreter.
    Interpreter,
    /// The compiled register VM.
    Rvm,
}

/// A compiled, validated, immutable set of policies.
pub struct PolicySet {
    engine: regorus::Engine,
    grants_program: Arc<Program>,
    allow_program: Arc<Program>,
    sources: Vec<PolicySource>,
    // The bundle's data.json, given to the RVM on each run (the interpreter's engine holds it).
    data: Option<regorus::Value>,
    packages: Vec<String>,
    evaluator: Evaluator,
    warnings: Vec<String>,
    // Grants per principal, memoized for this set only (a reload starts empty).
    cache: cache::GrantsCache,
    // The stored version this set was built from, when it came from a store.
    version: Option<u64>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field(
                "files",
                &self.sources.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("packages", &self.packages)
            .field("evaluator", &self.evaluator)
            .finish_non_exhaustive()
    }
}

fn policy_err<E: std::fmt::Display + Into<crate::error::Cause>>(e: E) -> Error {
    Error::policy_from(rego_message(&e.to_string()), e)
}

/// [`policy_err`] for a failure while compiling or evaluating one entry point.
fn entry_err<E: std::fmt::Display + Into<crate::error::Cause>>(entry: &str, e: E) -> Error {
    Error::policy_from(format!("{entry}: {}", rego_message(&e.to_string())), e)
}

/// Where regorus's error text places its errors: each `--> file:line:col` line, with the
/// `error: text` that follows it (the one reading of that format, for messages and problems).
pub(crate) fn reported(raw: &str) -> Vec<(&str, Option<&str>)> {
    let lines: Vec<&str> = raw.lines().map(str::trim).collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let loc = l.strip_prefix("--> ")?;
            let msg = lines[i + 1..]
                .iter()
                .find_map(|l| l.strip_prefix("error: "));
            Some((loc, msg))
        })
        .collect()
}

/// regorus reports `\n--> file:line:col\n | snippet\nerror: text`; put `file:line:col: text` first
/// so the location is the first thing a person (or grep) sees, and keep the snippet below it.
pub fn rego_message(raw: &str) -> String {
    match reported(raw).first() {
        Some((loc, Some(msg))) => format!("{loc}: {msg}\n{}", raw.trim_matches('\n')),
        _ => raw.trim().to_owned(),
    }
}

fn to_rego(v: &impl Serialize) -> Result<regorus::Value> {
    let s = serde_json::to_string(v).map_err(policy_err)?;
    regorus::Value::from_json_str(&s).map_err(policy_err)
}

fn to_json(v: &regorus::Value) -> Result<Json> {
    serde_json::to_value(v).map_err(policy_err)
}

/// Principals of every type, with and without each shipped role and a tenant, and superusers:
/// the sample on which the RVM must agree with the interpreter before it is trusted.
fn cross_check_principals() -> Vec<Principal> {
    let mut out = Vec::new();
    for kind in crate::identity::ALL_TYPES {
        for role in ["", "reader", "writer", "sensor", "backend", "control-admin"] {
            for tenant in [None, Some("t1")] {
                let mut p = sample_principal();
                p.kind = kind;
                p.id = format!("{}X1", kind.id_prefix());
                p.tenant = tenant.map(str::to_owned);
                p.roles = if role.is_empty() {
                    vec![]
                } else {
                    vec![role.to_owned()]
                };
                if kind == crate::identity::IdentityType::Gateway {
                    p.devices = vec!["dev-X2".into()];
                }
                out.push(p);
            }
        }
    }
    let mut su = sample_principal();
    su.scopes = vec!["mqtt.admin".into()];
    out.push(su.clone());
    su.scopes = vec![];
    su.groups = vec!["admin".into()];
    out.push(su);
    out
}

fn sample_principal() -> Principal {
    Principal {
        id: "dev-SAMPLE".into(),
        kind: crate::identity::IdentityType::Device,
        tenant: Some("sample".into()),
        roles: vec![],
        scopes: vec![],
        groups: vec![],
        devices: vec![],
        client_id: None,
        protocol: crate::principal::Protocol::Mqtt,
    }
}

impl PolicySet {
    /// Build from sources (test files are kept for [`PolicySet::run_tests`] but not served).
    pub fn from_sources(sources: Vec<PolicySource>) -> Result<PolicySet> {
        Self::build(sources, None)
    }

    /// Build from a bundle: its Rego files, and its `data.json` as `data`.
    pub fn from_bundle(bundle: &bundle::Bundle) -> Result<PolicySet> {
        Self::build(bundle.sources(), bundle.data())
    }

    fn build(sources: Vec<PolicySource>, data: Option<Json>) -> Result<PolicySet> {
        if !sources.iter().any(|s| !s.is_test()) {
            return Err(Error::policy("no policy files (*.rego) found"));
        }
        let mut engine = regorus::Engine::new();
        // Undefined builtins and type errors become errors, not silently undefined results.
        engine.set_strict_builtin_errors(true);
        for s in sources.iter().filter(|s| !s.is_test()) {
            engine
                .add_policy(s.path.clone(), s.text.clone())
                .map_err(policy_err)?;
        }
        let data = data.map(|d| to_rego(&d)).transpose()?;
        if let Some(d) = &data {
            engine.add_data(d.clone()).map_err(policy_err)?;
        }
        let mut packages = engine.get_packages().map_err(policy_err)?;
        packages.sort();
        let compile = |engine: &mut regorus::Engine, entry: &str| -> Result<Arc<Program>> {
            let compiled = engine
                .compile_with_entrypoint(&entry.into())
                .map_err(|e| entry_err(entry, e))?;
            Compiler::compile_from_policy(&compiled, &[entry]).map_err(|e| entry_err(entry, e))
        };
        let grants_program = compile(&mut engine, GRANTS_ENTRYPOINT)?;
        let allow_program = compile(&mut engine, ALLOW_ENTRYPOINT)?;
        let key_fields = cache::KeyFields::of(&sources);
        let mut set = PolicySet {
            engine,
            grants_program,
            allow_program,
            sources,
            data,
            packages,
            evaluator: Evaluator::Interpreter,
            warnings: vec![],
            cache: cache::GrantsCache::new(key_fields),
            version: None,
        };
        // Evaluate on both evaluators: errors that only show at run time surface now, and the
        // RVM serves only where it agrees with the interpreter (regorus 0.14's RVM has known
        // divergences, e.g. a function's `else` after an empty `some` iteration).
        match set.first_disagreement()? {
            None => set.evaluator = Evaluator::Rvm,
            Some(what) => set.warnings.push(format!(
                "the compiled RVM disagrees with the interpreter ({what}); serving from the interpreter"
            )),
        }
        Ok(set)
    }

    fn first_disagreement(&self) -> Result<Option<String>> {
        for p in cross_check_principals() {
            let rvm = self.grants_with(&p, Evaluator::Rvm)?;
            let interp = self.grants_with(&p, Evaluator::Interpreter)?;
            if rvm != interp {
                return Ok(Some(format!(
                    "grants of a {} with roles {:?}",
                    p.kind, p.roles
                )));
            }
            let topics = interp
                .source()
                .publish
                .iter()
                .chain(&interp.source().subscribe);
            for topic in topics.map(String::as_str).chain(["sample/topic", "$SYS/x"]) {
                for action in [Action::Publish, Action::Subscribe, Action::Read] {
                    let input = AclInput::new(&p, "sample", action, topic);
                    if self.eval_allow(&input, Evaluator::Rvm)?
                        != self.eval_allow(&input, Evaluator::Interpreter)?
                    {
                        return Ok(Some(format!("allow for {action:?} {topic:?}")));
                    }
                }
            }
        }
        Ok(None)
    }

    /// This set, labelled as stored version `n`: the label travels with the set, so whoever
    /// reads the serving set reads its version in the same load (never one set's version with
    /// another's rules).
    pub fn with_version(mut self, n: u64) -> Self {
        self.version = Some(n);
        self
    }

    /// The stored version this set was built from, if it was labelled.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The evaluator decisions are served from (the RVM unless it failed the load-time cross-check).
    pub fn evaluator(&self) -> Evaluator {
        self.evaluator
    }

    /// Things a person should know about this set (shown by `policy check` and logged on load).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Rego packages in the set.
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// The files the set was built from.
    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    /// Number of non-test policy files.
    pub fn policy_count(&self) -> usize {
        self.sources.iter().filter(|s| !s.is_test()).count()
    }

    fn run(
        &self,
        program: &Arc<Program>,
        entry: &str,
        input: regorus::Value,
        ev: Evaluator,
    ) -> Result<regorus::Value> {
        match ev {
            Evaluator::Rvm => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                if let Some(d) = &self.data {
                    vm.set_data(d.clone()).map_err(|e| entry_err(entry, e))?;
                }
                vm.set_input(input);
                vm.execute().map_err(|e| entry_err(entry, e))
            }
            Evaluator::Interpreter => {
                let mut engine = self.engine.clone();
                engine.set_input(input);
                engine
                    .eval_rule(entry.to_owned())
                    .map_err(|e| entry_err(entry, e))
            }
        }
    }

    /// The principal's grants, compiled for per-message checks.
    pub fn grants(&self, principal: &Principal) -> Result<CompiledGrants> {
        self.grants_with(principal, self.evaluator)
    }

    /// [`PolicySet::grants`], memoized for the life of this set by what the grants can depend on
    /// (see [`cache`]).
    pub fn grants_cached(&self, principal: &Principal) -> Result<Arc<CompiledGrants>> {
        self.cache.get_or(principal, || self.grants(principal))
    }

    /// Grants-cache (hits, misses) of this set.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Whether this set's grants cache tells principals apart by client id and by protocol
    /// (only when the policy can read them).
    pub fn cache_keys_on(&self) -> (bool, bool) {
        let f = self.cache.fields();
        (f.client_id, f.protocol)
    }

    /// The principal's grants on a chosen evaluator.
    pub fn grants_with(&self, principal: &Principal, ev: Evaluator) -> Result<CompiledGrants> {
        let input = to_rego(&json!({ "principal": principal }))?;
        let out = self.run(&self.grants_program, GRANTS_ENTRYPOINT, input, ev)?;
        if out == regorus::Value::Undefined {
            // No grants rule fired: nothing is granted.
            return CompiledGrants::compile(Default::default());
        }
        CompiledGrants::compile(grants_from_json(to_json(&out)?)?)
    }

    /// The `allow` decision for one request. Errors and non-boolean results are errors (callers deny).
    pub fn eval_allow(&self, input: &AclInput<'_>, ev: Evaluator) -> Result<bool> {
        let out = self.run(&self.allow_program, ALLOW_ENTRYPOINT, to_rego(input)?, ev)?;
        match out {
            regorus::Value::Bool(b) => Ok(b),
            regorus::Value::Undefined => Ok(false),
            other => Err(Error::policy(format!(
                "{ALLOW_ENTRYPOINT} must be a boolean, got {other}"
            ))),
        }
    }

    /// Evaluate any rule on the interpreter with a JSON input (for `policy eval`).
    pub fn eval_json(&self, entry: &str, input: &Json) -> Result<Json> {
        let mut engine = self.engine.clone();
        engine.set_input(to_rego(input)?);
        to_json(&engine.eval_rule(entry.to_owned()).map_err(policy_err)?)
    }
}

/// The policy set an enforcement point serves from; reloads swap the whole set at once, so no
/// decision ever sees a half-loaded policy, and a failed reload leaves the old set serving.
#[derive(Debug)]
pub struct SharedPolicy {
    current: ArcSwap<PolicySet>,
}

impl SharedPolicy {
    /// Start serving `set`.
    pub fn new(set: PolicySet) -> Self {
        SharedPolicy {
            current: ArcSwap::from_pointee(set),
        }
    }
    /// The set in force now (cheap; hold it for one decision).
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }
    /// Build a new set from `sources`; swap it in only if it is valid.
    pub fn reload(&self, sources: Vec<PolicySource>) -> Result<()> {
        self.replace(PolicySet::from_sources(sources)?);
        Ok(())
    }
    /// Serve `set` from now on.
    pub fn replace(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
    }
}

#[cfg(test)]
mod tests;
