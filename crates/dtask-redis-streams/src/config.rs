//! [`RedisStreamsConfig`]: where the queues live and how they are consumed.

use std::time::Duration;

/// How a [`RedisStreamsQueue`](crate::RedisStreamsQueue) reaches Redis and
/// runs its consumer groups.
///
/// Made with [`new`](Self::new) (every setting but the URL at its
/// default) and adjusted with the `with_*` methods or by setting the
/// public fields.
///
/// ```
/// use std::time::Duration;
/// use dtask_redis_streams::RedisStreamsConfig;
///
/// let config = RedisStreamsConfig::new("redis://127.0.0.1:6379")
///     .with_key_prefix("myapp:queue:")
///     .with_visibility_timeout(Duration::from_secs(60))
///     .with_max_deliveries(3);
/// assert_eq!(config.group, "dtask-workers");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisStreamsConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379` or
    /// `redis://:password@host:6379/2`.
    pub url: String,
    /// Prepended to a queue's name, in braces, to make its stream's key:
    /// queue `q`'s stream is `{key_prefix}{q}` and its dead-letter stream
    /// `{key_prefix}{q}:dead` (see [`stream_key`](Self::stream_key)).
    /// Default `dtask:queue:`.
    pub key_prefix: String,
    /// The most messages a queue's stream holds (waiting, or out for
    /// delivery and not settled yet). A publish to a queue at the bound
    /// waits until a message is settled (back-pressure): nothing is ever
    /// trimmed, so no message a publisher was told is queued can vanish.
    /// Default 100 000.
    pub max_backlog: usize,
    /// How long a publish to a full queue (at
    /// [`max_backlog`](Self::max_backlog)) waits for room before it fails
    /// with an [`Error::Backend`](dtask_core::Error::Backend) saying the
    /// queue is full; nothing is published then. Default 30 s.
    pub full_queue_wait: Duration,
    /// The consumer group every worker of the queue joins. Default
    /// `dtask-workers`.
    pub group: String,
    /// This process's consumer name within the group. Default
    /// `{hostname}-{pid}-{uuid}`, unique per process.
    pub consumer: String,
    /// How many entries one `XREADGROUP` (and one reclaim) fetches at most:
    /// the prefetch of a consume stream. Default 16.
    pub read_count: usize,
    /// How long one `XREADGROUP` blocks waiting for new entries before the
    /// consumer loop looks again (and reclaims). Default 2 s.
    pub block_timeout: Duration,
    /// How long an entry may stay pending on a consumer that no longer
    /// renews it before another consumer reclaims it (`XAUTOCLAIM`
    /// min-idle). A live consume stream renews its unsettled entries every
    /// third of this, so it bounds how long a crashed worker's messages
    /// wait, not how long a task may run. Default 30 s.
    pub visibility_timeout: Duration,
    /// How many deliveries a message gets at most: a message nacked on its
    /// `max_deliveries`-th delivery, or found unsettled after it, moves to
    /// the dead-letter stream. Default 5.
    pub max_deliveries: u32,
    /// How long [`connect`](crate::RedisStreamsQueue::connect) and each
    /// reconnection wait for Redis. Default 3 s.
    pub connect_timeout: Duration,
    /// How long a command (other than the blocking read) may wait for its
    /// reply. Default 5 s.
    pub response_timeout: Duration,
}

