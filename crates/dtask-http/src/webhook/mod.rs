//! Webhooks: the terminal snapshot of a task, POSTed to the URL its client
//! gave, signed the Standard Webhooks way, and retried until it is taken.
//!
//! Each delivery is a `POST` of the snapshot's JSON with these headers:
//!
//! | header | value |
//! |---|---|
//! | `webhook-id` | the delivery's id, the same on every attempt (deduplicate on it) |
//! | `webhook-timestamp` | the attempt's Unix time in seconds |
//! | `webhook-signature` | `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` |
//! | `X-Dtask-Event` | `task.` and the final status, e.g. `task.completed`, `task.compensated` |
//! | `X-Dtask-Task-Id` | the task's id |
//!
//! Receivers verify with any Standard Webhooks library (or
//! [`WebhookSecret::verify`]), which also refuses replays by timestamp.
//! A delivery is retried with exponential backoff (1, 2, 4, 8, 16 s by
//! default) until the receiver answers 2xx. Redirects are not followed, the
//! response body is never read, every attempt has a time limit, and the
//! destination must be a public address (see [`guard`]).

mod guard;
mod outbound;
mod signature;

use std::time::Duration;

use dtask_core::{Caller, TaskId, TaskProgress};
use futures::StreamExt;
use reqwest::Url;

pub(crate) use guard::{AddressPolicy, Refusal};
pub use outbound::{OutboundClient, OutboundError};
pub use signature::{
    TIMESTAMP_TOLERANCE, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WebhookSecret,
    WebhookSecretError, WebhookVerifyError,
};

use crate::follow::snapshots;

/// The event header.
pub const EVENT_HEADER: &str = "x-dtask-event";
/// The task id header.
pub const TASK_ID_HEADER: &str = "x-dtask-task-id";

/// How webhooks are signed, where they may go, and how they are retried.
///
/// ```
/// use dtask_http::WebhookConfig;
///
/// let config = WebhookConfig {
///     secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap()),
///     allow_hosts: vec!["hooks.internal".to_owned()],
///     ..WebhookConfig::default()
/// };
/// assert_eq!(config.retries, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The key that signs deliveries. Without it, `listening=webhook` is
    /// refused with `400` (and the OpenAPI document does not offer it).
    pub secret: Option<WebhookSecret>,
    /// Hosts (names or IP literals) that may receive webhooks even though
    /// they resolve to loopback, private, link-local, unique-local or
    /// unspecified addresses, which are refused otherwise.
    pub allow_hosts: Vec<String>,
    /// How many times a delivery is retried after its first attempt failed
    /// (default 5).
    pub retries: u32,
    /// The delay before the first retry; it doubles with every retry
    /// (default 1 s: 1, 2, 4, 8, 16 s).
    pub backoff: Duration,
    /// The time limit of one attempt, connection included (default 10 s).
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: None,
            allow_hosts: Vec::new(),
            retries: 5,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends webhooks.
#[derive(Clone)]
pub(crate) struct Webhooks {
    client: reqwest::Client,
    secret: WebhookSecret,
    policy: AddressPolicy,
    retries: u32,
    backoff: Duration,
}

impl Webhooks {
    /// The sender `config` describes, or `None` without a secret (or if no
    /// HTTP client could be built, which is logged).
    pub(crate) fn new(config: &WebhookConfig) -> Option<Self> {
        let secret = config.secret.clone()?;
        let policy = AddressPolicy::new(&config.allow_hosts);
        match outbound::guarded_client(policy.clone(), config.timeout) {
            Ok(client) => Some(Self {
                client,
                secret,
                policy,
                retries: config.retries,
                backoff: config.backoff,
            }),
            Err(error) => {
                tracing::error!(%error, "no HTTP client for webhooks: they are disabled");
                None
            }
        }
    }

    /// Checks that `url` may receive webhooks now (its addresses are public
    /// or its host allowed).
    pub(crate) async fn admit(&self, url: &Url) -> Result<(), Refusal> {
        self.policy.check(url).await
    }

    /// Follows `task_id` in the background and delivers its terminal
    /// snapshot to `url`.
    pub(crate) fn watch(&self, caller: Caller, task_id: TaskId, url: Url) {
        let webhooks = self.clone();
        tokio::spawn(async move {
            let terminal = match snapshots(&caller, task_id).await {
                Ok(stream) => stream.filter(|p| futures::future::ready(p.is_terminal())).next().await,
                Err(error) => {
                    tracing::warn!(%task_id, %error, "cannot follow the task of a webhook");
                    None
                }
            };
            match terminal {
                Some(progress) => webhooks.deliver(&url, &progress).await,
                None => tracing::warn!(%task_id, "the task's stream ended without a terminal snapshot: no webhook"),
            }
        });
    }

    async fn deliver(&self, url: &Url, progress: &TaskProgress) {
        let task_id = progress.task_id;
        let shown = loggable(url);
        let body = match serde_json::to_vec(progress) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%task_id, %error, "the terminal snapshot does not serialize: no webhook");
                return;
            }
        };
        let event = format!("task.{}", progress.status.as_str());
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                tokio::time::sleep(self.backoff.saturating_mul(factor)).await;
            }
            // Signed per attempt: a retry carries a fresh timestamp, so
            // receivers that refuse old ones still take it.
            let timestamp = signature::unix_now();
            let sent = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(WEBHOOK_ID_HEADER, &id)
                .header(WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string())
                .header(WEBHOOK_SIGNATURE_HEADER, self.secret.sign(&id, timestamp, &body))
                .header(EVENT_HEADER, &event)
                .header(TASK_ID_HEADER, task_id.to_string())
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(%task_id, url = %shown, attempt, "webhook delivered");
                    return;
                }
                Ok(response) => {
                    tracing::warn!(%task_id, url = %shown, attempt, status = %response.status(), "webhook refused");
                }
                Err(error) => {
                    let error = error.without_url();
                    tracing::warn!(%task_id, url = %shown, attempt, error = %error_chain(&error), "webhook failed");
                }
            }
        }
        tracing::error!(%task_id, url = %shown, retries = self.retries, "webhook given up");
    }
}

/// `url` without its user information, query and fragment, which may hold
/// tokens.
pub(crate) fn loggable(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_lose_their_secrets() {
        let url = Url::parse("https://user:pw@example.com:8443/hook?token=abc#frag").unwrap();
        assert_eq!(loggable(&url), "https://example.com:8443/hook");
    }
}
