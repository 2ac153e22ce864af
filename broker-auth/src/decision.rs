//! Decisions: a [`Permit`] carrying what was granted and why, or a [`Denial`] with a stable code.
//!
//! Nothing here returns a bare bool: every "no" says which rule said it, so logs, metrics, MQTT
//! reason strings and NATS callout errors all speak the same vocabulary ([`DenyCode::as_str`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::UnixTime;
use crate::grants::CompiledGrants;
use crate::policy::PolicySet;
use crate::principal::{Principal, Protocol};
use crate::revocation::Revocations;
use crate::token::{Claims, KeySet, TokenUse, Verifier, VerifyCache};

/// The outcome of an authorization question.
#[derive(Debug, Clone)]
#[must_use]
pub enum Decision<T = ()> {
    /// Allowed.
    Permit(Permit<T>),
    /// Refused.
    Deny(Denial),
}

/// An allowed outcome.
#[derive(Debug, Clone)]
pub struct Permit<T = ()> {
    /// Why it was allowed (`superuser`, `granted`, `authenticated`).
    pub reason: &'static str,
    /// What the permit carries (for a connect: the principal and its grants).
    pub value: T,
}

/// A refused outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable machine code.
    pub code: DenyCode,
    /// Human detail; never contains a token or secret.
    pub detail: Cow<'static, str>,
}

impl<T> Decision<T> {
    /// Shorthand for a denial with a static detail.
    pub fn deny(code: DenyCode, detail: &'static str) -> Self {
        Decision::Deny(Denial {
            code,
            detail: Cow::Borrowed(detail),
        })
    }
    /// Shorthand for a permit.
    pub fn permit(reason: &'static str, value: T) -> Self {
        Decision::Permit(Permit { reason, value })
    }
    /// True for a permit.
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }
    /// The denial, if any.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Deny(d) => Some(d),
            Decision::Permit(_) => None,
        }
    }
}

/// Why something was refused. The string forms are part of the product's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyCode {
    /// No token was presented.
    MissingToken,
    /// Not a well-formed JWT (segments, base64, JSON, required claims).
    MalformedToken,
    /// Larger than the accepted maximum.
    TokenTooLarge,
    /// Header has fields we refuse (`crit`, `jku`, `x5u`, `jwk`, ...) or lacks `kid`.
    BadHeader,
    /// `alg` is not one we accept (`none`, RSA, ...).
    UnsupportedAlgorithm,
    /// No key with this `kid` in the key set.
    UnknownKey,
    /// The token's `alg` is not its key's algorithm.
    AlgorithmMismatch,
    /// Signature did not verify.
    BadSignature,
    /// `exp` is in the past (beyond leeway).
    Expired,
    /// `nbf` is in the future (beyond leeway).
    NotYetValid,
    /// Wrong `iss`.
    WrongIssuer,
    /// Wrong `aud`.
    WrongAudience,
    /// A refresh token used as an access token or the other way round.
    WrongTokenUse,
    /// Session or identity revoked.
    Revoked,
    /// Claims do not make a valid principal (unsafe names, unknown type).
    InvalidPrincipal,
    /// The policy failed to evaluate; we deny.
    PolicyError,
    /// The principal has no grants at all.
    NoGrants,
    /// The topic or filter is not covered by the principal's grants.
    NotGranted,
    /// The topic or filter is not well-formed.
    InvalidTopic,
    /// The MQTT client id holds a live or persisted session of another identity.
    ClientIdInUse,
    /// The policy's `client_ids` do not include the MQTT client id.
    ClientIdNotGranted,
    /// Revocations come from a feed that has not answered recently: nothing can be admitted.
    RevocationsStale,
}

