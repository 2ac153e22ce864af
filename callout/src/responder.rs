//! One authorization request in, one response out: no I/O, so every rule is a unit test.
//!
//! A request is (optionally) xkey-sealed; inside is an authorization-request JWT signed by the
//! asking server. We verify it, take the client's token from `connect_opts` (`auth_token`, else
//! `pass`, else `jwt`), run the same connect decision as every other enforcement point, and answer
//! with an authorization-response JWT that carries either a user JWT (its `sub` the per-connection
//! `user_nkey`, its permissions the principal's grants, its `exp` the token's) or an error code.

use std::collections::HashMap;

use broker_auth::enforce::LiveConn;
use broker_auth::nats_jwt::{self, AuthorizationRequest, AuthorizationResponse, NatsClaims, User};
use broker_auth::{Decision, DenyCode, Protocol, UnixTime};

use crate::error::CalloutError;
use crate::permissions::permissions_for;

/// The in-memory state decisions are made from; shared with the sidecar when co-located.
pub use broker_auth_runtime::LiveAuth as Shared;

/// Which NATS account a principal lands in (config mode: account *names*).
#[derive(Clone, Debug, Default)]
pub struct AccountMap {
    /// Account for principals without a tenant mapping.
    pub default: String,
    /// tenant → account.
    pub tenants: HashMap<String, String>,
}

impl AccountMap {
    pub fn account_for(&self, tenant: Option<&str>) -> &str {
        tenant
            .and_then(|t| self.tenants.get(t))
            .map_or(&self.default, String::as_str)
    }
}

/// What happened, for logs, metrics and connection tracking. Never holds the client's token.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub server_id: String,
    pub client_cid: Option<u64>,
    pub user_nkey: String,
    pub principal: Option<String>,
    pub session: Option<String>,
    pub expires_at: Option<UnixTime>,
    pub result: Result<&'static str, DenyCode>,
    /// What an allowed connection was admitted on, for the enforcement runtime.
    pub conn: Option<std::sync::Arc<LiveConn>>,
}

