//! [`Format`]: the wire formats, named. At the bottom of the crate: the
//! serializers write them, errors and task definitions name them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A wire format for worker messages, step data and snapshots.
///
/// Its text form (`json`, `msgpack`, `protobuf`) is what the transports
/// write beside a message and what [`FromStr`] reads:
///
/// ```
/// use dtask_core::Format;
///
/// let format: Format = "msgpack".parse().unwrap();
/// assert_eq!(format, Format::MessagePack);
/// assert_eq!(format.to_string(), "msgpack");
/// assert_eq!(Format::Protobuf.content_type(), "application/x-protobuf");
/// assert!("yaml".parse::<Format>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Format {
    /// JSON through `serde_json`: human-readable, the default.
    #[default]
    #[serde(rename = "json")]
    Json,
    /// MessagePack through `rmp-serde`, with named fields so that a field
    /// added or removed by a newer version is survivable.
    #[serde(rename = "msgpack")]
    MessagePack,
    /// Protocol Buffers through `prost`: the framework's own types as the
    /// typed messages of `dtask-proto`, a task's data as a declared nested
    /// encoding.
    #[serde(rename = "protobuf")]
    Protobuf,
}

impl Format {
    /// Every format, in the order of their introduction.
    pub const ALL: [Self; 3] = [Self::Json, Self::MessagePack, Self::Protobuf];

    /// The name transports write beside a message.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "msgpack",
            Self::Protobuf => "protobuf",
        }
    }

    /// The MIME type of a body in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::MessagePack => "application/msgpack",
            Self::Protobuf => "application/x-protobuf",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is none of `json`, `msgpack` and `protobuf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown serialization format `{0}`: expected json, msgpack or protobuf")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Reads a format name, ignoring ASCII case; `messagepack` and `proto`
    /// are accepted too.
    fn from_str(name: &str) -> Result<Self, UnknownFormat> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "msgpack" | "messagepack" => Ok(Self::MessagePack),
            "protobuf" | "proto" => Ok(Self::Protobuf),
            _ => Err(UnknownFormat(name.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip_through_text_and_serde() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{}\"", format.name()));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), format);
        }
        assert_eq!("MessagePack".parse::<Format>(), Ok(Format::MessagePack));
        assert_eq!("proto".parse::<Format>(), Ok(Format::Protobuf));
        let error = "avro".parse::<Format>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown serialization format `avro`: expected json, msgpack or protobuf"
        );
    }
}
