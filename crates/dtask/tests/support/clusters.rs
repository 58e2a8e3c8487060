//! What the cluster tests of this crate share: a three-step task whose
//! middle step the test holds closed, counting every step's runs (the
//! cluster itself is `scripted.rs`'s).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use dtask::TaskHandle;
use dtask::distributed::dtask_redis::RedisBackends;
use dtask::host::HostBuilder;
use dtask::infra::{DeadLetters, Infrastructure, NamespacedQueue, QueueConsumer, QueuePublisher};
use dtask::memory::MemoryObjectStore;
use dtask::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

#[path = "scripted.rs"]
mod scripted;
pub use scripted::ScriptedCluster;

/// The services of a cluster test: `queue` (namespaced), everything else
/// on `redis` (with its two scripts that join a task's keys, where it
/// offers them), files in memory; no cancellation feed.
pub fn infrastructure<Q>(redis: &RedisBackends, queue: NamespacedQueue<Q>) -> Infrastructure
where
    Q: QueuePublisher + QueueConsumer + DeadLetters + Clone,
{
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
        settlement: Some(Arc::new(redis.settlement())),
        lock_with_state: redis.lock_with_state().map(|take| Arc::new(take) as _),
    }
}

/// An API host (it runs no worker) on `infrastructure`.
pub fn api(infrastructure: Infrastructure, floor: &Floor) -> Host {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infrastructure)
        .register(ShipParcel { floor: floor.clone() })
        .run_workers(false)
        .build()
        .unwrap()
}

/// A worker host on `infrastructure`, its locks lasting `lock_ttl`, ready
/// for more settings.
pub fn worker(infrastructure: Infrastructure, floor: &Floor, lock_ttl: Duration) -> HostBuilder {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infrastructure)
        .register(ShipParcel { floor: floor.clone() })
        .lock_ttl(lock_ttl)
}

/// Submits one task per parcel of `parcels` (`submit_many`), within
/// `patience`; every one must be accepted.
pub async fn submit(api: &Host, parcels: Vec<Parcel>, patience: Duration) -> Vec<TaskHandle<ShipParcel>> {
    let submitted = tokio::time::timeout(patience, api.submit_many::<ShipParcel>(parcels))
        .await
        .expect("submitting ends")
        .expect("ShipParcel is registered");
    submitted.into_iter().map(|task| task.expect("submitted")).collect()
}

/// Waits (`patience` each) for every task of `handles` to complete with
/// the full receipt.
pub async fn all_delivered(handles: &[TaskHandle<ShipParcel>], patience: Duration) {
    for handle in handles {
        let outcome = tokio::time::timeout(patience, handle.wait())
            .await
            .unwrap_or_else(|_| panic!("task {} ends", handle.id()))
            .expect("its outcome");
        assert_eq!(outcome.progress.status, TaskStatus::Completed, "{:?}", outcome.progress);
        let receipt = outcome.response.expect("a completed task's response");
        assert_eq!(receipt.stamps, ["pick", "pick+pack", "pick+pack+post"]);
    }
}

/// Parcels `from..to`.
pub fn parcels(from: usize, to: usize) -> Vec<Parcel> {
    (from..to)
        .map(|i| Parcel {
            label: format!("parcel-{i}"),
        })
        .collect()
}

/// The request: which parcel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Parcel {
    pub label: String,
}

/// A step's output: the steps that touched the parcel so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    pub by: String,
}

/// The response: every step's stamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub stamps: Vec<String>,
}

/// Counts the runs of each step of each parcel, and holds `Pack` closed
/// until the test opens it.
#[derive(Debug, Clone)]
pub struct Floor {
    runs: Arc<Mutex<BTreeMap<String, usize>>>,
    arrived: Arc<AtomicUsize>,
    arrival: Arc<Notify>,
    open: watch::Receiver<bool>,
}

impl Floor {
    /// A floor with `Pack` closed, and the sender that opens it.
    pub fn closed() -> (Self, watch::Sender<bool>) {
        let (open, opened) = watch::channel(false);
        let floor = Self {
            runs: Arc::default(),
            arrived: Arc::default(),
            arrival: Arc::default(),
            open: opened,
        };
        (floor, open)
    }

    /// How many times `step` ran for the parcel `label`.
    pub fn runs(&self, step: &str, label: &str) -> usize {
        let runs = self.runs.lock().unwrap();
        runs.get(&format!("{step} {label}")).copied().unwrap_or(0)
    }

    fn ran(&self, step: &str, parcel: &Parcel) {
        let key = format!("{step} {}", parcel.label);
        *self.runs.lock().unwrap().entry(key).or_default() += 1;
    }

    /// Returns once `at_least` runs of `Pack` have started.
    pub async fn until_arrived(&self, at_least: usize) {
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
pub struct ShipParcel {
    pub floor: Floor,
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
