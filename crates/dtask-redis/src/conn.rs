//! Connections: a connect that fails fast with the URL in the message,
//! auto-reconnecting command connections (to one server or a Redis
//! Cluster), and the mapping of client errors into [`dtask_core::Error`].
//!
//! [`Commands`] and [`cluster_node`] are public (as
//! `dtask_redis::connection`) for the other Redis backends of dtask.

use std::fmt;
use std::time::Duration;

use dtask_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

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

/// What ends the scheme of a Redis Cluster node's URL:
/// `redis+cluster://host:port`.
const CLUSTER_SCHEME: &str = "+cluster://";

/// The URL the client takes for a Redis Cluster node's URL:
/// `redis+cluster://h:p` is `redis://h:p`; `None` for a standalone
/// server's URL.
///
/// ```
/// use dtask_redis::connection::cluster_node;
///
/// assert_eq!(cluster_node("redis+cluster://10.0.0.1:7001").as_deref(), Some("redis://10.0.0.1:7001"));
/// assert_eq!(cluster_node("redis://10.0.0.1:6379"), None);
/// ```
pub fn cluster_node(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once(CLUSTER_SCHEME)?;
    // Only in the scheme: `redis://a/?x=+cluster://` is no cluster.
    if scheme.contains([':', '/', '?', '#', '@']) {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

/// A command connection: to one server, or to a Redis Cluster (commands go
/// to the node serving their keys' slot). All pipeline concurrent
/// commands; clones share the connection.
#[derive(Clone)]
#[non_exhaustive]
pub enum Commands {
    /// One server, reconnecting by itself.
    Server(ConnectionManager),
    /// One server, on a connection that stays lost once lost (for blocking
    /// reads, whose owner opens another).
    Multiplexed(MultiplexedConnection),
    /// A Redis Cluster, reconnecting to its nodes by itself.
    Cluster(ClusterConnection),
}

impl Commands {
    /// Whether this goes to a Redis Cluster, which refuses a script or a
    /// pipeline whose keys span several slots.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl fmt::Debug for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Server(_) => "Commands::Server",
            Self::Multiplexed(_) => "Commands::Multiplexed",
            Self::Cluster(_) => "Commands::Cluster",
        })
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Multiplexed(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Multiplexed(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// How to open a pub/sub connection: to the server, or to one of the
/// cluster's nodes (a classic `PUBLISH` on any node of a Redis Cluster
/// reaches the subscribers of every node).
#[derive(Clone)]
pub(crate) struct PubSubNodes {
    /// Each node's client and redacted URL; one for a standalone server.
    pub(crate) nodes: Vec<(Client, String)>,
    /// Whether they are a Redis Cluster's.
    pub(crate) cluster: bool,
}

/// One server or cluster: its (redacted) URL, its client(s) and an
/// auto-reconnecting, multiplexed command connection.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) url: String,
    pub(crate) pubsub: PubSubNodes,
    pub(crate) manager: Commands,
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
        if cluster_node(url).is_some() {
            return Self::open_cluster(&[url.to_owned()], timeouts).await;
        }
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
            pubsub: PubSubNodes {
                nodes: vec![(client, shown.clone())],
                cluster: false,
            },
            url: shown,
            manager: Commands::Server(manager),
        })
    }

    /// Connects to the Redis Cluster whose nodes (some or all of them) are
    /// `urls` (`redis+cluster://host:port`), within `timeouts.connect`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL; [`Error::Backend`] saying "Redis
    /// at URL is unreachable" when the cluster does not answer.
    pub(crate) async fn open_cluster(urls: &[String], timeouts: Timeouts) -> Result<Self> {
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let node = cluster_node(url).ok_or_else(|| {
                Error::invalid(
                    "redis url",
                    format!(
                        "{}: a Redis Cluster node's URL starts with redis+cluster://",
                        redact(url)
                    ),
                )
            })?;
            nodes.push((client(&node)?, redact(url)));
        }
        let shown = nodes.iter().map(|(_, url)| url.as_str()).collect::<Vec<_>>().join(",");
        let addresses: Vec<_> = nodes
            .iter()
            .map(|(client, _)| client.get_connection_info().clone())
            .collect();
        let cluster = ClusterClient::builder(addresses)
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            .build()
            .map_err(|e| Error::invalid("redis url", format!("{shown}: {e}")))?;
        let connection = match tokio::time::timeout(timeouts.connect, cluster.get_async_connection()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(unreachable(&shown, Some(error), timeouts.connect)),
            Err(_) => return Err(unreachable(&shown, None, timeouts.connect)),
        };
        let this = Self {
            url: shown,
            pubsub: PubSubNodes { nodes, cluster: true },
            manager: Commands::Cluster(connection),
        };
        match tokio::time::timeout(timeouts.connect, this.ping()).await {
            Ok(answer) => answer?,
            Err(_) => return Err(unreachable(&this.url, None, timeouts.connect)),
        }
        Ok(this)
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
            pubsub: PubSubNodes {
                nodes: vec![(client, redact(url))],
                cluster: false,
            },
            manager: Commands::Server(manager),
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
