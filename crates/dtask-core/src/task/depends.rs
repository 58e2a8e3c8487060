//! Task chaining (`#[depends_on]`): how a task starts from another one's
//! response.

use std::any::Any;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConditionSnapshot, Task, TaskDefinition};
use crate::id::TaskId;

/// The condition of an edge, evaluated on the upstream's response.
type Condition<R> = fn(&R) -> ConditionSnapshot;
/// How the downstream's request is built from the upstream's response.
type Build<R, Q> = fn(&R) -> Q;
/// A condition erased over the upstream: `None` for a response of another type.
type Decide = dyn Fn(&dyn Any) -> Option<Option<ConditionSnapshot>> + Send + Sync;
/// A request builder erased over the upstream: `None` for a response of
/// another type.
type BuildErased<Q> = dyn Fn(&dyn Any) -> Option<Q> + Send + Sync;

/// One `#[depends_on(U, ...)]` edge of task `D`, typed on both ends and
/// erased over `U` so a task's edges form one list.
pub struct Upstream<D: Task> {
    upstream: fn() -> &'static TaskDefinition,
    decide: Box<Decide>,
    build: Box<BuildErased<D::Request>>,
    compensates_upstream: bool,
}

impl<D: Task> Upstream<D> {
    /// The edge from `U`: `D` starts when `U` completes and `condition`
    /// (when given) holds on its response; `build` makes `D`'s request
    /// from that response.
    pub fn new<U: Task>(condition: Option<Condition<U::Response>>, build: Build<U::Response, D::Request>) -> Self {
        Self {
            upstream: U::definition,
            decide: Box::new(move |response| {
                let response = response.downcast_ref::<U::Response>()?;
                Some(condition.map(|evaluate| evaluate(response)))
            }),
            build: Box::new(move |response| response.downcast_ref::<U::Response>().map(build)),
            compensates_upstream: false,
        }
    }

    /// The edge declared `compensate_upstream`: the upstream, once its
    /// steps completed, waits for `D` to end, and is compensated when `D`
    /// does not complete.
    #[must_use]
    pub fn compensating_upstream(mut self) -> Self {
        self.compensates_upstream = true;
        self
    }

    /// Whether the edge is declared `compensate_upstream`.
    pub fn compensates_upstream(&self) -> bool {
        self.compensates_upstream
    }

    /// The upstream task's definition.
    pub fn upstream(&self) -> &'static TaskDefinition {
        (self.upstream)()
    }

    /// The condition's evaluation on `response` (the upstream's typed
    /// response): `Some(None)` when the edge has no condition, `None` when
    /// `response` is not the upstream's response type.
    pub fn decide(&self, response: &dyn Any) -> Option<Option<ConditionSnapshot>> {
        (self.decide)(response)
    }

    /// The downstream's request built from `response`; `None` when it is
    /// not the upstream's response type.
    pub fn build(&self, response: &dyn Any) -> Option<D::Request> {
        (self.build)(response)
    }
}

impl<D: Task> fmt::Debug for Upstream<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("upstream", &self.upstream().name)
            .field("downstream", &D::definition().name)
            .finish_non_exhaustive()
    }
}

/// A task that depends on another one, as the upstream recorded it when
/// it completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependentTask {
    /// The dependent task's name.
    pub task_name: String,
    /// Its id: derived from the upstream's id and its name, so starting it
    /// again (a redelivered upstream) finds it instead of starting another.
    pub task_id: TaskId,
    /// Whether it was started (its condition held, or it has none).
    pub started: bool,
    /// The condition's evaluation on the upstream's response, when the
    /// edge has one: why it started or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionSnapshot>,
    /// Whether the upstream waits for it to end and is compensated when it
    /// does not complete (the edge is declared `compensate_upstream`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compensates_upstream: bool,
}
