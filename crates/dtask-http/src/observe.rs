//! What every request leaves behind for an operator: a span (continuing
//! the caller's W3C `traceparent`), and the metrics
//! `dtask_http_requests_total` and `dtask_http_request_duration_seconds`
//! by method, route (the route's template, never a task id; `unmatched`
//! for a path no route serves) and status.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use dtask_core::trace::TraceBridge;
use tracing::Span;
use tracing::field::Empty;

/// The route a request matched, handed from inside the router (where it
/// is known) to the layer outside it that counts the request.
#[derive(Clone)]
struct MatchedRoute(MatchedPath);

/// Marks a routed response with its route, and records its status on the
/// request's span (a `route_layer`, inside the span's).
pub(crate) async fn mark_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    let span = Span::current();
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(matched) = matched {
        response.extensions_mut().insert(MatchedRoute(matched));
    }
    response
}

/// Counts and times a request, by its route.
pub(crate) async fn count(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |matched| matched.0.as_str())
        .to_owned();
    let status = response.status().as_u16();
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("dtask_http_requests_total", &labels).increment(1);
    metrics::histogram!("dtask_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The span of one routed request (`{method} {route}`), a child of the
/// caller's `traceparent` when it sends one and a tracing system is
/// bridged.
pub(crate) fn request_span(request: &Request, bridge: Option<&Arc<dyn TraceBridge>>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        target: "dtask",
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.route = route,
        http.response.status_code = Empty,
    );
    let parent = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    if let (Some(bridge), Some(parent)) = (bridge, parent) {
        bridge.set_parent(&span, parent);
    }
    span
}

/// Describes the HTTP metrics to the installed recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        "dtask_http_requests_total",
        "HTTP requests served, by method, route and status."
    );
    metrics::describe_histogram!(
        "dtask_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to serve an HTTP request (a stream: until it ends)."
    );
}
