//! Errors as `application/problem+json` (RFC 9457).
//!
//! Every error the API answers is a [`Problem`]: a `type` URI naming the
//! kind of error, a short `title` shared by every problem of that type,
//! the HTTP `status`, a `detail` saying what happened this time, and
//! extension members where they help (`status` and `error` of an ended
//! task, `taskId`, the failing services of a readiness probe).

use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Where problem types live: a problem's `type` is this followed by its
/// kind, e.g. `https://dtask.invalid/problems/task-failed`.
pub const PROBLEM_TYPE_BASE: &str = "https://dtask.invalid/problems/";

/// The media type of problem responses.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An error response in the RFC 9457 format.
///
/// ```
/// use axum::http::StatusCode;
/// use dtask_http::Problem;
///
/// let problem = Problem::new(StatusCode::CONFLICT, "task-failed", "Task failed", "UploadZip failed")
///     .with("taskStatus", "compensated");
/// assert_eq!(problem.status(), StatusCode::CONFLICT);
/// assert_eq!(problem.body()["type"], "https://dtask.invalid/problems/task-failed");
/// assert_eq!(problem.body()["status"], 409);
/// assert_eq!(problem.body()["taskStatus"], "compensated");
/// ```
#[derive(Debug, Clone)]
pub struct Problem(Box<Parts>);

/// A problem's parts, boxed so that results carrying a problem stay small.
#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    body: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem of type `kind` (appended to [`PROBLEM_TYPE_BASE`]).
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(format!("{PROBLEM_TYPE_BASE}{kind}")));
        body.insert("title".into(), Value::String(title.to_owned()));
        body.insert("status".into(), Value::from(status.as_u16()));
        body.insert("detail".into(), Value::String(detail.into()));
        Self(Box::new(Parts {
            status,
            body,
            headers: HeaderMap::new(),
        }))
    }

    /// Adds an extension member. The members RFC 9457 defines (`type`,
    /// `title`, `status`, `detail`, `instance`) are left as they are: an
    /// extension by one of those names is ignored.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if !matches!(key, "type" | "title" | "status" | "detail" | "instance") {
            self.0.body.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Adds a response header (`Content-Range` of a 416, `Allow` of a 405).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The JSON body.
    pub fn body(&self) -> &Map<String, Value> {
        &self.0.body
    }

    /// The `detail` member.
    pub fn detail(&self) -> &str {
        self.0.body.get("detail").and_then(Value::as_str).unwrap_or_default()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.detail())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let Parts { status, body, headers } = *self.0;
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        response.headers_mut().extend(headers);
        response
    }
}

/// The problems the API answers, one constructor per type. Each `kind`
/// here is documented in the OpenAPI document.
pub(crate) mod kinds {
    use super::*;

    pub(crate) fn invalid_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "Invalid request", detail)
    }

    pub(crate) fn invalid_task_id(raw: &str) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-task-id",
            "Malformed task id",
            format!("`{raw}` is not a task id (a UUID)"),
        )
    }

    pub(crate) fn task_not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "task-not-found", "Task not found", detail)
    }

    pub(crate) fn not_downloadable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-downloadable", "Nothing to download", detail)
    }

    pub(crate) fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Upload too large",
            detail,
        )
    }

    pub(crate) fn unsupported_media_type(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    pub(crate) fn conflict(kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, kind, title, detail)
    }

    /// A request body that could not be read: `408` when it stalled past
    /// the idle timeout, `400` otherwise.
    pub(crate) fn unreadable_body(error: &(dyn std::error::Error + 'static)) -> Problem {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<tower_http::timeout::TimeoutError>() {
                return Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    "Request timeout",
                    "the request body stopped arriving",
                );
            }
            cause = error.source();
        }
        invalid_request(format!("the body could not be read: {error}"))
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
            detail,
        )
    }
}

impl From<dtask_core::Error> for Problem {
    /// Maps a host error: unknown things are `404`, rejected arguments
    /// `400`, a caller not allowed `403`, unreachable or closed services
    /// `503` (naming the backend, not its cause), the rest `500`. Server
    /// errors are logged.
    fn from(error: dtask_core::Error) -> Self {
        use dtask_core::Error;
        match &error {
            Error::NotFound { .. } => kinds::task_not_found(error.to_string()),
            Error::Invalid { .. } => kinds::invalid_request(error.to_string()),
            Error::Forbidden { reason } => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", reason.clone())
            }
            Error::Unsupported(_) => Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                "not-supported",
                "Not supported",
                error.to_string(),
            ),
            Error::Backend { .. } | Error::Closed { .. } => {
                tracing::error!(error = %error, "a backend failed");
                kinds::unavailable(public_message(&error))
            }
            _ => {
                tracing::error!(error = %error, "a host operation failed");
                kinds::internal(error.to_string())
            }
        }
    }
}

/// What a client may read of a host error: a backend's failure names the
/// backend, not its cause (which may name internal hosts and is logged).
pub(crate) fn public_message(error: &dtask_core::Error) -> String {
    match error {
        dtask_core::Error::Backend { backend, .. } => {
            format!("the {backend} backend failed; its cause is in the server's log")
        }
        other => other.to_string(),
    }
}

/// A `Result` whose error is a [`Problem`].
pub(crate) type ApiResult<T> = Result<T, Problem>;
