//! Checks for [`QueuePublisher`] and [`QueueConsumer`] backends (and, in
//! [`dead_letters`](super::dead_letters), for their dead letters).
//!
//! Every check uses queues of its own, named by
//! [`unique_name`], and settles every delivery it
//! receives. Payloads are [`Payload::Encoded`] JSON, which every backend
//! can carry.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use super::{unique_name, within};
use crate::codec::{Codec, Format, Payload};
use crate::id::TaskId;
use crate::infra::{Delivery, DeliveryStream, QueueConsumer, QueueMessage, QueuePublisher};
use crate::trace::TraceParent;

/// Runs every check of this module (except [`back_pressure`], which only
/// bounded backends pass) against `publisher` and `consumer`, which must
/// reach the same queues.
pub async fn run_all(publisher: Arc<dyn QueuePublisher>, consumer: Arc<dyn QueueConsumer>) {
    let (publisher, consumer) = (&*publisher, &*consumer);
    round_trip(publisher, consumer).await;
    fifo_for_one_consumer(publisher, consumer).await;
    publish_many_delivers_each_in_order(publisher, consumer).await;
    ack_removes(publisher, consumer).await;
    nack_redelivers(publisher, consumer).await;
    dead_letter_is_not_redelivered(publisher, consumer).await;
    every_format_travels(publisher, consumer).await;
    dropped_delivery_is_redelivered(publisher, consumer).await;
    consumers_share_a_queue(publisher, consumer).await;
    queues_are_isolated(publisher, consumer).await;
}

pub(super) fn queue_name() -> String {
    unique_name("dtask-conformance")
}

/// A message whose JSON payload carries `n` and some non-ASCII text, with
/// a trace context (which every check then sees travel).
pub(super) fn message(n: usize) -> QueueMessage {
    let body = serde_json::json!({ "n": n, "text": "héllo, wörld ✓" });
    let payload = Codec::new(Format::Json).encode(&body).expect("encoding a test payload");
    QueueMessage::new(TaskId::new(), "ConformanceTask", payload).with_trace_parent(Some(TraceParent::random()))
}

pub(super) async fn publish(publisher: &dyn QueuePublisher, queue: &str, message: &QueueMessage) {
    within("publish", publisher.publish(queue, message.clone()))
        .await
        .unwrap_or_else(|e| panic!("publish to {queue}: {e}"));
}

pub(super) async fn consume(consumer: &dyn QueueConsumer, queue: &str) -> DeliveryStream {
    within("consume", consumer.consume(queue))
        .await
        .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
}

/// The next delivery, which must come within [`PATIENCE`](super::PATIENCE).
pub(super) async fn next(stream: &mut DeliveryStream, what: &str) -> Delivery {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("{what}: the delivery stream ended"))
        .unwrap_or_else(|e| panic!("{what}: the delivery stream failed: {e}"))
}

/// Asserts that `delivery` carries `expected`, field by field.
pub(super) fn assert_carries(delivery: &Delivery, expected: &QueueMessage, what: &str) {
    let got = delivery.message();
    assert_eq!(got.id, expected.id, "{what}: message id (the wrong message?)");
    assert_eq!(got.task_id, expected.task_id, "{what}: task id");
    assert_eq!(got.task_name, expected.task_name, "{what}: task name");
    assert_eq!(got.trace_parent, expected.trace_parent, "{what}: trace context");
    assert_eq!(got.member, expected.member, "{what}: group member");
    let (format, bytes) = got.payload.encoded().expect("the payload is not encoded");
    let (expected_format, expected_bytes) = expected.payload.encoded().expect("test payload");
    assert_eq!(format, expected_format, "{what}: payload format");
    assert_eq!(bytes, expected_bytes, "{what}: payload bytes");
}

pub(super) async fn ack(delivery: Delivery) {
    delivery.ack().await.expect("ack failed");
}

/// A published message arrives intact, delivered for the first time.
pub async fn round_trip(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let sent = message(1);
    publish(publisher, &queue, &sent).await;
    let mut stream = consume(consumer, &queue).await;
    let delivery = next(&mut stream, "round trip").await;
    assert_carries(&delivery, &sent, "round trip");
    assert_eq!(delivery.delivery_count(), 1, "a first delivery counts 1");
    if let Payload::Encoded { bytes, .. } = &delivery.message().payload {
        let value: serde_json::Value = serde_json::from_slice(bytes).expect("payload JSON");
        assert_eq!(value["text"], "héllo, wörld ✓", "payload text");
    }
    ack(delivery).await;

    // A message without a trace context arrives without one.
    let untraced = message(2).with_trace_parent(None);
    publish(publisher, &queue, &untraced).await;
    let delivery = next(&mut stream, "round trip without a trace context").await;
    assert_carries(&delivery, &untraced, "round trip without a trace context");
    ack(delivery).await;

    // A message running one member of a distributed group names it.
    let member = message(3).for_member("Transcode1080p");
    publish(publisher, &queue, &member).await;
    let delivery = next(&mut stream, "round trip of a group member's message").await;
    assert_carries(&delivery, &member, "round trip of a group member's message");
    ack(delivery).await;
}

