//! The worker side: consuming a queue, taking each task's lock, resuming
//! its saga from the newest snapshot, acknowledging once the outcome is
//! saved. What a delivery holds is owned and settled by its
//! [`RunGuard`]. On shutdown ([`Host::shutdown`](super::Host::shutdown))
//! the loops take no new message and each running task is handed back
//! (lock released, message nacked) at its next step boundary, or when the
//! shutdown grace is over; see `docs/resilience.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::chain::{self, Awaited};
use super::run_guard::{RunGuard, Settlement};
use crate::codec::SagaSnapshot;
use crate::error::Error;
use crate::id::TaskId;
use crate::infra::{Delivery, StoredState};
use crate::kernel::{AnyResponse, PhaseEnd, RunControl, Runtime, SagaRun, StopReason, retry};
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{StepHost, Task, TaskDefinition};

/// A registered task with its type erased, so one worker loop can serve
/// every task of a queue.
#[async_trait]
pub(crate) trait ErasedTask: Send + Sync + 'static {
    fn definition(&self) -> &'static TaskDefinition;
    /// Runs and settles `delivery`, taken from `queue`.
    async fn handle(&self, rt: &Runtime, delivery: Delivery, queue: &str);
}

pub(crate) struct Registered<T: Task>(pub(crate) Arc<T>);

#[async_trait]
impl<T: Task> ErasedTask for Registered<T> {
    fn definition(&self) -> &'static TaskDefinition {
        T::definition()
    }

    async fn handle(&self, rt: &Runtime, delivery: Delivery, queue: &str) {
        handle_delivery(rt, &*self.0, delivery, queue).await;
    }
}

