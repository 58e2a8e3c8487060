//! The worker side: consuming a queue, taking each task's lock, resuming
//! its saga from the newest snapshot, acknowledging once the outcome is
//! recorded. On shutdown ([`Host::shutdown`](super::Host::shutdown)) the
//! loops take no new message and each running task is handed back
//! (lock released, message nacked) at its next step boundary, or when the
//! shutdown grace is over; see `docs/resilience.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::runtime::Runtime;
use crate::id::TaskId;
use crate::infra::{Delivery, LockGuard};
use crate::kernel::{PhaseEnd, RunControl, SagaRun, SagaSnapshot, StopReason};
use crate::progress::TaskProgress;
use crate::task::{StepHost, Task, TaskDefinition};

/// A registered task with its type erased, so one worker loop can serve
/// every task of a queue.
#[async_trait]
pub(crate) trait ErasedTask: Send + Sync + 'static {
    fn definition(&self) -> &'static TaskDefinition;
    async fn handle(&self, rt: &Runtime, delivery: Delivery);
}

pub(crate) struct Registered<T: Task>(pub(crate) Arc<T>);

#[async_trait]
impl<T: Task> ErasedTask for Registered<T> {
    fn definition(&self) -> &'static TaskDefinition {
        T::definition()
    }

    async fn handle(&self, rt: &Runtime, delivery: Delivery) {
        handle_delivery(rt, &*self.0, delivery).await;
    }
}

/// Consumes `queue` until the host shuts down, running at most
/// `concurrency` tasks at once.
pub(crate) async fn run_queue(
    rt: Arc<Runtime>,
    tasks: Arc<HashMap<&'static str, Arc<dyn ErasedTask>>>,
    queue: &'static str,
    concurrency: usize,
    tracker: TaskTracker,
) {
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
            let _ = delivery.nack().await;
            break;
        }
        let Some(task) = tasks.get(delivery.message().task_name.as_str()).cloned() else {
            // Every worker of a queue serves all of its tasks, so no other
            // worker would do better: keep the message for an operator.
            let reason = format!(
                "no task named `{}` is registered on the workers of queue `{queue}`",
                delivery.message().task_name
            );
            tracing::error!(queue, task_name = %delivery.message().task_name, "{reason}; dead-lettering the message");
            if let Err(error) = delivery.dead_letter(&reason).await {
                tracing::warn!(queue, %error, "could not dead-letter the message; it will be delivered again");
            }
            continue;
        };
        let rt = Arc::clone(&rt);
        tracker.spawn(async move {
            task.handle(&rt, delivery).await;
            drop(permit);
        });
    }
}

async fn handle_delivery<T: Task>(rt: &Runtime, task: &T, delivery: Delivery) {
    let task_id = delivery.message().task_id;
    let handed_off: SagaSnapshot<T> = match delivery.message().payload.decode_state() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            // Decoding again would fail again: keep it for an operator.
            let reason = format!("cannot read the saga state of `{}`: {error}", T::definition().name);
            tracing::error!(%task_id, "{reason}; dead-lettering the message");
            if let Err(error) = delivery.dead_letter(&reason).await {
                tracing::warn!(%task_id, %error, "could not dead-letter the message; it will be delivered again");
            }
            return;
        }
    };
    let Some(lock) = acquire(rt, task_id).await else {
        tracing::debug!(%task_id, "shutting down before the task started; returning the message");
        let _ = delivery.nack().await;
        return;
    };
    let resumed = delivery.delivery_count() > 1;
    let snapshot = newest_snapshot(rt, task_id, handed_off).await;
    if snapshot.progress.is_terminal() {
        // The worker that settled the task may have died between saving its
        // final state and writing its final progress: write it again (the
        // tracker ignores a snapshot it already has), or the task looks live
        // forever.
        let written = match rt.infra.progress.complete(&snapshot.progress).await {
            // Forgotten by the tracker (expired, or a wiped Redis).
            Err(error) if error.is_not_found() => {
                restore_progress(rt, &snapshot.progress).await;
                Ok(())
            }
            written => written,
        };
        if let Err(error) = written {
            tracing::warn!(%task_id, %error, "could not write the terminal progress; the message will come back");
            let _ = delivery.nack().await;
            release(lock, task_id).await;
            return;
        }
        let _ = delivery.ack().await;
        rt.forget(task_id);
        release(lock, task_id).await;
        return;
    }
    let local = rt.local_control(task_id).is_some();
    let control = rt.control(task_id);
    let mut run = SagaRun::new(rt, task, snapshot, Arc::clone(&control), lock.fencing_token());
    match rt.infra.progress.get(task_id).await {
        Ok(Some(progress)) => {
            if resumed || !local {
                run.recorder().catch_up(&progress);
                if progress.cancel_requested {
                    control.stop(StopReason::Cancelled);
                }
            }
        }
        Ok(None) => restore_progress(rt, &run.recorder().snapshot()).await,
        Err(error) => tracing::warn!(%task_id, %error, "cannot read the task's progress; running it anyway"),
    }
    let cancellation = async {
        if local {
            std::future::pending::<()>().await;
        }
        watch_cancellation(rt, task_id, &control).await;
    };
    let end = tokio::select! {
        end = run.run_phase(StepHost::Worker) => end,
        () = keep_alive(&lock, rt.settings.lock_ttl) => {
            control.stop(StopReason::LockLost);
            PhaseEnd::Interrupted
        }
        () = cancellation => unreachable!("the cancellation watcher never completes"),
        () = hand_back_after_grace(rt, task_id, &control) => PhaseEnd::Interrupted,
    };
    drop(run);
    match end {
        PhaseEnd::Settled(_) => {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%task_id, %error, "ack failed; the message may be delivered again");
            }
            rt.forget(task_id);
            remove_scratch(rt, task_id).await;
            release(lock, task_id).await;
        }
        PhaseEnd::Interrupted | PhaseEnd::HandOff => {
            // The lock first: the worker that gets the message back takes it
            // at once instead of waiting for it to be released or expire.
            release(lock, task_id).await;
            if rt.shutdown.is_cancelled() {
                tracing::info!(%task_id, "shutting down: handing the task back");
            }
            if let Err(error) = delivery.nack().await {
                tracing::warn!(%task_id, %error, "nack failed; the broker will deliver the message again");
            }
            rt.forget(task_id);
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
        Ok(()) | Err(crate::Error::AlreadyExists { .. }) => {}
        Err(error) => tracing::warn!(%task_id, %error, "could not restore the task's progress"),
    }
}

