//! `/openapi.json`, Swagger UI at `/docs` and ReDoc at `/redoc`, all served from assets built into
//! the binary (utoipa-swagger-ui's vendored files; ReDoc's script inlined by `aide`), so the pages
//! work offline and nothing is fetched from a CDN.

use std::sync::{Arc, OnceLock};

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_string_pretty(&crate::openapi::document()).unwrap_or_else(|_| "{}".into())
    })
}

fn redoc_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        aide::redoc::Redoc::new("/openapi.json")
            .with_title("broker-auth API")
            .html()
    })
}

async fn swagger(
    full: warp::path::FullPath,
    tail: warp::path::Tail,
    config: Arc<utoipa_swagger_ui::Config<'static>>,
) -> Result<warp::reply::Response, Rejection> {
    // `/docs` → `/docs/` so the page's relative asset paths resolve.
    if full.as_str() == "/docs" {
        return Ok(warp::redirect::found(warp::http::Uri::from_static("/docs/")).into_response());
    }
    let path = match tail.as_str() {
        "" => "index.html",
        p => p,
    };
    match utoipa_swagger_ui::serve(path, config) {
        Ok(Some(file)) => {
            Ok(
                warp::reply::with_header(file.bytes.to_vec(), "content-type", file.content_type)
                    .into_response(),
            )
        }
        Ok(None) => Err(warp::reject::not_found()),
        Err(_) => Ok(
            warp::reply::with_status(warp::reply(), StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
        ),
    }
}

pub fn routes() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let config = Arc::new(utoipa_swagger_ui::Config::from("/openapi.json"));
    let spec = warp::path!("openapi.json")
        .and(crate::api::extract::get())
        .map(|| {
            warp::reply::with_header(openapi_json(), "content-type", "application/json")
                .into_response()
        });
    let docs = warp::path("docs")
        .and(crate::api::extract::get())
        .and(warp::path::full())
        .and(warp::path::tail())
        .and(warp::any().map(move || config.clone()))
        .and_then(swagger);
    let redoc = warp::path!("redoc")
        .and(crate::api::extract::get())
        .map(|| warp::reply::html(redoc_html()).into_response());
    spec.or(docs).unify().or(redoc).unify().boxed()
}