/// Consumes `queue` until the host shuts down, running at most
/// `concurrency` tasks at once.
pub(crate) async fn run_queue(
    rt: Arc<Runtime>,
    tasks: Arc<HashMap<&'static str, Arc<dyn ErasedTask>>>,
    queue: String,
    concurrency: usize,
    tracker: TaskTracker,
) {
    // Shared with every delivery's task, without a copy each.
    let name: Arc<str> = Arc::from(queue.as_str());
    let queue = queue.as_str();
    let mut pause = Duration::from_millis(100);
    let mut deliveries = loop {
        match rt.infra.consumer.consume(queue).await {
            Ok(deliveries) => break deliveries,
            Err(error) => {
                tracing::warn!(queue, %error, retry_in_ms = pause.as_millis() as u64, "cannot consume the queue yet");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = rt.shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    };
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        // `biased`: once the host shuts down, no new message is taken, even
        // when one is ready.
        let permit = tokio::select! {
            biased;
            () = rt.shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            biased;
            () = rt.shutdown.cancelled() => break,
            delivery = deliveries.next() => delivery,
        };
        let delivery = match delivery {
            None => break,
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                tracing::warn!(queue, %error, "receiving from the queue failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if rt.shutdown.is_cancelled() {
            // Received as the shutdown began: hand it straight back.
            RunGuard::new(&rt, delivery, queue).settle(Settlement::HAND_BACK).await;
            break;
        }
        let Some(task) = tasks.get(delivery.message().task_name.as_str()).cloned() else {
            // Every worker of a queue serves all of its tasks, so no other
            // worker would do better: keep the message for an operator.
            let reason = format!(
                "no task named `{}` is registered on the workers of queue `{queue}`",
                delivery.message().task_name
            );
            RunGuard::new(&rt, delivery, queue)
                .settle(Settlement::DeadLetter(reason))
                .await;
            continue;
        };
        let rt = Arc::clone(&rt);
        let queue = Arc::clone(&name);
        tracker.spawn(async move {
            task.handle(&rt, delivery, &queue).await;
            drop(permit);
        });
    }
}

/// How long a run that stopped unsettled while the host is not shutting
/// down (its lock lost, its state unsaved) waits before handing its
/// message back: a backend that just failed is given a moment, so the
/// redelivery does not find it still down and spend another delivery.
const HAND_BACK_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long a worker tries to load a task's saved state before handing the
/// message back.
const LOAD_BUDGET: Duration = Duration::from_secs(10);

/// Runs and settles one delivery, in a span continuing the trace its
/// message carries.
async fn handle_delivery<T: Task>(rt: &Runtime, task: &T, delivery: Delivery, queue: &str) {
    let message = delivery.message();
    let span = rt.run_span(T::definition(), message.task_id, delivery.delivery_count());
    rt.continue_trace(&span, message.trace_parent);
    async {
        let mut guard = RunGuard::new(rt, delivery, queue);
        let settlement = match guard.message().member.clone() {
            None => run_delivery(rt, task, &mut guard).await,
            Some(member) => run_member_delivery(rt, task, &mut guard, &member).await,
        };
        guard.settle(settlement).await;
    }
    .instrument(span)
    .await;
}

/// Runs the task of one delivery as far as this worker can; says how the
/// delivery ends.
async fn run_delivery<T: Task>(rt: &Runtime, task: &T, guard: &mut RunGuard<'_>) -> Settlement {
    let task_id = guard.message().task_id;
    let handed_off: SagaSnapshot<T> = match rt.decode_state(task_id, &guard.message().payload) {
        Ok(snapshot) => snapshot,
        // Decoding again would fail again: keep it for an operator.
        Err(error) => {
            return Settlement::DeadLetter(format!(
                "cannot read the saga state of `{}`: {error}",
                T::definition().name
            ));
        }
    };
    if !guard.lock().await {
        tracing::debug!(%task_id, "shutting down before the task started; returning the message");
        return Settlement::HAND_BACK;
    }
    let snapshot = match newest_snapshot(rt, task_id, handed_off, guard.take_preloaded()).await {
        Ok(snapshot) => snapshot,
        Err(settlement) => return settlement,
    };
    if snapshot.progress.is_terminal() {
        // The worker that ended it may have died before writing its final
        // progress, starting its dependents or resuming its upstream: do
        // it again (a dependent already started is found).
        return match write_terminal_progress(rt, &snapshot.progress).await {
            Settlement::Done => after_settled::<T>(rt, &snapshot.progress, snapshot.response.as_ref()).await,
            written => written,
        };
    }
    if snapshot.progress.status == TaskStatus::AwaitingDependents {
        return conclude_awaiting(rt, task, guard, snapshot).await;
    }
    let (control, adopted) = guard.register();
    let mut run = SagaRun::new(rt, task, snapshot, Arc::clone(&control), guard.fencing_token());
    // A run adopted from its API side in this process, on its first
    // delivery, is the tracker's only writer so far: nothing to catch up.
    let catch_up = guard.delivery_count() > 1 || !adopted;
    follow_tracked(rt, task_id, &run, &control, catch_up).await;
    let end = drive(guard, &control, !adopted, run.run_phase(StepHost::Worker)).await;
    match end {
        PhaseEnd::Settled(status) => {
            tracing::Span::current().record("task.status", tracing::field::debug(status));
            after_settled::<T>(rt, &run.recorder().snapshot(), run.response()).await
        }
        PhaseEnd::Interrupted | PhaseEnd::HandOff => unsettled(rt, task_id),
    }
}

/// Concludes a task awaiting its dependents, whose message came back (a
/// dependent ended, or its worker stopped before acknowledging): starts
/// its dependents again (one started before is found), then, once they
/// all ended, completes it or compensates its steps. While one runs, the
/// message is acknowledged: that one's end sends it again.
async fn conclude_awaiting<T: Task>(
    rt: &Runtime,
    task: &T,
    guard: &mut RunGuard<'_>,
    snapshot: SagaSnapshot<T>,
) -> Settlement {
    let task_id = snapshot.progress.task_id;
    let started = after_settled::<T>(rt, &snapshot.progress, snapshot.response.as_ref()).await;
    if started != Settlement::Done {
        return started;
    }
    let failure = match chain::awaited_dependents(rt, &snapshot.progress).await {
        Ok(Awaited::Running) => return Settlement::Done,
        Ok(Awaited::Completed) => None,
        Ok(Awaited::Failed(why)) => Some(why),
        Err(error) => {
            tracing::warn!(%task_id, %error, "cannot read how the awaited dependents stand; the message will come back");
            return Settlement::HandBack {
                delay: HAND_BACK_AFTER_FAILURE,
            };
        }
    };
    let (control, _) = guard.register();
    let mut run = SagaRun::new(rt, task, snapshot, Arc::clone(&control), guard.fencing_token());
    // A cancellation asked while it waited decides how it is compensated.
    follow_tracked(rt, task_id, &run, &control, true).await;
    // Not stopped by a cancellation: its steps are done, and undoing them
    // runs to the end.
    match drive(guard, &control, false, run.conclude(failure)).await {
        PhaseEnd::Settled(status) => {
            tracing::Span::current().record("task.status", tracing::field::debug(status));
            after_settled::<T>(rt, &run.recorder().snapshot(), run.response()).await
        }
        PhaseEnd::Interrupted | PhaseEnd::HandOff => unsettled(rt, task_id),
    }
}

/// What follows a task's saved end (or its wait for its dependents),
/// before its message is acknowledged ([`chain::follow_up`]); a failure
/// hands the message back, and the redelivery does it again.
async fn after_settled<T: Task>(rt: &Runtime, progress: &TaskProgress, response: Option<&T::Response>) -> Settlement {
    let response = response.map(|response| response as &AnyResponse);
    match chain::follow_up(rt, T::definition(), progress, response).await {
        Ok(()) => Settlement::Done,
        Err(error) => {
            let task_id = progress.task_id;
            tracing::warn!(%task_id, %error, "could not start a dependent or resume the upstream; the message will come back");
            Settlement::HandBack {
                delay: HAND_BACK_AFTER_FAILURE,
            }
        }
    }
}

/// Catches the run up with what the tracker saw of `id` (with `catch_up`;
/// see [`Recorder::catch_up`](crate::kernel::Recorder::catch_up)),
/// including a cancellation asked meanwhile; gives the tracker back a task
/// it lost.
async fn follow_tracked<T: Task>(rt: &Runtime, id: TaskId, run: &SagaRun<'_, T>, control: &RunControl, catch_up: bool) {
    match rt.infra.progress.get(id).await {
        Ok(Some(progress)) => {
            if catch_up {
                run.recorder().catch_up(&progress);
                if progress.cancel_requested {
                    control.stop(StopReason::Cancelled);
                }
            }
        }
        Ok(None) => restore_progress(rt, &run.recorder().snapshot()).await,
        Err(error) => tracing::warn!(task_id = %id, %error, "cannot read the progress; running anyway"),
    }
}

/// Polls `work` (a run of the guard's task or member) while renewing its
/// lock, stopping it when a client cancels it through the tracker (with
/// `watch`) and handing it back once the shutdown grace is over.
async fn drive(
    guard: &RunGuard<'_>,
    control: &RunControl,
    watch: bool,
    work: impl Future<Output = PhaseEnd>,
) -> PhaseEnd {
    let rt = guard.runtime();
    let id = guard.run_id();
    let cancellation = async {
        if !watch || rt.follows_cancellations.load(Ordering::Acquire) {
            // Its API side ran here, or the host follows the tracker's
            // cancellation feed: cancellations come to this host.
            std::future::pending::<()>().await;
        }
        watch_cancellation(rt, id, control).await;
    };
    tokio::select! {
        end = work => end,
        () = guard.keep_alive() => {
            control.stop(StopReason::Interrupted);
            PhaseEnd::Interrupted
        }
        () = cancellation => unreachable!("the cancellation watcher never completes"),
        () = hand_back_after_grace(rt, id, control) => PhaseEnd::Interrupted,
    }
}

/// How a run that stopped unsettled ends its delivery: handed back at once
/// when the host shuts down, after a pause otherwise.
fn unsettled(rt: &Runtime, id: TaskId) -> Settlement {
    if rt.shutdown.is_cancelled() {
        tracing::info!(task_id = %id, "shutting down: handing the task back");
        Settlement::HAND_BACK
    } else {
        Settlement::HandBack {
            delay: HAND_BACK_AFTER_FAILURE,
        }
    }
}

/// Runs one member of a distributed group (the message names it) as a
/// member run; says how the delivery ends. See the kernel's `member`
/// module.
async fn run_member_delivery<T: Task>(rt: &Runtime, task: &T, guard: &mut RunGuard<'_>, member: &str) -> Settlement {
    let def = T::definition();
    let parent = guard.message().task_id;
    let distribution = rt.settings.group_distribution;
    let distributed =
        |step: &crate::task::StepDefinition| step.group.is_some_and(|g| distribution.distributes(&def.groups[g]));
    let Some(index) = (def.steps.iter()).position(|step| step.name == member && distributed(step)) else {
        return Settlement::DeadLetter(format!(
            "`{member}` is not a member of a distributed group of `{}`",
            def.name
        ));
    };
    let run_id = guard.run_id();
    let handed_off: SagaSnapshot<T> = match rt.decode_state(parent, &guard.message().payload) {
        Ok(snapshot) => snapshot.into_member(run_id),
        Err(error) => {
            return Settlement::DeadLetter(format!("cannot read the saga state of `{}`: {error}", def.name));
        }
    };
    if !guard.lock().await {
        return Settlement::HAND_BACK;
    }
    let snapshot = match newest_snapshot(rt, run_id, handed_off, guard.take_preloaded()).await {
        Ok(snapshot) => snapshot,
        Err(settlement) => return settlement,
    };
    if snapshot.progress.is_terminal() {
        // Ended before (its worker died before acknowledging): the parent
        // reads the outcome from the progress, written again in case.
        return write_terminal_progress(rt, &snapshot.progress).await;
    }
    let (control, _) = guard.register();
    let mut run = SagaRun::member(rt, task, snapshot, Arc::clone(&control), guard.fencing_token());
    follow_tracked(rt, run_id, &run, &control, true).await;
    match drive(guard, &control, true, run.run_member(index, parent)).await {
        PhaseEnd::Settled(_) => Settlement::Done,
        PhaseEnd::Interrupted | PhaseEnd::HandOff => unsettled(rt, run_id),
    }
}

/// A redelivered task found ended: the worker that settled it may have died
/// between saving its final state and writing its final progress, so the
/// progress is written again (the tracker ignores a snapshot it already
/// has), or the task would look live forever.
async fn write_terminal_progress(rt: &Runtime, progress: &TaskProgress) -> Settlement {
    let written = match rt.infra.progress.complete(progress).await {
        // Forgotten by the tracker (expired, or a wiped Redis).
        Err(error) if error.is_not_found() => {
            restore_progress(rt, progress).await;
            Ok(())
        }
        written => written,
    };
    match written {
        Ok(()) => Settlement::Done,
        Err(error) => {
            let task_id = progress.task_id;
            tracing::warn!(%task_id, %error, "could not write the terminal progress; the message will come back");
            Settlement::HandBack {
                delay: HAND_BACK_AFTER_FAILURE,
            }
        }
    }
}

/// Gives the tracker back a task it lost (a Redis restarted without
/// persistence keeps no progress): its progress as the saga state last
/// recorded it, so clients find the task again and see it end.
async fn restore_progress(rt: &Runtime, progress: &TaskProgress) {
    let task_id = progress.task_id;
    tracing::warn!(%task_id, "the progress tracker does not know this task; restoring its progress from the saga state");
    match rt.infra.progress.init(progress).await {
        Ok(()) | Err(Error::AlreadyExists { .. }) => {}
        Err(error) => tracing::warn!(%task_id, %error, "could not restore the task's progress"),
    }
}

/// How long a run whose step was cancelled at the end of the shutdown
/// grace may take, beyond the kernel's `cancel_grace`, to record its
/// interruption before it is dropped.
const ABANDON_MARGIN: Duration = Duration::from_secs(1);

/// When the shutdown grace is over, cancels the run's step (the run then
/// ends interrupted); returns if the run has not ended after the step's
/// `cancel_grace` (and a margin), so the worker abandons it. Never returns
/// before the grace is over.
async fn hand_back_after_grace(rt: &Runtime, task_id: TaskId, control: &RunControl) {
    rt.grace_over.cancelled().await;
    tracing::warn!(%task_id, "shutdown grace over: cancelling the running step and handing the task back");
    control.hand_back();
    tokio::time::sleep(rt.settings.cancel_grace + ABANDON_MARGIN).await;
    tracing::warn!(%task_id, "the run did not stop after its step was cancelled; abandoning it");
}

/// Follows the task's progress and stops the run when a client asks any
/// API process to cancel it. Never completes.
async fn watch_cancellation(rt: &Runtime, task_id: TaskId, control: &RunControl) {
    match rt.infra.progress.stream(task_id).await {
        Ok(mut stream) => {
            while let Some(progress) = stream.next().await {
                if progress.cancel_requested {
                    control.stop(StopReason::Cancelled);
                    break;
                }
            }
        }
        Err(error) => {
            tracing::warn!(%task_id, %error, "cannot follow the task's progress; cancellation will not reach this worker")
        }
    }
    std::future::pending::<()>().await;
}

/// The state to resume from: the stored snapshot (`preloaded` with the
/// lock, or loaded now) when it is at least as new as the handed-off one.
///
/// # Errors
/// How the delivery ends instead: handed back (after a pause) when the
/// store cannot be read, dead-lettered when the stored state cannot be
/// decoded (resuming from the hand-off instead would run again the steps
/// it recorded).
async fn newest_snapshot<T: Task>(
    rt: &Runtime,
    task_id: TaskId,
    handed_off: SagaSnapshot<T>,
    preloaded: Option<crate::Result<Option<StoredState>>>,
) -> Result<SagaSnapshot<T>, Settlement> {
    let loaded = match preloaded {
        Some(Ok(stored)) => Ok(stored),
        preloaded => {
            if let Some(Err(error)) = preloaded {
                tracing::warn!(%task_id, %error, "could not read the saga state with the lock; loading it again");
            }
            retry::with_backoff(
                LOAD_BUDGET,
                || rt.infra.state.load(task_id),
                |_| !rt.shutdown.is_cancelled(),
                |error, pause| {
                    let retry_in_ms = pause.as_millis() as u64;
                    tracing::warn!(%task_id, %error, retry_in_ms, "could not load the saga state; retrying");
                },
            )
            .await
        }
    };
    let stored = match loaded {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(handed_off),
        Err(error) => {
            tracing::warn!(%task_id, %error, "could not load the saga state; handing the task back");
            return Err(Settlement::HandBack {
                delay: HAND_BACK_AFTER_FAILURE,
            });
        }
    };
    match rt.decode_state::<T>(task_id, &stored.payload) {
        Ok(snapshot) if snapshot.progress.revision >= handed_off.progress.revision => Ok(snapshot),
        Ok(_) => Ok(handed_off),
        Err(error) => Err(Settlement::DeadLetter(format!(
            "cannot read the stored saga state of `{}`: {error}",
            T::definition().name
        ))),
    }
}
