//! [`RedisStreamsQueue`]: the publisher and consumer in one cheap handle.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{
    DeadLetter, DeadLetters, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths, QueueMessage, QueuePublisher,
};
use dtask_core::{Error, Result};
use dtask_redis::connection::{Commands, cluster_node};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, RedisResult};

use crate::config::RedisStreamsConfig;
use crate::consumer::Deliveries;
use crate::entry;
use crate::error::{BACKEND, NoAnswer, QueueFull, Unreachable, backend, is_busy_group, is_transient};
use crate::scripts::{self, QueueKeys};
use crate::stats::{Counter, Counters, RedisStreamsStats};

/// What every handle, stream and acker of one queue set shares.
pub(crate) struct Shared {
    pub(crate) config: RedisStreamsConfig,
    client: Client,
    manager: Commands,
    /// Stream keys whose consumer group is known to exist.
    groups: Mutex<HashSet<String>>,
    counters: Counters,
}

impl Shared {
    /// A handle on the shared, self-reconnecting connection, for one
    /// request: each call counts a round trip.
    pub(crate) fn conn(&self) -> Commands {
        self.count(Counter::RoundTrips, 1);
        self.manager.clone()
    }

    /// Adds `n` to `counter`.
    pub(crate) fn count(&self, counter: Counter, n: u64) {
        self.counters.add(counter, n);
    }

    /// Creates the consumer group of `keys` (and its stream) unless it is
    /// known to exist. The group starts at the beginning of the stream, so
    /// messages published before the first consumer came are delivered.
    pub(crate) async fn ensure_group(&self, keys: &QueueKeys) -> RedisResult<()> {
        if lock(&self.groups).contains(&keys.stream) {
            return Ok(());
        }
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Ok(()) => {}
            Err(error) if is_busy_group(&error) => {}
            Err(error) => return Err(error),
        }
        lock(&self.groups).insert(keys.stream.clone());
        Ok(())
    }

    /// Forgets that the group of `keys` exists (its stream was deleted).
    pub(crate) fn forget_group(&self, keys: &QueueKeys) {
        lock(&self.groups).remove(&keys.stream);
    }

    /// A connection of its own for blocking reads, so that they never
    /// stall the commands on the shared one.
    pub(crate) async fn reader_connection(&self) -> RedisResult<Commands> {
        let response_timeout = self.config.read_block() + self.config.response_timeout;
        let client = match &self.client {
            Client::Server(client) => client,
            Client::Cluster(nodes) => {
                // Its own cluster connection: a blocked read holds the
                // connection to its node.
                let cluster = cluster_client(nodes, self.config.connect_timeout, response_timeout)?;
                self.count(Counter::RoundTrips, 1);
                return Ok(Commands::Cluster(cluster.get_async_connection().await?));
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        // Named, so that `CLIENT LIST` tells which consumer blocks where.
        let name: String = format!("dtask-streams-reader:{}", self.config.consumer)
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        self.count(Counter::RoundTrips, 1);
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(name)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(Commands::Multiplexed(conn))
    }
}

/// Where the queue's Redis is: one server, or a Redis Cluster's nodes.
enum Client {
    Server(redis::Client),
    /// The nodes' URLs for the client (`redis://`).
    Cluster(Vec<String>),
}

/// What `connecting` gives, or "Redis is not reachable at `url`" when it
/// fails or takes longer than `timeout`.
async fn within_connect_timeout<T>(
    url: &str,
    timeout: Duration,
    connecting: impl Future<Output = RedisResult<T>>,
) -> Result<T> {
    let source: dtask_core::BoxError = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connected)) => return Ok(connected),
        Ok(Err(error)) => Box::new(error),
        Err(_) => Box::new(NoAnswer(timeout)),
    };
    let url = url.to_owned();
    Err(Error::backend(BACKEND, Unreachable { url, source }))
}

