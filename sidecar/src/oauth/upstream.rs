//! Upstream OpenID Connect login (Tronexus): `GET /oauth/{provider}?app_id=…` and its callback,
//! with the `openidconnect` crate doing discovery, PKCE, the code exchange and ID-token
//! validation (provider JWKS signature, `iss`, `aud`, `exp`, `nonce`).
//!
//! A login in flight is a store record under its `state`, taken exactly once at the callback,
//! and bound to the browser that started it: the start sets a random cookie, scoped to the
//! callback path, whose digest the record keeps; a callback without the matching cookie (a
//! login CSRF, a code pasted into another browser) is refused.
//!
//! People are found by (app, issuer, subject), never by e-mail: addresses get reassigned, and
//! a provider may return an address it never verified. `email_verified` decides whether the
//! address is passed on (userinfo, ID tokens); an unverified one is kept but never shown.
//!
//! With `?authorize=<request>` the login answers a pending `/oauth/authorize` request instead:
//! the person lands in the client's app and the browser goes back to the client with a code.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use serde::Serialize;
use tokio::sync::Mutex;
use warp::{Filter, Reply};

use super::{PENDING_TTL, ct_eq, form_pairs, param, random_token, redirect, send_code};
use crate::api::extract::{limited, with_state};
use crate::api::reject;
use crate::config::UpstreamSpec;
use crate::domain::identities::upstream_sign_in;
use crate::domain::oauth;
use crate::error::SidecarError;
use crate::state::{State, sha256_hex};
use crate::store::{UpstreamAccount, UpstreamPending};

/// How long discovered provider metadata (and with it the provider's JWKS) is reused. An ID
/// token signed by a key the cached JWKS lacks (the provider rotated) triggers one refetch.
const METADATA_TTL: Duration = Duration::from_secs(15 * 60);

/// The `openidconnect` client as built from discovered metadata.
type ProviderClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

struct Provider {
    spec: UpstreamSpec,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// The configured upstream providers and the HTTP client that talks to them.
pub struct Upstreams {
    providers: Vec<Provider>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error(transparent)]
    Http(#[from] openidconnect::http::Error),
}

/// The `openidconnect` HTTP client: our reqwest, with redirects off (the crate's advice against
/// SSRF through a provider's redirects) and a timeout.
async fn send(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let res = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    Ok(out.body(res.bytes().await?.to_vec())?)
}

impl Upstreams {
    pub fn new(specs: &[UpstreamSpec]) -> Result<Upstreams, SidecarError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SidecarError::config_from("upstream HTTP client", e))?;
        Ok(Upstreams {
            providers: specs
                .iter()
                .map(|spec| Provider {
                    spec: spec.clone(),
                    metadata: Mutex::new(None),
                })
                .collect(),
            http,
        })
    }

    /// Configured provider names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.spec.name.as_str())
    }

    /// Forget a provider's cached metadata, so the next use discovers it (and its JWKS) again.
    async fn forget(&self, p: &Provider) {
        *p.metadata.lock().await = None;
    }

    fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.spec.name == name)
    }

    /// The provider's client, from metadata discovered at most [`METADATA_TTL`] ago.
    async fn client(&self, p: &Provider, base_url: &str) -> Result<ProviderClient, SidecarError> {
        let metadata = {
            let mut cached = p.metadata.lock().await;
            match cached.as_ref() {
                Some((at, m)) if at.elapsed() < METADATA_TTL => m.clone(),
                _ => {
                    let issuer = IssuerUrl::new(p.spec.issuer.clone())
                        .map_err(|e| SidecarError::config_from("issuer URL", e))?;
                    let http = self.http.clone();
                    let m = CoreProviderMetadata::discover_async(issuer, &move |r| {
                        send(http.clone(), r)
                    })
                    .await
                    .map_err(|e| {
                        tracing::warn!(provider = %p.spec.name, error = %e, "OpenID discovery failed");
                        SidecarError::unavailable_from(
                            format!("provider {} cannot be reached", p.spec.name),
                            e,
                        )
                    })?;
                    *cached = Some((Instant::now(), m.clone()));
                    m
                }
            }
        };
        let redirect = RedirectUrl::new(format!("{base_url}/oauth/{}/callback", p.spec.name))
            .map_err(|e| SidecarError::config_from("PUBLIC_URL", e))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.spec.client_id.clone()),
            Some(ClientSecret::new(p.spec.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }
}

