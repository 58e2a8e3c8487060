//! A [`QueueMessage`] as a stream entry: its fields, and reading them back
//! from Redis replies.
//!
//! An entry holds `message_id`, `task_id`, `task_name`, `format`,
//! `schema_version` and `payload` (the encoded bytes, binary-safe), and
//! `traceparent` (the W3C trace context) when the message carries one, plus `deliveries` (how many
//! times the message was delivered before this entry was added; absent
//! means 0) on a copy re-added by a nack. A dead-lettered copy adds
//! `reason` and `source_id` (the id of the entry it was moved from).

use std::str::FromStr;

use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Format, Payload, Result, SCHEMA_VERSION, TaskId};
use redis::Value;
use uuid::Uuid;

/// The field holding [`QueueMessage::id`].
pub const MESSAGE_ID: &str = "message_id";
/// The field holding [`QueueMessage::task_id`].
pub const TASK_ID: &str = "task_id";
/// The field holding [`QueueMessage::task_name`].
pub const TASK_NAME: &str = "task_name";
/// The field holding the payload's [`Format`] (`json`, `msgpack`, `protobuf`).
pub const FORMAT: &str = "format";
/// The field holding the schema version of the payload (absent: 1).
pub const SCHEMA_VERSION_FIELD: &str = "schema_version";
/// The field holding the payload's bytes.
pub const PAYLOAD: &str = "payload";
/// The field holding [`QueueMessage::trace_parent`] (W3C `traceparent`).
pub const TRACE_PARENT: &str = "traceparent";
/// The field holding [`QueueMessage::member`] (absent: the task itself).
pub const MEMBER: &str = "member";
/// The field counting the deliveries before this entry was added.
pub const DELIVERIES: &str = "deliveries";
/// The field of a dead-lettered entry saying why it was moved.
pub const REASON: &str = "reason";
/// The field of a dead-lettered entry naming the entry it was moved from.
pub const SOURCE_ID: &str = "source_id";

/// An entry as Redis returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    /// The stream entry id (`1700000000000-0`).
    pub(crate) id: String,
    /// The field-value pairs, in order.
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// The value of `name`, if present.
    pub(crate) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name.as_bytes())
            .map(|(_, value)| value.as_slice())
    }

    /// The `deliveries` field, 0 when absent or unreadable.
    pub(crate) fn prior_deliveries(&self) -> u32 {
        self.field(DELIVERIES)
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    /// Decodes the message, or says what is wrong with the entry.
    pub(crate) fn decode(&self) -> std::result::Result<QueueMessage, String> {
        let text = |name: &str| -> std::result::Result<&str, String> {
            let value = self.field(name).ok_or_else(|| format!("missing field `{name}`"))?;
            std::str::from_utf8(value).map_err(|_| format!("field `{name}` is not UTF-8"))
        };
        let id = Uuid::parse_str(text(MESSAGE_ID)?).map_err(|e| format!("field `{MESSAGE_ID}`: {e}"))?;
        let task_id = TaskId::from_str(text(TASK_ID)?).map_err(|e| format!("field `{TASK_ID}`: {e}"))?;
        let task_name = text(TASK_NAME)?.to_owned();
        let format_name = text(FORMAT)?;
        let format: Format = format_name.parse().map_err(|e| format!("field `{FORMAT}`: {e}"))?;
        if let Some(version) = self.field(SCHEMA_VERSION_FIELD) {
            let version = std::str::from_utf8(version).unwrap_or("?");
            match version.parse::<u32>() {
                Ok(found) if found <= SCHEMA_VERSION => {}
                Ok(found) => {
                    return Err(format!(
                        "field `{SCHEMA_VERSION_FIELD}`: schema version {found} is newer than this build reads \
                         ({SCHEMA_VERSION})"
                    ));
                }
                Err(_) => return Err(format!("field `{SCHEMA_VERSION_FIELD}`: `{version}` is not a version")),
            }
        }
        let bytes = self
            .field(PAYLOAD)
            .ok_or_else(|| format!("missing field `{PAYLOAD}`"))?;
        Ok(QueueMessage {
            id,
            task_id,
            task_name,
            payload: Payload::Encoded {
                format,
                bytes: bytes::Bytes::copy_from_slice(bytes),
            },
            // A trace context is a hint: an unreadable one starts a new trace.
            trace_parent: self
                .field(TRACE_PARENT)
                .and_then(|value| std::str::from_utf8(value).ok())
                .and_then(|value| value.parse().ok()),
            member: match self.field(MEMBER) {
                Some(_) => Some(text(MEMBER)?.to_owned()),
                None => None,
            },
        })
    }
}

