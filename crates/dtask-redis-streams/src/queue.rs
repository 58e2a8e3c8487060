//! [`RedisStreamsQueue`]: the publisher and consumer in one cheap handle.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use dtask_core::infra::{DeliveryStream, QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Error, Result};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisResult};

use crate::config::RedisStreamsConfig;
use crate::consumer::Deliveries;
use crate::dead::DeadLetter;
use crate::entry;
use crate::error::{BACKEND, NoAnswer, Unreachable, backend, is_busy_group, is_transient};
use crate::scripts::QueueKeys;
use crate::stats::{Counter, Counters, RedisStreamsStats};

/// What every handle, stream and acker of one queue set shares.
pub(crate) struct Shared {
    pub(crate) config: RedisStreamsConfig,
    client: redis::Client,
    manager: ConnectionManager,
    /// Stream keys whose consumer group is known to exist.
    groups: Mutex<HashSet<String>>,
    counters: Counters,
}

impl Shared {
    /// A handle on the shared, self-reconnecting connection, for one
    /// request: each call counts a round trip.
    pub(crate) fn conn(&self) -> ConnectionManager {
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
    pub(crate) async fn reader_connection(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.read_block() + self.config.response_timeout));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
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
        Ok(conn)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A work queue on Redis Streams: publisher and consumer in one cheap,
/// cloneable handle.
///
/// Queue `q` is the stream `{key_prefix}q`, read by the consumer group
/// [`group`](RedisStreamsConfig::group) (created on first use, `XGROUP
/// CREATE ... 0 MKSTREAM`). Each [`consume`](QueueConsumer::consume) stream
/// reads with `XREADGROUP` on a connection of its own, reclaims entries
/// left idle by crashed consumers (`XAUTOCLAIM`), and renews its own
/// unsettled entries so that they are not reclaimed while it works on
/// them. Publishing, settling and pings share one self-reconnecting
/// connection ([`ConnectionManager`]), where concurrent commands are
/// pipelined.
///
/// Settling: an ack is `XACK` (+ `XDEL`); a nack, or a delivery dropped
/// unsettled, re-adds a copy counting one more delivery and acks the
/// original in one Lua script, or moves the message to the dead-letter
/// stream `{key_prefix}q:dead` once it was delivered
/// [`max_deliveries`](RedisStreamsConfig::max_deliveries) times.
///
/// Publishing never waits: streams are capped by `MAXLEN ~`
/// ([`max_len`](RedisStreamsConfig::max_len)) rather than bounded, so the
/// conformance check `back_pressure` does not apply.
#[derive(Clone)]
pub struct RedisStreamsQueue {
    shared: Arc<Shared>,
}

impl RedisStreamsQueue {
    /// Connects to the Redis at `config.url` and checks that it answers
    /// (`PING`), within [`connect_timeout`](RedisStreamsConfig::connect_timeout).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed URL; [`Error::Backend`] saying
    /// "Redis is not reachable at {url}" (password redacted) when Redis
    /// does not answer in time or refuses the connection.
    pub async fn connect(config: RedisStreamsConfig) -> Result<Self> {
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
        let unreachable = |source: dtask_core::BoxError| {
            Error::backend(
                BACKEND,
                Unreachable {
                    url: url.clone(),
                    source,
                },
            )
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(unreachable(Box::new(error))),
            Err(_) => return Err(unreachable(Box::new(NoAnswer(timeout)))),
        }
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_max_delay(std::time::Duration::from_secs(5));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(backend)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client,
                manager,
                groups: Mutex::new(HashSet::new()),
                counters: Counters::default(),
            }),
        })
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
    /// messages out for delivery (acked ones too when
    /// [`delete_acked`](RedisStreamsConfig::delete_acked) is off).
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

    /// Up to `count` of `queue`'s dead letters, oldest first.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis fails.
    pub async fn dead_letters(&self, queue: &str, count: usize) -> Result<Vec<DeadLetter>> {
        crate::dead::read(
            &mut self.shared.conn(),
            &self.shared.config.dead_letter_key(queue),
            count,
        )
        .await
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
    /// Appends `message` to `queue`'s stream (`XADD MAXLEN ~`), creating
    /// the stream and its group on first use. Never waits for room: see
    /// [`max_len`](RedisStreamsConfig::max_len).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a [`Payload::InMemory`](dtask_core::Payload)
    /// payload; [`Error::Backend`] when Redis fails.
    ///
    /// # Cancel safety
    /// A dropped `publish` may or may not have published.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        let keys = QueueKeys::new(&self.shared.config, queue);
        let xadd = entry::xadd(&keys.stream, self.shared.config.max_len, queue, &message)?;
        self.shared.ensure_group(&keys).await.map_err(backend)?;
        xadd.query_async::<()>(&mut self.shared.conn()).await.map_err(backend)?;
        self.shared.count(Counter::Published, 1);
        Ok(())
    }

    /// `PING` on the shared connection.
    ///
    /// # Errors
    /// [`Error::Backend`] when Redis does not answer.
    async fn ping(&self) -> Result<()> {
        self.ping_redis().await
    }
}

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

    /// The dead-letter stream's entries, as [`dtask_core::infra::DeadLetter`]s
    /// whose ids are the entry ids.
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<dtask_core::infra::DeadLetter>> {
        let letters = RedisStreamsQueue::dead_letters(self, queue, limit).await?;
        Ok(letters
            .into_iter()
            .map(|letter| dtask_core::infra::DeadLetter {
                id: letter.entry_id,
                message: letter.message,
                deliveries: letter.deliveries,
                reason: letter.reason,
            })
            .collect())
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
