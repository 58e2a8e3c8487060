//! How a [`QueueMessage`] is laid out as an AMQP 1.0 message, and read back.
//!
//! - **header**: `durable` true.
//! - **properties**: `message-id` the dtask message id (a string: Service
//!   Bus detects duplicates by it), `content-type` after the format
//!   (`application/json`, `application/msgpack`, `application/x-protobuf`).
//! - **application-properties**, all strings, the same names as
//!   `dtask-amqp`'s headers: `dtask-message-id`, `dtask-task-id`,
//!   `dtask-task-name`, `dtask-format` (`json`, `msgpack`, `protobuf`),
//!   `dtask-schema-version`, and when the message has them `traceparent`
//!   and `dtask-member`. A dead letter this crate writes also carries
//!   `dtask-dead-letter-reason` and `dtask-deliveries`.
//! - **message-annotations**: `x-opt-dtask-deliveries` (ulong) on a copy
//!   republished to hand a delivery back (RabbitMQ): how many times the
//!   message had been delivered.
//! - **body**: one `data` section, the payload's bytes as they are. A
//!   message whose body is an `amqp-value` holding binary or a string (what
//!   some clients send for bytes) is read too.

use bytes::Bytes;
use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Format, Payload, Result, SCHEMA_VERSION, TaskId};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Header, Message, MessageAnnotations, MessageId, Properties,
    annotations::OwnedKey,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use uuid::Uuid;

/// The application property holding [`QueueMessage::id`].
pub const MESSAGE_ID_PROPERTY: &str = "dtask-message-id";
/// The application property holding [`QueueMessage::task_id`].
pub const TASK_ID_PROPERTY: &str = "dtask-task-id";
/// The application property holding [`QueueMessage::task_name`].
pub const TASK_NAME_PROPERTY: &str = "dtask-task-name";
/// The application property holding the payload's [`Format`].
pub const FORMAT_PROPERTY: &str = "dtask-format";
/// The application property holding the payload's schema version (absent: 1).
pub const SCHEMA_VERSION_PROPERTY: &str = "dtask-schema-version";
/// The application property holding [`QueueMessage::trace_parent`].
pub const TRACE_PARENT_PROPERTY: &str = "traceparent";
/// The application property holding [`QueueMessage::member`].
pub const MEMBER_PROPERTY: &str = "dtask-member";
/// The application property of a dead letter written by this crate: why.
pub const DEAD_LETTER_REASON_PROPERTY: &str = "dtask-dead-letter-reason";
/// The application property of a dead letter written by this crate: how
/// many times the message had been delivered.
pub const DEAD_LETTER_DELIVERIES_PROPERTY: &str = "dtask-deliveries";
/// The message annotation of a copy republished to hand a delivery back:
/// how many times the message had been delivered.
pub const DELIVERIES_ANNOTATION: &str = "x-opt-dtask-deliveries";

/// Service Bus's application property on a dead letter: why.
pub(crate) const SERVICE_BUS_REASON: &str = "DeadLetterReason";
/// Service Bus's application property on a dead letter: the details.
pub(crate) const SERVICE_BUS_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// The body type messages are read as.
pub(crate) type Received = Message<Body<Value>>;

