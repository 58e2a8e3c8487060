//! Checks for [`LockWithState`] backends, given with the lock and the
//! state store they join: what a take grants must be the lock's, and what
//! it reads must be the store's.
//!
//! Every check locks resources of its own and deletes the states it saved.

use std::time::Duration;

use super::lock::{LONG, acquire, assert_held, resource};
use super::state::{assert_same, delete, state};
use super::within;
use crate::error::Error;
use crate::id::TaskId;
use crate::infra::{DistributedLock, LockWithState, SagaStateStore, Taken};

/// The backends one check needs: the capability and the two it joins.
#[derive(Clone, Copy)]
pub struct Joined<'a> {
    /// The capability under test.
    pub take: &'a dyn LockWithState,
    /// The lock it takes.
    pub lock: &'a dyn DistributedLock,
    /// The state store it reads.
    pub state: &'a dyn SagaStateStore,
}

/// Runs every check of this module against `backends`.
pub async fn run_all(backends: Joined<'_>) {
    takes_the_lock_and_reads_the_state(backends).await;
    a_task_without_state_reads_none(backends).await;
    a_held_lock_is_not_taken_and_reads_nothing(backends).await;
    fencing_tokens_increase_across_both_paths(backends).await;
    zero_ttl_is_invalid(backends).await;
}

async fn take(backends: Joined<'_>, resource: &str, task_id: TaskId, what: &str) -> Taken {
    within(what, backends.take.try_acquire_loading(resource, LONG, task_id))
        .await
        .unwrap_or_else(|e| panic!("{what}: try_acquire_loading {resource}: {e}"))
        .unwrap_or_else(|| panic!("{what}: {resource} should be free"))
}

/// The lock is granted as the lock grants it (held against the lock
/// itself until released), and the saved state comes with it.
pub async fn takes_the_lock_and_reads_the_state(backends: Joined<'_>) {
    let (resource, task_id) = (resource(), TaskId::new());
    let saved = state(4, "saved before the take");
    within("save", backends.state.save(task_id, saved.clone()))
        .await
        .expect("save");
    let taken = take(backends, &resource, task_id, "a take").await;
    let read = taken.state.expect("the state read with the lock");
    assert_same(read, &saved, "the state read with the lock");
    assert!(taken.guard.fencing_token() > 0, "a grant carries a fencing token");
    assert_eq!(taken.guard.resource(), resource);
    assert_held(backends.lock, &resource, "the lock after a take").await;
    taken.guard.extend(LONG).await.expect("a taken lock extends");
    taken.guard.release().await.expect("a taken lock releases");
    let again = acquire(backends.lock, &resource, LONG).await;
    again.release().await.expect("release");
    delete(backends.state, task_id).await;
}

/// A task with no saved state is taken with `None` read.
pub async fn a_task_without_state_reads_none(backends: Joined<'_>) {
    let resource = resource();
    let taken = take(backends, &resource, TaskId::new(), "a take of a new task").await;
    let read = taken.state.expect("the state read with the lock");
    assert!(read.is_none(), "a task never saved reads None: {read:?}");
    taken.guard.release().await.expect("release");
}

/// A lock held through the lock itself is not taken.
pub async fn a_held_lock_is_not_taken_and_reads_nothing(backends: Joined<'_>) {
    let resource = resource();
    let held = acquire(backends.lock, &resource, LONG).await;
    let refused = within(
        "a take of a held lock",
        backends.take.try_acquire_loading(&resource, LONG, TaskId::new()),
    )
    .await
    .expect("a held lock is not an error");
    assert!(
        refused.is_none(),
        "a held lock was taken: {:?}",
        refused.map(|t| t.guard)
    );
    held.release().await.expect("release");
}

/// Tokens keep increasing whether the lock is taken through the lock or
/// with the state.
pub async fn fencing_tokens_increase_across_both_paths(backends: Joined<'_>) {
    let (resource, task_id) = (resource(), TaskId::new());
    let first = acquire(backends.lock, &resource, LONG).await;
    let first_token = first.fencing_token();
    first.release().await.expect("release");
    let taken = take(backends, &resource, task_id, "a take after a grant").await;
    let taken_token = taken.guard.fencing_token();
    assert!(taken_token > first_token, "{taken_token} after {first_token}");
    taken.guard.release().await.expect("release");
    let last = acquire(backends.lock, &resource, LONG).await;
    assert!(
        last.fencing_token() > taken_token,
        "{} after {taken_token}",
        last.fencing_token()
    );
    last.release().await.expect("release");
}

/// A zero time-to-live is [`Error::Invalid`], as the lock's.
pub async fn zero_ttl_is_invalid(backends: Joined<'_>) {
    let taken = backends
        .take
        .try_acquire_loading(&resource(), Duration::ZERO, TaskId::new())
        .await;
    assert!(
        matches!(taken, Err(Error::Invalid { .. })),
        "a zero ttl must be Invalid: {:?}",
        taken.map(|t| t.map(|t| t.guard))
    );
}
