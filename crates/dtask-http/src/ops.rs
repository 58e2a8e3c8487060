//! The operations endpoints: `GET /metrics` (the Prometheus text
//! exposition of the process's metrics), and the router a worker process
//! serves on its own address (`/healthz`, `/readyz`, `/metrics`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dtask_core::Host;

use crate::problem::ApiResult;
use crate::routes::health;

/// Renders the process's metrics in the Prometheus text format
/// (`dtask-telemetry`'s `PrometheusHandle::render`). Cheap to clone.
#[derive(Clone)]
pub struct MetricsRender(Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsRender {
    /// The renderer calling `render`.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The metrics, as text.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRender")
    }
}

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub(crate) fn metrics_response(render: &MetricsRender) -> Response {
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], render.render()).into_response()
}

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
