//! The API side of a task: accept it, run its Api steps, hand it over.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Host, TaskHandle};
use crate::codec::SagaSnapshot;
use crate::error::Result;
use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::kernel::{AnyResponse, ControlSlot, PhaseEnd, SagaRun};
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{Mode, StepHost, Task, TaskDefinition};
use crate::trace::TraceParent;
use tracing::Instrument;

impl Host {
    /// Submits a task: records it, runs its Api steps here (streaming the
    /// request's files into storage, typically), and hands it to the
    /// workers. Returns once it is handed over, or ended if it had no
    /// Worker step or an Api step ended it.
    ///
    /// The host submits as itself: no submitter is recorded and no
    /// `requires_role` is checked. On behalf of a user, submit through
    /// [`Host::caller`].
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) when `T` is not registered; a backend error when
    /// the task could not be recorded or handed over. When the publish
    /// failed, its Api steps are compensated; when saving its state failed,
    /// nothing more can be recorded: the task keeps the progress last
    /// written, and what its Api steps stored stays.
    pub async fn submit<T: Task>(&self, request: T::Request) -> Result<TaskHandle<T>> {
        self.submit_with_id::<T>(TaskId::new(), request).await
    }

    /// [`Host::submit`] with an id chosen by the caller (who may then watch
    /// the task's progress while its Api steps run).
    ///
    /// # Errors
    /// As [`Host::submit`]; [`Error::AlreadyExists`](crate::Error::AlreadyExists) for a known id.
    pub async fn submit_with_id<T: Task>(&self, task_id: TaskId, request: T::Request) -> Result<TaskHandle<T>> {
        self.submit_recorded::<T>(task_id, request, None, None).await
    }

    /// Submits `request` as task `task_id`, recording `submitter` as who
    /// submitted it (the subject of a [`Caller`](super::Caller)), in a
    /// trace continuing `incoming` (a caller's) when no tracing system
    /// traces the submit span.
    pub(super) async fn submit_recorded<T: Task>(
        &self,
        task_id: TaskId,
        request: T::Request,
        submitter: Option<String>,
        incoming: Option<TraceParent>,
    ) -> Result<TaskHandle<T>> {
        let task = self.registered::<T>()?;
        let span = self.inner.rt.submit_span(T::definition(), task_id);
        let trace = self.inner.rt.begin_trace(&span, incoming);
        self.submit_traced(task, task_id, request, submitter, trace, None)
            .instrument(span)
            .await
    }

    /// Submits `request` as task `task_id`, a dependent of the completed
    /// task `upstream` (`#[depends_on]`): as its submitter, in its trace
    /// when no tracing system traces the submit span, linked to it.
    pub(super) async fn submit_dependent<T: Task>(
        &self,
        task_id: TaskId,
        request: T::Request,
        upstream: &TaskProgress,
    ) -> Result<TaskHandle<T>> {
        let task = self.registered::<T>()?;
        let span = self.inner.rt.submit_span(T::definition(), task_id);
        let incoming = (upstream.trace_id.as_deref()).and_then(TraceParent::of_trace);
        let trace = self.inner.rt.begin_trace(&span, incoming);
        let submitter = upstream.submitter.clone();
        self.submit_traced(task, task_id, request, submitter, trace, Some(upstream.task_id))
            .instrument(span)
            .await
    }

    async fn submit_traced<T: Task>(
        &self,
        task: Arc<T>,
        task_id: TaskId,
        request: T::Request,
        submitter: Option<String>,
        trace: TraceParent,
        parent: Option<TaskId>,
    ) -> Result<TaskHandle<T>> {
        let rt = &*self.inner.rt;
        let definition = T::definition();
        let (progress, submitted) = submitted_progress(definition, task_id, submitter, parent, &trace);
        rt.infra.progress.init(&progress).await?;
        self.told_submitted(definition, &submitted);
        let snapshot = first_snapshot::<T>(request, progress);
        let (mut slot, _) = rt.register(task_id);
        let mut run = SagaRun::new(rt, &*task, snapshot, Arc::clone(slot.control()), 0);
        run.recorder().keep_submitted();
        let has_api_steps = definition.steps.first().is_some_and(|s| s.host == StepHost::Api);
        let end = if has_api_steps {
            run.run_phase(StepHost::Api).await
        } else {
            PhaseEnd::HandOff
        };
        let mut outcome = Ok(());
        if let PhaseEnd::Settled(status) = end {
            // Ended here (no Worker step): no message will come back, so the
            // caller gets a dependent that could not be started or an
            // upstream that could not be resumed.
            outcome = self.after_settled(&mut run, status).await;
        }
        if end == PhaseEnd::HandOff {
            // Run by this host's worker, which takes over the registration.
            let local_worker = self.inner.mode == Mode::InProcess && self.inner.runs_workers;
            outcome = self
                .hand_off(&mut run, &mut slot, local_worker, definition.queue, trace)
                .await;
            if outcome.is_ok() && local_worker {
                return Ok(TaskHandle::new(self.clone(), task_id));
            }
        }
        drop((run, slot));
        rt.remove_scratch(task_id).await;
        outcome.map(|()| TaskHandle::new(self.clone(), task_id))
    }

    /// Counts and tells the submission of a task whose first progress is
    /// recorded.
    pub(super) fn told_submitted(&self, definition: &TaskDefinition, submitted: &TaskEvent) {
        let rt = &*self.inner.rt;
        if let Some(metrics) = rt.metrics.task(definition.name) {
            metrics.submitted();
        }
        rt.publish_event(submitted);
    }

    /// Starts the dependents of a task that ended (or awaits them) in its
    /// API phase, and resumes the upstream that awaits it. A task awaiting
    /// a dependent that could not be started is compensated: nothing
    /// would resume it.
    async fn after_settled<T: Task>(&self, run: &mut SagaRun<'_, T>, status: TaskStatus) -> Result<()> {
        let progress = run.recorder().snapshot();
        let response = run.response().map(|response| response as &AnyResponse);
        let followed = super::chain::follow_up(&self.inner.rt, T::definition(), &progress, response).await;
        if let Err(error) = &followed
            && status == TaskStatus::AwaitingDependents
        {
            run.conclude(Some(format!("starting its dependents failed: {error}")))
                .await;
        }
        followed
    }

    /// Saves the state as handed off, publishes it, then shows it queued.
    /// When the state cannot be saved nothing more is recorded; when the
    /// publish fails the Api steps are compensated. Either way the caller
    /// gets the error.
    async fn hand_off<T: Task>(
        &self,
        run: &mut SagaRun<'_, T>,
        slot: &mut ControlSlot<'_>,
        local_worker: bool,
        queue: &'static str,
        trace: TraceParent,
    ) -> Result<()> {
        let rt = &*self.inner.rt;
        run.recorder().begin_settlement(EventKind::HandedOff { queue });
        // The message carries the state just saved.
        let payload = run.save().await.map_err(|halted| halted.cause)?;
        if local_worker {
            slot.leave_for_worker();
        }
        let message = QueueMessage::new(run.task_id(), T::definition().name, payload).with_trace_parent(Some(trace));
        let published = rt.infra.publisher.publish(queue, message).await;
        // Shown queued only once published; otherwise the compensation
        // that follows carries the progress.
        run.recorder().settled(published.is_ok()).await;
        if let Err(error) = published {
            slot.take_back();
            run.abandon(format!("handing the task to the workers failed: {error}"))
                .await;
            return Err(error);
        }
        Ok(())
    }
}

