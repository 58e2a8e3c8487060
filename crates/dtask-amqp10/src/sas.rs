//! Service Bus shared access signatures: the token a connection puts on
//! the `$cbs` node before it uses a queue.
//!
//! As Microsoft documents it ("Authenticate with Shared Access Signatures"):
//! the resource URI is URL-encoded, the string to sign is that, a newline
//! and the expiry (seconds since the Unix epoch), the signature is the
//! Base64 of its HMAC-SHA256 under the key's UTF-8 bytes, and the token is
//! `SharedAccessSignature sr={encoded uri}&sig={encoded signature}&se={expiry}&skn={key name}`.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// What the encoding leaves as it is: letters, digits and `-_.~`, as
/// Python's `quote_plus` (Microsoft's Python sample) does.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The token type Service Bus expects in `put-token` for a SAS token.
pub(crate) const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";

/// `text` URL-encoded (a resource URI has no spaces, the one character
/// `quote_plus` writes differently).
fn encode(text: &str) -> String {
    utf8_percent_encode(text, FORM).to_string()
}

/// The SAS token granting `key_name`'s rights on `resource_uri` until
/// `expiry` (seconds since the Unix epoch), signed with `key`.
///
/// # Errors
/// None in practice: HMAC takes a key of any length.
pub(crate) fn sas_token(
    resource_uri: &str,
    key_name: &str,
    key: &str,
    expiry: u64,
) -> Result<String, hmac::digest::InvalidLength> {
    let encoded = encode(resource_uri);
    let to_sign = format!("{encoded}\n{expiry}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())?;
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!(
        "SharedAccessSignature sr={encoded}&sig={}&se={expiry}&skn={key_name}",
        encode(&signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's standard library:
    /// `base64.b64encode(hmac.new(key.encode(), (quote_plus(uri) + "\n" + str(expiry)).encode(), hashlib.sha256).digest())`
    /// and `quote_plus` for both `sr` and `sig`.
    #[test]
    fn the_token_matches_an_independently_computed_vector() {
        let token = sas_token(
            "sb://contoso.servicebus.windows.net/orders",
            "RootManageSharedAccessKey",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo9MDEyMzQ1Njc4OQ==",
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(
            token,
            "SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net%2Forders\
             &sig=5Grcy8lALM1txOlRxQn8rRWvAbB2TkyiGEGdO0AQ9g8%3D&se=1700000000&skn=RootManageSharedAccessKey"
        );
    }

    /// The same computation done by `python3` at test time, for a second
    /// resource, key and expiry (skipped only when there is no python3,
    /// which the fixed vector above then covers).
    #[test]
    fn the_token_matches_python_for_another_input() {
        let (uri, key, expiry) = (
            "sb://ns-1.servicebus.windows.net/orders-eu/$management",
            "k+/=ü",
            4_102_444_800u64,
        );
        let script = format!(
            "import hmac,hashlib,base64,urllib.parse as u\n\
             e=u.quote_plus({uri:?})\n\
             s=base64.b64encode(hmac.new({key:?}.encode(),(e+'\\n'+'{expiry}').encode(),hashlib.sha256).digest()).decode()\n\
             print('SharedAccessSignature sr=%s&sig=%s&se={expiry}&skn=n' % (e, u.quote_plus(s)), end='')"
        );
        let Ok(output) = std::process::Command::new("python3").args(["-c", &script]).output() else {
            assert!(std::env::var("CI").is_err(), "python3 is missing");
            return;
        };
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let expected = String::from_utf8(output.stdout).unwrap();
        assert_eq!(sas_token(uri, "n", key, expiry).unwrap(), expected);
    }
}
