//! [`AmqpConfig`]: where RabbitMQ is and how [`AmqpQueue`](crate::AmqpQueue)
//! uses it.

use std::time::Duration;

/// The URL of a RabbitMQ on this machine with its default user and vhost.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How an [`AmqpQueue`](crate::AmqpQueue) connects to RabbitMQ and uses it.
///
/// Start from [`AmqpConfig::new`] (or [`Default`], which points at a local
/// RabbitMQ) and change what you need, field by field or with the `with_`
/// methods:
///
/// ```
/// use std::time::Duration;
/// use dtask_amqp::AmqpConfig;
///
/// let config = AmqpConfig::new("amqp://user:secret@rabbit.internal:5672/%2f")
///     .with_prefetch(32)
///     .with_max_deliveries(10)
///     .with_connection_name("billing-worker");
/// assert_eq!(config.confirm_timeout, Duration::from_secs(10));
/// ```
///
/// Every process that declares a queue must use the same
/// [`max_deliveries`](Self::max_deliveries): RabbitMQ refuses to declare a
/// queue again with other arguments.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AmqpConfig {
    /// The AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (the vhost
    /// `/` is written `%2f`).
    pub url: String,
    /// The other nodes of the same RabbitMQ cluster, tried after
    /// [`url`](Self::url) when it cannot be reached. After losing the
    /// connection to one node, the queue reconnects to the next one in the
    /// list (round and round), so a stopped node costs one reconnection.
    /// Empty by default.
    ///
    /// Queues are quorum queues, replicated on the cluster's nodes: a
    /// message the broker confirmed survives the loss of a minority of them.
    pub failover_urls: Vec<String>,
    /// How many unacknowledged deliveries each consumer stream may hold
    /// (`basic.qos`). Default 16.
    pub prefetch: u16,
    /// How many times a message may be returned to its queue (nacked, or
    /// left unsettled by a consumer that went away) before the broker
    /// dead-letters it to `{queue}.dead-letter` instead: the quorum queue's
    /// `x-delivery-limit`. A message is delivered at most
    /// `max_deliveries + 1` times. Default 5.
    pub max_deliveries: u32,
    /// The connection's name, shown by `rabbitmqctl list_connections` and
    /// the management UI. Default `dtask`.
    pub connection_name: String,
    /// How long [`AmqpQueue::connect`](crate::AmqpQueue::connect) waits for
    /// each node before failing (or trying the next of
    /// [`failover_urls`](Self::failover_urls)); also the limit of each
    /// reconnection attempt. Default 5 s.
    pub connect_timeout: Duration,
    /// The first pause before reconnecting after the connection is lost;
    /// it doubles after each failed attempt. The retries of a publish the
    /// broker refused (nacked) are paced the same way. Default 100 ms.
    pub reconnect_initial_backoff: Duration,
    /// The longest pause between two reconnection attempts. Default 10 s.
    pub reconnect_max_backoff: Duration,
    /// How long a publish waits for the connection to come back before it
    /// fails. Default 30 s.
    pub reconnect_timeout: Duration,
    /// How long a publish waits for the broker to confirm the message
    /// before it fails. Default 10 s.
    pub confirm_timeout: Duration,
}

