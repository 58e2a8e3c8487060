//! The queue, depth and dead-letter conformance suites, unchanged, against
//! a three-master Redis Cluster on loopback (`scripts/redis-cluster`,
//! started here and stopped at the end): a queue's scripts touch its one
//! slot (its two streams share the queue's hash tag), and each consumer
//! reads on a cluster connection of its own.

#[path = "../../dtask/tests/support/scripted.rs"]
mod scripted;

use std::sync::Arc;

use dtask_core::conformance;
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use scripted::ScriptedCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_passes_its_suites_on_a_cluster() {
    let cluster = ScriptedCluster::start("redis-cluster").await;
    let node = cluster.urls()[0].replacen("redis://", "redis+cluster://", 1);
    let config =
        RedisStreamsConfig::new(node).with_key_prefix(format!("dtask-test:{}:", uuid::Uuid::new_v4().simple()));
    let queue = RedisStreamsQueue::connect(config.clone())
        .await
        .unwrap_or_else(|e| panic!("connecting to the Redis Cluster: {e}"));
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue.clone())).await;
    conformance::depths::run_all(&queue, &queue, &queue).await;
    let shared = Arc::new(queue.clone());
    conformance::dead_letters::run_all(shared.clone(), shared.clone(), shared).await;
    let bounded = RedisStreamsQueue::connect(config.with_max_backlog(4))
        .await
        .expect("a second handle");
    conformance::queue::back_pressure(Arc::new(bounded.clone()), Arc::new(bounded), 4).await;
    drop(queue);
    drop(cluster);
}