/// A client of the Redis Cluster with `nodes`.
fn cluster_client(nodes: &[String], connect: Duration, response: Duration) -> RedisResult<ClusterClient> {
    ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(connect)
        .response_timeout(response)
        .build()
}

/// The first pause of a publish that found its queue full.
const FIRST_FULL_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause of a publish waiting for room.
const LONGEST_FULL_PAUSE: Duration = Duration::from_millis(500);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A work queue on Redis Streams: publisher and consumer in one cheap,
/// cloneable handle.
///
/// Queue `q` is the stream `{key_prefix}{q}` (the braces are part of the
/// key: see [`RedisStreamsConfig::stream_key`]), read by the consumer group
/// [`group`](RedisStreamsConfig::group) (created on first use, `XGROUP
/// CREATE ... 0 MKSTREAM`). Each [`consume`](QueueConsumer::consume) stream
/// reads with `XREADGROUP` on a connection of its own, reclaims entries
/// left idle by crashed consumers (`XAUTOCLAIM`), and renews its own
/// unsettled entries so that they are not reclaimed while it works on
/// them. Publishing, settling and pings share one self-reconnecting
/// connection ([`ConnectionManager`]), where concurrent commands are
/// pipelined.
///
/// Settling: an ack is `XACK` + `XDEL` of an entry still pending on this
/// consumer (one refused otherwise: another consumer reclaimed it); a
/// nack, or a delivery dropped unsettled, re-adds a copy counting one more
/// delivery and acks the original in one Lua script, or moves the message
/// to the dead-letter stream `{key_prefix}{q}:dead` once it was delivered
/// [`max_deliveries`](RedisStreamsConfig::max_deliveries) times.
///
/// A stream is bounded, never trimmed: it holds a queue's backlog (acked
/// entries are deleted), and a publish to a queue holding
/// [`max_backlog`](RedisStreamsConfig::max_backlog) messages waits for room
/// (back-pressure). Dead-letter streams are not bounded: a dead letter stays
/// until it is replayed or removed.
#[derive(Clone)]
pub struct RedisStreamsQueue {
    shared: Arc<Shared>,
}

impl RedisStreamsQueue {
    /// Connects to the Redis at `config.url` (or, for a
    /// `redis+cluster://` URL, to the Redis Cluster that node belongs to)
    /// and checks that it answers (`PING`), within
    /// [`connect_timeout`](RedisStreamsConfig::connect_timeout).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed URL; [`Error::Backend`] saying
    /// "Redis is not reachable at {url}" (password redacted) when Redis
    /// does not answer in time or refuses the connection.
    pub async fn connect(config: RedisStreamsConfig) -> Result<Self> {
        if let Some(node) = cluster_node(&config.url) {
            return Self::connect_cluster(config, node).await;
        }
        let url = config.redacted_url();
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| Error::invalid("redis url", format!("{url}: {e}")))?;
        let timeout = config.connect_timeout;
        let probe = async {
            let probe_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        within_connect_timeout(&url, timeout, probe).await?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_max_delay(std::time::Duration::from_secs(5));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(backend)?;
        Ok(Self::with(config, Client::Server(client), Commands::Server(manager)))
    }

