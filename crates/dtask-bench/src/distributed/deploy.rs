//! One Distributed-mode deployment of the benchmark tasks: its broker, a
//! namespace and Redis key prefix of its own (so runs never meet), the
//! hosts built on it, and the cleanup of every key and queue it made.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_postgres::PostgresConfig;
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::distributed::dtask_redis_streams::RedisStreamsConfig;
use dtask::distributed::{DistributedOptions, QueueKind};
use dtask::{Host, Infrastructure, Mode, Task, TaskEvent};

use crate::task::{OneStep, ThreeSteps};

/// The broker that carries the hand-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Broker {
    /// Redis Streams.
    RedisStreams,
    /// RabbitMQ.
    Rabbitmq,
    /// PostgreSQL alone (queue, state, progress, lock, idempotency).
    Postgres,
}

impl Broker {
    /// "Redis Streams" or "RabbitMQ".
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::RedisStreams => "Redis Streams",
            Self::Rabbitmq => "RabbitMQ",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// The value of `--broker` naming it.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Self::RedisStreams => "redis-streams",
            Self::Rabbitmq => "rabbitmq",
            Self::Postgres => "postgres",
        }
    }

    fn kind(self) -> QueueKind {
        match self {
            Self::RedisStreams => QueueKind::RedisStreams,
            Self::Rabbitmq => QueueKind::RabbitMq,
            Self::Postgres => QueueKind::Postgres,
        }
    }

    /// Whether its deployments keep state and progress in Redis.
    pub(crate) fn uses_redis(self) -> bool {
        self != Self::Postgres
    }
}

/// Where the services are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Endpoints {
    /// The Redis URL (progress, state, locks, and Redis Streams).
    #[arg(long, env = "DTASK_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,
    /// The RabbitMQ URL.
    #[arg(
        long,
        env = "DTASK_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp_url: String,
    /// The PostgreSQL URL (`--brokers postgres`; `scripts/test` creates
    /// this role and database).
    #[arg(
        long,
        env = "DTASK_DATABASE_URL",
        default_value = "postgres://dtask:dtask@127.0.0.1:5432/dtask_test",
        hide_env_values = true
    )]
    pub(crate) database_url: String,
    /// The S3 endpoint (`scripts/s3-server start` runs one).
    #[arg(long, env = "DTASK_S3_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub(crate) s3_endpoint: String,
    /// The S3 access key.
    #[arg(long, env = "DTASK_S3_ACCESS_KEY", default_value = "minioadmin")]
    pub(crate) s3_access_key: String,
    /// The S3 secret key.
    #[arg(
        long,
        env = "DTASK_S3_SECRET_KEY",
        default_value = "minioadmin",
        hide_env_values = true
    )]
    pub(crate) s3_secret_key: String,
}

impl Endpoints {
    /// Fails with a hint unless Redis, RabbitMQ (when `rabbitmq`),
    /// PostgreSQL (when `postgres`) and the S3 server answer on TCP.
    ///
    /// # Errors
    /// The first service that does not answer, named.
    pub(crate) fn require(&self, rabbitmq: bool, postgres: bool) -> anyhow::Result<()> {
        require(
            "Redis",
            &self.redis_url,
            "start Redis on 127.0.0.1:6379 or set DTASK_REDIS_URL",
        )?;
        if postgres {
            require(
                "PostgreSQL",
                &self.database_url,
                "start PostgreSQL on 127.0.0.1:5432 and run scripts/test once (it creates the role and database), or set DTASK_DATABASE_URL",
            )?;
        }
        if rabbitmq {
            require(
                "RabbitMQ",
                &self.amqp_url,
                "start RabbitMQ on 127.0.0.1:5672 or set DTASK_AMQP_URL",
            )?;
        }
        require(
            "S3",
            &self.s3_endpoint,
            "run `scripts/s3-server start` (after `scripts/s3-server install`) or set DTASK_S3_ENDPOINT",
        )
    }
}

/// Fails unless the host:port of `url` accepts a TCP connection.
fn require(service: &str, url: &str, hint: &str) -> anyhow::Result<()> {
    let authority = url.split("://").nth(1).unwrap_or(url);
    let authority = authority.split('/').next().unwrap_or(authority);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let reachable = authority
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    if !reachable {
        bail!("{service} is not reachable at {authority}: {hint}");
    }
    Ok(())
}

