//! A three-node RabbitMQ cluster on loopback (`scripts/rabbitmq-cluster`,
//! started and stopped by this test): the task queue is a quorum queue
//! replicated on all three nodes, the API and the worker are given every
//! node's URL, and the node both are connected to (which also leads the
//! queue) is killed with SIGKILL while tasks are in the middle of a step.
//! Every task still completes, and no step of any task runs twice.
//!
//! Needs RabbitMQ installed (the cluster's nodes run beside the machine's
//! own) and Redis on 127.0.0.1:6379 for state, progress and locks. Starting
//! the cluster takes about 12 s here.

#![cfg(feature = "distributed")]

#[path = "support/clusters.rs"]
mod clusters;

use std::time::Duration;

use clusters::{Floor, ScriptedCluster, parcels};
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::infra::NamespacedQueue;
use dtask::prelude::*;

/// How long the test waits for what should happen.
const PATIENCE: Duration = Duration::from_secs(120);
/// Tasks submitted before the kill, and after it.
const BEFORE: usize = 40;
const AFTER: usize = 20;
/// How many tasks are held inside `Pack` when the node is killed.
const HELD: usize = 8;

/// The quorum queue's (leader, members), as node `asking` reports them.
fn queue_members(cluster: &ScriptedCluster, asking: u8, queue: &str) -> (String, String) {
    let listing = cluster.run(&["ctl", &asking.to_string(), "list_queues", "name", "leader", "members"]);
    listing
        .lines()
        .find_map(|line| {
            let mut columns = line.splitn(3, '\t');
            (columns.next() == Some(queue)).then(|| {
                let leader = columns.next().unwrap_or_default().to_owned();
                (leader, columns.next().unwrap_or_default().to_owned())
            })
        })
        .unwrap_or_else(|| panic!("no queue {queue} in {listing}"))
}

// --------------------------------------------------------------- the test

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", TaskId::new().to_string().replace('-', ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_task_and_runs_no_step_twice() {
    // The reconnections' warnings show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dtask=info,dtask_core=info,dtask_amqp=info")
        .with_test_writer()
        .try_init();
    let cluster = ScriptedCluster::start("rabbitmq-cluster").await;
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3, "{urls:?}");
    let namespace = unique("cluster");
    let queue_name = format!("{namespace}.parcels");

    let redis = RedisConfig::new("redis://127.0.0.1:6379")
        .with_key_prefix(format!("{}:", unique("dtask-cluster")))
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379 (the test keeps state, progress and locks there)");
    // Node 1 first in both lists: both connect to it, and the queue,
    // declared through it, is led from it.
    let amqp = |name: &str| {
        AmqpConfig::cluster(urls.clone())
            .expect("three URLs")
            .with_connection_name(name)
            .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
    };
    let api_queue = AmqpQueue::connect(amqp("cluster-api")).await.expect("the API connects");
    let worker_queue = AmqpQueue::connect(amqp("cluster-worker"))
        .await
        .expect("the worker connects");
    let infrastructure =
        |queue: &AmqpQueue| clusters::infrastructure(&redis, NamespacedQueue::new(&namespace, queue.clone()));

    let (floor, open) = Floor::closed();
    let api = clusters::api(infrastructure(&api_queue), &floor);
    let worker = clusters::worker(infrastructure(&worker_queue), &floor, Duration::from_secs(5))
        .build()
        .unwrap();

    let mut handles = clusters::submit(&api, parcels(0, BEFORE), PATIENCE).await;
    // Tasks are inside Pack, their Pick saved, their messages unacked.
    tokio::time::timeout(PATIENCE, floor.until_arrived(HELD))
        .await
        .expect("tasks reach Pack");
    let (leader, members) = queue_members(&cluster, 2, &queue_name);
    assert_eq!(leader, "dtask-cluster-1@localhost", "the queue is led from node 1");
    for node in 1..=3 {
        assert!(
            members.contains(&format!("dtask-cluster-{node}@localhost")),
            "the queue is replicated on node {node}: {members}"
        );
    }

    cluster.kill(1).await;
    // Submitted through the surviving nodes: the API reconnects to node 2.
    handles.extend(clusters::submit(&api, parcels(BEFORE, BEFORE + AFTER), PATIENCE).await);
    open.send_replace(true);

    clusters::all_delivered(&handles, PATIENCE).await;
    for parcel in parcels(0, BEFORE + AFTER) {
        for step in ["pick", "pack", "post"] {
            let runs = floor.runs(step, &parcel.label);
            assert_eq!(runs, 1, "{step} of {} ran {runs} times", parcel.label);
        }
    }

    worker.shutdown().await;
    api.shutdown().await;
    // Every connection closed before the nodes stop.
    drop((worker, api, api_queue, worker_queue));
    drop(cluster);
}
