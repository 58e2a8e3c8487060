//! JSON through `serde_json`.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Format, SagaStateSerializer, codec_error};
use crate::error::Result;

/// JSON through `serde_json`: field names as the types declare them (the
/// framework's own types and generated step data use camelCase), absent
/// optional fields skipped, enums as strings. The default.
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
