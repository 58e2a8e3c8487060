//! Wrappers that watch the settlement invariant from outside the kernel:
//! an [`AuditedTracker`] checks, at every progress write, that the saga
//! state store already holds what the progress shows, and a [`Tripwire`]
//! state store runs a fault (cutting a connection, failing) at the exact
//! save it is told to.

#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dtask::infra::{
    ProgressPage, ProgressQuery, ProgressStream, ProgressTracker, ProgressWrite, SagaStateStore, StateWithProgress,
    StoredState,
};
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

/// A state store (or a [`StateWithProgress`]) that runs `action` once,
/// before or after the first save whose saga state `matches`.
pub struct Tripwire<T, S: ?Sized = dyn SagaStateStore> {
    inner: Arc<S>,
    matches: Matcher,
    when: When,
    action: Mutex<Option<Action>>,
    task: PhantomData<fn() -> T>,
}

impl<T: Task, S: ?Sized> Tripwire<T, S> {
    pub fn new(
        inner: Arc<S>,
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

impl<T, S: ?Sized> fmt::Debug for Tripwire<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tripwire")
            .field("when", &self.when)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: Task, S: SagaStateStore + ?Sized> SagaStateStore for Tripwire<T, S> {
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

#[async_trait]
impl<T: Task, S: StateWithProgress + ?Sized> StateWithProgress for Tripwire<T, S> {
    async fn save_with_progress(
        &self,
        task_id: TaskId,
        state: StoredState,
        progress: &TaskProgress,
    ) -> dtask::Result<ProgressWrite> {
        self.fire_if(&state, When::Before);
        let written = self.inner.save_with_progress(task_id, state.clone(), progress).await?;
        self.fire_if(&state, When::After);
        Ok(written)
    }
}

/// Follows one task's progress stream (on a path no fault touches) and
/// checks each snapshot it shows as [`AuditedTracker`] checks each write:
/// for the writes that happen inside a backend, where no tracker sees them
/// ([`StateWithProgress`]).
pub struct StreamAudit {
    follower: tokio::task::JoinHandle<()>,
    checked: Arc<Mutex<u64>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl StreamAudit {
    /// Follows `task_id` until its stream ends.
    pub async fn follow<T: Task>(
        progress: &Arc<dyn ProgressTracker>,
        state: &Arc<dyn SagaStateStore>,
        task_id: TaskId,
    ) -> Self {
        let audit = AuditedTracker::<T>::new(Arc::clone(progress), Arc::clone(state));
        let mut stream = progress.stream(task_id).await.expect("following the task's progress");
        let (checked, violations) = (Arc::clone(&audit.writes), Arc::clone(&audit.violations));
        let follower = tokio::spawn(async move {
            while let Some(shown) = futures::StreamExt::next(&mut stream).await {
                audit.audit(&shown).await;
            }
        });
        Self {
            follower,
            checked,
            violations,
        }
    }

    /// Waits for the stream's end, then asserts that it showed progress
    /// and never an unsaved state.
    pub async fn assert_clean(self) {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.follower)
            .await
            .expect("the task's stream ends")
            .expect("the follower");
        assert!(*self.checked.lock().unwrap() > 0, "the stream showed nothing");
        let violations = self.violations.lock().unwrap().clone();
        assert_eq!(violations, Vec::<String>::new(), "progress showed unsaved state");
    }
}
