//! The OAuth2 client registry (admins) and client authentication at the token endpoint.
//!
//! A client secret is 256 random bits, shown once at registration and kept as a SHA-256 digest.
//! Redirect URIs are absolute http(s) URLs without a fragment and are later compared exactly.

use super::callers;
use crate::error::SidecarError;
use crate::oauth::{ct_eq, random_token};
use crate::state::{AppState, random_id, sha256_hex};
use crate::store::{OAuthClientRecord, OAuthStore, TenancyStore};

/// Scopes a client gets when it names none.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// Scopes the server knows.
pub const KNOWN_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// A client as an admin registers it (also the body of `POST /oauth/clients`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    /// Exact redirect URIs (1–10).
    pub redirect_uris: Vec<String>,
    /// Scopes it may ask for (default openid, profile, email).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The app its upstream-login users belong to.
    #[serde(default)]
    pub app_id: Option<String>,
}

pub fn redirect_uri_ok(u: &str) -> bool {
    let scheme_ok = u.starts_with("https://") || u.starts_with("http://");
    let host = u.split_once("://").map_or("", |(_, rest)| rest);
    scheme_ok
        && u.len() <= 2048
        && !host.is_empty()
        && !host.starts_with('/')
        && !u.contains('#')
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The registration's rules; returns the scopes the client gets.
fn validate(store: &dyn TenancyStore, req: &NewClient) -> Result<Vec<String>, SidecarError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(SidecarError::Validation(
            "name must be 1-128 characters".into(),
        ));
    }
    if req.redirect_uris.is_empty() || req.redirect_uris.len() > 10 {
        return Err(SidecarError::Validation("give 1-10 redirect_uris".into()));
    }
    if let Some(bad) = req.redirect_uris.iter().find(|u| !redirect_uri_ok(u)) {
        return Err(SidecarError::Validation(format!(
            "redirect_uri {bad:?} must be an absolute http(s) URL without a fragment"
        )));
    }
    let scopes = req
        .scopes
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec());
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(SidecarError::Validation(format!(
            "unknown scope {bad:?} (known: {KNOWN_SCOPES:?})"
        )));
    }
    if let Some(app) = &req.app_id {
        super::apps::existing_app(store, app)?;
    }
    Ok(scopes)
}

/// Register a client; returns its record and its secret (shown once).
pub async fn create(
    state: &AppState,
    bearer: Option<&str>,
    req: NewClient,
) -> Result<(OAuthClientRecord, String), SidecarError> {
    callers::require_admin(state, bearer)?;
    let scopes = validate(state.store.as_ref(), &req)?;
    let secret = random_token();
    let rec = OAuthClientRecord {
        id: random_id("cli-"),
        name: req.name.trim().to_owned(),
        redirect_uris: req.redirect_uris,
        scopes,
        app_id: req.app_id,
        secret_hash: sha256_hex(&secret),
        created_at: state.now(),
    };
    let store: &dyn OAuthStore = state.store.as_ref();
    store.put_oauth_client(&rec)?;
    store.flush().await?;
    Ok((rec, secret))
}

pub fn list(
    state: &AppState,
    bearer: Option<&str>,
) -> Result<Vec<OAuthClientRecord>, SidecarError> {
    callers::require_admin(state, bearer)?;
    Ok(state.store.oauth_clients()?)
}

pub async fn delete(state: &AppState, bearer: Option<&str>, id: &str) -> Result<(), SidecarError> {
    callers::require_admin(state, bearer)?;
    let store: &dyn OAuthStore = state.store.as_ref();
    if !store.delete_oauth_client(id)? {
        return Err(SidecarError::NotFound("client"));
    }
    store.flush().await?;
    Ok(())
}

/// The client `id` if `secret` is its secret; every failure is `invalid_client`.
pub fn authenticate(
    state: &AppState,
    id: &str,
    secret: &str,
) -> Result<OAuthClientRecord, SidecarError> {
    let invalid = || SidecarError::oauth("invalid_client", "client authentication failed");
    let client = state.store.oauth_client(id)?.ok_or_else(invalid)?;
    if !ct_eq(&sha256_hex(secret), &client.secret_hash) {
        state.metrics.outcome("oauth_token", "invalid_client");
        return Err(invalid());
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_absolute_without_fragment() {
        assert!(redirect_uri_ok(
            "https://grafana.example/login/generic_oauth"
        ));
        assert!(redirect_uri_ok("http://127.0.0.1:3000/cb?x=1"));
        for bad in [
            "/relative",
            "javascript:alert(1)",
            "https://g/cb#frag",
            "https:///nohost",
            "https://g/c b",
            "ftp://g/cb",
        ] {
            assert!(!redirect_uri_ok(bad), "{bad}");
        }
    }
}
