//! The saga kernel: runs a task's steps stage by stage on one host,
//! evaluates conditions, retries, honours timeouts and cancellation,
//! snapshots the saga after every step, and compensates completed steps in
//! reverse order of completion when the saga cannot go on.
//!
//! The same kernel runs the API phase (the Api steps, inside the submit
//! call) and the worker phase (the Worker steps, after the hand-off); a
//! worker phase starts from a [`SagaSnapshot`], so a redelivered task
//! resumes after its last recorded step instead of starting over.
//!
//! # Settlement
//!
//! A run *settles* a change (a step completed, skipped or compensated, the
//! task ended) by saving the saga state that holds it, and only then writes
//! the progress that shows it ([`SagaRun::settle`]). A save that fails is
//! retried with backoff while the run may still write; one that cannot be
//! made, or that a newer lock holder fenced out, *halts* the run: nothing
//! more is written, nothing compensated, and the phase ends
//! [`PhaseEnd::Interrupted`], so the worker hands the message back instead
//! of acknowledging it. The recorder holds back every progress write while
//! a settled change waits for its save, so progress never shows a state
//! that is not saved.

mod attempt;
mod compensate;
mod control;
mod dependents;
mod history;
mod member;
mod metrics;
mod recorder;
pub(crate) mod retry;
mod runtime;
mod spans;
mod stage;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::codec::{Payload, SagaSnapshot, SagaStateSerializer};

pub(crate) use control::{RunControl, StopReason};
pub(crate) use dependents::{AnyResponse, Dependent, Dependents, Starter};
pub use history::HistorySettings;
pub(crate) use history::HistoryWriter;
pub(crate) use member::member_queue;
pub(crate) use metrics::{Metrics, QueueMetrics};
pub(crate) use recorder::Recorder;
pub(crate) use runtime::{ControlSlot, Runtime};
pub use runtime::{EventListener, KernelSettings, StepInterceptor};

use crate::event::{CompensationReason, EventKind};
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
    /// The task ended in this state, saved; or, in
    /// [`TaskStatus::AwaitingDependents`], waits (saved) for its dependents,
    /// with no run holding it.
    Settled(TaskStatus),
    /// The run stopped without settling (this worker lost its lock or was
    /// fenced out, the state could not be saved, or the host is shutting
    /// down): the task is left for redelivery.
    Interrupted,
}

/// A run that can no longer record anything: its state could not be saved,
/// or a newer holder of the task's lock fenced it out. The run unwinds
/// without writing progress or compensating, and ends
/// [`PhaseEnd::Interrupted`].
#[derive(Debug)]
pub(crate) struct Halted {
    /// Why the state could not be saved.
    pub(crate) cause: crate::Error,
}

/// A step that failed for good.
pub(crate) struct Failure {
    step: Option<usize>,
    error: StepError,
}

/// Why a stage did not complete.
pub(crate) enum StageError {
    /// A member failed for good.
    Failed(Failure),
    /// The run halted.
    Halted(Halted),
}

