//! Snapshots after every step, and resuming from one without re-running
//! completed steps.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dtask::event::{EventKind, StepRef, TaskEvent};
use dtask::infra::{QueueMessage, SagaStateStore, StoredState};
use dtask::memory::MemoryStateStore;
use dtask::prelude::*;
use dtask::testing::TestHost;
use dtask::{Codec, Format, SagaSnapshot};
use futures::StreamExt;
use support::{Journal, OrderRequest, PlaceOrder, Reservation, place_order};
use time::OffsetDateTime;

/// A state store that counts saves, around the in-memory one.
#[derive(Debug, Default, Clone)]
struct CountingStore {
    inner: Arc<MemoryStateStore>,
    saves: Arc<AtomicUsize>,
}

#[async_trait]
impl SagaStateStore for CountingStore {
    async fn save(&self, task_id: TaskId, state: StoredState) -> dtask::Result<()> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(task_id, state).await
    }

    async fn load(&self, task_id: TaskId) -> dtask::Result<Option<StoredState>> {
        self.inner.load(task_id).await
    }

    async fn delete(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.delete(task_id).await
    }

    async fn ended(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.ended(task_id).await
    }
}

#[tokio::test]
async fn the_state_is_saved_after_every_step() {
    let store = CountingStore::default();
    let saves = Arc::clone(&store.saves);
    let host = TestHost::with(|b| b.register(PlaceOrder::default()).state_store(store.clone()));
    let handle = host
        .submit::<PlaceOrder>(OrderRequest {
            item: "pen".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    // hand-off, three steps, completion
    assert_eq!(saves.load(Ordering::SeqCst), 5);
    let stored = store.load(handle.id()).await.unwrap().unwrap();
    let snapshot: SagaSnapshot<PlaceOrder> = stored.payload.decode().unwrap();
    assert_eq!(snapshot.progress.status, TaskStatus::Completed);
    assert_eq!(snapshot.data.ship.unwrap().tracking, "res-pen/pay-for-res-pen");
    assert!(stored.fence > 0, "the worker writes with its lock's fencing token");
}

/// The state a worker that died after Reserve left behind.
fn after_reserve(task_id: TaskId) -> SagaSnapshot<PlaceOrder> {
    let definition = <PlaceOrder as Task>::definition();
    let now = OffsetDateTime::now_utc();
    let mut progress = TaskProgress::new(task_id, definition, now);
    let reserve = StepRef {
        index: 0,
        name: "Reserve",
    };
    for kind in [
        EventKind::Submitted,
        EventKind::StepStarted {
            step: reserve,
            attempt: 1,
            worker: "worker-1:4242".to_owned(),
        },
        EventKind::StepCompleted {
            step: reserve,
            attempt: 1,
        },
    ] {
        progress.apply(&TaskEvent { task_id, at: now, kind });
    }
    SagaSnapshot {
        schema_version: dtask::SCHEMA_VERSION,
        request: Arc::new(OrderRequest {
            item: "resumed".into(),
            ..OrderRequest::default()
        }),
        data: place_order::Data {
            reserve: Some(Reservation {
                id: "res-from-snapshot".into(),
            }),
            ..place_order::Data::default()
        },
        progress,
        response: None,
        deadline: now + Duration::from_secs(30),
    }
}

/// Publishes `payload` as `task_id`'s worker message, as a redelivery
/// would, and follows the task's progress to its terminal snapshot.
async fn deliver_and_follow(host: &TestHost, task_id: TaskId, payload: dtask::Payload) -> TaskProgress {
    let infra = host.host().infrastructure();
    let mut stream = infra.progress.stream(task_id).await.unwrap();
    infra
        .publisher
        .publish("orders", QueueMessage::new(task_id, "PlaceOrder", payload))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(progress) = stream.next().await {
            if progress.is_terminal() {
                return progress;
            }
        }
        panic!("the stream of {task_id} ended without a terminal snapshot")
    })
    .await
    .expect("the tracker gets the terminal snapshot")
}