impl DenyCode {
    /// Stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::MissingToken => "missing_token",
            DenyCode::MalformedToken => "malformed_token",
            DenyCode::TokenTooLarge => "token_too_large",
            DenyCode::BadHeader => "bad_header",
            DenyCode::UnsupportedAlgorithm => "unsupported_algorithm",
            DenyCode::UnknownKey => "unknown_key",
            DenyCode::AlgorithmMismatch => "algorithm_mismatch",
            DenyCode::BadSignature => "bad_signature",
            DenyCode::Expired => "token_expired",
            DenyCode::NotYetValid => "token_not_yet_valid",
            DenyCode::WrongIssuer => "wrong_issuer",
            DenyCode::WrongAudience => "wrong_audience",
            DenyCode::WrongTokenUse => "wrong_token_use",
            DenyCode::Revoked => "revoked",
            DenyCode::InvalidPrincipal => "invalid_principal",
            DenyCode::PolicyError => "policy_error",
            DenyCode::NoGrants => "no_grants",
            DenyCode::NotGranted => "not_granted",
            DenyCode::InvalidTopic => "invalid_topic",
            DenyCode::ClientIdInUse => "client_id_in_use",
            DenyCode::ClientIdNotGranted => "client_id_not_granted",
            DenyCode::RevocationsStale => "revocations_stale",
        }
    }

    /// True when the failure is about the credential (bad/expired/revoked token), as opposed to
    /// what the credential may do. MQTT maps the first to CONNACK 4 / 0x86, the second to 5 / 0x87.
    pub fn is_authentication_failure(self) -> bool {
        !matches!(
            self,
            DenyCode::PolicyError
                | DenyCode::NoGrants
                | DenyCode::NotGranted
                | DenyCode::InvalidTopic
                | DenyCode::ClientIdInUse
                | DenyCode::ClientIdNotGranted
                | DenyCode::RevocationsStale
        )
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connect permit carries: who the client is and what it may do, computed once.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The verified principal.
    pub principal: Principal,
    /// The verified claims (for `exp` and `sid`).
    pub claims: Claims,
    /// Grants compiled for per-message checks.
    pub grants: Arc<CompiledGrants>,
}

/// Everything a connect decision needs, borrowed from the adapter's in-memory state.
#[derive(Clone, Copy)]
pub struct ConnectContext<'a> {
    /// Token verifier (issuer, audience, leeway).
    pub verifier: &'a Verifier,
    /// Current key set.
    pub keys: &'a KeySet,
    /// Revocation set.
    pub revocations: &'a dyn Revocations,
    /// Current policy set.
    pub policy: &'a PolicySet,
    /// Remembered verifications (connect paths where tokens come back), if any.
    pub cache: Option<&'a VerifyCache>,
    /// Current time.
    pub now: UnixTime,
}

/// Authenticate a client by its access token and compute its grants: the connect-time decision
/// of every enforcement point (MQTT CONNECT, NATS callout, HTTP broker auth).
pub fn authorize_connect(
    ctx: ConnectContext<'_>,
    token: Option<&str>,
    protocol: Protocol,
    client_id: Option<&str>,
) -> Decision<Authorized> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Decision::deny(DenyCode::MissingToken, "no token presented");
    };
    let verified = match ctx.cache {
        Some(cache) => cache.verify(
            ctx.verifier,
            ctx.keys,
            token,
            ctx.now,
            ctx.revocations,
            TokenUse::Access,
        ),
        None => ctx
            .verifier
            .verify(ctx.keys, token, ctx.now, ctx.revocations, TokenUse::Access),
    };
    let mut claims = match verified {
        Ok(c) => c,
        Err(code) => return Decision::deny(code, "token rejected"),
    };
    // What the token says about its identity is stale when the identity changed after it was
    // issued; read the identity as it is now.
    if let Some(now_attrs) = ctx.revocations.identity_update(&claims.sub, claims.iat) {
        now_attrs.apply(&mut claims);
    }
    let principal = match Principal::from_claims(&claims, protocol, client_id) {
        Ok(p) => p,
        Err(code) => return Decision::deny(code, "token claims are not a valid principal"),
    };
    let grants = match ctx.policy.grants_cached(&principal) {
        Ok(g) => g,
        // The client learns only the code; the detail (which rule, where) is for the adapter's
        // log, so a broken policy is visible and not just a wall of refusals.
        Err(e) => {
            return Decision::Deny(Denial {
                code: DenyCode::PolicyError,
                detail: Cow::Owned(format!("policy evaluation failed: {e}")),
            });
        }
    };
    if grants.is_empty() {
        return Decision::deny(
            DenyCode::NoGrants,
            "the policy grants nothing to this principal",
        );
    }
    // Only MQTT has client ids that name a session; a NATS client name is informational.
    if protocol == Protocol::Mqtt && !grants.allows_client_id(client_id) {
        return Decision::deny(
            DenyCode::ClientIdNotGranted,
            "the policy does not allow this client id",
        );
    }
    let reason = if grants.superuser() {
        "superuser"
    } else {
        "authenticated"
    };
    Decision::permit(
        reason,
        Authorized {
            principal,
            claims,
            grants,
        },
    )
}

/// Decisions counted by reason code, for whoever exports metrics. Codes are `&'static str`
/// ([`DenyCode::as_str`] and friends), so the set of labels is bounded.
#[derive(Debug, Default)]
pub struct ReasonCounts(std::sync::Mutex<std::collections::HashMap<&'static str, u64>>);

impl ReasonCounts {
    /// Count one occurrence of `reason`.
    pub fn add(&self, reason: &'static str) {
        // A poisoned lock still holds plain counters; keep counting.
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// Every reason with its count, sorted by reason.
    pub fn sorted(&self) -> Vec<(&'static str, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort();
        v
    }
}
