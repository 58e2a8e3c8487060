//! [`Amqp10Error`]: what went wrong with the AMQP 1.0 broker, kept as the
//! source of a [`dtask_core::Error::Backend`]; [`ConfigError`]: a URL or
//! connection string that does not parse.

use std::time::Duration;

use dtask_core::Error;

/// The backend name in [`Error::Backend`].
pub(crate) const BACKEND: &str = "amqp10";

/// A URL or Service Bus connection string that [`Amqp10Config::parse`](crate::Amqp10Config::parse)
/// cannot read. Its messages never show a password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither an `amqp://`/`amqps://` URL nor a connection string.
    #[error("not an amqp:// or amqps:// URL, nor a Service Bus connection string (Endpoint=sb://...;...)")]
    Unrecognised,
    /// The URL does not parse.
    #[error("malformed AMQP URL: {0}")]
    Url(String),
    /// The URL has no host.
    #[error("the AMQP URL names no host")]
    NoHost,
    /// A `broker=` query parameter names no known broker.
    #[error("unknown broker `{0}` (expected rabbitmq, servicebus or generic)")]
    UnknownBroker(String),
    /// A part of the connection string is not `Key=Value`.
    #[error("malformed Service Bus connection string: `{0}` is not Key=Value")]
    NotKeyValue(String),
    /// A key the connection string must have is missing or empty.
    #[error("the Service Bus connection string has no {0}")]
    MissingKey(&'static str),
    /// The `Endpoint` is not `sb://NAMESPACE.servicebus.windows.net/`.
    #[error("the Service Bus Endpoint `{0}` is not sb://HOST/")]
    Endpoint(String),
    /// A key the connection string may not have.
    #[error(
        "the Service Bus connection string key `{0}` is not supported (use SharedAccessKeyName and SharedAccessKey)"
    )]
    UnsupportedKey(String),
}

/// The cause of an [`Error::Backend`] raised by this crate; reach it with
/// [`std::error::Error::source`] and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Amqp10Error {
    /// Opening the connection (TCP, TLS, SASL, open) failed.
    #[error("cannot connect to the AMQP 1.0 broker at {url}: {reason}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// Opening the connection did not complete in time.
    #[error("cannot connect to the AMQP 1.0 broker at {url}: no answer after {timeout:?}")]
    ConnectTimeout {
        /// The URL, password redacted.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The connection was lost and did not come back in time.
    #[error("the AMQP 1.0 broker at {url} is unreachable (waited {waited:?} for a reconnection): {last_error}")]
    Disconnected {
        /// The URL, password redacted.
        url: String,
        /// How long it waited.
        waited: Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// Beginning a session, or attaching a link, failed.
    #[error("cannot attach a link to `{address}`: {reason}")]
    Attach {
        /// The node's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The broker answered a message with `rejected`.
    #[error("the broker rejected a message sent to `{address}`: {condition}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        /// The node's address.
        address: String,
        /// The error condition (e.g. `amqp:resource-limit-exceeded`).
        condition: String,
        /// The broker's description, if any.
        description: Option<String>,
    },
    /// The broker kept answering a message with `released` or `modified`
    /// (it did not take it).
    #[error("the broker did not take a message sent to `{address}` ({outcome})")]
    NotTaken {
        /// The node's address.
        address: String,
        /// `released` or `modified`.
        outcome: &'static str,
    },
    /// Sending a message failed on the link.
    #[error("sending to `{address}` failed: {reason}")]
    Send {
        /// The node's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The broker did not settle a message in time.
    #[error("the broker did not settle a message sent to `{address}` within {timeout:?}")]
    OutcomeTimeout {
        /// The node's address.
        address: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// A delivery was settled after the link it came on was lost: the broker
    /// delivers it again.
    #[error("the link this message was delivered on is gone; the broker will deliver it again")]
    DeliveryLinkLost,
    /// Settling a delivery failed on its link.
    #[error("settling a delivery of `{queue}` failed: {reason}; the broker will deliver it again")]
    Settle {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// Putting a token on the `$cbs` node (Service Bus) failed.
    #[error("the broker refused the token for `{audience}`: {reason}")]
    Token {
        /// The token's audience.
        audience: String,
        /// Why.
        reason: String,
    },
    /// Renewing a message lock through `$management` (Service Bus) failed.
    #[error("renewing the lock of a message of `{queue}` failed: {reason}")]
    LockRenewal {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl From<Amqp10Error> for Error {
    fn from(error: Amqp10Error) -> Self {
        Error::backend(BACKEND, error)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::invalid("amqp10 url", error.to_string())
    }
}
