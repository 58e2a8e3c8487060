//! The host: where tasks are submitted, run, watched and cancelled.
//!
//! A [`Host`] is built once ([`Host::builder`]) with the tasks it serves
//! and the infrastructure it runs on. In InProcess mode every service is in
//! memory and the worker loops run inside the host as tokio tasks; in
//! Distributed mode the same host talks to real backends, and may run only
//! the API side or only the workers.
//!
//! ```
//! # use dtask_core::{Host, Mode};
//! # async fn demo() -> dtask_core::Result<()> {
//! let host = Host::builder().mode(Mode::InProcess).build()?;
//! # host.shutdown().await;
//! # Ok(()) }
//! ```

mod builder;
mod dead_letters;
mod handle;
pub(crate) mod runtime;
mod submit;
pub(crate) mod worker;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;

pub use builder::HostBuilder;
pub use dead_letters::{QueuedDeadLetter, RetryOutcome};
pub use handle::{CancelOutcome, TaskHandle, TaskOutcome};
pub use runtime::{EventListener, Infrastructure, KernelSettings, StepInterceptor};

use crate::error::{Error, Result};
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::infra::{ProgressPage, ProgressQuery, ProgressStream};
use crate::progress::TaskProgress;
use crate::task::{Mode, Task, TaskDefinition};
use runtime::Runtime;

/// A running host. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct RegisteredTask {
    definition: &'static TaskDefinition,
    typed: Arc<dyn Any + Send + Sync>,
}

struct HostInner {
    rt: Arc<Runtime>,
    mode: Mode,
    tasks: HashMap<&'static str, RegisteredTask>,
    workers: TaskTracker,
    runs_workers: bool,
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The mode the host runs in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The services the host runs on.
    pub fn infrastructure(&self) -> &Infrastructure {
        &self.inner.rt.infra
    }

    /// The definitions of the registered tasks.
    pub fn tasks(&self) -> impl Iterator<Item = &'static TaskDefinition> + '_ {
        self.inner.tasks.values().map(|t| t.definition)
    }

    /// A receiver of every event of every task, from now on. A receiver
    /// that falls far behind misses events (it is told how many); use
    /// [`HostBuilder::on_event`] for a lossless listener.
    pub fn events(&self) -> broadcast::Receiver<TaskEvent> {
        self.inner.rt.events.subscribe()
    }

