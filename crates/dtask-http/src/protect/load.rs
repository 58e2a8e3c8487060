//! Load shedding: a bound on requests in flight and on header bytes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::problem::Problem;

/// The requests being answered, up to a bound.
#[derive(Debug, Clone)]
pub(crate) struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.max(1))))
    }
}

/// Answers `503 overloaded` (with `Retry-After: 1`) when the bound is
/// reached, rather than queueing without end. A request holds its place
/// until its handler returns: a long download or event stream streams
/// outside the bound (subscribers have their own, see
/// [`Subscribers`](super::Subscribers)).
pub(crate) async fn limit_in_flight(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let Ok(_permit) = in_flight.0.try_acquire() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            "the server is answering as many requests as it may; retry shortly",
        )
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response();
    };
    next.run(request).await
}

/// Answers `431` when the request's header names and values add up to more
/// than `max` bytes.
pub(crate) async fn header_bytes(State(max): State<usize>, request: Request, next: Next) -> Response {
    let total: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if total > max {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!("the request's headers are {total} bytes; at most {max} are accepted"),
        )
        .into_response();
    }
    next.run(request).await
}
