//! Distributed mode: the infrastructure of a deployment, connected from
//! its connection options in one call.
//!
//! ```no_run
//! use dtask::Host;
//! use dtask::distributed::{DistributedOptions, QueueKind};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = DistributedOptions::new(QueueKind::RabbitMq)
//!     .amqp_url("amqp://guest:guest@rabbitmq:5672/%2f")
//!     .redis_urls(["redis://redis:6379"])
//!     .s3_endpoint("http://minio:9000", "minioadmin", "minioadmin");
//! let infrastructure = options.connect(&["incoming-files", "processed-files"]).await?;
//! let host = Host::builder()
//!     .mode(dtask::Mode::Distributed)
//!     .infrastructure(infrastructure)
//!     // .lock(...) would override one service
//!     .build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask_amqp10::{Amqp10Config, Amqp10Queue};
use dtask_core::infra::{
    CancellationFeed, DistributedLock, IdempotencyStore, LockWithState, ProgressTracker, SagaStateStore,
    StateWithProgress, WorkerRegistry,
};
use dtask_core::infra::{DeadLetters, NamespacedQueue, QueueConsumer, QueueDepths, QueuePublisher};
use dtask_core::{Error, Infrastructure};
use dtask_postgres::{PostgresBackends, PostgresConfig, PostgresTaskHistory};
use dtask_redis::RedisConfig;
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask_s3::{S3Config, S3ObjectStore};

/// A queue backend's ends and the optional capabilities it offers (dead
/// letters, depths), shared.
type QueueEnds = (
    Arc<dyn QueuePublisher>,
    Arc<dyn QueueConsumer>,
    Option<Arc<dyn DeadLetters>>,
    Option<Arc<dyn QueueDepths>>,
);

pub use dtask_amqp;
pub use dtask_amqp10;
pub use dtask_postgres;
pub use dtask_redis;
pub use dtask_redis_streams;
pub use dtask_s3;

/// Which broker carries the hand-offs to the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// RabbitMQ, through `dtask-amqp`.
    RabbitMq,
    /// An AMQP 1.0 broker (RabbitMQ's AMQP 1.0 plugin, Azure Service Bus),
    /// through `dtask-amqp10`.
    Amqp10,
    /// Redis Streams, through `dtask-redis-streams`.
    RedisStreams,
    /// PostgreSQL, through `dtask-postgres`: the state, progress, lock and
    /// idempotency keys go there too, and no Redis is needed.
    Postgres,
}

/// Where saga states, progress, locks and idempotency keys live when the
/// queue is RabbitMQ or Redis Streams (a PostgreSQL queue keeps them in
/// PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// Redis, through `dtask-redis` (the default).
    #[default]
    Redis,
    /// PostgreSQL, through `dtask-postgres`.
    Postgres,
}

/// The connection options of a Distributed-mode deployment. Every backend's
/// own config is public, to tune what these setters do not reach.
#[derive(Debug, Clone)]
pub struct DistributedOptions {
    /// Which broker.
    pub queue: QueueKind,
    /// Where state, progress, locks and idempotency keys live (with a
    /// PostgreSQL queue: PostgreSQL, whatever this says).
    pub store: StoreKind,
    /// PostgreSQL (used by [`QueueKind::Postgres`] and [`StoreKind::Postgres`]).
    pub postgres: PostgresConfig,
    /// RabbitMQ (used with [`QueueKind::RabbitMq`]).
    pub amqp: AmqpConfig,
    /// The AMQP 1.0 broker (used with [`QueueKind::Amqp10`]); the local
    /// RabbitMQ's AMQP 1.0 endpoint unless set.
    pub amqp10: Amqp10Config,
    /// Redis Streams (used with [`QueueKind::RedisStreams`]; its URL is
    /// the first Redis URL unless set).
    pub streams: Option<RedisStreamsConfig>,
    /// Redis: the first URL holds progress, state and idempotency keys; all
    /// of them form the lock's RedLock quorum. With `redis+cluster://`
    /// URLs, a Redis Cluster holds them all.
    pub redis: RedisConfig,
    /// The first Redis URL (Redis Streams' default).
    redis_url: String,
    /// The S3 store.
    pub s3: S3Config,
    /// A prefix for queue names, so deployments can share a broker.
    pub namespace: Option<String>,
}

/// A service that could not be reached or set up at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {service}: {source}")]
pub struct ConnectError {
    /// Which service.
    pub service: &'static str,
    /// The backend's error (it names the address).
    #[source]
    pub source: Error,
}

impl DistributedOptions {
    /// Local defaults: RabbitMQ (0-9-1 or AMQP 1.0) or Redis Streams, Redis and an S3 server on
    /// 127.0.0.1 (`minioadmin` keys on port 9000).
    pub fn new(queue: QueueKind) -> Self {
        Self {
            queue,
            store: StoreKind::Redis,
            postgres: PostgresConfig::new("postgres://dtask:dtask@127.0.0.1:5432/dtask"),
            amqp: AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            amqp10: Amqp10Config::default(),
            streams: None,
            redis: RedisConfig::new("redis://127.0.0.1:6379"),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            s3: S3Config::endpoint("http://127.0.0.1:9000", "minioadmin", "minioadmin"),
            namespace: None,
        }
    }

