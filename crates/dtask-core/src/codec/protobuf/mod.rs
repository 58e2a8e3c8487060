//! Protocol Buffers through `prost`, with the schema of `dtask-proto`.

mod convert;

use bytes::Bytes;
use dtask_proto::prost::Message;
use dtask_proto::v1;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Format, SagaStateSerializer, check_schema_version, codec_error};
use crate::codec::SagaSnapshot;
use crate::error::{Error, Result};
use crate::progress::TaskProgress;
use crate::task::Task;

use convert::Malformed;

/// How a [`ProtobufSerializer`] encodes what the schema does not type: a
/// task's request, step data and response (`dtask.v1.Nested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NestedEncoding {
    /// JSON: readable by any language with nothing but its standard library.
    #[default]
    Json,
    /// MessagePack with named fields: smaller and faster.
    MessagePack,
}

/// Protocol Buffers through `prost`.
///
/// The framework's own wire objects are typed messages of the schema in the
/// `dtask-proto` crate: the saga state is a `dtask.v1.SagaState` (also the
/// body of a worker message) and the progress snapshot a
/// `dtask.v1.TaskProgress`. A task's own types (request, step data,
/// response) are declared by the task in Rust, with serde; they travel as a
/// `dtask.v1.Nested` value in the [`NestedEncoding`] the message names, so
/// a reader in another language decodes them with a JSON (or MessagePack)
/// library. [`serialize`](SagaStateSerializer::serialize) of any other
/// value writes a `Nested` too.
///
/// ```
/// use dtask_core::codec::ProtobufSerializer;
/// use dtask_core::SagaStateSerializer;
///
/// let serializer = ProtobufSerializer::default();
/// let bytes = serializer.serialize(&("zip", 3u8)).unwrap();
/// assert_eq!(serializer.deserialize::<(String, u8)>(&bytes).unwrap(), ("zip".into(), 3));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtobufSerializer {
    nested: NestedEncoding,
}

impl ProtobufSerializer {
    /// A serializer that writes nested values in `nested`. (It reads
    /// either: the encoding is written beside each value.)
    pub const fn with_nested(nested: NestedEncoding) -> Self {
        Self { nested }
    }

    fn nest<T: Serialize + ?Sized>(&self, value: &T) -> Result<v1::Nested> {
        let (encoding, value) = match self.nested {
            NestedEncoding::Json => (v1::Encoding::Json, serde_json::to_vec(value).map_err(protobuf_error)?),
            NestedEncoding::MessagePack => (
                v1::Encoding::Msgpack,
                rmp_serde::to_vec_named(value).map_err(protobuf_error)?,
            ),
        };
        Ok(v1::Nested {
            encoding: encoding.into(),
            value,
        })
    }
}

/// Decodes a nested value in whichever encoding it names.
pub(crate) fn unnest<T: DeserializeOwned>(nested: Option<&v1::Nested>, field: &str) -> Result<T> {
    let nested = nested.ok_or_else(|| protobuf_error(Malformed::missing(field)))?;
    match v1::Encoding::try_from(nested.encoding) {
        Ok(v1::Encoding::Json) => serde_json::from_slice(&nested.value).map_err(protobuf_error),
        Ok(v1::Encoding::Msgpack) => rmp_serde::from_slice(&nested.value).map_err(protobuf_error),
        Ok(v1::Encoding::Unspecified) | Err(_) => Err(protobuf_error(Malformed::new(format!(
            "`{field}` has unknown nested encoding {}",
            nested.encoding
        )))),
    }
}

fn protobuf_error(source: impl Into<crate::error::BoxError>) -> Error {
    codec_error(Format::Protobuf, source)
}

fn decode_message<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(protobuf_error)
}

impl SagaStateSerializer for ProtobufSerializer {
    fn format(&self) -> Format {
        Format::Protobuf
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        Ok(Bytes::from(self.nest(value)?.encode_to_vec()))
    }

    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let nested: v1::Nested = decode_message(bytes)?;
        unnest(Some(&nested), "value")
    }

    fn serialize_state<T: Task>(&self, state: &SagaSnapshot<T>) -> Result<Bytes> {
        let message = v1::SagaState {
            schema_version: state.schema_version,
            request: Some(self.nest(&*state.request)?),
            data: Some(self.nest(&state.data)?),
            progress: Some(convert::progress_to_proto(&state.progress)),
            response: state.response.as_ref().map(|r| self.nest(r)).transpose()?,
            deadline: Some(convert::timestamp(state.deadline)),
        };
        Ok(Bytes::from(message.encode_to_vec()))
    }

    fn deserialize_state<T: Task>(&self, bytes: &[u8]) -> Result<SagaSnapshot<T>> {
        let message: v1::SagaState = decode_message(bytes)?;
        check_schema_version(Format::Protobuf, message.schema_version)?;
        let progress = message
            .progress
            .as_ref()
            .ok_or_else(|| protobuf_error(Malformed::missing("progress")))?;
        Ok(SagaSnapshot {
            schema_version: message.schema_version,
            request: std::sync::Arc::new(unnest(message.request.as_ref(), "request")?),
            data: unnest(message.data.as_ref(), "data")?,
            progress: convert::progress_from_proto(progress).map_err(protobuf_error)?,
            response: match &message.response {
                Some(nested) => Some(unnest(Some(nested), "response")?),
                None => None,
            },
            deadline: convert::required_time(message.deadline.as_ref(), "deadline").map_err(protobuf_error)?,
        })
    }

    fn serialize_progress(&self, progress: &TaskProgress) -> Result<Bytes> {
        Ok(Bytes::from(convert::progress_to_proto(progress).encode_to_vec()))
    }

    fn deserialize_progress(&self, bytes: &[u8]) -> Result<TaskProgress> {
        let message: v1::TaskProgress = decode_message(bytes)?;
        convert::progress_from_proto(&message).map_err(protobuf_error)
    }
}
