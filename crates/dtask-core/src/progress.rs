//! The progress snapshot of a task: what every listener (polling, SSE,
//! WebSocket, webhook, the CLI) sees, and what the saga state carries.
//!
//! A snapshot changes only by [`TaskProgress::apply`]ing a
//! [`TaskEvent`], so every change has an event and every event shows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
pub use crate::task::{ConditionSnapshot, ObservedValue};
use crate::task::{DependentTask, StepHost, TaskDefinition};

/// The life-cycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskStatus {
    /// Accepted; no step has started.
    Pending,
    /// Steps are running (on the API side or on a worker).
    Running,
    /// Handed over to the queue, waiting for a worker.
    Queued,
    /// Undoing completed steps after a failure, a cancellation or a timeout.
    Compensating,
    /// Every step completed, and the task waits for the dependent tasks it
    /// started whose edges are declared `compensate_upstream`: it completes
    /// when they all complete, and is compensated when one does not. No
    /// worker holds it meanwhile.
    AwaitingDependents,
    /// Every step completed. Terminal.
    Completed,
    /// A step failed and the task stopped without compensating. Terminal.
    Failed,
    /// A step failed (or the task timed out) and the completed steps were
    /// undone. Terminal.
    Compensated,
    /// Cancelled by its client; the completed steps were undone. Terminal.
    Cancelled,
    /// Undoing a step failed for good; objects or effects may remain.
    /// Terminal.
    CompensationFailed,
}

impl TaskStatus {
    /// Every status, in the order of their declaration.
    pub const ALL: [Self; 10] = [
        Self::Pending,
        Self::Running,
        Self::Queued,
        Self::Compensating,
        Self::AwaitingDependents,
        Self::Completed,
        Self::Failed,
        Self::Compensated,
        Self::Cancelled,
        Self::CompensationFailed,
    ];

    /// Whether the task has ended.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Compensated | Self::Cancelled | Self::CompensationFailed
        )
    }

    /// The camelCase name used on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Queued => "queued",
            Self::Compensating => "compensating",
            Self::AwaitingDependents => "awaitingDependents",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Compensated => "compensated",
            Self::Cancelled => "cancelled",
            Self::CompensationFailed => "compensationFailed",
        }
    }
}

/// The state of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt failed; the next one waits for its backoff delay.
    Retrying,
    /// Done; its data is recorded.
    Completed,
    /// Failed for good.
    Failed,
    /// Its condition did not hold.
    Skipped,
    /// Stopped before completing (cancellation, or a race it lost).
    Cancelled,
    /// Being undone.
    Compensating,
    /// Undone.
    Compensated,
    /// Undoing it failed for good.
    CompensationFailed,
}

impl StepStatus {
    /// The camelCase name used on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::CompensationFailed => "compensationFailed",
        }
    }

    /// Whether the step's work is finished (successfully or not).
    pub const fn is_settled(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Retrying)
    }
}

/// The state of one step inside a [`TaskProgress`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    /// The declared name.
    pub name: String,
    /// The declared order.
    pub order: u32,
    /// Where it runs.
    pub host: StepHost,
    /// The parallel group it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its state.
    pub status: StepStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The fraction the running step reported, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The message the running step reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The condition's evaluation, when it has one and it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionSnapshot>,
    /// The process that ran its last attempt (the node name a worker
    /// registers under, as `GET /api/workers` lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Position in the order of completion (1 for the first step to
    /// complete), which compensation walks backwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_order: Option<u32>,
    /// When the first attempt started.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<OffsetDateTime>,
    /// When it completed, failed, was skipped or cancelled.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
}

/// Everything a client may want to know about a task, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskProgress {
    /// The task.
    pub task_id: TaskId,
    /// Its declared name.
    pub task_name: String,
    /// Who submitted it: the subject of the principal that did, when one
    /// did (see [`Host::caller`](crate::Host::caller)). Only they and
    /// operators see the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<String>,
    /// The task's trace id (W3C trace context: 32 lowercase hex digits),
    /// given at submit; the history's audit entries carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The task whose completion started this one (`#[depends_on]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<TaskId>,
    /// Its state.
    pub status: TaskStatus,
    /// Number of declared steps.
    pub total_steps: u32,
    /// Steps completed or skipped.
    pub completed_steps: u32,
    /// The step running now (the first one, for a group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// Overall completion, 0 to 100, counting a running step's fraction.
    pub percent: f64,
    /// Every step's state, in declaration order.
    pub steps: Vec<StepState>,
    /// A human-readable summary of the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error that ended (or is compensating) the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the task may be cancelled by its client.
    pub cancellable: bool,
    /// Whether a cancellation was requested.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Whether the task has ended.
    pub is_complete: bool,
    /// Whether it ended well (`None` while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// Incremented by every change; orders snapshots.
    pub revision: u64,
    /// When it was submitted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it ended.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub completed_at: Option<OffsetDateTime>,
    /// The tasks that depend on this one (`#[depends_on]`), as decided
    /// when it completed: each started, or not and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<DependentTask>,
}

