//! [`S3Error`], the errors of the requests this crate signs itself, and the
//! mapping of `object_store` errors into [`dtask_core::Error`].

use dtask_core::Error;
use object_store::client::HttpError;

/// The backend name in [`Error::Backend`].
pub(crate) const BACKEND: &str = "s3";

/// A failed bucket-level request (create, check, ping): the source of an
/// [`Error::Backend`] whose backend is `s3`.
///
/// Every message names the endpoint, so that a misconfigured deployment
/// says where it looked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The server did not answer: refused, unresolvable, timed out.
    #[error("no answer from the S3 server at {endpoint}: {source}")]
    Unreachable {
        /// The endpoint that was tried.
        endpoint: String,
        /// The HTTP client's error.
        #[source]
        source: HttpError,
    },

    /// The server answered with an error status.
    #[error("{operation} at {endpoint} failed: HTTP {status} {code}{}", message_suffix(.message))]
    Rejected {
        /// What was attempted, e.g. ``create bucket `files` ``.
        operation: String,
        /// The endpoint that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code (`AccessDenied`, `NoSuchBucket`...), empty
        /// when the answer had no body.
        code: String,
        /// The server's message, if any.
        message: String,
    },

    /// The bucket exists and belongs to another account.
    #[error("bucket `{bucket}` at {endpoint} exists but is not usable with these credentials")]
    BucketTaken {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
    },
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl From<S3Error> for Error {
    fn from(error: S3Error) -> Self {
        Error::backend(BACKEND, error)
    }
}

/// Maps an `object_store` error of an operation on `bucket/key`.
pub(crate) fn map_object_error(error: object_store::Error, bucket: &str, key: &str) -> Error {
    match error {
        object_store::Error::NotFound { .. } => Error::not_found(format!("object {bucket}/{key}")),
        object_store::Error::InvalidPath { source } => Error::invalid("object key", format!("`{key}`: {source}")),
        other => Error::backend(BACKEND, other),
    }
}

/// The text of the first `<tag>` element of an S3 XML error body.
pub(crate) fn xml_element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(&body[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_elements_are_found() {
        let body = "<?xml version=\"1.0\"?><Error><Code>BucketAlreadyOwnedByYou</Code>\
                    <Message>Your previous request succeeded.</Message></Error>";
        assert_eq!(xml_element(body, "Code"), Some("BucketAlreadyOwnedByYou"));
        assert_eq!(xml_element(body, "Message"), Some("Your previous request succeeded."));
        assert_eq!(xml_element(body, "Resource"), None);
        assert_eq!(xml_element("", "Code"), None);
    }

    #[test]
    fn a_rejection_names_the_endpoint_and_the_code() {
        let error = S3Error::Rejected {
            operation: "create bucket `files`".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            status: 403,
            code: "AccessDenied".into(),
            message: String::new(),
        };
        assert_eq!(
            error.to_string(),
            "create bucket `files` at http://127.0.0.1:9000 failed: HTTP 403 AccessDenied"
        );
    }

    #[test]
    fn not_found_keeps_its_meaning() {
        let error = object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        };
        assert!(map_object_error(error, "b", "k").is_not_found());
    }
}
