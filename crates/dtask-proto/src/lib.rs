//! The Protocol Buffers schema of dtask's wire objects, and its Rust types.
//!
//! The `.proto` files in this crate's `proto/` directory are the source of
//! truth: a worker or consumer in another language compiles them and reads
//! what dtask writes with the protobuf serializer (see
//! `docs/cross-language.md` in the repository). This crate holds only the
//! generated types; `dtask-core` converts its own types to and from them.
//!
//! | file | messages |
//! |---|---|
//! | `dtask/v1/progress.proto` | [`v1::TaskProgress`], [`v1::StepState`], [`v1::ConditionSnapshot`], the status enums |
//! | `dtask/v1/saga.proto` | [`v1::SagaState`] (the saga state envelope and the body of a worker message), [`v1::Nested`] |
//!
//! ```
//! use dtask_proto::prost::Message;
//! use dtask_proto::v1::{Encoding, Nested};
//!
//! let nested = Nested { encoding: Encoding::Json.into(), value: b"{}".to_vec() };
//! let bytes = nested.encode_to_vec();
//! assert_eq!(Nested::decode(bytes.as_slice()).unwrap(), nested);
//! ```

pub use prost;
pub use prost_types;

/// The `.proto` files, by path under `proto/`, with their text: for tools
/// that want to hand the schema to a reader at run time.
pub const PROTO_FILES: &[(&str, &str)] = &[
    (
        "dtask/v1/progress.proto",
        include_str!("../proto/dtask/v1/progress.proto"),
    ),
    ("dtask/v1/saga.proto", include_str!("../proto/dtask/v1/saga.proto")),
];

/// The version of the schema this crate was built from; written into every
/// [`v1::SagaState`] and checked by readers.
pub const SCHEMA_VERSION: u32 = 1;

/// Package `dtask.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/dtask.v1.rs"));
}
