//! The events of a task's life. Every state change of a task or a step is
//! one [`TaskEvent`]; the progress snapshot is their fold
//! ([`TaskProgress::apply`](crate::TaskProgress::apply)), and listeners
//! (the test host, audit trails, webhooks) receive them from the host's
//! event bus.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::id::TaskId;
pub use crate::task::StepRef;
use crate::task::{ConditionSnapshot, DependentTask, StepHost};

/// One transition of one task.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEvent {
    /// The task.
    pub task_id: TaskId,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub kind: EventKind,
}

/// Why a task is being compensated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CompensationReason {
    /// A step failed and its policy says compensate.
    StepFailed,
    /// The client cancelled the task.
    Cancelled,
    /// The task's timeout elapsed.
    TimedOut,
    /// A dependent task whose edge is declared `compensate_upstream` did
    /// not complete.
    DependentFailed,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
#[non_exhaustive]
pub enum EventKind {
    /// The task was accepted.
    Submitted,
    /// One host began running its share of the steps.
    Started {
        /// Which host.
        host: StepHost,
    },
    /// The API side handed the task to the workers' queue.
    HandedOff {
        /// The queue.
        queue: &'static str,
    },
    /// The task's response is built; these tasks depend on it, and each
    /// was judged (started or not) before it completes.
    DependentsDecided {
        /// The dependents, in declaration order.
        dependents: Vec<DependentTask>,
    },
    /// A step attempt began.
    StepStarted {
        /// The step.
        step: StepRef,
        /// 1 for the first attempt.
        attempt: u32,
        /// The process running it: the host's node name, the id of its
        /// entry in the worker registry (`GET /api/workers`) and of its logs.
        worker: String,
    },
    /// A running step reported how far it has come.
    StepProgress {
        /// The step.
        step: StepRef,
        /// Done fraction, 0 to 1.
        fraction: f64,
        /// What it is doing.
        message: Option<String>,
    },
    /// A step attempt succeeded.
    StepCompleted {
        /// The step.
        step: StepRef,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// A step attempt failed.
    StepFailed {
        /// The step.
        step: StepRef,
        /// The attempt that failed.
        attempt: u32,
        /// The error.
        error: String,
        /// When another attempt follows, the delay before it.
        #[serde(with = "opt_millis")]
        retry_in: Option<Duration>,
    },
    /// A step's condition did not hold: it was skipped.
    StepSkipped {
        /// The step.
        step: StepRef,
        /// The condition and the values it saw.
        condition: ConditionSnapshot,
    },
    /// A step's condition held: it will run.
    ConditionHeld {
        /// The step.
        step: StepRef,
        /// The condition and the values it saw.
        condition: ConditionSnapshot,
    },
    /// A member of a race group (`await_all = false`) was stopped because
    /// another member won.
    StepCancelled {
        /// The step.
        step: StepRef,
    },
    /// Someone asked to cancel the task.
    CancellationRequested,
    /// Compensation of the completed steps began.
    Compensating {
        /// Why.
        reason: CompensationReason,
    },
    /// A step's compensation began.
    StepCompensating {
        /// The step.
        step: StepRef,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// A step was undone.
    StepCompensated {
        /// The step.
        step: StepRef,
    },
    /// A step's compensation failed for good.
    StepCompensationFailed {
        /// The step.
        step: StepRef,
        /// The last error.
        error: String,
    },
    /// Every step completed; the task waits for the dependents it started
    /// whose edges are declared `compensate_upstream` before it completes.
    AwaitingDependents,
    /// Every step completed; the response is ready.
    Completed,
    /// A step failed and the task stopped without compensating.
    Failed {
        /// The error.
        error: String,
    },
    /// The task failed (or timed out) and its completed steps were undone.
    Compensated {
        /// The error that started compensation.
        error: String,
    },
    /// The task was cancelled and its completed steps were undone.
    Cancelled,
    /// Undoing a step failed for good: the task needs attention.
    CompensationFailed {
        /// The error that started compensation, and the compensation
        /// errors.
        error: String,
    },
}

mod opt_millis {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}
