//! The node addresses behind a task queue, per [`Broker`].
//!
//! | | RabbitMQ 3.x (AMQP 1.0 plugin) | Service Bus | generic |
//! |---|---|---|---|
//! | the queue `Q` | `/queue/Q` | `Q` | `Q` |
//! | its dead letters | `/queue/Q.dead-letter` | `Q/$DeadLetterQueue` | `Q.dead-letter` |
//!
//! On RabbitMQ, attaching a link with a durable terminus (`durable`
//! configuration) to `/queue/Q` declares `Q` as a durable classic queue
//! when it does not exist; a non-durable terminus would declare a
//! transient one, and one of each durability cannot share a queue.

use dtask_core::{Error, Result};
use fe2o3_amqp::types::messaging::TerminusDurability;

use crate::config::Broker;

/// The longest queue name taken (RabbitMQ's limit is 255 bytes, with the
/// `.dead-letter` suffix).
const MAX_NAME: usize = 200;

/// The dead-letter queue's name of a task queue on RabbitMQ or a generic
/// broker: `<queue>.dead-letter` (as `dtask-amqp` names it).
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead-letter")
}

/// Checks a task queue's name: not empty, at most 200 bytes, no `/`.
pub(crate) fn check_name(queue: &str) -> Result<()> {
    if queue.is_empty() || queue.len() > MAX_NAME || queue.contains('/') {
        return Err(Error::invalid(
            "queue name",
            format!("`{queue}`: 1 to {MAX_NAME} bytes, without `/`"),
        ));
    }
    Ok(())
}

/// The address of the queue `queue`.
pub(crate) fn queue_address(broker: Broker, queue: &str) -> String {
    match broker {
        Broker::RabbitMq => format!("/queue/{queue}"),
        Broker::ServiceBus | Broker::Generic => queue.to_owned(),
    }
}

/// The address of `queue`'s dead letters.
pub(crate) fn dead_letter_address(broker: Broker, queue: &str) -> String {
    match broker {
        Broker::RabbitMq => format!("/queue/{}", dead_letter_queue(queue)),
        Broker::ServiceBus => format!("{queue}/$DeadLetterQueue"),
        Broker::Generic => dead_letter_queue(queue),
    }
}

/// The address of `queue`'s management node (Service Bus).
pub(crate) fn management_address(queue: &str) -> String {
    format!("{queue}/$management")
}

/// The durability of the links' termini: durable on RabbitMQ, where it
/// makes the declared queue durable; the broker's default elsewhere.
pub(crate) fn durability(broker: Broker) -> TerminusDurability {
    match broker {
        Broker::RabbitMq => TerminusDurability::Configuration,
        Broker::ServiceBus | Broker::Generic => TerminusDurability::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broker_has_its_addresses() {
        assert_eq!(queue_address(Broker::RabbitMq, "zip"), "/queue/zip");
        assert_eq!(dead_letter_address(Broker::RabbitMq, "zip"), "/queue/zip.dead-letter");
        assert_eq!(queue_address(Broker::ServiceBus, "zip"), "zip");
        assert_eq!(dead_letter_address(Broker::ServiceBus, "zip"), "zip/$DeadLetterQueue");
        assert_eq!(management_address("zip"), "zip/$management");
        assert_eq!(dead_letter_address(Broker::Generic, "zip"), "zip.dead-letter");
        assert!(check_name("").is_err() && check_name("a/b").is_err() && check_name("a.b-c").is_ok());
    }
}