/// One deployment: a broker, a namespace, a key prefix.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    /// The broker.
    pub(crate) broker: Broker,
    /// The queue namespace (`{namespace}.bench`).
    pub(crate) namespace: String,
    /// What every Redis key of the deployment starts with.
    pub(crate) key_prefix: String,
    /// Where the services are.
    pub(crate) endpoints: Endpoints,
    /// RabbitMQ prefetch (the workers' concurrency).
    pub(crate) prefetch: u16,
}

impl Deployment {
    /// A fresh deployment with a unique namespace and key prefix.
    pub(crate) fn fresh(broker: Broker, endpoints: &Endpoints, prefetch: usize) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            broker,
            namespace: format!("dtask-bench-{}", &id[..12]),
            key_prefix: format!("dtask-bench:{}:", &id[..12]),
            endpoints: endpoints.clone(),
            prefetch: u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX),
        }
    }

    /// The broker's name of the benchmark queue.
    pub(crate) fn queue_name(&self) -> String {
        format!("{}.bench", self.namespace)
    }

    fn options(&self) -> DistributedOptions {
        let endpoints = &self.endpoints;
        let mut options = DistributedOptions::new(self.broker.kind())
            .amqp_url(endpoints.amqp_url.clone())
            .redis_urls([endpoints.redis_url.clone()])
            .s3_endpoint(
                &endpoints.s3_endpoint,
                &endpoints.s3_access_key,
                &endpoints.s3_secret_key,
            )
            .namespace(self.namespace.clone());
        options.redis = RedisConfig::new(endpoints.redis_url.clone()).with_key_prefix(self.key_prefix.clone());
        options.streams = Some(
            RedisStreamsConfig::new(endpoints.redis_url.clone()).with_key_prefix(format!("{}q:", self.key_prefix)),
        );
        options.amqp = AmqpConfig::new(endpoints.amqp_url.clone()).with_prefetch(self.prefetch);
        options.postgres = PostgresConfig::new(endpoints.database_url.clone())
            .with_max_connections(u32::from(self.prefetch).clamp(8, 32))
            .with_poll_interval(Duration::from_millis(200));
        options
    }

    /// Connects every service.
    ///
    /// # Errors
    /// The service that cannot be reached.
    pub(crate) async fn connect(&self) -> anyhow::Result<Infrastructure> {
        Ok(self.options().connect(&[]).await?)
    }

    /// A Distributed host serving both benchmark tasks; it runs workers
    /// (`concurrency` at once) when `run_workers`, and tells `listener` of
    /// every event.
    ///
    /// # Errors
    /// A service that cannot be reached.
    pub(crate) async fn host(
        &self,
        concurrency: usize,
        run_workers: bool,
        listener: impl Fn(&TaskEvent) + Send + Sync + 'static,
    ) -> anyhow::Result<Host> {
        let host = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(self.connect().await?)
            .register(ThreeSteps)
            .register(OneStep)
            .worker_concurrency(concurrency)
            .run_workers(run_workers)
            .on_event(listener)
            .build()?;
        Ok(host)
    }

    /// Deletes every Redis key under the prefix and the RabbitMQ queues.
    ///
    /// # Errors
    /// A backend error.
    pub(crate) async fn cleanup(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.endpoints.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        delete_keys(&mut conn, &self.key_prefix).await?;
        if self.broker == Broker::Rabbitmq {
            let amqp = AmqpQueue::connect(AmqpConfig::new(self.endpoints.amqp_url.clone()))
                .await
                .context("connecting to RabbitMQ to delete the benchmark queue")?;
            amqp.delete(&self.queue_name()).await?;
        }
        if self.broker == Broker::Postgres {
            let postgres = PostgresConfig::new(self.endpoints.database_url.clone())
                .connect()
                .await
                .context("connecting to PostgreSQL to delete the benchmark's rows")?;
            postgres.queue().delete_queue(&self.queue_name()).await?;
            // The benchmark's tasks: their states, change logs and progress.
            let names = [OneStep::definition().name, ThreeSteps::definition().name];
            for statement in [
                "DELETE FROM dtask_state WHERE task_id IN (SELECT task_id FROM dtask_progress WHERE task_name = ANY($1))",
                "DELETE FROM dtask_progress_changes WHERE task_id IN (SELECT task_id FROM dtask_progress WHERE task_name = ANY($1))",
                "DELETE FROM dtask_progress WHERE task_name = ANY($1)",
            ] {
                sqlx::query(statement).bind(&names[..]).execute(postgres.pool()).await?;
            }
        }
        Ok(())
    }
}

/// Deletes every key that starts with `prefix`.
///
/// # Errors
/// A Redis error.
pub(crate) async fn delete_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> redis::RedisResult<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).exec_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
