//! The chaos test's own view of the services: the run's progress and saga
//! state in Redis, the buckets, the reconciler, and the clean-up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dtask::TaskId;
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_postgres::PostgresConfig;
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::distributed::dtask_s3::{S3Config, S3ObjectStore};
use dtask::infra::{ObjectStore, ProgressTracker, SagaStateStore};
use dtask::reconcile::Reconciler;
use redis::aio::MultiplexedConnection;

use crate::nodes::NodeEnv;

/// The bucket of the Api step's uploads.
pub(crate) const INPUT_BUCKET: &str = "chaos-inputs";
/// The bucket of the Worker steps' objects.
pub(crate) const EFFECT_BUCKET: &str = "chaos-effects";
const REDIS_URL: &str = "redis://127.0.0.1:6379";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The services of one run, seen from the test.
pub(crate) struct Services {
    client: redis::Client,
    pub(crate) progress: Arc<dyn ProgressTracker>,
    state: Arc<dyn SagaStateStore>,
    storage: Arc<S3ObjectStore>,
    /// The run's PostgreSQL services, when it is on PostgreSQL alone.
    postgres: Option<dtask::distributed::dtask_postgres::PostgresBackends>,
}

/// The test database (`DTASK_DATABASE_URL`, else the one `scripts/test`
/// creates).
pub(crate) fn database_url() -> String {
    std::env::var("DTASK_DATABASE_URL").unwrap_or_else(|_| "postgres://dtask:dtask@127.0.0.1:5432/dtask_test".into())
}

impl Services {
    pub(crate) async fn connect(env: &NodeEnv) -> Self {
        let backends = RedisConfig::new(REDIS_URL)
            .with_key_prefix(format!("{}dtask:", env.key_prefix))
            .connect()
            .await
            .expect("Redis");
        let storage = S3ObjectStore::connect(
            S3Config::endpoint(&env.s3_endpoint, "minioadmin", "minioadmin"),
            &[INPUT_BUCKET, EFFECT_BUCKET],
        )
        .await
        .expect("the S3 server");
        let postgres = match &env.postgres {
            Some(url) => Some(PostgresConfig::new(url.clone()).connect().await.expect("PostgreSQL")),
            None => None,
        };
        let (progress, state): (Arc<dyn ProgressTracker>, Arc<dyn SagaStateStore>) = match &postgres {
            Some(pg) => (Arc::new(pg.progress()), Arc::new(pg.state())),
            None => (Arc::new(backends.progress()), Arc::new(backends.state())),
        };
        Self {
            client: redis::Client::open(REDIS_URL).expect("a Redis URL"),
            progress,
            state,
            storage: Arc::new(storage),
            postgres,
        }
    }

    /// A new connection (one kept across a long run may have been cut).
    pub(crate) async fn redis(&self) -> MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers")
    }

    /// The Redis server's `run_id`: it changes when Redis restarts.
    pub(crate) async fn redis_run_id(&self) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.redis().await)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The status and revision in a task's stored saga state (JSON).
    pub(crate) async fn stored_status(&self, task_id: TaskId) -> String {
        let stored = match self.state.load(task_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return "no saga state".to_owned(),
            Err(error) => return format!("saga state unreadable: {error}"),
        };
        let Ok((format, bytes)) = stored.payload.encoded() else {
            return "an in-memory saga state".to_owned();
        };
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(state) => format!(
                "saga state {} at revision {}",
                state["progress"]["status"], state["progress"]["revision"]
            ),
            Err(_) => format!("a {format:?} saga state"),
        }
    }

    /// A reconciler of the run's buckets, with no grace period.
    pub(crate) fn reconciler(&self) -> Reconciler {
        Reconciler::new(
            self.storage.clone(),
            Arc::clone(&self.progress),
            Arc::clone(&self.state),
        )
        .with_buckets([INPUT_BUCKET, EFFECT_BUCKET])
        .with_grace(Duration::ZERO)
    }

    /// Every object of the buckets as `(bucket, key)`, by the first
    /// segment of its key (the task id).
    pub(crate) async fn objects_by_task(&self) -> HashMap<String, Vec<(String, String)>> {
        let mut by_task: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for bucket in [INPUT_BUCKET, EFFECT_BUCKET] {
            for object in self.storage.list(bucket, "").await.expect("the bucket lists") {
                let task = object.key.split('/').next().unwrap_or_default().to_owned();
                by_task.entry(task).or_default().push((bucket.to_owned(), object.key));
            }
        }
        by_task
    }

    /// Deletes the run's queue, its Redis keys and the objects of `tasks`.
    pub(crate) async fn clean_up(&self, env: &NodeEnv, tasks: &HashSet<String>) {
        let queue = format!("{}.chaos", env.namespace);
        let deleted = match &self.postgres {
            Some(pg) => pg.queue().delete_queue(&queue).await,
            None => match AmqpQueue::connect(AmqpConfig::new(AMQP_URL)).await {
                Ok(amqp) => amqp.delete(&queue).await.map(drop),
                Err(error) => Err(error),
            },
        };
        if let Err(error) = deleted {
            eprintln!("chaos: could not delete the queue {queue}: {error}");
        }
        let mut redis = self.redis().await;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", env.key_prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await
                .expect("SCAN");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.expect("DEL");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for (task, objects) in self.objects_by_task().await {
            if tasks.contains(&task) {
                for (bucket, key) in objects {
                    let _ = self.storage.delete(&bucket, &key).await;
                }
            }
        }
    }
}
