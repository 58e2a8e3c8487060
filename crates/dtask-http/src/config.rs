//! What an API can be tuned with: upload and traffic limits, allowed
//! browser origins, webhooks, idempotency, and the keep-alives of SSE and
//! the SignalR hub.

use std::time::Duration;

use crate::protect::{AllowedOrigins, TrafficLimits};
use crate::webhook::WebhookConfig;

/// Limits on one multipart submission.
///
/// A submission past a limit is refused with a problem response: `413` for
/// the size, `400` for the number of files or fields and the file name
/// length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLimits {
    /// The most bytes one submission may carry: its files and fields
    /// together (default 2 GiB). A `Content-Length` above it is refused
    /// before the body is read; a body without one is counted as it
    /// streams.
    pub max_total_bytes: u64,
    /// The most `files` parts in one submission (default 1000).
    pub max_files: usize,
    /// The most scalar fields (parts before the first file) in one
    /// submission (default 64).
    pub max_fields: usize,
    /// The longest file name a part may carry, in bytes, before it is
    /// sanitized (default 255).
    pub max_file_name_bytes: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 1000,
            max_fields: 64,
            max_file_name_bytes: 255,
        }
    }
}

/// The configuration of a [`TaskApi`](crate::TaskApi).
///
/// ```
/// use std::time::Duration;
/// use dtask_http::{ApiConfig, UploadLimits};
///
/// let config = ApiConfig {
///     limits: UploadLimits { max_total_bytes: 100 * 1024 * 1024, ..UploadLimits::default() },
///     ..ApiConfig::default()
/// };
/// assert_eq!(config.webhooks.retries, 5);
/// assert_eq!(config.sse_keep_alive, Duration::from_secs(15));
/// assert!(config.cors_origins.is_empty(), "CORS is off by default");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Limits on submissions.
    pub limits: UploadLimits,
    /// Webhooks: the signing secret (off without one), the allowed
    /// internal hosts, retries.
    pub webhooks: WebhookConfig,
    /// Bounds on headers, idle bodies, requests in flight and event
    /// subscribers.
    pub traffic: TrafficLimits,
    /// Browser origins whose pages may call the API (CORS, and past the
    /// cross-site refusal). Empty by default: CORS is off.
    pub cors_origins: AllowedOrigins,
    /// Whether problem details carry the errors of backends (`/readyz`),
    /// which may name internal hosts (default `false`: only the backend's
    /// name; the cause is logged). For debugging.
    pub expose_internal_errors: bool,
    /// How long an `Idempotency-Key` is remembered (default 24 h).
    pub idempotency_ttl: Duration,
    /// How often an idle SSE stream sends a keep-alive comment (default
    /// 15 s).
    pub sse_keep_alive: Duration,
    /// How often the SignalR hub pings each connection (default 15 s, as
    /// ASP.NET's `KeepAliveInterval`; clients' server timeout is twice
    /// that; at least 1 ms is used).
    pub hub_keep_alive: Duration,
    /// How long a SignalR client may send nothing before the hub closes
    /// its connection (default 30 s, as ASP.NET's `ClientTimeoutInterval`;
    /// clients ping every 15 s).
    pub hub_client_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            limits: UploadLimits::default(),
            webhooks: WebhookConfig::default(),
            traffic: TrafficLimits::default(),
            cors_origins: AllowedOrigins::default(),
            expose_internal_errors: false,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            sse_keep_alive: Duration::from_secs(15),
            hub_keep_alive: Duration::from_secs(15),
            hub_client_timeout: Duration::from_secs(30),
        }
    }
}
