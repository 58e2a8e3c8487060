//! The queue and dead-letter conformance suites, unchanged, against the
//! local Redis; `back_pressure` with a bounded backlog.

mod support;

use std::sync::Arc;

use dtask_core::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes() {
    let (config, keys) = support::config();
    let queue = support::connect(config).await;
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
    drop(keys);
}

#[tokio::test]
async fn conformance_suite_passes_with_a_prefetch_of_one() {
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_read_count(1)).await;
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
}

#[tokio::test]
async fn depth_conformance_suite_passes() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    conformance::depths::run_all(&queue, &queue, &queue).await;
}

#[tokio::test]
async fn dead_letter_conformance_suite_passes() {
    let (config, _keys) = support::config();
    let queue = Arc::new(support::connect(config).await);
    conformance::dead_letters::run_all(queue.clone(), queue.clone(), queue).await;
}

#[tokio::test]
async fn a_publish_to_a_full_queue_waits_for_room() {
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_max_backlog(4)).await;
    conformance::queue::back_pressure(Arc::new(queue.clone()), Arc::new(queue), 4).await;
}
