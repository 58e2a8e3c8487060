//! `GET /metrics`: the Prometheus text exposition of the process's
//! metrics, rendered by the recorder the application installed.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

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
