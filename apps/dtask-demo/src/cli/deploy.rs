//! The deployment options shared by `serve`, `api` and `worker`: the mode
//! and, in Distributed mode, where the services are.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::ValueEnum;
use dtask::codec::KeyRing;
use dtask::distributed::{DistributedOptions, QueueKind, StoreKind};
use dtask::infra::TaskHistory;
use dtask::memory::MemoryTaskHistory;
use dtask::{Format, GroupDistribution, HistorySettings, HostBuilder, Infrastructure, KernelSettings};

/// Which mode a process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// Everything in this process, in memory.
    InProcess,
    /// Through RabbitMQ, Redis Streams or PostgreSQL, S3, and Redis or
    /// PostgreSQL.
    Distributed,
}

/// Which broker carries the hand-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum QueueArg {
    /// RabbitMQ.
    Rabbitmq,
    /// An AMQP 1.0 broker (`DTASK_AMQP10_URL`): RabbitMQ's AMQP 1.0
    /// plugin or Azure Service Bus.
    Amqp10,
    /// Redis Streams.
    RedisStreams,
    /// PostgreSQL: state, progress, locks and idempotency keys too; no
    /// Redis or RabbitMQ.
    Postgres,
}

/// Where state, progress, locks and idempotency keys live beside a
/// RabbitMQ or Redis Streams queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreArg {
    /// Redis.
    Redis,
    /// PostgreSQL.
    Postgres,
}

/// Where the durable task history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HistoryArg {
    /// No history: the task list comes from the progress tracker.
    None,
    /// In this process (InProcess mode only).
    Memory,
    /// In PostgreSQL (`DTASK_DATABASE_URL`), whatever the queue and store.
    Postgres,
}

/// A host's task history and its settings.
pub(crate) type HistoryChoice = Option<(Arc<dyn TaskHistory>, HistorySettings)>;

/// Flags with environment fallbacks.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DeployArgs {
    /// The mode.
    #[arg(long, env = "DTASK_MODE", value_enum, default_value = "in-process")]
    pub(crate) mode: ModeArg,
    /// The broker (Distributed mode).
    #[arg(long, env = "DTASK_QUEUE", value_enum, default_value = "rabbitmq")]
    queue: QueueArg,
    /// Where state, progress, locks and idempotency keys live (a
    /// PostgreSQL queue keeps them in PostgreSQL).
    #[arg(long, env = "DTASK_STORE", value_enum, default_value = "redis")]
    store: StoreArg,
    /// Where the task history is kept (default: `memory` in InProcess
    /// mode, `none` in Distributed mode).
    #[arg(long, env = "DTASK_HISTORY", value_enum)]
    history: Option<HistoryArg>,
    /// How many days the history of an ended task is kept.
    #[arg(long, env = "DTASK_HISTORY_RETENTION_DAYS", default_value_t = 30)]
    history_retention_days: u64,
    /// The PostgreSQL URL (`--queue postgres`, `--store postgres` or
    /// `--history postgres`).
    #[arg(
        long,
        env = "DTASK_DATABASE_URL",
        default_value = "postgres://dtask:dtask@127.0.0.1:5432/dtask",
        hide_env_values = true
    )]
    database_url: String,
    /// The RabbitMQ URL; several, comma-separated, are the nodes of one
    /// cluster, tried in turn.
    #[arg(
        long,
        env = "DTASK_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        value_delimiter = ','
    )]
    amqp_url: Vec<String>,
    /// The AMQP 1.0 broker (`--queue amqp10`): an
    /// `amqp://user:password@host:port` or `amqps://` URL, or an Azure
    /// Service Bus connection string
    /// (`Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...`).
    #[arg(
        long,
        env = "DTASK_AMQP10_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672",
        hide_env_values = true
    )]
    amqp10_url: Secret,
    /// The Redis URL; several, comma-separated, form a RedLock quorum, or
    /// (with `redis+cluster://`) are nodes of one Redis Cluster.
    #[arg(
        long,
        env = "DTASK_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_delimiter = ','
    )]
    redis_url: Vec<String>,
    /// The S3 endpoint (MinIO, s3s-fs; AWS: https://s3.REGION.amazonaws.com).
    #[arg(long, env = "DTASK_S3_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    s3_endpoint: String,
    /// The S3 region.
    #[arg(long, env = "DTASK_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// The S3 access key.
    #[arg(long, env = "DTASK_S3_ACCESS_KEY", default_value = "minioadmin")]
    s3_access_key: String,
    /// The S3 secret key.
    #[arg(
        long,
        env = "DTASK_S3_SECRET_KEY",
        default_value = "minioadmin",
        hide_env_values = true
    )]
    s3_secret_key: String,
    /// A prefix for queue names, so deployments can share a broker.
    #[arg(long, env = "DTASK_NAMESPACE")]
    namespace: Option<String>,
    /// How long a worker's lock on a task lasts without renewal.
    #[arg(long, env = "DTASK_LOCK_TTL_SECS", default_value_t = 30)]
    lock_ttl_secs: u64,
    /// How long a stopping worker (SIGTERM, Ctrl-C) lets its running steps
    /// finish before cancelling them; either way their tasks are handed
    /// back to the queue and their locks released.
    #[arg(long, env = "DTASK_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Which parallel groups' members run from messages of their own, on
    /// any worker: `declared` (those declared `distribute`), `everywhere`
    /// (every group awaiting all its members) or `nowhere`. Every worker
    /// of a queue must agree.
    #[arg(long, env = "DTASK_GROUP_DISTRIBUTION", default_value = "declared")]
    group_distribution: GroupDistribution,
    /// How long a dead worker's Redis Streams or PostgreSQL messages wait
    /// before another worker takes them.
    #[arg(long, env = "DTASK_VISIBILITY_TIMEOUT_SECS", default_value_t = 30)]
    visibility_timeout_secs: u64,
    /// The wire format of messages and snapshots this process writes
    /// (`json`, `msgpack` or `protobuf`); the task's declared format when
    /// unset. Readers need no setting: every message names its format.
    #[arg(long, env = "DTASK_SERIALIZER")]
    pub(crate) serializer: Option<Format>,
    /// The keys that seal messages and saga states (Distributed mode):
    /// `id:base64key[,id:base64key]`, each key 32 random bytes (`openssl
    /// rand -base64 32`); the first seals, all open. Unset: nothing is
    /// sealed.
    #[arg(
        long,
        env = "DTASK_ENCRYPTION_KEYS",
        hide_env_values = true,
        value_name = "ID:KEY,..."
    )]
    encryption_keys: Option<Secret>,
}

