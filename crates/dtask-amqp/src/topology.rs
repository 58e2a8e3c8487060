//! The broker objects behind one task queue, and their idempotent
//! declaration.
//!
//! For a queue `jobs`:
//!
//! | object | kind | arguments |
//! |---|---|---|
//! | `jobs` | durable quorum queue | `x-delivery-limit: N`, `x-dead-letter-exchange: dtask.dead-letter`, `x-dead-letter-routing-key: jobs.dead-letter` |
//! | `dtask.dead-letter` | durable direct exchange, shared by all queues | |
//! | `jobs.dead-letter` | durable quorum queue, bound to the exchange with key `jobs.dead-letter` | |
//!
//! Declaring them again with the same arguments changes nothing, so every
//! process declares what it uses when it starts (and after a reconnection).

use dtask_core::{Error, Result};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::error::AmqpError;

/// The exchange that dead-lettered messages of every queue go through.
pub const DEAD_LETTER_EXCHANGE: &str = "dtask.dead-letter";

/// The suffix of a queue's dead-letter queue.
const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// The longest name AMQP allows for a queue.
const MAX_NAME_LEN: usize = 255;

/// The name of the queue that receives the dead-lettered messages of
/// `queue`: `{queue}.dead-letter`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{DEAD_LETTER_SUFFIX}")
}

/// `queue` as an AMQP name, checked: not empty and short enough that its
/// dead-letter queue's name fits too.
pub(crate) fn queue_name(queue: &str) -> Result<ShortString> {
    if queue.is_empty() {
        return Err(Error::invalid("queue", "the queue name is empty"));
    }
    let max = MAX_NAME_LEN - DEAD_LETTER_SUFFIX.len();
    if queue.len() > max {
        return Err(Error::invalid(
            "queue",
            format!("`{queue}` is {} bytes long; at most {max} are allowed", queue.len()),
        ));
    }
    Ok(ShortString::from(queue))
}

/// The arguments of a task queue.
fn queue_arguments(queue: &str, max_deliveries: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(max_deliveries)),
    );
    arguments.insert("x-dead-letter-exchange".into(), long_string(DEAD_LETTER_EXCHANGE));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        long_string(&dead_letter_queue(queue)),
    );
    arguments
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `queue`, its dead-letter queue and the dead-letter exchange on
/// `channel`. A refusal closes the channel: use one of its own.
///
/// # Errors
/// [`AmqpError::Declare`] (as an [`Error::Backend`]) when the broker refuses
/// one of them, e.g. because it exists with other arguments.
pub(crate) async fn declare(channel: &Channel, queue: &str, max_deliveries: u32) -> Result<()> {
    let name = queue_name(queue)?;
    let dead_letters = ShortString::from(dead_letter_queue(queue));
    let failed = |source| {
        Error::from(AmqpError::Declare {
            queue: queue.to_owned(),
            source,
        })
    };
    let exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Direct,
            exchange,
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), long_string("quorum"));
    channel
        .queue_declare(dead_letters.clone(), durable(), quorum)
        .await
        .map_err(failed)?;
    channel
        .queue_bind(
            dead_letters.clone(),
            DEAD_LETTER_EXCHANGE.into(),
            dead_letters,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    channel
        .queue_declare(name, durable(), queue_arguments(queue, max_deliveries))
        .await
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(queue_name("").is_err());
        assert!(queue_name(&"q".repeat(243)).is_ok());
        let error = queue_name(&"q".repeat(244)).unwrap_err();
        assert!(error.to_string().contains("at most 243"), "{error}");
        assert_eq!(dead_letter_queue("jobs"), "jobs.dead-letter");
    }

    #[test]
    fn task_queues_are_quorum_queues_with_a_delivery_limit() {
        let arguments = queue_arguments("jobs", 2);
        let get = |key: &str| arguments.inner().get(key).cloned();
        assert_eq!(get("x-queue-type"), Some(long_string("quorum")));
        assert_eq!(get("x-delivery-limit"), Some(AMQPValue::LongLongInt(2)));
        assert_eq!(get("x-dead-letter-exchange"), Some(long_string(DEAD_LETTER_EXCHANGE)));
        assert_eq!(get("x-dead-letter-routing-key"), Some(long_string("jobs.dead-letter")));
    }
}
