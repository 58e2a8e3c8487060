//! What a declared task is to the runtime: the [`Task`] trait that
//! `#[dtask::task]` implements, its static [`TaskDefinition`], and what a
//! step receives ([`StepContext`]) and returns ([`StepError`]).

#[doc(hidden)]
pub mod builtin;
mod context;
mod definition;
mod depends;
mod error;
mod retry;
mod step;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{StepContext, StepReport};
pub use definition::{
    DependencyDefinition, GroupDefinition, GroupDistribution, Mode, Stage, StepDefinition, StepHost, StepKind,
    TaskDefinition,
};
pub use depends::{DependentTask, Upstream};
pub use error::{StepError, StepErrorKind};
pub use retry::{Backoff, Jitter, OnExhausted, RetryPolicy};
pub use step::{ConditionSnapshot, ObservedValue, StepRef};

/// How a completed step writes its typed data into the saga's data.
pub type DataUpdate<D> = Box<dyn FnOnce(&mut D) + Send>;

/// The typed saga of one declared task. Implemented by `#[dtask::task]`;
/// the kernel drives it.
///
/// `Data` is a generated struct with one `Option` field per step holding
/// that step's typed output, so step data is typed end to end and a
/// snapshot is just `(request, data, progress)`.
pub trait Task: Send + Sync + 'static {
    /// The typed input.
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The typed output.
    type Response: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Every step's output, one `Option` field per step.
    type Data: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static;

    /// The static description.
    fn definition() -> &'static TaskDefinition;

    /// Runs step `step` (an index into the definition's steps) once.
    fn run_step<'a>(
        &'a self,
        step: usize,
        cx: &'a StepContext,
        request: &'a Self::Request,
        data: &'a Self::Data,
    ) -> BoxFuture<'a, Result<DataUpdate<Self::Data>, StepError>>;

    /// Moves step `step`'s output (its field of the data) from `from` into
    /// `into`, leaving `into`'s other fields as they are: how the output
    /// of a group member that ran on another worker joins the saga's data.
    fn adopt_output(step: usize, from: &mut Self::Data, into: &mut Self::Data);

    /// Undoes completed step `step`. Only called for compensable steps.
    fn compensate_step<'a>(
        &'a self,
        step: usize,
        cx: &'a StepContext,
        request: &'a Self::Request,
        data: &'a Self::Data,
    ) -> BoxFuture<'a, Result<(), StepError>>;

    /// Evaluates step `step`'s condition, if it has one, recording the
    /// values it read.
    fn evaluate_condition(step: usize, request: &Self::Request, data: &Self::Data) -> Option<ConditionSnapshot>;

    /// Builds the response once every step has run.
    ///
    /// # Errors
    /// A permanent failure makes the task fail and compensate.
    fn response(&self, request: &Self::Request, data: &Self::Data) -> Result<Self::Response, StepError>;

    /// Puts uploaded files into the request field that the task's first
    /// request-reading upload step takes its files from (how an HTTP
    /// multipart submission becomes a request). Returns the files when the
    /// task takes none.
    ///
    /// # Errors
    /// The files, unused, when the task has no such step.
    fn attach_files(request: &mut Self::Request, files: crate::Files) -> Result<(), crate::Files> {
        let _ = request;
        Err(files)
    }

    /// The tasks whose completion starts this one, typed: how each edge's
    /// condition reads the upstream's response and how the request is
    /// built from it (`#[depends_on]`). One per entry of the definition's
    /// `depends_on`, in the same order.
    fn upstreams() -> Vec<Upstream<Self>>
    where
        Self: Sized,
    {
        Vec::new()
    }

    /// How long the longest chain of `#[depends_on]` edges ending at this
    /// task is (0 without any). Generated code evaluates it at compile
    /// time, so that a cycle among tasks the compiler sees is a compile
    /// error.
    #[doc(hidden)]
    const CHAIN_DEPTH: usize = 0;
}