/// One consumer receives one publisher's messages in publication order.
pub async fn fifo_for_one_consumer(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let sent: Vec<QueueMessage> = (0..10).map(message).collect();
    for message in &sent {
        publish(publisher, &queue, message).await;
    }
    let mut stream = consume(consumer, &queue).await;
    for (index, expected) in sent.iter().enumerate() {
        let delivery = next(&mut stream, "fifo").await;
        assert_carries(&delivery, expected, &format!("fifo message {index}"));
        ack(delivery).await;
    }
}

/// `publish_many` answers each message, and they arrive in order.
pub async fn publish_many_delivers_each_in_order(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let sent: Vec<QueueMessage> = (0..25).map(message).collect();
    let results = within("publish_many", publisher.publish_many(&queue, sent.clone())).await;
    assert_eq!(results.len(), sent.len(), "publish_many: one result per message");
    for (index, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("publish_many: message {index} failed: {e}"));
    }
    let mut stream = consume(consumer, &queue).await;
    for (index, expected) in sent.iter().enumerate() {
        let delivery = next(&mut stream, "publish_many").await;
        assert_carries(&delivery, expected, &format!("publish_many message {index}"));
        ack(delivery).await;
    }
}

/// An acked message is not delivered again: a sentinel published after it
/// is the next delivery.
pub async fn ack_removes(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let (first, sentinel) = (message(1), message(2));
    publish(publisher, &queue, &first).await;
    let mut stream = consume(consumer, &queue).await;
    let delivery = next(&mut stream, "ack: first delivery").await;
    assert_carries(&delivery, &first, "ack: first delivery");
    ack(delivery).await;
    publish(publisher, &queue, &sentinel).await;
    let delivery = next(&mut stream, "ack: after the ack").await;
    assert_carries(&delivery, &sentinel, "an acked message came back");
    ack(delivery).await;
}

/// A nacked message is delivered again, counting 2.
pub async fn nack_redelivers(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let (first, sentinel) = (message(1), message(2));
    publish(publisher, &queue, &first).await;
    let mut stream = consume(consumer, &queue).await;
    let delivery = next(&mut stream, "nack: first delivery").await;
    delivery.nack().await.expect("nack failed");
    let again = next(&mut stream, "nack: redelivery").await;
    assert_carries(&again, &first, "nack: redelivery");
    assert_eq!(again.delivery_count(), 2, "a redelivery after one nack counts 2");
    ack(again).await;
    publish(publisher, &queue, &sentinel).await;
    let delivery = next(&mut stream, "nack: after the ack").await;
    assert_carries(&delivery, &sentinel, "a redelivered, acked message came back");
    ack(delivery).await;
}

/// A dead-lettered message is not delivered again: the next delivery is a
/// message published after it.
pub async fn dead_letter_is_not_redelivered(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let (poison, sentinel) = (message(1), message(2));
    publish(publisher, &queue, &poison).await;
    let mut stream = consume(consumer, &queue).await;
    let delivery = next(&mut stream, "dead letter: first delivery").await;
    assert_carries(&delivery, &poison, "dead letter: first delivery");
    delivery
        .dead_letter("conformance: this message cannot be processed")
        .await
        .expect("dead_letter failed");
    publish(publisher, &queue, &sentinel).await;
    let delivery = next(&mut stream, "dead letter: after it").await;
    assert_carries(&delivery, &sentinel, "a dead-lettered message came back");
    ack(delivery).await;
}

/// Payloads in every [`Format`] arrive with their format and bytes intact.
pub async fn every_format_travels(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let body = serde_json::json!({ "n": 7, "text": "héllo" });
    let sent: Vec<QueueMessage> = Format::ALL
        .iter()
        .map(|format| {
            let payload = Codec::new(*format).encode(&body).expect("encoding a test payload");
            QueueMessage::new(TaskId::new(), "ConformanceTask", payload)
        })
        .collect();
    for message in &sent {
        publish(publisher, &queue, message).await;
    }
    let mut stream = consume(consumer, &queue).await;
    for expected in &sent {
        let delivery = next(&mut stream, "formats").await;
        let format = delivery.message().payload.encoded().map(|(f, _)| f);
        assert_carries(&delivery, expected, &format!("a {format:?} payload"));
        let value: serde_json::Value = delivery.message().payload.decode().expect("decoding the payload");
        assert_eq!(value, body, "a {format:?} payload decodes to what was sent");
        ack(delivery).await;
    }
}