/// Releases the task's lock; a failure only means it expires on its own.
async fn release(lock: LockGuard, task_id: TaskId) {
    if let Err(error) = lock.release().await {
        tracing::debug!(%task_id, %error, "lock release failed; it will expire");
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

/// Takes the task's lock, waiting as long as another holder keeps it.
///
/// A held lock means a duplicate delivery: the broker handed the message
/// out again (after a lost connection, or a visibility timeout) while
/// another worker still runs the task, or the worker that ran it died and
/// its lease has not expired yet. Either way this delivery may now be the
/// task's only message, so it is kept, not returned: the holder ends the
/// task (this delivery then finds it ended and acknowledges it), or stops
/// or dies (its lease is released or expires, and this worker resumes the
/// task). Returning it instead would send it round the workers, each
/// return counting towards the broker's delivery limit, until it is
/// dead-lettered while its task is still alive. Gives up only when the
/// host starts shutting down.
async fn acquire(rt: &Runtime, task_id: TaskId) -> Option<LockGuard> {
    let resource = format!("task:{task_id}");
    let ttl = rt.settings.lock_ttl;
    let mut pause = Duration::from_millis(20);
    let mut told = false;
    loop {
        if rt.shutdown.is_cancelled() {
            return None;
        }
        match rt.infra.lock.try_acquire(&resource, ttl).await {
            Ok(Some(guard)) => return Some(guard),
            Ok(None) if !told => {
                tracing::debug!(%task_id, "another worker holds the task; waiting for it to end or let go");
                told = true;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%task_id, %error, "lock backend failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = rt.shutdown.cancelled() => return None,
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
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

/// Renews the lock every third of its lifetime; returns when it is lost.
async fn keep_alive(lock: &LockGuard, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        if let Err(error) = lock.extend(ttl).await {
            tracing::warn!(resource = lock.resource(), %error, "lost the task's lock");
            return;
        }
    }
}

/// The stored snapshot when it is at least as new as the handed-off one.
async fn newest_snapshot<T: Task>(rt: &Runtime, task_id: TaskId, handed_off: SagaSnapshot<T>) -> SagaSnapshot<T> {
    let stored = match rt.infra.state.load(task_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return handed_off,
        Err(error) => {
            tracing::warn!(%task_id, %error, "could not load the saga state; using the handed-off one");
            return handed_off;
        }
    };
    match stored.payload.decode_state::<T>() {
        Ok(snapshot) if snapshot.progress.revision >= handed_off.progress.revision => snapshot,
        Ok(_) => handed_off,
        Err(error) => {
            tracing::warn!(%task_id, %error, "undecodable saga state; using the handed-off one");
            handed_off
        }
    }
}

pub(crate) async fn remove_scratch(rt: &Runtime, task_id: TaskId) {
    let dir = rt.scratch_dir(task_id);
    // Most tasks never create one: a cheap check spares them a hop to the
    // blocking pool on every completion.
    if !dir.exists() {
        return;
    }
    match tokio::fs::remove_dir_all(&dir).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(%task_id, %error, dir = %dir.display(), "could not remove the scratch directory");
        }
        _ => {}
    }
}
