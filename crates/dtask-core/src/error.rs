//! The one error type of the infrastructure layer.

use std::error::Error as StdError;

/// A boxed error from a backend client, kept as the source of an [`Error`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in an infrastructure call or a host operation.
///
/// Backends map their client errors into these variants and keep the client
/// error as the source, so a caller can match on the meaning and still log
/// the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object, task, snapshot or queue named does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. `object incoming-files/abc`.
        what: String,
    },

    /// The thing being created exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What already exists.
        what: String,
    },

    /// An argument was rejected before anything was done (an empty key, a
    /// key that escapes its bucket, an unknown task name...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The argument that was rejected.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// The lock lease was lost: it expired and may have been taken by
    /// another holder.
    #[error("lock on `{resource}` was lost (expired or taken over)")]
    LockLost {
        /// The locked resource.
        resource: String,
    },

    /// A delivery this consumer may no longer settle: its lease on the
    /// message lapsed and another consumer took it over (which will settle
    /// it instead).
    #[error("{what} is no longer held by this consumer: another took it over")]
    NotOwned {
        /// What was to be settled, e.g. `entry 1700000000000-0 of queue jobs`.
        what: String,
    },

    /// The caller may not do this: it lacks a role the task requires, or
    /// the operation is an operator's.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, for the caller.
        reason: String,
    },

    /// A write carried a fencing token older than one already seen: the
    /// writer's lease has expired and a newer holder has written.
    #[error("write fenced out: token {presented} is older than {current}")]
    Fenced {
        /// The token the writer presented.
        presented: u64,
        /// The newest token the store has seen.
        current: u64,
    },

    /// Encoding or decoding a message, snapshot or progress record failed.
    #[error("codec error ({format}): {source}")]
    Codec {
        /// The format that was being read or written.
        format: crate::format::Format,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },

    /// The queue, channel or host has been closed.
    #[error("{what} is closed")]
    Closed {
        /// What was closed.
        what: &'static str,
    },

    /// The operation is not supported by this backend or configuration.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// The backend failed; the source is the client's error.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// The backend's name (`memory`, `filesystem`, `redis`, ...).
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A [`Error::NotFound`] for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// A [`Error::Invalid`] for the argument `what`.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    /// A [`Error::Backend`] wrapping a client error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Whether this is a [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
