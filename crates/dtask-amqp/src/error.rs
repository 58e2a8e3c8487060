//! [`AmqpError`]: what went wrong with RabbitMQ, kept as the source of a
//! [`dtask_core::Error::Backend`].

use std::time::Duration;

use dtask_core::Error;

/// The backend name in [`Error::Backend`].
pub(crate) const BACKEND: &str = "amqp";

/// The cause of an [`Error::Backend`] raised by this crate; reach it with
/// [`std::error::Error::source`] and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The first connection to the broker failed.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// The URL (every node's, comma-separated), passwords redacted.
        url: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// The first connection to the broker did not complete in time.
    #[error("cannot connect to RabbitMQ at {url}: no answer after {timeout:?}")]
    ConnectTimeout {
        /// The URL (every node's, comma-separated), passwords redacted.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The connection was lost and did not come back in time.
    #[error("RabbitMQ at {url} is unreachable (waited {waited:?} for a reconnection): {last_error}")]
    Disconnected {
        /// The URL (every node's, comma-separated), passwords redacted.
        url: String,
        /// How long it waited.
        waited: Duration,
        /// Why the last connection attempt failed.
        last_error: String,
    },
    /// The broker refused a message (`basic.nack`).
    #[error("RabbitMQ refused (nacked) a message published to `{queue}`")]
    Nacked {
        /// The queue.
        queue: String,
    },
    /// The broker did not confirm a message in time.
    #[error("RabbitMQ did not confirm a message published to `{queue}` within {timeout:?}")]
    ConfirmTimeout {
        /// The queue.
        queue: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The broker returned a message because its queue does not exist.
    #[error("RabbitMQ could not route a message to `{queue}`: the queue does not exist")]
    Unroutable {
        /// The queue.
        queue: String,
    },
    /// Declaring a queue, its dead-letter queue or the dead-letter exchange
    /// failed, e.g. because a queue of that name exists with other
    /// arguments (another type, another delivery limit).
    #[error("cannot declare `{queue}` (a quorum queue with x-delivery-limit and dead-lettering): {source}")]
    Declare {
        /// The queue.
        queue: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// A delivery was acked after the channel it came on had closed (the
    /// connection was lost): the broker delivers it again.
    #[error("the channel this message was delivered on is closed; RabbitMQ will deliver it again")]
    DeliveryChannelClosed,

    /// Settling a delivery got no answer in time (its connection broke
    /// under it): the broker delivers the message again.
    #[error("settling a delivery of `{queue}` got no answer within {timeout:?}; RabbitMQ will deliver it again")]
    SettleTimeout {
        /// The queue.
        queue: String,
        /// How long it waited.
        timeout: std::time::Duration,
    },
    /// Any other client error.
    #[error(transparent)]
    Client(#[from] lapin::Error),
}

impl From<AmqpError> for Error {
    fn from(error: AmqpError) -> Self {
        Error::backend(BACKEND, error)
    }
}

/// A client error as an [`Error::Backend`].
pub(crate) fn client(error: lapin::Error) -> Error {
    AmqpError::Client(error).into()
}
