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
use dtask_core::infra::{DeadLetters, NamespacedQueue, QueueConsumer, QueuePublisher};
use dtask_core::{Error, Infrastructure};
use dtask_redis::RedisConfig;
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask_s3::{S3Config, S3ObjectStore};

/// Both ends of the queue, and its dead letters.
type QueueEnds = (Arc<dyn QueuePublisher>, Arc<dyn QueueConsumer>, Arc<dyn DeadLetters>);

pub use dtask_amqp;
pub use dtask_redis;
pub use dtask_redis_streams;
pub use dtask_s3;

/// Which broker carries the hand-offs to the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// RabbitMQ, through `dtask-amqp`.
    RabbitMq,
    /// Redis Streams, through `dtask-redis-streams`.
    RedisStreams,
}

/// The connection options of a Distributed-mode deployment. Every backend's
/// own config is public, to tune what these setters do not reach.
#[derive(Debug, Clone)]
pub struct DistributedOptions {
    /// Which broker.
    pub queue: QueueKind,
    /// RabbitMQ (used with [`QueueKind::RabbitMq`]).
    pub amqp: AmqpConfig,
    /// Redis Streams (used with [`QueueKind::RedisStreams`]; its URL is
    /// the first Redis URL unless set).
    pub streams: Option<RedisStreamsConfig>,
    /// Redis: the first URL holds progress, state and idempotency keys; all
    /// of them form the lock's RedLock quorum.
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
    /// Local defaults: RabbitMQ or Redis Streams, Redis and an S3 server on
    /// 127.0.0.1 (`minioadmin` keys on port 9000).
    pub fn new(queue: QueueKind) -> Self {
        Self {
            queue,
            amqp: AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            streams: None,
            redis: RedisConfig::new("redis://127.0.0.1:6379"),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            s3: S3Config::endpoint("http://127.0.0.1:9000", "minioadmin", "minioadmin"),
            namespace: None,
        }
    }

    /// The RabbitMQ URL.
    #[must_use]
    pub fn amqp_url(mut self, url: impl Into<String>) -> Self {
        self.amqp.url = url.into();
        self
    }

    /// The Redis URLs (several for a RedLock quorum).
    #[must_use]
    pub fn redis_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        if let Some(first) = urls.first() {
            let mut redis = RedisConfig::new(first.clone());
            if urls.len() > 1 {
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

    /// Connects every service (concurrently), creating `buckets` when
    /// missing.
    ///
    /// # Errors
    /// The first service that cannot be reached, named.
    pub async fn connect(&self, buckets: &[&str]) -> Result<Infrastructure, ConnectError> {
        let (storage, redis, queue) = tokio::join!(
            S3ObjectStore::connect(self.s3.clone(), buckets),
            self.redis.connect(),
            self.connect_queue(),
        );
        let storage = storage.map_err(|source| ConnectError { service: "S3", source })?;
        let redis = redis.map_err(|source| ConnectError {
            service: "Redis",
            source,
        })?;
        let (publisher, consumer, dead_letters) = queue?;
        Ok(Infrastructure {
            storage: Arc::new(storage),
            publisher,
            consumer,
            lock: Arc::new(redis.lock()),
            progress: Arc::new(redis.progress()),
            state: Arc::new(redis.state()),
            idempotency: Arc::new(redis.idempotency()),
            dead_letters: Some(dead_letters),
        })
    }

    async fn connect_queue(&self) -> Result<QueueEnds, ConnectError> {
        match self.queue {
            QueueKind::RabbitMq => {
                let queue = AmqpQueue::connect(self.amqp.clone())
                    .await
                    .map_err(|source| ConnectError {
                        service: "RabbitMQ",
                        source,
                    })?;
                Ok(self.namespaced(queue))
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

    fn namespaced<Q>(&self, queue: Q) -> QueueEnds
    where
        Q: QueuePublisher + QueueConsumer + DeadLetters + Clone,
    {
        match &self.namespace {
            Some(namespace) => {
                let queue = NamespacedQueue::new(namespace.clone(), queue);
                (Arc::new(queue.clone()), Arc::new(queue.clone()), Arc::new(queue))
            }
            None => (Arc::new(queue.clone()), Arc::new(queue.clone()), Arc::new(queue)),
        }
    }
}
