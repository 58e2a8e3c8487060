//! The dtask conformance suites, unchanged, against the Redis backends on
//! the local server (database 0, a fresh key prefix per test, deleted
//! afterwards).

mod support;

use std::time::Duration;

use dtask_core::conformance;
use dtask_core::infra::{SagaStateStore, StoredState};
use dtask_core::{Codec, Error, Payload, TaskId};

use support::{config, connect, delete_prefix, unique_prefix, url};

#[tokio::test]
async fn progress_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    conformance::progress::run_all(&backends.progress()).await;
    conformance::progress::run_feed(&backends.progress(), &backends.progress()).await;
    backends.progress().ping().await.expect("ping");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn lock_conformance_on_one_instance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    let lock = backends.lock();
    assert_eq!((lock.instances(), lock.quorum()), (1, 1));
    conformance::lock::run_all(&lock).await;
    lock.ping().await.expect("ping");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn lock_conformance_on_a_quorum_of_three() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix).with_lock_urls([url(1), url(2), url(3)])).await;
    let lock = backends.lock();
    assert_eq!((lock.instances(), lock.quorum()), (3, 2));
    conformance::lock::run_all(&lock).await;
    lock.ping().await.expect("ping");
    for db in 1..=3 {
        delete_prefix(db, &prefix).await;
    }
}

#[tokio::test]
async fn state_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    conformance::state::run_all(&backends.state()).await;
    backends.state().ping().await.expect("ping");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn settlement_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    support::settlement_suite(&backends).await;
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn lock_with_state_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    let take = backends
        .lock_with_state()
        .expect("one server keeps the locks and the states");
    let (lock, state) = (backends.lock(), backends.state());
    conformance::lock_with_state::run_all(conformance::lock_with_state::Joined {
        take: &take,
        lock: &lock,
        state: &state,
    })
    .await;
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn no_lock_with_state_when_the_lock_is_a_quorum_of_other_servers() {
    let backends = connect(&config(&unique_prefix()).with_lock_urls([url(1), url(2), url(3)])).await;
    assert!(backends.lock_with_state().is_none());
}

#[tokio::test]
async fn worker_registry_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    conformance::workers::run_all(&backends.workers()).await;
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn idempotency_conformance() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    conformance::idempotency::run_all(&backends.idempotency()).await;
    backends.idempotency().ping().await.expect("ping");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn an_in_memory_payload_is_unsupported() {
    let backends = connect(&config(&unique_prefix())).await;
    let state = StoredState {
        fence: 1,
        payload: Payload::in_memory(42u32),
    };
    let saved = backends.state().save(TaskId::new(), state).await;
    assert!(matches!(saved, Err(Error::Unsupported(_))), "{saved:?}");
}

#[tokio::test]
async fn state_expires_when_configured() {
    let config = config(&unique_prefix()).with_state_expiry(Some(Duration::from_millis(200)));
    let store = connect(&config).await.state();
    let task_id = TaskId::new();
    let payload = Codec::default().encode(&"snapshot").unwrap();
    store.save(task_id, StoredState { fence: 3, payload }).await.unwrap();
    assert!(store.load(task_id).await.unwrap().is_some());
    let deadline = tokio::time::Instant::now() + conformance::PATIENCE;
    while store.load(task_id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the snapshot did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_largest_fence_is_compared_exactly() {
    let prefix = unique_prefix();
    let store = connect(&config(&prefix)).await.state();
    let task_id = TaskId::new();
    let state = |fence| StoredState {
        fence,
        payload: Codec::default().encode(&fence).unwrap(),
    };
    store.save(task_id, state(u64::MAX)).await.unwrap();
    let fenced = store.save(task_id, state(u64::MAX - 1)).await;
    assert!(
        matches!(fenced, Err(Error::Fenced { presented, current }) if presented == u64::MAX - 1 && current == u64::MAX),
        "{fenced:?}"
    );
    assert_eq!(store.load(task_id).await.unwrap().unwrap().fence, u64::MAX);
    delete_prefix(0, &prefix).await;
}
