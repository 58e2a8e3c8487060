//! How a [`QueueMessage`] is laid out on the wire, and read back.
//!
//! The body is the payload's bytes, as they are. The properties say the
//! rest: `delivery_mode` 2 (persistent), `content_type` after the format
//! (`application/json`, `application/msgpack`, `application/x-protobuf`),
//! `message_id`, and the headers `dtask-message-id`, `dtask-task-id`,
//! `dtask-task-name`, `dtask-format` (`json`, `msgpack`, `protobuf`) and
//! `dtask-schema-version` (the saga state schema the body was written with,
//! as text), and `traceparent` (the W3C trace context the worker's spans
//! continue) when the message carries one. A message whose format is unknown or whose schema is newer than
//! this build reads is not a message this worker can run: the consumer
//! rejects it to the dead-letter queue. On delivery, quorum queues add `x-delivery-count` (the
//! number of earlier deliveries, absent on the first).

use bytes::Bytes;
use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Format, Payload, Result, SCHEMA_VERSION, TaskId};
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
/// The header holding the schema version of the payload (absent: 1).
pub const SCHEMA_VERSION_HEADER: &str = "dtask-schema-version";
/// The header holding [`QueueMessage::trace_parent`] (W3C `traceparent`).
pub const TRACE_PARENT_HEADER: &str = "traceparent";
/// The header holding [`QueueMessage::member`] (absent: the task itself).
pub const MEMBER_HEADER: &str = "dtask-member";
/// The header a dead-lettered message carries: why it was moved.
pub const DEAD_LETTER_REASON_HEADER: &str = "dtask-dead-letter-reason";
/// The header a message dead-lettered by a dtask worker carries: how many
/// times it had been delivered.
pub const DEAD_LETTER_DELIVERIES_HEADER: &str = "dtask-deliveries";
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
    headers.insert(FORMAT_HEADER.into(), long_string(format.name()));
    headers.insert(SCHEMA_VERSION_HEADER.into(), long_string(&SCHEMA_VERSION.to_string()));
    if let Some(parent) = &message.trace_parent {
        headers.insert(TRACE_PARENT_HEADER.into(), long_string(&parent.to_string()));
    }
    if let Some(member) = &message.member {
        headers.insert(MEMBER_HEADER.into(), long_string(member));
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(ShortString::from(format.content_type()))
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
    check_schema_version(headers)?;
    let message = QueueMessage {
        id,
        task_id,
        task_name,
        payload: Payload::Encoded {
            format,
            bytes: Bytes::from(body),
        },
        // A trace context is a hint: an unreadable one starts a new trace.
        trace_parent: text(headers, TRACE_PARENT_HEADER).ok().and_then(|t| t.parse().ok()),
        member: optional_text(headers, MEMBER_HEADER)?,
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

fn parse_format(name: &str) -> Result<Format> {
    name.parse()
        .map_err(|e: dtask_core::codec::UnknownFormat| malformed(FORMAT_HEADER, &e.to_string()))
}

/// Accepts a message written with this build's schema or an older one.
fn check_schema_version(headers: &FieldTable) -> Result<()> {
    let version = match text(headers, SCHEMA_VERSION_HEADER) {
        Ok(version) => version,
        Err(_) if !headers.contains_key(SCHEMA_VERSION_HEADER) => return Ok(()),
        Err(error) => return Err(error),
    };
    match version.parse::<u32>() {
        Ok(found) if found <= SCHEMA_VERSION => Ok(()),
        Ok(found) => Err(malformed(
            SCHEMA_VERSION_HEADER,
            &format!("schema version {found} is newer than this build reads ({SCHEMA_VERSION})"),
        )),
        Err(_) => Err(malformed(
            SCHEMA_VERSION_HEADER,
            &format!("`{version}` is not a version"),
        )),
    }
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

/// A header that may be absent; present, it must be a string.
fn optional_text(headers: &FieldTable, name: &str) -> Result<Option<String>> {
    match headers.inner().get(name) {
        None => Ok(None),
        Some(_) => text(headers, name).map(|value| Some(value.to_owned())),
    }
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

    #[test]
    fn every_format_names_itself_in_the_headers_and_content_type() {
        for format in Format::ALL {
            let payload = Codec::new(format).encode(&serde_json::json!({"n": 1})).unwrap();
            let sent = QueueMessage::new(TaskId::new(), "Resize", payload);
            let (properties, body) = encode(&sent).unwrap();
            assert_eq!(
                properties.content_type().as_ref().map(ShortString::as_str),
                Some(format.content_type())
            );
            let headers = properties.headers().as_ref().unwrap();
            assert_eq!(text(headers, FORMAT_HEADER).unwrap(), format.name());
            assert_eq!(
                text(headers, SCHEMA_VERSION_HEADER).unwrap(),
                SCHEMA_VERSION.to_string()
            );
            let (received, _) = decode(&properties, body.to_vec()).unwrap();
            assert_eq!(received.payload.encoded().unwrap().0, format);
        }
    }

    fn with_header(name: &str, value: &str) -> BasicProperties {
        let (properties, _) = encode(&message()).unwrap();
        let mut headers = properties.headers().clone().unwrap();
        headers.insert(name.into(), long_string(value));
        properties.with_headers(headers)
    }

    #[test]
    fn unknown_formats_and_newer_schemas_are_refused_with_the_reason() {
        let error = decode(&with_header(FORMAT_HEADER, "avro"), Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("unknown serialization format `avro`"),
            "{error}"
        );
        let newer = (SCHEMA_VERSION + 1).to_string();
        let error = decode(&with_header(SCHEMA_VERSION_HEADER, &newer), Vec::new()).unwrap_err();
        assert!(error.to_string().contains("is newer than this build reads"), "{error}");
        let mut headers = with_header(FORMAT_HEADER, "json")
            .headers()
            .clone()
            .unwrap()
            .inner()
            .clone();
        headers.remove(SCHEMA_VERSION_HEADER);
        let properties = BasicProperties::default().with_headers(FieldTable::from(headers));
        assert!(
            decode(&properties, Vec::new()).is_ok(),
            "an absent version is version 1"
        );
    }
}
