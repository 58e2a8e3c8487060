//! What every route shares.

use std::sync::Arc;

use bytes::Bytes;
use dtask_core::Host;

use crate::auth::Authenticator;
use crate::config::ApiConfig;
use crate::protect::Subscribers;
use crate::registry::Registry;
use crate::webhook::Webhooks;

/// The state behind an API's routes.
pub(crate) struct AppState {
    pub(crate) host: Host,
    pub(crate) registry: Registry,
    pub(crate) config: ApiConfig,
    /// Who may call; disabled: everyone, as the operator.
    pub(crate) auth: Arc<Authenticator>,
    /// The webhook sender; `None` when no secret is configured.
    pub(crate) webhooks: Option<Webhooks>,
    /// The SignalR connections negotiated and not connected yet.
    pub(crate) hub: crate::hub::Negotiated,
    /// The live SSE, WebSocket and SignalR subscribers, bounded.
    pub(crate) subscribers: Arc<Subscribers>,
    /// Renders `GET /metrics`, when the API serves metrics.
    pub(crate) metrics: Option<crate::exposition::MetricsRender>,
    /// The OpenAPI document, rendered once.
    pub(crate) openapi: Bytes,
}

/// The state as the routes hold it.
pub(crate) type Shared = Arc<AppState>;
