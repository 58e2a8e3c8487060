//! Checks for [`ProgressTracker`] backends.
//!
//! Every check works on fresh task ids, and on a task name of its own
//! (from [`unique_name`]) where it lists, so it never
//! sees another run's tasks.

use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;

use super::{unique_name, within};
use crate::codec::Format;
use crate::error::{Error, Result};
use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::infra::{
    CancellationFeed, CancellationNotice, CancellationStream, ProgressQuery, ProgressStream, ProgressTracker,
};
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{Mode, StepHost, TaskDefinition};

/// The task every check's snapshots describe.
static DEFINITION: TaskDefinition = TaskDefinition {
    name: "ConformanceTask",
    queue: "dtask-conformance",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::InProcess,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[],
    groups: &[],
    depends_on: &[],
};

/// Runs every check of this module against `tracker`.
pub async fn run_all(tracker: &dyn ProgressTracker) {
    init_and_get(tracker).await;
    init_twice_is_already_exists(tracker).await;
    init_many_and_update_many_answer_each(tracker).await;
    unknown_task_is_not_found(tracker).await;
    stale_revision_is_ignored(tracker).await;
    stream_yields_current_then_changes(tracker).await;
    no_change_lost_when_updates_race_the_subscription(tracker).await;
    stream_of_an_ended_task(tracker).await;
    complete_requires_a_terminal_snapshot(tracker).await;
    cancellation_is_sticky_and_streamed(tracker).await;
    cancelling_an_ended_task_changes_nothing(tracker).await;
    list_newest_first_with_filters(tracker).await;
    list_by_submitter(tracker).await;
}

/// `init_many` and `update_many` record each snapshot and answer each: a
/// known task is `AlreadyExists`, an unknown one `NotFound`, for that
/// snapshot only.
pub async fn init_many_and_update_many_answer_each(tracker: &dyn ProgressTracker) {
    let known = new_task("ConformanceTask");
    init(tracker, &known).await;
    let fresh: Vec<TaskProgress> = (0..3).map(|_| new_task("ConformanceTask")).collect();
    let batch = [fresh.clone(), vec![known.clone()]].concat();
    let results = within("init_many", tracker.init_many(&batch)).await;
    assert_eq!(results.len(), batch.len(), "init_many: one result per snapshot");
    for (result, progress) in results[..3].iter().zip(&fresh) {
        assert!(result.is_ok(), "init_many of a new task failed: {result:?}");
        assert_eq!(get(tracker, progress.task_id).await, *progress, "init_many: stored");
    }
    assert!(
        matches!(results[3], Err(Error::AlreadyExists { .. })),
        "init_many of a known task: {:?}",
        results[3]
    );

    let started: Vec<TaskProgress> = fresh.iter().map(started).collect();
    let unknown = started_new();
    let batch = [started.clone(), vec![unknown]].concat();
    let results = within("update_many", tracker.update_many(&batch)).await;
    assert_eq!(results.len(), batch.len(), "update_many: one result per snapshot");
    for (result, progress) in results[..3].iter().zip(&started) {
        assert!(result.is_ok(), "update_many of a known task failed: {result:?}");
        assert_eq!(
            get(tracker, progress.task_id).await.revision,
            progress.revision,
            "update_many: stored"
        );
    }
    assert!(
        matches!(results[3], Err(Error::NotFound { .. })),
        "update_many of an unknown task: {:?}",
        results[3]
    );
}

/// A started snapshot of a task never recorded.
fn started_new() -> TaskProgress {
    started(&new_task("ConformanceTask"))
}

/// Runs every check of a tracker's [`CancellationFeed`]; `feed` is
/// `tracker`'s own.
pub async fn run_feed(tracker: &dyn ProgressTracker, feed: &dyn CancellationFeed) {
    the_feed_tells_each_request_once(tracker, feed).await;
    every_open_feed_hears_a_request(tracker, feed).await;
}

