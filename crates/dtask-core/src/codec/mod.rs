//! The saga state serializers: how worker messages, snapshots and step data
//! become bytes, and the [`Payload`] that carries them without serializing
//! in InProcess mode.
//!
//! Three formats ship ([`Format`]): JSON (the default, readable), MessagePack
//! (smaller and faster, named fields) and Protobuf (the schema in the
//! `dtask-proto` crate, for readers in other languages). Every encoded
//! payload says its format, and every saga state carries a
//! [`SCHEMA_VERSION`], so a reader never guesses.

mod json;
mod msgpack;
mod payload;
mod protobuf;
mod seal;
mod snapshot;

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::TaskProgress;
use crate::task::Task;

pub use crate::format::{Format, UnknownFormat};
pub use json::JsonSerializer;
pub use msgpack::MessagePackSerializer;
pub use payload::Payload;
pub use protobuf::{NestedEncoding, ProtobufSerializer};
pub(crate) use seal::unseal;
pub use seal::{KeyRing, KeyRingError, MAX_KEY_ID_LEN, SealError};
pub use snapshot::{SagaSnapshot, ShapeMismatch};

/// The version of the saga state schema this build writes, and the newest it
/// reads. Written into every snapshot (and, by the remote queues, beside
/// every message); a reader refuses a newer one with [`Error::Codec`].
pub const SCHEMA_VERSION: u32 = dtask_proto::SCHEMA_VERSION;

/// Turns typed values into bytes and back.
///
/// [`serialize`](Self::serialize) and [`deserialize`](Self::deserialize)
/// take any serde value (a task's request, step data, response). The
/// framework's own wire objects, the saga state and the progress snapshot,
/// go through [`serialize_state`](Self::serialize_state) and
/// [`serialize_progress`](Self::serialize_progress), which a schema-bound
/// format (Protobuf) writes as its typed messages; the other formats use
/// serde for them too. [`Codec`] picks an implementation at run time.
pub trait SagaStateSerializer: Send + Sync + fmt::Debug + 'static {
    /// The format this serializer writes.
    fn format(&self) -> Format;

    /// Encodes `value`.
    ///
    /// # Errors
    /// [`Error::Codec`] when the value cannot be represented.
    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes>;

    /// Decodes a `T` from `bytes`.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not a valid `T`.
    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;

    /// Encodes a saga state (the body of a worker message, a snapshot).
    ///
    /// # Errors
    /// [`Error::Codec`] when a part cannot be represented.
    fn serialize_state<T: Task>(&self, state: &SagaSnapshot<T>) -> Result<Bytes> {
        self.serialize(state)
    }

    /// Decodes a saga state, refusing one written with a newer
    /// [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not a saga state of `T`.
    fn deserialize_state<T: Task>(&self, bytes: &[u8]) -> Result<SagaSnapshot<T>> {
        match self.deserialize::<SagaSnapshot<T>>(bytes) {
            Ok(state) => {
                check_schema_version(self.format(), state.schema_version)?;
                Ok(state)
            }
            Err(error) => {
                // A newer schema may not decode as this one at all: name the
                // version rather than the first field that differs.
                if let Ok(probe) = self.deserialize::<SchemaProbe>(bytes) {
                    check_schema_version(self.format(), probe.schema_version)?;
                }
                Err(error)
            }
        }
    }

    /// Encodes a progress snapshot.
    ///
    /// # Errors
    /// [`Error::Codec`] when it cannot be represented.
    fn serialize_progress(&self, progress: &TaskProgress) -> Result<Bytes> {
        self.serialize(progress)
    }

    /// Decodes a progress snapshot.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not one.
    fn deserialize_progress(&self, bytes: &[u8]) -> Result<TaskProgress> {
        self.deserialize(bytes)
    }
}

/// The schema version of a saga state that did not decode.
#[derive(Deserialize)]
struct SchemaProbe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
}

/// A saga state written with a schema newer than this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the saga state was written with schema version {found}; this build reads versions up to {SCHEMA_VERSION}")]
pub struct NewerSchema {
    /// The version the state was written with.
    pub found: u32,
}

pub(crate) fn check_schema_version(format: Format, found: u32) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(codec_error(format, NewerSchema { found }));
    }
    Ok(())
}

pub(crate) fn codec_error(format: Format, source: impl Into<crate::error::BoxError>) -> Error {
    Error::Codec {
        format,
        source: source.into(),
    }
}

/// A serializer chosen at run time from a [`Format`].
///
/// ```
/// use dtask_core::{Codec, Format, SagaStateSerializer};
///
/// let codec = Codec::new(Format::MessagePack);
/// let bytes = codec.serialize(&vec![1u32, 2, 3]).unwrap();
/// assert_eq!(codec.deserialize::<Vec<u32>>(&bytes).unwrap(), [1, 2, 3]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    format: Format,
}

macro_rules! dispatch {
    ($format:expr, $serializer:ident => $call:expr) => {
        match $format {
            Format::Json => {
                let $serializer = JsonSerializer;
                $call
            }
            Format::MessagePack => {
                let $serializer = MessagePackSerializer;
                $call
            }
            Format::Protobuf => {
                let $serializer = ProtobufSerializer::default();
                $call
            }
        }
    };
}

impl Codec {
    /// The codec for `format`.
    pub const fn new(format: Format) -> Self {
        Self { format }
    }

    /// The format it writes.
    pub const fn format(self) -> Format {
        self.format
    }

    /// Encodes any serde value into a [`Payload::Encoded`].
    ///
    /// # Errors
    /// [`Error::Codec`] when the value cannot be represented.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Payload> {
        let bytes = self.serialize(value)?;
        Ok(Payload::Encoded {
            format: self.format,
            bytes,
        })
    }

    /// Encodes a saga state into a [`Payload::Encoded`].
    ///
    /// # Errors
    /// [`Error::Codec`] when a part cannot be represented.
    pub fn encode_state<T: Task>(self, state: &SagaSnapshot<T>) -> Result<Payload> {
        let bytes = self.serialize_state(state)?;
        Ok(Payload::Encoded {
            format: self.format,
            bytes,
        })
    }
}

impl SagaStateSerializer for Codec {
    fn format(&self) -> Format {
        self.format
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        dispatch!(self.format, s => s.serialize(value))
    }

    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        dispatch!(self.format, s => s.deserialize(bytes))
    }

    fn serialize_state<T: Task>(&self, state: &SagaSnapshot<T>) -> Result<Bytes> {
        dispatch!(self.format, s => s.serialize_state(state))
    }

    fn deserialize_state<T: Task>(&self, bytes: &[u8]) -> Result<SagaSnapshot<T>> {
        dispatch!(self.format, s => s.deserialize_state(bytes))
    }

    fn serialize_progress(&self, progress: &TaskProgress) -> Result<Bytes> {
        dispatch!(self.format, s => s.serialize_progress(progress))
    }

    fn deserialize_progress(&self, bytes: &[u8]) -> Result<TaskProgress> {
        dispatch!(self.format, s => s.deserialize_progress(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_a_codec_error_that_names_both_versions() {
        let error = check_schema_version(Format::Json, SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(
            error,
            Error::Codec {
                format: Format::Json,
                ..
            }
        ));
        let text = error.to_string();
        assert!(
            text.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{text}"
        );
        assert!(check_schema_version(Format::Json, SCHEMA_VERSION).is_ok());
    }
}
