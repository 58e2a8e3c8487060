//! One node of the chaos test (`tests/chaos.rs`): `chaos_node api` serves
//! the HTTP API of `ChaosTask` (its Api step stores the uploaded file),
//! `chaos_node worker` runs its Worker steps. Both run in Distributed mode
//! on RabbitMQ, Redis and S3.
//!
//! Each Worker step takes 100 to 400 ms (watching its cancellation token),
//! writes one object under `{task_id}/{step}/` and then, in one atomic
//! Redis script, records its side effects in a ledger the test reads:
//!
//! - `executions` (hash, field = the step's idempotency key): how many
//!   times the step's body reached its end, re-executions included;
//! - the effect itself, applied idempotently with `SET effect:{key} NX`,
//!   and `applied` (hash, field = `{task_id}/{step}`, derived from the
//!   task id and the step's name, not from the key): how many times it was
//!   applied. A key that were not the same for every attempt and delivery
//!   would show here as an effect applied twice;
//! - `runs:{task_id}` (list): `start STEP PID ATTEMPT T_MS` when a body
//!   starts and `end STEP PID ATTEMPT T_START_MS T_END_MS` when it ends,
//!   so the test can see interrupted runs, overlaps and delays.
//!
//! Compensations delete the step's object and count in `compensations`.
//!
//! ```text
//! DTASK_NAMESPACE=chaos-1 CHAOS_KEY_PREFIX=chaos-1: cargo run --example chaos_node -- worker
//! ```
//!
//! Environment: `DTASK_QUEUE` (`rabbitmq`, the default, with Redis; or
//! `postgres`: every dtask service on PostgreSQL at `DTASK_DATABASE_URL`,
//! its messages back in the queue 3 s after their worker died; the ledger
//! stays in Redis, as the test's instrument), `DTASK_AMQP_URL`,
//! `DTASK_REDIS_URL`, `DTASK_S3_ENDPOINT`
//! (minioadmin keys), `DTASK_NAMESPACE` (queue prefix), `CHAOS_KEY_PREFIX`
//! (every Redis key of the run, dtask's and the ledger's),
//! `DTASK_LOCK_TTL_SECS` (default 3), `DTASK_WORKER_CONCURRENCY`
//! (default 4), `CHAOS_LISTEN` (the API's address, default
//! `127.0.0.1:0`). The first line on stdout is `Api: http://ADDR` or
//! `Worker ready (pid N)`.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use dtask::distributed::{DistributedOptions, QueueKind};
use dtask::infra::ObjectStoreExt;
use dtask::prelude::*;
use dtask::{Host, Mode};
use dtask_http::TaskApi;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// The bucket of the Api step's uploads.
const INPUT_BUCKET: &str = "chaos-inputs";
/// The bucket the Worker steps write their objects to.
const EFFECT_BUCKET: &str = "chaos-effects";

/// The input: one small file, and a label.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChaosRequest {
    /// The uploaded file (consumed by ReceiveInput on the API).
    #[serde(skip)]
    files: Files,
    /// Free text, carried along.
    #[serde(default)]
    label: String,
}

/// The output: the objects the Worker steps wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChaosResponse {
    /// Their keys in `chaos-effects`.
    objects: Vec<String>,
}

/// What a Worker step leaves: its object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Effect {
    /// The object's key in `chaos-effects`.
    key: String,
    /// The worker that wrote it.
    pid: u32,
}

/// A task of three Worker steps with side effects, after an Api upload.
#[dtask::task(
    name = "ChaosTask",
    request = ChaosRequest,
    response = ChaosResponse,
    queue = "chaos",
    max_retries = 3,
    timeout_secs = 300,
    serialization = Json
)]
#[file_upload(ReceiveInput, order = 1, bucket = "chaos-inputs", source = request.files)]
#[placement(ReceiveInput, host = Api)]
#[custom_step(Transform, order = 2, inputs(receive_input), output = Effect)]
#[compensation(Transform)]
#[custom_step(Index, order = 3, inputs(transform), output = Effect)]
#[compensation(Index)]
#[custom_step(Publish, order = 4, inputs(index), output = Effect)]
#[compensation(Publish)]
#[derive(Clone)]
struct ChaosTask {
    ledger: Ledger,
}

