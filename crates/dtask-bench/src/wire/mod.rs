//! What the serializer benchmarks encode, and in which formats: the two
//! saga states of CreateZipFromFiles ([`WireValue`]) and the serializers of
//! dtask-core ([`Encoding`]). The runner's section 1
//! (`src/serializers.rs`) and the criterion benchmark
//! (`benches/serializers.rs`) both use them, so they measure the same
//! pairs.

mod values;

use bytes::Bytes;
use dtask::codec::{NestedEncoding, ProtobufSerializer};
use dtask::{Codec, Format, SagaStateSerializer};

pub use values::{OUTPUT_FILE_NAME, UPLOADED_FILES, ZipState, completed_state, hand_off_message};

/// One of the saga states the framework puts on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue {
    /// The worker message: the state at hand-off (8 uploaded files).
    HandOff,
    /// The state saved when the task has completed.
    Completed,
}

impl WireValue {
    /// Both values.
    pub const ALL: [Self; 2] = [Self::HandOff, Self::Completed];

    /// What it is, for a table row.
    pub const fn label(self) -> &'static str {
        match self {
            Self::HandOff => "worker message at hand-off (8 files)",
            Self::Completed => "state after completion (all 3 steps, response)",
        }
    }

    /// A short name, for benchmark ids.
    pub const fn id(self) -> &'static str {
        match self {
            Self::HandOff => "hand_off",
            Self::Completed => "completed",
        }
    }

    /// Builds the value.
    pub fn build(self) -> ZipState {
        match self {
            Self::HandOff => hand_off_message(),
            Self::Completed => completed_state(),
        }
    }
}

/// A serializer as the benchmarks run it: the three [`Format`]s through
/// [`Codec`], and Protobuf with its nested values (request, step data,
/// response) in MessagePack instead of its default JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `Codec::new(Format::Json)`: the baseline.
    Json,
    /// `Codec::new(Format::MessagePack)`.
    MessagePack,
    /// `Codec::new(Format::Protobuf)`: typed messages, nested values in
    /// JSON (the default).
    Protobuf,
    /// `ProtobufSerializer::with_nested(NestedEncoding::MessagePack)`.
    ProtobufNestedMessagePack,
}

impl Encoding {
    /// Every encoding, the baseline first.
    pub const ALL: [Self; 4] = [
        Self::Json,
        Self::MessagePack,
        Self::Protobuf,
        Self::ProtobufNestedMessagePack,
    ];

    /// Its name, for a table row.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::MessagePack => "MessagePack",
            Self::Protobuf => "Protobuf",
            Self::ProtobufNestedMessagePack => "Protobuf, nested MessagePack",
        }
    }

    /// A short name, for benchmark ids.
    pub const fn id(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "msgpack",
            Self::Protobuf => "protobuf",
            Self::ProtobufNestedMessagePack => "protobuf_nested_msgpack",
        }
    }

    /// The format it writes.
    pub const fn format(self) -> Format {
        match self {
            Self::Json => Format::Json,
            Self::MessagePack => Format::MessagePack,
            Self::Protobuf | Self::ProtobufNestedMessagePack => Format::Protobuf,
        }
    }

    /// Encodes `state` as the framework does (`serialize_state`).
    ///
    /// # Errors
    /// The serializer's [`dtask::Error::Codec`].
    pub fn encode(self, state: &ZipState) -> dtask::Result<Bytes> {
        match self {
            Self::ProtobufNestedMessagePack => nested_msgpack().serialize_state(state),
            _ => Codec::new(self.format()).serialize_state(state),
        }
    }

    /// Decodes a state as the framework does (`deserialize_state`).
    ///
    /// # Errors
    /// The serializer's [`dtask::Error::Codec`].
    pub fn decode(self, bytes: &[u8]) -> dtask::Result<ZipState> {
        match self {
            Self::ProtobufNestedMessagePack => nested_msgpack().deserialize_state(bytes),
            _ => Codec::new(self.format()).deserialize_state(bytes),
        }
    }
}

const fn nested_msgpack() -> ProtobufSerializer {
    ProtobufSerializer::with_nested(NestedEncoding::MessagePack)
}

#[cfg(test)]
mod tests {
    use dtask::{StepStatus, TaskStatus};

    use super::*;