/// Signs responses (config mode: the issuer account) and opens/seals xkey traffic.
pub struct Responder {
    issuer: nkeys::KeyPair,
    xkey: Option<crate::xbox::XBox>,
    accounts: AccountMap,
    // Operator mode: user JWTs are signed by the target account's key (which must be in the
    // callout account's `allowed_accounts`); config mode signs them with `issuer`.
    target: Option<nkeys::KeyPair>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("issuer", &self.issuer.public_key())
            .field(
                "xkey",
                &self.xkey.as_ref().map(|x| x.public_key().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

/// Why no response could be produced at all (the server then times out and refuses the client:
/// fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswerable {
    #[error("request is sealed but no xkey seed is configured")]
    NoXkey,
    #[error("request could not be opened with our xkey")]
    Unseal,
    #[error("request is not a valid authorization request: {0}")]
    BadRequest(String),
    #[error("could not sign the response: {0}")]
    Sign(String),
}

impl Responder {
    pub fn new(
        issuer_seed: &str,
        xkey_seed: Option<&str>,
        accounts: AccountMap,
    ) -> Result<Responder, CalloutError> {
        let issuer = nkeys::KeyPair::from_seed(issuer_seed.trim())
            .map_err(|_| CalloutError::Config("issuer seed is not a valid nkey seed".into()))?;
        if !issuer.public_key().starts_with('A') {
            return Err(CalloutError::Config(
                "the issuer seed must be an account seed (SA…)".into(),
            ));
        }
        let xkey = xkey_seed
            .map(|s| {
                crate::xbox::XBox::from_seed(s).ok_or_else(|| {
                    CalloutError::Config("xkey seed is not a curve seed (SX…)".into())
                })
            })
            .transpose()?;
        Ok(Responder {
            issuer,
            xkey,
            accounts,
            target: None,
        })
    }

    /// Operator mode: `callout_account_seed` signs responses (the account whose `authorization`
    /// names this responder); user JWTs are issued by the `target` account, where clients land.
    pub fn operator(
        callout_account_seed: &str,
        xkey_seed: Option<&str>,
        target: nkeys::KeyPair,
    ) -> Result<Responder, CalloutError> {
        if !target.public_key().starts_with('A') {
            return Err(CalloutError::Config(
                "the target account signer must be an account key (SA…)".into(),
            ));
        }
        let mut r = Responder::new(callout_account_seed, xkey_seed, AccountMap::default())?;
        r.target = Some(target);
        Ok(r)
    }

    pub fn issuer_public_key(&self) -> String {
        self.issuer.public_key()
    }

    /// Answer one request. `server_xkey` is the `Nats-Server-Xkey` header, if any.
    pub fn respond(
        &self,
        shared: &Shared,
        payload: &[u8],
        server_xkey: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<u8>, Outcome), Unanswerable> {
        let sender = server_xkey;
        let opened;
        let body: &[u8] = match (sender, &self.xkey) {
            (Some(sender), Some(ours)) => {
                opened = ours
                    .open(payload, sender)
                    .map_err(|_| Unanswerable::Unseal)?;
                &opened
            }
            (Some(_), None) => return Err(Unanswerable::NoXkey),
            (None, _) => payload,
        };
        let text =
            std::str::from_utf8(body).map_err(|_| Unanswerable::BadRequest("not UTF-8".into()))?;
        let req: NatsClaims<AuthorizationRequest> =
            nats_jwt::decode(text, now).map_err(|e| Unanswerable::BadRequest(e.to_string()))?;
        let r = &req.nats;
        let mut outcome = Outcome {
            server_id: r.server_id.id.clone(),
            client_cid: r.client_info.id,
            user_nkey: r.user_nkey.clone(),
            principal: None,
            session: None,
            expires_at: None,
            result: Err(DenyCode::MissingToken),
            conn: None,
        };
        let mut response = NatsClaims::<AuthorizationResponse>::new(r.user_nkey.clone());
        response.aud = r.server_id.id.clone();

        if req.iss != r.server_id.id || !r.user_nkey.starts_with('U') {
            outcome.result = Err(DenyCode::MalformedToken);
        } else {
            outcome.result = self.decide(shared, r, now, &mut response, &mut outcome)?;
        }
        if let Err(code) = outcome.result {
            response.nats.jwt = None;
            response.nats.error = Some(code.as_str().to_owned());
        }
        let jwt = nats_jwt::encode(&mut response, &self.issuer, now)
            .map_err(|e| Unanswerable::Sign(e.to_string()))?;
        let out = match (sender, &self.xkey) {
            (Some(sender), Some(ours)) => ours
                .seal(jwt.as_bytes(), sender)
                .map_err(|_| Unanswerable::Sign("xkey seal failed".into()))?,
            _ => jwt.into_bytes(),
        };
        Ok((out, outcome))
    }

    fn decide(
        &self,
        shared: &Shared,
        r: &AuthorizationRequest,
        now: UnixTime,
        response: &mut NatsClaims<AuthorizationResponse>,
        outcome: &mut Outcome,
    ) -> Result<Result<&'static str, DenyCode>, Unanswerable> {
        let o = &r.connect_opts;
        let token = [&o.auth_token, &o.pass, &o.jwt]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|t| !t.trim().is_empty());
        let mqtt =
            r.client_info.client_type.as_deref() == Some("mqtt") || r.client_info.mqtt_id.is_some();
        let protocol = if mqtt { Protocol::Mqtt } else { Protocol::Nats };
        let client_id = r
            .client_info
            .mqtt_id
            .as_deref()
            .or(r.client_info.name.as_deref());
        let permit = match shared.authorize(now, token, protocol, client_id) {
            Decision::Permit(p) => p,
            Decision::Deny(d) => {
                if d.code == DenyCode::PolicyError {
                    tracing::error!(detail = %d.detail, "nats connect: the policy failed");
                }
                return Ok(Err(d.code));
            }
        };
        let a = permit.value;
        outcome.conn = Some(std::sync::Arc::new(LiveConn::from(&a)));
        outcome.principal = Some(a.principal.id.clone());
        outcome.session = a.claims.sid.clone();
        outcome.expires_at = Some(a.claims.exp);
        let mut user = NatsClaims::<User>::new(r.user_nkey.clone());
        user.name = a.principal.id.clone();
        // The server disconnects the client when its token expires.
        user.exp = a.claims.exp;
        user.nats.permissions = permissions_for(&a.grants);
        let tenant = a.principal.tenant.as_deref();
        let signer = match &self.target {
            // Operator mode: the issuing account is where the client lands.
            Some(k) => {
                user.aud = k.public_key();
                k
            }
            // Config mode: the audience names the account.
            None => {
                user.aud = self.accounts.account_for(tenant).to_owned();
                &self.issuer
            }
        };
        // Failing to sign is ours, not the client's: no answer, so the server refuses it.
        let user_jwt = nats_jwt::encode(&mut user, signer, now)
            .map_err(|e| Unanswerable::Sign(e.to_string()))?;
        response.nats.jwt = Some(user_jwt);
        Ok(Ok(permit.reason))
    }
}

#[cfg(test)]
mod tests;