/// The next request `notices` tells among `ids` (other tasks' requests,
/// and gaps, are passed over).
async fn next_request(notices: &mut CancellationStream, ids: &[TaskId], what: &str) -> TaskId {
    let next = async {
        while let Some(notice) = notices.next().await {
            if let CancellationNotice::Requested(id) = notice
                && ids.contains(&id)
            {
                return Some(id);
            }
        }
        None
    };
    within(what, next)
        .await
        .unwrap_or_else(|| panic!("{what}: the feed ended"))
}

/// A request for a running task is told once; a repeated one, one for an
/// ended task and one for an unknown task are not. (Notices are ordered:
/// the next one told is the last request, so the ones before it were not.)
pub async fn the_feed_tells_each_request_once(tracker: &dyn ProgressTracker, feed: &dyn CancellationFeed) {
    let mut notices = feed.cancellations().await.expect("opening the feed failed");
    let (running, ended, last) = (
        new_task("ConformanceTask"),
        new_task("ConformanceTask"),
        new_task("ConformanceTask"),
    );
    for progress in [&running, &ended, &last] {
        init(tracker, progress).await;
    }
    complete(tracker, &completed(&ended)).await;
    let ids = [running.task_id, ended.task_id, last.task_id];

    tracker
        .request_cancellation(running.task_id)
        .await
        .expect("cancel failed");
    let told = next_request(&mut notices, &ids, "feed: the first request").await;
    assert_eq!(
        told, running.task_id,
        "the feed must tell the request for the running task"
    );

    tracker
        .request_cancellation(running.task_id)
        .await
        .expect("cancel again failed");
    tracker
        .request_cancellation(ended.task_id)
        .await
        .expect("cancel of an ended task failed");
    expect_error(
        tracker.request_cancellation(TaskId::new()).await,
        is_not_found,
        "cancelling an unknown task",
    );
    tracker.request_cancellation(last.task_id).await.expect("cancel failed");
    let told = next_request(&mut notices, &ids, "feed: the last request").await;
    assert_eq!(
        told, last.task_id,
        "a repeated request, or one for an ended task, must not be told"
    );
}

/// Every feed open when a request is made tells it.
pub async fn every_open_feed_hears_a_request(tracker: &dyn ProgressTracker, feed: &dyn CancellationFeed) {
    let mut first = feed.cancellations().await.expect("opening the feed failed");
    let mut second = feed.cancellations().await.expect("opening a second feed failed");
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    tracker
        .request_cancellation(progress.task_id)
        .await
        .expect("cancel failed");
    let ids = [progress.task_id];
    assert_eq!(
        next_request(&mut first, &ids, "feed: first of two").await,
        progress.task_id
    );
    assert_eq!(
        next_request(&mut second, &ids, "feed: second of two").await,
        progress.task_id
    );
}

/// Now, to the millisecond, so every backend stores it exactly.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// A new pending task named `name`, at revision 0.
pub(super) fn new_task(name: &str) -> TaskProgress {
    let mut progress = TaskProgress::new(TaskId::new(), &DEFINITION, now());
    progress.task_name = name.to_owned();
    progress
}

/// `progress` after one more event (one more revision).
pub(super) fn after(progress: &TaskProgress, kind: EventKind) -> TaskProgress {
    let mut next = progress.clone();
    let event = TaskEvent {
        task_id: progress.task_id,
        at: now(),
        kind,
    };
    next.apply(&event);
    next
}

pub(super) fn started(progress: &TaskProgress) -> TaskProgress {
    after(progress, EventKind::Started { host: StepHost::Worker })
}

pub(super) fn completed(progress: &TaskProgress) -> TaskProgress {
    after(progress, EventKind::Completed)
}

pub(super) async fn init(tracker: &dyn ProgressTracker, progress: &TaskProgress) {
    tracker.init(progress).await.expect("init failed");
}

pub(super) async fn update(tracker: &dyn ProgressTracker, progress: &TaskProgress) {
    tracker.update(progress).await.expect("update failed");
}

async fn complete(tracker: &dyn ProgressTracker, progress: &TaskProgress) {
    tracker.complete(progress).await.expect("complete failed");
}