/// The AMQP message of `message`.
///
/// # Errors
/// [`Error::Unsupported`] for a [`Payload::InMemory`], which cannot leave
/// the process.
pub(crate) fn encode(message: &QueueMessage) -> Result<Message<Data>> {
    let (format, bytes) = match &message.payload {
        Payload::Encoded { format, bytes } => (*format, bytes.clone()),
        Payload::InMemory(_) => {
            return Err(Error::Unsupported(
                "an AMQP broker carries bytes, not in-memory values: publish a Payload::Encoded \
                 (build the host with a serializer, or serialize_in_process(true))"
                    .into(),
            ));
        }
    };
    let id = message.id.to_string();
    let mut properties = vec![
        (MESSAGE_ID_PROPERTY, id.clone()),
        (TASK_ID_PROPERTY, message.task_id.to_string()),
        (TASK_NAME_PROPERTY, message.task_name.clone()),
        (FORMAT_PROPERTY, format.name().to_owned()),
        (SCHEMA_VERSION_PROPERTY, SCHEMA_VERSION.to_string()),
    ];
    if let Some(parent) = &message.trace_parent {
        properties.push((TRACE_PARENT_PROPERTY, parent.to_string()));
    }
    if let Some(member) = &message.member {
        properties.push((MEMBER_PROPERTY, member.clone()));
    }
    let mut application = ApplicationProperties::default();
    for (name, value) in properties {
        application.0.insert(name.to_owned(), SimpleValue::String(value));
    }
    Ok(Message::builder()
        .header(Header {
            durable: true,
            ..Header::default()
        })
        .properties(Properties {
            message_id: Some(MessageId::String(id)),
            content_type: Some(Symbol::from(format.content_type())),
            ..Properties::default()
        })
        .application_properties(application)
        .data(Data(Binary::from(bytes.to_vec())))
        .build())
}

/// `received` made sendable again (its body as one data section), with
/// its delivery header reset, for a copy: a dead letter or a hand-back.
pub(crate) fn copy(received: &Received) -> Message<Data> {
    Message {
        header: Some(Header {
            durable: true,
            ..Header::default()
        }),
        delivery_annotations: None,
        message_annotations: received.message_annotations.clone(),
        properties: received.properties.clone(),
        application_properties: received.application_properties.clone(),
        body: Data(Binary::from(body_bytes(&received.body).unwrap_or_default())),
        footer: None,
    }
}

/// Sets the application property `name` of `message` to `value`.
pub(crate) fn set_property(message: &mut Message<Data>, name: &str, value: String) {
    message
        .application_properties
        .get_or_insert_with(ApplicationProperties::default)
        .0
        .insert(name.to_owned(), SimpleValue::String(value));
}

/// Sets the [`DELIVERIES_ANNOTATION`] of `message` to `deliveries`.
pub(crate) fn set_deliveries(message: &mut Message<Data>, deliveries: u32) {
    message
        .message_annotations
        .get_or_insert_with(MessageAnnotations::default)
        .0
        .insert(
            OwnedKey::Symbol(Symbol::from(DELIVERIES_ANNOTATION)),
            Value::Ulong(u64::from(deliveries)),
        );
}

/// The payload bytes of a body.
pub(crate) fn body_bytes(body: &Body<Value>) -> Option<Vec<u8>> {
    match body {
        Body::Data(batch) => Some(batch.iter().flat_map(|Data(bytes)| bytes.iter().copied()).collect()),
        Body::Value(AmqpValue(Value::Binary(bytes))) => Some(bytes.to_vec()),
        Body::Value(AmqpValue(Value::String(text))) => Some(text.clone().into_bytes()),
        Body::Empty => Some(Vec::new()),
        _ => None,
    }
}

/// How the delivery count is told (see [`delivery_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redelivery {
    /// The broker's `delivery-count` header counts earlier attempts
    /// (Service Bus, generic brokers).
    HeaderCount,
    /// The broker leaves `delivery-count` at 0 and says `first-acquirer`
    /// false on a redelivery (RabbitMQ 3.x): one more than what the copy
    /// carries.
    FirstAcquirer,
}

/// How many times `received` has been delivered, this time included: one
/// more than the larger of the broker's `delivery-count` and the count a
/// republished copy carries (plus one when, with
/// [`Redelivery::FirstAcquirer`], the broker says it was delivered before).
pub(crate) fn delivery_count(received: &Received, redelivery: Redelivery) -> u32 {
    let header_count = received.header.as_ref().map_or(0, |h| h.delivery_count);
    let carried = deliveries_annotation(received).unwrap_or(0);
    let before = match (redelivery, &received.header) {
        (Redelivery::FirstAcquirer, Some(header)) if !header.first_acquirer => carried.saturating_add(1),
        _ => carried,
    };
    header_count.max(before).saturating_add(1)
}

