//! Checks for [`StateWithProgress`] backends, given with the state store
//! and the progress tracker they join: what a settlement writes must be
//! what the two show, and a refused save must show nothing.
//!
//! Every check works on fresh task ids and deletes the states it saved.

use futures::StreamExt;

use super::progress::{after, collect, completed, get, init, new_task, started, stream, update};
use super::state::{assert_same, delete, load, state};
use super::within;
use crate::error::Error;
use crate::event::EventKind;
use crate::infra::{ProgressTracker, ProgressWrite, SagaStateStore, StateWithProgress, StoredState};
use crate::progress::TaskProgress;
use crate::task::StepHost;

/// The backends one check needs: the settlement and the two it joins.
#[derive(Clone, Copy)]
pub struct Joined<'a> {
    /// The capability under test.
    pub settlement: &'a dyn StateWithProgress,
    /// The state store it saves into.
    pub state: &'a dyn SagaStateStore,
    /// The progress tracker it writes to.
    pub progress: &'a dyn ProgressTracker,
}

/// Runs every check of this module against `backends`.
pub async fn run_all(backends: Joined<'_>) {
    saves_and_shows(backends).await;
    a_fenced_save_shows_nothing(backends).await;
    stale_progress_still_saves_the_state(backends).await;
    an_unknown_task_still_saves_the_state(backends).await;
    a_terminal_snapshot_ends_the_stream(backends).await;
    a_requested_cancellation_is_kept(backends).await;
}

async fn settle(backends: Joined<'_>, state: StoredState, progress: &TaskProgress, what: &str) -> ProgressWrite {
    let task_id = progress.task_id;
    within(what, backends.settlement.save_with_progress(task_id, state, progress))
        .await
        .unwrap_or_else(|e| panic!("{what}: save_with_progress of {task_id}: {e}"))
}

/// The state is saved and the progress stored, both readable, and the
/// progress reaches a stream opened before.
pub async fn saves_and_shows(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    init(backends.progress, &first).await;
    let mut follower = stream(backends.progress, first.task_id).await;
    let current = within("the stream's first snapshot", follower.next()).await;
    assert_eq!(
        current.as_ref(),
        Some(&first),
        "the stream starts with the current snapshot"
    );

    let running = started(&first);
    let saved = state(1, "first step done");
    let written = settle(backends, saved.clone(), &running, "a settlement").await;
    assert_eq!(written, ProgressWrite::Stored, "a newer snapshot is stored");
    assert_same(load(backends.state, first.task_id).await, &saved, "the state it saved");
    assert_eq!(
        get(backends.progress, first.task_id).await,
        running,
        "the progress it stored"
    );
    let shown = within("the stream's next snapshot", follower.next()).await;
    assert_eq!(shown.as_ref(), Some(&running), "the settlement reaches the stream");
    delete(backends.state, first.task_id).await;
}

/// A save with a smaller fencing token than the stored one is
/// [`Error::Fenced`] and changes neither the state nor the progress.
pub async fn a_fenced_save_shows_nothing(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    init(backends.progress, &first).await;
    let running = started(&first);
    let holder = state(5, "holder five");
    settle(backends, holder.clone(), &running, "the newer holder's settlement").await;

    let stale = after(&running, EventKind::Completed);
    let fenced = backends
        .settlement
        .save_with_progress(first.task_id, state(3, "stale holder"), &stale)
        .await;
    assert!(
        matches!(
            fenced,
            Err(Error::Fenced {
                presented: 3,
                current: 5
            })
        ),
        "a settlement with token 3 after token 5 must be Fenced {{ presented: 3, current: 5 }}, got {fenced:?}"
    );
    assert_same(
        load(backends.state, first.task_id).await,
        &holder,
        "the state after a fenced settlement",
    );
    assert_eq!(
        get(backends.progress, first.task_id).await,
        running,
        "a fenced settlement must not show its progress"
    );
    delete(backends.state, first.task_id).await;
}

/// A snapshot older than the tracker's is left unstored
/// ([`ProgressWrite::Stale`]), and the state is saved all the same.
pub async fn stale_progress_still_saves_the_state(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    init(backends.progress, &first).await;
    let running = started(&first);
    let newer = after(&running, EventKind::Started { host: StepHost::Worker });
    update(backends.progress, &newer).await;

    let saved = state(1, "saved with an older snapshot");
    let written = settle(backends, saved.clone(), &running, "a settlement with a stale snapshot").await;
    assert_eq!(written, ProgressWrite::Stale, "an older revision is not stored");
    assert_same(load(backends.state, first.task_id).await, &saved, "the state saved");
    assert_eq!(
        get(backends.progress, first.task_id).await,
        newer,
        "the newer snapshot stays"
    );
    delete(backends.state, first.task_id).await;
}

/// A task the tracker does not know gets its state saved
/// ([`ProgressWrite::UnknownTask`]), and no progress appears.
pub async fn an_unknown_task_still_saves_the_state(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    let saved = state(1, "no progress");
    let written = settle(
        backends,
        saved.clone(),
        &started(&first),
        "a settlement of an unknown task",
    )
    .await;
    assert_eq!(written, ProgressWrite::UnknownTask);
    assert_same(load(backends.state, first.task_id).await, &saved, "the state saved");
    let progress = within("get", backends.progress.get(first.task_id)).await;
    assert!(
        matches!(progress, Ok(None)),
        "a settlement creates no progress: {progress:?}"
    );
    delete(backends.state, first.task_id).await;
}

/// A terminal snapshot is stored and ends the task's streams, as
/// [`ProgressTracker::complete`] would.
pub async fn a_terminal_snapshot_ends_the_stream(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    init(backends.progress, &first).await;
    let running = started(&first);
    update(backends.progress, &running).await;
    let follower = stream(backends.progress, first.task_id).await;

    let done = completed(&running);
    let written = settle(backends, state(1, "the end"), &done, "the final settlement").await;
    assert_eq!(written, ProgressWrite::Stored);
    let seen = collect(follower, "a stream of a task settled as ended").await;
    assert_eq!(
        seen.last(),
        Some(&done),
        "the stream ends with the final snapshot: {seen:?}"
    );
    assert_eq!(get(backends.progress, first.task_id).await, done);
    delete(backends.state, first.task_id).await;
}

/// A cancellation asked before the settlement stays asked in what it
/// shows.
pub async fn a_requested_cancellation_is_kept(backends: Joined<'_>) {
    let first = new_task("ConformanceSettlement");
    init(backends.progress, &first).await;
    within(
        "request_cancellation",
        backends.progress.request_cancellation(first.task_id),
    )
    .await
    .expect("request_cancellation");
    let mut running = started(&get(backends.progress, first.task_id).await);
    // The settling run did not hear of it yet.
    running.cancel_requested = false;
    settle(
        backends,
        state(1, "cancel asked"),
        &running,
        "a settlement after a cancellation",
    )
    .await;
    let shown = get(backends.progress, first.task_id).await;
    assert!(
        shown.cancel_requested,
        "the settlement dropped the cancellation: {shown:?}"
    );
    assert_eq!(shown.revision, running.revision);
    delete(backends.state, first.task_id).await;
}
