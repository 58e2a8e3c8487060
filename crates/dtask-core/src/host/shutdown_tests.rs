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

pub(super) const PATIENCE: Duration = Duration::from_secs(10);

/// What the first step does on the host under test.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slow {
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
pub(super) struct GatedData {
    slow: Option<u32>,
    after: Option<u32>,
}

/// Two Worker steps: `Slow`, as the host's [`Slow`] says, then `After`.
#[derive(Clone)]
pub(super) struct Gated {
    slow: Slow,
    pub(super) started: Arc<Notify>,
    gate: Arc<Semaphore>,
    /// How many attempts of each step this host ran.
    runs: Arc<[AtomicU32; 2]>,
}

impl Gated {
    pub(super) fn new(slow: Slow) -> Self {
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
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[step("Slow", 1), step("After", 2)],
    groups: &[],
    depends_on: &[],
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

    fn adopt_output(step: usize, from: &mut GatedData, into: &mut GatedData) {
        match step {
            0 => into.slow = from.slow.take(),
            _ => into.after = from.after.take(),
        }
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
pub(super) struct Shared {
    pub(super) infra: Infrastructure,
    queue: MemoryQueue,
    lock: MemoryLock,
}

pub(super) fn shared() -> Shared {
    let (queue, lock) = (MemoryQueue::new(), MemoryLock::new());
    let infra = Infrastructure {
        storage: Arc::new(MemoryObjectStore::new()),
        publisher: Arc::new(queue.clone()),
        consumer: Arc::new(queue.clone()),
        lock: Arc::new(lock.clone()),
        progress: Arc::new(MemoryProgressTracker::new()),
        state: Arc::new(MemoryStateStore::new()),
        idempotency: Arc::new(MemoryIdempotencyStore::new()),
        dead_letters: Some(Arc::new(queue.clone())),
        workers: None,
        depths: None,
        cancellations: None,
        settlement: None,
        lock_with_state: None,
    };
    Shared { infra, queue, lock }
}

pub(super) fn api(shared: &Shared) -> Host {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(shared.infra.clone())
        .register(Gated::new(Slow::Quick))
        .run_workers(false)
        .build()
        .unwrap()
}

pub(super) fn worker(shared: &Shared, task: Gated, grace: Duration) -> Host {
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
    assert_eq!(
        worker_a.inner.rt.registered(),
        0,
        "the handed-back run left no registration"
    );
    assert_eq!(api.inner.rt.registered(), 0, "the API side left no registration");

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

    assert_eq!(worker_a.inner.rt.registered(), 0);
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

// Registrations of running tasks: owned by their runs, gone when they end.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_runs_leave_no_registration_behind() {
    let host = Host::builder()
        .mode(Mode::InProcess)
        .register(Gated::new(Slow::Quick))
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..20 {
        handles.push(host.submit::<Gated>(()).await.unwrap());
    }
    for handle in &handles {
        completes(handle).await;
    }
    host.shutdown().await;
    assert_eq!(host.inner.rt.registered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_api_process_reaches_a_task_submitted_where_it_runs() {
    // Regression: a Distributed host that runs workers kept the submit's
    // registration for its worker, which then took cancellations to come
    // to it only, and missed those sent to another API process.
    let shared = shared();
    let task = Gated::new(Slow::UntilCancelled);
    let submitter = worker(&shared, task.clone(), Duration::from_secs(30));
    let other_api = api(&shared);
    let handle = submitter.submit::<Gated>(()).await.unwrap();
    task.started.notified().await;
    assert_eq!(other_api.cancel(handle.id()).await.unwrap(), CancelOutcome::Requested);
    let outcome = tokio::time::timeout(PATIENCE, handle.wait())
        .await
        .expect("the task ends")
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    submitter.shutdown().await;
    assert_eq!(submitter.inner.rt.registered(), 0);
}
