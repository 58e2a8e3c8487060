//! Service URLs fit for logs, errors and `Debug` output.

/// `url` with the secret of its user information replaced by `***`: the
/// password of `user:password@`, or the whole of a bare `secret@` (Redis
/// reads a lone user part as the password). Text that is not a URL comes
/// back unchanged.
///
/// ```
/// use dtask_core::infra::redact_url;
///
/// assert_eq!(redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
/// assert_eq!(redact_url("redis://secret@host/2"), "redis://***@host/2");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => format!("{scheme}://***@{host}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"),
            ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
            ("redis://:secret@host", "redis://:***@host"),
            ("redis://secret@host/2", "redis://***@host/2"),
            ("amqp://u:p@h", "amqp://u:***@h"),
            ("amqp://u:p@ss@h/%2f", "amqp://u:***@h/%2f"),
            ("https://h/path?x=a@b", "https://h/path?x=a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
