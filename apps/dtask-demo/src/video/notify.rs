//! NotifyWebhook's client: the response, POSTed as JSON to the URL the
//! request names, signed the Standard Webhooks way when a secret is set,
//! and only to destinations webhooks may reach.

use dtask::prelude::*;
use dtask_http::{
    OutboundClient, OutboundError, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER,
    WebhookConfig, WebhookSecret, WebhookSecretError,
};

use super::{Notified, VideoTranscodeResponse};

/// The event header's value.
const EVENT: &str = "video.transcoded";

/// Sends NotifyWebhook's notification.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: OutboundClient,
    secret: Option<WebhookSecret>,
}

/// The notifier cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// `DTASK_WEBHOOK_SECRET` is not a Standard Webhooks secret.
    #[error("DTASK_WEBHOOK_SECRET: {0}")]
    Secret(#[from] WebhookSecretError),
    /// No HTTP client could be built.
    #[error("no HTTP client for NotifyWebhook: {0}")]
    Client(#[from] OutboundError),
}

impl Notifier {
    /// A notifier reaching what `config` allows, signing with its secret
    /// when it has one.
    ///
    /// # Errors
    /// [`NotifierError::Client`] when the TLS backend cannot be initialised.
    pub fn new(config: &WebhookConfig) -> Result<Self, NotifierError> {
        Ok(Self {
            client: OutboundClient::new(config)?,
            secret: config.secret.clone(),
        })
    }

    /// The notifier of `DTASK_WEBHOOK_SECRET` (optional) and
    /// `DTASK_WEBHOOK_ALLOW_HOSTS` (comma separated), as the API's
    /// webhooks read them.
    ///
    /// # Errors
    /// A malformed secret; no HTTP client.
    pub fn from_env() -> Result<Self, NotifierError> {
        let secret = match std::env::var("DTASK_WEBHOOK_SECRET") {
            Ok(secret) if !secret.is_empty() => Some(secret.parse()?),
            _ => None,
        };
        let allow_hosts = std::env::var("DTASK_WEBHOOK_ALLOW_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        Self::new(&WebhookConfig {
            secret,
            allow_hosts,
            ..WebhookConfig::default()
        })
    }

    /// POSTs `summary` to `url`. The `webhook-id` is the step's idempotency
    /// key, the same on every attempt, so a receiver deduplicates retries.
    ///
    /// # Errors
    /// Permanent for a URL that is malformed or refused (retrying will not
    /// change it); transient when the receiver fails or answers non-2xx.
    pub(super) async fn notify(
        &self,
        cx: &StepContext,
        url: &str,
        summary: &VideoTranscodeResponse,
    ) -> Result<Notified, StepError> {
        let parsed = url
            .parse::<reqwest::Url>()
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| StepError::permanent("notifyUrl is not an http(s) URL"))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "taskId": cx.task_id(),
            "event": EVENT,
            "result": summary,
        }))
        .map_err(|e| StepError::permanent("the notification does not serialize").with_source(e))?;
        let id = cx.idempotency_key();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut shown = parsed.clone();
        let mut request = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(WEBHOOK_ID_HEADER, &id)
            .header(WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string())
            .header(dtask_http::EVENT_HEADER, EVENT)
            .header(dtask_http::TASK_ID_HEADER, cx.task_id().to_string());
        if let Some(secret) = &self.secret {
            request = request.header(WEBHOOK_SIGNATURE_HEADER, secret.sign(&id, timestamp, &body));
        }
        let request = request
            .body(body)
            .build()
            .map_err(|e| StepError::permanent("the notification request cannot be built").with_source(e))?;
        let response = tokio::select! {
            response = self.client.execute(request) => response,
            () = cx.cancelled() => return Err(StepError::cancelled()),
        };
        let status = match response {
            Ok(response) => response.status(),
            Err(OutboundError::Refused(reason)) => {
                return Err(StepError::permanent(format!("notifyUrl refused: {reason}")));
            }
            Err(OutboundError::Http(e)) => {
                return Err(StepError::transient("the notification was not delivered").with_source(e.without_url()));
            }
        };
        if !status.is_success() {
            return Err(StepError::transient(format!("the notification was answered {status}")));
        }
        shown.set_query(None);
        shown.set_fragment(None);
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Ok(Notified {
            // Without what may hold a token: the result is shown to clients.
            url: shown.to_string(),
            status: status.as_u16(),
        })
    }
}