    /// The task's latest progress snapshot.
    ///
    /// # Errors
    /// A backend error.
    pub async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        self.inner.rt.infra.progress.get(task_id).await
    }

    /// The task's progress: the current snapshot, then every change, ending
    /// after the terminal one.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task.
    pub async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        self.inner.rt.infra.progress.stream(task_id).await
    }

    /// Recent tasks, newest first.
    ///
    /// # Errors
    /// A backend error.
    pub async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        self.inner.rt.infra.progress.list(query).await
    }

    /// Asks a task to stop. Its running step's token fires, then its
    /// completed steps are compensated and it ends as cancelled.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task.
    pub async fn cancel(&self, task_id: TaskId) -> Result<CancelOutcome> {
        let rt = &self.inner.rt;
        let progress = rt
            .infra
            .progress
            .get(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))?;
        if progress.is_terminal() {
            return Ok(CancelOutcome::AlreadyEnded(progress.status));
        }
        if !progress.cancellable {
            return Ok(CancelOutcome::NotCancellable);
        }
        let progress = rt.infra.progress.request_cancellation(task_id).await?;
        if progress.is_terminal() {
            return Ok(CancelOutcome::AlreadyEnded(progress.status));
        }
        if let Some(control) = rt.local_control(task_id) {
            control.stop(crate::kernel::StopReason::Cancelled);
        }
        Ok(CancelOutcome::Requested)
    }

    /// The task's outcome: its progress, and its response once completed.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task; [`Error::Invalid`] when the
    /// task is not a `T`.
    pub async fn outcome<T: Task>(&self, task_id: TaskId) -> Result<TaskOutcome<T::Response>> {
        let rt = &self.inner.rt;
        let progress = self
            .progress(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))?;
        if progress.task_name != T::definition().name {
            return Err(Error::invalid(
                "task type",
                format!(
                    "task {task_id} is a `{}`, not a `{}`",
                    progress.task_name,
                    T::definition().name
                ),
            ));
        }
        let response = match progress.status {
            crate::TaskStatus::Completed => {
                let stored = rt
                    .infra
                    .state
                    .load(task_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("saga state of task {task_id}")))?;
                stored.payload.decode_state::<T>()?.response
            }
            _ => None,
        };
        Ok(TaskOutcome { progress, response })
    }

    /// Stops gracefully: the worker loops take no new message; each running
    /// task finishes its running step (its outcome recorded: snapshot saved,
    /// progress written), then is handed back to the queue unless it ended,
    /// and its lock released, so another worker resumes it at once. Steps
    /// still running when [`KernelSettings::shutdown_grace`] is over are
    /// cancelled and their tasks handed back too. Returns once every worker
    /// loop and task has ended (about `shutdown_grace + cancel_grace` at
    /// most). An API-only host returns at once.
    ///
    /// Calling it again waits for the same shutdown.
    pub async fn shutdown(&self) {
        let rt = &self.inner.rt;
        rt.shutdown.cancel();
        self.inner.workers.close();
        let grace = rt.settings.shutdown_grace;
        if tokio::time::timeout(grace, self.inner.workers.wait()).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "the shutdown grace is over: cancelling the steps still running and handing their tasks back"
            );
            rt.grace_over.cancel();
            self.inner.workers.wait().await;
        }
    }

    fn registered<T: Task>(&self) -> Result<Arc<T>> {
        let name = T::definition().name;
        self.inner
            .tasks
            .get(name)
            .and_then(|t| Arc::clone(&t.typed).downcast::<T>().ok())
            .ok_or_else(|| Error::invalid("task", format!("`{name}` is not registered on this host")))
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("mode", &self.inner.mode)
            .field("tasks", &self.inner.tasks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! Graceful shutdown on the in-memory backends: an API host and worker
    //! hosts sharing them, as separate processes share Redis and a broker.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use futures::future::BoxFuture;
    use serde::{Deserialize, Serialize};
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::codec::Format;
    use crate::memory::{
        MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
    };
    use crate::progress::{ConditionSnapshot, StepStatus};
    use crate::task::{DataUpdate, RetryPolicy, StepContext, StepDefinition, StepError, StepHost, StepKind};
    use crate::{TaskStatus, task::Mode};

    const PATIENCE: Duration = Duration::from_secs(10);

    /// What the first step does on the host under test.
    #[derive(Debug, Clone, Copy)]
    enum Slow {
        /// Runs until the test opens the gate, whatever its token says.
        UntilGate,
        /// Runs until its token fires, then stops as cancelled.
        UntilCancelled,
        /// Never ends on its own and ignores its token.
        Forever,
        /// Ends at once.
        Quick,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    struct GatedData {
        slow: Option<u32>,
        after: Option<u32>,
    }

    /// Two Worker steps: `Slow`, as the host's [`Slow`] says, then `After`.
    #[derive(Clone)]
    struct Gated {
        slow: Slow,
        started: Arc<Notify>,
        gate: Arc<Semaphore>,
        /// How many attempts of each step this host ran.
        runs: Arc<[AtomicU32; 2]>,
    }

    impl Gated {
        fn new(slow: Slow) -> Self {
            Self {
                slow,
                started: Arc::new(Notify::new()),
                gate: Arc::new(Semaphore::new(0)),
                runs: Arc::new([AtomicU32::new(0), AtomicU32::new(0)]),
            }
        }

        fn runs(&self, step: usize) -> u32 {
            self.runs[step].load(Ordering::SeqCst)
        }
    }

    const fn step(name: &'static str, order: u32) -> StepDefinition {
        StepDefinition {
            name,
            order,
            kind: StepKind::Custom,
            host: StepHost::Worker,
            group: None,
            retry: RetryPolicy::task_default(3),
            timeout: None,
            condition: None,
            compensable: false,
        }
    }

    static GATED: TaskDefinition = TaskDefinition {
        name: "Gated",
        queue: "gated",
        max_retries: 3,
        timeout: Duration::from_secs(60),
        mode: Mode::Distributed,
        format: Format::Json,
        cancellable: true,
        steps: &[step("Slow", 1), step("After", 2)],
        groups: &[],
    };

    impl Task for Gated {
        type Request = ();
        type Response = u32;
        type Data = GatedData;

        fn definition() -> &'static TaskDefinition {
            &GATED
        }

        fn run_step<'a>(
            &'a self,
            step: usize,
            cx: &'a StepContext,
            _request: &'a (),
            _data: &'a GatedData,
        ) -> BoxFuture<'a, Result<DataUpdate<GatedData>, StepError>> {
            Box::pin(async move {
                self.runs[step].fetch_add(1, Ordering::SeqCst);
                if step == 1 {
                    return Ok(Box::new(|data: &mut GatedData| data.after = Some(2)) as DataUpdate<GatedData>);
                }
                self.started.notify_one();
                match self.slow {
                    Slow::UntilGate => drop(self.gate.acquire().await),
                    Slow::UntilCancelled => {
                        cx.cancelled().await;
                        return Err(StepError::cancelled());
                    }
                    Slow::Forever => std::future::pending::<()>().await,
                    Slow::Quick => {}
                }
                Ok(Box::new(|data: &mut GatedData| data.slow = Some(1)) as DataUpdate<GatedData>)
            })
        }

        fn compensate_step<'a>(
            &'a self,
            _step: usize,
            _cx: &'a StepContext,
            _request: &'a (),
            _data: &'a GatedData,
        ) -> BoxFuture<'a, Result<(), StepError>> {
            Box::pin(async { Ok(()) })
        }

        fn evaluate_condition(_step: usize, _request: &(), _data: &GatedData) -> Option<ConditionSnapshot> {
            None
        }

        fn response(&self, _request: &(), data: &GatedData) -> Result<u32, StepError> {
            Ok(data.slow.unwrap_or_default() + data.after.unwrap_or_default())
        }
    }

    /// The shared services, with the queue and lock for inspection.
    struct Shared {
        infra: Infrastructure,
        queue: MemoryQueue,
        lock: MemoryLock,
    }

    fn shared() -> Shared {
        let (queue, lock) = (MemoryQueue::new(), MemoryLock::new());
        let infra = Infrastructure {
            storage: Arc::new(MemoryObjectStore::new()),
            publisher: Arc::new(queue.clone()),
            consumer: Arc::new(queue.clone()),
            lock: Arc::new(lock.clone()),
            progress: Arc::new(MemoryProgressTracker::new()),
            state: Arc::new(MemoryStateStore::new()),
            idempotency: Arc::new(MemoryIdempotencyStore::new()),
        };
        Shared { infra, queue, lock }
    }

    fn api(shared: &Shared) -> Host {
        Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(shared.infra.clone())
            .register(Gated::new(Slow::Quick))
            .run_workers(false)
            .build()
            .unwrap()
    }

    fn worker(shared: &Shared, task: Gated, grace: Duration) -> Host {
        Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(shared.infra.clone())
            .register(task)
            .kernel_settings(KernelSettings {
                cancel_grace: Duration::from_millis(100),
                ..KernelSettings::default()
            })
            .shutdown_grace(grace)
            .build()
            .unwrap()
    }

    async fn progress(host: &Host, task_id: TaskId) -> TaskProgress {
        host.progress(task_id).await.unwrap().expect("a known task")
    }

    async fn completes(handle: &TaskHandle<Gated>) -> TaskOutcome<u32> {
        let outcome = tokio::time::timeout(PATIENCE, handle.wait())
            .await
            .expect("the task ends")
            .unwrap();
        assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
        outcome
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_running_at_shutdown_finishes_and_its_task_is_handed_back() {
        let shared = shared();
        let api = api(&shared);
        let first = Gated::new(Slow::UntilGate);
        let worker_a = worker(&shared, first.clone(), Duration::from_secs(30));
        let handle = api.submit::<Gated>(()).await.unwrap();
        first.started.notified().await;

        let stopping = tokio::spawn({
            let worker_a = worker_a.clone();
            async move { worker_a.shutdown().await }
        });
        worker_a.inner.rt.shutdown.cancelled().await;
        // Submitted after the shutdown began: never taken by this worker.
        let queued = api.submit::<Gated>(()).await.unwrap();
        assert!(!stopping.is_finished(), "the shutdown waits for the running step");
        first.gate.add_permits(1);
        tokio::time::timeout(PATIENCE, stopping)
            .await
            .expect("the shutdown ends")
            .unwrap();

        let handed_back = progress(&api, handle.id()).await;
        assert_eq!(handed_back.steps[0].status, StepStatus::Completed, "the step finished");
        assert_eq!(
            handed_back.steps[1].status,
            StepStatus::Pending,
            "no step started after it"
        );
        assert!(!handed_back.is_terminal());
        assert!(
            !shared.lock.is_held(&format!("task:{}", handle.id())),
            "the lock is released"
        );
        assert_eq!(progress(&api, queued.id()).await.status, TaskStatus::Queued);
        assert_eq!(shared.queue.len("gated"), 2, "both messages are back in the queue");
        assert_eq!(first.runs(1), 0);

        let second = Gated::new(Slow::Quick);
        let worker_b = worker(&shared, second.clone(), Duration::from_secs(30));
        let outcome = completes(&handle).await;
        assert_eq!(outcome.response, Some(3));
        assert_eq!(
            outcome.progress.steps[0].attempts, 1,
            "the finished step is not run again"
        );
        completes(&queued).await;
        assert_eq!((first.runs(0), second.runs(0), second.runs(1)), (1, 1, 2));
        worker_b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_still_running_when_the_grace_is_over_is_cancelled_and_handed_back() {
        let shared = shared();
        let api = api(&shared);
        let first = Gated::new(Slow::UntilCancelled);
        let worker_a = worker(&shared, first.clone(), Duration::from_millis(200));
        let handle = api.submit::<Gated>(()).await.unwrap();
        first.started.notified().await;

        let began = Instant::now();
        tokio::time::timeout(PATIENCE, worker_a.shutdown())
            .await
            .expect("the shutdown ends");
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(200), "the step had its grace ({took:?})");
        assert!(took < Duration::from_secs(2), "the shutdown took {took:?}");

        let handed_back = progress(&api, handle.id()).await;
        assert_eq!(handed_back.steps[0].status, StepStatus::Cancelled);
        assert_eq!(handed_back.steps[0].attempts, 1);
        assert!(!handed_back.is_terminal());
        assert!(
            !shared.lock.is_held(&format!("task:{}", handle.id())),
            "the lock is released"
        );
        assert_eq!(shared.queue.len("gated"), 1, "the message is back in the queue");

        let _worker_b = worker(&shared, Gated::new(Slow::Quick), Duration::from_secs(30));
        let outcome = completes(&handle).await;
        assert_eq!(outcome.progress.steps[0].attempts, 2, "one attempt per worker");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_that_ignores_its_token_does_not_hold_the_shutdown_up() {
        let shared = shared();
        let api = api(&shared);
        let first = Gated::new(Slow::Forever);
        let worker_a = worker(&shared, first.clone(), Duration::from_millis(100));
        let handle = api.submit::<Gated>(()).await.unwrap();
        first.started.notified().await;

        let began = Instant::now();
        tokio::time::timeout(PATIENCE, worker_a.shutdown())
            .await
            .expect("the shutdown ends");
        // The grace, then the kernel's cancel grace (100 ms here).
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "the shutdown took {:?}",
            began.elapsed()
        );
        assert!(!shared.lock.is_held(&format!("task:{}", handle.id())));

        let _worker_b = worker(&shared, Gated::new(Slow::Quick), Duration::from_secs(30));
        let outcome = completes(&handle).await;
        assert_eq!(outcome.progress.steps[0].attempts, 2);
    }
}
