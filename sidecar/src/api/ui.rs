//! The policy editor page (`/ui/policies`) and its assets (`/ui/assets/…`), served from the
//! binary. (Stub: the page is being built.)

use warp::{Filter, Reply};

pub fn routes() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::path!("ui" / "policies")
        .and(warp::get())
        .map(|| {
            warp::reply::with_status(
                "the policy editor is not built yet",
                warp::http::StatusCode::NOT_FOUND,
            )
            .into_response()
        })
        .boxed()
}
