//! The framework's types to and from the messages of `dtask.v1`.

use dtask_proto::prost_types::Timestamp;
use dtask_proto::v1;
use time::OffsetDateTime;

use crate::id::TaskId;
use crate::progress::{ConditionSnapshot, ObservedValue, StepState, StepStatus, TaskProgress, TaskStatus};
use crate::task::{DependentTask, StepHost};

/// A message that decoded as protobuf but breaks the schema's rules: a
/// missing required field, an unknown enum value, a malformed id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed dtask.v1 message: {0}")]
pub(crate) struct Malformed(String);

impl Malformed {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }

    pub(crate) fn missing(field: &str) -> Self {
        Self(format!("`{field}` is missing"))
    }
}

type Converted<T> = Result<T, Malformed>;

pub(super) fn timestamp(at: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: at.unix_timestamp(),
        // Below 10^9, so it fits.
        nanos: i32::try_from(at.nanosecond()).unwrap_or(i32::MAX),
    }
}

fn time(at: &Timestamp, field: &str) -> Converted<OffsetDateTime> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| Malformed::new(format!("`{field}`: {e}")))
}

pub(super) fn required_time(at: Option<&Timestamp>, field: &str) -> Converted<OffsetDateTime> {
    time(at.ok_or_else(|| Malformed::missing(field))?, field)
}

fn optional_time(at: Option<&Timestamp>, field: &str) -> Converted<Option<OffsetDateTime>> {
    at.map(|at| time(at, field)).transpose()
}

fn enum_value<E: TryFrom<i32>>(value: i32, field: &str) -> Converted<E> {
    E::try_from(value).map_err(|_| Malformed::new(format!("`{field}` has unknown value {value}")))
}

fn unspecified(field: &str) -> Malformed {
    Malformed::new(format!("`{field}` is unspecified"))
}

fn task_status(status: TaskStatus) -> v1::TaskStatus {
    match status {
        TaskStatus::Pending => v1::TaskStatus::Pending,
        TaskStatus::Running => v1::TaskStatus::Running,
        TaskStatus::Queued => v1::TaskStatus::Queued,
        TaskStatus::Compensating => v1::TaskStatus::Compensating,
        TaskStatus::Completed => v1::TaskStatus::Completed,
        TaskStatus::Failed => v1::TaskStatus::Failed,
        TaskStatus::Compensated => v1::TaskStatus::Compensated,
        TaskStatus::Cancelled => v1::TaskStatus::Cancelled,
        TaskStatus::CompensationFailed => v1::TaskStatus::CompensationFailed,
        TaskStatus::AwaitingDependents => v1::TaskStatus::AwaitingDependents,
    }
}

fn task_status_from(value: i32) -> Converted<TaskStatus> {
    Ok(match enum_value(value, "status")? {
        v1::TaskStatus::Pending => TaskStatus::Pending,
        v1::TaskStatus::Running => TaskStatus::Running,
        v1::TaskStatus::Queued => TaskStatus::Queued,
        v1::TaskStatus::Compensating => TaskStatus::Compensating,
        v1::TaskStatus::Completed => TaskStatus::Completed,
        v1::TaskStatus::Failed => TaskStatus::Failed,
        v1::TaskStatus::Compensated => TaskStatus::Compensated,
        v1::TaskStatus::Cancelled => TaskStatus::Cancelled,
        v1::TaskStatus::CompensationFailed => TaskStatus::CompensationFailed,
        v1::TaskStatus::AwaitingDependents => TaskStatus::AwaitingDependents,
        v1::TaskStatus::Unspecified => return Err(unspecified("status")),
    })
}

