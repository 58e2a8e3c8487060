//! The library half of `dtask-bench`: what the benchmark runner
//! (`src/main.rs`) and the criterion benchmarks (`benches/`) share.
//!
//! - [`wire`]: the saga states of the demo's CreateZipFromFiles and the
//!   serializers they are encoded with (section 1, Serializers).

pub mod wire;