/// A delivery dropped without being settled is delivered again.
pub async fn dropped_delivery_is_redelivered(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let queue = queue_name();
    let sent = message(1);
    publish(publisher, &queue, &sent).await;
    let mut stream = consume(consumer, &queue).await;
    drop(next(&mut stream, "drop: first delivery").await);
    let again = next(&mut stream, "drop: redelivery").await;
    assert_carries(&again, &sent, "drop: redelivery");
    assert!(again.delivery_count() >= 2, "a redelivery counts at least 2");
    ack(again).await;
}

/// Two streams on one queue share its messages: each is delivered once in
/// all.
pub async fn consumers_share_a_queue(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    const N: usize = 20;
    let queue = queue_name();
    let first = consume(consumer, &queue).await;
    let second = consume(consumer, &queue).await;
    let mut both = futures::stream::select(first, second).boxed();
    let sent: Vec<QueueMessage> = (0..N).map(message).collect();
    for message in &sent {
        publish(publisher, &queue, message).await;
    }
    let mut seen = HashSet::<Uuid>::new();
    while seen.len() < N {
        let delivery = next(&mut both, "shared queue").await;
        let id = delivery.message().id;
        assert!(sent.iter().any(|m| m.id == id), "shared queue: a foreign message");
        assert!(seen.insert(id), "shared queue: a message was delivered twice");
        ack(delivery).await;
    }
    let sentinel = message(N);
    publish(publisher, &queue, &sentinel).await;
    let delivery = next(&mut both, "shared queue: sentinel").await;
    assert_carries(&delivery, &sentinel, "shared queue: an acked message came back");
    ack(delivery).await;
}

/// Messages stay in the queue they were published to.
pub async fn queues_are_isolated(publisher: &dyn QueuePublisher, consumer: &dyn QueueConsumer) {
    let (left, right) = (queue_name(), queue_name());
    let (to_left, to_right, sentinel) = (message(1), message(2), message(3));
    publish(publisher, &left, &to_left).await;
    publish(publisher, &right, &to_right).await;

    let mut right_stream = consume(consumer, &right).await;
    let delivery = next(&mut right_stream, "isolation: right queue").await;
    assert_carries(&delivery, &to_right, "isolation: right queue");
    ack(delivery).await;
    let mut left_stream = consume(consumer, &left).await;
    let delivery = next(&mut left_stream, "isolation: left queue").await;
    assert_carries(&delivery, &to_left, "isolation: left queue");
    ack(delivery).await;

    publish(publisher, &right, &sentinel).await;
    let delivery = next(&mut right_stream, "isolation: right sentinel").await;
    assert_carries(&delivery, &sentinel, "isolation: a message crossed queues");
    ack(delivery).await;
}

/// For bounded backends: once `capacity` messages wait unconsumed, the
/// next publish waits, and completes as soon as one is consumed.
pub async fn back_pressure(publisher: Arc<dyn QueuePublisher>, consumer: Arc<dyn QueueConsumer>, capacity: usize) {
    let queue = queue_name();
    let sent: Vec<QueueMessage> = (0..=capacity).map(message).collect();
    for message in &sent[..capacity] {
        publish(&*publisher, &queue, message).await;
    }
    let mut blocked = publisher.publish(&queue, sent[capacity].clone());
    // Proving that something does not happen takes a bounded wait.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut blocked).await;
    assert!(
        early.is_err(),
        "back-pressure: a publish to a full queue (capacity {capacity}) completed: {early:?}"
    );

    let mut stream = consume(&*consumer, &queue).await;
    let delivery = next(&mut stream, "back-pressure: first").await;
    assert_carries(&delivery, &sent[0], "back-pressure: first");
    ack(delivery).await;
    within("back-pressure: the waiting publish", blocked)
        .await
        .expect("back-pressure: the waiting publish failed");
    for (index, expected) in sent.iter().enumerate().skip(1) {
        let delivery = next(&mut stream, "back-pressure: drain").await;
        assert_carries(&delivery, expected, &format!("back-pressure: message {index}"));
        ack(delivery).await;
    }
}
