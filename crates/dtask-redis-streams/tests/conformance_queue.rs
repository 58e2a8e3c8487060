//! The queue conformance suite, unchanged, against the local Redis.
//!
//! `back_pressure` is not run: Redis Streams are capped (`XADD MAXLEN ~`),
//! not bounded, so a publish never waits for room.

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
