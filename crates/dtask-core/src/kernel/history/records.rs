//! What one run records in the history for each event: an audit entry for
//! every change (not for a step's progress reports), attempt rows as
//! attempts start and end, condition snapshots; and the task's row each
//! time its saved progress is written.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::event::{EventKind, StepRef, TaskEvent};
use crate::history::{
    AttemptKind, AttemptOutcome, AuditEntry, ConditionRecord, HistoryRecord, StepAttempt, TaskRecord,
};
use crate::id::TaskId;
use crate::progress::{StepStatus, TaskProgress, TaskStatus};
use crate::task::TaskDefinition;

/// The statuses an event is about to change, read before it is folded.
pub(crate) struct Before {
    task: TaskStatus,
    step: Option<StepStatus>,
    /// For a compensation's start: the steps running, which it stops.
    running: Vec<usize>,
}

impl Before {
    pub(crate) fn of(progress: &TaskProgress, kind: &EventKind) -> Self {
        let running = match kind {
            EventKind::Compensating { .. } => (progress.steps.iter().enumerate())
                .filter(|(_, s)| s.status == StepStatus::Running)
                .map(|(index, _)| index)
                .collect(),
            _ => Vec::new(),
        };
        Self {
            task: progress.status,
            step: step_of(kind).map(|step| progress.steps[step.index].status),
            running,
        }
    }
}

/// What a run keeps for its history records beyond the progress.
pub(crate) struct RunHistory {
    task_id: TaskId,
    definition: &'static TaskDefinition,
    deadline: OffsetDateTime,
    /// Who the run's changes are by: `system:<node>`.
    actor: String,
    /// The process, for attempt rows.
    node: String,
    response_summary: Mutex<Option<String>>,
    /// The latest compensation attempt of each step being undone.
    compensations: Mutex<HashMap<usize, u32>>,
}