fn deliveries_annotation(received: &Received) -> Option<u32> {
    let annotations = received.message_annotations.as_ref()?;
    let value = annotations
        .0
        .get(&OwnedKey::Symbol(Symbol::from(DELIVERIES_ANNOTATION)))?;
    let count = match value {
        Value::Ulong(n) => *n,
        Value::Uint(n) => u64::from(*n),
        Value::Long(n) => u64::try_from(*n).ok()?,
        Value::Int(n) => u64::try_from(*n).ok()?,
        _ => return None,
    };
    Some(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The string application property `name` of `received`.
pub(crate) fn property<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    match received.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(value) => Some(value),
        _ => None,
    }
}

/// The message id of `received`, as text.
pub(crate) fn message_id(received: &Received) -> Option<String> {
    match received.properties.as_ref()?.message_id.as_ref()? {
        MessageId::String(id) => Some(id.clone()),
        MessageId::Uuid(id) => Some(Uuid::from_bytes(id.clone().into_inner()).to_string()),
        MessageId::Ulong(id) => Some(id.to_string()),
        MessageId::Binary(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
    }
    .or_else(|| property(received, MESSAGE_ID_PROPERTY).map(str::to_owned))
}

/// The dtask message `received` carries.
///
/// # Errors
/// [`Error::Invalid`] when a property is missing or malformed, or the body
/// is not bytes: the message was not published by dtask.
pub(crate) fn decode(received: &Received) -> Result<QueueMessage> {
    let id: Uuid = parse(received, MESSAGE_ID_PROPERTY)?;
    let task_id: TaskId = parse(received, TASK_ID_PROPERTY)?;
    let task_name = text(received, TASK_NAME_PROPERTY)?.to_owned();
    let format: Format = text(received, FORMAT_PROPERTY)?
        .parse()
        .map_err(|e: dtask_core::codec::UnknownFormat| malformed(FORMAT_PROPERTY, &e.to_string()))?;
    check_schema_version(received)?;
    let bytes = body_bytes(&received.body)
        .ok_or_else(|| Error::invalid("message", "the body is neither data nor binary (not a dtask message?)"))?;
    Ok(QueueMessage {
        id,
        task_id,
        task_name,
        payload: Payload::Encoded {
            format,
            bytes: Bytes::from(bytes),
        },
        // A trace context is a hint: an unreadable one starts a new trace.
        trace_parent: property(received, TRACE_PARENT_PROPERTY).and_then(|t| t.parse().ok()),
        member: match received
            .application_properties
            .as_ref()
            .and_then(|p| p.0.get(MEMBER_PROPERTY))
        {
            None => None,
            Some(_) => Some(text(received, MEMBER_PROPERTY)?.to_owned()),
        },
    })
}

/// Accepts a message written with this build's schema or an older one.
fn check_schema_version(received: &Received) -> Result<()> {
    let present = received
        .application_properties
        .as_ref()
        .is_some_and(|p| p.0.contains_key(SCHEMA_VERSION_PROPERTY));
    if !present {
        return Ok(());
    }
    let version = text(received, SCHEMA_VERSION_PROPERTY)?;
    match version.parse::<u32>() {
        Ok(found) if found <= SCHEMA_VERSION => Ok(()),
        Ok(found) => Err(malformed(
            SCHEMA_VERSION_PROPERTY,
            &format!("schema version {found} is newer than this build reads ({SCHEMA_VERSION})"),
        )),
        Err(_) => Err(malformed(
            SCHEMA_VERSION_PROPERTY,
            &format!("`{version}` is not a version"),
        )),
    }
}

fn text<'a>(received: &'a Received, name: &str) -> Result<&'a str> {
    match received.application_properties.as_ref().and_then(|p| p.0.get(name)) {
        Some(SimpleValue::String(value)) => Ok(value),
        Some(_) => Err(malformed(name, "not a string")),
        None => Err(malformed(name, "missing")),
    }
}

fn parse<T: std::str::FromStr>(received: &Received, name: &str) -> Result<T> {
    let value = text(received, name)?;
    value
        .parse()
        .map_err(|_| malformed(name, &format!("`{value}` is not a UUID")))
}

fn malformed(property: &str, reason: &str) -> Error {
    Error::invalid(
        "message",
        format!("application property `{property}`: {reason} (not a dtask message?)"),
    )
}

