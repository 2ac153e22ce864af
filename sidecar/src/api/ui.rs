//! The policy editor page (`GET /ui/policies`) and its two assets (`GET /ui/assets/policies.js`,
//! `/ui/assets/policies.css`), served from the binary.
//!
//! The page is static: everything it shows comes from the admin routes it calls with the key the
//! admin pastes (`/policies…`, `/identity`), so serving it needs no authority and no state. The
//! script and style are built from `sidecar/ui/src` by esbuild and committed under
//! `sidecar/ui/dist` (see `sidecar/ui/README.md`), so `cargo build` needs no npm and the page
//! works offline. The strict CSP of `/ui/*` (no inline script or style, this origin only) is set
//! with the other security headers in [`super`].

use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

const PAGE: &str = include_str!("../../ui/src/policies.html");
const SCRIPT: &str = include_str!("../../ui/dist/policies.js");
const STYLE: &str = include_str!("../../ui/dist/policies.css");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One built-in file as a response. `no-store` like every other response (set globally too):
/// a rebuilt binary must never meet a stale script in a browser cache.
fn file(body: &'static str, content_type: &'static str) -> warp::reply::Response {
    let mut res = warp::reply::with_status(body, StatusCode::OK).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The asset named `name`, or a 404 (the recover turns `not_found` into the envelope).
fn asset(name: &str) -> Result<warp::reply::Response, Rejection> {
    match name {
        "policies.js" => Ok(file(SCRIPT, JAVASCRIPT)),
        "policies.css" => Ok(file(STYLE, CSS)),
        _ => Err(warp::reject::not_found()),
    }
}

pub fn routes() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let page = warp::path!("ui" / "policies")
        .and(crate::api::extract::get())
        .map(|| file(PAGE, HTML));
    let assets = warp::path!("ui" / "assets" / String)
        .and(crate::api::extract::get())
        .and_then(|name: String| async move { asset(&name) });
    page.or(assets).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_assets_from_this_origin_only_and_has_no_inline_script_or_style() {
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/ui/assets/policies.css">"#));
        assert!(PAGE.contains(r#"<script type="module" src="/ui/assets/policies.js"></script>"#));
        assert_eq!(PAGE.matches("<script").count(), 1, "one script, by src");
        assert!(!PAGE.contains("<style"), "no inline style element");
        assert!(!PAGE.contains(" style="), "no style attribute");
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }

    #[tokio::test]
    async fn assets_have_their_content_types_and_unknown_ones_are_not_found() {
        let r = routes();
        for (path, ct) in [
            ("/ui/policies", HTML),
            ("/ui/assets/policies.js", JAVASCRIPT),
            ("/ui/assets/policies.css", CSS),
        ] {
            let res = warp::test::request().path(path).reply(&r).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], ct, "{path}");
            let head = warp::test::request()
                .method("HEAD")
                .path(path)
                .reply(&r)
                .await;
            assert_eq!(head.status(), 200, "HEAD {path}");
        }
        for path in [
            "/ui/assets/other.js",
            "/ui/assets/../policies",
            "/ui/policies/x",
        ] {
            let res = warp::test::request().path(path).reply(&r).await;
            assert_eq!(res.status(), 404, "{path}");
        }
    }
}
