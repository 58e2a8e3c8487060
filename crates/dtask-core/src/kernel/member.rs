//! Distributed parallel groups (`#[parallel_group(distribute)]`).
//!
//! Each member of such a group runs from a queue message of its own, on
//! whichever worker takes it, as a *member run*: a run of its own, under
//! the id [`TaskId::member`], that runs the one step (with its retry
//! policy, timeout and cancellation), records the step's progress in the
//! tracker under that id, saves its output and ends. The worker running
//! the saga (the *parent*, holding the task's lock) publishes the members'
//! messages, follows their progress, mirrors it into the task's progress
//! (the attempts, the worker of each, the fraction reported), and records
//! each member's outcome into the saga as the member ends.
//!
//! The fan-in is the parent's: it records outcomes one at a time under the
//! task's lock, with its fencing token, so two members ending at the same
//! instant, or a member redelivered after a crash, are each recorded once.
//! A member run's own state is fenced by the member's lock, so a member
//! runs to its end once whatever the duplicates; a redelivered parent finds
//! the members it recorded completed and follows the others again.
//!
//! Members are taken from a queue of their own (see [`member_queue`]), so a
//! worker whose every slot holds a parent waiting for its members can never
//! starve the members.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::SelectAll;

use super::stage::apply_output;
use super::{Failure, Halted, PhaseEnd, SagaRun, StageError, StepEnv, StopReason};
use crate::codec::SagaSnapshot;
use crate::error::Error;
use crate::event::EventKind;
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::progress::{StepStatus, TaskProgress, TaskStatus};
use crate::task::{StepError, StepHost, Task};
use crate::trace::TraceParent;

/// The queue the members of queue `queue`'s distributed groups are
/// published to.
pub(crate) fn member_queue(queue: &str) -> String {
    format!("{queue}.members")
}

/// The progress a member run starts from: the parent's, under the member's
/// id, linked to the parent, at revision 0 (a member's saved state, however
/// old, is then always newer than the message that starts it), with no
/// submitter: a member run is the host's own work, not one of the
/// submitter's tasks (their lists and routes do not show it).
pub(crate) fn member_progress(parent: &TaskProgress, member: TaskId) -> TaskProgress {
    let mut progress = parent.clone();
    progress.parent_task_id = Some(parent.task_id);
    progress.task_id = member;
    progress.submitter = None;
    progress.revision = 0;
    progress.cancel_requested = false;
    progress
}

/// How long the parent tries to reach the tracker or the store before it
/// stops, unrecorded, and hands the task back.
const BACKEND_BUDGET: Duration = Duration::from_secs(10);

/// How long the parent waits before it follows again members whose
/// progress streams ended early.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