fn step_status(status: StepStatus) -> v1::StepStatus {
    match status {
        StepStatus::Pending => v1::StepStatus::Pending,
        StepStatus::Running => v1::StepStatus::Running,
        StepStatus::Retrying => v1::StepStatus::Retrying,
        StepStatus::Completed => v1::StepStatus::Completed,
        StepStatus::Failed => v1::StepStatus::Failed,
        StepStatus::Skipped => v1::StepStatus::Skipped,
        StepStatus::Cancelled => v1::StepStatus::Cancelled,
        StepStatus::Compensating => v1::StepStatus::Compensating,
        StepStatus::Compensated => v1::StepStatus::Compensated,
        StepStatus::CompensationFailed => v1::StepStatus::CompensationFailed,
    }
}

fn step_status_from(value: i32) -> Converted<StepStatus> {
    Ok(match enum_value(value, "steps.status")? {
        v1::StepStatus::Pending => StepStatus::Pending,
        v1::StepStatus::Running => StepStatus::Running,
        v1::StepStatus::Retrying => StepStatus::Retrying,
        v1::StepStatus::Completed => StepStatus::Completed,
        v1::StepStatus::Failed => StepStatus::Failed,
        v1::StepStatus::Skipped => StepStatus::Skipped,
        v1::StepStatus::Cancelled => StepStatus::Cancelled,
        v1::StepStatus::Compensating => StepStatus::Compensating,
        v1::StepStatus::Compensated => StepStatus::Compensated,
        v1::StepStatus::CompensationFailed => StepStatus::CompensationFailed,
        v1::StepStatus::Unspecified => return Err(unspecified("steps.status")),
    })
}

fn step_host(host: StepHost) -> v1::StepHost {
    match host {
        StepHost::Api => v1::StepHost::Api,
        StepHost::Worker => v1::StepHost::Worker,
    }
}

fn step_host_from(value: i32) -> Converted<StepHost> {
    match enum_value(value, "steps.host")? {
        v1::StepHost::Api => Ok(StepHost::Api),
        v1::StepHost::Worker => Ok(StepHost::Worker),
        v1::StepHost::Unspecified => Err(unspecified("steps.host")),
    }
}

fn condition(condition: &ConditionSnapshot) -> v1::ConditionSnapshot {
    v1::ConditionSnapshot {
        expression: condition.expression.clone(),
        observed: condition
            .observed
            .iter()
            .map(|o| v1::ObservedValue {
                path: o.path.clone(),
                value: o.value.clone(),
            })
            .collect(),
        holds: condition.holds,
    }
}

fn condition_from(condition: &v1::ConditionSnapshot) -> ConditionSnapshot {
    ConditionSnapshot {
        expression: condition.expression.clone(),
        observed: condition
            .observed
            .iter()
            .map(|o| ObservedValue {
                path: o.path.clone(),
                value: o.value.clone(),
            })
            .collect(),
        holds: condition.holds,
    }
}

fn step(step: &StepState) -> v1::StepState {
    v1::StepState {
        name: step.name.clone(),
        order: step.order,
        host: step_host(step.host).into(),
        group: step.group.clone(),
        status: step_status(step.status).into(),
        attempts: step.attempts,
        fraction: step.fraction,
        message: step.message.clone(),
        error: step.error.clone(),
        condition: step.condition.as_ref().map(condition),
        worker: step.worker.clone(),
        completion_order: step.completion_order,
        started_at: step.started_at.map(timestamp),
        finished_at: step.finished_at.map(timestamp),
    }
}

fn step_from(step: &v1::StepState) -> Converted<StepState> {
    Ok(StepState {
        name: step.name.clone(),
        order: step.order,
        host: step_host_from(step.host)?,
        group: step.group.clone(),
        status: step_status_from(step.status)?,
        attempts: step.attempts,
        fraction: step.fraction,
        message: step.message.clone(),
        error: step.error.clone(),
        condition: step.condition.as_ref().map(condition_from),
        worker: step.worker.clone(),
        completion_order: step.completion_order,
        started_at: optional_time(step.started_at.as_ref(), "steps.started_at")?,
        finished_at: optional_time(step.finished_at.as_ref(), "steps.finished_at")?,
    })
}

