//! The operations dashboard at `GET /ops`: one self-contained page (inline
//! CSS and vanilla JS compiled into the binary, nothing fetched from
//! elsewhere, so it works offline) over the public JSON API: an overview
//! of the last hour (counts by status, ended tasks per five minutes and
//! the failure rate, task types, workers and dead letters), the task list
//! with filters, each task's timeline (a bar per step attempt and
//! compensation, its worker, conditions, errors, audit log, trace id), the
//! dead letters with a retry button, and the workers. The page itself is
//! open; every call it makes carries the credentials pasted into it and is
//! scoped as any client's.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The whole page.
pub const OPS_HTML: &str = concat!(
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>dtask · operations</title>\n<style>\n",
    include_str!("../assets/ops.css"),
    "</style>\n</head>\n<body>\n",
    include_str!("../assets/ops.html"),
    "<script>\n",
    include_str!("../assets/ops.js"),
    "</script>\n</body>\n</html>\n",
);

/// `GET /ops`.
pub(crate) async fn page() -> Response {
    html_response(OPS_HTML)
}

/// A self-contained page (inline styles and scripts, nothing fetched from
/// elsewhere) as a response: not cached, with a content security policy
/// that allows its inline assets and nothing from another origin.
pub fn html_response(html: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:",
                ),
            ),
        ],
        html,
    )
        .into_response()
}
