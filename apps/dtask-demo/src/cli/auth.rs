//! Who may call a server: the authentication flags of `serve` and `api`,
//! each with an environment fallback.

use std::path::PathBuf;

use anyhow::Context;
use dtask_http::{ApiKeys, Authenticator, DEFAULT_ROLES_CLAIM, JwtVerifier};

/// The authentication flags. With none of the credentials set the API is
/// open (every caller is the operator), and the server refuses to listen
/// beyond loopback unless `--insecure-no-auth` is given.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AuthArgs {
    /// Accept JWTs signed with HS256 and this secret (at least 32 bytes).
    #[arg(long, env = "DTASK_AUTH_JWT_SECRET", hide_env_values = true)]
    auth_jwt_secret: Option<String>,
    /// Accept JWTs signed with the private half of this PEM public key (RSA
    /// or EC).
    #[arg(long, env = "DTASK_AUTH_JWT_PUBLIC_KEY", value_name = "PEM FILE")]
    auth_jwt_public_key: Option<PathBuf>,
    /// Accept JWTs signed with a key of this JWKS document, by `kid`.
    #[arg(long, env = "DTASK_AUTH_JWT_JWKS", value_name = "JSON FILE")]
    auth_jwt_jwks: Option<PathBuf>,
    /// Accept only JWTs from this issuer (`iss`).
    #[arg(long, env = "DTASK_AUTH_JWT_ISSUER")]
    auth_jwt_issuer: Option<String>,
    /// Accept only JWTs for this audience (`aud`).
    #[arg(long, env = "DTASK_AUTH_JWT_AUDIENCE")]
    auth_jwt_audience: Option<String>,
    /// The JWT claim holding the caller's roles (a dotted path reaches into
    /// nested objects).
    #[arg(long, env = "DTASK_AUTH_ROLES_CLAIM", default_value = DEFAULT_ROLES_CLAIM)]
    auth_roles_claim: String,
    /// Accept the API keys of this file (`sha256:<hex> subject role,role`
    /// a line; `dtask-demo hash-api-key KEY` prints a key's hash).
    #[arg(long, env = "DTASK_AUTH_API_KEYS", value_name = "FILE")]
    auth_api_keys: Option<PathBuf>,
    /// The role that sees and manages every task.
    #[arg(long, env = "DTASK_OPERATOR_ROLE", default_value = dtask::DEFAULT_OPERATOR_ROLE)]
    pub(crate) operator_role: String,
    /// Serve without authentication on a non-loopback address: anyone who
    /// reaches the port reads, cancels and downloads every task.
    #[arg(long, env = "DTASK_INSECURE_NO_AUTH")]
    pub(crate) insecure_no_auth: bool,
}

impl AuthArgs {
    /// The authenticator the flags describe (disabled when none is set).
    pub(crate) fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let keys = [
            self.auth_jwt_secret.is_some(),
            self.auth_jwt_public_key.is_some(),
            self.auth_jwt_jwks.is_some(),
        ];
        if keys.iter().filter(|set| **set).count() > 1 {
            anyhow::bail!("give one JWT key: DTASK_AUTH_JWT_SECRET, DTASK_AUTH_JWT_PUBLIC_KEY or DTASK_AUTH_JWT_JWKS");
        }
        let verifier = if let Some(secret) = &self.auth_jwt_secret {
            Some(JwtVerifier::hs256(secret.as_bytes())?)
        } else if let Some(path) = &self.auth_jwt_public_key {
            let pem = std::fs::read(path).with_context(|| format!("reading the JWT public key {}", path.display()))?;
            Some(JwtVerifier::public_key_pem(&pem)?)
        } else if let Some(path) = &self.auth_jwt_jwks {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWKS document {}", path.display()))?;
            Some(JwtVerifier::jwks(&json)?)
        } else {
            None
        };
        let mut auth = Authenticator::default();
        if let Some(mut verifier) = verifier {
            verifier = verifier.roles_claim(&self.auth_roles_claim);
            if let Some(issuer) = &self.auth_jwt_issuer {
                verifier = verifier.issuer(issuer);
            }
            if let Some(audience) = &self.auth_jwt_audience {
                verifier = verifier.audience(audience);
            }
            auth = auth.jwt(verifier);
        } else if self.auth_jwt_issuer.is_some() || self.auth_jwt_audience.is_some() {
            anyhow::bail!("DTASK_AUTH_JWT_ISSUER and DTASK_AUTH_JWT_AUDIENCE need a JWT key");
        }
        if let Some(path) = &self.auth_api_keys {
            auth = auth.api_keys(ApiKeys::load(path)?);
        }
        Ok(auth)
    }
}
