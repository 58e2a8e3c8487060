//! Settlement: a message is acknowledged only after the state it settles is
//! saved, and progress never shows a state that is not saved. Faults are
//! injected at the exact save they target (a [`Tripwire`] state store) on
//! the in-memory backends, on tokio's paused clock; `faults.rs` does the
//! same against real Redis and RabbitMQ through a TCP proxy.

mod support;

#[path = "support/audit.rs"]
mod audit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use audit::{AuditedTracker, Tripwire, When};
use dtask::StepStatus;
use dtask::event::EventKind;
use dtask::infra::{
    DistributedLock, Infrastructure, LockGuard, LockLease, ProgressTracker, SagaStateStore, StoredState,
};
use dtask::memory::{
    MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
};
use dtask::prelude::*;
use dtask::{Error, StepInterceptor, TaskEvent};
use support::{Journal, OrderRequest, OrderResponse, PlaceOrder, Reservation, charge_just_completed};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A state store whose saves and loads fail while its outage lasts.
#[derive(Debug, Clone, Default)]
struct Outage {
    on: Arc<AtomicBool>,
}

impl Outage {
    /// Starts an outage that ends after `length` (on the paused clock).
    fn start_for(&self, length: Duration) {
        self.on.store(true, Ordering::SeqCst);
        let on = Arc::clone(&self.on);
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            on.store(false, Ordering::SeqCst);
        });
    }

    fn check(&self) -> dtask::Result<()> {
        if self.on.load(Ordering::SeqCst) {
            return Err(Error::backend("test", "the state store is down"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct FlakyStore {
    inner: Arc<dyn SagaStateStore>,
    outage: Outage,
}

#[async_trait]
impl SagaStateStore for FlakyStore {
    async fn save(&self, task_id: TaskId, state: StoredState) -> dtask::Result<()> {
        self.outage.check()?;
        self.inner.save(task_id, state).await
    }

    async fn load(&self, task_id: TaskId) -> dtask::Result<Option<StoredState>> {
        self.outage.check()?;
        self.inner.load(task_id).await
    }

    async fn delete(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.delete(task_id).await
    }
}

/// The lock's time-to-live on the worker: its save retries last this long.
const LOCK_TTL: Duration = Duration::from_secs(2);

/// An API host and a worker host sharing in-memory backends (serialized
/// hand-offs, as between processes); the worker's progress writes are
/// audited against the saved state, and its state store is `worker_state`
/// around the shared one.
struct Rig {
    api: Host,
    worker: Host,
    journal: Journal,
    audit: AuditedTracker<PlaceOrder>,
    state: Arc<dyn SagaStateStore>,
    queue: MemoryQueue,
    worker_starts: Arc<Mutex<HashMap<TaskId, u32>>>,
}

impl Rig {
    /// A rig whose worker's state store goes down for `length` just before
    /// the first save of a state that `matches`.
    fn with_outage(matches: fn(&TaskProgress) -> bool, length: Duration) -> Self {
        let outage = Outage::default();
        let switch = outage.clone();
        Self::with(
            move |state| {
                let flaky = Arc::new(FlakyStore { inner: state, outage });
                Arc::new(Tripwire::<PlaceOrder>::new(flaky, When::Before, matches, move || {
                    switch.start_for(length)
                }))
            },
            Arc::new(MemoryLock::new()),
            |b| b,
        )
    }

    fn with(
        worker_state: impl FnOnce(Arc<dyn SagaStateStore>) -> Arc<dyn SagaStateStore>,
        worker_lock: Arc<dyn DistributedLock>,
        configure: impl FnOnce(dtask::HostBuilder) -> dtask::HostBuilder,
    ) -> Self {
        let queue = MemoryQueue::new();
        let state: Arc<dyn SagaStateStore> = Arc::new(MemoryStateStore::new());
        let feed = Arc::new(MemoryProgressTracker::new());
        let tracker: Arc<dyn ProgressTracker> = feed.clone();
        let audit = AuditedTracker::<PlaceOrder>::new(Arc::clone(&tracker), Arc::clone(&state));
        let shared = Infrastructure {
            storage: Arc::new(MemoryObjectStore::new()),
            publisher: Arc::new(queue.clone()),
            consumer: Arc::new(queue.clone()),
            lock: Arc::new(MemoryLock::new()),
            progress: tracker,
            state: Arc::clone(&state),
            idempotency: Arc::new(MemoryIdempotencyStore::new()),
            dead_letters: Some(Arc::new(queue.clone())),
            workers: None,
            depths: None,
            cancellations: Some(feed),
            settlement: None,
            lock_with_state: None,
        };
        let api = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(shared.clone())
            .register(PlaceOrder::default())
            .run_workers(false)
            .build()
            .unwrap();
        let journal = Journal::default();
        let worker_starts = Arc::new(Mutex::new(HashMap::new()));
        let starts = Arc::clone(&worker_starts);
        let builder = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(Infrastructure {
                state: worker_state(Arc::clone(&state)),
                progress: Arc::new(audit.clone()),
                lock: worker_lock,
                ..shared
            })
            .register(PlaceOrder {
                journal: journal.clone(),
            })
            .lock_ttl(LOCK_TTL)
            .on_event(move |event: &TaskEvent| {
                if matches!(event.kind, EventKind::Started { .. }) {
                    *starts.lock().unwrap().entry(event.task_id).or_default() += 1;
                }
            });
        let worker = configure(builder).build().unwrap();
        Self {
            api,
            worker,
            journal,
            audit,
            state,
            queue,
            worker_starts,
        }
    }

    async fn run(&self, item: &str) -> (TaskId, TaskProgress, Option<OrderResponse>) {
        let handle = self
            .api
            .submit::<PlaceOrder>(OrderRequest {
                item: item.into(),
                ..OrderRequest::default()
            })
            .await
            .unwrap();
        let outcome = handle.wait().await.unwrap();
        (handle.id(), outcome.progress, outcome.response)
    }

    /// How many times a worker started running the task (once per delivery
    /// that got past the lock).
    fn worker_runs(&self, task_id: TaskId) -> u32 {
        self.worker_starts.lock().unwrap().get(&task_id).copied().unwrap_or(0)
    }

    /// Nothing the progress showed was unsaved, and every message was
    /// settled.
    async fn assert_settled_cleanly(&self) {
        self.audit.assert_clean();
        assert_eq!(self.queue.len("orders"), 0, "a message was left in the queue");
        let dead = self.worker.dead_letters(10).await.unwrap();
        assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
    }
}

fn is_terminal(progress: &TaskProgress) -> bool {
    progress.is_terminal()
}

fn expected_response(item: &str) -> OrderResponse {
    OrderResponse {
        reservation: format!("res-{item}"),
        payment: format!("pay-for-res-{item}"),
        tracking: format!("res-{item}/pay-for-res-{item}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_at_the_final_save_hands_the_task_back_and_no_step_runs_twice() {
    // Longer than the save's retries (the lock's TTL): the run gives up.
    let rig = Rig::with_outage(is_terminal, LOCK_TTL * 3);
    let (task_id, progress, response) = rig.run("lamp").await;
    assert_eq!(progress.status, TaskStatus::Completed);
    assert_eq!(response, Some(expected_response("lamp")));
    assert_eq!(
        rig.worker_runs(task_id),
        2,
        "the unsaved end was handed back and delivered again"
    );
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step}: saved steps do not run again");
    }
    rig.assert_settled_cleanly().await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_at_a_mid_run_save_runs_again_only_the_step_whose_end_was_not_saved() {
    let rig = Rig::with_outage(charge_just_completed, LOCK_TTL * 3);
    let (task_id, progress, response) = rig.run("desk").await;
    assert_eq!(progress.status, TaskStatus::Completed);
    assert_eq!(response, Some(expected_response("desk")));
    assert_eq!(rig.worker_runs(task_id), 2);
    assert_eq!(rig.journal.count("run Reserve"), 1);
    assert_eq!(
        rig.journal.count("run Charge"),
        2,
        "Charge's end was never saved: it runs again"
    );
    assert_eq!(rig.journal.count("run Ship"), 1);
    rig.assert_settled_cleanly().await;
}

#[tokio::test(start_paused = true)]
async fn a_short_outage_is_ridden_out_by_retrying_the_save() {
    let rig = Rig::with_outage(is_terminal, LOCK_TTL / 4);
    let (task_id, progress, _) = rig.run("chair").await;
    assert_eq!(progress.status, TaskStatus::Completed);
    assert_eq!(
        rig.worker_runs(task_id),
        1,
        "one delivery: the save was retried, not the task"
    );
    rig.assert_settled_cleanly().await;
}

/// A lease's guard, shared by its holder and [`StealableLock::steal`].
type SharedGuard = Arc<tokio::sync::Mutex<Option<LockGuard>>>;

/// A lock whose leases can be stolen: [`StealableLock::steal`] releases the
/// held lease behind its holder's back (as an expiry during a long pause
/// would), and the holder's renewals keep answering yes.
#[derive(Debug, Clone, Default)]
struct StealableLock {
    inner: MemoryLock,
    held: Arc<Mutex<HashMap<String, SharedGuard>>>,
}

impl StealableLock {
    async fn steal(&self, resource: &str) -> LockGuard {
        let held = self.held.lock().unwrap().get(resource).cloned().expect("a held lease");
        if let Some(guard) = held.lock().await.take() {
            guard.release().await.unwrap();
        }
        self.inner
            .try_acquire(resource, Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the stolen lock")
    }
}

struct StealableLease {
    resource: String,
    token: u64,
    guard: SharedGuard,
}

#[async_trait]
impl LockLease for StealableLease {
    fn resource(&self) -> &str {
        &self.resource
    }

    fn fencing_token(&self) -> u64 {
        self.token
    }

    async fn extend(&self, ttl: Duration) -> dtask::Result<()> {
        match &*self.guard.lock().await {
            Some(guard) => guard.extend(ttl).await,
            None => Ok(()), // stolen: the holder does not know
        }
    }

    async fn release(&mut self) -> dtask::Result<()> {
        match self.guard.lock().await.take() {
            Some(guard) => guard.release().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl DistributedLock for StealableLock {
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> dtask::Result<Option<LockGuard>> {
        let Some(guard) = self.inner.try_acquire(resource, ttl).await? else {
            return Ok(None);
        };
        let token = guard.fencing_token();
        let guard = Arc::new(tokio::sync::Mutex::new(Some(guard)));
        self.held
            .lock()
            .unwrap()
            .insert(resource.to_owned(), Arc::clone(&guard));
        Ok(Some(LockGuard::new(StealableLease {
            resource: resource.to_owned(),
            token,
            guard,
        })))
    }
}

/// Holds the first attempt of Charge until released (clones share it).
#[derive(Clone, Default)]
struct HoldCharge {
    started: Arc<Notify>,
    go: Arc<Notify>,
}

#[async_trait]
impl StepInterceptor for HoldCharge {
    async fn before_attempt(
        &self,
        _task: &'static str,
        step: &'static str,
        attempt: u32,
        _token: &CancellationToken,
    ) -> Result<(), StepError> {
        if step == "Charge" && attempt == 1 {
            self.started.notify_one();
            self.go.notified().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_fenced_out_by_a_newer_lock_holder_neither_acks_nor_writes_progress() {
    let lock = StealableLock::default();
    let hold = HoldCharge::default();
    let interceptor = hold.clone();
    let rig = Rig::with(
        |state| state,
        Arc::new(lock.clone()),
        move |b| b.interceptor(interceptor),
    );
    let handle = rig
        .api
        .submit::<PlaceOrder>(OrderRequest {
            item: "vase".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    let task_id = handle.id();
    hold.started.notified().await;

    // Another holder takes the lock and records its own state (Reserve
    // done, with another reservation) under its newer token.
    let stolen = lock.steal(&format!("task:{task_id}")).await;
    let stored = rig.state.load(task_id).await.unwrap().unwrap();
    let mut theirs: dtask::SagaSnapshot<PlaceOrder> = stored.payload.decode_state().unwrap();
    theirs.data.reserve = Some(Reservation {
        id: "res-theirs".into(),
    });
    let payload = dtask::Codec::new(dtask::Format::Json).encode_state(&theirs).unwrap();
    let fence = stolen.fencing_token();
    rig.state.save(task_id, StoredState { fence, payload }).await.unwrap();
    let shown_before = rig.api.progress(task_id).await.unwrap().unwrap();
    drop(stolen);

    // The fenced run finishes Charge: its save is refused.
    hold.go.notify_one();
    let outcome = handle.wait().await.unwrap();

    // The run that lost the lock wrote nothing more; the message came back
    // and the next run resumed from the newer holder's state.
    assert_eq!(outcome.status(), TaskStatus::Completed);
    let response = outcome.response.unwrap();
    assert_eq!(response.reservation, "res-theirs", "the newer holder's state won");
    assert_eq!(rig.worker_runs(task_id), 2);
    assert_eq!(rig.journal.count("run Charge"), 2, "the fenced Charge was not recorded");
    assert_eq!(shown_before.steps[1].status, StepStatus::Running);
    rig.assert_settled_cleanly().await;
}
