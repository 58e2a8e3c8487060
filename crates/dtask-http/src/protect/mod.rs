//! What keeps the API standing under load and safe from web pages: bounds
//! on requests in flight, header bytes, idle request bodies and event
//! subscribers; CORS by allow-list; cross-site refusal of state-changing
//! requests.
//!
//! Timeouts on reading a request's head live in the connection, not here:
//! see [`serve`](crate::serve).

mod cross_site;
mod load;
mod subscribers;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::middleware::from_fn_with_state;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use cross_site::{AllowedOrigins, InvalidOrigin};
pub(crate) use subscribers::Subscribers;

/// Bounds on what one request, and all of them together, may hold.
///
/// Past a bound the API answers a problem: `431` for headers, `408` for a
/// body that stalls, `503` (with `Retry-After`) for requests in flight and
/// subscribers. `/healthz` and `/readyz` stay outside the in-flight bound,
/// so probes answer while the API sheds load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficLimits {
    /// The most bytes of header names and values one request may carry
    /// (default 16 KiB).
    pub max_header_bytes: usize,
    /// The most requests answered at once; the next ones get `503
    /// overloaded` at once rather than waiting (default 1024).
    pub max_in_flight: usize,
    /// How long a request body may go without sending a byte before the
    /// request fails with `408` (default 30 s).
    pub body_idle_timeout: Duration,
    /// The most live SSE streams and WebSockets following one task
    /// (default 256).
    pub max_subscribers_per_task: usize,
    /// The most live SSE streams and WebSockets in all (default 10,000).
    pub max_subscribers: usize,
}

impl Default for TrafficLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_in_flight: 1024,
            body_idle_timeout: Duration::from_secs(30),
            max_subscribers_per_task: 256,
            max_subscribers: 10_000,
        }
    }
}

/// Bounds the requests in flight on `router`'s routes (apply it to the
/// routes that do work, not to the probes).
pub(crate) fn limit_in_flight<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: &TrafficLimits,
) -> Router<S> {
    router.route_layer(from_fn_with_state(
        load::InFlight::new(limits.max_in_flight),
        load::limit_in_flight,
    ))
}

/// Wraps every route: CORS outermost (when origins are allowed), then the
/// header bound, the cross-site refusal and the body idle timeout.
pub(crate) fn outer_layers(router: Router, limits: &TrafficLimits, origins: &AllowedOrigins) -> Router {
    let router = router
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .layer(from_fn_with_state(origins.clone(), cross_site::refuse))
        .layer(from_fn_with_state(limits.max_header_bytes, load::header_bytes));
    if origins.is_empty() {
        return router;
    }
    let allowed: Vec<_> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static(crate::auth::API_KEY_HEADER),
                // What SignalR clients send with their negotiate request.
                HeaderName::from_static("x-requested-with"),
                HeaderName::from_static("x-signalr-user-agent"),
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                header::CONTENT_DISPOSITION,
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