impl chaos_task::Steps for ChaosTask {
    async fn transform(&self, cx: &StepContext, input: chaos_task::TransformInput<'_>) -> Result<Effect, StepError> {
        let source = input
            .receive_input
            .objects
            .first()
            .ok_or_else(|| StepError::permanent("ReceiveInput stored no file"))?;
        let bytes = cx.storage().get_bytes(INPUT_BUCKET, &source.key).await?;
        self.effect(cx, bytes.to_ascii_uppercase().into()).await
    }

    async fn compensate_transform(&self, cx: &StepContext, _: &ChaosRequest, data: &Effect) -> Result<(), StepError> {
        self.undo(cx, data).await
    }

    async fn index(&self, cx: &StepContext, input: chaos_task::IndexInput<'_>) -> Result<Effect, StepError> {
        let index = format!("{} -> {}\n", input.request.label, input.transform.key);
        self.effect(cx, index.into()).await
    }

    async fn compensate_index(&self, cx: &StepContext, _: &ChaosRequest, data: &Effect) -> Result<(), StepError> {
        self.undo(cx, data).await
    }

    async fn publish(&self, cx: &StepContext, input: chaos_task::PublishInput<'_>) -> Result<Effect, StepError> {
        let note = format!("published {}\n", input.index.key);
        self.effect(cx, note.into()).await
    }

    async fn compensate_publish(&self, cx: &StepContext, _: &ChaosRequest, data: &Effect) -> Result<(), StepError> {
        self.undo(cx, data).await
    }

    fn response(&self, outputs: chaos_task::Outputs<'_>) -> Result<ChaosResponse, StepError> {
        Ok(ChaosResponse {
            objects: [outputs.transform, outputs.index, outputs.publish]
                .iter()
                .map(|effect| effect.key.clone())
                .collect(),
        })
    }
}

impl ChaosTask {
    /// The body every Worker step shares: work for a while, write the
    /// step's object, record the side effects.
    async fn effect(&self, cx: &StepContext, content: Bytes) -> Result<Effect, StepError> {
        let pid = std::process::id();
        let started = now_ms();
        self.ledger.run_started(cx, pid, started).await?;
        tokio::select! {
            () = tokio::time::sleep(work_time(cx)) => {}
            () = cx.cancelled() => return Err(StepError::cancelled()),
        }
        let key = format!("{}/{}/effect.txt", cx.task_id(), cx.step_name());
        cx.storage().put_bytes(EFFECT_BUCKET, &key, content).await?;
        self.ledger.run_ended(cx, pid, started, now_ms()).await?;
        Ok(Effect { key, pid })
    }

    async fn undo(&self, cx: &StepContext, data: &Effect) -> Result<(), StepError> {
        cx.storage().delete(EFFECT_BUCKET, &data.key).await?;
        self.ledger.compensated(cx).await?;
        Ok(())
    }
}

/// How long a step works: 100 to 400 ms, the same for every attempt of
/// one step of one task.
fn work_time(cx: &StepContext) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (cx.task_id().to_string(), cx.step_name()).hash(&mut hasher);
    Duration::from_millis(100 + hasher.finish() % 301)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Redis ledger of the steps' side effects (see the module docs).
#[derive(Clone)]
struct Ledger {
    redis: ConnectionManager,
    prefix: String,
}

/// Counts the execution, applies the effect once per idempotency key, and
/// logs the run's end: all or nothing.
const RUN_ENDED: &str = r"
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if redis.call('SET', KEYS[2], ARGV[4], 'NX') then
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
end
redis.call('RPUSH', KEYS[4], ARGV[3])
return 1
";

impl Ledger {
    async fn connect(url: &str, prefix: String) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("the Redis URL")?;
        let redis = ConnectionManager::new(client).await.context("connecting to Redis")?;
        Ok(Self { redis, prefix })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn run_started(&self, cx: &StepContext, pid: u32, started: u64) -> redis::RedisResult<()> {
        let record = format!("start {} {pid} {} {started}", cx.step_name(), cx.attempt());
        redis::cmd("RPUSH")
            .arg(self.key(&format!("runs:{}", cx.task_id())))
            .arg(record)
            .query_async(&mut self.redis.clone())
            .await
    }

    async fn run_ended(&self, cx: &StepContext, pid: u32, started: u64, ended: u64) -> redis::RedisResult<()> {
        let idempotency_key = cx.idempotency_key();
        let record = format!("end {} {pid} {} {started} {ended}", cx.step_name(), cx.attempt());
        redis::Script::new(RUN_ENDED)
            .key(self.key("executions"))
            .key(self.key(&format!("effect:{idempotency_key}")))
            .key(self.key("applied"))
            .key(self.key(&format!("runs:{}", cx.task_id())))
            .arg(&idempotency_key)
            .arg(format!("{}/{}", cx.task_id(), cx.step_name()))
            .arg(record)
            .arg(pid)
            .invoke_async(&mut self.redis.clone())
            .await
    }

