//! [`RunGuard`]: what one delivery holds while its task runs on this
//! worker, and the one place it is settled.
//!
//! A delivery acquires, in order: the message itself, the task's lock (and
//! its renewal), the task's registration in the host's registry of running
//! tasks (so a cancellation made here reaches it), and the task's scratch
//! directory. [`RunGuard::settle`] gives them all back in the right order
//! for how the run ended; dropping the guard unsettled (a panic, a
//! cancelled future) hands the message back, never acknowledges it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::history::AuditEntry;
use crate::id::TaskId;
use crate::infra::{Delivery, LockGuard, QueueMessage, StoredState, Taken};
use crate::kernel::{ControlSlot, QueueMetrics, RunControl, Runtime};

/// How a delivery ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// The task's outcome is saved: remove the message for good.
    Done,
    /// The task is not done here: deliver the message again, at once or
    /// after `delay` (when a backend failed, so that the redelivery does
    /// not find it still down).
    HandBack {
        /// How long to wait before handing it back.
        delay: Duration,
    },
    /// The message can never be processed: keep it, with the reason, for
    /// an operator.
    DeadLetter(String),
}

impl Settlement {
    /// Hand the message back at once.
    pub(crate) const HAND_BACK: Self = Self::HandBack { delay: Duration::ZERO };
}

/// Everything one delivery holds. See the module docs.
pub(crate) struct RunGuard<'r> {
    rt: &'r Runtime,
    task_id: TaskId,
    delivery: Option<Delivery>,
    lock: Option<LockGuard>,
    /// The run's saved state, read with the lock when the infrastructure
    /// takes both at once ([`LockWithState`]), until the run takes it.
    preloaded: Option<Result<Option<StoredState>>>,
    slot: Option<ControlSlot<'r>>,
    /// The run's scratch directory on this host.
    scratch: PathBuf,
    /// The metrics of the delivery's queue; the guard counts in
    /// `dtask_tasks_in_flight` for as long as it lives.
    metrics: Option<&'r QueueMetrics>,
}

impl<'r> RunGuard<'r> {
    /// Takes charge of `delivery`, from `queue`.
    pub(crate) fn new(rt: &'r Runtime, delivery: Delivery, queue: &str) -> Self {
        let metrics = rt.metrics.queue(queue);
        rt.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = metrics {
            metrics.in_flight.increment(1);
        }
        Self {
            rt,
            task_id: run_id(delivery.message()),
            scratch: scratch_dir(rt, delivery.message()),
            delivery: Some(delivery),
            lock: None,
            preloaded: None,
            slot: None,
            metrics,
        }
    }

    /// The id of the run the message drives: the task's, or a member
    /// run's ([`TaskId::member`]) for a member of a distributed group. The
    /// lock, the registry entry and the scratch directory are the run's.
    pub(crate) fn run_id(&self) -> TaskId {
        self.task_id
    }

