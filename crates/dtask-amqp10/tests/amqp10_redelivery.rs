//! What RabbitMQ's AMQP 1.0 plugin cannot count, dtask-amqp10 carries: each
//! hand-back (a nack, or a delivery dropped unsettled) raises the delivery
//! count by one; a dead letter keeps the reason and the count; a message
//! handed back on its `max_deliveries`-th delivery is dead-lettered.

mod support;

use dtask_core::infra::{DeadLetters, QueueConsumer, QueuePublisher};
use futures::StreamExt;
use support::{dead_letters, delete_queues, message, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hand_back_counts_one_more_delivery() {
    let queue = unique("count");
    let amqp = support::connect_with(support::config().with_max_deliveries(10)).await;
    let sent = message(1);
    amqp.publish(&queue, sent.clone()).await.expect("publish");
    let mut stream = amqp.consume(&queue).await.expect("consume");
    for expected in 1..=5u32 {
        let delivery = within("a delivery", stream.next()).await.unwrap().unwrap();
        assert_eq!(delivery.message().id, sent.id);
        assert_eq!(delivery.delivery_count(), expected, "delivery {expected}");
        if expected % 2 == 0 {
            drop(delivery);
        } else {
            delivery.nack().await.expect("nack");
        }
    }
    let delivery = within("the sixth delivery", stream.next()).await.unwrap().unwrap();
    assert_eq!(delivery.delivery_count(), 6);
    delivery.dead_letter("too many deliveries").await.expect("dead-letter");
    let letters = dead_letters(&amqp).dead_letters(&queue, 10).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, "too many deliveries");
    assert_eq!(letters[0].deliveries, 6);
    assert_eq!(letters[0].message.as_ref().map(|m| m.id), Some(sent.id));
    drop(stream);
    delete_queues(&[queue]).await;
}

/// Regression: credit granted again while deliveries were in flight made
/// RabbitMQ 3.10 send more than the link allowed; the client refused them
/// ("more message transfers than currently allowed"), the link broke and
/// every unsettled delivery came back. Many more messages than the
/// prefetch now flow through one link, each delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_granted_again_only_once_used_up() {
    const N: usize = 200;
    let queue = unique("credit");
    let amqp = support::connect_with(support::config().with_prefetch(4)).await;
    let sent: Vec<_> = (0..N).map(message).collect();
    for result in amqp.publish_many(&queue, sent.clone()).await {
        result.expect("publish");
    }
    let mut stream = amqp.consume(&queue).await.expect("consume");
    for expected in &sent {
        let delivery = within("a delivery", stream.next()).await.unwrap().unwrap();
        assert_eq!(delivery.message().id, expected.id, "in order, once");
        assert_eq!(delivery.delivery_count(), 1, "never redelivered");
        delivery.ack().await.expect("ack");
    }
    drop(stream);
    delete_queues(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_back_on_its_last_allowed_delivery_is_dead_lettered() {
    let queue = unique("limit");
    let amqp = support::connect_with(support::config().with_max_deliveries(3)).await;
    let (poison, sentinel) = (message(1), message(2));
    amqp.publish(&queue, poison.clone()).await.expect("publish");
    let mut stream = amqp.consume(&queue).await.expect("consume");
    for expected in 1..=3u32 {
        let delivery = within("a delivery", stream.next()).await.unwrap().unwrap();
        assert_eq!(
            (delivery.message().id, delivery.delivery_count()),
            (poison.id, expected)
        );
        if expected == 2 {
            drop(delivery);
        } else {
            delivery.nack().await.expect("nack");
        }
    }
    amqp.publish(&queue, sentinel.clone()).await.expect("publish");
    let delivery = within("the sentinel", stream.next()).await.unwrap().unwrap();
    assert_eq!(
        delivery.message().id,
        sentinel.id,
        "the poison message came back a fourth time"
    );
    delivery.ack().await.expect("ack");
    let letters = dead_letters(&amqp).dead_letters(&queue, 10).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].message.as_ref().map(|m| m.id), Some(poison.id));
    assert_eq!(letters[0].deliveries, 3);
    assert!(letters[0].reason.contains("max_deliveries"), "{}", letters[0].reason);
    drop(stream);
    delete_queues(&[queue]).await;
}
