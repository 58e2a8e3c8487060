//! What the API of `serve` and `api` offers browsers and webhook
//! receivers: allowed origins, the webhook secret and allowed internal
//! hosts, each with an environment fallback.

use dtask_http::{AllowedOrigins, ApiConfig, WebhookConfig, WebhookSecret};

/// The API's browser and webhook flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApiArgs {
    /// Sign webhooks with this Standard Webhooks secret (`whsec_` and the
    /// base64 of 24 to 64 random bytes); without it, webhooks are refused.
    #[arg(long, env = "DTASK_WEBHOOK_SECRET", hide_env_values = true, value_name = "whsec_...")]
    webhook_secret: Option<String>,
    /// Hosts that may receive webhooks although they resolve to internal
    /// addresses (comma separated).
    #[arg(
        long,
        env = "DTASK_WEBHOOK_ALLOW_HOSTS",
        value_delimiter = ',',
        value_name = "HOST,..."
    )]
    webhook_allow_hosts: Vec<String>,
    /// Browser origins whose pages may call the API (comma separated,
    /// `https://app.example.com`); CORS is off without them.
    #[arg(long, env = "DTASK_CORS_ORIGINS", value_delimiter = ',', value_name = "ORIGIN,...")]
    cors_origins: Vec<String>,
    /// Show backends' errors (which may name internal hosts) in `/readyz`
    /// answers, for debugging; they are always logged.
    #[arg(long, env = "DTASK_EXPOSE_INTERNAL_ERRORS")]
    expose_internal_errors: bool,
}

impl ApiArgs {
    /// The API configuration the flags describe.
    pub(crate) fn config(&self) -> anyhow::Result<ApiConfig> {
        let secret = self
            .webhook_secret
            .as_deref()
            .map(str::parse::<WebhookSecret>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("DTASK_WEBHOOK_SECRET: {e}"))?;
        let origins = self.cors_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty());
        let cors_origins = AllowedOrigins::parse(origins).map_err(|e| anyhow::anyhow!("DTASK_CORS_ORIGINS: {e}"))?;
        Ok(ApiConfig {
            webhooks: WebhookConfig {
                secret,
                allow_hosts: self.webhook_allow_hosts.clone(),
                ..WebhookConfig::default()
            },
            cors_origins,
            expose_internal_errors: self.expose_internal_errors,
            ..ApiConfig::default()
        })
    }
}
