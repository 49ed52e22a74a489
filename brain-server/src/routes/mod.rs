//! The HTTP routes: [`router`] nests one router per resource; handlers live in
//! `routes/<resource>.rs` and are named `verb_noun`.

pub(crate) mod admin;
pub(crate) mod dashboard;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod page;
pub(crate) mod whoami;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared_proto::ErrorBody;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest request target (path and query) answered, in bytes; longer is 414 `uri_too_long`.
const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header block answered (names, values, 4 bytes of separators per header), in bytes;
/// larger is 431 `headers_too_large`. The HTTP layer itself refuses a head over 64 KiB (or
/// over 100 headers) with a bare 431 (`http.rs`).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(page::router())
        .route("/v1/healthz", get(health::get_healthz))
        .route("/metrics", get(health::get_metrics))
        .route("/v1/events", post(events::post_events))
        .route("/v1/whoami", get(whoami::get_whoami))
        .nest("/v1/dashboard", dashboard::router())
        .nest("/admin", admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(check_request_head))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track_http,
        ))
        .with_state(state)
}

/// Refuses, in the error envelope, a request whose target or header block is larger than
/// this server answers (414, 431), before any handler or extractor sees it.
async fn check_request_head(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::UriTooLong(MAX_URI_BYTES).into_response();
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if head > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(MAX_HEADER_BYTES).into_response();
    }
    next.run(req).await
}

/// 404 for an unknown path, in the error envelope.
async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody::new("not_found", "no such endpoint")),
    )
}

/// 405 for a known path with another method, in the error envelope.
async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody::new(
            "method_not_allowed",
            "this endpoint does not accept this method",
        )),
    )
}
