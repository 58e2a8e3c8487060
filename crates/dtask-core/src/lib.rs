//! The core of dtask: the infrastructure traits, the saga kernel, the host
//! builder and the in-memory implementations that make up InProcess mode.
//!
//! The modules stand in layers, each importing only from those below it:
//! `id`, `error`, `format` and `principal` at the bottom; the task model (`task`,
//! `files`, the object store trait); events and progress; the serializers
//! (`codec`); the infrastructure traits (`infra`) and their in-memory
//! backends (`memory`, `fs`); the `kernel`; the `reconcile`r; the `host` on
//! top. The facade's `tests/layers.rs` checks it.
//!
//! Users depend on the `dtask` facade crate, which re-exports this one and
//! the `#[dtask::task]` macro. Backend crates (`dtask-redis`, ...) depend
//! on this crate alone and run its conformance suite (feature
//! `test-suite`).
//!
//! The crate pulls in no backend client: whatever talks to a broker, a
//! store or a cache lives in its own crate behind the traits of [`infra`].

pub mod codec;
mod error;
pub mod event;
pub mod files;
mod format;
pub mod fs;
pub mod history;
pub mod host;
mod id;
pub mod infra;
mod kernel;
pub mod memory;
mod principal;
pub mod progress;
pub mod reconcile;
pub mod task;
pub mod testing;
pub mod trace;

#[cfg(feature = "test-suite")]
pub mod conformance;

pub use codec::{
    Codec, Format, JsonSerializer, MessagePackSerializer, Payload, ProtobufSerializer, SCHEMA_VERSION, SagaSnapshot,
    SagaStateSerializer,
};
pub use error::{BoxError, Error, Result};
pub use event::{EventKind, TaskEvent};
pub use files::{DownloadedFiles, Files, IncomingFile, LocalFile, StoredObject, StoredObjects};
pub use host::{
    Caller, CancelOutcome, DeadLetteredTask, HistorySettings, Host, HostBuilder, Infrastructure, KernelSettings,
    RetryOutcome, StepInterceptor, TaskHandle, TaskOutcome,
};
pub use id::TaskId;
pub use principal::{DEFAULT_OPERATOR_ROLE, Principal};
pub use progress::{StepState, StepStatus, TaskProgress, TaskStatus};
pub use task::{
    Backoff, DependentTask, GroupDistribution, Jitter, Mode, OnExhausted, RetryPolicy, StepContext, StepError,
    StepErrorKind, StepHost, Task, TaskDefinition,
};

#[doc(hidden)]
pub use serde as __serde;