#[tokio::test]
async fn a_redelivered_task_resumes_after_its_last_completed_step() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let infra = host.host().infrastructure();
    let task_id = TaskId::new();
    let snapshot = after_reserve(task_id);
    infra.progress.init(&snapshot.progress).await.unwrap();
    let payload = Codec::new(Format::Json).encode(&snapshot).unwrap();
    deliver_and_follow(&host, task_id, payload).await;

    let outcome = host.host().outcome::<PlaceOrder>(task_id).await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(
        journal.entries(),
        ["run Charge", "run Ship"],
        "Reserve is not run again"
    );
    assert_eq!(outcome.response.unwrap().reservation, "res-from-snapshot");
    assert_eq!(outcome.progress.steps[0].attempts, 1);
}

#[tokio::test]
async fn a_duplicate_delivery_of_an_ended_task_runs_nothing() {
    let journal = Journal::default();
    let host = TestHost::with(|b| {
        b.register(PlaceOrder {
            journal: journal.clone(),
        })
        .worker_concurrency(1)
    });
    let first = host
        .submit::<PlaceOrder>(OrderRequest {
            item: "one".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    first.wait().await.unwrap();
    let infra = host.host().infrastructure();
    let stored = infra.state.load(first.id()).await.unwrap().unwrap();
    infra
        .publisher
        .publish("orders", QueueMessage::new(first.id(), "PlaceOrder", stored.payload))
        .await
        .unwrap();
    // With one worker slot the duplicate is settled before the next task runs.
    let second = host
        .submit::<PlaceOrder>(OrderRequest {
            item: "two".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    second.wait().await.unwrap();
    assert_eq!(journal.count("run Reserve"), 2, "the duplicate ran no step");
}

/// A worker that resumes a task after its deadline (the previous worker
/// died, the task waited in the queue) does not run the remaining steps:
/// the deadline travels in the snapshot, so the task times out across
/// processes and compensates what completed.
#[tokio::test]
async fn a_task_resumed_past_its_deadline_times_out_and_compensates() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let infra = host.host().infrastructure();
    let task_id = TaskId::new();
    let mut snapshot = after_reserve(task_id);
    snapshot.deadline = OffsetDateTime::now_utc() - Duration::from_secs(1);
    infra.progress.init(&snapshot.progress).await.unwrap();
    let payload = Codec::new(Format::MessagePack).encode_state(&snapshot).unwrap();
    let last = deliver_and_follow(&host, task_id, payload).await;
    assert_eq!(last.status, TaskStatus::Compensated, "{:?}", last.error);
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out") || e.contains("timeout")),
        "{:?}",
        last.error
    );
    assert_eq!(journal.entries(), ["undo Reserve"], "no step runs past the deadline");
}

/// A worker killed between saving a task's final state and writing its
/// final progress leaves the tracker showing it running. The redelivered
/// message finds the terminal state, and the worker writes the terminal
/// progress before acking: the task does not look live forever.
#[tokio::test]
async fn a_redelivery_after_the_final_save_writes_the_terminal_progress() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let infra = host.host().infrastructure();
    let task_id = TaskId::new();
    let handed_off = after_reserve(task_id);
    infra.progress.init(&handed_off.progress).await.unwrap();
    let mut ended = handed_off.clone();
    ended.progress.apply(&TaskEvent {
        task_id,
        at: OffsetDateTime::now_utc(),
        kind: EventKind::Completed,
    });
    assert!(ended.progress.is_terminal());
    let stored = Codec::new(Format::Json).encode_state(&ended).unwrap();
    infra
        .state
        .save(
            task_id,
            StoredState {
                fence: 0,
                payload: stored,
            },
        )
        .await
        .unwrap();
    let payload = Codec::new(Format::Json).encode_state(&handed_off).unwrap();
    let last = deliver_and_follow(&host, task_id, payload).await;
    assert_eq!(last.status, TaskStatus::Completed);
    assert!(
        journal.entries().is_empty(),
        "no step runs again: {:?}",
        journal.entries()
    );
}