impl From<Halted> for StageError {
    fn from(halted: Halted) -> Self {
        Self::Halted(halted)
    }
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
        let history = (rt.history.as_ref()).map(|_| {
            let task_id = snapshot.progress.task_id;
            history::RunHistory::new(task_id, T::definition(), snapshot.deadline, &rt.node)
        });
        Self::assemble(rt, task, snapshot, control, fence, |progress| {
            Recorder::new(rt, progress, history)
        })
    }

    /// A member run of a distributed group (see `member`): records its
    /// progress under its own id, and neither keeps a history of its own
    /// nor counts as a task in the metrics.
    pub(crate) fn member(
        rt: &'r Runtime,
        task: &'r T,
        snapshot: SagaSnapshot<T>,
        control: Arc<RunControl>,
        fence: u64,
    ) -> Self {
        Self::assemble(rt, task, snapshot, control, fence, |progress| {
            Recorder::new(rt, progress, None).uncounted()
        })
    }

    fn assemble(
        rt: &'r Runtime,
        task: &'r T,
        snapshot: SagaSnapshot<T>,
        control: Arc<RunControl>,
        fence: u64,
        recorder: impl FnOnce(TaskProgress) -> Recorder<'r>,
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
            recorder: recorder(snapshot.progress),
            control,
            fence,
        }
    }

    pub(crate) fn task_id(&self) -> TaskId {
        self.task_id
    }

    pub(crate) fn recorder(&self) -> &Recorder<'r> {
        &self.recorder
    }

    /// The response, once the task completed.
    pub(crate) fn response(&self) -> Option<&T::Response> {
        self.response.as_ref()
    }

    /// The saga state now.
    pub(crate) fn snapshot(&self) -> SagaSnapshot<T> {
        self.snapshot_with(self.recorder.snapshot())
    }

    /// The saga state now, holding `progress`.
    fn snapshot_with(&self, progress: TaskProgress) -> SagaSnapshot<T> {
        SagaSnapshot {
            schema_version: crate::codec::SCHEMA_VERSION,
            request: Arc::clone(&self.request),
            data: self.data.clone(),
            progress,
            response: self.response.clone(),
            deadline: self.deadline,
        }
    }

    /// Saves the saga state (and returns it, encoded), retrying a failed
    /// write with backoff for as long as the task's lock lasts (the
    /// worker's lease runs out after [`KernelSettings::lock_ttl`] without
    /// renewal, and the lock's keep-alive stops the run when it is lost).
    ///
    /// # Errors
    /// [`Halted`] when the state cannot be encoded, cannot be saved in that
    /// time, or is fenced out by a newer holder of the lock: the recorder
    /// then writes nothing more and the run is stopped as interrupted.
    /// (Step outputs and the response are checked before they enter the
    /// state, so encoding fails only on a codec's own limits; the message
    /// then comes back until the broker's delivery limit dead-letters it.)
    pub(crate) async fn save(&self) -> Result<Payload, Halted> {
        let state = self.state_to_save()?;
        let payload = state.payload.clone();
        self.store(state, |state| self.rt.infra.state.save(self.task_id, state))
            .await?;
        Ok(payload)
    }

    /// Saves `state` with `write` (the state store's save, or a
    /// settlement's save with its progress), as [`SagaRun::save`]
    /// describes, and tells the store when the task ended.
    async fn store<R, F>(&self, state: StoredState, write: impl Fn(StoredState) -> F) -> Result<R, Halted>
    where
        F: Future<Output = crate::Result<R>>,
    {
        let saved = retry::with_backoff(
            self.rt.settings.lock_ttl,
            || write(state.clone()),
            // A fenced write will never pass; an interrupted run stops.
            |error| {
                !matches!(error, crate::Error::Fenced { .. }) && self.control.reason() != Some(StopReason::Interrupted)
            },
            |error, pause| {
                let retry_in_ms = pause.as_millis() as u64;
                tracing::warn!(task_id = %self.task_id, %error, retry_in_ms, "saving the saga state failed; retrying");
            },
        )
        .await;
        let written = match saved {
            Ok(written) => written,
            Err(error @ crate::Error::Fenced { .. }) => {
                tracing::warn!(
                    task_id = %self.task_id, %error,
                    "fenced out by a newer holder of the task's lock; stopping without recording anything"
                );
                return Err(self.halt(error));
            }
            Err(error) => {
                tracing::error!(task_id = %self.task_id, %error, "cannot save the saga state; stopping unrecorded");
                return Err(self.halt(error));
            }
        };
        if self.recorder.with(TaskProgress::is_terminal)
            && let Err(error) = self.rt.infra.state.ended(self.task_id).await
        {
            // Only the store's retention is at stake: the state is saved.
            tracing::warn!(task_id = %self.task_id, %error, "could not mark the saga state ended");
        }
        Ok(written)
    }

    /// The saga state now, encoded and fenced as [`SagaRun::save`] saves it
    /// (or a caller saving many runs' states together).
    ///
    /// # Errors
    /// [`Halted`] when the state cannot be encoded.
    pub(crate) fn state_to_save(&self) -> Result<StoredState, Halted> {
        self.encode_state(self.snapshot())
    }

    fn encode_state(&self, snapshot: SagaSnapshot<T>) -> Result<StoredState, Halted> {
        match self.rt.encode(snapshot) {
            Ok(payload) => Ok(StoredState {
                fence: self.fence,
                payload,
            }),
            Err(error) => {
                tracing::error!(task_id = %self.task_id, %error, "cannot encode the saga state; stopping unrecorded");
                Err(self.halt(error))
            }
        }
    }

    /// A run whose state a caller could not save (see
    /// [`SagaRun::state_to_save`]) stops for good, as [`SagaRun::save`]'s
    /// would.
    pub(crate) fn unsaved(&self, cause: crate::Error) -> Halted {
        tracing::error!(task_id = %self.task_id, error = %cause, "cannot save the saga state; stopping unrecorded");
        self.halt(cause)
    }

    /// Stops the run for good: no more progress writes, the running steps'
    /// tokens fire, and the phase ends interrupted.
    fn halt(&self, cause: crate::Error) -> Halted {
        self.recorder.halt();
        self.control.stop(StopReason::Interrupted);
        Halted { cause }
    }

    /// Records `kind`, saves the state, then writes the progress: a client
    /// that sees the new progress finds the matching state.
    ///
    /// # Errors
    /// [`Halted`] when the state could not be saved; nothing is written.
    async fn settle(&self, kind: EventKind) -> Result<(), Halted> {
        self.recorder.begin_settlement(kind);
        if let Some(settlement) = &self.rt.infra.settlement
            && let Some(progress) = self.recorder.sole_settlement()
        {
            // One atomic step: the state holds exactly the progress shown.
            let state = self.encode_state(self.snapshot_with(progress.clone()))?;
            let written = self
                .store(state, |state| {
                    settlement.save_with_progress(self.task_id, state, &progress)
                })
                .await?;
            self.recorder.settled_showing(&progress, written).await;
            return Ok(());
        }
        self.save().await?;
        self.recorder.settled(true).await;
        Ok(())
    }

    /// Records `kind` and saves the state, leaving the progress write to
    /// the event that follows at once (see [`Recorder::fold`]).
    ///
    /// # Errors
    /// As [`SagaRun::settle`].
    async fn settle_folded(&self, kind: EventKind) -> Result<(), Halted> {
        self.recorder.begin_settlement(kind);
        self.save().await?;
        self.recorder.settled(false).await;
        Ok(())
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
        let (deadline, control) = (self.deadline, Arc::clone(&self.control));
        let end = under_deadline(deadline, control, self.run_phase_inner(host)).await;
        self.recorder.flush().await;
        end
    }

    async fn run_phase_inner(&mut self, host: StepHost) -> Result<PhaseEnd, Halted> {
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
                return Ok(PhaseEnd::Interrupted);
            }
            match self.run_stage(&stage).await {
                Ok(()) => {}
                Err(StageError::Failed(failure)) => return self.fail(failure).await,
                Err(StageError::Halted(halted)) => return Err(halted),
            }
        }
        if let Some(reason) = self.control.reason() {
            return self.stopped(reason).await;
        }
        if host == StepHost::Api && self.def.has_worker_steps() {
            return Ok(PhaseEnd::HandOff);
        }
        let response = self.task.response(&self.request, &self.data).and_then(|response| {
            // A response that cannot be saved would leave the task unable
            // to end: it fails instead.
            match self.rt.serialize.then(|| self.rt.codec::<T>().serialize(&response)) {
                Some(Err(error)) => Err(StepError::permanent(format!("it cannot be serialized: {error}"))),
                _ => Ok(response),
            }
        });
        match response {
            Ok(response) => {
                let dependents = self.rt.dependents.decide(self.def.name, self.task_id, &response);
                let awaits = dependents.iter().any(|d| d.started && d.compensates_upstream);
                if !dependents.is_empty() {
                    self.recorder.fold(EventKind::DependentsDecided { dependents });
                }
                self.response = Some(response);
                if awaits {
                    self.settle(EventKind::AwaitingDependents).await?;
                    return Ok(PhaseEnd::Settled(TaskStatus::AwaitingDependents));
                }
                self.complete().await
            }
            Err(error) => self.fail(Failure { step: None, error }).await,
        }
    }

    /// Completes the task with the response it built.
    async fn complete(&mut self) -> Result<PhaseEnd, Halted> {
        if let Some(response) = &self.response {
            self.recorder.set_response(response);
        }
        self.settle(EventKind::Completed).await?;
        Ok(PhaseEnd::Settled(TaskStatus::Completed))
    }

    /// Ends a task that awaited its dependents
    /// ([`TaskStatus::AwaitingDependents`]) once they all ended: completes
    /// it when `failure` is `None` (they all completed), compensates its
    /// steps otherwise, as cancelled when a client asked to cancel it
    /// meanwhile (the request went on to its dependents). The task's
    /// timeout no longer applies: its steps are done, and undoing them
    /// must not be cut short.
    pub(crate) async fn conclude(&mut self, failure: Option<String>) -> PhaseEnd {
        let cancelled = self.control.reason() == Some(StopReason::Cancelled);
        let end = match failure {
            None => self.complete().await,
            Some(_) if cancelled => {
                self.compensate_and_settle(CompensationReason::Cancelled, String::new())
                    .await
            }
            Some(error) => {
                self.compensate_and_settle(CompensationReason::DependentFailed, error)
                    .await
            }
        };
        self.recorder.flush().await;
        end.unwrap_or(PhaseEnd::Interrupted)
    }

    /// Gives up on a task whose hand-off failed: compensates what ran.
    pub(crate) async fn abandon(&mut self, error: String) -> PhaseEnd {
        self.compensate_and_settle(CompensationReason::StepFailed, error)
            .await
            .unwrap_or(PhaseEnd::Interrupted)
    }

    /// A step failed for good (or the response could not be built).
    async fn fail(&mut self, failure: Failure) -> Result<PhaseEnd, Halted> {
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
                self.settle(EventKind::Failed { error }).await?;
                Ok(PhaseEnd::Settled(TaskStatus::Failed))
            }
            OnExhausted::Compensate => self.compensate_and_settle(CompensationReason::StepFailed, error).await,
        }
    }

    /// The run was asked to stop.
    async fn stopped(&mut self, reason: StopReason) -> Result<PhaseEnd, Halted> {
        match reason {
            StopReason::Interrupted => Ok(PhaseEnd::Interrupted),
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

    async fn compensate_and_settle(&mut self, reason: CompensationReason, error: String) -> Result<PhaseEnd, Halted> {
        let failures = self.compensate(reason).await?;
        if self.control.reason() == Some(StopReason::Interrupted) {
            return Ok(PhaseEnd::Interrupted);
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
        self.settle(kind).await?;
        Ok(PhaseEnd::Settled(status))
    }

    /// Whether step `index` still has to run (it has not completed or been
    /// skipped in an earlier run).
    fn needs_run(&self, index: usize) -> bool {
        self.recorder
            .with(|p| !matches!(p.steps[index].status, StepStatus::Completed | StepStatus::Skipped))
    }
}

/// Polls `work` (a phase, unsettled when it halted) and stops the run as
/// timed out when `deadline` passes: at once when it has passed already
/// (a run resumed after the deadline, which travels in the snapshot, runs
/// nothing more, whatever the timer's timing).
async fn under_deadline(
    deadline: OffsetDateTime,
    control: Arc<RunControl>,
    work: impl Future<Output = Result<PhaseEnd, Halted>>,
) -> PhaseEnd {
    let remaining: Duration = (deadline - OffsetDateTime::now_utc())
        .try_into()
        .unwrap_or(Duration::ZERO);
    if remaining.is_zero() {
        control.stop(StopReason::TimedOut);
    }
    let timer = async move {
        tokio::time::sleep(remaining).await;
        control.stop(StopReason::TimedOut);
        std::future::pending::<()>().await;
    };
    tokio::select! {
        end = work => end.unwrap_or(PhaseEnd::Interrupted),
        () = timer => unreachable!("the timer never completes"),
    }
}