/// The first progress of a task submitted now, and its `Submitted` event.
pub(super) fn submitted_progress(
    definition: &'static TaskDefinition,
    task_id: TaskId,
    submitter: Option<String>,
    parent: Option<TaskId>,
    trace: &TraceParent,
) -> (TaskProgress, TaskEvent) {
    let now = OffsetDateTime::now_utc();
    // Whole microseconds, as SQL keeps them: a history's cursor then names
    // the task's creation time exactly.
    let now = now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now);
    let mut progress = TaskProgress::new(task_id, definition, now);
    progress.submitter = submitter;
    progress.parent_task_id = parent;
    progress.trace_id = Some(trace.trace_id_hex());
    let submitted = TaskEvent {
        task_id,
        at: now,
        kind: EventKind::Submitted,
    };
    progress.apply(&submitted);
    (progress, submitted)
}

/// The saga state of a task just submitted with `request`.
pub(super) fn first_snapshot<T: Task>(request: T::Request, progress: TaskProgress) -> SagaSnapshot<T> {
    let deadline = progress.created_at + T::definition().timeout;
    SagaSnapshot {
        schema_version: crate::codec::SCHEMA_VERSION,
        request: Arc::new(request),
        data: T::Data::default(),
        progress,
        response: None,
        deadline,
    }
}
