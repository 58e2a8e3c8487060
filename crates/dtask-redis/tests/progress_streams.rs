//! Progress across processes: a writer and a reader built from separate
//! connections, the shared pub/sub connection, its recovery after a cut,
//! and expiry of ended tasks.

mod support;

use std::time::Duration;

use dtask_core::EventKind;
use dtask_core::conformance::PATIENCE;
use dtask_core::infra::{ProgressQuery, ProgressTracker};
use dtask_core::progress::TaskProgress;
use dtask_core::task::StepHost;
use futures::StreamExt;

use support::{TcpProxy, after, config, config_at, connect, delete_prefix, new_task, raw, unique_prefix};

fn started(progress: &TaskProgress) -> TaskProgress {
    after(progress, EventKind::Started { host: StepHost::Worker })
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

#[tokio::test]
async fn a_reader_process_follows_a_writer_process() {
    let prefix = unique_prefix();
    let writer = connect(&config(&prefix)).await.progress();
    let reader = connect(&config(&prefix)).await.progress();
    let mut progress = new_task();
    writer.init(&progress).await.unwrap();
    let changes = reader.stream(progress.task_id).await.unwrap();
    let mut expected = vec![progress.clone()];
    for _ in 0..20 {
        progress = started(&progress);
        writer.update(&progress).await.unwrap();
        expected.push(progress.clone());
    }
    let done = after(&progress, EventKind::Completed);
    writer.complete(&done).await.unwrap();
    expected.push(done);
    let seen: Vec<TaskProgress> = within("the reader's stream", changes.collect()).await;
    assert_eq!(seen, expected);
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn a_cancellation_asked_in_one_process_reaches_the_other() {
    let prefix = unique_prefix();
    let worker = connect(&config(&prefix)).await.progress();
    let api = connect(&config(&prefix)).await.progress();
    let progress = started(&new_task());
    worker.init(&progress).await.unwrap();
    let mut watched = worker.stream(progress.task_id).await.unwrap();
    assert_eq!(within("first", watched.next()).await, Some(progress.clone()));

    let returned = api.request_cancellation(progress.task_id).await.unwrap();
    assert!(returned.cancel_requested);
    let seen = within("the request", watched.next()).await.expect("stream ended");
    assert!(seen.cancel_requested && seen.revision == progress.revision);
    let stored = worker.get(progress.task_id).await.unwrap().unwrap();
    assert!(stored.cancel_requested, "the worker's get must see the request");
    delete_prefix(0, &prefix).await;
}

/// How many connections are subscribed to `channel`.
async fn subscribers(channel: &str) -> u64 {
    let mut conn = raw(0).await;
    let (_, count): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

#[tokio::test]
async fn streams_share_one_subscription_released_by_the_last() {
    let prefix = unique_prefix();
    let tracker = connect(&config(&prefix)).await.progress();
    let progress = new_task();
    tracker.init(&progress).await.unwrap();
    let channel = format!("{prefix}progress:{{{}}}", progress.task_id);
    let streams = [
        tracker.stream(progress.task_id).await.unwrap(),
        tracker.stream(progress.task_id).await.unwrap(),
        tracker.stream(progress.task_id).await.unwrap(),
    ];
    assert_eq!(subscribers(&channel).await, 1, "one connection for all streams");
    drop(streams);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while subscribers(&channel).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn a_stream_survives_a_cut_pub_sub_connection() {
    let prefix = unique_prefix();
    let proxy = TcpProxy::start().await;
    let writer = connect(&config(&prefix)).await.progress();
    let reader = connect(&config_at(&proxy.url(0), &prefix)).await.progress();
    let mut progress = started(&new_task());
    writer.init(&progress).await.unwrap();
    let mut changes = reader.stream(progress.task_id).await.unwrap();
    assert_eq!(within("first", changes.next()).await, Some(progress.clone()));

    // Cut the reader off and keep it off until the server has dropped its
    // subscription: the changes below are published to nobody, and reach
    // the stream only by its re-read after the reconnection.
    proxy.pause();
    let channel = format!("{prefix}progress:{{{}}}", progress.task_id);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while subscribers(&channel).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the cut subscription lingers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..5 {
        progress = started(&progress);
        writer.update(&progress).await.unwrap();
    }
    let done = after(&progress, EventKind::Completed);
    writer.complete(&done).await.unwrap();
    proxy.resume();

    let rest: Vec<TaskProgress> = within("after the cut", changes.collect()).await;
    let revisions: Vec<u64> = rest.iter().map(|p| p.revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "out of order: {revisions:?}");
    assert_eq!(
        rest.last(),
        Some(&done),
        "the terminal snapshot was lost: {revisions:?}"
    );
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn ended_tasks_expire_and_leave_the_index() {
    let prefix = unique_prefix();
    let config = config(&prefix).with_progress_expiry(Some(Duration::from_millis(300)));
    let tracker = connect(&config).await.progress();
    let name = format!("Expiring-{}", uuid::Uuid::new_v4().simple());
    let mut progress = new_task();
    progress.task_name.clone_from(&name);
    tracker.init(&progress).await.unwrap();
    tracker.complete(&after(&progress, EventKind::Completed)).await.unwrap();
    let query = ProgressQuery {
        task_name: Some(name),
        ..ProgressQuery::default()
    };
    assert_eq!(tracker.list(&query).await.unwrap().total, 1);

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tracker.get(progress.task_id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the ended task did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = tracker.list(&ProgressQuery::default()).await.unwrap();
    assert_eq!((listed.total, listed.items.len()), (0, 0), "{listed:?}");
    let mut conn = raw(0).await;
    let indexed: u64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}{{progress}}:index"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, 0, "the expired task is still indexed");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn a_cancel_flag_carried_by_an_update_is_sticky() {
    let prefix = unique_prefix();
    let tracker = connect(&config(&prefix)).await.progress();
    let progress = new_task();
    tracker.init(&progress).await.unwrap();
    let asked = TaskProgress {
        cancel_requested: true,
        ..started(&progress)
    };
    tracker.update(&asked).await.unwrap();
    let later = TaskProgress {
        cancel_requested: false,
        ..started(&asked)
    };
    tracker.update(&later).await.unwrap();
    let stored = tracker.get(progress.task_id).await.unwrap().unwrap();
    assert_eq!(stored.revision, later.revision);
    assert!(stored.cancel_requested, "the flag was cleared by a later update");
    delete_prefix(0, &prefix).await;
}

#[tokio::test]
async fn a_terminal_snapshot_is_final_and_wins_over_later_revisions() {
    let prefix = unique_prefix();
    let tracker = connect(&config(&prefix)).await.progress();
    let progress = new_task();
    tracker.init(&progress).await.unwrap();
    let done = after(&progress, EventKind::Completed);
    let mut ahead = progress.clone();
    ahead.revision = 10;
    tracker.update(&ahead).await.unwrap();
    tracker.complete(&done).await.unwrap();
    assert_eq!(tracker.get(progress.task_id).await.unwrap(), Some(done.clone()));

    ahead.revision = 99;
    tracker.update(&ahead).await.unwrap();
    assert_eq!(
        tracker.get(progress.task_id).await.unwrap(),
        Some(done),
        "a late update replaced the terminal snapshot"
    );
    delete_prefix(0, &prefix).await;
}