/// The field-value pairs of `message`'s entry, in order.
///
/// # Errors
/// [`Error::Unsupported`] for an in-memory payload.
pub(crate) fn fields<'m>(queue: &str, message: &'m QueueMessage) -> Result<Vec<(&'static str, FieldValue<'m>)>> {
    let Payload::Encoded { format, bytes } = &message.payload else {
        return Err(Error::Unsupported(format!(
            "queue `{queue}` on Redis Streams carries encoded payloads only: an in-memory payload cannot \
             leave the process (build the host with a serializer, or encode the payload with a Codec)"
        )));
    };
    let mut fields = vec![
        (MESSAGE_ID, FieldValue::Text(message.id.to_string())),
        (TASK_ID, FieldValue::Text(message.task_id.to_string())),
        (TASK_NAME, FieldValue::Text(message.task_name.clone())),
        (FORMAT, FieldValue::Text(format.name().to_owned())),
        (SCHEMA_VERSION_FIELD, FieldValue::Text(SCHEMA_VERSION.to_string())),
    ];
    if let Some(parent) = &message.trace_parent {
        fields.push((TRACE_PARENT, FieldValue::Text(parent.to_string())));
    }
    if let Some(member) = &message.member {
        fields.push((MEMBER, FieldValue::Text(member.clone())));
    }
    fields.push((PAYLOAD, FieldValue::Bytes(bytes)));
    Ok(fields)
}

/// The value of one field of an entry.
#[derive(Debug)]
pub(crate) enum FieldValue<'m> {
    /// Text.
    Text(String),
    /// Bytes, binary-safe.
    Bytes(&'m [u8]),
}

impl redis::ToRedisArgs for FieldValue<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        match self {
            Self::Text(text) => out.write_arg(text.as_bytes()),
            Self::Bytes(bytes) => out.write_arg(bytes),
        }
    }
}

/// The entries of an `XREADGROUP` reply on one stream (none on a timeout).
///
/// # Errors
/// A description of the reply when it is not shaped like one.
pub(crate) fn parse_read_reply(reply: Value) -> std::result::Result<Vec<Value>, String> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(format!("unexpected stream in an XREADGROUP reply: {other:?}")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(format!("unexpected XREADGROUP reply: {other:?}")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        match stream {
            Value::Array(list) => entries.extend(list),
            Value::Nil => {}
            other => return Err(format!("unexpected entry list in an XREADGROUP reply: {other:?}")),
        }
    }
    Ok(entries)
}

