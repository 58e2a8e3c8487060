//! A message the broker keeps refusing (`basic.nack`) fails its publish,
//! once its retries are spent.
//!
//! A policy (set with `rabbitmqctl`, which needs root here) limits a test
//! queue to one message and rejects further publishes, which RabbitMQ
//! answers with a nack.

mod support;

use std::time::Duration;

use dtask_amqp::AmqpError;
use dtask_core::Error;
use dtask_core::infra::{QueueConsumer, QueuePublisher};
use futures::StreamExt;
use support::{connect, message, rabbitmqctl, unique};
use tokio::sync::watch;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A policy on exactly one queue, cleared on drop.
struct Policy {
    name: String,
}

impl Policy {
    async fn set(queue: &str, definition: &'static str) -> Self {
        let name = format!("{queue}-policy");
        let (policy, pattern) = (name.clone(), format!("^{queue}$"));
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["set_policy", "--apply-to", "queues", &policy, &pattern, definition]);
        })
        .await
        .expect("set_policy");
        Self { name }
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        rabbitmqctl(&["clear_policy", &self.name]);
    }
}

/// Counts the publisher's "trying again" logs.
struct Retries(watch::Sender<usize>);

impl<S: tracing::Subscriber> Layer<S> for Retries {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.contains("trying again") {
            self.0.send_modify(|retries| *retries += 1);
        }
    }
}

#[tokio::test]
async fn a_nacked_message_fails_its_publish_once_its_retries_are_spent() {
    let (retries, mut retried_so_far) = watch::channel(0);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Retries(retries)))
        .expect("the only subscriber of this test binary");
    let queue = unique("nack");
    let policy = Policy::set(&queue, r#"{"max-length":1,"overflow":"reject-publish"}"#).await;
    let amqp = connect().await;
    amqp.publish(&queue, message(0)).await.expect("the first message fits");
    // Quorum queues enforce the limit approximately: a few may get in.
    let mut refused = None;
    for n in 1..=20 {
        if let Err(error) = amqp.publish(&queue, message(n)).await {
            refused = Some(error);
            break;
        }
    }
    let error = refused.expect("no publish was refused by a full reject-publish queue");
    assert!(matches!(error, Error::Backend { backend: "amqp", .. }), "{error:?}");
    let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<AmqpError>());
    assert!(matches!(source, Some(AmqpError::Nacked { .. })), "{error}");
    assert!(error.to_string().contains("nacked"), "{error}");

    // A refusal is tried again: once a consumer makes room, it goes in.
    // Its retries 2 s apart leave the consumer below ample time to drain.
    let patient =
        support::connect_with(support::config().with_reconnect_backoff(Duration::from_secs(2), Duration::from_secs(2)))
            .await;
    let retried = message(99);
    let before = *retried_so_far.borrow_and_update();
    let publishing = tokio::spawn({
        let (queue, retried) = (queue.clone(), retried.clone());
        async move { patient.publish(&queue, retried).await }
    });
    tokio::time::timeout(Duration::from_secs(10), retried_so_far.wait_for(|n| *n > before))
        .await
        .expect("the full queue refuses the publish, which is tried again")
        .expect("the subscriber lives");
    let mut deliveries = amqp.consume(&queue).await.expect("consume");
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("a delivery within 10 s")
            .expect("the stream goes on")
            .expect("a delivery");
        let id = delivery.message().id;
        delivery.ack().await.expect("ack");
        if id == retried.id {
            break;
        }
    }
    publishing
        .await
        .unwrap()
        .expect("the refused message, tried again, was taken");
    drop(deliveries);
    drop(policy);
    amqp.delete(&queue).await.expect("delete");
}
