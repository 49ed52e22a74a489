//! `GET /` and its assets: the dashboard page, embedded at compile time (no CDN, no build),
//! with the vendored chart library (uPlot, `dashboard/vendor/uplot/`, MIT).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../../dashboard/style.css");
const UPLOT_JS: &str = include_str!("../../../dashboard/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../../dashboard/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../../dashboard/vendor/uplot/LICENSE");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// `/`, `/app.js`, `/style.css` and `/vendor/uplot/{uPlot.iife.min.js,uPlot.min.css,LICENSE}`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(get_index))
        .route("/app.js", get(get_app_js))
        .route("/style.css", get(get_style_css))
        .route("/vendor/uplot/uPlot.iife.min.js", get(get_uplot_js))
        .route("/vendor/uplot/uPlot.min.css", get(get_uplot_css))
        .route("/vendor/uplot/LICENSE", get(get_uplot_license))
}

/// One embedded file with its content type.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}

/// The page.
pub(crate) async fn get_index() -> impl IntoResponse {
    asset(HTML, INDEX_HTML)
}

/// Its script.
pub(crate) async fn get_app_js() -> impl IntoResponse {
    asset(JS, APP_JS)
}

/// Its style sheet.
pub(crate) async fn get_style_css() -> impl IntoResponse {
    asset(CSS, STYLE_CSS)
}

/// The chart library.
pub(crate) async fn get_uplot_js() -> impl IntoResponse {
    asset(JS, UPLOT_JS)
}

/// The chart library's style sheet.
pub(crate) async fn get_uplot_css() -> impl IntoResponse {
    asset(CSS, UPLOT_CSS)
}

/// The chart library's licence (MIT), served beside it.
pub(crate) async fn get_uplot_license() -> impl IntoResponse {
    asset(TEXT, UPLOT_LICENSE)
}
