//! `Host::submit_many`: many tasks handed over together, each with
//! `submit`'s guarantees: a task whose state could not be saved is not
//! published, one whose publish failed is compensated, the others go on.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dtask::TaskHandle;
use dtask::infra::{Infrastructure, ProgressQuery, QueueMessage, QueuePublisher, SagaStateStore, StoredState};
use dtask::memory::{MemoryQueue, MemoryStateStore};
use dtask::prelude::*;
use support::{Journal, OrderRequest, PlaceOrder, assert_order_completed, shared_infrastructure};

const PATIENCE: Duration = Duration::from_secs(10);

fn order(item: &str) -> OrderRequest {
    OrderRequest {
        item: item.to_owned(),
        ..OrderRequest::default()
    }
}

fn items(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i}")).collect()
}

/// Submits one order per item with `submit_many`; one result per item.
async fn submit_orders(host: &Host, items: &[String]) -> Vec<dtask::Result<TaskHandle<PlaceOrder>>> {
    let orders = items.iter().map(|item| order(item));
    host.submit_many::<PlaceOrder>(orders)
        .await
        .expect("PlaceOrder is registered")
}

fn api(infra: &Infrastructure) -> Host {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(PlaceOrder::default())
        .run_workers(false)
        .build()
        .unwrap()
}

fn worker(infra: &Infrastructure, journal: &Journal) -> Host {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(PlaceOrder {
            journal: journal.clone(),
        })
        .build()
        .unwrap()
}

async fn completes(handle: &TaskHandle<PlaceOrder>, item: &str) {
    let outcome = tokio::time::timeout(PATIENCE, handle.wait())
        .await
        .expect("the task ends")
        .unwrap();
    assert_order_completed(&outcome.progress, outcome.response, item);
}

#[tokio::test]
async fn every_task_of_a_batch_completes_in_process() {
    let host = Host::builder().register(PlaceOrder::default()).build().unwrap();
    let items = items(40);
    let results = submit_orders(&host, &items).await;
    assert_eq!(results.len(), items.len());
    for (result, item) in results.iter().zip(&items) {
        completes(result.as_ref().expect("handed over"), item).await;
    }
}

#[tokio::test]
async fn a_batch_is_saved_and_shown_queued_before_a_worker_takes_it() {
    let infra = shared_infrastructure();
    let api = api(&infra);
    let items = items(5);
    let handles: Vec<TaskHandle<PlaceOrder>> = (submit_orders(&api, &items).await)
        .into_iter()
        .map(|result| result.expect("handed over"))
        .collect();
    for handle in &handles {
        let progress = handle.progress().await.unwrap();
        assert_eq!(progress.status, TaskStatus::Queued, "{progress:?}");
        let stored = infra.state.load(handle.id()).await.unwrap();
        assert!(stored.is_some(), "the state of {} is saved at hand-off", handle.id());
    }

    let journal = Journal::default();
    let _worker = worker(&infra, &journal);
    for (handle, item) in handles.iter().zip(&items) {
        completes(handle, item).await;
    }
    assert_eq!(journal.count("run Reserve"), items.len(), "each task ran once");
}

/// Refuses the `refused`-th publish (counting from 0).
#[derive(Debug, Clone)]
struct RefusingPublisher {
    inner: MemoryQueue,
    refused: usize,
    seen: Arc<AtomicUsize>,
}

#[async_trait]
impl QueuePublisher for RefusingPublisher {
    async fn publish(&self, queue: &str, message: QueueMessage) -> dtask::Result<()> {
        if self.seen.fetch_add(1, Ordering::SeqCst) == self.refused {
            return Err(dtask::Error::backend("broker", "refused"));
        }
        self.inner.publish(queue, message).await
    }
}

