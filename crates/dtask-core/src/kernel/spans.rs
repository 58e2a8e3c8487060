//! The kernel's `tracing` spans, named as the design names them: a span
//! per submission (`DistributedTask.<Task>.Submit`), per worker run
//! (`DistributedTask.<Task>`), per step attempt
//! (`DistributedTask.<Task>.<Step>`) and per compensation attempt
//! (`DistributedTask.<Task>.<Step>.Compensate`). The OpenTelemetry name,
//! kind and status go in the `otel.*` fields `tracing-opentelemetry` reads;
//! the other fields become the span's attributes. All are in the `dtask`
//! target, at `INFO`, so the log lines of a task carry its id and trace id.
//!
//! With no subscriber interested, each is a disabled span: no name is
//! formatted and nothing is allocated.

use tracing::Span;
use tracing::field::Empty;

use super::Runtime;
use crate::id::TaskId;
use crate::task::{StepError, StepErrorKind, TaskDefinition};
use crate::trace::TraceParent;

impl Runtime {
    /// The span of a task's submission in this host: its Api steps and
    /// the hand-off.
    pub(crate) fn submit_span(&self, def: &TaskDefinition, task_id: TaskId) -> Span {
        tracing::info_span!(
            target: "dtask",
            "dtask.submit",
            otel.name = %format_args!("DistributedTask.{}.Submit", def.name),
            otel.kind = "producer",
            task.id = %task_id,
            task.name = def.name,
            trace_id = Empty,
        )
    }

    /// The span of one delivery of a task to this worker: its Worker steps,
    /// compensations and settlement.
    pub(crate) fn run_span(&self, def: &TaskDefinition, task_id: TaskId, delivery: u32) -> Span {
        tracing::info_span!(
            target: "dtask",
            "dtask.run",
            otel.name = %format_args!("DistributedTask.{}", def.name),
            otel.kind = "consumer",
            task.id = %task_id,
            task.name = def.name,
            task.queue = def.queue,
            task.delivery = i64::from(delivery),
            task.status = Empty,
            trace_id = Empty,
        )
    }

    /// Starts the trace of a new task in `span` (not entered yet), a child
    /// of `incoming` (a caller's context) when there is one: the span's
    /// context where the bridge traces it, else a child of `incoming`,
    /// else a new trace. Records the trace id on the span.
    pub(crate) fn begin_trace(&self, span: &Span, incoming: Option<TraceParent>) -> TraceParent {
        if let (Some(bridge), Some(parent)) = (&self.tracer, incoming) {
            bridge.set_parent(span, parent);
        }
        let traced = self.tracer.as_ref().and_then(|bridge| bridge.context_of(span));
        let parent = traced.unwrap_or_else(|| incoming.map_or_else(TraceParent::random, |p| p.child()));
        span.record("trace_id", tracing::field::display(parent.trace_id_display()));
        parent
    }

    /// Makes `span`, not entered yet, continue the trace of `parent` (a
    /// message's).
    pub(crate) fn continue_trace(&self, span: &Span, parent: Option<TraceParent>) {
        let Some(parent) = parent else { return };
        span.record("trace_id", tracing::field::display(parent.trace_id_display()));
        if let Some(bridge) = &self.tracer {
            bridge.set_parent(span, parent);
        }
    }

    /// The span of attempt `attempt` of step `index`, with its
    /// `StepStarted` event.
    pub(crate) fn attempt_span(&self, def: &TaskDefinition, task_id: TaskId, index: usize, attempt: u32) -> Span {
        let span = self.step_span(def, task_id, index, attempt, AttemptOf::Step);
        let name = def.steps[index].name;
        span.in_scope(|| tracing::event!(target: "dtask", tracing::Level::DEBUG, step.name = name, step.attempt = attempt, "StepStarted"));
        span
    }

    /// The span of attempt `attempt` of the compensation of step `index`.
    pub(crate) fn compensation_span(&self, def: &TaskDefinition, task_id: TaskId, index: usize, attempt: u32) -> Span {
        self.step_span(def, task_id, index, attempt, AttemptOf::Compensation)
    }

    /// One callsite for both kinds of attempt: they differ in their
    /// OpenTelemetry name and first status.
    fn step_span(&self, def: &TaskDefinition, task_id: TaskId, index: usize, attempt: u32, of: AttemptOf) -> Span {
        let step = &def.steps[index];
        let (suffix, status) = match of {
            AttemptOf::Step => ("", "Running"),
            AttemptOf::Compensation => (".Compensate", "Compensating"),
        };
        tracing::info_span!(
            target: "dtask",
            "dtask.step",
            otel.name = %format_args!("DistributedTask.{}.{}{suffix}", def.name, step.name),
            otel.kind = "internal",
            otel.status_code = Empty,
            task.id = %task_id,
            task.name = def.name,
            step.name = step.name,
            step.order = i64::from(step.order),
            step.attempt = i64::from(attempt),
            step.status = status,
            step.host = %self.node,
            step.placement = ?step.host,
            error.message = Empty,
        )
    }
}

/// What an attempt span times.
#[derive(Clone, Copy)]
enum AttemptOf {
    Step,
    Compensation,
}

/// Records how an attempt (of a step or a compensation) ended on its span.
pub(crate) fn end_attempt<T>(span: &Span, result: &Result<T, StepError>, done: &'static str) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(_) => {
            span.record("step.status", done);
            span.record("otel.status_code", "OK");
        }
        Err(error) => {
            let status = match error.kind() {
                StepErrorKind::Cancelled => "Cancelled",
                StepErrorKind::TimedOut => "TimedOut",
                _ => "Failed",
            };
            span.record("step.status", status);
            span.record("error.message", tracing::field::display(error));
            if error.kind() != StepErrorKind::Cancelled {
                span.record("otel.status_code", "ERROR");
            }
        }
    }
}
