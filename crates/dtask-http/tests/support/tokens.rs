//! The JWTs and keys of the authentication tests, made once per test
//! binary by `tokens.py` (PyJWT and cryptography: libraries independent of
//! the code under test).

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

/// The HS256 secret the tokens are signed with.
pub const SECRET: &str = "a-32-byte-test-secret-for-hs256!";
/// The audience and issuer of the valid tokens.
pub const AUDIENCE: &str = "dtask-tests";
pub const ISSUER: &str = "https://issuer.dtask.invalid";

/// What `tokens.py` printed.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub rsa_public_pem: String,
    pub ec_public_pem: String,
    pub jwks: String,
    tokens: HashMap<String, String>,
}

impl Tokens {
    /// The token of case `name`.
    pub fn get(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("tokens.py makes no token `{name}`"))
    }
}

/// The tokens, made on first use.
pub fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tokens.py");
        let output = std::process::Command::new("python3")
            .arg(script)
            .args([SECRET, AUDIENCE, ISSUER])
            .output()
            .expect("python3 runs (the token tests need it)");
        assert!(
            output.status.success(),
            "tokens.py failed (pip install \"pyjwt[crypto]\"): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("tokens.py prints JSON")
    })
}