impl std::fmt::Debug for RedisStreamsConfig {
    /// The URL shows with its password redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("max_backlog", &self.max_backlog)
            .field("full_queue_wait", &self.full_queue_wait)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("read_count", &self.read_count)
            .field("block_timeout", &self.block_timeout)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("max_deliveries", &self.max_deliveries)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisStreamsConfig {
    /// The default key prefix.
    pub const DEFAULT_KEY_PREFIX: &'static str = "dtask:queue:";
    /// The default consumer group.
    pub const DEFAULT_GROUP: &'static str = "dtask-workers";

    /// Every setting at its default, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            max_backlog: 100_000,
            full_queue_wait: Duration::from_secs(30),
            group: Self::DEFAULT_GROUP.to_owned(),
            consumer: default_consumer_name(),
            read_count: 16,
            block_timeout: Duration::from_secs(2),
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 5,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
        }
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`max_backlog`](Self::max_backlog) (at least 1).
    pub fn with_max_backlog(mut self, max_backlog: usize) -> Self {
        self.max_backlog = max_backlog.max(1);
        self
    }

    /// Sets [`full_queue_wait`](Self::full_queue_wait).
    pub fn with_full_queue_wait(mut self, wait: Duration) -> Self {
        self.full_queue_wait = wait;
        self
    }

    /// Sets [`group`](Self::group).
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Sets [`consumer`](Self::consumer).
    pub fn with_consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = consumer.into();
        self
    }

    /// Sets [`read_count`](Self::read_count) (at least 1).
    pub fn with_read_count(mut self, count: usize) -> Self {
        self.read_count = count.max(1);
        self
    }

    /// Sets [`block_timeout`](Self::block_timeout).
    pub fn with_block_timeout(mut self, timeout: Duration) -> Self {
        self.block_timeout = timeout;
        self
    }

    /// Sets [`visibility_timeout`](Self::visibility_timeout).
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Sets [`max_deliveries`](Self::max_deliveries) (at least 1).
    pub fn with_max_deliveries(mut self, max: u32) -> Self {
        self.max_deliveries = max.max(1);
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The key of `queue`'s stream: `{key_prefix}{<queue>}`. The braces
    /// are part of the key, a Redis Cluster hash tag that keeps a queue's
    /// stream and dead-letter stream in one slot (its scripts touch both).
    pub fn stream_key(&self, queue: &str) -> String {
        format!("{}{{{queue}}}", self.key_prefix)
    }

    /// The key of `queue`'s dead-letter stream: `{key_prefix}{<queue>}:dead`.
    pub fn dead_letter_key(&self, queue: &str) -> String {
        format!("{}{{{queue}}}:dead", self.key_prefix)
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted_url(&self) -> String {
        dtask_core::infra::redact_url(&self.url)
    }

    /// The block of one `XREADGROUP`: the block timeout, but no longer than
    /// half the visibility timeout (so reclaims run on time), and never 0
    /// (which Redis reads as "forever").
    pub(crate) fn read_block(&self) -> Duration {
        self.block_timeout
            .min(self.reclaim_interval())
            .max(Duration::from_millis(10))
    }

    /// How often a consume stream looks for idle entries to reclaim.
    pub(crate) fn reclaim_interval(&self) -> Duration {
        (self.visibility_timeout / 2).max(Duration::from_millis(10))
    }

    /// How often a consume stream renews its unsettled entries.
    pub(crate) fn renew_interval(&self) -> Duration {
        (self.visibility_timeout / 3).max(Duration::from_millis(5))
    }
}

/// `{hostname}-{pid}-{uuid}`.
fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = RedisStreamsConfig::new("redis://127.0.0.1:6379");
        assert_eq!(config.key_prefix, "dtask:queue:");
        assert_eq!(config.max_backlog, 100_000);
        assert_eq!(config.group, "dtask-workers");
        assert_eq!(config.max_deliveries, 5);
        assert_eq!(config.visibility_timeout, Duration::from_secs(30));
        assert_eq!(config.stream_key("jobs"), "dtask:queue:{jobs}");
        assert_eq!(config.dead_letter_key("jobs"), "dtask:queue:{jobs}:dead");
        let pid = std::process::id().to_string();
        assert!(config.consumer.contains(&pid), "{}", config.consumer);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", RedisStreamsConfig::new("redis://:s3cr3t@cache:6379/2"));
        assert!(shown.contains("redis://:***@cache:6379/2"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn read_block_follows_the_visibility_timeout() {
        let config = RedisStreamsConfig::new("redis://x").with_visibility_timeout(Duration::from_millis(300));
        assert_eq!(config.read_block(), Duration::from_millis(150));
        let config = config.with_visibility_timeout(Duration::ZERO);
        assert_eq!(config.read_block(), Duration::from_millis(10));
    }
}
