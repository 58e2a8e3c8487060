#![doc = include_str!("../README.md")]

mod auth;
mod caller;
mod config;
mod dashboard;
mod exposition;
mod extract;
mod follow;
mod hub;
mod introspect;
mod observe;
mod openapi;
mod ops;
mod problem;
mod protect;
mod registry;
mod routes;
mod serve;
mod state;
mod submit;
mod webhook;

use std::sync::Arc;

use dtask_core::{Host, Task};

pub use auth::{API_KEY_HEADER, ApiKeys, AuthConfigError, Authenticator, DEFAULT_ROLES_CLAIM, JwtVerifier};
pub use config::{ApiConfig, UploadLimits};
pub use dashboard::{OPS_HTML, html_response};
pub use exposition::{METRICS_CONTENT_TYPE, MetricsRender};
pub use ops::worker_router;
pub use problem::{PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE, Problem};
pub use protect::{AllowedOrigins, InvalidOrigin, TrafficLimits};
pub use registry::{FileRef, ProducesFile};
pub use serve::{ServeOptions, serve};
pub use webhook::{
    EVENT_HEADER, OutboundClient, OutboundError, TASK_ID_HEADER, TIMESTAMP_TOLERANCE, WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WebhookConfig, WebhookSecret, WebhookSecretError,
    WebhookVerifyError,
};

use registry::{Endpoint, FileOf, Registry};
use state::AppState;

/// The HTTP API of a host's tasks. See the [crate docs](crate).
#[derive(Debug, Clone, Copy)]
pub struct TaskApi;

impl TaskApi {
    /// Starts describing the API of `host`'s tasks.
    pub fn builder(host: Host) -> TaskApiBuilder {
        TaskApiBuilder {
            host,
            registry: Registry::default(),
            config: ApiConfig::default(),
            auth: Authenticator::default(),
            metrics: None,
        }
    }
}

/// Mounts tasks and builds the [`axum::Router`] of their API.
pub struct TaskApiBuilder {
    host: Host,
    registry: Registry,
    config: ApiConfig,
    auth: Authenticator,
    metrics: Option<MetricsRender>,
}

impl TaskApiBuilder {
    /// Mounts task `T`: `POST /api/tasks/{name in kebab case}` submits it,
    /// and the id routes serve its tasks. `T` must be registered on the
    /// host.
    #[must_use]
    pub fn task<T: Task>(mut self) -> Self {
        self.registry.insert(Endpoint::new::<T>(None));
        self
    }

    /// Mounts task `T` like [`task`](Self::task), with
    /// `GET /api/tasks/{id}/download` serving the file its response names.
    #[must_use]
    pub fn downloadable<T: Task>(self) -> Self
    where
        T::Response: ProducesFile,
    {
        self.downloadable_with::<T>(ProducesFile::produced_file)
    }

    /// Mounts task `T` with a download route, `file` telling which file a
    /// response names (for response types that cannot implement
    /// [`ProducesFile`], being foreign).
    #[must_use]
    pub fn downloadable_with<T: Task>(
        mut self,
        file: impl Fn(&T::Response) -> Option<FileRef> + Send + Sync + 'static,
    ) -> Self {
        let file: FileOf<T> = Arc::new(file);
        self.registry.insert(Endpoint::new::<T>(Some(file)));
        self
    }

    /// Replaces the configuration (limits, origins, webhooks, idempotency,
    /// SSE).
    #[must_use]
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// Requires credentials on every route but `/healthz`, `/readyz` and
    /// `/api/openapi.json`, and scopes each caller to its own tasks (see
    /// [`Authenticator`]). Without it the API is open and every caller is
    /// the host's operator.
    #[must_use]
    pub fn authentication(mut self, auth: Authenticator) -> Self {
        self.auth = auth;
        self
    }

    /// Serves `GET /metrics` with what `render` returns (the Prometheus
    /// text format: `dtask-telemetry`'s `PrometheusHandle::render`). Open
    /// like `/healthz`: metrics name task types and counts, never a task.
    #[must_use]
    pub fn metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }

    /// The router of every route. Mount it at the root (its links are
    /// absolute paths); it has a fallback (a 404 problem), so merge other
    /// routes into it rather than it into a router with a fallback of its
    /// own.
    pub fn build(self) -> axum::Router {
        for endpoint in self.registry.iter() {
            let name = endpoint.definition.name;
            if !self.host.tasks().any(|t| t.name == name) {
                tracing::warn!(
                    task = name,
                    "mounted on the API but not registered on the host: submissions will fail"
                );
            }
        }
        let traffic = &self.config.traffic;
        let mut state = AppState {
            subscribers: Arc::new(protect::Subscribers::new(
                traffic.max_subscribers_per_task,
                traffic.max_subscribers,
            )),
            webhooks: webhook::Webhooks::new(&self.config.webhooks),
            hub: hub::Negotiated::default(),
            host: self.host,
            registry: self.registry,
            config: self.config,
            auth: Arc::new(self.auth),
            metrics: self.metrics,
            openapi: bytes::Bytes::new(),
        };
        state.openapi = serde_json::to_vec_pretty(&openapi::document(&state))
            .map(bytes::Bytes::from)
            .unwrap_or_default();
        routes::router(Arc::new(state))
    }
}

impl std::fmt::Debug for TaskApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskApiBuilder")
            .field("host", &self.host)
            .field("config", &self.config)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}
