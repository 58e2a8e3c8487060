//! Connections: a connect that fails fast with the URL in the message,
//! auto-reconnecting command connections, and the mapping of client errors
//! into [`dtask_core::Error`].

use std::fmt;
use std::time::Duration;

use dtask_core::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, RedisError};

/// A pipeline that loads `script`, then runs each of `invocations`: loaded
/// in the same pipeline, the invocations find it even after a
/// `SCRIPT FLUSH`. One answer per invocation.
pub(crate) fn script_pipeline(script: &redis::Script, invocations: &[redis::ScriptInvocation<'_>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.load_script(script).ignore();
    for invocation in invocations {
        pipe.invoke_script(invocation);
    }
    pipe
}

/// The backend name in [`Error::Backend`].
pub(crate) const BACKEND: &str = "redis";

/// How many commands a connection queues before its callers wait.
const PIPELINE_BUFFER: usize = 1024;

/// Timeouts shared by every connection of a [`RedisConfig`](crate::RedisConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For opening a connection (and the first `PING`).
    pub(crate) connect: Duration,
    /// For each command's answer.
    pub(crate) response: Duration,
}

/// How a lost connection is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reconnect {
    /// Retry with a capped exponential backoff before failing the waiting
    /// commands: rides out short outages.
    Patient,
    /// One attempt per command: a lock instance that is down must fail at
    /// once, so that the others decide.
    Eager,
}

/// A Redis error, kept as the source of an [`Error::Backend`].
pub(crate) fn redis_error(error: RedisError) -> Error {
    Error::backend(BACKEND, error)
}

/// The server at `url` could not be reached.
#[derive(Debug)]
struct Unreachable {
    url: String,
    reason: Reason,
}

#[derive(Debug)]
enum Reason {
    Failed(RedisError),
    TimedOut(Duration),
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Reason::Failed(error) => write!(f, "Redis at {} is unreachable: {error}", self.url),
            Reason::TimedOut(after) => write!(f, "Redis at {} is unreachable: no answer within {after:?}", self.url),
        }
    }
}

impl std::error::Error for Unreachable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            Reason::Failed(error) => Some(error),
            Reason::TimedOut(_) => None,
        }
    }
}

/// The [`Error`] saying that Redis at `url` does not answer.
pub(crate) fn unreachable(url: &str, error: Option<RedisError>, after: Duration) -> Error {
    let reason = error.map_or(Reason::TimedOut(after), Reason::Failed);
    Error::backend(
        BACKEND,
        Unreachable {
            url: url.to_owned(),
            reason,
        },
    )
}

pub(crate) use dtask_core::infra::redact_url as redact;

/// Parses `url` into a client.
///
/// # Errors
/// [`Error::Invalid`] for a URL the client does not accept.
pub(crate) fn client(url: &str) -> Result<Client> {
    Client::open(url).map_err(|e| Error::invalid("redis url", format!("{}: {e}", redact(url))))
}

/// One server: its (redacted) URL, its client and an auto-reconnecting,
/// multiplexed command connection.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) url: String,
    pub(crate) client: Client,
    pub(crate) manager: ConnectionManager,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn manager_config(timeouts: Timeouts, reconnect: Reconnect) -> ConnectionManagerConfig {
    let retries = match reconnect {
        Reconnect::Patient => 6,
        Reconnect::Eager => 0,
    };
    ConnectionManagerConfig::new()
        .set_number_of_retries(retries)
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_max_delay(Duration::from_secs(2))
        .set_pipeline_buffer_size(PIPELINE_BUFFER)
}

impl Connection {
    /// Connects to `url`, checking at once that the server answers `PING`
    /// within `timeouts.connect` (one attempt, no retries, so an
    /// unreachable server fails fast).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL; [`Error::Backend`] saying
    /// "Redis at URL is unreachable" when the server does not answer.
    pub(crate) async fn open(url: &str, timeouts: Timeouts, reconnect: Reconnect) -> Result<Self> {
        let client = client(url)?;
        let shown = redact(url);
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.connect));
        let probe = async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            redis::cmd("PING").query_async::<()>(&mut connection).await
        };
        match tokio::time::timeout(timeouts.connect, probe).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(unreachable(&shown, Some(error), timeouts.connect)),
            Err(_) => return Err(unreachable(&shown, None, timeouts.connect)),
        }
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config(timeouts, reconnect));
        let manager = match tokio::time::timeout(timeouts.connect, manager).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(error)) => return Err(unreachable(&shown, Some(error), timeouts.connect)),
            Err(_) => return Err(unreachable(&shown, None, timeouts.connect)),
        };
        Ok(Self {
            url: shown,
            client,
            manager,
        })
    }

    /// A connection to `url` that connects on first use (and tries again
    /// on later uses), for a lock instance that is down at start-up.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL.
    pub(crate) fn lazy(url: &str, timeouts: Timeouts) -> Result<Self> {
        let client = client(url)?;
        let config = manager_config(timeouts, Reconnect::Eager);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
        Ok(Self {
            url: redact(url),
            client,
            manager,
        })
    }

    /// Sends `PING`.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the URL when the server does not answer.
    pub(crate) async fn ping(&self) -> Result<()> {
        let mut manager = self.manager.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut manager)
            .await
            .map_err(|e| unreachable(&self.url, Some(e), Duration::ZERO))
    }
}

/// A duration in whole milliseconds for `PX`/`PEXPIRE`: at least 1, at
/// most a century.
pub(crate) fn millis(duration: Duration) -> u64 {
    const CENTURY_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1000;
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, CENTURY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_clamped() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert!(millis(Duration::MAX) < u64::MAX);
    }
}
