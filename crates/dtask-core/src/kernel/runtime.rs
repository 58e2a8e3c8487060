//! What every saga run of a host shares: its services, settings and
//! listeners, the registry of running tasks' controls, and the scratch
//! directories of their steps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::codec::{Codec, Format, KeyRing, Payload, SagaSnapshot, SagaStateSerializer, unseal};
use crate::error::Result;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::infra::Infrastructure;
use crate::task::{GroupDistribution, StepError, Task};
use crate::trace::TraceBridge;

use super::{HistoryWriter, Metrics, RunControl};
use crate::history::{AuditEntry, HistoryRecord};

/// A hook the kernel calls before every step attempt and compensation
/// attempt: the test host injects faults through it.
#[async_trait]
pub trait StepInterceptor: Send + Sync + 'static {
    /// Called before attempt `attempt` of `step`; an error fails the attempt
    /// without running the step. `token` fires on cancellation or timeout.
    async fn before_attempt(
        &self,
        task: &'static str,
        step: &'static str,
        attempt: u32,
        token: &CancellationToken,
    ) -> Result<(), StepError>;

    /// Called before a compensation attempt; an error fails it. By default
    /// every compensation attempt runs.
    async fn before_compensation(&self, task: &'static str, step: &'static str, attempt: u32) -> Result<(), StepError> {
        let _ = (task, step, attempt);
        Ok(())
    }
}

/// A function told of every event.
pub type EventListener = Arc<dyn Fn(&TaskEvent) + Send + Sync>;

/// Tunables of the kernel.
#[derive(Debug, Clone)]
pub struct KernelSettings {
    /// How long a worker's lock on a task lasts without renewal; it is
    /// renewed every third of it while the task runs.
    pub lock_ttl: Duration,
    /// How long a cancelled step may take to notice its token before the
    /// kernel stops waiting for it.
    pub cancel_grace: Duration,
    /// The least time between two progress events of one running step.
    pub progress_interval: Duration,
    /// The time limit of one compensation attempt.
    pub compensation_timeout: Duration,
    /// How long [`Host::shutdown`](crate::Host::shutdown) lets the running
    /// steps of a worker finish (their outcome is recorded, then their
    /// tasks are handed back unless they ended). When it is over, the steps
    /// still running are cancelled (their token fires), given
    /// [`cancel_grace`](Self::cancel_grace) to stop, and their tasks handed
    /// back: a shutdown takes at most about `shutdown_grace + cancel_grace`.
    pub shutdown_grace: Duration,
    /// Where steps get their scratch directories (default: `dtask/<pid>`
    /// in the system temporary directory).
    pub scratch_root: PathBuf,
    /// Which parallel groups' members run from messages of their own, on
    /// any worker (default: those declared `distribute`).
    pub group_distribution: GroupDistribution,
}

impl Default for KernelSettings {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            progress_interval: Duration::from_millis(100),
            compensation_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            // Per process: processes of one machine never share a task's scratch directory.
            scratch_root: std::env::temp_dir().join("dtask").join(std::process::id().to_string()),
            group_distribution: GroupDistribution::default(),
        }
    }
}

