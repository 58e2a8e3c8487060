//! Wrappers that watch the settlement invariant from outside the kernel:
//! an [`AuditedTracker`] checks, at every progress write, that the saga
//! state store already holds what the progress shows, and a [`Tripwire`]
//! state store runs a fault (cutting a connection, failing) at the exact
//! save it is told to.

#![allow(unreachable_pub)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dtask::infra::{ProgressPage, ProgressQuery, ProgressStream, ProgressTracker, SagaStateStore, StoredState};
use dtask::{SagaSnapshot, StepStatus, Task, TaskId, TaskProgress};

/// A progress tracker that, before each write, reads the task's saved state
/// (through `state`, a path no fault touches) and records a violation when
/// the progress shows a step settled, or the task ended, that the state
/// does not hold.
pub struct AuditedTracker<T> {
    inner: Arc<dyn ProgressTracker>,
    state: Arc<dyn SagaStateStore>,
    violations: Arc<Mutex<Vec<String>>>,
    writes: Arc<Mutex<u64>>,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> AuditedTracker<T> {
    pub fn new(inner: Arc<dyn ProgressTracker>, state: Arc<dyn SagaStateStore>) -> Self {
        Self {
            inner,
            state,
            violations: Arc::default(),
            writes: Arc::default(),
            task: PhantomData,
        }
    }

    /// Every write that showed more than the saved state held.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// How many writes were checked.
    pub fn writes(&self) -> u64 {
        *self.writes.lock().unwrap()
    }

    /// Asserts that progress was written and never showed an unsaved state.
    pub fn assert_clean(&self) {
        assert!(self.writes() > 0, "the worker wrote no progress");
        assert_eq!(self.violations(), Vec::<String>::new(), "progress showed unsaved state");
    }

    async fn audit(&self, shown: &TaskProgress) {
        *self.writes.lock().unwrap() += 1;
        let saved: Option<SagaSnapshot<T>> = match self.state.load(shown.task_id).await {
            Ok(Some(stored)) => stored.payload.decode_state().ok(),
            _ => None,
        };
        let Some(saved) = saved else {
            if shown.steps.iter().any(|s| settled(s.status)) || shown.is_terminal() {
                self.violate(format!(
                    "revision {} shows settled work, but no state is saved",
                    shown.revision
                ));
            }
            return;
        };
        for (step, saved_step) in shown.steps.iter().zip(&saved.progress.steps) {
            if settled(step.status) && !reached(step.status, saved_step.status) {
                self.violate(format!(
                    "revision {} shows step {} {:?}, but the saved state has it {:?}",
                    shown.revision, step.name, step.status, saved_step.status
                ));
            }
        }
        if shown.is_terminal() && saved.progress.status != shown.status {
            self.violate(format!(
                "revision {} shows the task {:?}, but the saved state has it {:?}",
                shown.revision, shown.status, saved.progress.status
            ));
        }
    }

    fn violate(&self, violation: String) {
        self.violations.lock().unwrap().push(violation);
    }
}

impl<T> Clone for AuditedTracker<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            state: Arc::clone(&self.state),
            violations: Arc::clone(&self.violations),
            writes: Arc::clone(&self.writes),
            task: PhantomData,
        }
    }
}

/// A step status that only a settlement (a save first) may show.
fn settled(status: StepStatus) -> bool {
    matches!(
        status,
        StepStatus::Completed | StepStatus::Skipped | StepStatus::Compensated | StepStatus::CompensationFailed
    )
}

/// Whether a saved step status is `shown`, or came after it.
fn reached(shown: StepStatus, saved: StepStatus) -> bool {
    match shown {
        StepStatus::Completed => matches!(
            saved,
            StepStatus::Completed | StepStatus::Compensating | StepStatus::Compensated | StepStatus::CompensationFailed
        ),
        other => saved == other,
    }
}

impl<T> fmt::Debug for AuditedTracker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditedTracker").finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: Task> ProgressTracker for AuditedTracker<T> {
    async fn init(&self, progress: &TaskProgress) -> dtask::Result<()> {
        self.inner.init(progress).await
    }

    async fn update(&self, progress: &TaskProgress) -> dtask::Result<()> {
        self.audit(progress).await;
        self.inner.update(progress).await
    }

    async fn complete(&self, progress: &TaskProgress) -> dtask::Result<()> {
        self.audit(progress).await;
        self.inner.complete(progress).await
    }

    async fn get(&self, task_id: TaskId) -> dtask::Result<Option<TaskProgress>> {
        self.inner.get(task_id).await
    }

    async fn stream(&self, task_id: TaskId) -> dtask::Result<ProgressStream> {
        self.inner.stream(task_id).await
    }

    async fn request_cancellation(&self, task_id: TaskId) -> dtask::Result<TaskProgress> {
        self.inner.request_cancellation(task_id).await
    }

    async fn list(&self, query: &ProgressQuery) -> dtask::Result<ProgressPage> {
        self.inner.list(query).await
    }
}

/// When a [`Tripwire`] fires: before or after the save it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

type Matcher = Box<dyn Fn(&TaskProgress) -> bool + Send + Sync>;
type Action = Box<dyn Fn() + Send + Sync>;

/// A state store that runs `action` once, before or after the first save
/// whose saga state `matches`.
pub struct Tripwire<T> {
    inner: Arc<dyn SagaStateStore>,
    matches: Matcher,
    when: When,
    action: Mutex<Option<Action>>,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> Tripwire<T> {
    pub fn new(
        inner: Arc<dyn SagaStateStore>,
        when: When,
        matches: impl Fn(&TaskProgress) -> bool + Send + Sync + 'static,
        action: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            matches: Box::new(matches),
            when,
            action: Mutex::new(Some(Box::new(action))),
            task: PhantomData,
        }
    }

    fn fire_if(&self, state: &StoredState, when: When) {
        if when != self.when {
            return;
        }
        let Ok(snapshot) = state.payload.decode_state::<T>() else {
            return;
        };
        if (self.matches)(&snapshot.progress)
            && let Some(action) = self.action.lock().unwrap().take()
        {
            action();
        }
    }
}

impl<T> fmt::Debug for Tripwire<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tripwire")
            .field("when", &self.when)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: Task> SagaStateStore for Tripwire<T> {
    async fn save(&self, task_id: TaskId, state: StoredState) -> dtask::Result<()> {
        self.fire_if(&state, When::Before);
        self.inner.save(task_id, state.clone()).await?;
        self.fire_if(&state, When::After);
        Ok(())
    }

    async fn load(&self, task_id: TaskId) -> dtask::Result<Option<StoredState>> {
        self.inner.load(task_id).await
    }

    async fn delete(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.delete(task_id).await
    }

    async fn ended(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.ended(task_id).await
    }
}
