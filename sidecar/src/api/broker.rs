//! Broker auth over HTTP: mosquitto-go-auth's `/user`, `/acl`, `/superuser` (JWT backend in
//! remote mode, and the plain HTTP backend) and the internal `/internal/mqtt/*` pair.
//!
//! Every answer comes from the same connect decision as the embedded broker's hook
//! ([`broker_auth_runtime::LiveAuth::authorize`]) and the same grant match, so a principal gets the
//! same yes or no here as on our own MQTT port.
//!
//! Responses satisfy go-auth's `status` and `json` response modes at once: 200 with
//! `{"ok": true}` allows, 403 with `{"ok": false, "error": …}` denies. These routes are not rate
//! limited per IP: their only caller is a broker, which asks once per client and topic.
//!
//! Where the token comes from: `Authorization: Bearer` (JWT backend, where the MQTT username is
//! the token), else the body's `password` (HTTP backend user check). The HTTP backend's ACL and
//! superuser checks carry only `username`; then the principal is the identity of that id in the
//! store, with what a login would give it. That is only sound because the user check refuses a
//! token presented under someone else's username.

use broker_auth::decision::Authorized;
use broker_auth::{Action, CompiledGrants, Decision, DenyCode, Protocol};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_or_form_body, optional_secret, shared_secret, with_state};
use super::reject;
use crate::error::SidecarError;
use crate::state::State;

/// go-auth sends `acc` as an integer in JSON mode and as a string in form mode.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Acc {
    Number(i64),
    Text(String),
}

impl Acc {
    fn bits(&self) -> Result<i64, SidecarError> {
        let n = match self {
            Acc::Number(n) => *n,
            Acc::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| SidecarError::Validation("acc must be 1, 2, 3 or 4".into()))?,
        };
        if !(1..=7).contains(&n) {
            return Err(SidecarError::Validation("acc must be 1, 2, 3 or 4".into()));
        }
        Ok(n)
    }

    /// The actions `acc` asks for: 1 read, 2 publish, 4 subscribe; combined bits need them all.
    fn actions(&self) -> Result<Vec<Action>, SidecarError> {
        let bits = self.bits()?;
        Ok([
            (1, Action::Read),
            (2, Action::Publish),
            (4, Action::Subscribe),
        ]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, a)| a)
        .collect())
    }
}

/// mosquitto-go-auth's user, superuser and ACL bodies in one (each check uses what it needs).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct GoAuthRequest {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub clientid: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub acc: Option<Acc>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn answer(ok: bool, reason: &str) -> warp::reply::Response {
    if ok {
        json_reply(StatusCode::OK, json!({"ok": true, "reason": reason}))
    } else {
        json_reply(
            StatusCode::FORBIDDEN,
            json!({"ok": false, "reason": reason, "error": reason}),
        )
    }
}

fn reason_text(code: DenyCode) -> &'static str {
    match code {
        DenyCode::MissingToken => "missing token",
        c if c.is_authentication_failure() => "invalid credentials",
        _ => "denied",
    }
}

/// Who is asking: by token, or (HTTP backend, no token) by the identity named `username`.
fn principal_grants(
    state: &State,
    token: Option<&str>,
    req: &GoAuthRequest,
) -> Result<(Option<String>, std::sync::Arc<CompiledGrants>), DenyCode> {
    if token.is_some() {
        let a = authorize(state, token, req)?;
        return Ok((Some(a.principal.id), a.grants));
    }
    let name = nonempty(&req.username).ok_or(DenyCode::MissingToken)?;
    let (id, grants) =
        crate::domain::tokens::grants_of_identity(state, name, nonempty(&req.clientid))?;
    Ok((Some(id), grants))
}

/// The connect decision, exactly as the embedded broker's CONNECT hook makes it.
fn decide(state: &State, token: Option<&str>, client_id: Option<&str>) -> Decision<Authorized> {
    state
        .auth
        .authorize(state.now(), token, Protocol::Mqtt, client_id)
}