    /// The runtime the guard settles with.
    pub(crate) fn runtime(&self) -> &'r Runtime {
        self.rt
    }

    /// The delivered message.
    pub(crate) fn message(&self) -> &QueueMessage {
        self.delivery().message()
    }

    /// How many times the message has been delivered, this time included.
    pub(crate) fn delivery_count(&self) -> u32 {
        self.delivery().delivery_count()
    }

    fn delivery(&self) -> &Delivery {
        self.delivery
            .as_ref()
            .expect("a guard holds its delivery until it is settled")
    }

    /// Takes the task's lock, waiting as long as another holder keeps it;
    /// `false` when the host starts shutting down first.
    ///
    /// A held lock means a duplicate delivery: the broker handed the
    /// message out again (after a lost connection, or a visibility
    /// timeout) while another worker still runs the task, or the worker
    /// that ran it died and its lease has not expired yet. Either way this
    /// delivery may now be the task's only message, so it is kept, not
    /// returned: the holder ends the task (this delivery then finds it
    /// ended and acknowledges it), or stops or dies (its lease is released
    /// or expires, and this worker resumes the task). Returning it instead
    /// would send it round the workers, each return counting towards the
    /// broker's delivery limit, until it is dead-lettered while its task is
    /// still alive.
    pub(crate) async fn lock(&mut self) -> bool {
        let resource = format!("task:{}", self.task_id);
        let ttl = self.rt.settings.lock_ttl;
        let mut pause = Duration::from_millis(20);
        let mut told = false;
        let started = Instant::now();
        loop {
            if self.rt.shutdown.is_cancelled() {
                return false;
            }
            match self.try_acquire(&resource, ttl).await {
                Ok(Some(guard)) => {
                    self.lock = Some(guard);
                    if let Some(metrics) = self.metrics {
                        metrics.lock_wait.record(started.elapsed().as_secs_f64());
                    }
                    return true;
                }
                Ok(None) if !told => {
                    tracing::debug!(task_id = %self.task_id, "another worker holds the task; waiting for it to end or let go");
                    if let Some(metrics) = self.metrics {
                        metrics.lock_contended.increment(1);
                    }
                    told = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(task_id = %self.task_id, %error, "lock backend failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.rt.shutdown.cancelled() => return false,
            }
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Takes the lock once, reading the run's state with it where the
    /// infrastructure does both at once.
    async fn try_acquire(&mut self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        let Some(take) = &self.rt.infra.lock_with_state else {
            return self.rt.infra.lock.try_acquire(resource, ttl).await;
        };
        let taken = take.try_acquire_loading(resource, ttl, self.task_id).await?;
        Ok(taken.map(|Taken { guard, state }| {
            self.preloaded = Some(state);
            guard
        }))
    }

    /// The run's saved state as read with its lock, once: `None` when the
    /// lock was taken alone (the run loads its state itself).
    pub(crate) fn take_preloaded(&mut self) -> Option<Result<Option<StoredState>>> {
        self.preloaded.take()
    }

    /// The fencing token of the held lock (0 before [`RunGuard::lock`]).
    pub(crate) fn fencing_token(&self) -> u64 {
        self.lock.as_ref().map_or(0, LockGuard::fencing_token)
    }

    /// Registers the run in the host's registry of running tasks; returns
    /// its control, and whether it was adopted from the task's API side
    /// in this process (which then sends cancellations here directly).
    pub(crate) fn register(&mut self) -> (Arc<RunControl>, bool) {
        let (slot, adopted) = self.rt.register(self.task_id);
        let control = Arc::clone(slot.control());
        self.slot = Some(slot);
        (control, adopted)
    }

    /// Renews the lock every third of its lifetime; returns when it is lost
    /// (never, before [`RunGuard::lock`]).
    pub(crate) async fn keep_alive(&self) {
        let Some(lock) = &self.lock else {
            return std::future::pending().await;
        };
        let ttl = self.rt.settings.lock_ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            if let Err(error) = lock.extend(ttl).await {
                tracing::warn!(resource = lock.resource(), %error, "lost the task's lock");
                return;
            }
        }
    }

    /// Ends the delivery as `settlement` says, releasing what it holds:
    ///
    /// - [`Settlement::Done`]: ack, then remove the scratch directory,
    ///   unregister and release the lock;
    /// - [`Settlement::HandBack`]: release the lock first (the worker that
    ///   gets the message takes it at once), unregister, wait the delay
    ///   (cut short by a shutdown), then nack;
    /// - [`Settlement::DeadLetter`]: dead-letter, then as `Done`.
    ///
    /// A settlement the broker refuses is logged: an unacknowledged message
    /// comes back (and finds its task's saved state), and a message that
    /// could not be dead-lettered stays in its queue.
    pub(crate) async fn settle(mut self, settlement: Settlement) {
        let task_id = self.task_id;
        let Some(delivery) = self.delivery.take() else {
            return;
        };
        match settlement {
            Settlement::Done => {
                if let Err(error) = delivery.ack().await {
                    tracing::warn!(%task_id, %error, "ack failed; the message will come back and find the task ended");
                }
                self.release_all(true).await;
            }
            Settlement::DeadLetter(reason) => {
                tracing::error!(%task_id, reason, "dead-lettering the message");
                match delivery.dead_letter(&reason).await {
                    Ok(()) => {
                        if let Some(metrics) = self.metrics {
                            metrics.dead_letters.increment(1);
                        }
                        let mut entry = AuditEntry::new(task_id, self.rt.system_actor(), "deadLetter");
                        entry.detail = Some(reason);
                        self.rt.audit(entry);
                    }
                    Err(error) => {
                        tracing::warn!(%task_id, %error, "could not dead-letter the message; it stays in its queue");
                    }
                }
                self.release_all(true).await;
            }
            Settlement::HandBack { delay } => {
                self.release_all(false).await;
                if !delay.is_zero() && !self.rt.shutdown.is_cancelled() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.rt.shutdown.cancelled() => {}
                    }
                }
                if let Err(error) = delivery.nack().await {
                    tracing::warn!(%task_id, %error, "nack failed; the broker will deliver the message again");
                }
            }
        }
    }

    /// Removes the scratch directory (when the task will not run here
    /// again), unregisters, and releases the lock (a failure only means it
    /// expires on its own).
    async fn release_all(&mut self, remove_scratch: bool) {
        if remove_scratch {
            self.rt.remove_scratch_dir(self.task_id, &self.scratch).await;
        }
        self.slot = None;
        if let Some(lock) = self.lock.take()
            && let Err(error) = lock.release().await
        {
            tracing::debug!(task_id = %self.task_id, %error, "lock release failed; it will expire");
        }
    }
}

impl Drop for RunGuard<'_> {
    /// Unsettled: the delivery, dropped, goes back to its queue (each
    /// backend nacks a dropped delivery), and the lock, dropped, is
    /// released in the background.
    fn drop(&mut self) {
        self.rt.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(metrics) = self.metrics {
            metrics.in_flight.decrement(1);
        }
        if self.delivery.is_some() {
            tracing::warn!(task_id = %self.task_id, "a delivery was dropped unsettled; handing it back");
        }
    }
}

/// The scratch directory of the run `message` drives.
fn scratch_dir(rt: &Runtime, message: &QueueMessage) -> PathBuf {
    match &message.member {
        Some(member) => rt.member_scratch_dir(message.task_id, member),
        None => rt.scratch_dir(message.task_id),
    }
}

/// See [`RunGuard::run_id`].
fn run_id(message: &QueueMessage) -> TaskId {
    match &message.member {
        Some(member) => TaskId::member(message.task_id, member),
        None => message.task_id,
    }
}