impl RunHistory {
    pub(crate) fn new(
        task_id: TaskId,
        definition: &'static TaskDefinition,
        deadline: OffsetDateTime,
        node: &str,
    ) -> Self {
        Self {
            task_id,
            definition,
            deadline,
            actor: format!("system:{node}"),
            node: node.to_owned(),
            response_summary: Mutex::new(None),
            compensations: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps the response's JSON for the task's row (never for a task
    /// declaring `encrypt_messages`).
    pub(crate) fn set_response(&self, response: &impl serde::Serialize) {
        if self.definition.encrypt_messages {
            return;
        }
        if let Ok(json) = serde_json::to_string(response) {
            *lock(&self.response_summary) = Some(TaskRecord::summarize(json));
        }
    }

    /// The task's row, showing `progress`.
    pub(crate) fn row(&self, progress: TaskProgress) -> TaskRecord {
        TaskRecord {
            progress,
            version: self.definition.version,
            deadline: Some(self.deadline),
            response_summary: lock(&self.response_summary).clone(),
        }
    }

    /// The records of `event`, just folded into `progress` (`before` was
    /// read before).
    pub(crate) fn records(&self, progress: &TaskProgress, event: &TaskEvent, before: Before) -> Vec<HistoryRecord> {
        let mut records = Vec::with_capacity(2);
        let at = event.at;
        match &event.kind {
            EventKind::StepProgress { .. } => return records,
            EventKind::StepStarted { step, attempt, .. } => {
                records.push(HistoryRecord::AttemptStarted(self.attempt(
                    step,
                    AttemptKind::Run,
                    *attempt,
                    Some(at),
                )));
            }
            EventKind::StepCompleted { step, attempt } => {
                records.push(self.ended(step, AttemptKind::Run, *attempt, at, AttemptOutcome::Succeeded, None));
            }
            EventKind::StepFailed {
                step, attempt, error, ..
            } => {
                records.push(self.ended(
                    step,
                    AttemptKind::Run,
                    *attempt,
                    at,
                    AttemptOutcome::Failed,
                    Some(error),
                ));
            }
            EventKind::StepCancelled { step } => {
                let attempt = progress.steps[step.index].attempts;
                records.push(self.ended(step, AttemptKind::Run, attempt, at, AttemptOutcome::Cancelled, None));
            }
            EventKind::Compensating { .. } => {
                for &index in &before.running {
                    let step = StepRef {
                        index,
                        name: self.definition.steps[index].name,
                    };
                    let attempt = progress.steps[index].attempts;
                    records.push(self.ended(&step, AttemptKind::Run, attempt, at, AttemptOutcome::Cancelled, None));
                }
            }
            EventKind::StepCompensating { step, attempt } => {
                if *attempt > 1 {
                    let failed = AttemptOutcome::Failed;
                    records.push(self.ended(step, AttemptKind::Compensation, attempt - 1, at, failed, None));
                }
                lock(&self.compensations).insert(step.index, *attempt);
                let started = self.attempt(step, AttemptKind::Compensation, *attempt, Some(at));
                records.push(HistoryRecord::AttemptStarted(started));
            }
            EventKind::StepCompensated { step } => {
                let attempt = self.compensation_attempt(step);
                let outcome = AttemptOutcome::Succeeded;
                records.push(self.ended(step, AttemptKind::Compensation, attempt, at, outcome, None));
            }
            EventKind::StepCompensationFailed { step, error } => {
                let attempt = self.compensation_attempt(step);
                let outcome = AttemptOutcome::Failed;
                records.push(self.ended(step, AttemptKind::Compensation, attempt, at, outcome, Some(error)));
            }
            EventKind::StepSkipped { step, condition } | EventKind::ConditionHeld { step, condition } => {
                records.push(HistoryRecord::Condition(ConditionRecord {
                    task_id: event.task_id,
                    step: step.name.to_owned(),
                    snapshot: condition.clone(),
                    at,
                }));
            }
            _ => {}
        }
        records.push(HistoryRecord::Audit(self.audit(progress, event, before)));
        records
    }

    fn audit(&self, progress: &TaskProgress, event: &TaskEvent, before: Before) -> AuditEntry {
        let step = step_of(&event.kind);
        let (before, after) = match (step, before.step) {
            (Some(step), Some(status)) => (status.as_str(), progress.steps[step.index].status.as_str()),
            _ => (before.task.as_str(), progress.status.as_str()),
        };
        let mut entry = AuditEntry::new(event.task_id, self.actor.clone(), action(&event.kind));
        entry.at = event.at;
        entry.step = step.map(|s| s.name.to_owned());
        entry.before = Some(before.to_owned());
        entry.after = Some(after.to_owned());
        entry.detail = detail(&event.kind);
        entry.trace_id.clone_from(&progress.trace_id);
        entry
    }

    fn attempt(&self, step: &StepRef, kind: AttemptKind, attempt: u32, started: Option<OffsetDateTime>) -> StepAttempt {
        let declared = &self.definition.steps[step.index];
        StepAttempt {
            task_id: self.task_id,
            step: step.name.to_owned(),
            order: declared.order,
            host: declared.host,
            kind,
            attempt,
            worker: self.node.clone(),
            started_at: started,
            ended_at: None,
            outcome: None,
            error: None,
        }
    }

    fn ended(
        &self,
        step: &StepRef,
        kind: AttemptKind,
        attempt: u32,
        at: OffsetDateTime,
        outcome: AttemptOutcome,
        error: Option<&String>,
    ) -> HistoryRecord {
        let mut row = self.attempt(step, kind, attempt, None);
        row.ended_at = Some(at);
        row.outcome = Some(outcome);
        row.error = error.cloned();
        HistoryRecord::AttemptEnded(row)
    }

    fn compensation_attempt(&self, step: &StepRef) -> u32 {
        lock(&self.compensations).get(&step.index).copied().unwrap_or(1)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn step_of(kind: &EventKind) -> Option<&StepRef> {
    match kind {
        EventKind::StepStarted { step, .. }
        | EventKind::StepProgress { step, .. }
        | EventKind::StepCompleted { step, .. }
        | EventKind::StepFailed { step, .. }
        | EventKind::StepSkipped { step, .. }
        | EventKind::ConditionHeld { step, .. }
        | EventKind::StepCancelled { step }
        | EventKind::StepCompensating { step, .. }
        | EventKind::StepCompensated { step }
        | EventKind::StepCompensationFailed { step, .. } => Some(step),
        _ => None,
    }
}

/// The event's type, as its JSON form names it.
fn action(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Submitted => "submitted",
        EventKind::Started { .. } => "started",
        EventKind::HandedOff { .. } => "handedOff",
        EventKind::DependentsDecided { .. } => "dependentsDecided",
        EventKind::StepStarted { .. } => "stepStarted",
        EventKind::StepProgress { .. } => "stepProgress",
        EventKind::StepCompleted { .. } => "stepCompleted",
        EventKind::StepFailed { .. } => "stepFailed",
        EventKind::StepSkipped { .. } => "stepSkipped",
        EventKind::ConditionHeld { .. } => "conditionHeld",
        EventKind::StepCancelled { .. } => "stepCancelled",
        EventKind::CancellationRequested => "cancellationRequested",
        EventKind::Compensating { .. } => "compensating",
        EventKind::StepCompensating { .. } => "stepCompensating",
        EventKind::StepCompensated { .. } => "stepCompensated",
        EventKind::StepCompensationFailed { .. } => "stepCompensationFailed",
        EventKind::AwaitingDependents => "awaitingDependents",
        EventKind::Completed => "completed",
        EventKind::Failed { .. } => "failed",
        EventKind::Compensated { .. } => "compensated",
        EventKind::Cancelled => "cancelled",
        EventKind::CompensationFailed { .. } => "compensationFailed",
    }
}

fn detail(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::Started { host } => Some(format!("on the {host} host")),
        EventKind::HandedOff { queue } => Some(format!("queue `{queue}`")),
        EventKind::StepStarted { attempt, .. }
        | EventKind::StepCompleted { attempt, .. }
        | EventKind::StepCompensating { attempt, .. } => Some(format!("attempt {attempt}")),
        EventKind::StepFailed {
            attempt,
            error,
            retry_in,
            ..
        } => Some(match retry_in {
            Some(delay) => format!("attempt {attempt}: {error} (retry in {} ms)", delay.as_millis()),
            None => format!("attempt {attempt}: {error}"),
        }),
        EventKind::StepSkipped { condition, .. } | EventKind::ConditionHeld { condition, .. } => {
            Some(condition.expression.clone())
        }
        EventKind::Compensating { reason } => Some(format!("{reason:?}")),
        EventKind::DependentsDecided { dependents } => Some(
            dependents
                .iter()
                .map(|d| match (&d.condition, d.started) {
                    (_, true) => format!("{} started as {}", d.task_name, d.task_id),
                    (Some(condition), false) => {
                        format!("{} not started: `{}` does not hold", d.task_name, condition.expression)
                    }
                    (None, false) => format!("{} not started", d.task_name),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        EventKind::StepCompensationFailed { error, .. }
        | EventKind::Failed { error }
        | EventKind::Compensated { error }
        | EventKind::CompensationFailed { error } => Some(error.clone()),
        _ => None,
    }
}
