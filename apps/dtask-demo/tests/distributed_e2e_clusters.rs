//! The end-to-end scenario of `distributed_e2e.rs` (separate `api` and
//! `worker` processes; twenty zips checked byte for byte, a cancellation
//! across processes, a worker killed with SIGKILL mid-step whose task
//! completes on another) on the engines users scale out: the queue on a
//! three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`, quorum queues
//! replicated on all three) and the tasks' state, progress and locks on a
//! three-master Redis Cluster (`scripts/redis-cluster`), both started and
//! stopped by this test. The processes are given every node's URL
//! (`DTASK_AMQP_URL`, `DTASK_REDIS_URL` as `redis+cluster://` lists).
//!
//! Needs RabbitMQ and Redis installed (the clusters' nodes run beside the
//! machine's own), PostgreSQL is not used. Starting both clusters takes
//! about 15 s.

mod cluster;
#[path = "../../../crates/dtask/tests/support/scripted.rs"]
mod scripted;

use cluster::scenario::run_cluster;
use cluster::{Broker, Cluster};
use scripted::ScriptedCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_on_a_rabbitmq_cluster_and_a_redis_cluster() {
    let (rabbitmq, redis) = tokio::join!(
        ScriptedCluster::start("rabbitmq-cluster"),
        ScriptedCluster::start("redis-cluster"),
    );
    let redis_nodes: Vec<String> = (redis.urls().iter())
        .map(|url| url.replacen("redis://", "redis+cluster://", 1))
        .collect();
    let cluster = Cluster::new(Broker::RabbitMq)
        .serializers("msgpack", "json")
        .env("DTASK_AMQP_URL", &rabbitmq.urls().join(","))
        .env("DTASK_REDIS_URL", &redis_nodes.join(","));
    run_cluster(&cluster, false, false).await;

    // It ran there, not on the machine's own services: the queue is a
    // quorum queue of the RabbitMQ cluster, and the Redis Cluster (fresh,
    // this test's) holds the saga states of the run's 22 tasks.
    let queues = rabbitmq.run(&["ctl", "1", "list_queues", "name", "type"]);
    let queue = format!("{}.file-processing", cluster.namespace);
    assert!(
        queues
            .lines()
            .any(|line| line.starts_with(&queue) && line.ends_with("quorum")),
        "the cluster has no quorum queue {queue}: {queues}"
    );
    let states: usize = (1..=3)
        .map(|node| {
            let node = node.to_string();
            let keys = redis.run(&["cli", &node, "--scan", "--pattern", "dtask:state:*"]);
            keys.lines().filter(|key| !key.is_empty()).count()
        })
        .sum();
    assert_eq!(states, 22, "the saga states in the Redis Cluster");
    cluster.remove_queue().await;
}