/// A flag's value that must not be printed: clap shows a value it could
/// not parse in its error, so keys are parsed after it, by
/// [`DeployArgs::key_ring`], whose errors never show them.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl DeployArgs {
    /// Connects every service of Distributed mode; a clear one-line error
    /// naming the service that cannot be reached.
    pub(crate) async fn connect(&self) -> anyhow::Result<Infrastructure> {
        if self.mode != ModeArg::Distributed {
            bail!("this needs Distributed mode (--mode distributed or DTASK_MODE=distributed)");
        }
        // A bad key ring is told before any service is dialled.
        self.key_ring()?;
        let queue = match self.queue {
            QueueArg::Rabbitmq => QueueKind::RabbitMq,
            QueueArg::Amqp10 => QueueKind::Amqp10,
            QueueArg::RedisStreams => QueueKind::RedisStreams,
            QueueArg::Postgres => QueueKind::Postgres,
        };
        let mut options = self.options(queue);
        if queue == QueueKind::Amqp10 {
            // The error names what is malformed, never a key or password.
            let config = dtask::distributed::dtask_amqp10::Amqp10Config::parse(&self.amqp10_url.0)
                .map_err(|error| anyhow!("DTASK_AMQP10_URL: {error}"))?;
            options = options.amqp10(config);
        }
        Ok(options.connect(&dtask_demo::buckets()).await?)
    }

    /// The connection options these flags give, for `queue`.
    fn options(&self, queue: QueueKind) -> DistributedOptions {
        let store = match self.store {
            StoreArg::Redis => StoreKind::Redis,
            StoreArg::Postgres => StoreKind::Postgres,
        };
        let mut options = DistributedOptions::new(queue)
            .amqp_urls(self.amqp_url.clone())
            .redis_urls(self.redis_url.clone())
            .store(store)
            .database_url(self.database_url.clone())
            .s3_endpoint(&self.s3_endpoint, &self.s3_access_key, &self.s3_secret_key)
            .s3_region(self.s3_region.clone());
        if let Some(namespace) = &self.namespace {
            options = options.namespace(namespace.clone());
        }
        let streams = dtask::distributed::dtask_redis_streams::RedisStreamsConfig::new(self.redis_url[0].clone())
            .with_visibility_timeout(Duration::from_secs(self.visibility_timeout_secs.max(1)));
        options.streams = Some(streams);
        options.postgres = options
            .postgres
            .with_visibility_timeout(Duration::from_secs(self.visibility_timeout_secs.max(1)));
        options
    }

    /// The task history these flags choose, connected.
    ///
    /// # Errors
    /// `memory` in Distributed mode (each process would keep its own), or
    /// PostgreSQL unreachable.
    pub(crate) async fn history(&self) -> anyhow::Result<HistoryChoice> {
        let distributed = self.mode == ModeArg::Distributed;
        let kept: Arc<dyn TaskHistory> = match (self.history, distributed) {
            (Some(HistoryArg::None), _) | (None, true) => return Ok(None),
            (Some(HistoryArg::Memory), true) => bail!(
                "DTASK_HISTORY=memory keeps each process's own history; in Distributed mode use postgres (or none)"
            ),
            (Some(HistoryArg::Memory) | None, false) => Arc::new(MemoryTaskHistory::new()),
            (Some(HistoryArg::Postgres), _) => Arc::new(self.options(QueueKind::Postgres).connect_history().await?),
        };
        let settings = HistorySettings {
            retention: Duration::from_secs(self.history_retention_days.saturating_mul(24 * 3600)),
            ..HistorySettings::default()
        };
        Ok(Some((kept, settings)))
    }

    /// The key ring of `--encryption-keys` (`DTASK_ENCRYPTION_KEYS`), if set.
    ///
    /// # Errors
    /// A malformed ring, named by entry and key id, never by key.
    pub(crate) fn key_ring(&self) -> anyhow::Result<Option<KeyRing>> {
        self.encryption_keys
            .as_ref()
            .map(|Secret(spec)| spec.parse().map_err(|error| anyhow!("DTASK_ENCRYPTION_KEYS: {error}")))
            .transpose()
    }

    /// `builder` with the serializer and the key ring these flags choose.
    ///
    /// # Errors
    /// A malformed key ring.
    pub(crate) fn configure(&self, mut builder: HostBuilder) -> anyhow::Result<HostBuilder> {
        if let Some(format) = self.serializer {
            builder = builder.serializer(format);
        }
        if let Some(keys) = self.key_ring()? {
            builder = builder.encryption(keys);
        }
        Ok(builder)
    }

    /// The kernel settings these flags choose.
    pub(crate) fn kernel(&self) -> KernelSettings {
        KernelSettings {
            lock_ttl: Duration::from_secs(self.lock_ttl_secs.max(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            group_distribution: self.group_distribution,
            ..KernelSettings::default()
        }
    }
}