pub(super) async fn get(tracker: &dyn ProgressTracker, task_id: TaskId) -> TaskProgress {
    let got = tracker.get(task_id).await.expect("get failed");
    got.unwrap_or_else(|| panic!("task {task_id} is unknown"))
}

pub(super) async fn stream(tracker: &dyn ProgressTracker, task_id: TaskId) -> ProgressStream {
    tracker.stream(task_id).await.expect("stream failed")
}

/// Everything `stream` yields until it ends.
pub(super) async fn collect(stream: ProgressStream, what: &str) -> Vec<TaskProgress> {
    within(&format!("{what}: the stream did not end"), stream.collect()).await
}

fn expect_error<T>(result: Result<T>, matches: fn(&Error) -> bool, what: &str) {
    match result {
        Err(e) if matches(&e) => {}
        Err(e) => panic!("{what}: wrong error: {e:?}"),
        Ok(_) => panic!("{what}: succeeded"),
    }
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::NotFound { .. })
}

/// `init` stores the snapshot `get` returns; an unknown task gets `None`.
pub async fn init_and_get(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    assert_eq!(get(tracker, progress.task_id).await, progress, "get after init");
    let unknown = tracker.get(TaskId::new()).await.expect("get of an unknown task");
    assert!(unknown.is_none(), "an unknown task must get None");
}

/// A second `init` of one task is [`Error::AlreadyExists`].
pub async fn init_twice_is_already_exists(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    let again = tracker.init(&started(&progress)).await;
    let exists = |e: &Error| matches!(e, Error::AlreadyExists { .. });
    expect_error(again, exists, "a second init");
    assert_eq!(
        get(tracker, progress.task_id).await,
        progress,
        "a second init changed the task"
    );
}

/// Every call about an unknown task but `get` and `list` is
/// [`Error::NotFound`].
pub async fn unknown_task_is_not_found(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    let id = progress.task_id;
    expect_error(tracker.update(&started(&progress)).await, is_not_found, "update");
    expect_error(tracker.complete(&completed(&progress)).await, is_not_found, "complete");
    expect_error(tracker.stream(id).await, is_not_found, "stream");
    expect_error(tracker.request_cancellation(id).await, is_not_found, "cancel");
}

/// An update whose revision is not above the stored one is ignored.
pub async fn stale_revision_is_ignored(tracker: &dyn ProgressTracker) {
    let first = new_task("ConformanceTask");
    init(tracker, &first).await;
    let second = started(&started(&first));
    update(tracker, &second).await;

    let mut stale = started(&first);
    stale.message = Some("stale".into());
    update(tracker, &stale).await;
    let mut same = second.clone();
    same.message = Some("same revision".into());
    update(tracker, &same).await;
    assert_eq!(get(tracker, first.task_id).await, second, "a stale update was stored");
}

/// A stream yields the current snapshot, then every change in order, and
/// ends after the terminal one.
pub async fn stream_yields_current_then_changes(tracker: &dyn ProgressTracker) {
    let mut progress = started(&new_task("ConformanceTask"));
    init(tracker, &progress).await;
    let changes = stream(tracker, progress.task_id).await;
    let mut expected = vec![progress.clone()];
    for n in 0..5 {
        progress = started(&progress);
        progress.message = Some(format!("change {n}"));
        update(tracker, &progress).await;
        expected.push(progress.clone());
    }
    let done = completed(&progress);
    complete(tracker, &done).await;
    expected.push(done);
    assert_eq!(
        collect(changes, "live stream").await,
        expected,
        "the stream's snapshots"
    );
}

