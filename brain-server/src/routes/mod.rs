//! The HTTP routes: [`router`] nests one router per resource; handlers live in
//! `routes/<resource>.rs` and are named `verb_noun`.

pub(crate) mod dashboard;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod page;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use shared_proto::ErrorBody;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(page::router())
        .route("/v1/healthz", get(health::get_healthz))
        .route("/metrics", get(health::get_metrics))
        .route("/v1/events", post(events::post_events))
        .nest("/v1/dashboard", dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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
