//! The policy routes (`/policies…`, admins only): the live version, history, validate, deploy,
//! rollback, eval and the access diff. Bodies up to [`POLICY_BODY_LIMIT`]; the rules are in
//! [`crate::domain::policies`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::TestResult;
use super::extract::{POLICY_BODY_LIMIT, bearer, json_body_up_to, limited, with_state};
use super::reject;
use crate::domain::policies::{self as domain, DiffTarget};
use crate::state::State;
use crate::store::PolicyVersionRecord;

/// A whole bundle: file name → text (`*.rego`, `*_test.rego`, `data.json`).
pub type Files = BTreeMap<String, String>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub files: Files,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub files: Files,
    #[serde(default)]
    pub message: String,
    /// The live version the edit was made on (409 when another deploy came first).
    pub base_version: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub version: u64,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    /// The policy input, e.g. `{"principal": {…}}` or `{"principal", "topic", "action", …}`.
    #[schema(value_type = Object)]
    pub input: Value,
    /// A candidate bundle instead of the live one.
    pub files: Option<Files>,
    /// A rule path (`data.broker.grants` or `data.broker.mqtt.acl.allow` by default).
    pub query: Option<String>,
    #[serde(default)]
    pub explain: bool,
}

/// A version number, or a candidate bundle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DiffTo {
    Version(u64),
    Bundle { files: Files },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// Default: the live version.
    pub from: Option<u64>,
    pub to: DiffTo,
    /// Most principals examined (default and most 10,000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

/// A version's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersion {
    pub version: u64,
    pub hash: String,
    /// RFC 3339.
    pub created_at: String,
    pub author: String,
    /// `dir`, `api` or `rollback`.
    pub source: String,
    pub message: String,
}

impl From<&PolicyVersionRecord> for PolicyVersion {
    fn from(r: &PolicyVersionRecord) -> Self {
        PolicyVersion {
            version: r.version,
            hash: r.hash.clone(),
            created_at: crate::clock::rfc3339(r.created_at),
            author: r.author.clone(),
            source: r.source.as_str().to_owned(),
            message: r.message.clone(),
        }
    }
}

fn evaluator_name(set: &broker_auth::policy::PolicySet) -> &'static str {
    match set.evaluator() {
        broker_auth::policy::Evaluator::Rvm => "rvm",
        broker_auth::policy::Evaluator::Interpreter => "interpreter",
    }
}

async fn get_live(
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let (rec, set) = domain::get_live(&state, bearer.as_deref()).map_err(reject)?;
    let files = rec
        .files
        .iter()
        .map(|(name, text)| FileInfo {
            name: name.clone(),
            bytes: text.len(),
            sha256: crate::state::sha256_hex(text),
        })
        .collect();
    let body = LivePolicy {
        version: PolicyVersion::from(&rec),
        evaluator: evaluator_name(&set).to_owned(),
        packages: set.packages().to_vec(),
        files,
    };
    Ok(warp::reply::json(&body).into_response())
}

async fn list(
    q: VersionsQuery,
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let v = domain::versions(&state, bearer.as_deref(), q.limit, q.before).map_err(reject)?;
    let body = PolicyVersions {
        versions: v.iter().map(PolicyVersion::from).collect(),
    };
    Ok(warp::reply::json(&body).into_response())
}

async fn one(
    n: u64,
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let rec = domain::version(&state, bearer.as_deref(), n).map_err(reject)?;
    let body = PolicyVersionFiles {
        version: PolicyVersion::from(&rec),
        files: rec.files,
    };
    Ok(warp::reply::json(&body).into_response())
}

async fn validate(
    state: State,
    bearer: Option<String>,
    req: ValidateRequest,
) -> Result<warp::reply::Response, Rejection> {
    let (set, tests) = domain::validate(&state, bearer.as_deref(), req.files)
        .await
        .map_err(reject)?;
    let body = Validated {
        valid: true,
        evaluator: evaluator_name(&set).to_owned(),
        tests: tests.outcomes.iter().map(TestResult::from).collect(),
        warnings: set.warnings().to_vec(),
    };
    Ok(warp::reply::json(&body).into_response())
}

fn created(rec: &PolicyVersionRecord) -> warp::reply::Response {
    let body = warp::reply::json(&PolicyVersion::from(rec));
    warp::reply::with_status(body, StatusCode::CREATED).into_response()
}

async fn deploy(
    state: State,
    bearer: Option<String>,
    req: DeployRequest,
) -> Result<warp::reply::Response, Rejection> {
    let rec = domain::deploy(
        &state,
        bearer.as_deref(),
        req.files,
        req.message,
        req.base_version,
    )
    .await
    .map_err(reject)?;
    Ok(created(&rec))
}

async fn rollback(
    state: State,
    bearer: Option<String>,
    req: RollbackRequest,
) -> Result<warp::reply::Response, Rejection> {
    let rec = domain::rollback(&state, bearer.as_deref(), req.version, req.message)
        .await
        .map_err(reject)?;
    Ok(created(&rec))
}

async fn eval(
    state: State,
    bearer: Option<String>,
    req: EvalRequest,
) -> Result<warp::reply::Response, Rejection> {
    let out = domain::eval(
        &state,
        bearer.as_deref(),
        req.input,
        req.files,
        req.query,
        req.explain,
    )
    .await
    .map_err(reject)?;
    Ok(warp::reply::json(&out).into_response())
}

