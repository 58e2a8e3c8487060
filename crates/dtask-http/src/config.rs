//! What an API can be tuned with: upload limits, the webhook secret and
//! retries, idempotency and SSE keep-alive.

use std::time::Duration;

/// Limits on one multipart submission.
///
/// A submission past a limit is refused with a problem response: `413` for
/// the size, `400` for the number of files and the file name length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLimits {
    /// The most bytes one submission may carry: its files and fields
    /// together (default 2 GiB). A `Content-Length` above it is refused
    /// before the body is read; a body without one is counted as it
    /// streams.
    pub max_total_bytes: u64,
    /// The most `files` parts in one submission (default 1000).
    pub max_files: usize,
    /// The longest file name a part may carry, in bytes, before it is
    /// sanitized (default 255).
    pub max_file_name_bytes: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 1000,
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
///     webhook_secret: Some("s3cr3t".to_owned()),
///     ..ApiConfig::default()
/// };
/// assert_eq!(config.webhook_retries, 5);
/// assert_eq!(config.sse_keep_alive, Duration::from_secs(15));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Limits on submissions.
    pub limits: UploadLimits,
    /// The HMAC-SHA256 key that signs webhook deliveries. Without it,
    /// `listening=webhook` is refused with `400`.
    pub webhook_secret: Option<String>,
    /// How many times a webhook delivery is retried after its first
    /// attempt failed (default 5).
    pub webhook_retries: u32,
    /// The delay before the first retry of a webhook delivery; it doubles
    /// with every retry (default 1 s: 1, 2, 4, 8, 16 s).
    pub webhook_backoff: Duration,
    /// The time limit of one webhook delivery attempt (default 10 s).
    pub webhook_timeout: Duration,
    /// How long an `Idempotency-Key` is remembered (default 24 h).
    pub idempotency_ttl: Duration,
    /// How often an idle SSE stream sends a keep-alive comment (default
    /// 15 s).
    pub sse_keep_alive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            limits: UploadLimits::default(),
            webhook_secret: None,
            webhook_retries: 5,
            webhook_backoff: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            sse_keep_alive: Duration::from_secs(15),
        }
    }
}
