//! Dead-lettering by the broker after `max_deliveries` returns, and the
//! delivery count read from the quorum queue's `x-delivery-count`.

mod support;

use dtask_amqp::{AmqpQueue, dead_letter_queue};
use dtask_core::infra::{QueueConsumer, QueuePublisher};
use futures::StreamExt;
use lapin::types::AMQPValue;
use support::{config, connect_with, consume_raw, message, raw_channel, unique, within};

/// The `reason` of the first entry of RabbitMQ's `x-death` header.
fn death_reason(properties: &lapin::BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    match first.inner().get("reason")? {
        AMQPValue::LongString(reason) => Some(String::from_utf8_lossy(reason.as_bytes()).into_owned()),
        _ => None,
    }
}

/// How the test turns a delivery down.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Nack,
    Drop,
}

async fn dead_letter_after(queue_handle: &AmqpQueue, queue: &str, max_deliveries: u32, refusal: Refusal) {
    let sent = message(1);
    queue_handle.publish(queue, sent.clone()).await.expect("publish");
    let mut stream = queue_handle.consume(queue).await.expect("consume");

    // Delivered max_deliveries + 1 times, counting 1, 2, ...; each nack
    // (or drop, which nacks in the background) returns it, and the return past the limit dead-letters it.
    for expected in 1..=max_deliveries + 1 {
        let delivery = within("a delivery", stream.next())
            .await
            .expect("stream ended")
            .expect("delivery");
        assert_eq!(delivery.message().id, sent.id, "delivery {expected}: the wrong message");
        assert_eq!(
            delivery.delivery_count(),
            expected,
            "delivery_count from x-delivery-count"
        );
        match refusal {
            Refusal::Nack => delivery.nack().await.expect("nack"),
            Refusal::Drop => drop(delivery),
        }
    }

    let (_connection, channel) = raw_channel().await;
    let mut dead_letters = consume_raw(&channel, &dead_letter_queue(queue)).await;
    let dead = within("the dead-lettered message", dead_letters.next())
        .await
        .expect("the dead-letter consumer ended")
        .expect("the dead-lettered message");
    let properties = &dead.properties;
    let id = properties.message_id().as_ref().map(|id| id.to_string());
    assert_eq!(id, Some(sent.id.to_string()), "the dead-lettered message");
    assert_eq!(
        death_reason(properties).as_deref(),
        Some("delivery_limit"),
        "x-death reason"
    );

    // Nothing comes back to the task queue: a sentinel is next.
    let sentinel = message(2);
    queue_handle.publish(queue, sentinel.clone()).await.expect("publish");
    let delivery = within("the sentinel", stream.next())
        .await
        .expect("stream ended")
        .expect("delivery");
    assert_eq!(delivery.message().id, sentinel.id, "a dead-lettered message came back");
    assert_eq!(delivery.delivery_count(), 1);
    delivery.ack().await.expect("ack");
}

#[tokio::test]
async fn a_message_returned_more_than_max_deliveries_times_is_dead_lettered() {
    let queue = unique("dead-letter");
    let amqp = connect_with(config().with_max_deliveries(2)).await;
    dead_letter_after(&amqp, &queue, 2, Refusal::Nack).await;
    amqp.delete(&queue).await.expect("delete");
}

#[tokio::test]
async fn a_message_dropped_unsettled_more_than_max_deliveries_times_is_dead_lettered() {
    let queue = unique("dead-letter-drop");
    let amqp = connect_with(config().with_max_deliveries(2)).await;
    dead_letter_after(&amqp, &queue, 2, Refusal::Drop).await;
    amqp.delete(&queue).await.expect("delete");
}

#[tokio::test]
async fn the_default_limit_is_five_returns() {
    let queue = unique("dead-letter-default");
    let amqp = support::connect().await;
    assert_eq!(amqp.config().max_deliveries, 5);
    dead_letter_after(&amqp, &queue, 5, Refusal::Nack).await;
    amqp.delete(&queue).await.expect("delete");
}
