//! [`Payload`]: encoded bytes, or a typed value that never leaves memory.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::SagaSnapshot;
use super::{Codec, Format, SagaStateSerializer, codec_error};
use crate::error::{Error, Result};
use crate::task::Task;

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

    /// Decodes any serde value (or, in memory, downcasts and clones it).
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

    /// Decodes the saga state of a `T` with the serializer of the payload's
    /// own format (or, in memory, downcasts and clones it).
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not a saga state of `T`, were
    /// written with a newer schema, or hold another shape of `T` (another
    /// name or step list: a [`ShapeMismatch`](super::ShapeMismatch));
    /// [`Error::Invalid`] when an in-memory payload holds another type.
    pub fn decode_state<T: Task>(&self) -> Result<SagaSnapshot<T>> {
        match self {
            Self::Encoded { format, bytes } => {
                let state: SagaSnapshot<T> = Codec::new(*format).deserialize_state(bytes)?;
                state.check_shape().map_err(|mismatch| codec_error(*format, mismatch))?;
                Ok(state)
            }
            Self::InMemory(value) => value.downcast_ref::<SagaSnapshot<T>>().cloned().ok_or_else(|| {
                Error::invalid(
                    "payload",
                    format!("expected the in-memory saga state of {}", T::definition().name),
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
