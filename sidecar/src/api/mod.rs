//! The REST API: route groups, the security headers every response carries, request metrics, and
//! the single `recover` that turns every error into the JSON envelope.

pub mod apps;
pub mod broker;
pub mod devices;
pub mod docs;
pub mod error;
pub mod extract;
pub mod identity;
pub mod login;
pub mod nats;
pub mod ops;
pub mod policies;
pub mod ui;

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

// The policy editor: its own bundled script and style only (no inline script, no CDN), calls
// to this origin only.
const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// The OAuth2 sign-in page: its own inline style, no script, and nothing may frame it.
const AUTHORIZE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

fn secure(path: &str, mut res: warp::reply::Response) -> warp::reply::Response {
    let docs = path == "/docs" || path.starts_with("/docs/") || path == "/redoc";
    let csp = if docs {
        DOCS_CSP
    } else if path == "/oauth/authorize" {
        AUTHORIZE_CSP
    } else if path == "/ui" || path.starts_with("/ui/") {
        UI_CSP
    } else {
        API_CSP
    };
    let h = res.headers_mut();
    let set = |h: &mut warp::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    set(h, "content-security-policy", csp);
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
        .or(broker::routes(state.clone()))
        .unify()
        .or(apps::routes(state.clone()))
        .unify()
        .or(nats::routes(state.clone()))
        .unify()
        .or(policies::routes(state.clone()))
        .unify()
        .or(crate::oauth::routes(state.clone()))
        .unify()
        .or(docs::routes())
        .unify()
        .or(ui::routes())
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

/// A bounded label for metrics: the route's template from the OpenAPI table (ids in paths are
/// not labels), the docs pages, or `other`.
fn route_label(path: &str) -> &'static str {
    if let Some(template) = crate::openapi::route_template(path) {
        return template;
    }
    match path {
        "/openapi.json" => "/openapi.json",
        "/docs" => "/docs",
        "/redoc" => "/redoc",
        p if p.starts_with("/docs/") => "/docs/{asset}",
        "/ui/policies" => "/ui/policies",
        p if p.starts_with("/ui/assets/") => "/ui/assets/{asset}",
        _ => "other",
    }
}