pub(crate) struct Runtime {
    pub(crate) infra: Infrastructure,
    /// The serializer chosen for every task, overriding their declared formats.
    pub(crate) format_override: Option<Format>,
    pub(crate) serialize: bool,
    /// Seals every encoded message and snapshot, and opens sealed ones.
    pub(crate) keys: Option<Arc<KeyRing>>,
    pub(crate) settings: KernelSettings,
    pub(crate) listeners: Vec<EventListener>,
    pub(crate) events: broadcast::Sender<TaskEvent>,
    pub(crate) interceptor: Option<Arc<dyn StepInterceptor>>,
    /// The tasks running in this host (API or worker side), by id.
    pub(crate) running: Mutex<HashMap<TaskId, Registration>>,
    /// Fires when the host starts shutting down: the worker loops take no
    /// new message, and running tasks stop at their next step boundary.
    pub(crate) shutdown: CancellationToken,
    /// Fires when the shutdown grace is over: the steps still running are
    /// cancelled and their tasks handed back.
    pub(crate) grace_over: CancellationToken,
    /// Writes the task history, when the host keeps one.
    pub(crate) history: Option<HistoryWriter>,
    /// This process, as history records name it (`<host name>:<pid>`
    /// unless the builder named it).
    pub(crate) node: String,
    /// Links the kernel's spans to a tracing system, when one is set.
    pub(crate) tracer: Option<Arc<dyn TraceBridge>>,
    /// The metrics of the tasks, steps and queues this host declares.
    pub(crate) metrics: Metrics,
    /// The deliveries this host's workers hold now.
    pub(crate) in_flight: AtomicUsize,
    /// The `#[depends_on]` edges of the registered tasks.
    pub(crate) dependents: super::dependents::Dependents,
    /// Set while the host follows the tracker's
    /// [`CancellationFeed`](crate::infra::CancellationFeed): its workers
    /// then open no progress stream per task to learn of cancellations.
    pub(crate) follows_cancellations: AtomicBool,
    /// Fires when the runtime is dropped: tasks that hold it weakly end.
    pub(crate) dropped: CancellationToken,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl Runtime {
    /// Records `entry` in the history, when the host keeps one.
    pub(crate) fn audit(&self, entry: AuditEntry) {
        if let Some(writer) = &self.history {
            writer.push(HistoryRecord::Audit(entry));
        }
    }

    /// Audits a request on `task_id` (`submit`, `cancel`, `retry`) asked by
    /// `actor`, this process when `None`.
    pub(crate) fn audit_request(
        &self,
        task_id: TaskId,
        actor: Option<&str>,
        action: &str,
        detail: String,
        trace_id: Option<String>,
    ) {
        let actor = actor.map_or_else(|| self.system_actor(), str::to_owned);
        let mut entry = AuditEntry::new(task_id, actor, action);
        entry.detail = Some(detail);
        entry.trace_id = trace_id;
        self.audit(entry);
    }

    /// Who a change made by this process is by, in the audit log.
    pub(crate) fn system_actor(&self) -> String {
        format!("system:{}", self.node)
    }

    pub(crate) fn publish_event(&self, event: &TaskEvent) {
        for listener in &self.listeners {
            listener(event);
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event.clone());
        }
    }

    /// The serializer of `T`'s messages and snapshots: the host's choice,
    /// or the format `T` declares.
    pub(crate) fn codec<T: Task>(&self) -> Codec {
        Codec::new(self.format_override.unwrap_or(T::definition().format))
    }

    /// The payload of `snapshot`: in memory when this host does not
    /// serialize; else encoded, and sealed when the host has a key ring.
    pub(crate) fn encode<T: Task>(&self, snapshot: SagaSnapshot<T>) -> Result<Payload> {
        if !self.serialize {
            return Ok(Payload::in_memory(snapshot));
        }
        let codec = self.codec::<T>();
        let bytes = codec.serialize_state(&snapshot)?;
        let bytes = match &self.keys {
            Some(keys) => keys.seal(snapshot.progress.task_id, codec.format(), &bytes),
            None => bytes,
        };
        Ok(Payload::Encoded {
            format: codec.format(),
            bytes,
        })
    }

    /// Reads the saga state of `T` in `payload` (a message or a stored
    /// state of `task_id`), opening it if it is sealed. A task declaring
    /// `encrypt_messages` refuses an unsealed one.
    ///
    /// # Errors
    /// [`Error::Codec`](crate::Error::Codec) when it cannot be opened or read.
    pub(crate) fn decode_state<T: Task>(&self, task_id: TaskId, payload: &Payload) -> Result<SagaSnapshot<T>> {
        let definition = T::definition();
        let required_by = definition.encrypt_messages.then_some(definition.name);
        unseal(payload, self.keys.as_deref(), task_id, required_by)?.decode_state()
    }

