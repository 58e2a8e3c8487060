//! [`RedisConfig`] and [`RedisBackends`]: connecting once and handing out
//! every Redis backend.

use std::fmt;
use std::time::Duration;

use dtask_core::{Error, Result};
use futures::future::join_all;

use crate::conn::{Connection, Reconnect, Timeouts, cluster_node, redact};
use crate::{
    RedisIdempotencyStore, RedisLock, RedisLockWithState, RedisProgressTracker, RedisSettlement, RedisStateStore,
    RedisWorkerRegistry,
};

/// How to reach Redis and how to use it.
///
/// One server (`url`) keeps progress, saga state and idempotency keys, and
/// serves the lock too unless [`with_lock_urls`](Self::with_lock_urls)
/// names independent servers for a RedLock quorum.
///
/// A **Redis Cluster** is given by its nodes' URLs with the scheme
/// `redis+cluster://`: one node is enough for commands, the client learns
/// the others ([`cluster`](Self::cluster) takes several, tried in turn),
/// but progress pub/sub moves only among the URLs given: give every
/// master's for it to survive the loss of any. Every key of a task, and a lock with its
/// fence, share a hash tag, so each script touches one slot; the listing
/// index lives in a slot of its own, written by a command of its own
/// (see the crate's README). Progress streams subscribe on one node at a
/// time (classic pub/sub reaches every node's subscribers) and move to
/// the next of the URLs given when theirs is lost.
///
/// ```no_run
/// # async fn demo() -> dtask_core::Result<()> {
/// use std::time::Duration;
/// use dtask_redis::RedisConfig;
///
/// let backends = RedisConfig::new("redis://127.0.0.1:6379")
///     .with_key_prefix("myapp:")
///     .with_progress_expiry(Some(Duration::from_secs(3600)))
///     .connect()
///     .await?;
/// let tracker = backends.progress();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    /// A cluster's nodes besides `url`.
    cluster_nodes: Vec<String>,
    lock_urls: Vec<String>,
    key_prefix: String,
    progress_expiry: Option<Duration>,
    state_expiry: Option<Duration>,
    connect_timeout: Duration,
    response_timeout: Duration,
    lock_instance_timeout: Duration,
}

