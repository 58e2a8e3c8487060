//! Authentication: who calls. An [`Authenticator`] (JWT bearer tokens, API
//! keys, or both) turns a request's credentials into a [`Principal`]; the
//! routes then act through the host's [`Caller`](dtask_core::Caller) for
//! it (`crate::caller`), which scopes every task to its submitter (and an
//! operator).
//!
//! Credentials: `Authorization: Bearer <token>` (a JWT when it has the
//! form of one and JWTs are accepted, otherwise an API key) or
//! `X-Api-Key: <key>`. A request without them is answered `401` with
//! `WWW-Authenticate: Bearer realm="dtask"`; one with bad ones `401` with
//! `error="invalid_token"` and what was wrong (RFC 6750). `/healthz`,
//! `/readyz` and `/api/openapi.json` stay open.
//!
//! Without an authenticator the API is open, and every caller is the
//! host's operator: keep such a server on a loopback address.

mod api_keys;
mod jwt;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dtask_core::Principal;

pub use api_keys::ApiKeys;
pub use jwt::{DEFAULT_ROLES_CLAIM, JwtVerifier};

use crate::problem::Problem;

/// The header that may carry an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "dtask";

/// A configuration of authentication that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// A key, secret or key set is malformed or too weak.
    #[error("unusable JWT key: {0}")]
    Key(String),
    /// A line of the API keys file is malformed.
    #[error("line {line} of the API keys file: {reason}")]
    ApiKeyLine {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {what} at {}", path.display())]
    Read {
        /// What the file holds.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Who may call the API, and how they prove it. See the module docs.
///
/// ```
/// use dtask_http::{ApiKeys, Authenticator, JwtVerifier};
///
/// let auth = Authenticator::default()
///     .jwt(JwtVerifier::hs256(b"a shared secret of at least 32 bytes").unwrap().audience("dtask"))
///     .api_keys(ApiKeys::parse(&format!("{} ci-bot dtask-operator", ApiKeys::hash("k"))).unwrap());
/// assert!(auth.is_enabled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It carried no credentials.
    Missing,
    /// Its credentials are not valid, and why.
    Invalid(String),
}

impl Authenticator {
    /// Accepts JWT bearer tokens that `verifier` verifies.
    #[must_use]
    pub fn jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// Accepts these API keys.
    #[must_use]
    pub fn api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Whether any credential is accepted (without, the API is open).
    pub fn is_enabled(&self) -> bool {
        self.jwt.is_some() || self.api_keys.is_some()
    }

    /// The principal a request's headers prove.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        if let Some(key) = headers.get(API_KEY_HEADER) {
            let key = key
                .to_str()
                .map_err(|_| Refusal::Invalid("the API key is not text".into()))?;
            return self.api_key(key);
        }
        let Some(authorization) = headers.get(AUTHORIZATION) else {
            return Err(Refusal::Missing);
        };
        let credentials = authorization
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, credentials) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
            })
            .filter(|credentials| !credentials.is_empty())
            .ok_or_else(|| Refusal::Invalid("the Authorization header is not `Bearer <credentials>`".into()))?;
        self.bearer(credentials)
    }

    /// The principal bearer credentials prove: a JWT when they have the
    /// form of one and JWTs are accepted, otherwise an API key.
    fn bearer(&self, credentials: &str) -> Result<Principal, Refusal> {
        match &self.jwt {
            Some(jwt) if looks_like_jwt(credentials) => jwt.verify(credentials).map_err(Refusal::Invalid),
            _ => self.api_key(credentials),
        }
    }

    fn api_key(&self, key: &str) -> Result<Principal, Refusal> {
        let keys = self
            .api_keys
            .as_ref()
            .ok_or_else(|| Refusal::Invalid("API keys are not accepted here".into()))?;
        keys.principal(key)
            .cloned()
            .ok_or_else(|| Refusal::Invalid("the API key is not known".into()))
    }
}

/// `header.payload.signature`.
fn looks_like_jwt(credentials: &str) -> bool {
    credentials.split('.').count() == 3
}

impl Refusal {
    /// The `401` answer.
    pub(crate) fn into_problem(self) -> Problem {
        let (challenge, kind, title, detail) = match self {
            Self::Missing => (
                format!("Bearer realm=\"{REALM}\""),
                "unauthenticated",
                "Authentication required",
                "this route takes credentials: `Authorization: Bearer <token or API key>` or `X-Api-Key`".to_owned(),
            ),
            Self::Invalid(reason) => (
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                ),
                "invalid-credentials",
                "Invalid credentials",
                reason,
            ),
        };
        let challenge = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer"));
        Problem::new(StatusCode::UNAUTHORIZED, kind, title, detail).header(WWW_AUTHENTICATE, challenge)
    }
}

/// The middleware of the routes that take credentials: authenticates the
/// request and hands its principal on, or answers `401`.
pub(crate) async fn require(State(auth): State<Arc<Authenticator>>, request: Request, next: Next) -> Response {
    let verdict = auth.authenticate(request.headers());
    admit(verdict, request, next).await
}

/// [`require`], also taking the credentials from the `access_token` query
/// parameter when no header carries them: SignalR clients in browsers
/// send them so, since a browser cannot set a WebSocket's headers. Only
/// for the SignalR hub's WebSocket: a query lands in more logs than a
/// header does.
pub(crate) async fn require_or_query_token(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    #[derive(serde::Deserialize)]
    struct AccessToken {
        access_token: Option<String>,
    }
    let verdict = match auth.authenticate(request.headers()) {
        Err(Refusal::Missing) => match axum::extract::Query::<AccessToken>::try_from_uri(request.uri()) {
            Ok(axum::extract::Query(AccessToken {
                access_token: Some(token),
            })) if !token.is_empty() => auth.bearer(&token),
            _ => Err(Refusal::Missing),
        },
        verdict => verdict,
    };
    admit(verdict, request, next).await
}

/// Hands the principal of an authenticated request on, or answers `401`.
async fn admit(verdict: Result<Principal, Refusal>, mut request: Request, next: Next) -> Response {
    match verdict {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => {
            tracing::debug!(?refusal, path = request.uri().path(), "refused a request");
            refusal.into_problem().into_response()
        }
    }
}
