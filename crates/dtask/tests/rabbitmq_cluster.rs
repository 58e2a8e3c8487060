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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::infra::{Infrastructure, NamespacedQueue};
use dtask::memory::MemoryObjectStore;
use dtask::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// How long the test waits for what should happen.
const PATIENCE: Duration = Duration::from_secs(120);
/// Tasks submitted before the kill, and after it.
const BEFORE: usize = 40;
const AFTER: usize = 20;
/// How many tasks are held inside `Pack` when the node is killed.
const HELD: usize = 8;

// ------------------------------------------------------------- the cluster

/// The cluster, stopped (and its data deleted) on drop.
struct Cluster;

impl Cluster {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rabbitmq-cluster")
    }

    /// Runs the script; its output, or why it failed.
    fn try_run(args: &[&str]) -> Result<String, String> {
        let output = Command::new(Self::script())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run scripts/rabbitmq-cluster {args:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("scripts/rabbitmq-cluster {args:?} failed: {stdout}{stderr}"))
    }

    fn run(args: &[&str]) -> String {
        Self::try_run(args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts the three nodes; a failure to start fails the test (the
    /// script needs RabbitMQ installed, nothing else). The guard exists
    /// first, so that a failed start is stopped too.
    async fn start() -> Self {
        let cluster = Self;
        tokio::task::spawn_blocking(|| Self::run(&["start"]))
            .await
            .expect("the cluster starts");
        cluster
    }

    fn urls() -> Vec<String> {
        Self::run(&["urls"]).trim().split(',').map(str::to_owned).collect()
    }

    async fn kill(node: u8) {
        tokio::task::spawn_blocking(move || Self::run(&["kill", &node.to_string()]))
            .await
            .expect("the node is killed");
    }

    /// The quorum queue's (leader, members), as node `asking` reports them.
    fn queue(asking: u8, queue: &str) -> (String, String) {
        let listing = Self::run(&["ctl", &asking.to_string(), "list_queues", "name", "leader", "members"]);
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
}

impl Drop for Cluster {
    /// Stops the nodes; a failure is printed, not raised (a panic while a
    /// failing test unwinds would hide its own message).
    fn drop(&mut self) {
        if let Err(error) = Self::try_run(&["stop"]) {
            eprintln!("{error}");
        }
    }
}

// ---------------------------------------------------------------- the task

/// The request: which parcel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Parcel {
    label: String,
}

/// A step's output: the steps that touched the parcel so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamp {
    by: String,
}

/// The response: every step's stamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    stamps: Vec<String>,
}

/// Counts the runs of each step of each parcel, and holds `Pack` closed
/// until the test opens it.
#[derive(Debug, Clone)]
struct Floor {
    runs: Arc<Mutex<BTreeMap<String, usize>>>,
    arrived: Arc<AtomicUsize>,
    arrival: Arc<Notify>,
    open: watch::Receiver<bool>,
}

impl Floor {
    fn ran(&self, step: &str, parcel: &Parcel) {
        let key = format!("{step} {}", parcel.label);
        *self.runs.lock().unwrap().entry(key).or_default() += 1;
    }

    async fn until_arrived(&self, at_least: usize) {
        loop {
            let notified = self.arrival.notified();
            if self.arrived.load(Ordering::SeqCst) >= at_least {
                return;
            }
            notified.await;
        }
    }
}

/// Pick → Pack → Post: three steps, three saves.
#[dtask::task(
    name = "ShipParcel",
    request = Parcel,
    response = Receipt,
    queue = "parcels",
    max_retries = 0,
    timeout_secs = 300,
    mode = InProcess
)]
#[custom_step(Pick, order = 1, output = Stamp)]
#[custom_step(Pack, order = 2, inputs(pick), output = Stamp)]
#[custom_step(Post, order = 3, inputs(pack), output = Stamp)]
#[derive(Debug, Clone)]
struct ShipParcel {
    floor: Floor,
}

impl ship_parcel::Steps for ShipParcel {
    async fn pick(&self, _cx: &StepContext, input: ship_parcel::PickInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("pick", input.request);
        Ok(Stamp { by: "pick".into() })
    }

    async fn pack(&self, _cx: &StepContext, input: ship_parcel::PackInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("pack", input.request);
        self.floor.arrived.fetch_add(1, Ordering::SeqCst);
        self.floor.arrival.notify_waiters();
        let mut open = self.floor.open.clone();
        open.wait_for(|open| *open)
            .await
            .map_err(|_| StepError::permanent("the test ended"))?;
        Ok(Stamp {
            by: format!("{}+pack", input.pick.by),
        })
    }