/// Updates racing the subscriptions: each stream, whenever it starts,
/// shows consecutive revisions from its first snapshot to the terminal one.
pub async fn no_change_lost_when_updates_race_the_subscription(tracker: &dyn ProgressTracker) {
    const UPDATES: u64 = 200;
    let first = new_task("ConformanceTask");
    init(tracker, &first).await;
    let updater = async {
        let mut progress = first.clone();
        for _ in 0..UPDATES {
            progress = started(&progress);
            update(tracker, &progress).await;
            tokio::task::yield_now().await;
        }
        complete(tracker, &completed(&progress)).await;
    };
    // Subscribers starting at different points of the updates (the last
    // ones after the end), so that some subscribe while an update lands.
    let subscribers = [0, 1, 2, 5, 10, 17, 30, 55, 56, 99, 150, 199, 260].map(|delay| async move {
        for _ in 0..delay {
            tokio::task::yield_now().await;
        }
        collect(stream(tracker, first.task_id).await, "racing stream").await
    });
    let ((), streams) = tokio::join!(updater, futures::future::join_all(subscribers));

    for (index, seen) in streams.iter().enumerate() {
        let revisions: Vec<u64> = seen.iter().map(|p| p.revision).collect();
        let start = revisions[0];
        let expected: Vec<u64> = (start..=UPDATES + 1).collect();
        assert_eq!(
            revisions, expected,
            "stream {index}: revisions lost, repeated or reordered"
        );
        let last = seen.last().expect("the stream yielded nothing");
        assert!(last.is_terminal(), "stream {index} must end with the terminal snapshot");
    }
}

/// The stream of an ended task yields its terminal snapshot and ends.
pub async fn stream_of_an_ended_task(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    let done = completed(&started(&progress));
    complete(tracker, &done).await;
    let seen = collect(stream(tracker, progress.task_id).await, "ended task").await;
    assert_eq!(seen, [done], "an ended task's stream");
}

/// `complete` with a running snapshot is [`Error::Invalid`] and changes
/// nothing.
pub async fn complete_requires_a_terminal_snapshot(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    let invalid = |e: &Error| matches!(e, Error::Invalid { .. });
    expect_error(
        tracker.complete(&started(&progress)).await,
        invalid,
        "complete while running",
    );
    assert_eq!(
        get(tracker, progress.task_id).await,
        progress,
        "a refused complete changed the task"
    );
}

/// A cancellation request shows on open streams and survives later
/// updates that do not carry it.
pub async fn cancellation_is_sticky_and_streamed(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    let mut changes = stream(tracker, progress.task_id).await;
    let first = within("cancel: first snapshot", changes.next()).await;
    assert_eq!(first.as_ref(), Some(&progress), "cancel: first snapshot");

    let returned = tracker
        .request_cancellation(progress.task_id)
        .await
        .expect("cancel failed");
    assert!(
        returned.cancel_requested,
        "the returned snapshot must be cancel_requested"
    );
    let seen = within("cancel: streamed request", changes.next()).await;
    let seen = seen.expect("cancel: the stream ended");
    assert!(
        seen.cancel_requested,
        "an open stream must see the cancellation request"
    );

    let later = started(&returned);
    let later = TaskProgress {
        cancel_requested: false,
        ..later
    };
    update(tracker, &later).await;
    let stored = get(tracker, progress.task_id).await;
    assert!(
        stored.cancel_requested,
        "an update must not clear the cancellation request"
    );
    assert_eq!(stored.revision, later.revision, "the later update was not stored");
    let seen = within("cancel: streamed update", changes.next()).await;
    let seen = seen.expect("cancel: the stream ended");
    assert!(
        seen.cancel_requested,
        "a streamed update must keep the cancellation request"
    );

    complete(tracker, &completed(&later)).await;
    let rest = collect(changes, "cancel: end").await;
    assert!(
        rest.last().is_some_and(TaskProgress::is_terminal),
        "cancel: no terminal snapshot"
    );
}

/// Asking an ended task to cancel returns it unchanged.
pub async fn cancelling_an_ended_task_changes_nothing(tracker: &dyn ProgressTracker) {
    let progress = new_task("ConformanceTask");
    init(tracker, &progress).await;
    let done = completed(&progress);
    complete(tracker, &done).await;
    let returned = tracker
        .request_cancellation(progress.task_id)
        .await
        .expect("cancel failed");
    assert_eq!(returned, done, "cancelling an ended task must return it unchanged");
    assert_eq!(
        get(tracker, progress.task_id).await,
        done,
        "cancelling an ended task changed it"
    );
}