async fn diff(
    state: State,
    bearer: Option<String>,
    req: DiffRequest,
) -> Result<warp::reply::Response, Rejection> {
    let to = match req.to {
        DiffTo::Version(n) => DiffTarget::Version(n),
        DiffTo::Bundle { files } => DiffTarget::Files(files),
    };
    let report = domain::diff(&state, bearer.as_deref(), req.from, to, req.limit)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&report).into_response())
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let s = || with_state(state.clone());
    let lim = |route| limited(state.clone(), route);
    let live_r = warp::path!("policies")
        .and(crate::api::extract::get())
        .and(lim("GET /policies"))
        .and(s())
        .and(bearer())
        .and_then(get_live);
    let list_r = warp::path!("policies" / "versions")
        .and(crate::api::extract::get())
        .and(lim("GET /policies/versions"))
        .and(warp::query::<VersionsQuery>())
        .and(s())
        .and(bearer())
        .and_then(list);
    let one_r = warp::path!("policies" / "versions" / u64)
        .and(crate::api::extract::get())
        .and(lim("GET /policies/versions/{n}"))
        .and(s())
        .and(bearer())
        .and_then(one);
    let validate_r = warp::path!("policies" / "validate")
        .and(warp::post())
        .and(lim("POST /policies/validate"))
        .and(s())
        .and(bearer())
        .and(json_body_up_to::<ValidateRequest>(POLICY_BODY_LIMIT))
        .and_then(validate);
    let deploy_r = warp::path!("policies")
        .and(warp::post())
        .and(lim("POST /policies"))
        .and(s())
        .and(bearer())
        .and(json_body_up_to::<DeployRequest>(POLICY_BODY_LIMIT))
        .and_then(deploy);
    let rollback_r = warp::path!("policies" / "rollback")
        .and(warp::post())
        .and(lim("POST /policies/rollback"))
        .and(s())
        .and(bearer())
        .and(json_body_up_to::<RollbackRequest>(POLICY_BODY_LIMIT))
        .and_then(rollback);
    let eval_r = warp::path!("policies" / "eval")
        .and(warp::post())
        .and(lim("POST /policies/eval"))
        .and(s())
        .and(bearer())
        .and(json_body_up_to::<EvalRequest>(POLICY_BODY_LIMIT))
        .and_then(eval);
    let diff_r = warp::path!("policies" / "diff")
        .and(warp::post())
        .and(lim("POST /policies/diff"))
        .and(s())
        .and(bearer())
        .and(json_body_up_to::<DiffRequest>(POLICY_BODY_LIMIT))
        .and_then(diff);
    live_r
        .or(list_r)
        .unify()
        .or(one_r)
        .unify()
        .or(validate_r)
        .unify()
        .or(deploy_r)
        .unify()
        .or(rollback_r)
        .unify()
        .or(eval_r)
        .unify()
        .or(diff_r)
        .unify()
        .boxed()
}

// --- response shapes: what the handlers answer, and the OpenAPI document's schemas -------------

/// One file of the live bundle.
#[derive(Serialize, ToSchema)]
pub struct FileInfo {
    pub name: String,
    pub bytes: usize,
    pub sha256: String,
}

/// `GET /policies`.
#[derive(Serialize, ToSchema)]
pub struct LivePolicy {
    #[serde(flatten)]
    pub version: PolicyVersion,
    /// `rvm` or `interpreter`.
    pub evaluator: String,
    pub packages: Vec<String>,
    pub files: Vec<FileInfo>,
}

/// `GET /policies/versions`.
#[derive(Serialize, ToSchema)]
pub struct PolicyVersions {
    pub versions: Vec<PolicyVersion>,
}

/// `GET /policies/versions/{n}`.
#[derive(Serialize, ToSchema)]
pub struct PolicyVersionFiles {
    #[serde(flatten)]
    pub version: PolicyVersion,
    pub files: Files,
}

/// `POST /policies/validate`: the bundle passed the gate.
#[derive(Serialize, ToSchema)]
pub struct Validated {
    pub valid: bool,
    pub evaluator: String,
    pub tests: Vec<TestResult>,
    pub warnings: Vec<String>,
}

/// `POST /policies/eval`.
#[derive(Serialize, ToSchema)]
pub struct EvalResult {
    pub entrypoint: String,
    /// The rule's value (null when undefined).
    pub result: Value,
    /// With explain: `[{rule, location, value}]`.
    pub fired: Option<Vec<Value>>,
    /// With explain: `file:line` of every evaluated line.
    pub lines: Option<Vec<String>>,
}

/// Patterns gained and lost.
#[derive(Serialize, ToSchema)]
pub struct PatternChangeView {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A value before and after.
#[derive(Serialize, ToSchema)]
pub struct BoolChange {
    pub from: bool,
    pub to: bool,
}

/// One principal whose access changes.
#[derive(Serialize, ToSchema)]
pub struct PrincipalChange {
    /// `{id, type, tenant, roles, scopes, groups, devices, …}` as the policy sees it.
    pub principal: Value,
    pub publish: PatternChangeView,
    pub subscribe: PatternChangeView,
    pub nats_publish: PatternChangeView,
    pub nats_subscribe: PatternChangeView,
    pub superuser: BoolChange,
    /// When it differs.
    pub nats_allow_responses: Option<BoolChange>,
    /// When they differ: `{from, to}`, null meaning any client id.
    pub client_ids: Option<Value>,
    /// When the policy failed on this principal: `{from, to}` error texts.
    pub errors: Option<Value>,
}

/// `POST /policies/diff`.
#[derive(Serialize, ToSchema)]
pub struct AccessDiff {
    pub from: u64,
    /// Null for a candidate bundle.
    pub to: Option<u64>,
    pub principals_examined: usize,
    pub truncated: bool,
    pub changed: Vec<PrincipalChange>,
}
