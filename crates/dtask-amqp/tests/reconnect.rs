//! Reconnection: RabbitMQ's application is stopped and started again
//! (`rabbitmqctl stop_app` / `start_app`, which needs root here) while a
//! publisher and a delivery stream are in use; both carry on.
//!
//! This restarts the shared local broker for a few seconds: it runs in a
//! test binary of its own, so the other tests of this crate never see it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use dtask_amqp::AmqpError;
use dtask_core::infra::{QueueConsumer, QueuePublisher};
use futures::StreamExt;
use support::{config, connect_with, message, unique, within};

fn rabbitmqctl(verb: &str) {
    support::rabbitmqctl(&[verb]);
}

/// RabbitMQ's application, stopped until [`Stopped::start`] or drop (so a
/// failing test never leaves the broker down).
struct Stopped {
    started: bool,
}

impl Stopped {
    async fn stop() -> Self {
        tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
            .await
            .expect("stop_app");
        Self { started: false }
    }

    async fn start(mut self) {
        self.started = true;
        tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
            .await
            .expect("start_app");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            rabbitmqctl("start_app");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_survive_a_broker_restart() {
    // The warnings of the reconnection show when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("dtask_amqp=debug")
        .try_init();
    let queue = unique("reconnect");
    let config = config().with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let amqp = connect_with(config).await;
    let impatient = connect_with(support::config().with_reconnect_timeout(Duration::from_millis(300))).await;
    let mut stream = amqp.consume(&queue).await.expect("consume");
    let (first, second) = (message(1), message(2));
    amqp.publish(&queue, first.clone())
        .await
        .expect("publish before the restart");
    let held = within("the first delivery", stream.next()).await.unwrap().unwrap();
    assert_eq!(held.message().id, first.id);

    let stopped = Stopped::stop().await;
    let error = amqp.ping().await.expect_err("ping succeeded with the broker stopped");
    assert!(error.to_string().contains("unreachable"), "{error}");
    // A publish waits for the reconnection, for reconnect_timeout at most.
    let error = impatient
        .publish(&queue, message(3))
        .await
        .expect_err("published with the broker stopped");
    let text = error.to_string();
    assert!(
        text.contains("RabbitMQ at") && text.contains("is unreachable"),
        "{text}"
    );
    // A batch published meanwhile waits for the reconnection too.
    let batch: Vec<_> = (10..15).map(message).collect();
    let publishing = tokio::spawn({
        let (amqp, queue, batch) = (amqp.clone(), queue.clone(), batch.clone());
        async move { amqp.publish_many(&queue, batch).await }
    });
    stopped.start().await;
    let published = within("the batch published across the restart", publishing)
        .await
        .unwrap();
    assert_eq!(published.len(), batch.len());
    for result in published {
        result.expect("a message of the batch published after the restart");
    }

    // Acking on the lost channel fails harmlessly: the message comes back.
    let error = held.ack().await.expect_err("an ack on a lost channel succeeded");
    let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<AmqpError>());
    assert!(matches!(source, Some(AmqpError::DeliveryChannelClosed)), "{error:?}");

    // The publish waits for the reconnection.
    amqp.publish(&queue, second.clone())
        .await
        .expect("publish after the restart");

    // The same stream delivers them all: the first again, the batch and the
    // second.
    let expected: Vec<_> = [first.id, second.id]
        .into_iter()
        .chain(batch.iter().map(|m| m.id))
        .collect();
    let mut counts = HashMap::new();
    while counts.len() < expected.len() {
        let delivery = within("a delivery after the restart", stream.next())
            .await
            .unwrap()
            .unwrap();
        let id = delivery.message().id;
        assert!(expected.contains(&id), "a foreign message");
        assert!(
            counts.insert(id, delivery.delivery_count()).is_none(),
            "delivered twice"
        );
        delivery.ack().await.expect("ack after the restart");
    }
    assert_eq!(counts[&second.id], 1, "the second message's first delivery");
    assert!(counts[&first.id] >= 1, "the first message: {counts:?}");
    println!(
        "delivery count of the message held across the restart: {}",
        counts[&first.id]
    );
    amqp.ping().await.expect("ping after the restart");
    drop(stream);
    amqp.delete(&queue).await.expect("delete");
}