    async fn compensated(&self, cx: &StepContext) -> redis::RedisResult<()> {
        redis::cmd("HINCRBY")
            .arg(self.key("compensations"))
            .arg(format!("{}/{}", cx.task_id(), cx.step_name()))
            .arg(1)
            .query_async(&mut self.redis.clone())
            .await
    }
}

/// The node's settings, from the environment.
struct Settings {
    /// `DTASK_QUEUE=postgres`: PostgreSQL for every dtask service.
    postgres: bool,
    database_url: String,
    amqp_url: String,
    redis_url: String,
    s3_endpoint: String,
    namespace: String,
    key_prefix: String,
    lock_ttl: Duration,
    concurrency: usize,
    listen: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            var(name, &default.to_string())
                .parse()
                .with_context(|| format!("{name} is not a number"))
        };
        let postgres = match var("DTASK_QUEUE", "rabbitmq").as_str() {
            "rabbitmq" => false,
            "postgres" => true,
            other => bail!("DTASK_QUEUE is `{other}`: rabbitmq or postgres"),
        };
        Ok(Self {
            postgres,
            database_url: var("DTASK_DATABASE_URL", "postgres://dtask:dtask@127.0.0.1:5432/dtask_test"),
            amqp_url: var("DTASK_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            redis_url: var("DTASK_REDIS_URL", "redis://127.0.0.1:6379"),
            s3_endpoint: var("DTASK_S3_ENDPOINT", "http://127.0.0.1:9000"),
            namespace: var("DTASK_NAMESPACE", "chaos"),
            key_prefix: var("CHAOS_KEY_PREFIX", "chaos:"),
            lock_ttl: Duration::from_secs(number("DTASK_LOCK_TTL_SECS", 3)?.max(1)),
            concurrency: number("DTASK_WORKER_CONCURRENCY", 4)?.max(1) as usize,
            listen: var("CHAOS_LISTEN", "127.0.0.1:0"),
        })
    }

    /// The task, and a host builder on the connected services.
    async fn connect(&self) -> anyhow::Result<(ChaosTask, dtask::host::HostBuilder)> {
        let queue = if self.postgres {
            QueueKind::Postgres
        } else {
            QueueKind::RabbitMq
        };
        let mut options = DistributedOptions::new(queue)
            .database_url(self.database_url.clone())
            .amqp_url(self.amqp_url.clone())
            .redis_urls([self.redis_url.clone()])
            .s3_endpoint(&self.s3_endpoint, "minioadmin", "minioadmin")
            .namespace(self.namespace.clone());
        options.redis = options.redis.with_key_prefix(format!("{}dtask:", self.key_prefix));
        options.postgres = options.postgres.with_visibility_timeout(self.lock_ttl);
        let infrastructure = options.connect(&[INPUT_BUCKET, EFFECT_BUCKET]).await?;
        let ledger = Ledger::connect(&self.redis_url, format!("{}ledger:", self.key_prefix)).await?;
        let task = ChaosTask { ledger };
        let builder = Host::builder()
            .register(task.clone())
            .mode(Mode::Distributed)
            .infrastructure(infrastructure)
            .lock_ttl(self.lock_ttl);
        Ok((task, builder))
    }
}

async fn api(settings: Settings) -> anyhow::Result<()> {
    let (_, builder) = settings.connect().await?;
    let host = builder.run_workers(false).build()?;
    let router = TaskApi::builder(host.clone()).task::<ChaosTask>().build();
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    announce(&format!("Api: http://{}", listener.local_addr()?))?;
    axum::serve(listener, router)
        .with_graceful_shutdown(terminated())
        .await?;
    host.shutdown().await;
    Ok(())
}

async fn worker(settings: Settings) -> anyhow::Result<()> {
    let (_, builder) = settings.connect().await?;
    let host = builder.worker_concurrency(settings.concurrency).build()?;
    announce(&format!("Worker ready (pid {})", std::process::id()))?;
    terminated().await;
    host.shutdown().await;
    Ok(())
}

fn announce(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let settings = Settings::from_env()?;
    match std::env::args().nth(1).as_deref() {
        Some("api") => api(settings).await,
        Some("worker") => worker(settings).await,
        _ => bail!("usage: chaos_node api|worker"),
    }
}