    /// Connects to the Redis Cluster that `node` (a `redis://` URL) is a
    /// node of, within the connect timeout.
    async fn connect_cluster(config: RedisStreamsConfig, node: String) -> Result<Self> {
        let url = config.redacted_url();
        let timeout = config.connect_timeout;
        let nodes = vec![node];
        let cluster = cluster_client(&nodes, timeout, config.response_timeout)
            .map_err(|e| Error::invalid("redis url", format!("{url}: {e}")))?;
        let connecting = async {
            let mut connection = cluster.get_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut connection).await?;
            Ok(connection)
        };
        let connection = within_connect_timeout(&url, timeout, connecting).await?;
        Ok(Self::with(
            config,
            Client::Cluster(nodes),
            Commands::Cluster(connection),
        ))
    }

    fn with(config: RedisStreamsConfig, client: Client, manager: Commands) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                client,
                manager,
                groups: Mutex::new(HashSet::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &RedisStreamsConfig {
        &self.shared.config
    }

    /// What this handle, its clones, streams and deliveries have done
    /// since it connected.
    pub fn stats(&self) -> RedisStreamsStats {
        self.shared.counters.snapshot()
    }

    /// How many entries `queue`'s stream holds: messages waiting and
    /// messages out for delivery, not settled yet.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis fails.
    pub async fn len(&self, queue: &str) -> Result<u64> {
        self.xlen(&self.shared.config.stream_key(queue)).await
    }

    /// How many messages `queue`'s dead-letter stream holds.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis fails.
    pub async fn dead_letter_len(&self, queue: &str) -> Result<u64> {
        self.xlen(&self.shared.config.dead_letter_key(queue)).await
    }

    async fn xlen(&self, key: &str) -> Result<u64> {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.shared.conn())
            .await
            .map_err(backend)
    }

    /// Deletes `queue`'s stream, its consumer group and its dead-letter
    /// stream, with every message in them.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis fails.
    pub async fn delete_queue(&self, queue: &str) -> Result<()> {
        let keys = QueueKeys::new(&self.shared.config, queue);
        self.shared.forget_group(&keys);
        redis::cmd("DEL")
            .arg(&keys.stream)
            .arg(&keys.dead)
            .query_async::<()>(&mut self.shared.conn())
            .await
            .map_err(backend)
    }

    async fn ping_redis(&self) -> Result<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.shared.conn())
            .await
            .map_err(backend)
    }
}

impl fmt::Debug for RedisStreamsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("RedisStreamsQueue")
            .field("url", &config.redacted_url())
            .field("key_prefix", &config.key_prefix)
            .field("group", &config.group)
            .field("consumer", &config.consumer)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl QueuePublisher for RedisStreamsQueue {
    /// Appends `message` to `queue`'s stream, creating the stream and its
    /// group on first use. While the stream holds
    /// [`max_backlog`](RedisStreamsConfig::max_backlog) messages, waits for
    /// room (looking again after 5 ms, doubling to 500 ms), at most
    /// [`full_queue_wait`](RedisStreamsConfig::full_queue_wait).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a [`Payload::InMemory`](dtask_core::Payload)
    /// payload; [`Error::Backend`] when Redis fails, or saying the queue is
    /// full when it stayed full for `full_queue_wait` (nothing published).
    ///
    /// # Cancel safety
    /// A publish dropped while it waits for room publishes nothing; one
    /// dropped while its script is on its way may or may not have published.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        let config = &self.shared.config;
        let keys = QueueKeys::new(config, queue);
        let fields = entry::fields(queue, &message)?;
        self.shared.ensure_group(&keys).await.map_err(backend)?;
        let give_up_at = tokio::time::Instant::now() + config.full_queue_wait;
        let mut pause = FIRST_FULL_PAUSE;
        loop {
            let added = scripts::publish(&mut self.shared.conn(), config, &keys, &fields)
                .await
                .map_err(backend)?;
            if added {
                self.shared.count(Counter::Published, 1);
                return Ok(());
            }
            if pause == FIRST_FULL_PAUSE {
                self.shared.count(Counter::PublishesWaited, 1);
            }
            if tokio::time::Instant::now() + pause > give_up_at {
                return Err(Error::backend(
                    BACKEND,
                    QueueFull {
                        queue: queue.to_owned(),
                        backlog: config.max_backlog,
                        waited: config.full_queue_wait,
                    },
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_FULL_PAUSE);
        }
    }

    /// One pipeline for every message; a message the full stream refused
    /// is then published on its own, waiting as [`publish`](Self::publish)
    /// does. When the pipeline fails as a whole, each message is published
    /// on its own, so that each gets its own result: one the failed
    /// pipeline had added is then there twice, and the worker that takes
    /// the second finds the task held or ended, as for any redelivery.
    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        let config = &self.shared.config;
        let keys = QueueKeys::new(config, queue);
        let entries: Result<Vec<_>> = messages.iter().map(|message| entry::fields(queue, message)).collect();
        let pipelined = match (entries, self.shared.ensure_group(&keys).await) {
            (Ok(entries), Ok(())) => scripts::publish_many(&mut self.shared.conn(), config, &keys, &entries)
                .await
                .ok(),
            _ => None,
        };
        let Some(added) = pipelined else {
            return self.publish_each(queue, messages).await;
        };
        self.shared
            .count(Counter::Published, added.iter().filter(|added| **added).count() as u64);
        let mut results = Vec::with_capacity(messages.len());
        for (message, added) in messages.into_iter().zip(added) {
            results.push(if added {
                Ok(())
            } else {
                self.publish(queue, message).await
            });
        }
        results
    }

    /// `PING` on the shared connection.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis does not answer.
    async fn ping(&self) -> Result<()> {
        self.ping_redis().await
    }
}

