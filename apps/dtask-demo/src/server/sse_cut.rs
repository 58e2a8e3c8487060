//! Ends Server-Sent Event streams when the server shuts down, so a
//! graceful shutdown does not wait for tasks that will not end.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Middleware: the body of a `text/event-stream` response stops when
/// `stopping` fires; other responses pass through.
pub(super) async fn end_streams_on_shutdown(
    State(stopping): State<CancellationToken>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().take_until(stopping.cancelled_owned());
    Response::from_parts(parts, Body::from_stream(body))
}
