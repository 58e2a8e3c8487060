//! The saga kernel: runs a task's steps stage by stage on one host,
//! evaluates conditions, retries, honours timeouts and cancellation,
//! snapshots the saga after every step, and compensates completed steps in
//! reverse order of completion when the saga cannot go on.
//!
//! The same kernel runs the API phase (the Api steps, inside the submit
//! call) and the worker phase (the Worker steps, after the hand-off); a
//! worker phase starts from a [`SagaSnapshot`], so a redelivered task
//! resumes after its last recorded step instead of starting over.

mod attempt;
mod compensate;
mod control;
mod recorder;
mod snapshot;
mod stage;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use snapshot::SagaSnapshot;

pub(crate) use control::{RunControl, StopReason};
pub(crate) use recorder::Recorder;

use crate::event::{CompensationReason, EventKind};
use crate::host::runtime::Runtime;
use crate::id::TaskId;
use crate::infra::StoredState;
use crate::progress::{StepStatus, TaskProgress, TaskStatus};
use crate::task::{OnExhausted, StepError, StepHost, Task, TaskDefinition};
use attempt::StepEnv;

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseEnd {
    /// Every step of the phase ran; the workers take over.
    HandOff,
    /// The task ended in this state.
    Settled(TaskStatus),
    /// The run stopped without settling (this worker lost its lock, or the
    /// host is shutting down): the task is left for redelivery.
    Interrupted,
}

/// A step that failed for good.
pub(crate) struct Failure {
    step: Option<usize>,
    error: StepError,
}

/// One saga run on one host.
pub(crate) struct SagaRun<'r, T: Task> {
    rt: &'r Runtime,
    task: &'r T,
    def: &'static TaskDefinition,
    task_id: TaskId,
    request: Arc<T::Request>,
    data: T::Data,
    response: Option<T::Response>,
    deadline: OffsetDateTime,
    recorder: Recorder<'r>,
    control: Arc<RunControl>,
    fence: u64,
}

impl<'r, T: Task> SagaRun<'r, T> {
    /// A run starting from `snapshot`, writing snapshots with `fence`.
    pub(crate) fn new(
        rt: &'r Runtime,
        task: &'r T,
        snapshot: SagaSnapshot<T>,
        control: Arc<RunControl>,
        fence: u64,
    ) -> Self {
        Self {
            rt,
            task,
            def: T::definition(),
            task_id: snapshot.progress.task_id,
            request: snapshot.request,
            data: snapshot.data,
            response: snapshot.response,
            deadline: snapshot.deadline,
            recorder: Recorder::new(rt, snapshot.progress),
            control,
            fence,
        }
    }

