//! The dtask conformance suites, unchanged, against the Redis backends on a
//! three-master Redis Cluster on loopback (`scripts/redis-cluster`, started
//! here and stopped at the end): each script touches one slot, batches that
//! span slots are split, progress streams and the cancellation feed follow
//! pub/sub on one node. Then the master the streams' pub/sub connection is
//! on is killed: the tasks on the other masters complete meanwhile and
//! their streams, moved to another node, hear it; once it is restarted,
//! its tasks complete too and the state it held is still there (the nodes
//! write every command to disk before answering).
//!
//! The suites run one after the other in one test, on one cluster (which
//! takes about 2 s to start).

#[path = "../../dtask/tests/support/scripted.rs"]
mod scripted;
mod support;

use std::time::Duration;

use bytes::Bytes;
use dtask_core::conformance;
use dtask_core::infra::{ProgressTracker, SagaStateStore, StoredState};
use dtask_core::progress::TaskProgress;
use dtask_core::task::StepHost;
use dtask_core::{EventKind, Format, Payload, TaskId, TaskStatus};
use dtask_redis::{RedisBackends, RedisConfig};
use futures::StreamExt;
use scripted::ScriptedCluster;
use support::{after, new_task};

/// A task that started running on a worker.
fn running() -> TaskProgress {
    let created = new_task();
    after(&created, EventKind::Started { host: StepHost::Worker })
}

/// The nodes' URLs, as `redis+cluster://` URLs.
fn cluster_urls(cluster: &ScriptedCluster) -> Vec<String> {
    (cluster.urls().iter())
        .map(|url| url.replacen("redis://", "redis+cluster://", 1))
        .collect()
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

/// Reads `stream` until it shows its task completed.
async fn until_completed(stream: &mut dtask_core::infra::ProgressStream, task_id: TaskId) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("task {task_id}'s completion within 30 s"))
            .expect("the stream goes on");
        if next.status == TaskStatus::Completed {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_pass_their_suites_on_a_cluster_and_ride_out_a_restarted_master() {
    // The reconnections' logs show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dtask_redis=info")
        .with_test_writer()
        .try_init();
    let cluster = ScriptedCluster::start("redis-cluster").await;
    let urls = cluster_urls(&cluster);
    let backends = connect(&urls).await;

    conformance::progress::run_all(&backends.progress()).await;
    conformance::progress::run_feed(&backends.progress(), &backends.progress()).await;
    conformance::state::run_all(&backends.state()).await;
    // A lock and a state live in different slots: no script takes both.
    assert!(backends.lock_with_state().is_none());
    support::settlement_suite(&backends).await;
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

    for (task, stream) in tasks.iter().zip(&mut streams) {
        let first = stream.next().await.expect("the current snapshot");
        assert_eq!(first.revision, task.revision);
    }

    cluster.kill(1).await;
    // While node 1 is down, the tasks on the other masters complete, and
    // their streams, moved off node 1, hear it.
    let completing = tasks.iter().map(|task| {
        let tracker = tracker.clone();
        async move {
            let done = after(task, EventKind::Completed);
            matches!(
                tokio::time::timeout(Duration::from_secs(2), tracker.complete(&done)).await,
                Ok(Ok(()))
            )
        }
    });
    let completed_while_down = futures::future::join_all(completing).await;
    assert!(
        completed_while_down.iter().any(|done| *done),
        "no task lives on node 2 or 3"
    );
    for ((task, stream), done) in tasks.iter().zip(&mut streams).zip(&completed_while_down) {
        if *done {
            until_completed(stream, task.task_id).await;
        }
    }

    cluster.run_blocking(&["start"]).await;
    for ((task, stream), done) in tasks.iter().zip(&mut streams).zip(&completed_while_down) {
        if !*done {
            tracker
                .complete(&after(task, EventKind::Completed))
                .await
                .expect("completed after the restart");
            until_completed(stream, task.task_id).await;
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