impl RedisConfig {
    /// The defaults for the server at `url` (e.g. `redis://127.0.0.1:6379`,
    /// `redis://:password@host:6379/2`): key prefix `dtask:`, ended tasks'
    /// progress kept 24 hours, saga state kept until deleted, connect
    /// timeout 3 s, command timeout 5 s, lock instance timeout 500 ms.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster_nodes: Vec::new(),
            lock_urls: Vec::new(),
            key_prefix: "dtask:".to_owned(),
            progress_expiry: Some(Duration::from_secs(24 * 60 * 60)),
            state_expiry: None,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
            lock_instance_timeout: Duration::from_millis(500),
        }
    }

    /// The defaults for the Redis Cluster with nodes `urls`
    /// (`redis+cluster://host:port`, one or more); `None` without a URL.
    pub fn cluster<I, S>(urls: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut urls = urls.into_iter().map(Into::into);
        let mut config = Self::new(urls.next()?);
        config.cluster_nodes = urls.collect();
        Some(config)
    }

    /// Whether `url` names a node of a Redis Cluster (`redis+cluster://`).
    pub fn is_cluster_url(url: &str) -> bool {
        cluster_node(url).is_some()
    }

    /// Independent servers for the lock: with more than one, locks are
    /// granted by a majority of them (RedLock). Empty (the default): the
    /// lock uses the main server.
    pub fn with_lock_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.lock_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// What every key and channel name starts with (default `dtask:`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long an ended task's progress is kept (default 24 hours);
    /// `None` keeps it forever.
    pub fn with_progress_expiry(mut self, expiry: Option<Duration>) -> Self {
        self.progress_expiry = expiry;
        self
    }

    /// How long a saga snapshot is kept after its last save; `None` (the
    /// default) keeps it until deleted.
    pub fn with_state_expiry(mut self, expiry: Option<Duration>) -> Self {
        self.state_expiry = expiry;
        self
    }

    /// How long connecting may take before the server counts as
    /// unreachable (default 3 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 5 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long each lock instance may take to answer one lock command
    /// (default 500 ms); keep it well below the leases you take.
    pub fn with_lock_instance_timeout(mut self, timeout: Duration) -> Self {
        self.lock_instance_timeout = timeout;
        self
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            response: self.response_timeout,
        }
    }

    /// Connects to the server (and the lock's servers) and builds every
    /// backend.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a URL the client rejects;
    /// [`Error::Backend`] saying "Redis at URL is unreachable" when the
    /// main server does not answer within the connect timeout, or when
    /// fewer than a majority of the lock's servers do.
    pub async fn connect(&self) -> Result<RedisBackends> {
        let timeouts = self.timeouts();
        let main = if Self::is_cluster_url(&self.url) {
            if !self.lock_urls.is_empty() {
                return Err(Error::invalid(
                    "redis lock urls",
                    "a Redis Cluster keeps its locks itself; lock URLs are for independent servers",
                ));
            }
            let mut nodes = vec![self.url.clone()];
            nodes.extend(self.cluster_nodes.iter().cloned());
            Connection::open_cluster(&nodes, timeouts).await?
        } else if !self.cluster_nodes.is_empty() {
            return Err(Error::invalid(
                "redis url",
                format!(
                    "{}: a Redis Cluster's nodes are given as redis+cluster:// URLs",
                    redact(&self.url)
                ),
            ));
        } else if let Some(url) = self.lock_urls.iter().find(|url| Self::is_cluster_url(url)) {
            return Err(Error::invalid(
                "redis lock urls",
                format!("{}: lock URLs are independent servers, not a cluster", redact(url)),
            ));
        } else {
            Connection::open(&self.url, timeouts, Reconnect::Patient).await?
        };
        let lock_instances = if self.lock_urls.is_empty() {
            vec![main.clone()]
        } else {
            self.lock_instances(timeouts).await?
        };
        let prefix = &self.key_prefix;
        let progress =
            RedisProgressTracker::connect(main.clone(), prefix.clone(), self.progress_expiry, timeouts).await?;
        Ok(RedisBackends {
            lock: RedisLock::new(lock_instances, prefix.clone(), self.lock_instance_timeout),
            lock_on_main: self.lock_urls.is_empty() && !main.manager.is_cluster(),
            progress,
            state: RedisStateStore::new(main.clone(), prefix.clone(), self.state_expiry),
            idempotency: RedisIdempotencyStore::new(main.clone(), prefix.clone()),
            workers: RedisWorkerRegistry::new(main, prefix.clone()),
        })
    }

    /// Connects to every lock server; those down get a connection that
    /// keeps trying, as long as a majority is up.
    async fn lock_instances(&self, timeouts: Timeouts) -> Result<Vec<Connection>> {
        let open = |url| Connection::open(url, timeouts, Reconnect::Eager);
        let opened = join_all(self.lock_urls.iter().map(|url| open(url))).await;
        let quorum = self.lock_urls.len() / 2 + 1;
        let up = opened.iter().filter(|c| c.is_ok()).count();
        let mut instances = Vec::with_capacity(opened.len());
        let mut down = Vec::new();
        for (url, connection) in self.lock_urls.iter().zip(opened) {
            match connection {
                Ok(connection) => instances.push(connection),
                Err(error) if up >= quorum => {
                    tracing::warn!(%error, "a lock instance is down; the others form a majority");
                    instances.push(Connection::lazy(url, timeouts)?);
                }
                Err(error) => down.push(cause(&error)),
            }
        }
        if down.is_empty() {
            return Ok(instances);
        }
        Err(Error::backend(
            crate::conn::BACKEND,
            format!(
                "only {up} of {} lock instances answered and a majority of {quorum} is needed: {}",
                self.lock_urls.len(),
                down.join("; ")
            ),
        ))
    }
}