    async fn post(&self, _cx: &StepContext, input: ship_parcel::PostInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("post", input.request);
        Ok(Stamp {
            by: format!("{}+post", input.pack.by),
        })
    }

    fn response(&self, outputs: ship_parcel::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt {
            stamps: vec![
                outputs.pick.by.clone(),
                outputs.pack.by.clone(),
                outputs.post.by.clone(),
            ],
        })
    }
}

// --------------------------------------------------------------- the test

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", TaskId::new().to_string().replace('-', ""))
}

fn parcels(from: usize, to: usize) -> Vec<Parcel> {
    (from..to)
        .map(|i| Parcel {
            label: format!("parcel-{i}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_task_and_runs_no_step_twice() {
    // The reconnections' warnings show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dtask=info,dtask_core=info,dtask_amqp=info")
        .with_test_writer()
        .try_init();
    let cluster = Cluster::start().await;
    let urls = Cluster::urls();
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
    let infrastructure = |queue: &AmqpQueue| {
        let queue = NamespacedQueue::new(&namespace, queue.clone());
        Infrastructure {
            storage: Arc::new(MemoryObjectStore::new()),
            publisher: Arc::new(queue.clone()),
            consumer: Arc::new(queue.clone()),
            lock: Arc::new(redis.lock()),
            progress: Arc::new(redis.progress()),
            state: Arc::new(redis.state()),
            idempotency: Arc::new(redis.idempotency()),
            dead_letters: Some(Arc::new(queue)),
            workers: None,
            depths: None,
            cancellations: None,
        }
    };

    let (open, opened) = watch::channel(false);
    let floor = Floor {
        runs: Arc::default(),
        arrived: Arc::default(),
        arrival: Arc::default(),
        open: opened,
    };
    let api = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infrastructure(&api_queue))
        .register(ShipParcel { floor: floor.clone() })
        .run_workers(false)
        .build()
        .unwrap();
    let worker = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infrastructure(&worker_queue))
        .register(ShipParcel { floor: floor.clone() })
        .lock_ttl(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut handles = Vec::new();
    for submitted in api.submit_many::<ShipParcel>(parcels(0, BEFORE)).await.unwrap() {
        handles.push(submitted.expect("submitted before the kill"));
    }
    // Tasks are inside Pack, their Pick saved, their messages unacked.
    tokio::time::timeout(PATIENCE, floor.until_arrived(HELD))
        .await
        .expect("tasks reach Pack");
    let (leader, members) = Cluster::queue(2, &queue_name);
    assert_eq!(leader, "dtask-cluster-1@localhost", "the queue is led from node 1");
    for node in 1..=3 {
        assert!(
            members.contains(&format!("dtask-cluster-{node}@localhost")),
            "the queue is replicated on node {node}: {members}"
        );
    }

    Cluster::kill(1).await;
    // Submitted through the surviving nodes: the API reconnects to node 2.
    let after = tokio::time::timeout(PATIENCE, api.submit_many::<ShipParcel>(parcels(BEFORE, BEFORE + AFTER)))
        .await
        .expect("submitting after the kill ends")
        .unwrap();
    for submitted in after {
        handles.push(submitted.expect("submitted after the kill"));
    }
    open.send_replace(true);

    for handle in &handles {
        let outcome = tokio::time::timeout(PATIENCE, handle.wait())
            .await
            .unwrap_or_else(|_| panic!("task {} ends", handle.id()))
            .expect("its outcome");
        assert_eq!(outcome.progress.status, TaskStatus::Completed, "{:?}", outcome.progress);
        let receipt = outcome.response.expect("a completed task's response");
        assert_eq!(receipt.stamps, ["pick", "pick+pack", "pick+pack+post"]);
    }
    let runs = floor.runs.lock().unwrap().clone();
    for parcel in parcels(0, BEFORE + AFTER) {
        for step in ["pick", "pack", "post"] {
            let key = format!("{step} {}", parcel.label);
            assert_eq!(runs.get(&key), Some(&1), "{key} ran {:?} times", runs.get(&key));
        }
    }

    worker.shutdown().await;
    api.shutdown().await;
    // Every connection closed before the nodes stop.
    drop((worker, api, api_queue, worker_queue));
    drop(cluster);
}
