//! The dtask conformance suites, unchanged, against the Redis backends on a
//! three-master Redis Cluster on loopback (`scripts/redis-cluster`, started
//! here and stopped at the end): each script touches one slot, batches that
//! span slots are split, progress streams and the cancellation feed follow
//! pub/sub on one node. Then a master is killed under a progress stream
//! and restarted (the node the streams' pub/sub connection is on): the
//! streams go on, from another node, and the state it held is still there
//! (the nodes write every command to disk before answering).
//!
//! The suites run one after the other in one test, on one cluster (which
//! takes about 2 s to start).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use dtask_core::conformance;
use dtask_core::infra::{ProgressTracker, SagaStateStore, StoredState};
use dtask_core::progress::TaskProgress;
use dtask_core::task::{Mode, StepHost, TaskDefinition};
use dtask_core::{EventKind, Format, Payload, TaskEvent, TaskId, TaskStatus};
use dtask_redis::{RedisBackends, RedisConfig};
use futures::StreamExt;
use time::OffsetDateTime;

static DEFINITION: TaskDefinition = TaskDefinition {
    name: "Clustered",
    queue: "dtask-redis-cluster-tests",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::Distributed,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[],
    groups: &[],
    depends_on: &[],
};

fn after(progress: &TaskProgress, kind: EventKind) -> TaskProgress {
    let mut next = progress.clone();
    next.apply(&TaskEvent {
        task_id: progress.task_id,
        at: OffsetDateTime::now_utc(),
        kind,
    });
    next
}

/// A task that started running on a worker.
fn running() -> TaskProgress {
    let created = TaskProgress::new(TaskId::new(), &DEFINITION, OffsetDateTime::now_utc());
    after(&created, EventKind::Started { host: StepHost::Worker })
}

/// The cluster, stopped (and its data deleted) on drop.
struct Cluster;

impl Cluster {
    fn try_run(args: &[&str]) -> Result<String, String> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster");
        let output = Command::new(script)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run scripts/redis-cluster {args:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("scripts/redis-cluster {args:?} failed: {stdout}{stderr}"))
    }

    async fn run(args: &'static [&'static str]) -> String {
        tokio::task::spawn_blocking(move || Self::try_run(args))
            .await
            .expect("the script ran")
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts the three masters (the guard exists first, so that a failed
    /// start is stopped too).
    async fn start() -> Self {
        let cluster = Self;
        Self::run(&["start"]).await;
        cluster
    }

    /// The nodes' URLs, as `redis+cluster://` URLs.
    async fn urls() -> Vec<String> {
        let urls = Self::run(&["urls"]).await;
        urls.trim()
            .split(',')
            .map(|url| url.replacen("redis://", "redis+cluster://", 1))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = Self::try_run(&["stop"]) {
            eprintln!("{error}");
        }
    }
}

async fn connect(urls: &[String]) -> RedisBackends {
    RedisConfig::cluster(urls.iter().cloned())
        .expect("three nodes")
        .with_key_prefix(format!("dtask-cluster-test:{}:", uuid::Uuid::new_v4().simple()))
        .with_progress_expiry(Some(Duration::from_secs(600)))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the Redis Cluster: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_pass_their_suites_on_a_cluster_and_ride_out_a_restarted_master() {
    // The reconnections' logs show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dtask_redis=info")
        .with_test_writer()
        .try_init();
    let cluster = Cluster::start().await;
    let urls = Cluster::urls().await;
    let backends = connect(&urls).await;

    conformance::progress::run_all(&backends.progress()).await;
    conformance::progress::run_feed(&backends.progress(), &backends.progress()).await;
    conformance::state::run_all(&backends.state()).await;
    conformance::lock::run_all(&backends.lock()).await;
    conformance::idempotency::run_all(&backends.idempotency()).await;
    conformance::workers::run_all(&backends.workers()).await;
    backends.ping().await.expect("ping every node");

    // Tasks spread over the three masters: some land on node 1, which
    // also carries the streams' pub/sub connection.
    let tracker = backends.progress();
    let state = backends.state();
    let tasks: Vec<TaskProgress> = (0..30).map(|_| running()).collect();
    for result in tracker.init_many(&tasks).await {
        result.expect("a batch spanning slots is recorded");
    }
    let saved = tasks.iter().map(|task| {
        let payload = Payload::Encoded {
            format: Format::Json,
            bytes: Bytes::from_static(b"{\"step\":1}"),
        };
        (task.task_id, StoredState { fence: 1, payload })
    });
    for result in state.save_many(saved.collect()).await {
        result.expect("a batch of states spanning slots is saved");
    }
    let mut streams = Vec::new();
    for task in &tasks {
        streams.push(tracker.stream(task.task_id).await.expect("a stream"));
    }

    Cluster::run(&["kill", "1"]).await;
    Cluster::run(&["start"]).await;

    for (task, stream) in tasks.iter().zip(&mut streams) {
        let first = stream.next().await.expect("the current snapshot");
        assert_eq!(first.revision, task.revision);
        tracker
            .complete(&after(task, EventKind::Completed))
            .await
            .expect("completed after the restart");
        // Changes after the restart reach the stream (after a resync when
        // its pub/sub node was the one restarted).
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .expect("the change within 30 s")
                .expect("the stream goes on");
            if next.status == TaskStatus::Completed {
                break;
            }
        }
        let kept = state
            .load(task.task_id)
            .await
            .expect("load")
            .expect("the saved state survived");
        assert_eq!(kept.fence, 1);
    }
    // Every connection closed before the nodes stop.
    drop((streams, tracker, state, backends));
    drop(cluster);
}
