//! JWT bearer tokens: HS256 with a shared secret, or RS*/PS*/ES* with a
//! PEM public key or a JWKS document, verified with `jsonwebtoken`.
//!
//! The algorithm a token may use is decided by the key, never by the
//! token: an HMAC secret takes only HS256, an RSA key only the RSA
//! algorithms, an EC key only ES256/ES384. A token whose header names
//! another (`alg: none`, or HS256 against an RSA public key: algorithm
//! confusion) is refused before any signature is checked.

use std::time::Duration;

use dtask_core::Principal;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::AuthConfigError;

/// The claim holding the roles unless told otherwise.
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// The clock skew tolerated on `exp` and `nbf` unless told otherwise.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// One key a token may be signed with.
#[derive(Clone)]
struct Key {
    /// The JWKS `kid`, when the key came from a JWKS document.
    kid: Option<String>,
    key: DecodingKey,
    /// The algorithms it verifies.
    algorithms: Vec<Algorithm>,
}

/// Verifies JWT bearer tokens and turns their claims into a
/// [`Principal`]: the subject is `sub`; the roles come from a claim
/// (default `roles`, an array of strings or a space-separated string; a
/// dotted path such as `realm_access.roles` reaches into nested objects).
///
/// `exp` is required; `exp` and `nbf` are checked with a leeway of 30 s;
/// `iss` and `aud` are checked when configured.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    roles_claim: String,
}

impl JwtVerifier {
    fn with_keys(keys: Vec<Key>) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
        }
    }

    /// Tokens signed with HS256 and `secret` (at least 32 bytes).
    ///
    /// # Errors
    /// [`AuthConfigError::Key`] for a shorter secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthConfigError> {
        if secret.len() < 32 {
            return Err(AuthConfigError::Key(format!(
                "the HS256 secret is {} bytes; use at least 32 random bytes",
                secret.len()
            )));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| AuthConfigError::Key(e.to_string()))?;
        Ok(Self::with_keys(vec![Key {
            kid: None,
            key,
            algorithms: vec![Algorithm::HS256],
        }]))
    }

    /// Tokens signed with the private half of the PEM public key `pem`: an
    /// RSA key (RS256, RS384, RS512, PS256, PS384, PS512) or an EC key on
    /// P-256 or P-384 (ES256, ES384).
    ///
    /// # Errors
    /// [`AuthConfigError::Key`] when `pem` is neither.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, AuthConfigError> {
        let key = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => key,
            Err(_) => DecodingKey::from_ec_pem(pem).map_err(|e| {
                AuthConfigError::Key(format!("the public key is neither an RSA nor an EC PEM key: {e}"))
            })?,
        };
        let algorithms = family_algorithms(key.family());
        Ok(Self::with_keys(vec![Key {
            kid: None,
            key,
            algorithms,
        }]))
    }

    /// Tokens signed with one of the keys of the JWKS document `json`,
    /// chosen by the token's `kid`. A key's `alg`, when it says one, is the
    /// only algorithm it verifies.
    ///
    /// # Errors
    /// [`AuthConfigError::Key`] for a document that is not a JWKS, or
    /// holds no key this verifier can use.
    pub fn jwks(json: &str) -> Result<Self, AuthConfigError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| AuthConfigError::Key(format!("not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue; // a key type this verifier cannot use (e.g. `oct`)
            };
            let algorithms = match jwk.common.key_algorithm.map(Algorithm::try_from) {
                Some(Ok(algorithm)) if family_algorithms(key.family()).contains(&algorithm) => vec![algorithm],
                Some(_) => continue,
                None => family_algorithms(key.family()),
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            });
        }
        if keys.is_empty() {
            return Err(AuthConfigError::Key("the JWKS document holds no usable key".into()));
        }
        Ok(Self::with_keys(keys))
    }

    /// Accepts only tokens whose `iss` is `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts only tokens whose `aud` names `audience`.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Reads the roles from `claim` (a dotted path reaches into nested
    /// objects).
    #[must_use]
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }

    /// The clock skew tolerated on `exp` and `nbf`.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The principal `token` names.
    ///
    /// # Errors
    /// Why the token is refused, for the `401` answer.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) => {
                "the token's header is malformed or names an algorithm that is not accepted".to_owned()
            }
            _ => format!("the token is malformed: {e}"),
        })?;
        let key = self
            .keys
            .iter()
            .find(|k| k.algorithms.contains(&header.alg) && (k.kid.is_none() || k.kid == header.kid))
            .ok_or_else(|| {
                format!(
                    "no accepted key verifies {:?} tokens{}",
                    header.alg,
                    kid_note(&header.kid)
                )
            })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("the token's `sub` is not a non-empty string")?;
        let roles = roles(&claims, &self.roles_claim)?;
        Ok(Principal::new(subject, roles))
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

/// The asymmetric algorithms of a key family (HMAC keys are made by
/// [`JwtVerifier::hs256`] only).
fn family_algorithms(family: AlgorithmFamily) -> Vec<Algorithm> {
    match family {
        AlgorithmFamily::Rsa => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmFamily::Ec => vec![Algorithm::ES256, Algorithm::ES384],
        _ => Vec::new(),
    }
}

fn kid_note(kid: &Option<String>) -> String {
    kid.as_ref()
        .map_or_else(String::new, |kid| format!(" with kid `{kid}`"))
}

/// Why `decode` refused a token, as a client may be told.
fn refusal(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the token is not for this audience".into(),
        ErrorKind::InvalidIssuer => "the token is not from the accepted issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "the token's algorithm does not match the accepted key".into()
        }
        _ => "the token is malformed".into(),
    }
}

/// The roles at `path` in `claims`: an array of strings, a
/// space-separated string, or nothing.
fn roles(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, String> {
    let mut value = None;
    let mut object = Some(claims);
    for part in path.split('.') {
        value = object.and_then(|o| o.get(part));
        object = value.and_then(Value::as_object);
    }
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(roles)) => Ok(roles.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(roles)) => roles
            .iter()
            .map(|role| role.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("the token's `{path}` claim is not an array of strings")),
        Some(_) => Err(format!("the token's `{path}` claim is not an array of strings")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn roles_come_from_arrays_strings_and_nested_claims() {
        let claims = json!({
            "roles": ["a", "b"],
            "scope": "read write",
            "realm_access": { "roles": ["admin"] },
            "bad": 3,
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(roles(claims, "roles").unwrap(), ["a", "b"]);
        assert_eq!(roles(claims, "scope").unwrap(), ["read", "write"]);
        assert_eq!(roles(claims, "realm_access.roles").unwrap(), ["admin"]);
        assert!(roles(claims, "missing").unwrap().is_empty());
        assert!(roles(claims, "bad").is_err());
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(JwtVerifier::hs256(b"short"), Err(AuthConfigError::Key(_))));
    }
}
