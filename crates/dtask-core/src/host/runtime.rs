//! The state a host shares with every saga it runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::codec::{Codec, Format, Payload};
use crate::error::Result;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::infra::{
    DistributedLock, IdempotencyStore, ObjectStore, ProgressTracker, QueueConsumer, QueuePublisher, SagaStateStore,
};
use crate::kernel::{RunControl, SagaSnapshot};
use crate::task::{StepError, Task};

/// The seven services a host runs on (the serializer is the [`Codec`]).
#[derive(Debug, Clone)]
pub struct Infrastructure {
    /// Files.
    pub storage: Arc<dyn ObjectStore>,
    /// Hand-offs to the workers.
    pub publisher: Arc<dyn QueuePublisher>,
    /// Deliveries to the workers.
    pub consumer: Arc<dyn QueueConsumer>,
    /// One worker per task.
    pub lock: Arc<dyn DistributedLock>,
    /// Progress snapshots and streams.
    pub progress: Arc<dyn ProgressTracker>,
    /// Saga snapshots.
    pub state: Arc<dyn SagaStateStore>,
    /// Idempotency keys of submissions.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl Infrastructure {
    /// Pings every service; returns the name and error of each that does
    /// not answer.
    pub async fn check(&self) -> Vec<(&'static str, crate::Error)> {
        let (storage, publisher, consumer, lock, progress, state, idempotency) = tokio::join!(
            self.storage.ping(),
            self.publisher.ping(),
            self.consumer.ping(),
            self.lock.ping(),
            self.progress.ping(),
            self.state.ping(),
            self.idempotency.ping(),
        );
        [
            ("storage", storage),
            ("queue publisher", publisher),
            ("queue consumer", consumer),
            ("lock", lock),
            ("progress", progress),
            ("state store", state),
            ("idempotency store", idempotency),
        ]
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|e| (name, e)))
        .collect()
    }
}

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

    /// Called before a compensation attempt; an error fails it.
    async fn before_compensation(&self, task: &'static str, step: &'static str, attempt: u32) -> Result<(), StepError>;
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
    /// How long [`Host::shutdown`](super::Host::shutdown) lets the running
    /// steps of a worker finish (their outcome is recorded, then their
    /// tasks are handed back unless they ended). When it is over, the steps
    /// still running are cancelled (their token fires), given
    /// [`cancel_grace`](Self::cancel_grace) to stop, and their tasks handed
    /// back: a shutdown takes at most about `shutdown_grace + cancel_grace`.
    pub shutdown_grace: Duration,
    /// Where steps get their scratch directories (default: `dtask/<pid>`
    /// in the system temporary directory).
    pub scratch_root: PathBuf,
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
        }
    }
}

pub(crate) struct Runtime {
    pub(crate) infra: Infrastructure,
    /// The serializer chosen for every task, overriding their declared formats.
    pub(crate) format_override: Option<Format>,
    pub(crate) serialize: bool,
    pub(crate) settings: KernelSettings,
    pub(crate) listeners: Vec<EventListener>,
    pub(crate) events: broadcast::Sender<TaskEvent>,
    pub(crate) interceptor: Option<Arc<dyn StepInterceptor>>,
    pub(crate) running: Mutex<HashMap<TaskId, Arc<RunControl>>>,
    /// Fires when the host starts shutting down: the worker loops take no
    /// new message, and running tasks stop at their next step boundary.
    pub(crate) shutdown: CancellationToken,
    /// Fires when the shutdown grace is over: the steps still running are
    /// cancelled and their tasks handed back.
    pub(crate) grace_over: CancellationToken,
}

impl Runtime {
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

    pub(crate) fn encode<T: Task>(&self, snapshot: SagaSnapshot<T>) -> Result<Payload> {
        if self.serialize {
            self.codec::<T>().encode_state(&snapshot)
        } else {
            Ok(Payload::in_memory(snapshot))
        }
    }

    /// The run control of a task, shared by its API and worker sides when
    /// both run in this process.
    pub(crate) fn control(&self, task_id: TaskId) -> Arc<RunControl> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            running
                .entry(task_id)
                .or_insert_with(|| Arc::new(RunControl::default())),
        )
    }

    pub(crate) fn local_control(&self, task_id: TaskId) -> Option<Arc<RunControl>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(&task_id).cloned()
    }

    pub(crate) fn forget(&self, task_id: TaskId) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&task_id);
    }

    pub(crate) fn scratch_dir(&self, task_id: TaskId) -> PathBuf {
        self.settings.scratch_root.join(task_id.to_string())
    }
}
