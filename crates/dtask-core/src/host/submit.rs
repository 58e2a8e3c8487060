//! The API side of a task: accept it, run its Api steps, hand it over.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Host, TaskHandle, worker};
use crate::error::Result;
use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::kernel::{PhaseEnd, SagaRun, SagaSnapshot};
use crate::progress::TaskProgress;
use crate::task::{StepHost, Task};

impl Host {
    /// Submits a task: records it, runs its Api steps here (streaming the
    /// request's files into storage, typically), and hands it to the
    /// workers. Returns once it is handed over, or ended if it had no
    /// Worker step or an Api step ended it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `T` is not registered; a backend error when
    /// the task could not be recorded or handed over (its Api steps are
    /// then compensated).
    pub async fn submit<T: Task>(&self, request: T::Request) -> Result<TaskHandle<T>> {
        self.submit_with_id::<T>(TaskId::new(), request).await
    }

    /// [`Host::submit`] with an id chosen by the caller (who may then watch
    /// the task's progress while its Api steps run).
    ///
    /// # Errors
    /// As [`Host::submit`]; [`Error::AlreadyExists`] for a known id.
    pub async fn submit_with_id<T: Task>(&self, task_id: TaskId, request: T::Request) -> Result<TaskHandle<T>> {
        let task = self.registered::<T>()?;
        let rt = &*self.inner.rt;
        let definition = T::definition();
        let now = OffsetDateTime::now_utc();
        let mut progress = TaskProgress::new(task_id, definition, now);
        let submitted = TaskEvent {
            task_id,
            at: now,
            kind: EventKind::Submitted,
        };
        progress.apply(&submitted);
        rt.infra.progress.init(&progress).await?;
        rt.publish_event(&submitted);

        let snapshot = SagaSnapshot::<T> {
            schema_version: crate::codec::SCHEMA_VERSION,
            request: Arc::new(request),
            data: T::Data::default(),
            progress,
            response: None,
            deadline: now + definition.timeout,
        };
        let mut run = SagaRun::new(rt, &*task, snapshot, rt.control(task_id), 0);
        let has_api_steps = definition.steps.first().is_some_and(|s| s.host == StepHost::Api);
        let end = if has_api_steps {
            run.run_phase(StepHost::Api).await
        } else {
            PhaseEnd::HandOff
        };
        match end {
            PhaseEnd::HandOff => {
                if let Err(error) = self.hand_off(&mut run, definition.queue).await {
                    run.abandon(format!("handing the task to the workers failed: {error}"))
                        .await;
                    self.finished(task_id).await;
                    return Err(error);
                }
                if !self.inner.runs_workers {
                    // Another process runs it; cancellation reaches it through the tracker.
                    self.finished(task_id).await;
                }
            }
            PhaseEnd::Settled(_) | PhaseEnd::Interrupted => self.finished(task_id).await,
        }
        Ok(TaskHandle::new(self.clone(), task_id))
    }

    async fn hand_off<T: Task>(&self, run: &mut SagaRun<'_, T>, queue: &'static str) -> Result<()> {
        let rt = &*self.inner.rt;
        let progress = run.recorder().apply(EventKind::HandedOff { queue });
        run.save().await;
        let snapshot = run.snapshot();
        let task_id = snapshot.progress.task_id;
        let message = QueueMessage::new(task_id, T::definition().name, rt.encode(snapshot)?);
        rt.infra.publisher.publish(queue, message).await?;
        run.recorder().write(&progress).await;
        Ok(())
    }

    async fn finished(&self, task_id: TaskId) {
        self.inner.rt.forget(task_id);
        worker::remove_scratch(&self.inner.rt, task_id).await;
    }
}