#[cfg(test)]
mod tests {
    use dtask_core::Codec;
    use dtask_core::trace::TraceParent;

    use super::*;

    fn message() -> QueueMessage {
        let payload = Codec::new(Format::Json).encode(&serde_json::json!({"n": 1})).unwrap();
        QueueMessage::new(TaskId::new(), "Resize", payload)
            .with_trace_parent(Some(TraceParent::random()))
            .for_member("Thumb")
    }

    /// What a receiver sees of a sent message (the body as a data batch).
    fn as_received(sent: Message<Data>) -> Received {
        let Message {
            header,
            delivery_annotations,
            message_annotations,
            properties,
            application_properties,
            body,
            footer,
        } = sent;
        Message {
            header,
            delivery_annotations,
            message_annotations,
            properties,
            application_properties,
            body: Body::Data(vec![body].into()),
            footer,
        }
    }

    #[test]
    fn a_message_survives_the_wire() {
        let sent = message();
        let encoded = encode(&sent).unwrap();
        assert!(encoded.header.as_ref().unwrap().durable);
        let content_type = encoded.properties.as_ref().unwrap().content_type.clone();
        assert_eq!(content_type, Some(Symbol::from("application/json")));
        let mut received = as_received(encoded);
        // RabbitMQ says so on a first delivery.
        received.header.as_mut().unwrap().first_acquirer = true;
        let decoded = decode(&received).unwrap();
        assert_eq!(
            (
                decoded.id,
                decoded.task_id,
                &decoded.task_name,
                &decoded.trace_parent,
                &decoded.member
            ),
            (sent.id, sent.task_id, &sent.task_name, &sent.trace_parent, &sent.member)
        );
        assert_eq!(decoded.payload.encoded().unwrap(), sent.payload.encoded().unwrap());
        assert_eq!(message_id(&received), Some(sent.id.to_string()));
        assert_eq!(delivery_count(&received, Redelivery::FirstAcquirer), 1);
    }

    #[test]
    fn the_delivery_count_takes_the_larger_of_header_and_annotation() {
        let mut copy = encode(&message()).unwrap();
        set_deliveries(&mut copy, 3);
        let mut received = as_received(copy);
        received.header.as_mut().unwrap().first_acquirer = true;
        assert_eq!(delivery_count(&received, Redelivery::FirstAcquirer), 4);
        received.header.as_mut().unwrap().first_acquirer = false;
        assert_eq!(delivery_count(&received, Redelivery::FirstAcquirer), 5);
        assert_eq!(delivery_count(&received, Redelivery::HeaderCount), 4);
        received.header.as_mut().unwrap().delivery_count = 7;
        assert_eq!(delivery_count(&received, Redelivery::HeaderCount), 8);
    }

    #[test]
    fn in_memory_payloads_are_refused() {
        let message = QueueMessage::new(TaskId::new(), "Resize", Payload::in_memory(1u8));
        assert!(matches!(encode(&message), Err(Error::Unsupported(_))));
    }

    #[test]
    fn foreign_messages_and_newer_schemas_are_named_as_such() {
        let foreign: Received = Message::builder().body(Body::Empty).build();
        let error = decode(&foreign).unwrap_err();
        assert!(error.to_string().contains("dtask-message-id"), "{error}");
        let mut newer = encode(&message()).unwrap();
        set_property(&mut newer, SCHEMA_VERSION_PROPERTY, (SCHEMA_VERSION + 1).to_string());
        let error = decode(&as_received(newer)).unwrap_err();
        assert!(error.to_string().contains("is newer than this build reads"), "{error}");
    }

    #[test]
    fn a_binary_value_body_is_read_as_bytes() {
        let mut received = as_received(encode(&message()).unwrap());
        received.body = Body::Value(AmqpValue(Value::Binary(Binary::from(b"{\"n\":1}".to_vec()))));
        let decoded = decode(&received).unwrap();
        assert_eq!(&decoded.payload.encoded().unwrap().1[..], b"{\"n\":1}");
    }
}
