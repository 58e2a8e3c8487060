//! Settling deliveries: acks, nacks and drops, and what the stream keeps.

mod support;

use dtask_core::infra::{QueueConsumer, QueuePublisher};
use futures::StreamExt;
use support::{message, next, number};

#[tokio::test]
async fn a_delivery_outliving_its_stream_is_still_redelivered() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    queue.publish("jobs", message(7)).await.unwrap();
    let mut stream = queue.consume("jobs").await.unwrap();
    let delivery = next(&mut stream, "first").await;
    drop(stream);
    drop(delivery);

    let mut stream = queue.consume("jobs").await.unwrap();
    let again = next(&mut stream, "redelivery").await;
    assert_eq!((number(&again), again.delivery_count()), (7, 2));
    again.ack().await.unwrap();
}

#[tokio::test]
async fn concurrent_acks_share_round_trips_and_are_counted() {
    const N: u64 = 200;
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    for n in 0..N {
        queue.publish("jobs", message(n)).await.unwrap();
    }
    let before = queue.stats();
    let stream = queue.consume("jobs").await.unwrap();
    let deliveries: Vec<_> = stream.take(N as usize).map(Result::unwrap).collect().await;
    futures::future::try_join_all(deliveries.into_iter().map(|d| d.ack()))
        .await
        .unwrap();
    let stats = queue.stats();
    assert_eq!(stats.published, N);
    assert_eq!((stats.delivered, stats.acked), (N, N));
    let trips = stats.round_trips - before.round_trips;
    assert!(trips < N, "{trips} round trips to read and ack {N} messages");
    assert_eq!(queue.len("jobs").await.unwrap(), 0);
}

#[tokio::test]
async fn delete_queue_removes_the_stream_and_its_dead_letters() {
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_max_deliveries(1)).await;
    queue.publish("jobs", message(1)).await.unwrap();
    queue.publish("jobs", message(2)).await.unwrap();
    let mut stream = queue.consume("jobs").await.unwrap();
    next(&mut stream, "first").await.nack().await.unwrap();
    next(&mut stream, "second").await.ack().await.unwrap();
    drop(stream);
    assert_eq!(queue.dead_letter_len("jobs").await.unwrap(), 1);
    queue.delete_queue("jobs").await.unwrap();
    assert_eq!(queue.len("jobs").await.unwrap(), 0);
    assert_eq!(queue.dead_letter_len("jobs").await.unwrap(), 0);

    // The queue is usable again afterwards.
    queue.publish("jobs", message(3)).await.unwrap();
    let mut stream = queue.consume("jobs").await.unwrap();
    let delivery = next(&mut stream, "after the deletion").await;
    assert_eq!((number(&delivery), delivery.delivery_count()), (3, 1));
    delivery.ack().await.unwrap();
}