#[tokio::test]
async fn a_task_whose_publish_fails_is_compensated_and_the_others_go_on() {
    let queue = MemoryQueue::new();
    let mut infra = shared_infrastructure();
    infra.publisher = Arc::new(RefusingPublisher {
        inner: queue.clone(),
        refused: 1,
        seen: Arc::default(),
    });
    infra.consumer = Arc::new(queue.clone());
    let api = api(&infra);
    let items = items(3);
    let results = submit_orders(&api, &items).await;
    assert!(results[1].is_err(), "the refused publish is the second task's");

    let query = ProgressQuery {
        status: Some(TaskStatus::Compensated),
        ..ProgressQuery::default()
    };
    let compensated = infra.progress.list(&query).await.unwrap();
    assert_eq!(compensated.total, 1, "the task not handed over is compensated");
    assert!(
        (compensated.items[0].error.as_deref()).is_some_and(|e| e.contains("handing the task to the workers failed")),
        "{:?}",
        compensated.items[0].error
    );

    let journal = Journal::default();
    let _worker = worker(&infra, &journal);
    for index in [0, 2] {
        completes(results[index].as_ref().unwrap(), &items[index]).await;
    }
    assert_eq!(queue.len("orders"), 0, "nothing else was published");
    assert_eq!(journal.count("run Reserve"), 2);
}

/// Fails the save of one task, chosen by its position in the batch.
#[derive(Debug, Clone)]
struct FailingSave {
    inner: Arc<MemoryStateStore>,
    failed: usize,
}

#[async_trait]
impl SagaStateStore for FailingSave {
    async fn save(&self, task_id: TaskId, state: StoredState) -> dtask::Result<()> {
        self.inner.save(task_id, state).await
    }

    async fn save_many(&self, states: Vec<(TaskId, StoredState)>) -> Vec<dtask::Result<()>> {
        let mut results = Vec::new();
        for (index, (task_id, state)) in states.into_iter().enumerate() {
            results.push(if index == self.failed {
                Err(dtask::Error::backend("store", "down"))
            } else {
                self.inner.save(task_id, state).await
            });
        }
        results
    }

    async fn load(&self, task_id: TaskId) -> dtask::Result<Option<StoredState>> {
        self.inner.load(task_id).await
    }

    async fn delete(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.delete(task_id).await
    }
}

#[tokio::test]
async fn a_task_whose_state_cannot_be_saved_is_not_published() {
    let mut infra = shared_infrastructure();
    infra.state = Arc::new(FailingSave {
        inner: Arc::new(MemoryStateStore::new()),
        failed: 0,
    });
    let api = api(&infra);
    let items = items(3);
    let results = submit_orders(&api, &items).await;
    let error = results[0].as_ref().expect_err("its save failed");
    assert!(error.to_string().contains("down"), "{error}");

    let journal = Journal::default();
    let _worker = worker(&infra, &journal);
    for index in [1, 2] {
        completes(results[index].as_ref().unwrap(), &items[index]).await;
    }
    assert_eq!(
        journal.count("run Reserve"),
        2,
        "the unsaved task never reached a worker"
    );
}

/// The batch on the real Redis backends and Redis Streams, pipelined: an
/// API host and a worker host with connections of their own.
#[cfg(feature = "distributed")]
#[tokio::test]
async fn a_batch_on_redis_streams_completes() {
    use dtask::distributed::{DistributedOptions, QueueKind};
    let options = DistributedOptions::new(QueueKind::RedisStreams).namespace(format!("many-{}", TaskId::new()));
    let api_infra = options.connect(&[]).await.expect("the services the tests need");
    let worker_infra = options.connect(&[]).await.expect("the services the tests need");
    let api = api(&api_infra);
    let journal = Journal::default();
    let _worker = worker(&worker_infra, &journal);
    let items = items(200);
    let results = submit_orders(&api, &items).await;
    for (result, item) in results.iter().zip(&items) {
        completes(result.as_ref().expect("handed over"), item).await;
    }
    assert_eq!(journal.count("run Reserve"), items.len(), "each task ran once");
}
