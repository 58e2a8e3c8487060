//! The dtask conformance suites, unchanged, against the PostgreSQL backends
//! on the local server. Every check names its own queue, task, key or
//! resource, so the tests share one database.

mod support;

use std::sync::Arc;

use dtask_core::conformance;
use dtask_core::infra::{SagaStateStore, StoredState};
use dtask_core::{Error, Payload, TaskId};

use support::{config, connect};

#[tokio::test]
async fn state_conformance() {
    let backends = connect(&config()).await;
    conformance::state::run_all(&backends.state()).await;
    backends.state().ping().await.expect("ping");
}

#[tokio::test]
async fn worker_registry_conformance() {
    let backends = connect(&config()).await;
    conformance::workers::run_all(&backends.workers()).await;
}

#[tokio::test]
async fn idempotency_conformance() {
    let backends = connect(&config()).await;
    conformance::idempotency::run_all(&backends.idempotency()).await;
}

#[tokio::test]
async fn lock_conformance() {
    let backends = connect(&config()).await;
    conformance::lock::run_all(&backends.lock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_conformance() {
    let queue = connect(&config()).await.queue();
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_conformance_with_a_prefetch_of_eight() {
    let queue = connect(&config()).await.queue().with_prefetch(8);
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_conformance() {
    let queue = connect(&config()).await.queue();
    conformance::depths::run_all(&queue, &queue, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_conformance() {
    let queue = Arc::new(connect(&config()).await.queue());
    conformance::dead_letters::run_all(queue.clone(), queue.clone(), queue).await;
}

#[tokio::test]
async fn an_in_memory_payload_is_unsupported() {
    let backends = connect(&config()).await;
    let state = StoredState {
        fence: 1,
        payload: Payload::in_memory(42u32),
    };
    let saved = backends.state().save(TaskId::new(), state).await;
    assert!(matches!(saved, Err(Error::Unsupported(_))), "{saved:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let config = dtask_postgres::PostgresConfig::new("postgres://dtask:hunter2@127.0.0.1:1/dtask")
        .with_connect_timeout(std::time::Duration::from_secs(1));
    let error = config
        .connect()
        .await
        .expect_err("nothing listens on port 1")
        .to_string();
    assert!(error.contains("cannot reach PostgreSQL at"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_conformance() {
    let backends = connect(&config()).await;
    conformance::progress::run_all(&backends.progress()).await;
}

#[tokio::test]
async fn history_conformance() {
    let backends = connect(&config()).await;
    conformance::history::run_all(&backends.history()).await;
}
