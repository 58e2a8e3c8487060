//! How a client listens to its task: `polling`, `sse`, `websocket`,
//! `signalr` or `webhook` (with a `webhookUrl`). Only a webhook changes what the API
//! does; the others are accepted so a client can say what it will do.

use axum::http::StatusCode;
use reqwest::Url;

use crate::problem::{ApiResult, Problem, kinds};

/// The listening strategies, as a client names them.
pub(crate) const STRATEGIES: [&str; 5] = ["polling", "sse", "websocket", "signalr", "webhook"];

/// What a submission said about listening, from its fields or its query.
#[derive(Debug, Default)]
pub(crate) struct ListeningRequest {
    pub(crate) listening: Option<String>,
    pub(crate) webhook_url: Option<String>,
}

impl ListeningRequest {
    /// Fills what `self` lacks from `other` (fields win over the query).
    pub(crate) fn or(self, other: &ListeningRequest) -> Self {
        Self {
            listening: self.listening.or_else(|| other.listening.clone()),
            webhook_url: self.webhook_url.or_else(|| other.webhook_url.clone()),
        }
    }

    /// The strategy named, if one is.
    ///
    /// # Errors
    /// `400` for a name that is not one of [`STRATEGIES`] (checked on the
    /// query on its own too, so a field cannot hide a bad query value).
    pub(crate) fn strategy(&self) -> ApiResult<Option<&str>> {
        match self.listening.as_deref() {
            None => Ok(None),
            Some(s) if STRATEGIES.contains(&s) => Ok(Some(s)),
            Some(other) => Err(kinds::invalid_request(format!(
                "`listening` is `{other}`; it must be one of {}",
                STRATEGIES.join(", ")
            ))),
        }
    }

    /// The URL to deliver the terminal snapshot to, if the client asked
    /// for a webhook (`listening=webhook`, or a `webhookUrl` alone).
    ///
    /// # Errors
    /// `400` for an unknown strategy, a webhook without a URL or with one
    /// that does not parse, or when webhooks are not configured; `422` for
    /// a URL that is not `http`/`https` or comes with another strategy.
    pub(crate) fn webhook(&self, configured: bool) -> ApiResult<Option<Url>> {
        let strategy = match self.strategy()? {
            None if self.webhook_url.is_some() => "webhook",
            None => return Ok(None),
            Some(strategy) => strategy,
        };
        if strategy != "webhook" {
            return match self.webhook_url {
                Some(_) => Err(invalid_webhook(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("`webhookUrl` is only used with `listening=webhook`, not `{strategy}`"),
                )),
                None => Ok(None),
            };
        }
        if !configured {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "webhooks-not-configured",
                "Webhooks are not configured",
                "webhooks are not configured",
            ));
        }
        let raw = self.webhook_url.as_deref().ok_or_else(|| {
            invalid_webhook(
                StatusCode::BAD_REQUEST,
                "`listening=webhook` needs a `webhookUrl`".to_owned(),
            )
        })?;
        let url = Url::parse(raw)
            .map_err(|e| invalid_webhook(StatusCode::BAD_REQUEST, format!("`{raw}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid_webhook(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{raw}` is not an http or https URL with a host"),
            ));
        }
        Ok(Some(url))
    }
}

fn invalid_webhook(status: StatusCode, detail: String) -> Problem {
    Problem::new(status, "invalid-webhook", "Invalid webhook", detail)
}

#[cfg(test)]
mod tests {
    use super::ListeningRequest;

    fn request(listening: Option<&str>, url: Option<&str>) -> ListeningRequest {
        ListeningRequest {
            listening: listening.map(str::to_owned),
            webhook_url: url.map(str::to_owned),
        }
    }

    #[test]
    fn webhook_urls_must_be_http() {
        assert!(request(None, None).webhook(true).unwrap().is_none());
        assert!(request(Some("sse"), None).webhook(true).unwrap().is_none());
        let ok = request(Some("webhook"), Some("https://example.com/hook")).webhook(true);
        assert_eq!(ok.unwrap().unwrap().as_str(), "https://example.com/hook");
        for (listening, url, status) in [
            (Some("webhook"), None, 400),
            (Some("webhook"), Some("ftp://example.com/x"), 422),
            (Some("webhook"), Some("file:///etc/passwd"), 422),
            (Some("webhook"), Some("not a url"), 400),
            (Some("carrier-pigeon"), None, 400),
            (Some("sse"), Some("https://example.com/hook"), 422),
        ] {
            let problem = request(listening, url).webhook(true).unwrap_err();
            assert_eq!(problem.status(), status, "{listening:?} {url:?}");
        }
        let problem = request(Some("webhook"), Some("https://example.com"))
            .webhook(false)
            .unwrap_err();
        assert_eq!(problem.detail(), "webhooks are not configured");
    }
}
