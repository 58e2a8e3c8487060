//! Webhooks: the terminal snapshot of a task, POSTed to the URL its client
//! gave, signed, and retried until it is taken.
//!
//! Each delivery is a `POST` of the snapshot's JSON with these headers:
//!
//! | header | value |
//! |---|---|
//! | `X-Dtask-Signature` | `sha256=` and the hex HMAC-SHA256 of the body under the configured secret |
//! | `X-Dtask-Event` | `task.` and the final status, e.g. `task.completed`, `task.compensated` |
//! | `X-Dtask-Task-Id` | the task's id |
//! | `X-Dtask-Delivery` | an id shared by every attempt of one delivery |
//!
//! A delivery is retried with exponential backoff (1, 2, 4, 8, 16 s by
//! default) until the receiver answers 2xx. Redirects are not followed.
//! A receiver checks the signature with [`verify_signature`].

use std::time::Duration;

use dtask_core::{Caller, TaskId, TaskProgress};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use sha2::Sha256;

use crate::config::ApiConfig;
use crate::follow::snapshots;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-dtask-signature";
/// The event header.
pub const EVENT_HEADER: &str = "x-dtask-event";
/// The task id header.
pub const TASK_ID_HEADER: &str = "x-dtask-task-id";
/// The delivery id header.
pub const DELIVERY_HEADER: &str = "x-dtask-delivery";

/// The signature of `body` under `secret`: `sha256=` and the hex
/// HMAC-SHA256, as sent in `X-Dtask-Signature`.
pub fn sign(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret.as_ref(), body).finalize().into_bytes())
    )
}

/// Whether `header` (an `X-Dtask-Signature` value) is the signature of
/// `body` under `secret`. Compares in constant time.
///
/// ```
/// use dtask_http::{sign, verify_signature};
///
/// let body = br#"{"status":"completed"}"#;
/// let header = sign("s3cr3t", body);
/// assert!(verify_signature("s3cr3t", body, &header));
/// assert!(!verify_signature("other", body, &header));
/// assert!(!verify_signature("s3cr3t", b"{}", &header));
/// ```
pub fn verify_signature(secret: impl AsRef<[u8]>, body: &[u8], header: &str) -> bool {
    let Some(signature) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    mac(secret.as_ref(), body).verify_slice(&signature).is_ok()
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// Sends webhooks.
#[derive(Clone)]
pub(crate) struct Webhooks {
    client: reqwest::Client,
    secret: String,
    retries: u32,
    backoff: Duration,
}

impl Webhooks {
    /// The sender `config` describes, or `None` without a secret (or if no
    /// HTTP client could be built, which is logged).
    pub(crate) fn new(config: &ApiConfig) -> Option<Self> {
        let secret = config.webhook_secret.clone()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.webhook_timeout)
            .user_agent(concat!("dtask-webhook/", env!("CARGO_PKG_VERSION")))
            .build();
        match client {
            Ok(client) => Some(Self {
                client,
                secret,
                retries: config.webhook_retries,
                backoff: config.webhook_backoff,
            }),
            Err(error) => {
                tracing::error!(%error, "no HTTP client for webhooks: they are disabled");
                None
            }
        }
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
        let body = match serde_json::to_vec(progress) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%task_id, %error, "the terminal snapshot does not serialize: no webhook");
                return;
            }
        };
        let signature = sign(&self.secret, &body);
        let event = format!("task.{}", progress.status.as_str());
        let delivery = uuid::Uuid::new_v4().to_string();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                tokio::time::sleep(self.backoff.saturating_mul(factor)).await;
            }
            let sent = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(EVENT_HEADER, &event)
                .header(TASK_ID_HEADER, task_id.to_string())
                .header(DELIVERY_HEADER, &delivery)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(%task_id, %url, attempt, "webhook delivered");
                    return;
                }
                Ok(response) => {
                    tracing::warn!(%task_id, %url, attempt, status = %response.status(), "webhook refused");
                }
                Err(error) => tracing::warn!(%task_id, %url, attempt, %error, "webhook failed"),
            }
        }
        tracing::error!(%task_id, %url, retries = self.retries, "webhook given up");
    }
}
