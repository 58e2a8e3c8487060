//! How Redis errors map into [`dtask_core::Error`], and which of them a
//! consumer waits out.

use std::time::Duration;

use dtask_core::{BoxError, Error};
use redis::{RedisError, RetryMethod};

/// The backend name in [`Error::Backend`].
pub(crate) const BACKEND: &str = "redis-streams";

/// A client error as an [`Error::Backend`], keeping it as the source.
pub(crate) fn backend(error: RedisError) -> Error {
    Error::backend(BACKEND, error)
}

/// Redis did not answer [`connect`](crate::RedisStreamsQueue::connect).
#[derive(Debug, thiserror::Error)]
#[error("Redis is not reachable at {url}: {source}")]
pub(crate) struct Unreachable {
    /// The URL, password redacted.
    pub(crate) url: String,
    /// The client's error, or the timeout.
    #[source]
    pub(crate) source: BoxError,
}

/// A publish found its queue full for longer than it may wait.
#[derive(Debug, thiserror::Error)]
#[error("queue `{queue}` is full: it held {backlog} messages (max_backlog) for {waited:?}; nothing was published")]
pub(crate) struct QueueFull {
    pub(crate) queue: String,
    pub(crate) backlog: usize,
    pub(crate) waited: Duration,
}

/// Nothing came within the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
pub(crate) struct NoAnswer(pub(crate) Duration);

/// Whether `error` passes by itself (the connection dropped, the server is
/// loading or busy): a consumer logs it, backs off and tries again.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || !matches!(error.retry_method(), RetryMethod::NoRetry)
}

/// Whether `error` says the consumer group (or its stream) is missing,
/// which happens when the stream's key was deleted.
pub(crate) fn is_no_group(error: &RedisError) -> bool {
    error.code() == Some("NOGROUP") || error.to_string().contains("NOGROUP")
}

/// Whether `error` says the consumer group exists already.
pub(crate) fn is_busy_group(error: &RedisError) -> bool {
    error.code() == Some("BUSYGROUP") || error.to_string().contains("BUSYGROUP")
}

/// The delay before the `failures`-th retry: 100 ms doubling up to 5 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_millis(100 << exponent).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let delays: Vec<u128> = (1..=9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn unreachable_names_the_url() {
        let error = Error::backend(
            BACKEND,
            Unreachable {
                url: "redis://127.0.0.1:1".into(),
                source: Box::new(NoAnswer(Duration::from_secs(3))),
            },
        );
        let message = error.to_string();
        assert!(
            message.contains("Redis is not reachable at redis://127.0.0.1:1"),
            "{message}"
        );
        assert!(message.contains("no answer within 3s"), "{message}");
    }
}