fn authorize(
    state: &State,
    token: Option<&str>,
    req: &GoAuthRequest,
) -> Result<Authorized, DenyCode> {
    match decide(state, token, nonempty(&req.clientid)) {
        Decision::Permit(p) => Ok(p.value),
        Decision::Deny(d) => Err(d.code),
    }
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn token_of<'a>(bearer: &'a Option<String>, req: &'a GoAuthRequest) -> Option<&'a str> {
    nonempty(bearer).or_else(|| nonempty(&req.password))
}

fn user_check(state: &State, bearer: Option<String>, req: GoAuthRequest) -> warp::reply::Response {
    let token = token_of(&bearer, &req);
    let result = authorize(state, token, &req).and_then(|a| {
        // A token under someone else's username would let the username-keyed ACL checks of the
        // HTTP backend answer for that other identity.
        match nonempty(&req.username) {
            Some(u) if Some(u) != token && u != a.principal.id && u != a.claims.sub => {
                Err(DenyCode::InvalidPrincipal)
            }
            _ => Ok(()),
        }
    });
    observe(state, "mqtt_user", &result);
    match result {
        Ok(()) => answer(true, "authenticated"),
        Err(DenyCode::InvalidPrincipal) => answer(false, "username does not match the token"),
        Err(c) => answer(false, reason_text(c)),
    }
}

fn acl_check(
    state: &State,
    bearer: Option<String>,
    req: GoAuthRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let topic = nonempty(&req.topic)
        .ok_or_else(|| SidecarError::Validation("topic is required".into()))?
        .to_owned();
    let actions = req
        .acc
        .as_ref()
        .ok_or_else(|| SidecarError::Validation("acc is required".into()))?
        .actions()?;
    let token = token_of(&bearer, &req);
    let result = principal_grants(state, token, &req).and_then(|(_, g)| {
        match actions.iter().all(|a| g.allows(*a, &topic)) {
            true => Ok(()),
            false => Err(DenyCode::NotGranted),
        }
    });
    observe(state, "mqtt_acl", &result);
    Ok(match result {
        Ok(()) => answer(true, "authorized"),
        Err(c) => answer(false, reason_text(c)),
    })
}

fn superuser_check(
    state: &State,
    bearer: Option<String>,
    req: GoAuthRequest,
) -> warp::reply::Response {
    let token = token_of(&bearer, &req);
    let result = principal_grants(state, token, &req).and_then(|(_, g)| match g.superuser() {
        true => Ok(()),
        false => Err(DenyCode::NotGranted),
    });
    observe(state, "mqtt_superuser", &result);
    match result {
        Ok(()) => answer(true, "superuser"),
        Err(c) => answer(false, reason_text(c)),
    }
}

fn observe(state: &State, action: &'static str, r: &Result<(), DenyCode>) {
    state.metrics.outcome(
        action,
        match r {
            Ok(()) => "allowed",
            Err(c) => c.as_str(),
        },
    );
}

/// `/internal/mqtt/auth` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalAuthRequest {
    pub token: String,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `/internal/mqtt/acl` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalAclRequest {
    pub token: String,
    #[serde(default)]
    pub client_id: Option<String>,
    pub topic: String,
    /// `publish`, `subscribe` or `read`.
    pub action: String,
}

fn internal_auth(state: &State, req: InternalAuthRequest) -> warp::reply::Response {
    let (status, body) = match decide(state, Some(&req.token), req.client_id.as_deref()) {
        Decision::Permit(p) => {
            let a = p.value;
            let src = a.grants.source();
            (
                StatusCode::OK,
                json!({
                    "allow": true,
                    "reason": p.reason,
                    "identity": a.principal.id,
                    "superuser": a.grants.superuser(),
                    "expires_at": a.claims.exp,
                    "publish": src.publish,
                    "subscribe": src.subscribe,
                }),
            )
        }
        Decision::Deny(d) => (
            StatusCode::FORBIDDEN,
            json!({"allow": false, "reason": d.code.as_str()}),
        ),
    };
    json_reply(status, body)
}

fn internal_acl(
    state: &State,
    req: InternalAclRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let action = match req.action.as_str() {
        "publish" => Action::Publish,
        "subscribe" => Action::Subscribe,
        "read" => Action::Read,
        _ => {
            return Err(SidecarError::Validation(
                "action must be publish, subscribe or read".into(),
            ));
        }
    };
    let verdict = match decide(state, Some(&req.token), req.client_id.as_deref()) {
        Decision::Permit(p) => p.value.grants.check(action, &req.topic),
        Decision::Deny(d) => Decision::Deny(d),
    };
    let (status, body) = match verdict {
        Decision::Permit(p) => (StatusCode::OK, json!({"allow": true, "reason": p.reason})),
        Decision::Deny(d) => (
            StatusCode::FORBIDDEN,
            json!({"allow": false, "reason": d.code.as_str()}),
        ),
    };
    Ok(json_reply(status, body))
}

fn internal_gate(state: State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    shared_secret(state, &["x-internal-secret"], |s| {
        s.config.internal_secret.as_ref()
    })
}

/// `/user`, `/acl`, `/superuser` behind `BROKER_ROUTES_SECRET` in `X-Broker-Secret` when one is
/// set: without it they tell anyone who is a superuser and what an id may do.
fn broker_gate(state: State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    optional_secret(state, &["x-broker-secret"], |s| {
        s.config.broker_routes_secret.as_ref()
    })
}

pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let user = warp::path!("user")
        .and(warp::post())
        .and(broker_gate(state.clone()))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_or_form_body::<GoAuthRequest>())
        .map(|s: State, b, r| user_check(&s, b, r));
    let acl = warp::path!("acl")
        .and(warp::post())
        .and(broker_gate(state.clone()))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_or_form_body::<GoAuthRequest>())
        .and_then(|s: State, b, r| async move { acl_check(&s, b, r).map_err(reject) });
    let superuser = warp::path!("superuser")
        .and(warp::post())
        .and(broker_gate(state.clone()))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_or_form_body::<GoAuthRequest>())
        .map(|s: State, b, r| superuser_check(&s, b, r));
    let i_auth = warp::path!("internal" / "mqtt" / "auth")
        .and(warp::post())
        .and(internal_gate(state.clone()))
        .and(with_state(state.clone()))
        .and(json_or_form_body::<InternalAuthRequest>())
        .map(|s: State, r| internal_auth(&s, r));
    let i_acl = warp::path!("internal" / "mqtt" / "acl")
        .and(warp::post())
        .and(internal_gate(state.clone()))
        .and(with_state(state))
        .and(json_or_form_body::<InternalAclRequest>())
        .and_then(|s: State, r| async move { internal_acl(&s, r).map_err(reject) });
    user.or(acl)
        .unify()
        .or(superuser)
        .unify()
        .or(i_auth)
        .unify()
        .or(i_acl)
        .unify()
}