/// `list` returns tasks newest first, filtered by status and name, paged,
/// with the total of matches.
pub async fn list_newest_first_with_filters(tracker: &dyn ProgressTracker) {
    let name = unique_name("ConformanceList");
    let base = now();
    let mut ids = Vec::new();
    for n in 0..5i64 {
        let mut progress = new_task(&name);
        progress.created_at = base + time::Duration::seconds(n);
        init(tracker, &progress).await;
        if n % 2 == 1 {
            complete(tracker, &completed(&progress)).await;
        }
        ids.push(progress.task_id);
    }
    let page = |status: Option<TaskStatus>, offset: usize, limit: usize| ProgressQuery {
        status,
        task_name: Some(name.clone()),
        offset,
        limit,
        ..ProgressQuery::default()
    };
    let cases = [
        (page(None, 0, 50), vec![4, 3, 2, 1, 0], 5),
        (page(Some(TaskStatus::Completed), 0, 50), vec![3, 1], 2),
        (page(Some(TaskStatus::Pending), 0, 50), vec![4, 2, 0], 3),
        (page(None, 1, 2), vec![3, 2], 5),
        (page(None, 10, 2), vec![], 5),
    ];
    for (query, expected, total) in cases {
        let listed = tracker.list(&query).await.expect("list failed");
        let got: Vec<TaskId> = listed.items.iter().map(|p| p.task_id).collect();
        let want: Vec<TaskId> = expected.iter().map(|&i| ids[i]).collect();
        assert_eq!(got, want, "list items for {query:?}");
        assert_eq!(listed.total, total, "list total for {query:?}");
    }
    let other = ProgressQuery {
        task_name: Some(unique_name("ConformanceNobody")),
        ..ProgressQuery::default()
    };
    let listed = tracker.list(&other).await.expect("list failed");
    assert!(
        listed.items.is_empty() && listed.total == 0,
        "a name nobody uses lists tasks"
    );
}

/// `list` with a submitter lists only the tasks that subject submitted,
/// with their total; the submitter comes back in the snapshots.
pub async fn list_by_submitter(tracker: &dyn ProgressTracker) {
    let name = unique_name("ConformanceOwners");
    let (alice, bob) = (unique_name("alice"), unique_name("bob"));
    let base = now();
    let mut ids = Vec::new();
    for (n, owner) in [Some(&alice), Some(&bob), Some(&alice), None].into_iter().enumerate() {
        let mut progress = new_task(&name);
        progress.created_at = base + time::Duration::seconds(i64::try_from(n).unwrap_or(0));
        progress.submitter = owner.cloned();
        init(tracker, &progress).await;
        ids.push(progress.task_id);
    }
    let of = |submitter: &str| ProgressQuery {
        task_name: Some(name.clone()),
        submitter: Some(submitter.to_owned()),
        ..ProgressQuery::default()
    };
    let listed = tracker.list(&of(&alice)).await.expect("list failed");
    let got: Vec<TaskId> = listed.items.iter().map(|p| p.task_id).collect();
    assert_eq!(got, [ids[2], ids[0]], "alice's tasks, newest first");
    assert_eq!(listed.total, 2, "alice's total");
    assert!(
        listed
            .items
            .iter()
            .all(|p| p.submitter.as_deref() == Some(alice.as_str())),
        "the submitter comes back in the snapshots"
    );
    let listed = tracker.list(&of(&bob)).await.expect("list failed");
    assert_eq!(listed.items.len(), 1, "bob's tasks");
    let everyone = ProgressQuery {
        task_name: Some(name.clone()),
        ..ProgressQuery::default()
    };
    let listed = tracker.list(&everyone).await.expect("list failed");
    assert_eq!(listed.total, 4, "without a submitter, every task");
    assert_eq!(
        get(tracker, ids[3]).await.submitter,
        None,
        "a task no principal submitted has no submitter"
    );
}
