//! A message the broker refuses (`basic.nack`) fails its publish.
//!
//! A policy (set with `rabbitmqctl`, which needs root here) limits a test
//! queue to one message and rejects further publishes, which RabbitMQ
//! answers with a nack.

mod support;

use dtask_amqp::AmqpError;
use dtask_core::Error;
use dtask_core::infra::QueuePublisher;
use support::{connect, message, rabbitmqctl, unique};

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

#[tokio::test]
async fn a_nacked_message_fails_its_publish() {
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
    drop(policy);
    amqp.delete(&queue).await.expect("delete");
}
