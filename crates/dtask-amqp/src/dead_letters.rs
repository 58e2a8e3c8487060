//! Reading and removing the messages of a queue's dead-letter queue
//! (`<queue>.dead-letter`).
//!
//! AMQP has no way to look at a message without taking it, so listing takes
//! up to `limit` messages with `basic.get` on a channel of its own, without
//! acknowledging them, and closes the channel: the broker puts every one of
//! them back. Removing one takes messages the same way until it meets the
//! one, acknowledges that one only and closes the channel. Both are
//! operator tools for queues of modest size; concurrent listings may see
//! fewer messages (the ones another listing holds for a moment).

use dtask_core::Result;
use dtask_core::infra::DeadLetter;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::error::client;
use crate::message::{self, DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_REASON_HEADER};
use crate::session::Session;
use crate::topology;

/// Up to `limit` dead letters of `queue`, left in place.
pub(crate) async fn list(session: &Session, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    let channel = session.connection.create_channel().await.map_err(client)?;
    let name = topology::dead_letter_queue(queue);
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(got) = get(&channel, &name).await? else {
            break;
        };
        letters.push(dead_letter(&got.delivery.properties, got.delivery.data));
    }
    put_back(&channel).await;
    Ok(letters)
}

/// Removes the dead letter whose message id is `id`; `false` when no
/// message of the dead-letter queue has it.
pub(crate) async fn remove(session: &Session, queue: &str, id: &str) -> Result<bool> {
    let channel = session.connection.create_channel().await.map_err(client)?;
    let name = topology::dead_letter_queue(queue);
    let mut found = false;
    while let Some(got) = get(&channel, &name).await? {
        if message_id(&got.delivery.properties).as_deref() == Some(id) {
            got.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(client)?;
            found = true;
            break;
        }
    }
    put_back(&channel).await;
    Ok(found)
}

/// The next message of `name`, unacknowledged; `None` when it is empty or
/// does not exist (a queue never declared has no dead letters).
async fn get(channel: &Channel, name: &str) -> Result<Option<lapin::message::BasicGetMessage>> {
    match channel.basic_get(name.into(), BasicGetOptions { no_ack: false }).await {
        Ok(got) => Ok(got),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(client(error)),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    error.to_string().contains("NOT_FOUND")
}

/// Closes the channel, which hands every unacknowledged message back.
async fn put_back(channel: &Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "listed".into()).await;
    }
}

fn message_id(properties: &BasicProperties) -> Option<String> {
    properties.message_id().as_ref().map(|id| id.as_str().to_owned())
}

/// The dead letter a message of the dead-letter queue is.
fn dead_letter(properties: &BasicProperties, body: Vec<u8>) -> DeadLetter {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let reason = text(headers, DEAD_LETTER_REASON_HEADER)
        .or_else(|| text(headers, "x-first-death-reason").map(|why| format!("dead-lettered by RabbitMQ: {why}")))
        .unwrap_or_else(|| "dead-lettered".to_owned());
    let deliveries = text(headers, DEAD_LETTER_DELIVERIES_HEADER)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| message::delivery_count(headers).saturating_sub(1));
    DeadLetter {
        id: message_id(properties).unwrap_or_default(),
        message: message::decode(properties, body).ok().map(|(message, _)| message),
        deliveries,
        reason,
    }
}

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}