    /// Keeps state, progress, locks and idempotency keys in `store`.
    #[must_use]
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// The PostgreSQL URL (`postgres://user:password@host:port/database`).
    #[must_use]
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.postgres = PostgresConfig::new(url);
        self
    }

    /// Whether state, progress, locks and idempotency keys go to PostgreSQL.
    fn stores_in_postgres(&self) -> bool {
        self.queue == QueueKind::Postgres || self.store == StoreKind::Postgres
    }

    /// The RabbitMQ URL.
    #[must_use]
    pub fn amqp_url(mut self, url: impl Into<String>) -> Self {
        self.amqp.url = url.into();
        self.amqp.failover_urls.clear();
        self
    }

    /// The URLs of a RabbitMQ cluster's nodes: the queue connects to the
    /// first that answers and fails over to the others (see
    /// [`AmqpConfig::cluster`], which trims them). A list without a URL
    /// changes nothing.
    #[must_use]
    pub fn amqp_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if let Some(cluster) = AmqpConfig::cluster(urls) {
            self.amqp.url = cluster.url;
            self.amqp.failover_urls = cluster.failover_urls;
        }
        self
    }

    /// The AMQP 1.0 broker (see [`Amqp10Config::parse`], which reads a URL
    /// or a Service Bus connection string).
    #[must_use]
    pub fn amqp10(mut self, config: Amqp10Config) -> Self {
        self.amqp10 = config;
        self
    }

    /// The Redis URLs: several for a RedLock quorum, or the nodes of a
    /// Redis Cluster (`redis+cluster://host:port`).
    #[must_use]
    pub fn redis_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        if let Some(first) = urls.first() {
            let mut redis = RedisConfig::new(first.clone());
            if RedisConfig::is_cluster_url(first) {
                redis = RedisConfig::cluster(urls.iter().cloned()).unwrap_or(redis);
            } else if urls.len() > 1 {
                redis = redis.with_lock_urls(urls.clone());
            }
            self.redis = redis;
            self.redis_url.clone_from(first);
        }
        self
    }

    /// An S3-compatible server (MinIO, s3s-fs...) at `endpoint`.
    #[must_use]
    pub fn s3_endpoint(mut self, endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        let region = self.s3.region.clone();
        self.s3 = S3Config::endpoint(endpoint, access_key, secret_key);
        self.s3.region = region;
        self
    }

    /// The S3 signing region.
    #[must_use]
    pub fn s3_region(mut self, region: impl Into<String>) -> Self {
        self.s3.region = region.into();
        self
    }

    /// Prefixes queue names with `namespace`.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Connects every service the options need (concurrently), creating
    /// `buckets` when missing. Only those services are dialled: with a
    /// PostgreSQL queue, no Redis or RabbitMQ connection is opened.
    ///
    /// # Errors
    /// The first service that cannot be reached, named.
    pub async fn connect(&self, buckets: &[&str]) -> Result<Infrastructure, ConnectError> {
        let postgres = async {
            if !self.stores_in_postgres() {
                return Ok(None);
            }
            self.postgres.connect().await.map(Some).map_err(|source| ConnectError {
                service: "PostgreSQL",
                source,
            })
        };
        let (storage, postgres) = tokio::join!(S3ObjectStore::connect(self.s3.clone(), buckets), postgres);
        let storage = storage.map_err(|source| ConnectError { service: "S3", source })?;
        let postgres = postgres?;
        let stores = async {
            match &postgres {
                Some(postgres) => Ok(Stores::postgres(postgres)),
                None => Stores::redis(&self.redis).await,
            }
        };
        let (queue, stores) = tokio::join!(self.connect_queue(postgres.as_ref()), stores);
        let (publisher, consumer, dead_letters, depths) = queue?;
        let stores = stores?;
        Ok(Infrastructure {
            storage: Arc::new(storage),
            publisher,
            consumer,
            lock: stores.lock,
            progress: stores.progress,
            state: stores.state,
            idempotency: stores.idempotency,
            dead_letters,
            workers: Some(stores.workers),
            depths,
            cancellations: stores.cancellations,
            settlement: stores.settlement,
            lock_with_state: stores.lock_with_state,
        })
    }

    /// Connects the durable task history in PostgreSQL (its own pool, on
    /// [`postgres`](Self::postgres)), for
    /// [`HostBuilder::history`](dtask_core::HostBuilder::history): any
    /// queue and store combination can keep it.
    ///
    /// # Errors
    /// PostgreSQL cannot be reached or migrated.
    pub async fn connect_history(&self) -> Result<PostgresTaskHistory, ConnectError> {
        let backends = self.postgres.connect().await.map_err(|source| ConnectError {
            service: "PostgreSQL (task history)",
            source,
        })?;
        Ok(backends.history())
    }

    async fn connect_queue(&self, postgres: Option<&PostgresBackends>) -> Result<QueueEnds, ConnectError> {
        match self.queue {
            QueueKind::Postgres => {
                let postgres = postgres.ok_or_else(|| ConnectError {
                    service: "PostgreSQL",
                    source: Error::invalid("queue", "a PostgreSQL queue needs a PostgreSQL connection"),
                })?;
                Ok(self.namespaced(postgres.queue()))
            }
            QueueKind::RabbitMq => {
                let queue = AmqpQueue::connect(self.amqp.clone())
                    .await
                    .map_err(|source| ConnectError {
                        service: "RabbitMQ",
                        source,
                    })?;
                Ok(self.namespaced(queue))
            }
            QueueKind::Amqp10 => {
                let queue = Amqp10Queue::connect(self.amqp10.clone())
                    .await
                    .map_err(|source| ConnectError {
                        service: "the AMQP 1.0 broker",
                        source,
                    })?;
                // Service Bus's dead letters cannot be read here: none.
                let dead_letters = queue
                    .dead_letters()
                    .map(|letters| self.dead_letters_in_namespace(letters));
                let (publisher, consumer) = self.ends_in_namespace(queue);
                Ok((publisher, consumer, dead_letters, None))
            }
            QueueKind::RedisStreams => {
                let config = self
                    .streams
                    .clone()
                    .unwrap_or_else(|| RedisStreamsConfig::new(self.redis_url.clone()));
                let queue = RedisStreamsQueue::connect(config)
                    .await
                    .map_err(|source| ConnectError {
                        service: "Redis Streams",
                        source,
                    })?;
                Ok(self.namespaced(queue))
            }
        }
    }

    /// A backend with every capability, in the namespace if there is one.
    fn namespaced<Q>(&self, queue: Q) -> QueueEnds
    where
        Q: QueuePublisher + QueueConsumer + DeadLetters + QueueDepths + Clone,
    {
        let depths = self.depths_in_namespace(queue.clone());
        let dead_letters = self.dead_letters_in_namespace(queue.clone());
        let (publisher, consumer) = self.ends_in_namespace(queue);
        (publisher, consumer, Some(dead_letters), Some(depths))
    }

    /// A queue's two ends, in the namespace if there is one.
    fn ends_in_namespace<Q>(&self, queue: Q) -> (Arc<dyn QueuePublisher>, Arc<dyn QueueConsumer>)
    where
        Q: QueuePublisher + QueueConsumer + Clone,
    {
        match &self.namespace {
            Some(namespace) => {
                let queue = NamespacedQueue::new(namespace.clone(), queue);
                (Arc::new(queue.clone()), Arc::new(queue))
            }
            None => (Arc::new(queue.clone()), Arc::new(queue)),
        }
    }

    /// A backend's dead letters, in the namespace if there is one.
    fn dead_letters_in_namespace<D: DeadLetters>(&self, dead_letters: D) -> Arc<dyn DeadLetters> {
        match &self.namespace {
            Some(namespace) => Arc::new(NamespacedQueue::new(namespace.clone(), dead_letters)),
            None => Arc::new(dead_letters),
        }
    }

    /// A backend's queue depths, in the namespace if there is one.
    fn depths_in_namespace<D: QueueDepths>(&self, depths: D) -> Arc<dyn QueueDepths> {
        match &self.namespace {
            Some(namespace) => Arc::new(NamespacedQueue::new(namespace.clone(), depths)),
            None => Arc::new(depths),
        }
    }
}