    pub(crate) fn recorder(&self) -> &Recorder<'r> {
        &self.recorder
    }

    /// The saga state now.
    pub(crate) fn snapshot(&self) -> SagaSnapshot<T> {
        SagaSnapshot {
            schema_version: crate::codec::SCHEMA_VERSION,
            request: Arc::clone(&self.request),
            data: self.data.clone(),
            progress: self.recorder.snapshot(),
            response: self.response.clone(),
            deadline: self.deadline,
        }
    }

    /// Saves the saga state. A failure is logged; a fenced write means
    /// another worker owns the task now, so this run stops.
    pub(crate) async fn save(&self) {
        let payload = match self.rt.encode(self.snapshot()) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(task_id = %self.task_id, %error, "could not encode the saga state");
                return;
            }
        };
        let state = StoredState {
            fence: self.fence,
            payload,
        };
        match self.rt.infra.state.save(self.task_id, state).await {
            Ok(()) if self.recorder.with(TaskProgress::is_terminal) => {
                if let Err(error) = self.rt.infra.state.ended(self.task_id).await {
                    tracing::warn!(task_id = %self.task_id, %error, "could not mark the saga state ended");
                }
            }
            Ok(()) => {}
            Err(crate::Error::Fenced { .. }) => {
                tracing::warn!(task_id = %self.task_id, "fenced out by a newer lock holder; stopping");
                self.control.stop(StopReason::LockLost);
            }
            Err(error) => tracing::error!(task_id = %self.task_id, %error, "could not save the saga state"),
        }
    }

    /// Records `kind`, then saves the state, then writes the progress: a
    /// client that sees the new progress finds the matching state.
    async fn settle(&self, kind: EventKind) {
        let progress = self.recorder.apply(kind);
        self.save().await;
        self.recorder.write(&progress).await;
    }

    /// Records `kind` and saves the state, leaving the progress write to
    /// the event that follows at once (see [`Recorder::fold`]).
    async fn settle_folded(&self, kind: EventKind) {
        self.recorder.fold(kind);
        self.save().await;
    }

    fn env(&self) -> StepEnv<'_, T> {
        StepEnv {
            rt: self.rt,
            task: self.task,
            def: self.def,
            task_id: self.task_id,
            request: &self.request,
            recorder: &self.recorder,
            scratch_dir: self.rt.scratch_dir(self.task_id),
        }
    }

    /// Runs the steps placed on `host` that have not run yet, under the
    /// task's timeout.
    pub(crate) async fn run_phase(&mut self, host: StepHost) -> PhaseEnd {
        let remaining: Duration = (self.deadline - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        if remaining.is_zero() {
            // Resumed after the deadline (the deadline travels in the
            // snapshot): nothing more runs, whatever the timer's timing.
            self.control.stop(StopReason::TimedOut);
        }
        let control = Arc::clone(&self.control);
        let timer = async move {
            tokio::time::sleep(remaining).await;
            control.stop(StopReason::TimedOut);
            std::future::pending::<()>().await;
        };
        let end = tokio::select! {
            end = self.run_phase_inner(host) => end,
            () = timer => unreachable!("the timer never completes"),
        };
        self.recorder.flush().await;
        end
    }

    async fn run_phase_inner(&mut self, host: StepHost) -> PhaseEnd {
        if self.recorder.with(|p| p.status == TaskStatus::Compensating) {
            let error = self.recorder.with(|p| p.error.clone()).unwrap_or_default();
            return self.compensate_and_settle(CompensationReason::StepFailed, error).await;
        }
        // Written with the first step's start, which follows at once.
        self.recorder.fold(EventKind::Started { host });
        for stage in self.def.stages() {
            if self.def.steps[stage.steps[0]].host != host {
                continue;
            }
            if OffsetDateTime::now_utc() >= self.deadline {
                // Steps that never yield give the timer no chance to fire.
                self.control.stop(StopReason::TimedOut);
            }
            if let Some(reason) = self.control.reason() {
                return self.stopped(reason).await;
            }
            if host == StepHost::Worker && self.rt.shutdown.is_cancelled() {
                return PhaseEnd::Interrupted;
            }
            if let Err(failure) = self.run_stage(&stage).await {
                return self.fail(failure).await;
            }
        }
        if let Some(reason) = self.control.reason() {
            return self.stopped(reason).await;
        }
        if host == StepHost::Api && self.def.has_worker_steps() {
            return PhaseEnd::HandOff;
        }
        match self.task.response(&self.request, &self.data) {
            Ok(response) => {
                self.response = Some(response);
                self.settle(EventKind::Completed).await;
                PhaseEnd::Settled(TaskStatus::Completed)
            }
            Err(error) => self.fail(Failure { step: None, error }).await,
        }
    }

    /// Gives up on a task whose hand-off failed: compensates what ran.
    pub(crate) async fn abandon(&mut self, error: String) -> PhaseEnd {
        self.compensate_and_settle(CompensationReason::StepFailed, error).await
    }

    /// A step failed for good (or the response could not be built).
    async fn fail(&mut self, failure: Failure) -> PhaseEnd {
        if let Some(reason) = self.control.reason() {
            return self.stopped(reason).await;
        }
        let error = match failure.step {
            Some(step) => format!("step `{}` failed: {}", self.def.steps[step].name, failure.error),
            None => format!("building the response failed: {}", failure.error),
        };
        let policy = failure
            .step
            .map_or(OnExhausted::Compensate, |step| self.def.steps[step].retry.on_exhausted);
        match policy {
            OnExhausted::Fail => {
                self.settle(EventKind::Failed { error }).await;
                PhaseEnd::Settled(TaskStatus::Failed)
            }
            OnExhausted::Compensate => self.compensate_and_settle(CompensationReason::StepFailed, error).await,
        }
    }

    /// The run was asked to stop.
    async fn stopped(&mut self, reason: StopReason) -> PhaseEnd {
        match reason {
            StopReason::LockLost => PhaseEnd::Interrupted,
            StopReason::Cancelled => {
                self.recorder.record(EventKind::CancellationRequested).await;
                self.compensate_and_settle(CompensationReason::Cancelled, String::new())
                    .await
            }
            StopReason::TimedOut => {
                let error = format!("the task timed out after {} s", self.def.timeout.as_secs());
                self.compensate_and_settle(CompensationReason::TimedOut, error).await
            }
        }
    }

    async fn compensate_and_settle(&mut self, reason: CompensationReason, error: String) -> PhaseEnd {
        let failures = self.compensate(reason).await;
        if self.control.reason() == Some(StopReason::LockLost) {
            return PhaseEnd::Interrupted;
        }
        let (kind, status) = match (failures.is_empty(), reason) {
            (true, CompensationReason::Cancelled) => (EventKind::Cancelled, TaskStatus::Cancelled),
            (true, _) => (EventKind::Compensated { error }, TaskStatus::Compensated),
            (false, _) => {
                let cause = if error.is_empty() {
                    "cancelled".to_owned()
                } else {
                    error
                };
                let error = format!("{cause}; compensation failed: {}", failures.join("; "));
                (EventKind::CompensationFailed { error }, TaskStatus::CompensationFailed)
            }
        };
        self.settle(kind).await;
        PhaseEnd::Settled(status)
    }

    /// Whether step `index` still has to run (it has not completed or been
    /// skipped in an earlier run).
    fn needs_run(&self, index: usize) -> bool {
        self.recorder
            .with(|p| !matches!(p.steps[index].status, StepStatus::Completed | StepStatus::Skipped))
    }
}
