//! Conformance checks for [`QueueDepths`] backends, with the queue's own
//! publisher and consumer.

use std::time::Duration;

use super::PATIENCE;
use super::queue::{ack, consume, message, next, publish, queue_name};
use crate::infra::{QueueConsumer, QueueDepth, QueueDepths, QueuePublisher};

/// Runs every check.
pub async fn run_all(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer, depths: &dyn QueueDepths) {
    an_unused_queue_is_empty(depths).await;
    depths_follow_publishes_and_settlements(publisher, consumer, depths).await;
}

/// Waits until `queue`'s depth satisfies `wanted` (a broker may count
/// asynchronously), failing with `what` and the last depth after
/// [`PATIENCE`].
async fn eventually(depths: &dyn QueueDepths, queue: &str, what: &str, wanted: impl Fn(QueueDepth) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let depth = depths
            .depth(queue)
            .await
            .unwrap_or_else(|e| panic!("{what}: depth failed: {e}"));
        if wanted(depth) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: the depth is {depth:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A queue never used holds nothing.
pub async fn an_unused_queue_is_empty(depths: &dyn QueueDepths) {
    let depth = depths.depth(&queue_name()).await.expect("the depth of an unused queue");
    assert_eq!(depth.waiting, 0, "an unused queue: {depth:?}");
    assert!(matches!(depth.in_flight, None | Some(0)), "an unused queue: {depth:?}");
}

/// Published messages wait; deliveries out and unsettled are in flight
/// (where the backend tells); settled ones are gone.
pub async fn depths_follow_publishes_and_settlements(
    publisher: &dyn QueuePublisher,
    consumer: &dyn QueueConsumer,
    depths: &dyn QueueDepths,
) {
    let queue = queue_name();
    for n in 0..3 {
        publish(publisher, &queue, &message(n)).await;
    }
    eventually(depths, &queue, "three published", |d| {
        d.waiting == 3 && matches!(d.in_flight, None | Some(0))
    })
    .await;
    let mut stream = consume(consumer, &queue).await;
    let first = next(&mut stream, "depth: first").await;
    let second = next(&mut stream, "depth: second").await;
    let third = next(&mut stream, "depth: third").await;
    eventually(depths, &queue, "three out for delivery", |d| {
        d.waiting == 0 && matches!(d.in_flight, None | Some(3))
    })
    .await;
    ack(first).await;
    ack(second).await;
    eventually(depths, &queue, "one out, two acked", |d| {
        d.waiting == 0 && matches!(d.in_flight, None | Some(1))
    })
    .await;
    ack(third).await;
    eventually(depths, &queue, "all acked", |d| {
        d.waiting == 0 && matches!(d.in_flight, None | Some(0))
    })
    .await;
}
