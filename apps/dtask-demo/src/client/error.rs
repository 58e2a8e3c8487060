//! What can go wrong talking to a dtask server.

use std::path::PathBuf;

/// An error of the [`ApiClient`](super::ApiClient).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not a usable `http(s)://` URL.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidServer {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be connected to.
    #[error("cannot reach the dtask server at {url}: {reason}")]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// Why the connection failed (the innermost cause).
        reason: String,
    },
    /// The server refused the request with an RFC 9457 problem (or another
    /// error status).
    #[error("{title} ({status}){}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem's title (or the status's reason).
        title: String,
        /// The problem's detail, if any.
        detail: Option<String>,
    },
    /// The exchange failed after the connection was made.
    #[error("the request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error (the innermost cause).
        reason: String,
    },
    /// The server sent something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A local file could not be read or written.
    #[error("cannot {action} `{}`", path.display())]
    File {
        /// What was being done (`read`, `write`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    pub(crate) fn file(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::File {
            action,
            path: path.into(),
            source,
        }
    }

    /// Classifies a transport error: a failed connection means the server
    /// is unreachable.
    pub(crate) fn transport(base: &str, url: &str, source: reqwest::Error) -> Self {
        let reason = root_cause(&source);
        if source.is_connect() {
            Self::Unreachable {
                url: base.to_owned(),
                reason,
            }
        } else {
            Self::Http {
                url: url.to_owned(),
                reason,
            }
        }
    }
}

/// The innermost error of a chain: `Connection refused (os error 111)`
/// rather than `error sending request for url (…)`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