impl RedisStreamsQueue {
    /// Publishes each message on its own: one result each.
    async fn publish_each(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.publish(queue, message).await);
        }
        results
    }
}

/// Entries are deleted when acked, so the stream holds the waiting entries
/// and the pending ones (delivered, not settled): `XLEN` and the group's
/// `XPENDING` count, in one script.
#[async_trait]
impl QueueDepths for RedisStreamsQueue {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        let (len, pending): (u64, u64) = DEPTH
            .key(self.shared.config.stream_key(queue))
            .arg(&self.shared.config.group)
            .invoke_async(&mut self.shared.conn())
            .await
            .map_err(backend)?;
        Ok(QueueDepth {
            waiting: len.saturating_sub(pending),
            in_flight: Some(pending),
        })
    }
}

/// `{XLEN, pending}` of a stream and group (0 pending before the group
/// exists). `KEYS[1]` the stream, `ARGV[1]` the group.
static DEPTH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local len = redis.call('XLEN', KEYS[1])
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
local pending = 0
if ok and type(summary) == 'table' then pending = tonumber(summary[1]) or 0 end
return {len, pending}
",
    )
});

#[async_trait]
impl QueueConsumer for RedisStreamsQueue {
    /// A never-ending stream of `queue`'s deliveries, read by this
    /// handle's consumer in the group. Connection failures are logged and
    /// retried with backoff, never ending the stream; other Redis errors
    /// come as `Err` items between retries.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis refuses to create the group (e.g.
    /// the key holds something else than a stream). An unreachable Redis
    /// is not an error here: the stream connects when it can.
    ///
    /// # Cancel safety
    /// Dropping a pending `next()` of the stream loses nothing. Dropping
    /// the stream hands back the entries it fetched but did not yield.
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        let keys = QueueKeys::new(&self.shared.config, queue);
        match self.shared.ensure_group(&keys).await {
            Ok(()) => {}
            Err(error) if is_transient(&error) => {
                tracing::warn!(queue, %error, "Redis is unreachable; the consumer will keep trying");
            }
            Err(error) => return Err(backend(error)),
        }
        Ok(Deliveries::new(Arc::clone(&self.shared), keys).boxed())
    }

    /// `PING` on the shared connection.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis does not answer.
    async fn ping(&self) -> Result<()> {
        self.ping_redis().await
    }
}

/// The dead-letter stream `{key_prefix}{queue}:dead`: a dead letter's id is
/// its entry id there.
#[async_trait]
impl DeadLetters for RedisStreamsQueue {
    /// `XRANGE` of the dead-letter stream.
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        crate::dead::read(
            &mut self.shared.conn(),
            &self.shared.config.dead_letter_key(queue),
            limit,
        )
        .await
    }

    /// `XDEL` of the entry from the dead-letter stream.
    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        let removed: u64 = redis::cmd("XDEL")
            .arg(self.shared.config.dead_letter_key(queue))
            .arg(id)
            .query_async(&mut self.shared.conn())
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }
}
