//! How a [`QueueMessage`] is laid out on the wire, and read back.
//!
//! The body is the payload's bytes, as they are. The properties say the
//! rest: `delivery_mode` 2 (persistent), `content_type` after the format
//! (`application/json` for JSON), `message_id`, and the headers
//! `dtask-message-id`, `dtask-task-id`, `dtask-task-name` and
//! `dtask-format`. On delivery, quorum queues add `x-delivery-count` (the
//! number of earlier deliveries, absent on the first).

use bytes::Bytes;
use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Format, Payload, Result, TaskId};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use uuid::Uuid;

/// The header holding [`QueueMessage::id`].
pub const MESSAGE_ID_HEADER: &str = "dtask-message-id";
/// The header holding [`QueueMessage::task_id`].
pub const TASK_ID_HEADER: &str = "dtask-task-id";
/// The header holding [`QueueMessage::task_name`].
pub const TASK_NAME_HEADER: &str = "dtask-task-name";
/// The header holding the payload's [`Format`].
pub const FORMAT_HEADER: &str = "dtask-format";
/// The header quorum queues set to the number of earlier deliveries.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// AMQP's `delivery_mode` of a persistent message.
pub const PERSISTENT: u8 = 2;

/// The properties and body of `message`.
///
/// # Errors
/// [`Error::Unsupported`] for a [`Payload::InMemory`], which cannot leave
/// the process.
pub(crate) fn encode(message: &QueueMessage) -> Result<(BasicProperties, Bytes)> {
    let (format, bytes) = match &message.payload {
        Payload::Encoded { format, bytes } => (*format, bytes.clone()),
        Payload::InMemory(_) => {
            return Err(Error::Unsupported(
                "RabbitMQ carries bytes, not in-memory values: publish a Payload::Encoded \
                 (build the host with a serializer, or serialize_in_process(true))"
                    .into(),
            ));
        }
    };
    let message_id = message.id.to_string();
    let mut headers = FieldTable::default();
    headers.insert(MESSAGE_ID_HEADER.into(), long_string(&message_id));
    headers.insert(TASK_ID_HEADER.into(), long_string(&message.task_id.to_string()));
    headers.insert(TASK_NAME_HEADER.into(), long_string(&message.task_name));
    headers.insert(FORMAT_HEADER.into(), long_string(&format_name(format)?));
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(ShortString::from(content_type(format)))
        .with_message_id(ShortString::from(message_id))
        .with_headers(headers);
    Ok((properties, bytes))
}

/// The message carried by a delivery's `properties` and `body`, and how
/// many times it has been delivered (this time included).
///
/// # Errors
/// [`Error::Invalid`] when a header is missing or malformed: the message
/// was not published by dtask.
pub(crate) fn decode(properties: &BasicProperties, body: Vec<u8>) -> Result<(QueueMessage, u32)> {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let id: Uuid = parse(headers, MESSAGE_ID_HEADER)?;
    let task_id: TaskId = parse(headers, TASK_ID_HEADER)?;
    let task_name = text(headers, TASK_NAME_HEADER)?.to_owned();
    let format = parse_format(text(headers, FORMAT_HEADER)?)?;
    let message = QueueMessage {
        id,
        task_id,
        task_name,
        payload: Payload::Encoded {
            format,
            bytes: Bytes::from(body),
        },
    };
    Ok((message, delivery_count(headers)))
}

/// 1 plus the broker's `x-delivery-count` (1 when it is absent).
pub(crate) fn delivery_count(headers: &FieldTable) -> u32 {
    let earlier = match headers.inner().get(DELIVERY_COUNT_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    };
    earlier.saturating_add(1)
}

/// The MIME type of a payload in `format`.
fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        _ => "application/octet-stream",
    }
}

/// `format` as its serde name (`json`).
fn format_name(format: Format) -> Result<String> {
    match serde_json::to_value(format) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        _ => Err(Error::invalid("payload", format!("the format {format} has no name"))),
    }
}

fn parse_format(name: &str) -> Result<Format> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| malformed(FORMAT_HEADER, &format!("unknown format `{name}`")))
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn text<'a>(headers: &'a FieldTable, name: &str) -> Result<&'a str> {
    let bytes = match headers.inner().get(name) {
        Some(AMQPValue::LongString(value)) => value.as_bytes(),
        Some(AMQPValue::ShortString(value)) => value.as_str().as_bytes(),
        Some(_) => return Err(malformed(name, "not a string")),
        None => return Err(malformed(name, "missing")),
    };
    std::str::from_utf8(bytes).map_err(|_| malformed(name, "not UTF-8"))
}

fn parse<T: std::str::FromStr>(headers: &FieldTable, name: &str) -> Result<T> {
    let value = text(headers, name)?;
    value
        .parse()
        .map_err(|_| malformed(name, &format!("`{value}` is not a UUID")))
}

fn malformed(header: &str, reason: &str) -> Error {
    Error::invalid("message", format!("header `{header}`: {reason} (not a dtask message?)"))
}

#[cfg(test)]
mod tests {
    use dtask_core::Codec;

    use super::*;

    fn message() -> QueueMessage {
        let payload = Codec::new(Format::Json).encode(&serde_json::json!({"n": 1})).unwrap();
        QueueMessage::new(TaskId::new(), "Resize", payload)
    }

    #[test]
    fn a_message_survives_the_wire() {
        let sent = message();
        let (properties, body) = encode(&sent).unwrap();
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        let (received, count) = decode(&properties, body.to_vec()).unwrap();
        assert_eq!(
            (received.id, received.task_id, received.task_name),
            (sent.id, sent.task_id, sent.task_name)
        );
        assert_eq!(received.payload.encoded().unwrap().1, &body);
        assert_eq!(count, 1);
    }

    #[test]
    fn the_delivery_count_is_one_more_than_the_brokers() {
        let mut headers = FieldTable::default();
        assert_eq!(delivery_count(&headers), 1);
        headers.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(2));
        assert_eq!(delivery_count(&headers), 3);
        headers.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongInt(4));
        assert_eq!(delivery_count(&headers), 5);
    }

    #[test]
    fn in_memory_payloads_are_refused() {
        let message = QueueMessage::new(TaskId::new(), "Resize", Payload::in_memory(1u8));
        let error = encode(&message).unwrap_err();
        assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
    }

    #[test]
    fn foreign_messages_are_named_as_such() {
        let error = decode(&BasicProperties::default(), Vec::new()).unwrap_err();
        assert!(error.to_string().contains("dtask-message-id"), "{error}");
    }
}
