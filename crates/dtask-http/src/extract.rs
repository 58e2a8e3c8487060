//! axum's `Path` and `Query` extractors with problem rejections: a
//! malformed path segment or query string is a `400` problem like every
//! other client mistake, not axum's plain-text answer.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;

use crate::problem::Problem;

/// [`axum::extract::Path`], rejecting with a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub(crate) struct Path<T>(pub(crate) T);

/// [`axum::extract::Query`], rejecting with a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub(crate) struct Query<T>(pub(crate) T);

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        let status = client_error(rejection.status());
        Problem::new(status, "invalid-path", "Malformed path", rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        let status = client_error(rejection.status());
        Problem::new(status, "invalid-query", "Malformed query string", rejection.body_text())
    }
}

/// A rejection's status, or `400` where axum would answer a server error
/// for what is, at this API, always the client's request.
fn client_error(status: StatusCode) -> StatusCode {
    if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}
