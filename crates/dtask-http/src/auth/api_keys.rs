//! API keys for machines: keys stored as SHA-256 hashes in a file, each
//! with the subject it authenticates and that subject's roles.

use std::collections::HashMap;
use std::path::Path;

use dtask_core::Principal;
use sha2::{Digest, Sha256};

use super::AuthConfigError;

/// The API keys an [`Authenticator`](super::Authenticator) accepts, by
/// hash: the keys themselves are never stored.
///
/// The file holds one key a line: its hash (`sha256:` and 64 hexadecimal
/// digits, as [`ApiKeys::hash`] prints it), the subject, and the roles
/// (comma-separated, optional), separated by whitespace. Blank lines and
/// lines starting with `#` are ignored.
///
/// ```
/// use dtask_http::ApiKeys;
///
/// let line = format!("{} ci-bot dtask-operator,uploader", ApiKeys::hash("k3y-of-the-ci"));
/// let keys = ApiKeys::parse(&line).unwrap();
/// let principal = keys.principal("k3y-of-the-ci").unwrap();
/// assert_eq!(principal.subject(), "ci-bot");
/// assert!(principal.has_role("uploader"));
/// assert!(keys.principal("another key").is_none());
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl ApiKeys {
    /// The hash of `key` as the keys file holds it.
    pub fn hash(key: &str) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Reads the keys file at `path`.
    ///
    /// # Errors
    /// [`AuthConfigError::Read`] when it cannot be read; as
    /// [`ApiKeys::parse`].
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            what: "the API keys file",
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Reads the keys of a keys file's text.
    ///
    /// # Errors
    /// [`AuthConfigError::ApiKeyLine`] naming the first malformed line.
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let mut by_hash = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = |reason: &str| AuthConfigError::ApiKeyLine {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let mut words = line.split_whitespace();
            let (Some(hash), Some(subject)) = (words.next(), words.next()) else {
                return Err(malformed("expected `sha256:<hex> subject [role,role]`"));
            };
            let roles: Vec<&str> = words
                .next()
                .map(|roles| roles.split(',').filter(|r| !r.is_empty()).collect())
                .unwrap_or_default();
            if words.next().is_some() {
                return Err(malformed("roles are one comma-separated word"));
            }
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(|hex| <[u8; 32]>::try_from(hex::decode(hex).ok()?).ok())
                .ok_or_else(|| malformed("the hash is not `sha256:` and 64 hexadecimal digits"))?;
            if by_hash.insert(digest, Principal::new(subject, roles)).is_some() {
                return Err(malformed("this key is listed twice"));
            }
        }
        Ok(Self { by_hash })
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The principal `key` authenticates, if it is one of the keys.
    pub fn principal(&self, key: &str) -> Option<&Principal> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash.get(&digest)
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("keys", &self.by_hash.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_are_named() {
        let hash = ApiKeys::hash("a");
        for (text, line) in [
            ("sha256:abcd bot".to_owned(), 1),
            (format!("# comment\n\n{hash}"), 3),
            (format!("{hash} bot a,b extra"), 1),
            (format!("{hash} bot\n{hash} other"), 2),
        ] {
            match ApiKeys::parse(&text) {
                Err(AuthConfigError::ApiKeyLine { line: found, .. }) => assert_eq!(found, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_key_without_roles_authenticates_its_subject() {
        let keys = ApiKeys::parse(&format!("{} reporter", ApiKeys::hash("secret"))).unwrap();
        let principal = keys.principal("secret").unwrap();
        assert_eq!(principal.subject(), "reporter");
        assert_eq!(principal.roles().count(), 0);
        assert!(format!("{keys:?}").contains("keys: 1"), "keys never show");
    }
}
