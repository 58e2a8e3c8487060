//! [`Host::submit_many`]: many tasks of one type handed over together, each
//! step of the hand-off done for all of them in one call to its backend.

use std::sync::Arc;

use futures::StreamExt;

use super::submit::{first_snapshot, submitted_progress};
use super::{Host, TaskHandle};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::kernel::{ControlSlot, SagaRun};
use crate::progress::TaskProgress;
use crate::task::{Mode, StepHost, Task};
use crate::trace::TraceParent;

/// How many tasks with Api steps [`Host::submit_many`] submits at once.
const API_STEP_CONCURRENCY: usize = 16;

/// One task of a batch on its way to the queue.
struct Pending<'r, T: Task> {
    /// Its place among the batch's results.
    index: usize,
    run: SagaRun<'r, T>,
    slot: ControlSlot<'r>,
}

impl Host {
    /// Submits one task of type `T` per request, as [`Host::submit`] does
    /// each, and returns one result per request, in order.
    ///
    /// A task with no Api step is handed over with the others: their first
    /// progress is recorded, their states saved, their messages published
    /// and their progress shown queued in one call to each backend, which
    /// pipelines it (Redis, Redis Streams), awaits the broker's confirms
    /// together (RabbitMQ) or loops (the default). The
    /// guarantees are [`Host::submit`]'s, task by task: a task whose state
    /// could not be saved is not published, and one whose publish failed
    /// is compensated. Tasks with Api steps run them here, a few at once.
    ///
    /// The host submits as itself, as [`Host::submit`] does; on behalf of
    /// a user, submit through [`Host::caller`].
    ///
    /// # Errors
    /// [`Error::Invalid`] when `T` is not registered; each task's own
    /// failure is in its result.
    pub async fn submit_many<T: Task>(
        &self,
        requests: impl IntoIterator<Item = T::Request>,
    ) -> Result<Vec<Result<TaskHandle<T>>>> {
        let tasks = requests.into_iter().map(|request| (TaskId::new(), request));
        self.submit_many_with_ids::<T>(tasks).await
    }

    /// [`Host::submit_many`] with ids chosen by the caller (a known id
    /// fails that task with [`Error::AlreadyExists`]).
    ///
    /// # Errors
    /// As [`Host::submit_many`].
    pub async fn submit_many_with_ids<T: Task>(
        &self,
        tasks: impl IntoIterator<Item = (TaskId, T::Request)>,
    ) -> Result<Vec<Result<TaskHandle<T>>>> {
        self.submit_many_recorded::<T>(tasks, None, None).await
    }

    /// Submits `tasks`, recording `submitter` as who submitted each (as
    /// `submit_recorded` does one), each in a trace continuing `incoming`
    /// when no tracing system traces its submit span.
    pub(super) async fn submit_many_recorded<T: Task>(
        &self,
        tasks: impl IntoIterator<Item = (TaskId, T::Request)>,
        submitter: Option<String>,
        incoming: Option<TraceParent>,
    ) -> Result<Vec<Result<TaskHandle<T>>>> {
        let task = self.registered::<T>()?;
        let definition = T::definition();
        let has_api_steps = definition.steps.first().is_some_and(|s| s.host == StepHost::Api);
        if has_api_steps || !definition.has_worker_steps() {
            let submits = futures::stream::iter(tasks)
                .map(|(task_id, request)| self.submit_recorded::<T>(task_id, request, submitter.clone(), incoming));
            return Ok(submits.buffered(API_STEP_CONCURRENCY).collect().await);
        }
        let rt = &*self.inner.rt;
        let local_worker = self.inner.mode == Mode::InProcess && self.inner.runs_workers;
        let queue = definition.queue;

        // Record each task's first progress.
        let mut firsts = Vec::new();
        let mut progress = Vec::new();
        for (task_id, request) in tasks {
            let span = rt.submit_span(definition, task_id);
            let trace = rt.begin_trace(&span, incoming);
            let (first, submitted) = submitted_progress(definition, task_id, submitter.clone(), None, &trace);
            progress.push(first);
            firsts.push((request, submitted, trace));
        }
        let initialised = rt.infra.progress.init_many(&progress).await;
        let mut results: Vec<Result<TaskHandle<T>>> = Vec::with_capacity(firsts.len());
        let mut pending = Vec::new();
        let mut states = Vec::new();
        let mut messages = Vec::new();
        for (((request, submitted, trace), first), initialised) in firsts.into_iter().zip(progress).zip(initialised) {
            if let Err(error) = initialised {
                results.push(Err(error));
                continue;
            }
            self.told_submitted(definition, &submitted);
            let (slot, _) = rt.register(first.task_id);
            let run = SagaRun::new(
                rt,
                &*task,
                first_snapshot::<T>(request, first),
                Arc::clone(slot.control()),
                0,
            );
            run.recorder().keep_submitted();
            run.recorder().begin_settlement(EventKind::HandedOff { queue });
            match run.state_to_save() {
                Ok(state) => {
                    let message = QueueMessage::new(run.task_id(), definition.name, state.payload.clone());
                    messages.push(message.with_trace_parent(Some(trace)));
                    states.push((run.task_id(), state));
                    let index = results.len();
                    pending.push(Pending { index, run, slot });
                    // Replaced below, whichever way its hand-off ends.
                    results.push(Err(Error::invalid("submit_many", "not handed over")));
                }
                Err(halted) => results.push(Err(halted.cause)),
            }
        }

        // Save their states; publish those saved.
        let saved = rt.infra.state.save_many(states).await;
        let mut publishing = Vec::new();
        let mut to_publish = Vec::new();
        for ((mut task, message), saved) in pending.into_iter().zip(messages).zip(saved) {
            if let Err(error) = saved {
                results[task.index] = Err(task.run.unsaved(error).cause);
                continue;
            }
            if local_worker {
                task.slot.leave_for_worker();
            }
            to_publish.push(message);
            publishing.push(task);
        }
        let published = rt.infra.publisher.publish_many(queue, to_publish).await;

        // Show the published ones queued; compensate the others.
        let mut queued: Vec<TaskProgress> = Vec::new();
        let mut handed_over = Vec::new();
        for (mut task, published) in publishing.into_iter().zip(published) {
            match published {
                Ok(()) => {
                    queued.extend(task.run.recorder().settled_for_batch());
                    handed_over.push(task);
                }
                Err(error) => {
                    task.run.recorder().settled(false).await;
                    task.slot.take_back();
                    let why = format!("handing the task to the workers failed: {error}");
                    task.run.abandon(why).await;
                    results[task.index] = Err(error);
                }
            }
        }
        for (snapshot, written) in queued.iter().zip(rt.infra.progress.update_many(&queued).await) {
            if let Err(error) = written {
                // As any progress write: the next one carries the change.
                tracing::warn!(task_id = %snapshot.task_id, %error, "could not write progress");
            }
        }
        for task in handed_over {
            results[task.index] = Ok(TaskHandle::new(self.clone(), task.run.task_id()));
            if !local_worker {
                let task_id = task.run.task_id();
                drop(task);
                rt.remove_scratch(task_id).await;
            }
        }
        Ok(results)
    }
}
