//! The router a worker process serves on its own address (`/healthz`,
//! `/readyz`, `/metrics`).

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use dtask_core::Host;

use crate::exposition::{MetricsRender, metrics_response};
use crate::problem::ApiResult;
use crate::routes::health;

/// The endpoints of a process that serves no API (a worker): `/healthz`,
/// `/readyz` (every backend the host uses, with its latency; errors only
/// in the log) and, given a renderer, `/metrics`. Serve it on an address
/// of its own (the demo's `worker --metrics-listen`).
pub fn worker_router(host: Host, metrics: Option<MetricsRender>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(ready));
    if let Some(render) = metrics {
        router = router.route("/metrics", get(move || async move { metrics_response(&render) }));
    }
    router.with_state(host)
}

async fn ready(State(host): State<Host>) -> ApiResult<impl IntoResponse> {
    health::readiness(&host, false).await
}
