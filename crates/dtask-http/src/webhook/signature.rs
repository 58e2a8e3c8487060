//! Standard Webhooks signatures (<https://www.standardwebhooks.com>):
//! `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
//! secret's bytes, a `whsec_`-prefixed base64 string.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying a delivery's id, the same on every attempt.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// The header carrying an attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying the signatures (`v1,<base64>`, space separated).
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// How far a timestamp may be from the receiver's clock before
/// [`WebhookSecret::verify`] refuses it as a replay (five minutes, as the
/// Standard Webhooks libraries).
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const PREFIX: &str = "whsec_";

/// The key that signs webhook deliveries: `whsec_` and the base64 of 24 to
/// 64 random bytes, the form the Standard Webhooks libraries take.
///
/// Its `Debug` output never shows the key.
///
/// ```
/// use dtask_http::WebhookSecret;
///
/// let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
/// let signature = secret.sign("msg_1", 1_700_000_000, b"{}");
/// assert!(signature.starts_with("v1,"));
/// assert!(secret.verify_at("msg_1", "1700000000", b"{}", &signature, 1_700_000_010).is_ok());
/// assert!("s3cr3t".parse::<WebhookSecret>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// A webhook secret that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookSecretError {
    /// The secret does not start with `whsec_`.
    #[error("a webhook secret starts with `whsec_` (then the base64 of 24 to 64 random bytes)")]
    Prefix,
    /// What follows `whsec_` is not base64.
    #[error("a webhook secret is `whsec_` and base64: {0}")]
    Base64(String),
    /// The key is shorter than 24 bytes or longer than 64.
    #[error("a webhook secret's key is 24 to 64 bytes, not {0}")]
    Length(usize),
}

/// Why [`WebhookSecret::verify`] refused a delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookVerifyError {
    /// The timestamp is not a Unix time in seconds.
    #[error("the webhook timestamp is not a Unix time")]
    Timestamp,
    /// The timestamp is more than [`TIMESTAMP_TOLERANCE`] away: a replay,
    /// or a clock far off.
    #[error("the webhook timestamp is too far from now")]
    Stale,
    /// No `v1` signature matches.
    #[error("no webhook signature matches")]
    Signature,
}

impl WebhookSecret {
    /// The `v1,<base64>` signature of one attempt.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Checks a delivery as a receiver does: the timestamp within
    /// [`TIMESTAMP_TOLERANCE`] of now, and one of the space-separated
    /// `v1` signatures of `signatures` matching (in constant time).
    ///
    /// # Errors
    /// Which check failed.
    pub fn verify(&self, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> Result<(), WebhookVerifyError> {
        self.verify_at(id, timestamp, body, signatures, unix_now())
    }

    /// [`verify`](Self::verify) with `now` (Unix seconds) for the clock.
    ///
    /// # Errors
    /// Which check failed.
    pub fn verify_at(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signatures: &str,
        now: u64,
    ) -> Result<(), WebhookVerifyError> {
        let sent: u64 = timestamp.parse().map_err(|_| WebhookVerifyError::Timestamp)?;
        if sent.abs_diff(now) > TIMESTAMP_TOLERANCE.as_secs() {
            return Err(WebhookVerifyError::Stale);
        }
        let mac = self.mac(id, timestamp, body);
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|tag| mac.clone().verify_slice(&tag).is_ok());
        if matches {
            Ok(())
        } else {
            Err(WebhookVerifyError::Signature)
        }
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = WebhookSecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s.trim().strip_prefix(PREFIX).ok_or(WebhookSecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| WebhookSecretError::Base64(e.to_string()))?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookSecretError::Length(key.len()));
        }
        Ok(Self(key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference
    // libraries (their test suites sign this message with this secret).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_reference_libraries() {
        let secret: WebhookSecret = SECRET.parse().unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        let now = TIMESTAMP + 60;
        let stamp = TIMESTAMP.to_string();
        assert_eq!(secret.verify_at(ID, &stamp, BODY, SIGNATURE, now), Ok(()));
        let several = format!("v1,bm90IGl0 {SIGNATURE}");
        assert_eq!(secret.verify_at(ID, &stamp, BODY, &several, now), Ok(()));
        assert_eq!(
            secret.verify_at(ID, &stamp, b"{}", SIGNATURE, now),
            Err(WebhookVerifyError::Signature)
        );
        assert_eq!(
            secret.verify_at("msg_other", &stamp, BODY, SIGNATURE, now),
            Err(WebhookVerifyError::Signature)
        );
        assert_eq!(
            secret.verify_at(ID, &stamp, BODY, SIGNATURE, TIMESTAMP + 301),
            Err(WebhookVerifyError::Stale)
        );
        assert_eq!(
            secret.verify_at(ID, "yesterday", BODY, SIGNATURE, now),
            Err(WebhookVerifyError::Timestamp)
        );
    }

    #[test]
    fn secrets_are_whsec_base64_and_never_printed() {
        assert_eq!("s3cr3t".parse::<WebhookSecret>(), Err(WebhookSecretError::Prefix));
        assert!(matches!(
            "whsec_!!!".parse::<WebhookSecret>(),
            Err(WebhookSecretError::Base64(_))
        ));
        assert_eq!(
            "whsec_c2hvcnQ=".parse::<WebhookSecret>(),
            Err(WebhookSecretError::Length(5))
        );
        let secret: WebhookSecret = SECRET.parse().unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