    /// Registers a run of `task_id` in this host, so that a cancellation
    /// made here reaches it. Runs of one task in this host share one
    /// [`RunControl`]. Returns the slot, and whether it took over a
    /// registration that the task's API side in this process left for its
    /// worker ([`ControlSlot::leave_for_worker`]): cancellations then come
    /// to this host.
    pub(crate) fn register(&self, task_id: TaskId) -> (ControlSlot<'_>, bool) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let entry = running.entry(task_id).or_insert_with(|| Registration {
            control: Arc::new(RunControl::default()),
            holders: 0,
            left_for_worker: false,
        });
        let adopted = std::mem::take(&mut entry.left_for_worker);
        if !adopted {
            entry.holders += 1;
        }
        let slot = ControlSlot {
            rt: self,
            task_id,
            control: Arc::clone(&entry.control),
            passed: false,
        };
        (slot, adopted)
    }

    /// The control of a task running in this host, if any.
    pub(crate) fn local_control(&self, task_id: TaskId) -> Option<Arc<RunControl>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(&task_id).map(|entry| Arc::clone(&entry.control))
    }

    /// The ids of the tasks running in this host.
    pub(crate) fn running_ids(&self) -> Vec<TaskId> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.keys().copied().collect()
    }

    /// How many tasks are registered as running in this host.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The directory the steps of `task_id` may use on this host.
    pub(crate) fn scratch_dir(&self, task_id: TaskId) -> PathBuf {
        self.settings.scratch_root.join(task_id.to_string())
    }

    /// The directory the member run of step `member` of task `parent`'s
    /// distributed group uses on this host: beside the task's, named after
    /// both (as every path of a task holds its id).
    pub(crate) fn member_scratch_dir(&self, parent: TaskId, member: &str) -> PathBuf {
        self.settings.scratch_root.join(format!("{parent}.{member}"))
    }

    /// Removes the scratch directory of a task that ended here (or that
    /// this host will not run any more).
    pub(crate) async fn remove_scratch(&self, task_id: TaskId) {
        self.remove_scratch_dir(task_id, &self.scratch_dir(task_id)).await;
    }

    /// Removes `dir`, a scratch directory of `task_id`'s.
    pub(crate) async fn remove_scratch_dir(&self, task_id: TaskId, dir: &std::path::Path) {
        // Most tasks never create one: a cheap check spares them a hop to the
        // blocking pool on every completion.
        if !dir.exists() {
            return;
        }
        match tokio::fs::remove_dir_all(dir).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(%task_id, %error, dir = %dir.display(), "could not remove the scratch directory");
            }
            _ => {}
        }
    }
}

/// A task's entry in [`Runtime::running`].
pub(crate) struct Registration {
    control: Arc<RunControl>,
    /// The slots holding it (a hold passed on to the worker counts until
    /// the worker drops it); it goes when the last one is dropped.
    holders: usize,
    /// A hold the API side passed on, for this host's worker to take.
    left_for_worker: bool,
}

/// A run's hold on its task's registration in [`Runtime`]'s registry of
/// running tasks: dropping the last one removes the registration, whichever
/// way the runs ended.
pub(crate) struct ControlSlot<'r> {
    rt: &'r Runtime,
    task_id: TaskId,
    control: Arc<RunControl>,
    /// Its hold was passed on to this host's worker.
    passed: bool,
}

impl ControlSlot<'_> {
    /// The run's control.
    pub(crate) fn control(&self) -> &Arc<RunControl> {
        &self.control
    }

    /// Passes this hold on to this host's own worker, whose slot takes its
    /// place when it registers the task (an in-process hand-off: a
    /// cancellation made between the hand-off and the worker's start then
    /// reaches the run without a round trip through the progress tracker).
    /// Call it before publishing the task, so the worker finds it.
    pub(crate) fn leave_for_worker(&mut self) {
        let mut running = self.rt.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = running.get_mut(&self.task_id) {
            entry.left_for_worker = true;
            self.passed = true;
        }
    }

    /// Takes back a hold left for the worker, if no worker took it yet (the
    /// task could not be published).
    pub(crate) fn take_back(&mut self) {
        let mut running = self.rt.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = running.get_mut(&self.task_id)
            && self.passed
            && entry.left_for_worker
        {
            entry.left_for_worker = false;
            self.passed = false;
        }
    }
}

impl Drop for ControlSlot<'_> {
    fn drop(&mut self) {
        if self.passed {
            return;
        }
        let mut running = self.rt.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = running.get_mut(&self.task_id) else {
            return;
        };
        entry.holders = entry.holders.saturating_sub(1);
        if entry.holders == 0 {
            running.remove(&self.task_id);
        }
    }
}
