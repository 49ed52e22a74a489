//! `GET /` and its assets: the dashboard page, embedded at compile time (no CDN, no build).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../../dashboard/style.css");

/// `/`, `/app.js`, `/style.css`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(get_index))
        .route("/app.js", get(get_app_js))
        .route("/style.css", get(get_style_css))
}

/// The page.
pub(crate) async fn get_index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

/// Its script.
pub(crate) async fn get_app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// Its style sheet.
pub(crate) async fn get_style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}
