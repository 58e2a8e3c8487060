//! The saga state serializer: how worker messages and snapshots become
//! bytes, and the [`Payload`] that carries them without serializing in
//! InProcess mode.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A wire format for worker messages, step data and snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Format {
    /// JSON: human-readable, the default.
    #[default]
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
        })
    }
}

/// Turns typed values into bytes and back.
///
/// The one implementation today is [`JsonSerializer`]; [`Codec`] picks an
/// implementation at run time from a [`Format`].
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
}

/// JSON through `serde_json`: field names as the types declare them (the
/// framework's own types use camelCase), absent optional fields skipped,
/// enums as strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl SagaStateSerializer for JsonSerializer {
    fn format(&self) -> Format {
        Format::Json
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| codec_error(Format::Json, e))
    }

    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| codec_error(Format::Json, e))
    }
}

fn codec_error(format: Format, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Codec {
        format,
        source: Box::new(source),
    }
}

/// A serializer chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    format: Format,
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

    /// Encodes `value` into a [`Payload::Encoded`].
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
}

impl SagaStateSerializer for Codec {
    fn format(&self) -> Format {
        self.format
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        match self.format {
            Format::Json => JsonSerializer.serialize(value),
        }
    }

    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        match self.format {
            Format::Json => JsonSerializer.deserialize(bytes),
        }
    }
}

/// The body of a queue message or a stored snapshot.
///
/// Remote backends carry [`Payload::Encoded`] bytes. In InProcess mode the
/// host hands the typed value over as [`Payload::InMemory`], so nothing is
/// serialized: the design's promise of a zero-cost hand-off. A host built
/// with `serialize_in_process(true)` encodes anyway, to catch state that
/// would not survive a real broker.
#[derive(Clone)]
pub enum Payload {
    /// Bytes in a known format.
    Encoded {
        /// The format of `bytes`.
        format: Format,
        /// The encoded value.
        bytes: Bytes,
    },
    /// A typed value shared in memory, never serialized.
    InMemory(Arc<dyn Any + Send + Sync>),
}

impl Payload {
    /// Wraps a value for an in-memory hand-off.
    pub fn in_memory<T: Any + Send + Sync>(value: T) -> Self {
        Self::InMemory(Arc::new(value))
    }

    /// The encoded bytes and their format, or [`Error::Unsupported`] for an
    /// in-memory payload (which a remote backend cannot carry).
    ///
    /// # Errors
    /// As above.
    pub fn encoded(&self) -> Result<(Format, &Bytes)> {
        match self {
            Self::Encoded { format, bytes } => Ok((*format, bytes)),
            Self::InMemory(_) => Err(Error::Unsupported(
                "an in-memory payload cannot leave the process: configure a serializer".into(),
            )),
        }
    }

    /// Decodes (or, in memory, downcasts and clones) the payload as a `T`.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not a `T`; [`Error::Invalid`]
    /// when an in-memory payload holds another type.
    pub fn decode<T: DeserializeOwned + Clone + Any>(&self) -> Result<T> {
        match self {
            Self::Encoded { format, bytes } => Codec::new(*format).deserialize(bytes),
            Self::InMemory(value) => value.downcast_ref::<T>().cloned().ok_or_else(|| {
                Error::invalid(
                    "payload",
                    format!("expected an in-memory {}", std::any::type_name::<T>()),
                )
            }),
        }
    }

    /// The payload's size in bytes when encoded, `None` in memory.
    pub fn encoded_len(&self) -> Option<usize> {
        match self {
            Self::Encoded { bytes, .. } => Some(bytes.len()),
            Self::InMemory(_) => None,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encoded { format, bytes } => f
                .debug_struct("Encoded")
                .field("format", format)
                .field("len", &bytes.len())
                .finish(),
            Self::InMemory(_) => f.write_str("InMemory(..)"),
        }
    }
}
