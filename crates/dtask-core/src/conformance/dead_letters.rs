//! Checks for [`DeadLetters`] backends: what a delivery dead-letters is
//! listed, intact, with its reason, and can be removed.

use std::sync::Arc;

use super::queue::{ack, assert_carries, consume, message, next, publish, queue_name};
use super::within;
use crate::infra::{DeadLetters, QueueConsumer, QueuePublisher};

/// Runs every check of this module against `store`, the dead letters of
/// the queues `publisher` and `consumer` reach.
pub async fn run_all(
    publisher: Arc<dyn QueuePublisher>,
    consumer: Arc<dyn QueueConsumer>,
    store: Arc<dyn DeadLetters>,
) {
    listed_intact_and_removable(&*publisher, &*consumer, &*store).await;
    kept_in_order_of_arrival(&*publisher, &*consumer, &*store).await;
}

/// A dead-lettered message is listed with its reason, intact; listing
/// leaves it in place; removing it removes it, once.
pub async fn listed_intact_and_removable(
    publisher: &dyn QueuePublisher,
    consumer: &dyn QueueConsumer,
    store: &dyn DeadLetters,
) {
    const REASON: &str = "conformance: this message cannot be processed";
    let queue = queue_name();
    let (poison, sentinel) = (message(1), message(2));
    publish(publisher, &queue, &poison).await;
    let mut stream = consume(consumer, &queue).await;
    let delivery = next(&mut stream, "dead letter: first delivery").await;
    delivery.dead_letter(REASON).await.expect("dead_letter failed");
    publish(publisher, &queue, &sentinel).await;
    ack(next(&mut stream, "dead letter: after it").await).await;

    let dead = within("dead_letters", store.dead_letters(&queue, 10))
        .await
        .expect("listing dead letters");
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(dead[0].reason, REASON, "the dead letter's reason");
    assert_eq!(dead[0].deliveries, 1, "it was delivered once");
    let listed = dead[0].message.as_ref().expect("the dead letter's message");
    assert_eq!(listed.id, poison.id, "the dead letter is the poison message");
    assert_eq!(listed.task_id, poison.task_id, "its task id");
    assert_eq!(listed.task_name, poison.task_name, "its task name");
    assert_eq!(listed.trace_parent, poison.trace_parent, "its trace context");
    assert_eq!(
        listed.payload.encoded().ok(),
        poison.payload.encoded().ok(),
        "its payload"
    );
    let again = within("dead_letters", store.dead_letters(&queue, 10))
        .await
        .expect("listing dead letters");
    assert_eq!(again.len(), 1, "listing leaves the dead letters in place");
    let removed = within("remove_dead_letter", store.remove_dead_letter(&queue, &dead[0].id))
        .await
        .expect("removing a dead letter");
    assert!(removed, "the dead letter was removed");
    let left = within("dead_letters", store.dead_letters(&queue, 10))
        .await
        .expect("listing dead letters");
    assert!(left.is_empty(), "no dead letter is left: {left:?}");
    let removed = within("remove_dead_letter", store.remove_dead_letter(&queue, &dead[0].id))
        .await
        .expect("removing a removed dead letter");
    assert!(!removed, "removing it again finds nothing");
}

/// Dead letters are listed oldest first, up to the limit asked for, and
/// each queue keeps its own.
pub async fn kept_in_order_of_arrival(
    publisher: &dyn QueuePublisher,
    consumer: &dyn QueueConsumer,
    store: &dyn DeadLetters,
) {
    const N: usize = 5;
    let (queue, other) = (queue_name(), queue_name());
    let sent: Vec<_> = (0..N).map(message).collect();
    let mut stream = consume(consumer, &queue).await;
    for (n, message) in sent.iter().enumerate() {
        publish(publisher, &queue, message).await;
        let delivery = next(&mut stream, "dead letters in order").await;
        assert_carries(&delivery, message, "dead letters in order");
        delivery
            .dead_letter(&format!("reason {n}"))
            .await
            .expect("dead_letter failed");
    }
    let dead = within("dead_letters", store.dead_letters(&queue, N))
        .await
        .expect("listing dead letters");
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    let expected: Vec<String> = (0..N).map(|n| format!("reason {n}")).collect();
    assert_eq!(reasons, expected, "dead letters are listed oldest first");
    let first_two = within("dead_letters", store.dead_letters(&queue, 2))
        .await
        .expect("listing dead letters");
    assert_eq!(first_two.len(), 2, "the limit is kept");
    assert_eq!(first_two[0].reason, "reason 0", "the limit keeps the oldest");
    let elsewhere = within("dead_letters", store.dead_letters(&other, N))
        .await
        .expect("listing dead letters");
    assert!(elsewhere.is_empty(), "another queue has no dead letters: {elsewhere:?}");
    for letter in &dead {
        within("remove_dead_letter", store.remove_dead_letter(&queue, &letter.id))
            .await
            .expect("removing a dead letter");
    }
}