impl TaskProgress {
    /// The snapshot of a task just submitted: every step pending.
    pub fn new(task_id: TaskId, definition: &TaskDefinition, now: OffsetDateTime) -> Self {
        let steps = definition
            .steps
            .iter()
            .map(|step| StepState {
                name: step.name.to_owned(),
                order: step.order,
                host: step.host,
                group: step.group.map(|g| definition.groups[g].name.to_owned()),
                status: StepStatus::Pending,
                attempts: 0,
                fraction: None,
                message: None,
                error: None,
                condition: None,
                worker: None,
                completion_order: None,
                started_at: None,
                finished_at: None,
            })
            .collect::<Vec<_>>();
        Self {
            task_id,
            task_name: definition.name.to_owned(),
            submitter: None,
            trace_id: None,
            parent_task_id: None,
            status: TaskStatus::Pending,
            total_steps: steps.len() as u32,
            completed_steps: 0,
            current_step: None,
            percent: 0.0,
            steps,
            message: None,
            error: None,
            cancellable: definition.cancellable,
            cancel_requested: false,
            is_complete: false,
            success: None,
            revision: 0,
            created_at: now,
            updated_at: now,
            completed_at: None,
            dependents: Vec::new(),
        }
    }

    /// Whether the task has ended.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Folds one event into the snapshot.
    pub fn apply(&mut self, event: &TaskEvent) {
        self.revision += 1;
        self.updated_at = event.at;
        let at = event.at;
        match &event.kind {
            EventKind::Submitted => {
                self.status = TaskStatus::Pending;
                self.message = Some("submitted".into());
            }
            EventKind::Started { host } => {
                self.status = TaskStatus::Running;
                self.message = Some(format!("running on the {host} host"));
            }
            EventKind::HandedOff { queue } => {
                self.status = TaskStatus::Queued;
                self.message = Some(format!("queued on `{queue}`"));
            }
            EventKind::StepStarted { step, attempt, worker } => {
                self.status = TaskStatus::Running;
                let state = &mut self.steps[step.index];
                state.status = StepStatus::Running;
                state.attempts = *attempt;
                if state.worker.as_deref() != Some(worker.as_str()) {
                    state.worker = Some(worker.clone());
                }
                state.started_at.get_or_insert(at);
                state.fraction = None;
                self.message = Some(match attempt {
                    1 => format!("{} started", step.name),
                    n => format!("{} started (attempt {n})", step.name),
                });
            }
            EventKind::StepProgress {
                step,
                fraction,
                message,
            } => {
                let state = &mut self.steps[step.index];
                state.fraction = Some(fraction.clamp(0.0, 1.0));
                state.message.clone_from(message);
                if let Some(message) = message {
                    self.message = Some(format!("{}: {message}", step.name));
                }
            }
            EventKind::StepCompleted { step, .. } => {
                let order = self.next_completion_order();
                let state = &mut self.steps[step.index];
                state.status = StepStatus::Completed;
                state.fraction = Some(1.0);
                state.completion_order = Some(order);
                state.finished_at = Some(at);
                self.message = Some(format!("{} completed", step.name));
            }
            EventKind::StepFailed {
                step, error, retry_in, ..
            } => {
                let state = &mut self.steps[step.index];
                state.error = Some(error.clone());
                match retry_in {
                    Some(delay) => {
                        state.status = StepStatus::Retrying;
                        self.message = Some(format!(
                            "{} failed, retrying in {} ms: {error}",
                            step.name,
                            delay.as_millis()
                        ));
                    }
                    None => {
                        state.status = StepStatus::Failed;
                        state.finished_at = Some(at);
                        self.message = Some(format!("{} failed: {error}", step.name));
                    }
                }
            }
            EventKind::StepSkipped { step, condition } => {
                let state = &mut self.steps[step.index];
                state.status = StepStatus::Skipped;
                state.condition = Some(condition.clone());
                state.finished_at = Some(at);
                self.message = Some(format!(
                    "{} skipped: `{}` did not hold",
                    step.name, condition.expression
                ));
            }
            EventKind::ConditionHeld { step, condition } => {
                self.steps[step.index].condition = Some(condition.clone());
            }
            EventKind::StepCancelled { step } => {
                let state = &mut self.steps[step.index];
                state.status = StepStatus::Cancelled;
                state.finished_at = Some(at);
            }
            EventKind::CancellationRequested => {
                self.cancel_requested = true;
                self.message = Some("cancellation requested".into());
            }
            EventKind::Compensating { reason } => {
                self.status = TaskStatus::Compensating;
                self.message = Some(format!("compensating ({reason:?})"));
                for state in &mut self.steps {
                    if matches!(state.status, StepStatus::Running | StepStatus::Retrying) {
                        state.status = StepStatus::Cancelled;
                        state.finished_at = Some(at);
                    }
                }
            }
            EventKind::StepCompensating { step, .. } => {
                self.steps[step.index].status = StepStatus::Compensating;
                self.message = Some(format!("undoing {}", step.name));
            }
            EventKind::StepCompensated { step } => {
                self.steps[step.index].status = StepStatus::Compensated;
                self.message = Some(format!("{} undone", step.name));
            }
            EventKind::StepCompensationFailed { step, error } => {
                let state = &mut self.steps[step.index];
                state.status = StepStatus::CompensationFailed;
                state.error = Some(error.clone());
            }
            EventKind::DependentsDecided { dependents } => self.dependents.clone_from(dependents),
            EventKind::AwaitingDependents => {
                self.status = TaskStatus::AwaitingDependents;
                self.current_step = None;
                let awaited: Vec<&str> = (self.dependents.iter())
                    .filter(|d| d.started && d.compensates_upstream)
                    .map(|d| d.task_name.as_str())
                    .collect();
                self.message = Some(format!("waiting for {}", awaited.join(", ")));
            }
            EventKind::Completed => self.finish(TaskStatus::Completed, None, at),
            EventKind::Failed { error } => self.finish(TaskStatus::Failed, Some(error), at),
            EventKind::Compensated { error } => self.finish(TaskStatus::Compensated, Some(error), at),
            EventKind::Cancelled => self.finish(TaskStatus::Cancelled, None, at),
            EventKind::CompensationFailed { error } => self.finish(TaskStatus::CompensationFailed, Some(error), at),
        }
        self.recount();
    }

