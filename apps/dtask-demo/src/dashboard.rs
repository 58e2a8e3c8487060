//! The dashboard: one self-contained page (inline CSS and vanilla JS, no
//! build step, nothing fetched from elsewhere) that uploads files to
//! CreateZipFromFiles and shows every task live.
//!
//! The page is assembled at compile time from `assets/`: `dashboard.css`,
//! `dashboard.html` (the body), `dashboard-tasks.js` (the task list, fed by
//! `GET /api/tasks` and each task's SSE stream) and `dashboard-upload.js`
//! (the upload form, multipart through `XMLHttpRequest` for upload
//! progress). Elements carry stable `data-testid`s (`task-{id}`,
//! `progress-{id}` with `aria-valuenow`, `state-{id}`, `cancel-{id}`,
//! `download-{id}`, `file-input`, `submit`) for the end-to-end test.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

/// The whole page.
pub const DASHBOARD_HTML: &str = concat!(
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>dtask · CreateZipFromFiles</title>\n<style>\n",
    include_str!("../assets/dashboard.css"),
    "</style>\n</head>\n<body>\n",
    include_str!("../assets/dashboard.html"),
    "<script>\n",
    include_str!("../assets/dashboard-tasks.js"),
    "</script>\n<script>\n",
    include_str!("../assets/dashboard-upload.js"),
    "</script>\n</body>\n</html>\n",
);

/// The routes of the dashboard: the page at `/`, and an empty
/// `/favicon.ico` so browsers do not log a 404.
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

async fn page() -> Response {
    dtask_http::html_response(DASHBOARD_HTML)
}
