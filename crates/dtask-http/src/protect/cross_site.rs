//! Browser safety: a web page on another site cannot change anything here.
//!
//! A browser lets any page send "simple" requests (a form POST, a
//! `fetch` with `mode: "no-cors"`) to any address, the user's cookies and
//! a local server included; CORS only hides the answer. So state-changing
//! requests (every method but `GET`, `HEAD` and `OPTIONS`) that a browser
//! marks as coming from another origin are refused with `403
//! cross-site-request`, as Go's `CrossOriginProtection` does:
//! `Sec-Fetch-Site` (every current browser sends it) must be `same-origin`
//! or `none`; without it, an `Origin` must match the `Host`. Origins on the
//! CORS allow-list pass. Requests with neither header (curl, SDKs,
//! servers) are not a browser's and pass: they carry credentials of their
//! own.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use crate::problem::Problem;

/// Browser origins (`scheme://host[:port]`) allowed to call the API from
/// their pages: CORS answers them, and the cross-site refusal lets them
/// through. Empty by default: only the API's own origin.
///
/// ```
/// use dtask_http::AllowedOrigins;
///
/// let origins = AllowedOrigins::parse(["https://app.example.com/", "http://localhost:5173"]).unwrap();
/// assert_eq!(origins.iter().collect::<Vec<_>>(), ["https://app.example.com", "http://localhost:5173"]);
/// assert!(AllowedOrigins::parse(["https://app.example.com/path"]).is_err());
/// assert!(AllowedOrigins::parse(["*"]).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Arc<Vec<String>>);

/// An origin that [`AllowedOrigins::parse`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{origin}` is not an origin (`http(s)://host[:port]`, nothing after it): {reason}")]
pub struct InvalidOrigin {
    origin: String,
    reason: &'static str,
}

impl AllowedOrigins {
    /// The origins, each checked and normalized as browsers send them
    /// (lower case, no default port, no trailing slash).
    ///
    /// # Errors
    /// The first entry that is not an `http` or `https` origin.
    pub fn parse(origins: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, InvalidOrigin> {
        let mut parsed = Vec::new();
        for origin in origins {
            let origin = origin.as_ref().trim();
            let invalid = |reason| InvalidOrigin {
                origin: origin.to_owned(),
                reason,
            };
            let url = Url::parse(origin).map_err(|_| invalid("not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid("not http or https with a host"));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(invalid("an origin has no path, query or user"));
            }
            let normalized = url.origin().ascii_serialization();
            if !parsed.contains(&normalized) {
                parsed.push(normalized);
            }
        }
        Ok(Self(Arc::new(parsed)))
    }

    /// The origins, normalized.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether no origin is allowed (CORS is then off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Refuses state-changing requests a browser sent from another origin.
pub(crate) async fn refuse(State(allowed): State<AllowedOrigins>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || same_origin(request.headers(), &allowed)
    {
        return next.run(request).await;
    }
    Problem::new(
        StatusCode::FORBIDDEN,
        "cross-site-request",
        "Cross-site request refused",
        "a page of another origin may not change tasks here; call the API from its own origin, \
         from an allowed origin, or outside a browser",
    )
    .into_response()
}

fn same_origin(headers: &HeaderMap, allowed: &AllowedOrigins) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let origin = text(header::ORIGIN);
    let allowed_origin = origin.is_some_and(|o| allowed.allows(o));
    match text(header::HeaderName::from_static("sec-fetch-site")) {
        Some("same-origin" | "none") => true,
        Some(_) => allowed_origin,
        None => match origin {
            None => true,
            Some(origin) => allowed_origin || origin_is_host(origin, text(header::HOST)),
        },
    }
}

/// Whether `origin` names the same host and port as the `Host` header.
fn origin_is_host(origin: &str, host: Option<&str>) -> bool {
    let (Ok(origin), Some(host)) = (Url::parse(origin), host) else {
        return false;
    };
    let Some(origin_host) = origin.host_str() else {
        return false;
    };
    let authority = match origin.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_owned(),
    };
    authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (header::HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn browsers_from_elsewhere_are_refused() {
        let none = AllowedOrigins::default();
        let allowed = AllowedOrigins::parse(["https://app.example.com"]).unwrap();
        for (pairs, expected) in [
            (vec![], true),
            (vec![("sec-fetch-site", "same-origin")], true),
            (vec![("sec-fetch-site", "none")], true),
            (
                vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
                false,
            ),
            (
                vec![("sec-fetch-site", "same-site"), ("origin", "https://a.example.com")],
                false,
            ),
            (
                vec![("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")],
                true,
            ),
            (
                vec![("origin", "http://evil.example"), ("host", "127.0.0.1:8080")],
                false,
            ),
            (vec![("origin", "null"), ("host", "127.0.0.1:8080")], false),
        ] {
            assert_eq!(same_origin(&headers(&pairs), &none), expected, "{pairs:?}");
        }
        let from_app = headers(&[("sec-fetch-site", "cross-site"), ("origin", "https://app.example.com")]);
        assert!(same_origin(&from_app, &allowed));
        assert!(!same_origin(&from_app, &none));
    }
}