impl AmqpConfig {
    /// The defaults, with the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            failover_urls: Vec::new(),
            prefetch: 16,
            max_deliveries: 5,
            connection_name: "dtask".into(),
            connect_timeout: Duration::from_secs(5),
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(30),
            confirm_timeout: Duration::from_secs(10),
        }
    }

    /// A cluster: the first of `urls` becomes [`url`](Self::url), the others
    /// [`failover_urls`](Self::failover_urls). Each is trimmed of spaces
    /// and empty ones are left out (`"a, b,"` is two nodes); `None` when
    /// none is left.
    ///
    /// ```
    /// use dtask_amqp::AmqpConfig;
    ///
    /// let config = AmqpConfig::cluster([
    ///     "amqp://app:secret@rabbit-1:5672/%2f",
    ///     "amqp://app:secret@rabbit-2:5672/%2f",
    ///     "amqp://app:secret@rabbit-3:5672/%2f",
    /// ])
    /// .expect("three nodes");
    /// assert_eq!(config.failover_urls.len(), 2);
    /// ```
    pub fn cluster<I, S>(urls: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut urls = trimmed(urls);
        let mut config = Self::new(urls.next()?);
        config.failover_urls = urls.collect();
        Some(config)
    }

    /// Sets [`failover_urls`](Self::failover_urls) (each trimmed of
    /// spaces, empty ones left out, as [`cluster`](Self::cluster) does).
    #[must_use]
    pub fn with_failover_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.failover_urls = trimmed(urls).collect();
        self
    }

    /// Every node's URL: [`url`](Self::url), then
    /// [`failover_urls`](Self::failover_urls).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.failover_urls.iter().map(String::as_str))
    }

    /// The URL of node `node` of [`urls`](Self::urls) (counted modulo
    /// their number).
    pub(crate) fn node_url(&self, node: usize) -> &str {
        let nodes = 1 + self.failover_urls.len();
        match node % nodes {
            0 => &self.url,
            n => &self.failover_urls[n - 1],
        }
    }

    /// Sets [`prefetch`](Self::prefetch) (at least 1 is used).
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Sets [`max_deliveries`](Self::max_deliveries).
    #[must_use]
    pub fn with_max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries;
        self
    }

    /// Sets [`connection_name`](Self::connection_name).
    #[must_use]
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`reconnect_initial_backoff`](Self::reconnect_initial_backoff)
    /// and [`reconnect_max_backoff`](Self::reconnect_max_backoff).
    #[must_use]
    pub fn with_reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial_backoff = initial;
        self.reconnect_max_backoff = max;
        self
    }

    /// Sets [`reconnect_timeout`](Self::reconnect_timeout).
    #[must_use]
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Sets [`confirm_timeout`](Self::confirm_timeout).
    #[must_use]
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// The URL with its password replaced by `***`, fit for logs and error
    /// messages; with [`failover_urls`](Self::failover_urls), every node's,
    /// comma-separated.
    pub fn redacted_url(&self) -> String {
        self.urls()
            .map(dtask_core::infra::redact_url)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Debug for AmqpConfig {
    /// The URL shows with its password redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("urls", &self.redacted_url())
            .field("prefetch", &self.prefetch)
            .field("max_deliveries", &self.max_deliveries)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .finish()
    }
}

impl Default for AmqpConfig {
    /// The defaults, with the broker at [`DEFAULT_URL`].
    fn default() -> Self {
        Self::new(DEFAULT_URL)
    }
}

/// `urls` trimmed of spaces, without the empty ones.
fn trimmed<I, S>(urls: I) -> impl Iterator<Item = String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    urls.into_iter()
        .map(|url| url.into().trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// The backoff before reconnection attempt `attempt` (0 for the first):
/// `initial` doubled each time, at most `max`.
pub(crate) fn backoff(config: &AmqpConfig, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(20));
    config
        .reconnect_initial_backoff
        .saturating_mul(factor)
        .min(config.reconnect_max_backoff)
}

/// The instant `timeout` from now; about thirty years from now for longer
/// timeouts (which mean "forever" and would overflow).
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    tokio::time::Instant::now() + timeout.min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", AmqpConfig::new("amqp://app:s3cr3t@broker:5672/%2f"));
        assert!(shown.contains("amqp://app:***@broker:5672/%2f"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn a_cluster_lists_every_node_and_hides_every_password() {
        assert!(AmqpConfig::cluster(Vec::<String>::new()).is_none());
        assert!(AmqpConfig::cluster([" ", ""]).is_none());
        let spaced = AmqpConfig::cluster(["amqp://one/%2f", " amqp://two/%2f", ""]).unwrap();
        assert_eq!(spaced.urls().collect::<Vec<_>>(), ["amqp://one/%2f", "amqp://two/%2f"]);
        let config = AmqpConfig::cluster(["amqp://a:pw1@one:5672/%2f", "amqp://b:pw2@two:5672/%2f"]).unwrap();
        assert_eq!(
            config.urls().collect::<Vec<_>>(),
            ["amqp://a:pw1@one:5672/%2f", "amqp://b:pw2@two:5672/%2f"]
        );
        let shown = format!("{config:?}");
        assert!(
            shown.contains("amqp://a:***@one:5672/%2f, amqp://b:***@two:5672/%2f"),
            "{shown}"
        );
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let config = AmqpConfig::default();
        let pauses: Vec<_> = (0..10).map(|n| backoff(&config, n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
        assert_eq!(backoff(&config, u32::MAX), Duration::from_secs(10));
    }
}
