//! The REST API: route groups, the security headers every response carries, request metrics, and
//! the single `recover` that turns every error into the JSON envelope.

pub mod devices;
pub mod docs;
pub mod error;
pub mod extract;
pub mod identity;
pub mod login;
pub mod ops;

use std::convert::Infallible;

use warp::http::HeaderValue;
use warp::{Filter, Rejection, Reply};

use crate::error::SidecarError;
use crate::state::State;

pub(crate) fn reject(e: SidecarError) -> Rejection {
    warp::reject::custom(e)
}

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
// Swagger UI and ReDoc need their own scripts and styles (served by us, never a CDN).
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'";

fn secure(path: &str, mut res: warp::reply::Response) -> warp::reply::Response {
    let docs = path == "/docs" || path.starts_with("/docs/") || path == "/redoc";
    let h = res.headers_mut();
    let set = |h: &mut warp::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    set(
        h,
        "content-security-policy",
        if docs { DOCS_CSP } else { API_CSP },
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    // Responses carry tokens, keys and identities: never cache any of them.
    set(h, "cache-control", "no-store");
    res
}

/// Every route, with errors recovered into the envelope and security headers on all responses.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let api = ops::routes(state.clone())
        .or(identity::routes(state.clone()))
        .unify()
        .or(login::routes(state.clone()))
        .unify()
        .or(devices::routes(state.clone()))
        .unify()
        .or(docs::routes())
        .unify()
        .recover(error::recover)
        .unify();
    let metrics_state = state;
    warp::path::full().and(api).map(
        move |path: warp::path::FullPath, res: warp::reply::Response| {
            metrics_state
                .metrics
                .requests
                .get_or_create(&crate::metrics::RouteLabels {
                    route: route_label(path.as_str()),
                    status: res.status().as_u16(),
                })
                .inc();
            secure(path.as_str(), res.into_response())
        },
    )
}

/// A bounded label for metrics: ids in paths are replaced, unknown paths collapse.
fn route_label(path: &str) -> String {
    const KNOWN: &[&str] = &[
        "/health",
        "/healthz",
        "/metrics",
        "/.well-known/jwks.json",
        "/identity/register",
        "/identity",
        "/auth/challenge",
        "/auth/verify",
        "/auth/me",
        "/v1/announce",
        "/v1/auth/refresh",
        "/v1/revocations",
        "/openapi.json",
        "/docs",
        "/redoc",
        "/admin/bans",
        "/admin/keys/rotate",
    ];
    if KNOWN.contains(&path) {
        path.to_owned()
    } else if path.starts_with("/identity/") {
        "/identity/{id}".into()
    } else if path.starts_with("/admin/bans/") {
        "/admin/bans/{ip}".into()
    } else if path.starts_with("/docs/") {
        "/docs/{asset}".into()
    } else {
        "other".into()
    }
}