fn cookie_name(provider: &str) -> String {
    format!("ba_oidc_{provider}")
}

fn failed(why: impl Into<String>) -> SidecarError {
    SidecarError::upstream_login(why)
}

async fn start(
    state: &State,
    name: &str,
    raw_query: &str,
) -> Result<warp::reply::Response, SidecarError> {
    let provider = state
        .upstream
        .get(name)
        .ok_or(SidecarError::NotFound("provider"))?;
    let q = form_pairs(raw_query.as_bytes())
        .map_err(|_| SidecarError::Validation("malformed query string".into()))?;
    let (app, request) = (param(&q, "app_id"), param(&q, "authorize"));
    if app.is_some() == request.is_some() {
        return Err(SidecarError::Validation(
            "give app_id (or authorize, from the authorization page)".into(),
        ));
    }
    if let Some(app) = app {
        oauth::check_app(state, app)?;
    }
    // Reach the provider before taking an authorize request: a provider that is down must not
    // spend it.
    let base = state.config.base_url();
    let client = state.upstream.client(provider, &base).await?;
    let (app_id, authorize) = match request {
        None => (app.map(str::to_owned), None),
        Some(request_id) => {
            let req = oauth::take_request(state, request_id).map_err(|_| {
                SidecarError::Validation("unknown, used or expired authorize request".into())
            })?;
            (oauth::app_of_client(state, &req.client_id)?, Some(req))
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let binding = random_token();
    let pending = UpstreamPending {
        provider: name.to_owned(),
        app_id,
        authorize,
        pkce_verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
        browser_hash: sha256_hex(&binding),
    };
    oauth::park_upstream(state, csrf.secret(), pending)?;
    let secure = if base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={binding}; Path=/oauth/{name}/callback; Max-Age={PENDING_TTL}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(name)
    );
    let mut res = redirect(url.as_str())?;
    res.headers_mut().insert(
        "set-cookie",
        cookie
            .parse()
            .map_err(|_| SidecarError::internal("cookie is not a header value"))?,
    );
    state.metrics.outcome("upstream_login", "started");
    Ok(res)
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Serialize)]
struct AppLogin {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
}

/// Exchange the callback's code at the provider (PKCE) and verify its ID token (signature,
/// `iss`, `aud`, `exp`, `nonce`); returns the account it names and its display name.
async fn provider_account(
    state: &State,
    provider: &Provider,
    code: &str,
    pending: &UpstreamPending,
) -> Result<(UpstreamAccount, Option<String>), SidecarError> {
    let client = state
        .upstream
        .client(provider, &state.config.base_url())
        .await?;
    let http = state.upstream.http.clone();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| SidecarError::upstream_login_from("provider has no token endpoint", e))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(&move |r| send(http.clone(), r))
        .await
        .map_err(|e| {
            state.metrics.outcome("upstream_login", "code_refused");
            SidecarError::upstream_login_from("the provider refused the code", e)
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| failed("the provider sent no ID token"))?;
    let nonce = Nonce::new(pending.nonce.clone());
    let refreshed;
    let verified = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            // Signed with a key we have not seen: the provider rotated. Fetch its JWKS again
            // and verify once more; every other failure is final.
            state.upstream.forget(provider).await;
            refreshed = state
                .upstream
                .client(provider, &state.config.base_url())
                .await?;
            id_token.claims(&refreshed.id_token_verifier(), &nonce)
        }
        other => other,
    };
    let claims = verified.map_err(|e| {
        state.metrics.outcome("upstream_login", "id_token_refused");
        SidecarError::upstream_login_from("ID token refused", e)
    })?;
    let account = UpstreamAccount {
        iss: claims.issuer().as_str().to_owned(),
        sub: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified().unwrap_or(false),
    };
    let display = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_owned());
    Ok((account, display))
}