pub(super) fn progress_to_proto(progress: &TaskProgress) -> v1::TaskProgress {
    v1::TaskProgress {
        task_id: progress.task_id.to_string(),
        task_name: progress.task_name.clone(),
        status: task_status(progress.status).into(),
        total_steps: progress.total_steps,
        completed_steps: progress.completed_steps,
        current_step: progress.current_step.clone(),
        percent: progress.percent,
        steps: progress.steps.iter().map(step).collect(),
        message: progress.message.clone(),
        error: progress.error.clone(),
        cancellable: progress.cancellable,
        cancel_requested: progress.cancel_requested,
        is_complete: progress.is_complete,
        success: progress.success,
        revision: progress.revision,
        created_at: Some(timestamp(progress.created_at)),
        updated_at: Some(timestamp(progress.updated_at)),
        completed_at: progress.completed_at.map(timestamp),
        submitter: progress.submitter.clone(),
        trace_id: progress.trace_id.clone(),
        parent_task_id: progress.parent_task_id.map(|id| id.to_string()),
        dependents: progress.dependents.iter().map(dependent).collect(),
    }
}

fn dependent(dependent: &DependentTask) -> v1::DependentTask {
    v1::DependentTask {
        task_name: dependent.task_name.clone(),
        task_id: dependent.task_id.to_string(),
        started: dependent.started,
        condition: dependent.condition.as_ref().map(condition),
        compensates_upstream: dependent.compensates_upstream,
    }
}

fn dependent_from(dependent: &v1::DependentTask) -> Converted<DependentTask> {
    Ok(DependentTask {
        task_name: dependent.task_name.clone(),
        task_id: task_id(&dependent.task_id, "dependents.task_id")?,
        started: dependent.started,
        condition: dependent.condition.as_ref().map(condition_from),
        compensates_upstream: dependent.compensates_upstream,
    })
}

fn task_id(text: &str, field: &str) -> Converted<TaskId> {
    text.parse()
        .map_err(|e| Malformed::new(format!("`{field}` `{text}`: {e}")))
}

pub(super) fn progress_from_proto(progress: &v1::TaskProgress) -> Converted<TaskProgress> {
    Ok(TaskProgress {
        task_id: task_id(&progress.task_id, "task_id")?,
        task_name: progress.task_name.clone(),
        submitter: progress.submitter.clone(),
        trace_id: progress.trace_id.clone(),
        parent_task_id: (progress.parent_task_id.as_deref())
            .map(|id| task_id(id, "parent_task_id"))
            .transpose()?,
        status: task_status_from(progress.status)?,
        total_steps: progress.total_steps,
        completed_steps: progress.completed_steps,
        current_step: progress.current_step.clone(),
        percent: progress.percent,
        steps: progress.steps.iter().map(step_from).collect::<Converted<_>>()?,
        message: progress.message.clone(),
        error: progress.error.clone(),
        cancellable: progress.cancellable,
        cancel_requested: progress.cancel_requested,
        is_complete: progress.is_complete,
        success: progress.success,
        revision: progress.revision,
        created_at: required_time(progress.created_at.as_ref(), "created_at")?,
        updated_at: required_time(progress.updated_at.as_ref(), "updated_at")?,
        completed_at: optional_time(progress.completed_at.as_ref(), "completed_at")?,
        dependents: progress
            .dependents
            .iter()
            .map(dependent_from)
            .collect::<Converted<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_nanoseconds_and_dates_before_1970() {
        for at in [
            time::macros::datetime!(2026-11-27 21:47:09.123456789 UTC),
            time::macros::datetime!(1969-07-20 20:17:40.5 UTC),
        ] {
            assert_eq!(time(&timestamp(at), "at").unwrap(), at);
        }
    }

    #[test]
    fn unknown_and_unspecified_enum_values_are_malformed() {
        assert_eq!(
            task_status_from(42).unwrap_err().to_string(),
            "malformed dtask.v1 message: `status` has unknown value 42"
        );
        assert_eq!(
            step_host_from(0).unwrap_err().to_string(),
            "malformed dtask.v1 message: `steps.host` is unspecified"
        );
    }
}