impl<T: Task> SagaRun<'_, T> {
    /// The parent's side: runs `members` on the workers and records their
    /// outcomes. A member that fails for good cancels the others and fails
    /// the stage once they ended; a stop of the run (cancellation, timeout)
    /// is passed on to every member still running, and the stage ends once
    /// they stopped; an interruption (lost lock, shutdown) leaves them
    /// running for the worker that takes the task over.
    pub(super) async fn run_distributed(&mut self, members: &[usize]) -> Result<(), StageError> {
        let ids: Vec<TaskId> = (members.iter())
            .map(|&index| TaskId::member(self.task_id, self.def.steps[index].name))
            .collect();
        self.publish_members(members, &ids).await?;
        let mut ended = vec![false; members.len()];
        let mut failure: Option<Failure> = None;
        let mut stopping = false;
        for round in 0.. {
            if ended.iter().all(|ended| *ended) {
                break;
            }
            if round > 0 {
                // A stream ended before its member did (the tracker's
                // connection dropped): open it again, after a pause, so a
                // tracker that keeps dropping is not hammered.
                tokio::select! {
                    () = tokio::time::sleep(REOPEN_PAUSE) => {}
                    () = self.control.token().cancelled(), if !stopping => {}
                }
            }
            let mut streams = SelectAll::new();
            for (k, id) in ids.iter().enumerate().filter(|(k, _)| !ended[*k]) {
                let stream = self.backend(|| self.rt.infra.progress.stream(*id)).await?;
                streams.push(stream.map(move |progress| (k, progress)).boxed());
            }
            loop {
                let next = tokio::select! {
                    next = streams.next() => next,
                    () = self.control.token().cancelled(), if !stopping => {
                        stopping = true;
                        if self.control.reason() == Some(StopReason::Interrupted) {
                            return Ok(()); // the run ends interrupted; the members go on
                        }
                        self.cancel_members(&ids, &ended).await?;
                        continue;
                    }
                };
                let Some((k, progress)) = next else { break };
                self.mirror(members[k], &progress).await;
                if !progress.is_terminal() {
                    continue;
                }
                ended[k] = true;
                if let Some(failed) = self.member_ended(members[k], ids[k], &progress).await? {
                    if failure.is_none() && !stopping {
                        stopping = true;
                        self.cancel_members(&ids, &ended).await?;
                    }
                    failure.get_or_insert(failed);
                }
            }
        }
        match failure {
            Some(failure) if self.control.reason().is_none() => Err(StageError::Failed(failure)),
            _ => Ok(()),
        }
    }

    /// Creates each member's progress and publishes its message. A member
    /// found ended (the parent was redelivered) is not published again.
    async fn publish_members(&self, members: &[usize], ids: &[TaskId]) -> Result<(), Halted> {
        let parent = self.recorder.snapshot();
        let payload = self.rt.encode(self.snapshot()).map_err(|error| self.halt(error))?;
        let queue = member_queue(self.def.queue);
        let trace = parent.trace_id.as_deref().and_then(TraceParent::of_trace);
        for (&index, &id) in members.iter().zip(ids) {
            let progress = member_progress(&parent, id);
            let created = self
                .backend(|| async {
                    match self.rt.infra.progress.init(&progress).await {
                        Ok(()) => Ok(true),
                        Err(Error::AlreadyExists { .. }) => Ok(false),
                        Err(error) => Err(error),
                    }
                })
                .await?;
            if !created {
                let known = self.backend(|| self.rt.infra.progress.get(id)).await?;
                if known.is_some_and(|known| known.is_terminal()) {
                    continue;
                }
            }
            let name = self.def.steps[index].name;
            let message = QueueMessage::new(self.task_id, self.def.name, payload.clone())
                .with_trace_parent(trace)
                .for_member(name);
            self.backend(|| self.rt.infra.publisher.publish(&queue, message.clone()))
                .await?;
        }
        Ok(())
    }

    /// Runs `call` against a backend, retrying a failure for a while; halts
    /// the run when it keeps failing.
    async fn backend<R, F, Fut>(&self, call: F) -> Result<R, Halted>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = crate::Result<R>>,
    {
        let task_id = self.task_id;
        super::retry::with_backoff(
            BACKEND_BUDGET,
            call,
            |_| self.control.reason() != Some(StopReason::Interrupted),
            |error, pause| {
                let retry_in_ms = pause.as_millis() as u64;
                tracing::warn!(%task_id, %error, retry_in_ms, "following the group's members failed; retrying");
            },
        )
        .await
        .map_err(|error| self.halt(error))
    }

    /// Asks every member not ended to stop, retrying as
    /// [`backend`](Self::backend) does.
    ///
    /// # Errors
    /// [`Halted`] when the tracker cannot be reached: the task is handed
    /// back, and the worker that takes it over asks again.
    async fn cancel_members(&self, ids: &[TaskId], ended: &[bool]) -> Result<(), Halted> {
        for (id, _) in ids.iter().zip(ended).filter(|(_, ended)| !**ended) {
            self.backend(|| self.rt.infra.progress.request_cancellation(*id))
                .await?;
        }
        Ok(())
    }

    /// Shows in the task's progress what the member's progress shows of its
    /// step: a new attempt (and where it runs), the fraction it reported.
    async fn mirror(&self, index: usize, member: &TaskProgress) {
        let Some(seen) = member.steps.get(index) else { return };
        let (attempts, fraction) = self
            .recorder
            .with(|p| (p.steps[index].attempts, p.steps[index].fraction));
        if seen.attempts > attempts {
            let worker = seen.worker.clone().unwrap_or_default();
            let step = self.step_ref(index);
            for attempt in attempts + 1..=seen.attempts {
                let worker = worker.clone();
                self.recorder.fold(EventKind::StepStarted { step, attempt, worker });
            }
            self.recorder.flush().await;
        }
        if let Some(reported) = seen.fraction
            && seen.status == StepStatus::Running
            && fraction != Some(reported)
        {
            let kind = EventKind::StepProgress {
                step: self.step_ref(index),
                fraction: reported,
                message: seen.message.clone(),
            };
            self.recorder.record(kind).await;
        }
    }

    /// Records member `index`'s end into the saga: its output (read from
    /// the member's saved state) and completion, or its failure, which is
    /// returned.
    async fn member_ended(
        &mut self,
        index: usize,
        id: TaskId,
        member: &TaskProgress,
    ) -> Result<Option<Failure>, Halted> {
        let step = self.step_ref(index);
        let attempt = self.prior_attempts(index);
        match member.status {
            TaskStatus::Completed => {
                let stored = self.backend(|| self.rt.infra.state.load(id)).await?;
                let decoded = stored
                    .ok_or_else(|| Error::not_found(format!("the saved state of member run {id}")))
                    .and_then(|stored| self.rt.decode_state::<T>(id, &stored.payload));
                let mut finished = decoded.map_err(|error| self.halt(error))?;
                T::adopt_output(index, &mut finished.data, &mut self.data);
                self.complete_step(index).await?;
                Ok(None)
            }
            TaskStatus::Cancelled => {
                self.recorder.record(EventKind::StepCancelled { step }).await;
                Ok(Some(Failure {
                    step: Some(index),
                    error: StepError::cancelled(),
                }))
            }
            _ => {
                let error = member.error.clone().unwrap_or_else(|| "the member failed".to_owned());
                let kind = EventKind::StepFailed {
                    step,
                    attempt,
                    error: error.clone(),
                    retry_in: None,
                };
                self.recorder.record(kind).await;
                Ok(Some(Failure {
                    step: Some(index),
                    error: StepError::permanent(error),
                }))
            }
        }
    }

    /// The member's side: runs step `index` of task `parent` as this member
    /// run, under the task's timeout, and ends the run with the step's
    /// outcome (its output saved with it).
    pub(crate) async fn run_member(&mut self, index: usize, parent: TaskId) -> PhaseEnd {
        let (deadline, control) = (self.deadline, std::sync::Arc::clone(&self.control));
        let end = super::under_deadline(deadline, control, self.run_member_inner(index, parent)).await;
        self.recorder.flush().await;
        end
    }

    async fn run_member_inner(&mut self, index: usize, parent: TaskId) -> Result<PhaseEnd, Halted> {
        self.recorder.fold(EventKind::Started { host: StepHost::Worker });
        let result = match self.control.reason() {
            Some(_) => Err(StepError::cancelled()),
            None => {
                let env = StepEnv {
                    rt: self.rt,
                    task: self.task,
                    def: self.def,
                    // The step works for the task: its keys start with the
                    // task's id. Its scratch directory is the member run's,
                    // removed when the member's message is settled.
                    task_id: parent,
                    request: &self.request,
                    recorder: &self.recorder,
                    scratch_dir: self.rt.member_scratch_dir(parent, self.def.steps[index].name),
                };
                let prior = self.prior_attempts(index);
                env.run_step(index, &self.data, prior, self.control.token()).await
            }
        };
        let check = self.output_check();
        let (kind, status) = match result {
            Ok(update) => match apply_output::<T>(&mut self.data, update, check) {
                Ok(()) => {
                    let attempt = self.prior_attempts(index);
                    let step = self.step_ref(index);
                    self.recorder.fold(EventKind::StepCompleted { step, attempt });
                    (EventKind::Completed, TaskStatus::Completed)
                }
                Err(error) => {
                    let failure = self.unserializable(index, &error).await;
                    let error = failure.error.to_string();
                    (EventKind::Failed { error }, TaskStatus::Failed)
                }
            },
            Err(error) => match self.control.reason() {
                Some(StopReason::Interrupted) => return Ok(PhaseEnd::Interrupted),
                Some(StopReason::Cancelled | StopReason::TimedOut) => (EventKind::Cancelled, TaskStatus::Cancelled),
                None => (
                    EventKind::Failed {
                        error: error.to_string(),
                    },
                    TaskStatus::Failed,
                ),
            },
        };
        self.settle(kind).await?;
        Ok(PhaseEnd::Settled(status))
    }
}

impl<T: Task> SagaSnapshot<T> {
    /// This snapshot (the parent's, as a member's message carries it) as
    /// the start of member run `member`.
    pub(crate) fn into_member(mut self, member: TaskId) -> Self {
        self.progress = member_progress(&self.progress, member);
        self
    }
}