/// The services beside the queue and the object store.
struct Stores {
    lock: Arc<dyn DistributedLock>,
    progress: Arc<dyn ProgressTracker>,
    cancellations: Option<Arc<dyn CancellationFeed>>,
    settlement: Option<Arc<dyn StateWithProgress>>,
    lock_with_state: Option<Arc<dyn LockWithState>>,
    state: Arc<dyn SagaStateStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    workers: Arc<dyn WorkerRegistry>,
}

impl Stores {
    fn postgres(backends: &PostgresBackends) -> Self {
        Self {
            lock: Arc::new(backends.lock()),
            progress: Arc::new(backends.progress()),
            cancellations: None,
            settlement: None,
            lock_with_state: None,
            state: Arc::new(backends.state()),
            idempotency: Arc::new(backends.idempotency()),
            workers: Arc::new(backends.workers()),
        }
    }

    async fn redis(config: &RedisConfig) -> Result<Self, ConnectError> {
        let redis = config.connect().await.map_err(|source| ConnectError {
            service: "Redis",
            source,
        })?;
        Ok(Self {
            lock: Arc::new(redis.lock()),
            progress: Arc::new(redis.progress()),
            cancellations: Some(Arc::new(redis.progress())),
            settlement: Some(Arc::new(redis.settlement())),
            lock_with_state: redis
                .lock_with_state()
                .map(|take| Arc::new(take) as Arc<dyn LockWithState>),
            state: Arc::new(redis.state()),
            idempotency: Arc::new(redis.idempotency()),
            workers: Arc::new(redis.workers()),
        })
    }
}
