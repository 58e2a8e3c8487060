//! Everything on a three-master Redis Cluster on loopback
//! (`scripts/redis-cluster`, started and stopped by this test): the queue
//! (Redis Streams), the tasks' state, progress and locks. While tasks are
//! in the middle of a step, the master holding the queue's stream is
//! killed with SIGKILL and restarted (its append-only file keeps all it
//! acknowledged). Every task still completes with its full response, and
//! no step whose end was saved before the kill runs again.
//!
//! Needs Redis installed (the cluster's nodes run beside the machine's
//! own). Starting the cluster takes about 2 s.

#![cfg(feature = "distributed")]

#[path = "support/clusters.rs"]
mod clusters;

use std::sync::Arc;
use std::time::Duration;

use clusters::{Floor, ScriptedCluster, parcels};
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::distributed::dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask::infra::{Infrastructure, NamespacedQueue};
use dtask::prelude::*;

/// How long the test waits for what should happen.
const PATIENCE: Duration = Duration::from_secs(120);
/// Tasks submitted.
const TASKS: usize = 30;
/// How many tasks are held inside `Pack` when the master is killed.
const HELD: usize = 8;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", TaskId::new().to_string().replace('-', ""))
}

/// The master serving `key`'s slot, from 1 to 3.
fn master_of(cluster: &ScriptedCluster, key: &str) -> u8 {
    let slot: u16 = cluster
        .run(&["cli", "1", "cluster", "keyslot", key])
        .trim()
        .parse()
        .expect("a slot number");
    // `redis-cli --cluster create` gives the three masters equal ranges.
    match slot {
        0..=5460 => 1,
        5461..=10922 => 2,
        _ => 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_master_loses_no_task() {
    // The reconnections' warnings show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dtask=info,dtask_core=info,dtask_redis=info")
        .with_test_writer()
        .try_init();
    let cluster = ScriptedCluster::start("redis-cluster").await;
    let nodes: Vec<String> = (cluster.urls().iter())
        .map(|url| url.replacen("redis://", "redis+cluster://", 1))
        .collect();
    let prefix = format!("{}:", unique("dtask-redis-cluster"));
    let redis = RedisConfig::cluster(nodes.iter().cloned())
        .expect("three nodes")
        .with_key_prefix(&prefix)
        .connect()
        .await
        .expect("the cluster answers");
    let streams_config = RedisStreamsConfig::new(nodes[0].clone()).with_key_prefix(format!("{prefix}queue:"));
    let streams = RedisStreamsQueue::connect(streams_config.clone())
        .await
        .expect("the cluster answers");
    let namespace = unique("redis-cluster");
    let queue_name = format!("{namespace}.parcels");
    let queue = NamespacedQueue::new(&namespace, streams.clone());
    let infrastructure = Infrastructure {
        cancellations: Some(Arc::new(redis.progress())),
        ..clusters::infrastructure(&redis, queue)
    };

    let (floor, open) = Floor::closed();
    let api = clusters::api(infrastructure.clone(), &floor);
    let worker = clusters::worker(infrastructure, &floor, Duration::from_secs(10))
        // Every running task is held in Pack when the master is killed.
        .worker_concurrency(HELD)
        .build()
        .unwrap();

    let handles = clusters::submit(&api, parcels(0, TASKS), PATIENCE).await;
    tokio::time::timeout(PATIENCE, floor.until_arrived(HELD))
        .await
        .expect("tasks reach Pack");
    // The master holding the queue's stream, with the entries out for
    // delivery (and some tasks' keys).
    let victim = master_of(&cluster, &streams_config.stream_key(&queue_name));
    cluster.kill(victim).await;
    cluster.run_blocking(&["start"]).await;
    open.send_replace(true);

    clusters::all_delivered(&handles, PATIENCE).await;
    for parcel in parcels(0, TASKS) {
        // Pick's end was saved before the kill (the worker runs HELD tasks
        // at a time, all held in Pack then); it never runs again.
        let picks = floor.runs("pick", &parcel.label);
        assert_eq!(picks, 1, "pick of {} ran {picks} times", parcel.label);
    }
    let again: Vec<String> = (parcels(0, TASKS).into_iter())
        .filter(|parcel| floor.runs("pack", &parcel.label) > 1)
        .map(|parcel| parcel.label)
        .collect();
    println!("tasks whose held Pack ran again after the restart: {again:?}");

    worker.shutdown().await;
    api.shutdown().await;
    streams.delete_queue(&queue_name).await.expect("delete the queue");
    // Every connection closed before the nodes stop.
    drop((worker, api, redis, streams));
    drop(cluster);
}