/// One `[id, [field, value, ...]]` entry. Deleted entries (`[id, nil]`)
/// come back with no fields.
///
/// # Errors
/// A description of the value when it has no readable id.
pub(crate) fn parse_entry(value: Value) -> std::result::Result<RawEntry, String> {
    let Value::Array(mut parts) = value else {
        return Err(format!("unexpected stream entry: {value:?}"));
    };
    if parts.len() != 2 {
        return Err(format!("unexpected stream entry of {} parts", parts.len()));
    }
    let fields = parts.pop().unwrap_or(Value::Nil);
    let id = parts
        .pop()
        .and_then(into_bytes)
        .and_then(|id| String::from_utf8(id).ok())
        .ok_or("a stream entry without a readable id")?;
    let fields = match fields {
        Value::Array(values) => {
            let mut values = values.into_iter().map(into_bytes);
            let mut pairs = Vec::new();
            while let Some(field) = values.next() {
                let value = values.next().flatten();
                if let (Some(field), Some(value)) = (field, value) {
                    pairs.push((field, value));
                }
            }
            pairs
        }
        Value::Map(map) => map
            .into_iter()
            .filter_map(|(field, value)| Some((into_bytes(field)?, into_bytes(value)?)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(RawEntry { id, fields })
}

/// The bytes of a string-like value (integers as their decimal text).
pub(crate) fn into_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

/// An integer-like value.
pub(crate) fn into_u64(value: Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(n).ok(),
        other => std::str::from_utf8(&into_bytes(other)?).ok()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use dtask_core::Codec;

    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    fn entry_of(message: &QueueMessage) -> RawEntry {
        let fields = fields("q", message)
            .unwrap()
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    FieldValue::Text(text) => text.into_bytes(),
                    FieldValue::Bytes(bytes) => bytes.to_vec(),
                };
                (name.as_bytes().to_vec(), value)
            })
            .collect();
        RawEntry {
            id: "1-0".into(),
            fields,
        }
    }

    #[test]
    fn a_message_survives_the_round_trip_through_fields() {
        let payload = Payload::Encoded {
            format: Format::Json,
            bytes: bytes::Bytes::from_static(b"\x00\xff{\"a\":1}\r\n"),
        };
        let message = QueueMessage::new(TaskId::new(), "Résumé", payload);
        let entry = entry_of(&message);
        let decoded = entry.decode().unwrap();
        assert_eq!(decoded.id, message.id);
        assert_eq!(decoded.task_id, message.task_id);
        assert_eq!(decoded.task_name, "Résumé");
        assert_eq!(
            decoded.payload.encoded().unwrap().1,
            message.payload.encoded().unwrap().1
        );
        assert_eq!(entry.prior_deliveries(), 0);
    }

    #[test]
    fn in_memory_payloads_are_refused() {
        let message = QueueMessage::new(TaskId::new(), "T", Payload::in_memory(1u8));
        let error = fields("jobs", &message).unwrap_err();
        assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
        assert!(error.to_string().contains("in-memory payload"), "{error}");
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let message = QueueMessage::new(TaskId::new(), "T", Codec::default().encode(&1).unwrap());
        let mut entry = entry_of(&message);
        entry.fields.retain(|(field, _)| field != TASK_ID.as_bytes());
        assert_eq!(entry.decode().unwrap_err(), "missing field `task_id`");

        let mut entry = entry_of(&message);
        entry.fields[0].1 = b"not-a-uuid".to_vec();
        assert!(entry.decode().unwrap_err().starts_with("field `message_id`"));

        let mut entry = entry_of(&message);
        for (field, value) in &mut entry.fields {
            if field == FORMAT.as_bytes() {
                *value = b"yaml".to_vec();
            }
        }
        assert_eq!(
            entry.decode().unwrap_err(),
            "field `format`: unknown serialization format `yaml`: expected json, msgpack or protobuf"
        );
        let mut newer = entry_of(&message);
        for (field, value) in &mut newer.fields {
            if field == SCHEMA_VERSION_FIELD.as_bytes() {
                *value = (SCHEMA_VERSION + 1).to_string().into_bytes();
            }
        }
        assert!(newer.decode().unwrap_err().contains("is newer than this build reads"));
        entry.fields.push((DELIVERIES.into(), b"3".to_vec()));
        assert_eq!(entry.prior_deliveries(), 3);
    }

    #[test]
    fn read_replies_are_parsed_in_both_protocols() {
        let entry = Value::Array(vec![bulk(b"1-0"), Value::Array(vec![bulk(b"f"), bulk(b"\x00v")])]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk(b"key"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(bulk(b"key"), Value::Array(vec![entry.clone()]))]);
        for reply in [resp2, resp3] {
            let entries = parse_read_reply(reply).unwrap();
            let parsed = parse_entry(entries[0].clone()).unwrap();
            assert_eq!(parsed.id, "1-0");
            assert_eq!(parsed.field("f"), Some(&b"\x00v"[..]));
        }
        assert!(parse_read_reply(Value::Nil).unwrap().is_empty());
        assert!(parse_read_reply(Value::Int(3)).is_err());
        let deleted = parse_entry(Value::Array(vec![bulk(b"2-0"), Value::Nil])).unwrap();
        assert!(deleted.fields.is_empty());
        assert!(parse_entry(Value::Int(1)).is_err());
    }
}