    fn next_completion_order(&self) -> u32 {
        self.steps.iter().filter_map(|s| s.completion_order).max().unwrap_or(0) + 1
    }

    fn finish(&mut self, status: TaskStatus, error: Option<&String>, at: OffsetDateTime) {
        self.status = status;
        self.is_complete = true;
        self.success = Some(status == TaskStatus::Completed);
        self.completed_at = Some(at);
        self.current_step = None;
        if let Some(error) = error {
            self.error = Some(error.clone());
        }
        self.message = Some(match status {
            TaskStatus::Completed => "completed".to_owned(),
            TaskStatus::Cancelled => "cancelled".to_owned(),
            other => format!("{}: {}", other.as_str(), error.map_or("", String::as_str)),
        });
    }

    fn recount(&mut self) {
        let mut done = 0u32;
        let mut partial = 0.0;
        let mut current = None;
        for state in &self.steps {
            match state.status {
                StepStatus::Completed | StepStatus::Skipped => done += 1,
                StepStatus::Running | StepStatus::Retrying => {
                    partial += state.fraction.unwrap_or(0.0);
                    current.get_or_insert_with(|| state.name.clone());
                }
                _ => {}
            }
        }
        self.completed_steps = done;
        if !self.is_complete {
            self.current_step = current;
        }
        self.percent = if self.status == TaskStatus::Completed || self.total_steps == 0 {
            100.0
        } else {
            ((f64::from(done) + partial) / f64::from(self.total_steps) * 100.0).min(100.0)
        };
    }
}

impl std::fmt::Display for StepHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Api => "api",
            Self::Worker => "worker",
        })
    }
}
