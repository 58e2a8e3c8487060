//! MessagePack through `rmp-serde`.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Format, SagaStateSerializer, codec_error};
use crate::error::Result;

/// MessagePack through `rmp-serde`, structs as maps keyed by their field
/// names (`to_vec_named`): a reader tolerates fields added or removed by
/// another version, as with JSON, at about half of JSON's size.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePackSerializer;

impl SagaStateSerializer for MessagePackSerializer {
    fn format(&self) -> Format {
        Format::MessagePack
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        rmp_serde::to_vec_named(value)
            .map(Bytes::from)
            .map_err(|e| codec_error(Format::MessagePack, e))
    }

    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        rmp_serde::from_slice(bytes).map_err(|e| codec_error(Format::MessagePack, e))
    }
}
