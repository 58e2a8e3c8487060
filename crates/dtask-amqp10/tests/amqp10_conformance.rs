//! The queue and dead-letter conformance suites of dtask-core, unchanged,
//! against RabbitMQ's AMQP 1.0 endpoint.
//!
//! `back_pressure` is not run (it is not part of `run_all`): RabbitMQ
//! queues are unbounded, so a publish never waits for room.

mod support;

use std::sync::Arc;

use dtask_core::conformance;
use support::RecordingQueue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp10_queue_passes_the_queue_conformance_suite() {
    let queue = RecordingQueue::new(support::connect().await);
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue.clone())).await;
    let deleted = queue.delete_all().await;
    assert!(deleted >= 10, "the suite used {deleted} queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp10_queue_passes_the_dead_letter_conformance_suite() {
    let queue = RecordingQueue::new(support::connect().await);
    let shared = Arc::new(queue.clone());
    conformance::dead_letters::run_all(shared.clone(), shared.clone(), shared).await;
    let deleted = queue.delete_all().await;
    assert!(deleted >= 2, "the suite used {deleted} queues");
}
