//! The HTTP client of webhooks, for steps that call URLs their requests
//! name under the same rules.

use std::time::Duration;

use reqwest::{Request, Response, Url};

use super::WebhookConfig;
use super::guard::{AddressPolicy, PinnedResolver};

/// An HTTP client that reaches only what webhooks may reach: public
/// addresses, or the hosts of [`WebhookConfig::allow_hosts`]. The check
/// runs on the addresses a name resolves to, which are the ones the client
/// then connects to, and on IP literals before sending; no redirect is
/// followed, no proxy used, and each request is limited to
/// [`WebhookConfig::timeout`]. A task's step that notifies a URL from its
/// request uses it so that a submitter cannot make a worker call into the
/// private network.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask_http::OutboundError> {
/// use dtask_http::{OutboundClient, WebhookConfig};
///
/// let client = OutboundClient::new(&WebhookConfig::default())?;
/// let url = "https://hooks.example.com/video".parse().unwrap();
/// let request = client.post(url).body("{}").build()?;
/// let response = client.execute(request).await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    policy: AddressPolicy,
}

/// Why an outbound request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The destination is not one the rules allow (or does not resolve).
    #[error("refused destination: {0}")]
    Refused(String),
    /// The request failed (connection, time limit, TLS).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

impl OutboundClient {
    /// A client under `config`'s rules (its secret is not used).
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(config: &WebhookConfig) -> Result<Self, OutboundError> {
        let policy = AddressPolicy::new(&config.allow_hosts);
        Ok(Self {
            client: guarded_client(policy.clone(), config.timeout)?,
            policy,
        })
    }

    /// A `POST` to `url`, to build and pass to [`execute`](Self::execute).
    pub fn post(&self, url: Url) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends `request` if its destination is allowed.
    ///
    /// # Errors
    /// [`OutboundError::Refused`] for a destination the rules refuse;
    /// [`OutboundError::Http`] when the request fails.
    pub async fn execute(&self, request: Request) -> Result<Response, OutboundError> {
        self.policy
            .check(request.url())
            .await
            .map_err(|refusal| OutboundError::Refused(refusal.to_string()))?;
        Ok(self.client.execute(request).await?)
    }
}

/// The client every webhook delivery goes through: names resolved by the
/// policy's resolver, no redirect, no proxy, a time limit.
pub(super) fn guarded_client(policy: AddressPolicy, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name itself, past the guard.
        .no_proxy()
        .dns_resolver(PinnedResolver(policy))
        .timeout(timeout)
        .user_agent(concat!("dtask-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
}