    fn assert_same(decoded: &ZipState, original: &ZipState, what: &str) {
        assert_eq!(decoded.schema_version, original.schema_version, "{what}");
        assert_eq!(
            decoded.request.output_file_name, original.request.output_file_name,
            "{what}"
        );
        assert_eq!(
            decoded.data.upload_source_files, original.data.upload_source_files,
            "{what}"
        );
        assert_eq!(
            decoded.data.create_zip_archive, original.data.create_zip_archive,
            "{what}"
        );
        assert_eq!(decoded.data.upload_zip, original.data.upload_zip, "{what}");
        assert_eq!(decoded.progress, original.progress, "{what}");
        assert_eq!(decoded.response, original.response, "{what}");
        assert_eq!(decoded.deadline, original.deadline, "{what}");
    }

    #[test]
    fn both_values_round_trip_through_every_encoding() {
        for value in WireValue::ALL {
            let state = value.build();
            for encoding in Encoding::ALL {
                let what = format!("{} in {}", value.label(), encoding.label());
                let bytes = encoding.encode(&state).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(!bytes.is_empty(), "{what}");
                let decoded = encoding.decode(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_same(&decoded, &state, &what);
            }
        }
    }

    #[test]
    fn each_encoding_reads_only_its_own_format() {
        let state = WireValue::HandOff.build();
        let json = Encoding::Json.encode(&state).unwrap();
        assert!(Encoding::MessagePack.decode(&json).is_err());
        assert!(Encoding::Protobuf.decode(&json).is_err());
        let nested = Encoding::ProtobufNestedMessagePack.encode(&state).unwrap();
        // Protobuf names each nested value's encoding, so either reader reads it.
        assert_same(&Encoding::Protobuf.decode(&nested).unwrap(), &state, "nested msgpack");
        assert_ne!(nested, Encoding::Protobuf.encode(&state).unwrap());
    }

    #[test]
    fn the_hand_off_message_is_the_state_the_api_side_leaves() {
        let state = hand_off_message();
        let progress = &state.progress;
        assert_eq!(progress.status, TaskStatus::Queued);
        assert_eq!(progress.message.as_deref(), Some("queued on `file-processing`"));
        let statuses: Vec<StepStatus> = progress.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [StepStatus::Completed, StepStatus::Pending, StepStatus::Pending]
        );
        assert_eq!(progress.steps[0].completion_order, Some(1));
        let stored = state.data.upload_source_files.as_ref().expect("the upload's data");
        assert_eq!(stored.bucket, "incoming-files");
        assert_eq!(stored.objects.len(), UPLOADED_FILES.len());
        // The two `access.log` uploads get unique names; slashes are kept in the
        // name and replaced in the key.
        assert_eq!(stored.objects[5].name, "access (1).log");
        assert!(
            stored.objects[1]
                .key
                .ends_with("/UploadSourceFiles/0001-site-survey_IMG_20261127_093112.jpg")
        );
        assert!(state.data.create_zip_archive.is_none() && state.data.upload_zip.is_none());
        assert!(state.response.is_none());
        assert!(state.request.files.take().is_none(), "the files are consumed");
    }

    #[test]
    fn the_completed_state_holds_every_step_and_the_response() {
        let state = completed_state();
        let progress = &state.progress;
        assert_eq!(progress.status, TaskStatus::Completed);
        assert_eq!((progress.completed_steps, progress.total_steps), (3, 3));
        let orders: Vec<Option<u32>> = progress.steps.iter().map(|s| s.completion_order).collect();
        assert_eq!(orders, [Some(1), Some(2), Some(3)]);
        let archive = state.data.create_zip_archive.as_ref().expect("the archive's data");
        assert_eq!(archive.entries, 8);
        assert_eq!(archive.archive.name, OUTPUT_FILE_NAME);
        let response = state.response.as_ref().expect("the response");
        assert_eq!(response.bucket, "processed-files");
        assert_eq!(response.entries, 8);
        assert_eq!(response.file_name, OUTPUT_FILE_NAME);
        assert_eq!(
            Some(&response.key),
            state.data.upload_zip.as_ref().map(|u| &u.objects[0].key)
        );
    }

    #[test]
    fn the_values_are_the_same_on_every_build() {
        for value in WireValue::ALL {
            let (a, b) = (value.build(), value.build());
            assert_eq!(Encoding::Json.encode(&a).unwrap(), Encoding::Json.encode(&b).unwrap());
        }
    }
}