/// What went wrong, without the "redis backend error" wrapping.
fn cause(error: &Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string)
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock_urls: Vec<String> = self.lock_urls.iter().map(|url| redact(url)).collect();
        let cluster_nodes: Vec<String> = self.cluster_nodes.iter().map(|url| redact(url)).collect();
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("cluster_nodes", &cluster_nodes)
            .field("lock_urls", &lock_urls)
            .field("key_prefix", &self.key_prefix)
            .field("progress_expiry", &self.progress_expiry)
            .field("state_expiry", &self.state_expiry)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("lock_instance_timeout", &self.lock_instance_timeout)
            .finish()
    }
}

/// Every Redis backend, sharing one command connection (plus a pub/sub
/// connection for progress streams and one connection per extra lock
/// server). The accessors hand out cheap clones.
#[derive(Debug, Clone)]
pub struct RedisBackends {
    lock: RedisLock,
    /// Whether the lock is the main server alone (no quorum of other
    /// servers, no cluster): a lock and a state can then be one script.
    lock_on_main: bool,
    progress: RedisProgressTracker,
    state: RedisStateStore,
    idempotency: RedisIdempotencyStore,
    workers: RedisWorkerRegistry,
}

impl RedisBackends {
    /// Connects with the defaults of [`RedisConfig::new`]: the first URL
    /// keeps progress, state and idempotency keys; when several URLs are
    /// given, all of them form the lock's RedLock quorum. When the first is
    /// a cluster node's (`redis+cluster://`), all are nodes of that
    /// cluster.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `urls` is empty or a URL is rejected;
    /// otherwise as [`RedisConfig::connect`].
    pub async fn connect(urls: &[String]) -> Result<Self> {
        let Some(main) = urls.first() else {
            return Err(Error::invalid("redis urls", "no URL given"));
        };
        if RedisConfig::is_cluster_url(main)
            && let Some(config) = RedisConfig::cluster(urls.iter().cloned())
        {
            return config.connect().await;
        }
        let mut config = RedisConfig::new(main.clone());
        if urls.len() > 1 {
            config = config.with_lock_urls(urls.iter().cloned());
        }
        config.connect().await
    }

    /// The distributed lock.
    pub fn lock(&self) -> RedisLock {
        self.lock.clone()
    }

    /// The registry where workers announce themselves.
    pub fn workers(&self) -> RedisWorkerRegistry {
        self.workers.clone()
    }

    /// The progress tracker.
    pub fn progress(&self) -> RedisProgressTracker {
        self.progress.clone()
    }

    /// The saga state store.
    pub fn state(&self) -> RedisStateStore {
        self.state.clone()
    }

    /// The state store and the progress tracker as one
    /// [`StateWithProgress`](dtask_core::infra::StateWithProgress): a
    /// settlement's save and progress write in one script, for
    /// [`Infrastructure::settlement`](dtask_core::infra::Infrastructure::settlement).
    pub fn settlement(&self) -> RedisSettlement {
        RedisSettlement::new(self.state.clone(), self.progress.clone())
    }

    /// The lock and the state store as one
    /// [`LockWithState`](dtask_core::infra::LockWithState) (a task's lock
    /// taken and its state read in one script), for
    /// [`Infrastructure::lock_with_state`](dtask_core::infra::Infrastructure::lock_with_state);
    /// `None` when the lock is a quorum of other servers or the backends
    /// are on a Redis Cluster.
    pub fn lock_with_state(&self) -> Option<RedisLockWithState> {
        self.lock_on_main
            .then(|| RedisLockWithState::new(self.lock.clone(), self.state.clone()))
    }

    /// The idempotency key store.
    pub fn idempotency(&self) -> RedisIdempotencyStore {
        self.idempotency.clone()
    }

    /// Pings the main server and the lock's servers.
    ///
    /// # Errors
    /// The first failure, naming its URL.
    pub async fn ping(&self) -> Result<()> {
        self.progress.ping().await?;
        self.lock.ping().await
    }
}