async fn callback(
    state: &State,
    name: &str,
    raw_query: &str,
    cookies: Option<&str>,
) -> Result<warp::reply::Response, SidecarError> {
    let provider = state
        .upstream
        .get(name)
        .ok_or(SidecarError::NotFound("provider"))?;
    let q = form_pairs(raw_query.as_bytes()).map_err(|_| failed("malformed callback"))?;
    let csrf = param(&q, "state").ok_or_else(|| failed("state is missing"))?;
    let Some(pending) = oauth::take_upstream(state, csrf, name)? else {
        state.metrics.outcome("upstream_login", "bad_state");
        return Err(failed("state is unknown, used or expired"));
    };
    let bound = cookie_value(cookies, &cookie_name(name))
        .is_some_and(|v| ct_eq(&sha256_hex(v), &pending.browser_hash));
    if !bound {
        state.metrics.outcome("upstream_login", "other_browser");
        return Err(failed("this login was started in another browser"));
    }
    if let Some(err) = param(&q, "error") {
        let err: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(failed(format!("the provider answered {err}")));
    }
    let code = param(&q, "code").ok_or_else(|| failed("code is missing"))?;
    let (account, display) = provider_account(state, provider, code, &pending).await?;
    if let Some(req) = pending.authorize {
        let app = oauth::app_of_client(state, &req.client_id)?;
        let identity = upstream_sign_in(state, app.as_deref(), account, display)?;
        state.metrics.outcome("upstream_login", "ok");
        return send_code(state, &req, &identity.id).await;
    }
    let identity = upstream_sign_in(state, pending.app_id.as_deref(), account, display)?;
    let s = crate::domain::sessions::open_durable(state, &identity).await?;
    state.metrics.outcome("upstream_login", "ok");
    Ok(warp::reply::json(&AppLogin {
        access_token: s.access_token,
        token_type: "bearer",
        expires_in: s.claims.exp - s.claims.iat,
        refresh_token: s.refresh_token,
    })
    .into_response())
}

fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Only configured provider names match, with warp's plain not-found otherwise: a request to
/// `/oauth/token` that failed there must report that failure, not "no such provider".
fn provider_name(
    state: State,
) -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::path::param::<String>().and_then(move |name: String| {
        let known = state.upstream.get(&name).is_some();
        async move {
            if known {
                Ok(name)
            } else {
                Err(warp::reject::not_found())
            }
        }
    })
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let start = warp::path("oauth")
        .and(provider_name(state.clone()))
        .and(warp::path::end())
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /oauth/{provider}"))
        .and(with_state(state.clone()))
        .and(raw_query())
        .and_then(|name: String, state: State, q: String| async move {
            start(&state, &name, &q).await.map_err(reject)
        });
    let callback = warp::path("oauth")
        .and(provider_name(state.clone()))
        .and(warp::path("callback"))
        .and(warp::path::end())
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /oauth/{provider}/callback"))
        .and(with_state(state))
        .and(raw_query())
        .and(warp::header::optional::<String>("cookie"))
        .and_then(
            |name: String, state: State, q: String, cookies: Option<String>| async move {
                callback(&state, &name, &q, cookies.as_deref())
                    .await
                    .map_err(reject)
            },
        );
    start.or(callback).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = Some("a=1; ba_oidc_test=xyz; ba_oidc_testing=no");
        assert_eq!(cookie_value(h, "ba_oidc_test"), Some("xyz"));
        assert_eq!(cookie_value(h, "ba_oidc_other"), None);
        assert_eq!(cookie_value(None, "ba_oidc_test"), None);
    }
}
